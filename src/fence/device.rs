//! Runs the fencing device as fence-agents are run by Pacemaker's fencer: the agent
//! reads `key=value` lines on stdin (`action=off`, `plug=…`, `ipaddr=…`, `login=…`,
//! `passwd=…`), exit status 0 means done. Each call has its own process group and a
//! timeout; passwords travel on stdin only, never on a command line or in the log.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::config::Fence;

/// What the device said: success, and its last line of output for status and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceOutcome {
    pub ok: bool,
    pub detail: String,
}

/// The stdin of one call: the action, then the node's parameters.
pub fn stdin_for(fence: &Fence, node: usize, action: &str) -> String {
    let mut s = format!("action={action}\n");
    for (k, v) in &fence.params[node] {
        s.push_str(&format!("{k}={v}\n"));
    }
    s
}

/// Runs `action` (off, reboot, monitor, status) against node `node` (for monitor,
/// either node's parameters reach the device).
pub async fn run(fence: &Fence, node: usize, action: &str) -> FenceOutcome {
    let fail = |detail: String| FenceOutcome { ok: false, detail };
    let mut cmd = Command::new(&fence.agent);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {}: {e}", fence.agent.display())),
    };
    let pid = child.id();
    let input = stdin_for(fence, node, action);
    let mut stdin = child.stdin.take();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let work = async {
        if let Some(mut s) = stdin.take() {
            // An agent that exits without reading is judged by its exit status alone.
            let _ = s.write_all(input.as_bytes()).await;
        }
        // Both pipes at once: an agent that fills one while we wait on the other
        // would otherwise hang until the timeout.
        let (mut text, more) = tokio::join!(read_capped(out.as_mut()), read_capped(err.as_mut()));
        text.push_str(&more);
        (child.wait().await, text)
    };
    match tokio::time::timeout(fence.timeout, work).await {
        Ok((Ok(status), text)) => {
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            let detail = match (status.code(), last.is_empty()) {
                (Some(c), true) => format!("exit {c}"),
                (Some(c), false) => format!("exit {c}: {last}"),
                (None, _) => "killed by a signal".to_string(),
            };
            FenceOutcome {
                ok: status.success(),
                detail,
            }
        }
        Ok((Err(e), _)) => fail(format!("cannot wait for {}: {e}", fence.agent.display())),
        Err(_) => {
            if let Some(pid) = pid {
                // The whole group: agents run ssh or ipmitool below them.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            fail(format!(
                "timed out after {}",
                crate::config::format_duration(fence.timeout)
            ))
        }
    }
}

/// The last 64 KiB of a pipe, as text. The pipe is drained to its end: an agent
/// blocked on a full pipe would never exit.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<&mut R>) -> String {
    const KEEP: usize = 64 * 1024;
    let mut kept: Vec<u8> = Vec::new();
    if let Some(p) = pipe {
        let mut buf = [0u8; 8192];
        while let Ok(n) = p.read(&mut buf).await {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * KEEP {
                kept.drain(..kept.len() - KEEP);
            }
        }
    }
    let from = kept.len().saturating_sub(KEEP);
    String::from_utf8_lossy(&kept[from..]).into_owned()
}

/// Waits the node's fence delay, then fences it.
pub async fn fence_node(fence: Fence, node: usize) -> FenceOutcome {
    let delay: Duration = fence.delay[node];
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    run(&fence, node, &fence.action).await
}
