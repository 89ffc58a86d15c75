//! Which tie-break targets answered lately: a target is reachable while its last
//! answer is younger than the timeout. Pure: the instants are passed in.

use std::time::{Duration, Instant};

pub struct Reach {
    timeout: Duration,
    last_answer: Vec<Option<Instant>>,
}

impl Reach {
    pub fn new(targets: usize, timeout: Duration) -> Self {
        Reach {
            timeout,
            last_answer: vec![None; targets],
        }
    }

    pub fn len(&self) -> usize {
        self.last_answer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_answer.is_empty()
    }

    /// A probe of target `i` finished: answered or not.
    pub fn on_probe(&mut self, i: usize, answered: bool, now: Instant) {
        if answered {
            if let Some(t) = self.last_answer.get_mut(i) {
                *t = Some(now);
            }
        }
    }

    pub fn reachable(&self, i: usize, now: Instant) -> bool {
        self.last_answer
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|t| now.saturating_duration_since(t) < self.timeout)
    }

    /// How many targets are reachable now.
    pub fn count(&self, now: Instant) -> u32 {
        (0..self.last_answer.len()).filter(|&i| self.reachable(i, now)).count() as u32
    }

    /// When the next reachable target would expire without another answer.
    pub fn next_expiry(&self, now: Instant) -> Option<Instant> {
        self.last_answer
            .iter()
            .flatten()
            .map(|t| *t + self.timeout)
            .filter(|t| *t > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_reachable_until_its_answer_is_timeout_old() {
        let t0 = Instant::now();
        let mut r = Reach::new(2, Duration::from_millis(500));
        assert_eq!(r.count(t0), 0, "nothing answered yet: unreachable");
        r.on_probe(0, true, t0);
        r.on_probe(1, false, t0);
        assert_eq!(r.count(t0 + Duration::from_millis(499)), 1);
        assert_eq!(r.next_expiry(t0), Some(t0 + Duration::from_millis(500)));
        assert_eq!(r.count(t0 + Duration::from_millis(500)), 0);
        assert_eq!(r.next_expiry(t0 + Duration::from_millis(500)), None);
        // An unanswered probe does not erase a recent answer.
        r.on_probe(1, true, t0);
        r.on_probe(1, false, t0 + Duration::from_millis(100));
        assert!(r.reachable(1, t0 + Duration::from_millis(200)));
    }
}
