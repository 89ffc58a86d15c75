//! One replica's state machine: role, disk and connection states, the protocol C
//! data path, the handshake, resync, and what happens when the peer is lost. Pure:
//! inputs come with `now`, outputs are queued [`Effect`]s the shell carries out.
//!
//! The shell's side of the contract:
//! - disk effects ([`DiskOp`]) run **in the order they were emitted**, one at a
//!   time, each answered with [`Replica::handle_io`]. The core leans on that order:
//!   a metadata write emitted before a data write is durable before it;
//! - frames go out in the order emitted, on one connection; frames in are handed
//!   over in the order they arrived;
//! - a lost connection is reported once with [`Replica::handle_disconnected`].
//!
//! The rules the data path keeps (DESIGN: no acknowledged write is ever lost):
//! - a write is answered when it is in the local backing file **and** the peer
//!   applied it (WRITE_ACK); a flush is answered when both sides `fdatasync`ed;
//! - a dirty bit is persisted before the first write into its extent is sent or
//!   written, so after any crash the dirty maps cover every extent that may differ;
//! - a Primary that loses its peer answers nothing more until a new data generation
//!   is persisted and the fencing policy allows it (frozen I/O);
//! - resync data for an extent never overtakes a newer write to it (extent lock).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::data::Data;
use super::dirtymap::DirtyMap;
use super::gi::{self, Compare, DiskState, Gi, Handshake, Side};
use super::meta::{Flags, Meta};
use super::wire::{Frame, State};
use crate::model::Note;

/// What a Primary does when it loses its peer (DRBD's `fencing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// Carry on at once.
    DontCare,
    /// Freeze, ask that the peer be outdated; resume unless the peer is Primary.
    ResourceOnly,
    /// Freeze; resume only when the peer is known outdated or fenced.
    ResourceAndStonith,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's index (0 or 1): node 1 resolves crashed-primary ties.
    pub me: u32,
    pub fencing: Fencing,
    /// A ping, write or flush not answered within this means the peer is lost.
    pub timeout: Duration,
    pub ping_interval: Duration,
    /// Resync bytes per second; 0 is unlimited.
    pub resync_rate: u64,
    /// How often cold extents leave the dirty map while connected.
    pub al_interval: Duration,
    /// I/O held frozen (the peer could not be outdated) asks again this often:
    /// the config's `outdate_timeout`.
    pub ask_again: Duration,
    /// Largest resync read, and the resync bytes in flight at most.
    pub chunk: u32,
    pub window: u64,
    /// Randomness for new generation UUIDs (the shell draws it; the simulation
    /// derives it from its seed).
    pub salt: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// Not trying: after a split brain or a refused handshake.
    StandAlone,
    /// Waiting for the link (the shell connects or listens).
    Connecting,
    /// Link up, states and maps being exchanged.
    Handshake,
    Connected,
    SyncSource,
    SyncTarget,
}

impl Conn {
    pub fn name(self) -> &'static str {
        match self {
            Conn::StandAlone => "StandAlone",
            Conn::Connecting => "Connecting",
            Conn::Handshake => "Handshake",
            Conn::Connected => "Connected",
            Conn::SyncSource => "SyncSource",
            Conn::SyncTarget => "SyncTarget",
        }
    }

    /// The peer receives the application's writes.
    pub fn replicating(self) -> bool {
        matches!(self, Conn::Connected | Conn::SyncSource | Conn::SyncTarget)
    }
}

/// Extents marked dirty ahead of a sequential writer (see `release`).
const LOOKAHEAD: u64 = 2;

/// A request from the kernel (through FUSE), by the shell's id.
pub type ReqId = u64;
/// A disk operation, by the core's id.
pub type IoId = u64;
/// An operator's command, by the shell's id.
pub type CmdId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read { offset: u64, len: u32 },
    Write { offset: u64, data: Data },
    Discard { offset: u64, len: u64 },
    Flush,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Data(Data),
    Written(u32),
    Done,
    /// EIO: the local disk failed, or the fencing policy gave up this node's data.
    IoError(String),
    /// EROFS: not Primary.
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    Read {
        offset: u64,
        len: u32,
    },
    Write {
        offset: u64,
        data: Data,
    },
    Discard {
        offset: u64,
        len: u64,
    },
    /// `fdatasync` of the backing file.
    Sync,
    /// Write this slot to the metadata file and `fdatasync` it.
    Meta(Box<Meta>),
    /// Copy these extents to a file beside the backing file before a split-brain
    /// loser's data is overwritten.
    SaveDivergent {
        extents: Vec<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Promote {
        force: bool,
        new_data: bool,
    },
    Demote,
    /// Persist Outdated, asked for by the peer's pairbeatd on behalf of a peer
    /// whose generations are `requester` (refused when this side's data is newer).
    Outdate {
        requester: Option<Gi>,
    },
    /// Give up this side's data at the next split-brain handshake.
    DiscardMyData,
    /// Operator override of frozen I/O.
    ResumeIo,
    /// Leave cleanly (a Secondary leaving a Primary outdates itself first).
    Stop,
    SetResyncRate(u64),
    /// Try the link again after StandAlone, keeping this node's data (withdraws a
    /// discard-my-data, as DRBD's `connect` without `--discard-my-data`).
    Connect,
}

/// DRBD's fence-peer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutdateRc {
    /// 3: the peer's disk is Inconsistent.
    Inconsistent,
    /// 4: the peer persisted Outdated.
    Outdated,
    /// 5: the peer could not be reached.
    Unreachable,
    /// 6: the peer is Primary: this node outdates itself.
    PeerPrimary,
    /// 7: the peer was fenced.
    Fenced,
    /// pairbeat's own: the peer refused, its data is newer than the requester's
    /// (DRBD would outdate it anyway and lose the newer writes).
    PeerNewer,
    /// Anything else: the handler failed.
    Failed,
}

impl OutdateRc {
    /// DRBD's fence-peer exit code (pairbeat's own: 8 peer newer, 1 failed), as
    /// `pb-outdate-rc` carries it on the wire.
    pub fn code(self) -> u8 {
        match self {
            OutdateRc::Inconsistent => 3,
            OutdateRc::Outdated => 4,
            OutdateRc::Unreachable => 5,
            OutdateRc::PeerPrimary => 6,
            OutdateRc::Fenced => 7,
            OutdateRc::PeerNewer => 8,
            OutdateRc::Failed => 1,
        }
    }

    /// Any code not listed is a failed handler, as DRBD reads it.
    pub fn from_code(code: u8) -> Self {
        match code {
            3 => OutdateRc::Inconsistent,
            4 => OutdateRc::Outdated,
            5 => OutdateRc::Unreachable,
            6 => OutdateRc::PeerPrimary,
            7 => OutdateRc::Fenced,
            8 => OutdateRc::PeerNewer,
            _ => OutdateRc::Failed,
        }
    }

    /// The code that starts an answer such as `4: Outdated` (what the replica's
    /// outdate command and pairbeatd's relay answer with).
    pub fn from_answer(text: &str) -> Option<Self> {
        let (code, _) = text.split_once(':')?;
        code.trim().parse().ok().map(Self::from_code)
    }

    pub fn words(self) -> &'static str {
        match self {
            OutdateRc::Inconsistent => "the peer's disk is Inconsistent",
            OutdateRc::Outdated => "the peer persisted Outdated",
            OutdateRc::Unreachable => "the peer could not be reached",
            OutdateRc::PeerPrimary => "the peer is Primary",
            OutdateRc::Fenced => "the peer was fenced",
            OutdateRc::PeerNewer => "the peer refused: its data is newer",
            OutdateRc::Failed => "the outdate request failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Send {
        seq: u64,
        frame: Frame,
    },
    Disk {
        io: IoId,
        op: DiskOp,
    },
    Reply {
        req: ReqId,
        reply: Reply,
    },
    /// Close the connection (the core already counts it as gone).
    Disconnect {
        reason: String,
    },
    /// Ask pairbeatd to outdate (or fence) the peer, showing it these generations;
    /// answer with `handle_outdate_rc`.
    OutdatePeer {
        gi: Gi,
    },
    Done {
        cmd: CmdId,
        result: Result<String, String>,
    },
    Log(Note),
}

/// A split brain the handshake found, for status and the split-brain record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitBrainSeen {
    pub mine: Gi,
    pub peer: Gi,
    pub rule: u8,
    pub my_dirty: u64,
    pub peer_dirty: u64,
}

/// What status shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub primary: bool,
    pub disk: DiskState,
    pub peer_disk: Option<DiskState>,
    pub peer_primary: Option<bool>,
    pub conn: Conn,
    pub gi: Gi,
    pub out_of_sync: u64,
    /// (bytes done, bytes to do) of the running resync.
    pub resync: Option<(u64, u64)>,
    pub frozen: bool,
    pub failed: Option<String>,
    pub split_brain: Option<SplitBrainSeen>,
    /// A split brain was found and waits for a decision (persisted).
    pub split_brain_pending: bool,
    pub last_rule: u32,
    pub promotion_score: Option<u32>,
    /// The resync rate in force, bytes per second (0: unthrottled).
    pub resync_rate: u64,
    /// Resync bytes sent / written since the process started.
    pub resync_sent: u64,
    pub resync_received: u64,
    /// Dirty-map granularity, bytes (to tell dirty extents in bytes).
    pub extent: u64,
}

/// What a disk operation was for.
#[derive(Debug, Clone)]
enum Io {
    /// A metadata slot: when it lands, these waiters go ahead.
    Meta {
        snapshot: Box<DirtyMap>,
        then: Vec<Then>,
    },
    /// The Primary's own write, read or flush for a request.
    Local {
        req: ReqId,
    },
    /// The peer's write (WRITE_ACK on completion) or resync data (RS_ACK).
    PeerWrite {
        seq: u64,
    },
    PeerResync {
        offset: u64,
        len: u64,
    },
    PeerFlush {
        seq: u64,
    },
    /// A resync read for the peer.
    RsRead {
        offset: u64,
        len: u64,
    },
    /// The sync before adopting RS_DONE's tuple.
    AdoptSync {
        gi: Gi,
    },
    /// The sync that makes a resynced extent durable before it is acknowledged (and
    /// its bit cleared, here and on the source): a crash of the target must not
    /// leave a clean bit over data still in its cache.
    ExtentDurable {
        extent: u64,
        acks: Vec<(u64, u64)>,
    },
    Save,
    /// An `fdatasync` whose only job is to come before the next metadata write.
    Barrier,
}

/// What waits for a metadata write.
#[derive(Debug, Clone)]
enum Then {
    Release,
    Done(CmdId, String),
    Send(Frame),
    Unfreeze,
    BecomeTarget,
    StartResync,
    Connected,
}

/// A request of the Primary's in flight.
#[derive(Debug, Clone)]
struct InFlight {
    local_done: bool,
    /// Sent to the peer under this sequence number, not yet acknowledged.
    peer_seq: Option<u64>,
    sent_at: Instant,
    extents: (u64, u64),
    /// Reads answer with their data.
    data: Option<Data>,
    len: u32,
    flush: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frozen {
    No,
    /// Waiting for the outdate answer.
    Outdating,
    /// The fencing policy keeps I/O frozen: the peer could not be outdated. The
    /// ask goes out again each `Settings::ask_again` (a fence that failed may succeed
    /// on pairbeatd's retry), until an answer lets I/O go or the operator resumes it.
    Held {
        ask_again: Instant,
    },
}

/// The handshake as it comes together.
#[derive(Debug, Clone, Default)]
struct Shake {
    peer: Option<State>,
    peer_map: Option<DirtyMap>,
    mine: Option<(Handshake, u8, i32)>,
    peer_decision: Option<(u8, i32, u64)>,
    /// My own dirty map before the merge (what a split-brain loser saves).
    own_map: Option<DirtyMap>,
    agreed: bool,
}

pub struct Replica {
    s: Settings,
    meta: Meta,
    /// A bit was cleared here as SyncSource since the last barrier: the next
    /// metadata write, whatever asks for it, is preceded by one (see `persist`).
    cleared_unsynced: bool,
    primary: bool,
    disk: DiskState,
    conn: Conn,
    peer: Option<State>,
    crashed_primary: bool,
    failed: Option<String>,
    split_brain: Option<SplitBrainSeen>,
    /// Bits known persisted.
    durable: DirtyMap,
    /// Metadata writes not yet durable, oldest first. The file passes through each
    /// of their dirty maps in turn, so a bit is safe to write under only while it is
    /// set in `durable` and in every one of them (see `bit_durable`).
    meta_ios: VecDeque<IoId>,
    next_io: IoId,
    ios: BTreeMap<IoId, Io>,
    send_seq: u64,
    reqs: BTreeMap<ReqId, InFlight>,
    /// Writes waiting for their dirty bits to be persisted, or for frozen I/O.
    held: VecDeque<(ReqId, Request)>,
    frozen: Frozen,
    /// Asks made in a row while I/O is held (each waits twice as long as the last).
    held_asks: u32,
    shake: Shake,
    last_recv: Instant,
    ping_sent: Option<Instant>,
    last_checkpoint: Instant,
    /// Per extent: the write counter when its last write completed.
    written_at: BTreeMap<u64, u64>,
    write_counter: u64,
    /// Writes completed before this counter value are durable on both sides.
    covered: u64,
    /// Flushes in flight: req → counter when issued.
    flush_issued: BTreeMap<ReqId, u64>,
    resync: Resync,
    /// Resync bytes sent as SyncSource and written as SyncTarget since this
    /// process started (DRBD's /proc/drbd counters, for status and tests).
    resync_sent: u64,
    resync_received: u64,
    promote_waiting: Option<CmdId>,
    effects: VecDeque<Effect>,
}

/// How often a running resync persists its progress (see `resync_progress`).
const RESYNC_PERSIST: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Default)]
struct Resync {
    /// Next byte offset to read.
    cursor: u64,
    in_flight: u64,
    /// Extents with a resync read outstanding (writes to them wait).
    locked: BTreeMap<u64, u32>,
    /// Per extent: chunks sent and not yet acknowledged.
    pending: BTreeMap<u64, u32>,
    total: u64,
    done: u64,
    tokens: f64,
    refilled: Option<Instant>,
    /// Extents cleared since the last metadata write, and when that was.
    unpersisted: u32,
    persisted_at: Option<Instant>,
    /// Per extent: the write counter when its first resync read was issued.
    read_tick: BTreeMap<u64, u64>,
    /// When this side started it as SyncSource (for the rate in the log).
    started: Option<Instant>,
    /// Target side, per extent: chunks applied and not yet acknowledged (they are
    /// acknowledged together once the extent is durable).
    unacked: BTreeMap<u64, Vec<(u64, u64)>>,
}

/// Only data the requester has too may be called outdated: if this side moved on
/// past the requester's generations, the requester is the stale one.
fn newer_than_requester(mine: Gi, disk: DiskState, theirs: Gi) -> bool {
    let me = Side {
        gi: mine,
        disk,
        primary: false,
        crashed_primary: false,
        discard_my_data: false,
    };
    let them = Side { gi: theirs, ..me };
    matches!(
        gi::compare(&me, &them, false).result,
        Compare::Source { .. } | Compare::SplitBrain | Compare::SplitBrainOld | Compare::Unrelated
    )
}

/// The peer's outdate ask, answered from the metadata of a replica whose daemon is
/// not running (pairbeatd does it, holding the metadata file's lock): the same
/// answers and the same refusal as a running replica's. `Ok(Some(meta))` is the
/// metadata to write (the next slot), `Ok(None)` nothing to change.
pub fn outdate_at_rest(meta: &Meta, requester: Option<Gi>) -> Result<(String, Option<Meta>), String> {
    let f = meta.flags;
    let disk = gi::disk_at_attach(
        f.has(Flags::CONSISTENT),
        f.has(Flags::WAS_UP_TO_DATE),
        f.has(Flags::PEER_OUTDATED),
        false,
    );
    if disk <= DiskState::Inconsistent {
        return Ok(("3: Inconsistent (replica not running)".into(), None));
    }
    if let Some(theirs) = requester {
        if newer_than_requester(meta.gi, disk, theirs) {
            return Err(format!("8: refused: this node's data is newer ({})", meta.gi));
        }
    }
    if !f.has(Flags::WAS_UP_TO_DATE) {
        return Ok(("4: Outdated (already; replica not running)".into(), None));
    }
    let mut next = meta.clone();
    next.flags.set(Flags::WAS_UP_TO_DATE, false);
    next.seq += 1;
    Ok((
        "4: Outdated (replica not running: its metadata was changed)".into(),
        Some(next),
    ))
}

impl Replica {
    /// The replica as the metadata file left it. A Primary indicator means this
    /// node crashed while Primary: it comes back Secondary with the flag noted.
    pub fn new(settings: Settings, mut meta: Meta, now: Instant) -> Self {
        let crashed = meta.flags.has(Flags::PRIMARY_IND) || meta.flags.has(Flags::CRASHED_PRIMARY);
        meta.flags.set(Flags::PRIMARY_IND, false);
        meta.flags.set(Flags::CRASHED_PRIMARY, crashed);
        meta.gi.set_primary_bit(false);
        let disk = gi::disk_at_attach(
            meta.flags.has(Flags::CONSISTENT),
            meta.flags.has(Flags::WAS_UP_TO_DATE),
            meta.flags.has(Flags::PEER_OUTDATED),
            settings.fencing == Fencing::DontCare,
        );
        let mut r = Replica {
            cleared_unsynced: false,
            durable: meta.dirty.clone(),
            meta_ios: VecDeque::new(),
            s: settings,
            primary: false,
            disk,
            conn: Conn::Connecting,
            peer: None,
            crashed_primary: crashed,
            failed: None,
            split_brain: None,
            next_io: 1,
            ios: BTreeMap::new(),
            send_seq: 0,
            reqs: BTreeMap::new(),
            held: VecDeque::new(),
            frozen: Frozen::No,
            held_asks: 0,
            shake: Shake::default(),
            last_recv: now,
            ping_sent: None,
            last_checkpoint: now,
            written_at: BTreeMap::new(),
            write_counter: 0,
            covered: 0,
            flush_issued: BTreeMap::new(),
            resync: Resync::default(),
            resync_sent: 0,
            resync_received: 0,
            promote_waiting: None,
            effects: VecDeque::new(),
            meta,
        };
        if r.meta.flags.has(Flags::SPLIT_BRAIN_PENDING) && !r.meta.flags.has(Flags::DISCARD_MY_DATA) {
            r.conn = Conn::StandAlone;
        }
        if crashed {
            r.note_warn("this node crashed while Primary: its dirty extents count as divergent at the next handshake");
        }
        r
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn conn(&self) -> Conn {
        self.conn
    }

    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// I/O is held by the fencing policy (not hung: the supervisor's watchdog
    /// leaves it alone).
    pub fn is_frozen(&self) -> bool {
        self.frozen != Frozen::No
    }

    /// The shell should keep a connection up (or try to).
    pub fn wants_connection(&self) -> bool {
        self.conn != Conn::StandAlone
    }

    /// Linbit's promotion scores: 10000 UpToDate with the peer known, 1000 with the
    /// peer unknown, 0 Consistent, none otherwise.
    pub fn promotion_score(&self) -> Option<u32> {
        if self.failed.is_some() || self.split_brain.is_some() || self.meta.flags.has(Flags::SPLIT_BRAIN_PENDING) {
            return None;
        }
        match self.disk {
            DiskState::UpToDate if self.conn.replicating() || self.meta.flags.has(Flags::PEER_OUTDATED) => Some(10000),
            DiskState::UpToDate => Some(1000),
            DiskState::Consistent => Some(0),
            _ => None,
        }
    }

    pub fn status(&self) -> Status {
        let connected = self.conn.replicating() || self.conn == Conn::Handshake;
        Status {
            primary: self.primary,
            disk: self.disk,
            peer_disk: self.peer.filter(|_| connected).map(|p| p.disk),
            peer_primary: self.peer.filter(|_| connected).map(|p| p.primary),
            conn: self.conn,
            gi: self.meta.gi,
            out_of_sync: self.out_of_sync(),
            resync: matches!(self.conn, Conn::SyncSource | Conn::SyncTarget)
                .then_some((self.resync.done, self.resync.total)),
            frozen: self.is_frozen(),
            failed: self.failed.clone(),
            split_brain: self.split_brain,
            split_brain_pending: self.meta.flags.has(Flags::SPLIT_BRAIN_PENDING),
            last_rule: self.meta.last_rule,
            promotion_score: self.promotion_score(),
            resync_rate: self.s.resync_rate,
            resync_sent: self.resync_sent,
            resync_received: self.resync_received,
            extent: u64::from(self.meta.extent),
        }
    }

    /// Bytes the peer's copy lacks. Connected, none: the dirty map then holds the
    /// extents written lately, kept for a crash (the activity log), which the peer
    /// has. During a resync, what is left of it; apart, every dirty extent.
    fn out_of_sync(&self) -> u64 {
        match self.conn {
            Conn::Connected => 0,
            Conn::SyncSource | Conn::SyncTarget => self.resync.total.saturating_sub(self.resync.done),
            _ => self.meta.dirty.count() * u64::from(self.meta.extent),
        }
    }

    /// The earliest instant `handle_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if self.conn.replicating() || self.conn == Conn::Handshake {
            // One ping at a time: while it is out, its answer's deadline counts.
            match self.ping_sent {
                Some(p) => at(p + self.s.timeout),
                None => at(self.last_recv + self.s.ping_interval),
            }
            if let Some(oldest) = self
                .reqs
                .values()
                .filter(|r| r.peer_seq.is_some())
                .map(|r| r.sent_at)
                .min()
            {
                at(oldest + self.s.timeout);
            }
        }
        if self.conn == Conn::Connected && !self.meta.dirty.is_empty() {
            at(self.last_checkpoint + self.s.al_interval);
        }
        if let Frozen::Held { ask_again } = self.frozen {
            if self.conn == Conn::Connecting {
                at(ask_again);
            }
        }
        // Only a throttled resync waits for its tokens; unthrottled, the acks drive
        // it (a refill deadline left in the past would spin the shell's loop).
        if self.conn == Conn::SyncSource && self.s.resync_rate > 0 && self.resync.cursor < self.meta.size {
            if let Some(r) = self.resync.refilled {
                at(r + Duration::from_millis(10));
            }
        }
        t
    }

    // ----- inputs -----

    /// The link is up and authenticated: exchange states and maps.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.conn != Conn::Connecting {
            return;
        }
        self.conn = Conn::Handshake;
        self.last_recv = now;
        self.ping_sent = None;
        self.shake = Shake {
            own_map: Some(self.meta.dirty.clone()),
            ..Shake::default()
        };
        self.send(Frame::State(self.state_frame()));
        self.send(Frame::DirtyMap {
            bytes: self.meta.dirty.to_bytes(),
        });
    }

    /// The link went away (closed, reset, or timed out in the shell).
    pub fn handle_disconnected(&mut self, now: Instant, why: &str) {
        if matches!(self.conn, Conn::StandAlone | Conn::Connecting) {
            return;
        }
        self.lose_peer(now, why);
    }

    /// pairbeatd says the peer is dead on every link.
    pub fn handle_peer_dead(&mut self, now: Instant) {
        if self.conn.replicating() || self.conn == Conn::Handshake {
            self.lose_peer(now, "pairbeat declared the peer dead");
        }
    }

    pub fn handle_frame(&mut self, now: Instant, seq: u64, frame: Frame) {
        self.last_recv = now;
        self.ping_sent = None;
        match frame {
            Frame::State(st) => self.on_state(now, st),
            Frame::DirtyMap { bytes } => match DirtyMap::from_bytes(self.meta.extents(), &bytes) {
                Ok(m) => {
                    self.shake.peer_map = Some(m);
                    self.try_decide(now);
                }
                Err(e) => self.protocol_error(now, &format!("the peer's dirty map: {e}")),
            },
            Frame::Decision { rule, code, sync_uuid } => {
                self.shake.peer_decision = Some((rule, code, sync_uuid));
                self.try_agree(now);
            }
            Frame::Write { .. } | Frame::Discard { .. } if self.primary => {
                self.protocol_error(now, "the peer sent a write to a Primary")
            }
            Frame::Write { offset, data } => {
                if self.check_range(now, offset, data.len() as u64) {
                    self.disk_op(DiskOp::Write { offset, data }, Io::PeerWrite { seq });
                }
            }
            Frame::Discard { offset, len } => {
                if self.check_range(now, offset, len) {
                    self.disk_op(DiskOp::Discard { offset, len }, Io::PeerWrite { seq });
                }
            }
            Frame::Flush => self.disk_op(DiskOp::Sync, Io::PeerFlush { seq }),
            Frame::WriteAck | Frame::FlushAck => self.on_ack(now, seq),
            Frame::RsData { offset, data } => {
                if !self.sync_target_or_becoming() {
                    return self.protocol_error(now, "resync data while not SyncTarget");
                }
                if self.check_range(now, offset, data.len() as u64) {
                    let len = data.len() as u64;
                    self.disk_op(DiskOp::Write { offset, data }, Io::PeerResync { offset, len });
                }
            }
            // Checked like the data frames (found by fuzzing: an ack's length
            // past the device overflowed the resync counters).
            Frame::RsAck { offset, len } => {
                if self.check_range(now, offset, len) {
                    self.on_rs_ack(now, offset, len);
                }
            }
            Frame::RsDone { gi } => {
                let new_data =
                    self.conn == Conn::Connected && self.meta.gi.current == gi::UUID_JUST_CREATED && !self.primary;
                if !self.sync_target_or_becoming() && !new_data {
                    return self.protocol_error(now, "RS_DONE while not SyncTarget");
                }
                // Durable data first, then the claim that it is consistent.
                self.disk_op(DiskOp::Sync, Io::AdoptSync { gi });
            }
            Frame::Ping => {
                self.send(Frame::Pong);
            }
            Frame::Pong => {}
            Frame::Bye { outdated } => {
                if outdated {
                    self.meta.flags.set(Flags::PEER_OUTDATED, true);
                }
                self.lose_peer(now, "the peer left");
            }
            Frame::Hello(_) | Frame::Auth { .. } => self.protocol_error(now, "handshake frame after authentication"),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.conn.replicating() || self.conn == Conn::Handshake {
            let late_ping = self.ping_sent.is_some_and(|p| now >= p + self.s.timeout);
            let late_ack = self
                .reqs
                .values()
                .any(|r| r.peer_seq.is_some() && now >= r.sent_at + self.s.timeout);
            if late_ping || late_ack {
                let what = if late_ping { "a ping" } else { "a write or flush" };
                self.effects.push_back(Effect::Disconnect {
                    reason: format!(
                        "the peer did not answer {what} within {} ms",
                        self.s.timeout.as_millis()
                    ),
                });
                self.lose_peer(now, "timeout");
                return;
            }
            if self.ping_sent.is_none() && now >= self.last_recv + self.s.ping_interval {
                self.ping_sent = Some(now);
                self.send(Frame::Ping);
            }
        }
        if self.conn == Conn::Connected && now >= self.last_checkpoint + self.s.al_interval {
            self.checkpoint(now);
        }
        if self.conn == Conn::SyncSource {
            self.pump_resync(now);
        }
        // Only while the peer is away: connected again, the handshake settles it;
        // StandAlone (a split brain), the operator does.
        if matches!(self.frozen, Frozen::Held { ask_again } if now >= ask_again) && self.conn == Conn::Connecting {
            self.frozen = Frozen::Outdating;
            self.note_info("I/O still frozen: asking again that the peer be outdated or fenced");
            self.effects.push_back(Effect::OutdatePeer { gi: self.meta.gi });
        }
    }

    /// A request from the kernel. Only a Primary serves them.
    pub fn handle_request(&mut self, now: Instant, req: ReqId, r: Request) {
        if let Some(why) = &self.failed {
            let why = why.clone();
            return self.reply(req, Reply::IoError(why));
        }
        if !self.primary {
            return self.reply(req, Reply::ReadOnly);
        }
        if let Request::Read { offset, len } = r {
            // Reads are local and need no order against the peer.
            if !self.check_range(now, offset, u64::from(len)) {
                return self.reply(req, Reply::IoError("read past the end of the device".into()));
            }
            self.track(req, now, (0, 0), len, false);
            return self.disk_op(DiskOp::Read { offset, len }, Io::Local { req });
        }
        self.held.push_back((req, r));
        self.release(now);
    }

    pub fn handle_io(&mut self, now: Instant, io: IoId, result: Result<Option<Data>, String>) {
        let Some(what) = self.ios.remove(&io) else {
            return;
        };
        self.meta_ios.retain(|&m| m != io);
        let data = match result {
            Ok(d) => d,
            Err(e) => return self.disk_failed(now, &e),
        };
        match what {
            Io::Meta { snapshot, then } => {
                self.durable = *snapshot;
                for t in then {
                    self.after_meta(now, t);
                }
                self.release(now);
            }
            Io::Local { req } => self.local_done(now, req, data),
            Io::PeerWrite { seq } => self.send_seq_frame(seq, Frame::WriteAck),
            Io::PeerFlush { seq } => self.send_seq_frame(seq, Frame::FlushAck),
            Io::PeerResync { offset, len } => {
                self.resync_received += len;
                self.target_progress(now, offset, len)
            }
            Io::ExtentDurable { extent, acks } => {
                // The extent's data is on disk: now it may leave both maps.
                for (offset, len) in acks {
                    self.send(Frame::RsAck { offset, len });
                }
                if self.meta.dirty.clear(extent) {
                    self.resync_progress(now);
                }
            }
            Io::RsRead { offset, len } => {
                let e = offset / u64::from(self.meta.extent);
                if let Some(n) = self.resync.locked.get_mut(&e) {
                    *n -= 1;
                    if *n == 0 {
                        self.resync.locked.remove(&e);
                    }
                }
                if self.conn == Conn::SyncSource {
                    let data = data.unwrap_or_default();
                    debug_assert_eq!(data.len() as u64, len);
                    self.resync_sent += len;
                    self.send(Frame::RsData { offset, data });
                }
                self.release(now);
            }
            Io::AdoptSync { gi } => {
                if !self.sync_target_or_becoming() && self.conn != Conn::Connected {
                    // The link went while the data was being made durable: the peer may
                    // have been told this side is Inconsistent and moved on. Only the
                    // next handshake may call this data up to date.
                    return;
                }
                let mut gi = gi;
                gi.set_primary_bit(self.primary);
                self.meta.gi = gi;
                self.meta.dirty.clear_all();
                self.meta.flags.set(Flags::CONSISTENT | Flags::WAS_UP_TO_DATE, true);
                self.meta.flags.set(Flags::CRASHED_PRIMARY, false);
                self.crashed_primary = false;
                self.disk = DiskState::UpToDate;
                self.persist(vec![Then::Connected]);
            }
            Io::Save | Io::Barrier => {}
        }
    }

    pub fn handle_command(&mut self, now: Instant, cmd: CmdId, c: Command) {
        match c {
            Command::Promote { force, new_data } => self.promote(now, cmd, force, new_data),
            Command::Demote => self.demote(cmd),
            Command::Outdate { requester } => {
                if self.conn.replicating() || self.conn == Conn::Handshake {
                    // The peer lost this node before this node noticed: the link is
                    // gone for both. Dropping it first means nothing under way (the
                    // end of a resync, say) can make this data UpToDate after the
                    // answer said otherwise.
                    self.effects.push_back(Effect::Disconnect {
                        reason: "the peer asked for this node to be outdated".into(),
                    });
                    self.lose_peer(now, "outdate requested by the peer");
                }
                self.outdate(cmd, requester)
            }
            Command::DiscardMyData => {
                self.meta.flags.set(Flags::DISCARD_MY_DATA, true);
                if self.conn == Conn::StandAlone {
                    self.conn = Conn::Connecting;
                }
                if self.conn == Conn::Handshake {
                    // The peer has seen this side's flags already: start over.
                    self.effects.push_back(Effect::Disconnect {
                        reason: "discard-my-data: reconnecting".into(),
                    });
                    self.lose_peer(now, "discard-my-data");
                }
                self.persist(vec![Then::Done(
                    cmd,
                    "this node's data will be discarded at the next split-brain handshake".into(),
                )]);
            }
            Command::ResumeIo => {
                if self.frozen == Frozen::No {
                    return self.done(cmd, Ok("I/O is not frozen".into()));
                }
                self.note_warn("the operator resumed frozen I/O");
                self.resume(now);
                self.done(cmd, Ok("I/O resumed".into()));
            }
            Command::Stop => {
                if self.primary {
                    return self.done(cmd, Err("refused: demote before stopping a Primary".into()));
                }
                let peer_primary = self.conn.replicating() && self.peer.is_some_and(|p| p.primary);
                if peer_primary && self.disk >= DiskState::Outdated {
                    // Left behind by a running Primary: stale from now on, and saying so
                    // spares the Primary a fence-peer call.
                    self.set_outdated();
                    self.persist(vec![
                        Then::Send(Frame::Bye { outdated: true }),
                        Then::Done(cmd, "left".into()),
                    ]);
                } else {
                    self.send(Frame::Bye { outdated: false });
                    self.done(cmd, Ok("left".into()));
                }
                self.conn = Conn::StandAlone;
            }
            Command::SetResyncRate(r) => {
                self.s.resync_rate = r;
                self.done(cmd, Ok(format!("resync rate set to {r} bytes/s")));
                if self.conn == Conn::SyncSource {
                    // Unthrottled, nothing else would send what the tokens held back.
                    self.pump_resync(now);
                }
            }
            Command::Connect => {
                if self.conn == Conn::StandAlone {
                    self.conn = Conn::Connecting;
                }
                // As DRBD's `connect` without `--discard-my-data`: this node keeps its
                // data; a discard asked for earlier is withdrawn.
                if self.meta.flags.has(Flags::DISCARD_MY_DATA) {
                    self.meta.flags.set(Flags::DISCARD_MY_DATA, false);
                    self.persist(vec![Then::Done(
                        cmd,
                        format!("{}, keeping this node's data", self.conn.name()),
                    )]);
                } else {
                    self.done(cmd, Ok(self.conn.name().into()));
                }
            }
        }
    }

    /// The answer to [`Effect::OutdatePeer`].
    pub fn handle_outdate_rc(&mut self, now: Instant, rc: OutdateRc) {
        let resume = match (self.s.fencing, rc) {
            (_, OutdateRc::PeerPrimary | OutdateRc::PeerNewer) => {
                // The peer runs as Primary, or holds newer data: this side's is stale.
                self.set_outdated();
                if self.frozen != Frozen::No {
                    self.fail_io("the peer is Primary or has newer data: this node's data was outdated");
                }
                self.persist(vec![]);
                false
            }
            (Fencing::ResourceAndStonith, OutdateRc::Unreachable | OutdateRc::Failed) => false,
            // resource-only: DRBD does not even freeze; a handler that failed (no
            // pairbeatd to relay the ask) leaves the peer as it is and I/O goes on.
            _ => true,
        };
        if self.conn.replicating() {
            // Answered after the peer came back: the handshake already settled who
            // has what, and a late answer must not mark a resynced peer outdated.
            if let Some(cmd) = self.promote_waiting.take() {
                self.done(
                    cmd,
                    Err("refusing to promote: the peer is connected again; retry".into()),
                );
            }
            return;
        }
        if matches!(rc, OutdateRc::Inconsistent | OutdateRc::Outdated | OutdateRc::Fenced) {
            self.meta.flags.set(Flags::PEER_OUTDATED, true);
        }
        if matches!(rc, OutdateRc::Unreachable) && self.disk == DiskState::UpToDate {
            // DRBD: an unreachable peer counts as outdated for an UpToDate disk.
            self.meta.flags.set(Flags::PEER_OUTDATED, true);
        }
        if let Some(cmd) = self.promote_waiting.take() {
            return self.promote_after_outdate(now, cmd, rc);
        }
        if self.frozen == Frozen::Outdating {
            if resume {
                self.resume(now);
            } else {
                // Found in the netns tests: a fence that failed and then succeeded on
                // pairbeatd's retry left I/O frozen for good, as nothing asked again.
                // Each ask may run the peer's fencing device once more: the wait
                // doubles, from `ask_again` up to 32 times it.
                self.held_asks = self.held_asks.saturating_add(1);
                let wait = self.s.ask_again * (1u32 << (self.held_asks - 1).min(5));
                self.frozen = Frozen::Held { ask_again: now + wait };
                self.note_warn(format!(
                    "I/O stays frozen: the peer could not be outdated ({rc:?}); asking again in {} ms; `pairbeat replica resume-io` overrides",
                    wait.as_millis()
                ));
            }
        }
    }

    // ----- the data path -----

    fn track(&mut self, req: ReqId, now: Instant, extents: (u64, u64), len: u32, flush: bool) {
        self.reqs.insert(
            req,
            InFlight {
                local_done: false,
                peer_seq: None,
                sent_at: now,
                extents,
                data: None,
                len,
                flush,
            },
        );
    }

    fn extents_of(&self, offset: u64, len: u64) -> (u64, u64) {
        let e = u64::from(self.meta.extent);
        (offset / e, (offset + len.max(1) - 1) / e)
    }

    /// Lets held writes go, in order, while their bits are durable and nothing
    /// freezes them. A sequential writer also gets `LOOKAHEAD` extents marked
    /// ahead of it.
    fn release(&mut self, now: Instant) {
        // While the handshake runs the maps are being compared: a write now would
        // fall between them.
        while self.frozen == Frozen::No && self.primary && self.conn != Conn::Handshake {
            let Some((req, r)) = self.held.front().cloned() else {
                break;
            };
            let range = match &r {
                Request::Write { offset, data } => Some(self.extents_of(*offset, data.len() as u64)),
                Request::Discard { offset, len } => Some(self.extents_of(*offset, *len)),
                _ => None,
            };
            let end = match &r {
                Request::Write { offset, data } => offset.checked_add(data.len() as u64),
                Request::Discard { offset, len } => offset.checked_add(*len),
                _ => Some(0),
            };
            if end.is_none_or(|e| e > self.meta.size) {
                self.held.pop_front();
                self.reply(req, Reply::IoError("write past the end of the device".into()));
                continue;
            }
            if let Some((a, b)) = range {
                if (a..=b).any(|e| self.resync.locked.contains_key(&e)) {
                    break;
                }
                let mut fresh = false;
                for e in a..=b {
                    fresh |= self.meta.dirty.set(e);
                }
                // A sequential writer (the extent before this one is marked too)
                // gets the next extents marked in the same metadata write: its
                // writes then find their bits durable at each extent boundary
                // instead of waiting there for a metadata write. A bit set ahead
                // only means "may differ" (a superset is always safe); the next
                // checkpoint clears it if no write came.
                if a > 0 && self.meta.dirty.get(a - 1) {
                    for e in b + 1..=b + LOOKAHEAD {
                        fresh |= self.meta.dirty.set(e);
                    }
                }
                if fresh {
                    self.persist(vec![Then::Release]);
                }
                if (a..=b).any(|e| !self.bit_durable(e)) {
                    break;
                }
            }
            self.held.pop_front();
            self.start(now, req, r, range.unwrap_or((0, 0)));
        }
    }

    fn start(&mut self, now: Instant, req: ReqId, r: Request, extents: (u64, u64)) {
        let peer = self.conn.replicating() && self.peer.is_some_and(|p| p.disk >= DiskState::Inconsistent);
        match r {
            Request::Write { offset, data } => {
                let len = data.len() as u32;
                self.track(req, now, extents, len, false);
                if peer {
                    let seq = self.send(Frame::Write {
                        offset,
                        data: data.clone(),
                    });
                    self.reqs.get_mut(&req).expect("tracked").peer_seq = Some(seq);
                }
                self.disk_op(DiskOp::Write { offset, data }, Io::Local { req });
            }
            Request::Discard { offset, len } => {
                self.track(req, now, extents, 0, false);
                if peer {
                    let seq = self.send(Frame::Discard { offset, len });
                    self.reqs.get_mut(&req).expect("tracked").peer_seq = Some(seq);
                }
                self.disk_op(DiskOp::Discard { offset, len }, Io::Local { req });
            }
            Request::Flush => {
                self.track(req, now, (0, 0), 0, true);
                if peer {
                    // Only a flush both sides complete lets the checkpoint clear bits.
                    self.flush_issued.insert(req, self.write_counter);
                    let seq = self.send(Frame::Flush);
                    self.reqs.get_mut(&req).expect("tracked").peer_seq = Some(seq);
                }
                self.disk_op(DiskOp::Sync, Io::Local { req });
            }
            Request::Read { .. } => unreachable!("reads are not held"),
        }
    }

    fn local_done(&mut self, now: Instant, req: ReqId, data: Option<Data>) {
        let Some(r) = self.reqs.get_mut(&req) else { return };
        r.local_done = true;
        r.data = data;
        let (a, b) = r.extents;
        let is_write = !r.flush && r.data.is_none();
        if is_write {
            self.write_counter += 1;
            for e in a..=b {
                self.written_at.insert(e, self.write_counter);
            }
        }
        self.maybe_answer(now, req);
    }

    fn on_ack(&mut self, now: Instant, seq: u64) {
        let Some(req) = self.reqs.iter().find(|(_, r)| r.peer_seq == Some(seq)).map(|(k, _)| *k) else {
            return;
        };
        self.reqs.get_mut(&req).expect("found").peer_seq = None;
        self.maybe_answer(now, req);
    }

    /// Answers a request whose local part is done and whose peer part is done or
    /// no longer owed — never while frozen: a lost peer must be dealt with first.
    fn maybe_answer(&mut self, _now: Instant, req: ReqId) {
        let Some(r) = self.reqs.get(&req) else { return };
        if !r.local_done || r.peer_seq.is_some() || self.frozen != Frozen::No {
            return;
        }
        let r = self.reqs.remove(&req).expect("present");
        if r.flush {
            if let Some(issued) = self.flush_issued.remove(&req) {
                // Reached only when the peer acknowledged (a lost peer drops the entry).
                self.covered = self.covered.max(issued + 1);
            }
            self.reply(req, Reply::Done);
        } else if let Some(data) = r.data {
            self.reply(req, Reply::Data(data));
        } else if r.len > 0 {
            self.reply(req, Reply::Written(r.len));
        } else {
            self.reply(req, Reply::Done);
        }
    }

    /// Clears extents no write touched since a flush both sides completed.
    fn checkpoint(&mut self, now: Instant) {
        self.last_checkpoint = now;
        let cold: Vec<u64> = self
            .meta
            .dirty
            .iter()
            .filter(|e| self.written_at.get(e).copied().unwrap_or(0) < self.covered)
            .filter(|&e| !self.busy(e))
            .collect();
        if cold.is_empty() {
            return;
        }
        for e in &cold {
            self.meta.dirty.clear(*e);
            self.written_at.remove(e);
        }
        self.persist(vec![]);
    }

    /// SyncTarget, or agreed to become one with its metadata write under way (the
    /// source starts at once; the disk queue keeps its data behind that write).
    fn sync_target_or_becoming(&self) -> bool {
        self.conn == Conn::SyncTarget
            || (self.conn == Conn::Handshake
                && self.shake.agreed
                && matches!(self.shake.mine, Some((Handshake::SyncTarget { .. }, _, _))))
    }

    /// A request in flight or waiting touches extent `e`.
    fn busy(&self, e: u64) -> bool {
        let held = self.held.iter().filter_map(|(_, r)| match r {
            Request::Write { offset, data } => Some(self.extents_of(*offset, data.len() as u64)),
            Request::Discard { offset, len } => Some(self.extents_of(*offset, *len)),
            _ => None,
        });
        self.reqs
            .values()
            .filter(|r| !r.flush && r.data.is_none())
            .map(|r| r.extents)
            .chain(held)
            .any(|(a, b)| (a..=b).contains(&e))
    }

    // ----- handshake -----

    fn state_frame(&self) -> State {
        State {
            primary: self.primary,
            disk: self.disk,
            gi: self.meta.gi,
            flags: self.meta.flags.0
                | if self.crashed_primary {
                    Flags::CRASHED_PRIMARY
                } else {
                    0
                },
            dirty: self.meta.dirty.count(),
        }
    }

    fn on_state(&mut self, now: Instant, st: State) {
        self.peer = Some(st);
        if self.conn == Conn::Handshake && self.shake.peer.is_none() {
            self.shake.peer = Some(st);
            self.try_decide(now);
        }
        if self.primary && st.primary && self.conn.replicating() {
            self.effects.push_back(Effect::Disconnect {
                reason: "both nodes are Primary".into(),
            });
            self.conn = Conn::StandAlone;
            self.note_error("both nodes are Primary: disconnected (no dual-primary)");
        }
    }

    fn try_decide(&mut self, now: Instant) {
        if self.conn != Conn::Handshake || self.shake.mine.is_some() {
            return;
        }
        let (Some(peer), Some(peer_map)) = (self.shake.peer, self.shake.peer_map.clone()) else {
            return;
        };
        let me = Side {
            gi: self.meta.gi,
            disk: self.disk,
            primary: self.primary,
            crashed_primary: self.crashed_primary,
            discard_my_data: self.meta.flags.has(Flags::DISCARD_MY_DATA),
        };
        let them = Side {
            gi: peer.gi,
            disk: peer.disk,
            primary: peer.primary,
            crashed_primary: peer.flags & Flags::CRASHED_PRIMARY != 0,
            discard_my_data: peer.flags & Flags::DISCARD_MY_DATA != 0,
        };
        let d = gi::handshake(&me, &them, self.s.me == 1);
        let target_while_primary = d.handshake == Handshake::Refused(gi::Refusal::TargetWhilePrimary);
        if me.primary && self.frozen != Frozen::No && (them.primary || target_while_primary) {
            // The peer moved on while this Primary's I/O was frozen: nothing was
            // answered here since the two parted, and the peer's data is the newer.
            // Failing what waits (EIO) loses nothing acknowledged and lets pairbeat
            // demote this node, after which it resyncs from the peer.
            self.set_outdated();
            self.fail_io("the peer moved on while I/O here was frozen: this node's data is stale; demote it");
        }
        let rule = d.comparison.rule;
        self.note_info(format!(
            "handshake: self {} peer {}: uuid_compare()={} by rule {rule}{}{}",
            me.gi,
            them.gi,
            d.comparison.result.code(),
            if me.discard_my_data { ", discarding my data" } else { "" },
            if them.discard_my_data {
                ", the peer discards its data"
            } else {
                ""
            },
        ));
        if let Some(fixed) = d.comparison.corrected_self {
            self.meta.gi = fixed;
        }
        self.meta.last_rule = u32::from(rule);
        let mut hs = d.handshake;
        // Two Primaries never connect (no dual-primary) — but data both wrote
        // alone is a split brain all the same, recorded as such, so that the
        // policy can end it once one of them has demoted.
        if me.primary && them.primary && hs != Handshake::SplitBrain {
            hs = Handshake::Refused(gi::Refusal::TargetWhilePrimary);
        }
        // Equal generations do not prove equal data: leftover bits on either side
        // are resynced from the side that wrote last (DRBD 9's lesson, drbd#145).
        let mut merged = self.meta.dirty.clone();
        merged.merge(&peer_map);
        if hs == Handshake::Connected && !merged.is_empty() {
            let i_source = if me.primary != them.primary {
                me.primary
            } else if me.crashed_primary != them.crashed_primary {
                me.crashed_primary
            } else {
                self.s.me == 0
            };
            hs = if i_source {
                Handshake::SyncSource { full: false }
            } else {
                Handshake::SyncTarget { full: false }
            };
            if me.disk <= DiskState::Inconsistent && i_source {
                hs = Handshake::Refused(gi::Refusal::SourceInconsistent);
            }
        }
        let code = match hs {
            Handshake::Connected => 0,
            Handshake::SyncSource { full } => 1 + i32::from(full),
            Handshake::SyncTarget { full } => -1 - i32::from(full),
            Handshake::SplitBrain => 100,
            Handshake::Refused(_) => -1000,
        };
        self.shake.mine = Some((hs, rule, code));
        match hs {
            Handshake::SplitBrain => {
                let seen = SplitBrainSeen {
                    mine: me.gi,
                    peer: them.gi,
                    rule,
                    my_dirty: self.meta.dirty.count(),
                    peer_dirty: peer_map.count(),
                };
                self.split_brain = Some(seen);
                self.meta.flags.set(Flags::SPLIT_BRAIN_PENDING, true);
                self.note_error(format!(
                    "split brain detected by rule {rule} (self {} peer {}): no data is discarded until one side is told to (pairbeat resolve, or pairbeat replica discard-my-data)",
                    me.gi, them.gi
                ));
                self.persist(vec![]);
                self.send(Frame::Decision {
                    rule,
                    code,
                    sync_uuid: 0,
                });
                self.go_standalone("split brain");
            }
            Handshake::Refused(why) => {
                self.note_error(format!("handshake refused: {why}"));
                self.send(Frame::Decision {
                    rule,
                    code,
                    sync_uuid: 0,
                });
                self.go_standalone(&why.to_string());
            }
            Handshake::SyncSource { full } => {
                self.meta.dirty = if full {
                    DirtyMap::full(self.meta.extents())
                } else {
                    merged
                };
                let sync = self.meta.gi.start_resync_as_source();
                self.meta.flags.set(Flags::PEER_OUTDATED, false);
                self.persist(vec![
                    Then::Send(Frame::Decision {
                        rule,
                        code,
                        sync_uuid: sync,
                    }),
                    Then::StartResync,
                ]);
                self.try_agree(now);
            }
            Handshake::SyncTarget { full } => {
                if d.by_discard {
                    // The split-brain loser keeps a copy of what it wrote alone.
                    let extents: Vec<u64> = self
                        .shake
                        .own_map
                        .as_ref()
                        .map(|m| m.iter().collect())
                        .unwrap_or_default();
                    self.disk_op(DiskOp::SaveDivergent { extents }, Io::Save);
                }
                self.meta.dirty = if full {
                    DirtyMap::full(self.meta.extents())
                } else {
                    merged
                };
                self.send(Frame::Decision {
                    rule,
                    code,
                    sync_uuid: 0,
                });
                self.try_agree(now);
            }
            Handshake::Connected => {
                self.send(Frame::Decision {
                    rule,
                    code,
                    sync_uuid: 0,
                });
                self.try_agree(now);
            }
        }
    }

    /// Both decisions known: they must mirror each other (the rule numbers may
    /// differ: rules 34/35, 36/37 and 51/71 are each other's mirrors).
    fn try_agree(&mut self, now: Instant) {
        let (Some((hs, rule, code)), Some((peer_rule, peer_code, sync_uuid))) =
            (self.shake.mine, self.shake.peer_decision)
        else {
            return;
        };
        if !self.shake.agreed {
            self.shake.agreed = true;
            if peer_code != -code && !(code == 100 && peer_code == 100) {
                let reason = format!(
                    "the handshake disagrees: here rule {rule} gives {code}, the peer's rule {peer_rule} gives {peer_code}"
                );
                self.note_error(&reason);
                return self.go_standalone(&reason);
            }
        }
        if self.conn != Conn::Handshake {
            return;
        }
        match hs {
            Handshake::SyncTarget { .. } => {
                self.disk = DiskState::Inconsistent;
                self.meta.flags.set(Flags::CONSISTENT, false);
                self.meta
                    .flags
                    .set(Flags::DISCARD_MY_DATA | Flags::SPLIT_BRAIN_PENDING, false);
                self.split_brain = None;
                self.meta.gi.current = sync_uuid & !gi::UUID_PRIMARY;
                self.resync = Resync {
                    total: self.meta.dirty.count() * u64::from(self.meta.extent),
                    ..Resync::default()
                };
                self.persist(vec![Then::BecomeTarget]);
            }
            Handshake::Connected => {
                self.conn = Conn::Connected;
                self.after_connect(now);
            }
            _ => {}
        }
    }

    /// Back in touch with the peer: frozen I/O has nothing left to wait for (the
    /// handshake has put every extent written meanwhile into the resync).
    fn thaw(&mut self, now: Instant) {
        if self.frozen != Frozen::No {
            self.frozen = Frozen::No;
            self.held_asks = 0;
            self.note_info("I/O resumed: the peer is connected again");
            self.answer_all(now);
            self.release(now);
        }
    }

    fn after_connect(&mut self, now: Instant) {
        // As DRBD: a discard request is used up by the handshake that follows it.
        self.meta.flags.set(Flags::DISCARD_MY_DATA, false);
        self.meta.flags.set(Flags::PEER_OUTDATED, false);
        self.meta.flags.set(Flags::CRASHED_PRIMARY, false);
        self.crashed_primary = false;
        // Connected without a resync: both hold the same data, as good as the
        // better of the two (two Outdated disks stay Outdated: neither is known to
        // be the latest).
        // In sync with an equal bitmap UUID on both sides: that generation is behind
        // them, so the next divergence starts a new one (both sides rotate alike).
        if let Some(p) = self.peer {
            if self.meta.gi.bitmap != 0 && p.gi.bitmap & !1 == self.meta.gi.bitmap & !1 && self.meta.dirty.is_empty() {
                self.meta.gi.finish_resync_as_source();
            }
        }
        let peer = self.peer.map_or(DiskState::Diskless, |p| p.disk);
        if self.disk >= DiskState::Outdated && peer >= DiskState::Outdated {
            let best = self.disk.max(peer);
            self.disk = if best >= DiskState::Consistent {
                DiskState::UpToDate
            } else {
                DiskState::Outdated
            };
            self.meta.flags.set(Flags::CONSISTENT, true);
            self.meta
                .flags
                .set(Flags::WAS_UP_TO_DATE, self.disk == DiskState::UpToDate);
        }
        self.last_checkpoint = now;
        self.persist(vec![]);
        self.send(Frame::State(self.state_frame()));
        self.note_info(format!(
            "connected: {}/{}",
            self.disk,
            self.peer.map_or("DUnknown", |p| p.disk.name())
        ));
        self.thaw(now);
    }

    fn go_standalone(&mut self, reason: &str) {
        self.conn = Conn::StandAlone;
        self.effects.push_back(Effect::Disconnect { reason: reason.into() });
    }

    fn protocol_error(&mut self, now: Instant, what: &str) {
        self.note_error(format!("protocol error: {what}; reconnecting"));
        self.effects.push_back(Effect::Disconnect { reason: what.into() });
        self.lose_peer(now, what);
    }

    fn check_range(&mut self, now: Instant, offset: u64, len: u64) -> bool {
        let ok = offset.checked_add(len).is_some_and(|end| end <= self.meta.size);
        if !ok && !self.primary {
            self.protocol_error(now, &format!("{len} bytes at {offset} lie past the end of the device"));
        }
        ok
    }

    // ----- resync -----

    fn after_meta(&mut self, now: Instant, t: Then) {
        match t {
            Then::Release => {}
            Then::Done(cmd, msg) => self.done(cmd, Ok(msg)),
            Then::Send(f) => {
                if self.conn != Conn::StandAlone || matches!(f, Frame::Bye { .. }) {
                    self.send(f);
                }
            }
            Then::Unfreeze => {
                self.frozen = Frozen::No;
                self.held_asks = 0;
                self.answer_all(now);
                self.release(now);
            }
            Then::BecomeTarget => {
                if self.conn == Conn::Handshake {
                    self.conn = Conn::SyncTarget;
                    self.send(Frame::State(self.state_frame()));
                    self.note_info(format!("resync as SyncTarget: {} extents", self.meta.dirty.count()));
                }
            }
            Then::StartResync => {
                if self.conn == Conn::Handshake {
                    self.conn = Conn::SyncSource;
                    self.meta
                        .flags
                        .set(Flags::DISCARD_MY_DATA | Flags::SPLIT_BRAIN_PENDING, false);
                    self.split_brain = None;
                    if self.disk == DiskState::Consistent {
                        // The handshake found this side's data the newer one. The peer
                        // is told: its handshake saw Consistent, and nothing else
                        // would correct it (found by the PostgreSQL test: after a
                        // crash during a resync the new Primary showed its peer
                        // Consistent for good, and the pair never read as in sync).
                        self.disk = DiskState::UpToDate;
                        self.meta.flags.set(Flags::WAS_UP_TO_DATE, true);
                        self.send(Frame::State(self.state_frame()));
                    }
                    self.resync = Resync {
                        total: self.meta.dirty.count() * u64::from(self.meta.extent),
                        refilled: Some(now),
                        started: Some(now),
                        ..Resync::default()
                    };
                    self.note_info(format!("resync as SyncSource: {} extents", self.meta.dirty.count()));
                    self.thaw(now);
                    self.pump_resync(now);
                }
            }
            Then::Connected => {
                if self.conn == Conn::Connected {
                    // `--new-data` on the peer: both start from the same generation.
                    self.send(Frame::State(self.state_frame()));
                    self.note_info("in sync with the peer (new data): UpToDate");
                } else if self.conn == Conn::SyncTarget {
                    self.conn = Conn::Connected;
                    self.send(Frame::State(self.state_frame()));
                    self.note_info("resync finished: UpToDate");
                    self.last_checkpoint = now;
                }
            }
        }
    }

    /// Sends resync reads while the window and the rate allow.
    fn pump_resync(&mut self, now: Instant) {
        let ext = u64::from(self.meta.extent);
        let chunk = u64::from(self.s.chunk.min(self.meta.extent).max(4096));
        if self.s.resync_rate > 0 {
            let last = self.resync.refilled.unwrap_or(now);
            let add = now.saturating_duration_since(last).as_secs_f64() * self.s.resync_rate as f64;
            self.resync.tokens = (self.resync.tokens + add).min(self.s.resync_rate as f64 / 10.0 + chunk as f64);
            self.resync.refilled = Some(now);
        }
        // The target acknowledges whole extents: the window must hold one.
        while self.resync.in_flight < self.s.window.max(chunk).max(2 * ext) {
            let Some(e) = self.meta.dirty.next_from(self.resync.cursor / ext) else {
                break;
            };
            let start = (e * ext).max(self.resync.cursor);
            let end = ((e + 1) * ext).min(self.meta.size);
            if start >= end {
                self.resync.cursor = end;
                continue;
            }
            let len = chunk.min(end - start);
            if self.s.resync_rate > 0 {
                if self.resync.tokens < len as f64 {
                    break;
                }
                self.resync.tokens -= len as f64;
            }
            // Writes to this extent wait until the read is on the wire.
            *self.resync.locked.entry(e).or_insert(0) += 1;
            self.resync.read_tick.entry(e).or_insert(self.write_counter);
            *self.resync.pending.entry(e).or_insert(0) += 1;
            self.resync.in_flight += len;
            self.resync.cursor = start + len;
            self.disk_op(
                DiskOp::Read {
                    offset: start,
                    len: len as u32,
                },
                Io::RsRead { offset: start, len },
            );
        }
        self.maybe_finish_resync(now);
    }

    fn on_rs_ack(&mut self, now: Instant, offset: u64, len: u64) {
        if self.conn != Conn::SyncSource {
            return;
        }
        let ext = u64::from(self.meta.extent);
        let e = offset / ext;
        self.resync.in_flight = self.resync.in_flight.saturating_sub(len);
        self.resync.done += len;
        if let Some(n) = self.resync.pending.get_mut(&e) {
            *n -= 1;
            if *n == 0 {
                self.resync.pending.remove(&e);
                let extent_done = self.resync.cursor >= ((e + 1) * ext).min(self.meta.size);
                let read_at = self.resync.read_tick.remove(&e).unwrap_or(0);
                let rewritten = self.written_at.get(&e).is_some_and(|&w| w > read_at) || self.busy(e);
                if extent_done && !rewritten {
                    self.meta.dirty.clear(e);
                    self.cleared_unsynced = true;
                    self.resync_progress(now);
                }
            }
        }
        self.pump_resync(now);
    }

    /// An extent left the dirty map: the map is persisted after every 16 extents,
    /// and at least every `RESYNC_PERSIST` while extents complete, so a resync
    /// interrupted by a crash resumes close to where it stopped (DRBD writes its
    /// bitmap lazily in the same way) without a metadata write per extent at speed.
    ///
    /// On the SyncSource the copy sent may have come from writes of its own not yet
    /// flushed: its data is made durable first, or a crash would leave the source
    /// without what its map says the two sides share.
    fn resync_progress(&mut self, now: Instant) {
        self.resync.unpersisted += 1;
        let due = self.resync.persisted_at.is_none_or(|t| now >= t + RESYNC_PERSIST);
        if self.resync.unpersisted >= 16 || due {
            self.resync.unpersisted = 0;
            self.resync.persisted_at = Some(now);
            // On the SyncSource, `persist` puts a barrier first.
            self.persist(vec![]);
        }
    }

    fn maybe_finish_resync(&mut self, now: Instant) {
        let ext = u64::from(self.meta.extent);
        let left = self.meta.dirty.next_from(self.resync.cursor / ext).is_some();
        if self.conn != Conn::SyncSource || left || !self.resync.pending.is_empty() || self.resync.in_flight > 0 {
            return;
        }
        // Bits left before the cursor were set again by writes after their extent
        // was copied: those writes went to the peer as writes, and the bits stay as
        // activity-log bits until a flush covers them (checkpoint).
        self.meta.gi.finish_resync_as_source();
        self.conn = Conn::Connected;
        let gi = self.meta.gi;
        // What was sent may include this side's unflushed writes (see resync_progress).
        self.disk_op(DiskOp::Sync, Io::Barrier);
        self.persist(vec![Then::Send(Frame::RsDone { gi })]);
        let secs = self
            .resync
            .started
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let mib = self.resync.done as f64 / f64::from(1 << 20);
        self.note_info(format!(
            "resync finished: the peer is UpToDate ({mib:.0} MiB in {secs:.2} s, {:.0} MiB/s)",
            if secs > 0.0 { mib / secs } else { 0.0 }
        ));
    }

    fn target_progress(&mut self, _now: Instant, offset: u64, len: u64) {
        let ext = u64::from(self.meta.extent);
        self.resync.done += len;
        let end = offset + len;
        let e = offset / ext;
        self.resync.unacked.entry(e).or_default().push((offset, len));
        if end == ((e + 1) * ext).min(self.meta.size) {
            let acks = self.resync.unacked.remove(&e).unwrap_or_default();
            self.disk_op(DiskOp::Sync, Io::ExtentDurable { extent: e, acks });
        }
    }

    // ----- losing the peer -----

    fn lose_peer(&mut self, now: Instant, why: &str) {
        let was = self.conn;
        self.conn = if was == Conn::StandAlone {
            Conn::StandAlone
        } else {
            Conn::Connecting
        };
        self.ping_sent = None;
        self.shake = Shake::default();
        self.resync.locked.clear();
        self.resync.pending.clear();
        self.resync.in_flight = 0;
        self.peer = None;
        // What the peer owed is owed no more; the answers wait for the peer-loss
        // procedure below.
        for r in self.reqs.values_mut() {
            r.peer_seq = None;
        }
        self.flush_issued.clear();
        self.covered = 0;
        if was.replicating() || was == Conn::Handshake {
            self.note_warn(format!("lost the peer ({why}) while {}", was.name()));
        }
        if self.primary && was.replicating() {
            self.frozen = Frozen::Outdating;
            let outdated = self.meta.flags.has(Flags::PEER_OUTDATED);
            if self.s.fencing == Fencing::DontCare || outdated {
                self.resume(now);
            } else {
                self.effects.push_back(Effect::OutdatePeer { gi: self.meta.gi });
            }
        } else if was == Conn::SyncTarget || was == Conn::SyncSource {
            // Progress so far is kept: the next handshake resumes from the map.
            self.persist(vec![]);
        }
    }

    /// Resumes frozen I/O: a new data generation first, so that what is written
    /// from now on is told apart from what the peer has.
    fn resume(&mut self, _now: Instant) {
        if self.frozen == Frozen::No {
            return;
        }
        self.held_asks = 0;
        if self.primary && !self.conn.replicating() {
            let fresh = self.fresh_uuid();
            self.meta.gi.new_current(fresh, true);
        }
        self.persist(vec![Then::Unfreeze]);
    }

    fn answer_all(&mut self, now: Instant) {
        let ready: Vec<ReqId> = self.reqs.keys().copied().collect();
        for req in ready {
            self.maybe_answer(now, req);
        }
    }

    fn fail_io(&mut self, why: &str) {
        self.failed = Some(why.into());
        for (req, _) in std::mem::take(&mut self.held) {
            self.reply(req, Reply::IoError(why.into()));
        }
        let reqs: Vec<ReqId> = self.reqs.keys().copied().collect();
        for req in reqs {
            self.reqs.remove(&req);
            self.reply(req, Reply::IoError(why.into()));
        }
        self.frozen = Frozen::No;
    }

    fn disk_failed(&mut self, _now: Instant, e: &str) {
        let why = format!("local disk I/O error: {e}");
        self.note_error(&why);
        self.fail_io(&why);
        self.disk = DiskState::Diskless;
    }

    fn set_outdated(&mut self) {
        if self.disk >= DiskState::Outdated {
            self.disk = DiskState::Outdated;
        }
        self.meta.flags.set(Flags::WAS_UP_TO_DATE, false);
    }

    // ----- commands -----

    fn promote(&mut self, now: Instant, cmd: CmdId, force: bool, new_data: bool) {
        if self.primary {
            return self.done(cmd, Ok("already Primary".into()));
        }
        if let Some(why) = &self.failed {
            return self.done(cmd, Err(format!("refusing to promote: {why}")));
        }
        if self.conn == Conn::Handshake {
            return self.done(
                cmd,
                Err("refusing to promote: a handshake with the peer is under way; retry in a moment".into()),
            );
        }
        if self.conn.replicating() && self.peer.is_some_and(|p| p.primary) {
            return self.done(
                cmd,
                Err("refusing to promote: the peer is Primary (no dual-primary); demote it first".into()),
            );
        }
        if self.split_brain.is_some() || self.meta.flags.has(Flags::SPLIT_BRAIN_PENDING) {
            return self.done(
                cmd,
                Err("refusing to promote: a split brain is pending; resolve it first (pairbeat resolve)".into()),
            );
        }
        if new_data {
            let fresh = self.meta.gi.current == gi::UUID_JUST_CREATED
                && self.conn == Conn::Connected
                && self.peer.is_some_and(|p| p.gi.current == gi::UUID_JUST_CREATED);
            if !fresh {
                return self.done(
                    cmd,
                    Err("refusing --new-data: both replicas must be freshly created and connected".into()),
                );
            }
            // Both zero-filled images are equal: one new generation for both, no sync.
            let g = Gi {
                current: self.fresh_uuid() & !gi::UUID_PRIMARY,
                ..Gi::default()
            };
            self.meta.gi = g;
            self.meta.flags.set(Flags::CONSISTENT | Flags::WAS_UP_TO_DATE, true);
            self.disk = DiskState::UpToDate;
            self.send(Frame::RsDone { gi: g });
            return self.become_primary(now, cmd);
        }
        let peer_unknown = !self.conn.replicating() && !self.meta.flags.has(Flags::PEER_OUTDATED);
        match self.disk {
            // DRBD's rule: with fencing, a disconnected node is promoted only once
            // the peer is outdated (or unreachable, for an UpToDate disk).
            DiskState::UpToDate if peer_unknown && self.s.fencing != Fencing::DontCare && !force => {
                self.promote_waiting = Some(cmd);
                self.effects.push_back(Effect::OutdatePeer { gi: self.meta.gi });
            }
            DiskState::UpToDate => {
                if force && !self.conn.replicating() {
                    // The operator vouches that the peer is not newer: it stays
                    // so across a restart (UpToDate at attach, not Consistent).
                    self.meta.flags.set(Flags::PEER_OUTDATED, true);
                }
                self.become_primary(now, cmd)
            }
            DiskState::Consistent if !force => {
                // Up to date only if the peer is proven outdated.
                self.promote_waiting = Some(cmd);
                self.effects.push_back(Effect::OutdatePeer { gi: self.meta.gi });
            }
            _ if force => {
                self.note_warn(format!("forced promotion of {} data", self.disk));
                self.disk = DiskState::UpToDate;
                self.meta.flags.set(Flags::CONSISTENT | Flags::WAS_UP_TO_DATE, true);
                // A generation of its own, so the peer is synced from this one in full.
                let fresh = self.fresh_uuid();
                self.meta.gi.force_new_current(fresh, true);
                let connected = self.conn.replicating();
                // Disconnected, the operator vouches that the peer is not newer: it
                // stays so across a restart (UpToDate at attach, not Consistent). A
                // peer that did write meanwhile is found at the handshake (split
                // brain), never overwritten.
                self.meta.flags.set(Flags::PEER_OUTDATED, !connected);
                self.become_primary(now, cmd);
                if connected {
                    // The peer learns of the new generation at a new handshake.
                    self.effects.push_back(Effect::Disconnect {
                        reason: "forced promotion: reconnecting to resync the peer".into(),
                    });
                    self.lose_peer(now, "forced promotion");
                }
            }
            d => self.done(
                cmd,
                Err(format!(
                    "refusing to promote: local data is {d}{}",
                    match d {
                        DiskState::Inconsistent => " (a resync into it is not finished)",
                        DiskState::Outdated => " (the peer has newer data)",
                        DiskState::Diskless => " (no usable backing store)",
                        _ => "",
                    }
                )),
            ),
        }
    }

    fn promote_after_outdate(&mut self, now: Instant, cmd: CmdId, rc: OutdateRc) {
        let up_to_date = self.disk == DiskState::UpToDate;
        match rc {
            OutdateRc::Inconsistent | OutdateRc::Outdated => {
                self.disk = DiskState::UpToDate;
                self.meta.flags.set(Flags::WAS_UP_TO_DATE, true);
                self.become_primary(now, cmd);
            }
            // Stricter than DRBD for a Consistent disk: a fenced peer proves it is not
            // writing now, not that this disk has its last writes.
            OutdateRc::Fenced if up_to_date => self.become_primary(now, cmd),
            OutdateRc::Unreachable if up_to_date && self.s.fencing == Fencing::ResourceOnly => {
                self.note_warn("promoting with the peer unreachable: it is assumed outdated (fencing resource-only)");
                self.become_primary(now, cmd);
            }
            OutdateRc::PeerPrimary => self.done(cmd, Err("refusing to promote: the peer is Primary".into())),
            OutdateRc::PeerNewer => self.done(
                cmd,
                Err("refusing to promote: the peer has newer data; this node is Outdated and resyncs from it when they connect".into()),
            ),
            _ => self.done(
                cmd,
                Err(format!(
                    "refusing to promote: local data is {} and the peer's replica did not confirm it is outdated ({rc:?}); wait for the peer, or `pairbeat replica primary --force`",
                    self.disk
                )),
            ),
        }
    }

    fn become_primary(&mut self, _now: Instant, cmd: CmdId) {
        self.primary = true;
        // A Primary keeps its data: an old discard request no longer applies.
        self.meta.flags.set(Flags::DISCARD_MY_DATA, false);
        let connected = self.conn.replicating();
        if !connected {
            let fresh = self.fresh_uuid();
            self.meta.gi.new_current(fresh, true);
        }
        self.meta.gi.set_primary_bit(true);
        self.meta.flags.set(Flags::PRIMARY_IND, true);
        self.persist(vec![Then::Done(cmd, "Primary".into())]);
        if connected {
            self.send(Frame::State(self.state_frame()));
        }
    }

    fn demote(&mut self, cmd: CmdId) {
        if !self.primary {
            return self.done(cmd, Ok("already Secondary".into()));
        }
        if !self.reqs.is_empty() || !self.held.is_empty() {
            return self.done(cmd, Err("refusing to demote: requests are still in flight".into()));
        }
        self.primary = false;
        self.meta.gi.set_primary_bit(false);
        self.meta.flags.set(Flags::PRIMARY_IND, false);
        // Everything written is durable before the role changes.
        self.disk_op(DiskOp::Sync, Io::Save);
        self.persist(vec![Then::Done(cmd, "Secondary".into())]);
        if self.conn.replicating() {
            self.send(Frame::State(self.state_frame()));
        }
    }

    fn outdate(&mut self, cmd: CmdId, requester: Option<Gi>) {
        if self.primary {
            return self.done(cmd, Err("6: this node is Primary".into()));
        }
        if self.disk <= DiskState::Inconsistent {
            return self.done(cmd, Ok("3: Inconsistent".into()));
        }
        if let Some(theirs) = requester {
            if newer_than_requester(self.meta.gi, self.disk, theirs) {
                return self.done(
                    cmd,
                    Err(format!("8: refused: this node's data is newer ({})", self.meta.gi)),
                );
            }
        }
        self.set_outdated();
        self.persist(vec![Then::Done(cmd, "4: Outdated".into())]);
    }

    // ----- plumbing -----

    fn fresh_uuid(&self) -> u64 {
        // The shell's random salt, mixed with what changes between calls (the
        // metadata sequence and current generation), through splitmix64.
        let x = self.meta.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ self.meta.gi.current.rotate_left(17)
            ^ (u64::from(self.s.me) << 56)
            ^ u64::from_le_bytes(self.meta.resource[..8].try_into().expect("8"))
            ^ self.s.salt;
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) & !0xff | 0x10
    }

    fn persist(&mut self, then: Vec<Then>) {
        if std::mem::take(&mut self.cleared_unsynced) {
            // A bit the SyncSource cleared says both sides hold the extent, but the
            // copy it sent may have come from its own writes not flushed yet. Any
            // metadata write that carries the cleared bit — resync progress, or a
            // write marking another extent — waits for them to be durable: else a
            // crash of the source leaves it older than the target in that extent,
            // with nothing left to say so (what tests/netns_postgres.rs's crash of a
            // primary during the peer's resync exercises).
            self.disk_op(DiskOp::Sync, Io::Barrier);
        }
        self.meta.seq += 1;
        let mut m = self.meta.clone();
        m.flags.set(Flags::CRASHED_PRIMARY, self.crashed_primary);
        let snapshot = Box::new(m.dirty.clone());
        self.meta_ios.push_back(self.next_io);
        self.disk_op(DiskOp::Meta(Box::new(m)), Io::Meta { snapshot, then });
    }

    /// Extent `e`'s dirty bit is on disk and stays there whatever metadata write
    /// lands next. Being set in the last durable map is not enough: a write still
    /// in flight may clear it (a checkpoint, resync progress), and a crash after that
    /// one landed would forget a write the peer may already hold.
    fn bit_durable(&self, e: u64) -> bool {
        self.durable.get(e)
            && self.meta_ios.iter().all(|id| match self.ios.get(id) {
                Some(Io::Meta { snapshot, .. }) => snapshot.get(e),
                _ => false,
            })
    }

    fn disk_op(&mut self, op: DiskOp, what: Io) {
        let io = self.next_io;
        self.next_io += 1;
        self.ios.insert(io, what);
        self.effects.push_back(Effect::Disk { io, op });
    }

    fn send(&mut self, frame: Frame) -> u64 {
        self.send_seq += 1;
        let seq = self.send_seq;
        self.effects.push_back(Effect::Send { seq, frame });
        seq
    }

    fn send_seq_frame(&mut self, seq: u64, frame: Frame) {
        if self.conn.replicating() || self.conn == Conn::Handshake {
            self.effects.push_back(Effect::Send { seq, frame });
        }
    }

    fn reply(&mut self, req: ReqId, reply: Reply) {
        self.effects.push_back(Effect::Reply { req, reply });
    }

    fn done(&mut self, cmd: CmdId, result: Result<String, String>) {
        self.effects.push_back(Effect::Done { cmd, result });
    }

    fn note_info(&mut self, s: impl Into<String>) {
        self.effects.push_back(Effect::Log(Note::info(s)));
    }

    fn note_warn(&mut self, s: impl Into<String>) {
        self.effects.push_back(Effect::Log(Note::warn(s)));
    }

    fn note_error(&mut self, s: impl Into<String>) {
        self.effects.push_back(Effect::Log(Note::error(s)));
    }
}
