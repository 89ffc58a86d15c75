//! `pairbeat config import`: Heartbeat's ha.cf + haresources + authkeys → pairbeat.toml.
//!
//! The translation is faithful where pairbeat has the same notion (timing, media,
//! nodes, failback, the resource group, the keys) and loud where it does not: every
//! directive or token that cannot be carried over is reported with its file:line,
//! and every value the Heartbeat files do not contain (a ucast link's own address,
//! an `IPaddr::` without address) is written as a `<PLACEHOLDER>` that
//! `pairbeat config check` refuses until it is filled in. Nothing is dropped silently.
//!
//! Parsing follows Heartbeat 3.0.6: ha.cf values are split on space, tab or comma
//! (media lines on whitespace), a bare time is seconds, `ms`/`us` are accepted;
//! haresources lines continue with `\`, the owner is compared case-insensitively,
//! `Type::a::b` gives positional args and a bare dotted quad means `IPaddr::`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::authkeys;
use super::diag::{Diagnostics, Location, SourceFile};
use super::drbdconf;
use super::stonith;
use super::{format_duration, AuthMethod, Timing, DEFAULT_UDP_PORT};

/// The files to import and what the caller knows about them.
#[derive(Debug, Clone)]
pub struct ImportInput {
    pub ha_cf: PathBuf,
    pub haresources: Option<PathBuf>,
    pub authkeys: Option<PathBuf>,
    /// The node these files come from; ucast lines in its ha.cf point at the peer.
    pub from_node: Option<String>,
    /// drbd.conf files: their resources become `[[replica]]`s, and haresources'
    /// `drbddisk::NAME` the pairbeat replica (without them it stays real DRBD).
    pub drbd_conf: Vec<PathBuf>,
    /// The addresses of this host's interfaces, when import runs on `from_node`
    /// itself (`local_addresses()`): a ucast line gives only the peer's address,
    /// and the node's own is the one on that interface in the peer's subnet.
    pub local_addresses: Vec<LocalAddress>,
}

/// One address of one of this host's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    pub interface: String,
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl LocalAddress {
    /// Whether `other` is in this address's subnet.
    fn same_subnet(&self, other: std::net::IpAddr) -> bool {
        use std::net::IpAddr::*;
        let (a, b, bits) = match (self.addr, other) {
            (V4(a), V4(b)) => (u128::from(u32::from(a)) << 96, u128::from(u32::from(b)) << 96, 32),
            (V6(a), V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let p = u32::from(self.prefix.min(bits));
        let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
        a & mask == b & mask
    }
}

/// This host's interface addresses (loopback left out), for `ImportInput`.
pub fn local_addresses() -> Vec<LocalAddress> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in addrs {
        let (Some(addr), Some(mask)) = (a.address, a.netmask) else {
            continue;
        };
        let (ip, prefix) = if let (Some(x), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            (std::net::IpAddr::V4(x.ip()), u32::from(m.ip()).count_ones())
        } else if let (Some(x), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
            (std::net::IpAddr::V6(x.ip()), u128::from(m.ip()).count_ones())
        } else {
            continue;
        };
        if ip.is_loopback() {
            continue;
        }
        out.push(LocalAddress {
            interface: a.interface_name,
            addr: ip,
            prefix: prefix as u8,
        });
    }
    out
}

/// A translated configuration and what the operator must look at.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    /// Warnings: things not translated, or placeholders to fill in. Errors: bad input.
    pub notes: Diagnostics,
    /// The placeholders in `toml`, each with what belongs there.
    pub placeholders: Vec<(String, String)>,
}

/// Reads the files and translates them; `Err` only when a file cannot be read.
pub fn import(input: &ImportInput) -> Result<Imported, Diagnostics> {
    let read = |p: &Path| -> Result<SourceFile, Diagnostics> {
        std::fs::read_to_string(p).map(|t| SourceFile::new(p, t)).map_err(|e| {
            let mut d = Diagnostics::default();
            d.error(Location::file(p), format!("cannot read: {e}"), None);
            d
        })
    };
    let ha_cf = read(&input.ha_cf)?;
    let haresources = input.haresources.as_deref().map(read).transpose()?;
    let drbd = input.drbd_conf.iter().map(|p| read(p)).collect::<Result<Vec<_>, _>>()?;
    // authkeys: its permissions are checked on disk (it holds a secret); a file
    // that cannot be read is reported there and translated as absent.
    let mut perms = Diagnostics::default();
    let authkeys = input.authkeys.as_deref().map(|p| {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        authkeys::check_private(&abs, "the authkeys file", &mut perms);
        let text = std::fs::read_to_string(&abs).ok();
        (abs.clone(), text.map(|t| SourceFile::new(&abs, t)))
    });
    let mut out = translate(input, &ha_cf, haresources.as_ref(), authkeys, &drbd);
    out.notes.extend(perms);
    out.notes = out.notes.sorted();
    Ok(out)
}

/// Translates files already read (`import` reads them; the fuzz target makes them
/// up): pure, whatever the text. `authkeys`: its path, and its text if it could be read.
pub fn translate(
    input: &ImportInput,
    ha_cf: &SourceFile,
    haresources: Option<&SourceFile>,
    authkeys: Option<(PathBuf, Option<SourceFile>)>,
    drbd_files: &[SourceFile],
) -> Imported {
    let mut notes = Diagnostics::default();
    let hacf = parse_ha_cf(ha_cf, &mut notes);
    let mut drbd = Vec::new();
    for f in drbd_files {
        let stmts = drbdconf::parse(f, &mut notes);
        for r in drbdconf::read(f, &stmts, &mut notes) {
            drbd.push(Drbd { file: f.clone(), r });
        }
    }
    let mut group = haresources.map(|f| parse_haresources(f, &hacf.nodes, &mut notes));
    if let (Some(g), Some(f)) = (group.as_mut(), haresources) {
        if !drbd.is_empty() {
            replace_drbd(g, &drbd, f, &mut notes);
        }
    }
    // An authkeys file that could not be read was reported by `import`: no keys.
    let auth = authkeys.map(|(path, file)| {
        let mut sub = Diagnostics::default();
        let keys = file.and_then(|f| authkeys::parse(&f, &mut sub));
        notes.extend(sub);
        (path, keys)
    });
    let mut out = Emitter::default();
    out.emit(input, &hacf, group.as_ref(), auth.as_ref(), &drbd, &mut notes);
    Imported {
        toml: out.text,
        notes: notes.sorted(),
        placeholders: out.placeholders,
    }
}

// ---------------------------------------------------------------------------------
// ha.cf

#[derive(Debug, Default)]
struct HaCf {
    cluster: Option<String>,
    nodes: Vec<String>,
    keepalive: Option<Duration>,
    deadtime: Option<Duration>,
    warntime: Option<Duration>,
    initdead: Option<Duration>,
    media: Vec<Medium>,
    /// `on`, `off` or `legacy`, with its line.
    auto_failback: Option<(String, usize)>,
    log: Option<String>,
    debug: bool,
    realtime: Option<bool>,
    /// `ping` and `ping_group` addresses: the address, its line, its group's name.
    ping: Vec<(String, usize, Option<String>)>,
    /// `deadping`, with its line.
    deadping: Option<(Duration, usize)>,
    /// `stonith_host` lines with a fence-agents equivalent, translated.
    stonith: Vec<StonithHost>,
    /// Whether ipfail is respawned (without it Heartbeat only watched the ping nodes).
    ipfail: bool,
}

#[derive(Debug)]
struct StonithHost {
    plugin: &'static stonith::Plugin,
    /// The node a per-node device resets.
    node: Option<String>,
    params: Vec<(String, String)>,
    line: usize,
}

#[derive(Debug)]
enum Medium {
    Bcast {
        interface: String,
        port: u16,
    },
    Ucast {
        interface: String,
        ip: String,
        port: u16,
        line: usize,
    },
    Mcast {
        interface: String,
        group: String,
        port: u16,
        ttl: u8,
        loopback: bool,
    },
}

/// Directives Heartbeat knows that pairbeat does not need, with why.
const NO_EQUIVALENT: &[(&str, &str)] = &[
    ("conn_logd_time", "pairbeat has no separate logging daemon"),
    ("syslogmsgfmt", "pairbeat formats its own log lines"),
    ("compression", "pairbeat messages are small and never compressed"),
    (
        "compression_threshold",
        "pairbeat messages are small and never compressed",
    ),
    (
        "traditional_compression",
        "pairbeat messages are small and never compressed",
    ),
    (
        "msgfmt",
        "pairbeat always sends Heartbeat's netstring format, as Heartbeat 3.0.6 does",
    ),
    ("uuidfrom", "pairbeat identifies nodes by name"),
    (
        "hbgenmethod",
        "pairbeat keeps its generation in a file, as `hbgenmethod file` does",
    ),
    ("hopfudge", "two nodes need no packet forwarding"),
    ("max_rexmit_delay", "pairbeat does not retransmit keepalives"),
    ("coredumps", "set core dump limits in the systemd unit instead"),
    ("coreroot", "set core dump limits in the systemd unit instead"),
    ("memreserve", "pairbeat does not pre-reserve memory"),
    ("quorum_server", "a two-node cluster has no quorum server"),
    ("env", "set the environment in the systemd unit instead"),
    (
        "log_badpack",
        "pairbeat always counts bad packets and logs them rate-limited",
    ),
    ("use_apphbd", "not used by pairbeat"),
    ("normalpoll", "not used by pairbeat"),
    ("record_config_changes", "Pacemaker-only"),
    ("record_pengine_inputs", "Pacemaker-only"),
    ("enable_config_writes", "Pacemaker-only"),
    ("crm_daemon_dir", "Pacemaker-only"),
    ("crmd_spawns_pengine", "Pacemaker-only"),
    (
        "apiauth",
        "pairbeat has no client API; the control socket is limited by [daemon] socket_group",
    ),
    ("baud", "serial links are not supported"),
];

/// Directives that have a pairbeat meaning that import does not write yet.
const NOT_YET: &[(&str, &str)] = &[
    ("hbaping", "FC HBA ping nodes are not supported"),
    ("failfast", "pairbeat does not run helper processes"),
    (
        "stonith",
        "its parameters are in a file import does not read: write them as a fence-agents [fence] section (docs/operator-guide.md, \"Coming from Heartbeat\", lists each plugin's fence agent)",
    ),
    (
        "watchdog",
        "a hardware watchdog is not supported; under systemd, WatchdogSec does this job",
    ),
    (
        "rtprio",
        "pairbeat's realtime priority is fixed (SCHED_RR 10); `realtime` turns it on or off",
    ),
    ("autojoin", "a pairbeat cluster has exactly the two nodes in [[node]]"),
    ("serial", "serial links are not supported; use a second network link"),
    (
        "mcast6",
        "IPv6 multicast links are not supported; use ucast with IPv6 addresses",
    ),
    (
        "ucast6",
        "write an IPv6 ucast link by hand: kind = \"ucast\" with IPv6 address.<node>",
    ),
];

fn parse_ha_cf(file: &SourceFile, notes: &mut Diagnostics) -> HaCf {
    let mut r = HaCfReader {
        cf: HaCf::default(),
        port: DEFAULT_UDP_PORT,
        logfile: None,
        facility: None,
    };
    for n in 1..=file.text.lines().count() {
        let Some(d) = Directive::read(file, n) else {
            continue;
        };
        match d.name {
            "keepalive" | "deadtime" | "warntime" | "initdead" => r.timer(&d, notes),
            "udpport" | "bcast" | "ucast" | "mcast" => r.medium(&d, notes),
            "node" => {
                for v in &d.values {
                    // Heartbeat keeps one entry per name; a repeated one (once
                    // written twice into the translation, found by fuzzing) is noted.
                    if r.cf.nodes.iter().any(|n| n == v) {
                        notes.warning(
                            d.here.clone(),
                            format!("node `{v}` is listed again; it counts once"),
                            Some("remove the repeated name".into()),
                        );
                    } else {
                        r.cf.nodes.push(v.to_string());
                    }
                }
            }
            "cluster" => r.cf.cluster = d.values.first().map(|v| v.to_string()),
            "auto_failback" | "nice_failback" => r.failback(&d, notes),
            "logfile" | "logfacility" | "use_logd" | "debugfile" | "debug" => r.logging(&d, notes),
            "realtime" => match d.values.first().and_then(|v| boolean(v)) {
                Some(b) => r.cf.realtime = Some(b),
                None => notes.error(d.here, format!("`{}` is not on or off", d.content), None),
            },
            "crm" | "pacemaker" => pacemaker(&d, notes),
            "ping" => {
                for v in &d.values {
                    ping_name(&d, v, notes);
                    r.cf.ping.push((v.to_string(), d.line, None));
                }
            }
            "ping_group" => match d.words.split_first() {
                Some((name, members)) if !members.is_empty() => {
                    d.warn(
                        notes,
                        format!(
                            "ping_group {name}: its {} addresses become [tiebreak] targets one by one; Heartbeat counted the group as one, up while any member answered",
                            members.len()
                        ),
                        Some("keep the members that stand for the same path (e.g. the gateway), or keep them all".into()),
                    );
                    for m in members {
                        ping_name(&d, m, notes);
                        r.cf.ping.push((m.to_string(), d.line, Some(name.to_string())));
                    }
                }
                _ => notes.error(
                    d.here.clone(),
                    format!("`{}` is not `ping_group NAME ADDRESS...`", d.content),
                    None,
                ),
            },
            "deadping" => match d.values.first().map(|v| heartbeat_time(v)) {
                Some(Ok(t)) => r.cf.deadping = Some((t, d.line)),
                Some(Err(e)) => notes.error(d.here.clone(), format!("{}: {e}", d.content), None),
                None => notes.error(d.here.clone(), "`deadping` has no value".to_string(), None),
            },
            "respawn" => r.respawn(&d, notes),
            "stonith_host" => r.stonith_host(&d, notes),
            _ => untranslated(&d, notes),
        }
    }
    r.cf.log = log_target(file, r.facility, r.logfile, notes);
    r.cf
}

/// One non-empty ha.cf line, split the ways its directive may read its values.
struct Directive<'a> {
    /// The line without its comment, trimmed.
    content: &'a str,
    name: &'a str,
    /// Media and whole-line directives take whitespace-separated words; the rest also split on commas.
    words: Vec<&'a str>,
    values: Vec<&'a str>,
    line: usize,
    here: Location,
}

impl<'a> Directive<'a> {
    /// Line `n` of `file` as a directive, or `None` when it is blank or only a comment.
    fn read(file: &'a SourceFile, n: usize) -> Option<Self> {
        let content = file.line_text(n).split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            return None;
        }
        let (name, rest) = content.split_once(char::is_whitespace).unwrap_or((content, ""));
        let rest = rest.trim();
        Some(Directive {
            content,
            name,
            words: rest.split_whitespace().collect(),
            values: rest.split([' ', '\t', ',']).filter(|w| !w.is_empty()).collect(),
            line: n,
            here: Location::at(file, file.line_span(n)),
        })
    }

    /// Reports a warning at this line.
    fn warn(&self, notes: &mut Diagnostics, msg: String, help: Option<String>) {
        notes.warning(self.here.clone(), msg, help);
    }
}

/// What parsing ha.cf has gathered so far, with the settings later lines depend on.
struct HaCfReader {
    cf: HaCf,
    /// The `udpport` in force: it applies to the media lines after it.
    port: u16,
    logfile: Option<(String, usize)>,
    facility: Option<(String, usize)>,
}

impl HaCfReader {
    /// `respawn USER PROGRAM`: Heartbeat's helpers. The two that matter have a
    /// pairbeat part doing their job; nothing else is run.
    fn respawn(&mut self, d: &Directive, notes: &mut Diagnostics) {
        let program = d.words.get(1).map(|p| p.rsplit('/').next().unwrap_or(p));
        let why = match program {
            Some("ipfail") => {
                self.cf.ipfail = true;
                "`respawn` of ipfail is not needed: [tiebreak] does its job (written from the ping lines)".to_string()
            }
            Some("dopd") => "`respawn` of dopd is not needed: a replica's outdate handling does its job (fencing = \"resource-only\" in its [[replica]])".to_string(),
            _ => format!("`{}` is not translated: pairbeat does not run helper processes", d.content),
        };
        d.warn(notes, why, None);
    }

    /// `stonith_host HOSTFROM TYPE PARAMS...`: a fence-agents device when the
    /// plugin has one (`stonith::PLUGINS`).
    fn stonith_host(&mut self, d: &Directive, notes: &mut Diagnostics) {
        let [_from, name, values @ ..] = d.words.as_slice() else {
            notes.error(
                d.here.clone(),
                format!("`{}` is not `stonith_host HOSTFROM TYPE PARAMS...`", d.content),
                None,
            );
            return;
        };
        let Some(plugin) = stonith::plugin(name) else {
            let why = stonith::NO_EQUIVALENT
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, why)| why.to_string())
                .unwrap_or_else(|| "import knows no fence-agents equivalent for it".into());
            d.warn(
                notes,
                format!("stonith plugin `{name}` is not translated: {why}"),
                Some("configure a fence-agents device as [fence] by hand (see etc/pairbeat.toml)".into()),
            );
            return;
        };
        match stonith::params(plugin, values) {
            Ok((node, params)) => {
                let secret = |p: &[(String, String)]| p.iter().any(|(k, _)| k == "password" || k == "community");
                if secret(&params) && !self.cf.stonith.iter().any(|h| secret(&h.params)) {
                    d.warn(
                        notes,
                        format!("the {name} device's secret is written into the [fence] section (this line and any after it)"),
                        Some("keep pairbeat.toml readable by root only (chmod 600)".into()),
                    );
                }
                self.cf.stonith.push(StonithHost {
                    plugin,
                    node,
                    params,
                    line: d.line,
                });
            }
            Err(e) => notes.error(
                d.here.clone(),
                e,
                Some("see Heartbeat's `stonith -t TYPE -n` for the order".into()),
            ),
        }
    }

    /// `keepalive`, `deadtime`, `warntime`, `initdead`.
    fn timer(&mut self, d: &Directive, notes: &mut Diagnostics) {
        let Some(v) = d.values.first() else {
            notes.error(d.here.clone(), format!("`{}` has no value", d.name), None);
            return;
        };
        match heartbeat_time(v) {
            Ok(t) => {
                let slot = match d.name {
                    "keepalive" => &mut self.cf.keepalive,
                    "deadtime" => &mut self.cf.deadtime,
                    "warntime" => &mut self.cf.warntime,
                    _ => &mut self.cf.initdead,
                };
                *slot = Some(t);
            }
            Err(e) => notes.error(d.here.clone(), format!("{} {v}: {e}", d.name), None),
        }
    }

    /// `udpport` and the media lines: `bcast`, `ucast`, `mcast`.
    fn medium(&mut self, d: &Directive, notes: &mut Diagnostics) {
        let (here, content) = (d.here.clone(), d.content);
        match d.name {
            "udpport" => match d.values.first().and_then(|v| v.parse::<u16>().ok()) {
                Some(p) if p > 0 => self.port = p,
                _ => notes.error(here, format!("`{content}` is not a valid UDP port"), None),
            },
            "bcast" => {
                if d.words.is_empty() {
                    notes.error(here, "`bcast` names no interface", None);
                }
                for w in &d.words {
                    self.cf.media.push(Medium::Bcast {
                        interface: w.to_string(),
                        port: self.port,
                    });
                }
            }
            "ucast" => match d.words.as_slice() {
                [iface, ip] => self.cf.media.push(Medium::Ucast {
                    interface: iface.to_string(),
                    ip: ip.to_string(),
                    port: self.port,
                    line: d.line,
                }),
                _ => notes.error(here, format!("`{content}` is not `ucast INTERFACE PEER-IP`"), None),
            },
            _ => match d.words.as_slice() {
                [iface, group, p, ttl, lp] => match (p.parse::<u16>(), ttl.parse::<u8>(), *lp) {
                    (Ok(p), Ok(ttl), "0" | "1") if ttl > 0 => self.cf.media.push(Medium::Mcast {
                        interface: iface.to_string(),
                        group: group.to_string(),
                        port: p,
                        ttl,
                        loopback: *lp == "1",
                    }),
                    _ => notes.error(
                        here,
                        format!("`{content}`: port, ttl (1-255) or loop (0/1) is invalid"),
                        None,
                    ),
                },
                _ => notes.error(
                    here,
                    format!("`{content}` is not `mcast INTERFACE GROUP PORT TTL LOOP`"),
                    None,
                ),
            },
        }
    }

    /// `auto_failback` and the obsolete `nice_failback`.
    fn failback(&mut self, d: &Directive, notes: &mut Diagnostics) {
        let (here, content, n) = (d.here.clone(), d.content, d.line);
        if d.name == "auto_failback" {
            match d.values.first().map(|v| v.to_ascii_lowercase()) {
                Some(v) if ["on", "off", "legacy"].contains(&v.as_str()) || boolean(&v).is_some() => {
                    let v = match boolean(&v) {
                        Some(true) => "on".to_string(),
                        Some(false) => "off".to_string(),
                        None => v,
                    };
                    self.cf.auto_failback = Some((v, n));
                }
                _ => notes.error(here, format!("`{content}`: auto_failback is on, off or legacy"), None),
            }
            return;
        }
        match d.values.first().and_then(|v| boolean(v)) {
            Some(true) => {
                d.warn(
                    notes,
                    "nice_failback is obsolete in Heartbeat; translated as auto_failback off, its intended meaning"
                        .into(),
                    None,
                );
                self.cf.auto_failback.get_or_insert(("off".into(), n));
            }
            Some(false) => {
                self.cf.auto_failback.get_or_insert(("on".into(), n));
            }
            None => notes.error(here, format!("`{content}` is not on or off"), None),
        }
    }

    /// `logfile`, `logfacility`, `use_logd`, `debugfile`, `debug`.
    fn logging(&mut self, d: &Directive, notes: &mut Diagnostics) {
        let n = d.line;
        match d.name {
            "logfile" => self.logfile = d.values.first().map(|v| (v.to_string(), n)),
            "logfacility" => self.facility = d.values.first().map(|v| (v.to_string(), n)),
            "use_logd" => {
                if d.values.first().and_then(|v| boolean(v)) == Some(true) {
                    self.facility.get_or_insert(("daemon".into(), n));
                    d.warn(notes, "use_logd: pairbeat logs to syslog directly".into(), None);
                }
            }
            "debugfile" => d.warn(
                notes,
                "debugfile is not translated: pairbeat writes debug messages to its one log".into(),
                Some("set [daemon] log_level = \"debug\" to get them".into()),
            ),
            _ => self.cf.debug = d.values.first().and_then(|v| v.parse::<u32>().ok()).unwrap_or(0) > 0,
        }
    }
}

/// `crm` / `pacemaker`: with Pacemaker on, warns that pairbeat runs the haresources group Heartbeat ignored.
fn pacemaker(d: &Directive, notes: &mut Diagnostics) {
    let on = d
        .values
        .first()
        .map(|v| v.eq_ignore_ascii_case("respawn") || boolean(v) == Some(true));
    if on == Some(true) {
        d.warn(
            notes,
            format!(
                "`{}`: with Pacemaker on, Heartbeat ignored haresources; pairbeat runs the haresources group itself",
                d.content
            ),
            Some(
                "check that the [group] below is what this cluster should run; Pacemaker's CIB is not imported".into(),
            ),
        );
    }
}

/// Any other directive: reported as not translated yet, not needed, or not Heartbeat's.
/// This host's one address on `iface` in the subnet of the peer's `peer` (none, or
/// several: `None`, and the placeholder stays).
fn own_address(input: &ImportInput, iface: &str, peer: &str) -> Option<std::net::IpAddr> {
    let peer: std::net::IpAddr = peer.parse().ok()?;
    let mut found = input
        .local_addresses
        .iter()
        .filter(|a| a.interface == iface && a.addr != peer && a.same_subnet(peer));
    match (found.next(), found.next()) {
        (Some(a), None) => Some(a.addr),
        _ => None,
    }
}

/// A ping node given by name: pairbeat probes addresses, so it becomes a placeholder.
fn ping_name(d: &Directive, v: &str, notes: &mut Diagnostics) {
    if v.parse::<std::net::IpAddr>().is_err() {
        d.warn(
            notes,
            format!("ping node `{v}` is a name; [tiebreak] probes addresses"),
            Some(format!("fill in <ADDRESS OF {v}> with its IP address")),
        );
    }
}

fn untranslated(d: &Directive, notes: &mut Diagnostics) {
    let directive = d.name;
    if let Some((_, why)) = NOT_YET.iter().find(|(n, _)| *n == directive) {
        d.warn(notes, format!("`{}` is not translated: {why}", d.content), None);
    } else if let Some((_, why)) = NO_EQUIVALENT.iter().find(|(n, _)| *n == directive) {
        d.warn(notes, format!("`{directive}` is not needed: {why}"), None);
    } else {
        notes.error(
            d.here.clone(),
            format!("`{directive}` is not a Heartbeat directive"),
            Some("Heartbeat refuses it too (\"Illegal directive\"); remove it or fix its spelling".into()),
        );
    }
}

/// The one log target from `logfacility`/`use_logd` and `logfile`, warning about what is dropped.
fn log_target(
    file: &SourceFile,
    facility: Option<(String, usize)>,
    logfile: Option<(String, usize)>,
    notes: &mut Diagnostics,
) -> Option<String> {
    // One log target: syslog when a facility was asked for, else the log file.
    let syslog = facility.filter(|(f, _)| f != "none");
    if let Some((f, line)) = &syslog {
        if f != "daemon" {
            notes.warning(
                Location::at(file, file.line_span(*line)),
                format!("pairbeat logs to syslog with facility daemon, not {f}"),
                None,
            );
        }
    }
    match (syslog, logfile) {
        (Some((f, _)), Some((path, line))) => {
            notes.warning(
                Location::at(file, file.line_span(line)),
                format!(
                    "logfile {path} is not translated: pairbeat logs to one place and ha.cf also asks for syslog ({f})"
                ),
                Some("set [daemon] log to the file instead of \"syslog\" if you prefer it".into()),
            );
            Some("syslog".into())
        }
        (Some(_), None) => Some("syslog".into()),
        (None, Some((path, line))) => {
            if !path.starts_with('/') || path.contains('$') {
                notes.warning(
                    Location::at(file, file.line_span(line)),
                    format!("logfile {path} is not an absolute path; pairbeat does not expand variables"),
                    None,
                );
                None
            } else {
                Some(path)
            }
        }
        (None, None) => None,
    }
}

/// Heartbeat's `cl_get_msec`: a bare number is seconds; `ms` and `us` are accepted.
/// Heartbeat refuses an `s` suffix; pairbeat reads it as meant.
fn heartbeat_time(v: &str) -> Result<Duration, String> {
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{v}` is not a number"))?;
    let ms = match unit {
        "" | "s" => n * 1000.0,
        "ms" => n,
        "us" | "usec" => n / 1000.0,
        _ => {
            return Err(format!(
                "unit `{unit}` is not one Heartbeat knows (none = seconds, ms, us)"
            ))
        }
    };
    Ok(Duration::from_millis(ms.round() as u64))
}

/// Heartbeat's `cl_str_to_boolean`.
fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "y" | "1" => Some(true),
        "false" | "off" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------
// haresources

#[derive(Debug)]
struct HaGroup {
    owner: Option<String>,
    resources: Vec<HaResource>,
}

#[derive(Debug)]
struct HaResource {
    /// The token as written, and its line, for comments and notes.
    token: String,
    line: usize,
    agent: String,
    params: Vec<(String, String)>,
    args: Vec<String>,
}

fn parse_haresources(file: &SourceFile, nodes: &[String], notes: &mut Diagnostics) -> HaGroup {
    // Join `\`-continued lines, remembering where each logical line started.
    let mut lines: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for n in 1..=file.text.lines().count() {
        let content = file.line_text(n).split('#').next().unwrap_or("").to_string();
        let (start, mut acc) = pending.take().unwrap_or((n, String::new()));
        if let Some(head) = content.trim_end().strip_suffix('\\') {
            acc.push_str(head);
            acc.push(' ');
            pending = Some((start, acc));
        } else {
            acc.push_str(&content);
            if !acc.trim().is_empty() {
                lines.push((start, acc));
            }
        }
    }
    if let Some(p) = pending {
        lines.push(p);
    }
    let mut group = HaGroup {
        owner: None,
        resources: Vec::new(),
    };
    let Some((first_line, first)) = lines.first() else {
        notes.warning(
            Location::file(&file.path),
            "haresources defines no group",
            Some("add [[group.resource]] tables by hand".into()),
        );
        return group;
    };
    for (n, _) in lines.iter().skip(1) {
        notes.warning(
            Location::at(file, file.line_span(*n)),
            "a second resource group is not translated: pairbeat runs one group per cluster",
            Some("merge its resources into the first group, or run a second pairbeat cluster".into()),
        );
    }
    let mut tokens = first.split_whitespace();
    let owner = tokens.next().unwrap_or_default();
    group.owner = match nodes.iter().find(|n| n.eq_ignore_ascii_case(owner)) {
        Some(n) => Some(n.clone()),
        None => {
            notes.warning(
                Location::at(file, file.line_span(*first_line)),
                format!("the group's owner `{owner}` is not a node in ha.cf; preferred_node is left out"),
                None,
            );
            None
        }
    };
    for token in tokens {
        group.resources.push(translate_token(token, *first_line, file, notes));
    }
    group
}

/// One haresources token → agent, params and args, as ResourceManager and hto-mapfuncs read it.
fn translate_token(token: &str, line: usize, file: &SourceFile, notes: &mut Diagnostics) -> HaResource {
    let here = token_location(token, line, file);
    // ResourceManager's canonname: a bare dotted quad is shorthand for IPaddr::it.
    let looks_ip = token.split('.').count() == 4 && token.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '/');
    let canon = if looks_ip {
        format!("IPaddr::{token}")
    } else {
        token.to_string()
    };
    let mut parts = canon.split("::");
    let name = parts.next().unwrap_or_default().to_string();
    let args: Vec<String> = parts.map(str::to_string).collect();
    let mut res = HaResource {
        token: token.to_string(),
        line,
        agent: String::new(),
        params: Vec::new(),
        args: Vec::new(),
    };
    match name.as_str() {
        "IPaddr" | "IPaddr2" => {
            res.agent = format!("ocf:heartbeat:{name}");
            res.params = ipaddr_params(token, &args, &here, notes);
            // Kept as the OCF agent Heartbeat ran; the faster one is a word away.
            notes.warning(
                here.clone(),
                format!("`{token}` stays ocf:heartbeat:{name}, the agent Heartbeat ran"),
                Some(
                    "agent = \"builtin:vip\" takes the same params (ip, cidr_netmask, nic, broadcast) and adds the address inside pairbeatd, with no agent to fork and no fixed wait for its ARPs: a faster failover".into(),
                ),
            );
        }
        "Filesystem" => {
            res.agent = "ocf:heartbeat:Filesystem".into();
            res.params = filesystem_params(token, &args, &here, notes);
            // The built-in runs no fsck: offered only where Filesystem skips it too.
            let fstype = args.get(2).map(String::as_str).unwrap_or("");
            let help = if crate::filesystem::NO_FSCK.contains(&fstype) {
                "agent = \"builtin:filesystem\" takes the same params (device, directory, fstype, options) and mounts inside pairbeatd, with no script to fork at start, stop or each monitor: a faster failover".to_string()
            } else {
                format!(
                    "builtin:filesystem would mount it faster, but runs no fsck, which {} needs after a crash (Filesystem runs it): keep Filesystem, or move to a journalling filesystem (ext4, xfs) first",
                    if fstype.is_empty() { "a filesystem of unnamed type" } else { fstype }
                )
            };
            notes.warning(
                here.clone(),
                format!("`{token}` stays ocf:heartbeat:Filesystem, the agent Heartbeat ran"),
                Some(help),
            );
        }
        _ => {
            res.agent = format!("heartbeat:{name}");
            res.args = args;
        }
    }
    res
}

/// Where notes about a token point: the token itself, else its whole line.
fn token_location(token: &str, line: usize, file: &SourceFile) -> Location {
    // Point at the token itself when it is on the line's first physical line.
    let line_span = file.line_span(line);
    match file.line_text(line).find(token) {
        Some(at) => Location::at(file, line_span.start + at..line_span.start + at + token.len()),
        None => Location::at(file, line_span),
    }
}

/// Warns that `token` lacks `what` and returns the placeholder written in its place.
fn missing_value(what: &str, token: &str, here: &Location, notes: &mut Diagnostics) -> String {
    notes.warning(
        here.clone(),
        format!("`{token}` gives no {what}"),
        Some(format!(
            "fill in <{}> in the generated [[group.resource]]",
            what.to_uppercase()
        )),
    );
    format!("<{}>", what.to_uppercase())
}

/// `IPaddr::ip/cidr/nic/broadcast` → the OCF IPaddr params.
fn ipaddr_params(token: &str, args: &[String], here: &Location, notes: &mut Diagnostics) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let spec = args.first().cloned().unwrap_or_default();
    let mut fields = spec.split('/');
    let ip = fields.next().unwrap_or_default();
    let ip = if ip.is_empty() {
        missing_value("virtual ip", token, here, notes)
    } else {
        ip.to_string()
    };
    params.push(("ip".into(), ip));
    let rest: Vec<&str> = fields.collect();
    if let Some(cidr) = rest.first() {
        params.push(("cidr_netmask".into(), cidr.to_string()));
    }
    // IPaddr::ip/cidr/nic/broadcast; a dotted third field is the broadcast address.
    match rest.get(1) {
        Some(f) if f.contains('.') => params.push(("broadcast".into(), f.to_string())),
        Some(f) => params.push(("nic".into(), f.to_string())),
        None => {}
    }
    if let Some(b) = rest.get(2) {
        params.push(("broadcast".into(), b.to_string()));
    }
    if args.len() > 1 {
        notes.warning(
            here.clone(),
            format!("`{token}`: arguments after the address are not translated"),
            None,
        );
    }
    params
}

/// `Filesystem::device::directory::fstype::options` → the OCF Filesystem params.
fn filesystem_params(token: &str, args: &[String], here: &Location, notes: &mut Diagnostics) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let keys = ["device", "directory", "fstype", "options"];
    for (i, key) in keys.iter().enumerate() {
        match args.get(i).filter(|a| !a.is_empty()) {
            Some(v) => params.push((key.to_string(), v.clone())),
            None if i < 2 => {
                let v = missing_value(key, token, here, notes);
                params.push((key.to_string(), v));
            }
            None => {}
        }
    }
    if args.len() > keys.len() {
        notes.warning(
            here.clone(),
            format!("`{token}`: arguments after the mount options are not translated"),
            None,
        );
    }
    params
}

// ---------------------------------------------------------------------------------
// drbd.conf

/// A drbd.conf resource and the file it is in (for notes).
struct Drbd {
    file: SourceFile,
    r: drbdconf::Resource,
}

/// Where pairbeat publishes a replica's device with the default `[daemon] socket`.
fn replica_device(name: &str) -> String {
    let dir = Path::new(super::DEFAULT_SOCKET_PATH)
        .parent()
        .unwrap_or(Path::new("/run/pairbeat"));
    dir.join("replica").join(format!("{name}.dev")).display().to_string()
}

/// haresources' `drbddisk::NAME` → pairbeat's `replicadisk::NAME`, and a
/// Filesystem on a DRBD device → the same on the replica's device.
fn replace_drbd(g: &mut HaGroup, drbd: &[Drbd], file: &SourceFile, notes: &mut Diagnostics) {
    let by_device = |dev: &str| {
        drbd.iter().find(|d| {
            d.r.hosts
                .iter()
                .any(|h| h.device.as_ref().is_some_and(|(v, _)| v == dev))
        })
    };
    for res in &mut g.resources {
        let here = token_location(&res.token, res.line, file);
        if res.agent == "heartbeat:drbddisk" {
            let found = match res.args.first() {
                None if drbd.len() == 1 => Some(&drbd[0]),
                None => None,
                Some(want) => drbd.iter().find(|d| d.r.name == *want).or_else(|| {
                    let d = by_device(&format!("/dev/{want}"))?;
                    notes.warning(
                        here.clone(),
                        format!(
                            "`{}` names no drbd.conf resource; resource `{}` has the device /dev/{want}, so it is used",
                            res.token, d.r.name
                        ),
                        Some("drbddisk takes the resource's name: check that this is the disk you meant".into()),
                    );
                    Some(d)
                }),
            };
            match found {
                Some(d) => {
                    res.agent = "heartbeat:replicadisk".into();
                    res.args = vec![d.r.name.clone()];
                }
                None => notes.warning(
                    here.clone(),
                    format!(
                        "`{}`: no resource of that name (or device) in the drbd.conf given; left as heartbeat:drbddisk (real DRBD)",
                        res.token
                    ),
                    Some("give the drbd.conf that defines it with --drbd-conf".into()),
                ),
            }
        }
        if res.agent == "ocf:heartbeat:Filesystem" {
            for (k, v) in &mut res.params {
                if k == "device" {
                    if let Some(d) = by_device(v) {
                        *v = replica_device(&d.r.name);
                    }
                }
            }
        }
    }
}

/// A resync rate as pairbeat.toml writes sizes.
fn rate_text(bytes: u64) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{}MiB", bytes >> 20)
    } else if bytes % (1 << 10) == 0 {
        format!("{}KiB", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

// ---------------------------------------------------------------------------------
// TOML output

#[derive(Default)]
struct Emitter {
    text: String,
    placeholders: Vec<(String, String)>,
}

/// A TOML basic string, escaped.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl Emitter {
    fn line(&mut self, s: impl AsRef<str>) {
        let s = s.as_ref();
        if s.starts_with('#') {
            // A comment quotes the Heartbeat files, which may hold control
            // characters TOML forbids in comments (found by fuzzing): written as
            // `\xNN` they stay visible and the file still parses.
            for c in s.chars() {
                if c.is_control() && c != '\t' {
                    self.text.push_str(&format!("\\x{:02x}", u32::from(c)));
                } else {
                    self.text.push(c);
                }
            }
        } else {
            self.text.push_str(s);
        }
        self.text.push('\n');
    }

    fn placeholder(&mut self, name: &str, what: String) -> String {
        let p = format!("<{name}>");
        if !self.placeholders.iter().any(|(n, _)| *n == p) {
            self.placeholders.push((p.clone(), what));
        }
        p
    }

    fn emit(
        &mut self,
        input: &ImportInput,
        cf: &HaCf,
        group: Option<&HaGroup>,
        auth: Option<&(PathBuf, Option<super::Auth>)>,
        drbd: &[Drbd],
        notes: &mut Diagnostics,
    ) {
        self.line("# pairbeat.toml imported from Heartbeat by `pairbeat config import`.");
        self.line("# Values in <ANGLE BRACKETS> were not in the Heartbeat files: fill them in;");
        self.line("# `pairbeat config check` refuses the file until then.");
        self.cluster(cf);
        let nodes = self.nodes(input, cf, notes);
        self.links(input, cf, &nodes, notes);
        self.timing(cf);
        self.auth(auth, notes);
        self.failover(cf, group);
        self.tiebreak(input, cf, notes);
        self.fence(input, cf, &nodes, notes);
        self.group(group);
        let crc = auth
            .and_then(|(_, keys)| keys.as_ref())
            .is_some_and(|a| a.signing_key().method == AuthMethod::Crc);
        for d in drbd {
            self.replica(input, &nodes, d, notes);
            if crc {
                notes.warning(
                    Location::at(&d.file, d.r.span.clone()),
                    format!(
                        "replica `{}` is refused by `config check` while authkeys signs with crc: its link needs real keys",
                        d.r.name
                    ),
                    Some("change authkeys to `1 sha1 SECRET` (or sha256) on both nodes".into()),
                );
            }
        }
        self.daemon(cf);
    }

    /// The `[cluster]` table.
    fn cluster(&mut self, cf: &HaCf) {
        self.line("");
        self.line("[cluster]");
        match &cf.cluster {
            Some(c) => self.line(format!("name = {}", q(c))),
            None => self.line("name = \"linux-ha\"  # Heartbeat's default cluster name"),
        }
    }

    /// The `[auth]` table: the authkeys path, or a placeholder for it.
    fn auth(&mut self, auth: Option<&(PathBuf, Option<super::Auth>)>, notes: &mut Diagnostics) {
        self.line("");
        self.line("[auth]");
        match auth {
            Some((path, keys)) => {
                self.line(format!("authkeys = {}", q(&path.to_string_lossy())));
                if let Some(a) = keys {
                    if a.signing_key().method == AuthMethod::Crc {
                        self.line("# crc is a checksum, not authentication: consider `1 sha1 <secret>` in authkeys");
                        notes.warning(
                            Location::file(path),
                            "this authkeys signs with crc, which anyone on the link can forge",
                            Some("switch to sha1 (Heartbeat-compatible) or sha256".into()),
                        );
                    }
                }
            }
            None => {
                let p = self.placeholder(
                    "AUTHKEYS FILE",
                    "the path of the authkeys file (or give --authkeys)".into(),
                );
                self.line(format!("authkeys = {}", q(&p)));
            }
        }
    }

    /// The `[failover]` table: the haresources owner and auto_failback.
    fn failover(&mut self, cf: &HaCf, group: Option<&HaGroup>) {
        self.line("");
        self.line("[failover]");
        if let Some(owner) = group.and_then(|g| g.owner.as_ref()) {
            self.line(format!(
                "preferred_node = {}  # the group's owner in haresources",
                q(owner)
            ));
        }
        match &cf.auto_failback {
            Some((v, _)) if v == "off" => self.line("auto_failback = false"),
            Some((v, _)) if v == "on" => self.line("auto_failback = true"),
            Some(_) => self.line("auto_failback = true  # from `legacy`: the group returns to its owner"),
            None => self.line("auto_failback = true  # Heartbeat's default (legacy) returns the group to its owner"),
        }
    }

    /// The `[tiebreak]` table from the ping nodes.
    fn tiebreak(&mut self, input: &ImportInput, cf: &HaCf, notes: &mut Diagnostics) {
        if cf.ping.is_empty() {
            if let Some((_, line)) = cf.deadping {
                notes.warning(
                    Location::file(&input.ha_cf),
                    format!("deadping (line {line}) is not needed: ha.cf has no ping nodes"),
                    None,
                );
            }
            return;
        }
        if !cf.ipfail {
            notes.warning(
                Location::file(&input.ha_cf),
                "ha.cf has ping nodes but does not respawn ipfail: Heartbeat only watched them; pairbeat's [tiebreak] acts on them (a node reaching none never takes over; one running the group that loses its peer and every target stops it)",
                Some("keep [tiebreak] (that is ipfail's job) or remove it".into()),
            );
        }
        let mut lines: Vec<String> = cf.ping.iter().map(|p| p.1.to_string()).collect();
        lines.dedup();
        self.line("");
        let word = if lines.len() == 1 { "line" } else { "lines" };
        self.line(format!("# ha.cf's ping nodes ({word} {})", lines.join(", ")));
        self.line("[tiebreak]");
        let mut targets = Vec::new();
        for (addr, _, _) in &cf.ping {
            let t = match addr.parse::<std::net::IpAddr>() {
                Ok(ip) => format!("icmp:{ip}"),
                Err(_) => format!(
                    "icmp:{}",
                    self.placeholder(&format!("ADDRESS OF {addr}"), format!("ping node {addr}'s IP address"))
                ),
            };
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        let list: Vec<String> = targets.iter().map(|t| q(t)).collect();
        self.line(format!("targets = [{}]", list.join(", ")));
        if let Some((t, line)) = cf.deadping {
            self.line(format!(
                "timeout = {}  # deadping, line {line}",
                q(&crate::config::format_duration(t))
            ));
        }
    }

    /// The `[fence]` table from `stonith_host` lines.
    fn fence(&mut self, input: &ImportInput, cf: &HaCf, nodes: &[String], notes: &mut Diagnostics) {
        let Some(first) = cf.stonith.first() else { return };
        let plugin = first.plugin;
        let mut per_node: Vec<(&str, &StonithHost)> = Vec::new();
        let mut common: Option<&StonithHost> = None;
        for h in &cf.stonith {
            let here = || Location::file(&input.ha_cf);
            if h.plugin.heartbeat != plugin.heartbeat {
                notes.warning(
                    here(),
                    format!(
                        "stonith_host line {} ({}) is left out: [fence] has one device, {} from line {}",
                        h.line, h.plugin.heartbeat, plugin.heartbeat, first.line
                    ),
                    None,
                );
                continue;
            }
            match &h.node {
                Some(n) if nodes.contains(n) => {
                    if per_node.iter().any(|(m, _)| m == n) {
                        notes.warning(here(), format!("stonith_host line {} fences {n} again: the first line counts", h.line), None);
                    } else {
                        per_node.push((n.as_str(), h));
                    }
                }
                Some(n) => notes.warning(
                    here(),
                    format!("stonith_host line {} resets `{n}`, which is not a node in ha.cf: left out", h.line),
                    None,
                ),
                None => match common {
                    None => common = Some(h),
                    Some(c) if c.params == h.params => {}
                    Some(c) => notes.warning(
                        here(),
                        format!("stonith_host line {} gives other parameters for the same switch than line {}: the first counts", h.line, c.line),
                        None,
                    ),
                },
            }
        }
        if per_node.is_empty() && common.is_none() {
            return;
        }
        let inline = |params: &[(String, String)]| -> String {
            let kv: Vec<String> = params.iter().map(|(k, v)| format!("{} = {}", key(k), q(v))).collect();
            format!("params = {{ {} }}", kv.join(", "))
        };
        self.line("");
        self.line(format!(
            "# ha.cf's stonith_host ({}), as fence-agents",
            plugin.heartbeat
        ));
        self.line("[fence]");
        self.line(format!("agent = {}", q(plugin.agent)));
        if let Some(c) = common {
            self.line(format!("{}  # line {}", inline(&c.params), c.line));
        }
        for n in nodes.iter().take(2) {
            if let Some((_, h)) = per_node.iter().find(|(m, _)| *m == n.as_str()) {
                self.line(format!("[fence.node.{}]", key(n)));
                self.line(format!("{}  # line {}", inline(&h.params), h.line));
            } else if plugin.switch {
                let p = self.placeholder(
                    &format!("OUTLET OF {n}"),
                    format!("the {} outlet that powers {n}", plugin.heartbeat),
                );
                self.line(format!("[fence.node.{}]", key(n)));
                self.line(inline(&[("plug".into(), p)]));
            } else {
                notes.warning(
                    Location::file(&input.ha_cf),
                    format!("no stonith_host line resets {n}: it cannot be fenced"),
                    Some(format!("add [fence.node.{n}] params for its {} device", plugin.agent)),
                );
            }
        }
    }

    /// The `[group]` table and its resources.
    fn group(&mut self, group: Option<&HaGroup>) {
        self.line("");
        self.line("[group]");
        self.line("id = \"group\"");
        if let Some(g) = group {
            self.resources(g);
        }
    }

    /// The `[daemon]` table, left out when ha.cf sets none of its keys.
    fn daemon(&mut self, cf: &HaCf) {
        let mut daemon = String::new();
        if let Some(log) = &cf.log {
            let _ = writeln!(daemon, "log = {}", q(log));
        }
        if cf.debug {
            daemon.push_str("log_level = \"debug\"  # from `debug` in ha.cf\n");
        }
        if let Some(rt) = cf.realtime {
            let _ = writeln!(daemon, "realtime = {rt}");
        }
        if !daemon.is_empty() {
            self.line("");
            self.line("[daemon]");
            self.text.push_str(&daemon);
        }
    }

    /// One `[[replica]]` from a drbd.conf resource.
    fn replica(&mut self, input: &ImportInput, nodes: &[String], d: &Drbd, notes: &mut Diagnostics) {
        let (r, f) = (&d.r, &d.file);
        let at = |span: &std::ops::Range<usize>| Location::at(f, span.clone());
        let name = &r.name;
        self.line("");
        self.line(format!(
            "# {} line {}: resource {name}",
            f.path.display(),
            f.line_col(r.span.start).0
        ));
        self.line("[[replica]]");
        self.line(format!("name = {}", q(name)));
        for h in &r.hosts {
            if !nodes.iter().any(|n| n.eq_ignore_ascii_case(&h.name)) {
                notes.warning(
                    at(&h.span),
                    format!(
                        "drbd.conf host `{}` is not a node in ha.cf; its part is not translated",
                        h.name
                    ),
                    Some("DRBD's `on` names must be the nodes' `uname -n`, as ha.cf's are".into()),
                );
            }
        }
        let host = |n: &str| r.hosts.iter().find(|h| h.name.eq_ignore_ascii_case(n));
        let me = input.from_node.as_deref().and_then(host).or_else(|| r.hosts.first());
        match me.and_then(|h| h.disk.as_ref()) {
            Some((disk, _)) => {
                self.line(format!("backing = {}  # this node's `disk` in drbd.conf", q(disk)));
                for h in r.hosts.iter().filter(|h| me.is_some_and(|m| m.name != h.name)) {
                    if let Some((other, span)) = h.disk.as_ref().filter(|(o, _)| o != disk) {
                        notes.warning(
                            at(span),
                            format!("on {} the disk of `{name}` is {other}, not {disk}", h.name),
                            Some(format!("in {}'s pairbeat.toml, set backing = \"{other}\"", h.name)),
                        );
                    }
                }
            }
            None => {
                let p = self.placeholder(
                    &format!("BACKING OF {name}"),
                    format!("the disk or image file replica {name} lives on"),
                );
                self.line(format!("backing = {}", q(&p)));
            }
        }
        self.line(format!(
            "meta = {}  # pairbeat's metadata, in a file of its own",
            q(&format!("/var/lib/pairbeat/replica/{name}.meta"))
        ));
        if let Some((m, span)) = me.and_then(|h| h.meta_disk.as_ref()) {
            notes.warning(
                at(span),
                format!("meta-disk {m}: DRBD's metadata is not read; pairbeat keeps its own in /var/lib/pairbeat/replica/{name}.meta"),
                Some(format!(
                    "once DRBD is stopped: `pairbeat replica create {name}` on both nodes (the data on the disk stays), then `pairbeat replica primary {name} --force` where the data is current: the other node resyncs in full"
                )),
            );
        }
        let size = self.placeholder(
            &format!("SIZE OF {name}"),
            format!(
                "the size replica {name} replicates, at most its disk's less DRBD's internal metadata (`blockdev --getsize64 /dev/drbdN` while DRBD runs gives it)"
            ),
        );
        self.line(format!("size = {}", q(&size)));
        let ports: Vec<u16> = r
            .hosts
            .iter()
            .filter_map(|h| h.address.as_ref().and_then(|a| a.0 .1))
            .collect();
        match ports.first() {
            Some(p) if ports.iter().all(|o| o == p) => self.line(format!("port = {p}")),
            Some(p) => {
                self.line(format!("port = {p}"));
                notes.warning(
                    at(&r.span),
                    format!("the hosts of `{name}` use different ports ({ports:?}); pairbeat uses one, {p}"),
                    None,
                );
            }
            None => {}
        }
        for n in nodes {
            let h = host(n);
            match h.and_then(|h| h.address.as_ref()) {
                Some(((ip, _), _)) => self.line(format!("address.{} = {}", key(n), q(ip))),
                None => {
                    let p = self.placeholder(
                        &format!("ADDRESS OF {n} FOR {name}"),
                        format!("{n}'s address on the replication link of {name}"),
                    );
                    self.line(format!("address.{} = {}", key(n), q(&p)));
                    let span = h
                        .map(|h| h.address_missing.clone().unwrap_or(h.span.clone()))
                        .unwrap_or(r.span.clone());
                    notes.warning(
                        at(&span),
                        format!("drbd.conf gives no address of {n} for `{name}`"),
                        None,
                    );
                }
            }
        }
        if let Some((rate, _)) = &r.rate {
            self.line(format!("resync_rate = {}  # syncer rate", q(&rate_text(*rate))));
        }
        match &r.fencing {
            Some((m, _)) if m == "dont-care" || m == "resource-only" => self.line(format!("fencing = {}", q(m))),
            Some((m, span)) if m == "resource-and-stonith" => {
                self.line(format!("fencing = {}", q(m)));
                notes.warning(
                    at(span),
                    "fencing resource-and-stonith needs pairbeat's [fence] section",
                    Some("configure [fence] (config check refuses it without), or use resource-only".into()),
                );
            }
            Some((m, span)) => notes.warning(
                at(span),
                format!("fencing `{m}` is not a DRBD fencing mode; not translated"),
                None,
            ),
            None => {}
        }
        if let Some((p, span)) = r.protocol.as_ref().filter(|(p, _)| !p.eq_ignore_ascii_case("C")) {
            notes.warning(
                at(span),
                format!("protocol {p} is not translated: pairbeat replicates with protocol C only"),
                Some("a write is answered once the peer has it too: nothing acknowledged is lost with one node".into()),
            );
        }
        if let Some(span) = &r.shared_secret {
            notes.warning(
                at(span),
                "the replication link is authenticated with the cluster's authkeys, not drbd.conf's shared-secret",
                None,
            );
        }
        if let Some(span) = &r.two_primaries {
            notes.warning(
                at(span),
                "allow-two-primaries is not translated: pairbeat never makes both nodes Primary",
                None,
            );
        }
        for span in &r.after_sb {
            notes.warning(
                at(span),
                "after-sb policies are not translated: pairbeat's [split_brain] policy picks the keeper, and the loser's changes are saved aside",
                None,
            );
        }
        for (what, span) in &r.untranslated {
            let help = what
                .starts_with("startup")
                .then(|| "pairbeat waits for the peer at start for [timing] initdead".to_string());
            notes.warning(at(span), format!("drbd.conf `{what}` is not translated"), help);
        }
    }

    fn nodes(&mut self, input: &ImportInput, cf: &HaCf, notes: &mut Diagnostics) -> Vec<String> {
        let mut nodes = cf.nodes.clone();
        if nodes.len() > 2 {
            notes.error(
                Location::file(&input.ha_cf),
                format!("ha.cf names {} nodes; pairbeat runs on exactly two", nodes.len()),
                Some(format!("keep two of: {}", nodes.join(", "))),
            );
        }
        while nodes.len() < 2 {
            let i = nodes.len() + 1;
            notes.warning(
                Location::file(&input.ha_cf),
                format!("ha.cf names {} node(s); pairbeat needs two", cf.nodes.len()),
                None,
            );
            let p = self.placeholder(&format!("NODE {i} NAME"), format!("the `uname -n` of node {i}"));
            nodes.push(p);
        }
        for n in &nodes {
            self.line("");
            self.line("[[node]]");
            self.line(format!("name = {}", q(n)));
        }
        nodes
    }

    fn links(&mut self, input: &ImportInput, cf: &HaCf, nodes: &[String], notes: &mut Diagnostics) {
        if cf.media.is_empty() {
            notes.warning(
                Location::file(&input.ha_cf),
                "ha.cf has no bcast, mcast or ucast line: the nodes would have no link",
                Some("fill in the placeholder [[link]] (better: two links on separate NICs)".into()),
            );
            self.placeholder_link(nodes);
            return;
        }
        // Heartbeat lists one ucast line per peer address; gather them per interface.
        let mut ucast: BTreeMap<&str, Vec<(&str, u16, usize)>> = BTreeMap::new();
        for m in &cf.media {
            match m {
                Medium::Bcast { interface, port } => {
                    self.line("");
                    self.line("[[link]]");
                    self.line("kind = \"bcast\"");
                    self.line(format!("interface = {}", q(interface)));
                    self.line(format!("port = {port}"));
                }
                Medium::Mcast {
                    interface,
                    group,
                    port,
                    ttl,
                    loopback,
                } => {
                    self.line("");
                    self.line("[[link]]");
                    self.line("kind = \"mcast\"");
                    self.line(format!("interface = {}", q(interface)));
                    self.line(format!("group = {}", q(group)));
                    self.line(format!("port = {port}"));
                    self.line(format!("ttl = {ttl}"));
                    self.line(format!("loop = {loopback}"));
                }
                Medium::Ucast {
                    interface,
                    ip,
                    port,
                    line,
                } => {
                    ucast.entry(interface).or_default().push((ip, *port, *line));
                }
            }
        }
        let from = input.from_node.as_ref().filter(|f| nodes.contains(f));
        for (iface, entries) in ucast {
            self.ucast_link(input, iface, &entries, from, nodes, notes);
        }
    }

    /// A ucast `[[link]]` made only of placeholders, for an ha.cf without media.
    fn placeholder_link(&mut self, nodes: &[String]) {
        self.line("");
        self.line("[[link]]");
        self.line("kind = \"ucast\"");
        let i = self.placeholder("INTERFACE", "the NIC the nodes talk over".into());
        self.line(format!("interface = {}", q(&i)));
        for n in nodes.iter().take(2) {
            let p = self.placeholder(&format!("ADDRESS OF {n}"), format!("{n}'s IP address on that NIC"));
            self.line(format!("address.{} = {}", key(n), q(&p)));
        }
    }

    /// One ucast `[[link]]` from the ucast lines on `iface` (peer IP, port, ha.cf line).
    fn ucast_link(
        &mut self,
        input: &ImportInput,
        iface: &str,
        entries: &[(&str, u16, usize)],
        from: Option<&String>,
        nodes: &[String],
        notes: &mut Diagnostics,
    ) {
        self.line("");
        self.line("[[link]]");
        self.line("kind = \"ucast\"");
        self.line(format!("interface = {}", q(iface)));
        self.line(format!("port = {}", entries[0].1));
        let lines: Vec<String> = entries.iter().map(|e| e.2.to_string()).collect();
        match (from, entries) {
            (Some(me), [(ip, _, line)]) => {
                // This node's ha.cf: the one ucast address is the peer's; its own is
                // on this host, when import runs here.
                let peer = nodes.iter().find(|n| *n != me).cloned().unwrap_or_default();
                match own_address(input, iface, ip) {
                    Some(own) => self.line(format!(
                        "address.{} = {}  # {iface}'s address on this host, in the peer's subnet",
                        key(me),
                        q(&own.to_string())
                    )),
                    None => {
                        let p = self.placeholder(
                            &format!("ADDRESS OF {me} ON {iface}"),
                            format!("{me}'s own IP address on {iface}"),
                        );
                        self.line(format!(
                            "address.{} = {}  # ha.cf gives only the peer's address",
                            key(me),
                            q(&p)
                        ));
                    }
                }
                self.line(format!("address.{} = {}  # ha.cf line {line}", key(&peer), q(ip)));
            }
            _ => {
                let ips: Vec<&str> = entries.iter().map(|e| e.0).collect();
                notes.warning(
                    Location::file(&input.ha_cf),
                    format!("ucast on {iface} (line {}) lists {}: which node owns which address is not in ha.cf", lines.join(", "), ips.join(", ")),
                    Some("fill in address.<node> for both nodes, or import again with --node NAME (the host these files come from)".into()),
                );
                for n in nodes.iter().take(2) {
                    let p = self.placeholder(
                        &format!("ADDRESS OF {n} ON {iface}"),
                        format!("{n}'s own IP address on {iface} (one of {})", ips.join(", ")),
                    );
                    self.line(format!("address.{} = {}", key(n), q(&p)));
                }
            }
        }
    }

    fn timing(&mut self, cf: &HaCf) {
        // Heartbeat's defaults differ from pairbeat's; write them out so behaviour is unchanged.
        let ka = cf.keepalive.unwrap_or(Duration::from_secs(1));
        let dt = cf.deadtime.unwrap_or(Duration::from_secs(30));
        let id = cf.initdead.unwrap_or_else(|| Timing::default_initdead(dt));
        let note = |given: bool| if given { "" } else { "  # Heartbeat's default" };
        self.line("");
        self.line("[timing]");
        self.line(format!(
            "keepalive = {}{}",
            q(&format_duration(ka)),
            note(cf.keepalive.is_some())
        ));
        if let Some(w) = cf.warntime {
            self.line(format!("warntime = {}", q(&format_duration(w))));
        }
        self.line(format!(
            "deadtime = {}{}",
            q(&format_duration(dt)),
            note(cf.deadtime.is_some())
        ));
        self.line(format!(
            "initdead = {}{}",
            q(&format_duration(id)),
            note(cf.initdead.is_some())
        ));
    }

    fn resources(&mut self, g: &HaGroup) {
        let mut used: BTreeMap<String, usize> = BTreeMap::new();
        for r in &g.resources {
            let base = resource_id(&r.agent);
            let count = used.entry(base.clone()).or_insert(0);
            *count += 1;
            let id = if *count == 1 { base } else { format!("{base}-{count}") };
            for (_, v) in r.params.iter().filter(|(_, v)| super::parse::is_placeholder(v)) {
                self.placeholder(
                    &v[1..v.len() - 1],
                    format!("a value for resource {id} (haresources line {})", r.line),
                );
            }
            self.line("");
            self.line(format!("# haresources line {}: {}", r.line, r.token));
            self.line("[[group.resource]]");
            self.line(format!("id = {}", q(&id)));
            self.line(format!("agent = {}", q(&r.agent)));
            if !r.params.is_empty() {
                let kv: Vec<String> = r.params.iter().map(|(k, v)| format!("{k} = {}", q(v))).collect();
                self.line(format!("params = {{ {} }}", kv.join(", ")));
            }
            if !r.args.is_empty() {
                let a: Vec<String> = r.args.iter().map(|a| q(a)).collect();
                self.line(format!("args = [{}]", a.join(", ")));
            }
        }
        if !g.resources.is_empty() {
            self.line("# Heartbeat v1 did not monitor resources. To have pairbeat watch one, add e.g.");
            self.line("# op = [{ name = \"monitor\", interval = \"10s\", timeout = \"20s\" }]");
        }
    }
}

/// A readable, unique-able id from an agent: "ocf:heartbeat:IPaddr" → "ipaddr".
fn resource_id(agent: &str) -> String {
    let name = agent.rsplit(':').next().unwrap_or(agent);
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        id
    } else {
        format!("r{id}")
    }
}

/// A node name as a TOML key (quoted when it is not a bare key).
fn key(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        name.to_string()
    } else {
        // Always a one-line basic string: `q` may pick a multi-line or literal
        // form for a value, which TOML refuses as a key (found by fuzzing: a node
        // name with quotes in ha.cf).
        let mut k = String::from("\"");
        for c in name.chars() {
            match c {
                '"' => k.push_str("\\\""),
                '\\' => k.push_str("\\\\"),
                c if c.is_control() => k.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => k.push(c),
            }
        }
        k.push('"');
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_time_syntax() {
        assert_eq!(heartbeat_time("2").unwrap(), Duration::from_secs(2));
        assert_eq!(heartbeat_time("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(heartbeat_time("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(heartbeat_time("2s").unwrap(), Duration::from_secs(2));
        assert!(heartbeat_time("2min").is_err());
        assert!(heartbeat_time("fast").is_err());
    }

    fn token(t: &str) -> (HaResource, String) {
        let f = SourceFile::new("haresources", format!("a {t}\n"));
        let mut d = Diagnostics::default();
        let r = translate_token(t, 1, &f, &mut d);
        (r, d.to_string())
    }

    #[test]
    fn ipaddr_fields_map_to_ocf_params() {
        let (r, _) = token("IPaddr::10.0.0.1/24/eth0");
        assert_eq!(r.agent, "ocf:heartbeat:IPaddr");
        assert_eq!(
            r.params,
            vec![
                ("ip".into(), "10.0.0.1".into()),
                ("cidr_netmask".into(), "24".into()),
                ("nic".into(), "eth0".into())
            ]
        );
        let (r, _) = token("192.168.1.5");
        assert_eq!(r.params[0], ("ip".into(), "192.168.1.5".into()));
    }

    #[test]
    fn empty_ipaddr_is_named_not_dropped() {
        let (r, notes) = token("IPaddr::");
        assert_eq!(r.params[0], ("ip".into(), "<VIRTUAL IP>".into()));
        assert!(
            notes.contains("haresources:1:3: warning: `IPaddr::` gives no virtual ip"),
            "{notes}"
        );
    }

    #[test]
    fn other_scripts_keep_positional_args() {
        let (r, _) = token("drbddisk::r0");
        assert_eq!(
            (r.agent.as_str(), r.args.as_slice()),
            ("heartbeat:drbddisk", &["r0".to_string()][..])
        );
        let (r, _) = token("Filesystem::/dev/drbd0::/data::ext4");
        assert_eq!(r.params.len(), 3);
    }

    #[test]
    fn unknown_and_untranslatable_directives_are_reported_with_line() {
        let f = SourceFile::new(
            "ha.cf",
            "keepalive 1\nstonith_host * baytech 10.0.0.3 mylogin mysecretpassword\nfrobnicate yes\nkeepalive 2min\n",
        );
        let mut d = Diagnostics::default();
        parse_ha_cf(&f, &mut d);
        let t = d.to_string();
        assert!(
            t.contains("ha.cf:2:1: warning: stonith plugin `baytech` is not translated: import knows no fence-agents equivalent"),
            "{t}"
        );
        assert!(
            t.contains("ha.cf:3:1: error: `frobnicate` is not a Heartbeat directive"),
            "{t}"
        );
        assert!(t.contains("ha.cf:4:1: error: keepalive 2min"), "{t}");
    }

    #[test]
    fn logfacility_none_leaves_the_log_file_and_no_facility_warning() {
        let f = SourceFile::new("ha.cf", "logfacility none\nlogfile /var/log/ha-log\n");
        let mut d = Diagnostics::default();
        assert_eq!(parse_ha_cf(&f, &mut d).log.as_deref(), Some("/var/log/ha-log"));
        assert!(d.items.is_empty(), "{d}");
        let f = SourceFile::new("ha.cf", "logfacility local0\n");
        let mut d = Diagnostics::default();
        assert_eq!(parse_ha_cf(&f, &mut d).log.as_deref(), Some("syslog"));
        assert!(
            d.to_string()
                .contains("ha.cf:1:1: warning: pairbeat logs to syslog with facility daemon, not local0"),
            "{d}"
        );
    }

    /// Found by fuzzing: a key from a node name with quotes was written as a
    /// multi-line string, which TOML refuses as a key.
    #[test]
    fn keys_from_odd_names_are_one_line_basic_strings() {
        for name in [
            "alpha",
            "a.b",
            "'ser\"on\"x",
            "back\\slash",
            "tab\there",
            "以\"on\"开头",
        ] {
            let line = format!("{} = 1\n", key(name));
            let t: toml::Table = line.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(t.keys().next().map(String::as_str), Some(name), "{line}");
        }
    }

    /// Found by fuzzing: a node named twice became two `address.NAME` keys (TOML
    /// that does not parse), and a control character quoted in a comment too.
    #[test]
    fn a_repeated_node_counts_once_and_comments_escape_control_characters() {
        let f = SourceFile::new("ha.cf", "node alpha bravo\nnode bravo\n");
        let mut d = Diagnostics::default();
        assert_eq!(parse_ha_cf(&f, &mut d).nodes, vec!["alpha", "bravo"]);
        assert!(
            d.to_string()
                .contains("ha.cf:2:1: warning: node `bravo` is listed again"),
            "{d}"
        );
        let mut e = Emitter::default();
        e.line("# haresources line 2: ext\u{7f}3");
        assert_eq!(e.text, "# haresources line 2: ext\\x7f3\n");
        assert!(e.text.parse::<toml::Table>().is_ok());
    }

    #[test]
    fn values_split_on_commas_and_continuations_join() {
        let f = SourceFile::new("ha.cf", "node alpha,bravo\n");
        let mut d = Diagnostics::default();
        assert_eq!(parse_ha_cf(&f, &mut d).nodes, vec!["alpha", "bravo"]);
        let h = SourceFile::new("haresources", "ALPHA 10.0.0.9 \\\n  Filesystem::/dev/sdb1::/mnt\n");
        let g = parse_haresources(&h, &["alpha".into(), "bravo".into()], &mut d);
        assert_eq!(g.owner.as_deref(), Some("alpha"));
        assert_eq!(g.resources.len(), 2);
    }
}
