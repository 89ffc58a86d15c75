//! `builtin:filesystem` for real: two network-namespace hosts (each with its own
//! mount namespace) sharing one loop device with ext4, as the lab's shared disk,
//! and a group of one built-in filesystem run by pairbeatd. The filesystem is
//! mounted on the owner only, with the options asked for (mountinfo shows
//! `noatime`); unmounted behind pairbeatd's back, its monitor finds it and the
//! engine mounts it again (fail count 1); a switchover with a process still
//! working inside the mount signals that process (it is gone afterwards),
//! unmounts, and the other host mounts it and reads what the first one wrote.
//! `config check` names Filesystem's parameters that the built-in refuses.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{pairbeat_config_with, wait_for, Net};

const TIMING: &str = "keepalive = \"100ms\"\ndeadtime = \"500ms\"\ninitdead = \"2s\"";

fn node(h: usize) -> &'static str {
    ["alpha", "bravo"][h]
}

struct Lab {
    net: Net,
    dev: String,
    mnt: String,
}

impl Lab {
    fn new(params: &str) -> Lab {
        let mut net = Net::lan(2);
        let dev = net.loop_ext4(32);
        let mnt = net.path("data").display().to_string();
        for h in 0..2 {
            let extra = format!(
                r#"realtime = false

[failover]
preferred_node = "alpha"
auto_failback = false

[group]
id = "data"

[[group.resource]]
id = "fs"
agent = "builtin:filesystem"
params = {{ device = "{dev}", directory = "{mnt}", fstype = "ext4"{params} }}
op = [{{ name = "monitor", interval = "1s", timeout = "5s" }}, {{ name = "stop", timeout = "10s" }}]
"#
            );
            pairbeat_config_with(&net, h, &["ucast"], TIMING, &extra);
        }
        Lab { net, dev, mnt }
    }

    fn conf(&self, h: usize) -> String {
        self.net.path(node(h)).join("pairbeat.toml").display().to_string()
    }

    fn pairbeat(&self, h: usize, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .arg("-s")
            .arg(self.net.path(node(h)).join("pb.sock"))
            .args(args)
            .output()
            .unwrap()
    }

    fn config_check(&self, h: usize) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .args(["config", "check", &self.conf(h), "--node", node(h)])
            .output()
            .unwrap()
    }

    fn start(&mut self, h: usize) {
        let log = self.net.path(&format!("{}.pairbeatd.log", node(h)));
        let conf = self.conf(h);
        self.net.spawn(
            h,
            Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
            &["-c", &conf, "--node", node(h)],
            &log,
        );
    }

    /// Host h's mount at the directory, as its mountinfo line says, if any.
    fn mounted(&self, h: usize) -> Option<String> {
        let out = self.net.exec(h, &format!("grep ' {} ' /proc/self/mountinfo", self.mnt));
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    fn status(&self, h: usize) -> serde_json::Value {
        common::status(&self.net.path(node(h)).join("pb.sock")).unwrap_or(serde_json::Value::Null)
    }

    fn owner(&self, h: usize) -> Option<String> {
        self.status(h)["group"]["owner"].as_str().map(str::to_string)
    }

    #[track_caller]
    fn until(&self, what: &str, limit: Duration, f: impl FnMut() -> bool) -> Duration {
        wait_for(limit, f).unwrap_or_else(|| panic!("{what} within {limit:?}:\n{}", self.net.logs()))
    }
}

#[test]
fn a_builtin_filesystem_mounts_on_the_owner_recovers_and_moves_past_a_busy_mount() {
    let mut lab = Lab::new(", options = \"noatime,errors=remount-ro\"");
    for h in 0..2 {
        let check = lab.config_check(h);
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    }
    lab.start(0);
    lab.start(1);
    lab.until("alpha runs the group, mounted", Duration::from_secs(20), || {
        lab.owner(0).as_deref() == Some("alpha") && lab.owner(1).as_deref() == Some("alpha") && lab.mounted(0).is_some()
    });
    let line = lab.mounted(0).unwrap();
    assert!(line.contains(" ext4 "), "{line}");
    assert!(line.contains("noatime"), "the options reached mount(2): {line}");
    assert!(
        line.contains("errors=remount-ro"),
        "the filesystem's own options too: {line}"
    );
    assert!(lab.mounted(1).is_none(), "bravo has nothing mounted");
    let s = lab.status(0);
    assert_eq!(s["group"]["resources"][0]["agent"], "builtin:filesystem", "{s}");
    let out = lab
        .net
        .exec(0, &format!("echo 'written on alpha' > {}/who.txt && sync", lab.mnt));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Unmounted behind pairbeatd's back: the monitor finds it, the engine mounts it again.
    let out = lab.net.exec(0, &format!("umount {}", lab.mnt));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lab.until(
        "the monitor's failure counted and the filesystem mounted again",
        Duration::from_secs(15),
        || lab.status(0)["group"]["resources"][0]["fail_count"] == 1 && lab.mounted(0).is_some(),
    );
    let s = lab.status(0);
    assert_eq!(s["group"]["owner"], "alpha", "recovered in place: {s}");

    // A process working inside the mount: the switchover's stop signals it, then unmounts.
    let holder_log = lab.net.path("holder.log");
    let holder = lab.net.spawn(
        0,
        Path::new("/bin/sh"),
        &["-c", &format!("cd {} && exec sleep 600", lab.mnt)],
        &holder_log,
    );
    lab.until("the holder inside the mount", Duration::from_secs(5), || {
        std::fs::read_link(format!("/proc/{holder}/cwd")).is_ok_and(|c| c == Path::new(&lab.mnt))
    });
    let out = lab.pairbeat(0, &["standby"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lab.until("bravo runs the group, mounted", Duration::from_secs(20), || {
        lab.owner(1).as_deref() == Some("bravo") && lab.mounted(1).is_some()
    });
    assert!(lab.mounted(0).is_none(), "alpha unmounted:\n{}", lab.net.logs());
    // Dead (a zombie until this test reaps it, which Net does at the end).
    let state = std::fs::read_to_string(format!("/proc/{holder}/stat")).unwrap_or_default();
    let state = state.rsplit(") ").next().unwrap_or("").chars().next();
    assert!(
        state.is_none() || state == Some('Z'),
        "the holder was signalled: state {state:?}\n{}",
        lab.net.logs()
    );
    assert!(
        lab.net.logs().contains(&format!("sending SIGTERM to {holder} (sleep)")),
        "the log names the process it signalled:\n{}",
        lab.net.logs()
    );
    let out = lab.net.exec(1, &format!("cat {}/who.txt", lab.mnt));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "written on alpha\n",
        "{}",
        lab.dev
    );
}

#[test]
fn config_check_names_what_the_builtin_filesystem_refuses() {
    let lab = Lab::new(", run_fsck = \"force\", options = \"bind\", force_unmount = \"maybe\", fast_stopp = \"no\"");
    let out = lab.config_check(0);
    assert!(!out.status.success(), "refused");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "builtin:filesystem: `run_fsck` is not supported",
        "never runs fsck",
        "builtin:filesystem: `bind` is not a mount of a block device",
        "builtin:filesystem: `maybe` is not true or false",
        "builtin:filesystem has no parameter `fast_stopp`",
        "pairbeat.toml:",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
