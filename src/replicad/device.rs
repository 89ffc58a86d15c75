//! The block device a Primary serves: a FUSE filesystem holding one file, `disk`,
//! mounted where only this process sees it (the daemon runs in a private mount
//! namespace of its own), and a loop device attached to that file from inside, with
//! direct I/O. `/dev/loopN` works from every namespace; the FUSE mount appears in
//! none but ours, so no other process can pin it or hang on it. The path operators
//! and agents use is the symlink `replica/NAME.dev` beside the control socket.
//!
//! Every request the kernel sends (read, write, fsync, discard) goes into the
//! replica's core on the FUSE thread that read it ([`Submit`]), with its reply; it
//! is answered when the core says so (protocol C), by whichever thread brought the
//! last input it waited for. A Secondary has no device at all.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use crate::replica::data::Data;
use crate::replica::state::{Reply, Request};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request as FuseReq, WriteFlags,
};

/// Where the FUSE threads hand each kernel request, with where its answer goes:
/// straight into the replica's core, on the FUSE thread that read it.
pub type Submit = std::sync::Arc<dyn Fn(Request, Pending) + Send + Sync>;

/// The reply object of a request in flight.
pub enum Pending {
    Write(ReplyWrite),
    Data(ReplyData),
    Empty(ReplyEmpty),
}

impl Pending {
    /// Answers with what the core decided.
    pub fn answer(self, reply: Reply) {
        let errno = |r: &Reply| match r {
            Reply::ReadOnly => Errno::EROFS,
            _ => Errno::EIO,
        };
        match (self, reply) {
            (Pending::Write(w), Reply::Written(n)) => w.written(n),
            (Pending::Data(d), Reply::Data(bytes)) => d.data(&bytes),
            (Pending::Empty(e), Reply::Done) => e.ok(),
            (Pending::Write(w), r) => w.error(errno(&r)),
            (Pending::Data(d), r) => d.error(errno(&r)),
            (Pending::Empty(e), r) => e.error(errno(&r)),
        }
    }
}

const DISK: INodeNo = INodeNo(2);
const TTL: Duration = Duration::from_secs(3600);

struct DiskFs {
    size: u64,
    submit: Submit,
    opened: AtomicU64,
}

impl DiskFs {
    fn attr(&self, ino: INodeNo) -> FileAttr {
        let dir = ino == INodeNo::ROOT;
        FileAttr {
            ino,
            size: if dir { 0 } else { self.size },
            blocks: if dir { 0 } else { self.size / 512 },
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir { 0o700 } else { 0o600 },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    fn send(&self, request: Request, reply: Pending) {
        (self.submit)(request, reply);
    }
}

impl Filesystem for DiskFs {
    fn init(&mut self, _req: &FuseReq, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        // The loop device submits asynchronous direct I/O; with ASYNC_DIO the kernel
        // passes it on as several requests in flight instead of one at a time, so
        // a sequential writer keeps both FUSE threads and the disk busy.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ASYNC_DIO);
        Ok(())
    }

    fn lookup(&self, _req: &FuseReq, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == "disk" {
            reply.entry(&TTL, &self.attr(DISK), fuser::Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &FuseReq, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT || ino == DISK {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn readdir(&self, _req: &FuseReq, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (DISK, FileType::RegularFile, "disk"),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn open(&self, _req: &FuseReq, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino != DISK {
            return reply.error(Errno::EISDIR);
        }
        self.opened.fetch_add(1, Ordering::Relaxed);
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &FuseReq,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let len = (u64::from(size)).min(self.size.saturating_sub(offset)) as u32;
        if len == 0 {
            return reply.data(&[]);
        }
        self.send(Request::Read { offset, len }, Pending::Data(reply));
    }

    fn write(
        &self,
        _req: &FuseReq,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if offset.checked_add(data.len() as u64).is_none_or(|e| e > self.size) {
            return reply.error(Errno::ENOSPC);
        }
        // The buffer is the session's: the write outlives this call.
        self.send(
            Request::Write {
                offset,
                data: Data::copy_from(data),
            },
            Pending::Write(reply),
        );
    }

    fn flush(&self, _req: &FuseReq, _ino: INodeNo, _fh: FileHandle, _lock: LockOwner, reply: ReplyEmpty) {
        // close(2), not fsync(2): durability is asked for by fsync.
        reply.ok();
    }

    fn fsync(&self, _req: &FuseReq, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.send(Request::Flush, Pending::Empty(reply));
    }

    fn fallocate(
        &self,
        _req: &FuseReq,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        if mode != punch {
            // Anything that would change the size (or zero-range tricks) is refused.
            return reply.error(Errno::EOPNOTSUPP);
        }
        self.send(Request::Discard { offset, len: length }, Pending::Empty(reply));
    }

    fn release(
        &self,
        _req: &FuseReq,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.opened.fetch_sub(1, Ordering::Relaxed);
        reply.ok();
    }
}

/// A Primary's device: the FUSE session, the loop device and the published symlink.
pub struct Device {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
    pub loop_dev: PathBuf,
    /// fusectl's number for the FUSE connection, for the supervisor's watchdog.
    pub fuse_conn: Option<u32>,
    loop_file: Option<File>,
    link: PathBuf,
}

// linux/loop.h: the ioctls and their structures (not in the libc crate).
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// The start of the file name a replica's loop device carries (`losetup -l` shows
/// the backing path instead; the name is for `drop_replica_mounts`).
const FILE_NAME_TAG: &str = "pairbeat-replica:";
const LO_FLAGS_DIRECT_IO: u32 = 16;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn os(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Mounts the FUSE file, attaches a loop device to it and publishes `link`. Runs
/// on a thread of its own, never the event loop (see `attach_loop`).
pub fn attach(run_dir: &Path, name: &str, size: u64, submit: Submit) -> Result<Device, String> {
    let mountpoint = run_dir.join(format!("{name}.fuse"));
    std::fs::create_dir_all(&mountpoint).map_err(os("cannot create the FUSE mount point"))?;
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::FSName(format!("pairbeat-replica:{name}")),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoExec,
    ];
    cfg.n_threads = Some(2);
    let fs = DiskFs {
        size,
        submit,
        opened: AtomicU64::new(0),
    };
    let session = fuser::spawn_mount(fs, &mountpoint, &cfg).map_err(os("cannot mount the replica's FUSE file"))?;
    let mut dev = Device {
        session: Some(session),
        mountpoint: mountpoint.clone(),
        loop_dev: PathBuf::new(),
        fuse_conn: fuse_connection(&mountpoint),
        loop_file: None,
        link: run_dir.join(format!("{name}.dev")),
    };
    match attach_loop(&mountpoint.join("disk")) {
        Ok((path, file)) => {
            dev.loop_dev = path;
            dev.loop_file = Some(file);
        }
        Err(e) => {
            dev.unmount();
            return Err(e);
        }
    }
    let _ = std::fs::remove_file(&dev.link);
    std::os::unix::fs::symlink(&dev.loop_dev, &dev.link).map_err(os("cannot publish the device link"))?;
    Ok(dev)
}

/// fusectl names a connection by its superblock's device number in the kernel's
/// encoding (major << 20 | minor), read here from mountinfo rather than by a stat
/// that would go through FUSE.
fn fuse_connection(mountpoint: &Path) -> Option<u32> {
    let mounts = crate::filesystem::own_mounts();
    let (major, minor) = crate::filesystem::at(&mounts, mountpoint)?.dev;
    Some((major << 20) | minor)
}

/// How often a loop device another process took between LOOP_CTL_GET_FREE and
/// LOOP_CONFIGURE is given up for the next free one (losetup retries the same way).
const LOOP_TRIES: usize = 16;

/// Not on the event loop: LOOP_CONFIGURE fsyncs the file, through FUSE, and the
/// loop must be free to answer that.
fn attach_loop(file: &Path) -> Result<(PathBuf, File), String> {
    let ctl = File::open("/dev/loop-control").map_err(os("cannot open /dev/loop-control"))?;
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(file)
        .or_else(|_| OpenOptions::new().read(true).write(true).open(file))
        .map_err(os("cannot open the replica's FUSE file"))?;
    let mut last = String::new();
    for _ in 0..LOOP_TRIES {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(format!("no free loop device: {}", std::io::Error::last_os_error()));
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(os("cannot open the loop device"))?;
        let mut busy = false;
        for flags in [LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO, LO_FLAGS_AUTOCLEAR] {
            let mut cfg = LoopConfig {
                fd: backing.as_raw_fd() as u32,
                block_size: 4096,
                // SAFETY: all-zero is a valid loop_info64.
                info: unsafe { std::mem::zeroed() },
                reserved: [0; 8],
            };
            cfg.info.lo_flags = flags;
            let src = format!("{FILE_NAME_TAG}{}", file.display());
            let bytes = src.as_bytes();
            let k = bytes.len().min(63);
            cfg.info.lo_file_name[..k].copy_from_slice(&bytes[..k]);
            // SAFETY: LOOP_CONFIGURE reads a loop_config from the pointer.
            let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
            if rc == 0 {
                return Ok((path, dev));
            }
            let e = std::io::Error::last_os_error();
            last = format!("cannot attach {} to {}: {e}", file.display(), path.display());
            if e.raw_os_error() == Some(libc::EBUSY) {
                // Taken meanwhile by another process: the next free one.
                busy = true;
                break;
            }
        }
        if !busy {
            break;
        }
    }
    Err(last)
}

impl Device {
    /// Someone has the device open exclusively (a mounted filesystem): demotion must wait.
    pub fn in_use(&self) -> bool {
        // A mount claims the block device exclusively: an O_EXCL open then fails with EBUSY.
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(&self.loop_dev)
            .is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY))
    }

    /// Detaches the loop device and unmounts FUSE. Refuses while the device is in
    /// use, handing the device back. Not on the event loop: the loop device flushes
    /// through FUSE, which the loop serves.
    pub fn detach(mut self) -> Result<(), Box<(Device, String)>> {
        if self.in_use() {
            let e = format!(
                "{} is in use (a filesystem on it is mounted): unmount it first",
                self.loop_dev.display()
            );
            return Err(Box::new((self, e)));
        }
        let _ = std::fs::remove_file(&self.link);
        if let Some(f) = self.loop_file.take() {
            // SAFETY: LOOP_CLR_FD takes no argument.
            unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD) };
        }
        self.unmount();
        Ok(())
    }

    fn unmount(&mut self) {
        if let Some(s) = self.session.take() {
            // Never on a tokio worker: the session's drop blocks until its thread ends.
            let mp = self.mountpoint.clone();
            let _ = std::thread::spawn(move || {
                if let Err(e) = s.umount_and_join() {
                    log::warn!("unmounting {}: {e}", mp.display());
                }
            });
        }
    }
}

/// Makes this process's mounts private, so the FUSE mount is seen by no one else.
/// Must run before any thread starts (unshare of the mount namespace is refused to
/// a process whose threads share its filesystem context).
pub fn private_mounts() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;
    drop_replica_mounts();
    Ok(())
}

/// The copy of the host's mounts this namespace started with may include a
/// filesystem on a replica's device (this one's, after a restart, or another
/// replica's): kept here, it would pin that device where nobody can unmount it, and
/// its demotion would be refused forever. Such mounts are detached from this
/// namespace at once; the host's stay as they are.
fn drop_replica_mounts() {
    for m in crate::filesystem::own_mounts() {
        if m.source.starts_with("/dev/loop") && is_replica_loop(&m.source) {
            let _ = nix::mount::umount2(&m.point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A loop device a replicad attached: its file name (set at attach) says so. The
/// sysfs backing path is not enough: once the namespace of the worker that
/// attached it is gone, it reads `/disk`.
fn is_replica_loop(dev: &str) -> bool {
    let Ok(f) = File::open(dev) else {
        return false;
    };
    // SAFETY: all-zero is a valid loop_info64, which LOOP_GET_STATUS64 fills.
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    // SAFETY: LOOP_GET_STATUS64 writes a loop_info64 to the pointer.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), LOOP_GET_STATUS64, &mut info as *mut LoopInfo64) };
    rc == 0 && info.lo_file_name.starts_with(FILE_NAME_TAG.as_bytes())
}
