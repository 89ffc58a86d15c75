//! Block data as it travels through the replica: from the kernel's write request
//! to the local disk and, the same bytes, to the peer; from the link to the peer's
//! disk; from the disk to a read's reply or a resync frame.
//!
//! [`Data`] is immutable, shared (a clone is a reference count, not a copy) and
//! starts on a 4 KiB boundary, so an aligned write goes to an O_DIRECT file
//! descriptor as it is. Before it, each replicated byte was copied five times on
//! the primary (into a vector, the core's clone for the frame, the frame's
//! encoding, a partial send's shift, the disk's bounce buffer) and four times on
//! the peer; a sequential writer's CPU went to `memmove` (BENCHMARKS.md).

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// O_DIRECT's alignment: enough for every logical block size in use.
pub const ALIGN: usize = 4096;

/// One aligned block of storage.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Block([u8; ALIGN]);

struct Aligned {
    blocks: Vec<Block>,
    len: usize,
}

/// Buffers of dropped `Data` of at least [`POOL_MIN`] bytes, for the next ones: a
/// fresh megabyte from the allocator is a fresh mapping, and the reader thread
/// spent more time in its page faults and zeroing than in receiving the bytes.
static POOL: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());
const POOL_MIN: usize = 64 * 1024;
/// Enough for a sequential writer's megabyte writes in flight on both sides of the
/// link; an idle replica keeps at most this many buffers (32 MiB of 1 MiB ones).
const POOL_MAX: usize = 32;

/// Shared, immutable bytes that start on an [`ALIGN`] boundary.
#[derive(Clone)]
pub struct Data(Arc<Aligned>);

impl Data {
    /// `len` bytes written by `fill`, which must write them all: they hold what an
    /// earlier `Data` left (recycled buffers are not zeroed again). An error from
    /// `fill` is returned as it is.
    pub fn filled<E>(len: usize, fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Data, E> {
        let n = len.div_ceil(ALIGN);
        let mut blocks = if len >= POOL_MIN {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            pool.iter()
                .position(|b| b.capacity() >= n)
                .map(|i| pool.swap_remove(i))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        blocks.resize(n, Block([0; ALIGN]));
        let mut a = Aligned { blocks, len };
        fill(a.bytes_mut())?;
        Ok(Data(Arc::new(a)))
    }

    /// A copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Data {
        Data::filled(bytes.len(), |b| {
            b.copy_from_slice(bytes);
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {})
    }

    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Data {
        Data::filled(len, |b| {
            b.fill(0);
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {})
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        if self.len >= POOL_MIN {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(std::mem::take(&mut self.blocks));
            }
        }
    }
}

impl Aligned {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `Block` is plain bytes with no padding (repr(C), one array), and
        // `blocks` holds `len.div_ceil(ALIGN)` of them, so at least `len` bytes.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed mutably through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

impl Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl Default for Data {
    fn default() -> Data {
        Data::zeroed(0)
    }
}

impl AsRef<[u8]> for Data {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Data {
    fn from(v: Vec<u8>) -> Data {
        Data::copy_from(&v)
    }
}

impl From<&[u8]> for Data {
    fn from(v: &[u8]) -> Data {
        Data::copy_from(v)
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || **self == **other
    }
}

impl Eq for Data {}

/// Its length and first bytes: a megabyte of hex helps no one reading a test's failure.
impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self[..self.len().min(8)];
        write!(f, "Data({} bytes: {head:02x?}", self.len())?;
        if self.len() > head.len() {
            write!(f, "…")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_shared_and_equal_by_content() {
        for len in [0, 1, 4095, 4096, 4097, 1 << 20] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let d = Data::copy_from(&bytes);
            assert_eq!(&*d, &bytes[..]);
            assert_eq!(d.as_ptr() as usize % ALIGN, 0, "{len} bytes start aligned");
            let c = d.clone();
            assert_eq!(c.as_ptr(), d.as_ptr(), "a clone shares the bytes");
            assert_eq!(Data::from(bytes.clone()), d);
        }
        assert_ne!(Data::copy_from(&[1, 2]), Data::copy_from(&[1, 3]));
        assert_eq!(Data::zeroed(3), Data::copy_from(&[0, 0, 0]));
    }

    #[test]
    fn a_recycled_buffer_is_filled_anew_and_zeroed_means_zero() {
        let len = POOL_MIN * 2;
        drop(Data::copy_from(&vec![0xee; len]));
        let z = Data::zeroed(len);
        assert!(z.iter().all(|&b| b == 0), "zeroed over a recycled buffer");
        let d = Data::copy_from(&vec![7; len - 1]);
        assert!(d.iter().all(|&b| b == 7) && d.len() == len - 1);
        assert_eq!(d.as_ptr() as usize % ALIGN, 0);
    }

    #[test]
    fn a_failed_fill_gives_its_error() {
        let r: Result<Data, &str> = Data::filled(10, |b| {
            b[0] = 1;
            Err("short read")
        });
        assert_eq!(r.unwrap_err(), "short read");
    }

    #[test]
    fn debug_shows_the_length_and_the_start() {
        assert_eq!(
            format!("{:?}", Data::copy_from(&[1; 9])),
            "Data(9 bytes: [01, 01, 01, 01, 01, 01, 01, 01]…)"
        );
        assert_eq!(format!("{:?}", Data::copy_from(&[2])), "Data(1 bytes: [02])");
    }
}
