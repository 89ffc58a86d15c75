//! Phase two of configuration loading: `RawConfig` → `Config`.
//!
//! Each section is checked on its own and then the rules that tie sections
//! together (timing relations, node names used by links and failover, the local
//! node). Every problem is pushed to `Diagnostics` with the span of the value at
//! fault; a section with errors yields `None`, and `validate` returns a `Config`
//! only when every section produced one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::authkeys::{self, MAX_INDEX};
use super::diag::{closest, Diagnostics, Location, SourceFile};
use super::parse::{CutKey, Parsed};
use super::raw::*;
use super::*;

pub(super) struct Ctx<'a> {
    pub(super) file: &'a SourceFile,
    diags: &'a mut Diagnostics,
    cut: &'a [CutKey],
}

impl Ctx<'_> {
    pub(super) fn at(&self, span: Range<usize>) -> Location {
        Location::at(self.file, span)
    }

    pub(super) fn error(&mut self, span: Range<usize>, msg: impl Into<String>, help: impl Into<String>) {
        let help = help.into();
        let loc = self.at(span);
        self.diags.error(loc, msg, (!help.is_empty()).then_some(help));
    }

    pub(super) fn warning(&mut self, span: Range<usize>, msg: impl Into<String>, help: impl Into<String>) {
        let help = help.into();
        let loc = self.at(span);
        self.diags.warning(loc, msg, (!help.is_empty()).then_some(help));
    }

    /// Reports a missing required key, unless phase one already reported that key as malformed.
    pub(super) fn missing(&mut self, table: Range<usize>, key: &str, what: &str, help: impl Into<String>) {
        if !self.was_cut(&table, key) {
            self.error(table, format!("{what} has no `{key}`"), help);
        }
    }

    /// True when phase one cut a key of this name out of the given table.
    pub(super) fn was_cut(&self, table: &Range<usize>, key: &str) -> bool {
        self.cut.iter().any(|c| c.name == key && c.table == *table)
    }

    pub(super) fn duration(&mut self, v: &Spanned<toml::Value>, key: &str) -> Option<Duration> {
        match v.get_ref() {
            toml::Value::String(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(v.span(), format!("{key}: {e}"), "");
                    None
                }
            },
            toml::Value::Integer(i) => {
                self.error(
                    v.span(),
                    format!("{key} = {i} has no unit"),
                    format!("write {key} = \"{i}s\" or \"{i}ms\""),
                );
                None
            }
            other => {
                self.error(
                    v.span(),
                    format!("{key} must be a duration string, not a {}", other.type_str()),
                    format!("write e.g. {key} = \"5s\""),
                );
                None
            }
        }
    }
}

/// The whole file's span: where "missing section" errors point.
pub(super) fn whole(file: &SourceFile) -> Range<usize> {
    0..file.text.len().min(1)
}

pub fn validate(file: &SourceFile, parsed: Parsed, local_node: &str, diags: &mut Diagnostics) -> Option<Config> {
    let Parsed { raw, cut } = parsed;
    let mut cx = Ctx { file, diags, cut: &cut };
    // toml gives the root table an empty span at 0; cut keys at the top level carry it.
    let top = 0..0;

    let cluster_name = cluster(&mut cx, raw.cluster, &top);
    let nodes = nodes(&mut cx, raw.node, &top);
    let local = nodes.as_ref().and_then(|n| local_index(&mut cx, n, local_node));
    let links = links(&mut cx, raw.link, nodes.as_ref(), &top);
    let timing = timing(&mut cx, raw.timing);
    let auth = auth(&mut cx, raw.auth, &top);
    let failover = failover(&mut cx, raw.failover, nodes.as_ref());
    let split_brain = super::protect::split_brain(&mut cx, raw.split_brain);
    let tiebreak = super::protect::tiebreak(&mut cx, raw.tiebreak, timing.as_ref());
    let fence = super::protect::fence(&mut cx, raw.fence, nodes.as_ref());
    let group = group(&mut cx, raw.group);
    let daemon = daemon(&mut cx, raw.daemon);
    let replicas = super::replica::replicas(
        &mut cx,
        raw.replica,
        nodes.as_ref(),
        auth.as_ref(),
        fence.as_ref(),
        tiebreak.as_ref(),
    );

    Some(Config {
        path: file.path.clone(),
        cluster_name: cluster_name?,
        nodes: nodes?,
        local: local?,
        links: links?,
        timing: timing?,
        auth: auth?,
        failover: failover?,
        split_brain: split_brain?,
        tiebreak: tiebreak?,
        fence: fence?,
        group: group?,
        daemon: daemon?,
        replicas: replicas?,
    })
}

fn cluster(cx: &mut Ctx, raw: S<RawCluster>, top: &Range<usize>) -> Option<String> {
    let Some(raw) = raw else {
        if !cx.was_cut(top, "cluster") {
            cx.error(
                whole(cx.file),
                "there is no [cluster] section",
                "add [cluster] with name = \"...\" (a name for this pair, shown in status)",
            );
        }
        return None;
    };
    let span = raw.span();
    let Some(name) = raw.into_inner().name else {
        cx.missing(span, "name", "[cluster]", "add name = \"...\"");
        return None;
    };
    if !valid_name(name.get_ref()) {
        cx.error(
            name.span(),
            format!("cluster name `{}` is not a plain name", name.get_ref()),
            NAME_HELP,
        );
        return None;
    }
    Some(name.into_inner())
}

const NAME_HELP: &str = "use letters, digits, `-`, `_` and `.`, starting with a letter or digit";

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn nodes(cx: &mut Ctx, raw: S<Vec<Spanned<RawNode>>>, top: &Range<usize>) -> Option<[String; 2]> {
    let Some(raw) = raw else {
        if !cx.was_cut(top, "node") {
            cx.error(
                whole(cx.file),
                "no [[node]] is defined",
                "add two [[node]] tables, each with name = \"<uname -n of that host>\"",
            );
        }
        return None;
    };
    let list_span = raw.span();
    let mut names: Vec<Spanned<String>> = Vec::new();
    let mut ok = true;
    for node in raw.into_inner() {
        let span = node.span();
        match node.into_inner().name {
            None => {
                cx.missing(span, "name", "this [[node]]", "add name = \"<uname -n of that host>\"");
                ok = false;
            }
            Some(name) if !valid_name(name.get_ref()) => {
                cx.error(
                    name.span(),
                    format!("node name `{}` is not a host name", name.get_ref()),
                    "write the name `uname -n` prints on that host",
                );
                ok = false;
            }
            Some(name) => {
                if names.iter().any(|n| n.get_ref() == name.get_ref()) {
                    cx.error(
                        name.span(),
                        format!("node `{}` is defined twice", name.get_ref()),
                        "the two [[node]] tables need different names",
                    );
                    ok = false;
                }
                names.push(name);
            }
        }
    }
    if names.len() != 2 && ok {
        cx.error(
            list_span,
            format!("pairbeat runs on exactly two nodes; {} [[node]] defined", names.len()),
            "define one [[node]] table for each of the two hosts",
        );
        return None;
    }
    if !ok {
        return None;
    }
    let mut it = names.into_iter().map(Spanned::into_inner);
    Some([it.next()?, it.next()?])
}

fn local_index(cx: &mut Ctx, nodes: &[String; 2], local: &str) -> Option<usize> {
    if let Some(i) = nodes.iter().position(|n| n == local) {
        return Some(i);
    }
    let help = match nodes.iter().find(|n| n.eq_ignore_ascii_case(local)) {
        Some(n) => format!("node names are compared exactly: write `{local}`, not `{n}`, or pass --node {n}"),
        None => format!(
            "run on one of the two nodes, or pass --node {} (or --node {}) to say which one this is",
            nodes[0], nodes[1]
        ),
    };
    cx.diags.error(
        Location::file(&cx.file.path),
        format!(
            "this host (`{local}`) is neither node `{}` nor node `{}`",
            nodes[0], nodes[1]
        ),
        Some(help),
    );
    None
}

pub(super) fn node_index(nodes: &[String; 2], name: &str) -> Option<usize> {
    nodes.iter().position(|n| n == name)
}

fn links(
    cx: &mut Ctx,
    raw: S<Vec<Spanned<RawLink>>>,
    nodes: Option<&[String; 2]>,
    top: &Range<usize>,
) -> Option<Vec<Link>> {
    let Some(raw) = raw else {
        if !cx.was_cut(top, "link") {
            cx.error(
                whole(cx.file),
                "no [[link]] is defined: the nodes would have no way to hear each other",
                "add a [[link]] with kind = \"ucast\", interface and address.<node> for both nodes",
            );
        }
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
    for link in raw.into_inner() {
        let span = link.span();
        match one_link(cx, link.into_inner(), span.clone(), nodes) {
            Some(l) => {
                if let Some(prev) = seen.insert(l.name.clone(), span.clone()) {
                    let (line, _) = cx.file.line_col(prev.start);
                    cx.error(
                        span,
                        format!("a second link is named `{}` (the first is at line {line})", l.name),
                        "give one of them name = \"...\"; a link's name defaults to its interface",
                    );
                    ok = false;
                }
                out.push(l);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn one_link(cx: &mut Ctx, raw: RawLink, span: Range<usize>, nodes: Option<&[String; 2]>) -> Option<Link> {
    let kind_name = match &raw.kind {
        Some(k) if ["ucast", "bcast", "mcast"].contains(&k.get_ref().as_str()) => k.get_ref().clone(),
        Some(k) => {
            cx.error(
                k.span(),
                format!("unknown link kind `{}`", k.get_ref()),
                "kind is \"ucast\", \"bcast\" or \"mcast\"",
            );
            return None;
        }
        None => {
            cx.missing(
                span,
                "kind",
                "this [[link]]",
                "add kind = \"ucast\" (or \"bcast\", \"mcast\")",
            );
            return None;
        }
    };
    let mut ok = true;
    let interface = match &raw.interface {
        Some(i) if valid_ifname(i.get_ref()) => Some(i.get_ref().clone()),
        Some(i) => {
            cx.error(
                i.span(),
                format!("`{}` is not an interface name", i.get_ref()),
                "write the name `ip link` shows (at most 15 characters, no `/` or spaces)",
            );
            None
        }
        None => {
            cx.missing(
                span.clone(),
                "interface",
                "this [[link]]",
                "add interface = \"eth1\" (the NIC this link uses)",
            );
            None
        }
    };
    let port = match &raw.port {
        None => DEFAULT_UDP_PORT,
        Some(p) if (1..=65535).contains(p.get_ref()) => *p.get_ref() as u16,
        Some(p) => {
            cx.error(
                p.span(),
                format!("port {} is out of range", p.get_ref()),
                "use a UDP port from 1 to 65535 (Heartbeat's is 694)",
            );
            ok = false;
            0
        }
    };
    // Keys that belong to other kinds are mistakes, not silently ignored extras.
    let only = |cx: &mut Ctx, present: Option<Range<usize>>, key: &str, kind: &str| {
        if let Some(s) = present {
            cx.error(
                s,
                format!("`{key}` applies to {kind} links, and this one is {kind_name}"),
                format!("remove `{key}` or set kind = \"{kind}\""),
            );
            true
        } else {
            false
        }
    };
    let kind = match kind_name.as_str() {
        "ucast" => {
            ok &= !only(cx, raw.group.as_ref().map(|s| s.span()), "group", "mcast");
            ok &= !only(cx, raw.ttl.as_ref().map(|s| s.span()), "ttl", "mcast");
            ok &= !only(cx, raw.loop_.as_ref().map(|s| s.span()), "loop", "mcast");
            ucast_addresses(cx, raw.address, span.clone(), nodes).map(|addresses| LinkKind::Ucast { addresses })
        }
        "bcast" => {
            ok &= !only(cx, raw.address.as_ref().map(|s| s.span()), "address", "ucast");
            ok &= !only(cx, raw.group.as_ref().map(|s| s.span()), "group", "mcast");
            ok &= !only(cx, raw.ttl.as_ref().map(|s| s.span()), "ttl", "mcast");
            ok &= !only(cx, raw.loop_.as_ref().map(|s| s.span()), "loop", "mcast");
            Some(LinkKind::Bcast)
        }
        _ => {
            ok &= !only(cx, raw.address.as_ref().map(|s| s.span()), "address", "ucast");
            mcast(cx, &raw, span.clone())
        }
    };
    let name = match &raw.name {
        Some(n) if valid_name(n.get_ref()) => Some(n.get_ref().clone()),
        Some(n) => {
            cx.error(
                n.span(),
                format!("link name `{}` is not a plain name", n.get_ref()),
                NAME_HELP,
            );
            None
        }
        None => interface.clone(),
    };
    if !ok {
        return None;
    }
    Some(Link {
        name: name?,
        interface: interface?,
        port,
        kind: kind?,
    })
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty() && s.len() <= 15 && !s.contains(['/', ' ', '\t', ':']) && s != "." && s != ".."
}

fn ucast_addresses(
    cx: &mut Ctx,
    raw: S<BTreeMap<Spanned<String>, Spanned<String>>>,
    link_span: Range<usize>,
    nodes: Option<&[String; 2]>,
) -> Option<[IpAddr; 2]> {
    let help = "add address.<node> = \"<IP>\" for both nodes: each node's own address on this link";
    let Some(raw) = raw else {
        cx.missing(link_span, "address", "this ucast [[link]]", help);
        return None;
    };
    let map_span = raw.span();
    let nodes = nodes?;
    let mut found: [Option<IpAddr>; 2] = [None, None];
    let mut ok = true;
    for (name, addr) in raw.into_inner() {
        let Some(i) = node_index(nodes, name.get_ref()) else {
            let help = match closest(name.get_ref(), nodes.iter().map(String::as_str)) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("the nodes are `{}` and `{}`", nodes[0], nodes[1]),
            };
            cx.error(name.span(), format!("`{}` is not a node", name.get_ref()), help);
            ok = false;
            continue;
        };
        match addr.get_ref().parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                cx.error(
                    addr.span(),
                    format!("{ip} cannot be a node's unicast address"),
                    "write the node's own IP address on this link",
                );
                ok = false;
            }
            Ok(ip) => found[i] = Some(ip),
            Err(_) => {
                cx.error(
                    addr.span(),
                    format!("`{}` is not an IP address", addr.get_ref()),
                    format!(
                        "write {}'s own IPv4 or IPv6 address on this link, e.g. \"10.0.0.1\"",
                        nodes[i]
                    ),
                );
                ok = false;
            }
        }
    }
    for (i, f) in found.iter().enumerate() {
        if f.is_none() && ok && !cx.was_cut(&map_span, &nodes[i]) {
            cx.error(
                map_span.clone(),
                format!("this ucast link has no address for node `{}`", nodes[i]),
                help,
            );
            ok = false;
        }
    }
    let [Some(a), Some(b)] = found else { return None };
    if !ok {
        return None;
    }
    if a == b {
        cx.error(
            map_span,
            format!("both nodes have address {a} on this link"),
            "each node needs its own address",
        );
        return None;
    }
    if a.is_ipv4() != b.is_ipv4() {
        cx.error(
            map_span,
            "one node's address is IPv4 and the other's IPv6",
            "use the same family on both ends of a link",
        );
        return None;
    }
    ok.then_some([a, b])
}

fn mcast(cx: &mut Ctx, raw: &RawLink, link_span: Range<usize>) -> Option<LinkKind> {
    let group = match &raw.group {
        None => {
            cx.missing(
                link_span,
                "group",
                "this mcast [[link]]",
                "add group = \"239.0.0.1\" (an IPv4 multicast address)",
            );
            None
        }
        Some(g) => match g.get_ref().parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_multicast() => Some(ip),
            _ => {
                cx.error(
                    g.span(),
                    format!("`{}` is not an IPv4 multicast address", g.get_ref()),
                    "use an address in 224.0.0.0/4; 239.0.0.0/8 is for local use",
                );
                None
            }
        },
    };
    let ttl = match &raw.ttl {
        None => Some(1),
        Some(t) if (1..=255).contains(t.get_ref()) => Some(*t.get_ref() as u8),
        Some(t) => {
            cx.error(
                t.span(),
                format!("ttl {} is out of range", t.get_ref()),
                "use 1 to 255; 1 keeps packets on the local segment",
            );
            None
        }
    };
    let loopback = raw.loop_.as_ref().map(|l| *l.get_ref()).unwrap_or(false);
    Some(LinkKind::Mcast {
        group: group?,
        ttl: ttl?,
        loopback,
    })
}

fn timing(cx: &mut Ctx, raw: S<RawTiming>) -> Option<Timing> {
    let (span, raw) = match raw {
        Some(t) => (t.span(), Some(t.into_inner())),
        None => (whole(cx.file), None),
    };
    let get =
        |cx: &mut Ctx, v: Option<&Spanned<toml::Value>>, key: &str| -> Result<Option<(Duration, Range<usize>)>, ()> {
            match v {
                None => Ok(None),
                Some(v) => match cx.duration(v, key) {
                    Some(d) if d.is_zero() => {
                        cx.error(v.span(), format!("{key} must be more than zero"), "");
                        Err(())
                    }
                    Some(d) => Ok(Some((d, v.span()))),
                    None => Err(()),
                },
            }
        };
    let r = raw.as_ref();
    let keepalive = get(cx, r.and_then(|r| r.keepalive.as_ref()), "keepalive");
    let deadtime = get(cx, r.and_then(|r| r.deadtime.as_ref()), "deadtime");
    let warntime = get(cx, r.and_then(|r| r.warntime.as_ref()), "warntime");
    let initdead = get(cx, r.and_then(|r| r.initdead.as_ref()), "initdead");
    let (Ok(keepalive), Ok(deadtime), Ok(warntime), Ok(initdead)) = (keepalive, deadtime, warntime, initdead) else {
        return None;
    };
    // A malformed key was cut in phase one; checking relations against a default would mislead.
    if ["keepalive", "deadtime", "warntime", "initdead"]
        .iter()
        .any(|k| cx.was_cut(&span, k))
    {
        return None;
    }
    let fmt = format_duration;
    let (ka, _) = keepalive.unwrap_or((Duration::from_secs(1), span.clone()));
    let (dt, dt_span) = deadtime.unwrap_or((Duration::from_secs(10), span.clone()));
    let mut ok = true;
    // Heartbeat's rule (config.c): deadtime must exceed two keepalives, or one lost packet kills the peer.
    if dt <= ka * 2 {
        cx.error(
            dt_span.clone(),
            format!("deadtime ({}) must be more than twice keepalive ({})", fmt(dt), fmt(ka)),
            format!(
                "raise deadtime above {} or lower keepalive below {}",
                fmt(ka * 2),
                fmt(dt / 2)
            ),
        );
        ok = false;
    }
    let (wt, wt_span) = warntime.unwrap_or((dt / 2, span.clone()));
    if ok && !(ka < wt && wt < dt) {
        cx.error(
            wt_span,
            format!(
                "warntime ({}) must lie between keepalive ({}) and deadtime ({})",
                fmt(wt),
                fmt(ka),
                fmt(dt)
            ),
            format!("set warntime to about half of deadtime, e.g. \"{}\"", fmt(dt / 2)),
        );
        ok = false;
    }
    let initdead_given = initdead.is_some();
    let (id, id_span) = initdead.unwrap_or((Timing::default_initdead(dt), span.clone()));
    if id < dt {
        cx.error(
            id_span,
            format!("initdead ({}) must be at least deadtime ({})", fmt(id), fmt(dt)),
            format!(
                "set initdead to \"{}\" or more: boot and network bring-up take longer than a keepalive gap",
                fmt(dt * 2)
            ),
        );
        ok = false;
    } else if id < Duration::from_secs(10) && initdead_given {
        cx.warning(
            id_span,
            format!("initdead ({}) is under 10s", fmt(id)),
            "after a reboot the peer may not be heard in time and this node would start the group alone; 2 × deadtime or 30s is safer",
        );
    }
    ok.then_some(Timing {
        keepalive: ka,
        warntime: wt,
        deadtime: dt,
        initdead: id,
    })
}

fn auth(cx: &mut Ctx, raw: S<RawAuth>, top: &Range<usize>) -> Option<Auth> {
    let Some(raw) = raw else {
        if !cx.was_cut(top, "auth") {
            cx.error(
                whole(cx.file),
                "there is no [auth] section: packets would not be authenticated",
                "add [auth] with authkeys = \"/etc/ha.d/authkeys\", or method = \"sha256\" and key = \"...\"",
            );
        }
        return None;
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let inline = raw.method.is_some() || raw.key.is_some() || raw.key_index.is_some();
    match (&raw.authkeys, inline) {
        (Some(path), true) => {
            cx.error(
                path.span(),
                "[auth] has both authkeys and an inline method/key",
                "keep one: authkeys = \"FILE\" (Heartbeat format) or method + key",
            );
            None
        }
        (Some(path), false) => {
            let p = resolve(&cx.file.path, path.get_ref());
            let mut sub = Diagnostics::default();
            let auth = authkeys::load(&p, &mut sub);
            if sub.has_errors() {
                let loc = cx.at(path.span());
                cx.diags.error(
                    loc,
                    format!("the authkeys file {} is not usable (see below)", p.display()),
                    None,
                );
            }
            cx.diags.extend(sub);
            auth
        }
        (None, false) => {
            cx.error(
                span,
                "[auth] names no key",
                "add authkeys = \"FILE\", or method = \"sha256\" and key = \"...\"",
            );
            None
        }
        (None, true) => inline_key(cx, raw, span),
    }
}

fn inline_key(cx: &mut Ctx, raw: RawAuth, span: Range<usize>) -> Option<Auth> {
    let method = match &raw.method {
        None => {
            cx.missing(
                span.clone(),
                "method",
                "[auth]",
                "add method = \"sha256\" (or sha1, md5, crc)",
            );
            None
        }
        Some(m) => match AuthMethod::parse(m.get_ref()) {
            Some(m) => Some(m),
            None => {
                let help = match closest(m.get_ref(), ["sha1", "sha256", "md5", "crc"]) {
                    Some(c) => format!("did you mean \"{c}\"?"),
                    None => "methods are sha1, sha256, md5 and crc".into(),
                };
                cx.error(m.span(), format!("unknown auth method `{}`", m.get_ref()), help);
                None
            }
        },
    }?;
    let index = match &raw.key_index {
        None => 1,
        Some(i) if (0..=MAX_INDEX).contains(i.get_ref()) => *i.get_ref() as u8,
        Some(i) => {
            cx.error(
                i.span(),
                format!("key_index {} is out of range", i.get_ref()),
                "use 0 to 15, as in authkeys",
            );
            return None;
        }
    };
    let secret = match (method, &raw.key) {
        (AuthMethod::Crc, Some(k)) => {
            cx.error(
                k.span(),
                "crc takes no key",
                "remove key, or choose method = \"sha256\"",
            );
            return None;
        }
        (AuthMethod::Crc, None) => Vec::new(),
        (_, Some(k)) if k.get_ref().is_empty() => {
            cx.error(
                k.span(),
                "the key is empty",
                "write a long random key, e.g. from `openssl rand -hex 32`",
            );
            return None;
        }
        (_, Some(k)) => {
            // An inline secret makes pairbeat.toml itself secret, as authkeys is.
            let mut sub = Diagnostics::default();
            authkeys::check_private(&cx.file.path, "pairbeat.toml (it holds an inline key)", &mut sub);
            if sub.has_errors() {
                cx.diags.extend(sub);
                return None;
            }
            k.get_ref().as_bytes().to_vec()
        }
        (_, None) => {
            cx.missing(span, "key", "[auth]", "add key = \"...\" (the same on both nodes)");
            return None;
        }
    };
    if method == AuthMethod::Crc {
        let s = raw.method.as_ref().map(|m| m.span()).unwrap_or(span);
        cx.warning(
            s,
            "crc is a checksum, not authentication: anyone on the link can forge keepalives",
            "use sha256 (or sha1 to talk to Heartbeat nodes)",
        );
    }
    let mut keys = BTreeMap::new();
    keys.insert(index, AuthKey { method, secret });
    Some(Auth {
        sign_index: index,
        keys,
        authkeys_file: None,
    })
}

/// A path in the config, relative paths taken from the config file's directory.
fn resolve(config: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn failover(cx: &mut Ctx, raw: S<RawFailover>, nodes: Option<&[String; 2]>) -> Option<Failover> {
    let raw = raw.map(Spanned::into_inner);
    let auto_failback = raw
        .as_ref()
        .and_then(|r| r.auto_failback.as_ref())
        .map(|b| *b.get_ref())
        .unwrap_or(false);
    let nodes = nodes?;
    let preferred = match raw.and_then(|r| r.preferred_node) {
        None => 0,
        Some(p) => match node_index(nodes, p.get_ref()) {
            Some(i) => i,
            None => {
                let help = match closest(p.get_ref(), nodes.iter().map(String::as_str)) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None => format!("write `{}` or `{}`", nodes[0], nodes[1]),
                };
                cx.error(
                    p.span(),
                    format!("preferred_node `{}` is not a node", p.get_ref()),
                    help,
                );
                return None;
            }
        },
    };
    Some(Failover {
        preferred,
        auto_failback,
    })
}

fn group(cx: &mut Ctx, raw: S<RawGroup>) -> Option<Group> {
    let Some(raw) = raw else {
        cx.warning(
            whole(cx.file),
            "there is no [group]: pairbeat will only watch membership",
            "add [group] and [[group.resource]] tables for what the active node runs",
        );
        return Some(Group {
            id: "group".into(),
            resources: Vec::new(),
        });
    };
    let raw = raw.into_inner();
    let id = match raw.id {
        None => Some("group".to_string()),
        Some(id) if valid_name(id.get_ref()) => Some(id.into_inner()),
        Some(id) => {
            cx.error(
                id.span(),
                format!("group id `{}` is not a plain name", id.get_ref()),
                NAME_HELP,
            );
            None
        }
    };
    let mut resources: Vec<Resource> = Vec::new();
    let mut ok = true;
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    for r in raw.resource.map(Spanned::into_inner).unwrap_or_default() {
        let span = r.span();
        let raw = r.into_inner();
        let id_span = raw.id.as_ref().map(|i| i.span()).unwrap_or(span.clone());
        let Some(res) = resource(cx, raw, span) else {
            ok = false;
            continue;
        };
        if let Some(line) = first_line.get(&res.id) {
            cx.error(
                id_span,
                format!("resource id `{}` is already used at line {line}", res.id),
                "give every [[group.resource]] its own id",
            );
            ok = false;
        } else {
            first_line.insert(res.id.clone(), cx.file.line_col(id_span.start).0);
        }
        resources.push(res);
    }
    if ok && resources.is_empty() {
        cx.warning(
            whole(cx.file),
            "the group has no resources: pairbeat will only watch membership",
            "add [[group.resource]] tables",
        );
    }
    if !ok {
        return None;
    }
    Some(Group { id: id?, resources })
}

fn resource(cx: &mut Ctx, raw: RawResource, span: Range<usize>) -> Option<Resource> {
    let mut ok = true;
    let id = resource_id(cx, &raw, &span);
    let agent = resource_agent(cx, &raw, &span);
    let params = resource_params(cx, raw.params.as_ref(), &mut ok);
    let args: Vec<String> = raw
        .args
        .clone()
        .map(|a| a.into_inner().into_iter().map(Spanned::into_inner).collect())
        .unwrap_or_default();
    let promotable = raw.promotable.as_ref().map(|p| *p.get_ref()).unwrap_or(false);
    if let Some(agent) = &agent {
        ok &= agent_class_fits(cx, agent, &raw, !params.is_empty(), !args.is_empty(), promotable, &span);
        ok &= linbit_drbd_fits(cx, agent, &raw, &params, promotable, &span);
        ok &= builtin_fits(cx, agent, &raw, &params, &span);
    }
    let migration_threshold = migration_threshold(cx, &raw, &mut ok);
    let failure_timeout = failure_timeout(cx, &raw, &mut ok);
    let ops = ops(cx, raw.op, promotable);
    if !ok {
        return None;
    }
    Some(Resource {
        id: id?,
        agent: agent?,
        params,
        args,
        promotable,
        migration_threshold,
        failure_timeout,
        ops: ops?,
    })
}

/// The resource's `id`, or `None` (reported) when it is missing or not a plain name.
fn resource_id(cx: &mut Ctx, raw: &RawResource, span: &Range<usize>) -> Option<String> {
    match &raw.id {
        None => {
            cx.missing(
                span.clone(),
                "id",
                "this [[group.resource]]",
                "add id = \"vip\" (a short unique name)",
            );
            None
        }
        Some(id) if valid_name(id.get_ref()) => Some(id.get_ref().clone()),
        Some(id) => {
            cx.error(
                id.span(),
                format!("resource id `{}` is not a plain name", id.get_ref()),
                NAME_HELP,
            );
            None
        }
    }
}

/// The resource's `agent`, or `None` (reported) when it is missing or not an agent.
fn resource_agent(cx: &mut Ctx, raw: &RawResource, span: &Range<usize>) -> Option<AgentSpec> {
    match &raw.agent {
        None => {
            cx.missing(
                span.clone(),
                "agent",
                "this [[group.resource]]",
                "add agent = \"ocf:heartbeat:IPaddr2\" (or lsb:NAME, heartbeat:NAME)",
            );
            None
        }
        Some(a) => match AgentSpec::parse(a.get_ref()) {
            Ok(spec) => Some(spec),
            Err(help) => {
                cx.error(a.span(), format!("`{}` is not an agent", a.get_ref()), help);
                None
            }
        },
    }
}

/// The valid `params` as text; clears `ok` for each one that is not.
fn resource_params(
    cx: &mut Ctx,
    raw: Option<&Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
    ok: &mut bool,
) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    for (k, v) in raw.map(Spanned::get_ref).into_iter().flatten() {
        if !valid_param(k.get_ref()) {
            cx.error(
                k.span(),
                format!("parameter name `{}` cannot be an environment variable", k.get_ref()),
                "use letters, digits and `_`, not starting with a digit",
            );
            *ok = false;
            continue;
        }
        let text = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                cx.error(
                    v.span(),
                    format!(
                        "parameter `{}` is a {}; agents take text",
                        k.get_ref(),
                        other.type_str()
                    ),
                    "write the value as a string",
                );
                *ok = false;
                continue;
            }
        };
        params.insert(k.get_ref().clone(), text);
    }
    params
}

/// A built-in agent's parameters (`builtin:vip`, `builtin:filesystem`), each mistake
/// at its line; unknown ones warned of (with a suggestion), as `config check` does
/// for OCF agents from their meta-data.
fn builtin_fits(
    cx: &mut Ctx,
    agent: &AgentSpec,
    raw: &RawResource,
    params: &BTreeMap<String, String>,
    span: &Range<usize>,
) -> bool {
    let AgentSpec::Builtin { name: builtin } = agent else {
        return true;
    };
    let (known, errors, warning) = match builtin.as_str() {
        "filesystem" => match crate::filesystem::parse(params) {
            Ok(fs) => (crate::filesystem::PARAMS, None, crate::filesystem::fsck_warning(&fs)),
            Err(e) => (crate::filesystem::PARAMS, Some(e), None),
        },
        _ => (crate::vip::PARAMS, crate::vip::parse(params).err(), None),
    };
    let at = |name: &str| {
        raw.params
            .as_ref()
            .and_then(|p| p.get_ref().iter().find(|(k, _)| k.get_ref() == name))
            .map(|(_, v)| v.span())
            .or_else(|| raw.params.as_ref().map(|p| p.span()))
            .unwrap_or(span.clone())
    };
    let refused: Vec<&str> = errors.iter().flatten().map(|e| e.param.as_str()).collect();
    for name in params
        .keys()
        .filter(|k| !known.contains(&k.as_str()) && !refused.contains(&k.as_str()))
    {
        let help = closest(name, known.iter().copied())
            .map(|c| format!("did you mean `{c}`?"))
            .unwrap_or_else(|| format!("{agent} takes {}", known.join(", ")));
        cx.warning(at(name), format!("{agent} has no parameter `{name}`"), help);
    }
    match errors {
        None => {
            if let Some(w) = warning {
                cx.warning(at(&w.param), w.message, w.help);
            }
            true
        }
        Some(errors) => {
            for e in errors {
                cx.error(at(&e.param), format!("{agent}: {}", e.message), e.help);
            }
            false
        }
    }
}

/// False (reported) when the agent's class cannot take the params, args or promotion given.
fn agent_class_fits(
    cx: &mut Ctx,
    agent: &AgentSpec,
    raw: &RawResource,
    has_params: bool,
    has_args: bool,
    promotable: bool,
    span: &Range<usize>,
) -> bool {
    let mut ok = true;
    let is_ocf = matches!(agent, AgentSpec::Ocf { .. });
    let named = is_ocf || matches!(agent, AgentSpec::Builtin { .. });
    if !named && has_params {
        cx.error(
            raw.params.as_ref().map(|p| p.span()).unwrap_or(span.clone()),
            format!("{agent} takes no named params"),
            match agent {
                AgentSpec::Heartbeat { .. } => "Heartbeat scripts take positional args = [\"...\"]",
                _ => "LSB init scripts take no parameters",
            },
        );
        ok = false;
    }
    if !matches!(agent, AgentSpec::Heartbeat { .. }) && has_args {
        let help = match agent {
            AgentSpec::Ocf { .. } => "OCF agents take named params = { name = \"value\" }",
            AgentSpec::Builtin { .. } => "it takes named params = { ip = \"...\", ... }",
            _ => "LSB init scripts take no arguments",
        };
        cx.error(
            raw.args.as_ref().map(|a| a.span()).unwrap_or(span.clone()),
            format!("{agent} takes no positional args"),
            help,
        );
        ok = false;
    }
    if promotable && !is_ocf {
        cx.error(
            raw.promotable.as_ref().map(|p| p.span()).unwrap_or(span.clone()),
            "only OCF agents can be promotable",
            "promote and demote are OCF actions; remove promotable",
        );
        ok = false;
    }
    ok
}

/// DRBD's own OCF agent (`ocf:linbit:drbd`, from drbd-utils) expects a promotable
/// clone with clone notifications; pairbeat runs it promotable and sends none, so
/// the agent must be told to do without (it otherwise fails every start with
/// OCF_ERR_CONFIGURED). False (reported) when the resource cannot work.
fn linbit_drbd_fits(
    cx: &mut Ctx,
    agent: &AgentSpec,
    raw: &RawResource,
    params: &BTreeMap<String, String>,
    promotable: bool,
    span: &Range<usize>,
) -> bool {
    if !matches!(agent, AgentSpec::Ocf { provider, kind } if provider == "linbit" && kind == "drbd") {
        return true;
    }
    let at = raw.params.as_ref().map(|p| p.span()).unwrap_or(span.clone());
    let mut ok = true;
    if !promotable {
        cx.error(
            raw.agent.as_ref().map(|a| a.span()).unwrap_or(span.clone()),
            "ocf:linbit:drbd runs only as a promotable resource",
            "add promotable = true (the node that runs the group promotes it to Primary)",
        );
        ok = false;
    }
    if !params.contains_key("drbd_resource") {
        cx.error(
            at.clone(),
            "ocf:linbit:drbd needs the DRBD resource it runs",
            "add params = { drbd_resource = \"r0\" } (a resource of /etc/drbd.conf)",
        );
        ok = false;
    }
    if !params
        .get("ignore_missing_notifications")
        .is_some_and(|v| matches!(v.as_str(), "true" | "yes" | "1" | "on"))
    {
        cx.error(
            at,
            "ocf:linbit:drbd refuses to start without clone notifications, which pairbeat does not send",
            "add ignore_missing_notifications = \"true\" to its params (pairbeat starts, promotes, demotes and monitors it and reads its promotion score; it sends no notify actions: see docs/operator-guide.md, \"Real DRBD\")",
        );
        ok = false;
    }
    ok
}

/// The resource's `migration_threshold`, if given; clears `ok` when it is below 1.
fn migration_threshold(cx: &mut Ctx, raw: &RawResource, ok: &mut bool) -> Option<u32> {
    match &raw.migration_threshold {
        None => None,
        Some(m) if *m.get_ref() >= 1 && *m.get_ref() <= u32::MAX as i64 => Some(*m.get_ref() as u32),
        Some(m) => {
            cx.error(
                m.span(),
                format!("migration_threshold {} must be at least 1", m.get_ref()),
                "leave it out to never move the group for a count of failures",
            );
            *ok = false;
            None
        }
    }
}

/// The resource's `failure_timeout`, if given; clears `ok` when it is not a duration.
fn failure_timeout(cx: &mut Ctx, raw: &RawResource, ok: &mut bool) -> Option<Duration> {
    let v = raw.failure_timeout.as_ref()?;
    let d = cx.duration(v, "failure_timeout");
    *ok &= d.is_some();
    d
}

pub(super) fn valid_param(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn ops(cx: &mut Ctx, raw: S<Vec<Spanned<RawOp>>>, promotable: bool) -> Option<Vec<Op>> {
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: BTreeSet<(OpName, Duration)> = BTreeSet::new();
    for op in raw.map(Spanned::into_inner).unwrap_or_default() {
        let span = op.span();
        let op = op.into_inner();
        let Some(name) = op_name(cx, &op, &span) else {
            ok = false;
            continue;
        };
        if matches!(name, OpName::Promote | OpName::Demote) && !promotable {
            cx.error(
                span.clone(),
                format!("a {} op on a resource that is not promotable", name.name()),
                "set promotable = true, or remove this op",
            );
            ok = false;
        }
        let interval = op_interval(cx, &op, name, &span, &mut ok);
        let timeout = op_timeout(cx, &op, &mut ok);
        let on_fail = op_on_fail(cx, &op, name, &mut ok);
        let check_level = op_check_level(cx, &op, &mut ok);
        if !seen.insert((name, interval)) {
            let what = if name == OpName::Monitor {
                format!("a second monitor op every {}", format_duration(interval))
            } else {
                format!("a second {} op", name.name())
            };
            cx.error(
                span,
                format!("{what} on this resource"),
                "keep one; monitors need different intervals",
            );
            ok = false;
        }
        out.push(Op {
            name,
            interval,
            timeout,
            on_fail,
            check_level,
        });
    }
    ok.then_some(out)
}

/// The op's `name`, or `None` (reported) when it is missing or not an op.
fn op_name(cx: &mut Ctx, op: &RawOp, span: &Range<usize>) -> Option<OpName> {
    match &op.name {
        None => {
            cx.missing(
                span.clone(),
                "name",
                "this op",
                format!("add name = one of {}", OpName::ALL.join(", ")),
            );
            None
        }
        Some(n) => match OpName::parse(n.get_ref()) {
            Some(name) => Some(name),
            None => {
                let help = match closest(n.get_ref(), OpName::ALL) {
                    Some(c) => format!("did you mean \"{c}\"?"),
                    None => format!("ops are {}", OpName::ALL.join(", ")),
                };
                cx.error(n.span(), format!("unknown op `{}`", n.get_ref()), help);
                None
            }
        },
    }
}

/// The op's `interval`: required and above zero for monitors, absent (zero) for others; clears `ok` otherwise.
fn op_interval(cx: &mut Ctx, op: &RawOp, name: OpName, span: &Range<usize>, ok: &mut bool) -> Duration {
    match &op.interval {
        None if name == OpName::Monitor => {
            cx.missing(
                span.clone(),
                "interval",
                "this monitor op",
                "add interval = \"10s\" (how often to check)",
            );
            *ok = false;
            Duration::ZERO
        }
        None => Duration::ZERO,
        Some(v) if name != OpName::Monitor => {
            cx.error(
                v.span(),
                format!("only monitor ops recur; a {} op has no interval", name.name()),
                "remove interval",
            );
            *ok = false;
            Duration::ZERO
        }
        Some(v) => match cx.duration(v, "interval") {
            Some(d) if d.is_zero() => {
                cx.error(
                    v.span(),
                    "a monitor interval must be more than zero",
                    "pairbeat probes every resource at start on its own; use e.g. \"10s\"",
                );
                *ok = false;
                d
            }
            Some(d) => d,
            None => {
                *ok = false;
                Duration::ZERO
            }
        },
    }
}

/// The op's `timeout`, if given; clears `ok` when it is zero or not a duration.
fn op_timeout(cx: &mut Ctx, op: &RawOp, ok: &mut bool) -> Option<Duration> {
    match &op.timeout {
        None => None,
        Some(v) => match cx.duration(v, "timeout") {
            Some(d) if d.is_zero() => {
                cx.error(
                    v.span(),
                    "a timeout must be more than zero",
                    "every operation needs a time limit, e.g. \"20s\"",
                );
                *ok = false;
                None
            }
            Some(d) => Some(d),
            None => {
                *ok = false;
                None
            }
        },
    }
}

/// The op's `on_fail`, or the default for its name; clears `ok` when it is unknown or cannot handle the op.
fn op_on_fail(cx: &mut Ctx, op: &RawOp, name: OpName, ok: &mut bool) -> OnFail {
    // A failed stop can never be "restarted" away: by default it blocks the group.
    let default_on_fail = if name == OpName::Stop {
        OnFail::Block
    } else {
        OnFail::Restart
    };
    match &op.on_fail {
        None => default_on_fail,
        Some(f) => match OnFail::parse(f.get_ref()) {
            Some(OnFail::Restart | OnFail::Standby) if name == OpName::Stop => {
                cx.error(
                    f.span(),
                    format!("on_fail = \"{}\" cannot handle a failed stop", f.get_ref()),
                    "a stop that failed leaves the resource in an unknown state: use \"block\" or \"fence\"",
                );
                *ok = false;
                default_on_fail
            }
            Some(x) => x,
            None => {
                cx.error(
                    f.span(),
                    format!("unknown on_fail `{}`", f.get_ref()),
                    format!("on_fail is one of {}", OnFail::ALL.join(", ")),
                );
                *ok = false;
                default_on_fail
            }
        },
    }
}

/// The op's `check_level` (0 when absent); clears `ok` when it is negative.
fn op_check_level(cx: &mut Ctx, op: &RawOp, ok: &mut bool) -> u32 {
    match &op.check_level {
        None => 0,
        Some(c) if (0..=u32::MAX as i64).contains(c.get_ref()) => *c.get_ref() as u32,
        Some(c) => {
            cx.error(
                c.span(),
                format!("check_level {} is negative", c.get_ref()),
                "OCF check levels are 0, 10 or 20",
            );
            *ok = false;
            0
        }
    }
}

fn daemon(cx: &mut Ctx, raw: S<RawDaemon>) -> Option<DaemonSettings> {
    let raw = raw.map(Spanned::into_inner);
    let r = raw.as_ref();
    let mut ok = true;
    let abs = |cx: &mut Ctx, v: Option<&Spanned<String>>, key: &str, default: &str| -> Option<PathBuf> {
        match v {
            None => Some(PathBuf::from(default)),
            Some(p) if Path::new(p.get_ref()).is_absolute() => Some(PathBuf::from(p.get_ref())),
            Some(p) => {
                cx.error(
                    p.span(),
                    format!("{key} `{}` is not an absolute path", p.get_ref()),
                    format!("write a path starting with `/`, e.g. \"{default}\""),
                );
                None
            }
        }
    };
    let socket = abs(cx, r.and_then(|r| r.socket.as_ref()), "socket", DEFAULT_SOCKET_PATH);
    // sun_path holds 108 bytes including the terminating NUL.
    if let (Some(s), Some(v)) = (&socket, r.and_then(|r| r.socket.as_ref())) {
        if s.as_os_str().len() > 107 {
            cx.error(
                v.span(),
                format!("socket path is {} bytes; unix sockets allow 107", s.as_os_str().len()),
                "choose a shorter path, e.g. under /run/pairbeat/",
            );
            ok = false;
        }
    }
    let state_dir = abs(cx, r.and_then(|r| r.state_dir.as_ref()), "state_dir", DEFAULT_STATE_DIR);
    let ocf_root = abs(cx, r.and_then(|r| r.ocf_root.as_ref()), "ocf_root", "/usr/lib/ocf");
    let socket_group = match r.and_then(|r| r.socket_group.as_ref()) {
        None => None,
        Some(g) => match nix::unistd::Group::from_name(g.get_ref()) {
            Ok(Some(_)) => Some(g.get_ref().clone()),
            _ => {
                cx.error(
                    g.span(),
                    format!("group `{}` does not exist on this host", g.get_ref()),
                    "create it (`groupadd`) or remove socket_group to allow root only",
                );
                ok = false;
                None
            }
        },
    };
    let log = match r.and_then(|r| r.log.as_ref()) {
        None => Some(LogTarget::Stderr),
        Some(l) => match l.get_ref().as_str() {
            "stderr" => Some(LogTarget::Stderr),
            "syslog" => Some(LogTarget::Syslog),
            p if Path::new(p).is_absolute() => Some(LogTarget::File(PathBuf::from(p))),
            p => {
                cx.error(
                    l.span(),
                    format!("log target `{p}` is neither stderr, syslog nor an absolute path"),
                    "write log = \"stderr\" (the journal under systemd), \"syslog\", or \"/var/log/pairbeat.log\"",
                );
                None
            }
        },
    };
    let levels = ["error", "warn", "info", "debug", "trace"];
    let log_level = match r.and_then(|r| r.log_level.as_ref()) {
        None => Some(log::LevelFilter::Info),
        Some(l) => match l.get_ref().parse::<log::LevelFilter>() {
            Ok(level) if levels.contains(&l.get_ref().as_str()) => Some(level),
            _ => {
                cx.error(
                    l.span(),
                    format!("unknown log_level `{}`", l.get_ref()),
                    format!("use one of {}", levels.join(", ")),
                );
                None
            }
        },
    };
    if !ok {
        return None;
    }
    Some(DaemonSettings {
        socket: socket?,
        socket_group,
        state_dir: state_dir?,
        log: log?,
        log_level: log_level?,
        realtime: r
            .and_then(|r| r.realtime.as_ref())
            .map(|b| *b.get_ref())
            .unwrap_or(true),
        ocf_root: ocf_root?,
    })
}
