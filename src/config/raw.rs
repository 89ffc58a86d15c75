//! Phase one of configuration loading: the shape of pairbeat.toml as serde structs.
//!
//! Everything here is exactly what the file says, with the byte span of each value,
//! and nothing is checked beyond TOML types and key names (`deny_unknown_fields`).
//! Values that have a vocabulary (`kind = "ucast"`, durations, agents) stay strings
//! here so that `validate` can report every bad one at once, with its position.
//! Every field is optional for the same reason: a missing required key is reported
//! by `validate`, next to the others, instead of aborting deserialization.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub cluster: S<RawCluster>,
    pub node: S<Vec<Spanned<RawNode>>>,
    pub link: S<Vec<Spanned<RawLink>>>,
    pub timing: S<RawTiming>,
    pub auth: S<RawAuth>,
    pub failover: S<RawFailover>,
    pub split_brain: S<RawSplitBrain>,
    pub tiebreak: S<RawTiebreak>,
    pub fence: S<RawFence>,
    pub group: S<RawGroup>,
    pub daemon: S<RawDaemon>,
    pub replica: S<Vec<Spanned<RawReplica>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub name: S<String>,
    pub kind: S<String>,
    pub interface: S<String>,
    pub port: S<i64>,
    /// ucast: each node's own address on this link, by node name.
    pub address: S<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// mcast: group address, ttl, loopback.
    pub group: S<String>,
    pub ttl: S<i64>,
    #[serde(rename = "loop")]
    pub loop_: S<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTiming {
    pub keepalive: S<toml::Value>,
    pub warntime: S<toml::Value>,
    pub deadtime: S<toml::Value>,
    pub initdead: S<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub authkeys: S<String>,
    pub method: S<String>,
    pub key: S<String>,
    pub key_index: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailover {
    pub preferred_node: S<String>,
    pub auto_failback: S<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplitBrain {
    pub policy: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTiebreak {
    /// `icmp:ADDR`, `tcp:ADDR:PORT`, `udp:ADDR:PORT`.
    pub targets: S<Vec<Spanned<String>>>,
    pub interval: S<toml::Value>,
    pub timeout: S<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFence {
    pub agent: S<String>,
    pub action: S<String>,
    pub timeout: S<toml::Value>,
    pub retry: S<toml::Value>,
    pub monitor_interval: S<toml::Value>,
    pub priority_delay: S<toml::Value>,
    pub params: S<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    /// Per node to be fenced: params merged over the common ones, and a delay.
    pub node: S<BTreeMap<Spanned<String>, Spanned<RawFenceNode>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFenceNode {
    pub params: S<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    pub delay: S<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub id: S<String>,
    pub resource: S<Vec<Spanned<RawResource>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    pub id: S<String>,
    pub agent: S<String>,
    pub params: S<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    pub args: S<Vec<Spanned<String>>>,
    pub promotable: S<bool>,
    pub migration_threshold: S<i64>,
    pub failure_timeout: S<toml::Value>,
    pub op: S<Vec<Spanned<RawOp>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOp {
    pub name: S<String>,
    pub interval: S<toml::Value>,
    pub timeout: S<toml::Value>,
    pub on_fail: S<String>,
    pub check_level: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub socket: S<String>,
    pub socket_group: S<String>,
    pub state_dir: S<String>,
    pub log: S<String>,
    pub log_level: S<String>,
    pub realtime: S<bool>,
    pub ocf_root: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplica {
    pub name: S<String>,
    pub backing: S<String>,
    pub meta: S<String>,
    /// `"10GiB"` or a number of bytes.
    pub size: S<toml::Value>,
    pub port: S<i64>,
    /// Each node's address on the replication link, by node name.
    pub address: S<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub fencing: S<String>,
    pub timeout: S<toml::Value>,
    pub ping_interval: S<toml::Value>,
    pub outdate_timeout: S<toml::Value>,
    pub resync_rate: S<toml::Value>,
    pub extent: S<toml::Value>,
    pub al_interval: S<toml::Value>,
    pub io_watchdog: S<toml::Value>,
}
