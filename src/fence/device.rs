//! Runs the fencing device as fence-agents are run by Pacemaker's fencer: the agent
//! reads `key=value` lines on stdin (`action=off`, `plug=…`, `ipaddr=…`, `login=…`,
//! `passwd=…`), exit status 0 means done. Each call runs through [`crate::child`]
//! (its own process group, killed at once at its timeout); passwords travel on
//! stdin only, never on a command line or in the log.

use std::time::Duration;

use crate::child::{self, ChildSpec};
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

/// How long to wait before fencing `node`: its own delay, and `priority_delay`
/// more when it runs the group (so that the node running the group wins a race).
pub fn fence_delay(fence: &Fence, node: usize, runs_group: bool) -> Duration {
    fence.delay[node]
        + if runs_group {
            fence.priority_delay
        } else {
            Duration::ZERO
        }
}

/// Runs `action` (off, reboot, monitor, status) against node `node` (for monitor,
/// either node's parameters reach the device).
pub async fn run(fence: &Fence, node: usize, action: &str) -> FenceOutcome {
    let mut cmd = ChildSpec::new(&fence.agent, fence.timeout);
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd.stdin = Some(stdin_for(fence, node, action).into_bytes());
    // No grace at the time limit: a fence call that hangs holds up recovery, and
    // the whole group goes (agents run ssh or ipmitool below them).
    cmd.kill_grace = Duration::ZERO;
    match child::run(&cmd).await {
        Err(e) => FenceOutcome {
            ok: false,
            detail: format!("cannot run {}: {e}", fence.agent.display()),
        },
        Ok(out) if out.timed_out => FenceOutcome {
            ok: false,
            detail: format!("timed out after {}", crate::config::format_duration(fence.timeout)),
        },
        Ok(out) => FenceOutcome {
            ok: out.code == Some(0),
            detail: match (out.code, out.last_line()) {
                (Some(c), None) => format!("exit {c}"),
                (Some(c), Some(last)) => format!("exit {c}: {last}"),
                (None, _) => "killed by a signal".to_string(),
            },
        },
    }
}

/// Waits the node's fence delay (and `priority_delay` more when it runs the
/// group), then fences it.
pub async fn fence_node(fence: Fence, node: usize, runs_group: bool) -> FenceOutcome {
    let delay: Duration = fence_delay(&fence, node, runs_group);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    run(&fence, node, &fence.action).await
}
