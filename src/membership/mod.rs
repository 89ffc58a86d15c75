//! Membership: does the peer live, over which links? A pure state machine.
//!
//! [`Membership`] takes datagrams (`on_datagram`) and the passing of time
//! (`on_timeout`), each with an explicit `now: Instant` (monotonic) and the wall
//! time for the `ts` field, and returns [`Output`]s: keepalives to send, events,
//! dropped packets to count, and the peer generation to persist. The daemon shell
//! does the I/O and arms one timer at [`Membership::next_deadline`].
//!
//! Order of trust for a datagram: authenticate (`wire::open`) → it must come from
//! the configured peer → replay check per sender → then, and only for `t=status`,
//! liveness. Nothing is stored for a packet that fails any step.

pub mod liveness;

use std::time::Instant;

use crate::model::{Advert, Timing};
use crate::wire::auth::Auth;
use crate::wire::replay::{SeqTracker, Verdict};
use crate::wire::{self, Message, WireError};

use liveness::Liveness;
pub use liveness::{LinkLiveness, LivenessEvent, PeerLiveness};

/// Who we are on the wire.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node: String,
    pub uuid: [u8; 16],
    /// Per-boot generation (Heartbeat's `hg`), persisted and incremented by the shell at start.
    pub generation: u64,
    /// Both node names in configuration order, for Heartbeat's `repnodes` answer.
    pub nodes: [String; 2],
}

/// Why a datagram was not used. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Wire(WireError),
    /// Authentic but from a node that is not our peer (a third node sharing the key?).
    UnknownNode,
    /// Authentic, from the peer, without generation or sequence number.
    Unsequenced,
    /// From an older generation of the peer, or too old a sequence number.
    Replay,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes on every link (the same packet: receivers de-duplicate by seq).
    Broadcast(Vec<u8>),
    Event(Event),
    Dropped {
        link: usize,
        why: DropReason,
    },
    /// An outdate ask or answer from the peer, authentic and seen for the first time.
    Relay(crate::outdate::Relayed),
    /// Write the peer's generation and newest sequence number to the state dir, so
    /// packets recorded before then are refused even after we restart. Emitted when
    /// the peer restarts and every `PERSIST_EVERY` of its sequence numbers.
    PersistPeer {
        generation: u64,
        seq: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Liveness(LivenessEvent),
    /// The peer came back with a new generation (it restarted).
    PeerRestarted {
        generation: u64,
        previous: Option<u64>,
    },
    /// Sequence numbers skipped: packets lost on every link.
    PacketsLost {
        count: u64,
    },
    /// The peer's advertised group state changed (pairbeat peers only).
    PeerAdvert(Advert),
}

/// Counts of received heartbeat packets since start; shown as `packets` in status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Authentic, new packets from the peer.
    pub accepted: u64,
    /// Second copies (one arrives per link), or replays inside the recent window.
    pub duplicates: u64,
    /// Sequence numbers the peer sent that never arrived on any link.
    pub lost: u64,
    /// Failed authentication.
    pub forged: u64,
    /// Signed with a key index we do not have.
    pub unknown_key: u64,
    /// Authentic but old: an earlier generation or a sequence number below the window.
    pub replayed: u64,
    pub malformed: u64,
    pub truncated: u64,
    pub oversized: u64,
    /// Authentic, from a node that is not our peer.
    pub unknown_node: u64,
    /// Outdate asks and answers (the replicas' `pb-outdate` relay).
    #[serde(default)]
    pub relayed: u64,
}

/// How many peer sequence numbers may pass between two `PersistPeer` outputs: the
/// replay window left open if we crash (at keepalive 100 ms, 3.2 s of packets).
pub const PERSIST_EVERY: u64 = 32;

pub struct Membership {
    me: Identity,
    peer: String,
    auth: Auth,
    timing: Timing,
    seq: u64,
    next_keepalive: Instant,
    tracker: SeqTracker,
    /// Highest (generation, seq) of a status packet seen on each link: the second
    /// copy of a packet refreshes the other link, an older one refreshes nothing.
    link_high: Vec<(u64, u64)>,
    /// When the first copy of the current highest sequence number arrived.
    highest_at: Option<Instant>,
    /// The peer sequence number last handed out for persisting.
    persisted_seq: u64,
    /// What we advertise in every keepalive (the policy's `Advert`).
    advert: Option<Advert>,
    /// What the peer last advertised.
    peer_advert: Option<Advert>,
    /// Since when the group runs here (`pb_ran` in keepalives, for keep-running-longest).
    running_since: Option<Instant>,
    /// The peer's last `pb_ran` and when it arrived.
    peer_ran: Option<(u64, Instant)>,
    liveness: Liveness,
    counters: Counters,
}

/// An outdate ask or answer, if the message is one and well formed.
fn relayed(msg: &Message, generation: u64) -> Option<crate::outdate::Relayed> {
    use crate::outdate::Relayed;
    let replica = msg.get("rsc")?.to_string();
    let id = msg.get_hex("id")?;
    match msg.get("t")? {
        "pb-outdate" => Some(Relayed::Ask {
            replica,
            ask: (generation, id),
            gi: msg.get("gi")?.to_string(),
        }),
        "pb-outdate-rc" => Some(Relayed::Answer {
            replica,
            id,
            rc: crate::replica::state::OutdateRc::from_code(msg.get("rc")?.parse().ok()?),
            detail: msg.get("detail").unwrap_or_default().to_string(),
        }),
        _ => None,
    }
}

/// A request of type `t` addressed to us.
fn fresh_request(msg: &Message, t: &str, me: &str) -> bool {
    msg.get("t") == Some(t) && msg.get("dest") == Some(me)
}

impl Membership {
    /// `peer_floor`: the peer's (generation, seq) persisted before our restart.
    pub fn new(
        me: Identity,
        peer: String,
        auth: Auth,
        timing: Timing,
        links: usize,
        peer_floor: Option<(u64, u64)>,
        now: Instant,
    ) -> Self {
        Membership {
            me,
            peer,
            auth,
            timing,
            seq: 0,
            next_keepalive: now,
            tracker: SeqTracker::with_floor(peer_floor),
            link_high: vec![(0, 0); links],
            highest_at: None,
            persisted_seq: peer_floor.map_or(0, |f| f.1),
            advert: None,
            peer_advert: None,
            running_since: None,
            peer_ran: None,
            liveness: Liveness::new(timing, links, now),
            counters: Counters::default(),
        }
    }

    pub fn peer(&self) -> PeerLiveness {
        self.liveness.peer()
    }

    /// The peer is up but silent for warntime on every link.
    pub fn peer_late(&self) -> bool {
        self.peer() == PeerLiveness::Up && (0..self.link_high.len()).all(|i| self.link(i) != LinkLiveness::Up)
    }

    pub fn link(&self, i: usize) -> LinkLiveness {
        self.liveness.link(i)
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// What the peer last advertised, if it is a pairbeat node.
    pub fn peer_advert(&self) -> Option<Advert> {
        self.peer_advert
    }

    /// Sets what our keepalives advertise.
    pub fn set_advert(&mut self, advert: Advert) {
        self.advert = Some(advert);
    }

    /// Since when the group has run here (None: it does not).
    pub fn set_running_since(&mut self, since: Option<Instant>) {
        self.running_since = since;
    }

    /// How long the peer has run the group, as it last said, aged to `now`.
    pub fn peer_ran_ms(&self, now: Instant) -> Option<u64> {
        self.peer_ran
            .map(|(ms, at)| ms + now.saturating_duration_since(at).as_millis() as u64)
    }

    /// A keepalive now, outside the rhythm: a change of state reaches the peer at once
    /// instead of a keepalive later.
    pub fn send_now(&mut self, now: Instant, wall_secs: u64) -> Output {
        Output::Broadcast(self.keepalive(now, wall_secs))
    }

    /// This node stalled: act on no liveness deadline before `until` (see
    /// [`Liveness::hold_until`]).
    pub fn hold_deadlines(&mut self, until: Instant) {
        self.liveness.hold_until(until);
    }

    /// After a stall, still reading what the links hold (see `hold_deadlines`).
    pub fn catching_up(&self, now: Instant) -> bool {
        self.liveness.held(now)
    }

    /// New keys (authkeys reloaded); effective for the next packet either way.
    pub fn set_auth(&mut self, auth: Auth) {
        self.auth = auth;
    }

    /// The earliest instant at which `on_timeout` has work.
    pub fn next_deadline(&self) -> Instant {
        match self.liveness.next_deadline() {
            Some(d) => d.min(self.next_keepalive),
            None => self.next_keepalive,
        }
    }

    /// Timers: keepalives due and liveness deadlines. `wall_secs` feeds the `ts` field only.
    pub fn on_timeout(&mut self, now: Instant, wall_secs: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if now >= self.next_keepalive {
            out.push(Output::Broadcast(self.keepalive(now, wall_secs)));
            self.next_keepalive += self.timing.keepalive;
            // After a stall (suspended VM, SIGSTOP), resume the rhythm instead of bursting.
            if self.next_keepalive <= now {
                self.next_keepalive = now + self.timing.keepalive;
            }
        }
        let mut events = Vec::new();
        self.liveness.tick(now, &mut events);
        out.extend(events.into_iter().map(|e| Output::Event(Event::Liveness(e))));
        out
    }

    /// A datagram arrived on `link`. `wall_secs` feeds the `ts` field of any reply only.
    pub fn on_datagram(&mut self, now: Instant, wall_secs: u64, link: usize, data: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        let msg = match wire::open(data, &self.auth) {
            Ok(m) => m,
            Err(e) => {
                self.count_wire(e);
                out.push(Output::Dropped {
                    link,
                    why: DropReason::Wire(e),
                });
                return out;
            }
        };
        match msg.get("src") {
            // Our own packet, looped back by bcast/mcast.
            Some(src) if src == self.me.node => return out,
            Some(src) if src == self.peer => {}
            _ => {
                self.counters.unknown_node += 1;
                out.push(Output::Dropped {
                    link,
                    why: DropReason::UnknownNode,
                });
                return out;
            }
        }
        // Heartbeat's flow-control messages (NS_ackmsg, NS_rexmit…) carry no seq: nothing to do.
        if msg.get("t").is_some_and(|t| t.starts_with("NS_")) {
            return out;
        }
        let (Some(generation), Some(seq)) = (msg.get_hex("hg"), msg.get_hex("seq")) else {
            self.counters.malformed += 1;
            out.push(Output::Dropped {
                link,
                why: DropReason::Unsequenced,
            });
            return out;
        };
        let before = self.tracker.highest();
        let mut first_copy = true;
        let refreshes = match self.tracker.check(generation, seq) {
            Verdict::Replay => {
                self.counters.replayed += 1;
                out.push(Output::Dropped {
                    link,
                    why: DropReason::Replay,
                });
                return out;
            }
            Verdict::Duplicate => {
                // The other link's copy of the newest packet, soon after the first: that
                // link works. Any other duplicate (an old packet replayed on a link that
                // missed it) refreshes nothing, so replays cannot keep a dead peer alive.
                self.counters.duplicates += 1;
                first_copy = false;
                seq == self.tracker.highest()
                    && self
                        .highest_at
                        .is_some_and(|t| now.saturating_duration_since(t) <= self.timing.warntime)
            }
            Verdict::Restarted { previous } => {
                out.push(Output::Event(Event::PeerRestarted { generation, previous }));
                out.push(Output::PersistPeer { generation, seq });
                self.persisted_seq = seq;
                // Per-link memory belongs to the previous life.
                self.link_high.iter_mut().for_each(|h| *h = (generation, 0));
                self.counters.accepted += 1;
                true
            }
            Verdict::Fresh { lost } => {
                if lost > 0 {
                    self.counters.lost += lost;
                    out.push(Output::Event(Event::PacketsLost { count: lost }));
                }
                self.counters.accepted += 1;
                if seq >= self.persisted_seq + PERSIST_EVERY {
                    out.push(Output::PersistPeer { generation, seq });
                    self.persisted_seq = seq;
                }
                // A late, reordered packet is accepted but proves nothing about now.
                seq > before
            }
        };
        // A joining Heartbeat node asks for the node list and does not bring its
        // communication up until it has the answer (as in the captured trace).
        if fresh_request(&msg, "reqnodes", &self.me.node) {
            let asker = msg.get_bin("srcuuid").unwrap_or(&[]).to_vec();
            out.push(Output::Broadcast(self.repnodes(&asker, wall_secs)));
        }
        if first_copy && msg.get("dest") == Some(self.me.node.as_str()) {
            if let Some(r) = relayed(&msg, generation) {
                self.counters.relayed += 1;
                out.push(Output::Relay(r));
            }
        }
        if refreshes && seq == self.tracker.highest() && self.link_high[link] < (generation, seq) {
            if self.link_high.iter().all(|h| *h < (generation, seq)) {
                self.highest_at = Some(now);
            }
            self.link_high[link] = (generation, seq);
            if msg.get("t") == Some("status") {
                let mut events = Vec::new();
                self.liveness.heard(now, link, &mut events);
                out.extend(events.into_iter().map(|e| Output::Event(Event::Liveness(e))));
            }
        }
        // The newest status carries the peer's newest advert (duplicates repeat it).
        if refreshes && msg.get("t") == Some("status") {
            self.peer_ran = msg.get("pb_ran").and_then(|r| r.parse().ok()).map(|ms| (ms, now));
            if let Some(a) = wire::advert::parse(|k| msg.get(k).map(str::to_string)) {
                if self.peer_advert != Some(a) {
                    self.peer_advert = Some(a);
                    out.push(Output::Event(Event::PeerAdvert(a)));
                }
            }
        }
        out
    }

    /// Our status packet, fields in Heartbeat's order (as Heartbeat 3.0.6 writes them; the captured packets in tests/wire_vectors.rs).
    fn keepalive(&mut self, now: Instant, wall_secs: u64) -> Vec<u8> {
        let mut m = Message::new();
        m.add_str("t", "status")
            .add_str("st", if self.seq == 0 { "init" } else { "active" })
            .add_str("dt", &format!("{:x}", self.timing.deadtime.as_millis()))
            .add_str("protocol", "1");
        if let Some(a) = self.advert {
            for (k, v) in wire::advert::fields(&a) {
                m.add_str(k, &v);
            }
            let ran = self
                .running_since
                .map(|t| now.saturating_duration_since(t).as_millis().to_string());
            m.add_str("pb_ran", &ran.unwrap_or_default());
        }
        self.seal_sequenced(m, wall_secs)
    }

    /// An outdate ask or answer for the peer (`t=pb-outdate`, `t=pb-outdate-rc`),
    /// sequenced and signed like a keepalive. A Heartbeat peer ignores the type.
    pub fn relay(&mut self, what: &crate::outdate::Out, wall_secs: u64) -> Option<Vec<u8>> {
        use crate::outdate::Out;
        let mut m = Message::new();
        m.add_str("dest", &self.peer);
        match what {
            Out::SendAsk { replica, id, gi } => {
                m.add_str("t", "pb-outdate")
                    .add_str("rsc", replica)
                    .add_str("id", &format!("{id:x}"))
                    .add_str("gi", gi);
            }
            Out::SendAnswer {
                replica,
                id,
                rc,
                detail,
            } => {
                m.add_str("t", "pb-outdate-rc")
                    .add_str("rsc", replica)
                    .add_str("id", &format!("{id:x}"))
                    .add_str("rc", &rc.code().to_string())
                    .add_str("detail", detail);
            }
            _ => return None,
        }
        Some(self.seal_sequenced(m, wall_secs))
    }

    /// Heartbeat's `repnodes`, fields in the order a Heartbeat node sends them.
    fn repnodes(&mut self, asker_uuid: &[u8], wall_secs: u64) -> Vec<u8> {
        let mut m = Message::new();
        m.add_str("dest", &self.peer)
            .add_str("t", "repnodes")
            .add_str("nodelist", &format!("{} {} ", self.me.nodes[0], self.me.nodes[1]))
            .add_str("delnodelist", "")
            .add_bin("destuuid", asker_uuid);
        self.seal_sequenced(m, wall_secs)
    }

    /// Appends the fields Heartbeat's `add_control_msg_fields` adds to every sequenced
    /// message, in its order, with the next sequence number, and signs the result.
    fn seal_sequenced(&mut self, mut m: Message, wall_secs: u64) -> Vec<u8> {
        self.seq += 1;
        m.add_str("src", &self.me.node)
            .add_bin("srcuuid", &self.me.uuid)
            .add_str("seq", &format!("{:x}", self.seq))
            .add_str("hg", &format!("{:x}", self.me.generation))
            .add_str("ts", &format!("{wall_secs:x}"))
            .add_str("ttl", "3");
        wire::seal(&m, &self.auth)
    }

    fn count_wire(&mut self, e: WireError) {
        let c = &mut self.counters;
        match e {
            WireError::Truncated => c.truncated += 1,
            WireError::Oversized => c.oversized += 1,
            WireError::Malformed(_) => c.malformed += 1,
            WireError::UnknownKey(_) => c.unknown_key += 1,
            WireError::Forged => c.forged += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::{AuthKey, AuthMethod};

    fn auth() -> Auth {
        let mut keys = BTreeMap::new();
        keys.insert(
            1,
            AuthKey {
                method: AuthMethod::Sha1,
                secret: b"k".to_vec(),
            },
        );
        Auth {
            sign_index: 1,
            keys,
            authkeys_file: None,
        }
    }

    fn timing() -> Timing {
        let ms = Duration::from_millis;
        Timing {
            keepalive: ms(100),
            warntime: ms(250),
            deadtime: ms(500),
            initdead: ms(2000),
        }
    }

    fn engine(me: &str, peer: &str, generation: u64, now: Instant) -> Membership {
        let id = Identity {
            node: me.into(),
            uuid: [7; 16],
            generation,
            nodes: ["a".into(), "b".into()],
        };
        Membership::new(id, peer.into(), auth(), timing(), 1, None, now)
    }

    fn sent(out: &[Output]) -> Vec<Message> {
        out.iter()
            .filter_map(|o| match o {
                Output::Broadcast(b) => Some(wire::open(b, &auth()).unwrap()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn keepalives_carry_heartbeats_status_fields_in_order() {
        let t0 = Instant::now();
        let mut a = engine("a", "b", 0x6b01_9143, t0);
        let first = sent(&a.on_timeout(t0, 0x6b01_9142));
        let names: Vec<&str> = first[0].fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["t", "st", "dt", "protocol", "src", "srcuuid", "seq", "hg", "ts", "ttl", "auth"]
        );
        assert_eq!(first[0].get("st"), Some("init"));
        assert_eq!(first[0].get("dt"), Some("1f4"));
        assert_eq!(first[0].get("hg"), Some("6b019143"));
        // The next one is due a keepalive later, not before.
        assert_eq!(a.next_deadline(), t0 + Duration::from_millis(100));
        let second = sent(&a.on_timeout(t0 + Duration::from_millis(100), 0));
        assert_eq!((second[0].get("st"), second[0].get("seq")), (Some("active"), Some("2")));
    }

    #[test]
    fn the_peers_run_time_is_aged_and_a_silent_peer_is_late_before_dead() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut a = engine("a", "b", 1, t0);
        let mut b = engine("b", "a", 2, t0);
        b.set_advert(Advert::new(crate::model::Holding::Running, crate::model::Mode::Online));
        b.set_running_since(Some(t0));
        let Output::Broadcast(bytes) = b.send_now(t0 + ms(1000), 1) else {
            unreachable!()
        };
        a.on_datagram(t0 + ms(1000), 1, 0, &bytes);
        assert_eq!(a.peer(), PeerLiveness::Up);
        assert_eq!(a.peer_ran_ms(t0 + ms(1500)), Some(1500), "1000 ms said, aged by 500");
        assert!(!a.peer_late());
        a.on_timeout(t0 + ms(1260), 2);
        assert!(a.peer_late(), "silent for warntime");
        assert_eq!(a.peer(), PeerLiveness::Up, "late, not dead yet");
    }

    #[test]
    fn reqnodes_for_us_gets_repnodes_and_nothing_else_does() {
        let t0 = Instant::now();
        let mut a = engine("a", "b", 1, t0);
        let mut req = Message::new();
        req.add_str("t", "reqnodes")
            .add_str("dest", "a")
            .add_str("src", "b")
            .add_bin("srcuuid", &[9; 16]);
        req.add_str("seq", "5").add_str("hg", "2").add_str("ts", "1");
        let replies = sent(&a.on_datagram(t0, 77, 0, &wire::seal(&req, &auth())));
        assert_eq!(replies.len(), 1);
        let r = &replies[0];
        assert_eq!(
            (r.get("t"), r.get("dest"), r.get("nodelist")),
            (Some("repnodes"), Some("b"), Some("a b "))
        );
        assert_eq!(r.get_bin("destuuid"), Some(&[9u8; 16][..]));
        assert_eq!(r.get_hex("ts"), Some(77));
        // Addressed to someone else: no answer.
        let mut other = req.clone();
        other.fields[1].value = b"c".to_vec();
        other.fields[5].value = b"6".to_vec();
        assert!(sent(&a.on_datagram(t0, 77, 0, &wire::seal(&other, &auth()))).is_empty());
    }

    #[test]
    fn own_unknown_and_unsequenced_packets_change_nothing() {
        let t0 = Instant::now();
        let mut a = engine("a", "b", 1, t0);
        let mut b = engine("b", "a", 2, t0);
        let mut own = engine("a", "b", 1, t0);
        let own_pkt = match &own.on_timeout(t0, 0)[0] {
            Output::Broadcast(p) => p.clone(),
            o => panic!("{o:?}"),
        };
        assert!(
            a.on_datagram(t0, 0, 0, &own_pkt).is_empty(),
            "our own looped-back packet is ignored"
        );
        let mut stranger = engine("c", "a", 3, t0);
        let s = match &stranger.on_timeout(t0, 0)[0] {
            Output::Broadcast(p) => p.clone(),
            o => panic!("{o:?}"),
        };
        assert_eq!(
            a.on_datagram(t0, 0, 0, &s),
            vec![Output::Dropped {
                link: 0,
                why: DropReason::UnknownNode
            }]
        );
        let mut bare = Message::new();
        bare.add_str("t", "status").add_str("src", "b");
        assert_eq!(
            a.on_datagram(t0, 0, 0, &wire::seal(&bare, &auth())),
            vec![Output::Dropped {
                link: 0,
                why: DropReason::Unsequenced
            }]
        );
        assert_eq!(a.peer(), PeerLiveness::Unknown);
        // A real keepalive from b brings it up, and says it is a first contact.
        let pkt = match &b.on_timeout(t0, 0)[0] {
            Output::Broadcast(p) => p.clone(),
            o => panic!("{o:?}"),
        };
        let out = a.on_datagram(t0, 0, 0, &pkt);
        assert!(out.contains(&Output::Event(Event::PeerRestarted {
            generation: 2,
            previous: None
        })));
        assert!(out.contains(&Output::PersistPeer { generation: 2, seq: 1 }));
        assert_eq!(a.peer(), PeerLiveness::Up);
        let c = a.counters();
        assert_eq!((c.accepted, c.unknown_node, c.malformed), (1, 1, 1));
    }
}
