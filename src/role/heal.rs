//! The keeper's side of the heal handshake, as an explicit state machine.
//!
//! When both nodes run the group and hear each other again, the policy names a
//! keeper. The other node holds its monitors and advertises `Yield`; only once the
//! keeper advertises `Keep` does it stop its copy. The keeper says `Keep` only after
//! it has re-asserted its resources (a monitor of each: IPaddr2 with
//! `arp_count_refresh` sends gratuitous ARPs), so the clients' last announcement
//! comes from the keeper and the peer's stop costs them nothing.
//!
//! ```text
//!  state        input                                   next          action
//!  ──────────── ─────────────────────────────────────── ───────────── ─────────────
//!  any          this node is not the keeper             Idle          –
//!  Idle         keeper, peer not yielding yet           AwaitQuiet    –
//!  Idle,        keeper, peer yields                     Quiet{now}    –
//!   AwaitQuiet
//!  Quiet{t}     peer stops yielding                     AwaitQuiet    –
//!  Quiet{t}     now ≥ t + REASSERT_AFTER                Reasserting   re-assert
//!  Reasserting  the engine's re-assert monitors done    Settling{now} –
//!  Settling{t}  now ≥ t + REASSERT_SETTLE               Keeping       –
//!  Keeping      keeper                                  Keeping       (advertise Keep)
//! ```
//!
//! Only `Keeping` lets the advert say `Keep`. Pure: time comes in as `now`.

use std::time::{Duration, Instant};

/// How long the keeper waits, after the yielding peer went quiet, before it
/// re-asserts. Linux ignores an ARP update within `locktime` (1 s by default) of the
/// previous one, and the peer's last announcements may still be on their way
/// (IPaddr2 sends its ARPs in the background, `arp_interval` 200 ms apart).
pub const REASSERT_AFTER: Duration = Duration::from_millis(1500);

/// How long the keeper waits after its re-assert before it says `Keep`: agents send
/// their announcements in the background, after the monitor returned. 1 s since a
/// monitor's result counts at its exit: it used to come only once IPaddr2's
/// background `send_arp` let go of the pipes (up to 400 ms later), and with 500 ms
/// alone the client lost the service for 50–117 ms in 1 of 3 heals (netns_split_brain).
pub const REASSERT_SETTLE: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Heal {
    /// Not keeping the group in a split brain.
    #[default]
    Idle,
    /// The keeper, waiting for the peer to advertise `Yield`.
    AwaitQuiet,
    /// The peer yields (quiet) since `since`; re-assert at `since + REASSERT_AFTER`.
    Quiet { since: Instant },
    /// The re-assert's monitors run.
    Reasserting,
    /// The re-assert finished at `since`; say `Keep` at `since + REASSERT_SETTLE`.
    Settling { since: Instant },
    /// `Keep` is advertised: the peer may stop its copy.
    Keeping,
}

impl Heal {
    /// One step: `keeper` is this node's verdict being `Keep`, `peer_yields` the
    /// peer advertising `Yield`, `reasserting` the engine still running the
    /// re-assert. Returns the next state and whether to re-assert now.
    pub fn step(self, now: Instant, keeper: bool, peer_yields: bool, reasserting: bool) -> (Heal, bool) {
        if !keeper {
            return (Heal::Idle, false);
        }
        match self {
            Heal::Idle | Heal::AwaitQuiet if peer_yields => {
                Heal::Quiet { since: now }.step(now, keeper, true, reasserting)
            }
            Heal::Idle | Heal::AwaitQuiet => (Heal::AwaitQuiet, false),
            Heal::Quiet { .. } if !peer_yields => (Heal::AwaitQuiet, false),
            Heal::Quiet { since } if now >= since + REASSERT_AFTER => (Heal::Reasserting, true),
            Heal::Quiet { since } => (Heal::Quiet { since }, false),
            // The engine is told to re-assert right after the step that asked for it,
            // so "not reasserting" here means its monitors are done.
            Heal::Reasserting if !reasserting => Heal::Settling { since: now }.step(now, keeper, peer_yields, false),
            Heal::Reasserting => (Heal::Reasserting, false),
            Heal::Settling { since } if now >= since + REASSERT_SETTLE => (Heal::Keeping, false),
            Heal::Settling { since } => (Heal::Settling { since }, false),
            Heal::Keeping => (Heal::Keeping, false),
        }
    }

    /// When the state changes by itself (the waits), if it does.
    pub fn deadline(self) -> Option<Instant> {
        match self {
            Heal::Quiet { since } => Some(since + REASSERT_AFTER),
            Heal::Settling { since } => Some(since + REASSERT_SETTLE),
            _ => None,
        }
    }

    /// The advert may say `Keep`.
    pub fn keeps(self) -> bool {
        self == Heal::Keeping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_keeper_waits_for_quiet_reasserts_settles_then_keeps() {
        let t0 = Instant::now();
        let (h, r) = Heal::Idle.step(t0, true, false, false);
        assert_eq!((h, r), (Heal::AwaitQuiet, false), "the peer has not yielded yet");
        let (h, r) = h.step(t0 + MS(10), true, true, false);
        assert_eq!((h, r), (Heal::Quiet { since: t0 + MS(10) }, false));
        assert_eq!(h.deadline(), Some(t0 + MS(10) + REASSERT_AFTER));
        let (h, r) = h.step(t0 + MS(10) + REASSERT_AFTER - MS(1), true, true, false);
        assert!(!r, "not before REASSERT_AFTER of quiet");
        let at = t0 + MS(10) + REASSERT_AFTER;
        let (h, r) = h.step(at, true, true, false);
        assert_eq!(
            (h, r),
            (Heal::Reasserting, true),
            "re-assert once, when quiet long enough"
        );
        let (h, r) = h.step(at + MS(5), true, true, true);
        assert_eq!(
            (h, r),
            (Heal::Reasserting, false),
            "monitors still running: no second re-assert"
        );
        let done = at + MS(50);
        let (h, _) = h.step(done, true, true, false);
        assert_eq!(h, Heal::Settling { since: done });
        assert!(!h.keeps());
        let (h, _) = h.step(done + REASSERT_SETTLE - MS(1), true, true, false);
        assert!(!h.keeps(), "settling: background announcements still going out");
        let (h, _) = h.step(done + REASSERT_SETTLE, true, true, false);
        assert_eq!(h, Heal::Keeping);
        assert!(h.keeps());
        assert_eq!(h.deadline(), None);
    }

    #[test]
    fn a_peer_that_stops_yielding_before_the_reassert_restarts_the_wait() {
        let t0 = Instant::now();
        let (h, _) = Heal::Idle.step(t0, true, true, false);
        assert_eq!(h, Heal::Quiet { since: t0 });
        let (h, _) = h.step(t0 + MS(700), true, false, false);
        assert_eq!(h, Heal::AwaitQuiet);
        let (h, _) = h.step(t0 + MS(900), true, true, false);
        assert_eq!(
            h,
            Heal::Quiet { since: t0 + MS(900) },
            "quiet counts again from the new yield"
        );
    }

    #[test]
    fn not_the_keeper_any_more_resets_from_any_state() {
        let t0 = Instant::now();
        for s in [
            Heal::AwaitQuiet,
            Heal::Quiet { since: t0 },
            Heal::Reasserting,
            Heal::Settling { since: t0 },
            Heal::Keeping,
        ] {
            assert_eq!(s.step(t0 + MS(1), false, true, false), (Heal::Idle, false), "{s:?}");
        }
    }

    #[test]
    fn once_reasserting_a_change_of_the_peer_does_not_undo_it() {
        let t0 = Instant::now();
        let (h, r) = Heal::Reasserting.step(t0, true, false, true);
        assert_eq!((h, r), (Heal::Reasserting, false));
        let (h, _) = Heal::Keeping.step(t0, true, false, false);
        assert_eq!(h, Heal::Keeping, "Keep stays said while this node is the keeper");
    }
}
