//! `builtin:filesystem`'s I/O: mount(2), umount2(2), /proc. Every operation is
//! blocking (a mount replays the journal, an unmount writes back dirty pages), so
//! [`run`] does it on tokio's blocking pool and never on the daemon's loop, and
//! gives it a deadline of its own: a blocking call cannot be cancelled, so an
//! operation that would outlive its timeout must stop by itself.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::Signal;

use super::{at, at_or_under, is_under, own_mounts, Flags, Fs, Mount};
use crate::builtin::{failed, Answer};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    /// `depth`: `OCF_CHECK_LEVEL` (0, 10 or 20).
    Monitor {
        depth: u32,
    },
}

/// How often a busy unmount is tried again (Filesystem: every second).
const RETRY: Duration = Duration::from_millis(100);

/// Runs `op` within `timeout`, off the loop.
pub async fn run(fs: &Fs, op: Op, timeout: Duration) -> Answer {
    let fs = fs.clone();
    let deadline = Instant::now() + timeout;
    match tokio::task::spawn_blocking(move || run_blocking(&fs, op, deadline)).await {
        Ok(a) => a,
        Err(e) => failed(1, format!("the filesystem operation failed: {e}")),
    }
}

/// [`run`], on the calling thread.
pub fn run_blocking(fs: &Fs, op: Op, deadline: Instant) -> Answer {
    match op {
        Op::Start => start(fs),
        Op::Stop => stop(fs, deadline),
        Op::Monitor { depth } => monitor(fs, depth),
    }
}

/// The device's number, if it is a block device.
fn device_number(path: &Path) -> Result<(u32, u32), Answer> {
    let md = std::fs::metadata(path).map_err(|e| failed(5, format!("cannot find device {}: {e}", path.display())))?;
    if !md.file_type().is_block_device() {
        return Err(failed(
            6,
            format!(
                "{} is not a block device (attach a file with losetup, or use ocf:heartbeat:Filesystem)",
                path.display()
            ),
        ));
    }
    let rdev = md.rdev();
    Ok((nix::sys::stat::major(rdev) as u32, nix::sys::stat::minor(rdev) as u32))
}

/// Is `m` this filesystem's: by the device's number; while the device node is gone
/// (a replica's device whose worker died), by its path or, as Filesystem judges,
/// by the mount point and the type alone: a stop must not leave it mounted.
fn is_ours(m: &Mount, fs: &Fs, dev: Option<(u32, u32)>) -> bool {
    match dev {
        Some(d) => m.dev == d,
        None => Path::new(&m.source) == fs.device.path() || m.fstype == fs.fstype,
    }
}

fn describe(m: &Mount) -> String {
    format!("{} ({}, device {}:{})", m.source, m.fstype, m.dev.0, m.dev.1)
}

fn start(fs: &Fs) -> Answer {
    let path = fs.device.path();
    let dev = match device_number(&path) {
        Ok(d) => d,
        Err(a) => return a,
    };
    let mounts = own_mounts();
    match at(&mounts, &fs.directory) {
        Some(m) if m.dev == dev => return Answer::Done,
        Some(m) => {
            return failed(
                1,
                format!("{} already has {} mounted on it", fs.directory.display(), describe(m)),
            )
        }
        None => {}
    }
    if let Err(e) = std::fs::create_dir_all(&fs.directory) {
        return failed(1, format!("cannot create {}: {e}", fs.directory.display()));
    }
    let data = (!fs.data.is_empty()).then_some(fs.data.as_str());
    match nix::mount::mount(
        Some(path.as_path()),
        &fs.directory,
        Some(fs.fstype.as_str()),
        ms_flags(fs.flags),
        data,
    ) {
        Ok(()) => Answer::Done,
        Err(e) => {
            let hint = match e {
                nix::errno::Errno::ENODEV => " (the kernel does not know this fstype: is its module loaded?)",
                nix::errno::Errno::EINVAL => " (a wrong option, or the device holds no such filesystem)",
                nix::errno::Errno::EBUSY => " (the device is mounted elsewhere or in use)",
                _ => "",
            };
            let code = if e == nix::errno::Errno::ENODEV { 5 } else { 1 };
            failed(
                code,
                format!(
                    "mount {} on {} ({}{}{}): {}{hint}",
                    fs.device,
                    fs.directory.display(),
                    fs.fstype,
                    if fs.data.is_empty() { "" } else { ", " },
                    fs.data,
                    e.desc()
                ),
            )
        }
    }
}

fn ms_flags(f: Flags) -> MsFlags {
    let mut m = MsFlags::empty();
    for (on, flag) in [
        (f.read_only, MsFlags::MS_RDONLY),
        (f.nosuid, MsFlags::MS_NOSUID),
        (f.nodev, MsFlags::MS_NODEV),
        (f.noexec, MsFlags::MS_NOEXEC),
        (f.sync, MsFlags::MS_SYNCHRONOUS),
        (f.dirsync, MsFlags::MS_DIRSYNC),
        (f.noatime, MsFlags::MS_NOATIME),
        (f.nodiratime, MsFlags::MS_NODIRATIME),
        (f.relatime == Some(true), MsFlags::MS_RELATIME),
        (f.strictatime, MsFlags::MS_STRICTATIME),
        (f.lazytime, MsFlags::MS_LAZYTIME),
    ] {
        if on {
            m |= flag;
        }
    }
    m
}

fn stop(fs: &Fs, deadline: Instant) -> Answer {
    let dev = device_number(&fs.device.path()).ok();
    let began = Instant::now();
    // TERM for the first half of the time there is, KILL after (Filesystem's way).
    let kill_from = began + deadline.saturating_duration_since(began) / 2;
    let mut unexplained = 0;
    loop {
        let mounts = own_mounts();
        if !at(&mounts, &fs.directory).is_some_and(|m| is_ours(m, fs, dev)) {
            // Ours is not (or no longer) mounted: whatever else is there is not ours.
            return Answer::Done;
        }
        let mut busy = None;
        for m in at_or_under(&mounts, &fs.directory) {
            match nix::mount::umount2(&m.point, MntFlags::empty()) {
                // Gone meanwhile (unmounted by someone else): the next look says.
                Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
                Err(e) => {
                    busy = Some((m.point.clone(), e));
                    break;
                }
            }
        }
        let Some((point, e)) = busy else {
            // Everything unmounted, yet still listed after a few looks: say so
            // rather than spin until the timeout.
            unexplained += 1;
            if unexplained > 3 {
                return failed(
                    1,
                    format!(
                        "{} is still listed in /proc/self/mountinfo, but umount says it is not mounted",
                        fs.directory.display()
                    ),
                );
            }
            continue;
        };
        let holders = holders(&fs.directory);
        if !fs.force_unmount || e != nix::errno::Errno::EBUSY {
            return failed(
                1,
                format!("cannot unmount {}: {}{}", point.display(), e.desc(), held_by(&holders)),
            );
        }
        let now = Instant::now();
        if now + RETRY > deadline {
            return failed(
                1,
                format!(
                    "cannot unmount {} before the stop's timeout: still busy{}",
                    point.display(),
                    held_by(&holders)
                ),
            );
        }
        let sig = if now < kill_from {
            Signal::SIGTERM
        } else {
            Signal::SIGKILL
        };
        for (pid, name) in &holders {
            log::warn!(
                "{}: sending {sig} to {pid} ({name}), which holds files under it",
                fs.directory.display()
            );
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), sig);
        }
        std::thread::sleep(RETRY);
    }
}

fn held_by(holders: &[(i32, String)]) -> String {
    if holders.is_empty() {
        return String::new();
    }
    let list: Vec<String> = holders.iter().map(|(p, n)| format!("{p} ({n})")).collect();
    format!("; held by {}", list.join(", "))
}

/// The processes with a file, working directory, root or mapping under `dir`
/// (fuser -m's answer, read from /proc), this one excepted.
pub fn holders(dir: &Path) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let base = p.path();
        let mut links: Vec<PathBuf> = ["cwd", "root", "exe"].iter().map(|l| base.join(l)).collect();
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            links.extend(fds.flatten().map(|f| f.path()));
        }
        let mut holds = links
            .iter()
            .filter_map(|l| std::fs::read_link(l).ok())
            .any(|t| is_under(&t, dir));
        if !holds {
            holds = std::fs::read_to_string(base.join("maps")).is_ok_and(|maps| {
                maps.lines()
                    .filter_map(|l| l.split_whitespace().nth(5))
                    .any(|f| f.starts_with('/') && is_under(Path::new(f), dir))
            });
        }
        if holds {
            let name = std::fs::read_to_string(base.join("comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default();
            found.push((pid, name));
        }
    }
    found
}

fn monitor(fs: &Fs, depth: u32) -> Answer {
    let dev = device_number(&fs.device.path()).ok();
    let mounts = own_mounts();
    match at(&mounts, &fs.directory) {
        None => return Answer::NotRunning,
        Some(m) if !is_ours(m, fs, dev) => {
            // Something else there: not ours running, and not ours to unmount.
            return failed(
                1,
                format!(
                    "{} has {} mounted on it, not {}",
                    fs.directory.display(),
                    describe(m),
                    fs.device
                ),
            );
        }
        Some(_) => {}
    }
    let check = match depth {
        0 => Ok(()),
        10 => read_device(&fs.device.path()),
        _ => write_status_file(&fs.directory),
    };
    match check {
        Ok(()) => Answer::Running,
        Err(e) => failed(1, e),
    }
}

/// OCF_CHECK_LEVEL 10: the device answers a read (O_DIRECT: not the page cache).
fn read_device(path: &Path) -> Result<(), String> {
    const SIZE: usize = 4096;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| format!("cannot open {} to read it: {e}", path.display()))?;
    let layout = std::alloc::Layout::from_size_align(SIZE, SIZE).expect("4 KiB aligned to 4 KiB");
    // O_DIRECT wants an aligned buffer; a Vec gives no alignment promise.
    // SAFETY: the layout is non-zero in size; the buffer is freed below.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err("out of memory".to_string());
    }
    // SAFETY: ptr points to SIZE initialised (zeroed) bytes that only this slice uses.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, SIZE) };
    let r = f.read(buf);
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    r.map(|_| ())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// OCF_CHECK_LEVEL 20: a status file written, synced and read back.
fn write_status_file(dir: &Path) -> Result<(), String> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string());
    let status_dir = dir.join(".Filesystem_status");
    let file = status_dir.join(host);
    let stamp = format!(
        "{}\n",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let io = |e: std::io::Error| format!("status file {}: {e}", file.display());
    std::fs::create_dir_all(&status_dir).map_err(io)?;
    let mut f = std::fs::File::create(&file).map_err(io)?;
    f.write_all(stamp.as_bytes()).map_err(io)?;
    f.sync_data().map_err(io)?;
    let back = std::fs::read_to_string(&file).map_err(io)?;
    if back != stamp {
        return Err(format!(
            "status file {} did not read back what was written",
            file.display()
        ));
    }
    Ok(())
}
