//! Generation identifiers and the connect-time decision, as DRBD 8.4 makes it for
//! two nodes (`drbd_uuid_compare` and `drbd_sync_handshake` in the kernel's
//! drivers/block/drbd/drbd_receiver.c), as a pure function.
//!
//! Each node keeps a tuple of 64-bit UUIDs: the *current* generation of its data,
//! the *bitmap* generation its dirty map tracks changes against (0 while in sync),
//! and two *history* generations. Bit 0 of a UUID says "written while Primary" and
//! is ignored in comparisons. Comparing the two tuples at connect tells who has the
//! newer data, whether the dirty maps are enough to bring the other up to date, or
//! that both wrote since they parted: split brain, which the replica never resolves
//! on its own (pairbeatd's split-brain policy does, by telling the loser to discard
//! its data).
//!
//! The rules are checked in DRBD's order, first match wins, and each decision names
//! its rule number so that logs and status read like DRBD's
//! (`uuid_compare()=-1 by rule 50`).

use std::fmt;

/// The current UUID of a freshly created device.
pub const UUID_JUST_CREATED: u64 = 4;
/// Bit 0: the generation was written while this node was Primary.
pub const UUID_PRIMARY: u64 = 1;
/// A resync start derives the new bitmap UUID as old + this, so a node that crashed
/// before its peer learnt the new one can recognise it (rules 51 and 71).
pub const UUID_NEW_BM_OFFSET: u64 = 1 << 48;

/// One node's generation identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gi {
    pub current: u64,
    pub bitmap: u64,
    pub history: [u64; 2],
}

impl Gi {
    /// A device nobody has written yet.
    pub fn just_created() -> Self {
        Gi {
            current: UUID_JUST_CREATED,
            ..Gi::default()
        }
    }

    /// A new data generation, as DRBD makes one when a disconnected node is promoted
    /// or a Primary loses its peer: the old current becomes the bitmap UUID, so the
    /// dirty map since then can bring the peer up to date. When the bitmap UUID is
    /// already set it tracks changes since the last common generation, and nothing
    /// changes (DRBD guards `drbd_uuid_new_current` the same way). Returns whether a
    /// new generation was made.
    pub fn new_current(&mut self, fresh: u64, primary: bool) -> bool {
        if self.bitmap != 0 {
            self.set_primary_bit(primary);
            return false;
        }
        self.bitmap = self.current;
        self.current = fresh & !UUID_PRIMARY;
        self.set_primary_bit(primary);
        true
    }

    /// A forced new generation (`primary --force`): the old current becomes the
    /// bitmap UUID whatever it held, as DRBD's forced promotion does.
    pub fn force_new_current(&mut self, fresh: u64, primary: bool) {
        self.bitmap = self.current & !UUID_PRIMARY;
        self.current = fresh & !UUID_PRIMARY;
        self.set_primary_bit(primary);
    }

    /// Start of a resync on the source: the bitmap UUID moves to history and a new
    /// one derived from it (see [`UUID_NEW_BM_OFFSET`]) takes its place. Returns the
    /// sync UUID the target adopts as its current.
    pub fn start_resync_as_source(&mut self) -> u64 {
        let old = self.bitmap;
        self.push_history(old);
        self.bitmap = (old & !UUID_PRIMARY).wrapping_add(UUID_NEW_BM_OFFSET);
        self.bitmap
    }

    /// End of a resync on the source: the bitmap UUID moves to history and the map is
    /// empty.
    pub fn finish_resync_as_source(&mut self) {
        let bm = self.bitmap;
        self.push_history(bm);
        self.bitmap = 0;
    }

    fn push_history(&mut self, uuid: u64) {
        if uuid != 0 {
            self.history = [uuid, self.history[0]];
        }
    }

    /// Sets or clears the Primary bit of the current UUID.
    pub fn set_primary_bit(&mut self, primary: bool) {
        self.current = (self.current & !UUID_PRIMARY) | if primary { UUID_PRIMARY } else { 0 };
    }
}

impl fmt::Display for Gi {
    /// DRBD's notation: `current:bitmap:history0:history1` in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016X}:{:016X}:{:016X}:{:016X}",
            self.current, self.bitmap, self.history[0], self.history[1]
        )
    }
}

impl std::str::FromStr for Gi {
    type Err = String;

    /// Parses DRBD's notation (as in `drbdadm show-gi` and kernel logs).
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        if parts.len() != 4 {
            return Err(format!("`{s}`: a generation tuple is four hex UUIDs joined by `:`"));
        }
        let mut v = [0u64; 4];
        for (i, p) in parts.iter().enumerate() {
            v[i] = u64::from_str_radix(p, 16).map_err(|_| format!("`{p}` is not a hex UUID"))?;
        }
        Ok(Gi {
            current: v[0],
            bitmap: v[1],
            history: [v[2], v[3]],
        })
    }
}

/// The disk states, in DRBD's order (a `>` comparison means "better data").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskState {
    /// No usable backing store.
    Diskless,
    /// Partly obsolete: a new device, or a sync target in the middle of a resync.
    Inconsistent,
    /// Consistent but known stale (the peer outdated it).
    Outdated,
    /// Consistent, but up to date or not is unknown until the peer is heard.
    Consistent,
    UpToDate,
}

impl DiskState {
    pub fn name(self) -> &'static str {
        match self {
            DiskState::Diskless => "Diskless",
            DiskState::Inconsistent => "Inconsistent",
            DiskState::Outdated => "Outdated",
            DiskState::Consistent => "Consistent",
            DiskState::UpToDate => "UpToDate",
        }
    }
}

impl fmt::Display for DiskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one side brings to the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    pub gi: Gi,
    pub disk: DiskState,
    /// Primary right now.
    pub primary: bool,
    /// The metadata said Primary at attach: this node crashed while Primary.
    pub crashed_primary: bool,
    /// The operator (or pairbeatd's split-brain policy) told this side to give up
    /// its data at the next split brain.
    pub discard_my_data: bool,
}

/// DRBD's `uuid_compare` result: who syncs from whom, how, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// 0: the same data.
    NoSync,
    /// 1 / 2: I am the source, from the dirty maps or in full.
    Source { full: bool },
    /// -1 / -2: I am the target.
    Target { full: bool },
    /// 100: both wrote since they parted, from a common parent (rule 90).
    SplitBrain,
    /// -100: split brain with an old common ancestor, or both Primary with equal
    /// unrotated UUIDs.
    SplitBrainOld,
    /// -1000: nothing in common.
    Unrelated,
}

impl Compare {
    /// DRBD's number for it, for logs.
    pub fn code(self) -> i32 {
        match self {
            Compare::NoSync => 0,
            Compare::Source { full: false } => 1,
            Compare::Source { full: true } => 2,
            Compare::Target { full: false } => -1,
            Compare::Target { full: true } => -2,
            Compare::SplitBrain => 100,
            Compare::SplitBrainOld => -100,
            Compare::Unrelated => -1000,
        }
    }

    /// The peer's view of the same comparison.
    pub fn mirror(self) -> Self {
        match self {
            Compare::Source { full } => Compare::Target { full },
            Compare::Target { full } => Compare::Source { full },
            other => other,
        }
    }
}

/// A comparison, the rule that decided it, and the corrections the rule made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    pub result: Compare,
    pub rule: u8,
    /// My own tuple as corrected by rule 34 or 71 (a resync end or start I missed
    /// persisting); the caller persists it.
    pub corrected_self: Option<Gi>,
    /// The peer's tuple as corrected by rule 35 or 51 (it corrects itself by the
    /// mirror rule on its side).
    pub corrected_peer: Option<Gi>,
}

fn m(u: u64) -> u64 {
    u & !UUID_PRIMARY
}

/// DRBD 8.4's `drbd_uuid_compare` for two nodes. `i_resolve_conflicts` is the
/// tie-break when both crashed while Primary with equal data (rule 40): exactly one
/// side of a connection has it (pairbeat gives it to the node that listens), and
/// that side becomes the target.
pub fn compare(me: &Side, peer: &Side, i_resolve_conflicts: bool) -> Comparison {
    let mut c = Comparison {
        result: Compare::Unrelated,
        rule: 0,
        corrected_self: None,
        corrected_peer: None,
    };
    let done = |c: &mut Comparison, rule: u8, result: Compare| {
        c.rule = rule;
        c.result = result;
        *c
    };
    let (mine, theirs) = (me.gi, peer.gi);
    let (s, p) = (m(mine.current), m(theirs.current));

    if s == UUID_JUST_CREATED && p == UUID_JUST_CREATED {
        return done(&mut c, 10, Compare::NoSync);
    }
    if (s == UUID_JUST_CREATED || s == 0) && p != UUID_JUST_CREATED {
        return done(&mut c, 20, Compare::Target { full: true });
    }
    if s != UUID_JUST_CREATED && (p == UUID_JUST_CREATED || p == 0) {
        return done(&mut c, 30, Compare::Source { full: true });
    }

    if s == p {
        if theirs.bitmap == 0 && mine.bitmap != 0 {
            // I was the SyncSource and the resync finished; did I miss recording it?
            if m(mine.bitmap) == m(theirs.history[0]) && m(mine.history[0]) == m(theirs.history[1]) {
                let mut fixed = mine;
                fixed.finish_resync_as_source();
                c.corrected_self = Some(fixed);
                return done(&mut c, 34, Compare::Source { full: false });
            }
            // The peer failed to write the sync UUID: still my target.
            return done(&mut c, 36, Compare::Source { full: false });
        }
        if mine.bitmap == 0 && theirs.bitmap != 0 {
            if m(mine.history[0]) == m(theirs.bitmap) && m(mine.history[1]) == m(theirs.history[0]) {
                let mut fixed = theirs;
                fixed.finish_resync_as_source();
                c.corrected_peer = Some(fixed);
                return done(&mut c, 35, Compare::Target { full: false });
            }
            return done(&mut c, 37, Compare::Target { full: false });
        }
        // Equal generations, no bitmap: a link hiccup, or a common power failure.
        let rct = u8::from(me.crashed_primary) + 2 * u8::from(peer.crashed_primary);
        if rct == 0 {
            return done(&mut c, 40, Compare::NoSync);
        }
        if me.primary || peer.primary {
            // Equal unrotated UUIDs with a Primary present: I/O was frozen, so no
            // new generation was made; the Primary has the newer writes.
            return match (me.primary, peer.primary) {
                (true, true) => done(&mut c, 41, Compare::SplitBrainOld),
                (true, false) => done(&mut c, 41, Compare::Source { full: false }),
                _ => done(&mut c, 41, Compare::Target { full: false }),
            };
        }
        // Both Secondary after a simultaneous hard crash: the crashed Primary is
        // the source, the dirty maps cover what it may have written alone.
        let result = match rct {
            1 => Compare::Source { full: false },
            2 => Compare::Target { full: false },
            _ if i_resolve_conflicts => Compare::Target { full: false },
            _ => Compare::Source { full: false },
        };
        return done(&mut c, 40, result);
    }

    // The peer moved on from my generation (it became Primary while I was away):
    // its dirty map holds what I miss.
    if s == m(theirs.bitmap) {
        return done(&mut c, 50, Compare::Target { full: false });
    }
    if s == m(theirs.history[0]) && m(theirs.history[0]).wrapping_add(UUID_NEW_BM_OFFSET) == m(theirs.bitmap) {
        // The peer started a resync as source and I never got its sync UUID:
        // undo that start on its tuple.
        let fixed = Gi {
            bitmap: theirs.history[0],
            history: [theirs.history[1], theirs.history[1]],
            ..theirs
        };
        c.corrected_peer = Some(fixed);
        return done(&mut c, 51, Compare::Target { full: false });
    }
    if theirs.history.iter().any(|&h| m(h) == s) {
        // A common ancestor, but the peer's map does not reach back to it.
        return done(&mut c, 60, Compare::Target { full: true });
    }
    if m(mine.bitmap) == p {
        return done(&mut c, 70, Compare::Source { full: false });
    }
    if m(mine.history[0]) == p && m(mine.history[0]).wrapping_add(UUID_NEW_BM_OFFSET) == m(mine.bitmap) {
        let fixed = Gi {
            bitmap: mine.history[0],
            history: [mine.history[1], mine.history[1]],
            ..mine
        };
        c.corrected_self = Some(fixed);
        return done(&mut c, 71, Compare::Source { full: false });
    }
    if mine.history.iter().any(|&h| m(h) == p) {
        return done(&mut c, 80, Compare::Source { full: true });
    }
    if m(mine.bitmap) == m(theirs.bitmap) && m(mine.bitmap) != 0 {
        return done(&mut c, 90, Compare::SplitBrain);
    }
    // DRBD compares the histories only, and counts two zero entries as a match;
    // here any non-zero generation the two ancestries (bitmap and history) share
    // is a common ancestor, and zeros are no evidence. So a side whose old
    // bitmap UUID sits in the other's history is found too (both moved on from it).
    let ancestry = |g: &Gi| [g.bitmap, g.history[0], g.history[1]];
    let shared = ancestry(&mine)
        .iter()
        .any(|&a| m(a) != 0 && ancestry(&theirs).iter().any(|&b| m(a) == m(b)));
    if shared {
        return done(&mut c, 100, Compare::SplitBrainOld);
    }
    done(&mut c, 0, Compare::Unrelated)
}

/// What the connection becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Connected, nothing to resync (dirty bits from either side are still merged
    /// and resynced from the Primary side: equal UUIDs do not prove equal data).
    Connected,
    SyncSource {
        full: bool,
    },
    SyncTarget {
        full: bool,
    },
    /// Both wrote since they parted. Nothing is synced; the connection goes
    /// StandAlone until one side is told to discard its data.
    SplitBrain,
    /// The handshake is refused: no shared history, or a direction the roles or
    /// disk states forbid.
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing in common: another resource, or a re-created device.
    Unrelated,
    /// The rules make me the source, but my data is Inconsistent.
    SourceInconsistent,
    /// The rules make me the target, but I am a Primary with consistent data
    /// (DRBD's rr-conflict `disconnect`).
    TargetWhilePrimary,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Unrelated => {
                "unrelated data: the two replicas share no generation (another resource, or a device created anew)"
            }
            Refusal::SourceInconsistent => "this node would become SyncSource, but its data is Inconsistent",
            Refusal::TargetWhilePrimary => {
                "this node would become SyncTarget, but it is Primary with consistent data; demote it first"
            }
        })
    }
}

/// The whole decision with its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub handshake: Handshake,
    pub comparison: Comparison,
    /// The disk states decided the direction (exactly one side Inconsistent).
    pub by_disk_states: bool,
    /// A split brain was resolved by a `discard_my_data` flag.
    pub by_discard: bool,
}

/// DRBD 8.4's `drbd_sync_handshake` with every after-split-brain policy at
/// `disconnect` (pairbeatd owns that choice) and `rr-conflict disconnect`.
pub fn handshake(me: &Side, peer: &Side, i_resolve_conflicts: bool) -> Decision {
    let comparison = compare(me, peer, i_resolve_conflicts);
    let mut d = Decision {
        handshake: Handshake::Refused(Refusal::Unrelated),
        comparison,
        by_disk_states: false,
        by_discard: false,
    };
    let mut hg = comparison.result;
    if hg == Compare::Unrelated {
        return d;
    }
    // Disk states override the UUIDs when exactly one side is Inconsistent.
    let (mine, theirs) = (me.disk, peer.disk);
    if (mine == DiskState::Inconsistent && theirs > DiskState::Inconsistent)
        || (theirs == DiskState::Inconsistent && mine > DiskState::Inconsistent)
    {
        let full = matches!(
            hg,
            Compare::SplitBrainOld | Compare::Source { full: true } | Compare::Target { full: true }
        );
        hg = if mine > DiskState::Inconsistent {
            Compare::Source { full }
        } else {
            Compare::Target { full }
        };
        d.by_disk_states = true;
    }
    if matches!(hg, Compare::SplitBrain | Compare::SplitBrainOld) {
        // Resolved only by a discard flag on exactly one side. An old common
        // ancestor (rule 100) gets a full sync: its dirty map does not reach back
        // to where the two parted (DRBD would use the map; we do not trust it).
        let full = hg == Compare::SplitBrainOld;
        hg = match (me.discard_my_data, peer.discard_my_data) {
            (true, false) => Compare::Target { full },
            (false, true) => Compare::Source { full },
            _ => {
                d.handshake = Handshake::SplitBrain;
                return d;
            }
        };
        d.by_discard = true;
    }
    d.handshake = match hg {
        Compare::Source { .. } if me.disk <= DiskState::Inconsistent => Handshake::Refused(Refusal::SourceInconsistent),
        Compare::Target { .. } if me.primary && me.disk >= DiskState::Consistent => {
            Handshake::Refused(Refusal::TargetWhilePrimary)
        }
        Compare::Source { full } => Handshake::SyncSource { full },
        Compare::Target { full } => Handshake::SyncTarget { full },
        _ => Handshake::Connected,
    };
    d
}

/// Disk state at attach, from the persisted flags (DRBD's `drbd_adm_attach`):
/// Inconsistent unless CONSISTENT; Outdated unless WAS_UP_TO_DATE; Consistent,
/// which is UpToDate when the peer is known Outdated or fencing does not care.
pub fn disk_at_attach(consistent: bool, was_up_to_date: bool, peer_outdated: bool, dont_care: bool) -> DiskState {
    if !consistent {
        DiskState::Inconsistent
    } else if !was_up_to_date {
        DiskState::Outdated
    } else if peer_outdated || dont_care {
        DiskState::UpToDate
    } else {
        DiskState::Consistent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 0xA000_0000_0000_0010;
    const B: u64 = 0xB000_0000_0000_0020;
    const C: u64 = 0xC000_0000_0000_0030;
    const D: u64 = 0xD000_0000_0000_0040;
    const E: u64 = 0xE000_0000_0000_0050;

    fn gi(current: u64, bitmap: u64, h0: u64, h1: u64) -> Gi {
        Gi {
            current,
            bitmap,
            history: [h0, h1],
        }
    }

    fn side(gi: Gi) -> Side {
        Side {
            gi,
            disk: DiskState::UpToDate,
            primary: false,
            crashed_primary: false,
            discard_my_data: false,
        }
    }

    fn cmp(me: Side, peer: Side) -> (Compare, u8) {
        let c = compare(&me, &peer, false);
        // Whatever one side concludes, the other concludes the mirror image (the
        // crashed-primary tie-break aside, which needs the resolve flag mirrored).
        let back = compare(&peer, &me, true);
        assert_eq!(
            back.result,
            c.result.mirror(),
            "mirror of rule {} (me {:?}, peer {:?})",
            c.rule,
            me.gi,
            peer.gi
        );
        (c.result, c.rule)
    }

    use Compare::*;

    /// Every row of DRBD 8.4's table, each with its rule number.
    #[test]
    fn every_rule_of_the_table() {
        let jc = Gi::just_created();
        let rows: Vec<(&str, Side, Side, Compare, u8)> = vec![
            ("fresh pair", side(jc), side(jc), NoSync, 10),
            (
                "I am new, the peer has data",
                side(jc),
                side(gi(A, 0, 0, 0)),
                Target { full: true },
                20,
            ),
            (
                "I was wiped (current 0)",
                side(gi(0, 0, 0, 0)),
                side(gi(A, 0, 0, 0)),
                Target { full: true },
                20,
            ),
            (
                "the peer is new",
                side(gi(A, 0, 0, 0)),
                side(jc),
                Source { full: true },
                30,
            ),
            (
                "I was SyncSource and missed recording the end",
                side(gi(A, B, C, D)),
                side(gi(A, 0, B, C)),
                Source { full: false },
                34,
            ),
            (
                "the peer missed recording the end of my resync as target",
                side(gi(A, 0, B, C)),
                side(gi(A, B, C, D)),
                Target { full: false },
                35,
            ),
            (
                "I was SyncSource, the peer failed to write the sync UUID",
                side(gi(A, B, E, 0)),
                side(gi(A, 0, C, 0)),
                Source { full: false },
                36,
            ),
            (
                "I was SyncTarget and failed to write the sync UUID",
                side(gi(A, 0, C, 0)),
                side(gi(A, B, E, 0)),
                Target { full: false },
                37,
            ),
            (
                "a link hiccup",
                side(gi(A, 0, B, 0)),
                side(gi(A | 1, 0, B, 0)),
                NoSync,
                40,
            ),
            (
                "both crashed, I was the Primary",
                Side {
                    crashed_primary: true,
                    ..side(gi(A, 0, 0, 0))
                },
                side(gi(A, 0, 0, 0)),
                Source { full: false },
                40,
            ),
            (
                "both crashed, the peer was the Primary",
                side(gi(A, 0, 0, 0)),
                Side {
                    crashed_primary: true,
                    ..side(gi(A, 0, 0, 0))
                },
                Target { full: false },
                40,
            ),
            (
                "crashed primary flag, I am Primary now, I/O was frozen",
                Side {
                    primary: true,
                    ..side(gi(A, 0, 0, 0))
                },
                Side {
                    crashed_primary: true,
                    ..side(gi(A, 0, 0, 0))
                },
                Source { full: false },
                41,
            ),
            (
                "crashed primary flag, the peer is Primary now",
                Side {
                    crashed_primary: true,
                    ..side(gi(A, 0, 0, 0))
                },
                Side {
                    primary: true,
                    ..side(gi(A, 0, 0, 0))
                },
                Target { full: false },
                41,
            ),
            (
                "equal unrotated UUIDs and both Primary",
                Side {
                    primary: true,
                    crashed_primary: true,
                    ..side(gi(A, 0, 0, 0))
                },
                Side {
                    primary: true,
                    ..side(gi(A, 0, 0, 0))
                },
                SplitBrainOld,
                41,
            ),
            (
                "the peer became Primary while I was away",
                side(gi(A, 0, 0, 0)),
                side(gi(B | 1, A, 0, 0)),
                Target { full: false },
                50,
            ),
            (
                "the peer's sync UUID never reached me",
                side(gi(A, 0, 0, 0)),
                side(gi(B, A + UUID_NEW_BM_OFFSET, A, C)),
                Target { full: false },
                51,
            ),
            (
                "my generation is in the peer's history",
                side(gi(A, 0, 0, 0)),
                side(gi(B, 0, C, A)),
                Target { full: true },
                60,
            ),
            (
                "I moved on while the peer was away",
                side(gi(B | 1, A, 0, 0)),
                side(gi(A, 0, 0, 0)),
                Source { full: false },
                70,
            ),
            (
                "my sync UUID never reached the peer",
                side(gi(B, A + UUID_NEW_BM_OFFSET, A, C)),
                side(gi(A, 0, 0, 0)),
                Source { full: false },
                71,
            ),
            (
                "the peer's generation is in my history",
                side(gi(B, 0, C, A)),
                side(gi(A, 0, 0, 0)),
                Source { full: true },
                80,
            ),
            (
                "both wrote since they parted",
                side(gi(B | 1, A, C, 0)),
                side(gi(D | 1, A | 1, C, 0)),
                SplitBrain,
                90,
            ),
            (
                "split brain, only an old ancestor in common",
                side(gi(B, C, E, 0)),
                side(gi(D, A, E, 0)),
                SplitBrainOld,
                100,
            ),
            (
                "both moved on from a generation one keeps as bitmap, the other in history",
                side(gi(B, E, C, 0)),
                side(gi(D, C, 0, 0)),
                SplitBrainOld,
                100,
            ),
            (
                "nothing in common",
                side(gi(A, B, 0, 0)),
                side(gi(C, D, 0, 0)),
                Unrelated,
                0,
            ),
        ];
        for (what, me, peer, want, rule) in rows {
            assert_eq!(cmp(me, peer), (want, rule), "{what}");
        }
    }

    #[test]
    fn the_corrections_of_rules_34_35_51_71_undo_what_a_crash_left_half_done() {
        let c = compare(&side(gi(A, B, C, D)), &side(gi(A, 0, B, C)), false);
        assert_eq!(c.corrected_self, Some(gi(A, 0, B, C)), "34 finishes my resync end");
        let c = compare(&side(gi(A, 0, B, C)), &side(gi(A, B, C, D)), false);
        assert_eq!(c.corrected_peer, Some(gi(A, 0, B, C)), "35 corrects the peer");
        let c = compare(&side(gi(A, 0, 0, 0)), &side(gi(B, A + UUID_NEW_BM_OFFSET, A, C)), false);
        assert_eq!(
            c.corrected_peer,
            Some(gi(B, A, C, C)),
            "51 undoes the peer's resync start"
        );
        let c = compare(&side(gi(B, A + UUID_NEW_BM_OFFSET, A, C)), &side(gi(A, 0, 0, 0)), false);
        assert_eq!(c.corrected_self, Some(gi(B, A, C, C)), "71 undoes my resync start");
    }

    #[test]
    fn both_crashed_primaries_are_split_by_the_resolve_flag_and_agree() {
        let me = Side {
            crashed_primary: true,
            ..side(gi(A, 0, 0, 0))
        };
        let peer = Side {
            crashed_primary: true,
            ..side(gi(A, 0, 0, 0))
        };
        assert_eq!(compare(&me, &peer, true).result, Target { full: false });
        assert_eq!(compare(&peer, &me, false).result, Source { full: false });
    }

    /// Seed 003's kernel log (DRBD 8.3): "Split-Brain detected, dropping connection!"
    #[test]
    fn the_seed_003_tuples_are_a_split_brain_by_rule_90() {
        let me: Gi = "055F46EA3829909E:899EC0EBD8690AFD:FEA4014923297FC8:3435CD2BACCECFCB"
            .parse()
            .unwrap();
        let peer: Gi = "7E18F3FEEA113778:899EC0EBD8690AFC:FEA4014923297FC8:3435CD2BACCECFCB"
            .parse()
            .unwrap();
        let c = compare(&side(me), &side(peer), false);
        assert_eq!((c.result, c.rule), (SplitBrain, 90));
        let d = handshake(&side(me), &side(peer), false);
        assert_eq!(d.handshake, Handshake::SplitBrain);
        assert_eq!(
            me.to_string(),
            "055F46EA3829909E:899EC0EBD8690AFD:FEA4014923297FC8:3435CD2BACCECFCB"
        );
        // The bitmap UUID's primary bit: this side was Primary in the generation
        // before the split (what discard-younger-primary reads).
        assert_eq!(me.bitmap & UUID_PRIMARY, 1);
        assert!("0:1:2".parse::<Gi>().is_err() && "x:0:0:0".parse::<Gi>().is_err());
    }

    #[test]
    fn disk_states_override_the_uuids_when_one_side_is_inconsistent() {
        // The UUIDs say I am the target, but the peer is Inconsistent (a resync into
        // it was interrupted): I become the source.
        let me = side(gi(A, 0, 0, 0));
        let peer = Side {
            disk: DiskState::Inconsistent,
            ..side(gi(B | 1, A, 0, 0))
        };
        let d = handshake(&me, &peer, false);
        assert_eq!(d.handshake, Handshake::SyncSource { full: false });
        assert!(d.by_disk_states);
        // From a full-sync rule, the override stays full.
        let peer = Side {
            disk: DiskState::Inconsistent,
            ..side(gi(B, 0, C, A))
        };
        assert_eq!(
            handshake(&me, &peer, false).handshake,
            Handshake::SyncSource { full: true }
        );
        // A split brain with one side Inconsistent is that side's loss, in full.
        let peer = Side {
            disk: DiskState::Inconsistent,
            ..side(gi(D, C, E, 0))
        };
        let me = side(gi(B, A, E, 0));
        assert_eq!(
            handshake(&me, &peer, false).handshake,
            Handshake::SyncSource { full: true }
        );
    }

    #[test]
    fn a_split_brain_waits_for_a_discard_flag_on_exactly_one_side() {
        let a = side(gi(B | 1, A, C, 0));
        let b = side(gi(D | 1, A | 1, C, 0));
        assert_eq!(handshake(&a, &b, false).handshake, Handshake::SplitBrain);
        let loser = Side {
            discard_my_data: true,
            ..b
        };
        assert_eq!(
            handshake(&loser, &a, false).handshake,
            Handshake::SyncTarget { full: false }
        );
        let d = handshake(&a, &loser, false);
        assert_eq!(d.handshake, Handshake::SyncSource { full: false });
        assert!(d.by_discard);
        let both = Side {
            discard_my_data: true,
            ..a
        };
        assert_eq!(handshake(&both, &loser, false).handshake, Handshake::SplitBrain);
        // Rule 100 (an old ancestor only): resolved in full.
        let old_a = side(gi(B, C, E, 0));
        let old_b = Side {
            discard_my_data: true,
            ..side(gi(D, A, E, 0))
        };
        assert_eq!(
            handshake(&old_b, &old_a, false).handshake,
            Handshake::SyncTarget { full: true }
        );
    }

    #[test]
    fn refusals_as_drbds() {
        let unrelated = handshake(&side(gi(A, B, 0, 0)), &side(gi(C, D, 0, 0)), false);
        assert_eq!(unrelated.handshake, Handshake::Refused(Refusal::Unrelated));
        // Rule 70 makes me the source, but my own data is Inconsistent and so is the peer's.
        let me = Side {
            disk: DiskState::Inconsistent,
            ..side(gi(B, A, 0, 0))
        };
        let peer = Side {
            disk: DiskState::Inconsistent,
            ..side(gi(A, 0, 0, 0))
        };
        assert_eq!(
            handshake(&me, &peer, false).handshake,
            Handshake::Refused(Refusal::SourceInconsistent)
        );
        // Rule 50 makes a Primary the target: rr-conflict, disconnect.
        let me = Side {
            primary: true,
            ..side(gi(A, 0, 0, 0))
        };
        let peer = side(gi(B, A, 0, 0));
        assert_eq!(
            handshake(&me, &peer, false).handshake,
            Handshake::Refused(Refusal::TargetWhilePrimary)
        );
    }

    #[test]
    fn generations_move_as_drbds() {
        let mut g = Gi::just_created();
        assert!(g.new_current(A, true));
        assert_eq!(g, gi(A | 1, UUID_JUST_CREATED, 0, 0));
        // Already diverging: the bitmap UUID stays, no second generation.
        assert!(!g.new_current(B, true));
        assert_eq!(g.current, A | 1);
        let sync = g.start_resync_as_source();
        assert_eq!(sync, UUID_JUST_CREATED + UUID_NEW_BM_OFFSET);
        assert_eq!(g, gi(A | 1, sync, UUID_JUST_CREATED, 0));
        g.finish_resync_as_source();
        assert_eq!(g, gi(A | 1, 0, sync, UUID_JUST_CREATED));
        g.set_primary_bit(false);
        assert_eq!(g.current, A);
    }

    #[test]
    fn the_disk_state_at_attach_follows_the_flags() {
        assert_eq!(disk_at_attach(false, true, true, true), DiskState::Inconsistent);
        assert_eq!(disk_at_attach(true, false, true, true), DiskState::Outdated);
        assert_eq!(disk_at_attach(true, true, false, false), DiskState::Consistent);
        assert_eq!(disk_at_attach(true, true, true, false), DiskState::UpToDate);
        assert_eq!(disk_at_attach(true, true, false, true), DiskState::UpToDate);
    }
}
