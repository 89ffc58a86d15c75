//! Deterministic simulation of two replicas (the real `replica::state::Replica`
//! on both nodes) over a simulated TCP link, on simulated disks with volatile
//! write caches: a crash drops every write not yet `fdatasync`ed, and a metadata
//! write in progress at a crash may be torn. Frames go through the real codec.
//!
//! A kernel stand-in writes, flushes and reads on the Primary; a pairbeat stand-in
//! promotes the survivor when the Primary's host crashes, answers outdate requests
//! over a heartbeat path of its own, and in some schedules partitions everything
//! and promotes both (a split brain), then discards one side's data.
//!
//! Invariants, checked as the run goes and at its end:
//! - I1: every write acknowledged before an acknowledged flush is on the next
//!   Primary (or a write issued after it to the same block);
//! - I2: never two Primaries while connected;
//! - I3: never a SyncSource that is Inconsistent;
//! - I4: once both are Connected and idle after the final heal, the images are equal;
//! - I5: data both sides wrote alone is always found as split brain, never synced
//!   over silently;
//! - I6: Outdated or Inconsistent data is never promoted (the stand-in never forces);
//! - I7: a handled timeout leaves no deadline due (the shell's loop would spin).
//!
//! `SIM_REPLICA_SEED=n` replays one schedule (`SIM_TRACE=1` prints it);
//! `SIM_REPLICA_SCHEDULES` sets how many run (default 10,000, in two halves that
//! run side by side) and `SIM_REPLICA_FIRST` the first seed.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use common::Rng;
use pairbeat::replica::gi::DiskState;
use pairbeat::replica::meta::Meta;
use pairbeat::replica::state::{Command, Conn, Effect, Fencing, IoId, OutdateRc, Replica, Reply, Request, Settings};
use pairbeat::replica::wire;

const BLOCK: u64 = 512;
const EXTENT: u32 = 4096;
const SIZE: u64 = 16 * EXTENT as u64;
const BLOCKS: u64 = SIZE / BLOCK;

/// A disk with a volatile write cache, and the metadata file beside it.
#[derive(Clone)]
struct Disk {
    durable: Vec<u8>,
    cache: BTreeMap<u64, Vec<u8>>,
    meta: Vec<u8>,
}

impl Disk {
    fn new(meta: &Meta) -> Self {
        let mut d = Disk {
            durable: vec![0; SIZE as usize],
            cache: BTreeMap::new(),
            meta: vec![0; meta.file_size() as usize],
        };
        d.write_meta(meta, usize::MAX);
        d
    }

    fn read(&self, off: u64, len: u64) -> Vec<u8> {
        let mut out = self.durable[off as usize..(off + len) as usize].to_vec();
        for (&o, data) in self.cache.range(..off + len) {
            let end = o + data.len() as u64;
            if end <= off {
                continue;
            }
            let from = o.max(off);
            let to = end.min(off + len);
            out[(from - off) as usize..(to - off) as usize]
                .copy_from_slice(&data[(from - o) as usize..(to - o) as usize]);
        }
        out
    }

    fn write(&mut self, off: u64, data: &[u8]) {
        // Later writes overlay earlier ones; split to blocks so overlays stay simple.
        for (i, chunk) in data.chunks(BLOCK as usize).enumerate() {
            self.cache.insert(off + i as u64 * BLOCK, chunk.to_vec());
        }
    }

    fn sync(&mut self) {
        for (o, data) in std::mem::take(&mut self.cache) {
            self.durable[o as usize..o as usize + data.len()].copy_from_slice(&data);
        }
    }

    /// Writes up to `keep` bytes of the slot (all of it unless torn).
    fn write_meta(&mut self, m: &Meta, keep: usize) {
        let at = m.slot_offset(m.seq) as usize;
        let bytes = m.encode();
        let n = bytes.len().min(keep);
        self.meta[at..at + n].copy_from_slice(&bytes[..n]);
    }

    fn image(&self) -> Vec<u8> {
        self.read(0, SIZE)
    }
}

struct Host {
    disk: Disk,
    replica: Option<Replica>,
    /// Disk operations in order; the head runs until its time.
    queue: VecDeque<(IoId, pairbeat::replica::state::DiskOp, u64)>,
    /// Frames to the peer, in order, each due at its time.
    wire_out: VecDeque<(u64, Vec<u8>)>,
    rx: Vec<u8>,
    down_until: Option<u64>,
}

/// What the kernel stand-in asked for, and what it knows is durable.
#[derive(Default)]
struct Kernel {
    next_req: u64,
    /// Request id → (node, request kind).
    open: BTreeMap<u64, (usize, Kind)>,
    /// Per block: every write issued, in order: (issue index, value).
    history: BTreeMap<u64, Vec<(u64, u64)>>,
    /// Per block: latest acknowledged write (issue index, value).
    acked: BTreeMap<u64, (u64, u64)>,
    /// Per block: the write every later Primary must show (or a later one).
    floor: BTreeMap<u64, (u64, u64)>,
    issued: u64,
    /// The node requests go to.
    serving: Option<usize>,
    acked_flushes: u64,
}

#[derive(Clone)]
enum Kind {
    Write { block: u64, idx: u64, value: u64 },
    Flush { snapshot: BTreeMap<u64, (u64, u64)> },
    Read,
}

fn block_data(value: u64) -> Vec<u8> {
    value.to_le_bytes().repeat((BLOCK / 8) as usize)
}

struct World {
    rng: Rng,
    t0: Instant,
    now: u64,
    hosts: [Host; 2],
    link_up: bool,
    heartbeat_up: bool,
    connected: bool,
    kernel: Kernel,
    cmd: u64,
    /// Command id → (node, what), for the answers.
    cmds: BTreeMap<u64, (usize, &'static str)>,
    failures: Vec<String>,
    trace: bool,
    fencing: Fencing,
    /// Both were promoted in a partition: I1 is off until an operator resolves.
    split: bool,
    saw_split_brain: bool,
    /// A handshake refused to make this Primary a target: pairbeat stops it.
    demote_wanted: [bool; 2],
    max_resync_rule: u32,
    /// An acknowledged write on each node while split.
    wrote_alone: [bool; 2],
    resolving_since: Option<u64>,
    outdate_answer: Option<Result<String, String>>,
    /// The total partition is on.
    split_active: bool,
    /// I1 no longer holds by design: a split brain discarded one side's writes, or
    /// `dont-care` let a Primary write on alone after the replication link failed.
    i1_off: bool,
}

fn settings(me: u32, fencing: Fencing, salt: u64) -> Settings {
    Settings {
        me,
        fencing,
        timeout: Duration::from_millis(200),
        ping_interval: Duration::from_millis(100),
        resync_rate: 0,
        al_interval: Duration::from_millis(300),
        ask_again: Duration::from_millis(500),
        chunk: EXTENT,
        window: 4 * EXTENT as u64,
        salt,
    }
}

impl World {
    fn at(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now)
    }

    fn fail(&mut self, what: String) {
        if self.trace {
            eprintln!("{} ms: VIOLATION {what}", self.now);
        }
        self.failures.push(format!("{} ms: {what}", self.now));
    }

    fn boot(&mut self, h: usize) {
        let meta = match Meta::decode(&self.hosts[h].disk.meta) {
            Ok(m) => m,
            Err(e) => {
                self.fail(format!("host {h}: metadata unreadable after a crash: {e}"));
                return;
            }
        };
        let salt = self.rng.next();
        let fencing = self.fencing;
        let now = self.at();
        self.hosts[h].replica = Some(Replica::new(settings(h as u32, fencing, salt), meta, now));
        self.drain(h);
    }

    fn crash(&mut self, h: usize) {
        if self.trace {
            eprintln!("{} ms: host {h} crashes", self.now);
        }
        let host = &mut self.hosts[h];
        host.replica = None;
        host.disk.cache.clear();
        // A metadata write under way may be torn.
        if let Some((_, pairbeat::replica::state::DiskOp::Meta(m), _)) = host.queue.front() {
            let keep = (self.rng.next() % 5000) as usize;
            let m = m.clone();
            host.disk.write_meta(&m, keep);
        }
        host.queue.clear();
        host.wire_out.clear();
        host.rx.clear();
        self.cut_connection("host crashed");
        // Requests to it die with it, and so does what it acknowledged unflushed.
        self.kernel.open.retain(|_, (n, _)| *n != h);
        if self.kernel.serving == Some(h) {
            self.kernel.serving = None;
            self.kernel.acked.clear();
        }
    }

    fn cut_connection(&mut self, why: &str) {
        if !self.connected {
            return;
        }
        self.connected = false;
        let now = self.at();
        for h in 0..2 {
            self.hosts[h].wire_out.clear();
            self.hosts[h].rx.clear();
            if let Some(r) = self.hosts[h].replica.as_mut() {
                r.handle_disconnected(now, why);
            }
            self.drain(h);
        }
    }

    fn cmd(&mut self, h: usize, c: Command, what: &'static str) {
        self.cmd += 1;
        let id = self.cmd;
        self.cmds.insert(id, (h, what));
        let now = self.at();
        if let Some(r) = self.hosts[h].replica.as_mut() {
            if self.trace {
                eprintln!("{} ms: host {h}: {c:?}", self.now);
            }
            r.handle_command(now, id, c);
        }
        self.drain(h);
    }

    /// Carries out everything host `h`'s replica asked for.
    fn drain(&mut self, h: usize) {
        loop {
            let Some(r) = self.hosts[h].replica.as_mut() else {
                return;
            };
            let Some(e) = r.poll_effect() else { return };
            match e {
                Effect::Send { seq, frame } => {
                    if self.connected {
                        let at = self.now + 1 + self.rng.below(3);
                        let at = at.max(self.hosts[h].wire_out.back().map_or(0, |x| x.0));
                        self.hosts[h].wire_out.push_back((at, wire::encode(seq, 0, &frame)));
                    }
                }
                Effect::Disk { io, op } => {
                    let last = self.hosts[h].queue.back().map_or(self.now, |x| x.2);
                    let at = last.max(self.now) + self.rng.below(3);
                    self.hosts[h].queue.push_back((io, op, at));
                }
                Effect::Reply { req, reply } => self.on_reply(h, req, reply),
                Effect::Disconnect { reason } => self.cut_connection(&reason),
                Effect::OutdatePeer { gi } => {
                    // pairbeatd's relay over the heartbeat links.
                    let peer = 1 - h;
                    let rc = if self.hosts[peer].replica.is_none() && self.fencing == Fencing::ResourceAndStonith {
                        // resource-and-stonith comes with a [fence] device: the dead host is fenced.
                        OutdateRc::Fenced
                    } else if !self.heartbeat_up || self.hosts[peer].replica.is_none() {
                        OutdateRc::Unreachable
                    } else {
                        self.outdate_answer = None;
                        self.cmd(peer, Command::Outdate { requester: Some(gi) }, "outdate");
                        // Durable before the answer goes back, as the peer's shell does.
                        self.flush_io(peer);
                        // As pairbeatd reads its replica's answer.
                        match self.outdate_answer.take() {
                            Some(Ok(m) | Err(m)) => OutdateRc::from_answer(&m).unwrap_or(OutdateRc::Failed),
                            None => OutdateRc::Failed,
                        }
                    };
                    let now = self.at();
                    if let Some(r) = self.hosts[h].replica.as_mut() {
                        r.handle_outdate_rc(now, rc);
                    }
                }
                Effect::Done { cmd, result } => {
                    let (node, what) = self.cmds.remove(&cmd).unwrap_or((h, "?"));
                    if self.trace {
                        eprintln!("{} ms: host {node}: {what} -> {result:?}", self.now);
                    }
                    if what == "promote" && result.is_ok() {
                        self.check_new_primary(node);
                    }
                    if what == "outdate" {
                        self.outdate_answer = Some(result);
                    }
                }
                Effect::Log(n) => {
                    if self.trace {
                        eprintln!("{} ms: host {h}: {}", self.now, n.text);
                    }
                    if n.text.contains("split brain detected") {
                        self.saw_split_brain = true;
                    }
                    if n.text.contains("would become SyncTarget, but it is Primary") {
                        self.demote_wanted[h] = true;
                    }
                    if let Some(rest) = n.text.split("by rule ").nth(1) {
                        if let Ok(rule) = rest.trim().parse::<u32>() {
                            self.max_resync_rule = self.max_resync_rule.max(rule);
                        }
                    }
                }
            }
        }
    }

    /// Runs host `h`'s disk queue to its end at once (used where a real shell
    /// would wait for the write before answering over the network).
    fn flush_io(&mut self, h: usize) {
        while !self.hosts[h].queue.is_empty() {
            self.run_io(h);
        }
    }

    fn run_io(&mut self, h: usize) {
        let Some((io, op, _)) = self.hosts[h].queue.pop_front() else {
            return;
        };
        use pairbeat::replica::state::DiskOp;
        let disk = &mut self.hosts[h].disk;
        let result = match op {
            DiskOp::Read { offset, len } => Some(disk.read(offset, u64::from(len)).into()),
            DiskOp::Write { offset, data } => {
                disk.write(offset, &data);
                None
            }
            DiskOp::Discard { offset, len } => {
                disk.write(offset, &vec![0; len as usize]);
                None
            }
            DiskOp::Sync => {
                disk.sync();
                None
            }
            DiskOp::Meta(m) => {
                disk.write_meta(&m, usize::MAX);
                None
            }
            DiskOp::SaveDivergent { .. } => None,
        };
        let now = self.at();
        if let Some(r) = self.hosts[h].replica.as_mut() {
            r.handle_io(now, io, Ok(result));
        }
        self.drain(h);
    }

    fn on_reply(&mut self, h: usize, req: u64, reply: Reply) {
        let Some((_, kind)) = self.kernel.open.remove(&req) else {
            return;
        };
        if self.trace {
            let what = match &kind {
                Kind::Write { block, value, .. } => format!("write {value:#x} to block {block}"),
                Kind::Flush { .. } => "flush".into(),
                Kind::Read => "read".into(),
            };
            eprintln!("{} ms: host {h}: req {req} ({what}) -> {reply:?}", self.now);
        }
        match (kind, reply) {
            (Kind::Write { block, idx, value }, Reply::Written(_)) => {
                if self.split_active {
                    self.wrote_alone[h] = true;
                }
                let e = self.kernel.acked.entry(block).or_insert((idx, value));
                if idx >= e.0 {
                    *e = (idx, value);
                }
            }
            (Kind::Flush { snapshot }, Reply::Done) => {
                self.kernel.acked_flushes += 1;
                if !self.split && !self.i1_off {
                    for (b, (idx, v)) in snapshot {
                        let f = self.kernel.floor.entry(b).or_insert((idx, v));
                        if idx >= f.0 {
                            *f = (idx, v);
                        }
                    }
                }
            }
            (Kind::Read, _) => {}
            (_, Reply::IoError(_) | Reply::ReadOnly) => {}
            (_, other) => self.fail(format!("host {h}: unexpected reply {other:?}")),
        }
    }

    /// I1: a new Primary shows every durably acknowledged write (or a later one).
    fn check_new_primary(&mut self, h: usize) {
        if self.split || self.i1_off {
            return;
        }
        let image = self.hosts[h].disk.image();
        for (&b, &(fidx, fval)) in &self.kernel.floor.clone() {
            let got = u64::from_le_bytes(
                image[(b * BLOCK) as usize..(b * BLOCK + 8) as usize]
                    .try_into()
                    .unwrap(),
            );
            let later = self
                .kernel
                .history
                .get(&b)
                .is_some_and(|h| h.iter().any(|&(i, v)| i > fidx && v == got));
            if got != fval && !later {
                self.fail(format!(
                    "I1: host {h} became Primary without block {b}'s acknowledged write {fval:#x} (has {got:#x})"
                ));
            }
        }
    }

    fn issue(&mut self, h: usize) {
        let Some(r) = self.hosts[h].replica.as_ref() else {
            return;
        };
        if !r.is_primary() || self.kernel.open.len() > 16 {
            return;
        }
        if self.kernel.serving != Some(h) {
            // A flush here covers what was written through this node: what another
            // acknowledged but never flushed may be gone, as after any crash.
            self.kernel.serving = Some(h);
            self.kernel.acked.clear();
        }
        self.kernel.next_req += 1;
        let req = self.kernel.next_req;
        let roll = self.rng.below(10);
        let (kind, request) = if roll < 6 {
            let block = self.rng.below(BLOCKS);
            self.kernel.issued += 1;
            let idx = self.kernel.issued;
            let value = (self.now << 20) ^ (idx << 1) ^ (h as u64 + 1) << 60;
            self.kernel.history.entry(block).or_default().push((idx, value));
            (
                Kind::Write { block, idx, value },
                Request::Write {
                    offset: block * BLOCK,
                    data: block_data(value).into(),
                },
            )
        } else if roll < 9 {
            (
                Kind::Flush {
                    snapshot: self.kernel.acked.clone(),
                },
                Request::Flush,
            )
        } else {
            let block = self.rng.below(BLOCKS);
            (
                Kind::Read,
                Request::Read {
                    offset: block * BLOCK,
                    len: BLOCK as u32,
                },
            )
        };
        self.kernel.open.insert(req, (h, kind));
        let now = self.at();
        self.hosts[h]
            .replica
            .as_mut()
            .expect("up")
            .handle_request(now, req, request);
        self.drain(h);
    }

    fn checks(&mut self) {
        let st: Vec<_> = self
            .hosts
            .iter()
            .map(|h| h.replica.as_ref().map(|r| r.status()))
            .collect();
        if let (Some(a), Some(b)) = (&st[0], &st[1]) {
            if a.primary && b.primary && a.conn.replicating() && b.conn.replicating() && self.connected {
                self.fail("I2: two Primaries while connected".into());
            }
        }
        for (h, s) in st.iter().enumerate() {
            if let Some(s) = s {
                if s.conn == Conn::SyncSource && s.disk <= DiskState::Inconsistent {
                    self.fail(format!("I3: host {h} is SyncSource while {}", s.disk));
                }
                if s.primary && s.disk < DiskState::Consistent && s.failed.is_none() {
                    self.fail(format!("I6: host {h} is Primary with {} data", s.disk));
                }
            }
        }
    }

    fn step_network(&mut self) {
        if !self.connected {
            let want = self.link_up
                && self
                    .hosts
                    .iter()
                    .all(|h| h.replica.as_ref().is_some_and(|r| r.wants_connection()));
            if want {
                self.connected = true;
                let now = self.at();
                for h in 0..2 {
                    self.hosts[h].replica.as_mut().expect("up").handle_connected(now);
                    self.drain(h);
                }
            }
            return;
        }
        for h in 0..2 {
            while self.connected {
                let Some(&(at, _)) = self.hosts[h].wire_out.front() else {
                    break;
                };
                if at > self.now {
                    break;
                }
                let (_, bytes) = self.hosts[h].wire_out.pop_front().expect("peeked");
                let to = 1 - h;
                self.hosts[to].rx.extend(bytes);
                loop {
                    match wire::decode(&self.hosts[to].rx) {
                        Ok(Some((env, used))) => {
                            self.hosts[to].rx.drain(..used);
                            let now = self.at();
                            if let Some(r) = self.hosts[to].replica.as_mut() {
                                r.handle_frame(now, env.seq, env.frame);
                            }
                            self.drain(to);
                            if !self.connected {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            self.fail(format!("a frame failed to decode: {e}"));
                            break;
                        }
                    }
                }
            }
        }
    }

    fn step(&mut self) {
        for h in 0..2 {
            if self.hosts[h].down_until.is_some_and(|t| t <= self.now) {
                self.hosts[h].down_until = None;
                self.boot(h);
            }
        }
        self.step_network();
        for h in 0..2 {
            while self.hosts[h].queue.front().is_some_and(|x| x.2 <= self.now) {
                self.run_io(h);
            }
            let now = self.at();
            if let Some(r) = self.hosts[h].replica.as_mut() {
                if r.poll_timeout().is_some_and(|t| t <= now) {
                    r.handle_timeout(now);
                    if r.poll_timeout().is_some_and(|t| t <= now) {
                        let at = format!("{:?}", r.status().conn);
                        self.fail(format!(
                            "I7: host {h}'s next deadline is still due after its timeout ({at}): the shell would spin"
                        ));
                    }
                }
            }
            self.drain(h);
        }
        self.checks();
    }

    fn primary(&self) -> Option<usize> {
        (0..2).find(|&h| self.hosts[h].replica.as_ref().is_some_and(|r| r.is_primary()))
    }

    fn idle(&self) -> bool {
        self.hosts.iter().all(|h| h.queue.is_empty() && h.wire_out.is_empty())
            && self.hosts.iter().all(|h| {
                h.replica
                    .as_ref()
                    .is_some_and(|r| r.conn() == Conn::Connected && !r.status().frozen)
            })
    }
}

/// What pairbeat does about the replicas' findings: after a split brain the
/// loser (the one not Primary, else either) stops and discards its data and the
/// keeper reconnects; a Primary whose I/O failed, or that a handshake would make a
/// SyncTarget, is stopped.
fn pairbeat_reacts(w: &mut World, rng: &mut Rng) {
    let pending: Vec<bool> = (0..2)
        .map(|h| {
            w.hosts[h]
                .replica
                .as_ref()
                .is_some_and(|r| r.status().split_brain_pending)
        })
        .collect();
    let retry = w.resolving_since.is_some_and(|t| w.now > t + 1000);
    if pending.iter().any(|&p| p)
        && w.hosts.iter().all(|h| h.replica.is_some())
        && (w.resolving_since.is_none() || retry)
    {
        w.resolving_since = Some(w.now);
        w.i1_off = true;
        let prim: Vec<bool> = (0..2)
            .map(|h| w.hosts[h].replica.as_ref().is_some_and(|r| r.is_primary()))
            .collect();
        let loser = match (prim[0], prim[1]) {
            (true, false) => 1,
            (false, true) => 0,
            _ => rng.below(2) as usize,
        };
        w.kernel.open.retain(|_, (n, _)| *n != loser);
        let mut tries = 0;
        while w.hosts[loser].replica.as_ref().is_some_and(|r| r.is_primary()) && tries < 50 {
            w.cmd(loser, Command::Demote, "demote");
            w.now += 1;
            w.step();
            tries += 1;
        }
        w.cmd(loser, Command::DiscardMyData, "discard-my-data");
        w.cmd(1 - loser, Command::Connect, "connect");
    }
    if w.resolving_since.is_some() && !pending.iter().any(|&p| p) {
        w.resolving_since = None;
    }
    // pairbeat stops the group on a Primary whose I/O failed.
    for h in 0..2 {
        if w.hosts[h]
            .replica
            .as_ref()
            .is_some_and(|r| r.is_primary() && r.status().failed.is_some())
        {
            w.kernel.open.retain(|_, (n, _)| *n != h);
            w.cmd(h, Command::Demote, "demote");
        }
    }
    // A handshake refused because a Primary would be the target: pairbeat stops
    // the group there (the other side has the newer data).
    for h in 0..2 {
        if std::mem::take(&mut w.demote_wanted[h]) {
            w.kernel.open.retain(|_, (n, _)| *n != h);
            w.i1_off |= w.split;
            w.cmd(h, Command::Demote, "demote");
            w.cmd(h, Command::Connect, "connect");
        }
    }
}

struct Outcome {
    failures: Vec<String>,
    acked_flushes: u64,
    split_brains: bool,
    resynced: bool,
}

fn run(seed: u64) -> Outcome {
    let mut rng = Rng(seed);
    let fencing = match rng.below(20) {
        0 | 1 => Fencing::DontCare,
        2..=10 => Fencing::ResourceOnly,
        _ => Fencing::ResourceAndStonith,
    };
    let split_schedule = rng.chance(150);
    let meta = |node: u32| Meta::create([0x5a; 16], SIZE, EXTENT, node);
    let host = |node: u32| Host {
        disk: Disk::new(&meta(node)),
        replica: None,
        queue: VecDeque::new(),
        wire_out: VecDeque::new(),
        rx: Vec::new(),
        down_until: None,
    };
    let mut w = World {
        rng: Rng(seed ^ 0xd15c),
        t0: Instant::now(),
        now: 0,
        hosts: [host(0), host(1)],
        link_up: true,
        heartbeat_up: true,
        connected: false,
        kernel: Kernel::default(),
        cmd: 0,
        cmds: BTreeMap::new(),
        failures: Vec::new(),
        trace: std::env::var_os("SIM_TRACE").is_some(),
        fencing,
        split: false,
        saw_split_brain: false,
        demote_wanted: [false; 2],
        max_resync_rule: 0,
        wrote_alone: [false; 2],
        resolving_since: None,
        outdate_answer: None,
        split_active: false,
        // dont-care lets either side carry on alone (and a rebooted Secondary count
        // itself UpToDate): as in DRBD, acknowledged writes may be lost by design.
        i1_off: fencing == Fencing::DontCare,
    };
    w.boot(0);
    w.boot(1);
    // Connect, then one node takes the fresh pair with --new-data (or --force,
    // which resyncs everything).
    for _ in 0..20 {
        w.now += 1;
        w.step();
    }
    let first = rng.below(2) as usize;
    let new_data = rng.chance(700);
    w.cmd(
        first,
        Command::Promote {
            force: !new_data,
            new_data,
        },
        "promote",
    );

    let end = 6000 + rng.below(4000);
    let quiet_from = end - 2500;
    let mut next_fault = 300 + rng.below(800);
    let mut partitioned_until: Option<u64> = None;
    while w.now < end {
        w.now += 1;
        if let Some(p) = w.primary() {
            if rng.chance(400) {
                w.issue(p);
            }
        }
        if partitioned_until.is_some_and(|t| t <= w.now) {
            partitioned_until = None;
            w.split_active = false;
            w.link_up = true;
            w.heartbeat_up = true;
        }
        if w.now >= next_fault && w.now < quiet_from {
            next_fault = w.now + 300 + rng.below(1200);
            let victim = rng.below(2) as usize;
            match rng.below(10) {
                // A host crash; pairbeat promotes the survivor after a deadtime.
                0..=3 if w.hosts[victim].replica.is_some() && w.hosts[1 - victim].replica.is_some() => {
                    let was_primary = w.hosts[victim].replica.as_ref().is_some_and(|r| r.is_primary());
                    w.crash(victim);
                    w.hosts[victim].down_until = Some(w.now + 200 + rng.below(1500));
                    let survivor = 1 - victim;
                    let now = w.at();
                    if let Some(r) = w.hosts[survivor].replica.as_mut() {
                        r.handle_peer_dead(now);
                    }
                    w.drain(survivor);
                    if was_primary {
                        w.cmd(
                            survivor,
                            Command::Promote {
                                force: false,
                                new_data: false,
                            },
                            "promote",
                        );
                    }
                }
                // The replication link alone fails for a while.
                4 | 5 => {
                    if fencing == Fencing::DontCare {
                        // dont-care lets either side write on alone: by design, no I1.
                        w.i1_off = true;
                    }
                    w.link_up = false;
                    w.cut_connection("link down");
                    partitioned_until = Some(w.now + 100 + rng.below(1500));
                }
                // A planned switchover: demote, then promote the other.
                6 => {
                    if let Some(p) = w.primary() {
                        w.cmd(p, Command::Demote, "demote");
                        for _ in 0..5 {
                            w.now += 1;
                            w.step();
                        }
                        // pairbeat starts the group on the other node only once it stopped here.
                        if w.hosts[p].replica.as_ref().is_some_and(|r| !r.is_primary()) {
                            w.cmd(
                                1 - p,
                                Command::Promote {
                                    force: false,
                                    new_data: false,
                                },
                                "promote",
                            );
                        }
                    }
                }
                // A total partition in which pairbeat promotes both: a split brain.
                7 if split_schedule && !w.split && w.hosts.iter().all(|h| h.replica.is_some()) => {
                    w.link_up = false;
                    w.heartbeat_up = false;
                    w.cut_connection("total partition");
                    w.split = true;
                    w.split_active = true;
                    if w.trace {
                        eprintln!("{} ms: total partition, pairbeat promotes both", w.now);
                    }
                    partitioned_until = Some(w.now + 400 + rng.below(800));
                    for h in 0..2 {
                        let now = w.at();
                        if let Some(r) = w.hosts[h].replica.as_mut() {
                            r.handle_peer_dead(now);
                        }
                        w.drain(h);
                    }
                    for h in 0..2 {
                        if !w.hosts[h].replica.as_ref().is_some_and(|r| r.is_primary()) {
                            w.cmd(
                                h,
                                Command::Promote {
                                    force: false,
                                    new_data: false,
                                },
                                "promote",
                            );
                        }
                    }
                    // Both write alone for a while.
                    for _ in 0..200 {
                        w.now += 1;
                        for h in 0..2 {
                            if rng.chance(100) {
                                w.issue(h);
                            }
                        }
                        w.step();
                    }
                }
                _ => {}
            }
        }
        pairbeat_reacts(&mut w, &mut rng);
        // Frozen by resource-and-stonith with the peer unreachable: the operator resumes.
        if w.now % 500 == 0 {
            for h in 0..2 {
                if w.hosts[h].replica.as_ref().is_some_and(|r| r.status().frozen) && !w.link_up {
                    w.cmd(h, Command::ResumeIo, "resume-io");
                }
            }
        }
        // Nobody Primary but both up and in sync: pairbeat starts the group again.
        if w.now % 250 == 0 && w.primary().is_none() && !w.split {
            let pick = rng.below(2) as usize;
            if w.hosts[pick]
                .replica
                .as_ref()
                .is_some_and(|r| r.status().disk == DiskState::UpToDate)
            {
                w.cmd(
                    pick,
                    Command::Promote {
                        force: false,
                        new_data: false,
                    },
                    "promote",
                );
            }
        }
        if w.now == quiet_from {
            w.split_active = false;
            w.link_up = true;
            w.heartbeat_up = true;
            partitioned_until = None;
            for h in 0..2 {
                if w.hosts[h].replica.is_none() && w.hosts[h].down_until.is_none() {
                    w.hosts[h].down_until = Some(w.now + 1);
                }
            }
        }
        w.step();
    }
    // The end: everything heals; once both are Connected and idle, the images
    // match (I4), after a final flush from the Primary.
    let mut settled = false;
    for _ in 0..20000 {
        w.now += 1;
        w.link_up = true;
        w.heartbeat_up = true;
        for h in 0..2 {
            if w.hosts[h]
                .replica
                .as_ref()
                .is_some_and(|r| r.conn() == Conn::StandAlone && !r.status().split_brain_pending)
            {
                w.cmd(h, Command::Connect, "connect");
            }
        }
        pairbeat_reacts(&mut w, &mut rng);
        w.step();
        if w.idle() && w.kernel.open.is_empty() {
            settled = true;
            break;
        }
    }
    if settled {
        for h in 0..2 {
            w.hosts[h].disk.sync();
        }
        if w.hosts[0].disk.image() != w.hosts[1].disk.image() {
            let a = w.hosts[0].disk.image();
            let b = w.hosts[1].disk.image();
            let first = (0..SIZE as usize).find(|&i| a[i] != b[i]).unwrap_or(0);
            w.fail(format!(
                "I4: Connected and idle, but the images differ from byte {first}"
            ));
        }
    } else {
        let st: Vec<String> = w
            .hosts
            .iter()
            .map(|h| {
                h.replica
                    .as_ref()
                    .map(|r| format!("{:?}", r.status()))
                    .unwrap_or("down".into())
            })
            .collect();
        w.fail(format!("did not settle after the heal: {st:?}"));
    }
    // I5: when both wrote alone, the replicas must have called it split brain.
    if w.wrote_alone == [true, true] && !w.saw_split_brain {
        w.fail("I5: both nodes wrote alone, and no split brain was detected".into());
    }
    Outcome {
        failures: w.failures,
        acked_flushes: w.kernel.acked_flushes,
        split_brains: w.saw_split_brain,
        resynced: w.max_resync_rule > 0,
    }
}

/// The schedules of one half (`part` 0 or 1), so the two halves run on two cores.
fn seeds(part: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_REPLICA_SEED") {
        let seed: u64 = s.parse().expect("SIM_REPLICA_SEED is a number");
        return if part == 0 { vec![seed] } else { vec![] };
    }
    let var = |name: &str, default: u64| std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    // SIM_REPLICA_FIRST lets a long run be sharded.
    let (first, n) = (var("SIM_REPLICA_FIRST", 1), var("SIM_REPLICA_SCHEDULES", 10_000));
    (first..first + n).filter(|s| s % 2 == part).collect()
}

#[test]
fn replica_schedules_keep_the_invariants_even_seeds() {
    schedules(seeds(0));
}

#[test]
fn replica_schedules_keep_the_invariants_odd_seeds() {
    schedules(seeds(1));
}

fn schedules(seeds: Vec<u64>) {
    let mut failed = Vec::new();
    let (mut flushes, mut sbs, mut resyncs) = (0, 0, 0);
    for &seed in &seeds {
        let o = run(seed);
        flushes += o.acked_flushes;
        sbs += u64::from(o.split_brains);
        resyncs += u64::from(o.resynced);
        if !o.failures.is_empty() {
            let n = o.failures.len();
            failed.push(format!(
                "seed {seed} ({n} violations): {}",
                o.failures.iter().take(2).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
    }
    println!(
        "{} replica schedules: {flushes} acknowledged flushes checked, {sbs} split brains detected, {resyncs} with a resync",
        seeds.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} schedules broke an invariant (replay with SIM_REPLICA_SEED=n SIM_TRACE=1):\n{}",
        failed.len(),
        seeds.len(),
        failed.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Schedules a long run (scripts and `SIM_REPLICA_FIRST=10001
/// SIM_REPLICA_SCHEDULES=50000`) once broke, each for a reason now fixed: a
/// resynced extent acknowledged (and its bit cleared on both sides) while its data
/// was still in the target's cache, lost at the target's crash (I1, I4); two sides
/// that both moved on from one generation, kept as bitmap UUID on one side and in
/// history on the other, taken for unrelated data instead of a split brain; an
/// outdate request answered "Inconsistent" by a SyncTarget that had not yet seen
/// the link go, which then finished the resync and called itself UpToDate (I1); a
/// discard flag left on the keeper, so both sides offered to discard; a write let
/// through because its extent's bit was in the last durable map while a metadata
/// write that cleared it (resync progress) was still in flight — the crash after it
/// landed forgot an extent the peer held (I4, 39526); a SyncSource that persisted
/// an extent as in sync while the copy it had sent came from its own unflushed
/// cache, lost at its crash (I4, 29296, 52831).
#[test]
fn regression_seeds() {
    schedules(vec![
        23010, 24419, 29296, 34902, 36510, 36936, 39526, 40574, 46717, 52831, 58049,
    ]);
}
