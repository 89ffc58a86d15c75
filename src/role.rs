//! This node's part in the pair: its operator mode (standby; leaving, on SIGTERM; a
//! pending takeover request), what it advertises to the peer, and the policy
//! decision that sets the group's target. Re-evaluated after every event; a changed
//! advert goes out at once, and each decision is logged once with its reason.
//!
//! It also keeps the split-brain side of things: the ownership epoch, the state of
//! fencing the peer, the heal handshake (the keeper re-asserts its resources before
//! it says `Keep`), and the split-brain log.
//!
//! Pure like the other cores: time comes in as arguments, and what must survive a
//! restart (standby, epoch, the log) goes out as `Persist` actions for the shell to
//! write. The cluster simulation drives two of these against each other.

use std::time::{Duration, Instant};

use crate::membership::{Membership, Output, PeerLiveness};
use crate::policy::{
    self, Advert, Decision, FenceState, Holding, Local, Mode, Peer, PeerView, SplitBrainPolicy, Verdict,
};
use crate::resources::{Engine, Target};
use crate::split_brain::{self, Side};

/// How long the keeper waits, after the yielding peer went quiet, before it
/// re-asserts. Linux ignores an ARP update within `locktime` (1 s by default) of the
/// previous one, and the peer's last announcements may still be on their way
/// (IPaddr2 sends its ARPs in the background, `arp_interval` 200 ms apart).
pub const REASSERT_AFTER: Duration = Duration::from_millis(1500);

/// How long the keeper waits after its re-assert before it says `Keep`: agents send
/// their announcements in the background, after the monitor returned.
pub const REASSERT_SETTLE: Duration = Duration::from_millis(500);

/// State to write to the state dir (the shell does it durably).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// `standby`: present while in standby.
    Standby(bool),
    /// `epoch`: the ownership epoch.
    Epoch(u64),
    /// `split-brains.json`.
    SplitBrainLog(String),
}

/// What survives a restart, as the shell read it from the state dir.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    pub standby: bool,
    pub epoch: u64,
    pub log: split_brain::Log,
}

/// What the shell must do after a reconsider.
#[derive(Default)]
pub struct Actions {
    /// A keepalive to send at once (the advert changed).
    pub send: Option<Output>,
    /// The group's new target here.
    pub target: Option<Target>,
    /// Run the fencing device against the peer now.
    pub fence: bool,
    /// Re-assert the group's resources (monitor each at once).
    pub reassert: bool,
    /// Hold monitors: this node is about to yield the group.
    pub quiet: bool,
    pub persist: Vec<Persist>,
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
    pub standby: bool,
    pub leaving: bool,
    pub takeover: bool,
    advert: Option<Advert>,
    decision: Option<Decision>,
    /// Ownership epoch, persisted.
    epoch: u64,
    /// Tie-break targets reachable now (None: no tie-break).
    pub reach: Option<u32>,
    pub fence: FenceState,
    /// After a failed fence: the next attempt.
    fence_retry_at: Option<Instant>,
    /// The last fence attempt, in words, for status.
    pub fence_last: Option<String>,
    /// When to re-assert: a while after the yielding peer went quiet.
    reassert_at: Option<Instant>,
    /// Reassert asked for / done since this split brain began.
    reassert_asked: bool,
    reasserted: bool,
    /// When the re-assert's monitors finished.
    reasserted_at: Option<Instant>,
    log: split_brain::Log,
    /// The node that keeps the group in the split brain in progress.
    keeper: Option<usize>,
    /// `pairbeat resolve` ran here: advertised until the peer stops waiting.
    resolve_sender_keeps: Option<bool>,
    peer_liveness: PeerLiveness,
    peer_lost_at: Option<u64>,
    running_since: Option<Instant>,
}

impl Role {
    pub fn new(config: &crate::config::Config, saved: Saved) -> Self {
        let Saved { standby, epoch, log } = saved;
        if standby {
            log::info!("this node is in standby (set before the restart; `pairbeat online` ends it)");
        }
        if log.awaiting_operator() {
            log::warn!("a split brain (policy stop-both) still waits for the operator: `pairbeat resolve --keep NODE`");
        }
        Role {
            me: config.local,
            nodes: config.nodes.clone(),
            preferred: config.failover.preferred,
            auto_failback: config.failover.auto_failback,
            policy: config.split_brain,
            fencing: config.fence.is_some(),
            fence_retry: config.fence.as_ref().map_or(Duration::from_secs(10), |f| f.retry),
            tolerance_ms: config.timing.keepalive.as_millis() as u64,
            epoch,
            pending: Vec::new(),
            standby,
            leaving: false,
            takeover: false,
            advert: None,
            decision: None,
            reach: config.tiebreak.as_ref().map(|_| 0),
            fence: FenceState::NotFenced,
            fence_retry_at: None,
            fence_last: None,
            reassert_at: None,
            reassert_asked: false,
            reasserted: false,
            reasserted_at: None,
            log,
            keeper: None,
            resolve_sender_keeps: None,
            peer_liveness: PeerLiveness::Unknown,
            peer_lost_at: None,
            running_since: None,
        }
    }

    /// Standby survives restarts: an operator who took a node out expects it to stay out.
    pub fn set_standby(&mut self, on: bool) {
        self.standby = on;
        self.takeover = false;
        self.pending.push(Persist::Standby(on));
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
        if ok {
            log::warn!("fenced {peer} ({detail})");
            self.fence = FenceState::Fenced;
            self.fence_last = Some(format!("{peer} fenced ({detail})"));
        } else {
            log::error!(
                "fencing {peer} FAILED ({detail}); retrying in {}",
                crate::config::format_duration(self.fence_retry)
            );
            self.fence = FenceState::Failed;
            self.fence_retry_at = Some(now + self.fence_retry);
            self.fence_last = Some(format!("fencing {peer} FAILED ({detail})"));
        }
    }

    /// When the role next has something to do by itself (a fence retry, a re-assert).
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.fence_retry_at,
            self.reassert_at.filter(|_| !self.reassert_asked),
            self.reasserted_at
                .filter(|_| !self.reasserted)
                .map(|t| t + REASSERT_SETTLE),
        ]
        .into_iter()
        .flatten()
        .min()
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
        log::warn!("split brain resolved by the operator: {keep} runs the group");
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
    pub fn reconsider(&mut self, core: &mut Membership, engine: &Engine, now: Instant, wall_secs: u64) -> Actions {
        let mut act = Actions::default();
        if self.takeover
            && engine.holding() == Holding::Running
            && engine.is_settled()
            && engine.target() == Some(Target::Active)
        {
            self.takeover = false;
        }
        // The peer's comings and goings: fencing is per absence, and a lost peer dates a split brain.
        let liveness = core.peer();
        if liveness != self.peer_liveness {
            if liveness == PeerLiveness::Dead {
                self.peer_lost_at = Some(wall_secs);
            }
            if liveness == PeerLiveness::Up {
                self.fence = FenceState::NotFenced;
                self.fence_retry_at = None;
            }
            self.peer_liveness = liveness;
        }
        let peer_advert = core.peer_advert().filter(|_| liveness != PeerLiveness::Unknown);
        // An operator's resolve on the peer ends our wait too.
        if let Some(a) = peer_advert.filter(|_| liveness == PeerLiveness::Up) {
            if let Some(sender_keeps) = a.resolve_sender_keeps {
                if self.log.awaiting_operator() {
                    let keep = if sender_keeps { 1 - self.me } else { self.me };
                    self.log.resolve(&self.nodes[keep].clone());
                    self.save_log();
                    self.takeover = keep == self.me;
                    log::warn!(
                        "split brain resolved by the operator on the peer: {} runs the group",
                        self.nodes[keep]
                    );
                }
            }
            if self.resolve_sender_keeps.is_some() && !a.awaiting_operator {
                self.resolve_sender_keeps = None;
            }
        }
        let holding = engine.holding();
        self.running_since = match holding {
            Holding::Running => self.running_since.or(Some(now)),
            _ => None,
        };
        core.set_running_since(self.running_since);

        if self.fence_retry_at.is_some_and(|t| now >= t) && self.fence == FenceState::Failed {
            self.fence_retry_at = None;
            self.fence = FenceState::NotFenced;
        }
        let mut advert = self.advert(engine, holding);
        let mut decision = None;
        // Decide on facts: not before every resource was probed.
        if engine.probed() {
            let view = PeerView {
                advert: peer_advert,
                ran_ms: core.peer_ran_ms(now),
                late: core.peer_late(),
                fence: self.fence,
            };
            let peer = match liveness {
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
            // The keeper re-asserts before it says Keep, once the yielding peer has
            // gone quiet and stayed so for REASSERT_AFTER (so the keeper's
            // announcements are the last ones, and none falls inside a client's ARP
            // locktime of the peer's last one).
            if d.heal == Some(Verdict::Keep) && !self.reassert_asked {
                if peer_advert.is_some_and(|a| a.heal == Some(Verdict::Yield)) {
                    let at = *self.reassert_at.get_or_insert(now + REASSERT_AFTER);
                    if now >= at {
                        self.reassert_asked = true;
                        act.reassert = true;
                    }
                } else {
                    self.reassert_at = None;
                }
            }
            act.quiet = d.heal == Some(Verdict::Yield);
            if self.reassert_asked && !act.reassert && !engine.reasserting() {
                let done = *self.reasserted_at.get_or_insert(now);
                self.reasserted = now >= done + REASSERT_SETTLE;
            }
            if d.heal.is_none() {
                self.reassert_at = None;
                self.reassert_asked = false;
                self.reasserted = false;
                self.reasserted_at = None;
            }
            // Starting the group afresh: a new ownership epoch, past both nodes'.
            if d.target == Target::Active && engine.target() != Some(Target::Active) && holding != Holding::Running {
                self.epoch = policy::next_epoch(self.epoch, peer_advert.map(|a| a.epoch));
                self.pending.push(Persist::Epoch(self.epoch));
            }
            decision = Some(d);
        }
        advert.epoch = self.epoch;
        advert.awaiting_operator = self.log.awaiting_operator();
        advert.claim = decision.as_ref().is_some_and(|d| d.claim) && holding != Holding::Running;
        advert.claim_seen = peer_advert.is_some_and(|a| a.claim) && liveness == PeerLiveness::Up;
        advert.heal = match decision.as_ref().and_then(|d| d.heal) {
            Some(Verdict::Keep) if !self.reasserted => None,
            // Yield is said once monitors are held and none runs: from then on this
            // node announces nothing.
            Some(Verdict::Yield) if !(engine.is_idle() && act.quiet) => None,
            h => h,
        };
        if self.advert != Some(advert) {
            self.advert = Some(advert);
            core.set_advert(advert);
            act.send = Some(core.send_now(now, wall_secs));
        }
        act.persist = std::mem::take(&mut self.pending);
        let Some(decision) = decision else { return act };
        if self.decision.as_ref() != Some(&decision) {
            let verb = match decision.target {
                Target::Active => "run the group here",
                Target::Passive => "keep the group off this node",
                Target::Stopped => "stop everything here",
            };
            log::info!("decision: {verb}: {}", decision.reason);
            self.decision = Some(decision.clone());
        }
        if engine.target() != Some(decision.target) {
            act.target = Some(decision.target);
        }
        act
    }

    fn advert(&self, engine: &Engine, holding: Holding) -> Advert {
        Advert {
            holding,
            mode: self.mode(engine),
            takeover: self.takeover,
            settled: engine.is_settled(),
            reach: self.reach,
            epoch: self.epoch,
            heal: None,
            awaiting_operator: self.log.awaiting_operator(),
            resolve_sender_keeps: self.resolve_sender_keeps,
            claim: false,
            claim_seen: false,
        }
    }

    /// Opens a split-brain record when both run the group and hear each other, and
    /// closes it when that ends.
    fn track_split_brain(&mut self, d: &Decision, local: &Local, view: PeerView, wall_secs: u64) {
        let peer = 1 - self.me;
        match d.heal {
            Some(v) => {
                if self.log.open().is_none() {
                    log::error!(
                        "SPLIT BRAIN: both {} and {} run the group; policy {} decides",
                        self.nodes[self.me],
                        self.nodes[peer],
                        self.policy.name()
                    );
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
                    log::warn!("split brain over: {outcome}");
                    self.save_log();
                }
            }
        }
    }
}
