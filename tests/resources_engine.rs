//! The group engine's rules, one test each, driven by hand (see sim_resources.rs for
//! the randomised version).

use std::time::{Duration, Instant};

use pairbeat::config::{AgentSpec, Group, OnFail, Op, OpName, Resource};
use pairbeat::resources::{Action, Engine, Event, Outcome, Output, Request, RscState, Severity, Target, STOP_ATTEMPTS};

fn rsc(id: &str, monitor_on_fail: OnFail) -> Resource {
    Resource {
        id: id.into(),
        agent: AgentSpec::Ocf {
            provider: "heartbeat".into(),
            kind: "Dummy".into(),
        },
        params: Default::default(),
        args: vec![],
        promotable: false,
        migration_threshold: None,
        failure_timeout: None,
        ops: vec![Op {
            name: OpName::Monitor,
            interval: Duration::from_secs(10),
            timeout: None,
            on_fail: monitor_on_fail,
            check_level: 0,
        }],
    }
}

fn group(rs: Vec<Resource>) -> Group {
    Group {
        id: "g".into(),
        resources: rs,
    }
}

/// Drives an engine, answering each request from a script.
struct Drive {
    e: Engine,
    t0: Instant,
    now: Duration,
    log: Vec<String>,
    events: Vec<Event>,
    pending: Option<Request>,
}

impl Drive {
    fn new(g: &Group) -> Self {
        Drive {
            e: Engine::new(g),
            t0: Instant::now(),
            now: Duration::ZERO,
            log: vec![],
            events: vec![],
            pending: None,
        }
    }
    fn take(&mut self, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Run(r) => {
                    assert!(self.pending.is_none());
                    self.log.push(format!("{} r{}", r.action.name(), r.rsc));
                    self.pending = Some(r);
                }
                Output::Event(e) => self.events.push(e),
            }
        }
    }
    fn target(&mut self, t: Target) {
        let o = self.e.set_target(t);
        self.take(o);
    }
    /// Answers the pending request with `outcome`.
    fn answer(&mut self, outcome: Outcome) -> Request {
        let r = self.pending.take().expect("no request pending");
        self.now += Duration::from_millis(100);
        let o = self
            .e
            .on_result(self.t0 + self.now, r.id, outcome, Some("because".into()));
        self.take(o);
        r
    }
    /// Answers requests with success (probes: `probe`) until none is pending.
    fn settle(&mut self, probe: Outcome) {
        while let Some(r) = &self.pending {
            let o = match r.action {
                Action::Probe => probe,
                Action::Monitor { .. } | Action::Start | Action::Stop | Action::Demote => Outcome::Success,
                Action::Promote => Outcome::Success,
            };
            self.answer(o);
        }
    }
    fn advance(&mut self, by: Duration) {
        self.now += by;
        let o = self.e.on_timeout(self.t0 + self.now);
        self.take(o);
    }
    fn states(&self, n: usize) -> Vec<RscState> {
        (0..n).map(|i| self.e.view(i).state).collect()
    }
}

#[test]
fn probes_then_starts_in_order_and_stops_in_reverse() {
    let g = group(vec![
        rsc("a", OnFail::Restart),
        rsc("b", OnFail::Restart),
        rsc("c", OnFail::Restart),
    ]);
    let mut d = Drive::new(&g);
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    assert_eq!(
        d.log,
        ["probe r0", "probe r1", "probe r2", "start r0", "start r1", "start r2"]
    );
    assert!(d.events.contains(&Event::Settled { target: Target::Active }));
    d.log.clear();
    d.target(Target::Stopped);
    d.settle(Outcome::NotRunning);
    assert_eq!(d.log, ["stop r2", "stop r1", "stop r0"]);
}

#[test]
fn a_restarted_daemon_adopts_what_runs_and_repairs_order() {
    let g = group(vec![
        rsc("a", OnFail::Restart),
        rsc("b", OnFail::Restart),
        rsc("c", OnFail::Restart),
    ]);
    let mut d = Drive::new(&g);
    d.target(Target::Active);
    // a and b run, c does not: only c starts.
    for o in [Outcome::Success, Outcome::Success, Outcome::NotRunning] {
        d.answer(o);
    }
    d.settle(Outcome::NotRunning);
    assert_eq!(d.log, ["probe r0", "probe r1", "probe r2", "start r2"]);
    // b runs without a under it: b is stopped first, then a and b start in order.
    let mut d = Drive::new(&g);
    d.target(Target::Active);
    for o in [Outcome::NotRunning, Outcome::Success, Outcome::NotRunning] {
        d.answer(o);
    }
    d.settle(Outcome::NotRunning);
    assert_eq!(
        d.log,
        ["probe r0", "probe r1", "probe r2", "stop r1", "start r0", "start r1", "start r2"]
    );
}

#[test]
fn a_failed_monitor_restarts_that_resource_and_everything_above_it() {
    let g = group(vec![
        rsc("a", OnFail::Restart),
        rsc("b", OnFail::Restart),
        rsc("c", OnFail::Restart),
    ]);
    let mut d = Drive::new(&g);
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    d.log.clear();
    d.advance(Duration::from_secs(10));
    // Three monitors are due; b's finds it dead.
    assert_eq!(d.answer(Outcome::Success).rsc, 0);
    assert_eq!(d.answer(Outcome::NotRunning).rsc, 1);
    d.settle(Outcome::NotRunning);
    assert_eq!(
        d.log,
        ["monitor r0", "monitor r1", "stop r2", "stop r1", "start r1", "start r2"]
    );
    assert_eq!(d.e.view(1).fail_count, 1);
    assert_eq!(
        d.e.view(1).last_failure.as_ref().unwrap().reason.as_deref(),
        Some("because")
    );
    assert_eq!(d.states(3), [RscState::Started; 3]);
}

#[test]
fn on_fail_standby_and_threshold_make_the_group_leave_the_node() {
    let g = group(vec![rsc("a", OnFail::Restart), rsc("b", OnFail::Standby)]);
    let mut d = Drive::new(&g);
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    d.advance(Duration::from_secs(10));
    d.answer(Outcome::Success);
    d.answer(Outcome::Error(Severity::Soft, 1));
    d.settle(Outcome::NotRunning);
    assert!(d.events.iter().any(|e| matches!(e, Event::LeaveNode { rsc: 1, .. })));
    assert_eq!(d.states(2), [RscState::Stopped; 2], "the whole group leaves");
    assert!(d.e.banned().unwrap().contains("on_fail = standby"));
    // Cleanup lifts the ban.
    let o = d.e.cleanup(d.t0 + d.now, None);
    d.take(o);
    d.settle(Outcome::NotRunning);
    assert_eq!(d.states(2), [RscState::Started; 2]);

    let mut r = rsc("a", OnFail::Restart);
    r.migration_threshold = Some(2);
    let mut d = Drive::new(&group(vec![r]));
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    for round in 1..=2 {
        d.advance(Duration::from_secs(10));
        d.answer(Outcome::NotRunning);
        d.settle(Outcome::NotRunning);
        assert_eq!(d.e.banned().is_some(), round == 2, "round {round}");
    }
}

#[test]
fn failures_expire_after_failure_timeout() {
    let mut r = rsc("a", OnFail::Restart);
    r.migration_threshold = Some(2);
    r.failure_timeout = Some(Duration::from_secs(60));
    let mut d = Drive::new(&group(vec![r]));
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    d.advance(Duration::from_secs(10));
    d.answer(Outcome::NotRunning);
    d.settle(Outcome::NotRunning);
    assert_eq!(d.e.view(0).fail_count, 1);
    d.advance(Duration::from_secs(61));
    d.settle(Outcome::Success);
    assert_eq!(d.e.view(0).fail_count, 0);
    // A new failure is the first again: no ban.
    d.advance(Duration::from_secs(10));
    d.answer(Outcome::NotRunning);
    d.settle(Outcome::NotRunning);
    assert!(d.e.banned().is_none());
}

#[test]
fn hard_errors_ban_at_once_and_a_failed_start_leaves_the_node() {
    let mut d = Drive::new(&group(vec![rsc("a", OnFail::Restart)]));
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    d.advance(Duration::from_secs(10));
    d.answer(Outcome::Error(Severity::Hard, 5));
    d.settle(Outcome::NotRunning);
    assert!(d.e.banned().unwrap().contains("cannot run on this node"));

    let mut d = Drive::new(&group(vec![rsc("a", OnFail::Restart)]));
    d.target(Target::Active);
    d.answer(Outcome::NotRunning);
    d.answer(Outcome::Error(Severity::Soft, 1)); // start fails
    d.settle(Outcome::NotRunning);
    assert_eq!(
        d.log,
        ["probe r0", "start r0", "stop r0"],
        "stopped after the failed start, not retried here"
    );
    assert!(d.e.banned().is_some());
}

#[test]
fn a_stop_that_keeps_failing_blocks_the_group_and_nothing_else_runs() {
    let mut d = Drive::new(&group(vec![rsc("a", OnFail::Restart), rsc("b", OnFail::Restart)]));
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    d.log.clear();
    d.target(Target::Stopped);
    for _ in 0..STOP_ATTEMPTS {
        d.answer(Outcome::TimedOut);
    }
    assert_eq!(d.log, vec!["stop r1"; STOP_ATTEMPTS as usize]);
    assert!(d.pending.is_none(), "nothing runs once blocked");
    assert!(d.e.is_blocked());
    assert_eq!(
        d.states(2),
        [RscState::Started, RscState::Blocked],
        "a is not stopped under a blocked b"
    );
    assert!(d
        .events
        .iter()
        .any(|e| matches!(e, Event::Blocked { rsc: 1, reason } if reason.contains("timed out"))));
    d.advance(Duration::from_secs(60));
    assert!(d.pending.is_none(), "no monitors while blocked");
    // cleanup re-probes the blocked resource and carries on.
    let o = d.e.cleanup(d.t0 + d.now, None);
    d.take(o);
    d.settle(Outcome::Success);
    assert_eq!(d.states(2), [RscState::Stopped; 2]);
}

#[test]
fn stop_on_fail_fence_asks_for_fencing() {
    let mut r = rsc("a", OnFail::Restart);
    r.ops.push(Op {
        name: OpName::Stop,
        interval: Duration::ZERO,
        timeout: Some(Duration::from_secs(5)),
        on_fail: OnFail::Fence,
        check_level: 0,
    });
    let mut d = Drive::new(&group(vec![r]));
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    d.target(Target::Stopped);
    let req = d.answer(Outcome::Error(Severity::Soft, 1));
    assert_eq!(req.timeout, Duration::from_secs(5), "the configured stop timeout");
    assert!(d.events.iter().any(|e| matches!(e, Event::FenceMe { .. })));
    assert!(d.e.is_blocked());
}

#[test]
fn promotable_runs_on_both_nodes_and_is_promoted_only_on_the_active_one() {
    let mut disk = rsc("disk", OnFail::Restart);
    disk.promotable = true;
    let g = group(vec![disk, rsc("fs", OnFail::Restart)]);
    let mut d = Drive::new(&g);
    d.target(Target::Passive);
    d.settle(Outcome::NotRunning);
    assert_eq!(d.states(2), [RscState::Started, RscState::Stopped]);
    d.log.clear();
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    assert_eq!(d.log, ["promote r0", "start r1"]);
    d.log.clear();
    d.target(Target::Passive);
    d.settle(Outcome::NotRunning);
    assert_eq!(d.log, ["stop r1", "demote r0"], "demoted before the group stops");
    // A monitor of a promoted resource expects 8; a plain 0 is a failure.
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    d.log.clear();
    d.advance(Duration::from_secs(10));
    d.answer(Outcome::RunningPromoted);
    d.answer(Outcome::Success);
    d.settle(Outcome::NotRunning);
    d.log.clear();
    d.advance(Duration::from_secs(10));
    d.answer(Outcome::Success); // disk says "running, not promoted"
    d.settle(Outcome::NotRunning);
    assert_eq!(d.log[..4], ["monitor r0", "stop r1", "stop r0", "start r0"]);
}

/// A closed promotion gate holds promotions in the engine whatever the target:
/// the promotable stays Started, what is above it stays stopped; released, the
/// promotion and the rest follow. A promoted resource is not demoted by a hold.
#[test]
fn a_held_promotion_waits_with_everything_above_it_down_and_a_promoted_one_stays() {
    let mut disk = rsc("disk", OnFail::Restart);
    disk.promotable = true;
    let g = group(vec![disk, rsc("fs", OnFail::Restart)]);
    let mut d = Drive::new(&g);
    let o = d.e.hold_promotion(true);
    d.take(o);
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    assert_eq!(d.states(2), [RscState::Started, RscState::Stopped], "{:?}", d.log);
    assert!(!d.log.iter().any(|l| l.starts_with("promote")), "{:?}", d.log);
    assert!(!d.e.promotables_promoted());
    d.log.clear();
    let o = d.e.hold_promotion(false);
    d.take(o);
    d.settle(Outcome::NotRunning);
    assert_eq!(d.log, ["promote r0", "start r1"]);
    assert!(d.e.promotables_promoted());
    // Held again while promoted: nothing is demoted or stopped.
    d.log.clear();
    let o = d.e.hold_promotion(true);
    d.take(o);
    d.settle(Outcome::NotRunning);
    assert!(d.log.is_empty(), "{:?}", d.log);
    assert_eq!(d.states(2), [RscState::Promoted, RscState::Started]);
}

#[test]
fn reassert_monitors_every_up_resource_and_quiet_holds_monitors_but_not_stops() {
    let g = group(vec![rsc("a", OnFail::Restart), rsc("b", OnFail::Restart)]);
    let mut d = Drive::new(&g);
    d.target(Target::Active);
    d.settle(Outcome::NotRunning);
    d.log.clear();
    // Re-assert: a monitor of each, in group order, reported until done.
    let o = d.e.reassert();
    d.take(o);
    assert!(d.e.reasserting());
    // The request says so (a built-in VIP announces itself again on it).
    assert!(d.pending.as_ref().is_some_and(|r| r.reassert));
    d.settle(Outcome::Success);
    assert_eq!(d.log, ["monitor r0", "monitor r1"]);
    assert!(!d.e.reasserting());
    // Quiet: due monitors wait (a node about to yield announces nothing)…
    // A recurring monitor is not a reassert.
    d.advance(Duration::from_secs(11));
    assert!(d.pending.as_ref().is_some_and(|r| !r.reassert), "{:?}", d.pending);
    d.settle(Outcome::Success);
    d.log.clear();
    let o = d.e.set_quiet(true);
    d.take(o);
    d.advance(Duration::from_secs(11));
    assert!(d.log.is_empty(), "{:?}", d.log);
    assert!(d.e.is_idle());
    // …but the stop goes on.
    d.target(Target::Passive);
    d.settle(Outcome::Success);
    assert_eq!(d.log, ["stop r1", "stop r0"]);
}

#[test]
fn a_start_in_flight_counts_as_holding_the_group() {
    let g = group(vec![rsc("a", OnFail::Restart)]);
    let mut d = Drive::new(&g);
    d.target(Target::Active);
    d.answer(Outcome::NotRunning);
    assert_eq!(d.pending.map(|r| r.action), Some(Action::Start));
    // The start may already have brought it up: the peer must not start it too.
    assert_eq!(d.e.holding(), pairbeat::policy::Holding::Running);
}

/// A periodic monitor in flight leaves the group settled (the peer's status and
/// auto_failback read `settled` from the advert; it must not flicker), while a
/// start in flight does not.
#[test]
fn a_monitor_in_flight_leaves_the_group_settled() {
    let g = group(vec![rsc("a", OnFail::Restart)]);
    let mut d = Drive::new(&g);
    d.target(Target::Active);
    d.answer(Outcome::NotRunning);
    assert_eq!(d.pending.as_ref().map(|r| r.action), Some(Action::Start));
    assert!(!d.e.is_settled(), "a start in flight is not settled");
    d.settle(Outcome::NotRunning);
    assert!(d.e.is_settled());
    d.advance(Duration::from_secs(11));
    assert!(
        matches!(d.pending.as_ref().map(|r| r.action), Some(Action::Monitor { .. })),
        "{:?}",
        d.log
    );
    assert!(d.e.is_settled(), "a monitor in flight changes nothing");
}
