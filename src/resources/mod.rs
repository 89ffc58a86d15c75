//! The resource group engine: what to run, in which order, and what a result means.
//! A pure state machine — no processes, no clock.
//!
//! The engine keeps each resource's state and drives it toward a [`Target`] set by
//! the policy (active node: everything up, promotables promoted; passive node:
//! only promotables up, unpromoted; stopped: nothing). It asks for one operation at
//! a time ([`Output::Run`]), so order is never in doubt: resources start in group
//! order and stop in reverse, nothing starts above a resource that is not up, and
//! a resource that must restart first has everything above it stopped.
//!
//! At construction every resource is probed (a monitor with interval 0), so a
//! restarted daemon adopts what is already running instead of starting it twice.
//! Recurring monitors run at each op's interval. Failures are handled by the op's
//! `on_fail`; `migration_threshold` and `failure_timeout` work as in Pacemaker.
//! A stop that fails or times out is retried, then the group is **blocked**: no
//! further operations until `cleanup`, and the policy must not start it elsewhere
//! unless this node is fenced.

pub mod outcome;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{Group, OnFail, OpName, Resource};
use crate::model::Holding;

pub use crate::model::Target;

pub use outcome::{Outcome, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RscState {
    /// Not probed yet.
    Unknown,
    Stopped,
    Started,
    Promoted,
    /// Failed or in doubt: must be stopped before anything else is done with it.
    Failed,
    /// A stop failed for good (or on_fail = block): left as it is, unmanaged.
    Blocked,
}

impl RscState {
    /// Ordering for "how far up" a resource is.
    fn rank(self) -> u8 {
        match self {
            RscState::Unknown | RscState::Stopped => 0,
            RscState::Started => 1,
            RscState::Promoted => 2,
            RscState::Failed | RscState::Blocked => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Monitor with interval 0, to learn the state.
    Probe,
    Start,
    Stop,
    Monitor {
        interval: Duration,
        check_level: u32,
    },
    Promote,
    Demote,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Probe => "probe",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Monitor { .. } => "monitor",
            Action::Promote => "promote",
            Action::Demote => "demote",
        }
    }

    fn op_name(&self) -> OpName {
        match self {
            Action::Probe | Action::Monitor { .. } => OpName::Monitor,
            Action::Start => OpName::Start,
            Action::Stop => OpName::Stop,
            Action::Promote => OpName::Promote,
            Action::Demote => OpName::Demote,
        }
    }
}

/// An operation for the agent runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub rsc: usize,
    pub action: Action,
    pub timeout: Duration,
    /// A monitor that re-asserts the group after a split brain (a built-in
    /// virtual IP announces itself again).
    pub reassert: bool,
}

/// A failure as status shows it ("failed actions").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub action: &'static str,
    pub outcome: Outcome,
    /// The agent's `ocf-exit-reason:` line, if any.
    pub reason: Option<String>,
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Changed {
        rsc: usize,
        from: RscState,
        to: RscState,
    },
    Failed {
        rsc: usize,
        failure: Failure,
    },
    /// The group must leave this node (on_fail standby, threshold reached, hard error).
    LeaveNode {
        rsc: usize,
        reason: String,
    },
    /// on_fail = fence: this node must be fenced before the peer may take over.
    FenceMe {
        rsc: usize,
        reason: String,
    },
    /// The group is blocked: no further operations until cleanup.
    Blocked {
        rsc: usize,
        reason: String,
    },
    /// Every resource is where the target wants it.
    Settled {
        target: Target,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Run(Request),
    Event(Event),
}

/// Used when neither the config nor the agent's meta-data gives a timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Stop attempts before the group is blocked (Heartbeat retried 10 times; agents
/// that fail a stop twice rarely succeed on the third try, and waiting blocks failover).
pub const STOP_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
struct Monitor {
    interval: Duration,
    check_level: u32,
    due: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Rsc {
    cfg: Resource,
    state: RscState,
    monitors: Vec<Monitor>,
    /// Times of failures that count toward migration_threshold.
    failures: Vec<Instant>,
    stop_attempts: u32,
    last_failure: Option<Failure>,
    /// Timeouts from the agent's meta-data, by op name, when known.
    metadata_timeouts: Vec<(OpName, Duration)>,
}

/// The engine for one group on this node.
pub struct Engine {
    rscs: Vec<Rsc>,
    /// None until the policy has decided: only probes run before that.
    target: Option<Target>,
    inflight: Option<(u64, usize, Action)>,
    next_id: u64,
    due_monitors: VecDeque<(usize, usize)>,
    /// The group may not run here (until cleanup), and why.
    banned: Option<String>,
    blocked: bool,
    settled: bool,
    /// Resources to monitor at once, outside their rhythm (`reassert`).
    reassert: Vec<usize>,
    /// The monitor in flight is a reassert.
    reassert_inflight: bool,
    /// Monitors are held (queued, not run): set on a node about to yield the group
    /// after a split brain, so it does not re-announce what it gives up.
    quiet: bool,
    /// No promotion starts (a promoted resource stays): the data it stands for is
    /// not eligible (the promotion gate is closed). What is above it waits.
    promote_held: bool,
}

/// A resource's state and counters, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RscView {
    pub state: RscState,
    pub fail_count: u32,
    pub last_failure: Option<Failure>,
}

impl Engine {
    /// Starts with every resource to be probed; nothing runs until the target is set.
    pub fn new(group: &Group) -> Self {
        Engine {
            rscs: group
                .resources
                .iter()
                .map(|r| Rsc {
                    cfg: r.clone(),
                    state: RscState::Unknown,
                    monitors: r
                        .ops
                        .iter()
                        .filter(|o| o.name == OpName::Monitor)
                        .map(|o| Monitor {
                            interval: o.interval,
                            check_level: o.check_level,
                            due: None,
                        })
                        .collect(),
                    failures: Vec::new(),
                    stop_attempts: 0,
                    last_failure: None,
                    metadata_timeouts: Vec::new(),
                })
                .collect(),
            target: None,
            inflight: None,
            next_id: 1,
            due_monitors: VecDeque::new(),
            banned: None,
            blocked: false,
            settled: false,
            reassert: Vec::new(),
            reassert_inflight: false,
            quiet: false,
            promote_held: false,
        }
    }

    /// Holds monitors (see `quiet`); starts and stops go on.
    pub fn set_quiet(&mut self, quiet: bool) -> Vec<Output> {
        if self.quiet == quiet {
            return Vec::new();
        }
        self.quiet = quiet;
        self.step()
    }

    /// No operation is running.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_none()
    }

    /// Monitors every resource that is up, at once and in group order. After a split
    /// brain the keeper does this before the peer stops: agents that announce what
    /// they hold on a monitor (IPaddr2 with `arp_count_refresh`) win the clients back
    /// first, so the peer's stop costs them nothing.
    pub fn reassert(&mut self) -> Vec<Output> {
        self.reassert = (0..self.rscs.len())
            .filter(|&i| matches!(self.rscs[i].state, RscState::Started | RscState::Promoted))
            .collect();
        self.step()
    }

    /// A reassert is queued or running.
    pub fn reasserting(&self) -> bool {
        !self.reassert.is_empty() || self.reassert_inflight
    }

    /// Timeouts an agent's meta-data advertises, used when the config gives none.
    pub fn set_metadata_timeouts(&mut self, rsc: usize, timeouts: Vec<(OpName, Duration)>) {
        self.rscs[rsc].metadata_timeouts = timeouts;
    }

    /// The target set by the policy; `None` before the first decision.
    pub fn target(&self) -> Option<Target> {
        self.target
    }

    /// Every resource's state is known (probes done).
    pub fn probed(&self) -> bool {
        self.rscs.iter().all(|r| r.state != RscState::Unknown)
    }

    /// Starts probing before any target is set, so the policy decides on facts.
    pub fn start_probing(&mut self) -> Vec<Output> {
        self.step()
    }

    pub fn view(&self, rsc: usize) -> RscView {
        let r = &self.rscs[rsc];
        RscView {
            state: r.state,
            fail_count: r.failures.len() as u32,
            last_failure: r.last_failure.clone(),
        }
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    pub fn banned(&self) -> Option<&str> {
        self.banned.as_deref()
    }

    /// What this node holds, for the peer: Running when anything of the group is up
    /// (promotables running unpromoted are the passive copy and do not count),
    /// Leftovers when only failed or not-yet-probed resources remain.
    pub fn holding(&self) -> Holding {
        if self.blocked {
            return Holding::Blocked;
        }
        let up = self.rscs.iter().any(|r| match r.state {
            RscState::Started => !r.cfg.promotable,
            RscState::Promoted => true,
            _ => false,
        });
        // A start in flight may already have brought it up: the peer must not start
        // it on the strength of an advert sent while ours was starting.
        let starting = match self.inflight {
            Some((_, i, Action::Start)) => !self.rscs[i].cfg.promotable,
            Some((_, _, Action::Promote)) => true,
            _ => false,
        };
        let up = up || starting;
        let leftovers = self
            .rscs
            .iter()
            .any(|r| matches!(r.state, RscState::Failed | RscState::Unknown));
        if up {
            Holding::Running
        } else if leftovers {
            Holding::Leftovers
        } else {
            Holding::Stopped
        }
    }

    /// Holds (or releases) promotions: while held, no promote starts, and the
    /// resources above a promotable that is not promoted stay stopped.
    pub fn hold_promotion(&mut self, held: bool) -> Vec<Output> {
        if std::mem::replace(&mut self.promote_held, held) == held {
            return Vec::new();
        }
        self.step()
    }

    /// Every promotable resource is promoted (or its promote is in flight): the
    /// data it stands for is in use here. True with none.
    pub fn promotables_promoted(&self) -> bool {
        self.rscs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.cfg.promotable)
            .all(|(i, r)| {
                r.state == RscState::Promoted || matches!(self.inflight, Some((_, j, Action::Promote)) if j == i)
            })
    }

    /// Every resource where the target wants it, and no operation that changes
    /// that (start, stop, promote, demote, probe) running. A periodic monitor does
    /// not unsettle the group: otherwise the advert, and with it the peer's status
    /// ("owner") and auto_failback, would flicker at every monitor.
    pub fn is_settled(&self) -> bool {
        let changing = matches!(self.inflight, Some((_, _, a)) if !matches!(a, Action::Monitor { .. }));
        self.settled && !changing
    }

    /// Every resource is up (started or promoted); false for an empty group.
    pub fn all_up(&self) -> bool {
        !self.rscs.is_empty()
            && self
                .rscs
                .iter()
                .all(|r| matches!(r.state, RscState::Started | RscState::Promoted))
    }

    /// True when nothing of the group runs here, as far as the engine knows.
    pub fn all_stopped(&self) -> bool {
        self.rscs.iter().all(|r| r.state == RscState::Stopped)
    }

    pub fn set_target(&mut self, target: Target) -> Vec<Output> {
        if Some(target) != self.target {
            self.target = Some(target);
            self.settled = false;
        }
        self.step()
    }

    /// Forgets failures (one resource, or all): unblocks, lifts the ban, re-probes what
    /// was blocked, and re-arms monitors a block had stopped (due at once: after an
    /// unmanaged spell, check before trusting).
    pub fn cleanup(&mut self, now: Instant, rsc: Option<usize>) -> Vec<Output> {
        for (i, r) in self.rscs.iter_mut().enumerate() {
            if matches!(r.state, RscState::Started | RscState::Promoted) {
                for m in r.monitors.iter_mut().filter(|m| m.due.is_none()) {
                    m.due = Some(now);
                }
            }
            if rsc.is_some_and(|x| x != i) {
                continue;
            }
            r.failures.clear();
            r.last_failure = None;
            r.stop_attempts = 0;
            if matches!(r.state, RscState::Blocked | RscState::Failed) {
                r.state = RscState::Unknown;
            }
        }
        self.blocked = self.rscs.iter().any(|r| r.state == RscState::Blocked);
        if self.rscs.iter().all(|r| r.failures.is_empty()) {
            self.banned = None;
        }
        self.settled = false;
        self.step()
    }

    /// The earliest instant at which `on_timeout` has work (monitors, failure expiry).
    pub fn next_deadline(&self) -> Option<Instant> {
        let monitors = self.rscs.iter().flat_map(|r| r.monitors.iter().filter_map(|m| m.due));
        let expiries = self
            .rscs
            .iter()
            .filter_map(|r| Some(*r.failures.first()? + r.cfg.failure_timeout?));
        monitors.chain(expiries).min()
    }

    pub fn on_timeout(&mut self, now: Instant) -> Vec<Output> {
        for r in &mut self.rscs {
            if let Some(ft) = r.cfg.failure_timeout {
                r.failures.retain(|t| now.saturating_duration_since(*t) < ft);
            }
        }
        for (i, r) in self.rscs.iter_mut().enumerate() {
            for (j, m) in r.monitors.iter_mut().enumerate() {
                if m.due.is_some_and(|d| d <= now) {
                    m.due = None;
                    self.due_monitors.push_back((i, j));
                }
            }
        }
        self.step()
    }

    /// An operation finished. Results of operations we no longer wait for are ignored.
    pub fn on_result(&mut self, now: Instant, id: u64, outcome: Outcome, reason: Option<String>) -> Vec<Output> {
        let Some((want, i, action)) = self.inflight else {
            return Vec::new();
        };
        if want != id {
            return Vec::new();
        }
        self.inflight = None;
        self.reassert_inflight = false;
        let mut out = Vec::new();
        let before = self.rscs[i].state;
        let failure = |outcome| Failure {
            action: action.name(),
            outcome,
            reason: reason.clone(),
            at: now,
        };
        match action {
            Action::Probe => {
                let state = match outcome {
                    Outcome::Success => RscState::Started,
                    Outcome::RunningPromoted => RscState::Promoted,
                    Outcome::NotRunning => RscState::Stopped,
                    // "Not installed" on a probe means it cannot be running here.
                    o if o == Outcome::not_installed() => RscState::Stopped,
                    _ => {
                        self.rscs[i].last_failure = Some(failure(outcome));
                        RscState::Failed
                    }
                };
                self.set_state(now, i, state, &mut out);
            }
            Action::Start | Action::Promote => match outcome {
                Outcome::Success if action == Action::Start => self.set_state(now, i, RscState::Started, &mut out),
                Outcome::Success => self.set_state(now, i, RscState::Promoted, &mut out),
                _ => {
                    // A start that failed may have left something behind: stop it first.
                    self.set_state(now, i, RscState::Failed, &mut out);
                    self.fail(now, i, action, failure(outcome), &mut out);
                }
            },
            Action::Demote => match outcome {
                Outcome::Success => self.set_state(now, i, RscState::Started, &mut out),
                _ => {
                    self.set_state(now, i, RscState::Failed, &mut out);
                    self.fail(now, i, action, failure(outcome), &mut out);
                }
            },
            Action::Stop => match outcome {
                // OCF requires 0 from a stop of a stopped resource; 7 is read as stopped too.
                Outcome::Success | Outcome::NotRunning => {
                    self.rscs[i].stop_attempts = 0;
                    self.set_state(now, i, RscState::Stopped, &mut out);
                }
                _ => {
                    let fence = self.on_fail(i, action) == OnFail::Fence;
                    let r = &mut self.rscs[i];
                    r.stop_attempts += 1;
                    r.last_failure = Some(failure(outcome));
                    out.push(Output::Event(Event::Failed {
                        rsc: i,
                        failure: failure(outcome),
                    }));
                    if r.stop_attempts >= STOP_ATTEMPTS || fence {
                        let reason = format!("stop of {} failed {} time(s) ({outcome})", r.cfg.id, r.stop_attempts);
                        if fence {
                            out.push(Output::Event(Event::FenceMe {
                                rsc: i,
                                reason: reason.clone(),
                            }));
                        }
                        self.block(now, i, reason, &mut out);
                    }
                    // Otherwise the state stays Failed and the stop is retried.
                }
            },
            // A monitor result for a resource that is no longer up says nothing new.
            Action::Monitor { .. } if !matches!(before, RscState::Started | RscState::Promoted) => {}
            Action::Monitor { interval, .. } => {
                let expected = if before == RscState::Promoted {
                    Outcome::RunningPromoted
                } else {
                    Outcome::Success
                };
                if outcome == expected {
                    self.reschedule(now, i, interval);
                } else {
                    self.set_state(now, i, RscState::Failed, &mut out);
                    self.fail(now, i, action, failure(outcome), &mut out);
                }
            }
        }
        out.extend(self.step());
        out
    }

    /// Records a failure of a non-stop operation and applies its on_fail.
    fn fail(&mut self, now: Instant, i: usize, action: Action, failure: Failure, out: &mut Vec<Output>) {
        let r = &mut self.rscs[i];
        r.failures.push(now);
        r.last_failure = Some(failure.clone());
        out.push(Output::Event(Event::Failed {
            rsc: i,
            failure: failure.clone(),
        }));
        let count = r.failures.len() as u32;
        let id = r.cfg.id.clone();
        // A start that fails once makes the node ineligible (Pacemaker's
        // start-failure-is-fatal), unless migration_threshold allows more tries.
        let threshold = match action {
            Action::Start => r.cfg.migration_threshold.unwrap_or(1),
            _ => r.cfg.migration_threshold.unwrap_or(u32::MAX),
        };
        match (self.on_fail(i, action), failure.outcome) {
            (OnFail::Block, _) => self.block(
                now,
                i,
                format!(
                    "{} of {id} failed ({}); on_fail = block",
                    action.name(),
                    failure.outcome
                ),
                out,
            ),
            (OnFail::Fence, _) => {
                let reason = format!(
                    "{} of {id} failed ({}); on_fail = fence",
                    action.name(),
                    failure.outcome
                );
                out.push(Output::Event(Event::FenceMe {
                    rsc: i,
                    reason: reason.clone(),
                }));
                self.block(now, i, reason, out);
            }
            (OnFail::Standby, _) => self.ban(
                i,
                format!(
                    "{} of {id} failed ({}); on_fail = standby",
                    action.name(),
                    failure.outcome
                ),
                out,
            ),
            (OnFail::Restart, Outcome::Error(Severity::Hard | Severity::Fatal, _)) => self.ban(
                i,
                format!(
                    "{} of {id} failed ({}): it cannot run on this node",
                    action.name(),
                    failure.outcome
                ),
                out,
            ),
            (OnFail::Restart, _) if count >= threshold => self.ban(
                i,
                format!("{id} failed {count} time(s) on this node (threshold {threshold})"),
                out,
            ),
            // Restart: the state is Failed, so `step` stops it and everything above it, then starts again.
            (OnFail::Restart, _) => {}
        }
    }

    fn on_fail(&self, i: usize, action: Action) -> OnFail {
        let name = action.op_name();
        let configured = self.rscs[i].cfg.ops.iter().find(|o| {
            o.name == name
                && match action {
                    Action::Monitor { interval, .. } => o.interval == interval,
                    _ => true,
                }
        });
        match configured {
            Some(op) => op.on_fail,
            None if name == OpName::Stop => OnFail::Block,
            None => OnFail::Restart,
        }
    }

    fn ban(&mut self, i: usize, reason: String, out: &mut Vec<Output>) {
        if self.banned.is_none() {
            self.banned = Some(reason.clone());
            self.settled = false;
            out.push(Output::Event(Event::LeaveNode { rsc: i, reason }));
        }
    }

    fn block(&mut self, now: Instant, i: usize, reason: String, out: &mut Vec<Output>) {
        self.set_state(now, i, RscState::Blocked, out);
        self.blocked = true;
        self.due_monitors.clear();
        self.reassert.clear();
        out.push(Output::Event(Event::Blocked { rsc: i, reason }));
    }

    fn set_state(&mut self, now: Instant, i: usize, to: RscState, out: &mut Vec<Output>) {
        let r = &mut self.rscs[i];
        let from = r.state;
        if from == to {
            return;
        }
        r.state = to;
        out.push(Output::Event(Event::Changed { rsc: i, from, to }));
        // Monitors run while the resource is up, from the moment it came up.
        let up = matches!(to, RscState::Started | RscState::Promoted);
        for m in &mut r.monitors {
            m.due = up.then_some(now + m.interval);
        }
        if !up {
            self.due_monitors.retain(|(r, _)| *r != i);
            self.reassert.retain(|r| *r != i);
        }
    }

    fn reschedule(&mut self, now: Instant, i: usize, interval: Duration) {
        if let Some(m) = self.rscs[i].monitors.iter_mut().find(|m| m.interval == interval) {
            m.due = Some(now + interval);
        }
    }

    /// Where each resource should be, given the target and any ban.
    fn desired(&self, i: usize) -> RscState {
        let promotable = self.rscs[i].cfg.promotable;
        let Some(target) = self.target else {
            return self.rscs[i].state;
        };
        match (target, self.banned.is_some()) {
            (Target::Stopped, _) => RscState::Stopped,
            // Banned: the group leaves, but a promotable may stay as a passive copy.
            (Target::Passive, _) | (Target::Active, true) if promotable => RscState::Started,
            (Target::Passive, _) | (Target::Active, true) => RscState::Stopped,
            (Target::Active, false) if promotable => RscState::Promoted,
            (Target::Active, false) => RscState::Started,
        }
    }

    /// The next operation toward the target, if none is running.
    fn step(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        if self.inflight.is_some() || self.blocked {
            return out;
        }
        if let Some(i) = self.rscs.iter().position(|r| r.state == RscState::Unknown) {
            return self.run(i, Action::Probe, out);
        }
        let Some(target) = self.target else { return out };
        // The lowest resource that must come up (or restart) bounds everything above it.
        let k = (0..self.rscs.len()).find(|&i| {
            let s = self.rscs[i].state;
            s == RscState::Failed || s.rank() < self.desired(i).rank()
        });
        for i in (0..self.rscs.len()).rev() {
            let s = self.rscs[i].state;
            let limit = if k.is_some_and(|k| i > k) {
                RscState::Stopped
            } else {
                self.desired(i)
            };
            if s == RscState::Failed {
                return self.run(i, Action::Stop, out);
            }
            if s.rank() > limit.rank() {
                // A promoted resource is demoted first, then stopped if it must go further.
                let action = if s == RscState::Promoted {
                    Action::Demote
                } else {
                    Action::Stop
                };
                return self.run(i, action, out);
            }
        }
        if let Some(k) = k {
            let action = match (self.rscs[k].state, self.desired(k)) {
                (RscState::Stopped, _) => Action::Start,
                (RscState::Started, RscState::Promoted) => Action::Promote,
                _ => unreachable!("k needs to come up"),
            };
            if action == Action::Promote && self.promote_held {
                // The gate is closed: wait, with everything above still down.
                return out;
            }
            return self.run(k, action, out);
        }
        if !self.settled {
            self.settled = true;
            out.push(Output::Event(Event::Settled { target }));
        }
        if self.quiet {
            return out;
        }
        if !self.reassert.is_empty() {
            let i = self.reassert.remove(0);
            let (interval, check_level) = self.rscs[i]
                .monitors
                .first()
                .map_or((Duration::ZERO, 0), |m| (m.interval, m.check_level));
            self.reassert_inflight = true;
            return self.run(i, Action::Monitor { interval, check_level }, out);
        }
        while let Some((i, j)) = self.due_monitors.pop_front() {
            if matches!(self.rscs[i].state, RscState::Started | RscState::Promoted) {
                let m = &self.rscs[i].monitors[j];
                let action = Action::Monitor {
                    interval: m.interval,
                    check_level: m.check_level,
                };
                return self.run(i, action, out);
            }
        }
        out
    }

    fn run(&mut self, i: usize, action: Action, mut out: Vec<Output>) -> Vec<Output> {
        let id = self.next_id;
        self.next_id += 1;
        self.inflight = Some((id, i, action));
        out.push(Output::Run(Request {
            id,
            rsc: i,
            action,
            timeout: self.timeout(i, action),
            reassert: self.reassert_inflight && matches!(action, Action::Monitor { .. }),
        }));
        out
    }

    /// The config's timeout for this op, else the agent's meta-data, else DEFAULT_TIMEOUT.
    fn timeout(&self, i: usize, action: Action) -> Duration {
        let r = &self.rscs[i];
        let name = action.op_name();
        let configured = r.cfg.ops.iter().filter(|o| o.name == name).find(|o| match action {
            Action::Monitor { interval, .. } => o.interval == interval,
            _ => true,
        });
        configured
            .and_then(|o| o.timeout)
            .or_else(|| r.metadata_timeouts.iter().find(|(n, _)| *n == name).map(|(_, t)| *t))
            .unwrap_or(DEFAULT_TIMEOUT)
    }
}
