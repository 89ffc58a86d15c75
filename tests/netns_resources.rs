//! The resource group with real agents from the `resource-agents` package, on a
//! network-namespace host with its own mount namespace: ext4 on a loop device
//! (ocf:heartbeat:Filesystem) → a virtual IP (ocf:heartbeat:IPaddr2) → a real HTTP
//! server on that IP (python3 -m http.server, through the test agent ocf:pbtest:httpd:
//! ocf:heartbeat:anything starts it through `su -`, a login shell that runs the host's profile). A
//! client on the other host fetches a file from the filesystem through the VIP.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{pairbeat_config, status, wait_for, Net};

// Alone on the lab (the peer never starts), the node starts the group after initdead.
const TIMING: &str = "keepalive = \"200ms\"\ndeadtime = \"1s\"\ninitdead = \"2s\"";

struct Host {
    net: Net,
    vip: String,
    mnt: String,
    pidfile: String,
    sock: std::path::PathBuf,
    conf: std::path::PathBuf,
}

fn host() -> Host {
    let mut net = Net::new(1);
    let dev = net.loop_ext4(32);
    let vip = format!("10.200.{}.100", net.id);
    let mnt = net.path("mnt").display().to_string();
    std::fs::create_dir_all(&mnt).unwrap();
    let pidfile = net.path("web.pid").display().to_string();
    let root = common::ocf_root(net.dir.path()).display().to_string();
    let group = format!(
        r#"realtime = false
ocf_root = "{root}"

{group}"#,
        group = common::web_group(&dev, &mnt, &vip, &pidfile)
    );
    let conf = pairbeat_config(&net, 0, TIMING, &group);
    let sock = net.path("alpha").join("pb.sock");
    Host {
        net,
        vip,
        mnt,
        pidfile,
        sock,
        conf,
    }
}

impl Host {
    fn start(&mut self, log: &str) -> u32 {
        let log = self.net.path(log);
        let conf = self.conf.to_str().unwrap().to_string();
        self.net.spawn(
            0,
            Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
            &["-c", &conf, "--node", "alpha"],
            &log,
        )
    }

    fn status(&self) -> serde_json::Value {
        status(&self.sock).unwrap_or(serde_json::Value::Null)
    }

    fn owner_is_alpha(&self) -> bool {
        self.status()["group"]["owner"] == "alpha"
    }

    /// The client host fetches the file through the VIP.
    fn client_gets(&self) -> bool {
        let out = self
            .net
            .exec(1, &format!("curl -s -m 1 http://{}:8080/hello.txt", self.vip));
        String::from_utf8_lossy(&out.stdout).trim() == "served by pairbeat"
    }

    fn fail_count(&self, rsc: usize) -> u64 {
        self.status()["group"]["resources"][rsc]["fail_count"]
            .as_u64()
            .unwrap_or(0)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.net.path(name)).unwrap_or_default()
    }
}

/// Index of the first line containing `needle`.
fn line_of(log: &str, needle: &str) -> usize {
    log.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{log}"))
}

#[test]
fn real_agents_start_in_order_recover_from_failures_are_adopted_and_stop_in_reverse() {
    let mut h = host();
    let pid = h.start("alpha.log");
    assert!(
        wait_for(Duration::from_secs(30), || h.owner_is_alpha()).is_some(),
        "group did not start:\n{}\n{}",
        h.log("alpha.log"),
        h.status()
    );
    let log = h.log("alpha.log");
    assert!(line_of(&log, "resource fs: Stopped -> Started") < line_of(&log, "resource vip: Stopped -> Started"));
    assert!(line_of(&log, "resource vip: Stopped -> Started") < line_of(&log, "resource http: Stopped -> Started"));
    // The file lives on the loop-backed ext4, mounted in the host's own mount namespace.
    let out = h.net.exec(
        0,
        &format!(
            "findmnt -n -o FSTYPE {m} && echo 'served by pairbeat' > {m}/hello.txt",
            m = h.mnt
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("ext4"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(5), || h.client_gets()).is_some(),
        "client cannot reach the service"
    );

    // The VIP disappears (an operator's mistake): the monitor notices, vip and http restart.
    let t = Instant::now();
    h.net.exec(0, &format!("ip addr del {}/24 dev pb0", h.vip));
    assert!(
        wait_for(Duration::from_secs(15), || h.fail_count(1) == 1
            && h.owner_is_alpha()
            && h.client_gets())
        .is_some(),
        "{}",
        h.log("alpha.log")
    );
    println!(
        "removed VIP: noticed and the client served again after {} ms (monitor interval 1 s)",
        t.elapsed().as_millis()
    );

    // The service is killed: noticed and restarted.
    let t = Instant::now();
    let web: i32 = std::fs::read_to_string(&h.pidfile).unwrap().trim().parse().unwrap();
    unsafe { libc::kill(web, libc::SIGKILL) };
    assert!(
        wait_for(Duration::from_secs(15), || h.fail_count(2) >= 1
            && h.owner_is_alpha()
            && h.client_gets())
        .is_some(),
        "{}",
        h.log("alpha.log")
    );
    println!(
        "killed service: restarted and serving again after {} ms",
        t.elapsed().as_millis()
    );

    // pairbeatd dies; a new one adopts the running group without restarting anything.
    let web: i32 = std::fs::read_to_string(&h.pidfile).unwrap().trim().parse().unwrap();
    h.net.kill9(pid);
    let pid = h.start("alpha2.log");
    assert!(
        wait_for(Duration::from_secs(30), || h.owner_is_alpha()).is_some(),
        "{}",
        h.log("alpha2.log")
    );
    let log = h.log("alpha2.log");
    for r in ["fs", "vip", "http"] {
        assert!(
            log.contains(&format!("resource {r} found running (adopted, not restarted)")),
            "{log}"
        );
    }
    assert!(!log.contains("-> Started"), "something was started again:\n{log}");
    assert_eq!(
        std::fs::read_to_string(&h.pidfile)
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap(),
        web,
        "the service was restarted"
    );
    assert!(h.client_gets());

    // SIGTERM: the group stops in reverse, then the daemon exits.
    h.net.signal(pid, nix::sys::signal::Signal::SIGTERM);
    assert!(
        h.net
            .wait_exit(pid, Duration::from_secs(60))
            .is_some_and(|s| s.success()),
        "{}",
        h.log("alpha2.log")
    );
    let log = h.log("alpha2.log");
    assert!(line_of(&log, "resource http: Started -> Stopped") < line_of(&log, "resource vip: Started -> Stopped"));
    assert!(line_of(&log, "resource vip: Started -> Stopped") < line_of(&log, "resource fs: Started -> Stopped"));
    assert!(!h.client_gets(), "the service still answers after a clean stop");
    let mounted = h.net.exec(0, &format!("findmnt -n {}", h.mnt));
    assert!(mounted.stdout.is_empty(), "still mounted after a clean stop");
    let addr = h.net.exec(0, "ip -o addr show dev pb0");
    assert!(
        !String::from_utf8_lossy(&addr.stdout).contains(&h.vip),
        "the VIP is still up"
    );
}
