//! The replica's disk: the backing image and the metadata file. `hub` runs its
//! operations on its disk threads or, when the queue is idle, on the thread that
//! brought the request, several at once where the order the core emitted them does
//! not matter (see `hub::Queue`), so `Disk` is shared and its methods take `&self`.
//!
//! Reads and writes whose offset and length are multiples of 4 KiB (all of them,
//! from the loop device with its 4 KiB blocks, and the resync's extents) go to the
//! image with O_DIRECT, straight from or into the request's aligned `Data`: the
//! data then reaches the device when the call returns, and the flush
//! (`fdatasync`) has only the device's cache left to empty. Buffered, a flush first wrote back what the
//! `pwrite`s had dirtied, and that write-back through the host's page cache was
//! most of a replicated fsync's time (BENCHMARKS.md). Anything unaligned, and a
//! backing file on a filesystem without O_DIRECT (tmpfs), is buffered; the kernel
//! keeps the two coherent. A discard punches a hole (`fallocate` with
//! PUNCH_HOLE | KEEP_SIZE), so the image stays sparse and reads back zeros.
//!
//! A split-brain loser's own changes are copied aside before the resync overwrites
//! them (`SaveDivergent`): a sparse file `BACKING.divergent-TIME` of the image's
//! size holding the loser's dirty extents at their offsets. If that copy fails,
//! every later write is refused, so nothing is overwritten that was not saved.
//!
//! The test-only volatile-cache mode (`PAIRBEAT_REPLICA_VOLATILE=1`) keeps every
//! write since the last flush in memory, so `kill -9` loses them as a power cut
//! would: both namespace hosts of the lab share one page cache, where a kill alone
//! would hide a missing flush.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::replica::data::{Data, ALIGN};
use crate::replica::meta::Meta;
use crate::replica::state::DiskOp;

pub struct Disk {
    backing: File,
    /// The same image opened with O_DIRECT, where the filesystem allows it.
    direct: Option<File>,
    backing_path: PathBuf,
    extent: u64,
    meta: File,
    /// Why writes are refused: a divergent copy that could not be made.
    poisoned: Mutex<Option<String>>,
    /// Volatile mode: writes not yet flushed, by offset.
    /// In the order they were written: overlapping writes that start at other
    /// offsets must land (and read back) in that order.
    volatile: Option<Mutex<Vec<(u64, Data)>>>,
}

impl Disk {
    pub fn open(backing: &Path, meta: &Path, extent: u32, volatile: bool) -> std::io::Result<Self> {
        let open = |p: &Path| OpenOptions::new().read(true).write(true).open(p);
        let direct = if volatile {
            None
        } else {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(backing)
                .ok()
        };
        Ok(Disk {
            backing: open(backing)?,
            direct,
            backing_path: backing.to_path_buf(),
            extent: u64::from(extent),
            meta: open(meta)?,
            poisoned: Mutex::new(None),
            volatile: volatile.then(|| Mutex::new(Vec::new())),
        })
    }

    /// Carries out one operation: its data for a read.
    pub fn run(&self, op: DiskOp) -> std::io::Result<Option<Data>> {
        let poisoned = lock(&self.poisoned).clone();
        if let (Some(why), DiskOp::Write { .. } | DiskOp::Discard { .. }) = (poisoned, &op) {
            return Err(std::io::Error::other(format!("not overwriting: {why}")));
        }
        match op {
            DiskOp::Read { offset, len } => {
                let data = Data::filled(len as usize, |buf| match &self.direct {
                    Some(direct) if aligned(offset, u64::from(len)) => direct.read_exact_at(buf, offset),
                    _ => {
                        self.backing.read_exact_at(buf, offset)?;
                        if let Some(cache) = &self.volatile {
                            overlay(&lock(cache), offset, buf);
                        }
                        Ok(())
                    }
                })?;
                Ok(Some(data))
            }
            // `Data` starts aligned: it goes to the device as it is.
            DiskOp::Write { offset, ref data } if self.direct.is_some() && aligned(offset, data.len() as u64) => {
                self.direct.as_ref().expect("checked").write_all_at(data, offset)?;
                Ok(None)
            }
            DiskOp::Write { offset, data } => {
                match &self.volatile {
                    Some(cache) => {
                        let mut cache = lock(cache);
                        // A write over the same range replaces the older one at once.
                        cache.retain(|(o, d)| !(*o == offset && d.len() == data.len()));
                        cache.push((offset, data));
                    }
                    None => self.backing.write_all_at(&data, offset)?,
                }
                Ok(None)
            }
            DiskOp::Discard { offset, len } => {
                self.flush_cache()?;
                punch_hole(&self.backing, offset, len)?;
                Ok(None)
            }
            DiskOp::Sync => {
                self.flush_cache()?;
                self.backing.sync_data()?;
                Ok(None)
            }
            DiskOp::Meta(m) => {
                write_meta(&self.meta, &m)?;
                Ok(None)
            }
            DiskOp::SaveDivergent { extents } => match self.save_divergent(&extents) {
                Ok(()) => Ok(None),
                Err(e) => {
                    let why = format!("the split-brain loser's data could not be saved aside ({e})");
                    *lock(&self.poisoned) = Some(why.clone());
                    Err(std::io::Error::other(why))
                }
            },
        }
    }

    /// Copies `extents` of the image to a new sparse file beside it, durably.
    fn save_divergent(&self, extents: &[u64]) -> std::io::Result<()> {
        self.flush_cache()?;
        let size = self.backing.metadata()?.len();
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let mut name = self.backing_path.clone().into_os_string();
        name.push(format!(".divergent-{stamp}"));
        let path = PathBuf::from(name);
        let out = OpenOptions::new().write(true).create_new(true).open(&path)?;
        out.set_len(size)?;
        let mut buf = vec![0u8; self.extent as usize];
        for &e in extents {
            let offset = e * self.extent;
            let len = self.extent.min(size.saturating_sub(offset)) as usize;
            if len == 0 {
                return Err(std::io::Error::other(format!("extent {e} is beyond the image's end")));
            }
            self.backing.read_exact_at(&mut buf[..len], offset)?;
            out.write_all_at(&buf[..len], offset)?;
        }
        out.sync_all()?;
        log::warn!(
            "split brain: saved this node's {} diverging extents ({} KiB) to {} before the resync overwrites them",
            extents.len(),
            extents.len() as u64 * self.extent / 1024,
            path.display()
        );
        Ok(())
    }

    fn flush_cache(&self) -> std::io::Result<()> {
        if let Some(cache) = &self.volatile {
            let mut cache = lock(cache);
            for (off, data) in std::mem::take(&mut *cache) {
                self.backing.write_all_at(&data, off)?;
            }
        }
        Ok(())
    }
}

/// A panic under these locks aborts the process (release profile).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn aligned(offset: u64, len: u64) -> bool {
    offset % ALIGN as u64 == 0 && len % ALIGN as u64 == 0 && len > 0
}

/// Later writes over earlier ones, onto what the file holds.
fn overlay(cache: &[(u64, Data)], offset: u64, buf: &mut [u8]) {
    let end = offset + buf.len() as u64;
    for &(o, ref data) in cache.iter() {
        let e = o + data.len() as u64;
        if e <= offset || o >= end {
            continue;
        }
        let from = o.max(offset);
        let to = e.min(end);
        buf[(from - offset) as usize..(to - offset) as usize]
            .copy_from_slice(&data[(from - o) as usize..(to - o) as usize]);
    }
}

fn punch_hole(f: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use nix::fcntl::{fallocate, FallocateFlags};
    fallocate(
        f,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        offset as i64,
        len as i64,
    )
    .map_err(std::io::Error::from)
}

/// One metadata slot, durable before this returns.
pub fn write_meta(f: &File, m: &Meta) -> std::io::Result<()> {
    f.write_all_at(&m.encode(), m.slot_offset(m.seq))?;
    f.sync_data()
}

/// The metadata file's lock, held for as long as the value lives: one
/// pairbeat-replicad per replica, and pairbeatd never edits the metadata of a
/// running one (its offline outdate takes the lock too). Taken before the
/// metadata is read, so no edit can slip in between.
pub fn lock_meta(path: &Path) -> Result<nix::fcntl::Flock<File>, String> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        if e == nix::errno::Errno::EWOULDBLOCK {
            format!(
                "{} is locked: a pairbeat-replicad serves this replica already (or pairbeatd is outdating it)",
                path.display()
            )
        } else {
            format!("cannot lock {}: {e}", path.display())
        }
    })
}

/// The peer's outdate ask for a replica whose daemon does not run: answered from
/// its metadata under the metadata's lock (`state::outdate_at_rest`), the change
/// durable before the answer. A replica that is running (locked) is not touched.
pub fn outdate_at_rest(path: &Path, requester: Option<crate::replica::gi::Gi>) -> Result<String, String> {
    let lock = lock_meta(path)?;
    let meta = read_meta(path)?;
    let (answer, next) = crate::replica::state::outdate_at_rest(&meta, requester)?;
    if let Some(m) = next {
        write_meta(&lock, &m).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(answer)
}

/// Reads and decodes a metadata file.
pub fn read_meta(path: &Path) -> Result<Meta, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Meta::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(dir: &Path, extents: u64) -> Disk {
        let (img, meta) = (dir.join("r0.img"), dir.join("r0.meta"));
        let data: Vec<u8> = (0..extents * 4096).map(|i| (i / 4096 + 1) as u8).collect();
        std::fs::write(&img, data).unwrap();
        std::fs::write(&meta, [0u8; 16]).unwrap();
        Disk::open(&img, &meta, 4096, false).unwrap()
    }

    #[test]
    fn the_volatile_cache_keeps_overlapping_writes_in_the_order_they_came() {
        let dir = tempfile::tempdir().unwrap();
        let (img, meta) = (dir.path().join("r0.img"), dir.path().join("r0.meta"));
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        std::fs::write(&meta, [0u8; 16]).unwrap();
        let d = Disk::open(&img, &meta, 4096, true).unwrap();
        // A small write, then a larger one over it that starts before it (an
        // application write, then a resync block of its extent): the larger wins.
        d.run(DiskOp::Write {
            offset: 8192,
            data: Data::from(vec![0x11u8; 4096]),
        })
        .unwrap();
        d.run(DiskOp::Write {
            offset: 0,
            data: Data::from(vec![0x22u8; 65536]),
        })
        .unwrap();
        let read = d
            .run(DiskOp::Read {
                offset: 8192,
                len: 4096,
            })
            .unwrap()
            .unwrap();
        assert!(read.iter().all(|&b| b == 0x22), "read back before the flush");
        d.run(DiskOp::Sync).unwrap();
        let file = std::fs::read(&img).unwrap();
        assert!(file[..65536].iter().all(|&b| b == 0x22), "on the file after the flush");
        // And the other way round: the later small write wins inside the large one.
        d.run(DiskOp::Write {
            offset: 0,
            data: Data::from(vec![0x33u8; 65536]),
        })
        .unwrap();
        d.run(DiskOp::Write {
            offset: 8192,
            data: Data::from(vec![0x44u8; 4096]),
        })
        .unwrap();
        d.run(DiskOp::Sync).unwrap();
        let file = std::fs::read(&img).unwrap();
        assert!(file[8192..12288].iter().all(|&b| b == 0x44) && file[0] == 0x33 && file[12288] == 0x33);
    }

    #[test]
    fn an_outdate_at_rest_waits_for_no_daemon_and_never_writes_under_a_running_one() {
        use crate::replica::gi::Gi;
        use crate::replica::meta::Flags;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r0.meta");
        let mut m = Meta::create([7; 16], 1 << 20, 4096, 1);
        m.gi = Gi {
            current: 0xA4,
            bitmap: 0,
            history: [0xA2, 0],
        };
        m.flags.set(Flags::CONSISTENT | Flags::WAS_UP_TO_DATE, true);
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(m.file_size()).unwrap();
        write_meta(&f, &m).unwrap();
        // A requester whose data is older than ours is refused, and nothing changes.
        let older = Gi { current: 0xA2, ..m.gi };
        let e = outdate_at_rest(&path, Some(older)).unwrap_err();
        assert!(e.starts_with("8: refused"), "{e}");
        assert!(read_meta(&path).unwrap().flags.has(Flags::WAS_UP_TO_DATE));
        // While a daemon holds the lock, the file is not touched.
        let held = lock_meta(&path).unwrap();
        let e = outdate_at_rest(&path, None).unwrap_err();
        assert!(e.contains("is locked"), "{e}");
        drop(held);
        // The requester went on from our generation: we are outdated, durably.
        let newer = Gi {
            current: 0xB6,
            bitmap: 0xA4,
            history: [0xA2, 0],
        };
        let said = outdate_at_rest(&path, Some(newer)).unwrap();
        assert!(said.starts_with("4: Outdated"), "{said}");
        let after = read_meta(&path).unwrap();
        assert!(!after.flags.has(Flags::WAS_UP_TO_DATE) && after.seq == m.seq + 1);
        assert!(outdate_at_rest(&path, Some(newer)).unwrap().contains("already"));
        // An Inconsistent disk says so (DRBD's 3) and is left alone.
        let mut inc = after.clone();
        inc.flags.set(Flags::CONSISTENT, false);
        inc.seq += 1;
        write_meta(&f, &inc).unwrap();
        assert!(outdate_at_rest(&path, None).unwrap().starts_with("3: Inconsistent"));
    }

    fn divergent(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains(".divergent-"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_split_brain_losers_extents_are_saved_aside_at_their_offsets() {
        let d = tempfile::tempdir().unwrap();
        let k = disk(d.path(), 4);
        assert!(k.run(DiskOp::SaveDivergent { extents: vec![1, 3] }).is_ok());
        let saved = divergent(d.path());
        assert_eq!(saved.len(), 1, "{saved:?}");
        let copy = std::fs::read(&saved[0]).unwrap();
        assert_eq!(copy.len(), 4 * 4096);
        assert!(copy[..4096].iter().all(|&b| b == 0), "extent 0 was not divergent");
        assert!(copy[4096..8192].iter().all(|&b| b == 2));
        assert!(copy[8192..12288].iter().all(|&b| b == 0));
        assert!(copy[12288..].iter().all(|&b| b == 4));
        // The resync may now overwrite.
        assert!(k
            .run(DiskOp::Write {
                offset: 4096,
                data: vec![9; 4096].into()
            })
            .is_ok());
    }

    #[test]
    fn direct_and_buffered_writes_read_back_the_same_whatever_the_alignment() {
        let d = tempfile::tempdir().unwrap();
        let k = disk(d.path(), 4);
        assert!(k.direct.is_some(), "the test directory's filesystem takes O_DIRECT");
        let write = |k: &Disk, offset, data: Vec<u8>| {
            k.run(DiskOp::Write {
                offset,
                data: data.into(),
            })
            .unwrap()
        };
        let read = |k: &Disk, offset, len| k.run(DiskOp::Read { offset, len }).unwrap().unwrap();
        write(&k, 4096, vec![7; 8192]); // aligned: direct
        write(&k, 5000, vec![8; 100]); // unaligned: buffered, then read direct
        let got = read(&k, 4096, 8192);
        assert!(got[..904].iter().all(|&b| b == 7));
        assert!(got[904..1004].iter().all(|&b| b == 8));
        assert!(got[1004..].iter().all(|&b| b == 7));
        write(&k, 4096, vec![9; 4096]); // direct over the buffered page
        assert!(read(&k, 4000, 200)
            .iter()
            .enumerate()
            .all(|(i, &b)| b == if i < 96 { 1 } else { 9 }));
        assert!(k.run(DiskOp::Sync).is_ok());
        let file = std::fs::read(d.path().join("r0.img")).unwrap();
        assert!(file[4096..8192].iter().all(|&b| b == 9) && file[8192..12288].iter().all(|&b| b == 7));
    }

    #[test]
    fn when_the_copy_fails_nothing_is_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let k = disk(d.path(), 2);
        let e = k.run(DiskOp::SaveDivergent { extents: vec![7] }).unwrap_err();
        assert!(e.to_string().contains("could not be saved"), "{e}");
        let w = k
            .run(DiskOp::Write {
                offset: 0,
                data: vec![9; 4096].into(),
            })
            .unwrap_err();
        assert!(w.to_string().contains("not overwriting"), "{w}");
        assert!(k.run(DiskOp::Discard { offset: 0, len: 4096 }).is_err());
        assert_eq!(
            std::fs::read(d.path().join("r0.img")).unwrap()[0],
            1,
            "the data is untouched"
        );
        // Reads still work: the data can be inspected.
        assert!(k.run(DiskOp::Read { offset: 0, len: 4096 }).is_ok());
    }
}
