//! Text view of a [`Status`], laid out like Pacemaker's `crm_mon -1` (reference.md
//! §5.1) so operators read it at a glance: section headers at column 0, items as
//! `  * `, one blank line between sections, empty sections left out.

use std::fmt::Write as _;

use super::status::{Attention, LinkState, NodeState, ResourceState, ResourceStatus, Status};

/// Which optional sections to show (crm_mon's `-A` and `-f`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// `Node Attributes:` — each node's mode and heartbeat links.
    pub attributes: bool,
    /// `Migration Summary:` — fail counts against migration thresholds.
    pub failcounts: bool,
}

/// Time zone for dates: local, as crm_mon prints them; UTC for reproducible output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Local,
    Utc,
}

/// `ctime()`-style date without the newline: "Sat Nov 21 12:45:14 2026".
pub fn ctime(secs: u64, zone: Zone) -> String {
    let t = secs as libc::time_t;
    // SAFETY: tm is plain data; the _r variants write only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe {
        match zone {
            Zone::Local => !libc::localtime_r(&t, &mut tm).is_null(),
            Zone::Utc => !libc::gmtime_r(&t, &mut tm).is_null(),
        }
    };
    if !ok {
        return format!("@{secs}");
    }
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[tm.tm_wday.clamp(0, 6) as usize],
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

/// The status as text; `now` is the "Last updated" time.
pub fn text(s: &Status, opts: TextOptions, now: u64, zone: Zone) -> String {
    let mut out = String::new();
    section(&mut out, "Cluster Summary", cluster_summary(s, now, zone));
    section(&mut out, "Node List", node_list(s));
    section(&mut out, "Full List of Resources", resource_list(s));
    if opts.attributes {
        section(&mut out, "Node Attributes", node_attributes(s));
    }
    if opts.failcounts {
        section(&mut out, "Migration Summary", migration_summary(s, zone));
    }
    section(&mut out, "Replicated Disks", replica_lines(s));
    section(&mut out, "Failed Resource Actions", failed_actions(s, zone));
    let notes = s.attention.iter().map(|a| attention(s, a, zone)).collect();
    section(&mut out, "Attention", notes);
    out
}

/// The "Replicated Disks" items: each replica's DRBD-style line, or why it is unknown.
fn replica_lines(s: &Status) -> Vec<String> {
    s.replicas
        .iter()
        .map(|r| match (&r.status, &r.unreachable) {
            (Some(st), _) => format!("  * {}", st.line()),
            (None, Some(why)) => format!("  * {}: unknown (its daemon does not answer: {why})", r.name),
            (None, None) => format!("  * {}: unknown (not asked yet)", r.name),
        })
        .collect()
}

/// Appends one titled section to `out`, or nothing when it has no items.
fn section(out: &mut String, title: &str, items: Vec<String>) {
    if items.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{title}:");
    for i in items {
        let _ = writeln!(out, "{i}");
    }
}

/// The "Cluster Summary" items: stack, owner, times, counts and protection.
fn cluster_summary(s: &Status, now: u64, zone: Zone) -> Vec<String> {
    let blocked = s
        .group
        .resources
        .iter()
        .filter(|r| r.state == ResourceState::Blocked)
        .count();
    let mut summary = vec![
        format!("  * Stack: {}", s.stack),
        format!("  * Cluster: {} (this node: {})", s.cluster, s.local_node),
        match &s.group.owner {
            Some(o) => format!("  * Current owner: {o} (group {})", s.group.id),
            None => format!("  * Current owner: NONE (group {} runs nowhere)", s.group.id),
        },
        format!("  * Last updated: {}", ctime(now, zone)),
    ];
    if let Some(c) = &s.last_change {
        summary.push(format!("  * Last change:  {} ({})", ctime(c.at, zone), c.what));
    }
    summary.push(format!("  * {} nodes configured", s.nodes.len()));
    summary.push(protection_line(s));
    let mut count = format!("  * {} resource instances configured", s.group.resources.len());
    if blocked > 0 {
        let _ = write!(count, " ({blocked} BLOCKED from further action due to failure)");
    }
    summary.push(count);
    summary
}

/// The "Node List" items: the nodes, then the links that are not up.
fn node_list(s: &Status) -> Vec<String> {
    let mut nodes = node_states(s);
    nodes.extend(link_warnings(s));
    nodes
}

/// Special node states alone first, then the collapsed Online/OFFLINE lists.
fn node_states(s: &Status) -> Vec<String> {
    let mut nodes = Vec::new();
    let name_of = |n: &super::status::NodeStatus| n.name.clone();
    for n in s
        .nodes
        .iter()
        .filter(|n| matches!(n.state, NodeState::Standby | NodeState::Unknown))
    {
        let state = match n.state {
            NodeState::Standby if s.group.owner.as_deref() == Some(n.name.as_str()) => {
                "standby (with active resources)"
            }
            NodeState::Standby => "standby",
            _ => "pending (not heard yet)",
        };
        nodes.push(format!("  * Node {}: {state}", n.name));
    }
    let online: Vec<String> = s
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Online)
        .map(name_of)
        .collect();
    let offline: Vec<String> = s
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Offline)
        .map(name_of)
        .collect();
    if !online.is_empty() {
        nodes.push(format!("  * Online: [ {} ]", online.join(" ")));
    }
    if !offline.is_empty() {
        nodes.push(format!("  * OFFLINE: [ {} ]", offline.join(" ")));
    }
    nodes
}

/// One line per dead or late heartbeat link.
fn link_warnings(s: &Status) -> Vec<String> {
    // A link down while the peer is up is the warning that matters before a failover.
    s.links
        .iter()
        .filter(|l| matches!(l.state, LinkState::Dead | LinkState::Late))
        .map(|l| {
            let state = if l.state == LinkState::Dead { "DEAD" } else { "late" };
            format!(
                "  * Link {} ({} on {}) to {}: {state}",
                l.name, l.kind, l.interface, l.peer
            )
        })
        .collect()
}

/// The "Full List of Resources" items: the group header and one line per resource.
fn resource_list(s: &Status) -> Vec<String> {
    if s.group.resources.is_empty() {
        return vec!["  * No resources".to_string()];
    }
    let mut rscs = Vec::new();
    let mut header = format!("  * Resource Group: {}:", s.group.id);
    if s.group.blocked {
        header.push_str(" (blocked)");
    }
    rscs.push(header);
    for r in &s.group.resources {
        let mut line = format!("    * {}\t({}):\t {}", r.id, r.agent, resource_state(r).trim_end());
        // The replica it runs, as its daemon last said: `… Started alpha — UpToDate/UpToDate Connected`.
        let replica = r
            .replica
            .as_ref()
            .and_then(|n| s.replicas.iter().find(|v| &v.name == n));
        if let Some(st) = replica.and_then(|v| v.status.as_ref()) {
            let _ = write!(line, " — {}", st.disk_words());
        }
        rscs.push(line);
    }
    rscs
}

/// A resource's state as crm_mon words it, with the node it is on.
fn resource_state(r: &ResourceStatus) -> String {
    let on = r.node.as_deref().unwrap_or("");
    match r.state {
        ResourceState::Unknown => "Unknown".to_string(),
        ResourceState::Stopped => "Stopped".to_string(),
        ResourceState::Starting => format!("Starting {on}"),
        ResourceState::Started => format!("Started {on}"),
        ResourceState::Promoted => format!("Promoted {on}"),
        ResourceState::Stopping => format!("Stopping {on}"),
        ResourceState::Failed => format!("FAILED {on}"),
        ResourceState::Blocked => format!("FAILED {on} (blocked)"),
    }
}

/// The "Node Attributes" items: a header per node and its attributes.
fn node_attributes(s: &Status) -> Vec<String> {
    let mut attrs = Vec::new();
    for n in &s.nodes {
        attrs.push(format!("  * Node: {}:", n.name));
        if n.local {
            attrs.extend(local_attributes(s));
        } else {
            attrs.extend(peer_attributes(s));
        }
    }
    attrs
}

/// The local node's attributes: daemon pid, ownership epoch and tie-break targets.
fn local_attributes(s: &Status) -> Vec<String> {
    let mut attrs = vec![
        attr("pairbeat-pid", &s.daemon.pid.to_string()),
        attr("ownership-epoch", &s.protection.epoch.to_string()),
    ];
    if let Some(t) = &s.protection.tiebreak {
        for target in &t.targets {
            let state = if target.reachable { "reachable" } else { "UNREACHABLE" };
            attrs.push(attr(&format!("tiebreak-{}", target.target), state));
        }
    }
    for a in &s.attributes {
        attrs.push(attr(&a.name, &a.value));
    }
    attrs
}

/// The peer's attributes: each link's state and the packets heard from it.
fn peer_attributes(s: &Status) -> Vec<String> {
    let mut attrs = Vec::new();
    for l in &s.links {
        let state = match l.state {
            LinkState::Unknown => "unknown",
            LinkState::Up => "up",
            LinkState::Late => "late",
            LinkState::Dead => "dead",
        };
        attrs.push(attr(&format!("link-{}", l.name), state));
    }
    let p = &s.packets;
    attrs.push(attr("packets-accepted", &p.accepted.to_string()));
    let dropped = p.forged + p.unknown_key + p.replayed + p.malformed + p.truncated + p.oversized + p.unknown_node;
    attrs.push(attr("packets-dropped", &dropped.to_string()));
    attrs
}

/// The "Migration Summary" items: fail counts of the resources that failed, none if none did.
fn migration_summary(s: &Status, zone: Zone) -> Vec<String> {
    let failed: Vec<_> = s.group.resources.iter().filter(|r| r.fail_count > 0).collect();
    if failed.is_empty() {
        return Vec::new();
    }
    let mut items = vec![format!("  * Node: {}:", s.local_node)];
    for r in failed {
        let threshold = r.migration_threshold.map_or("none".to_string(), |t| t.to_string());
        let mut line = format!(
            "    * {}: migration-threshold={threshold} fail-count={}",
            r.id, r.fail_count
        );
        if let Some(f) = &r.last_failure {
            let _ = write!(line, " last-failure='{}'", ctime(f.at, zone));
        }
        items.push(line);
    }
    items
}

/// The "Failed Resource Actions" items: each resource's last failure.
fn failed_actions(s: &Status, zone: Zone) -> Vec<String> {
    s.group
        .resources
        .iter()
        .filter_map(|r| {
            let f = r.last_failure.as_ref()?;
            let mut line = format!(
                "  * {} {} on {} returned '{}' at {}",
                r.id,
                f.action,
                s.local_node,
                f.outcome,
                ctime(f.at, zone)
            );
            if let Some(reason) = &f.reason {
                let _ = write!(line, ": '{reason}'");
            }
            Some(line)
        })
        .collect()
}

/// One "Attention" line.
fn attention(s: &Status, a: &Attention, zone: Zone) -> String {
    match a {
        Attention::GroupBlocked => format!(
            "  * Group {} is BLOCKED: a stop failed. Nothing more is done with it until `pairbeat cleanup`, and it will not start on the peer unless {} is fenced.",
            s.group.id, s.local_node
        ),
        Attention::GroupBanned { reason } => format!(
            "  * Group {} may not run on {}: {reason} (`pairbeat cleanup` clears this).",
            s.group.id, s.local_node
        ),
        Attention::AwaitingOperator => format!(
            "  * SPLIT BRAIN (policy stop-both): the group is stopped on both nodes until `pairbeat resolve --keep {}` (or the other node) names whose data is kept.",
            s.local_node
        ),
        Attention::SplitBrain { id } => match s.split_brains.iter().find(|r| r.id == *id) {
            Some(r) => {
                let lost = r
                    .peer_lost_at
                    .map(|t| format!("lost the peer {}, ", ctime(t, zone)))
                    .unwrap_or_default();
                let ended = r
                    .ended_at
                    .map(|t| format!(", ended {}", ctime(t, zone)))
                    .unwrap_or_else(|| ", in progress".to_string());
                format!(
                    "  * SPLIT BRAIN #{}: {lost}both ran the group, found {}{ended}: {} (`pairbeat acknowledge` once the data is checked)",
                    r.id,
                    ctime(r.detected_at, zone),
                    r.outcome
                )
            }
            None => format!("  * SPLIT BRAIN #{id} (`pairbeat acknowledge` once the data is checked)"),
        },
        Attention::FenceDeviceDown { detail } => format!(
            "  * Fencing device {} does not answer its monitor ({detail}): a takeover that needs fencing would fail.",
            s.protection.fencing.as_ref().map_or("?", |f| f.agent.as_str())
        ),
        Attention::FencingPeer { detail, .. } => format!(
            "  * {}",
            detail.as_deref().unwrap_or("fencing the peer is in progress")
        ),
        Attention::Decision { .. } => format!("  * Decision: {}", s.decision.as_deref().unwrap_or("")),
        Attention::Replica { name, detail, .. } => format!("  * Replica {name}: {detail}"),
    }
}

/// One summary line: the split-brain policy and what prevents a split brain.
fn protection_line(s: &Status) -> String {
    let p = &s.protection;
    let mut line = format!("  * Split-brain policy: {}", p.split_brain_policy);
    match &p.tiebreak {
        Some(t) => {
            let _ = write!(
                line,
                "; tie-break: {} of {} target(s) reachable",
                t.reachable,
                t.targets.len()
            );
        }
        None => line.push_str("; tie-break: none"),
    }
    match &p.fencing {
        Some(f) => {
            let state = match f.device_ok {
                Some(true) => "ok",
                Some(false) => "NOT ANSWERING",
                None => "not checked yet",
            };
            let _ = write!(
                line,
                "; fencing: {} ({state})",
                f.agent.rsplit('/').next().unwrap_or(&f.agent)
            );
        }
        None => line.push_str("; fencing: none"),
    }
    if let Some(g) = &p.promotion_gate {
        let score = |s: Option<u32>| s.map_or("none".to_string(), |n| n.to_string());
        let _ = write!(
            line,
            "; promotion gate: {} (score {}, peer {})",
            match g.state.as_str() {
                "eligible" => "eligible",
                "needs_fencing" => "Consistent, needs the peer fenced",
                _ => "NOT ELIGIBLE",
            },
            score(g.score),
            score(g.peer_score)
        );
    }
    line
}

fn attr(name: &str, value: &str) -> String {
    format!("    * {name:<32}\t: {value:<10}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_matches_the_c_library_layout() {
        assert_eq!(ctime(1_795_264_835, Zone::Utc), "Sat Nov 21 12:40:35 2026");
        assert_eq!(ctime(0, Zone::Utc), "Thu Jan  1 00:00:00 1970");
    }
}
