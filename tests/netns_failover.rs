//! Two hosts and a client on one LAN (network namespaces on a bridge), each host with
//! its own loop-backed ext4 disk, running the group Filesystem → IPaddr2 (the VIP) →
//! a real HTTP server on the VIP. The client fetches a file that names the host it
//! came from, so every move of the group is seen — and timed — from outside.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{pairbeat_config_with, status, wait_for, Net};

const TIMING: &str = "keepalive = \"100ms\"\nwarntime = \"250ms\"\ndeadtime = \"500ms\"\ninitdead = \"2s\"";
const NODES: [&str; 2] = ["alpha", "bravo"];

struct Lab {
    net: Net,
    vip: String,
    pids: [Option<u32>; 2],
    runs: usize,
}

fn lab(auto_failback: bool) -> Lab {
    lab_with(auto_failback, 1)
}

/// With `links` heartbeat links: the LAN (pb0), then direct veth pairs (pb1, ...).
fn lab_with(auto_failback: bool, links: usize) -> Lab {
    let mut net = Net::lan(3);
    for i in 1..links {
        net.veth(0, 1, i);
    }
    let vip = format!("10.200.{}.100", net.id);
    let root = common::ocf_root(net.dir.path()).display().to_string();
    for (h, node) in NODES.iter().enumerate() {
        let dev = net.loop_ext4(16);
        let mnt = net.path(&format!("{node}-mnt")).display().to_string();
        std::fs::create_dir_all(&mnt).unwrap();
        // Each disk says whose it is.
        let out = net.exec(
            h,
            &format!("mount {dev} {mnt} && echo 'served by {node}' > {mnt}/who.txt && umount {mnt}"),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let pidfile = net.path(&format!("{node}-http.pid")).display().to_string();
        let extra = format!(
            r#"realtime = false
ocf_root = "{root}"

[failover]
preferred_node = "alpha"
auto_failback = {auto_failback}

{group}"#,
            group = common::web_group(&dev, &mnt, &vip, &pidfile)
        );
        pairbeat_config_with(&net, h, &vec!["ucast"; links], TIMING, &extra);
    }
    Lab {
        net,
        vip,
        pids: [None, None],
        runs: 0,
    }
}

impl Lab {
    fn start(&mut self, h: usize) {
        let node = NODES[h];
        self.runs += 1;
        let conf = self.net.path(node).join("pairbeat.toml");
        let log = self.net.path(&format!("{node}.{}.log", self.runs));
        let pid = self.net.spawn(
            h,
            Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
            &["-c", conf.to_str().unwrap(), "--node", node],
            &log,
        );
        self.pids[h] = Some(pid);
    }

    fn sock(&self, h: usize) -> std::path::PathBuf {
        self.net.path(NODES[h]).join("pb.sock")
    }

    fn owner(&self, h: usize) -> Option<String> {
        status(&self.sock(h)).and_then(|s| s["group"]["owner"].as_str().map(str::to_string))
    }

    /// Who the client reaches through the VIP, if anyone.
    fn client_reaches(&self) -> Option<String> {
        let out = self
            .net
            .exec(2, &format!("curl -s -m 1 http://{}:8080/who.txt", self.vip));
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        text.strip_prefix("served by ").map(str::to_string)
    }

    fn pairbeat(&self, h: usize, cmd: &str) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .arg("-s")
            .arg(self.sock(h))
            .arg(cmd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs(&self) -> String {
        self.net.logs()
    }

    /// Waits until the client is served by `node` and both daemons agree it owns the group.
    fn served_by(&self, node: &str, limit: Duration) -> Duration {
        wait_for(limit, || {
            self.client_reaches().as_deref() == Some(node)
                && (0..2).all(|h| self.pids[h].is_none() || self.owner(h).as_deref() == Some(node))
        })
        .unwrap_or_else(|| panic!("not served by {node} within {limit:?}:\n{}", self.logs()))
    }

    /// Both daemons signalled, the standby's first (so the owner's handover finds
    /// it already gone or leaving); waits up to `limit` for each to exit and returns
    /// how each ended (`None`: still running).
    fn signal_both(&mut self, sig: nix::sys::signal::Signal, limit: Duration) -> [Option<std::process::ExitStatus>; 2] {
        let pids = [self.pids[0].take().unwrap(), self.pids[1].take().unwrap()];
        self.net.signal(pids[1], sig);
        self.net.signal(pids[0], sig);
        pids.map(|pid| self.net.wait_exit(pid, limit))
    }

    /// kill -9 of a host's pairbeatd and service, and its addresses gone, as a dead
    /// host's would be; its disk unmounted, as after the reboot that follows.
    fn crash(&mut self, h: usize) {
        let node = NODES[h];
        if let Some(pid) = self.pids[h].take() {
            self.net.kill9(pid);
        }
        let pidfile = self.net.path(&format!("{node}-http.pid"));
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        self.net.exec(
            h,
            &format!(
                "ip addr del {}/24 dev pb0; umount -l {}",
                self.vip,
                self.net.path(&format!("{node}-mnt")).display()
            ),
        );
    }
}

#[test]
fn failover_standby_sigterm_and_no_failback() {
    let mut lab = lab(false);
    lab.start(0);
    lab.start(1);
    // Cold start of both: the preferred node runs the group.
    let t = lab.served_by("alpha", Duration::from_secs(20));
    println!("cold start: client served by alpha after {} ms", t.as_millis());

    // Crash of the active host.
    let t0 = Instant::now();
    lab.crash(0);
    lab.served_by("bravo", Duration::from_secs(20));
    println!(
        "crash of alpha: client served by bravo after {} ms (deadtime 500 ms + agents' start)",
        t0.elapsed().as_millis()
    );

    // alpha comes back: with auto_failback off the group stays on bravo.
    lab.start(0);
    assert!(wait_for(Duration::from_secs(5), || status(&lab.sock(0))
        .is_some_and(|s| s["nodes"][1]["state"] == "online"))
    .is_some());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lab.client_reaches().as_deref(),
        Some("bravo"),
        "auto_failback off must leave the group where it is:\n{}",
        lab.logs()
    );
    assert_eq!(
        lab.owner(0).as_deref(),
        Some("bravo"),
        "both nodes must tell the same story"
    );

    // pairbeat standby on bravo: the group moves to alpha without waiting for deadtime.
    let t0 = Instant::now();
    let said = lab.pairbeat(1, "standby");
    assert!(said.contains("standby"), "{said}");
    lab.served_by("alpha", Duration::from_secs(20));
    println!(
        "pairbeat standby on bravo: client served by alpha after {} ms",
        t0.elapsed().as_millis()
    );
    let s = status(&lab.sock(0)).unwrap();
    assert_eq!(s["nodes"][1]["state"], "standby", "{s}");
    lab.pairbeat(1, "online");

    // SIGTERM of alpha's pairbeatd: the group moves to bravo at once.
    let t0 = Instant::now();
    let pid = lab.pids[0].take().unwrap();
    lab.net.signal(pid, nix::sys::signal::Signal::SIGTERM);
    lab.served_by("bravo", Duration::from_secs(20));
    let moved = t0.elapsed();
    println!(
        "SIGTERM of alpha's pairbeatd: client served by bravo after {} ms",
        moved.as_millis()
    );
    assert!(
        lab.net
            .wait_exit(pid, Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "{}",
        lab.logs()
    );
    // Handed over, not failed over: bravo started because alpha reported the group
    // stopped, before alpha's silence (it exited) was even noticed.
    let bravo_log = std::fs::read_to_string(lab.net.path("bravo.2.log")).unwrap_or_default();
    let lines: Vec<&str> = bravo_log.lines().collect();
    let handover = lines
        .iter()
        .rposition(|l| l.contains("decision: run the group here: the peer is in standby, leaving or banned"));
    let death = lines.iter().rposition(|l| l.contains("Node alpha is dead"));
    assert!(handover.is_some() && handover < death, "{bravo_log}");

    // alpha returns (the group stays on bravo), then takes it back on request.
    lab.start(0);
    assert!(wait_for(Duration::from_secs(5), || status(&lab.sock(0))
        .is_some_and(|s| s["nodes"][1]["state"] == "online"))
    .is_some());
    let t0 = Instant::now();
    let said = lab.pairbeat(0, "takeover");
    assert!(said.contains("asked the peer"), "{said}");
    lab.served_by("alpha", Duration::from_secs(20));
    println!(
        "pairbeat takeover on alpha: client served by alpha after {} ms",
        t0.elapsed().as_millis()
    );
}

#[test]
fn auto_failback_returns_the_group_to_the_preferred_node() {
    let mut lab = lab(true);
    lab.start(0);
    lab.start(1);
    lab.served_by("alpha", Duration::from_secs(20));
    lab.crash(0);
    lab.served_by("bravo", Duration::from_secs(20));
    let t0 = Instant::now();
    lab.start(0);
    lab.served_by("alpha", Duration::from_secs(30));
    println!(
        "auto_failback: alpha restarted, client served by alpha again after {} ms (initdead 2 s)",
        t0.elapsed().as_millis()
    );
}

/// SIGSTOP of the standby's pairbeatd for three deadtimes, then SIGCONT: on resume it
/// reads the keepalives its sockets hold before it believes any deadline, so it
/// takes no action against the live active node: no "dead" verdict, no start, and
/// the client is served by alpha throughout.
#[test]
fn a_paused_standby_takes_no_action_against_a_live_peer() {
    let mut lab = lab(false);
    lab.start(0);
    lab.start(1);
    lab.served_by("alpha", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    let bravo = lab.pids[1].unwrap();
    for round in 0..3 {
        lab.net.signal(bravo, nix::sys::signal::Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(1500));
        lab.net.signal(bravo, nix::sys::signal::Signal::SIGCONT);
        // Past two keepalives and more: whatever it would do, it has done.
        let watch = Instant::now();
        while watch.elapsed() < Duration::from_millis(1500) {
            assert_eq!(
                lab.client_reaches().as_deref(),
                Some("alpha"),
                "round {round}: the client must stay on alpha:\n{}",
                lab.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(lab.owner(1).as_deref(), Some("alpha"), "{}", lab.logs());
    let log = std::fs::read_to_string(lab.net.path("bravo.2.log")).unwrap_or_default();
    assert!(
        log.contains("not scheduled for"),
        "the pause is noticed and said:\n{log}"
    );
    assert!(
        !log.contains("Node alpha is dead"),
        "a paused standby declared alpha dead:\n{log}"
    );
    assert!(
        !log.contains("decision: run the group here"),
        "a paused standby decided to take over:\n{log}"
    );
}

/// SIGSTOP of the active node's pairbeatd for six deadtimes: to its peer that is a
/// dead node, and bravo takes the group over (alpha's resources, not its daemon,
/// run on: a split brain, as after a partition). After SIGCONT, alpha reads what
/// queued up, finds bravo running the group, and the split brain ends by the
/// policy: one node runs the group, both say so, the client is served by it, and
/// the VIP is on that node only.
#[test]
fn a_paused_active_node_is_taken_over_and_the_split_brain_ends_by_policy() {
    let mut lab = lab(false);
    lab.start(0);
    lab.start(1);
    lab.served_by("alpha", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    let alpha = lab.pids[0].unwrap();
    lab.net.signal(alpha, nix::sys::signal::Signal::SIGSTOP);
    let t = Instant::now();
    let took = wait_for(Duration::from_secs(20), || lab.owner(1).as_deref() == Some("bravo"))
        .unwrap_or_else(|| panic!("bravo did not take over from a paused alpha:\n{}", lab.logs()));
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t.elapsed()));
    lab.net.signal(alpha, nix::sys::signal::Signal::SIGCONT);
    let resumed = Instant::now();
    let vip_on = |h: usize| {
        let out = lab.net.exec(h, "ip -o addr show dev pb0");
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/", lab.vip))
    };
    let mut keeper = None;
    let ended = wait_for(Duration::from_secs(30), || {
        let owners = [lab.owner(0), lab.owner(1)];
        let Some(k) = owners[0].clone().filter(|o| owners[1].as_ref() == Some(o)) else {
            return false;
        };
        let h = NODES.iter().position(|n| *n == k).unwrap();
        keeper = Some(k.clone());
        vip_on(h) && !vip_on(1 - h) && lab.client_reaches().as_deref() == Some(k.as_str())
    });
    assert!(
        ended.is_some(),
        "the split brain did not end with one owner (owners {:?} / {:?}):\n{}",
        lab.owner(0),
        lab.owner(1),
        lab.logs()
    );
    let logs = lab.logs();
    assert!(logs.contains("SPLIT BRAIN"), "the split brain is said:\n{logs}");
    println!(
        "paused active: bravo took over {} ms after alpha's SIGSTOP; resumed after 3 s, the split brain ended {} ms later with {} running the group",
        took.as_millis(),
        resumed.elapsed().as_millis(),
        keeper.unwrap()
    );
}

/// RedundantpathTest (Heartbeat's CTS): two heartbeat links, the group running on
/// alpha; the direct link (pb1) is lost on alpha for eight deadtimes. Both nodes
/// report that link dead and each other online through the LAN, the client is
/// served by alpha throughout, and nobody decides anything; the link comes back.
#[test]
fn one_of_two_links_lost_with_the_group_running_moves_nothing() {
    let mut lab = lab_with(false, 2);
    lab.start(0);
    lab.start(1);
    lab.served_by("alpha", Duration::from_secs(20));
    let link = |lab: &Lab, h: usize, i: usize| {
        status(&lab.sock(h)).and_then(|s| s["links"][i]["state"].as_str().map(str::to_string))
    };
    assert!(
        wait_for(Duration::from_secs(3), || (0..2)
            .all(|h| link(&lab, h, 1).as_deref() == Some("up")))
        .is_some(),
        "both links up first:\n{}",
        lab.logs()
    );
    assert!(lab.net.exec(0, "ip link set pb1 down").status.success());
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            lab.client_reaches().as_deref(),
            Some("alpha"),
            "the client must stay on alpha:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (h, node) in NODES.iter().enumerate() {
        assert_eq!(link(&lab, h, 1).as_deref(), Some("dead"), "{node}:\n{}", lab.logs());
        assert_eq!(link(&lab, h, 0).as_deref(), Some("up"));
        assert_eq!(lab.owner(h).as_deref(), Some("alpha"), "{}", lab.logs());
    }
    assert!(lab.net.exec(0, "ip link set pb1 up").status.success());
    assert!(
        wait_for(Duration::from_secs(5), || (0..2)
            .all(|h| link(&lab, h, 1).as_deref() == Some("up")))
        .is_some(),
        "the link came back:\n{}",
        lab.logs()
    );
    let logs = lab.logs();
    assert!(!logs.contains("is dead: silent on every link"), "{logs}");
    assert!(!logs.contains("SPLIT BRAIN"), "{logs}");
    let bravo = std::fs::read_to_string(lab.net.path("bravo.2.log")).unwrap_or_default();
    assert!(!bravo.contains("decision: run the group here"), "{bravo}");
}

/// SimulStop (Heartbeat's and Pacemaker's CTS): SIGTERM to both daemons at once.
/// The group stops once, where it runs, and never starts on the other node (it is
/// leaving too, so it takes nothing the owner hands over); both exit 0, and nothing
/// of the group is left: no VIP, no mount, no server answering.
#[test]
fn both_daemons_stopped_at_once_stop_the_group_once_and_start_nothing() {
    let mut lab = lab(false);
    lab.start(0);
    lab.start(1);
    lab.served_by("alpha", Duration::from_secs(20));
    let exits = lab.signal_both(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30));
    for (h, exit) in exits.into_iter().enumerate() {
        assert!(
            exit.is_some_and(|s| s.success()),
            "{}'s pairbeatd did not exit 0 within 30 s:\n{}",
            NODES[h],
            lab.logs()
        );
    }
    let bravo_log = std::fs::read_to_string(lab.net.path("bravo.2.log")).unwrap_or_default();
    assert!(
        !bravo_log.contains("decision: run the group here"),
        "bravo, leaving, took the group alpha handed over:\n{bravo_log}"
    );
    for (h, node) in NODES.iter().enumerate() {
        let addrs = lab.net.exec(h, "ip -o addr show dev pb0");
        assert!(
            !String::from_utf8_lossy(&addrs.stdout).contains(&format!(" {}/", lab.vip)),
            "the VIP is left on {node}:\n{}",
            lab.logs()
        );
        let mnt = lab.net.path(&format!("{node}-mnt")).display().to_string();
        let mounts = lab.net.exec(h, "cat /proc/self/mountinfo");
        assert!(
            !String::from_utf8_lossy(&mounts.stdout).contains(&format!(" {mnt} ")),
            "{mnt} is left mounted on {node}:\n{}",
            lab.logs()
        );
    }
    assert_eq!(lab.client_reaches(), None, "a server still answers:\n{}", lab.logs());
}

/// Reattach (Pacemaker's CTS): both daemons leave with SIGINT, which leaves the
/// resources as they are, and start again: the group never stopped serving, the
/// owner's probes adopt what runs (the same server process), and neither node
/// starts or stops anything.
#[test]
fn both_daemons_restarted_with_sigint_reattach_to_the_running_group() {
    let mut lab = lab(false);
    lab.start(0);
    lab.start(1);
    lab.served_by("alpha", Duration::from_secs(20));
    let server = std::fs::read_to_string(lab.net.path("alpha-http.pid")).unwrap();
    let exits = lab.signal_both(nix::sys::signal::Signal::SIGINT, Duration::from_secs(10));
    for (h, exit) in exits.into_iter().enumerate() {
        assert!(
            exit.is_some(),
            "{}'s pairbeatd did not exit on SIGINT:\n{}",
            NODES[h],
            lab.logs()
        );
    }
    // No daemon runs, and the group still serves.
    assert_eq!(lab.client_reaches().as_deref(), Some("alpha"), "{}", lab.logs());

    lab.start(0);
    lab.start(1);
    lab.served_by("alpha", Duration::from_secs(20));
    // Past the probes and a decision on both: nothing may have moved meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.client_reaches().as_deref(), Some("alpha"), "{}", lab.logs());
    let alpha = std::fs::read_to_string(lab.net.path("alpha.3.log")).unwrap_or_default();
    for rsc in ["fs", "vip", "http"] {
        assert!(
            alpha.contains(&format!("resource {rsc} found running (adopted, not restarted)")),
            "alpha did not adopt {rsc}:\n{alpha}"
        );
    }
    let bravo = std::fs::read_to_string(lab.net.path("bravo.4.log")).unwrap_or_default();
    assert!(
        !bravo.contains("decision: run the group here"),
        "bravo took the group on its return:\n{bravo}"
    );
    for (node, log) in [("alpha", &alpha), ("bravo", &bravo)] {
        assert!(
            !log.contains("-> Started") && !log.contains("-> Stopped"),
            "{node} started or stopped a resource on its return:\n{log}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(lab.net.path("alpha-http.pid")).unwrap(),
        server,
        "the server was restarted:\n{}",
        lab.logs()
    );
}
