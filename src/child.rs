//! Running one external program the way a cluster manager must: resource agents
//! and fencing devices both go through here, so both get the same hygiene and the
//! same kill rules.
//!
//! - a clean environment (the caller names every variable), stdin from /dev/null
//!   or from bytes the caller gives (fence-agents read their parameters there);
//! - its own process group, so a time limit takes down everything it started
//!   (`send_arp`, `ssh`, `ipmitool` below an agent);
//! - a parent-death signal and every inherited descriptor above 2 closed, so a
//!   crashed daemon leaves no orphan holding its sockets or state files;
//! - started without copying the daemon (`spawn`: vfork semantics, not fork);
//! - stdout and stderr read at once (an agent that fills one pipe while we wait on
//!   the other would hang), each kept as its first and last `OUTPUT_CAP / 2` bytes;
//! - the result counts the moment the program exits: what it wrote is in the pipes
//!   then, and is read to the last byte there; a background child it left holding
//!   the pipes (IPaddr2 leaves `send_arp`) is not waited for, and its later output
//!   is read and dropped (a pipe closed on it would kill it with SIGPIPE);
//! - at the time limit SIGTERM to the group, SIGKILL after `kill_grace` (zero: at once).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::spawn;

/// How much of each output stream is kept; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// After the program exits, the longest its output may still be read for: only a
/// background child that writes without pause keeps a pipe from running empty.
const DRAIN_CAP: Duration = Duration::from_millis(200);

/// One program to run, and its limits.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The whole environment; nothing of the daemon's is inherited.
    pub env: Vec<(OsString, OsString)>,
    /// Written to stdin, which is then closed; `None` is /dev/null.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// After SIGTERM at the time limit, how long before SIGKILL.
    pub kill_grace: Duration,
}

impl ChildSpec {
    pub fn new(program: impl Into<PathBuf>, timeout: Duration) -> Self {
        ChildSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            timeout,
            kill_grace: Duration::ZERO,
        }
    }

    pub fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    pub fn env(&mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> &mut Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

/// How the program ended and what it said.
#[derive(Debug, Clone)]
pub struct ChildOutcome {
    /// The exit code; `None` when a signal ended it (including our own at the time limit).
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ChildOutcome {
    /// The last non-empty line of stderr, else of stdout: what an operator most
    /// needs to see of a failure.
    pub fn last_line(&self) -> Option<&str> {
        [&self.stderr, &self.stdout]
            .into_iter()
            .find_map(|s| s.lines().rev().map(str::trim).find(|l| !l.is_empty()))
    }
}

/// Runs `spec` to its end or its time limit. An `Err` means it could not be started.
pub async fn run(spec: &ChildSpec) -> std::io::Result<ChildOutcome> {
    let started = Instant::now();
    let mut child = spawn::spawn(
        spec.program.as_os_str(),
        &spec.args,
        &spec.env,
        if spec.stdin.is_some() {
            spawn::Stdin::Piped
        } else {
            spawn::Stdin::Null
        },
    )?;
    let group = Some(Pid::from_raw(child.id()));
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), spec.stdin.clone()) {
        // Written beside the wait: a program that exits without reading is judged
        // by its exit status alone, and one that never reads cannot block us.
        tokio::spawn(async move {
            let _ = pipe.write_all(&bytes).await;
        });
    }
    let (out_buf, err_buf) = (Captured::default(), Captured::default());
    let (out_exit, out_exited) = oneshot::channel();
    let (err_exit, err_exited) = oneshot::channel();
    let (out_read, out_done) = oneshot::channel();
    let (err_read, err_done) = oneshot::channel();
    tokio::spawn(read_capped(child.stdout.take(), out_buf.clone(), out_exited, out_read));
    tokio::spawn(read_capped(child.stderr.take(), err_buf.clone(), err_exited, err_read));
    let (status, timed_out) = match tokio::time::timeout(spec.timeout, child.wait()).await {
        Ok(s) => (Some(s?), false),
        Err(_) => {
            if let Some(pg) = group {
                if !spec.kill_grace.is_zero() {
                    let _ = killpg(pg, Signal::SIGTERM);
                    let _ = tokio::time::timeout(spec.kill_grace, child.wait()).await;
                }
                // Whatever ignored TERM gets KILL, the leader included.
                let _ = killpg(pg, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            (None, true)
        }
    };
    let _ = out_exit.send(());
    let _ = err_exit.send(());
    let stdout = captured(out_done, &out_buf).await;
    let stderr = captured(err_done, &err_buf).await;
    Ok(ChildOutcome {
        code: status.and_then(|s| s.code()),
        timed_out,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    })
}

/// One output stream as read so far: its first and its last `OUTPUT_CAP / 2` bytes.
/// The head shows what the program set out to do, the tail how it ended (exit
/// reasons come last); the middle of a flood is dropped and counted.
#[derive(Default)]
struct Capture {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: usize,
}

impl Capture {
    fn push(&mut self, mut data: &[u8]) {
        let half = OUTPUT_CAP / 2;
        let room = half.saturating_sub(self.head.len());
        let (h, rest) = data.split_at(room.min(data.len()));
        self.head.extend_from_slice(h);
        data = rest;
        self.tail.extend(data);
        let over = self.tail.len().saturating_sub(half);
        self.tail.drain(..over);
        self.dropped += over;
    }

    fn text(&self) -> String {
        let mut bytes = self.head.clone();
        if self.dropped > 0 {
            bytes.extend_from_slice(format!("\n[... {} bytes dropped ...]\n", self.dropped).as_bytes());
        }
        bytes.extend(self.tail.iter());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

type Captured = Arc<Mutex<Capture>>;

/// The program's output, once its reader says the pipe is read to what the
/// program wrote (or to its end).
async fn captured(done: oneshot::Receiver<()>, buf: &Captured) -> String {
    let _ = tokio::time::timeout(DRAIN_CAP, done).await;
    buf.lock().map(|c| c.text()).unwrap_or_default()
}

/// Bytes waiting in a pipe (FIONREAD).
fn pending_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// Reads a pipe (a program blocked on a full pipe would never exit). Once the
/// program has exited and the pipe holds nothing more, everything the program
/// wrote is captured: `read` is told so, and the reader goes on to the pipe's end,
/// dropping what a background child the program left writes later. The check is
/// made here, between two reads of this task, so no chunk can be read but not yet
/// kept when it is.
async fn read_capped<R: AsyncRead + Unpin + AsRawFd>(
    pipe: Option<R>,
    kept: Captured,
    mut exited: oneshot::Receiver<()>,
    read: oneshot::Sender<()>,
) {
    let Some(mut pipe) = pipe else {
        let _ = read.send(());
        return;
    };
    let fd = pipe.as_raw_fd();
    let mut read = Some(read);
    let mut has_exited = false;
    let mut buf = [0u8; 8192];
    loop {
        if has_exited && read.is_some() && pending_bytes(fd) == 0 {
            let _ = read.take().map(|r| r.send(()));
        }
        tokio::select! {
            // Cancel-safe: when the other branch wins, nothing was read.
            r = pipe.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) if read.is_some() => {
                    if let Ok(mut k) = kept.lock() {
                        k.push(&buf[..n]);
                    }
                }
                Ok(_) => {}
            },
            // A dropped sender (the wait failed) counts as an exit too.
            _ = &mut exited, if !has_exited => has_exited = true,
        }
    }
    let _ = read.map(|r| r.send(()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_keeps_its_head_and_tail_and_counts_the_middle() {
        let mut c = Capture::default();
        c.push(b"start\n");
        c.push(&vec![b'x'; OUTPUT_CAP * 3]);
        c.push(b"\nthe end\n");
        let text = c.text();
        assert!(text.starts_with("start\nxxx"));
        assert!(text.ends_with("xxx\nthe end\n"));
        let dropped = OUTPUT_CAP * 3 + 6 + 9 - OUTPUT_CAP;
        assert!(
            text.contains(&format!("[... {dropped} bytes dropped ...]")),
            "{}",
            &text[..80]
        );
    }

    #[test]
    fn the_last_line_is_stderrs_then_stdouts() {
        let mut o = ChildOutcome {
            code: Some(1),
            timed_out: false,
            stdout: "a\nout last\n\n".into(),
            stderr: "  \n".into(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(o.last_line(), Some("out last"));
        o.stderr = "err last \n".into();
        assert_eq!(o.last_line(), Some("err last"));
    }
}
