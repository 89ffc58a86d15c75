//! Real DRBD's agents under pairbeat: `ocf:linbit:drbd` (promotable, with its
//! promotion scores) and `heartbeat:drbddisk`, both as Debian's drbd-utils ships
//! them, in two network-namespace hosts with pairbeatd.
//!
//! No DRBD module runs on this kernel, so `drbdadm` and `drbdsetup` are a
//! STAND-IN (tests/tools/drbd-standin, bind-mounted over /usr/sbin/drbdadm and
//! /usr/sbin/drbdsetup inside each host's mount namespace): it keeps each host's
//! role, disk state and connection with DRBD's rules (no second Primary while
//! connected, no promotion without UpToDate data) but replicates nothing — both
//! hosts' "DRBD device" is one loop device. ocf:linbit:drbd also tests for
//! /proc/drbd, which only the module creates: the test runs a copy of it with
//! that one test pointed at the stand-in's file (the diff is checked: one line).
//!
//! What is shown: the linbit agent's scores reach pairbeatd through pairbeat's
//! crm_master (status shows `master-drbd0`), the group runs where the data is
//! promoted, a crash moves it (bravo promotes, score 1000 alone), an Outdated
//! copy withdraws its score and never takes the group even when the peer dies;
//! and haresources' `drbddisk::r0` fails over as under Heartbeat.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{pairbeat_config, wait_for, Net};

const TIMING: &str = "keepalive = \"100ms\"\ndeadtime = \"1s\"\ninitdead = \"3s\"";

fn node(h: usize) -> &'static str {
    ["alpha", "bravo"][h]
}

fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/drbd-standin")
}

struct Pair {
    net: Net,
    socks: [PathBuf; 2],
    pids: [Option<u32>; 2],
    confs: [PathBuf; 2],
    mnt: PathBuf,
}

/// Host h's stand-in state (`state.json`).
fn drbd_state(net: &Net, h: usize) -> serde_json::Value {
    let p = net.path(&format!("drbd-{}", node(h))).join("state.json");
    std::fs::read_to_string(p)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn set_drbd_state(net: &Net, h: usize, v: serde_json::Value) {
    let p = net.path(&format!("drbd-{}", node(h))).join("state.json");
    std::fs::write(p, v.to_string()).unwrap();
}

/// Every stand-in call of both hosts, for a failing test and for the check that
/// two Primaries never existed.
fn drbd_logs(net: &Net) -> String {
    (0..2)
        .map(|h| {
            let p = net.path(&format!("drbd-{}", node(h))).join("log");
            format!(
                "--- drbd stand-in, {}\n{}",
                node(h),
                std::fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect()
}

/// An OCF root with the real resource-agents, and DRBD's linbit agent with its
/// /proc/drbd test pointed at the stand-in (the only change, checked here).
fn ocf_root(net: &Net) -> PathBuf {
    let root = common::ocf_root(&net.path("."));
    let linbit = root.join("resource.d/linbit");
    std::fs::create_dir_all(&linbit).unwrap();
    let real = Path::new("/usr/lib/ocf/resource.d/linbit");
    assert!(
        real.join("drbd").exists(),
        "ocf:linbit:drbd is not installed: scripts/setup installs drbd-utils (make test runs it)"
    );
    let text = std::fs::read_to_string(real.join("drbd")).unwrap();
    assert_eq!(
        text.matches("test -f /proc/drbd").count(),
        1,
        "drbd-utils' agent changed: the test points its one /proc/drbd test at the stand-in"
    );
    let patched = text.replace("test -f /proc/drbd", "test -f /var/lib/drbd/proc-drbd");
    let changed = text.lines().zip(patched.lines()).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 1);
    std::fs::write(linbit.join("drbd"), patched).unwrap();
    std::fs::set_permissions(linbit.join("drbd"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::copy(real.join("drbd.shellfuncs.sh"), linbit.join("drbd.shellfuncs.sh")).unwrap();
    root
}

/// Each host's DRBD stand-in: its state directory on /var/lib/drbd and the
/// stand-in on drbdadm and drbdsetup, in that host's mount namespace only.
fn standin_hosts(net: &mut Net, dev: &str) {
    for h in 0..2 {
        let dir = net.path(&format!("drbd-{}", node(h)));
        std::fs::create_dir_all(&dir).unwrap();
        let peer = net.path(&format!("drbd-{}", node(1 - h)));
        let config = serde_json::json!({
            "resource": "r0",
            "device": dev,
            "peer": peer,
            "cut": net.path("drbd-cut"),
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        std::fs::write(dir.join("proc-drbd"), "version: 8.4.11 (stand-in)\n").unwrap();
        let s = standin();
        let out = net.exec(
            h,
            &format!(
                "mount --bind {} /var/lib/drbd && mount --bind {s} /usr/sbin/drbdadm && mount --bind {s} /usr/sbin/drbdsetup",
                dir.display(),
                s = s.display()
            ),
        );
        assert!(
            out.status.success(),
            "stand-in mounts in host {h} (needs drbd-utils' /var/lib/drbd and /usr/sbin/drbdadm): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // What the host sees as drbdadm is the stand-in, and nothing outside changed.
        let v = net.exec(h, "drbdadm --version");
        assert!(String::from_utf8_lossy(&v.stdout).contains("DRBDADM_BUILDTAG=standin"));
    }
    let host = std::process::Command::new("/usr/sbin/drbdadm")
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&host.stdout).contains("standin"),
        "the stand-in leaked out of the test's hosts"
    );
}

/// Two hosts, one heartbeat link, the group `group` (its resources' TOML);
/// `boot_up`: DRBD brought up on both first, as its boot script does (what
/// drbddisk expects; the OCF agent brings it up itself).
fn pair(group: &str, boot_up: bool) -> Pair {
    let mut net = Net::new(1);
    let dev = net.loop_ext4(32);
    standin_hosts(&mut net, &dev);
    if boot_up {
        for h in 0..2 {
            assert!(net.exec(h, "drbdadm up r0").status.success());
        }
    }
    let mnt = net.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let root = ocf_root(&net);
    let group = group.replace("DEV", &dev).replace("MNT", &mnt.display().to_string());
    let extra = format!(
        "realtime = false\nocf_root = \"{}\"\n\n[failover]\npreferred_node = \"alpha\"\nauto_failback = false\n\n{group}",
        root.display()
    );
    let confs = [0, 1].map(|h| pairbeat_config(&net, h, TIMING, &extra));
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args(["config", "check", confs[0].to_str().unwrap(), "--node", "alpha"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "config check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let socks = [0, 1].map(|h| net.path(node(h)).join("pb.sock"));
    let mut p = Pair {
        net,
        socks,
        pids: [None, None],
        confs,
        mnt,
    };
    for h in 0..2 {
        start(&mut p, h, 1);
    }
    p
}

fn start(p: &mut Pair, h: usize, run: u32) {
    let conf = p.confs[h].to_str().unwrap().to_string();
    let log = p.net.path(&format!("{}.pairbeatd.{run}.log", node(h)));
    p.pids[h] = Some(p.net.spawn(
        h,
        Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
        &["-c", &conf, "--node", node(h)],
        &log,
    ));
}

/// Host h dies: pairbeatd killed, its mount and its DRBD (the stand-in's state)
/// gone with its kernel.
fn crash(p: &mut Pair, h: usize) {
    if let Some(pid) = p.pids[h].take() {
        p.net.kill9(pid);
    }
    let _ = p.net.exec(h, &format!("umount -l {}", p.mnt.display()));
    set_drbd_state(
        &p.net,
        h,
        serde_json::json!({"up": false, "role": "Secondary", "disk": "UpToDate"}),
    );
}

fn status(p: &Pair, h: usize) -> Option<serde_json::Value> {
    common::status(&p.socks[h])
}

fn owner(p: &Pair, h: usize) -> Option<String> {
    status(p, h)?["group"]["owner"].as_str().map(str::to_string)
}

/// Host h runs the whole group on its DRBD, Primary there.
fn runs_on(p: &Pair, h: usize) -> bool {
    owner(p, h).as_deref() == Some(node(h))
        && drbd_state(&p.net, h)["role"] == "Primary"
        && status(p, h).is_some_and(|s| s["group"]["resources"][1]["state"] == "started")
}

fn attribute(s: &serde_json::Value, name: &str) -> Option<String> {
    s["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .and_then(|a| a["value"].as_str().map(str::to_string))
}

#[track_caller]
fn until(p: &Pair, what: &str, limit: Duration, f: impl FnMut() -> bool) {
    assert!(
        wait_for(limit, f).is_some(),
        "{what} within {limit:?}:\n{}\n{}",
        p.net.logs(),
        drbd_logs(&p.net)
    );
}

#[track_caller]
fn never_two_primaries(p: &Pair) {
    let logs = drbd_logs(&p.net);
    assert!(!logs.contains("BOTH PRIMARY"), "two Primaries at once:\n{logs}");
}

const LINBIT_GROUP: &str = r#"[group]
id = "data"

[[group.resource]]
id = "drbd0"
agent = "ocf:linbit:drbd"
promotable = true
params = { drbd_resource = "r0", ignore_missing_notifications = "true" }
op = [{ name = "monitor", interval = "1s", timeout = "20s" }]

[[group.resource]]
id = "fs"
agent = "ocf:heartbeat:Filesystem"
params = { device = "DEV", directory = "MNT", fstype = "ext4" }
op = [{ name = "monitor", interval = "2s", timeout = "20s" }]
"#;

fn linbit_running_on_alpha() -> Pair {
    let p = pair(LINBIT_GROUP, false);
    until(
        &p,
        "the group on alpha, drbd0 Primary there",
        Duration::from_secs(40),
        || runs_on(&p, 0),
    );
    // Both copies UpToDate and connected: linbit's best score on both.
    until(&p, "master-drbd0 = 10000 on both", Duration::from_secs(10), || {
        (0..2).all(|h| status(&p, h).is_some_and(|s| attribute(&s, "master-drbd0").as_deref() == Some("10000")))
    });
    p
}

#[test]
fn linbit_drbd_promotes_where_the_group_runs_and_fails_over_by_its_scores() {
    let mut p = linbit_running_on_alpha();
    let a = status(&p, 0).unwrap();
    assert_eq!(a["group"]["resources"][0]["state"], "promoted", "{a}");
    assert_eq!(a["group"]["resources"][0]["promotion_score"], 10000, "{a}");
    let b = drbd_state(&p.net, 1);
    assert!(
        b["up"] == true && b["role"] == "Secondary",
        "bravo runs drbd0 unpromoted: {b}"
    );
    // crm_mon's place for it: Node Attributes.
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args(["status", "-A", "-s", p.socks[0].to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines().any(|l| l.contains("master-drbd0") && l.contains("10000")),
        "status -A shows the score:\n{text}"
    );
    let w = p.net.exec(
        0,
        &format!("echo 'written on alpha' > {}/before-crash && sync", p.mnt.display()),
    );
    assert!(w.status.success(), "write on alpha's filesystem");

    crash(&mut p, 0);
    until(
        &p,
        "bravo runs the group, drbd0 Primary there",
        Duration::from_secs(30),
        || runs_on(&p, 1),
    );
    // Alone, UpToDate with the peer unknown: linbit's 1000.
    until(&p, "bravo's score 1000 alone", Duration::from_secs(10), || {
        status(&p, 1).is_some_and(|s| attribute(&s, "master-drbd0").as_deref() == Some("1000"))
    });
    let seen = p.net.exec(1, &format!("cat {}/before-crash", p.mnt.display()));
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout),
        "written on alpha\n",
        "the data followed (one device: the stand-in's)"
    );

    // alpha returns: its DRBD comes up beside a Primary, resyncs, runs unpromoted.
    start(&mut p, 0, 2);
    until(
        &p,
        "alpha back, its DRBD up and Secondary, its score set",
        Duration::from_secs(30),
        || {
            let a = drbd_state(&p.net, 0);
            a["up"] == true
                && a["role"] == "Secondary"
                && status(&p, 0).is_some_and(|s| attribute(&s, "master-drbd0").as_deref() == Some("10000"))
        },
    );
    assert_eq!(owner(&p, 1).as_deref(), Some("bravo"), "auto_failback = false");
    never_two_primaries(&p);
}

#[test]
fn an_outdated_drbd_withdraws_its_score_and_never_takes_the_group() {
    let mut p = linbit_running_on_alpha();
    // The replication link is cut and bravo's copy outdated (as DRBD's fence-peer
    // handler leaves it). Connected to an UpToDate peer, linbit would still offer
    // 10 (a diskless Primary reads from the peer); alone it withdraws the score.
    std::fs::write(p.net.path("drbd-cut"), "").unwrap();
    let mut b = drbd_state(&p.net, 1);
    b["disk"] = "Outdated".into();
    set_drbd_state(&p.net, 1, b);
    until(
        &p,
        "bravo's agent deletes its score, its gate closes",
        Duration::from_secs(10),
        || {
            status(&p, 1).is_some_and(|s| {
                attribute(&s, "master-drbd0").is_none() && s["protection"]["promotion_gate"]["state"] == "not_eligible"
            })
        },
    );
    assert_eq!(owner(&p, 0).as_deref(), Some("alpha"), "no outage on alpha");

    crash(&mut p, 0);
    until(&p, "bravo sees alpha dead", Duration::from_secs(5), || {
        status(&p, 1).is_some_and(|s| s["nodes"][0]["state"] == "offline")
    });
    std::thread::sleep(Duration::from_secs(3));
    let s = status(&p, 1).unwrap();
    assert_eq!(
        s["group"]["owner"],
        serde_json::Value::Null,
        "Outdated data took the group: {s}"
    );
    assert_eq!(s["decision_reason"], "data_not_up_to_date", "{s}");
    assert_eq!(drbd_state(&p.net, 1)["role"], "Secondary", "{}", drbd_logs(&p.net));
    let bravo_calls = std::fs::read_to_string(p.net.path("drbd-bravo").join("log")).unwrap_or_default();
    assert!(
        !bravo_calls.lines().any(|l| l.contains(" primary r0")),
        "bravo was never even asked to promote:\n{bravo_calls}"
    );
    never_two_primaries(&p);
}

const DRBDDISK_GROUP: &str = r#"[group]
id = "data"

[[group.resource]]
id = "drbddisk_r0"
agent = "heartbeat:drbddisk"
args = ["r0"]

[[group.resource]]
id = "fs"
agent = "ocf:heartbeat:Filesystem"
params = { device = "DEV", directory = "MNT", fstype = "ext4" }
op = [{ name = "monitor", interval = "2s", timeout = "20s" }]
"#;

#[test]
fn haresources_drbddisk_fails_over_as_under_heartbeat() {
    // drbddisk promotes a DRBD resource the boot scripts brought up.
    let mut p = pair(DRBDDISK_GROUP, true);
    until(
        &p,
        "the group on alpha, r0 Primary there",
        Duration::from_secs(30),
        || owner(&p, 0).as_deref() == Some("alpha") && drbd_state(&p.net, 0)["role"] == "Primary",
    );
    assert_eq!(drbd_state(&p.net, 1)["role"], "Secondary");
    crash(&mut p, 0);
    // bravo's DRBD stays up, alone.
    until(
        &p,
        "bravo runs the group, r0 Primary there",
        Duration::from_secs(30),
        || runs_on(&p, 1),
    );
    never_two_primaries(&p);
}
