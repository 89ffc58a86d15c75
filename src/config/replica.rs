//! `[[replica]]` sections: the replicated disks `pairbeat-replicad` serves, checked
//! like the rest of pairbeat.toml (every problem at once, each at its file:line).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::diag::closest;
use super::raw::{RawReplica, S};
use super::validate::Ctx;
use super::{Auth, AuthMethod, Fence, Tiebreak};
use crate::replica::state::Fencing;

/// One replicated disk.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaConfig {
    pub name: String,
    /// The local image: a file or a block device.
    pub backing: PathBuf,
    /// The metadata file (`<backing>.meta` unless set).
    pub meta: PathBuf,
    pub size: u64,
    /// TCP port of the replication link.
    pub port: u16,
    /// Each node's address on the replication link, in `[cluster] nodes` order.
    pub address: [IpAddr; 2],
    pub fencing: Fencing,
    /// A write, flush or ping the peer does not answer within this loses the peer.
    pub timeout: Duration,
    pub ping_interval: Duration,
    /// How long pairbeatd waits for the peer's answer to an outdate request.
    pub outdate_timeout: Duration,
    /// Resync bytes per second (changeable at run time).
    pub resync_rate: u64,
    /// Dirty-map granularity in bytes.
    pub extent: u32,
    /// How often cold extents leave the dirty map while connected.
    pub al_interval: Duration,
    /// A worker that answers nothing for this long while requests wait is aborted.
    pub io_watchdog: Duration,
}

/// Where the replicas' control sockets (and published devices) live: `replica/`
/// beside pairbeatd's control socket, `/run/pairbeat/replica` by default.
pub fn run_dir(config: &super::Config) -> PathBuf {
    config
        .daemon
        .socket
        .parent()
        .map_or_else(|| PathBuf::from("/run/pairbeat"), PathBuf::from)
        .join("replica")
}

pub const DEFAULT_PORT: u16 = 7789;

/// A positive duration, or `default` when unset; a bad value is reported and
/// clears `ok`.
fn duration_or(cx: &mut Ctx, v: &S<toml::Value>, key: &str, default: Duration, ok: &mut bool) -> Duration {
    super::protect::positive(cx, v.as_ref(), key, default).unwrap_or_else(|()| {
        *ok = false;
        default
    })
}

/// A size: `"10GiB"`, `"512 MiB"`, `"4MiB"`, or a plain number of bytes.
fn size(cx: &mut Ctx, v: &Spanned<toml::Value>, key: &str) -> Option<u64> {
    let n = match v.get_ref() {
        toml::Value::Integer(i) if *i > 0 => Some(*i as u64),
        toml::Value::String(s) => parse_size::parse_size(s.trim()).ok(),
        _ => None,
    };
    if n.is_none() {
        cx.error(
            v.span(),
            format!("{key} is not a size"),
            format!("write e.g. {key} = \"10GiB\", \"512MiB\" or a number of bytes"),
        );
    }
    n
}

fn size_or(cx: &mut Ctx, v: &S<toml::Value>, key: &str, default: u64, ok: &mut bool) -> u64 {
    match v {
        None => default,
        Some(v) => size(cx, v, key).unwrap_or_else(|| {
            *ok = false;
            default
        }),
    }
}

pub(super) fn replicas(
    cx: &mut Ctx,
    raw: S<Vec<Spanned<RawReplica>>>,
    nodes: Option<&[String; 2]>,
    auth: Option<&Auth>,
    fence: Option<&Option<Fence>>,
    tiebreak: Option<&Option<Tiebreak>>,
) -> Option<Vec<ReplicaConfig>> {
    let Some(list) = raw else { return Some(Vec::new()) };
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    let has_fence = fence.is_some_and(|f| f.is_some());
    for entry in list.into_inner() {
        let span = entry.span();
        let Some(r) = one(cx, entry.into_inner(), span.clone(), nodes, has_fence) else {
            ok = false;
            continue;
        };
        if let Some(first) = names.get(&r.name) {
            let line = cx.at(first.clone()).line_col.map_or(0, |(l, _)| l);
            cx.error(
                span.clone(),
                format!("replica `{}` is defined twice (first at line {line})", r.name),
                "give each [[replica]] its own name",
            );
            ok = false;
        }
        names.insert(r.name.clone(), span.clone());
        if let Some(other) = ports.insert(r.port, r.name.clone()) {
            cx.error(
                span.clone(),
                format!("replica `{}` uses port {}, as replica `{other}` does", r.name, r.port),
                format!("give it its own port, e.g. port = {}", r.port + 1),
            );
            ok = false;
        }
        if !has_fence && tiebreak.is_some_and(|t| t.is_none()) && r.fencing != Fencing::DontCare {
            cx.warning(
                span.clone(),
                format!("replica `{}` has neither [fence] nor [tiebreak] to back it", r.name),
                "in a total partition both nodes may then promote and write (a split brain, resolved by the policy, the loser's writes saved aside); configure [fence] or [tiebreak]",
            );
        }
        if r.fencing == Fencing::DontCare {
            cx.warning(
                span.clone(),
                format!("replica `{}`: fencing = \"dont-care\" can lose acknowledged writes", r.name),
                "a Primary that loses its peer carries on alone and the peer stays promotable; use \"resource-only\" or \"resource-and-stonith\"",
            );
        }
        out.push(r);
    }
    if let Some(auth) = auth {
        if !out.is_empty() {
            let m = auth.signing_key().method;
            if m == AuthMethod::Crc {
                cx.error(
                    0..0,
                    "[[replica]] needs real keys, and the cluster's authkeys method is crc (a checksum anyone can forge)",
                    "use method sha256 (or sha1) in authkeys or [auth]",
                );
                ok = false;
            } else if m == AuthMethod::Md5 {
                cx.warning(
                    0..0,
                    "[[replica]] links are authenticated with md5 keys",
                    "prefer sha256",
                );
            }
        }
    }
    ok.then_some(out)
}

fn one(
    cx: &mut Ctx,
    raw: RawReplica,
    span: Range<usize>,
    nodes: Option<&[String; 2]>,
    has_fence: bool,
) -> Option<ReplicaConfig> {
    let mut ok = true;
    let name = match &raw.name {
        None => {
            cx.missing(span.clone(), "name", "[[replica]]", "add name = \"r0\"");
            None
        }
        Some(n) if super::validate::valid_name(n.get_ref()) => Some(n.get_ref().clone()),
        Some(n) => {
            cx.error(
                n.span(),
                format!("replica name `{}` is not a plain name", n.get_ref()),
                "use letters, digits, `-` and `_` (it names files and a systemd unit)",
            );
            None
        }
    };
    let backing = match &raw.backing {
        None => {
            cx.missing(
                span.clone(),
                "backing",
                "[[replica]]",
                "add backing = \"/var/lib/pairbeat/replica/r0.img\" (a file or a block device)",
            );
            None
        }
        Some(b) if b.get_ref().starts_with('/') => Some(PathBuf::from(b.get_ref())),
        Some(b) => {
            cx.error(
                b.span(),
                format!("backing `{}` is not an absolute path", b.get_ref()),
                "",
            );
            None
        }
    };
    let meta = match (&raw.meta, &backing) {
        (Some(m), _) if m.get_ref().starts_with('/') => Some(PathBuf::from(m.get_ref())),
        (Some(m), _) => {
            cx.error(m.span(), format!("meta `{}` is not an absolute path", m.get_ref()), "");
            None
        }
        (None, Some(b)) => Some(PathBuf::from(format!("{}.meta", b.display()))),
        (None, None) => None,
    };
    let extent = size_or(cx, &raw.extent, "extent", 4 << 20, &mut ok);
    if !extent.is_power_of_two() || !(4096..=1 << 30).contains(&extent) {
        let at = raw.extent.as_ref().map_or(span.clone(), |e| e.span());
        cx.error(
            at,
            format!("extent {extent} is not a power of two from 4KiB to 1GiB"),
            "the default, 4MiB, suits most disks",
        );
        ok = false;
    }
    let size = match &raw.size {
        None => {
            cx.missing(
                span.clone(),
                "size",
                "[[replica]]",
                "add size = \"10GiB\" (fixed when the replica is created)",
            );
            None
        }
        Some(v) => match size(cx, v, "size") {
            Some(s) if s % 4096 != 0 => {
                cx.error(v.span(), format!("size {s} is not a multiple of 4096 bytes"), "");
                None
            }
            other => other,
        },
    };
    let port = match &raw.port {
        None => Some(DEFAULT_PORT),
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                cx.error(
                    p.span(),
                    format!("port {} is not a TCP port", p.get_ref()),
                    "use 1–65535; DRBD's is 7789",
                );
                None
            }
        },
    };
    let address = addresses(cx, &raw, &span, nodes);
    let fencing = match raw.fencing.as_ref().map(|f| f.get_ref().as_str()) {
        None if has_fence => Some(Fencing::ResourceAndStonith),
        None => Some(Fencing::ResourceOnly),
        Some("dont-care") => Some(Fencing::DontCare),
        Some("resource-only") => Some(Fencing::ResourceOnly),
        Some("resource-and-stonith") if has_fence => Some(Fencing::ResourceAndStonith),
        Some("resource-and-stonith") => {
            let at = raw.fencing.as_ref().map_or(span.clone(), |f| f.span());
            cx.error(
                at,
                "fencing = \"resource-and-stonith\" needs a [fence] section",
                "configure [fence], or use \"resource-only\"",
            );
            None
        }
        Some(other) => {
            let at = raw.fencing.as_ref().map_or(span.clone(), |f| f.span());
            let known = ["dont-care", "resource-only", "resource-and-stonith"];
            let help = closest(other, known.iter().copied())
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| "use dont-care, resource-only or resource-and-stonith".into());
            cx.error(at, format!("fencing `{other}` is not a fencing mode"), help);
            None
        }
    };
    let timeout = duration_or(cx, &raw.timeout, "timeout", Duration::from_secs(1), &mut ok);
    let ping_interval = duration_or(
        cx,
        &raw.ping_interval,
        "ping_interval",
        Duration::from_millis(500),
        &mut ok,
    );
    let outdate_timeout = duration_or(
        cx,
        &raw.outdate_timeout,
        "outdate_timeout",
        Duration::from_secs(5),
        &mut ok,
    );
    let al_interval = duration_or(cx, &raw.al_interval, "al_interval", Duration::from_secs(5), &mut ok);
    let io_watchdog = duration_or(cx, &raw.io_watchdog, "io_watchdog", Duration::from_secs(10), &mut ok);
    let resync_rate = size_or(cx, &raw.resync_rate, "resync_rate", 100 << 20, &mut ok);
    if ping_interval >= timeout {
        let at = raw.ping_interval.as_ref().map_or(span.clone(), |p| p.span());
        cx.error(
            at,
            format!(
                "ping_interval ({}) must be under timeout ({})",
                super::format_duration(ping_interval),
                super::format_duration(timeout)
            ),
            "the peer is pinged when idle and must answer within timeout",
        );
        ok = false;
    }
    if io_watchdog <= timeout + outdate_timeout {
        let at = raw.io_watchdog.as_ref().map_or(span.clone(), |p| p.span());
        cx.error(
            at,
            format!(
                "io_watchdog ({}) must exceed timeout + outdate_timeout ({})",
                super::format_duration(io_watchdog),
                super::format_duration(timeout + outdate_timeout)
            ),
            "I/O is frozen on purpose while the peer is outdated; the watchdog must not take that for a hang",
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(ReplicaConfig {
        name: name?,
        backing: backing?,
        meta: meta?,
        size: size?,
        port: port?,
        address: address?,
        fencing: fencing?,
        timeout,
        ping_interval,
        outdate_timeout,
        resync_rate,
        extent: extent as u32,
        al_interval,
        io_watchdog,
    })
}

fn addresses(cx: &mut Ctx, raw: &RawReplica, span: &Range<usize>, nodes: Option<&[String; 2]>) -> Option<[IpAddr; 2]> {
    let nodes = nodes?;
    let Some(map) = &raw.address else {
        cx.missing(
            span.clone(),
            "address",
            "[[replica]]",
            format!(
                "add address.{} = \"10.0.1.1\" and address.{} = \"10.0.1.2\" (the replication link)",
                nodes[0], nodes[1]
            ),
        );
        return None;
    };
    let mut found: [Option<IpAddr>; 2] = [None, None];
    let mut ok = true;
    for (k, v) in map.get_ref() {
        let Some(i) = nodes.iter().position(|n| n == k.get_ref()) else {
            let help = closest(k.get_ref(), nodes.iter().map(String::as_str))
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| format!("the nodes are {} and {}", nodes[0], nodes[1]));
            cx.error(k.span(), format!("address.{} is not a node", k.get_ref()), help);
            ok = false;
            continue;
        };
        match v.get_ref().parse::<IpAddr>() {
            Ok(a) => found[i] = Some(a),
            Err(_) => {
                cx.error(v.span(), format!("`{}` is not an IP address", v.get_ref()), "");
                ok = false;
            }
        }
    }
    for (i, f) in found.iter().enumerate() {
        if f.is_none() && ok {
            cx.error(
                map.span(),
                format!("no address for node {}", nodes[i]),
                format!("add address.{} = \"…\"", nodes[i]),
            );
            ok = false;
        }
    }
    if let [Some(a), Some(b)] = found {
        if a == b {
            cx.error(map.span(), "both nodes have the same replication address", "");
            ok = false;
        }
        if ok {
            return Some([a, b]);
        }
    }
    None
}
