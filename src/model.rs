//! The shared vocabulary of the pure cores: what a node holds and advertises, its
//! mode, the group's target, the split-brain policy and verdicts, fencing state and
//! liveness timing. A leaf module: it depends on nothing else in the crate, so that
//! config, policy, resources, membership and role can all speak it without a cycle
//! between them (`scripts/module-graph` checks that).

use std::time::Duration;

/// Liveness timing, with Heartbeat's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Interval between keepalives.
    pub keepalive: Duration,
    /// A keepalive later than this is logged as late.
    pub warntime: Duration,
    /// Silence this long on every link makes the peer dead.
    pub deadtime: Duration,
    /// Deadtime used at start-up, before the peer was ever heard.
    pub initdead: Duration,
}

impl Timing {
    /// Heartbeat's initdead default (config.c): deadtime if over 10 s, 12 s under 6 s, else twice deadtime.
    pub fn default_initdead(deadtime: Duration) -> Duration {
        if deadtime > Duration::from_secs(10) {
            deadtime
        } else if deadtime < Duration::from_secs(6) {
            Duration::from_secs(12)
        } else {
            deadtime * 2
        }
    }
}

/// What this node should do with the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing runs here.
    Stopped,
    /// Standby node: promotable resources run unpromoted (e.g. a replicated disk's
    /// secondary), everything else is stopped.
    Passive,
    /// Active node: everything runs, promotables promoted.
    Active,
}

/// What a node holds, as it advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Nothing of the group runs there (promotables may run unpromoted).
    Stopped,
    /// Only leftovers: resources failed or not probed yet, none up. They must be
    /// stopped before the peer may start the group, but they do not claim it.
    Leftovers,
    /// Some of the group is up (starting, started or stopping).
    Running,
    /// A stop failed: the group is there and unmanaged until cleanup or fencing.
    Blocked,
}

/// A node's eligibility, as it advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Online,
    /// `pairbeat standby`: hand the group to the peer.
    Standby,
    /// Shutting down (SIGTERM): hand the group over, then exit.
    Leaving,
    /// Failures make the group ineligible here until cleanup.
    Banned,
}

/// What ends a split brain once the nodes hear each other again and both run the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBrainPolicy {
    /// The preferred node keeps the group; the other stops it.
    KeepPreferred,
    /// The node that has run the group longer keeps it (near-ties: the preferred node).
    KeepRunningLongest,
    /// The node that became the owner last keeps it (higher ownership epoch): its
    /// clients were the last to write. Equal epochs: the preferred node.
    KeepLastWriter,
    /// Both stop and wait for `pairbeat resolve --keep NODE`.
    StopBoth,
}

impl SplitBrainPolicy {
    pub const ALL: [SplitBrainPolicy; 4] = [
        SplitBrainPolicy::KeepPreferred,
        SplitBrainPolicy::KeepRunningLongest,
        SplitBrainPolicy::KeepLastWriter,
        SplitBrainPolicy::StopBoth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SplitBrainPolicy::KeepPreferred => "keep-preferred",
            SplitBrainPolicy::KeepRunningLongest => "keep-running-longest",
            SplitBrainPolicy::KeepLastWriter => "keep-last-writer",
            SplitBrainPolicy::StopBoth => "stop-both",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// A node's verdict on a split brain, advertised so both act on one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// This node keeps the group (advertised once it re-asserted its resources).
    Keep,
    /// This node stops the group once the peer says `Keep`.
    Yield,
    /// stop-both: this node stops and waits for the operator.
    Stop,
}

/// What each node tells the other in its keepalives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    pub holding: Holding,
    pub mode: Mode,
    /// `pairbeat takeover`: asks the peer to yield the group.
    pub takeover: bool,
    /// The group is settled where the node wants it (no operation pending).
    pub settled: bool,
    /// Tie-break targets this node reaches; `None` without a `[tiebreak]`.
    pub reach: Option<u32>,
    /// Ownership epoch: raised past both nodes' epochs each time a node starts the
    /// group, persisted, so the last owner is known after a partition.
    pub epoch: u64,
    /// The verdict while both run the group, once it may be acted on: `Keep` after
    /// the keeper re-asserted, `Yield` once this node holds its monitors.
    pub heal: Option<Verdict>,
    /// The verdict this node has chosen for the split brain in progress, said at
    /// once (before `heal`), so that two nodes that both chose to keep, or both to
    /// yield, see it and let the preferred node keep the group.
    pub verdict: Option<Verdict>,
    /// A stop-both split brain waits for the operator here.
    pub awaiting_operator: bool,
    /// `pairbeat resolve --keep` ran here: `Some(true)` the sender keeps the group,
    /// `Some(false)` the receiver does. Repeated until the peer stops waiting.
    pub resolve_sender_keeps: Option<bool>,
    /// This node wants to start the group while the peer is alive, and starts only
    /// once the peer has seen the claim (so two nodes made eligible at the same
    /// instant cannot both start: both claim, the preferred one wins).
    pub claim: bool,
    /// This node has seen the peer's current claim.
    pub claim_seen: bool,
    /// The promotion gate: `None` without a replica in the group; else the lowest
    /// promotion score of the group's replicas here, 0 when the data is not
    /// eligible (see [`DataGate`]).
    pub data: Option<u32>,
    /// The keeper this node recorded for its latest data split brain, said so that
    /// the peer adopts it instead of choosing afresh on a view that has changed
    /// since (found by the cluster simulation: a node recorded that it keeps its
    /// data and crashed; the peer, seeing neither run the group when it came back,
    /// chose itself by keep-preferred, and both kept).
    pub data_choice: Option<DataChoice>,
}

/// A data split brain's keeper, as one node recorded it (see [`Advert::data_choice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChoice {
    /// [`data_key`] of the split brain: the same on both nodes.
    pub key: u64,
    /// The sender keeps its data (else the receiver keeps its own).
    pub sender_keeps: bool,
}

/// A data split brain's name that both nodes compute alike: FNV-1a over the
/// replica and the two generation tuples in sorted order (each node sees them
/// with its own first). Stable across builds and versions, as it goes on the wire.
pub fn data_key(replica: &str, a: &str, b: &str) -> u64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [replica, lo, hi] {
        for byte in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Advert {
    /// A plain advert (no tie-break, epoch 0, no split brain), for tests and start-up.
    pub fn new(holding: Holding, mode: Mode) -> Self {
        Advert {
            holding,
            mode,
            takeover: false,
            settled: true,
            reach: None,
            epoch: 0,
            heal: None,
            verdict: None,
            awaiting_operator: false,
            resolve_sender_keeps: None,
            claim: false,
            claim_seen: false,
            data: None,
            data_choice: None,
        }
    }
}

/// What this node's replicated data allows: the promotion gate. Computed from the
/// replicas the group runs (their promotion scores, linbit's scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataGate {
    /// No replica in the group: nothing to gate.
    #[default]
    Open,
    /// Up to date: eligible, with the promotion score (10000 the peer's replica is
    /// known — connected, or outdated —, 1000 it is not).
    Score(u32),
    /// Consistent (after a reboot, not connected since): eligible only once the
    /// peer is fenced; a connection to the peer's replica settles it otherwise.
    IfPeerFenced,
    /// Outdated, Inconsistent, a split brain pending, a failed Primary, or a
    /// replica daemon that does not answer: never eligible.
    Closed,
}

impl DataGate {
    /// As the advert carries it: none without a gate, 0 not eligible (as such).
    pub fn advert(self) -> Option<u32> {
        match self {
            DataGate::Open => None,
            DataGate::Score(n) => Some(n),
            DataGate::IfPeerFenced | DataGate::Closed => Some(0),
        }
    }

    /// The gate of several replicas: the weakest one decides.
    pub fn and(self, other: DataGate) -> DataGate {
        use DataGate::*;
        match (self, other) {
            (Closed, _) | (_, Closed) => Closed,
            (IfPeerFenced, _) | (_, IfPeerFenced) => IfPeerFenced,
            (Score(a), Score(b)) => Score(a.min(b)),
            (Open, g) | (g, Open) => g,
        }
    }
}
/// A replica of the group found its data and the peer's diverged (a split brain
/// at the data level): what its daemon says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSplitBrain {
    pub replica: String,
    /// Both sides' generations, DRBD's notation.
    pub local_generations: String,
    pub peer_generations: String,
    /// The decision table's rule that found it.
    pub rule: u8,
    /// Bytes each side wrote alone.
    pub local_bytes: u64,
    pub peer_bytes: u64,
}

/// What a data-level split brain asks of this node's replica, once the policy chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataAction {
    /// The keeper: connect again, keeping this node's data.
    Keep(String),
    /// The loser: give up this node's data (its replica saves it aside first),
    /// connect, and resync from the keeper.
    Discard(String),
}

/// Where fencing the peer stands (reset when the peer is heard from again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FenceState {
    #[default]
    NotFenced,
    InProgress,
    /// The device confirmed the peer is off.
    Fenced,
    /// The last attempt failed; another follows after the retry interval.
    Failed,
}

/// A line for the log from a pure core; the shell writes it (the cores never call
/// the logger themselves, so the simulation sees the same lines the daemon logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: log::Level,
    pub text: String,
}

impl Note {
    pub fn info(text: impl Into<String>) -> Self {
        Note {
            level: log::Level::Info,
            text: text.into(),
        }
    }

    pub fn warn(text: impl Into<String>) -> Self {
        Note {
            level: log::Level::Warn,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Note {
            level: log::Level::Error,
            text: text.into(),
        }
    }

    pub fn debug(text: impl Into<String>) -> Self {
        Note {
            level: log::Level::Debug,
            text: text.into(),
        }
    }
}

/// State to write to the state dir (the shell does it durably, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// `standby`: present while in standby.
    Standby(bool),
    /// `epoch`: the ownership epoch.
    Epoch(u64),
    /// `split-brains.json`.
    SplitBrainLog(String),
    /// `peer`: the peer's generation and newest sequence number, so packets recorded
    /// before then are refused even after a restart.
    PeerFloor { generation: u64, seq: u64 },
}
