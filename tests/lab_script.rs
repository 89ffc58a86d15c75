//! scripts/lab, the two-node lab behind `make demo`: up is idempotent, a crash of the
//! active host moves the group (seen from the client) with the record it wrote on
//! the replicated disk intact, the crashed host resyncs when it comes back, a cut of
//! the replication link alone outdates the standby's copy while the active host
//! writes on, and down leaves nothing behind — no namespace, no loop device, no
//! directory — whatever state the lab was in (here: a heartbeat partition).

use std::path::Path;
use std::process::Command;

fn lab(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab"))
        .args(args)
        .env("LAB_DIR", dir)
        .env("PAIRBEATD", env!("CARGO_BIN_EXE_pairbeatd"))
        .env("PAIRBEAT", env!("CARGO_BIN_EXE_pairbeat"))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn leftovers(dir: &Path) -> String {
    let ns = String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    let loops = String::from_utf8_lossy(&Command::new("losetup").args(["-a"]).output().unwrap().stdout).into_owned();
    let mut found = String::new();
    found += &ns
        .lines()
        .filter(|l| l.starts_with("pblab-"))
        .collect::<Vec<_>>()
        .join(" ");
    found += &loops
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join(" ");
    if dir.exists() {
        found += " lab dir";
    }
    found
}

#[test]
fn lab_up_crash_down_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    struct Down<'a>(&'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            lab(self.0, &["down"]);
        }
    }
    let _down = Down(&dir);
    let (ok, out) = lab(&dir, &["up"]);
    assert!(ok, "{out}");
    let (ok, out) = lab(&dir, &["up"]);
    assert!(ok && out.contains("already up"), "{out}");
    let (ok, ms) = lab(&dir, &["wait-served", "alpha", "30"]);
    assert!(ok, "alpha never served: {ms}\n{}", lab(&dir, &["status"]).1);
    // A record on the replicated filesystem survives the crash of its writer.
    let (ok, out) = lab(&dir, &["write", "alpha", "order 42"]);
    assert!(ok, "{out}");
    let (ok, _) = lab(&dir, &["crash", "alpha"]);
    assert!(ok);
    let (ok, ms) = lab(&dir, &["wait-served", "bravo", "30"]);
    assert!(ok, "bravo never served: {ms}\n{}", lab(&dir, &["status"]).1);
    println!("lab: crash of alpha -> client served by bravo after {} ms", ms.trim());
    let (_, page) = lab(&dir, &["client", "data/stamp"]);
    assert!(page.contains(": order 42"), "the record is on bravo's copy: {page}");
    // alpha back: it resyncs; then only the replication link is cut, and bravo
    // goes on writing while alpha's copy is outdated over the heartbeat link.
    let replica = |h: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .args([
                "replica",
                "-c",
                dir.join(h).join("pairbeat.toml").to_str().unwrap(),
                "--node",
                h,
            ])
            .args(["status", "r0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (ok, _) = lab(&dir, &["restart", "alpha"]);
    assert!(ok);
    let synced = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        replica("alpha").contains("Secondary UpToDate/UpToDate Connected")
    });
    assert!(
        synced,
        "alpha resynced: {}\n{}",
        replica("alpha"),
        lab(&dir, &["status"]).1
    );
    let (ok, out) = lab(&dir, &["partition", "replication"]);
    assert!(ok, "{out}");
    let (ok, out) = lab(&dir, &["write", "bravo", "order 43"]);
    assert!(ok, "bravo writes on with the replication link cut: {out}");
    assert!(replica("alpha").contains("Outdated"), "{}", replica("alpha"));
    let (ok, out) = lab(&dir, &["heal"]);
    assert!(ok, "{out}");
    let (ok, out) = lab(&dir, &["partition", "heartbeat"]);
    assert!(ok && out.contains("heartbeat between alpha and bravo cut"), "{out}");
    let (ok, out) = lab(&dir, &["down"]);
    assert!(ok && out.contains("nothing left behind"), "{out}");
    assert_eq!(leftovers(&dir), "", "left behind after down");
    // down on a lab that is already down is fine too.
    assert!(lab(&dir, &["down"]).0);
}
