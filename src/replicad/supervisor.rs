//! The supervisor: `pairbeat-replicad NAME` runs the worker (the same binary with
//! `--worker`, the event loop of `replicad::run`) as its child and watches it.
//!
//! Why a second process: a FUSE daemon that stops answering blocks every task that
//! touches its file in D state, host-wide, and nothing inside the hung process can
//! help. The supervisor is small, single-threaded and never touches FUSE or the
//! loop device, so it stays able to act:
//!
//! - the worker writes one line per event-loop tick on a pipe (fd 3): `beat AGE
//!   FROZEN`, the age in ms of its oldest unanswered block request and whether the
//!   fencing policy froze I/O; and `fuse N` / `nofuse` when a Primary's FUSE
//!   connection (fusectl's number) comes and goes;
//! - while a connection is up, the worker is hung when its ticks stopped for
//!   `io_watchdog` with requests waiting in the kernel (fusectl's `waiting`), or
//!   when its oldest request is older than `io_watchdog` and I/O is not frozen by
//!   policy. Then the supervisor writes `1` to fusectl's `abort` (every waiting
//!   and future request fails with EIO at once, no task stays in D state) and
//!   SIGKILLs the worker;
//! - a worker that died while serving a device (hung and killed, or crashed) is
//!   started again, with the reason in `replica/NAME.failed`: its status reports
//!   `failed`, the agent's monitor says 9 (failed Primary) and pairbeatd recovers
//!   the group; `pairbeat replica secondary NAME` acknowledges and clears it.
//!   Any other exit of the worker is the supervisor's exit, for systemd to judge.
//!
//! SIGTERM and SIGINT are passed to the worker, which leaves cleanly.
//!
//! The design brief has the supervisor own the control socket; here the worker
//! keeps it and the restarted worker reports the failure, so one process answers
//! every request and the supervisor stays free of the protocol.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;

/// The worker's end of the pipe, as the worker finds it.
pub const BEAT_FD_ENV: &str = "PAIRBEAT_REPLICAD_BEAT_FD";
/// How often the worker ticks and the supervisor looks.
pub const TICK: Duration = Duration::from_millis(250);
/// Where fusectl is mounted.
const FUSECTL: &str = "/sys/fs/fuse/connections";
/// More restarts than this within `RESTART_WINDOW` and the supervisor gives up.
const MAX_RESTARTS: usize = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// One line from the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Beat { oldest_ms: u64, frozen: bool },
    Fuse(u32),
    NoFuse,
}

impl Line {
    pub fn parse(s: &str) -> Option<Line> {
        let mut w = s.split_ascii_whitespace();
        match (w.next()?, w.next(), w.next()) {
            ("beat", Some(age), Some(frozen)) => Some(Line::Beat {
                oldest_ms: age.parse().ok()?,
                frozen: frozen == "1",
            }),
            ("fuse", Some(n), None) => n.parse().ok().map(Line::Fuse),
            ("nofuse", None, None) => Some(Line::NoFuse),
            _ => None,
        }
    }

    pub fn render(&self) -> String {
        match self {
            Line::Beat { oldest_ms, frozen } => format!("beat {oldest_ms} {}\n", u8::from(*frozen)),
            Line::Fuse(n) => format!("fuse {n}\n"),
            Line::NoFuse => "nofuse\n".into(),
        }
    }
}

/// What the supervisor knows of one worker: the pure part of the watchdog.
#[derive(Debug)]
pub struct Watch {
    io_watchdog: Duration,
    last_beat: Instant,
    oldest: Duration,
    frozen: bool,
    pub fuse: Option<u32>,
}

impl Watch {
    pub fn new(io_watchdog: Duration, now: Instant) -> Watch {
        Watch {
            io_watchdog,
            last_beat: now,
            oldest: Duration::ZERO,
            frozen: false,
            fuse: None,
        }
    }

    pub fn hear(&mut self, now: Instant, line: Line) {
        match line {
            Line::Beat { oldest_ms, frozen } => {
                self.last_beat = now;
                self.oldest = Duration::from_millis(oldest_ms);
                self.frozen = frozen;
            }
            Line::Fuse(n) => self.fuse = Some(n),
            Line::NoFuse => self.fuse = None,
        }
    }

    /// Why the worker is to be aborted now, if it is; `waiting` reads fusectl's
    /// count of requests the kernel holds for the connection.
    pub fn hung(&self, now: Instant, waiting: impl FnOnce(u32) -> Option<u64>) -> Option<(u32, String)> {
        let conn = self.fuse?;
        let silent = now.saturating_duration_since(self.last_beat);
        let limit = crate::config::format_duration(self.io_watchdog);
        if self.oldest > self.io_watchdog && !self.frozen {
            return Some((
                conn,
                format!("a block request went unanswered for over {limit} (io_watchdog)"),
            ));
        }
        if silent > self.io_watchdog {
            let n = waiting(conn).unwrap_or(0);
            if n > 0 {
                return Some((
                    conn,
                    format!("the worker stopped answering for over {limit} (io_watchdog) with {n} requests waiting"),
                ));
            }
        }
        None
    }
}

/// The failure marker of replica `name`.
pub fn failed_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.failed"))
}

/// Runs and watches workers until one exits for good; the exit status.
pub fn run(worker_args: Vec<std::ffi::OsString>, io_watchdog: Duration, run_dir: &Path, name: &str) -> u8 {
    match supervise(worker_args, io_watchdog, run_dir, name) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            eprintln!("pairbeat-replicad: {e}");
            71
        }
    }
}

fn supervise(
    worker_args: Vec<std::ffi::OsString>,
    io_watchdog: Duration,
    run_dir: &Path,
    name: &str,
) -> Result<u8, String> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        mask.add(s);
    }
    mask.thread_block().map_err(|e| format!("blocking signals: {e}"))?;
    // Paged out, the watchdog would wait on the disk it is there to rescue.
    if let Err(e) = crate::memlock::lock_memory() {
        log::warn!("cannot lock the supervisor into memory: {e}");
    }
    // Non-blocking: the loop reads until it is empty.
    let signals = SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|e| format!("signalfd: {e}"))?;
    let fusectl = fusectl();
    let mut restarts: Vec<Instant> = Vec::new();
    let mut stopping = false;
    loop {
        let (mut child, beat) = spawn(&worker_args)?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        log::info!("pairbeat-replicad: watching worker {pid} of replica {name} (io_watchdog {io_watchdog:?})");
        let mut watch = Watch::new(io_watchdog, Instant::now());
        let mut aborted: Option<String> = None;
        let mut pipe: Option<File> = Some(File::from(beat));
        let mut buf = Vec::new();
        let status = loop {
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if let Some(p) = &pipe {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            let _ = poll(&mut fds, PollTimeout::try_from(TICK).unwrap_or(PollTimeout::NONE));
            let (sig_ready, pipe_ready) = (
                fds[0].any().unwrap_or(false),
                fds.get(1).and_then(|f| f.any()).unwrap_or(false),
            );
            drop(fds);
            if sig_ready {
                while let Ok(Some(info)) = signals.read_signal() {
                    let s = info.ssi_signo as i32;
                    if s == Signal::SIGTERM as i32 || s == Signal::SIGINT as i32 {
                        stopping = true;
                        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
                    }
                }
            }
            if pipe_ready {
                let mut chunk = [0u8; 4096];
                match pipe.as_mut().map(|p| p.read(&mut chunk)) {
                    Some(Ok(0)) | Some(Err(_)) | None => pipe = None,
                    Some(Ok(n)) => {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                            let text = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..=end);
                            if let Some(line) = Line::parse(&text) {
                                match line {
                                    Line::Fuse(n) => log::info!("the worker serves FUSE connection {n}"),
                                    Line::NoFuse => log::info!("the worker serves no device"),
                                    Line::Beat { .. } => {}
                                }
                                watch.hear(Instant::now(), line);
                            }
                        }
                    }
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if aborted.is_none() {
                if let Some((conn, why)) = watch.hung(Instant::now(), |c| waiting(fusectl.as_deref(), c)) {
                    log::error!("replica {name}: {why}: aborting FUSE connection {conn} and killing the worker");
                    match fusectl.as_deref().map(|d| abort(d, conn)) {
                        Some(Ok(())) => {}
                        Some(Err(e)) => log::error!("cannot abort FUSE connection {conn}: {e}"),
                        None => log::error!("fusectl is not mounted: the kill alone must end the hung requests"),
                    }
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    aborted = Some(format!("{why}; its device was aborted (I/O fails with EIO)"));
                }
            }
        };
        let code = status.code();
        let serving = watch.fuse.is_some();
        if stopping || (!serving && aborted.is_none()) {
            log::info!("pairbeat-replicad: worker of {name} exited ({status})");
            return Ok(match (code, std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(c), _) => c as u8,
                (None, Some(s)) => 128 + s as u8,
                _ => 70,
            });
        }
        let why =
            aborted.unwrap_or_else(|| format!("the worker died while Primary ({status}); its device fails with EIO"));
        log::error!("replica {name}: {why}; starting the worker again, which reports the failure until `pairbeat replica secondary {name}`");
        let marker = failed_path(run_dir, name);
        if let Err(e) = std::fs::write(&marker, format!("{why}\n")) {
            log::error!("cannot write {}: {e}", marker.display());
        }
        let now = Instant::now();
        restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if restarts.len() >= MAX_RESTARTS {
            return Err(format!(
                "the worker of {name} failed {} times within {RESTART_WINDOW:?}: giving up",
                restarts.len() + 1
            ));
        }
        restarts.push(now);
    }
}

/// Starts a worker with the write end of a new pipe as fd 3.
fn spawn(args: &[std::ffi::OsString]) -> Result<(Child, OwnedFd), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("cannot make the beat pipe: {e}"))?;
    let raw = write.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("--worker").args(args).env(BEAT_FD_ENV, "3");
    // SAFETY: between fork and exec only async-signal-safe calls: dup2, fcntl,
    // sigprocmask and prctl, on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor blocks these for its signalfd; the worker needs them.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            // A supervisor killed outright takes its worker with it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("cannot start the worker: {e}"))?;
    drop(write);
    Ok((child, read))
}

/// fusectl's directory, mounted here if it is not yet (this process's mount
/// namespace is private: the host's is left alone). `None` if it cannot be.
fn fusectl() -> Option<PathBuf> {
    let mounted =
        std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.lines().any(|l| l.contains(" - fusectl ")));
    if !mounted {
        if let Err(e) = nix::mount::mount(
            Some("fusectl"),
            FUSECTL,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ) {
            log::warn!(
                "cannot mount fusectl on {FUSECTL} ({e}): a hung worker can only be killed, not aborted (load the fuse module?)"
            );
            return None;
        }
    }
    Some(PathBuf::from(FUSECTL))
}

fn waiting(fusectl: Option<&Path>, conn: u32) -> Option<u64> {
    let text = std::fs::read_to_string(fusectl?.join(conn.to_string()).join("waiting")).ok()?;
    text.trim().parse().ok()
}

fn abort(fusectl: &Path, conn: u32) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(fusectl.join(conn.to_string()).join("abort"))?
        .write_all(b"1")
}

/// The worker's side: its ticks and device news, to the supervisor.
pub struct Beat {
    pipe: Option<File>,
}

impl Beat {
    /// The pipe the supervisor gave (none when run without one).
    pub fn from_env() -> Beat {
        let fd = std::env::var(BEAT_FD_ENV).ok().and_then(|v| v.parse::<i32>().ok());
        std::env::remove_var(BEAT_FD_ENV);
        // SAFETY: F_GETFD only asks whether the number is an open descriptor.
        let pipe = fd.filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0);
        let pipe = pipe.map(|fd| {
            // SAFETY: the supervisor opened this descriptor for us and nothing else
            // in this process owns it (checked open just above).
            let f = unsafe { File::from_raw_fd(fd) };
            let _ = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
            let _ = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
            f
        });
        Beat { pipe }
    }

    /// Never blocks: a full pipe (a supervisor not reading) drops the line.
    pub fn say(&mut self, line: Line) {
        if let Some(p) = &mut self.pipe {
            let _ = p.write_all(line.render().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_garbage_is_ignored() {
        for l in [
            Line::Beat {
                oldest_ms: 17,
                frozen: true,
            },
            Line::Fuse(45),
            Line::NoFuse,
        ] {
            assert_eq!(Line::parse(l.render().trim_end()), Some(l));
        }
        for bad in ["", "beat", "beat x 0", "fuse", "fuse -1", "nofuse 3", "hello"] {
            assert_eq!(Line::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn silence_with_waiting_requests_is_a_hang_silence_alone_is_not() {
        let t0 = Instant::now();
        let mut w = Watch::new(Duration::from_secs(3), t0);
        let later = t0 + Duration::from_secs(4);
        // No device: nothing to abort, however silent.
        assert_eq!(w.hung(later, |_| Some(5)), None);
        w.hear(t0, Line::Fuse(45));
        // Silent, but the kernel holds nothing for it: idle, not hung.
        assert_eq!(w.hung(later, |_| Some(0)), None);
        assert_eq!(w.hung(later, |_| None), None);
        let (conn, why) = w.hung(later, |_| Some(2)).unwrap();
        assert_eq!(conn, 45);
        assert!(why.contains("2 requests waiting"), "{why}");
        // Within io_watchdog: not yet.
        assert_eq!(w.hung(t0 + Duration::from_secs(2), |_| Some(2)), None);
        w.hear(later, Line::NoFuse);
        assert_eq!(w.hung(later + Duration::from_secs(10), |_| Some(2)), None);
    }

    #[test]
    fn an_old_request_is_a_hang_unless_io_is_frozen_by_policy() {
        let t0 = Instant::now();
        let mut w = Watch::new(Duration::from_secs(3), t0);
        w.hear(t0, Line::Fuse(7));
        w.hear(
            t0,
            Line::Beat {
                oldest_ms: 3500,
                frozen: true,
            },
        );
        assert_eq!(w.hung(t0, |_| Some(1)), None);
        w.hear(
            t0,
            Line::Beat {
                oldest_ms: 3500,
                frozen: false,
            },
        );
        assert!(w.hung(t0, |_| Some(1)).unwrap().1.contains("unanswered"));
    }
}
