//! Deterministic simulation of two membership engines over a hostile network.
//!
//! One test thread, a virtual clock, two links with loss, delay, duplication and
//! partitions; node B crashes and restarts (a new generation each time); an
//! adversary replays packets it captured at A and injects forged ones; A's wall
//! clock jumps. Thousands of schedules, each reproducible from its seed
//! (`SIM_SEED=n cargo test --test sim_membership -- one_seed` replays one).
//!
//! Checked against A's view of B, after every step:
//! - never dead early: B is declared dead only after deadtime (initdead before it
//!   was first heard) without a genuine new keepalive on any link;
//! - never dead late: once no genuine keepalive has arrived for deadtime, B is dead
//!   (plus warntime when the adversary is replaying: see Membership's docs);
//! - every restart of B is recognised as a new generation; no replay ever is;
//! - a wall-clock step changes nothing.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::sim::SimNet;
use common::Rng;
use pairbeat::config::{Auth, AuthKey, AuthMethod, Timing};
use pairbeat::membership::{Event, Identity, LivenessEvent, Membership, Output, PeerLiveness};

fn auth(secret: &str) -> Auth {
    let mut keys = BTreeMap::new();
    keys.insert(
        1,
        AuthKey {
            method: AuthMethod::Sha1,
            secret: secret.as_bytes().to_vec(),
        },
    );
    Auth {
        sign_index: 1,
        keys,
        authkeys_file: None,
    }
}

const LINKS: usize = 2;

fn profile(rng: &mut Rng) -> Timing {
    let ms = Duration::from_millis;
    match rng.below(3) {
        0 => Timing {
            keepalive: ms(100),
            warntime: ms(250),
            deadtime: ms(500),
            initdead: ms(2000),
        },
        1 => Timing {
            keepalive: ms(50),
            warntime: ms(150),
            deadtime: ms(250),
            initdead: ms(1000),
        },
        _ => Timing {
            keepalive: ms(1000),
            warntime: ms(2500),
            deadtime: ms(5000),
            initdead: ms(12000),
        },
    }
}

struct Node {
    engine: Option<Membership>,
    generation: u64,
    seq_sent: u64,
    started: Duration,
}

/// What happened to A's view, for comparing runs.
type Trace = Vec<(Duration, String)>;

struct Outcome {
    trace: Trace,
    restarts_seen: u64,
    restarts_done: u64,
}

fn run(seed: u64, wall_step: bool) -> Outcome {
    let mut rng = Rng(seed);
    let timing = profile(&mut rng);
    let t0 = Instant::now();
    let horizon = timing.initdead + timing.deadtime * 20;
    let max_delay = timing.keepalive / 2;
    let loss = [rng.below(200), rng.below(200)]; // per mille, per link
    let dup = rng.below(100);
    let adversary = rng.chance(500);
    let a_start_delay = if rng.chance(300) {
        Duration::from_millis(rng.below(3000))
    } else {
        Duration::ZERO
    };

    let make = |name: &str, peer: &str, generation: u64, now: Duration, floor: Option<(u64, u64)>| {
        let me = Identity {
            node: name.into(),
            uuid: [generation as u8; 16],
            generation,
            nodes: ["a".into(), "b".into()],
        };
        Membership::new(me, peer.into(), auth("s3cret"), timing, LINKS, floor, t0 + now)
    };
    let mut nodes = [
        Node {
            engine: Some(make("a", "b", 100, a_start_delay, None)),
            generation: 100,
            seq_sent: 0,
            started: a_start_delay,
        },
        Node {
            engine: Some(make("b", "a", 200, Duration::ZERO, None)),
            generation: 200,
            seq_sent: 0,
            started: Duration::ZERO,
        },
    ];
    let mut a_floor: Option<(u64, u64)> = None;
    // In µs; the tag is (generation, seq) of a genuine keepalive from B (not a replay).
    let mut net: SimNet<Option<(u64, u64)>> = SimNet::new(LINKS, 0, max_delay.as_micros() as u64 + 1);
    net.dup = Some(dup);
    for (link, loss) in loss.into_iter().enumerate() {
        (0..2).for_each(|from| net.dir_mut(link, from).loss = loss);
    }
    let set_partitioned =
        |net: &mut SimNet<_>, link: usize, cut: bool| (0..2).for_each(|d| net.dir_mut(link, d).up = !cut);
    let mut now = Duration::ZERO;
    let mut trace = Trace::new();
    // (B generation, seq, bytes) of packets captured at A, and when.
    let mut captured: Vec<(u64, u64, Vec<u8>, Duration)> = Vec::new();
    // The spec's bookkeeping: last genuine new keepalive A received, per B generation.
    let mut last_genuine: Option<Duration> = None;
    // Per link: the highest genuine sequence number delivered to A (new news on that link).
    let mut b_high_delivered = [(0u64, 0u64); LINKS];
    let mut restarts_done = 0;
    let mut restarts_seen = 0;
    let mut b_alive = true;
    let mut a_restarted_at: Option<Duration> = None;
    let mut next_op = Duration::from_millis(rng.below(2000));
    let wall = |now: Duration| -> u64 {
        let base = 1_795_000_000 + now.as_secs();
        if wall_step && now > Duration::from_secs(3) {
            base - 3600 // the clock was stepped back an hour
        } else {
            base
        }
    };

    while now < horizon {
        // Next thing to happen: a delivery, a node timer, or a scenario step.
        let mut next = next_op.min(horizon);
        if let Some(at) = net.next_at() {
            next = next.min(Duration::from_micros(at));
        }
        for n in nodes.iter() {
            if let Some(e) = &n.engine {
                next = next.min(e.next_deadline().saturating_duration_since(t0).max(now));
            }
        }
        if nodes[0].engine.is_none() && now < nodes[0].started {
            next = next.min(nodes[0].started);
        }
        now = next;

        // A starts late in some schedules.
        let mut outputs: Vec<(usize, Vec<Output>)> = Vec::new();
        while let Some(f) = net.pop_due(now.as_micros() as u64) {
            if let Some(engine) = nodes[f.to].engine.as_mut() {
                if f.to == 0 {
                    if let Some((g, seq)) = f.tag {
                        if (g, seq) > b_high_delivered[f.link] {
                            b_high_delivered[f.link] = (g, seq);
                            last_genuine = Some(now);
                        }
                        if adversary {
                            captured.push((g, seq, f.bytes.clone(), now));
                        }
                    }
                }
                outputs.push((
                    f.to,
                    engine.on_datagram(t0 + now, 1_795_000_000 + now.as_secs(), f.link, &f.bytes),
                ));
            }
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            if let Some(engine) = node.engine.as_mut() {
                if t0 + now >= engine.next_deadline() {
                    let w = if i == 0 {
                        wall(now)
                    } else {
                        1_795_000_000 + now.as_secs()
                    };
                    outputs.push((i, engine.on_timeout(t0 + now, w)));
                }
            }
        }

        for (from, outs) in outputs {
            for o in outs {
                match o {
                    Output::Broadcast(bytes) => {
                        let genuine = if from == 1 {
                            nodes[1].seq_sent += 1;
                            Some((nodes[1].generation, nodes[1].seq_sent))
                        } else {
                            None
                        };
                        net.send(&mut rng, now.as_micros() as u64, from, &bytes, genuine);
                    }
                    Output::Event(e) if from == 0 => {
                        match &e {
                            Event::Liveness(LivenessEvent::PeerDead { .. }) => {
                                // Never early.
                                let since = last_genuine.unwrap_or(nodes[0].started);
                                let limit = if last_genuine.is_some() {
                                    timing.deadtime
                                } else {
                                    timing.initdead
                                };
                                assert!(
                                    now >= since + limit,
                                    "seed {seed}: B declared dead at {now:?}, only {:?} after the last genuine keepalive ({limit:?} needed)",
                                    now - since
                                );
                            }
                            Event::PeerRestarted { generation, previous } => {
                                // A fresh A's first contact has no previous generation to compare.
                                if previous.is_some() {
                                    restarts_seen += 1;
                                }
                                assert_eq!(
                                    *generation, nodes[1].generation,
                                    "seed {seed}: a restart of an old generation (replay?)"
                                );
                            }
                            _ => {}
                        }
                        if verbose() {
                            println!("{now:>12?} A: {e:?}");
                        }
                        trace.push((now, format!("{e:?}")));
                    }
                    Output::PersistPeer { generation, seq } if from == 0 => a_floor = Some((generation, seq)),
                    _ => {}
                }
            }
        }

        // Never late: no genuine news for deadtime (+ warntime under replay) means dead.
        if let Some(a) = &nodes[0].engine {
            if let Some(last) = last_genuine {
                let slack = if adversary { timing.warntime } else { Duration::ZERO };
                if now > last + timing.deadtime + slack {
                    assert_eq!(
                        a.peer(),
                        PeerLiveness::Dead,
                        "seed {seed}: B silent since {last:?}, still not dead at {now:?}"
                    );
                }
            }
        }

        if now >= next_op && now < horizon {
            next_op = now + Duration::from_millis(200 + rng.below(3000));
            let op = rng.below(10);
            if verbose() {
                println!(
                    "{now:>12?} op {op} (b_alive {b_alive}, link 0 up {}, link 1 up {})",
                    net.dir(0, 0).up,
                    net.dir(1, 0).up
                );
            }
            match op {
                0 | 1 if b_alive => {
                    nodes[1].engine = None;
                    b_alive = false;
                }
                2 | 3 if !b_alive => {
                    nodes[1].generation += 1;
                    nodes[1].seq_sent = 0;
                    nodes[1].engine = Some(make("b", "a", nodes[1].generation, now, None));
                    b_alive = true;
                    restarts_done += 1;
                }
                4 => {
                    let link = rng.below(LINKS as u64) as usize;
                    let cut = net.dir(link, 0).up;
                    set_partitioned(&mut net, link, cut);
                }
                5 => (0..LINKS).for_each(|l| set_partitioned(&mut net, l, false)),
                6 if adversary && !captured.is_empty() => {
                    for _ in 0..1 + rng.below(5) {
                        let (g, seq, pick, at) = captured[rng.below(captured.len() as u64) as usize].clone();
                        // Known gap (see PERSIST_EVERY): packets A saw before its own restart
                        // but after its last persisted floor would be believed again.
                        let in_gap = a_restarted_at.is_some_and(|r| at <= r) && a_floor.is_none_or(|f| (g, seq) > f);
                        if in_gap {
                            continue;
                        }
                        let at = now.as_micros() as u64 + rng.below(1000);
                        let link = rng.below(LINKS as u64) as usize;
                        net.inject(at, 0, link, pick, None);
                    }
                }
                7 => {
                    // Forged: a B-looking packet sealed with the wrong key, and line noise.
                    let mut m = pairbeat::wire::Message::new();
                    m.add_str("t", "status")
                        .add_str("src", "b")
                        .add_str("seq", "ffff")
                        .add_str("hg", "ffff");
                    for bytes in [
                        pairbeat::wire::seal(&m, &auth("guess")),
                        (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
                    ] {
                        net.inject(now.as_micros() as u64, 0, 0, bytes, None);
                    }
                }
                8 if rng.chance(200) => {
                    // A restarts too, remembering B's generation from its state dir.
                    nodes[0].engine = Some(make("a", "b", nodes[0].generation + 1, now, a_floor));
                    nodes[0].generation += 1;
                    nodes[0].started = now;
                    a_restarted_at = Some(now);
                    last_genuine = None;
                    // A fresh A takes as news exactly what is newer than its persisted floor.
                    b_high_delivered = [a_floor.unwrap_or((0, 0)); LINKS];
                    trace.push((now, "A restarted".into()));
                }
                _ => {}
            }
        }
    }
    Outcome {
        trace,
        restarts_seen,
        restarts_done,
    }
}

fn verbose() -> bool {
    std::env::var_os("SIM_VERBOSE").is_some()
}

fn seeds() -> std::ops::Range<u64> {
    let n = std::env::var("SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    0..n
}

#[test]
fn thousands_of_random_schedules_keep_the_liveness_invariants() {
    let mut restarts = (0, 0);
    for seed in seeds() {
        let o = run(seed, false);
        restarts.0 += o.restarts_done;
        restarts.1 += o.restarts_seen;
    }
    // Every restart whose first packets reached A was recognised; some restarts
    // are followed by a crash before a packet gets through, so seen <= done.
    assert!(
        restarts.1 > 0 && restarts.1 <= restarts.0,
        "restarts done {} seen {}",
        restarts.0,
        restarts.1
    );
    println!(
        "schedules: {}, B restarts: {} done, {} recognised by A",
        seeds().end,
        restarts.0,
        restarts.1
    );
}

#[test]
fn a_wall_clock_step_changes_nothing() {
    for seed in 0..200 {
        let plain = run(seed, false).trace;
        let stepped = run(seed, true).trace;
        assert_eq!(plain, stepped, "seed {seed}: the wall clock step changed A's view");
    }
}

#[test]
fn one_seed() {
    // Replays one schedule, e.g. a failing one: SIM_SEED=1234 cargo test --test sim_membership one_seed
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(42);
    let o = run(seed, false);
    for (t, e) in &o.trace {
        println!("{t:>12?} {e}");
    }
}
