//! The advert's wire form: pairbeat-only fields of the status packet, `pb_*`. A
//! Heartbeat peer ignores fields it does not know, so a mixed pair still talks.
//!
//! | field | meaning (`Advert` field) |
//! |---|---|
//! | `pb_hold` | `holding`: stopped, leftovers, running, blocked |
//! | `pb_mode` | `mode`: online, standby, leaving, banned |
//! | `pb_want` | `takeover`: `takeover` when the operator asked for it |
//! | `pb_settled` | `settled` |
//! | `pb_reach` | `reach`: tie-break targets reached (empty without a tie-break) |
//! | `pb_epoch` | `epoch`: the ownership epoch |
//! | `pb_heal` | `heal`: keep, yield, stop (split-brain verdict, once it may be acted on) |
//! | `pb_verdict` | `verdict`: keep, yield, stop (the verdict chosen, said at once) |
//! | `pb_sbhold` | `awaiting_operator`: a stop-both split brain waits for the operator |
//! | `pb_resolve` | `resolve_sender_keeps`: sender / receiver keeps the group |
//! | `pb_claim`, `pb_claimseen` | `claim`, `claim_seen`: the claim handshake |
//! | `pb_data` | `data`: the promotion gate, the replicas' lowest score (0: not eligible; empty: no replica) |
//! | `pb_datakeep` | `data_choice`: `KEY:sender` or `KEY:receiver` (KEY in 16 hex digits), the keeper recorded for the latest data split brain |
//! | `pb_ran` | how long the group has run on the sender, in ms (not in `Advert`) |

use crate::model::{Advert, DataChoice, Holding, Mode, Verdict};

/// Encoded as pairbeat-only fields of the status packet, `pb_*` (a Heartbeat
/// peer ignores fields it does not know).
pub fn fields(advert: &Advert) -> Vec<(&'static str, String)> {
    let hold = match advert.holding {
        Holding::Stopped => "stopped",
        Holding::Leftovers => "leftovers",
        Holding::Running => "running",
        Holding::Blocked => "blocked",
    };
    let mode = match advert.mode {
        Mode::Online => "online",
        Mode::Standby => "standby",
        Mode::Leaving => "leaving",
        Mode::Banned => "banned",
    };
    let resolve = match advert.resolve_sender_keeps {
        None => "",
        Some(true) => "sender",
        Some(false) => "receiver",
    };
    vec![
        ("pb_hold", hold.to_string()),
        ("pb_mode", mode.to_string()),
        ("pb_want", if advert.takeover { "takeover" } else { "" }.to_string()),
        ("pb_settled", if advert.settled { "1" } else { "0" }.to_string()),
        ("pb_reach", advert.reach.map(|r| r.to_string()).unwrap_or_default()),
        ("pb_epoch", advert.epoch.to_string()),
        ("pb_heal", verdict_name(advert.heal).to_string()),
        ("pb_verdict", verdict_name(advert.verdict).to_string()),
        (
            "pb_sbhold",
            if advert.awaiting_operator { "1" } else { "0" }.to_string(),
        ),
        ("pb_resolve", resolve.to_string()),
        ("pb_claim", if advert.claim { "1" } else { "0" }.to_string()),
        ("pb_claimseen", if advert.claim_seen { "1" } else { "0" }.to_string()),
        ("pb_data", advert.data.map(|d| d.to_string()).unwrap_or_default()),
        (
            "pb_datakeep",
            advert
                .data_choice
                .map(|c| format!("{:016x}:{}", c.key, if c.sender_keeps { "sender" } else { "receiver" }))
                .unwrap_or_default(),
        ),
    ]
}

/// Decodes the fields; `None` when the sender is not a pairbeat node (Heartbeat).
/// Fields added after the first release are optional, read as their default.
pub fn parse(get: impl Fn(&str) -> Option<String>) -> Option<Advert> {
    let holding = match get("pb_hold")?.as_str() {
        "stopped" => Holding::Stopped,
        "leftovers" => Holding::Leftovers,
        "running" => Holding::Running,
        "blocked" => Holding::Blocked,
        _ => return None,
    };
    let mode = match get("pb_mode")?.as_str() {
        "online" => Mode::Online,
        "standby" => Mode::Standby,
        "leaving" => Mode::Leaving,
        "banned" => Mode::Banned,
        _ => return None,
    };
    Some(Advert {
        holding,
        mode,
        takeover: get("pb_want").as_deref() == Some("takeover"),
        settled: get("pb_settled").as_deref() == Some("1"),
        reach: get("pb_reach").and_then(|r| r.parse().ok()),
        epoch: get("pb_epoch").and_then(|e| e.parse().ok()).unwrap_or(0),
        heal: get("pb_heal").as_deref().and_then(verdict),
        verdict: get("pb_verdict").as_deref().and_then(verdict),
        awaiting_operator: get("pb_sbhold").as_deref() == Some("1"),
        resolve_sender_keeps: match get("pb_resolve").as_deref() {
            Some("sender") => Some(true),
            Some("receiver") => Some(false),
            _ => None,
        },
        claim: get("pb_claim").as_deref() == Some("1"),
        claim_seen: get("pb_claimseen").as_deref() == Some("1"),
        data: get("pb_data").and_then(|d| d.parse().ok()),
        data_choice: get("pb_datakeep").as_deref().and_then(data_choice),
    })
}

/// `KEY:sender|receiver`; anything else is no choice (the peer then decides by
/// the policy, as before this field existed).
fn data_choice(text: &str) -> Option<DataChoice> {
    let (key, side) = text.split_once(':')?;
    if key.len() != 16 {
        return None;
    }
    let key = u64::from_str_radix(key, 16).ok()?;
    let sender_keeps = match side {
        "sender" => true,
        "receiver" => false,
        _ => return None,
    };
    Some(DataChoice { key, sender_keeps })
}

fn verdict_name(v: Option<Verdict>) -> &'static str {
    match v {
        None => "",
        Some(Verdict::Keep) => "keep",
        Some(Verdict::Yield) => "yield",
        Some(Verdict::Stop) => "stop",
    }
}

fn verdict(name: &str) -> Option<Verdict> {
    match name {
        "keep" => Some(Verdict::Keep),
        "yield" => Some(Verdict::Yield),
        "stop" => Some(Verdict::Stop),
        _ => None,
    }
}
