//! pairbeat.toml: the validated configuration every other module works from.
//!
//! Loading has two phases. `parse` turns the text into `raw` serde structs (TOML
//! types and key names only); `validate` turns those into the `Config` below,
//! checking values and the rules that tie them together (timing, node names,
//! agents, authentication). Both phases collect every finding with its
//! file:line:column instead of stopping at the first, so `pairbeat config check`
//! and a refused daemon start print the same complete list.
//!
//! `import` translates Heartbeat's ha.cf / haresources / authkeys into this format,
//! and DRBD's drbd.conf (read by `drbdconf`) into its `[[replica]]` sections.

pub mod authkeys;
pub mod diag;
pub mod drbdconf;
pub mod import;
mod parse;
mod protect;
pub mod raw;
pub mod replica;
pub mod stonith;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diag::{Diagnostic, Diagnostics, Location, Severity, SourceFile};
// The key types belong to the wire and the timing to the shared vocabulary; config
// builds them and re-exports them so its users need one import.
pub use crate::model::Timing;
pub use crate::wire::auth::{Auth, AuthKey, AuthMethod};

/// Where the daemon and the CLI look for the configuration when not told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pairbeat/pairbeat.toml";
/// The control socket's default path; `[daemon] socket` overrides it.
pub const DEFAULT_SOCKET_PATH: &str = "/run/pairbeat/pairbeat.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pairbeat";
/// Heartbeat's port (`ha-cluster` in /etc/services), so the two can share a link.
pub const DEFAULT_UDP_PORT: u16 = 694;

/// A fully checked configuration, as seen from one of the two nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub cluster_name: String,
    /// The two nodes, in the order the file lists them.
    pub nodes: [String; 2],
    /// Index into `nodes` of the node this process runs on.
    pub local: usize,
    pub links: Vec<Link>,
    pub timing: Timing,
    pub auth: Auth,
    pub failover: Failover,
    /// What ends a split brain when the nodes hear each other again.
    pub split_brain: crate::model::SplitBrainPolicy,
    /// Ping tie-break targets; `None` when not configured.
    pub tiebreak: Option<Tiebreak>,
    /// The fencing device; `None` when not configured.
    pub fence: Option<Fence>,
    pub group: Group,
    pub daemon: DaemonSettings,
    /// Replicated disks served by pairbeat-replicad (`[[replica]]`).
    pub replicas: Vec<replica::ReplicaConfig>,
}

impl Config {
    pub fn local_name(&self) -> &str {
        &self.nodes[self.local]
    }

    pub fn peer_name(&self) -> &str {
        &self.nodes[1 - self.local]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Unique name shown in status; defaults to the interface name.
    pub name: String,
    pub interface: String,
    pub port: u16,
    pub kind: LinkKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// Unicast; each node's own address on this link, indexed like `Config::nodes`.
    Ucast { addresses: [IpAddr; 2] },
    /// Broadcast on the interface's broadcast address.
    Bcast,
    /// IPv4 multicast, as Heartbeat's `mcast IF GROUP PORT TTL LOOP`.
    Mcast { group: Ipv4Addr, ttl: u8, loopback: bool },
}

impl LinkKind {
    pub fn name(&self) -> &'static str {
        match self {
            LinkKind::Ucast { .. } => "ucast",
            LinkKind::Bcast => "bcast",
            LinkKind::Mcast { .. } => "mcast",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failover {
    /// Index into `Config::nodes` of the node that runs the group when both are up.
    pub preferred: usize,
    /// Move the group back to the preferred node when it returns.
    pub auto_failback: bool,
}

/// A ping tie-break target: reachable when it answers at all (an echo reply, a TCP
/// connect or refusal, a UDP reply or port-unreachable: the host is there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingTarget {
    Icmp(IpAddr),
    Tcp(SocketAddr),
    Udp(SocketAddr),
}

impl fmt::Display for PingTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingTarget::Icmp(a) => write!(f, "icmp:{a}"),
            PingTarget::Tcp(a) => write!(f, "tcp:{a}"),
            PingTarget::Udp(a) => write!(f, "udp:{a}"),
        }
    }
}

impl PingTarget {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` has no kind: write icmp:ADDR, tcp:ADDR:PORT or udp:ADDR:PORT"))?;
        let sock = |rest: &str| -> Result<SocketAddr, String> {
            rest.parse::<SocketAddr>()
                .map_err(|_| format!("`{rest}` is not ADDR:PORT (IPv6 as [ADDR]:PORT)"))
        };
        match kind {
            "icmp" => rest
                .parse::<IpAddr>()
                .map(PingTarget::Icmp)
                .map_err(|_| format!("`{rest}` is not an IP address")),
            "tcp" => sock(rest).map(PingTarget::Tcp),
            "udp" => sock(rest).map(PingTarget::Udp),
            other => Err(format!("unknown target kind `{other}`: use icmp, tcp or udp")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiebreak {
    pub targets: Vec<PingTarget>,
    /// How often each target is probed.
    pub interval: Duration,
    /// A target unanswered for this long counts as unreachable.
    pub timeout: Duration,
}

/// A fencing device, called with the fence-agents convention (key=value lines on stdin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub agent: PathBuf,
    /// `off` (default) or `reboot`.
    pub action: String,
    pub timeout: Duration,
    /// After a failed fence, the next attempt.
    pub retry: Duration,
    /// How often the device is checked with `action=monitor`.
    pub monitor_interval: Duration,
    /// Per node (index as in `Config::nodes`): the parameters that fence it.
    pub params: [BTreeMap<String, String>; 2],
    /// Per node: wait this long before fencing it, so it wins a fence race.
    pub delay: [Duration; 2],
    /// Wait this much more before fencing a peer that runs the group (Pacemaker's
    /// `priority-fencing-delay`): in a fence race after a partition, the node that
    /// runs the group wins and its clients see no outage.
    pub priority_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    /// In start order; stopped in reverse.
    pub resources: Vec<Resource>,
}

impl Group {
    /// The replicas the group runs (their names): what its promotion gate reads.
    pub fn replicas(&self) -> Vec<String> {
        self.resources
            .iter()
            .filter_map(|r| r.replica().map(str::to_string))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: String,
    pub agent: AgentSpec,
    /// OCF instance parameters, passed as OCF_RESKEY_<name>.
    pub params: BTreeMap<String, String>,
    /// Positional arguments of a Heartbeat v1 resource script (haresources' `::` fields).
    pub args: Vec<String>,
    pub promotable: bool,
    /// Failures on one node after which the group leaves it; `None`: never for a count.
    pub migration_threshold: Option<u32>,
    /// Failures older than this are forgotten; `None`: kept until `pairbeat cleanup`.
    pub failure_timeout: Option<Duration>,
    pub ops: Vec<Op>,
}

impl Resource {
    /// The replica this resource runs: `heartbeat:replicadisk NAME` or
    /// `ocf:pairbeat:replica` with `replica=NAME`.
    pub fn replica(&self) -> Option<&str> {
        match &self.agent {
            AgentSpec::Heartbeat { name } if name == "replicadisk" => self.args.first().map(String::as_str),
            AgentSpec::Ocf { provider, kind } if provider == "pairbeat" && kind == "replica" => {
                self.params.get("replica").map(String::as_str)
            }
            _ => None,
        }
    }
}

/// Which agent runs a resource, by class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSpec {
    /// /usr/lib/ocf/resource.d/PROVIDER/TYPE
    Ocf { provider: String, kind: String },
    /// /etc/init.d/NAME
    Lsb { name: String },
    /// Heartbeat v1 resource script: /etc/ha.d/resource.d/NAME, then /etc/init.d/NAME
    Heartbeat { name: String },
    /// Done inside pairbeatd, no process forked: `builtin:vip` (see `crate::vip`),
    /// `builtin:filesystem` (`crate::filesystem`).
    Builtin { name: String },
}

/// The agents pairbeatd runs itself.
pub const BUILTINS: &[&str] = &["vip", "filesystem"];

impl AgentSpec {
    /// Parses `ocf:PROVIDER:TYPE`, `lsb:NAME` or `heartbeat:NAME`; the error says what to write.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad_name = |n: &str| n.is_empty() || n.contains('/') || n == "." || n == "..";
        match parts.as_slice() {
            ["ocf", provider, kind] if !bad_name(provider) && !bad_name(kind) => Ok(AgentSpec::Ocf {
                provider: provider.to_string(),
                kind: kind.to_string(),
            }),
            ["ocf", ..] => Err("an OCF agent is written `ocf:PROVIDER:TYPE`, e.g. `ocf:heartbeat:IPaddr2`".into()),
            ["lsb", name] if !bad_name(name) => Ok(AgentSpec::Lsb { name: name.to_string() }),
            ["heartbeat", name] if !bad_name(name) => Ok(AgentSpec::Heartbeat { name: name.to_string() }),
            ["lsb" | "heartbeat", ..] => Err(format!("write `{}:NAME` with a plain script name (no `/`)", parts[0])),
            ["builtin", name] if BUILTINS.contains(name) => Ok(AgentSpec::Builtin { name: name.to_string() }),
            ["builtin", ..] => Err(format!(
                "the built-in agents are {}",
                BUILTINS
                    .iter()
                    .map(|b| format!("`builtin:{b}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => {
                Err("the agent class must be `ocf:PROVIDER:TYPE`, `lsb:NAME`, `heartbeat:NAME` or `builtin:NAME` (vip, filesystem)".into())
            }
        }
    }
}

impl fmt::Display for AgentSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentSpec::Ocf { provider, kind } => write!(f, "ocf:{provider}:{kind}"),
            AgentSpec::Lsb { name } => write!(f, "lsb:{name}"),
            AgentSpec::Heartbeat { name } => write!(f, "heartbeat:{name}"),
            AgentSpec::Builtin { name } => write!(f, "builtin:{name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpName {
    Start,
    Stop,
    Monitor,
    Promote,
    Demote,
}

impl OpName {
    pub const ALL: [&'static str; 5] = ["start", "stop", "monitor", "promote", "demote"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "start" => Some(OpName::Start),
            "stop" => Some(OpName::Stop),
            "monitor" => Some(OpName::Monitor),
            "promote" => Some(OpName::Promote),
            "demote" => Some(OpName::Demote),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        Self::ALL[*self as usize]
    }
}

/// What to do when an operation fails (Pacemaker's on-fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFail {
    /// Stop this resource and everything above it, then start them again.
    Restart,
    /// Move the whole group to the peer.
    Standby,
    /// Stop managing the group; leave everything as it is, visible in status.
    Block,
    /// Fence this node so the peer may take over.
    Fence,
}

impl OnFail {
    pub const ALL: [&'static str; 4] = ["restart", "standby", "block", "fence"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "restart" => Some(OnFail::Restart),
            "standby" => Some(OnFail::Standby),
            "block" => Some(OnFail::Block),
            "fence" => Some(OnFail::Fence),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub name: OpName,
    /// Zero for everything but recurring monitors.
    pub interval: Duration,
    /// `None`: the agent's meta-data default, else the built-in default.
    pub timeout: Option<Duration>,
    pub on_fail: OnFail,
    /// OCF_CHECK_LEVEL for monitors.
    pub check_level: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Syslog,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    pub socket: PathBuf,
    /// Members of this group may use the control socket besides root.
    pub socket_group: Option<String>,
    pub state_dir: PathBuf,
    pub log: LogTarget,
    pub log_level: log::LevelFilter,
    /// Run the daemon's thread at SCHED_RR priority and lock its memory, so host load
    /// and swapping cannot delay keepalives (Heartbeat's `realtime`, on by default).
    pub realtime: bool,
    /// Where OCF agents live (`resource.d/PROVIDER/TYPE` below it); OCF_ROOT for agents.
    pub ocf_root: PathBuf,
}

/// Reads and checks a configuration file.
///
/// `local_node` names the node this process is on; `None` uses the hostname, as
/// Heartbeat uses `uname -n`. On success the warnings come back with the config;
/// on failure every finding (errors and warnings) comes back, sorted by position.
pub fn load(path: &Path, local_node: Option<&str>) -> Result<(Config, Diagnostics), Diagnostics> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let mut d = Diagnostics::default();
            d.error(
                Location::file(path),
                format!("cannot read the configuration: {e}"),
                Some(format!(
                    "give the path of a pairbeat.toml (the default is {DEFAULT_CONFIG_PATH}); \
                     `pairbeat config import` makes one from Heartbeat's ha.cf"
                )),
            );
            return Err(d);
        }
    };
    let local = match local_node {
        Some(n) => n.to_string(),
        None => hostname(),
    };
    load_str(path, text, &local)
}

/// As `load`, from text already read (the file's permissions are still checked on disk
/// when it carries an inline key).
pub fn load_str(path: &Path, text: String, local_node: &str) -> Result<(Config, Diagnostics), Diagnostics> {
    let file = SourceFile::new(path, text);
    let mut diags = Diagnostics::default();
    let config =
        parse::parse(&file, &mut diags).and_then(|parsed| validate::validate(&file, parsed, local_node, &mut diags));
    match config {
        Some(c) if !diags.has_errors() => Ok((c, diags.sorted())),
        _ => Err(diags.sorted()),
    }
}

/// This host's name, as `uname -n` prints it.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Parses a duration written with a unit ("100ms", "5s", "1m 30s").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("`{t}` has no unit: write \"{t}s\" or \"{t}ms\""));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("`{t}` is not a duration ({e}); write e.g. \"500ms\", \"5s\" or \"2m\""))
}

/// Formats a duration the way the config writes it ("1500ms", "5s", "2m").
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    if ms % 60_000 == 0 && ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn durations_format_back_to_config_syntax() {
        for s in ["1500ms", "5s", "2m", "100ms"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn initdead_default_follows_heartbeat() {
        let s = Duration::from_secs;
        assert_eq!(Timing::default_initdead(s(30)), s(30));
        assert_eq!(Timing::default_initdead(s(5)), s(12));
        assert_eq!(Timing::default_initdead(s(8)), s(16));
    }

    #[test]
    fn agent_specs_parse_and_print() {
        for s in ["ocf:heartbeat:IPaddr2", "lsb:nginx", "heartbeat:drbddisk"] {
            assert_eq!(AgentSpec::parse(s).unwrap().to_string(), s);
        }
        assert!(AgentSpec::parse("ocf:IPaddr2")
            .unwrap_err()
            .contains("ocf:PROVIDER:TYPE"));
        assert!(AgentSpec::parse("lsb:../../bin/sh").is_err());
        assert!(AgentSpec::parse("systemd:nginx").unwrap_err().contains("class"));
    }
}
