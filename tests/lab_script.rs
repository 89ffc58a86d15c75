//! scripts/lab, the two-node lab behind `make demo`: up is idempotent, a crash of the
//! active host moves the group (seen from the client), and down leaves nothing behind
//! — no namespace, no loop device, no directory — whatever state the lab was in.

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
    let (ok, _) = lab(&dir, &["crash", "alpha"]);
    assert!(ok);
    let (ok, ms) = lab(&dir, &["wait-served", "bravo", "30"]);
    assert!(ok, "bravo never served: {ms}\n{}", lab(&dir, &["status"]).1);
    println!("lab: crash of alpha -> client served by bravo after {} ms", ms.trim());
    let (ok, out) = lab(&dir, &["down"]);
    assert!(ok && out.contains("nothing left behind"), "{out}");
    assert_eq!(leftovers(&dir), "", "left behind after down");
    // down on a lab that is already down is fine too.
    assert!(lab(&dir, &["down"]).0);
}
