//! UDP sockets for the heartbeat links: one per `[[link]]`, bound to its interface
//! (SO_BINDTODEVICE), so a link is really that NIC and not whatever route the
//! kernel prefers. ucast listens on the node's own address and sends to the
//! peer's; bcast sends to the interface's broadcast address; mcast joins the group
//! on the interface.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use std::task::{Context, Poll};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::config::{Link, LinkKind};

/// A link's socket, watched for reading only: a send never waits (a full buffer
/// loses that keepalive, not the next), so write readiness would only wake the loop
/// for nothing after every keepalive (tokio's UdpSocket watches both).
pub struct LinkSocket {
    socket: AsyncFd<std::net::UdpSocket>,
    /// Where our keepalives go.
    pub dest: SocketAddr,
}

impl LinkSocket {
    /// A datagram already queued, without waiting.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.get_ref().recv_from(buf)
    }

    /// Sends without waiting.
    pub fn try_send_to(&self, bytes: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.socket.get_ref().send_to(bytes, dest)
    }

    /// A datagram's length once one is there; `Pending` with the waker set until then.
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = match self.socket.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match guard.try_io(|s| s.get_ref().recv_from(buf)) {
                Ok(r) => return Poll::Ready(r.map(|(n, _)| n)),
                // Readiness was stale (cleared by try_io): poll again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Opens a link's socket; the error names the link and what failed.
pub fn open(link: &Link, local: usize) -> Result<LinkSocket, String> {
    let ctx = |what: &str, e: io::Error| {
        format!(
            "link {} ({} on {}): {what}: {e}",
            link.name,
            link.kind.name(),
            link.interface
        )
    };
    let (bind, dest, family) = match &link.kind {
        LinkKind::Ucast { addresses } => {
            let own = addresses[local];
            let peer = addresses[1 - local];
            let domain = if own.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
            (
                SocketAddr::new(own, link.port),
                SocketAddr::new(peer, link.port),
                domain,
            )
        }
        LinkKind::Bcast => {
            let bcast = broadcast_address(&link.interface).ok_or_else(|| {
                format!(
                    "link {}: interface {} has no IPv4 broadcast address; give it one (`ip addr add ADDR/LEN brd + dev {}`) or use a ucast or mcast link",
                    link.name, link.interface, link.interface
                )
            })?;
            (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), link.port),
                SocketAddr::new(IpAddr::V4(bcast), link.port),
                Domain::IPV4,
            )
        }
        LinkKind::Mcast { group, .. } => (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), link.port),
            SocketAddr::new(IpAddr::V4(*group), link.port),
            Domain::IPV4,
        ),
    };
    let s = Socket::new(family, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| ctx("socket", e))?;
    // Several links may share a port on different interfaces.
    s.set_reuse_address(true).map_err(|e| ctx("SO_REUSEADDR", e))?;
    s.bind_device(Some(link.interface.as_bytes())).map_err(|e| {
        ctx(
            "SO_BINDTODEVICE (does the interface exist? pairbeatd must run as root)",
            e,
        )
    })?;
    match &link.kind {
        LinkKind::Bcast => s.set_broadcast(true).map_err(|e| ctx("SO_BROADCAST", e))?,
        LinkKind::Mcast { group, ttl, loopback } => {
            let ifindex =
                nix::net::if_::if_nametoindex(link.interface.as_str()).map_err(|e| ctx("interface index", e.into()))?;
            s.join_multicast_v4_n(group, &socket2::InterfaceIndexOrAddress::Index(ifindex))
                .map_err(|e| ctx("joining the group", e))?;
            // SO_BINDTODEVICE already routes our sends out of this NIC; naming its address
            // as IP_MULTICAST_IF as well keeps the source address right.
            if let Some(addr) = interface_ipv4(&link.interface) {
                s.set_multicast_if_v4(&addr).map_err(|e| ctx("IP_MULTICAST_IF", e))?;
            }
            s.set_multicast_ttl_v4(*ttl as u32)
                .map_err(|e| ctx("IP_MULTICAST_TTL", e))?;
            s.set_multicast_loop_v4(*loopback)
                .map_err(|e| ctx("IP_MULTICAST_LOOP", e))?;
        }
        LinkKind::Ucast { .. } => {}
    }
    // Keepalives are tiny; a modest buffer rides out a burst without hoarding memory.
    let _ = s.set_recv_buffer_size(256 * 1024);
    s.bind(&bind.into()).map_err(|e| ctx(&format!("bind {bind}"), e))?;
    s.set_nonblocking(true).map_err(|e| ctx("non-blocking", e))?;
    let std_socket: std::net::UdpSocket = s.into();
    // SAFETY: the UdpSocket owns its descriptor and returns the same one for as long
    // as it lives, which is as long as the AsyncFd that owns it.
    let socket = unsafe { AsyncFd::register_with_interest(std_socket, Interest::READABLE) }
        .map_err(|e| ctx("tokio", e.into_parts().1))?;
    Ok(LinkSocket { socket, dest })
}

/// An IPv4 address configured on an interface.
fn interface_ipv4(interface: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if ifa.interface_name != interface {
            return None;
        }
        ifa.address.as_ref()?.as_sockaddr_in().map(|a| a.ip())
    })
}

/// The IPv4 broadcast address configured on an interface. For an address added
/// without `brd`, getifaddrs reports the address itself (or 0.0.0.0), which would
/// send our keepalives to ourselves: that counts as none.
fn broadcast_address(interface: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if ifa.interface_name != interface {
            return None;
        }
        let own = ifa.address.as_ref()?.as_sockaddr_in()?.ip();
        let ip = ifa.broadcast.as_ref()?.as_sockaddr_in()?.ip();
        (!ip.is_unspecified() && ip != own).then_some(ip)
    })
}
