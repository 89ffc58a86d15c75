//! Text view of a [`Status`], laid out like `crm_mon -1` so Pacemaker users read it at a glance.

use std::fmt::Write as _;

use super::status::{LinkState, NodeState, ResourceState, Status};

pub fn text(s: &Status) -> String {
    let mut out = String::new();
    let owner = s.group.owner.as_deref().unwrap_or("unknown");
    let _ = writeln!(out, "Cluster Summary:");
    let _ = writeln!(out, "  * Stack: {}", s.stack);
    let _ = writeln!(out, "  * Cluster: {}", s.cluster);
    let _ = writeln!(out, "  * Current owner of group {}: {owner}", s.group.id);
    let _ = writeln!(out, "  * Local node: {} (pairbeatd pid {})", s.local_node, s.daemon.pid);
    let _ = writeln!(out, "  * {} nodes configured", s.nodes.len());
    let _ = writeln!(out, "  * {} resource instances configured", s.group.resources.len());
    let _ = writeln!(out);
    let _ = writeln!(out, "Node List:");
    for n in &s.nodes {
        let state = match n.state {
            NodeState::Unknown => "UNKNOWN",
            NodeState::Online => "online",
            NodeState::Offline => "OFFLINE",
            NodeState::Standby => "standby",
        };
        let _ = writeln!(out, "  * Node {}: {state}", n.name);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Links:");
    for l in &s.links {
        let state = match l.state {
            LinkState::Unknown => "unknown",
            LinkState::Up => "up",
            LinkState::Late => "late",
            LinkState::Dead => "DEAD",
        };
        let _ = writeln!(
            out,
            "  * {} ({} on {}, port {}) to {}: {state}",
            l.name, l.kind, l.interface, l.port, l.peer
        );
    }
    let p = &s.packets;
    let _ = writeln!(
        out,
        "  * Packets from {}: {} accepted, {} duplicates, {} lost",
        s.nodes
            .iter()
            .find(|n| !n.local)
            .map(|n| n.name.as_str())
            .unwrap_or("peer"),
        p.accepted,
        p.duplicates,
        p.lost
    );
    let dropped: Vec<String> = [
        ("forged", p.forged),
        ("unknown key", p.unknown_key),
        ("replayed", p.replayed),
        ("malformed", p.malformed),
        ("truncated", p.truncated),
        ("oversized", p.oversized),
        ("from unknown nodes", p.unknown_node),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{n} {what}"))
    .collect();
    if !dropped.is_empty() {
        let _ = writeln!(out, "  * Dropped: {}", dropped.join(", "));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Full List of Resources:");
    if s.group.resources.is_empty() {
        let _ = writeln!(out, "  * No resources");
    } else {
        let _ = writeln!(out, "  * Resource Group: {}:", s.group.id);
        for r in &s.group.resources {
            let on = r.node.as_deref().unwrap_or("");
            let state = match r.state {
                ResourceState::Unknown => "Unknown".to_string(),
                ResourceState::Stopped => "Stopped".to_string(),
                ResourceState::Starting => format!("Starting {on}"),
                ResourceState::Started => format!("Started {on}"),
                ResourceState::Promoted => format!("Promoted {on}"),
                ResourceState::Stopping => format!("Stopping {on}"),
                ResourceState::Failed => format!("FAILED {on}"),
                ResourceState::Blocked => format!("FAILED {on} (blocked)"),
            };
            let _ = writeln!(out, "    * {}\t({}):\t {}", r.id, r.agent, state.trim_end());
        }
    }
    if s.group.blocked {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Group {} is BLOCKED: a stop failed. Nothing more is done with it until `pairbeat cleanup`, and it will not start on the peer unless this node is fenced.",
            s.group.id
        );
    }
    if let Some(why) = &s.group.banned {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Group {} may not run on {}: {why} (`pairbeat cleanup` clears this).",
            s.group.id, s.local_node
        );
    }
    let failed: Vec<_> = s
        .group
        .resources
        .iter()
        .filter_map(|r| r.last_failure.as_ref().map(|f| (r, f)))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Failed Resource Actions:");
        for (r, f) in failed {
            let when = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(f.at));
            let _ = write!(
                out,
                "  * {} {} on {}: {} (fail count {}, at {when})",
                r.id, f.action, s.local_node, f.outcome, r.fail_count
            );
            match &f.reason {
                Some(reason) => {
                    let _ = writeln!(out, ": '{reason}'");
                }
                None => {
                    let _ = writeln!(out);
                }
            }
        }
    }
    out
}
