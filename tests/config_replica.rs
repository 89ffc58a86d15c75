//! `[[replica]]` in pairbeat.toml: defaults, and each rule with its position and a
//! hint, through the library's `load` (what `pairbeat config check` runs).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use pairbeat::config;
use pairbeat::replica::state::Fencing;

const BASE: &str = r#"[cluster]
name = "pair"

[[node]]
name = "alpha"

[[node]]
name = "bravo"

[[link]]
kind = "ucast"
interface = "eth1"
address.alpha = "10.0.0.1"
address.bravo = "10.0.0.2"

[timing]
keepalive = "1s"
deadtime = "10s"

[auth]
authkeys = "authkeys"

[tiebreak]
targets = ["icmp:10.0.0.254"]

[group]
[[group.resource]]
id = "vip"
agent = "ocf:heartbeat:IPaddr2"
params = { ip = "10.0.0.100" }

[[replica]]
name = "r0"
backing = "/var/lib/pairbeat/replica/r0.img"
size = "10GiB"
address.alpha = "10.0.1.1"
address.bravo = "10.0.1.2"
"#;

fn load(text: &str, method: &str) -> Result<(config::Config, String), String> {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("authkeys");
    let key = if method == "crc" {
        "1 crc\n".to_string()
    } else {
        format!("1 {method} secret\n")
    };
    std::fs::write(&keys, format!("auth 1\n{key}")).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.path().join("pairbeat.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    config::load(&path, Some("alpha"))
        .map(|(c, w)| (c, w.to_string()))
        .map_err(|d| d.to_string())
}

fn errors(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "test bug: {from:?} not in BASE");
    match load(&BASE.replacen(from, to, 1), "sha256") {
        Ok(_) => panic!("accepted {to:?} in place of {from:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn has(report: &str, needle: &str) {
    assert!(report.contains(needle), "expected {needle:?} in:\n{report}");
}

#[test]
fn a_replica_gets_drbds_defaults_and_its_meta_file_beside_the_image() {
    let (c, warnings) = load(BASE, "sha256").unwrap();
    assert_eq!(warnings, "");
    let r = &c.replicas[0];
    assert_eq!(r.name, "r0");
    assert_eq!(r.size, 10 << 30);
    assert_eq!(r.meta.to_str(), Some("/var/lib/pairbeat/replica/r0.img.meta"));
    assert_eq!(r.port, 7789);
    assert_eq!(r.address[1].to_string(), "10.0.1.2");
    assert_eq!(r.fencing, Fencing::ResourceOnly, "resource-only without [fence]");
    assert_eq!(
        (r.timeout, r.ping_interval),
        (Duration::from_secs(1), Duration::from_millis(500))
    );
    assert_eq!(
        (r.outdate_timeout, r.io_watchdog),
        (Duration::from_secs(5), Duration::from_secs(10))
    );
    assert_eq!((r.extent, r.resync_rate), (4 << 20, 100 << 20));
    // No [[replica]] at all is fine: nothing to serve.
    let (c, _) = load(&BASE[..BASE.find("[[replica]]").unwrap()], "sha256").unwrap();
    assert!(c.replicas.is_empty());
}

#[test]
fn every_bad_value_is_reported_with_its_line_and_a_hint() {
    has(
        &errors("size = \"10GiB\"", "size = \"ten\""),
        "pairbeat.toml:35:8: error: size is not a size",
    );
    has(
        &errors("size = \"10GiB\"", "size = 5000"),
        "size 5000 is not a multiple of 4096 bytes",
    );
    has(
        &errors("name = \"r0\"", "name = \"r 0\""),
        "replica name `r 0` is not a plain name",
    );
    has(
        &errors("backing = \"/var/lib/pairbeat/replica/r0.img\"", "backing = \"r0.img\""),
        "is not an absolute path",
    );
    has(
        &errors("address.bravo = \"10.0.1.2\"", "address.bravoo = \"10.0.1.2\""),
        "did you mean `bravo`?",
    );
    has(
        &errors("address.bravo = \"10.0.1.2\"", "address.bravo = \"10.0.1.1\""),
        "same replication address",
    );
    has(
        &errors("address.bravo = \"10.0.1.2\"", "address.bravo = \"ten\""),
        "`ten` is not an IP address",
    );
    let e = errors("size = \"10GiB\"", "size = \"10GiB\"\nfencing = \"resource-olny\"");
    has(&e, "fencing `resource-olny` is not a fencing mode");
    has(&e, "did you mean `resource-only`?");
    has(
        &errors(
            "size = \"10GiB\"",
            "size = \"10GiB\"\nfencing = \"resource-and-stonith\"",
        ),
        "needs a [fence] section",
    );
    has(
        &errors("size = \"10GiB\"", "size = \"10GiB\"\nextent = \"3MiB\""),
        "extent 3145728 is not a power of two",
    );
    has(
        &errors("size = \"10GiB\"", "size = \"10GiB\"\nio_watchdog = \"5s\""),
        "io_watchdog (5s) must exceed timeout + outdate_timeout (6s)",
    );
    has(
        &errors("size = \"10GiB\"", "size = \"10GiB\"\nping_interval = \"2s\""),
        "ping_interval (2s) must be under timeout (1s)",
    );
    has(
        &errors("size = \"10GiB\"", "size = \"10GiB\"\nport = 70000"),
        "port 70000 is not a TCP port",
    );
    has(
        &errors("size = \"10GiB\"", "size = \"10GiB\"\nsizee = 1"),
        "unknown key `sizee`",
    );
    has(&errors("size = \"10GiB\"\n", ""), "[[replica]] has no `size`");
}

#[test]
fn two_replicas_need_their_own_names_and_ports() {
    let two = format!("{BASE}\n[[replica]]\nname = \"r0\"\nbacking = \"/srv/r1.img\"\nsize = 4096\naddress.alpha = \"10.0.1.1\"\naddress.bravo = \"10.0.1.2\"\n");
    let e = load(&two, "sha256").unwrap_err();
    has(&e, "replica `r0` is defined twice (first at line 32)");
    has(&e, "replica `r0` uses port 7789, as replica `r0` does");
    let ok = two.replacen(
        "name = \"r0\"\nbacking = \"/srv",
        "name = \"r1\"\nport = 7790\nbacking = \"/srv",
        1,
    );
    let (c, _) = load(&ok, "sha256").unwrap();
    assert_eq!(c.replicas.len(), 2);
}

#[test]
fn replication_needs_real_keys_and_warns_without_fencing_or_tiebreak() {
    let e = load(BASE, "crc").unwrap_err();
    has(&e, "[[replica]] needs real keys");
    let (_, w) = load(BASE, "md5").unwrap();
    has(&w, "authenticated with md5 keys");
    let bare = BASE.replace("[tiebreak]\ntargets = [\"icmp:10.0.0.254\"]\n", "");
    let (_, w) = load(&bare, "sha1").unwrap();
    has(&w, "replica `r0` has neither [fence] nor [tiebreak]");
    let (_, w) = load(
        &BASE.replace("size = \"10GiB\"", "size = \"10GiB\"\nfencing = \"dont-care\""),
        "sha1",
    )
    .unwrap();
    has(&w, "can lose acknowledged writes");
}

#[test]
fn the_sample_configs_replica_example_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/pairbeat.toml")).unwrap();
    let start = text.find("# [[replica]]").expect("the example is in etc/pairbeat.toml");
    let example: String = text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let base = &BASE[..BASE.find("[[replica]]").unwrap()];
    let (c, _) = load(&format!("{base}\n{example}\n"), "sha256").unwrap();
    assert_eq!(c.replicas[0].name, "r0");
    assert_eq!(c.replicas[0].fencing, Fencing::ResourceOnly);
}

#[test]
fn status_knows_which_group_resource_runs_which_replica() {
    let text = BASE.replacen(
        "[[group.resource]]\nid = \"vip\"",
        "[[group.resource]]\nid = \"disk\"\nagent = \"heartbeat:replicadisk\"\nargs = [\"r0\"]\n\n\
         [[group.resource]]\nid = \"ms\"\nagent = \"ocf:pairbeat:replica\"\nparams = { replica = \"r0\" }\n\n\
         [[group.resource]]\nid = \"vip\"",
        1,
    );
    let (c, _) = load(&text, "sha256").unwrap();
    let s = pairbeat::control::Status::initial(&c, Default::default());
    let replica_of: Vec<(&str, Option<&str>)> = s
        .group
        .resources
        .iter()
        .map(|r| (r.id.as_str(), r.replica.as_deref()))
        .collect();
    assert_eq!(replica_of, [("disk", Some("r0")), ("ms", Some("r0")), ("vip", None)]);
    assert_eq!(s.replicas.len(), 1);
    assert_eq!(
        (s.replicas[0].name.as_str(), &s.replicas[0].status),
        ("r0", &None),
        "not asked yet"
    );
}
