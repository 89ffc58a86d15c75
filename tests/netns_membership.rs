//! Two real pairbeatd hosts in network namespaces, joined by two veth pairs
//! (two links): they find each other within initdead, a link taken down is
//! reported dead while the node stays up, and after `kill -9` of one daemon the
//! other reports it dead within keepalive + deadtime. Measured times are printed.

mod common;

use std::time::Duration;

use common::{pairbeat_config, pairbeat_config_with, status, wait_for, Net};

const TIMING: &str = "keepalive = \"100ms\"\nwarntime = \"250ms\"\ndeadtime = \"500ms\"\ninitdead = \"3s\"";

fn start(net: &mut Net, h: usize) -> (u32, std::path::PathBuf) {
    let conf = pairbeat_config(net, h, TIMING, "realtime = false");
    let node = ["alpha", "bravo"][h];
    let log = net.path(&format!("{node}.log"));
    let pid = net.spawn(
        h,
        std::path::Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
        &["-c", conf.to_str().unwrap(), "--node", node],
        &log,
    );
    (pid, net.path(node).join("pb.sock"))
}

fn peer_state(sock: &std::path::Path) -> String {
    status(sock)
        .map(|s| {
            let local = s["local_node"].clone();
            s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] != local)
                .unwrap()["state"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap_or_default()
}

fn link_state(sock: &std::path::Path, i: usize) -> String {
    status(sock)
        .map(|s| s["links"][i]["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn two_hosts_see_each_other_notice_a_dead_link_and_a_killed_peer() {
    let mut net = Net::new(2);
    let (_a, sock_a) = start(&mut net, 0);
    let (b, sock_b) = start(&mut net, 1);

    let seen = wait_for(Duration::from_secs(3), || {
        peer_state(&sock_a) == "online" && peer_state(&sock_b) == "online"
    });
    let logs = || {
        format!(
            "{}\n{}",
            std::fs::read_to_string(net.path("alpha.log")).unwrap_or_default(),
            std::fs::read_to_string(net.path("bravo.log")).unwrap_or_default()
        )
    };
    let seen = seen.unwrap_or_else(|| panic!("the nodes did not see each other within initdead (3s):\n{}", logs()));
    println!("both nodes online after {} ms", seen.as_millis());
    assert!(wait_for(Duration::from_secs(1), || link_state(&sock_a, 0) == "up"
        && link_state(&sock_a, 1) == "up")
    .is_some());
    let s = status(&sock_a).unwrap();
    assert!(s["packets"]["accepted"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["packets"]["forged"], 0);

    // Link 1 down on alpha: that link dies, the node stays online through link 0.
    common::sh(&format!("ip -n {} link set pb1 down", net.ns[0]));
    let t =
        wait_for(Duration::from_secs(2), || link_state(&sock_a, 1) == "dead").expect("link ring1 not reported dead");
    println!("link down reported dead after {} ms (deadtime 500 ms)", t.as_millis());
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(peer_state(&sock_a), "online", "one dead link must not kill the node");
    assert_eq!(link_state(&sock_a, 0), "up");
    common::sh(&format!("ip -n {} link set pb1 up", net.ns[0]));
    let t = wait_for(Duration::from_secs(3), || link_state(&sock_a, 1) == "up").expect("link ring1 did not come back");
    println!("link back up after {} ms", t.as_millis());

    // kill -9 bravo's daemon: alpha must call it dead within keepalive + deadtime.
    net.kill9(b);
    let t = wait_for(Duration::from_secs(5), || peer_state(&sock_a) == "offline").expect("bravo never reported dead");
    println!(
        "kill -9 of bravo detected after {} ms (keepalive 100 + deadtime 500 = 600 ms)",
        t.as_millis()
    );
    assert!(
        t >= Duration::from_millis(400),
        "detected in {t:?}: earlier than deadtime allows"
    );
    // 600 ms by the protocol, plus slack for a shared, noisy CI machine and our 5 ms polling.
    assert!(
        t <= Duration::from_millis(600 + 300),
        "detected in {t:?}; the bound is keepalive + deadtime"
    );
    let log = std::fs::read_to_string(net.path("alpha.log")).unwrap();
    assert!(log.contains("Node bravo is dead"), "{log}");
    assert!(log.contains("Link bravo:ring1 dead"), "{log}");
}

#[test]
fn a_restarted_peer_is_recognised_by_its_new_generation() {
    let mut net = Net::new(1);
    let (_a, sock_a) = start(&mut net, 0);
    let (b, _) = start(&mut net, 1);
    assert!(wait_for(Duration::from_secs(3), || peer_state(&sock_a) == "online").is_some());
    net.kill9(b);
    let (_b2, _) = start(&mut net, 1);
    assert!(
        wait_for(Duration::from_secs(3), || {
            std::fs::read_to_string(net.path("alpha.log"))
                .unwrap_or_default()
                .contains("Node bravo restarted (generation")
        })
        .is_some(),
        "{}",
        std::fs::read_to_string(net.path("alpha.log")).unwrap_or_default()
    );
    assert_eq!(peer_state(&sock_a), "online");
    // The generation file moved on by one.
    let g = std::fs::read_to_string(net.path("bravo").join("state/generation")).unwrap();
    assert!(g.trim().parse::<u64>().is_ok() && g.len() == 16, "{g:?}");
}

#[test]
fn forged_and_replayed_packets_are_counted_and_change_nothing() {
    let mut net = Net::new(1);
    let (_a, sock_a) = start(&mut net, 0);
    let (b, _) = start(&mut net, 1);
    assert!(wait_for(Duration::from_secs(3), || peer_state(&sock_a) == "online").is_some());
    // Capture one of bravo's real packets on alpha's side (as an attacker on the wire would).
    let capture = net.exec(0, &format!(
        "timeout 2 python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP); \
         import sys; \
         [sys.stdout.write(p[28:].hex()+'\\n') and sys.exit(0) for p in iter(lambda: s.recv(65535), b'') if p[22:24]==(694).to_bytes(2,'big') and p[12:16]==bytes([10,200,{id},2])]\"",
        id = net.id
    ));
    let pkt = String::from_utf8_lossy(&capture.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    assert!(
        !pkt.is_empty(),
        "no packet captured: {}",
        String::from_utf8_lossy(&capture.stderr)
    );
    net.kill9(b);
    assert!(wait_for(Duration::from_secs(2), || peer_state(&sock_a) == "offline").is_some());
    // From bravo's address: the captured packet again, and one with its last byte changed.
    // Change the digest's last hex digit (the byte before the closing ',').
    let mut forged = pkt.clone();
    let at = forged.len() - 4;
    let digit = if &forged[at..at + 2] == "30" { "31" } else { "30" };
    forged.replace_range(at..at + 2, digit);
    let send = |hex: &str| {
        net.exec(1, &format!(
            "python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{src}', 0)); [s.sendto(bytes.fromhex('{hex}'), ('{dst}', 694)) for _ in range(5)]\"",
            src = net.addr(1, 0), dst = net.addr(0, 0)
        ))
    };
    for p in [&pkt, &forged] {
        let out = send(p);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let counted = wait_for(Duration::from_secs(2), || {
        // A replay inside the last 256 sequence numbers is indistinguishable from a
        // link's second copy: it is counted as a duplicate, and refreshes nothing.
        status(&sock_a).is_some_and(|s| {
            let p = &s["packets"];
            p["replayed"].as_u64().unwrap() + p["duplicates"].as_u64().unwrap() >= 5 && p["forged"].as_u64() >= Some(5)
        })
    });
    assert!(counted.is_some(), "{}", status(&sock_a).unwrap()["packets"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        peer_state(&sock_a),
        "offline",
        "replayed packets must not revive a dead peer"
    );
    let log = std::fs::read_to_string(net.path("alpha.log")).unwrap();
    assert!(
        log.contains("authentication failed (5 in the last 10s)")
            || log.contains("authentication failed (1 in the last 10s)"),
        "{log}"
    );
}

#[test]
fn bcast_and_mcast_links_carry_keepalives_too() {
    let mut net = Net::new(2);
    let mut socks = Vec::new();
    for h in 0..2 {
        let conf = pairbeat_config_with(&net, h, &["bcast", "mcast"], TIMING, "realtime = false");
        let node = ["alpha", "bravo"][h];
        let log = net.path(&format!("{node}.log"));
        net.spawn(
            h,
            std::path::Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
            &["-c", conf.to_str().unwrap(), "--node", node],
            &log,
        );
        socks.push(net.path(node).join("pb.sock"));
    }
    let up = wait_for(Duration::from_secs(3), || {
        (0..2).all(|h| link_state(&socks[h], 0) == "up" && link_state(&socks[h], 1) == "up")
    });
    let logs = format!(
        "{}\n{}",
        std::fs::read_to_string(net.path("alpha.log")).unwrap_or_default(),
        std::fs::read_to_string(net.path("bravo.log")).unwrap_or_default()
    );
    assert!(up.is_some(), "bcast and mcast links not both up on both nodes:\n{logs}");
    // Each node hears its own bcast/mcast packets too; those must not count as the peer.
    let s = status(&socks[0]).unwrap();
    assert_eq!(s["packets"]["unknown_node"], 0, "{}", s["packets"]);
    assert_eq!(peer_state(&socks[0]), "online");
}

#[test]
fn a_bcast_link_without_a_broadcast_address_is_refused_clearly() {
    let mut net = Net::new(1);
    common::sh(&format!(
        "ip -n {} addr flush dev pb0 && ip -n {} addr add {}/24 dev pb0",
        net.ns[0],
        net.ns[0],
        net.addr(0, 0)
    ));
    let conf = pairbeat_config_with(&net, 0, &["bcast"], TIMING, "realtime = false");
    let log = net.path("alpha.log");
    let pid = net.spawn(
        0,
        std::path::Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
        &["-c", conf.to_str().unwrap(), "--node", "alpha"],
        &log,
    );
    let exit = net
        .wait_exit(pid, Duration::from_secs(5))
        .expect("pairbeatd kept running on an unusable link");
    assert!(!exit.success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("interface pb0 has no IPv4 broadcast address") && log.contains("brd +"),
        "{log}"
    );
}

/// BandwidthTest (Heartbeat's CTS): what heartbeating costs on the wire. Counted
/// by iptables in alpha's namespace over 5 s of steady state with both nodes up:
/// per link, one signed keepalive per `keepalive` (100 ms here) and nothing else;
/// the figures (packets and bits per second per link, bytes per packet) printed.
#[test]
fn heartbeat_traffic_is_one_packet_per_keepalive_per_link() {
    let mut net = Net::new(2);
    let (_a, sock_a) = start(&mut net, 0);
    let (_b, sock_b) = start(&mut net, 1);
    assert!(
        wait_for(Duration::from_secs(5), || peer_state(&sock_a) == "online"
            && peer_state(&sock_b) == "online")
        .is_some(),
        "the nodes did not see each other"
    );
    std::thread::sleep(Duration::from_secs(1)); // past the first adverts
    for l in 0..2 {
        common::sh(&format!(
            "ip netns exec {} iptables -I OUTPUT -o pb{l} -p udp",
            net.ns[0]
        ));
    }
    let t = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let out = common::sh(&format!("ip netns exec {} iptables -nvxL OUTPUT", net.ns[0]));
    let secs = t.elapsed().as_secs_f64();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    for l in 0..2 {
        let w: Vec<&str> = table
            .lines()
            .find(|line| line.split_whitespace().any(|w| w == format!("pb{l}")))
            .unwrap_or_else(|| panic!("no counter for pb{l}:\n{table}"))
            .split_whitespace()
            .collect();
        let (packets, bytes): (f64, f64) = (w[0].parse().unwrap(), w[1].parse().unwrap());
        let rate = packets / secs;
        println!(
            "link pb{l}: {rate:.1} packets/s, {:.0} bit/s, {:.0} bytes per packet (IP and UDP headers included)",
            bytes * 8.0 / secs,
            bytes / packets.max(1.0)
        );
        assert!(
            (8.0..=12.5).contains(&rate),
            "pb{l}: {rate:.1} packets/s where the keepalive makes 10:\n{table}"
        );
        assert!(
            bytes / packets.max(1.0) < 1024.0,
            "a keepalive of {} bytes",
            bytes / packets
        );
    }
}

/// Run time (ns, all threads) and resident KiB of a process.
fn cpu_and_rss(pid: u32) -> (u64, u64) {
    let mut ns = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        ns += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    (ns, rss)
}

/// Floods (the reliability campaign): forged packets — a captured keepalive of
/// bravo's with its digest changed, and garbage — sent from bravo's address to
/// alpha's port as fast as one thread in bravo's namespace can, for FLOOD_SECS
/// (default 10; `scripts/flood` runs 60), while the two daemons keepalive as
/// usual. No false failover (alpha never calls bravo dead), no late keepalive on
/// bravo's side (alpha's keepalives go out on time), alpha's status answers
/// throughout, every forged packet counted and none believed, alpha's memory
/// bounded; its CPU and the rate printed.
#[test]
fn a_flood_of_forged_packets_changes_nothing_and_costs_bounded_cpu() {
    let secs: u64 = std::env::var("FLOOD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut net = Net::new(1);
    let (a, sock_a) = start(&mut net, 0);
    let (_b, _) = start(&mut net, 1);
    assert!(wait_for(Duration::from_secs(3), || peer_state(&sock_a) == "online").is_some());
    let capture = net.exec(0, &format!(
        "timeout 2 python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP); \
         import sys; \
         [sys.stdout.write(p[28:].hex()+'\\n') and sys.exit(0) for p in iter(lambda: s.recv(65535), b'') if p[22:24]==(694).to_bytes(2,'big') and p[12:16]==bytes([10,200,{id},2])]\"",
        id = net.id
    ));
    let hex = String::from_utf8_lossy(&capture.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    assert!(
        !hex.is_empty(),
        "no packet captured: {}",
        String::from_utf8_lossy(&capture.stderr)
    );
    let mut forged: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let at = forged.len() - 2; // the digest's last hex digit, before the closing ','
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    let (src, dst) = (net.addr(1, 0), net.addr(0, 0));
    let netns = format!("/proc/{}/ns/net", net.holder_pid(1));
    std::thread::sleep(Duration::from_secs(1));
    let before = status(&sock_a).unwrap()["packets"]["forged"].as_u64().unwrap();
    let (cpu0, rss0) = cpu_and_rss(a);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // This thread alone enters bravo's network namespace.
            let f = std::fs::File::open(&netns).unwrap();
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let s = std::net::UdpSocket::bind((src.as_str(), 0)).unwrap();
            s.connect((dst.as_str(), 694)).unwrap();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..64 {
                    let p = if sent % 4 == 3 { &garbage } else { &forged };
                    if s.send(p).is_ok() {
                        sent += 1;
                    }
                }
            }
            sent
        })
    };
    let t = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    while t.elapsed() < Duration::from_secs(secs) {
        let asked = std::time::Instant::now();
        assert_eq!(peer_state(&sock_a), "online", "a false failover under the flood");
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    let took = t.elapsed().as_secs_f64();
    let (cpu1, rss1) = cpu_and_rss(a);
    std::thread::sleep(Duration::from_millis(500));
    let p = status(&sock_a).unwrap()["packets"].clone();
    let counted = p["forged"].as_u64().unwrap() - before;
    let alpha_log = std::fs::read_to_string(net.path("alpha.log")).unwrap_or_default();
    let bravo_log = std::fs::read_to_string(net.path("bravo.log")).unwrap_or_default();
    println!(
        "flood: {sent} packets in {took:.1} s ({:.0}/s) from one thread; alpha counted {counted} forged ({p}); alpha used {:.1} % of a core; RSS {rss0} -> {rss1} KiB; slowest status answer {} ms",
        sent as f64 / took,
        (cpu1 - cpu0) as f64 / 1e7 / took,
        slowest.as_millis()
    );
    assert!(sent > 10_000, "the flood was no flood: {sent} packets");
    assert!(counted > 0, "forged packets counted: {p}");
    assert_eq!(peer_state(&sock_a), "online");
    assert!(!alpha_log.contains("Node bravo is dead"), "{alpha_log}");
    assert!(
        !bravo_log.contains("Late heartbeat"),
        "alpha's keepalives were late:\n{bravo_log}"
    );
    assert!(rss1 <= rss0 + 2048, "alpha's memory grew from {rss0} to {rss1} KiB");
    assert!(
        slowest < Duration::from_secs(1),
        "status took {slowest:?} under the flood"
    );
}

/// Floods of the control socket (the reliability campaign): 200 clients that
/// connect and say nothing, one that sends a 100 MiB line, and eight that ask for
/// status as fast as they can for FLOOD_SECS (default 10; `scripts/flood` runs
/// 60), while the two daemons keepalive. Every status request is answered (the
/// silent clients give their slots up to newcomers), the long line is refused
/// after the limit without being read whole, alpha's keepalives stay on time (no
/// late keepalive on bravo's side, no false failover) and its memory bounded.
#[test]
fn a_control_socket_flood_leaves_keepalives_on_time() {
    use std::io::{BufRead, Read, Write};
    use std::os::unix::net::UnixStream;
    let secs: u64 = std::env::var("FLOOD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut net = Net::new(1);
    let (a, sock_a) = start(&mut net, 0);
    let (_b, _) = start(&mut net, 1);
    assert!(wait_for(Duration::from_secs(3), || peer_state(&sock_a) == "online").is_some());
    let (cpu0, rss0) = cpu_and_rss(a);
    let silent: Vec<UnixStream> = (0..200).map(|_| UnixStream::connect(&sock_a).unwrap()).collect();
    let long = {
        let sock = sock_a.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&sock).unwrap();
            let chunk = vec![b'x'; 1 << 20];
            let mut written = 0usize;
            while written < 100 << 20 {
                match s.write(&chunk) {
                    Ok(n) => written += n,
                    Err(_) => break,
                }
            }
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            (written, answer)
        })
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let askers: Vec<_> = (0..8)
        .map(|_| {
            let (sock, stop) = (sock_a.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer = UnixStream::connect(&sock).and_then(|mut s| {
                        s.write_all(b"{\"command\":\"status\"}\n")?;
                        let mut line = String::new();
                        std::io::BufReader::new(s).read_line(&mut line)?;
                        Ok(line)
                    });
                    match answer {
                        Ok(l) if l.starts_with("{\"ok\":true") => ok += 1,
                        other => failed.push(format!("{other:?}").chars().take(200).collect::<String>()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let t = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for h in askers {
        let (o, f) = h.join().unwrap();
        ok += o;
        failed.extend(f);
    }
    let took = t.elapsed().as_secs_f64();
    let (written, answer) = long.join().unwrap();
    drop(silent);
    let (cpu1, rss1) = cpu_and_rss(a);
    let bravo_log = std::fs::read_to_string(net.path("bravo.log")).unwrap_or_default();
    let alpha_log = std::fs::read_to_string(net.path("alpha.log")).unwrap_or_default();
    println!(
        "control flood: {ok} status answers in {took:.1} s ({:.0}/s) beside 200 silent clients; the long line cut after {} KiB; alpha used {:.1} % of a core; RSS {rss0} -> {rss1} KiB",
        ok as f64 / took,
        written >> 10,
        (cpu1 - cpu0) as f64 / 1e7 / took
    );
    assert!(
        failed.is_empty(),
        "{} requests failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 100, "only {ok} answers");
    assert!(written < 100 << 20, "the daemon read the whole 100 MiB line");
    assert!(answer.contains("longer than"), "the long line's answer: {answer:?}");
    assert!(
        !bravo_log.contains("Late heartbeat"),
        "alpha's keepalives were late:\n{bravo_log}"
    );
    assert!(!alpha_log.contains("Node bravo is dead"), "{alpha_log}");
    assert_eq!(peer_state(&sock_a), "online");
    assert!(rss1 <= rss0 + 4096, "alpha's memory grew from {rss0} to {rss1} KiB");
}
