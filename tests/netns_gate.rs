//! The promotion gate for real: two network-namespace hosts, each with pairbeatd
//! (heartbeat on `pb0`) running a group of one promotable `ocf:pairbeat:replica`
//! whose daemon replicates on `pb1`. alpha runs the group; the replication link
//! is cut and bravo's copy outdated through the heartbeat link; then alpha is cut
//! off entirely: bravo, whose data is stale, does not take the group — the outage
//! is alpha's clients' only if alpha is really gone, never a promotion of stale
//! data. Healed, bravo resyncs and the group stays where it is. bravo booted alone
//! with stale data waits past initdead, with status saying why, until the
//! operator forces its data (`pairbeat replica primary --force`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{pairbeat_config_with, wait_for, Net};
use pairbeat::replicad::control::{request, ReplicaStatus, Request};

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

fn setup(net: &mut Net, h: usize) -> Host {
    let dir = net.path(node(h));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("pairbeat.toml");
    let bindir = Path::new(env!("CARGO_BIN_EXE_pairbeat")).parent().unwrap();
    let extra = format!(
        "realtime = false\nocf_root = \"{ocf}\"\n\n[failover]\npreferred_node = \"alpha\"\nauto_failback = false\n\n[group]\nid = \"data\"\n\n[[group.resource]]\nid = \"disk\"\nagent = \"ocf:pairbeat:replica\"\npromotable = true\nparams = {{ replica = \"r0\", config = \"{conf}\", bindir = \"{bin}\", daemon = \"direct\" }}\nop = [{{ name = \"monitor\", interval = \"1s\", timeout = \"10s\" }}]\n\n[[replica]]\nname = \"r0\"\nbacking = \"{img}\"\nsize = \"8MiB\"\nextent = \"1MiB\"\nport = 7789\naddress.alpha = \"{a}\"\naddress.bravo = \"{b}\"\ntimeout = \"1s\"\nping_interval = \"200ms\"\noutdate_timeout = \"3s\"\n",
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
    request(&host.replica_sock, &Request::Status).ok()?.status
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

#[test]
fn stale_data_never_takes_the_group_alone_or_after_a_partition_until_the_operator_forces_it() {
    let mut net = Net::new(2);
    let mut hosts = [setup(&mut net, 0), setup(&mut net, 1)];
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
