//! The replica's metadata file (`<backing>.meta` unless configured), so the backing
//! image stays a plain filesystem image.
//!
//! Two slots, written alternately; each holds the whole state (generations, flags,
//! the dirty-extent map) under one CRC32C, and the valid slot with the higher
//! sequence number wins. A torn or lost write of the newer slot leaves the older
//! one, which is what the disk held before that update began; since every update
//! is persisted (`pwrite` + `fdatasync`) before the event it guards (a new
//! generation before promotion returns, a dirty bit before the data write into its
//! extent), the older slot is never missing something that happened.
//!
//! The design brief kept the dirty map in place beside one superblock; keeping it
//! inside each slot costs a few KiB per update (10 GiB of 4 MiB extents is 320
//! bytes) and means no torn map write can clear a bit.
//!
//! Slot layout, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `PBRMETA1` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | CRC32C of the whole slot with this field zero |
//! | 16 | 8 | sequence number |
//! | 24 | 16 | resource UUID (both nodes of one replica share it) |
//! | 40 | 8 | size in bytes |
//! | 48 | 4 | extent size in bytes |
//! | 52 | 4 | node index (0 or 1, the order of `[cluster] nodes`) |
//! | 56 | 32 | current, bitmap, history 0, history 1 UUIDs |
//! | 88 | 4 | flags (DRBD 8.4's bit numbers where DRBD has one) |
//! | 92 | 4 | the last handshake's rule, for support |
//! | 96 | 8 | number of extents |
//! | 104 | 24 | reserved, zero |
//! | 128 | … | dirty map, one bit per extent |
//!
//! The slot is padded to a multiple of 4096 bytes; slot B starts where slot A ends.

use super::dirtymap::DirtyMap;
use super::gi::Gi;

pub const MAGIC: &[u8; 8] = b"PBRMETA1";
pub const VERSION: u32 = 1;
const HEADER: usize = 128;
const ALIGN: usize = 4096;

/// The persisted flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// The data is consistent (not in the middle of a resync as target).
    pub const CONSISTENT: u32 = 1 << 0;
    /// Primary at the time of writing: set at attach means a crashed Primary.
    pub const PRIMARY_IND: u32 = 1 << 1;
    pub const CONNECTED_IND: u32 = 1 << 2;
    pub const FULL_SYNC: u32 = 1 << 3;
    /// Clear means Outdated.
    pub const WAS_UP_TO_DATE: u32 = 1 << 4;
    /// The peer's data is known Outdated (this node outdated or fenced it).
    pub const PEER_OUTDATED: u32 = 1 << 5;
    pub const CRASHED_PRIMARY: u32 = 1 << 6;
    /// pairbeat's own: a split brain was detected and waits for a decision.
    pub const SPLIT_BRAIN_PENDING: u32 = 1 << 9;
    /// pairbeat's own: give up this side's data at the next split-brain handshake.
    pub const DISCARD_MY_DATA: u32 = 1 << 10;
    const KNOWN: u32 = 0x7f | Self::SPLIT_BRAIN_PENDING | Self::DISCARD_MY_DATA;

    pub fn has(self, f: u32) -> bool {
        self.0 & f != 0
    }

    pub fn set(&mut self, f: u32, on: bool) {
        if on {
            self.0 |= f;
        } else {
            self.0 &= !f;
        }
    }
}

/// Everything one slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub seq: u64,
    pub resource: [u8; 16],
    pub size: u64,
    pub extent: u32,
    pub node: u32,
    pub gi: Gi,
    pub flags: Flags,
    pub last_rule: u32,
    pub dirty: DirtyMap,
}

/// Why a slot does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("it is empty or not pairbeat replica metadata (no PBRMETA1 magic)")]
    Magic,
    #[error("format version {0} is not one this pairbeat reads (it reads {VERSION}); upgrade pairbeat")]
    Version(u32),
    #[error("its checksum does not match (a torn or corrupted write)")]
    Checksum,
    #[error("{0}")]
    Invalid(String),
}

/// Why a metadata file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error(
        "the file has {0} bytes, too short for pairbeat replica metadata; create it with `pairbeat replica create`"
    )]
    TooShort(usize),
    #[error("neither metadata slot is valid: slot A: {a}; slot B: {b}. Restore the file from a backup, or re-create the replica on this node with `pairbeat replica create` and let it resync from the peer")]
    NoValidSlot { a: SlotError, b: SlotError },
}

impl Meta {
    /// Metadata for a new device: just created, consistent-less (Inconsistent)
    /// unless the caller sets flags, every extent clean.
    pub fn create(resource: [u8; 16], size: u64, extent: u32, node: u32) -> Self {
        let extents = size.div_ceil(u64::from(extent.max(1)));
        Meta {
            seq: 0,
            resource,
            size,
            extent,
            node,
            gi: Gi::just_created(),
            flags: Flags::default(),
            last_rule: 0,
            dirty: DirtyMap::new(extents),
        }
    }

    /// How many extents a disk of this size has.
    pub fn extents(&self) -> u64 {
        self.dirty.len()
    }

    /// The size of one slot for `extents` extents.
    pub fn slot_size(extents: u64) -> usize {
        (HEADER + extents.div_ceil(8) as usize).div_ceil(ALIGN) * ALIGN
    }

    /// Where the slot for sequence number `seq` goes: even in A, odd in B.
    pub fn slot_offset(&self, seq: u64) -> u64 {
        (seq % 2) * Self::slot_size(self.extents()) as u64
    }

    /// The whole file's length.
    pub fn file_size(&self) -> u64 {
        2 * Self::slot_size(self.extents()) as u64
    }

    /// One slot's bytes, for `self.seq`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; Self::slot_size(self.extents())];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..40].copy_from_slice(&self.resource);
        b[40..48].copy_from_slice(&self.size.to_le_bytes());
        b[48..52].copy_from_slice(&self.extent.to_le_bytes());
        b[52..56].copy_from_slice(&self.node.to_le_bytes());
        let g = &self.gi;
        for (i, u) in [g.current, g.bitmap, g.history[0], g.history[1]].iter().enumerate() {
            b[56 + 8 * i..64 + 8 * i].copy_from_slice(&u.to_le_bytes());
        }
        b[88..92].copy_from_slice(&self.flags.0.to_le_bytes());
        b[92..96].copy_from_slice(&self.last_rule.to_le_bytes());
        b[96..104].copy_from_slice(&self.extents().to_le_bytes());
        let map = self.dirty.to_bytes();
        b[HEADER..HEADER + map.len()].copy_from_slice(&map);
        let crc = crc32c::crc32c(&b);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// One slot from the start of `b`.
    pub fn decode_slot(b: &[u8]) -> Result<Meta, SlotError> {
        if b.len() < HEADER || &b[0..8] != MAGIC {
            return Err(SlotError::Magic);
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(SlotError::Version(version));
        }
        let extents = u64_at(96);
        // A slot claiming more extents than a 1 PiB disk of 4 KiB extents would
        // have is garbage that passed the magic; refuse it before allocating.
        if extents > 1 << 38 {
            return Err(SlotError::Invalid(format!("it claims {extents} extents")));
        }
        let len = Self::slot_size(extents);
        if b.len() < len {
            return Err(SlotError::Checksum);
        }
        let mut copy = b[..len].to_vec();
        copy[12..16].fill(0);
        if crc32c::crc32c(&copy) != u32_at(12) {
            return Err(SlotError::Checksum);
        }
        let (size, extent) = (u64_at(40), u32_at(48));
        if extent == 0 || size.div_ceil(u64::from(extent)) != extents {
            return Err(SlotError::Invalid(format!(
                "size {size} in extents of {extent} bytes does not make {extents} extents"
            )));
        }
        let flags = u32_at(88);
        if flags & !Flags::KNOWN != 0 {
            return Err(SlotError::Invalid(format!(
                "unknown flags {:#x}: written by a newer pairbeat",
                flags & !Flags::KNOWN
            )));
        }
        let node = u32_at(52);
        if node > 1 {
            return Err(SlotError::Invalid(format!("node index {node} is not 0 or 1")));
        }
        let map_len = extents.div_ceil(8) as usize;
        let dirty = DirtyMap::from_bytes(extents, &b[HEADER..HEADER + map_len]).map_err(SlotError::Invalid)?;
        Ok(Meta {
            seq: u64_at(16),
            resource: b[24..40].try_into().expect("16 bytes"),
            size,
            extent,
            node,
            gi: Gi {
                current: u64_at(56),
                bitmap: u64_at(64),
                history: [u64_at(72), u64_at(80)],
            },
            flags: Flags(flags),
            last_rule: u32_at(92),
            dirty,
        })
    }

    /// The current state from a whole metadata file: the valid slot with the
    /// higher sequence number. Slot B's place follows from slot A's extent count
    /// when A is readable; otherwise every aligned offset is tried.
    pub fn decode(file: &[u8]) -> Result<Meta, MetaError> {
        if file.len() < 2 * ALIGN {
            return Err(MetaError::TooShort(file.len()));
        }
        let a = Self::decode_slot(file);
        let b = match &a {
            Ok(m) => Self::decode_slot(&file[Self::slot_size(m.extents()).min(file.len())..]),
            Err(_) => {
                // A's header is unreadable: B is where a file of this length puts it.
                Self::decode_slot(&file[(file.len() / 2).min(file.len())..])
            }
        };
        match (a, b) {
            (Ok(a), Ok(b)) => Ok(if b.seq > a.seq { b } else { a }),
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok(m),
            (Err(a), Err(b)) => Err(MetaError::NoValidSlot { a, b }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Meta {
        let mut m = Meta::create([7; 16], 10 << 30, 4 << 20, 1);
        m.gi = Gi {
            current: 0x1234_5679,
            bitmap: 4,
            history: [0xAB, 0],
        };
        m.flags
            .set(Flags::CONSISTENT | Flags::WAS_UP_TO_DATE | Flags::PRIMARY_IND, true);
        m.dirty.set(3);
        m.dirty.set(2559);
        m.last_rule = 50;
        m
    }

    /// Writes slot `m.seq` into a file image the way the shell does.
    fn write(file: &mut Vec<u8>, m: &Meta) {
        file.resize(m.file_size() as usize, 0);
        let at = m.slot_offset(m.seq) as usize;
        let bytes = m.encode();
        file[at..at + bytes.len()].copy_from_slice(&bytes);
    }

    #[test]
    fn a_slot_round_trips_and_the_newer_slot_wins() {
        let mut m = sample();
        assert_eq!(Meta::slot_size(m.extents()), 4096);
        let mut file = Vec::new();
        write(&mut file, &m);
        assert_eq!(Meta::decode(&file).unwrap(), m);
        m.seq = 1;
        m.dirty.set(100);
        write(&mut file, &m);
        assert_eq!(Meta::decode(&file).unwrap(), m);
        m.seq = 2;
        m.flags.set(Flags::PRIMARY_IND, false);
        write(&mut file, &m);
        let got = Meta::decode(&file).unwrap();
        assert_eq!((got.seq, got.flags.has(Flags::PRIMARY_IND)), (2, false));
    }

    #[test]
    fn a_torn_newer_slot_falls_back_to_the_older_one() {
        let mut m = sample();
        let mut file = Vec::new();
        write(&mut file, &m);
        let older = m.clone();
        m.seq = 1;
        m.dirty.set(9);
        write(&mut file, &m);
        // Half of slot B's write reached the disk.
        let b = m.slot_offset(1) as usize;
        file[b + 100..b + 4096].fill(0);
        assert_eq!(Meta::decode(&file).unwrap(), older);
        // A flipped bit anywhere in a slot is caught too.
        let mut one = Vec::new();
        write(&mut one, &older);
        one[200] ^= 1;
        let err = Meta::decode(&one).unwrap_err();
        assert!(err.to_string().contains("slot A: its checksum does not match"), "{err}");
    }

    #[test]
    fn garbage_gets_a_clear_error_never_a_panic() {
        assert!(matches!(Meta::decode(&[0; 10]), Err(MetaError::TooShort(10))));
        let err = Meta::decode(&[0u8; 8192]).unwrap_err().to_string();
        assert!(
            err.contains("no PBRMETA1 magic") && err.contains("pairbeat replica create"),
            "{err}"
        );
        let mut m = sample();
        let mut file = Vec::new();
        write(&mut file, &m);
        file[8] = 9; // version
        assert!(Meta::decode(&file)
            .unwrap_err()
            .to_string()
            .contains("format version 9"));
        // A valid checksum over nonsense fields is still refused.
        m.flags = Flags(1 << 20);
        let mut file = Vec::new();
        write(&mut file, &m);
        assert!(Meta::decode(&file).unwrap_err().to_string().contains("unknown flags"));
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut junk = vec![0u8; 8192 + (rng % 5000) as usize];
            for b in junk.iter_mut() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                *b = rng as u8;
            }
            junk[0..8].copy_from_slice(MAGIC);
            junk[8..12].copy_from_slice(&VERSION.to_le_bytes());
            let _ = Meta::decode(&junk);
        }
    }
}
