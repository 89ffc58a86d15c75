//! Golden tests for `pairbeat config import` on the seed documents' Heartbeat files,
//! and the round trip: import → fill in the named placeholders → `config check` passes.
//!
//! Regenerate the golden files after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test config_import`, and read the diff.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Copies a seed's files to a scratch dir with authkeys at 0600 (git does not keep modes).
fn scratch_copy(seed: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ha.cf", "haresources", "authkeys", "drbd.conf"] {
        let from = fixtures().join(seed).join(f);
        if f != "drbd.conf" || from.exists() {
            std::fs::copy(from, dir.path().join(f)).unwrap();
        }
    }
    std::fs::set_permissions(dir.path().join("authkeys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

fn pairbeat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args(args)
        .output()
        .unwrap()
}

fn import(seed: &str, node: &str) -> (tempfile::TempDir, String, String, bool) {
    import_with(seed, node, false)
}

/// The import, with the seed's drbd.conf too when `drbd`.
fn import_with(seed: &str, node: &str, drbd: bool) -> (tempfile::TempDir, String, String, bool) {
    let dir = scratch_copy(seed);
    let p = |f: &str| dir.path().join(f).display().to_string();
    let mut args = vec![
        "config".to_string(),
        "import".into(),
        "--ha-cf".into(),
        p("ha.cf"),
        "--haresources".into(),
        p("haresources"),
        "--authkeys".into(),
        p("authkeys"),
        "--node".into(),
        node.into(),
    ];
    if drbd {
        args.extend(["--drbd-conf".into(), p("drbd.conf")]);
    }
    let out = pairbeat(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let scrub = |s: &[u8]| String::from_utf8_lossy(s).replace(&dir.path().display().to_string(), "@SEED@");
    let (stdout, stderr) = (scrub(&out.stdout), scrub(&out.stderr));
    (dir, stdout, stderr, out.status.success())
}

fn golden(name: &str, actual: &str) {
    common::golden(&fixtures().join(name), actual);
}

/// Replaces each `<PLACEHOLDER>=value` line of the seed's .fill file in the imported TOML.
fn fill(seed: &str, toml: &str) -> String {
    let mut text = toml.to_string();
    for line in std::fs::read_to_string(fixtures().join(format!("{seed}.fill")))
        .unwrap()
        .lines()
    {
        let (placeholder, value) = line.split_once('=').unwrap();
        assert!(
            text.contains(placeholder),
            "{placeholder} is not in the import of {seed}"
        );
        text = text.replace(placeholder, value);
    }
    text
}

fn round_trip(seed: &str, node: &str) {
    round_trip_as(seed, seed, node, false, None);
}

/// `case` names the golden and .fill files: the seed's name, `-drbd` with its drbd.conf.
/// `refused`: what check still says once the placeholders are filled, and the
/// authkeys that mends it.
fn round_trip_as(case: &str, seed: &str, node: &str, drbd: bool, refused: Option<(&str, &str)>) {
    let (dir, toml, notes, ok) = import_with(seed, node, drbd);
    assert!(ok, "import of {seed} failed:\n{notes}");
    golden(&format!("{case}.expected.toml"), &toml);
    golden(&format!("{case}.expected.notes"), &notes);

    // As imported, check must refuse it and name every placeholder.
    let conf = dir.path().join("pairbeat.toml");
    std::fs::write(&conf, toml.replace("@SEED@", &dir.path().display().to_string())).unwrap();
    let out = pairbeat(&["config", "check", conf.to_str().unwrap(), "--node", node]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unfilled import passed check:\n{err}");
    for line in std::fs::read_to_string(fixtures().join(format!("{case}.fill")))
        .unwrap()
        .lines()
    {
        let placeholder = line.split_once('=').unwrap().0;
        assert!(err.contains(placeholder), "check did not name {placeholder}:\n{err}");
    }

    // Filled in, it passes.
    let filled = fill(case, &toml).replace("@SEED@", &dir.path().display().to_string());
    std::fs::write(&conf, filled).unwrap();
    if let Some((why, authkeys)) = refused {
        let out = pairbeat(&["config", "check", conf.to_str().unwrap(), "--node", node]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{err}");
        std::fs::write(dir.path().join("authkeys"), authkeys).unwrap();
    }
    let out = pairbeat(&["config", "check", conf.to_str().unwrap(), "--node", node]);
    assert!(
        out.status.success(),
        "filled import of {seed} fails check:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn seed_000_with_its_drbd_conf_runs_the_pairbeat_replica_and_checks_once_filled() {
    round_trip_as("seed-000-drbd", "seed-000", "NAMENODE01", true, None);
}

#[test]
fn seed_003_with_its_drbd_conf_runs_the_pairbeat_replica_and_checks_once_filled() {
    // Its authkeys signs with crc, which a replica refuses (anyone could forge its
    // frames); with a sha1 key it passes.
    round_trip_as(
        "seed-003-drbd",
        "seed-003",
        "server1",
        true,
        Some((
            "[[replica]] needs real keys, and the cluster's authkeys method is crc",
            "auth 1\n1 sha1 FooFunFactory\n",
        )),
    );
}

#[test]
fn without_drbd_conf_drbddisk_stays_real_drbd() {
    let (_dir, toml, _, ok) = import("seed-003", "server1");
    assert!(ok);
    assert!(toml.contains("agent = \"heartbeat:drbddisk\""), "{toml}");
    assert!(
        !toml.contains("[[replica]]") && toml.contains("device = \"/dev/drbd0\""),
        "{toml}"
    );
}

#[test]
fn a_drbd_conf_that_does_not_parse_is_reported_at_its_line() {
    let dir = scratch_copy("seed-003");
    std::fs::write(
        dir.path().join("drbd.conf"),
        "resource r0 {\n  on server1 { disk /dev/sda4;\n",
    )
    .unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let out = pairbeat(&[
        "config",
        "import",
        "--ha-cf",
        &p("ha.cf"),
        "--drbd-conf",
        &p("drbd.conf"),
        "--node",
        "server1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("drbd.conf:1:1: error: this block is never closed"),
        "{err}"
    );
}

#[test]
fn seed_000_line_namenode_imports_and_checks_once_filled() {
    round_trip("seed-000", "NAMENODE01");
}

#[test]
fn seed_003_hadoop_drbd_imports_and_checks_once_filled() {
    round_trip("seed-003", "server1");
}

#[test]
fn seed_003_from_the_other_node_puts_the_ucast_address_on_the_right_node() {
    // server3's ha.cf would name server1's address; importing 003's file "as server3"
    // must therefore give 10.0.0.203 to server1.
    let (_dir, toml, _, ok) = import("seed-003", "server3");
    assert!(ok);
    assert!(toml.contains("address.server1 = \"10.0.0.203\""), "{toml}");
    assert!(
        toml.contains("address.server3 = \"<ADDRESS OF server3 ON eth1>\""),
        "{toml}"
    );
}

#[test]
fn unknown_origin_leaves_both_ucast_addresses_to_fill_and_says_why() {
    let (_dir, toml, notes, ok) = import("seed-003", "somewhere-else");
    assert!(ok);
    assert!(
        toml.contains("address.server1 = \"<ADDRESS OF server1 ON eth1>\""),
        "{toml}"
    );
    assert!(
        notes.contains("which node owns which address is not in ha.cf"),
        "{notes}"
    );
}

#[test]
fn ping_nodes_ipfail_dopd_and_ipmi_fencing_become_tiebreak_and_fence_and_check_once_filled() {
    round_trip("heartbeat-ipfail", "alpha");
    let (_dir, toml, notes, _) = import("heartbeat-ipfail", "alpha");
    for want in [
        "targets = [\"icmp:192.168.10.1\", \"icmp:192.168.10.2\", \"icmp:192.168.10.3\", \"icmp:<ADDRESS OF gw.example.net>\"]",
        "timeout = \"8s\"  # deadping, line 17",
        "agent = \"fence_ipmilan\"",
        "[fence.node.bravo]\nparams = { ip = \"192.168.30.12\", username = \"admin\", password = \"s3cret\", lanplus = \"1\" }  # line 24",
    ] {
        assert!(toml.contains(want), "{want} not in:\n{toml}");
    }
    for want in [
        "ha.cf:15:1: warning: ping_group uplinks: its 2 addresses become [tiebreak] targets one by one",
        "ha.cf:16:1: warning: ping node `gw.example.net` is a name",
        "ha.cf:18:1: warning: `respawn` of ipfail is not needed: [tiebreak] does its job",
        "ha.cf:21:1: warning: `respawn` of dopd is not needed",
        "ha.cf:26:1: warning: stonith plugin `meatware` is not translated",
    ] {
        assert!(notes.contains(want), "{want} not in:\n{notes}");
    }
    assert!(!notes.contains("does not respawn ipfail"), "{notes}");
}

#[test]
fn a_power_switch_asks_for_each_nodes_outlet_and_bad_lines_are_named() {
    let dir = scratch_copy("heartbeat-ipfail");
    let cf = dir.path().join("ha.cf");
    let text = std::fs::read_to_string(&cf).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("stonith_host") && !l.starts_with("respawn"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + "stonith_host * apcmaster 192.168.30.5 apc apcpw\nstonith_host * apcmaster 192.168.30.5 apc\n";
    std::fs::write(&cf, text).unwrap();
    let out = pairbeat(&["config", "import", "--ha-cf", cf.to_str().unwrap(), "--node", "alpha"]);
    let (toml, notes) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(toml.contains("agent = \"fence_apc\""), "{toml}");
    assert!(
        toml.contains("params = { ip = \"192.168.30.5\", username = \"apc\", password = \"apcpw\" }"),
        "{toml}"
    );
    assert!(
        toml.contains("[fence.node.alpha]\nparams = { plug = \"<OUTLET OF alpha>\" }"),
        "{toml}"
    );
    assert!(
        notes.contains("apcmaster takes 3 parameters (ip username password), this line has 2"),
        "{notes}"
    );
    assert!(
        notes.contains("does not respawn ipfail: Heartbeat only watched them"),
        "{notes}"
    );
}

#[test]
fn run_on_the_node_itself_its_own_ucast_address_is_read_from_the_interface() {
    // A host named server1 (its own UTS namespace) whose eth1 (a veth: this kernel has no dummy links) carries an address in
    // the peer's subnet (ha.cf: `ucast eth1 10.0.0.203`) and one in another.
    let net = common::Net::new(1);
    let up = net.exec(
        0,
        "ip link add eth1 type veth peer name eth1p && ip addr add 192.168.5.1/24 dev eth1 && \
         ip addr add 10.0.0.201/24 dev eth1 && ip link set eth1 up",
    );
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let dir = scratch_copy("seed-003");
    let d = dir.path().display();
    let bin = env!("CARGO_BIN_EXE_pairbeat");
    let out = net.exec(
        0,
        &format!(
            "unshare --uts sh -c 'hostname server1 && exec {bin} config import --ha-cf {d}/ha.cf \
             --haresources {d}/haresources --authkeys {d}/authkeys > {d}/pairbeat.toml'"
        ),
    );
    let (toml, notes) = (
        std::fs::read_to_string(dir.path().join("pairbeat.toml")).unwrap(),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{notes}");
    assert!(
        toml.contains("address.server1 = \"10.0.0.201\"  # eth1's address on this host, in the peer's subnet"),
        "{toml}"
    );
    // The seed's one placeholder was that address: none is left, and check passes.
    assert!(!notes.contains("fill in these values"), "{notes}");
    let check = net.exec(0, &format!("{bin} config check {d}/pairbeat.toml --node server1"));
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    // With --node naming another host, this host's interfaces are not that node's.
    let out = net.exec(
        0,
        &format!("unshare --uts sh -c 'hostname server1 && exec {bin} config import --ha-cf {d}/ha.cf --node server3'"),
    );
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(
        toml.contains("address.server3 = \"<ADDRESS OF server3 ON eth1>\""),
        "{toml}"
    );
}

#[test]
fn unreadable_ha_cf_is_an_error_naming_the_file() {
    let out = pairbeat(&["config", "import", "--ha-cf", "/nonexistent/ha.cf"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/ha.cf: error: cannot read"), "{err}");
}
