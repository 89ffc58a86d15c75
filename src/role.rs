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
use crate::model::{data_key, DataAction, DataChoice, DataSplitBrain, Note};
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
    /// This node was not scheduled for a while and is still reading what its links
    /// hold: the advert it has may be one from before its pause.
    pub catching_up: bool,
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
    /// Fences of the peer that succeeded, ever: an outdate ask is settled only by
    /// one done after it was asked.
    fences_done: u64,
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
    /// The data split brains acted on: (replica, local generations, peer's).
    data_acted: Vec<(String, String, String)>,
    /// The data split brains this node gave its data up in (told its replica to
    /// discard): while one is still pending, this node does not run the group.
    data_discarded: Vec<(String, String, String)>,
    /// One of those is still pending (as of the last look at the replicas).
    discarding: bool,
    /// Who runs the group, as this node sees it (its own holding, the peer's
    /// advertised one), and since when: a data keeper is chosen only on a view
    /// that has held for `DATA_VIEW_STABLE`.
    data_view: Option<(Holding, Holding, Instant)>,
}

/// How long the view of who runs the group must hold before a data split brain's
/// keeper is chosen on it: a few keepalives, so that both nodes see the same.
pub const DATA_VIEW_STABLE: Duration = Duration::from_millis(500);

/// What a data split brain asks of the node this turn.
#[derive(Default)]
pub struct DataHeal {
    pub actions: Vec<DataAction>,
    pub persist: Vec<Persist>,
    pub notes: Vec<Note>,
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
            fences_done: 0,
            heal: Heal::Idle,
            log,
            keeper: None,
            resolve_sender_keeps: None,
            peer_liveness: PeerLiveness::Unknown,
            peer_lost_at: None,
            running_since: None,
            data: DataGate::Open,
            data_acted: Vec::new(),
            data_discarded: Vec::new(),
            discarding: false,
            data_view: None,
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

    /// A fencing device is configured.
    pub fn fencing(&self) -> bool {
        self.fencing
    }

    /// The outdate relay's peer did not confirm its replica is outdated: fence it.
    /// Also when it was fenced already in this absence: that fence says nothing of
    /// what the peer did since (it may have rebooted, its replica connected again,
    /// with its heartbeats still lost), and the data asks now. Whether to run the
    /// device now (not while it already runs).
    pub fn fence_for_data(&mut self) -> bool {
        if self.fencing && self.fence != FenceState::InProgress {
            self.fence = FenceState::InProgress;
            self.fence_retry_at = None;
            return true;
        }
        false
    }

    /// Fences of the peer that succeeded so far.
    pub fn fences_done(&self) -> u64 {
        self.fences_done
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
            self.fences_done += 1;
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
            promoted: engine.promotables_promoted(),
        };
        let mut d = policy::decide(&local, peer);
        if self.leaving {
            // Shutting down: everything stops, promotables included.
            d.target = Target::Stopped;
        } else if self.discarding && d.target == Target::Active {
            // This node's data is being given up for the peer's (a data split
            // brain it lost): it may not run the group on it, even where the peer
            // cannot (found by the cluster simulation: after `resolve --keep b`, a
            // node whose stop had hung ran the group on the data it was to discard).
            d.target = Target::Passive;
            d.reason = policy::Reason::DataNotUpToDate;
        } else if facts.catching_up && d.target == Target::Active && engine.target() != Some(Target::Active) {
            // Back from a pause, the adverts that arrived meanwhile are read the
            // oldest first: the first may say the peer was leaving, the next that
            // it has since restarted and taken the group over. Nothing is started
            // on them until they are all read (found by the cluster simulation, seed
            // 51310: paused 5 s, a node started the group on the peer's "leaving"
            // from before its pause; the peer had rebooted and run it since).
            d = policy::Decision {
                target: Target::Passive,
                reason: policy::Reason::CatchingUp,
                fence_peer: false,
                heal: None,
                claim: false,
            };
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
            data_choice: self.log.latest_data_choice().map(|(d, kept)| DataChoice {
                key: data_key(&d.replica, &d.local_generations, &d.peer_generations),
                sender_keeps: kept == self.nodes[self.me],
            }),
        }
    }

    /// This node was not scheduled for a while: a view of the peer that seemed to
    /// hold across the gap was not watched, and the adverts that arrived meanwhile
    /// are read one by one now, the oldest first. A data keeper is chosen only on
    /// a view that holds again from here (found by the cluster simulation, seed
    /// 10495: paused 5 s, a node chose to keep its data on the peer's advert from
    /// before the pause, "stopped", in the first turn after it; the peer ran the
    /// group by then and, adopting that choice, gave its data up as the group's keeper).
    pub fn stalled(&mut self) {
        self.data_view = None;
    }

    /// The replicas' data split brains, by `[split_brain] policy`, with the same
    /// inputs both nodes see, so that both choose the same keeper:
    /// - one node runs the group and the other not: the one that runs it keeps its
    ///   data (after a group-level split brain, the loser stopped first: the keeper
    ///   never stops);
    /// - both run it, or a group-level heal is under way on either side: nothing
    ///   yet, the group's heal goes first (to its end: under stop-both both stop);
    /// - neither (both rebooted, or the replicas met after both stopped):
    ///   keep-preferred the preferred node; keep-last-writer the higher ownership
    ///   epoch (equal: the preferred node); keep-running-longest has no run time
    ///   left to compare and falls back to keep-preferred, saying so; stop-both
    ///   records it and waits for `pairbeat resolve --keep NODE`.
    ///
    /// The keeper's replica connects again keeping its data; the loser's gives its
    /// data up (saved aside by its daemon first) and resyncs from the keeper. Each
    /// split brain (replica and both generation tuples) is acted on once, and goes
    /// into the split-brain log with both tuples, the rule and the bytes discarded.
    pub fn data_split_brains(
        &mut self,
        pending: &[DataSplitBrain],
        holding: Holding,
        peer: Option<Advert>,
        now: Instant,
        wall_secs: u64,
    ) -> DataHeal {
        let mut out = DataHeal::default();
        let key_of = |sb: &DataSplitBrain| {
            (
                sb.replica.clone(),
                sb.local_generations.clone(),
                sb.peer_generations.clone(),
            )
        };
        self.discarding = pending.iter().any(|sb| self.data_discarded.contains(&key_of(sb)));
        let Some(p) = peer else {
            self.data_view = None;
            return out;
        };
        // The view both nodes decide on must have settled: a holding that changed
        // a moment ago may not have reached the peer's view yet (found by the
        // cluster simulation: one node saw the other start the group, the other
        // saw it still stopped, and both kept their data).
        let view = (holding, p.holding);
        let stable = match self.data_view {
            Some((h, ph, since)) if (h, ph) == view => now.saturating_duration_since(since) >= DATA_VIEW_STABLE,
            _ => {
                self.data_view = Some((view.0, view.1, now));
                false
            }
        };
        if !stable {
            return out;
        }
        let peer_idx = 1 - self.me;
        for sb in pending {
            let key = (
                sb.replica.clone(),
                sb.local_generations.clone(),
                sb.peer_generations.clone(),
            );
            if self.data_acted.contains(&key) {
                continue;
            }
            // A group-level heal goes first, to its end: while a node yields or
            // stops, who holds the group is changing, and under stop-both each
            // node, seeing the other still stopping, would take it for the keeper
            // and both discard. (The keeper, `Keep`, goes on running: it keeps.)
            let leaving = |v: Option<Verdict>| matches!(v, Some(Verdict::Yield | Verdict::Stop));
            if leaving(p.heal) || leaving(self.decision.as_ref().and_then(|d| d.heal)) {
                continue;
            }
            // Leftovers (resources unprobed, as after a daemon restart, or failed)
            // may or may not run: wait until the probes say (found by the cluster
            // simulation: a restarted daemon, still probing, was taken for a node
            // that does not run the group; the peer kept its data, and so, once its
            // probes found the group running, did it).
            if holding == Holding::Leftovers || p.holding == Holding::Leftovers {
                continue;
            }
            let (i_hold, peer_holds) = (holding != Holding::Stopped, p.holding != Holding::Stopped);
            let by_preference = self.preferred;
            // A stop-both split brain of the group that waits for the operator (on
            // either side) holds the data's too: the operator's choice keeps, not
            // who seems to run the group in the turn the wait began (found by the
            // cluster simulation: a node that had just stopped still counted as
            // running, kept its data, and its peer later kept its own on resolve).
            let waiting = self.log.awaiting_operator() || p.awaiting_operator;
            let logged = self
                .log
                .data_keeper(&sb.replica, &sb.local_generations, &sb.peer_generations);
            // The peer's recorded choice for this very split brain, from its advert.
            let peers_choice = p
                .data_choice
                .filter(|c| c.key == data_key(&sb.replica, &sb.local_generations, &sb.peer_generations))
                .map(|c| if c.sender_keeps { peer_idx } else { self.me });
            // A choice already recorded (the operator's, or this node's earlier)
            // stands, whoever seems to run the group now: both nodes read the same.
            // One the peer recorded and this node has not made yet is adopted: the
            // peer may have chosen on a view that is gone (it ran the group, then
            // crashed), and two choices on two views could both keep.
            let keeper = if let Some(Some(k)) = &logged {
                let mine = self.nodes.iter().position(|n| n == k);
                if peers_choice.is_some_and(|p| Some(p) != mine) && !self.data_acted.contains(&key) {
                    // Both recorded, differently: each keeps its own record (the
                    // replicas then wait, both keeping, and say so); never both discard.
                    out.notes.push(Note::error(format!(
                        "replica {}: {} recorded a different keeper for this split brain than this node did ({}); the replicas wait: `pairbeat replica discard-my-data {}` on the node whose data is to go",
                        sb.replica, self.nodes[peer_idx], k, sb.replica
                    )));
                }
                mine
            } else if let (None, Some(k)) = (&logged, peers_choice) {
                out.notes.push(Note::info(format!(
                    "replica {}: {} recorded that {} keeps the data of this split brain; adopting its choice",
                    sb.replica, self.nodes[peer_idx], self.nodes[k]
                )));
                Some(k)
            } else if waiting || (self.policy == SplitBrainPolicy::StopBoth && !i_hold && !peer_holds) {
                match logged {
                    Some(_) => continue, // waiting for the operator
                    None => None,        // record it, then wait
                }
            } else {
                match (i_hold, peer_holds) {
                    (true, true) => continue,
                    (true, false) => Some(self.me),
                    (false, true) => Some(peer_idx),
                    (false, false) => match self.policy {
                        SplitBrainPolicy::KeepPreferred => Some(by_preference),
                        SplitBrainPolicy::KeepRunningLongest => {
                            out.notes.push(Note::warn(format!(
                                "replica {}: neither node runs the group, so there is no run time to compare: keep-running-longest keeps the preferred node's data",
                                sb.replica
                            )));
                            Some(by_preference)
                        }
                        SplitBrainPolicy::KeepLastWriter => Some(match self.epoch.cmp(&p.epoch) {
                            std::cmp::Ordering::Greater => self.me,
                            std::cmp::Ordering::Less => peer_idx,
                            std::cmp::Ordering::Equal => by_preference,
                        }),
                        // Taken above (the operator's choice); kept for the match.
                        SplitBrainPolicy::StopBoth => None,
                    },
                }
            };
            let kept = keeper.map(|k| self.nodes[k].clone());
            let discarded = keeper.map(|k| if k == self.me { sb.peer_bytes } else { sb.local_bytes });
            // Recorded once (a resolve fills in the keeper of a stop-both record).
            if self
                .log
                .data_keeper(&sb.replica, &sb.local_generations, &sb.peer_generations)
                .is_none()
            {
                let side = |node: &str, epoch| split_brain::Side {
                    node: node.to_string(),
                    epoch,
                    ran_ms: None,
                };
                self.log.data(
                    wall_secs,
                    self.policy.name(),
                    side(&self.nodes[self.me], self.epoch),
                    side(&self.nodes[peer_idx], p.epoch),
                    split_brain::DataRecord {
                        replica: sb.replica.clone(),
                        rule: sb.rule,
                        local_generations: sb.local_generations.clone(),
                        peer_generations: sb.peer_generations.clone(),
                        local_bytes: sb.local_bytes,
                        peer_bytes: sb.peer_bytes,
                        kept: kept.clone(),
                        discarded_bytes: discarded,
                    },
                );
                out.persist.push(Persist::SplitBrainLog(self.log.to_json()));
            }
            let Some(k) = keeper else {
                out.notes.push(Note::error(format!(
                    "SPLIT BRAIN in replica {}: both nodes wrote while apart (rule {}); policy stop-both waits for `pairbeat resolve --keep NODE`",
                    sb.replica, sb.rule
                )));
                continue;
            };
            self.data_acted.push(key);
            if k == self.me {
                out.notes.push(Note::warn(format!(
                    "SPLIT BRAIN in replica {}: both nodes wrote while apart (rule {}); policy {} keeps this node's data; the peer's {} bytes are discarded after being saved aside",
                    sb.replica, sb.rule, self.policy.name(), sb.peer_bytes
                )));
                out.actions.push(DataAction::Keep(sb.replica.clone()));
            } else {
                out.notes.push(Note::warn(format!(
                    "SPLIT BRAIN in replica {}: both nodes wrote while apart (rule {}); policy {} keeps {}'s data; this node's {} bytes are saved aside, then discarded",
                    sb.replica, sb.rule, self.policy.name(), self.nodes[k], sb.local_bytes
                )));
                out.actions.push(DataAction::Discard(sb.replica.clone()));
                self.data_discarded.push(key_of(sb));
                self.discarding = true;
            }
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn role(me: usize, policy: SplitBrainPolicy, epoch: u64) -> Role {
        let settings = RoleSettings {
            me,
            nodes: ["alpha".into(), "bravo".into()],
            preferred: 0,
            auto_failback: false,
            policy,
            fencing: false,
            fence_retry: Duration::from_secs(10),
            tiebreak: false,
            tolerance: Duration::from_millis(100),
        };
        Role::new(
            settings,
            Saved {
                epoch,
                ..Saved::default()
            },
        )
    }

    fn diverged() -> Vec<DataSplitBrain> {
        vec![DataSplitBrain {
            replica: "r0".into(),
            local_generations: "A:0:0:0".into(),
            peer_generations: "B:0:0:0".into(),
            rule: 100,
            local_bytes: 3 << 20,
            peer_bytes: 1 << 20,
        }]
    }

    fn peer(holding: Holding, epoch: u64) -> Option<Advert> {
        Some(Advert {
            epoch,
            ..Advert::new(holding, Mode::Online)
        })
    }

    /// The data split brains on a view of who runs the group that has held for
    /// `DATA_VIEW_STABLE` (asked once, then again that much later).
    fn settled(r: &mut Role, holding: Holding, peer: Option<Advert>, wall: u64) -> DataHeal {
        let t0 = Instant::now();
        let first = r.data_split_brains(&diverged(), holding, peer, t0, wall);
        assert!(first.actions.is_empty(), "decided on a view that had not held");
        r.data_split_brains(&diverged(), holding, peer, t0 + DATA_VIEW_STABLE, wall)
    }

    #[test]
    fn the_node_that_runs_the_group_keeps_its_data_and_acts_once() {
        let mut r = role(1, SplitBrainPolicy::KeepPreferred, 2);
        let heal = settled(&mut r, Holding::Running, peer(Holding::Stopped, 1), 100);
        assert_eq!(heal.actions, vec![DataAction::Keep("r0".into())]);
        assert_eq!(heal.persist.len(), 1, "recorded");
        let d = &r.log.records[0].data[0];
        assert_eq!((d.kept.as_deref(), d.discarded_bytes), (Some("bravo"), Some(1 << 20)));
        let again = settled(&mut r, Holding::Running, peer(Holding::Stopped, 1), 101);
        assert!(again.actions.is_empty() && again.persist.is_empty(), "once");
        // While both run the group, the group's heal goes first.
        let mut r = role(0, SplitBrainPolicy::KeepPreferred, 2);
        let heal = settled(&mut r, Holding::Running, peer(Holding::Running, 1), 100);
        assert!(heal.actions.is_empty());
        // Without the peer's advert (dead, or not a pairbeat node), nothing.
        assert!(settled(&mut r, Holding::Stopped, None, 100).actions.is_empty());
    }

    #[test]
    fn with_neither_running_the_policy_picks_the_same_keeper_on_both_nodes() {
        let cases = [
            (SplitBrainPolicy::KeepPreferred, (5, 9), 0),
            (SplitBrainPolicy::KeepRunningLongest, (5, 9), 0),
            (SplitBrainPolicy::KeepLastWriter, (5, 9), 1),
            (SplitBrainPolicy::KeepLastWriter, (9, 5), 0),
            (SplitBrainPolicy::KeepLastWriter, (7, 7), 0),
        ];
        for (policy, (e0, e1), keeper) in cases {
            let mut a = role(0, policy, e0);
            let mut b = role(1, policy, e1);
            let ha = settled(&mut a, Holding::Stopped, peer(Holding::Stopped, e1), 100);
            let hb = settled(&mut b, Holding::Stopped, peer(Holding::Stopped, e0), 100);
            let expect = |me: usize| {
                if me == keeper {
                    DataAction::Keep("r0".into())
                } else {
                    DataAction::Discard("r0".into())
                }
            };
            assert_eq!(ha.actions, vec![expect(0)], "{policy:?} {e0}/{e1}");
            assert_eq!(hb.actions, vec![expect(1)], "{policy:?} {e0}/{e1}");
        }
    }

    #[test]
    fn stop_both_waits_for_the_operator_then_acts_on_the_choice() {
        let mut r = role(0, SplitBrainPolicy::StopBoth, 3);
        let heal = settled(&mut r, Holding::Stopped, peer(Holding::Stopped, 3), 100);
        assert!(heal.actions.is_empty());
        assert!(r.awaiting_operator(), "the group stays stopped on both until resolve");
        assert!(heal.notes.iter().any(|n| n.text.contains("pairbeat resolve")));
        let later = settled(&mut r, Holding::Stopped, peer(Holding::Stopped, 3), 200);
        assert!(later.actions.is_empty() && later.persist.is_empty(), "recorded once");
        r.resolve("bravo", false).unwrap();
        let heal = settled(&mut r, Holding::Stopped, peer(Holding::Stopped, 3), 300);
        assert_eq!(heal.actions, vec![DataAction::Discard("r0".into())]);
    }

    /// Found by the cluster simulation (seed 4712): bravo ran the group, recorded
    /// that it keeps its data, and crashed before alpha chose; back, it runs
    /// nothing, and alpha, seeing neither run the group, would choose itself by
    /// keep-preferred: both keep, and the replicas wait forever. bravo's advert
    /// carries its recorded choice, and alpha adopts it.
    #[test]
    fn a_choice_the_peer_recorded_is_adopted_not_chosen_afresh() {
        let mut b = role(1, SplitBrainPolicy::KeepPreferred, 2);
        let heal = settled(&mut b, Holding::Running, peer(Holding::Stopped, 1), 100);
        assert_eq!(heal.actions, vec![DataAction::Keep("r0".into())]);
        let (d, kept) = b.log.latest_data_choice().expect("recorded");
        assert_eq!(kept, "bravo");
        let choice = DataChoice {
            key: data_key(&d.replica, &d.local_generations, &d.peer_generations),
            sender_keeps: true,
        };
        // alpha sees the split brain with the tuples the other way round.
        let mut alpha_view = diverged();
        let sb = &mut alpha_view[0];
        std::mem::swap(&mut sb.local_generations, &mut sb.peer_generations);
        let mut a = role(0, SplitBrainPolicy::KeepPreferred, 1);
        let bravo = Some(Advert {
            data_choice: Some(choice),
            ..peer(Holding::Stopped, 2).unwrap()
        });
        let t0 = Instant::now();
        let _ = a.data_split_brains(&alpha_view, Holding::Stopped, bravo, t0, 200);
        let heal = a.data_split_brains(&alpha_view, Holding::Stopped, bravo, t0 + DATA_VIEW_STABLE, 200);
        assert_eq!(heal.actions, vec![DataAction::Discard("r0".into())]);
        assert!(heal.notes.iter().any(|n| n.text.contains("adopting")));
        // A choice for another split brain (other generations) is not this one's.
        let mut a = role(0, SplitBrainPolicy::KeepPreferred, 1);
        let other = Some(Advert {
            data_choice: Some(DataChoice {
                key: data_key("r0", "C:0:0:0", "B:0:0:0"),
                sender_keeps: true,
            }),
            ..peer(Holding::Stopped, 2).unwrap()
        });
        let _ = a.data_split_brains(&alpha_view, Holding::Stopped, other, t0, 200);
        let heal = a.data_split_brains(&alpha_view, Holding::Stopped, other, t0 + DATA_VIEW_STABLE, 200);
        assert_eq!(heal.actions, vec![DataAction::Keep("r0".into())], "keep-preferred");
        // Both recorded, differently: each keeps its own record (never both
        // discard) and says so.
        let mut a = role(0, SplitBrainPolicy::KeepPreferred, 1);
        let _ = a.data_split_brains(&alpha_view, Holding::Running, peer(Holding::Stopped, 2), t0, 200);
        let heal = a.data_split_brains(
            &alpha_view,
            Holding::Running,
            peer(Holding::Stopped, 2),
            t0 + DATA_VIEW_STABLE,
            200,
        );
        assert_eq!(heal.actions, vec![DataAction::Keep("r0".into())]);
        // Restarted with that record, it meets bravo's opposite one.
        let mut again = role(0, SplitBrainPolicy::KeepPreferred, 1);
        again.log = a.log.clone();
        let t1 = t0 + DATA_VIEW_STABLE * 3;
        let _ = again.data_split_brains(&alpha_view, Holding::Stopped, bravo, t1, 300);
        let heal = again.data_split_brains(&alpha_view, Holding::Stopped, bravo, t1 + DATA_VIEW_STABLE, 300);
        assert_eq!(
            heal.actions,
            vec![DataAction::Keep("r0".into())],
            "its own record stands"
        );
        assert!(
            heal.notes
                .iter()
                .any(|n| n.text.contains("recorded a different keeper")),
            "{:?}",
            heal.notes
        );
    }

    /// Found by the cluster simulation (seed 1397): under stop-both both nodes stop
    /// the group after a group-level split brain; the one that stopped first still
    /// saw the other's advert say "running, healing" and took it for the data's
    /// keeper — and so did the other: both discarded. A heal under way on either
    /// side now waits.
    #[test]
    fn no_data_keeper_is_chosen_while_a_group_heal_is_under_way() {
        for policy in SplitBrainPolicy::ALL {
            let mut r = role(0, policy, 3);
            let stopping = Some(Advert {
                heal: Some(Verdict::Stop),
                epoch: 3,
                ..Advert::new(Holding::Running, Mode::Online)
            });
            let heal = settled(&mut r, Holding::Stopped, stopping, 100);
            assert!(
                heal.actions.is_empty() && heal.persist.is_empty(),
                "{policy:?}: {:?}",
                heal.actions
            );
        }
    }
}
