//! Validation of the split-brain sections: `[split_brain]` (the heal policy),
//! `[tiebreak]` (ping targets) and `[fence]` (a fencing device in the fence-agents
//! calling convention). Each returns `Some(None)` when the section is absent: both
//! protections are optional, and status says which one decides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::diag::closest;
use super::raw::*;
use super::validate::{node_index, valid_param, Ctx};
use super::{format_duration, Fence, PingTarget, Tiebreak, Timing};
use crate::model::SplitBrainPolicy;

pub(super) fn split_brain(cx: &mut Ctx, raw: S<RawSplitBrain>) -> Option<SplitBrainPolicy> {
    let Some(p) = raw.and_then(|r| r.into_inner().policy) else {
        return Some(SplitBrainPolicy::KeepPreferred);
    };
    match SplitBrainPolicy::parse(p.get_ref()) {
        Some(policy) => Some(policy),
        None => {
            let names = SplitBrainPolicy::ALL.map(|p| p.name());
            let help = match closest(p.get_ref(), names.iter().copied()) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("use one of {}", names.join(", ")),
            };
            cx.error(p.span(), format!("unknown split-brain policy `{}`", p.get_ref()), help);
            None
        }
    }
}

/// A positive duration, or the default when absent; `Err` after reporting.
pub(super) fn positive(
    cx: &mut Ctx,
    v: Option<&Spanned<toml::Value>>,
    key: &str,
    default: Duration,
) -> Result<Duration, ()> {
    match v {
        None => Ok(default),
        Some(v) => match cx.duration(v, key) {
            Some(d) if d.is_zero() => {
                cx.error(v.span(), format!("{key} must be more than zero"), "");
                Err(())
            }
            Some(d) => Ok(d),
            None => Err(()),
        },
    }
}

pub(super) fn tiebreak(cx: &mut Ctx, raw: S<RawTiebreak>, timing: Option<&Timing>) -> Option<Option<Tiebreak>> {
    let Some(raw) = raw else { return Some(None) };
    let span = raw.span();
    let raw = raw.into_inner();
    let mut ok = true;
    let mut targets = Vec::new();
    match &raw.targets {
        None => {
            cx.missing(
                span.clone(),
                "targets",
                "[tiebreak]",
                "add targets = [\"icmp:192.0.2.1\"], e.g. the default gateway, or remove [tiebreak]",
            );
            ok = false;
        }
        Some(list) if list.get_ref().is_empty() => {
            cx.error(
                list.span(),
                "[tiebreak] targets is empty",
                "name at least one target both nodes should reach, e.g. \"icmp:192.0.2.1\" (the gateway)",
            );
            ok = false;
        }
        Some(list) => {
            for t in list.get_ref() {
                match PingTarget::parse(t.get_ref()) {
                    Ok(p) if targets.contains(&p) => {
                        cx.error(
                            t.span(),
                            format!("target `{}` is listed twice", t.get_ref()),
                            "remove one",
                        );
                        ok = false;
                    }
                    Ok(p) => targets.push(p),
                    Err(e) => {
                        cx.error(
                            t.span(),
                            format!("bad tiebreak target: {e}"),
                            "e.g. \"icmp:192.0.2.1\", \"tcp:192.0.2.1:22\", \"udp:192.0.2.53:53\"",
                        );
                        ok = false;
                    }
                }
            }
        }
    }
    let timing = timing?;
    let interval = positive(cx, raw.interval.as_ref(), "interval", timing.keepalive);
    let timeout = positive(cx, raw.timeout.as_ref(), "timeout", timing.warntime);
    let (Ok(interval), Ok(timeout)) = (interval, timeout) else {
        return None;
    };
    let fmt = format_duration;
    // A target probed every `interval` answers at most that long apart: with a timeout
    // no longer than that, a healthy target would flap.
    if timeout <= interval {
        let at = raw.timeout.as_ref().map(|v| v.span()).unwrap_or(span.clone());
        cx.error(
            at,
            format!(
                "tiebreak timeout ({}) must be longer than its interval ({})",
                fmt(timeout),
                fmt(interval)
            ),
            format!("set timeout to at least \"{}\"", fmt(interval * 2)),
        );
        ok = false;
    } else if timeout >= timing.deadtime {
        // The holder must learn it is cut off before the peer declares it dead, or its
        // self-fence comes after the peer's takeover.
        let at = raw.timeout.as_ref().map(|v| v.span()).unwrap_or(span.clone());
        cx.warning(
            at,
            format!("tiebreak timeout ({}) is not below deadtime ({})", fmt(timeout), fmt(timing.deadtime)),
            format!(
                "an isolated node would stop the group only after the peer took it over; use a timeout of about warntime (\"{}\")",
                fmt(timing.warntime)
            ),
        );
    }
    ok.then_some(Some(Tiebreak {
        targets,
        interval,
        timeout,
    }))
}

/// Agent params as text, by name; `Err` after reporting.
fn params(
    cx: &mut Ctx,
    raw: Option<&Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
) -> Result<BTreeMap<String, String>, ()> {
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in raw.map(|p| p.get_ref().iter()).into_iter().flatten() {
        if !valid_param(k.get_ref()) {
            cx.error(
                k.span(),
                format!("fence parameter name `{}` is not a plain word", k.get_ref()),
                "use letters, digits and `_`, as fence agents name them (ipaddr, login, passwd, plug…)",
            );
            ok = false;
            continue;
        }
        if k.get_ref() == "action" {
            cx.error(
                k.span(),
                "`action` is set by pairbeat, not in params",
                "use `action = \"off\"` or \"reboot\" in [fence] itself",
            );
            ok = false;
            continue;
        }
        let text = match v.get_ref() {
            toml::Value::String(s) if s.contains('\n') => {
                cx.error(
                    v.span(),
                    format!("fence parameter `{}` contains a newline", k.get_ref()),
                    "fence agents read one key=value per line: remove the newline",
                );
                ok = false;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                cx.error(
                    v.span(),
                    format!(
                        "fence parameter `{}` is a {}; fence agents take text",
                        k.get_ref(),
                        other.type_str()
                    ),
                    "write the value as a string",
                );
                ok = false;
                continue;
            }
        };
        out.insert(k.get_ref().clone(), text);
    }
    ok.then_some(out).ok_or(())
}

pub(super) fn fence(cx: &mut Ctx, raw: S<RawFence>, nodes: Option<&[String; 2]>) -> Option<Option<Fence>> {
    let Some(raw) = raw else { return Some(None) };
    let span = raw.span();
    let raw = raw.into_inner();
    let mut ok = true;
    let agent = match &raw.agent {
        None => {
            cx.missing(
                span.clone(),
                "agent",
                "[fence]",
                "add agent = \"fence_ipmilan\" (a fence-agents name, looked up in /usr/sbin) or an absolute path",
            );
            None
        }
        Some(a) => {
            let p = Path::new(a.get_ref());
            if p.is_absolute() {
                Some(p.to_path_buf())
            } else if a.get_ref().contains('/') || a.get_ref().is_empty() {
                cx.error(
                    a.span(),
                    format!("fence agent `{}` is neither a name nor an absolute path", a.get_ref()),
                    "write e.g. \"fence_ipmilan\" or \"/usr/local/sbin/my-fence\"",
                );
                None
            } else {
                Some(PathBuf::from("/usr/sbin").join(p))
            }
        }
    };
    let action = match raw.action.as_ref().map(|a| a.get_ref().as_str()) {
        None => Some("off".to_string()),
        Some(a @ ("off" | "reboot")) => Some(a.to_string()),
        Some(other) => {
            let at = raw.action.as_ref().map(|a| a.span()).unwrap_or(span.clone());
            cx.error(
                at,
                format!("fence action `{other}` is not off or reboot"),
                "use \"off\" (the node stays down until someone looks) or \"reboot\"",
            );
            None
        }
    };
    let timeout = positive(cx, raw.timeout.as_ref(), "timeout", Duration::from_secs(60));
    let retry = positive(cx, raw.retry.as_ref(), "retry", Duration::from_secs(10));
    let monitor = positive(
        cx,
        raw.monitor_interval.as_ref(),
        "monitor_interval",
        Duration::from_secs(60),
    );
    let priority_delay = match &raw.priority_delay {
        None => Some(Duration::ZERO),
        Some(d) => cx.duration(d, "priority_delay"),
    };
    let common = params(cx, raw.params.as_ref());
    let nodes = nodes?;
    let mut per_node: [BTreeMap<String, String>; 2] = Default::default();
    let mut delay = [Duration::ZERO; 2];
    for (name, n) in raw.node.map(Spanned::into_inner).into_iter().flatten() {
        let Some(i) = node_index(nodes, name.get_ref()) else {
            let help = match closest(name.get_ref(), nodes.iter().map(String::as_str)) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("write [fence.node.{}] or [fence.node.{}]", nodes[0], nodes[1]),
            };
            cx.error(
                name.span(),
                format!("[fence.node.{}] is not a node", name.get_ref()),
                help,
            );
            ok = false;
            continue;
        };
        let n = n.into_inner();
        match params(cx, n.params.as_ref()) {
            Ok(p) => per_node[i] = p,
            Err(()) => ok = false,
        }
        if let Some(d) = &n.delay {
            match cx.duration(d, "delay") {
                Some(d) => delay[i] = d,
                None => ok = false,
            }
        }
    }
    let (Ok(timeout), Ok(retry), Ok(monitor_interval), Ok(common)) = (timeout, retry, monitor, common) else {
        return None;
    };
    if delay[0] > Duration::ZERO && delay[1] > Duration::ZERO {
        cx.warning(span.clone(), "both nodes have a fence delay", "a delay on one node only (the one that should survive a fence race) is what keeps the two from fencing each other");
    }
    let params = [0, 1].map(|i| {
        let mut p = common.clone();
        p.extend(per_node[i].clone());
        p
    });
    for (i, p) in params.iter().enumerate() {
        if !p.contains_key("plug") && !p.contains_key("port") && !p.contains_key("ipaddr") {
            cx.warning(
                span.clone(),
                format!("nothing in [fence] names node {} (no plug, port or ipaddr)", nodes[i]),
                format!(
                    "add [fence.node.{}] params = {{ plug = \"{}\" }}, or whatever the device uses to address it",
                    nodes[i], nodes[i]
                ),
            );
        }
    }
    if !ok {
        return None;
    }
    let priority_delay = priority_delay?;
    Some(Some(Fence {
        agent: agent?,
        action: action?,
        timeout,
        retry,
        monitor_interval,
        params,
        delay,
        priority_delay,
    }))
}
