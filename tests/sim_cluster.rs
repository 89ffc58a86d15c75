//! Deterministic simulation of the whole pair: two nodes, each with the real
//! membership core, the real group engine and the real role (policy, fencing state,
//! heal handshake, split-brain log), over a simulated network, simulated agents,
//! tie-break targets and a fencing device. Each schedule is reproducible from its
//! seed and injects, at random times: partitions of every heartbeat link, isolation
//! of one node (heartbeat links and its route to the tie-break targets), asymmetric
//! and plain loss, delay, daemon crashes (kill -9: resources stay), host crashes
//! (power: resources go), start failures, hung stops, fence device failures and
//! wall-clock steps.
//!
//! Checked at every 5 ms step, against what really runs on each simulated host:
//! - with a fencing device: never any resource running on both hosts at once;
//! - with a tie-break that can decide (faults limited to isolations, power losses,
//!   loss and start failures): the same;
//! - otherwise: both hosts run it only while the nodes cannot hear each other, and
//!   it ends within a bound after they can (two keepalives plus the agents' time);
//! - the node that keeps the group in a split brain never stops it (every policy
//!   but stop-both);
//! - once faults end (and the operator resolved a stop-both split brain and cleaned
//!   up a blocked group), exactly one node runs the whole group, and both agree.
//!
//! `SIM_CLUSTER_SCHEDULES=N` runs N schedules (default 400); `SIM_CLUSTER_SEED=S`
//! replays one. `scripts/sim-long` runs many more.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Rng;
use pairbeat::config::{self, Config};
use pairbeat::membership::{Identity, Membership, Output as MOut};
use pairbeat::policy::{SplitBrainPolicy, Verdict};
use pairbeat::resources::{Action, Engine, Outcome, Output as EOut, Request};
use pairbeat::role::{Persist, Role, Saved};
use pairbeat::split_brain::Log;

const STEP: u64 = 5;
const KEEPALIVE: u64 = 100;
const DEADTIME: u64 = 1000;
const OP_MAX: u64 = 120;
const DELAY_MAX: u64 = 15;
const STOP_TIMEOUT: u64 = 2000;
const RESOURCES: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Protect {
    Nothing,
    Tiebreak,
    Fencing,
    Both,
}

fn config_text(protect: Protect, policy: SplitBrainPolicy, fence_delay_a: u64) -> String {
    let mut t = format!(
        r#"[cluster]
name = "sim"
[[node]]
name = "a"
[[node]]
name = "b"
[[link]]
name = "l0"
kind = "ucast"
interface = "lo"
address = {{ a = "127.0.0.1", b = "127.0.0.2" }}
[[link]]
name = "l1"
kind = "ucast"
interface = "lo"
address = {{ a = "127.0.1.1", b = "127.0.1.2" }}
[timing]
keepalive = "{KEEPALIVE}ms"
warntime = "300ms"
deadtime = "{DEADTIME}ms"
initdead = "2s"
[auth]
method = "sha1"
key = "sim-secret"
[split_brain]
policy = "{}"
"#,
        policy.name()
    );
    if matches!(protect, Protect::Tiebreak | Protect::Both) {
        t += "[tiebreak]\ntargets = [\"tcp:192.0.2.1:80\"]\ninterval = \"100ms\"\ntimeout = \"300ms\"\n";
    }
    if matches!(protect, Protect::Fencing | Protect::Both) {
        t += &format!(
            "[fence]\nagent = \"/bin/true\"\ntimeout = \"5s\"\nretry = \"1s\"\n[fence.node.a]\nparams = {{ plug = \"a\" }}\ndelay = \"{fence_delay_a}ms\"\n[fence.node.b]\nparams = {{ plug = \"b\" }}\n"
        );
    }
    t += "[group]\nid = \"g\"\n";
    for i in 0..RESOURCES {
        t += &format!(
            "[[group.resource]]\nid = \"r{i}\"\nagent = \"ocf:heartbeat:Dummy\"\nop = [{{ name = \"monitor\", interval = \"1s\", timeout = \"1s\" }}, {{ name = \"stop\", timeout = \"{STOP_TIMEOUT}ms\", on_fail = \"block\" }}]\n"
        );
    }
    t
}

/// What one simulated host keeps on disk.
#[derive(Default, Clone)]
struct Disk {
    generation: u64,
    floor: Option<(u64, u64)>,
    epoch: u64,
    log: String,
    standby: bool,
}

struct Daemon {
    core: Membership,
    role: Role,
    engine: Engine,
    /// The agent operation in flight: (id, request, done at, outcome).
    op: Option<(u64, Request, u64, Outcome)>,
    reach: pairbeat::fence::reach::Reach,
    next_probe: u64,
    started_at: u64,
}

struct Host {
    name: &'static str,
    config: Config,
    daemon: Option<Daemon>,
    powered: bool,
    /// What really runs on this host.
    running: [bool; RESOURCES],
    disk: Disk,
    uplink: bool,
    /// Wall clock offset (clock steps), ms.
    wall_offset: i64,
    restart_at: Option<u64>,
    start_fails: u32,
    stop_hangs: u32,
    /// A fence of the peer in progress: (done at, succeeds).
    fencing: Option<(u64, bool)>,
}

#[derive(Clone, Copy)]
struct LinkDir {
    up: bool,
    loss: u64,
}

struct World {
    rng: Rng,
    t0: Instant,
    now: u64,
    hosts: [Host; 2],
    /// links[l][from]: the direction from host `from` to the other.
    links: [[LinkDir; 2]; 2],
    in_flight: Vec<(u64, usize, usize, Vec<u8>)>,
    fence_works: bool,
    policy: SplitBrainPolicy,
}

impl World {
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn wall(&self, h: usize) -> u64 {
        (1_800_000_000_000i64 + self.now as i64 + self.hosts[h].wall_offset).max(0) as u64 / 1000
    }

    fn boot(&mut self, h: usize) {
        let now = self.at(self.now);
        let host = &mut self.hosts[h];
        host.disk.generation += 1;
        let me = Identity {
            node: host.name.into(),
            uuid: [h as u8 + 1; 16],
            generation: host.disk.generation,
            nodes: ["a".into(), "b".into()],
        };
        let c = &host.config;
        let core = Membership::new(
            me,
            c.peer_name().into(),
            c.auth.clone(),
            c.timing,
            c.links.len(),
            host.disk.floor,
            now,
        );
        let saved = Saved {
            standby: host.disk.standby,
            epoch: host.disk.epoch,
            log: if host.disk.log.is_empty() {
                Log::default()
            } else {
                Log::from_json(&host.disk.log).unwrap()
            },
        };
        let role = Role::new(c, saved);
        let mut engine = Engine::new(&c.group);
        let outs = engine.start_probing();
        let timeout = c.tiebreak.as_ref().map_or(Duration::from_millis(300), |t| t.timeout);
        host.daemon = Some(Daemon {
            core,
            role,
            engine,
            op: None,
            reach: pairbeat::fence::reach::Reach::new(1, timeout, c.timing.deadtime),
            next_probe: self.now,
            started_at: self.now,
        });
        self.engine_outputs(h, outs);
    }

    fn engine_outputs(&mut self, h: usize, outs: Vec<EOut>) {
        for o in outs {
            if let EOut::Run(req) = o {
                let dur = 5 + self.rng.below(OP_MAX - 5);
                let host = &mut self.hosts[h];
                let r = req.rsc;
                let (done, outcome) = match req.action {
                    Action::Start if host.start_fails > 0 => {
                        host.start_fails -= 1;
                        (dur, Outcome::Error(pairbeat::resources::Severity::Soft, 1))
                    }
                    Action::Stop if host.stop_hangs > 0 => {
                        host.stop_hangs -= 1;
                        (STOP_TIMEOUT, Outcome::TimedOut)
                    }
                    _ => (dur, Outcome::Success),
                };
                let d = host.daemon.as_mut().unwrap();
                assert!(d.op.is_none(), "two operations at once on {}", host.name);
                let _ = r;
                d.op = Some((req.id, req, self.now + done, outcome));
            }
        }
    }

    /// The effect of a finished operation on the host, and the outcome the agent reports.
    fn complete(&mut self, h: usize, req: Request, planned: Outcome) -> Outcome {
        let host = &mut self.hosts[h];
        let r = req.rsc;
        match req.action {
            Action::Probe | Action::Monitor { .. } => {
                if host.running[r] {
                    Outcome::Success
                } else {
                    Outcome::NotRunning
                }
            }
            Action::Start => {
                if planned == Outcome::Success {
                    host.running[r] = true;
                }
                planned
            }
            Action::Stop => {
                if planned == Outcome::Success {
                    host.running[r] = false;
                }
                planned
            }
            _ => Outcome::Success,
        }
    }

    fn send(&mut self, from: usize, bytes: Vec<u8>) {
        for l in 0..2 {
            let dir = self.links[l][from];
            if !dir.up || self.rng.below(1000) < dir.loss {
                continue;
            }
            let at = self.now + 1 + self.rng.below(DELAY_MAX);
            self.in_flight.push((at, 1 - from, l, bytes.clone()));
        }
    }

    fn membership_outputs(&mut self, h: usize, outs: Vec<MOut>) {
        for o in outs {
            match o {
                MOut::Broadcast(b) => self.send(h, b),
                MOut::PersistPeer { generation, seq } => self.hosts[h].disk.floor = Some((generation, seq)),
                _ => {}
            }
        }
    }

    /// Everything a daemon does at this instant.
    fn step_daemon(&mut self, h: usize, checks: &mut Checks) {
        let now = self.at(self.now);
        let wall = self.wall(h);
        if self.hosts[h].daemon.is_none() {
            return;
        }
        self.role_step(h, checks);
        // Agent results.
        let done = {
            let d = self.hosts[h].daemon.as_mut().unwrap();
            match &d.op {
                Some((_, _, at, _)) if *at <= self.now => d.op.take().map(|(id, req, _, outcome)| (id, req, outcome)),
                _ => None,
            }
        };
        if let Some((id, req, planned)) = done {
            let outcome = self.complete(h, req, planned);
            let d = self.hosts[h].daemon.as_mut().unwrap();
            let outs = d.engine.on_result(now, id, outcome, None);
            self.engine_outputs(h, outs);
        }
        // Timers.
        let d = self.hosts[h].daemon.as_mut().unwrap();
        let mut mouts = Vec::new();
        if d.core.next_deadline() <= now {
            mouts = d.core.on_timeout(now, wall);
        }
        let eouts = if d.engine.next_deadline().is_some_and(|t| t <= now) {
            d.engine.on_timeout(now)
        } else {
            Vec::new()
        };
        self.membership_outputs(h, mouts);
        self.engine_outputs(h, eouts);
        // Tie-break probes: answered while the host's route to the targets works.
        let uplink = self.hosts[h].uplink;
        let has_tiebreak = self.hosts[h].config.tiebreak.is_some();
        let d = self.hosts[h].daemon.as_mut().unwrap();
        if has_tiebreak {
            if self.now >= d.next_probe {
                d.reach.on_probe(0, uplink, now);
                d.next_probe = self.now + 100;
            }
            d.role.reach = Some(d.reach.count(now));
        }
        self.role_step(h, checks);
    }

    /// The role's turn, as at the top of the daemon's loop: before and after events.
    fn role_step(&mut self, h: usize, checks: &mut Checks) {
        let now = self.at(self.now);
        let wall = self.wall(h);
        let d = self.hosts[h].daemon.as_mut().unwrap();
        let act = d.role.reconsider(&mut d.core, &d.engine, now, wall);
        let keeper = d.role.decision().and_then(|x| x.heal) == Some(Verdict::Keep);
        let mut eouts = Vec::new();
        if let Some(t) = act.target {
            if keeper && self.policy != SplitBrainPolicy::StopBoth && t != pairbeat::resources::Target::Active {
                checks.fail(format!(
                    "{}: the split-brain keeper set its target to {t:?}",
                    self.hosts[h].name
                ));
            }
            eouts.extend(d.engine.set_target(t));
        }
        eouts.extend(d.engine.set_quiet(act.quiet));
        if act.reassert {
            eouts.extend(d.engine.reassert());
        }
        let fence = act.fence;
        for p in act.persist {
            let disk = &mut self.hosts[h].disk;
            match p {
                Persist::Standby(s) => disk.standby = s,
                Persist::Epoch(e) => disk.epoch = e,
                Persist::SplitBrainLog(j) => disk.log = j,
            }
        }
        if let Some(MOut::Broadcast(b)) = act.send {
            self.send(h, b);
        }
        self.engine_outputs(h, eouts);
        if fence {
            let delay = self.hosts[h].config.fence.as_ref().unwrap().delay[1 - h].as_millis() as u64;
            let works = self.fence_works;
            self.hosts[h].fencing = Some((self.now + delay + 50 + self.rng.below(200), works));
            checks.fences += 1;
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        self.in_flight.retain(|m| {
            if m.0 <= now {
                due.push(m.clone());
                false
            } else {
                true
            }
        });
        due.sort_by_key(|m| m.0);
        for (_, to, link, bytes) in due {
            let wall = self.wall(to);
            let at = self.at(now);
            if let Some(d) = self.hosts[to].daemon.as_mut() {
                let outs = d.core.on_datagram(at, wall, link, &bytes);
                self.membership_outputs(to, outs);
            }
        }
    }

    fn fences(&mut self) {
        for h in 0..2 {
            if let Some((at, ok)) = self.hosts[h].fencing {
                if at > self.now {
                    continue;
                }
                self.hosts[h].fencing = None;
                if self.hosts[h].daemon.is_none() {
                    continue;
                }
                if ok {
                    self.power_off(1 - h);
                    let reboot = self.now + 1500 + self.rng.below(2000);
                    self.hosts[1 - h].restart_at = Some(reboot);
                }
                let at = self.at(self.now);
                let d = self.hosts[h].daemon.as_mut().unwrap();
                d.role.fence_done(ok, if ok { "ok" } else { "device failed" }, at);
            }
        }
    }

    fn power_off(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        host.daemon = None;
        host.powered = false;
        host.running = [false; RESOURCES];
        host.fencing = None;
    }

    fn connected(&self) -> bool {
        self.hosts.iter().all(|h| h.daemon.is_some())
            && (0..2).any(|l| self.links[l].iter().all(|d| d.up && d.loss == 0))
    }
}

#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    fences: u64,
    dual_ms: u64,
    split_brains: u64,
}

impl Checks {
    fn fail(&mut self, s: String) {
        if self.failures.len() < 5 {
            self.failures.push(s);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Partition,
    Isolate(usize),
    Asymmetric(usize),
    Loss,
    DaemonCrash(usize),
    HostCrash(usize),
    StartFails(usize),
    StopHangs(usize),
    FenceFails,
    ClockStep(usize),
}

fn run(seed: u64) -> Checks {
    let mut rng = Rng(seed);
    let protect = [Protect::Nothing, Protect::Tiebreak, Protect::Fencing, Protect::Both][rng.below(4) as usize];
    let policy = SplitBrainPolicy::ALL[rng.below(4) as usize];
    let fence_delay = if rng.chance(500) { 400 } else { 0 };
    let text = config_text(protect, policy, fence_delay);
    // The inline key's file must exist and be private, as on a real host.
    let dir = std::env::temp_dir().join(format!("pairbeat-sim-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pairbeat.toml");
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let load = |n: &str| match config::load_str(&path, text.clone(), n) {
        Ok((c, _)) => c,
        Err(d) => panic!("sim config: {}", d.report(&path)),
    };
    // Which faults this schedule may use: a tie-break alone decides only isolations.
    let tiebreak_only = protect == Protect::Tiebreak && rng.chance(600);
    let mut kinds: Vec<fn(&mut Rng) -> Fault> = vec![
        |r| Fault::Isolate(r.below(2) as usize),
        |_| Fault::Loss,
        |r| Fault::HostCrash(r.below(2) as usize),
        |r| Fault::StartFails(r.below(2) as usize),
        |r| Fault::ClockStep(r.below(2) as usize),
    ];
    if !tiebreak_only {
        kinds.extend([
            (|_| Fault::Partition) as fn(&mut Rng) -> Fault,
            |r| Fault::Asymmetric(r.below(2) as usize),
            |r| Fault::DaemonCrash(r.below(2) as usize),
            |r| Fault::StopHangs(r.below(2) as usize),
            |_| Fault::FenceFails,
        ]);
    }
    let mut schedule: BTreeMap<u64, Vec<Fault>> = BTreeMap::new();
    let faults = 1 + rng.below(5);
    for _ in 0..faults {
        let at = 3000 + rng.below(20_000) / STEP * STEP;
        let f = kinds[rng.below(kinds.len() as u64) as usize](&mut rng);
        schedule.entry(at).or_default().push(f);
    }
    let quiet_from = 26_000;
    let end = 40_000;
    let host = |name: &'static str, config: Config| Host {
        name,
        config,
        daemon: None,
        powered: true,
        running: [false; RESOURCES],
        disk: Disk::default(),
        uplink: true,
        wall_offset: 0,
        restart_at: None,
        start_fails: 0,
        stop_hangs: 0,
        fencing: None,
    };
    let mut w = World {
        rng: Rng(seed ^ 0x5eed),
        t0: Instant::now(),
        now: 0,
        hosts: [host("a", load("a")), host("b", load("b"))],
        links: [[LinkDir { up: true, loss: 0 }; 2]; 2],
        in_flight: Vec::new(),
        fence_works: true,
        policy,
    };
    let mut checks = Checks::default();
    let trace = std::env::var_os("SIM_TRACE").is_some();
    let mut last_seen = String::new();
    // Start one node a little later than the other, as after a power cut.
    w.boot(0);
    w.hosts[1].restart_at = Some(rng.below(1500));
    // Undo actions: (at, what).
    let mut undo: Vec<(u64, Undo)> = Vec::new();
    let mut strict = matches!(protect, Protect::Fencing | Protect::Both) || tiebreak_only;
    let mut hung_without_fencing = false;
    let mut connected_since: Option<u64> = None;
    let mut dual_since: Option<u64> = None;
    let bound = 3 * KEEPALIVE
        + 7 * OP_MAX
        + 4 * DELAY_MAX
        + 2 * STEP
        + (pairbeat::role::REASSERT_AFTER + pairbeat::role::REASSERT_SETTLE).as_millis() as u64;
    let mut resolved = false;
    while w.now <= end {
        // Faults.
        if let Some(fs) = schedule.remove(&w.now) {
            for f in fs {
                if trace {
                    eprintln!("{} ms: fault {f:?}", w.now);
                }
                let len = 500 + rng.below(5000);
                match f {
                    Fault::Partition => {
                        for l in 0..2 {
                            for d in 0..2 {
                                w.links[l][d].up = false;
                            }
                        }
                        undo.push((
                            w.now + len,
                            Box::new(|w| w.links = [[LinkDir { up: true, loss: 0 }; 2]; 2]),
                        ));
                    }
                    Fault::Isolate(h) => {
                        for l in 0..2 {
                            for d in 0..2 {
                                w.links[l][d].up = false;
                            }
                        }
                        w.hosts[h].uplink = false;
                        undo.push((
                            w.now + len,
                            Box::new(move |w| {
                                w.links = [[LinkDir { up: true, loss: 0 }; 2]; 2];
                                w.hosts[h].uplink = true;
                            }),
                        ));
                    }
                    Fault::Asymmetric(from) => {
                        for l in 0..2 {
                            w.links[l][from].loss = 1000;
                        }
                        undo.push((
                            w.now + len,
                            Box::new(move |w| (0..2).for_each(|l| w.links[l][from].loss = 0)),
                        ));
                    }
                    Fault::Loss => {
                        let p = 50 + rng.below(300);
                        for l in 0..2 {
                            for d in 0..2 {
                                w.links[l][d].loss = p;
                            }
                        }
                        undo.push((
                            w.now + len,
                            Box::new(|w| w.links = [[LinkDir { up: true, loss: 0 }; 2]; 2]),
                        ));
                    }
                    Fault::DaemonCrash(h) => {
                        if w.hosts[h].daemon.is_some() {
                            w.hosts[h].daemon = None;
                            w.hosts[h].fencing = None;
                            w.hosts[h].restart_at = Some(w.now + len.min(3000));
                            if !matches!(protect, Protect::Fencing | Protect::Both) {
                                // Without fencing, nothing stops the orphaned resources.
                                strict = false;
                            }
                        }
                    }
                    Fault::HostCrash(h) => {
                        if w.hosts[h].powered {
                            w.power_off(h);
                            w.hosts[h].restart_at = Some(w.now + len);
                        }
                    }
                    Fault::StartFails(h) => w.hosts[h].start_fails += 1,
                    Fault::StopHangs(h) => {
                        w.hosts[h].stop_hangs += STOP_ATTEMPTS_HANG;
                        if !matches!(protect, Protect::Fencing | Protect::Both) {
                            hung_without_fencing = true;
                        }
                    }
                    Fault::FenceFails => {
                        w.fence_works = false;
                        undo.push((w.now + len, Box::new(|w| w.fence_works = true)));
                    }
                    Fault::ClockStep(h) => {
                        w.hosts[h].wall_offset += if rng.chance(500) { 3_600_000 } else { -3_600_000 };
                    }
                }
            }
        }
        let now = w.now;
        let mut i = 0;
        while i < undo.len() {
            if undo[i].0 <= now {
                let (_, f) = undo.remove(i);
                f(&mut w);
            } else {
                i += 1;
            }
        }
        for h in 0..2 {
            if w.hosts[h].restart_at.is_some_and(|t| t <= now) {
                w.hosts[h].restart_at = None;
                w.hosts[h].powered = true;
                w.boot(h);
            }
        }
        // The quiet phase: faults end; the operator resolves and cleans up.
        if now == quiet_from {
            undo.clear();
            w.links = [[LinkDir { up: true, loss: 0 }; 2]; 2];
            w.fence_works = true;
            for h in 0..2 {
                w.hosts[h].uplink = true;
                w.hosts[h].start_fails = 0;
                w.hosts[h].stop_hangs = 0;
                if w.hosts[h].daemon.is_none() && w.hosts[h].restart_at.is_none() {
                    w.hosts[h].restart_at = Some(now);
                }
            }
        }
        if now >= quiet_from + 6000 && now % 2000 == 0 {
            let at = w.at(now);
            for h in 0..2 {
                if let Some(d) = w.hosts[h].daemon.as_mut() {
                    if d.engine.is_blocked() || d.engine.banned().is_some() {
                        let outs = d.engine.cleanup(at, None);
                        w.engine_outputs(h, outs);
                    }
                }
            }
            if !resolved
                && w.hosts
                    .iter()
                    .any(|h| h.daemon.as_ref().is_some_and(|d| d.role.awaiting_operator()))
            {
                let keep = ["a", "b"][rng.below(2) as usize];
                let d = w.hosts[0].daemon.as_mut().unwrap();
                d.role.resolve(keep, true).unwrap();
                resolved = true;
            }
        }
        w.deliver();
        w.fences();
        for h in 0..2 {
            w.step_daemon(h, &mut checks);
        }
        if trace {
            let seen = (0..2)
                .map(|h| {
                    let host = &w.hosts[h];
                    let d = host.daemon.as_ref().map(|d| {
                        format!(
                            "{:?} reach={:?} {}",
                            d.engine.target(),
                            d.role.reach,
                            d.role.decision().map(|x| x.reason.to_string()).unwrap_or_default()
                        )
                    });
                    format!("{}: run={:?} {}", host.name, host.running, d.unwrap_or("DOWN".into()))
                })
                .collect::<Vec<_>>()
                .join(" | ");
            if seen != last_seen {
                eprintln!("{now} ms: {seen}");
                last_seen = seen;
            }
        }
        // Invariants on what really runs.
        let dual = (0..RESOURCES).any(|r| w.hosts[0].running[r] && w.hosts[1].running[r]);
        if w.connected() {
            connected_since.get_or_insert(now);
        } else {
            connected_since = None;
        }
        if dual {
            checks.dual_ms += STEP;
            let since = *dual_since.get_or_insert(now);
            if strict {
                checks.fail(format!(
                    "{now} ms: both hosts run the group ({protect:?}{})",
                    if tiebreak_only { ", isolations only" } else { "" }
                ));
            } else if !hung_without_fencing {
                if let Some(c) = connected_since {
                    let both_up_since = [0, 1].map(|h| w.hosts[h].daemon.as_ref().map_or(now, |d| d.started_at));
                    let from = c.max(since).max(both_up_since[0].max(both_up_since[1]) + 200);
                    if now > from + bound {
                        checks.fail(format!(
                            "{now} ms: both hosts still run the group {} ms after they can hear each other (bound {bound} ms)",
                            now - from
                        ));
                    }
                }
            }
        } else {
            dual_since = None;
        }
        w.now += STEP;
    }
    // Settled: exactly one host runs the whole group; both agree; no split brain open.
    let full: Vec<bool> = (0..2).map(|h| w.hosts[h].running.iter().all(|r| *r)).collect();
    let any: Vec<bool> = (0..2).map(|h| w.hosts[h].running.iter().any(|r| *r)).collect();
    if !(full[0] ^ full[1]) || (any[0] && any[1]) {
        checks.fail(format!(
            "after the faults: a runs {:?}, b runs {:?} (want the whole group on exactly one)",
            w.hosts[0].running, w.hosts[1].running
        ));
    }
    for h in 0..2 {
        let d = w.hosts[h].daemon.as_ref().unwrap();
        checks.split_brains += d.role.split_brains().len() as u64;
        if d.role.awaiting_operator() {
            checks.fail(format!(
                "{} still waits for the operator after resolve",
                w.hosts[h].name
            ));
        }
    }
    checks
}

/// Puts a fault back, at its time.
type Undo = Box<dyn Fn(&mut World)>;

/// A hung stop fault hangs this many stops: enough to block the group.
const STOP_ATTEMPTS_HANG: u32 = pairbeat::resources::STOP_ATTEMPTS;

#[test]
fn cluster_schedules_keep_the_invariants() {
    let seeds: Vec<u64> = match std::env::var("SIM_CLUSTER_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_CLUSTER_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("SIM_CLUSTER_SCHEDULES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(400);
            (1..=n).collect()
        }
    };
    let mut failed = Vec::new();
    let (mut fences, mut dual, mut sbs) = (0, 0, 0);
    for &seed in &seeds {
        let c = run(seed);
        fences += c.fences;
        dual += c.dual_ms;
        sbs += c.split_brains;
        if !c.failures.is_empty() {
            failed.push(format!("seed {seed}: {}", c.failures.join("; ")));
        }
    }
    println!(
        "{} schedules: {fences} fence operations, {sbs} split-brain records, {dual} ms of dual-active in total (without fencing or a deciding tie-break)",
        seeds.len()
    );
    assert!(
        failed.is_empty(),
        "{} schedule(s) broke an invariant:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Seeds that once broke an invariant, each with what it found.
#[test]
fn regression_seeds() {
    let seeds = [
        // An isolated node's targets answered before the peer's keepalives did: it
        // took over a peer that never stopped (fixed: targets are held down for a
        // deadtime after a loss).
        (1, "tie-break hold-down"),
        (
            758,
            "a start in flight advertised as stopped: the peer started too (fixed: Holding counts a start in flight)",
        ),
        // A restarted daemon's first keepalive carried no advert, and the peer took it
        // for a Heartbeat node (fixed in the simulation's order; the daemon always
        // advertises before its first keepalive).
        (1375, "first keepalive before the first advert"),
        // Both nodes cleaned up at the same instant, each saw the other banned and
        // started (fixed: the claim handshake).
        (1168, "simultaneous eligibility"),
        (771, "simultaneous eligibility, with fencing"),
    ];
    let mut failed = Vec::new();
    for (seed, what) in seeds {
        let c = run(seed);
        if !c.failures.is_empty() {
            failed.push(format!("seed {seed} ({what}): {}", c.failures.join("; ")));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
