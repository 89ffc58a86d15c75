//! The fencing device runner against real scripts: what the agent reads on stdin,
//! success and failure by exit status, floods of output, and a hung agent killed
//! at its timeout with everything it started.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use pairbeat::config::Fence;
use pairbeat::fence::device;

fn fence(agent: &Path, timeout: Duration) -> Fence {
    let node = |plug: &str| {
        BTreeMap::from([
            ("plug".to_string(), plug.to_string()),
            ("passwd".to_string(), "s3cret".to_string()),
        ])
    };
    Fence {
        agent: agent.to_path_buf(),
        action: "off".into(),
        timeout,
        retry: Duration::from_secs(1),
        monitor_interval: Duration::from_secs(60),
        params: [node("alpha"), node("bravo")],
        delay: [Duration::ZERO, Duration::from_millis(300)],
        priority_delay: Duration::from_millis(200),
    }
}

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

async fn the_agent_reads_key_value_lines_and_its_exit_status_decides() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("stdin");
    let ok = script(
        dir.path(),
        "fence_ok",
        &format!("cat > {}\n# a flood on stderr must not hang the runner\nhead -c 200000 /dev/zero | tr '\\0' x >&2\necho 'Success: Powered OFF'", seen.display()),
    );
    let out = device::run(&fence(&ok, Duration::from_secs(10)), 1, "off").await;
    assert!(out.ok, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "action=off\npasswd=s3cret\nplug=bravo\n"
    );
    assert!(!out.detail.contains("s3cret"));

    let bad = script(
        dir.path(),
        "fence_bad",
        "cat >/dev/null\necho 'Failed: Unable to obtain correct plug status' >&2\nexit 1",
    );
    let out = device::run(&fence(&bad, Duration::from_secs(10)), 0, "off").await;
    assert!(!out.ok);
    assert_eq!(out.detail, "exit 1: Failed: Unable to obtain correct plug status");

    let missing = device::run(&fence(&dir.path().join("nope"), Duration::from_secs(1)), 0, "monitor").await;
    assert!(!missing.ok && missing.detail.contains("cannot run"), "{missing:?}");
}

/// One test, so no other test forks while a script is being written (a child that
/// inherits the open file would make its exec fail with ETXTBSY).
#[tokio::test]
async fn fence_device_runner() {
    the_agent_reads_key_value_lines_and_its_exit_status_decides().await;
    a_hung_agent_is_killed_at_its_timeout_with_its_children_and_the_delay_is_kept().await;
}

async fn a_hung_agent_is_killed_at_its_timeout_with_its_children_and_the_delay_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let hung = script(
        dir.path(),
        "fence_hung",
        &format!("sleep 60 & echo $! > {}\nwait", pidfile.display()),
    );
    let t = Instant::now();
    let out = device::run(&fence(&hung, Duration::from_millis(500)), 0, "off").await;
    assert!(!out.ok && out.detail.contains("timed out"), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    let child: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let alive = std::fs::read_to_string(format!("/proc/{child}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false);
    assert!(!alive, "the agent's child survived its timeout");

    // fence_node waits the node's delay first (bravo: 300 ms here).
    let ok = script(dir.path(), "fence_quick", "cat >/dev/null");
    let t = Instant::now();
    let out = device::fence_node(fence(&ok, Duration::from_secs(5)), 1, false).await;
    assert!(
        out.ok && t.elapsed() >= Duration::from_millis(300),
        "{out:?} after {:?}",
        t.elapsed()
    );
    // A node that runs the group waits priority_delay more (200 ms here): it wins a race.
    let t = Instant::now();
    let out = device::fence_node(fence(&ok, Duration::from_secs(5)), 1, true).await;
    assert!(
        out.ok && t.elapsed() >= Duration::from_millis(500),
        "{out:?} after {:?}",
        t.elapsed()
    );
    let f = fence(&ok, Duration::from_secs(5));
    assert_eq!(device::fence_delay(&f, 0, false), Duration::ZERO);
    assert_eq!(device::fence_delay(&f, 0, true), Duration::from_millis(200));
}
