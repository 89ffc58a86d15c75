//! The promotion gate for real: two network-namespace hosts, each with pairbeatd
//! (heartbeat on `pb0`) running a group of one promotable `ocf:pairbeat:replica`
//! whose daemon replicates on `pb1`. alpha runs the group; the replication link
//! is cut and bravo's copy outdated through the heartbeat link; then alpha is cut
//! off entirely: bravo, whose data is stale, does not take the group — the outage
//! is alpha's clients' only if alpha is really gone, never a promotion of stale
//! data. Healed, bravo resyncs and the group stays where it is. bravo booted alone
//! with stale data waits past initdead, with status saying why, until the
//! operator forces its data (`pairbeat replica primary --force`).
//!
//! And data-level split brain by pairbeat's policies: both promoted in a total
//! partition and both written; at the heal the policy picks the keeper as for the
//! group (keep-preferred: alpha; keep-last-writer: bravo, the last to take over;
//! stop-both: both stop, both copies held, nothing discarded until the operator's
//! `pairbeat resolve --keep bravo`),
//! the keeper's replica never stops being Primary, the loser stops its group, its
//! writes are saved aside and it resyncs from the keeper; `split-brains.json`
//! names both generation tuples, the rule and the bytes discarded.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{pairbeat_config_with, wait_for, Net};
use pairbeat::replicad::control::ReplicaStatus;

const TIMING: &str = "keepalive = \"100ms\"\ndeadtime = \"1s\"\ninitdead = \"3s\"";

fn node(h: usize) -> &'static str {
    ["alpha", "bravo"][h]
}

struct Host {
    conf: PathBuf,
    replica_sock: PathBuf,
    sock: PathBuf,
    pairbeatd: Option<u32>,
}

/// An OCF root with the real resource-agents and pairbeat's own agents.
fn ocf_root(net: &Net) -> PathBuf {
    let root = common::ocf_root(&net.path("."));
    let ours = net.path("pairbeat-agents");
    std::fs::create_dir_all(&ours).unwrap();
    let agent = ours.join("replica");
    if !agent.exists() {
        std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/replica"), agent).unwrap();
        std::os::unix::fs::symlink(&ours, root.join("resource.d/pairbeat")).unwrap();
    }
    root
}

fn setup(net: &mut Net, h: usize, policy: &str) -> Host {
    let dir = net.path(node(h));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("pairbeat.toml");
    let bindir = Path::new(env!("CARGO_BIN_EXE_pairbeat")).parent().unwrap();
    let extra = format!(
        "realtime = false\nocf_root = \"{ocf}\"\n\n[split_brain]\npolicy = \"{policy}\"\n\n[failover]\npreferred_node = \"alpha\"\nauto_failback = false\n\n[group]\nid = \"data\"\n\n[[group.resource]]\nid = \"disk\"\nagent = \"ocf:pairbeat:replica\"\npromotable = true\nparams = {{ replica = \"r0\", config = \"{conf}\", bindir = \"{bin}\", daemon = \"direct\" }}\nop = [{{ name = \"monitor\", interval = \"1s\", timeout = \"10s\" }}]\n\n[[replica]]\nname = \"r0\"\nbacking = \"{img}\"\nsize = \"8MiB\"\nextent = \"1MiB\"\nport = 7789\naddress.alpha = \"{a}\"\naddress.bravo = \"{b}\"\ntimeout = \"1s\"\nping_interval = \"200ms\"\noutdate_timeout = \"3s\"\n",
        ocf = ocf_root(net).display(),
        conf = conf.display(),
        bin = bindir.display(),
        img = dir.join("r0.img").display(),
        a = net.addr(0, 1),
        b = net.addr(1, 1)
    );
    let written = pairbeat_config_with(net, h, &["ucast"], TIMING, &extra);
    assert_eq!(written, conf);
    let out = replica_cli(&conf, h, &["create", "r0"]);
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    Host {
        replica_sock: dir.join("replica").join("r0.sock"),
        sock: dir.join("pb.sock"),
        conf,
        pairbeatd: None,
    }
}

fn replica_cli(conf: &Path, h: usize, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args(["replica", "-c", conf.to_str().unwrap(), "--node", node(h)])
        .args(args)
        .output()
        .unwrap()
}

fn start_replicad(net: &mut Net, host: &Host, h: usize) {
    let conf = host.conf.to_str().unwrap().to_string();
    let log = net.path(&format!("{}.replicad.log", node(h)));
    net.spawn(
        h,
        Path::new(env!("CARGO_BIN_EXE_pairbeat-replicad")),
        &["-c", &conf, "--node", node(h), "r0"],
        &log,
    );
}

fn start_pairbeatd(net: &mut Net, host: &mut Host, h: usize, run: u32) {
    let conf = host.conf.to_str().unwrap().to_string();
    let log = net.path(&format!("{}.pairbeatd.{run}.log", node(h)));
    host.pairbeatd = Some(net.spawn(
        h,
        Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
        &["-c", &conf, "--node", node(h)],
        &log,
    ));
}

fn replica(host: &Host) -> Option<ReplicaStatus> {
    common::replica_status(&host.replica_sock)
}

fn pb(host: &Host) -> Option<serde_json::Value> {
    common::status(&host.sock)
}

fn owner(host: &Host) -> Option<String> {
    pb(host)?["group"]["owner"].as_str().map(str::to_string)
}

#[track_caller]
fn until(net: &Net, what: &str, limit: Duration, f: impl FnMut() -> bool) {
    assert!(wait_for(limit, f).is_some(), "{what} within {limit:?}:\n{}", net.logs());
}

/// Both hosts with the group running on alpha, the pair in sync.
fn running_pair(policy: &str) -> (Net, [Host; 2]) {
    let mut net = Net::new(2);
    let mut hosts = [setup(&mut net, 0, policy), setup(&mut net, 1, policy)];
    // A fresh pair in sync, both Secondary, before pairbeat runs it.
    for (h, host) in hosts.iter().enumerate() {
        start_replicad(&mut net, host, h);
    }
    until(&net, "both Connected", Duration::from_secs(10), || {
        hosts
            .iter()
            .all(|h| replica(h).is_some_and(|s| s.connection == "Connected"))
    });
    for args in [&["primary", "r0", "--new-data"][..], &["secondary", "r0"]] {
        let out = replica_cli(&hosts[0].conf, 0, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    until(&net, "UpToDate on both", Duration::from_secs(5), || {
        hosts.iter().all(|h| replica(h).is_some_and(|s| s.disk == "UpToDate"))
    });
    for (h, host) in hosts.iter_mut().enumerate() {
        start_pairbeatd(&mut net, host, h, 1);
    }
    until(
        &net,
        "the group on alpha, its replica Primary",
        Duration::from_secs(20),
        || owner(&hosts[0]).as_deref() == Some("alpha") && replica(&hosts[0]).is_some_and(|s| s.role == "Primary"),
    );
    (net, hosts)
}

#[test]
fn stale_data_never_takes_the_group_alone_or_after_a_partition_until_the_operator_forces_it() {
    let (mut net, mut hosts) = running_pair("keep-preferred");
    let gate = pb(&hosts[1]).unwrap()["protection"]["promotion_gate"].clone();
    assert_eq!(gate["state"], "eligible", "{gate}");
    assert_eq!(gate["peer_score"], 10000, "alpha's score, as it advertises it: {gate}");

    // The replication link alone: alpha goes on, bravo is outdated through pairbeatd.
    assert!(net.exec(0, "ip link set pb1 down").status.success());
    until(&net, "bravo Outdated", Duration::from_secs(10), || {
        replica(&hosts[1]).is_some_and(|s| s.disk == "Outdated")
    });
    until(&net, "bravo's gate closed", Duration::from_secs(5), || {
        pb(&hosts[1]).is_some_and(|s| s["protection"]["promotion_gate"]["state"] == "not_eligible")
    });
    assert_eq!(owner(&hosts[0]).as_deref(), Some("alpha"), "no outage on alpha");

    // Now alpha is cut off entirely: bravo hears nothing, and its data is stale.
    assert!(net.exec(0, "ip link set pb0 down").status.success());
    until(&net, "bravo sees alpha dead", Duration::from_secs(5), || {
        pb(&hosts[1]).is_some_and(|s| s["nodes"][0]["state"] == "offline")
    });
    std::thread::sleep(Duration::from_secs(3));
    let b = pb(&hosts[1]).unwrap();
    assert_eq!(
        b["group"]["owner"],
        serde_json::Value::Null,
        "stale data took the group: {b}"
    );
    assert_eq!(b["decision_reason"], "data_not_up_to_date", "{b}");
    assert_eq!(replica(&hosts[1]).unwrap().role, "Secondary");
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args(["status", "-s", hosts[1].sock.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("promotion gate: NOT ELIGIBLE") && text.contains("not provably up to date"),
        "status says why:\n{text}"
    );

    // Healed: bravo resyncs from alpha and becomes eligible; the group stays.
    assert!(net.exec(0, "ip link set pb0 up && ip link set pb1 up").status.success());
    until(&net, "bravo UpToDate again", Duration::from_secs(20), || {
        replica(&hosts[1]).is_some_and(|s| s.disk == "UpToDate" && s.connection == "Connected")
            && pb(&hosts[1]).is_some_and(|s| s["protection"]["promotion_gate"]["state"] == "eligible")
    });
    assert_eq!(owner(&hosts[0]).as_deref(), Some("alpha"));

    // bravo boots alone with stale data: its pairbeatd restarts while alpha is cut
    // off again after outdating it.
    assert!(net.exec(0, "ip link set pb1 down").status.success());
    until(&net, "bravo Outdated again", Duration::from_secs(10), || {
        replica(&hosts[1]).is_some_and(|s| s.disk == "Outdated")
    });
    assert!(net.exec(0, "ip link set pb0 down").status.success());
    net.kill9(hosts[1].pairbeatd.take().unwrap());
    start_pairbeatd(&mut net, &mut hosts[1], 1, 2);
    // Past initdead (3 s) and some: it must not start.
    std::thread::sleep(Duration::from_secs(5));
    let b = pb(&hosts[1]).expect("bravo's pairbeatd answers");
    assert_eq!(b["nodes"][0]["state"], "offline", "{b}");
    assert_eq!(b["group"]["owner"], serde_json::Value::Null, "{b}");
    assert_eq!(b["decision_reason"], "data_not_up_to_date", "{b}");
    // The operator asserts bravo's data: the gate opens and the group starts there.
    let out = replica_cli(&hosts[1].conf, 1, &["primary", "r0", "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(&net, "the group on bravo", Duration::from_secs(15), || {
        owner(&hosts[1]).as_deref() == Some("bravo")
    });
}

/// ComponentFail for the replica (TESTING.md's catalogue): kill -9 the Primary's
/// worker, then the whole pairbeat-replicad of the node then running the group.
/// Each time the monitor finds it (a failed Primary; then no daemon at all) and
/// pairbeatd recovers the group — in place, or on the peer when the failed node's
/// gate closed first (both happen, by timing) — with the data written before on the
/// new Primary's device, the failed node's fail count up, never two healthy
/// Primaries at once, and both copies equal in the end.
#[test]
fn a_primarys_replicad_killed_is_recovered_with_its_data() {
    let (net, hosts) = running_pair("keep-preferred");
    let dev = |h: usize| net.path(node(h)).join("replica").join("r0.dev");
    let published = |h: usize| published(&net, &hosts[h], h);
    let device_sum = |h: usize| {
        let out = net.exec(
            h,
            &format!(
                "dd if={} bs=1M skip=1 count=1 iflag=direct 2>/dev/null | sha256sum",
                dev(h).display()
            ),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fail_count = |h: usize| pb(&hosts[h]).and_then(|s| s["group"]["resources"][0]["fail_count"].as_u64());
    // Its device published (a write to the path before would create a plain file).
    until(&net, "alpha's device published", Duration::from_secs(10), || {
        published(0)
    });
    write_extent(&net, 0, 1);
    let written = device_sum(0);

    let mut owner_now = 0;
    for (round, what) in [(1, "worker"), (2, "pairbeat-replicad")] {
        let failed = owner_now;
        let before = fail_count(failed).unwrap();
        let old_worker = replica(&hosts[failed]).unwrap().pid;
        // The supervisor is the worker's parent: the one the test started, or one
        // the agent started when round 1 recovered by a stop and a start.
        let supervisor = || {
            let stat = std::fs::read_to_string(format!("/proc/{old_worker}/stat")).unwrap();
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            after_name.split_whitespace().nth(1).unwrap().parse::<u32>().unwrap()
        };
        let victim = if round == 1 { old_worker } else { supervisor() };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let mut new_owner = None;
        until(
            &net,
            &format!("the group running again after kill -9 of {}'s {what}", node(failed)),
            Duration::from_secs(30),
            || {
                let both = [replica(&hosts[0]), replica(&hosts[1])];
                assert!(
                    !both
                        .iter()
                        .all(|s| s.as_ref().is_some_and(|s| s.role == "Primary" && s.failed.is_none())),
                    "two healthy Primaries after kill -9 of {}'s {what}: {both:?}\n{}",
                    node(failed),
                    net.logs()
                );
                new_owner = (0..2).find(|&h| {
                    owner(&hosts[h]).as_deref() == Some(node(h))
                        && both[h]
                            .as_ref()
                            .is_some_and(|s| s.role == "Primary" && s.failed.is_none() && s.pid != old_worker)
                        && published(h)
                });
                new_owner.is_some() && fail_count(failed).is_some_and(|n| n > before)
            },
        );
        owner_now = new_owner.unwrap();
        eprintln!(
            "round {round}: kill -9 of {}'s {what}: the group runs on {}",
            node(failed),
            node(owner_now)
        );
        assert_eq!(
            device_sum(owner_now),
            written,
            "round {round}: the data written before the kill"
        );
    }
    until(&net, "both UpToDate and Connected", Duration::from_secs(20), || {
        hosts.iter().all(|h| {
            replica(h).is_some_and(|s| s.disk == "UpToDate" && s.connection == "Connected" && s.out_of_sync_bytes == 0)
        })
    });
    common::assert_images_equal(&net);
}

/// Host h's replica device is published (a write to the path before would create
/// a plain file).
fn published(net: &Net, host: &Host, h: usize) -> bool {
    replica(host).is_some_and(|s| s.device.is_some())
        && std::fs::read_link(net.path(node(h)).join("replica").join("r0.dev")).is_ok()
}

/// SIGTERM to host h's pairbeatd, and its exit.
fn stop_pairbeatd(net: &mut Net, host: &mut Host, h: usize) {
    let pid = host.pairbeatd.take().unwrap();
    net.signal(pid, nix::sys::signal::Signal::SIGTERM);
    assert!(
        net.wait_exit(pid, Duration::from_secs(20)).is_some(),
        "{}'s pairbeatd did not stop:\n{}",
        node(h),
        net.logs()
    );
}

/// SpecialTest1 for two nodes (TESTING.md's catalogue): both stopped cleanly, one
/// after the other, then the first one back alone. alpha is stopped first: the
/// group moves to bravo, which writes on; then bravo is stopped. alpha back alone
/// must not start the group on the copy it left with (bravo wrote after: PAF #26),
/// and says why; once bravo is back the copies meet, alpha resyncs, and the group
/// runs again with both nodes' writes.
#[test]
fn both_stopped_cleanly_the_first_back_alone_waits_for_the_newer_copy() {
    let (mut net, mut hosts) = running_pair("keep-preferred");
    until(&net, "alpha's device published", Duration::from_secs(10), || {
        published(&net, &hosts[0], 0)
    });
    write_extent(&net, 0, 4);

    // alpha stopped cleanly: the group goes to bravo, which writes on.
    stop_pairbeatd(&mut net, &mut hosts[0], 0);
    until(&net, "the group on bravo", Duration::from_secs(20), || {
        owner(&hosts[1]).as_deref() == Some("bravo") && published(&net, &hosts[1], 1)
    });
    write_extent(&net, 1, 5);
    let newest = [4, 5].map(|e| extent_sum(&net.path("bravo").join("r0.img"), e));
    stop_pairbeatd(&mut net, &mut hosts[1], 1);
    until(&net, "both replicas down", Duration::from_secs(10), || {
        hosts.iter().all(|h| replica(h).is_none())
    });

    // alpha back alone: past initdead (3 s) and more, it starts nothing, says why.
    start_pairbeatd(&mut net, &mut hosts[0], 0, 2);
    std::thread::sleep(Duration::from_secs(6));
    let a = pb(&hosts[0]).expect("alpha's pairbeatd answers");
    assert_eq!(
        a["group"]["owner"],
        serde_json::Value::Null,
        "alpha started alone on its old copy: {a}"
    );
    // Outdated when bravo's promotion outdated it before it left (the copies still
    // connected), else Consistent: not connected since it started, so not provably
    // current (DRBD's attach under resource-only). Both keep it out; both occur.
    let r = replica(&hosts[0]).expect("alpha's replica runs (Secondary)");
    let why = a["decision_reason"].as_str().unwrap_or_default();
    assert!(
        matches!(
            (r.disk.as_str(), why),
            ("Outdated", "data_not_up_to_date") | ("Consistent", "data_needs_fencing")
        ) && r.role == "Secondary",
        "{r:?}\n{a}"
    );
    eprintln!("alpha alone: {} ({why})", r.disk);

    // bravo back: alpha resyncs from it; the group runs again with both writes.
    start_pairbeatd(&mut net, &mut hosts[1], 1, 2);
    let mut at = None;
    until(
        &net,
        "the group running again, both copies UpToDate",
        Duration::from_secs(30),
        || {
            at = (0..2).find(|&h| owner(&hosts[h]).as_deref() == Some(node(h)));
            at.is_some()
                && hosts.iter().all(|h| {
                    replica(h).is_some_and(|s| {
                        s.disk == "UpToDate" && s.connection == "Connected" && s.out_of_sync_bytes == 0
                    })
                })
        },
    );
    for h in 0..2 {
        let image = net.path(node(h)).join("r0.img");
        assert_eq!([4, 5].map(|e| extent_sum(&image, e)), newest, "{}'s copy", node(h));
    }
    eprintln!("the group runs on {} after both came back", node(at.unwrap()));
}

/// 4 KiB of random data into 1 MiB extent `e` of host h's device, synchronously.
fn write_extent(net: &Net, h: usize, e: u64) {
    let dev = net.path(node(h)).join("replica").join("r0.dev");
    let out = net.exec(
        h,
        &format!(
            "test -b {0} && dd if=/dev/urandom of={0} bs=4096 count=1 seek={1} oflag=direct,dsync conv=notrunc 2>&1",
            dev.display(),
            e * 256 + 3
        ),
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        net.logs()
    );
}

fn extent_sum(path: &Path, e: u64) -> Vec<u8> {
    common::sh(&format!(
        "dd if={} bs=1M skip={e} count=1 2>/dev/null | sha256sum",
        path.display()
    ))
    .stdout
}

/// Both promoted and written in a total partition; healed, `policy` picks `keeper`
/// (under stop-both the operator does, with `pairbeat resolve --keep`).
fn data_split_brain(policy: &str, keeper: usize) {
    let (net, hosts) = running_pair(policy);
    let kept_pid = replica(&hosts[0]).unwrap().pid;
    // A total partition: bravo, up to date, takes over; alpha keeps the group.
    assert!(net
        .exec(0, "ip link set pb0 down && ip link set pb1 down")
        .status
        .success());
    // Its device published: a write to the path before would create a plain file.
    let bravo_dev = net.path("bravo").join("replica").join("r0.dev");
    until(&net, "the group on bravo too", Duration::from_secs(20), || {
        owner(&hosts[1]).as_deref() == Some("bravo")
            && replica(&hosts[1]).is_some_and(|s| s.role == "Primary" && s.device.is_some())
            && std::fs::read_link(&bravo_dev).is_ok()
    });
    write_extent(&net, 0, 2);
    write_extent(&net, 1, 6);
    let loser = 1 - keeper;
    let losers_extent = [2, 6][loser];
    let losers_image = net.path(node(loser)).join("r0.img");
    let losers_write = extent_sum(&losers_image, losers_extent);
    let keepers_pid = replica(&hosts[keeper]).unwrap().pid;
    if keeper == 0 {
        assert_eq!(keepers_pid, kept_pid, "{}", net.logs());
    }

    // The heal: the group's policy and the data's agree on one keeper.
    assert!(net.exec(0, "ip link set pb0 up && ip link set pb1 up").status.success());
    if policy == "stop-both" {
        // Both stop the group; the data's split brain waits with it for the
        // operator, neither side discarding anything meanwhile.
        until(
            &net,
            "both stopped, waiting for the operator",
            Duration::from_secs(30),
            || {
                hosts.iter().all(|h| {
                    pb(h).is_some_and(|s| s["group"]["owner"].is_null() && s["protection"]["awaiting_operator"] == true)
                        && replica(h).is_some_and(|r| r.role == "Secondary" && r.split_brain_pending)
                })
            },
        );
        std::thread::sleep(Duration::from_secs(2));
        for h in &hosts {
            let r = replica(h).unwrap();
            assert!(
                r.split_brain_pending && r.connection == "StandAlone",
                "nothing discarded before resolve: {r:?}"
            );
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .args(["resolve", "--keep", node(keeper), "-s", hosts[0].sock.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "resolve: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    until(&net, "resolved and in sync", Duration::from_secs(30), || {
        hosts.iter().all(|h| {
            replica(h).is_some_and(|s| s.connection == "Connected" && s.disk == "UpToDate" && !s.split_brain_pending)
        })
    });
    until(&net, "the keeper runs the group", Duration::from_secs(30), || {
        owner(&hosts[keeper]).as_deref() == Some(node(keeper))
            && replica(&hosts[keeper]).is_some_and(|r| r.role == "Primary")
    });
    let k = replica(&hosts[keeper]).unwrap();
    assert_eq!(
        (k.role.as_str(), k.pid),
        ("Primary", keepers_pid),
        "the keeper's replica daemon never restarted (under stop-both it was demoted until resolve)"
    );
    assert_eq!(replica(&hosts[loser]).unwrap().role, "Secondary");
    let sum = |h: &str| common::sh(&format!("sha256sum < {}", net.path(h).join("r0.img").display())).stdout;
    assert_eq!(sum("alpha"), sum("bravo"), "the two images differ");
    // The loser's write was saved aside before its data was given up.
    let saved: Vec<PathBuf> = std::fs::read_dir(net.path(node(loser)))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("r0.img.divergent-"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}\n{}", net.logs());
    assert_eq!(extent_sum(&saved[0], losers_extent), losers_write);
    // Both nodes' records name the tuples, the rule and the bytes discarded.
    for h in 0..2 {
        let text = std::fs::read_to_string(net.path(node(h)).join("state").join("split-brains.json")).unwrap();
        let log: serde_json::Value = serde_json::from_str(&text).unwrap();
        let data = log["records"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["data"].as_array().cloned().unwrap_or_default())
            .find(|d| d["replica"] == "r0")
            .unwrap_or_else(|| panic!("{}: no data record: {text}", node(h)));
        assert_eq!(data["kept"], node(keeper), "{text}");
        // Rule 90: both moved on from the same bitmap generation (DRBD 8.4's table).
        assert_eq!(data["rule"], 90, "{text}");
        assert_eq!(
            data["discarded_bytes"],
            1 << 20,
            "{}: one extent: {text}\n{}",
            node(h),
            net.logs()
        );
        assert_ne!(data["local_generations"], data["peer_generations"], "{text}");
    }
}

#[test]
fn keep_preferred_keeps_the_preferred_nodes_data_and_the_loser_resyncs_from_it() {
    data_split_brain("keep-preferred", 0);
}

#[test]
fn keep_last_writer_keeps_the_data_of_the_node_that_took_the_group_last() {
    data_split_brain("keep-last-writer", 1);
}

#[test]
fn keep_running_longest_keeps_the_data_of_the_node_that_ran_the_group_longer() {
    data_split_brain("keep-running-longest", 0);
}

#[test]
fn stop_both_holds_both_copies_until_the_operator_resolves_then_keeps_the_choice() {
    data_split_brain("stop-both", 1);
}
