//! The node by hand: effects stay queued until taken, in order; the turn's order;
//! a stall defers deadlines. (The whole pair runs in tests/sim_cluster.rs.)

use std::time::{Duration, Instant};

use super::*;
use crate::resources::Action;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn config() -> (tempfile::TempDir, Config) {
    let text = r#"[cluster]
name = "unit"
[[node]]
name = "a"
[[node]]
name = "b"
[[link]]
name = "l0"
kind = "ucast"
interface = "lo"
address = { a = "127.0.0.1", b = "127.0.0.2" }
[timing]
keepalive = "100ms"
warntime = "300ms"
deadtime = "1s"
initdead = "2s"
[auth]
method = "sha1"
key = "unit-secret"
[group]
id = "g"
[[group.resource]]
id = "r0"
agent = "ocf:heartbeat:Dummy"
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairbeat.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (c, _) =
        crate::config::load_str(&path, text.to_string(), "a").unwrap_or_else(|d| panic!("{}", d.report(&path)));
    (dir, c)
}

fn node(t0: Instant) -> (tempfile::TempDir, Node) {
    let (dir, c) = config();
    let mut n = Node::new(&c, Boot::default(), t0);
    n.start(t0, 1_800_000_000);
    (dir, n)
}

fn effects(n: &mut Node) -> Vec<Effect> {
    std::iter::from_fn(|| n.poll_effect()).collect()
}

fn runs(e: &[Effect]) -> Vec<Request> {
    e.iter()
        .filter_map(|e| match e {
            Effect::RunAgent(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn start_probes_and_advertises_before_anything_else() {
    let t0 = Instant::now();
    let (_d, mut n) = node(t0);
    let e = effects(&mut n);
    let probes = runs(&e);
    assert_eq!(probes.len(), 1, "one operation at a time: {e:?}");
    assert_eq!(probes[0].action, Action::Probe);
    assert!(
        e.iter().any(|e| matches!(e, Effect::Transmit(_))),
        "the first keepalive carries an advert: {e:?}"
    );
}

/// The engine marks an operation in flight when it asks for it; if that request
/// could be dropped the group would stall for good. Through the node it cannot:
/// nothing is returned to the caller, and what is queued stays queued, in order,
/// however many inputs come before the shell takes it.
#[test]
fn an_asked_for_operation_cannot_be_dropped_it_waits_in_the_queue() {
    let t0 = Instant::now();
    let (_d, mut n) = node(t0);
    // Inputs keep coming and nobody takes the effects.
    for k in 1..=5 {
        n.handle_timeout(t0 + MS(100 * k), 1_800_000_000);
    }
    let e = effects(&mut n);
    let probes = runs(&e);
    assert_eq!(probes.len(), 1, "the probe is still there, once: {e:?}");
    let keepalives = e.iter().filter(|e| matches!(e, Effect::Transmit(_))).count();
    assert!(keepalives >= 5, "keepalives queued in order too: {keepalives}");
    assert!(n.poll_effect().is_none(), "taken once, gone");
    // Answering the probe moves the engine on; the answer to an unknown id does not.
    n.handle_agent_result(t0 + MS(600), 1_800_000_000, probes[0].id + 100, Outcome::Success, None);
    assert!(runs(&effects(&mut n)).is_empty());
    n.handle_agent_result(t0 + MS(600), 1_800_000_000, probes[0].id, Outcome::NotRunning, None);
    assert_eq!(n.engine().view(0).state, RscState::Stopped);
}

#[test]
fn alone_after_initdead_the_node_starts_the_group() {
    let t0 = Instant::now();
    let (_d, mut n) = node(t0);
    let probe = runs(&effects(&mut n)).remove(0);
    n.handle_agent_result(t0 + MS(10), 0, probe.id, Outcome::NotRunning, None);
    effects(&mut n);
    let mut now = t0 + MS(10);
    while now < t0 + MS(2100) {
        now = n.poll_timeout().max(now + MS(1));
        n.handle_timeout(now, 0);
    }
    let e = effects(&mut n);
    assert!(
        runs(&e).iter().any(|r| r.action == Action::Start),
        "peer dead after initdead: the group starts here: {e:?}"
    );
    assert!(
        e.iter().any(|e| matches!(e, Effect::Persist(Persist::Epoch(1)))),
        "a new ownership epoch is persisted with the start: {e:?}"
    );
    let persist = e.iter().position(|e| matches!(e, Effect::Persist(Persist::Epoch(_))));
    let start = e
        .iter()
        .position(|e| matches!(e, Effect::RunAgent(r) if r.action == Action::Start));
    assert!(persist < start, "the epoch is written before the start is run");
}

#[test]
fn a_stall_defers_the_verdict_on_the_peer() {
    let t0 = Instant::now();
    let (_d, mut n) = node(t0);
    effects(&mut n);
    // Awake on time until just before initdead would declare the peer dead ...
    let mut now = t0;
    while now < t0 + MS(1900) {
        now = n.poll_timeout().max(now + MS(1));
        n.handle_timeout(now, 0);
    }
    effects(&mut n);
    // ... then not scheduled for 1.5 s: the first timer after the pause must not
    // declare the peer dead; it waits two keepalives for what the sockets hold.
    let resumed = now + MS(1500);
    n.handle_timeout(resumed, 0);
    let e = effects(&mut n);
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Log(l) if l.text.contains("not scheduled for"))),
        "{e:?}"
    );
    assert_ne!(n.membership().peer(), PeerLiveness::Dead);
    let end = resumed + stall_grace(&n.timing);
    let mut now = resumed;
    while now < end {
        now = n.poll_timeout().max(now + MS(1)).min(end);
        n.handle_timeout(now, 0);
        if now < end {
            assert_ne!(n.membership().peer(), PeerLiveness::Dead, "within the grace");
        }
    }
    assert_eq!(
        n.membership().peer(),
        PeerLiveness::Dead,
        "nothing came during the grace: now the silence counts"
    );
}

#[test]
fn status_and_the_summary_line_come_from_the_node() {
    let t0 = Instant::now();
    let (_d, c) = config();
    let mut n = Node::new(&c, Boot::default(), t0);
    n.start(t0, 1_800_000_000);
    let template = crate::control::status::Status::initial(&c, Default::default());
    let s = status::project(&n, &template, t0);
    assert_eq!(status::summary_line(&n), "group stopped; peer b not heard yet");
    assert_eq!(s.group.owner, None);
    assert!(s.attention.is_empty(), "{:?}", s.attention);
    // Alone after initdead, the group starts and runs here.
    let mut now = t0;
    while now < t0 + MS(2500) {
        for e in effects(&mut n) {
            if let Effect::RunAgent(r) = e {
                let outcome = if r.action == Action::Probe {
                    Outcome::NotRunning
                } else {
                    Outcome::Success
                };
                n.handle_agent_result(now, 1_800_000_000, r.id, outcome, None);
            }
        }
        now = n.poll_timeout().max(now + MS(1)).min(t0 + MS(2500));
        n.handle_timeout(now, 1_800_000_000);
    }
    for e in effects(&mut n) {
        if let Effect::RunAgent(r) = e {
            n.handle_agent_result(now, 1_800_000_000, r.id, Outcome::Success, None);
        }
    }
    let s = status::project(&n, &template, now);
    assert_eq!(s.group.owner.as_deref(), Some("a"), "{s:?}");
    assert_eq!(s.nodes[1].state, crate::control::status::NodeState::Offline);
    assert_eq!(s.decision_reason.as_deref(), Some("peer_dead"));
    assert!(
        s.attention.is_empty(),
        "taking over a dead peer needs nobody: {:?}",
        s.attention
    );
    assert_eq!(status::summary_line(&n), "group on a; peer b OFFLINE");
}

/// A pair's two nodes with a replica, for the outdate relay.
fn replica_pair(t0: Instant) -> (tempfile::TempDir, Node, Node) {
    let (dir, _) = config();
    let path = dir.path().join("pairbeat.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + "[[replica]]\nname = \"r0\"\nbacking = \"/var/lib/r0.img\"\nsize = \"64MiB\"\naddress = { a = \"127.0.0.1\", b = \"127.0.0.2\" }\noutdate_timeout = \"2s\"\n";
    let load = |me| crate::config::load_str(&path, text.clone(), me).unwrap_or_else(|d| panic!("{}", d.report(&path)));
    let (ca, _) = load("a");
    let (cb, _) = load("b");
    let boot = |g| Boot {
        generation: g,
        ..Boot::default()
    };
    let mut a = Node::new(&ca, boot(1), t0);
    let mut b = Node::new(&cb, boot(1), t0);
    a.start(t0, 0);
    b.start(t0, 0);
    (dir, a, b)
}

/// Hands every packet `from` queued to `to`; returns the other effects.
fn deliver(from: &mut Node, to: &mut Node, now: Instant) -> Vec<Effect> {
    let mut rest = Vec::new();
    for e in effects(from) {
        match e {
            Effect::Transmit(bytes) => to.handle_datagram(now, 0, 0, &bytes),
            e => rest.push(e),
        }
    }
    rest
}

const GI: &str = "00000000000000A5:0000000000000000:0000000000000000:0000000000000000";

#[test]
fn an_outdate_ask_crosses_the_heartbeat_links_and_its_answer_comes_back() {
    let t0 = Instant::now();
    let (_d, mut a, mut b) = replica_pair(t0);
    deliver(&mut a, &mut b, t0);
    deliver(&mut b, &mut a, t0);
    let id = a.handle_outdate_peer(t0 + MS(10), 0, "r0", GI).unwrap();
    deliver(&mut a, &mut b, t0 + MS(10));
    let asked: Vec<_> = deliver(&mut b, &mut a, t0 + MS(10))
        .into_iter()
        .filter_map(|e| match e {
            Effect::OutdateLocal { replica, ask, gi } => Some((replica, ask, gi)),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 1, "b runs the ask once: {asked:?}");
    let (replica, ask, gi) = asked[0].clone();
    assert_eq!((replica.as_str(), gi.as_str(), ask.1), ("r0", GI, id));
    b.handle_outdate_local(t0 + MS(20), 0, "r0", ask, OutdateRc::Outdated, "4: Outdated".into());
    deliver(&mut b, &mut a, t0 + MS(20));
    let answered: Vec<_> = effects(&mut a)
        .into_iter()
        .filter_map(|e| match e {
            Effect::OutdateAnswered { id, rc, .. } => Some((id, rc)),
            _ => None,
        })
        .collect();
    assert_eq!(answered, vec![(id, OutdateRc::Outdated)]);
    assert!(
        b.membership().counters().relayed >= 1 && a.membership().counters().relayed >= 1,
        "counted in `packets`"
    );
}

#[test]
fn an_outdate_ask_nobody_answers_ends_as_unreachable_after_outdate_timeout() {
    let t0 = Instant::now();
    let (_d, mut a, mut b) = replica_pair(t0);
    deliver(&mut a, &mut b, t0);
    deliver(&mut b, &mut a, t0);
    let id = a.handle_outdate_peer(t0 + MS(10), 0, "r0", GI).unwrap();
    effects(&mut a); // lost: b never hears the ask
    let mut now = t0 + MS(10);
    let mut sent = 0;
    let mut answer = None;
    while now < t0 + MS(2500) && answer.is_none() {
        now = a.poll_timeout().max(now + MS(1));
        // b keeps sending keepalives, so the peer stays up.
        b.handle_timeout(now, 0);
        deliver(&mut b, &mut a, now);
        a.handle_timeout(now, 0);
        for e in effects(&mut a) {
            match e {
                Effect::Transmit(_) => sent += 1,
                Effect::OutdateAnswered { id: i, rc, .. } => answer = Some((i, rc, now)),
                _ => {}
            }
        }
    }
    let (i, rc, at) = answer.expect("answered");
    assert_eq!((i, rc), (id, OutdateRc::Unreachable));
    assert!(at >= t0 + MS(2010), "not before outdate_timeout: {:?}", at - t0);
    assert!(sent >= 15, "the ask is repeated with the keepalives: {sent} packets");
    assert_eq!(
        a.handle_outdate_peer(now, 0, "nope", GI).unwrap_err(),
        "no [[replica]] named `nope` in this node's configuration"
    );
}
