//! The dirty-extent map: one bit per extent (4 MiB by default) that may differ
//! from the peer. It is both DRBD's activity log and its quick-sync bitmap: a bit
//! is persisted before the first write into its extent, so after any crash the set
//! bits cover every extent that may have diverged, and a resync copies only those.

/// A fixed-size bit set over a disk's extents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyMap {
    bits: Vec<u64>,
    len: u64,
    count: u64,
}

impl DirtyMap {
    /// A clean map of `len` extents.
    pub fn new(len: u64) -> Self {
        DirtyMap {
            bits: vec![0; len.div_ceil(64) as usize],
            len,
            count: 0,
        }
    }

    /// Every extent dirty (a full sync).
    pub fn full(len: u64) -> Self {
        let mut m = DirtyMap::new(len);
        (0..len).for_each(|i| {
            m.set(i);
        });
        m
    }

    /// How many extents the map covers.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many extents are dirty.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn get(&self, i: u64) -> bool {
        i < self.len && self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Marks extent `i`; returns whether it was clean (and so must be persisted
    /// before the write goes ahead). Out-of-range extents are ignored.
    pub fn set(&mut self, i: u64) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bits[(i / 64) as usize] |= 1 << (i % 64);
        self.count += 1;
        true
    }

    /// Clears extent `i`; returns whether it was dirty.
    pub fn clear(&mut self, i: u64) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bits[(i / 64) as usize] &= !(1 << (i % 64));
        self.count -= 1;
        true
    }

    pub fn clear_all(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.count = 0;
    }

    /// ORs the peer's map into this one (both maps are merged at every connect:
    /// equal generations do not prove equal data).
    pub fn merge(&mut self, other: &DirtyMap) {
        for (w, o) in self.bits.iter_mut().zip(&other.bits) {
            *w |= o;
        }
        self.count = self.bits.iter().map(|w| u64::from(w.count_ones())).sum();
    }

    /// The dirty extents in ascending order (the order a resync copies them).
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }

    /// The first dirty extent at or after `from`.
    pub fn next_from(&self, from: u64) -> Option<u64> {
        (from..self.len).find(|&i| self.get(i))
    }

    /// The map as little-endian bytes, bit `i` in byte `i / 8` (the metadata
    /// file's and the wire's form).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.bits.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.truncate(self.len.div_ceil(8) as usize);
        out
    }

    /// The inverse of [`to_bytes`](Self::to_bytes). Bits past `len` must be clear:
    /// a set one means the bytes belong to a differently sized disk.
    pub fn from_bytes(len: u64, bytes: &[u8]) -> Result<Self, String> {
        let want = len.div_ceil(8) as usize;
        if bytes.len() != want {
            return Err(format!(
                "the dirty map has {} bytes, {want} expected for {len} extents",
                bytes.len()
            ));
        }
        let mut m = DirtyMap::new(len);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            m.bits[i] = u64::from_le_bytes(w);
        }
        if len % 64 != 0 {
            if let Some(last) = m.bits.last() {
                if last >> (len % 64) != 0 {
                    return Err(format!("the dirty map marks extents past the last one ({len})"));
                }
            }
        }
        m.count = m.bits.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_count_merge_and_round_trip() {
        let mut a = DirtyMap::new(70);
        assert!(a.set(0) && a.set(69) && !a.set(69) && !a.set(70));
        assert_eq!((a.count(), a.get(69), a.get(70)), (2, true, false));
        let mut b = DirtyMap::new(70);
        b.set(5);
        b.set(69);
        a.merge(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 5, 69]);
        assert_eq!(a.count(), 3);
        assert_eq!(a.next_from(6), Some(69));
        let bytes = a.to_bytes();
        assert_eq!(bytes.len(), 9);
        assert_eq!(DirtyMap::from_bytes(70, &bytes).unwrap(), a);
        assert!(a.clear(5) && !a.clear(5));
        assert_eq!(a.count(), 2);
        assert_eq!(DirtyMap::full(70).count(), 70);
    }

    #[test]
    fn foreign_bytes_are_refused() {
        assert!(DirtyMap::from_bytes(70, &[0; 8]).unwrap_err().contains("9 expected"));
        let mut bytes = vec![0u8; 9];
        bytes[8] = 0x80; // bit 71
        assert!(DirtyMap::from_bytes(70, &bytes).unwrap_err().contains("past the last"));
    }
}
