//! Replay and order checks per sender, as Heartbeat's `should_drop_message` does,
//! tightened: a packet is fresh only if its generation is the sender's newest and
//! its sequence number has not been seen. Packets arrive once per link, so a
//! duplicate is normal (the second copy of a fresh packet), not an attack.

/// How many recent sequence numbers are remembered to spot duplicates.
const WINDOW: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New and in order (or after a gap of `lost` packets).
    Fresh { lost: u64 },
    /// The first packet of a new generation: the sender restarted.
    Restarted { previous: Option<u64> },
    /// Already seen (e.g. the copy from the other link).
    Duplicate,
    /// Older than the window, or from an older generation: a replay.
    Replay,
}

/// What we know of one sender's stream.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    generation: Option<u64>,
    highest: u64,
    /// Bit i set: sequence `highest - i` was seen.
    seen: [u64; (WINDOW / 64) as usize],
}

impl SeqTracker {
    /// Starts from the peer's (generation, sequence) remembered before our own restart,
    /// if any: packets from an older life of the peer, or at or below that sequence
    /// number, are refused even now.
    pub fn with_floor(floor: Option<(u64, u64)>) -> Self {
        match floor {
            None => SeqTracker::default(),
            // Everything up to `seq` counts as seen.
            Some((generation, seq)) => SeqTracker {
                generation: Some(generation),
                highest: seq,
                seen: [u64::MAX; (WINDOW / 64) as usize],
            },
        }
    }

    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// The highest sequence number seen in the current generation (0: none yet).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Classifies (generation, seq) and records it when fresh.
    pub fn check(&mut self, generation: u64, seq: u64) -> Verdict {
        match self.generation {
            Some(g) if generation < g => return Verdict::Replay,
            Some(g) if generation == g && self.highest != 0 => {}
            previous => {
                // First packet heard, or the first of a new generation.
                // A new generation (or the first we hear, or the first after a floor).
                let restarted = previous.is_none_or(|g| generation > g);
                self.generation = Some(generation);
                self.highest = seq;
                self.seen = Default::default();
                self.seen[0] = 1;
                return if restarted {
                    Verdict::Restarted { previous }
                } else {
                    Verdict::Fresh { lost: 0 }
                };
            }
        }
        if seq > self.highest {
            let lost = seq - self.highest - 1;
            self.shift(seq - self.highest);
            self.highest = seq;
            self.seen[0] |= 1;
            return Verdict::Fresh { lost };
        }
        let age = self.highest - seq;
        if age >= WINDOW {
            return Verdict::Replay;
        }
        let (word, bit) = ((age / 64) as usize, age % 64);
        if self.seen[word] & (1 << bit) != 0 {
            Verdict::Duplicate
        } else {
            // Late but unseen (reordered): accept once.
            self.seen[word] |= 1 << bit;
            Verdict::Fresh { lost: 0 }
        }
    }

    /// Ages the window by `n` positions.
    fn shift(&mut self, n: u64) {
        if n >= WINDOW {
            self.seen = Default::default();
            return;
        }
        let words = (n / 64) as usize;
        let bits = n % 64;
        let len = self.seen.len();
        for i in (0..len).rev() {
            let src = i.checked_sub(words);
            let lo = src.map(|s| self.seen[s]).unwrap_or(0);
            let carry = src.and_then(|s| s.checked_sub(1)).map(|s| self.seen[s]).unwrap_or(0);
            self.seen[i] = if bits == 0 {
                lo
            } else {
                (lo << bits) | (carry >> (64 - bits))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicates_gaps_and_reorder() {
        let mut t = SeqTracker::default();
        assert_eq!(t.check(7, 1), Verdict::Restarted { previous: None });
        assert_eq!(t.check(7, 2), Verdict::Fresh { lost: 0 });
        assert_eq!(t.check(7, 2), Verdict::Duplicate);
        assert_eq!(t.check(7, 5), Verdict::Fresh { lost: 2 });
        assert_eq!(t.check(7, 4), Verdict::Fresh { lost: 0 }, "late but unseen");
        assert_eq!(t.check(7, 4), Verdict::Duplicate);
        assert_eq!(t.check(7, 1), Verdict::Duplicate);
    }

    #[test]
    fn old_generations_and_ancient_seqs_are_replays() {
        let mut t = SeqTracker::default();
        t.check(7, 1);
        assert_eq!(t.check(6, 100), Verdict::Replay);
        t.check(7, 1000);
        assert_eq!(t.check(7, 1000 - WINDOW), Verdict::Replay);
        assert_eq!(t.check(8, 1), Verdict::Restarted { previous: Some(7) });
        assert_eq!(t.check(7, 2000), Verdict::Replay);
    }

    #[test]
    fn a_remembered_floor_refuses_what_was_seen_before_our_restart() {
        let mut t = SeqTracker::with_floor(Some((9, 400)));
        assert_eq!(t.check(8, 500), Verdict::Replay, "older life");
        assert_eq!(t.check(9, 400), Verdict::Duplicate, "seen before the restart");
        assert_eq!(
            t.check(9, 390),
            Verdict::Duplicate,
            "inside the window: counted as seen"
        );
        assert_eq!(t.check(9, 100), Verdict::Replay, "below the window");
        assert_eq!(t.check(9, 401), Verdict::Fresh { lost: 0 }, "same life, new packet");
        assert_eq!(t.check(10, 1), Verdict::Restarted { previous: Some(9) });
    }

    #[test]
    fn window_shifts_across_word_boundaries() {
        let mut t = SeqTracker::default();
        t.check(1, 1);
        for s in [3u64, 70, 130, 200] {
            t.check(1, s);
        }
        for s in [1u64, 3, 70, 130, 200] {
            assert_eq!(t.check(1, s), Verdict::Duplicate, "seq {s}");
        }
        assert_eq!(t.check(1, 69), Verdict::Fresh { lost: 0 });
    }
}
