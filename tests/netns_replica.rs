//! pairbeat-replicad on two network-namespace hosts: `pairbeat replica create`,
//! the replication link's HELLO/AUTH handshake, a fresh pair started in sync with
//! `--new-data`, a planned switch of the Primary (through `replicadisk`), a killed
//! replicad that comes back and reconnects, and peers that are refused (wrong key,
//! foreign resource, replayed handshake bytes) with a log line that says why. The
//! Primary's block device carries real ext4: a file written and synced on alpha
//! reads back, by checksum, on bravo after the switch.
//!
//! Also: the hung-worker watchdog (SIGSTOP: EIO within io_watchdog, nothing left in
//! D state, the FUSE mount private to the worker, monitor 9 until acknowledged);
//! the initial full sync, a resync of exactly the dirty extents, a target crashed
//! mid-resync that cannot be promoted and resumes; a split brain detected and its
//! loser's writes saved aside; eight writers at once on the raw device, their
//! bytes on both images and on the next Primary's device; and a lab that leaves
//! nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{assert_images_equal, pairbeat_config, wait_for, Net};
use pairbeat::replicad::control::{request, ReplicaStatus, Request};

const TIMING: &str = "keepalive = \"100ms\"\ndeadtime = \"500ms\"\ninitdead = \"3s\"";

fn replica_section(net: &Net, h: usize, extra: &str) -> String {
    let dir = net.path(["alpha", "bravo"][h]);
    format!(
        "realtime = false\n\n[[replica]]\nname = \"r0\"\nbacking = \"{}\"\nsize = \"8MiB\"\nextent = \"1MiB\"\nport = 7789\naddress.alpha = \"{}\"\naddress.bravo = \"{}\"\ntimeout = \"1s\"\nping_interval = \"200ms\"\n{extra}",
        dir.join("r0.img").display(),
        net.addr(0, 0),
        net.addr(1, 0)
    )
}

fn setup(net: &mut Net, h: usize) -> Host {
    setup_with(net, h, "")
}

struct Host {
    conf: PathBuf,
    sock: PathBuf,
    pid: Option<u32>,
}

fn node(h: usize) -> &'static str {
    ["alpha", "bravo"][h]
}

fn setup_with(net: &mut Net, h: usize, replica_extra: &str) -> Host {
    let extra = replica_section(net, h, replica_extra);
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

/// `replicadisk r0 VERB`, the Heartbeat v1 script, as pairbeatd runs it on host h.
fn replicadisk(conf: &Path, h: usize, verb: &str) -> std::process::Output {
    let bindir = Path::new(env!("CARGO_BIN_EXE_pairbeat")).parent().unwrap();
    std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/heartbeat/replicadisk"))
        .args(["r0", verb])
        .env("PAIRBEAT_CONFIG", conf)
        .env("PAIRBEAT_NODE", node(h))
        .env("PAIRBEAT_BINDIR", bindir)
        .output()
        .unwrap()
}

/// `ocf:pairbeat:replica ACTION` for r0 on host h: its exit code and output.
fn ocf_replica(conf: &Path, h: usize, action: &str) -> (i32, String) {
    let bindir = Path::new(env!("CARGO_BIN_EXE_pairbeat")).parent().unwrap();
    let out = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/replica"))
        .arg(action)
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RESOURCE_INSTANCE", "disk")
        .env("OCF_RESKEY_replica", "r0")
        .env("OCF_RESKEY_config", conf)
        .env("OCF_RESKEY_bindir", bindir)
        .env("OCF_RESKEY_CRM_meta_interval", "10000")
        .env("PAIRBEAT_NODE", node(h))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
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

/// The command failed, and its stderr says `says`.
#[track_caller]
fn assert_refused(out: &std::process::Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(says),
        "expected a refusal saying {says:?}: {err}"
    );
}

#[track_caller]
fn until(net: &Net, what: &str, limit: Duration, f: impl FnMut() -> bool) {
    assert!(wait_for(limit, f).is_some(), "{what} within {limit:?}:\n{}", net.logs());
}

/// Two hosts with r0 created on both and both replicads started and Connected.
fn connected_pair(replica_extra: &str) -> (Net, Vec<Host>) {
    let mut net = Net::new(1);
    let mut hosts = vec![
        setup_with(&mut net, 0, replica_extra),
        setup_with(&mut net, 1, replica_extra),
    ];
    start(&mut net, &mut hosts, 0, "alpha.log");
    start(&mut net, &mut hosts, 1, "bravo.log");
    until_connected(&net, &hosts, "both Connected");
    (net, hosts)
}

/// Waits (10 s at most) until both replicads say Connected.
fn until_connected(net: &Net, hosts: &[Host], what: &str) {
    until(net, what, Duration::from_secs(10), || {
        hosts
            .iter()
            .all(|h| status(h).is_some_and(|s| s.connection == "Connected"))
    });
}

#[test]
fn two_replicads_connect_start_in_sync_switch_roles_and_survive_a_kill() {
    let (mut net, mut hosts) = connected_pair("");
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
    // drbddisk's status contract, and the OCF agent's monitor.
    let st = replicadisk(&hosts[0].conf, 0, "status");
    assert_eq!(
        (st.status.code(), String::from_utf8_lossy(&st.stdout).trim()),
        (Some(0), "running (Primary)")
    );
    let st = replicadisk(&hosts[1].conf, 1, "status");
    assert_eq!(
        (st.status.code(), String::from_utf8_lossy(&st.stdout).trim()),
        (Some(3), "stopped (Secondary)")
    );
    assert_eq!(ocf_replica(&hosts[0].conf, 0, "monitor").0, 8);
    assert_eq!(ocf_replica(&hosts[1].conf, 1, "monitor").0, 0);
    assert_eq!(status(&hosts[0]).unwrap().promotion_score, Some(10000));
    // No dual primary while connected.
    let out = cli(&hosts[1].conf, 1, &["primary", "r0"]);
    assert_refused(&out, "the peer is Primary");

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
    assert_refused(&out, "in use");
    sh(0, &format!("umount {}", mnt.display()));

    // A planned switch, as Heartbeat v1 does it with drbddisk: stop here, start there.
    let out = replicadisk(&hosts[0].conf, 0, "stop");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(status(&hosts[0]).unwrap().device.is_none());
    let out = replicadisk(&hosts[1].conf, 1, "start");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        replicadisk(&hosts[0].conf, 0, "stop").status.success(),
        "stop of a Secondary"
    );
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

/// Tasks in D state that wait on FUSE or on the replica's loop device, as
/// `pid comm wchan`.
fn stuck_tasks(loop_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ...": the state follows the last ')'.
        let Some(close) = stat.rfind(')') else { continue };
        let comm = stat[stat.find('(').unwrap_or(0) + 1..close].to_string();
        if stat[close + 1..].trim_start().starts_with('D') {
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            if wchan.contains("fuse") || wchan.contains("request_wait_answer") || comm.contains(loop_name) {
                out.push(format!("{pid} {comm} {wchan}"));
            }
        }
    }
    out
}

/// The processes whose mount table shows `path`, with their mount namespaces.
fn mount_holders(path: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| m.contains(path)) {
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap_or_default();
            out.push((pid, ns.display().to_string()));
        }
    }
    out
}

#[test]
fn a_hung_worker_is_aborted_within_io_watchdog_so_io_fails_instead_of_hanging() {
    let (mut net, hosts) = connected_pair("outdate_timeout = \"1s\"\nio_watchdog = \"3s\"\n");
    let out = cli(&hosts[0].conf, 0, &["primary", "r0", "--new-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = status(&hosts[0]).unwrap();
    let (worker, dev) = (st.pid, st.device.clone().expect("a device"));
    assert_ne!(
        Some(worker),
        hosts[0].pid,
        "the device is served by a worker, not the supervisor"
    );

    // The FUSE mount is in the worker's mount namespace and no other.
    let fuse_dir = net.path("alpha").join("replica").join("r0.fuse");
    let holders = mount_holders(fuse_dir.to_str().unwrap());
    let worker_ns = std::fs::read_link(format!("/proc/{worker}/ns/mnt")).unwrap();
    assert!(
        holders.iter().any(|(p, _)| *p == worker),
        "the worker's own mounts: {holders:?}"
    );
    for (pid, ns) in &holders {
        assert_eq!(
            ns,
            &worker_ns.display().to_string(),
            "pid {pid} sees the FUSE mount from another namespace"
        );
    }

    let mnt = net.path("alpha-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let sh = |net: &Net, cmd: &str| {
        let out = net.exec(0, cmd);
        assert!(
            out.status.success(),
            "`{cmd}`: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            net.logs()
        );
    };
    sh(&net, &format!("mkfs.ext4 -q -F {dev} && mount {dev} {}", mnt.display()));
    sh(
        &net,
        &format!("echo before > {m}/f && sync -f {m}/f", m = mnt.display()),
    );

    // The worker hangs.
    net.signal(worker, nix::sys::signal::Signal::SIGSTOP);
    let stopped = std::time::Instant::now();
    // Host tools that list loop devices do not touch FUSE: they answer at once.
    let out = net.exec(0, "timeout 5 losetup -l");
    assert!(out.status.success(), "losetup -l while the worker is stopped");
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "losetup -l took {:?}",
        stopped.elapsed()
    );
    // A synchronous write to the filesystem: it blocks, then fails with EIO.
    let wlog = net.path("writer.log");
    let writer = net.spawn(
        0,
        Path::new("/bin/sh"),
        &[
            "-c",
            &format!(
                "dd if=/dev/zero of={}/g bs=4k count=16 oflag=direct,dsync 2>&1",
                mnt.display()
            ),
        ],
        &wlog,
    );
    let st = net.wait_exit(writer, Duration::from_secs(4) + Duration::from_millis(500));
    let took = stopped.elapsed();
    let said = std::fs::read_to_string(&wlog).unwrap_or_default();
    assert!(
        st.is_some(),
        "the writer still blocked {took:?} after the worker stopped (io_watchdog 3 s):\n{}",
        net.logs()
    );
    assert!(
        took <= Duration::from_secs(4),
        "EIO after {took:?}, not within io_watchdog + 1 s"
    );
    eprintln!("hung worker: the writer had EIO {took:?} after SIGSTOP (io_watchdog 3 s)");
    assert!(!st.unwrap().success(), "the write succeeded on a hung worker: {said}");
    assert!(said.contains("Input/output error"), "{said}");
    let loop_name = dev.trim_start_matches("/dev/");
    for _ in 0..3 {
        let stuck = stuck_tasks(loop_name);
        assert!(stuck.is_empty(), "tasks left in D state: {stuck:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(net.path("alpha.log")).unwrap();
    assert!(log.contains("aborting FUSE connection"), "{log}");

    // A new worker reports the failure; the agent's monitor reads it as a failed
    // Primary. Promotion waits until the operator acknowledges.
    until(
        &net,
        "a new worker reports the failure",
        Duration::from_secs(10),
        || status(&hosts[0]).is_some_and(|s| s.pid != worker && s.failed.is_some()),
    );
    let st = status(&hosts[0]).unwrap();
    assert_eq!(st.role, "Secondary");
    assert!(st.failed.as_deref().unwrap().contains("io_watchdog"), "{}", st.line());
    let (rc, said) = ocf_replica(&hosts[0].conf, 0, "monitor");
    assert_eq!(rc, 9, "a failed Primary: {said}");
    assert!(
        said.contains("ocf-exit-reason:") && said.contains("io_watchdog"),
        "{said}"
    );
    let st = replicadisk(&hosts[0].conf, 0, "status");
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("may be running (failed"),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
    let out = cli(&hosts[0].conf, 0, &["primary", "r0"]);
    assert_refused(&out, "acknowledge");
    sh(&net, &format!("umount {}", mnt.display()));
    let out = cli(&hosts[0].conf, 0, &["secondary", "r0"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("acknowledged"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(status(&hosts[0]).unwrap().failed, None);
    assert_eq!(ocf_replica(&hosts[0].conf, 0, "monitor").0, 0);
    // The old loop device went with its last user.
    until(&net, "the old loop device detached", Duration::from_secs(5), || {
        !std::fs::read_to_string(format!("/sys/block/{loop_name}/loop/backing_file"))
            .is_ok_and(|b| b.contains(fuse_dir.to_str().unwrap()))
    });
}

/// 4 KiB of random data into extent `e` (1 MiB extents) of the device, O_DIRECT.
fn write_extent(net: &Net, dev: &str, e: u64) {
    let out = net.exec(
        0,
        &format!(
            "dd if=/dev/urandom of={dev} bs=4096 count=1 seek={} oflag=direct conv=notrunc 2>&1",
            e * 256 + 3
        ),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn resync_sends_only_dirty_extents_and_a_target_crashed_mid_resync_cannot_be_promoted() {
    const MIB: u64 = 1 << 20;
    let (mut net, mut hosts) = connected_pair("");
    let in_sync = |hosts: &[Host]| {
        hosts.iter().all(|h| {
            status(h).is_some_and(|s| {
                s.connection == "Connected" && s.disk == "UpToDate" && s.peer_disk.as_deref() == Some("UpToDate")
            })
        })
    };
    // The initial sync: alpha's data is asserted, all of it goes to bravo.
    let out = cli(&hosts[0].conf, 0, &["primary", "r0", "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(&net, "the initial sync", Duration::from_secs(10), || in_sync(&hosts));
    assert_eq!(status(&hosts[1]).unwrap().resync_received_bytes, 8 * MIB);
    assert_images_equal(&net);
    let dev = status(&hosts[0]).unwrap().device.unwrap();

    // bravo is away while alpha writes into two of the eight extents.
    net.kill9(hosts[1].pid.unwrap());
    until(&net, "alpha notices", Duration::from_secs(5), || {
        status(&hosts[0]).is_some_and(|s| s.connection == "Connecting")
    });
    write_extent(&net, &dev, 0);
    write_extent(&net, &dev, 5);
    assert_eq!(
        status(&hosts[0]).unwrap().out_of_sync_bytes,
        2 * MIB,
        "{}",
        line(&hosts[0])
    );
    start(&mut net, &mut hosts, 1, "bravo.2.log");
    until(&net, "in sync again", Duration::from_secs(10), || in_sync(&hosts));
    // Exactly the two dirty extents crossed, not the 8 MiB disk.
    assert_eq!(status(&hosts[0]).unwrap().resync_sent_bytes, (8 + 2) * MIB);
    assert_eq!(status(&hosts[1]).unwrap().resync_received_bytes, 2 * MIB);
    // The SyncSource says how much it copied, how fast.
    let log = std::fs::read_to_string(net.path("alpha.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("resync finished: the peer is UpToDate (2 MiB in") && l.ends_with(" MiB/s)")),
        "{log}"
    );
    // Connected, an extent written now stays dirty for a crash, but is not out of sync.
    write_extent(&net, &dev, 3);
    assert_eq!(status(&hosts[0]).unwrap().out_of_sync_bytes, 0, "{}", line(&hosts[0]));
    assert_images_equal(&net);

    // Now all eight extents change while bravo is away, and the resync is slow.
    net.kill9(hosts[1].pid.unwrap());
    until(&net, "alpha notices", Duration::from_secs(5), || {
        status(&hosts[0]).is_some_and(|s| s.connection == "Connecting")
    });
    for e in 0..8 {
        write_extent(&net, &dev, e);
    }
    let out = cli(&hosts[0].conf, 0, &["resync-rate", "r0", "1MiB"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    start(&mut net, &mut hosts, 1, "bravo.3.log");
    until(&net, "bravo is SyncTarget, 3 MiB in", Duration::from_secs(10), || {
        status(&hosts[1]).is_some_and(|s| s.connection == "SyncTarget" && s.resync_received_bytes >= 3 * MIB)
    });
    // The SyncSource shows the rate in force.
    let a = status(&hosts[0]).unwrap();
    assert_eq!(
        (a.connection.as_str(), a.resync_rate),
        ("SyncSource", MIB),
        "{}",
        a.line()
    );
    assert!(a.line().contains("at 1024 KiB/s"), "{}", a.line());
    // bravo crashes mid-resync and comes back alone (its link is down).
    assert!(net.exec(1, "ip link set pb0 down").status.success());
    net.kill9(hosts[1].pid.unwrap());
    start(&mut net, &mut hosts, 1, "bravo.4.log");
    until(&net, "bravo answers", Duration::from_secs(5), || {
        status(&hosts[1]).is_some()
    });
    let b = status(&hosts[1]).unwrap();
    assert_eq!(b.disk, "Inconsistent", "{}", b.line());
    let out = cli(&hosts[1].conf, 1, &["primary", "r0"]);
    assert_refused(&out, "Inconsistent");
    let (rc, said) = ocf_replica(&hosts[1].conf, 1, "promote");
    assert_eq!(rc, 1, "{said}");
    assert!(
        said.contains("ocf-exit-reason:") && said.contains("Inconsistent"),
        "{said}"
    );

    // The link comes back: the resync resumes where it stopped.
    let out = cli(&hosts[0].conf, 0, &["resync-rate", "r0", "100MiB"]);
    assert!(out.status.success());
    assert!(net.exec(1, "ip link set pb0 up").status.success());
    until(
        &net,
        "in sync after the resumed resync",
        Duration::from_secs(20),
        || in_sync(&hosts),
    );
    let resumed = status(&hosts[1]).unwrap().resync_received_bytes;
    assert!(
        resumed > 0 && resumed <= 7 * MIB,
        "the resumed resync wrote {resumed} bytes: extents done before the crash came again\n{}",
        net.logs()
    );
    eprintln!(
        "resync: 2 dirty extents -> 2 MiB sent; resumed after a mid-resync crash: {} KiB of 8192",
        resumed / 1024
    );
    assert_images_equal(&net);

    // The lab goes and takes everything with it: processes, loop devices, mounts.
    let dir = net.path("").display().to_string();
    drop(net);
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<String> = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .filter(|b| b.contains(&dir))
        .collect();
    assert!(left.is_empty(), "loop devices left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&dir), "mounts left:\n{mounts}");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmd).contains(&dir),
                "process {:?} left: {}",
                e.file_name(),
                String::from_utf8_lossy(&cmd)
            );
        }
    }
}

#[test]
fn a_split_brain_is_detected_and_the_losers_writes_are_saved_before_they_are_discarded() {
    let (net, hosts) = connected_pair("");
    let out = cli(&hosts[0].conf, 0, &["primary", "r0", "--new-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(&net, "in sync", Duration::from_secs(5), || {
        status(&hosts[1]).is_some_and(|s| s.disk == "UpToDate")
    });

    // The replication link fails; bravo is promoted as well, and both write.
    assert!(net.exec(1, "ip link set pb0 down").status.success());
    until(&net, "both lose the peer", Duration::from_secs(5), || {
        hosts
            .iter()
            .all(|h| status(h).is_some_and(|s| s.connection == "Connecting"))
    });
    // No pairbeatd relays the outdate ask here: without --force the promotion is
    // refused (the peer was not proven outdated), so the operator forces it.
    let out = cli(&hosts[1].conf, 1, &["primary", "r0"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not confirm"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&hosts[1].conf, 1, &["primary", "r0", "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let adev = status(&hosts[0]).unwrap().device.unwrap();
    let bdev = status(&hosts[1]).unwrap().device.unwrap();
    write_extent(&net, &adev, 2);
    write_extent(&net, &bdev, 6);
    let bravo_extent6 = common::sh(&format!(
        "dd if={} bs=1M skip=6 count=1 2>/dev/null | sha256sum",
        net.path("bravo").join("r0.img").display()
    ))
    .stdout;
    assert!(cli(&hosts[1].conf, 1, &["secondary", "r0"]).status.success());

    // The link returns: divergent data, never "in sync".
    assert!(net.exec(1, "ip link set pb0 up").status.success());
    until(
        &net,
        "the split brain detected on both",
        Duration::from_secs(10),
        || {
            hosts
                .iter()
                .all(|h| status(h).is_some_and(|s| s.connection == "StandAlone" && s.split_brain_pending))
        },
    );
    let b = status(&hosts[1]).unwrap();
    assert!(b.line().contains("split brain pending"), "{}", b.line());
    // Pending split brain: bravo may not be promoted.
    assert!(!cli(&hosts[1].conf, 1, &["primary", "r0"]).status.success());

    // The operator gives up bravo's writes; alpha keeps its own.
    let out = cli(&hosts[1].conf, 1, &["discard-my-data", "r0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&hosts[0].conf, 0, &["connect", "r0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(&net, "resolved and in sync", Duration::from_secs(10), || {
        hosts.iter().all(|h| {
            status(h).is_some_and(|s| s.connection == "Connected" && s.disk == "UpToDate" && !s.split_brain_pending)
        })
    });
    assert_images_equal(&net);
    // bravo's lone write is in the copy it kept aside, at its offset.
    let saved: Vec<PathBuf> = std::fs::read_dir(net.path("bravo"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("r0.img.divergent-"))
        .collect();
    assert_eq!(
        saved.len(),
        1,
        "one copy of the loser's data: {saved:?}\n{}",
        net.logs()
    );
    let copy6 = common::sh(&format!(
        "dd if={} bs=1M skip=6 count=1 2>/dev/null | sha256sum",
        saved[0].display()
    ))
    .stdout;
    assert_eq!(copy6, bravo_extent6, "the saved copy holds bravo's extent 6");
    let log = std::fs::read_to_string(net.path("bravo.log")).unwrap();
    assert!(log.contains("saved this node's"), "{log}");
}

#[test]
fn replayed_handshake_bytes_are_refused_with_a_log_line() {
    let mut net = Net::new(1);
    let mut hosts = vec![setup(&mut net, 0), setup(&mut net, 1)];
    // alpha reaches bravo through a recording relay on a second address of bravo's.
    let (b_ip, relay_ip) = (
        net.addr(1, 0),
        net.addr(1, 0).rsplit_once('.').unwrap().0.to_string() + ".3",
    );
    assert!(net
        .exec(1, &format!("ip addr add {relay_ip}/24 dev pb0"))
        .status
        .success());
    // The last `address.bravo` is the [[replica]]'s (the [[link]]'s comes first).
    let text = std::fs::read_to_string(&hosts[0].conf).unwrap();
    let old = format!("address.bravo = \"{b_ip}\"");
    let at = text.rfind(&old).unwrap();
    let text = format!(
        "{}address.bravo = \"{relay_ip}\"{}",
        &text[..at],
        &text[at + old.len()..]
    );
    std::fs::write(&hosts[0].conf, text).unwrap();
    let recording = net.path("alpha-to-bravo.bin");
    let relay = net.path("relay.py");
    std::fs::write(
        &relay,
        format!(
            r#"import socket, threading, time
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("{relay_ip}", 7789))
lst.listen(1)
c, _ = lst.accept()
# bravo may not be listening yet when alpha first connects: retry, as alpha would.
for _ in range(100):
    try:
        s = socket.create_connection(("{b_ip}", 7789))
        break
    except ConnectionRefusedError:
        time.sleep(0.05)
rec = open("{}", "wb")
def back():
    while True:
        b = s.recv(65536)
        if not b:
            break
        c.sendall(b)
threading.Thread(target=back, daemon=True).start()
while True:
    b = c.recv(65536)
    if not b:
        break
    rec.write(b)
    rec.flush()
    s.sendall(b)
"#,
            recording.display()
        ),
    )
    .unwrap();
    let relay_log = net.path("relay.log");
    net.spawn(1, Path::new("/usr/bin/python3"), &[relay.to_str().unwrap()], &relay_log);
    std::thread::sleep(Duration::from_millis(300));
    start(&mut net, &mut hosts, 1, "bravo.log");
    start(&mut net, &mut hosts, 0, "alpha.log");
    until_connected(&net, &hosts, "connected through the relay");
    // alpha goes; its recorded HELLO and AUTH are sent to bravo again, verbatim.
    net.kill9(hosts[0].pid.unwrap());
    until(&net, "bravo listens again", Duration::from_secs(5), || {
        status(&hosts[1]).is_some_and(|s| s.connection == "Connecting")
    });
    let bytes = std::fs::read(&recording).unwrap();
    assert!(
        bytes.len() > 64,
        "the relay recorded the handshake ({} bytes)",
        bytes.len()
    );
    let out = net.exec(
        1,
        &format!(
            "python3 -c 'import socket,time; s=socket.create_connection((\"{b_ip}\", 7789)); s.sendall(open(\"{}\",\"rb\").read()); time.sleep(1)'",
            recording.display()
        ),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(
        &net,
        "the replay refused in bravo's log",
        Duration::from_secs(5),
        || std::fs::read_to_string(net.path("bravo.log")).is_ok_and(|l| l.contains("replayed handshake bytes")),
    );
    let s = status(&hosts[1]).unwrap();
    assert_eq!(s.connection, "Connecting", "{}", s.line());
}

#[test]
fn a_restarted_replicad_does_not_pin_the_filesystem_of_the_device_it_lost() {
    let (mut net, mut hosts) = connected_pair("");
    let out = cli(&hosts[0].conf, 0, &["primary", "r0", "--new-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dev = status(&hosts[0]).unwrap().device.unwrap();
    let mnt = net.path("alpha-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = net.exec(0, &format!("mkfs.ext4 -q -F {dev} && mount {dev} {}", mnt.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The daemon dies with the filesystem still mounted; a new one starts with a copy
    // of the host's mounts, which includes that filesystem.
    net.kill9(hosts[0].pid.unwrap());
    start(&mut net, &mut hosts, 0, "alpha.2.log");
    until(&net, "the new replicad answers", Duration::from_secs(5), || {
        status(&hosts[0]).is_some()
    });
    let new_worker = status(&hosts[0]).unwrap().pid;
    let holders = mount_holders(mnt.to_str().unwrap());
    for pid in [hosts[0].pid.unwrap(), new_worker] {
        assert!(
            !holders.iter().any(|(p, _)| *p == pid),
            "replicad process {pid} keeps a copy of the mount: {holders:?}"
        );
    }
    // So unmounting on the host releases the old loop device.
    let out = net.exec(0, &format!("umount {}", mnt.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let name = dev.trim_start_matches("/dev/");
    until(&net, "the old loop device released", Duration::from_secs(5), || {
        !std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
            .is_ok_and(|b| b.contains(net.path("alpha").to_str().unwrap()))
    });
}

/// Eight writers at once on the Primary's raw device, each in its own eighth,
/// random sizes from 4 KiB to 1 MiB, O_DIRECT: the disk queues on both sides run
/// such writes side by side (hub::Queue). Prints the sha256 of what the device
/// must now hold.
const CONCURRENT_WRITERS: &str = r#"
import hashlib, mmap, os, random, sys, threading
dev, size, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
model = bytearray(size)
def writer(k):
    r, buf, region = random.Random(k), mmap.mmap(-1, 1 << 20), size // 8
    for _ in range(n):
        ln = r.choice([4096, 8192, 65536, 131072, 1 << 20][: 5 if region > (1 << 20) else 4])
        off = k * region + r.randrange(0, (region - ln) // 4096 + 1) * 4096
        data = bytes([r.randrange(256)]) * ln
        buf.seek(0)
        buf.write(data)
        os.pwrite(fd, memoryview(buf)[:ln], off)
        model[off:off + ln] = data
threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
os.fsync(fd)
os.close(fd)
print(hashlib.sha256(model).hexdigest())
"#;

#[test]
fn concurrent_writers_leave_the_same_bytes_on_both_images_and_the_new_primary() {
    let (net, hosts) = connected_pair("");
    let out = cli(&hosts[0].conf, 0, &["primary", "r0", "--new-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dev = status(&hosts[0]).unwrap().device.expect("a Primary serves a device");
    let script = net.path("writers.py");
    std::fs::write(&script, CONCURRENT_WRITERS).unwrap();
    let size = 8 << 20;
    let out = net.exec(0, &format!("python3 {} {dev} {size} 150", script.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(expected.len(), 64, "the writers' sum: {expected:?}");
    let sum = |path: &Path| {
        let out = common::sh(&format!("head -c {size} {} | sha256sum", path.display()));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(sum(&net.path("alpha").join("r0.img")), expected, "alpha's image");
    assert_eq!(sum(&net.path("bravo").join("r0.img")), expected, "bravo's image");
    assert_eq!(status(&hosts[0]).unwrap().out_of_sync_bytes, 0, "{}", line(&hosts[0]));
    // And bravo, promoted after a planned switch, serves exactly those bytes.
    until(&net, "alpha demoted", Duration::from_secs(5), || {
        cli(&hosts[0].conf, 0, &["secondary", "r0"]).status.success()
    });
    let out = cli(&hosts[1].conf, 1, &["primary", "r0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dev = status(&hosts[1]).unwrap().device.expect("bravo serves the device");
    let out = net.exec(1, &format!("head -c {size} {dev} | sha256sum"));
    let read = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        read.split_whitespace().next(),
        Some(expected.as_str()),
        "read on bravo's device"
    );
}
