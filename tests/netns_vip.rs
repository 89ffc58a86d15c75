//! `builtin:vip` for real: two network-namespace hosts and a client on one LAN, a
//! group of two built-in virtual IPs (IPv4 with a label; IPv6 with its interface
//! and prefix found from the host's own address, as IPaddr2's findif does), run
//! by pairbeatd. The address is on the owner's interface (netlink) and nowhere
//! else; after the owner's crash the survivor adds it and announces it: the
//! client's neighbour cache moves to the survivor's MAC with no traffic of the
//! client's (the gratuitous ARP and the unsolicited neighbour advertisement did
//! it); a switchover removes it from the old owner and announces it from the new
//! one. `config check` names an interface the host does not have.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{pairbeat_config_with, wait_for, Net};

const TIMING: &str = "keepalive = \"100ms\"\ndeadtime = \"500ms\"\ninitdead = \"2s\"";

fn node(h: usize) -> &'static str {
    ["alpha", "bravo"][h]
}

struct Lab {
    net: Net,
    vip4: String,
    vip6: String,
    pairbeatd: [Option<u32>; 2],
    starts: u32,
}

impl Lab {
    fn new() -> Lab {
        let net = Net::lan(3);
        let vip4 = format!("10.200.{}.100", net.id);
        let vip6 = format!("fd00:{}::100", net.id);
        for h in 0..3 {
            let out = net.exec(
                h,
                &format!("ip -6 addr add fd00:{}::{}/64 dev pb0 nodad", net.id, h + 1),
            );
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        for h in 0..2 {
            let extra = format!(
                r#"realtime = false

[failover]
preferred_node = "alpha"
auto_failback = false

[group]
id = "vips"

[[group.resource]]
id = "vip4"
agent = "builtin:vip"
params = {{ ip = "{vip4}", cidr_netmask = "24", nic = "pb0", label = "pb0:svc", arp_count = "3", arp_interval = "100" }}
op = [{{ name = "monitor", interval = "1s", timeout = "5s" }}]

[[group.resource]]
id = "vip6"
agent = "builtin:vip"
params = {{ ip = "{vip6}" }}
op = [{{ name = "monitor", interval = "1s", timeout = "5s" }}]
"#
            );
            pairbeat_config_with(&net, h, &["ucast"], TIMING, &extra);
        }
        let mut lab = Lab {
            net,
            vip4,
            vip6,
            pairbeatd: [None, None],
            starts: 0,
        };
        for h in 0..2 {
            lab.start(h);
        }
        lab
    }

    fn conf(&self, h: usize) -> String {
        self.net.path(node(h)).join("pairbeat.toml").display().to_string()
    }

    fn start(&mut self, h: usize) {
        let log = self.net.path(&format!("{}.pairbeatd.{}.log", node(h), self.starts));
        self.starts += 1;
        let conf = self.conf(h);
        self.pairbeatd[h] = Some(self.net.spawn(
            h,
            Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
            &["-c", &conf, "--node", node(h)],
            &log,
        ));
    }

    fn sh(&self, h: usize, cmd: &str) -> String {
        let out = self.net.exec(h, cmd);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The addresses on host h's pb0, as `ip -o addr` lists them.
    fn addrs(&self, h: usize) -> String {
        self.sh(h, "ip -o addr show dev pb0")
    }

    fn has_vips(&self, h: usize) -> bool {
        let a = self.addrs(h);
        a.contains(&format!(" {}/24 ", self.vip4)) && a.contains(&format!(" {}/64 ", self.vip6))
    }

    fn mac(&self, h: usize) -> String {
        let link = self.sh(h, "ip -o link show pb0");
        link.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .expect("pb0 has a MAC")
            .to_string()
    }

    /// A TCP connection from the client to `ip` (port 9, closed) is answered,
    /// refused by whoever holds the address: it is reachable.
    fn client_reaches(&self, ip: &str) -> bool {
        let family = if ip.contains(':') { "AF_INET6" } else { "AF_INET" };
        let py = format!(
            "import socket,sys; s=socket.socket(socket.{family}); s.settimeout(2); sys.exit(0 if s.connect_ex(('{ip}', 9)) in (0, 111) else 1)"
        );
        self.net.exec(2, &format!("python3 -c \"{py}\"")).status.success()
    }

    /// The MAC the client's neighbour cache has for `ip`, if any.
    fn client_neighbour(&self, ip: &str) -> Option<String> {
        let line = self.sh(2, &format!("ip neigh show {ip} dev pb0"));
        line.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    }

    fn status(&self, h: usize) -> Option<serde_json::Value> {
        common::status(&self.net.path(node(h)).join("pb.sock"))
    }

    #[track_caller]
    fn until(&self, what: &str, limit: Duration, f: impl FnMut() -> bool) -> Duration {
        wait_for(limit, f).unwrap_or_else(|| panic!("{what} within {limit:?}:\n{}", self.net.logs()))
    }
}

#[test]
fn a_builtin_vip_moves_with_the_group_and_announces_itself() {
    let mut lab = Lab::new();
    lab.until("the group on alpha", Duration::from_secs(20), || {
        lab.status(0).is_some_and(|s| s["group"]["owner"] == "alpha")
    });
    assert!(lab.has_vips(0), "alpha: {}", lab.addrs(0));
    assert!(!lab.has_vips(1), "bravo: {}", lab.addrs(1));
    // The label, and the broadcast address `brd +` would give.
    let a = lab.addrs(0);
    assert!(
        a.contains(&format!("inet {}/24 brd 10.200.{}.255", lab.vip4, lab.net.id)) && a.contains("pb0:svc"),
        "{a}"
    );
    let s = lab.status(0).unwrap();
    let agents: Vec<&str> = s["group"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["agent"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(agents, ["builtin:vip", "builtin:vip"], "{s}");

    // The client talks to both VIPs: its neighbour cache holds alpha's MAC.
    let (alpha, bravo) = (lab.mac(0), lab.mac(1));
    assert!(lab.client_reaches(&lab.vip4) && lab.client_reaches(&lab.vip6));
    assert_eq!(lab.client_neighbour(&lab.vip4).as_deref(), Some(alpha.as_str()));
    assert_eq!(lab.client_neighbour(&lab.vip6).as_deref(), Some(alpha.as_str()));

    // alpha loses power: its daemon dies, its addresses go with it.
    let t = Instant::now();
    lab.net.kill9(lab.pairbeatd[0].take().unwrap());
    lab.net.exec(
        0,
        &format!(
            "ip addr del {}/24 dev pb0; ip addr del {}/64 dev pb0",
            lab.vip4, lab.vip6
        ),
    );
    lab.until("both VIPs on bravo", Duration::from_secs(10), || lab.has_vips(1));
    let up = t.elapsed();
    // No traffic from the client: only the announcements can have moved its cache.
    let moved = lab.until("the client's cache moved to bravo", Duration::from_secs(5), || {
        lab.client_neighbour(&lab.vip4).as_deref() == Some(bravo.as_str())
            && lab.client_neighbour(&lab.vip6).as_deref() == Some(bravo.as_str())
    });
    eprintln!(
        "crash -> VIPs up on bravo {} ms; the client's neighbour cache on bravo's MAC {} ms later",
        up.as_millis(),
        moved.as_millis()
    );
    assert!(lab.client_reaches(&lab.vip4) && lab.client_reaches(&lab.vip6));

    // alpha back: the group stays on bravo; a standby there moves it, and the
    // addresses leave bravo and are announced from alpha.
    lab.start(0);
    lab.until("alpha back, the group on bravo", Duration::from_secs(20), || {
        lab.status(0).is_some_and(|s| s["group"]["owner"] == "bravo")
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args(["-s", lab.net.path("bravo").join("pb.sock").to_str().unwrap(), "standby"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lab.until("both VIPs on alpha, none on bravo", Duration::from_secs(10), || {
        lab.has_vips(0) && !lab.addrs(1).contains(&lab.vip4) && !lab.addrs(1).contains(&lab.vip6)
    });
    lab.until("the client's cache back on alpha", Duration::from_secs(5), || {
        lab.client_neighbour(&lab.vip4).as_deref() == Some(alpha.as_str())
            && lab.client_neighbour(&lab.vip6).as_deref() == Some(alpha.as_str())
    });
}

#[test]
fn config_check_names_an_interface_this_host_does_not_have() {
    let lab = Lab::new();
    let conf = lab.conf(0);
    let bad = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("nic = \"pb0\"", "nic = \"pb9\"");
    let path = lab.net.path("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let out = lab.net.exec(
        0,
        &format!(
            "{} config check {} --node alpha 2>&1",
            env!("CARGO_BIN_EXE_pairbeat"),
            path.display()
        ),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "accepted: {text}");
    assert!(
        text.contains("interface `pb9` does not exist on this host") && text.contains("pb0"),
        "{text}"
    );
    // The good one passes, on the host that has the interface.
    let out = lab.net.exec(
        0,
        &format!(
            "{} config check {conf} --node alpha 2>&1",
            env!("CARGO_BIN_EXE_pairbeat")
        ),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
