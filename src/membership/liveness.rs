//! Liveness of the peer over each link, with Heartbeat's timing semantics:
//! a link is late after `warntime` of silence and dead after `deadtime`; before the
//! peer was ever heard, `initdead` counts from our start instead. The peer is dead
//! only when every link is. Time comes in as `now`; nothing here reads a clock,
//! so a wall-clock step cannot change anything (only `Instant`s are compared).

use std::time::{Duration, Instant};

use crate::model::Timing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkLiveness {
    /// Not heard yet, still within initdead.
    Unknown,
    Up,
    /// Silent for more than warntime.
    Late,
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerLiveness {
    /// Not heard yet, still within initdead.
    Unknown,
    Up,
    Dead,
}

/// What changed, for the shell to log and for the policy to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessEvent {
    LinkUp {
        link: usize,
    },
    LinkLate {
        link: usize,
        silent: Duration,
    },
    LinkDead {
        link: usize,
        silent: Duration,
    },
    /// Heard on some link after being unknown or dead.
    PeerUp,
    /// Silent on every link: for deadtime, or for initdead if never heard.
    PeerDead {
        silent: Duration,
    },
    /// A keepalive arrived later than warntime after the previous one (Heartbeat's "Late heartbeat").
    LateHeartbeat {
        interval: Duration,
    },
}

#[derive(Debug, Clone)]
struct Link {
    last_heard: Option<Instant>,
    state: LinkLiveness,
}

#[derive(Debug, Clone)]
pub struct Liveness {
    timing: Timing,
    started: Instant,
    links: Vec<Link>,
    peer: PeerLiveness,
    /// Last keepalive from the peer on any link.
    last_heard: Option<Instant>,
    /// After this node itself stalled: no link goes late or dead before this
    /// instant (see [`Liveness::hold_until`]).
    hold: Option<Instant>,
}

impl Liveness {
    pub fn new(timing: Timing, links: usize, now: Instant) -> Self {
        Liveness {
            timing,
            started: now,
            links: vec![
                Link {
                    last_heard: None,
                    state: LinkLiveness::Unknown
                };
                links
            ],
            peer: PeerLiveness::Unknown,
            last_heard: None,
            hold: None,
        }
    }

    /// This node was not scheduled for a while (a stalled VM, a swapping host,
    /// SIGSTOP): the silence it measures includes its own absence, and its sockets
    /// may hold keepalives it has not read. Until `until`, no deadline is acted on
    /// and no arrival is called late; what the sockets hold is read meanwhile.
    pub fn hold_until(&mut self, until: Instant) {
        self.hold = Some(self.hold.map_or(until, |h| h.max(until)));
    }

    /// Within a hold set by `hold_until`: what the sockets hold is still being read.
    pub fn held(&self, now: Instant) -> bool {
        self.hold.is_some_and(|h| now < h)
    }

    pub fn peer(&self) -> PeerLiveness {
        self.peer
    }

    pub fn link(&self, i: usize) -> LinkLiveness {
        self.links[i].state
    }

    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// A fresh keepalive from the peer arrived on `link`.
    pub fn heard(&mut self, now: Instant, link: usize, events: &mut Vec<LivenessEvent>) {
        if let Some(prev) = self.last_heard.filter(|_| !self.held(now)) {
            let interval = now.saturating_duration_since(prev);
            if interval > self.timing.warntime {
                events.push(LivenessEvent::LateHeartbeat { interval });
            }
        }
        self.last_heard = Some(self.last_heard.map_or(now, |p| p.max(now)));
        let l = &mut self.links[link];
        l.last_heard = Some(now);
        if l.state != LinkLiveness::Up {
            l.state = LinkLiveness::Up;
            events.push(LivenessEvent::LinkUp { link });
        }
        if self.peer != PeerLiveness::Up {
            self.peer = PeerLiveness::Up;
            events.push(LivenessEvent::PeerUp);
        }
    }

    /// Silence this link has been in, counted from our start if never heard.
    fn silence(&self, now: Instant, l: &Link) -> Duration {
        now.saturating_duration_since(l.last_heard.unwrap_or(self.started))
    }

    /// The deadline that applies to a link: initdead until the peer was first heard.
    fn dead_after(&self, l: &Link) -> Duration {
        if l.last_heard.is_none() && self.last_heard.is_none() {
            self.timing.initdead
        } else {
            self.timing.deadtime
        }
    }

    /// Applies every timeout due at `now`.
    pub fn tick(&mut self, now: Instant, events: &mut Vec<LivenessEvent>) {
        if self.held(now) {
            return;
        }
        for i in 0..self.links.len() {
            let l = &self.links[i];
            let silent = self.silence(now, l);
            let next = if silent >= self.dead_after(l) {
                LinkLiveness::Dead
            } else if l.last_heard.is_some() && silent > self.timing.warntime {
                LinkLiveness::Late
            } else {
                l.state
            };
            if next != l.state {
                self.links[i].state = next;
                events.push(match next {
                    LinkLiveness::Dead => LivenessEvent::LinkDead { link: i, silent },
                    _ => LivenessEvent::LinkLate { link: i, silent },
                });
            }
        }
        let all_dead = self.links.iter().all(|l| l.state == LinkLiveness::Dead);
        if all_dead && self.peer != PeerLiveness::Dead {
            self.peer = PeerLiveness::Dead;
            let silent = now.saturating_duration_since(self.last_heard.unwrap_or(self.started));
            events.push(LivenessEvent::PeerDead { silent });
        }
    }

    /// The next instant at which `tick` may change something.
    pub fn next_deadline(&self) -> Option<Instant> {
        let hold = self.hold;
        self.links
            .iter()
            .filter_map(|l| {
                let base = l.last_heard.unwrap_or(self.started);
                match l.state {
                    LinkLiveness::Dead => None,
                    LinkLiveness::Up => Some(base + self.timing.warntime + Duration::from_nanos(1)),
                    LinkLiveness::Late | LinkLiveness::Unknown => Some(base + self.dead_after(l)),
                }
            })
            .map(|d| hold.map_or(d, |h| d.max(h)))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        let ms = Duration::from_millis;
        Timing {
            keepalive: ms(100),
            warntime: ms(250),
            deadtime: ms(500),
            initdead: ms(2000),
        }
    }

    #[test]
    fn initdead_then_up_late_dead() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Liveness::new(timing(), 2, t0);
        let mut ev = Vec::new();
        l.tick(t0 + ms(1999), &mut ev);
        assert!(ev.is_empty(), "nothing before initdead: {ev:?}");
        assert_eq!(l.next_deadline(), Some(t0 + ms(2000)));
        l.heard(t0 + ms(1000), 0, &mut ev);
        assert_eq!(ev, vec![LivenessEvent::LinkUp { link: 0 }, LivenessEvent::PeerUp]);
        ev.clear();
        // Link 1 never heard: once the peer is known, it is judged by deadtime.
        l.tick(t0 + ms(1200), &mut ev);
        assert_eq!(
            ev,
            vec![LivenessEvent::LinkDead {
                link: 1,
                silent: ms(1200)
            }]
        );
        ev.clear();
        l.tick(t0 + ms(1251), &mut ev);
        assert_eq!(
            ev,
            vec![LivenessEvent::LinkLate {
                link: 0,
                silent: ms(251)
            }]
        );
        ev.clear();
        l.tick(t0 + ms(1499), &mut ev);
        assert!(ev.is_empty());
        l.tick(t0 + ms(1500), &mut ev);
        assert_eq!(
            ev,
            vec![
                LivenessEvent::LinkDead {
                    link: 0,
                    silent: ms(500)
                },
                LivenessEvent::PeerDead { silent: ms(500) }
            ]
        );
        assert_eq!(l.peer(), PeerLiveness::Dead);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn peer_alive_while_any_link_is() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Liveness::new(timing(), 2, t0);
        let mut ev = Vec::new();
        l.heard(t0, 0, &mut ev);
        l.heard(t0, 1, &mut ev);
        for k in 1..=20 {
            l.heard(t0 + ms(100 * k), 1, &mut ev);
        }
        ev.clear();
        l.tick(t0 + ms(2000), &mut ev);
        assert_eq!(l.link(0), LinkLiveness::Dead);
        assert_eq!(l.peer(), PeerLiveness::Up);
    }

    #[test]
    fn never_heard_peer_is_dead_after_initdead() {
        let t0 = Instant::now();
        let mut l = Liveness::new(timing(), 1, t0);
        let mut ev = Vec::new();
        l.tick(t0 + Duration::from_millis(2000), &mut ev);
        assert_eq!(l.peer(), PeerLiveness::Dead);
        assert!(ev.contains(&LivenessEvent::PeerDead {
            silent: Duration::from_millis(2000)
        }));
    }

    #[test]
    fn late_heartbeat_is_reported_on_receipt() {
        let t0 = Instant::now();
        let mut l = Liveness::new(timing(), 1, t0);
        let mut ev = Vec::new();
        l.heard(t0, 0, &mut ev);
        ev.clear();
        l.heard(t0 + Duration::from_millis(300), 0, &mut ev);
        assert_eq!(
            ev,
            vec![LivenessEvent::LateHeartbeat {
                interval: Duration::from_millis(300)
            }]
        );
    }

    #[test]
    fn after_a_stall_nothing_goes_dead_until_the_hold_ends() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Liveness::new(timing(), 1, t0);
        let mut ev = Vec::new();
        l.heard(t0, 0, &mut ev);
        ev.clear();
        // Stalled for 1.5 s; on resume the node holds its deadlines for 200 ms.
        let resumed = t0 + ms(1500);
        l.hold_until(resumed + ms(200));
        l.tick(resumed, &mut ev);
        assert!(
            ev.is_empty(),
            "no verdict on a silence that includes our own stall: {ev:?}"
        );
        assert_eq!(l.next_deadline(), Some(resumed + ms(200)));
        // The keepalives the socket held are read: the peer is alive, nothing is late.
        l.heard(resumed + ms(1), 0, &mut ev);
        assert!(ev.is_empty(), "no late-heartbeat warning for our own stall: {ev:?}");
        l.tick(resumed + ms(200), &mut ev);
        assert_eq!(l.peer(), PeerLiveness::Up);
        // A peer that really is silent is dead once the hold is over.
        l.tick(resumed + ms(501), &mut ev);
        assert_eq!(l.peer(), PeerLiveness::Dead);
    }
}
