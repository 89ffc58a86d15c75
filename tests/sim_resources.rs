//! Deterministic simulation of the group engine against a fake world of resources.
//!
//! Each schedule (reproducible from its seed) starts with some resources already
//! running (as after a daemon restart), then injects start failures, stop failures
//! and hangs (timeouts), crashes noticed by monitors, target changes and operator
//! cleanups. After every step:
//! - one operation at a time; none at all while the group is blocked;
//! - start/promote of a resource only when every resource below it is up;
//!   stop/demote only when every resource above it is stopped;
//! - the engine never believes a resource stopped while it really runs (a failed
//!   or timed-out stop is never ignored);
//! - a resource found running by the probe is adopted, not started again;
//! - once faults stop, the group settles where the target says (or stays blocked
//!   until cleanup, or leaves the node when banned).

mod common;

use std::time::{Duration, Instant};

use common::Rng;
use pairbeat::config::{AgentSpec, Group, OnFail, Op, OpName, Resource};
use pairbeat::resources::{Action, Engine, Event, Outcome, Output, RscState, Severity, Target, STOP_ATTEMPTS};

fn group(rng: &mut Rng) -> Group {
    let n = 2 + rng.below(4) as usize;
    let resources = (0..n)
        .map(|i| {
            let promotable = i == 0 && rng.chance(400);
            let mut ops = vec![Op {
                name: OpName::Monitor,
                interval: Duration::from_secs(5 + rng.below(10)),
                timeout: Some(Duration::from_secs(10)),
                on_fail: [OnFail::Restart, OnFail::Restart, OnFail::Standby, OnFail::Block][rng.below(4) as usize],
                check_level: 0,
            }];
            ops.push(Op {
                name: OpName::Stop,
                interval: Duration::ZERO,
                timeout: Some(Duration::from_secs(20)),
                on_fail: OnFail::Block,
                check_level: 0,
            });
            Resource {
                id: format!("r{i}"),
                agent: AgentSpec::Ocf {
                    provider: "test".into(),
                    kind: "fake".into(),
                },
                params: Default::default(),
                args: vec![],
                promotable,
                migration_threshold: if rng.chance(500) {
                    Some(1 + rng.below(3) as u32)
                } else {
                    None
                },
                failure_timeout: if rng.chance(300) {
                    Some(Duration::from_secs(60))
                } else {
                    None
                },
                ops,
            }
        })
        .collect();
    Group {
        id: "g".into(),
        resources,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct World {
    running: bool,
    promoted: bool,
}

fn run(seed: u64) -> (u64, u64) {
    let mut rng = Rng(seed);
    let g = group(&mut rng);
    let n = g.resources.len();
    let t0 = Instant::now();
    let mut world: Vec<World> = (0..n)
        .map(|_| World {
            running: rng.chance(300),
            promoted: false,
        })
        .collect();
    let initially_running: Vec<bool> = world.iter().map(|w| w.running).collect();
    let mut engine = Engine::new(&g);
    let mut now = Duration::ZERO;
    let horizon = Duration::from_secs(600);
    let faults_until = Duration::from_secs(400);
    let (start_fail, stop_fail, hang) = (rng.below(150), rng.below(100), rng.below(50));
    let mut pending: Option<(Duration, u64, Outcome)> = None;
    let mut pending_rsc: Option<usize> = None;
    let mut blocked = false;
    let mut banned = false;
    let mut starts = vec![0u32; n];
    let mut adopted_check = initially_running.clone();
    let mut settled = 0u64;
    let mut target = Target::Active;
    let mut next_op = Duration::from_secs(20 + rng.below(60));
    let mut outs = engine.set_target(target);

    loop {
        // Apply outputs.
        for o in std::mem::take(&mut outs) {
            match o {
                Output::Run(req) => {
                    assert!(pending.is_none(), "seed {seed}: two operations at once");
                    assert!(!blocked, "seed {seed}: {req:?} while blocked");
                    let i = req.rsc;
                    let views: Vec<RscState> = (0..n).map(|j| engine.view(j).state).collect();
                    match req.action {
                        Action::Start | Action::Promote => {
                            assert!(
                                (0..i).all(|j| matches!(views[j], RscState::Started | RscState::Promoted)),
                                "seed {seed}: {:?} of r{i} with {views:?}",
                                req.action
                            );
                        }
                        Action::Stop | Action::Demote => {
                            assert!(
                                (i + 1..n).all(|j| views[j] == RscState::Stopped),
                                "seed {seed}: {:?} of r{i} with {views:?}",
                                req.action
                            );
                        }
                        _ => {}
                    }
                    if std::env::var_os("SIM_VERBOSE").is_some() {
                        println!("{now:?} run {:?} r{i}", req.action);
                    }
                    if req.action == Action::Start {
                        starts[i] += 1;
                        assert!(
                            !adopted_check[i],
                            "seed {seed}: r{i} was running at the probe but was started again"
                        );
                    }
                    // The fake agent.
                    let faulty = now < faults_until;
                    let w = &mut world[i];
                    let took = Duration::from_millis(1 + rng.below(2000));
                    let (outcome, took) = match req.action {
                        Action::Probe | Action::Monitor { .. } => {
                            let o = match (w.running, w.promoted) {
                                (false, _) => Outcome::NotRunning,
                                (true, true) => Outcome::RunningPromoted,
                                (true, false) => Outcome::Success,
                            };
                            (o, took)
                        }
                        Action::Start if faulty && rng.chance(start_fail) => {
                            // A failed start may leave it half-running.
                            w.running = rng.chance(500);
                            (Outcome::Error(Severity::Soft, 1), took)
                        }
                        Action::Start => {
                            w.running = true;
                            (Outcome::Success, took)
                        }
                        Action::Stop if faulty && rng.chance(hang) => (Outcome::TimedOut, req.timeout),
                        Action::Stop if faulty && rng.chance(stop_fail) => (Outcome::Error(Severity::Soft, 1), took),
                        Action::Stop => {
                            *w = World {
                                running: false,
                                promoted: false,
                            };
                            (Outcome::Success, took)
                        }
                        Action::Promote => {
                            w.promoted = true;
                            (Outcome::Success, took)
                        }
                        Action::Demote => {
                            w.promoted = false;
                            (Outcome::Success, took)
                        }
                    };
                    pending = Some((now + took, req.id, outcome));
                    pending_rsc = Some(i);
                }
                Output::Event(e)
                    if std::env::var_os("SIM_VERBOSE").is_some() && {
                        println!("{now:?} {e:?}");
                        false
                    } => {}
                Output::Event(Event::Blocked { .. }) => blocked = true,
                Output::Event(Event::LeaveNode { .. }) => banned = true,
                Output::Event(Event::Settled { .. }) => settled += 1,
                Output::Event(Event::Changed { rsc, to, .. }) => {
                    if matches!(to, RscState::Stopped | RscState::Failed | RscState::Blocked) {
                        adopted_check[rsc] = false;
                    }
                }
                Output::Event(_) => {}
            }
        }
        // Safety: never believed stopped while running (the fake world changes when an
        // operation is issued; the engine learns at its result).
        for (i, w) in world.iter().enumerate() {
            if w.running && (pending.is_none() || pending_rsc != Some(i)) {
                assert_ne!(
                    engine.view(i).state,
                    RscState::Stopped,
                    "seed {seed}: r{i} runs but the engine thinks it stopped"
                );
            }
        }
        if now >= horizon {
            break;
        }
        // Next event.
        let mut next = next_op.min(horizon);
        if let Some((at, _, _)) = pending {
            next = next.min(at);
        }
        if let Some(d) = engine.next_deadline() {
            next = next.min(d.saturating_duration_since(t0).max(now));
        }
        now = next;
        if let Some((at, id, outcome)) = pending {
            if at <= now {
                pending = None;
                outs.extend(engine.on_result(t0 + now, id, outcome, None));
                continue;
            }
        }
        if engine.next_deadline().is_some_and(|d| d <= t0 + now) {
            outs.extend(engine.on_timeout(t0 + now));
            continue;
        }
        if now >= next_op {
            next_op = now + Duration::from_secs(10 + rng.below(60));
            if now < faults_until {
                match rng.below(6) {
                    0 | 1 => {
                        // A crash, found by the next monitor.
                        let i = rng.below(n as u64) as usize;
                        world[i] = World {
                            running: false,
                            promoted: false,
                        };
                    }
                    2 => {
                        target = [Target::Active, Target::Passive, Target::Stopped][rng.below(3) as usize];
                        outs.extend(engine.set_target(target));
                    }
                    _ => {}
                }
            } else if blocked || banned {
                // The operator looks into it, fixes what hung, and cleans up.
                blocked = false;
                banned = false;
                target = Target::Active;
                outs.extend(engine.set_target(target));
                outs.extend(engine.cleanup(t0 + now, None));
            } else if target != Target::Active {
                target = Target::Active;
                outs.extend(engine.set_target(target));
            }
        }
    }
    // Liveness: faults ended at 400 s; by 600 s the group runs, promotables promoted.
    assert!(!blocked && !banned, "seed {seed}: still blocked/banned at the end");
    for (i, r) in g.resources.iter().enumerate() {
        let want = if r.promotable {
            RscState::Promoted
        } else {
            RscState::Started
        };
        assert_eq!(engine.view(i).state, want, "seed {seed}: r{i} did not settle");
        assert!(world[i].running, "seed {seed}: r{i} is not really running");
    }
    (settled, starts.iter().map(|&s| s as u64).sum())
}

#[test]
fn random_schedules_keep_order_safety_and_liveness() {
    let schedules = std::env::var("SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000u64);
    let first = std::env::var("SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0u64);
    let mut starts = 0;
    for seed in first..first + schedules {
        starts += run(seed).1;
    }
    assert!(starts > schedules, "the simulation barely started anything ({starts})");
    println!("{schedules} schedules, {starts} starts; stop attempts before blocking: {STOP_ATTEMPTS}");
}
