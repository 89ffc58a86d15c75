//! One test per validation rule of pairbeat.toml: each case edits a valid base file
//! and expects a finding with its position and a hint. Run through the library's
//! `load`, which `pairbeat config check` and `pairbeatd` both use.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use pairbeat::config::{self, AuthMethod, LinkKind, OnFail, OpName};

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

[group]
[[group.resource]]
id = "vip"
agent = "ocf:heartbeat:IPaddr2"
params = { ip = "10.0.0.100" }
op = [{ name = "monitor", interval = "10s" }]
"#;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("authkeys");
        std::fs::write(&keys, "auth 1\n1 sha1 secret\n").unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        Case { dir }
    }

    fn load(&self, text: &str) -> Result<(config::Config, String), String> {
        let path = self.dir.path().join("pairbeat.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        config::load(&path, Some("alpha"))
            .map(|(c, w)| (c, w.to_string()))
            .map_err(|d| d.to_string())
    }
}

/// Loads BASE with `from` replaced by `to` and returns the error report.
fn errors(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "test bug: {from:?} not in BASE");
    match Case::new().load(&BASE.replacen(from, to, 1)) {
        Ok(_) => panic!("accepted a config with {to:?} in place of {from:?}"),
        Err(e) => e,
    }
}

/// Asserts the report has `needle`, printing the report on failure.
#[track_caller]
fn has(report: &str, needle: &str) {
    assert!(report.contains(needle), "expected {needle:?} in:\n{report}");
}

#[test]
fn base_config_is_valid_with_documented_defaults() {
    let (c, warnings) = Case::new().load(BASE).unwrap();
    assert_eq!(warnings, "");
    assert_eq!(c.nodes, ["alpha".to_string(), "bravo".to_string()]);
    assert_eq!(c.local_name(), "alpha");
    assert_eq!(c.peer_name(), "bravo");
    assert_eq!(c.links[0].name, "eth1");
    assert_eq!(c.links[0].port, 694);
    assert!(matches!(c.links[0].kind, LinkKind::Ucast { .. }));
    assert_eq!(c.timing.warntime, Duration::from_secs(5));
    assert_eq!(c.timing.initdead, Duration::from_secs(20));
    assert_eq!(c.auth.signing_key().method, AuthMethod::Sha1);
    assert_eq!(c.failover.preferred, 0);
    assert!(!c.failover.auto_failback);
    assert_eq!(c.group.id, "group");
    assert_eq!(c.group.resources[0].ops[0].on_fail, OnFail::Restart);
    assert_eq!(c.daemon.socket.to_str(), Some("/run/pairbeat/pairbeat.sock"));
    assert_eq!(c.daemon.log_level, log::LevelFilter::Info);
}

#[test]
fn sample_config_in_etc_is_valid() {
    let case = Case::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/pairbeat.toml")).unwrap();
    let (c, _) = case.load(&text.replace("/etc/pairbeat/authkeys", "authkeys")).unwrap();
    assert_eq!(c.links.len(), 2);
    assert_eq!(c.group.resources.len(), 4);
    assert_eq!(
        c.group.resources[1]
            .ops
            .iter()
            .find(|o| o.name == OpName::Stop)
            .unwrap()
            .on_fail,
        OnFail::Block
    );
}

#[test]
fn three_mistakes_are_all_reported_with_lines() {
    let text = BASE
        .replace("keepalive = \"1s\"", "keepalive = \"1s\"\nkeepalive_ms = 5")
        .replace("deadtime = \"10s\"", "deadtime = \"10s\"\ninitdead = \"5s\"")
        .replace("agent = \"ocf:heartbeat:IPaddr2\"", "agent = \"ocf:IPaddr2\"");
    let e = Case::new().load(&text).unwrap_err();
    has(&e, "pairbeat.toml:18:1: error: unknown key `keepalive_ms` in [timing]");
    has(
        &e,
        "pairbeat.toml:20:12: error: initdead (5s) must be at least deadtime (10s)",
    );
    has(&e, "pairbeat.toml:28:9: error: `ocf:IPaddr2` is not an agent");
    assert_eq!(e.matches(": error: ").count(), 3, "{e}");
}

// --- structure --------------------------------------------------------------------

#[test]
fn unknown_key_suggests_the_closest() {
    let e = errors("deadtime =", "deadtmie =");
    has(&e, "unknown key `deadtmie` in [timing]");
    has(&e, "did you mean `deadtime`?");
}

#[test]
fn wrong_type_names_the_key_and_table() {
    has(
        &errors("name = \"pair\"", "name = 7"),
        "pairbeat.toml:2:8: error: `name` in [cluster]: invalid type",
    );
}

#[test]
fn syntax_error_has_position() {
    let e = errors("[timing]", "[timing");
    has(&e, "pairbeat.toml:16:8: error: TOML syntax: unclosed table");
    // Nothing else: checking a half-read file would only add noise.
    assert!(!e.contains("no [cluster]"), "{e}");
}

// --- cluster and nodes ------------------------------------------------------------

#[test]
fn cluster_section_and_name_are_required() {
    has(
        &errors("[cluster]\nname = \"pair\"\n", ""),
        "there is no [cluster] section",
    );
    has(&errors("name = \"pair\"", ""), "[cluster] has no `name`");
    has(
        &errors("name = \"pair\"", "name = \"my pair!\""),
        "cluster name `my pair!` is not a plain name",
    );
}

#[test]
fn exactly_two_distinct_nodes() {
    has(
        &errors("[[node]]\nname = \"bravo\"\n", ""),
        "pairbeat runs on exactly two nodes; 1 [[node]] defined",
    );
    has(
        &errors("name = \"bravo\"", "name = \"bravo\"\n[[node]]\nname = \"charlie\""),
        "3 [[node]] defined",
    );
    has(
        &errors("name = \"bravo\"", "name = \"alpha\""),
        "node `alpha` is defined twice",
    );
    has(
        &errors("name = \"bravo\"", "name = \"bra vo\""),
        "node name `bra vo` is not a host name",
    );
    has(
        &errors("[[node]]\nname = \"alpha\"\n\n[[node]]\nname = \"bravo\"\n", ""),
        "no [[node]] is defined",
    );
}

#[test]
fn local_node_must_be_one_of_the_two() {
    let case = Case::new();
    let path = case.dir.path().join("p.toml");
    std::fs::write(&path, BASE).unwrap();
    let e = config::load(&path, Some("charlie")).unwrap_err().to_string();
    has(&e, "this host (`charlie`) is neither node `alpha` nor node `bravo`");
    has(&e, "pass --node alpha");
    let e = config::load(&path, Some("ALPHA")).unwrap_err().to_string();
    has(&e, "node names are compared exactly");
}

// --- links ------------------------------------------------------------------------

#[test]
fn at_least_one_link() {
    let e = errors("[[link]]\nkind = \"ucast\"\ninterface = \"eth1\"\naddress.alpha = \"10.0.0.1\"\naddress.bravo = \"10.0.0.2\"\n", "");
    has(&e, "no [[link]] is defined");
}

#[test]
fn link_kind_and_interface() {
    has(
        &errors("kind = \"ucast\"", "kind = \"serial\""),
        "unknown link kind `serial`",
    );
    has(&errors("kind = \"ucast\"\n", ""), "this [[link]] has no `kind`");
    has(
        &errors("interface = \"eth1\"\n", ""),
        "this [[link]] has no `interface`",
    );
    has(
        &errors("interface = \"eth1\"", "interface = \"a-very-long-interface0\""),
        "is not an interface name",
    );
    has(
        &errors("interface = \"eth1\"", "interface = \"eth1\"\nport = 70000"),
        "port 70000 is out of range",
    );
}

#[test]
fn ucast_needs_both_nodes_addresses() {
    has(
        &errors("address.bravo = \"10.0.0.2\"\n", ""),
        "this ucast link has no address for node `bravo`",
    );
    let e = errors("address.bravo", "address.brav");
    has(&e, "`brav` is not a node");
    has(&e, "did you mean `bravo`?");
    has(
        &errors("\"10.0.0.2\"", "\"10.0.0.256\""),
        "`10.0.0.256` is not an IP address",
    );
    has(
        &errors("\"10.0.0.2\"", "\"10.0.0.1\""),
        "both nodes have address 10.0.0.1",
    );
    has(
        &errors("\"10.0.0.2\"", "\"fe80::2\""),
        "one node's address is IPv4 and the other's IPv6",
    );
    has(
        &errors("\"10.0.0.2\"", "\"224.0.0.9\""),
        "cannot be a node's unicast address",
    );
}

#[test]
fn keys_of_other_link_kinds_are_refused() {
    has(
        &errors("kind = \"ucast\"", "kind = \"ucast\"\nttl = 3"),
        "`ttl` applies to mcast links, and this one is ucast",
    );
    has(
        &errors("kind = \"ucast\"", "kind = \"bcast\""),
        "`address` applies to ucast links, and this one is bcast",
    );
}

#[test]
fn mcast_group_and_ttl() {
    let mcast = "[[link]]\nkind = \"mcast\"\ninterface = \"eth2\"\n";
    let add = |extra: &str| errors("[timing]", &format!("{mcast}{extra}\n[timing]"));
    has(&add(""), "this mcast [[link]] has no `group`");
    has(
        &add("group = \"10.1.1.1\""),
        "`10.1.1.1` is not an IPv4 multicast address",
    );
    has(&add("group = \"239.1.1.1\"\nttl = 0"), "ttl 0 is out of range");
    let ok = BASE.replace(
        "[timing]",
        &format!("{mcast}group = \"239.1.1.1\"\nloop = true\n[timing]"),
    );
    let (c, _) = Case::new().load(&ok).unwrap();
    assert!(matches!(
        c.links[1].kind,
        LinkKind::Mcast {
            ttl: 1,
            loopback: true,
            ..
        }
    ));
}

#[test]
fn link_names_are_unique() {
    let dup = "[[link]]\nkind = \"bcast\"\ninterface = \"eth1\"\n[timing]";
    has(
        &errors("[timing]", dup),
        "a second link is named `eth1` (the first is at line 10)",
    );
}

// --- timing -----------------------------------------------------------------------

#[test]
fn durations_need_a_unit_and_a_value() {
    let e = errors("keepalive = \"1s\"", "keepalive = 1");
    has(&e, "keepalive = 1 has no unit");
    has(&e, "write keepalive = \"1s\" or \"1ms\"");
    has(
        &errors("keepalive = \"1s\"", "keepalive = \"1 fortnight\""),
        "is not a duration",
    );
    has(
        &errors("keepalive = \"1s\"", "keepalive = \"0s\""),
        "keepalive must be more than zero",
    );
}

#[test]
fn deadtime_must_exceed_two_keepalives() {
    let e = errors("deadtime = \"10s\"", "deadtime = \"2s\"");
    has(
        &e,
        "pairbeat.toml:18:12: error: deadtime (2s) must be more than twice keepalive (1s)",
    );
    has(&e, "raise deadtime above 2s or lower keepalive below 1s");
}

#[test]
fn warntime_between_keepalive_and_deadtime() {
    has(
        &errors("deadtime = \"10s\"", "deadtime = \"10s\"\nwarntime = \"12s\""),
        "warntime (12s) must lie between keepalive (1s) and deadtime (10s)",
    );
    has(
        &errors("deadtime = \"10s\"", "deadtime = \"10s\"\nwarntime = \"500ms\""),
        "must lie between",
    );
}

#[test]
fn initdead_at_least_deadtime_and_warned_under_ten_seconds() {
    has(
        &errors("deadtime = \"10s\"", "deadtime = \"10s\"\ninitdead = \"9s\""),
        "initdead (9s) must be at least deadtime (10s)",
    );
    let text = BASE.replace(
        "keepalive = \"1s\"\ndeadtime = \"10s\"",
        "keepalive = \"100ms\"\ndeadtime = \"500ms\"\ninitdead = \"5s\"",
    );
    let (c, warnings) = Case::new().load(&text).unwrap();
    assert_eq!(c.timing.initdead, Duration::from_secs(5));
    has(&warnings, "warning: initdead (5s) is under 10s");
}

// --- auth -------------------------------------------------------------------------

#[test]
fn auth_is_required_and_single_sourced() {
    has(
        &errors("[auth]\nauthkeys = \"authkeys\"\n", ""),
        "there is no [auth] section",
    );
    has(&errors("authkeys = \"authkeys\"", ""), "[auth] names no key");
    has(
        &errors("authkeys = \"authkeys\"", "authkeys = \"authkeys\"\nmethod = \"sha1\""),
        "[auth] has both authkeys and an inline method/key",
    );
}

#[test]
fn authkeys_file_must_exist_and_be_private() {
    has(
        &errors("authkeys = \"authkeys\"", "authkeys = \"/nonexistent/authkeys\""),
        "cannot read the authkeys file",
    );
    let case = Case::new();
    std::fs::set_permissions(case.dir.path().join("authkeys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = case.load(BASE).unwrap_err();
    has(&e, "the authkeys file is readable by group or others (mode 0644)");
    has(&e, "chmod 600");
}

#[test]
fn inline_keys() {
    let inline = |s: &str| errors("authkeys = \"authkeys\"", s);
    let e = inline("method = \"sha265\"\nkey = \"k\"");
    has(&e, "unknown auth method `sha265`");
    has(&e, "did you mean \"sha256\"?");
    has(&inline("method = \"crc\"\nkey = \"k\""), "crc takes no key");
    has(&inline("method = \"sha256\""), "[auth] has no `key`");
    has(&inline("key = \"k\""), "[auth] has no `method`");
    has(
        &inline("method = \"sha1\"\nkey = \"k\"\nkey_index = 16"),
        "key_index 16 is out of range",
    );
    has(&inline("method = \"sha1\"\nkey = \"\""), "the key is empty");

    let text = BASE.replace(
        "authkeys = \"authkeys\"",
        "method = \"sha256\"\nkey = \"0123456789abcdef\"\nkey_index = 3",
    );
    let (c, _) = Case::new().load(&text).unwrap();
    assert_eq!(c.auth.sign_index, 3);
    assert_eq!(c.auth.signing_key().method, AuthMethod::Sha256);
    assert_eq!(c.auth.signing_key().secret, b"0123456789abcdef");

    let (_, warnings) = Case::new()
        .load(&BASE.replace("authkeys = \"authkeys\"", "method = \"crc\""))
        .unwrap();
    has(&warnings, "crc is a checksum, not authentication");
}

#[test]
fn inline_key_makes_the_config_file_secret() {
    let case = Case::new();
    let path = case.dir.path().join("pairbeat.toml");
    std::fs::write(
        &path,
        BASE.replace("authkeys = \"authkeys\"", "method = \"sha1\"\nkey = \"k\""),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
    let e = config::load(&path, Some("alpha")).unwrap_err().to_string();
    has(
        &e,
        "pairbeat.toml (it holds an inline key) is readable by group or others (mode 0604)",
    );
}

// --- failover ---------------------------------------------------------------------

#[test]
fn preferred_node_must_be_a_node() {
    let e = errors("[group]", "[failover]\npreferred_node = \"bravoo\"\n\n[group]");
    has(&e, "preferred_node `bravoo` is not a node");
    has(&e, "did you mean `bravo`?");
    let (c, _) = Case::new()
        .load(&BASE.replace(
            "[group]",
            "[failover]\npreferred_node = \"bravo\"\nauto_failback = true\n[group]",
        ))
        .unwrap();
    assert_eq!((c.failover.preferred, c.failover.auto_failback), (1, true));
}

// --- split brain, tie-break, fencing -----------------------------------------------

#[test]
fn split_brain_policy_is_named_from_a_list() {
    let e = errors("[group]", "[split_brain]\npolicy = \"keep-prefered\"\n[group]");
    has(&e, "unknown split-brain policy `keep-prefered`");
    has(&e, "did you mean `keep-preferred`?");
    let (c, _) = Case::new()
        .load(&BASE.replace("[group]", "[split_brain]\npolicy = \"stop-both\"\n[group]"))
        .unwrap();
    assert_eq!(c.split_brain, pairbeat::policy::SplitBrainPolicy::StopBoth);
    let (c, _) = Case::new().load(BASE).unwrap();
    assert_eq!(c.split_brain, pairbeat::policy::SplitBrainPolicy::KeepPreferred);
    assert!(c.tiebreak.is_none() && c.fence.is_none());
}

#[test]
fn tiebreak_targets_are_checked_each_with_its_place() {
    let e = errors(
        "[group]",
        "[tiebreak]\ntargets = [\"icmp:10.0.0.1\", \"ping:10.0.0.2\", \"tcp:10.0.0.3\", \"icmp:10.0.0.1\"]\n[group]",
    );
    has(&e, "unknown target kind `ping`");
    has(&e, "`10.0.0.3` is not ADDR:PORT");
    has(&e, "target `icmp:10.0.0.1` is listed twice");
    has(
        &errors("[group]", "[tiebreak]\ntargets = []\n[group]"),
        "[tiebreak] targets is empty",
    );
    has(
        &errors("[group]", "[tiebreak]\ninterval = \"1s\"\n[group]"),
        "[tiebreak] has no `targets`",
    );
    let e = errors(
        "[group]",
        "[tiebreak]\ntargets = [\"udp:10.0.0.53:53\"]\ninterval = \"2s\"\ntimeout = \"1s\"\n[group]",
    );
    has(&e, "tiebreak timeout (1s) must be longer than its interval (2s)");
    // Defaults: probe every keepalive, unreachable after warntime.
    let (c, _) = Case::new()
        .load(&BASE.replace("[group]", "[tiebreak]\ntargets = [\"tcp:[2001:db8::1]:22\"]\n[group]"))
        .unwrap();
    let t = c.tiebreak.unwrap();
    assert_eq!((t.interval, t.timeout), (c.timing.keepalive, c.timing.warntime));
    assert_eq!(t.targets[0].to_string(), "tcp:[2001:db8::1]:22");
}

#[test]
fn fence_device_params_per_node_and_delay() {
    let (c, warnings) = Case::new()
        .load(&BASE.replace(
            "[group]",
            "[fence]\nagent = \"fence_ipmilan\"\nparams = { login = \"admin\", passwd = \"s\" }\n[fence.node.alpha]\nparams = { ipaddr = \"10.0.0.11\" }\ndelay = \"5s\"\n[fence.node.bravo]\nparams = { ipaddr = \"10.0.0.12\", login = \"root\" }\n[group]",
        ))
        .unwrap();
    let f = c.fence.unwrap();
    assert_eq!(f.agent, std::path::Path::new("/usr/sbin/fence_ipmilan"));
    assert_eq!(f.action, "off");
    assert_eq!(f.params[0]["ipaddr"], "10.0.0.11");
    assert_eq!(f.params[0]["login"], "admin");
    assert_eq!(f.params[1]["login"], "root", "a node's params win over the common ones");
    assert_eq!(f.delay, [std::time::Duration::from_secs(5), std::time::Duration::ZERO]);
    assert_eq!(f.priority_delay, std::time::Duration::ZERO, "off unless set");
    assert!(!warnings.contains("names node"), "{warnings}");
    let (c, _) = Case::new()
        .load(&BASE.replace(
            "[group]",
            "[fence]\nagent = \"fence_ipmilan\"\npriority_delay = \"2s\"\nparams = { plug = \"x\" }\n[group]",
        ))
        .unwrap();
    assert_eq!(c.fence.unwrap().priority_delay, std::time::Duration::from_secs(2));
    let e = errors(
        "[group]",
        "[fence]\nagent = \"fence_ipmilan\"\npriority_delay = \"soon\"\n[group]",
    );
    assert!(e.contains("priority_delay"), "{e}");

    let e = errors(
        "[group]",
        "[fence]\nagent = \"bin/fence\"\naction = \"shoot\"\nparams = { action = \"on\" }\n[fence.node.charlie]\ndelay = \"1s\"\n[group]",
    );
    has(&e, "fence agent `bin/fence` is neither a name nor an absolute path");
    has(&e, "fence action `shoot` is not off or reboot");
    has(&e, "`action` is set by pairbeat, not in params");
    has(&e, "[fence.node.charlie] is not a node");
    has(
        &errors("[group]", "[fence]\ntimeout = \"5s\"\n[group]"),
        "[fence] has no `agent`",
    );
    // Nothing addresses a node: a warning that says what to add.
    let (_, warnings) = Case::new()
        .load(&BASE.replace("[group]", "[fence]\nagent = \"/usr/local/sbin/fence\"\n[group]"))
        .unwrap();
    assert!(warnings.contains("nothing in [fence] names node alpha"), "{warnings}");
}

// --- group ------------------------------------------------------------------------

#[test]
fn resource_ids_are_required_plain_and_unique() {
    has(&errors("id = \"vip\"\n", ""), "this [[group.resource]] has no `id`");
    has(
        &errors("id = \"vip\"", "id = \"v/ip\""),
        "resource id `v/ip` is not a plain name",
    );
    let second = "\n[[group.resource]]\nid = \"vip\"\nagent = \"lsb:nginx\"\n";
    let e = Case::new().load(&format!("{BASE}{second}")).unwrap_err();
    has(
        &e,
        "pairbeat.toml:31:6: error: resource id `vip` is already used at line 25",
    );
}

#[test]
fn agents_are_checked_by_class() {
    has(&errors("agent = \"ocf:heartbeat:IPaddr2\"\n", ""), "has no `agent`");
    has(
        &errors("ocf:heartbeat:IPaddr2", "systemd:nginx"),
        "the agent class must be",
    );
    has(
        &errors("ocf:heartbeat:IPaddr2", "heartbeat:IPaddr"),
        "heartbeat:IPaddr takes no named params",
    );
    has(
        &errors("params = { ip = \"10.0.0.100\" }", "args = [\"10.0.0.100\"]"),
        "ocf:heartbeat:IPaddr2 takes no positional args",
    );
    has(
        &errors(
            "agent = \"ocf:heartbeat:IPaddr2\"\nparams = { ip = \"10.0.0.100\" }",
            "agent = \"lsb:nginx\"\npromotable = true",
        ),
        "only OCF agents can be promotable",
    );
}

#[test]
fn params_must_be_env_names_and_scalars() {
    has(
        &errors("{ ip = ", "{ 1ip = "),
        "parameter name `1ip` cannot be an environment variable",
    );
    has(
        &errors("\"10.0.0.100\" }", "[\"10.0.0.100\"] }"),
        "parameter `ip` is a array; agents take text",
    );
    let (c, _) = Case::new()
        .load(&BASE.replace("\"10.0.0.100\" }", "\"10.0.0.100\", cidr_netmask = 24, arp = true }"))
        .unwrap();
    assert_eq!(c.group.resources[0].params["cidr_netmask"], "24");
    assert_eq!(c.group.resources[0].params["arp"], "true");
}

#[test]
fn failure_handling_settings() {
    let r = |s: &str| errors("op = [", &format!("{s}\nop = ["));
    has(
        &r("migration_threshold = 0"),
        "migration_threshold 0 must be at least 1",
    );
    has(&r("failure_timeout = 60"), "failure_timeout = 60 has no unit");
    let (c, _) = Case::new()
        .load(&BASE.replace("op = [", "migration_threshold = 3\nfailure_timeout = \"10m\"\nop = ["))
        .unwrap();
    assert_eq!(c.group.resources[0].migration_threshold, Some(3));
    assert_eq!(c.group.resources[0].failure_timeout, Some(Duration::from_secs(600)));
}

#[test]
fn ops_are_checked() {
    let op = |s: &str| errors("{ name = \"monitor\", interval = \"10s\" }", s);
    let e = op("{ name = \"monitr\", interval = \"10s\" }");
    has(&e, "unknown op `monitr`");
    has(&e, "did you mean \"monitor\"?");
    has(&op("{ name = \"monitor\" }"), "this monitor op has no `interval`");
    has(
        &op("{ name = \"monitor\", interval = \"0s\" }"),
        "a monitor interval must be more than zero",
    );
    has(
        &op("{ name = \"start\", interval = \"10s\" }"),
        "only monitor ops recur",
    );
    has(
        &op("{ name = \"start\", timeout = \"0s\" }"),
        "a timeout must be more than zero",
    );
    has(
        &op("{ name = \"start\", on_fail = \"reboot\" }"),
        "unknown on_fail `reboot`",
    );
    has(
        &op("{ name = \"stop\", on_fail = \"restart\" }"),
        "on_fail = \"restart\" cannot handle a failed stop",
    );
    has(
        &op("{ name = \"promote\" }"),
        "a promote op on a resource that is not promotable",
    );
    has(
        &op("{ name = \"monitor\", interval = \"10s\" }, { name = \"monitor\", interval = \"10s\" }"),
        "a second monitor op every 10s",
    );
    has(
        &op("{ name = \"monitor\", interval = \"10s\", check_level = -1 }"),
        "check_level -1 is negative",
    );
    let (c, _) = Case::new()
        .load(&BASE.replace(
            "{ name = \"monitor\", interval = \"10s\" }",
            "{ name = \"stop\", timeout = \"30s\" }, { name = \"monitor\", interval = \"10s\", check_level = 10 }",
        ))
        .unwrap();
    let ops = &c.group.resources[0].ops;
    assert_eq!(
        (ops[0].name, ops[0].on_fail, ops[0].timeout),
        (OpName::Stop, OnFail::Block, Some(Duration::from_secs(30)))
    );
    assert_eq!(ops[1].check_level, 10);
}

#[test]
fn an_empty_group_is_allowed_with_a_warning() {
    let text = BASE.split("[group]").next().unwrap().to_string();
    let (c, warnings) = Case::new().load(&text).unwrap();
    assert!(c.group.resources.is_empty());
    has(&warnings, "pairbeat will only watch membership");
}

// --- daemon -----------------------------------------------------------------------

#[test]
fn daemon_settings() {
    let d = |s: &str| errors("[group]", &format!("[daemon]\n{s}\n[group]"));
    has(
        &d("socket = \"run/pb.sock\""),
        "socket `run/pb.sock` is not an absolute path",
    );
    has(
        &d(&format!("socket = \"/{}\"", "x".repeat(120))),
        "unix sockets allow 107",
    );
    has(&d("state_dir = \"state\""), "state_dir `state` is not an absolute path");
    has(
        &d("socket_group = \"no-such-group-pb\""),
        "group `no-such-group-pb` does not exist on this host",
    );
    has(
        &d("log = \"journal\""),
        "log target `journal` is neither stderr, syslog nor an absolute path",
    );
    has(&d("log_level = \"verbose\""), "unknown log_level `verbose`");
    let (c, _) = Case::new()
        .load(&BASE.replace(
            "[group]",
            "[daemon]\nlog = \"/var/log/pb.log\"\nlog_level = \"debug\"\nsocket_group = \"root\"\n[group]",
        ))
        .unwrap();
    assert_eq!(c.daemon.log, config::LogTarget::File("/var/log/pb.log".into()));
    assert_eq!(c.daemon.socket_group.as_deref(), Some("root"));
}

#[test]
fn unreadable_config_names_the_file_and_the_default() {
    let e = config::load(std::path::Path::new("/nonexistent/pairbeat.toml"), Some("alpha"))
        .unwrap_err()
        .to_string();
    has(&e, "/nonexistent/pairbeat.toml: error: cannot read the configuration");
    has(&e, "pairbeat config import");
}

#[test]
fn linbit_drbd_must_be_promotable_name_its_resource_and_do_without_notifications() {
    let vip = "id = \"vip\"\nagent = \"ocf:heartbeat:IPaddr2\"\nparams = { ip = \"10.0.0.100\" }";
    let e = errors(
        vip,
        "id = \"drbd0\"\nagent = \"ocf:linbit:drbd\"\nparams = { drbd_resource = \"r0\" }",
    );
    assert!(
        e.contains("pairbeat.toml:26:9: error: ocf:linbit:drbd runs only as a promotable resource"),
        "{e}"
    );
    assert!(
        e.contains("pairbeat.toml:27:10: error: ocf:linbit:drbd refuses"),
        "at its params: {e}"
    );
    assert!(e.contains("add promotable = true"), "{e}");
    assert!(
        e.contains("without clone notifications") && e.contains("ignore_missing_notifications = \"true\""),
        "{e}"
    );
    let e = errors(
        vip,
        "id = \"drbd0\"\nagent = \"ocf:linbit:drbd\"\npromotable = true\nparams = { ignore_missing_notifications = \"true\" }",
    );
    assert!(
        e.contains("needs the DRBD resource it runs") && e.contains("drbd_resource = \"r0\""),
        "{e}"
    );
    assert!(!e.contains("without clone notifications"), "only what is wrong: {e}");
    let good = BASE.replacen(
        vip,
        "id = \"drbd0\"\nagent = \"ocf:linbit:drbd\"\npromotable = true\nparams = { drbd_resource = \"r0\", ignore_missing_notifications = \"true\" }",
        1,
    );
    let (c, _) = Case::new().load(&good).unwrap();
    assert!(c.group.resources[0].promotable);
}

// --- builtin:vip -------------------------------------------------------------------

#[test]
fn builtin_vip_parameters_are_checked_at_their_line() {
    let (c, warnings) = Case::new()
        .load(&BASE.replace(
            "agent = \"ocf:heartbeat:IPaddr2\"\nparams = { ip = \"10.0.0.100\" }",
            "agent = \"builtin:vip\"\nparams = { ip = \"10.0.0.100\", cidr_netmask = 24, nic = \"eth0\", arp_intervall = \"100\" }",
        ))
        .unwrap();
    assert_eq!(c.group.resources[0].agent.to_string(), "builtin:vip");
    assert!(
        warnings.contains("builtin:vip has no parameter `arp_intervall`")
            && warnings.contains("did you mean `arp_interval`?"),
        "{warnings}"
    );
    let e = errors(
        "agent = \"ocf:heartbeat:IPaddr2\"\nparams = { ip = \"10.0.0.100\" }",
        "agent = \"builtin:vip\"\nparams = { ip = \"10.0.0.300\", cidr_netmask = 40 }",
    );
    has(&e, "pairbeat.toml:27:17: error: builtin:vip");
    has(&e, "pairbeat.toml:27:46: error: builtin:vip");
    has(&e, "builtin:vip: `10.0.0.300` is not an IP address");
    has(&e, "builtin:vip: prefix length 40 is out of range (1 to 32)");
    let e = errors("agent = \"ocf:heartbeat:IPaddr2\"", "agent = \"builtin:ipaddr\"");
    has(&e, "the built-in agents are `builtin:vip`");
    let e = errors(
        "agent = \"ocf:heartbeat:IPaddr2\"\nparams = { ip = \"10.0.0.100\" }",
        "agent = \"builtin:vip\"\npromotable = true\nparams = { ip = \"10.0.0.100\" }",
    );
    has(&e, "only OCF agents can be promotable");
}

// --- builtin:filesystem --------------------------------------------------------------

#[test]
fn builtin_filesystem_parameters_are_checked_at_their_line() {
    let (c, warnings) = Case::new()
        .load(&BASE.replace(
            "agent = \"ocf:heartbeat:IPaddr2\"\nparams = { ip = \"10.0.0.100\" }",
            "agent = \"builtin:filesystem\"\nparams = { device = \"/dev/drbd0\", directory = \"/data\", fstype = \"ext2\", optoins = \"noatime\" }",
        ))
        .unwrap();
    assert_eq!(c.group.resources[0].agent.to_string(), "builtin:filesystem");
    assert!(
        warnings.contains("builtin:filesystem has no parameter `optoins`")
            && warnings.contains("did you mean `options`?"),
        "{warnings}"
    );
    assert!(
        warnings.contains("builtin:filesystem runs no fsck, and ext2 may need one after a crash"),
        "{warnings}"
    );
    let e = errors(
        "agent = \"ocf:heartbeat:IPaddr2\"\nparams = { ip = \"10.0.0.100\" }",
        "agent = \"builtin:filesystem\"\nparams = { device = \"drbd0\", directory = \"/data\", fstype = \"ext4\", run_fsck = \"force\" }",
    );
    has(
        &e,
        "pairbeat.toml:27:21: error: builtin:filesystem: `drbd0` is not an absolute path",
    );
    has(
        &e,
        "pairbeat.toml:27:79: error: builtin:filesystem: `run_fsck` is not supported",
    );
    has(&e, "error: builtin:filesystem: `run_fsck` is not supported");
    has(&e, "never runs fsck");
    let e = errors("agent = \"ocf:heartbeat:IPaddr2\"", "agent = \"builtin:mount\"");
    has(&e, "the built-in agents are `builtin:vip`, `builtin:filesystem`");
}
