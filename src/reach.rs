//! Which tie-break targets answered lately. A target counts as reachable while its
//! last answer is younger than the timeout, and once it has answered without a gap
//! for the hold-down time (one deadtime). The hold-down matters whenever a node's
//! targets come back after they did not answer, whether they had answered before or
//! not: a node that booted into isolation (its first probes unanswered) hears its
//! targets a moment before its peer's keepalives arrive, and without the hold-down
//! it would take over a peer that never stopped (simulation seeds 3536, 6378 and
//! 6826 of the earlier harness). Targets that answer from the very first probe count
//! at once, so a restarted daemon on the active node does not look worse connected
//! than its peer and hand the group over. Pure: the instants are passed in.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Default)]
struct Target {
    last_answer: Option<Instant>,
    /// Since when it has answered without a gap longer than the timeout.
    streak_from: Option<Instant>,
}

pub struct Reach {
    timeout: Duration,
    hold: Duration,
    targets: Vec<Target>,
    /// A target did not answer at some point since boot (a loss, or unanswered
    /// first probes): from then on, every return is held down.
    ever_lost: bool,
}

impl Reach {
    pub fn new(targets: usize, timeout: Duration, hold: Duration) -> Self {
        Reach {
            timeout,
            hold,
            targets: vec![Target::default(); targets],
            ever_lost: false,
        }
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    fn answering(&self, t: &Target, now: Instant) -> bool {
        t.last_answer
            .is_some_and(|a| now.saturating_duration_since(a) < self.timeout)
    }

    /// A probe of target `i` finished: answered or not.
    pub fn on_probe(&mut self, i: usize, answered: bool, now: Instant) {
        let Some(t) = self.targets.get(i).copied() else { return };
        let was = self.answering(&t, now);
        // Lost after answering, or never answered yet and unanswered now.
        if !was && (t.last_answer.is_some() || !answered) {
            self.ever_lost = true;
        }
        let t = &mut self.targets[i];
        if answered {
            if !was {
                t.streak_from = Some(now);
            }
            t.last_answer = Some(now);
        }
    }

    pub fn reachable(&self, i: usize, now: Instant) -> bool {
        let Some(t) = self.targets.get(i) else { return false };
        let hold = if self.ever_lost { self.hold } else { Duration::ZERO };
        self.answering(t, now) && t.streak_from.is_some_and(|s| now.saturating_duration_since(s) >= hold)
    }

    /// How many targets are reachable now.
    pub fn count(&self, now: Instant) -> u32 {
        (0..self.targets.len()).filter(|&i| self.reachable(i, now)).count() as u32
    }

    /// The next instant the count may change without a probe: an answer expiring,
    /// or a streak completing its hold-down.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let hold = if self.ever_lost { self.hold } else { Duration::ZERO };
        self.targets
            .iter()
            .flat_map(|t| [t.last_answer.map(|a| a + self.timeout), t.streak_from.map(|s| s + hold)])
            .flatten()
            .filter(|t| *t > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_target_is_reachable_until_its_answer_is_timeout_old() {
        let t0 = Instant::now();
        let mut r = Reach::new(2, MS(500), MS(1000));
        assert_eq!(r.count(t0), 0, "nothing answered yet: unreachable");
        r.on_probe(0, true, t0);
        assert_eq!(
            r.count(t0 + MS(499)),
            1,
            "answered from the first probe: counts at once"
        );
        r.on_probe(1, false, t0);
        assert_eq!(r.next_change(t0), Some(t0 + MS(500)));
        assert_eq!(r.count(t0 + MS(500)), 0);
        // An unanswered probe does not erase a recent answer.
        let mut r = Reach::new(2, MS(500), MS(1000));
        r.on_probe(1, true, t0);
        r.on_probe(1, false, t0 + MS(100));
        assert!(r.reachable(1, t0 + MS(200)));
    }

    #[test]
    fn after_a_loss_a_target_counts_again_only_after_the_hold_down() {
        let t0 = Instant::now();
        let mut r = Reach::new(1, MS(300), MS(1000));
        r.on_probe(0, true, t0);
        r.on_probe(0, false, t0 + MS(400));
        assert_eq!(r.count(t0 + MS(400)), 0);
        let back = t0 + MS(2000);
        r.on_probe(0, true, back);
        assert_eq!(r.count(back), 0, "back, but held down");
        assert_eq!(r.next_change(back), Some(back + MS(300)));
        for k in 1..=10 {
            r.on_probe(0, true, back + MS(100 * k));
        }
        assert_eq!(r.count(back + MS(999)), 0);
        assert_eq!(r.count(back + MS(1000)), 1);
    }

    #[test]
    fn answers_after_unanswered_first_probes_are_held_down() {
        // Booted into isolation: nothing answers; then the target answers first,
        // before the peer's keepalives. It must not count at once.
        let t0 = Instant::now();
        let mut r = Reach::new(1, MS(300), MS(1000));
        for k in 0..30 {
            r.on_probe(0, false, t0 + MS(100 * k));
        }
        let back = t0 + MS(3000);
        r.on_probe(0, true, back);
        assert_eq!(r.count(back), 0, "first answer since boot, held down");
        for k in 1..=10 {
            r.on_probe(0, true, back + MS(100 * k));
        }
        assert_eq!(r.count(back + MS(999)), 0);
        assert_eq!(r.count(back + MS(1000)), 1, "counts after one hold-down");
    }
}
