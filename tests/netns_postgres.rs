//! No acknowledged commit lost: PostgreSQL 15 on ext4 on the replicated disk, behind
//! the VIP, run by pairbeatd on two network-namespace hosts (the group replica →
//! Filesystem → IPaddr2 → PostgreSQL), `synchronous_commit = on`, data checksums on,
//! the replicas in volatile-cache mode (a write not yet flushed is lost when its
//! host crashes, as in a power cut). A client in a third namespace runs workers that
//! each commit, one after the other, an insert and a counter update, recording each
//! operation's outcome (ok, failed, unknown) before the next.
//!
//! Faults, in turn, `PG_CYCLES` of them (12 here, each kind twice; `make bench` runs 100 and prints
//! each failover's outage): the primary host crashes (every process of it killed,
//! VIP and mounts gone) and comes back; the secondary host crashes and comes back;
//! the replication link alone is cut for a while; the primary crashes while the
//! secondary resyncs from it (the secondary, Inconsistent, must not take over); the
//! secondary's replica worker hangs for 6 s (SIGSTOP: the primary's ask to outdate
//! it goes unanswered, resource-only goes on after outdate_timeout); the primary
//! host is cut off from everything (it loses the tie-break target, the client's
//! address, and stops; the secondary takes over; healed, what the isolated side
//! wrote alone is a split brain kept by the node that ran the group). The verdict from a final read:
//! 0 acknowledged commits lost, 0 rows of failed ones, 0 duplicates, every counter
//! equal to its worker's rows; `pg_amcheck --all` clean; then, the group stopped,
//! both backing files equal by checksum and `e2fsck -fn` clean.
//!
//! A second test runs the one fault that only fencing makes safe: a full partition
//! with the client reaching both nodes (`PG_PARTITIONS` of them, 2 here). Its pair
//! has `[fence]` with `tests/agents/fence_power`, a STAND-IN for a power switch
//! (it kills every process of the host, as `crash` does), `priority_delay`, and the
//! replica in resource-and-stonith (the default with `[fence]`); the same verdict.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{pairbeat_config_with, wait_for, Net};
use pairbeat::replicad::control::ReplicaStatus;

const TIMING: &str = "keepalive = \"100ms\"\ndeadtime = \"500ms\"\ninitdead = \"3s\"";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const WORKERS: usize = 4;

fn node(h: usize) -> &'static str {
    ["alpha", "bravo"][h]
}

struct Pair {
    net: Net,
    vip: String,
    pairbeatd: [Option<u32>; 2],
    runs: u32,
}

/// An OCF root with the real resource-agents, the test agents and pairbeat's replica agent.
fn ocf_root(net: &Net) -> PathBuf {
    let root = common::ocf_root(&net.path("."));
    let ours = net.path("pairbeat-agents");
    std::fs::create_dir_all(&ours).unwrap();
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/replica"),
        ours.join("replica"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&ours, root.join("resource.d/pairbeat")).unwrap();
    root
}

impl Pair {
    fn dir(&self, h: usize) -> PathBuf {
        self.net.path(node(h))
    }

    fn conf(&self, h: usize) -> PathBuf {
        self.dir(h).join("pairbeat.toml")
    }

    fn replica(&self, h: usize) -> Option<ReplicaStatus> {
        common::replica_status(&self.dir(h).join("replica").join("r0.sock"))
    }

    fn replica_cli(&self, h: usize, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .args(["replica", "-c", self.conf(h).to_str().unwrap(), "--node", node(h)])
            .args(args)
            .output()
            .unwrap()
    }

    /// The replica's daemon in volatile-cache mode, as the agent would start it.
    fn start_replicad(&mut self, h: usize) {
        let conf = self.conf(h).display().to_string();
        let log = self.net.path(&format!("{}.replicad.{}.log", node(h), self.runs));
        self.runs += 1;
        let sh = format!(
            "PAIRBEAT_REPLICA_VOLATILE=1 exec {} -c {conf} --node {} r0",
            env!("CARGO_BIN_EXE_pairbeat-replicad"),
            node(h)
        );
        self.net.spawn(h, Path::new("/bin/sh"), &["-c", &sh], &log);
    }

    fn start_pairbeatd(&mut self, h: usize) {
        let conf = self.conf(h).display().to_string();
        let log = self.net.path(&format!("{}.pairbeatd.{}.log", node(h), self.runs));
        self.runs += 1;
        self.pairbeatd[h] = Some(self.net.spawn(
            h,
            Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
            &["-c", &conf, "--node", node(h)],
            &log,
        ));
    }

    /// Every process of host h killed, its VIP and mounts gone: a power cut.
    fn crash(&mut self, h: usize) {
        if let Some(pid) = self.pairbeatd[h].take() {
            self.net.kill9(pid);
        }
        let holder = self.net.holder_pid(h);
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", &self.net.ns[h]])
            .output()
            .unwrap();
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .filter(|p| *p as u32 != holder)
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
        let dir = self.dir(h);
        self.net.exec(
            h,
            &format!(
                "ip addr del {}/24 dev pb0 2>/dev/null; umount -l {}/pg 2>/dev/null; true",
                self.vip,
                dir.display()
            ),
        );
    }

    fn restart(&mut self, h: usize) {
        self.start_replicad(h);
        self.start_pairbeatd(h);
    }

    /// The host the power-switch stand-in turned off, once it has.
    fn powered_off(&self) -> Vec<usize> {
        (0..2)
            .filter(|&h| self.net.path(&format!("{}.off", node(h))).exists())
            .collect()
    }

    /// Power back on a host the stand-in turned off: its daemons start as at boot.
    fn power_on(&mut self, h: usize) {
        std::fs::remove_file(self.net.path(&format!("{}.off", node(h)))).unwrap();
        if let Some(pid) = self.pairbeatd[h].take() {
            self.net.kill9(pid); // reaps it: the stand-in killed it
        }
        self.restart(h);
    }

    /// `psql` from the client against the VIP; its output, or why not.
    fn sql(&self, query: &str) -> Result<String, String> {
        let out = self.net.exec(
            2,
            &format!(
                "PGCONNECT_TIMEOUT=1 {PG_BIN}/psql -X -q -t -A -h {} -U postgres -c \"{query}\" 2>&1",
                self.vip
            ),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Which node's server answers at the VIP.
    fn serving(&self) -> Option<String> {
        self.sql("SHOW cluster_name").ok().map(|s| s.trim().to_string())
    }

    #[track_caller]
    fn until(&self, what: &str, limit: Duration, f: impl FnMut() -> bool) -> Duration {
        wait_for(limit, f)
            .unwrap_or_else(|| panic!("{what} within {limit:?}:\n{}\n{}", self.net.logs(), self.pg_logs()))
    }

    /// The last lines of each host's PostgreSQL log: why a server did not start.
    fn pg_logs(&self) -> String {
        (0..2)
            .map(|h| {
                let text = std::fs::read_to_string(self.dir(h).join("postgres.log")).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                format!(
                    "--- {} postgres.log (last 40 lines)\n{}",
                    node(h),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until both replicas say they are in sync; a failure shows what each said.
    #[track_caller]
    fn until_in_sync(&self, what: &str, limit: Duration) {
        if wait_for(limit, || self.in_sync()).is_none() {
            panic!(
                "{what} within {limit:?}: alpha says {:?}, bravo says {:?}\n{}",
                self.replica(0).map(|s| s.line()),
                self.replica(1).map(|s| s.line()),
                self.net.logs()
            );
        }
    }

    fn in_sync(&self) -> bool {
        (0..2).all(|h| {
            self.replica(h).is_some_and(|s| {
                s.connection == "Connected" && s.disk == "UpToDate" && s.peer_disk.as_deref() == Some("UpToDate")
            })
        })
    }
}

/// `[split_brain] policy` of the run: PG_POLICY, keep-preferred by default
/// (`scripts/bench-postgres` runs the isolation under each).
fn policy() -> String {
    std::env::var("PG_POLICY").unwrap_or_else(|_| "keep-preferred".into())
}

/// The `[fence]` section of `a_full_partition_with_fencing_loses_no_acknowledged_commit`:
/// `tests/agents/fence_power`, a STAND-IN for a power switch (it kills every
/// process of the host, as `crash` does), with `priority_delay` so that the node
/// running the group wins the fence race.
fn fence_section(net: &Net, vip: &str) -> String {
    let mut t = format!(
        "[fence]\nagent = \"{}\"\ntimeout = \"10s\"\nretry = \"2s\"\npriority_delay = \"2s\"\n",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/agents/fence_power")
            .display()
    );
    for h in 0..2 {
        t += &format!(
            "[fence.node.{n}]\nparams = {{ plug = \"{plug}\", netns = \"{ns}\", mount = \"{dir}/pg\", vip = \"{vip}/24\", nic = \"pb0\", off_flag = \"{flag}\" }}\n",
            n = node(h),
            plug = net.holder_pid(h),
            ns = std::fs::read_link(format!("/proc/{}/ns/net", net.holder_pid(h)))
                .unwrap()
                .display(),
            dir = net.path(node(h)).display(),
            flag = net.path(&format!("{}.off", node(h))).display(),
        );
    }
    t
}

fn setup(fencing: bool) -> Pair {
    let mut net = Net::lan(3);
    net.veth(0, 1, 1);
    let vip = format!("10.200.{}.100", net.id);
    let ocf = ocf_root(&net);
    // The postgres user must reach its data directory: traversal only.
    let traverse = |p: &Path| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    };
    traverse(net.dir.path());
    for h in 0..2 {
        let dir = net.path(node(h));
        std::fs::create_dir_all(dir.join("pg")).unwrap();
        traverse(&dir);
        let conf = dir.join("pairbeat.toml");
        let extra = format!(
            r#"realtime = false
ocf_root = "{ocf}"

[failover]
preferred_node = "alpha"
auto_failback = false

[split_brain]
policy = "{policy}"

# The client's address: a node that cannot reach it yields the group (the
# isolation fault; with a total cut nothing else would decide).
[tiebreak]
targets = ["icmp:{client}"]
interval = "200ms"
timeout = "500ms"

[group]
id = "db"

[[group.resource]]
id = "replica"
agent = "ocf:pairbeat:replica"
promotable = true
params = {{ replica = "r0", config = "{conf}", bindir = "{bin}", daemon = "direct" }}
op = [{{ name = "monitor", interval = "2s", timeout = "10s" }}]

[[group.resource]]
id = "fs"
agent = "ocf:heartbeat:Filesystem"
params = {{ device = "{dir}/replica/r0.dev", directory = "{dir}/pg", fstype = "ext4" }}
op = [{{ name = "monitor", interval = "5s", timeout = "20s" }}]

[[group.resource]]
id = "vip"
agent = "ocf:heartbeat:IPaddr2"
params = {{ ip = "{vip}", cidr_netmask = 24, nic = "pb0" }}
op = [{{ name = "monitor", interval = "2s", timeout = "10s" }}]

[[group.resource]]
id = "postgres"
agent = "ocf:pbtest:postgres"
params = {{ pgdata = "{dir}/pg/data", logfile = "{dir}/postgres.log" }}
op = [{{ name = "monitor", interval = "2s", timeout = "10s" }}]

[[replica]]
name = "r0"
backing = "{dir}/r0.img"
size = "128MiB"
extent = "1MiB"
address.alpha = "{a}"
address.bravo = "{b}"
timeout = "1s"
ping_interval = "200ms"
outdate_timeout = "3s"
"#,
            ocf = ocf.display(),
            conf = conf.display(),
            bin = Path::new(env!("CARGO_BIN_EXE_pairbeat")).parent().unwrap().display(),
            dir = dir.display(),
            a = net.addr(0, 1),
            b = net.addr(1, 1),
            client = net.addr(2, 0),
            policy = policy(),
        ) + &if fencing {
            fence_section(&net, &vip)
        } else {
            String::new()
        };
        let written = pairbeat_config_with(&net, h, &["ucast"], TIMING, &extra);
        assert_eq!(written, conf);
    }
    let mut pair = Pair {
        net,
        vip,
        pairbeatd: [None, None],
        runs: 0,
    };
    for h in 0..2 {
        let out = pair.replica_cli(h, &["create", "r0"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        pair.start_replicad(h);
    }
    pair.until("both Connected", Duration::from_secs(15), || {
        (0..2).all(|h| pair.replica(h).is_some_and(|s| s.connection == "Connected"))
    });
    let out = pair.replica_cli(0, &["primary", "r0", "--new-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // ext4 and a database with data checksums, made once on alpha's device. The WAL
    // is bounded (max_wal_size 48 MB): the filesystem has 128 MiB, and PostgreSQL's
    // default of 1 GB filled it after ~80,000 commits (a server that then could not
    // restart, "No space left on device", looked like a replica that lost data).
    let dir = pair.dir(0);
    let init = format!(
        "set -e; mkfs.ext4 -q -F {d}/replica/r0.dev; mount {d}/replica/r0.dev {d}/pg; \
         mkdir {d}/pg/data; chown postgres {d}/pg/data; \
         runuser -u postgres -- {PG_BIN}/initdb -k -A trust -D {d}/pg/data >/dev/null; \
         printf \"synchronous_commit = on\\nfsync = on\\nfull_page_writes = on\\nlisten_addresses = '*'\\nmax_wal_size = 48MB\\nmin_wal_size = 32MB\\n\" >> {d}/pg/data/postgresql.conf; \
         echo 'host all all 0.0.0.0/0 trust' >> {d}/pg/data/pg_hba.conf; \
         touch {d}/postgres.log; chown postgres {d}/postgres.log; \
         runuser -u postgres -- {PG_BIN}/pg_ctl -D {d}/pg/data -w -l {d}/postgres.log -o \"-c unix_socket_directories='' -c listen_addresses=127.0.0.1\" start >/dev/null; \
         {PG_BIN}/psql -X -q -h 127.0.0.1 -U postgres -c 'CREATE TABLE ops (worker int, seq int, PRIMARY KEY (worker, seq)); CREATE TABLE counters (worker int PRIMARY KEY, n bigint NOT NULL); INSERT INTO counters SELECT g, 0 FROM generate_series(0, {last}) g; CREATE EXTENSION amcheck;'; \
         runuser -u postgres -- {PG_BIN}/pg_ctl -D {d}/pg/data -w -m fast stop >/dev/null; umount {d}/pg",
        d = dir.display(),
        last = WORKERS - 1
    );
    let out = pair.net.exec(0, &init);
    assert!(
        out.status.success(),
        "database setup: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pair.replica_cli(0, &["secondary", "r0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    pair.until_in_sync("in sync", Duration::from_secs(30));
    for h in 0..2 {
        pair.start_pairbeatd(h);
    }
    pair.until("the database served at the VIP", Duration::from_secs(60), || {
        pair.serving().as_deref() == Some("alpha")
    });
    pair
}

#[derive(Debug, serde::Deserialize)]
struct Op {
    worker: u32,
    seq: u32,
    outcome: String,
    #[serde(default)]
    node: Option<String>,
    /// When the outcome was known (wall seconds).
    #[serde(default)]
    t: f64,
}

fn wall() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The fault of cycle `i` (of the kinds given, in turn), and what it did (for the
/// log and the outage figures).
fn fault(pair: &mut Pair, i: usize, kinds: &[usize]) -> String {
    // Settled from the cycle before (a psql connect may time out on a busy machine).
    pair.until("served before the fault", Duration::from_secs(30), || {
        pair.serving().is_some()
    });
    let primary = match pair.serving().as_deref() {
        Some("alpha") => 0,
        Some("bravo") => 1,
        other => panic!("nobody serves before cycle {i}: {other:?}\n{}", pair.net.logs()),
    };
    let secondary = 1 - primary;
    match kinds[i % kinds.len()] {
        6 => {
            // A full partition: the two nodes lose each other on every link
            // (heartbeat and replication) while the client reaches both. Both see
            // the peer dead and fence it; the secondary waits priority_delay first,
            // as the primary runs the group, so the primary wins: it powers the
            // secondary off, and its I/O, frozen once its replication peer was
            // lost (resource-and-stonith), resumes once a fence done after its ask
            // confirms the peer cannot write. Healed and powered on, the secondary
            // resyncs. Nothing acknowledged anywhere can be lost: only one side
            // ever acknowledged commits.
            let peer = pair.net.addr(secondary, 0);
            let cut = format!(
                "iptables -I INPUT -s {peer} -j DROP && iptables -I OUTPUT -d {peer} -j DROP && ip link set pb1 down"
            );
            let t = Instant::now();
            assert!(pair.net.exec(primary, &cut).status.success());
            pair.until("a node powered off by the fence", Duration::from_secs(30), || {
                !pair.powered_off().is_empty()
            });
            let fenced_after = t.elapsed();
            // The fence is done: a second one (the other side's) could only follow
            // if the race were lost both ways; wait past priority_delay to see.
            std::thread::sleep(Duration::from_secs(3));
            let off = pair.powered_off();
            assert_eq!(
                off,
                vec![secondary],
                "the node running the group wins the fence race:\n{}",
                pair.net.logs()
            );
            pair.until(
                "the primary serves through the partition",
                Duration::from_secs(30),
                || pair.serving().as_deref() == Some(node(primary)),
            );
            let resumed = pair.replica(primary).is_some_and(|s| !s.io_frozen);
            assert!(
                resumed,
                "the primary's I/O resumed after the fence:\n{}",
                pair.net.logs()
            );
            let heal = format!(
                "iptables -D INPUT -s {peer} -j DROP && iptables -D OUTPUT -d {peer} -j DROP && ip link set pb1 up"
            );
            assert!(pair.net.exec(primary, &heal).status.success());
            pair.power_on(secondary);
            pair.until_in_sync("resynced after the partition", Duration::from_secs(90));
            assert_eq!(pair.serving().as_deref(), Some(node(primary)));
            format!(
                "full partition (the client reaching both): {} fenced {} after {} ms and served on; the fenced node powered on after the heal and resynced",
                node(primary),
                node(secondary),
                fenced_after.as_millis()
            )
        }
        0 => {
            let t = Instant::now();
            pair.crash(primary);
            pair.until("the survivor serves", Duration::from_secs(60), || {
                pair.serving().as_deref() == Some(node(secondary))
            });
            let outage = t.elapsed();
            pair.restart(primary);
            pair.until_in_sync("resynced after the crash", Duration::from_secs(90));
            format!(
                "crash of the primary {}: outage {} ms",
                node(primary),
                outage.as_millis()
            )
        }
        1 => {
            pair.crash(secondary);
            std::thread::sleep(Duration::from_secs(2));
            pair.restart(secondary);
            pair.until_in_sync("resynced after the secondary's crash", Duration::from_secs(90));
            format!("crash of the secondary {}", node(secondary))
        }
        2 => {
            let peer = pair.net.addr(secondary, 1);
            let rule = format!("iptables -I INPUT -p tcp -s {peer} -j DROP");
            assert!(pair.net.exec(primary, &rule).status.success());
            std::thread::sleep(Duration::from_secs(3));
            let outdated = pair.replica(secondary).is_some_and(|s| s.disk == "Outdated");
            assert!(pair
                .net
                .exec(primary, &format!("iptables -D INPUT -p tcp -s {peer} -j DROP"))
                .status
                .success());
            pair.until_in_sync("resynced after the cut", Duration::from_secs(90));
            format!(
                "replication link cut for 3 s (the secondary {}: {})",
                node(secondary),
                if outdated { "Outdated" } else { "not yet Outdated" }
            )
        }
        5 => {
            // The primary host is cut off from everything (the LAN: heartbeat and
            // clients; the replication link): it loses the tie-break target and
            // stops the group; the secondary, reaching it, takes over. Healed, the
            // replicas find whatever the isolated side wrote alone (PostgreSQL's
            // shutdown checkpoint) as a split brain, which the node that runs the
            // group keeps: the isolated side's writes are saved aside, nothing a
            // client was told is lost.
            let t = Instant::now();
            let cut = pair.net.exec(primary, "ip link set pb0 down && ip link set pb1 down");
            assert!(cut.status.success());
            pair.until("the survivor serves", Duration::from_secs(60), || {
                pair.serving().as_deref() == Some(node(secondary))
            });
            let outage = t.elapsed();
            let isolated = pair.dir(primary).join("pb.sock");
            pair.until("the isolated node stopped the group", Duration::from_secs(30), || {
                common::status(&isolated).is_some_and(|s| s["group"]["owner"].is_null())
            });
            std::thread::sleep(Duration::from_secs(2));
            let healed = pair.net.exec(primary, "ip link set pb0 up && ip link set pb1 up");
            assert!(healed.status.success());
            pair.until_in_sync("resynced after the isolation", Duration::from_secs(90));
            assert_eq!(
                pair.serving().as_deref(),
                Some(node(secondary)),
                "the node that ran the group through the isolation keeps it"
            );
            let log =
                std::fs::read_to_string(pair.dir(primary).join("state").join("split-brains.json")).unwrap_or_default();
            let data_records = log.matches("\"local_generations\"").count();
            format!(
                "isolation of the primary {} (every link): outage {} ms, the isolated node stopped by the tie-break; {data_records} data split-brain record(s) on it so far",
                node(primary),
                outage.as_millis()
            )
        }
        4 => {
            // The secondary's replica worker hangs (SIGSTOP): the replication link
            // times out, the primary's ask to outdate it is not answered, and
            // resource-only goes on after outdate_timeout; nobody takes over.
            let pid = pair.replica(secondary).expect("the secondary's replica answers").pid;
            let t = Instant::now();
            pair.net.signal(pid, nix::sys::signal::Signal::SIGSTOP);
            std::thread::sleep(Duration::from_secs(6));
            let served = pair.serving();
            pair.net.signal(pid, nix::sys::signal::Signal::SIGCONT);
            assert_eq!(
                served.as_deref(),
                Some(node(primary)),
                "the primary serves through its peer's hung replica:\n{}",
                pair.net.logs()
            );
            let frozen = pair.replica(primary).is_some_and(|s| s.io_frozen);
            pair.until_in_sync("resynced after the hung replica", Duration::from_secs(90));
            format!(
                "the secondary {}'s replica hung for 6 s (the primary's I/O {} at the end): resynced {} ms after the hang began",
                node(secondary),
                if frozen { "still frozen" } else { "going on" },
                t.elapsed().as_millis()
            )
        }
        _ => {
            // The primary dies while the secondary resyncs from it (throttled, so
            // that the resync lasts): the secondary's data is Inconsistent, so it
            // must not take over; the outage lasts until the primary is back.
            let out = pair.replica_cli(primary, &["resync-rate", "r0", "256K"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            pair.crash(secondary);
            std::thread::sleep(Duration::from_secs(2));
            pair.restart(secondary);
            pair.until("the secondary resyncing", Duration::from_secs(60), || {
                pair.replica(secondary).is_some_and(|s| s.connection == "SyncTarget")
            });
            let t = Instant::now();
            pair.crash(primary);
            std::thread::sleep(Duration::from_secs(3));
            let taken = pair.serving();
            assert_eq!(
                taken,
                None,
                "a node with Inconsistent data took over:\n{}",
                pair.net.logs()
            );
            let s = common::status(&pair.dir(secondary).join("pb.sock")).unwrap();
            assert_eq!(s["decision_reason"], "data_not_up_to_date", "{s}");
            pair.restart(primary);
            // Back, the primary's copy is resynced to the secondary first; then
            // either may run the group (both up to date: the preferred one).
            let back = Instant::now();
            pair.until("the primary's replica back", Duration::from_secs(30), || {
                pair.replica(primary).is_some()
            });
            let replica_back = back.elapsed();
            pair.until("UpToDate on both", Duration::from_secs(90), || {
                (0..2).all(|h| pair.replica(h).is_some_and(|s| s.disk == "UpToDate"))
            });
            let synced = back.elapsed();
            pair.until("served again", Duration::from_secs(90), || pair.serving().is_some());
            eprintln!(
                "  back: replica {} ms, both UpToDate {} ms, served {} ms",
                replica_back.as_millis(),
                synced.as_millis(),
                back.elapsed().as_millis()
            );
            let outage = t.elapsed();
            for h in 0..2 {
                let out = pair.replica_cli(h, &["resync-rate", "r0", "0"]);
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
            pair.until_in_sync("resynced after the crash during resync", Duration::from_secs(90));
            format!(
                "crash of the primary {} during the secondary's resync: no takeover of Inconsistent data; outage {} ms (until the primary was back)",
                node(primary),
                outage.as_millis()
            )
        }
    }
}

/// The fault kinds of a run: PG_FAULTS=0,3 runs only those (in turn), else `default`.
fn kinds(default: &[usize]) -> Vec<usize> {
    std::env::var("PG_FAULTS")
        .ok()
        .map(|k| k.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|k: &Vec<usize>| !k.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

#[test]
fn no_acknowledged_commit_is_lost_through_crashes_and_cuts() {
    let cycles: usize = std::env::var("PG_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(12);
    campaign(setup(false), cycles, &kinds(&[0, 1, 2, 3, 4, 5]));
}

/// A full partition with clients on both sides, which only fencing makes safe
/// (without it, each side would acknowledge commits the other never sees, and the
/// split-brain policy would have to give one side's up): `[fence]` with a power
/// switch stand-in and `priority_delay`, the replica in resource-and-stonith (the
/// default with `[fence]`). PG_PARTITIONS cycles (2 here; `make bench` runs more).
#[test]
fn a_full_partition_with_fencing_loses_no_acknowledged_commit() {
    let cycles: usize = std::env::var("PG_PARTITIONS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2);
    campaign(setup(true), cycles, &[6]);
}

/// Runs the client's workers through `cycles` faults of `kinds`, then the verdict.
fn campaign(mut pair: Pair, cycles: usize, kinds: &[usize]) {
    let ops_file = pair.net.path("ops.jsonl");
    let stop = pair.net.path("stop");
    let workload = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/pg_workload.py");
    let client = pair.net.spawn(
        2,
        Path::new("/usr/bin/python3"),
        &[
            workload.to_str().unwrap(),
            &pair.vip,
            ops_file.to_str().unwrap(),
            stop.to_str().unwrap(),
            &WORKERS.to_string(),
        ],
        &pair.net.path("workload.log"),
    );
    std::thread::sleep(Duration::from_secs(2));
    // Each cycle's start and end (wall time), to place a lost commit among them.
    let mut cycles_at: Vec<(f64, f64, String)> = Vec::new();
    for i in 0..cycles {
        let start = wall();
        let what = fault(&mut pair, i, kinds);
        eprintln!("cycle {}/{cycles}: {what}", i + 1);
        cycles_at.push((start, wall(), what));
        std::thread::sleep(Duration::from_secs(1));
    }
    std::fs::write(&stop, "").unwrap();
    assert!(
        pair.net.wait_exit(client, Duration::from_secs(30)).is_some(),
        "the workload did not stop"
    );

    // The verdict, from what the database holds now.
    let ops: Vec<Op> = std::fs::read_to_string(&ops_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows = pair
        .sql("SELECT worker, seq FROM ops ORDER BY worker, seq")
        .unwrap_or_else(|e| panic!("final read: {e}\n{}", pair.net.logs()));
    let rows: Vec<(u32, u32)> = rows
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (w, s) = l.split_once('|').unwrap();
            (w.parse().unwrap(), s.parse().unwrap())
        })
        .collect();
    let present: BTreeSet<(u32, u32)> = rows.iter().copied().collect();
    let ok: Vec<&Op> = ops.iter().filter(|o| o.outcome == "ok").collect();
    let lost: Vec<(u32, u32)> = ok
        .iter()
        .map(|o| (o.worker, o.seq))
        .filter(|k| !present.contains(k))
        .collect();
    let failed: BTreeSet<(u32, u32)> = ops
        .iter()
        .filter(|o| o.outcome == "failed")
        .map(|o| (o.worker, o.seq))
        .collect();
    let unexpected: Vec<&(u32, u32)> = present.iter().filter(|k| failed.contains(k)).collect();
    let duplicated = rows.len() - present.len();
    let unknown = ops.iter().filter(|o| o.outcome == "unknown").count();
    let mut per_node = BTreeMap::new();
    for o in &ok {
        *per_node.entry(o.node.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    eprintln!(
        "{} operations: {} acknowledged ({per_node:?}), {} failed, {unknown} unknown; {} rows; lost {}, unexpected {}, duplicated {duplicated}",
        ops.len(),
        ok.len(),
        failed.len(),
        rows.len(),
        lost.len(),
        unexpected.len()
    );
    assert!(ok.len() > 100, "too little work to judge: {} acknowledged", ok.len());
    // Every run of all six kinds moves the group at least once.
    if kinds.len() == 6 {
        assert!(per_node.len() == 2, "both nodes served: {per_node:?}");
    }
    for &(w, s) in &lost {
        let o = ok.iter().find(|o| (o.worker, o.seq) == (w, s)).expect("an ok op");
        let during = cycles_at
            .iter()
            .enumerate()
            .filter(|(_, (a, b, _))| o.t >= a - 1.0 && o.t <= b + 1.0)
            .map(|(i, (a, _, what))| format!("cycle {} ({:+.3} s after its start: {what})", i + 1, o.t - a))
            .collect::<Vec<_>>();
        eprintln!(
            "LOST: worker {w} op {s}, acknowledged by {:?} at {:.3}; {}",
            o.node,
            o.t,
            if during.is_empty() {
                "between cycles".to_string()
            } else {
                during.join("; ")
            }
        );
    }
    assert_eq!(lost, Vec::<(u32, u32)>::new(), "acknowledged commits lost");
    assert!(unexpected.is_empty(), "failed operations present: {unexpected:?}");
    assert_eq!(duplicated, 0);
    let counters = pair.sql("SELECT worker, n FROM counters ORDER BY worker").unwrap();
    for line in counters.lines().filter(|l| !l.is_empty()) {
        let (w, n) = line.split_once('|').unwrap();
        let w: u32 = w.parse().unwrap();
        let n: usize = n.parse().unwrap();
        let mine = rows.iter().filter(|r| r.0 == w).count();
        assert_eq!(n, mine, "worker {w}'s counter against its rows");
    }
    let check = pair.net.exec(
        2,
        &format!(
            "{PG_BIN}/pg_amcheck -h {} -U postgres --all --heapallindexed 2>&1",
            pair.vip
        ),
    );
    assert!(
        check.status.success(),
        "pg_amcheck: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    // The group stopped on both: the two images equal, ext4 clean.
    for h in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .args(["-s", pair.dir(h).join("pb.sock").to_str().unwrap(), "standby"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    pair.until("the group stopped and in sync", Duration::from_secs(60), || {
        (0..2).all(|h| pair.replica(h).is_some_and(|s| s.role == "Secondary")) && pair.in_sync()
    });
    let images: Vec<Vec<u8>> = (0..2)
        .map(|h| std::fs::read(pair.dir(h).join("r0.img")).unwrap())
        .collect();
    let differ: Vec<usize> = images[0]
        .chunks(1 << 20)
        .zip(images[1].chunks(1 << 20))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .collect();
    assert!(
        differ.is_empty() && images[0].len() == images[1].len(),
        "the two backing files differ in 1 MiB extents {differ:?}; replicas: {:?} / {:?}\n{}",
        pair.replica(0).map(|s| s.line()),
        pair.replica(1).map(|s| s.line()),
        pair.net.logs()
    );
    let fsck = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(pair.dir(1).join("r0.img"))
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}
