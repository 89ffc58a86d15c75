//! This node's part in the pair: its operator mode (standby; leaving, on SIGTERM; a
//! pending takeover request), what it advertises to the peer, and the policy
//! decision that sets the group's target. Re-evaluated after every event; a changed
//! advert goes out at once, and each decision is logged once with its reason.
//!
//! It also keeps the split-brain side of things: the ownership epoch, the state of
//! fencing the peer, the heal handshake (the keeper re-asserts its resources before
//! it says `Keep`), and the split-brain log.
//!
//! Pure like the other cores: time comes in as arguments, what must survive a
//! restart (standby, epoch, the log) goes out as `Persist` actions, and log lines go
//! out as `Note`s. It reads the peer as plain facts (`PeerFacts`) and never reaches
//! into membership: the node (`crate::node`) carries the advert to the wire.

use std::time::{Duration, Instant};

use crate::membership::PeerLiveness;
use crate::model::Note;
use crate::policy::{
    self, Advert, DataGate, Decision, FenceState, Holding, Local, Mode, Peer, PeerView, SplitBrainPolicy, Verdict,
};
use crate::resources::{Engine, Target};
use crate::split_brain::{self, Side};

pub mod heal;

pub use heal::{Heal, REASSERT_AFTER, REASSERT_SETTLE};

pub use crate::model::Persist;

/// What survives a restart, as the shell read it from the state dir.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    pub standby: bool,
    pub epoch: u64,
    pub log: split_brain::Log,
}

/// What the role needs to know of the peer: membership's view, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerFacts {
    pub liveness: PeerLiveness,
    /// Its last advert (a Heartbeat peer sends none).
    pub advert: Option<Advert>,
    /// How long it has run the group, as it last said, aged to now.
    pub ran_ms: Option<u64>,
    /// Up, but silent for warntime on every link.
    pub late: bool,
}

/// The settings the role needs, narrowed from the configuration.
#[derive(Debug, Clone)]
pub struct RoleSettings {
    pub me: usize,
    pub nodes: [String; 2],
    pub preferred: usize,
    pub auto_failback: bool,
    pub policy: SplitBrainPolicy,
    /// A fencing device is configured.
    pub fencing: bool,
    pub fence_retry: Duration,
    /// A tie-break is configured.
    pub tiebreak: bool,
    /// Run times closer than this count as equal (one keepalive).
    pub tolerance: Duration,
}

impl RoleSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        RoleSettings {
            me: config.local,
            nodes: config.nodes.clone(),
            preferred: config.failover.preferred,
            auto_failback: config.failover.auto_failback,
            policy: config.split_brain,
            fencing: config.fence.is_some(),
            fence_retry: config.fence.as_ref().map_or(Duration::from_secs(10), |f| f.retry),
            tiebreak: config.tiebreak.is_some(),
            tolerance: config.timing.keepalive,
        }
    }
}

/// What the node must do after a reconsider.
#[derive(Default)]
pub struct Actions {
    /// The advert changed: send it in a keepalive at once.
    pub advert: Option<Advert>,
    /// Since when the group runs here (`pb_ran`), for every keepalive.
    pub running_since: Option<Instant>,
    /// The group's new target here.
    pub target: Option<Target>,
    /// Run the fencing device against the peer now.
    pub fence: bool,
    /// Re-assert the group's resources (monitor each at once).
    pub reassert: bool,
    /// Hold monitors: this node is about to yield the group.
    pub quiet: bool,
    pub persist: Vec<Persist>,
    pub notes: Vec<Note>,
}

pub struct Role {
    me: usize,
    nodes: [String; 2],
    preferred: usize,
    auto_failback: bool,
    policy: SplitBrainPolicy,
    fencing: bool,
    fence_retry: Duration,
    tolerance_ms: u64,
    /// Written by the commands, collected by the next reconsider.
    pending: Vec<Persist>,
    notes: Vec<Note>,
    standby: bool,
    leaving: bool,
    takeover: bool,
    advert: Option<Advert>,
    decision: Option<Decision>,
    /// Ownership epoch, persisted.
    epoch: u64,
    /// Tie-break targets reachable now (None: no tie-break).
    reach: Option<u32>,
    fence: FenceState,
    /// After a failed fence: the next attempt.
    fence_retry_at: Option<Instant>,
    /// The last fence attempt, in words, for status.
    fence_last: Option<String>,
    /// The keeper's side of the heal handshake.
    heal: Heal,
    log: split_brain::Log,
    /// The node that keeps the group in the split brain in progress.
    keeper: Option<usize>,
    /// `pairbeat resolve` ran here: advertised until the peer stops waiting.
    resolve_sender_keeps: Option<bool>,
    peer_liveness: PeerLiveness,
    peer_lost_at: Option<u64>,
    running_since: Option<Instant>,
    /// What the replicated data here allows (the promotion gate).
    data: DataGate,
}

impl Role {
    pub fn new(settings: RoleSettings, saved: Saved) -> Self {
        let Saved { standby, epoch, log } = saved;
        let mut notes = Vec::new();
        if standby {
            notes.push(Note::info(
                "this node is in standby (set before the restart; `pairbeat online` ends it)",
            ));
        }
        if log.awaiting_operator() {
            notes.push(Note::warn(
                "a split brain (policy stop-both) still waits for the operator: `pairbeat resolve --keep NODE`",
            ));
        }
        Role {
            me: settings.me,
            nodes: settings.nodes,
            preferred: settings.preferred,
            auto_failback: settings.auto_failback,
            policy: settings.policy,
            fencing: settings.fencing,
            fence_retry: settings.fence_retry,
            tolerance_ms: settings.tolerance.as_millis() as u64,
            epoch,
            pending: Vec::new(),
            notes,
            standby,
            leaving: false,
            takeover: false,
            advert: None,
            decision: None,
            reach: settings.tiebreak.then_some(0),
            fence: FenceState::NotFenced,
            fence_retry_at: None,
            fence_last: None,
            heal: Heal::Idle,
            log,
            keeper: None,
            resolve_sender_keeps: None,
            peer_liveness: PeerLiveness::Unknown,
            peer_lost_at: None,
            running_since: None,
            data: DataGate::Open,
        }
    }

    /// Standby survives restarts: an operator who took a node out expects it to stay out.
    pub fn set_standby(&mut self, on: bool) {
        self.standby = on;
        self.takeover = false;
        self.pending.push(Persist::Standby(on));
    }

    /// Shutting down (SIGTERM): hand the group over, then exit.
    pub fn leave(&mut self) {
        self.leaving = true;
    }

    pub fn leaving(&self) -> bool {
        self.leaving
    }

    /// `pairbeat takeover`: ask the peer to yield the group.
    pub fn request_takeover(&mut self) -> Result<(), String> {
        if self.standby {
            return Err("this node is in standby; run `pairbeat online` first".to_string());
        }
        self.takeover = true;
        Ok(())
    }

    /// What the replicated data here allows now; whether that changed.
    pub fn set_data(&mut self, gate: DataGate) -> bool {
        std::mem::replace(&mut self.data, gate) != gate
    }

    pub fn data(&self) -> DataGate {
        self.data
    }

    /// Tie-break targets reachable now.
    pub fn set_reach(&mut self, n: u32) {
        self.reach = Some(n);
    }

    pub fn reach(&self) -> Option<u32> {
        self.reach
    }

    /// Fencing of the peer in this absence.
    pub fn fence_state(&self) -> FenceState {
        self.fence
    }

    /// The outdate relay's peer did not confirm its replica is outdated: fence it
    /// (once per absence, like the role's own fencing). Whether to run the device now.
    pub fn fence_for_data(&mut self) -> bool {
        if self.fencing && self.fence == FenceState::NotFenced {
            self.fence = FenceState::InProgress;
            return true;
        }
        false
    }

    /// The last fence attempt, in words.
    pub fn fence_last(&self) -> Option<&str> {
        self.fence_last.as_deref()
    }

    pub fn mode(&self, engine: &Engine) -> Mode {
        if self.leaving {
            Mode::Leaving
        } else if self.standby {
            Mode::Standby
        } else if engine.banned().is_some() {
            Mode::Banned
        } else {
            Mode::Online
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn awaiting_operator(&self) -> bool {
        self.log.awaiting_operator()
    }

    pub fn split_brains(&self) -> Vec<split_brain::Record> {
        self.log.unacknowledged()
    }

    /// The last decision's reason, for status.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    fn save_log(&mut self) {
        self.pending.push(Persist::SplitBrainLog(self.log.to_json()));
    }

    /// The result of fencing the peer.
    pub fn fence_done(&mut self, ok: bool, detail: &str, now: Instant) {
        let peer = &self.nodes[1 - self.me];
        if self.fence != FenceState::InProgress {
            // The peer was heard again while the device worked (that reset the
            // fencing state): the answer belongs to an absence that is over, and
            // must not stand for the next one.
            self.notes.push(Note::warn(format!(
                "fencing {peer} answered ({detail}) after {peer} was heard again: ignored"
            )));
            return;
        }
        if ok {
            self.notes.push(Note::warn(format!("fenced {peer} ({detail})")));
            self.fence = FenceState::Fenced;
            self.fence_last = Some(format!("{peer} fenced ({detail})"));
        } else {
            self.notes.push(Note::error(format!(
                "fencing {peer} FAILED ({detail}); retrying in {}",
                crate::config::format_duration(self.fence_retry)
            )));
            self.fence = FenceState::Failed;
            self.fence_retry_at = Some(now + self.fence_retry);
            self.fence_last = Some(format!("fencing {peer} FAILED ({detail})"));
        }
    }

    /// When the role next has something to do by itself (a fence retry, a re-assert).
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.fence_retry_at, self.heal.deadline()].into_iter().flatten().min()
    }

    /// `pairbeat resolve --keep NODE`.
    pub fn resolve(&mut self, keep: &str, peer_waits: bool) -> Result<String, String> {
        let Some(k) = self.nodes.iter().position(|n| n == keep) else {
            return Err(format!(
                "`{keep}` is not a node: write {} or {}",
                self.nodes[0], self.nodes[1]
            ));
        };
        if !self.log.awaiting_operator() && !peer_waits {
            return Err("no split brain waits for the operator (only policy stop-both waits)".to_string());
        }
        self.log.resolve(keep);
        self.save_log();
        self.resolve_sender_keeps = Some(k == self.me);
        self.takeover = k == self.me;
        self.notes.push(Note::warn(format!(
            "split brain resolved by the operator: {keep} runs the group"
        )));
        Ok(format!("{keep} runs the group; the other node keeps it stopped"))
    }

    /// `pairbeat acknowledge`.
    pub fn acknowledge(&mut self) -> Result<String, String> {
        let n = self.log.acknowledge();
        if self.log.awaiting_operator() {
            return Err("a split brain still waits for `pairbeat resolve --keep NODE`".to_string());
        }
        self.save_log();
        Ok(format!("{n} split brain record(s) acknowledged"))
    }

    /// Recomputes advert and decision; says what the shell must do.
    pub fn reconsider(&mut self, facts: PeerFacts, engine: &Engine, now: Instant, wall_secs: u64) -> Actions {
        let mut act = Actions::default();
        if self.takeover
            && engine.holding() == Holding::Running
            && engine.is_settled()
            && engine.target() == Some(Target::Active)
        {
            self.takeover = false;
        }
        let liveness = facts.liveness;
        self.track_peer(liveness, wall_secs);
        let peer_advert = facts.advert.filter(|_| liveness != PeerLiveness::Unknown);
        if let Some(a) = peer_advert.filter(|_| liveness == PeerLiveness::Up) {
            self.take_peers_resolve(&a);
        }
        let holding = engine.holding();
        self.running_since = match holding {
            Holding::Running => self.running_since.or(Some(now)),
            _ => None,
        };
        act.running_since = self.running_since;

        if self.fence_retry_at.is_some_and(|t| now >= t) && self.fence == FenceState::Failed {
            self.fence_retry_at = None;
            self.fence = FenceState::NotFenced;
        }
        let mut advert = self.fresh_advert(engine, holding);
        // Decide on facts: not before every resource was probed.
        let decision = engine
            .probed()
            .then(|| self.decide(&facts, peer_advert, advert, engine, now, wall_secs, &mut act));
        self.complete_advert(&mut advert, decision.as_ref(), peer_advert, liveness, engine, act.quiet);
        if self.advert != Some(advert) {
            self.advert = Some(advert);
            act.advert = Some(advert);
        }
        act.persist = std::mem::take(&mut self.pending);
        if let Some(decision) = decision {
            self.adopt(decision, engine, &mut act);
        }
        act.notes = std::mem::take(&mut self.notes);
        act
    }

    /// The peer's comings and goings: fencing is per absence, and a lost peer dates
    /// a split brain.
    fn track_peer(&mut self, liveness: PeerLiveness, wall_secs: u64) {
        if liveness == self.peer_liveness {
            return;
        }
        if liveness == PeerLiveness::Dead {
            self.peer_lost_at = Some(wall_secs);
        }
        if liveness == PeerLiveness::Up {
            self.fence = FenceState::NotFenced;
            self.fence_retry_at = None;
        }
        self.peer_liveness = liveness;
    }

    /// An operator's resolve on the peer ends our wait too.
    fn take_peers_resolve(&mut self, a: &Advert) {
        if let Some(sender_keeps) = a.resolve_sender_keeps {
            if self.log.awaiting_operator() {
                let keep = if sender_keeps { 1 - self.me } else { self.me };
                self.log.resolve(&self.nodes[keep].clone());
                self.save_log();
                self.takeover = keep == self.me;
                self.notes.push(Note::warn(format!(
                    "split brain resolved by the operator on the peer: {} runs the group",
                    self.nodes[keep]
                )));
            }
        }
        if self.resolve_sender_keeps.is_some() && !a.awaiting_operator {
            self.resolve_sender_keeps = None;
        }
    }

    /// The policy's decision on this turn's facts, and what it sets in motion here:
    /// the split-brain record, a fence call, the heal handshake, a new epoch.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        facts: &PeerFacts,
        peer_advert: Option<Advert>,
        advert: Advert,
        engine: &Engine,
        now: Instant,
        wall_secs: u64,
        act: &mut Actions,
    ) -> Decision {
        let view = PeerView {
            advert: peer_advert,
            ran_ms: facts.ran_ms,
            late: facts.late,
            fence: self.fence,
        };
        let peer = match facts.liveness {
            PeerLiveness::Unknown => Peer::Unknown,
            PeerLiveness::Up => Peer::Alive(view),
            PeerLiveness::Dead => Peer::Dead(view),
        };
        let local = Local {
            me: self.me,
            preferred: self.preferred,
            auto_failback: self.auto_failback,
            advert,
            policy: self.policy,
            fencing: self.fencing,
            ran_ms: self
                .running_since
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            tolerance_ms: self.tolerance_ms,
            latched: self.decision.as_ref().and_then(|d| d.heal),
            data: self.data,
        };
        let mut d = policy::decide(&local, peer);
        if self.leaving {
            // Shutting down: everything stops, promotables included.
            d.target = Target::Stopped;
        }
        self.track_split_brain(&d, &local, view, wall_secs);
        if d.fence_peer && self.fence == FenceState::NotFenced {
            self.fence = FenceState::InProgress;
            act.fence = true;
        }
        // The keeper re-asserts before it says Keep (see `heal`).
        let peer_yields = peer_advert.is_some_and(|a| a.heal == Some(Verdict::Yield));
        let (heal, reassert) = self
            .heal
            .step(now, d.heal == Some(Verdict::Keep), peer_yields, engine.reasserting());
        self.heal = heal;
        act.reassert = reassert;
        act.quiet = d.heal == Some(Verdict::Yield);
        // Starting the group afresh: a new ownership epoch, past both nodes'.
        if d.target == Target::Active && engine.target() != Some(Target::Active) && engine.holding() != Holding::Running
        {
            self.epoch = policy::next_epoch(self.epoch, peer_advert.map(|a| a.epoch));
            self.pending.push(Persist::Epoch(self.epoch));
        }
        d
    }

    /// The advert's fields that depend on this turn's decision.
    fn complete_advert(
        &self,
        advert: &mut Advert,
        decision: Option<&Decision>,
        peer_advert: Option<Advert>,
        liveness: PeerLiveness,
        engine: &Engine,
        quiet: bool,
    ) {
        advert.epoch = self.epoch;
        advert.awaiting_operator = self.log.awaiting_operator();
        advert.claim = decision.is_some_and(|d| d.claim) && engine.holding() != Holding::Running;
        advert.claim_seen = peer_advert.is_some_and(|a| a.claim) && liveness == PeerLiveness::Up;
        advert.verdict = decision.and_then(|d| d.heal);
        advert.heal = match decision.and_then(|d| d.heal) {
            Some(Verdict::Keep) if !self.heal.keeps() => None,
            // Yield is said once monitors are held and none runs: from then on this
            // node announces nothing.
            Some(Verdict::Yield) if !(engine.is_idle() && quiet) => None,
            h => h,
        };
    }

    /// A new decision is logged once; its target goes to the engine when it differs.
    fn adopt(&mut self, decision: Decision, engine: &Engine, act: &mut Actions) {
        if self.decision.as_ref() != Some(&decision) {
            let verb = match decision.target {
                Target::Active => "run the group here",
                Target::Passive => "keep the group off this node",
                Target::Stopped => "stop everything here",
            };
            self.notes
                .push(Note::info(format!("decision: {verb}: {}", decision.reason)));
            self.decision = Some(decision.clone());
        }
        if engine.target() != Some(decision.target) {
            act.target = Some(decision.target);
        }
    }

    fn fresh_advert(&self, engine: &Engine, holding: Holding) -> Advert {
        Advert {
            holding,
            mode: self.mode(engine),
            takeover: self.takeover,
            settled: engine.is_settled(),
            reach: self.reach,
            epoch: self.epoch,
            heal: None,
            verdict: None,
            awaiting_operator: self.log.awaiting_operator(),
            resolve_sender_keeps: self.resolve_sender_keeps,
            claim: false,
            claim_seen: false,
            data: self.data.advert(),
        }
    }

    /// Opens a split-brain record when both run the group and hear each other, and
    /// closes it when that ends.
    fn track_split_brain(&mut self, d: &Decision, local: &Local, view: PeerView, wall_secs: u64) {
        let peer = 1 - self.me;
        match d.heal {
            Some(v) => {
                if self.log.open().is_none() {
                    self.notes.push(Note::error(format!(
                        "SPLIT BRAIN: both {} and {} run the group; policy {} decides",
                        self.nodes[self.me],
                        self.nodes[peer],
                        self.policy.name()
                    )));
                    self.log.begin(
                        wall_secs,
                        self.peer_lost_at,
                        self.policy.name(),
                        Side {
                            node: self.nodes[self.me].clone(),
                            epoch: local.advert.epoch,
                            ran_ms: local.ran_ms,
                        },
                        Side {
                            node: self.nodes[peer].clone(),
                            epoch: view.advert.map_or(0, |a| a.epoch),
                            ran_ms: view.ran_ms,
                        },
                    );
                    self.save_log();
                }
                self.keeper = match v {
                    Verdict::Keep => Some(self.me),
                    Verdict::Yield => Some(peer),
                    Verdict::Stop => None,
                };
            }
            None => {
                if self.log.open().is_some() {
                    let keeper = self.keeper.take().map(|k| self.nodes[k].clone());
                    self.log
                        .end(wall_secs, keeper.as_deref(), self.policy == SplitBrainPolicy::StopBoth);
                    let outcome = self.log.records.last().map(|r| r.outcome.clone()).unwrap_or_default();
                    self.notes.push(Note::warn(format!("split brain over: {outcome}")));
                    self.save_log();
                }
            }
        }
    }
}
