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
//! - stdout and stderr read at once (an agent that fills one pipe while we wait on
//!   the other would hang), each kept as its first and last `OUTPUT_CAP / 2` bytes;
//! - at the time limit SIGTERM to the group, SIGKILL after `kill_grace` (zero: at once).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How much of each output stream is kept; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// After the program exits, how long to keep reading output a daemonized child may
/// hold open.
const DRAIN: Duration = Duration::from_millis(200);

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
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    cmd.as_std_mut().process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, close_range/fcntl) between fork and exec.
    unsafe {
        cmd.as_std_mut().pre_exec(|| {
            // Die with us rather than outlive a crashed daemon as an orphan.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // Nothing of ours leaks into the child (sockets, state files). Marked
            // close-on-exec rather than closed: std reports a failed exec through
            // a close-on-exec pipe of its own, which must stay open until exec.
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
                for fd in 3..1024 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let group = child.id().map(|p| Pid::from_raw(p as i32));
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), spec.stdin.clone()) {
        // Written beside the wait: a program that exits without reading is judged
        // by its exit status alone, and one that never reads cannot block us.
        tokio::spawn(async move {
            let _ = pipe.write_all(&bytes).await;
        });
    }
    let (out_buf, err_buf) = (Captured::default(), Captured::default());
    let out = tokio::spawn(read_capped(child.stdout.take(), out_buf.clone()));
    let err = tokio::spawn(read_capped(child.stderr.take(), err_buf.clone()));
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
    let stdout = drain(out, &out_buf).await;
    let stderr = drain(err, &err_buf).await;
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

/// Output read so far, after waiting a moment for the rest: a daemon the program
/// started may keep the pipe open forever, and must not hold up the result.
async fn drain(task: tokio::task::JoinHandle<()>, buf: &Captured) -> String {
    // On timeout the reader stays blocked on a pipe a daemon holds; it ends when the daemon does.
    let _ = tokio::time::timeout(DRAIN, task).await;
    buf.lock().map(|c| c.text()).unwrap_or_default()
}

/// Reads a pipe to its end (a program blocked on a full pipe would never exit).
async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>, kept: Captured) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut k) = kept.lock() {
                    k.push(&buf[..n]);
                }
            }
        }
    }
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
