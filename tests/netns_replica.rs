//! pairbeat-replicad on two network-namespace hosts: `pairbeat replica create`,
//! the replication link's HELLO/AUTH handshake, a fresh pair started in sync with
//! `--new-data`, a planned switch of the Primary, a killed replicad that comes back
//! and reconnects, and peers that are refused (wrong key, foreign resource) with a
//! log line that says why. The Primary's block device carries real ext4: a file
//! written and synced on alpha reads back, by checksum, on bravo after the switch.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{pairbeat_config, wait_for, Net};
use pairbeat::replicad::control::{request, ReplicaStatus, Request};

const TIMING: &str = "keepalive = \"100ms\"\ndeadtime = \"500ms\"\ninitdead = \"3s\"";

fn replica_section(net: &Net, h: usize) -> String {
    let dir = net.path(["alpha", "bravo"][h]);
    format!(
        "realtime = false\n\n[[replica]]\nname = \"r0\"\nbacking = \"{}\"\nsize = \"8MiB\"\nextent = \"1MiB\"\nport = 7789\naddress.alpha = \"{}\"\naddress.bravo = \"{}\"\ntimeout = \"1s\"\nping_interval = \"200ms\"\n",
        dir.join("r0.img").display(),
        net.addr(0, 0),
        net.addr(1, 0)
    )
}

struct Host {
    conf: PathBuf,
    sock: PathBuf,
    pid: Option<u32>,
}

fn node(h: usize) -> &'static str {
    ["alpha", "bravo"][h]
}

fn setup(net: &mut Net, h: usize) -> Host {
    let extra = replica_section(net, h);
    let conf = pairbeat_config(net, h, TIMING, &extra);
    let out = cli(&conf, h, &["create", "r0"]);
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));
    let again = cli(&conf, h, &["create", "r0"]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"));
    Host {
        sock: net.path(node(h)).join("replica").join("r0.sock"),
        conf,
        pid: None,
    }
}

fn cli(conf: &Path, h: usize, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args(["replica", "-c", conf.to_str().unwrap(), "--node", node(h)])
        .args(args)
        .output()
        .unwrap()
}

fn start(net: &mut Net, hosts: &mut [Host], h: usize, log: &str) {
    let log = net.path(log);
    let conf = hosts[h].conf.to_str().unwrap().to_string();
    hosts[h].pid = Some(net.spawn(
        h,
        Path::new(env!("CARGO_BIN_EXE_pairbeat-replicad")),
        &["-c", &conf, "--node", node(h), "r0"],
        &log,
    ));
}

fn status(host: &Host) -> Option<ReplicaStatus> {
    request(&host.sock, &Request::Status).ok()?.status
}

fn line(host: &Host) -> String {
    status(host).map(|s| s.line()).unwrap_or_else(|| "no answer".into())
}

#[track_caller]
fn until(net: &Net, what: &str, limit: Duration, f: impl FnMut() -> bool) {
    assert!(wait_for(limit, f).is_some(), "{what} within {limit:?}:\n{}", net.logs());
}

#[test]
fn two_replicads_connect_start_in_sync_switch_roles_and_survive_a_kill() {
    let mut net = Net::new(1);
    let mut hosts = vec![setup(&mut net, 0), setup(&mut net, 1)];
    start(&mut net, &mut hosts, 0, "alpha.log");
    start(&mut net, &mut hosts, 1, "bravo.log");
    until(&net, "both Connected", Duration::from_secs(10), || {
        hosts
            .iter()
            .all(|h| status(h).is_some_and(|s| s.connection == "Connected"))
    });
    let a = status(&hosts[0]).unwrap();
    assert_eq!(
        (a.role.as_str(), a.disk.as_str(), a.peer_disk.as_deref()),
        ("Secondary", "Inconsistent", Some("Inconsistent"))
    );
    assert_eq!(a.last_handshake_rule, 10, "{}", a.line());

    // A fresh pair: one new generation for both, no sync.
    let out = cli(&hosts[0].conf, 0, &["primary", "r0", "--new-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(&net, "UpToDate/UpToDate on both", Duration::from_secs(5), || {
        hosts
            .iter()
            .all(|h| status(h).is_some_and(|s| s.disk == "UpToDate" && s.peer_disk.as_deref() == Some("UpToDate")))
    });
    assert_eq!(line(&hosts[0]), "r0: Primary UpToDate/UpToDate Connected");
    assert_eq!(line(&hosts[1]), "r0: Secondary UpToDate/UpToDate Connected");
    assert_eq!(status(&hosts[0]).unwrap().promotion_score, Some(10000));
    // No dual primary while connected.
    let out = cli(&hosts[1].conf, 1, &["primary", "r0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the peer is Primary"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The Primary serves a block device: ext4 on it, a file written and synced.
    let dev = status(&hosts[0]).unwrap().device.expect("a Primary serves a device");
    assert!(dev.starts_with("/dev/loop"), "{dev}");
    let link = net.path("alpha").join("replica").join("r0.dev");
    assert_eq!(std::fs::read_link(&link).unwrap().to_str(), Some(dev.as_str()));
    let mnt = net.path("alpha-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let sh = |h: usize, cmd: &str| {
        let out = net.exec(h, cmd);
        assert!(
            out.status.success(),
            "`{cmd}`: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            net.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    sh(0, &format!("mkfs.ext4 -q -F {}", link.display()));
    sh(0, &format!("mount {} {}", link.display(), mnt.display()));
    sh(
        0,
        &format!(
            "head -c 1048576 /dev/urandom > {m}/data && sync -f {m}/data && sha256sum {m}/data > {m}/sum",
            m = mnt.display()
        ),
    );
    let sum = sh(0, &format!("sha256sum < {}/data", mnt.display()));
    // Mounted: demotion is refused and says why.
    let out = cli(&hosts[0].conf, 0, &["secondary", "r0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sh(0, &format!("umount {}", mnt.display()));

    // A planned switch.
    assert!(cli(&hosts[0].conf, 0, &["secondary", "r0"]).status.success());
    assert!(status(&hosts[0]).unwrap().device.is_none());
    let out = cli(&hosts[1].conf, 1, &["primary", "r0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(&net, "bravo Primary, alpha sees it", Duration::from_secs(5), || {
        status(&hosts[0]).is_some_and(|s| s.peer_role.as_deref() == Some("Primary"))
    });
    // bravo's copy holds what alpha wrote: replicated, protocol C.
    let blink = net.path("bravo").join("replica").join("r0.dev");
    let bmnt = net.path("bravo-mnt");
    std::fs::create_dir_all(&bmnt).unwrap();
    sh(1, &format!("mount {} {}", blink.display(), bmnt.display()));
    assert_eq!(sh(1, &format!("sha256sum < {}/data", bmnt.display())), sum);
    sh(1, &format!("umount {}", bmnt.display()));

    // kill -9 of alpha's replicad: bravo carries on; alpha comes back and reconnects.
    net.kill9(hosts[0].pid.unwrap());
    until(&net, "bravo notices", Duration::from_secs(5), || {
        status(&hosts[1]).is_some_and(|s| s.connection == "Connecting" && s.peer_disk.is_none())
    });
    start(&mut net, &mut hosts, 0, "alpha.2.log");
    until(&net, "reconnected", Duration::from_secs(10), || {
        hosts
            .iter()
            .all(|h| status(h).is_some_and(|s| s.connection == "Connected" && s.disk == "UpToDate"))
    });
    let json = cli(&hosts[1].conf, 1, &["status", "--output-as=json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["role"], "Primary");
    assert_eq!(v[0]["generations"], status(&hosts[1]).unwrap().generations);
    let xml = cli(&hosts[1].conf, 1, &["status", "--output-as=xml"]);
    assert!(String::from_utf8_lossy(&xml.stdout).contains("<pairbeat-replicas>"));
}

#[test]
fn a_peer_with_another_key_or_another_resource_is_refused_and_the_log_says_why() {
    let mut net = Net::new(1);
    let mut hosts = vec![setup(&mut net, 0), setup(&mut net, 1)];
    // bravo signs with a different secret.
    let keys = net.path("bravo").join("authkeys");
    std::fs::write(&keys, "auth 1\n1 sha1 not-the-lab-secret\n").unwrap();
    start(&mut net, &mut hosts, 0, "alpha.log");
    start(&mut net, &mut hosts, 1, "bravo.log");
    until(&net, "the refusal logged", Duration::from_secs(10), || {
        std::fs::read_to_string(net.path("alpha.log")).is_ok_and(|l| l.contains("AUTH does not verify"))
    });
    assert!(
        status(&hosts[0]).is_some_and(|s| s.connection == "Connecting"),
        "{}",
        line(&hosts[0])
    );

    // Same key, but bravo's replica is another resource (another cluster name).
    net.kill9(hosts[1].pid.unwrap());
    std::fs::write(&keys, "auth 1\n1 sha1 lab-secret\n").unwrap();
    let text = std::fs::read_to_string(&hosts[1].conf)
        .unwrap()
        .replace("name = \"lab\"", "name = \"other\"");
    std::fs::write(&hosts[1].conf, text).unwrap();
    let out = cli(&hosts[1].conf, 1, &["create", "r0", "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    start(&mut net, &mut hosts, 1, "bravo.2.log");
    until(&net, "the foreign resource refused", Duration::from_secs(10), || {
        std::fs::read_to_string(net.path("alpha.log")).is_ok_and(|l| l.contains("another resource"))
    });
    assert!(status(&hosts[0]).is_some_and(|s| s.connection == "Connecting"));
}
