//! The replica's disk thread: the backing image and the metadata file, one
//! operation at a time in the order the core emitted them (the core relies on that
//! order: a metadata write before a data write is durable before it).
//!
//! Writes are buffered `pwrite`s and flushes `fdatasync`, never O_DIRECT (FUSE hands
//! us unaligned buffers). A discard punches a hole (`fallocate` with
//! PUNCH_HOLE | KEEP_SIZE), so the image stays sparse and reads back zeros.
//!
//! The test-only volatile-cache mode (`PAIRBEAT_REPLICA_VOLATILE=1`) keeps every
//! write since the last flush in memory, so `kill -9` loses them as a power cut
//! would: both namespace hosts of the lab share one page cache, where a kill alone
//! would hide a missing flush.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;

use crate::replica::meta::Meta;
use crate::replica::state::{DiskOp, IoId};

/// A finished operation, for `Replica::handle_io`.
pub type Done = (IoId, Result<Option<Vec<u8>>, String>);

pub struct Disk {
    backing: File,
    meta: File,
    /// Volatile mode: writes not yet flushed, by offset.
    volatile: Option<BTreeMap<u64, Vec<u8>>>,
}

impl Disk {
    pub fn open(backing: &Path, meta: &Path, volatile: bool) -> std::io::Result<Self> {
        let open = |p: &Path| OpenOptions::new().read(true).write(true).open(p);
        Ok(Disk {
            backing: open(backing)?,
            meta: open(meta)?,
            volatile: volatile.then(BTreeMap::new),
        })
    }

    /// Runs operations from `rx` until it closes, answering on `tx`. `wake` is
    /// called after each answer so the event loop looks at it.
    pub fn serve(mut self, rx: mpsc::Receiver<(IoId, DiskOp)>, tx: tokio::sync::mpsc::UnboundedSender<Done>) {
        while let Ok((io, op)) = rx.recv() {
            let result = self.run(op).map_err(|e| e.to_string());
            if tx.send((io, result)).is_err() {
                return;
            }
        }
    }

    fn run(&mut self, op: DiskOp) -> std::io::Result<Option<Vec<u8>>> {
        match op {
            DiskOp::Read { offset, len } => {
                let mut buf = vec![0u8; len as usize];
                self.backing.read_exact_at(&mut buf, offset)?;
                if let Some(cache) = &self.volatile {
                    overlay(cache, offset, &mut buf);
                }
                Ok(Some(buf))
            }
            DiskOp::Write { offset, data } => {
                match &mut self.volatile {
                    Some(cache) => {
                        cache.insert(offset, data);
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
            DiskOp::SaveDivergent { .. } => Ok(None),
        }
    }

    fn flush_cache(&mut self) -> std::io::Result<()> {
        if let Some(cache) = &mut self.volatile {
            for (off, data) in std::mem::take(cache) {
                self.backing.write_all_at(&data, off)?;
            }
        }
        Ok(())
    }
}

/// Later writes over earlier ones, onto what the file holds.
fn overlay(cache: &BTreeMap<u64, Vec<u8>>, offset: u64, buf: &mut [u8]) {
    let end = offset + buf.len() as u64;
    for (&o, data) in cache.iter() {
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

/// Reads and decodes a metadata file.
pub fn read_meta(path: &Path) -> Result<Meta, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Meta::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}
