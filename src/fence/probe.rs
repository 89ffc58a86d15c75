//! Tie-break probes: one thread per target sends a probe every interval and reports
//! whether the target answered within the timeout. A target answers when it shows
//! it is there: an ICMP echo reply; a TCP connect, accepted or refused; a UDP
//! reply or an ICMP port-unreachable. Threads, not tasks: a probe blocks in the
//! kernel, and keeping it off the main loop keeps keepalives on time.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::mpsc;

use crate::config::PingTarget;

/// (target index, answered, when the probe finished)
pub type ProbeResult = (usize, bool, Instant);

/// Starts a prober per target; they end when the receiver is dropped.
pub fn spawn(targets: &[PingTarget], interval: Duration, timeout: Duration, tx: mpsc::Sender<ProbeResult>) {
    // A single probe waits at most this long: a slow answer is as good as none.
    let wait = timeout.min(interval.max(Duration::from_millis(50)));
    for (i, t) in targets.iter().copied().enumerate() {
        let tx = tx.clone();
        let spawned = std::thread::Builder::new().name(format!("probe-{i}")).spawn(move || {
            let mut seq: u16 = 0;
            loop {
                let started = Instant::now();
                seq = seq.wrapping_add(1);
                let answered = probe(t, seq, wait);
                if tx.blocking_send((i, answered, Instant::now())).is_err() {
                    return;
                }
                std::thread::sleep(interval.saturating_sub(started.elapsed()));
            }
        });
        if let Err(e) = spawned {
            log::error!("cannot start the probe of tie-break target {t}: {e}; it counts as unreachable");
        }
    }
}

/// One probe; true when the target answered within `wait`.
pub fn probe(target: PingTarget, seq: u16, wait: Duration) -> bool {
    match target {
        PingTarget::Tcp(a) => match TcpStream::connect_timeout(&a, wait) {
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        },
        PingTarget::Udp(a) => udp(a, wait).unwrap_or(false),
        PingTarget::Icmp(a) => icmp(a, seq, wait).unwrap_or(false),
    }
}

fn udp(a: SocketAddr, wait: Duration) -> std::io::Result<bool> {
    let bind: SocketAddr = if a.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("literal");
    let s = UdpSocket::bind(bind)?;
    s.connect(a)?;
    s.set_read_timeout(Some(wait))?;
    s.send(b"pairbeat tiebreak probe\n")?;
    let mut buf = [0u8; 512];
    match s.recv(&mut buf) {
        Ok(_) => Ok(true),
        // The host said "port unreachable": it is there.
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(true),
        Err(_) => Ok(false),
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request on a raw socket connected to the target (so only its packets
/// arrive), waiting for the reply with our identifier and sequence number.
fn icmp(a: IpAddr, seq: u16, wait: Duration) -> std::io::Result<bool> {
    let (domain, proto, request, reply) = match a {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8, 129u8),
    };
    let s = Socket::new(domain, Type::RAW, Some(proto))?;
    s.connect(&SockAddr::from(SocketAddr::new(a, 0)))?;
    let id = (std::process::id() as u16) ^ 0x7062;
    let mut pkt = vec![request, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"pairbeat");
    // The kernel fills in the ICMPv6 checksum (it covers a pseudo-header).
    if a.is_ipv4() {
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    s.send(&pkt)?;
    let deadline = Instant::now() + wait;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: recv initialised the first n bytes.
        let data: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
        // IPv4 raw sockets deliver the IP header too; IPv6 ones do not.
        let icmp = if a.is_ipv4() {
            let ihl = usize::from(data.first().map_or(0, |b| b & 0x0f)) * 4;
            data.get(ihl..).unwrap_or(&[])
        } else {
            &data[..]
        };
        if icmp.len() >= 8 && icmp[0] == reply && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_the_internet_checksum() {
        // RFC 1071's example words sum to 0xddf2; the checksum is its complement.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
    }

    #[test]
    fn tcp_and_udp_probes_count_a_refusal_as_an_answer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        assert!(probe(PingTarget::Tcp(open), 1, Duration::from_millis(500)));
        drop(l);
        // Nothing listens there now: loopback refuses, which proves the host is there.
        assert!(probe(PingTarget::Tcp(open), 1, Duration::from_millis(500)));
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed = u.local_addr().unwrap();
        drop(u);
        assert!(probe(PingTarget::Udp(closed), 1, Duration::from_millis(500)));
        assert!(probe(
            PingTarget::Icmp("127.0.0.1".parse().unwrap()),
            1,
            Duration::from_millis(500)
        ));
    }
}
