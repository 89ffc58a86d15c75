//! The outdate relay for real: two network-namespace hosts, each with pairbeatd
//! (heartbeat on `pb0`) and pairbeat-replicad (replication on `pb1`). When only the
//! replication link is cut, the Primary's pairbeatd asks the peer's over the
//! heartbeat link to outdate its replica: the Primary's I/O goes on within
//! `timeout` + `outdate_timeout`, the Secondary shows Outdated and cannot be
//! promoted, and after the heal it resyncs only the extents written meanwhile.
//! A Secondary whose replicad was killed is outdated in its metadata at rest; a
//! hung one is waited for `outdate_timeout`, after which `resource-only` goes on
//! ("unreachable"); a peer dead on the heartbeat links too is not waited for.
//! Under resource-and-stonith with a fencing device that fails at first, I/O is
//! held frozen, and resumes by itself once a fence retry succeeds.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{assert_images_equal, pairbeat_config_with, wait_for, Net};
use pairbeat::replicad::control::ReplicaStatus;

const TIMING: &str = "keepalive = \"100ms\"\ndeadtime = \"1s\"\ninitdead = \"3s\"";

fn node(h: usize) -> &'static str {
    ["alpha", "bravo"][h]
}

struct Host {
    conf: PathBuf,
    sock: PathBuf,
    replicad: Option<u32>,
    pairbeatd: Option<u32>,
}

/// Host h: heartbeat on pb0 only, the replica on pb1 (8 MiB, 1 MiB extents), and
/// `more` config (whole sections) after it.
fn setup(net: &mut Net, h: usize, more: &str) -> Host {
    let dir = net.path(node(h));
    let extra = format!(
        "realtime = false\n\n[[replica]]\nname = \"r0\"\nbacking = \"{}\"\nsize = \"8MiB\"\nextent = \"1MiB\"\nport = 7789\naddress.alpha = \"{}\"\naddress.bravo = \"{}\"\ntimeout = \"1s\"\nping_interval = \"200ms\"\noutdate_timeout = \"3s\"\n",
        dir.join("r0.img").display(),
        net.addr(0, 1),
        net.addr(1, 1)
    ) + more;
    let conf = pairbeat_config_with(net, h, &["ucast"], TIMING, &extra);
    let out = cli(&conf, h, &["create", "r0"]);
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    Host {
        sock: dir.join("replica").join("r0.sock"),
        conf,
        replicad: None,
        pairbeatd: None,
    }
}

fn cli(conf: &Path, h: usize, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args(["replica", "-c", conf.to_str().unwrap(), "--node", node(h)])
        .args(args)
        .output()
        .unwrap()
}

fn start_replicad(net: &mut Net, host: &mut Host, h: usize, log: &str) {
    let conf = host.conf.to_str().unwrap().to_string();
    let log = net.path(log);
    host.replicad = Some(net.spawn(
        h,
        Path::new(env!("CARGO_BIN_EXE_pairbeat-replicad")),
        &["-c", &conf, "--node", node(h), "r0"],
        &log,
    ));
}

fn start_pairbeatd(net: &mut Net, host: &mut Host, h: usize) {
    let conf = host.conf.to_str().unwrap().to_string();
    let log = net.path(&format!("{}.pairbeatd.log", node(h)));
    host.pairbeatd = Some(net.spawn(
        h,
        Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
        &["-c", &conf, "--node", node(h)],
        &log,
    ));
}

fn status(host: &Host) -> Option<ReplicaStatus> {
    common::replica_status(&host.sock)
}

#[track_caller]
fn until(net: &Net, what: &str, limit: Duration, f: impl FnMut() -> bool) {
    assert!(wait_for(limit, f).is_some(), "{what} within {limit:?}:\n{}", net.logs());
}

fn log(net: &Net, name: &str) -> String {
    std::fs::read_to_string(net.path(name)).unwrap_or_default()
}

/// Both hosts up, both daemons on each, alpha Primary of a fresh pair in sync.
fn pair() -> (Net, Vec<Host>) {
    pair_with(|_| String::new())
}

/// The same, with config made for the Net (e.g. a fencing device) before the replica.
fn pair_with(more: impl Fn(&Net) -> String) -> (Net, Vec<Host>) {
    let mut net = Net::new(2);
    let more = more(&net);
    let mut hosts = vec![setup(&mut net, 0, &more), setup(&mut net, 1, &more)];
    for (h, host) in hosts.iter_mut().enumerate() {
        start_pairbeatd(&mut net, host, h);
        start_replicad(&mut net, host, h, &format!("{}.replicad.log", node(h)));
    }
    until(&net, "both Connected", Duration::from_secs(10), || {
        hosts
            .iter()
            .all(|h| status(h).is_some_and(|s| s.connection == "Connected"))
    });
    let out = cli(&hosts[0].conf, 0, &["primary", "r0", "--new-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(&net, "UpToDate/UpToDate", Duration::from_secs(5), || {
        hosts
            .iter()
            .all(|h| status(h).is_some_and(|s| s.disk == "UpToDate" && s.peer_disk.as_deref() == Some("UpToDate")))
    });
    (net, hosts)
}

/// alpha's published device.
fn device(net: &Net) -> String {
    net.path("alpha").join("replica").join("r0.dev").display().to_string()
}

/// A synchronous 64 KiB write into 1 MiB extent `e` of alpha's device; how long it took.
fn write_sync(net: &Net, e: u64) -> Duration {
    let t = Instant::now();
    let out = net.exec(
        0,
        &format!(
            "test -b {0} && dd if=/dev/urandom of={0} bs=4096 count=16 seek={1} oflag=direct,dsync conv=notrunc 2>&1",
            device(net),
            e * 256 + 8
        ),
    );
    assert!(
        out.status.success(),
        "write: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        net.logs()
    );
    t.elapsed()
}

#[test]
fn a_replication_link_cut_outdates_the_peer_over_the_heartbeat_link_and_io_goes_on() {
    let (net, hosts) = pair();
    write_sync(&net, 0);
    let sent_before = status(&hosts[0]).unwrap().resync_sent_bytes;

    // Only the replication link goes: the heartbeat link still carries the ask.
    let out = net.exec(0, "ip link set pb1 down");
    assert!(out.status.success());
    let took = write_sync(&net, 3);
    eprintln!("a write across the cut took {} ms", took.as_millis());
    assert!(
        took < Duration::from_secs(1 + 3 + 2),
        "the Primary resumes within timeout + outdate_timeout: {took:?}\n{}",
        net.logs()
    );
    let b = status(&hosts[1]).unwrap();
    assert_eq!(b.disk, "Outdated", "{}", b.line());
    let a = status(&hosts[0]).unwrap();
    assert!(!a.io_frozen, "{}", a.line());
    assert_eq!(
        a.promotion_score,
        Some(10000),
        "the peer is known outdated: {}",
        a.line()
    );
    assert!(
        log(&net, "bravo.pairbeatd.log").contains("outdate asked by alpha"),
        "{}",
        net.logs()
    );
    assert!(log(&net, "alpha.replicad.log").contains("the peer persisted Outdated"));
    // The stale side cannot be promoted, even alone.
    let out = cli(&hosts[1].conf, 1, &["primary", "r0"]);
    assert!(!out.status.success(), "an Outdated disk was promoted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Outdated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write_sync(&net, 5);

    // The heal: only the extents written during the cut travel, and extent 0,
    // written just before it and still in the activity log (not adjacent ones,
    // which a sequential writer would have marked ahead).
    let out = net.exec(0, "ip link set pb1 up");
    assert!(out.status.success());
    until(&net, "resynced", Duration::from_secs(15), || {
        hosts.iter().all(|h| {
            status(h).is_some_and(|s| {
                s.connection == "Connected" && s.disk == "UpToDate" && s.peer_disk.as_deref() == Some("UpToDate")
            })
        })
    });
    let sent = status(&hosts[0]).unwrap().resync_sent_bytes - sent_before;
    assert_eq!(sent, 3 << 20, "extents 0, 3 and 5 of 8, and nothing else");
    assert_images_equal(&net);
}

#[test]
fn a_secondary_whose_replicad_died_is_outdated_in_its_metadata() {
    let (mut net, mut hosts) = pair();
    net.kill9(hosts[1].replicad.take().unwrap());
    let took = write_sync(&net, 2);
    eprintln!(
        "a write after the Secondary's replicad died took {} ms",
        took.as_millis()
    );
    assert!(
        log(&net, "bravo.pairbeatd.log").contains("its metadata was changed"),
        "{}",
        net.logs()
    );
    assert!(!status(&hosts[0]).unwrap().io_frozen);
    // Back, it knows it is stale, and catches up from alpha.
    start_replicad(&mut net, &mut hosts[1], 1, "bravo.replicad.2.log");
    until(&net, "bravo back", Duration::from_secs(5), || {
        status(&hosts[1]).is_some()
    });
    until(&net, "bravo resynced", Duration::from_secs(15), || {
        status(&hosts[1]).is_some_and(|s| s.disk == "UpToDate" && s.connection == "Connected")
    });
    assert!(
        log(&net, "bravo.replicad.2.log").contains("Outdated"),
        "it started Outdated:\n{}",
        log(&net, "bravo.replicad.2.log")
    );
    assert_images_equal(&net);
}

#[test]
fn a_peer_dead_on_the_heartbeat_links_too_is_not_waited_for() {
    let (net, hosts) = pair();
    // bravo's pairbeatd is stopped as well: by the time the replication link times
    // out (1 s), the heartbeat link shows bravo dead (deadtime 1 s), and the ask is
    // answered "unreachable" at once instead of after outdate_timeout.
    let pid = hosts[1].pairbeatd.unwrap();
    net.signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let out = net.exec(0, "ip link set pb1 down");
    assert!(out.status.success());
    let took = write_sync(&net, 3);
    net.signal(pid, nix::sys::signal::Signal::SIGCONT);
    eprintln!("a write with nobody to answer took {} ms", took.as_millis());
    assert!(
        took < Duration::from_secs(3),
        "resource-only goes on before outdate_timeout: {took:?}\n{}",
        net.logs()
    );
    let alpha = log(&net, "alpha.pairbeatd.log");
    assert!(
        alpha.contains("the peer could not be reached"),
        "{alpha}\n{}",
        net.logs()
    );
    assert!(!status(&hosts[0]).unwrap().io_frozen);
}

#[test]
fn a_hung_secondary_replicad_is_waited_for_outdate_timeout_then_resource_only_goes_on() {
    let (net, hosts) = pair();
    // bravo's pairbeatd answers keepalives but its replica answers nothing: the
    // replication link times out, and so does the ask.
    // The worker, which serves the replica (the supervisor is its parent).
    let pid = status(&hosts[1]).unwrap().pid;
    assert_ne!(Some(pid), hosts[1].replicad);
    net.signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let took = write_sync(&net, 4);
    net.signal(pid, nix::sys::signal::Signal::SIGCONT);
    eprintln!("a write with the peer's replica hung took {} ms", took.as_millis());
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(1 + 3 + 2),
        "I/O waits for the answer, outdate_timeout at most: {took:?}\n{}",
        net.logs()
    );
    assert!(
        log(&net, "alpha.pairbeatd.log").contains("the peer could not be reached"),
        "{}",
        net.logs()
    );
    assert!(!status(&hosts[0]).unwrap().io_frozen);
}

/// resource-and-stonith with a fencing device that fails at first: bravo is cut
/// off on every link, alpha's ask cannot be answered and its fence of bravo fails,
/// so alpha's I/O stays frozen (held); once the device works again (pairbeatd's
/// fence retry), alpha's replica, asking again (after `outdate_timeout`, then
/// twice as long each time), is answered
/// "fenced" and its I/O resumes by itself (before, it stayed frozen until
/// `pairbeat replica resume-io`).
#[test]
fn held_io_resumes_by_itself_once_a_fence_retry_succeeds() {
    let fail = std::cell::RefCell::new(PathBuf::new());
    let (mut net, hosts) = pair_with(|net| {
        *fail.borrow_mut() = net.path("device-fails");
        format!(
            "\n[fence]\nagent = \"{agent}\"\ntimeout = \"5s\"\nretry = \"1s\"\n[fence.node.alpha]\nparams = {{ plug = \"{a}\" }}\n[fence.node.bravo]\nparams = {{ plug = \"{b}\", fail_flag = \"{flag}\" }}\n",
            agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/fence_netns").display(),
            a = net.holder_pid(0),
            b = net.holder_pid(1),
            flag = net.path("device-fails").display(),
        )
    });
    let fail = fail.into_inner();
    std::fs::write(&fail, "").unwrap();
    assert!(net
        .exec(1, "ip link set pb0 down && ip link set pb1 down")
        .status
        .success());
    let dd = format!(
        "dd if=/dev/urandom of={} bs=4096 count=16 seek=8 oflag=direct,dsync conv=notrunc",
        device(&net)
    );
    let t = Instant::now();
    let writer = net.spawn(0, Path::new("/bin/sh"), &["-c", &dd], &net.path("writer.log"));
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        net.wait_exit(writer, Duration::ZERO).is_none(),
        "a write finished while bravo could be neither outdated nor fenced:\n{}",
        net.logs()
    );
    assert!(status(&hosts[0]).unwrap().io_frozen);
    std::fs::remove_file(&fail).unwrap();
    let st = net.wait_exit(writer, Duration::from_secs(15));
    let took = t.elapsed();
    assert!(
        st.is_some_and(|s| s.success()),
        "the held write completed once the fence succeeded: {st:?}\n{}",
        net.logs()
    );
    eprintln!(
        "held write done {} ms after it began (device fixed at 6 s)",
        took.as_millis()
    );
    assert!(!status(&hosts[0]).unwrap().io_frozen);
    let alpha = log(&net, "alpha.replicad.log");
    assert!(alpha.contains("asking again"), "{alpha}");
}
