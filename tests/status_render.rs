//! Golden tests for `pairbeat status` text (crm_mon -1 layout), over status fixtures
//! in tests/fixtures/status. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test status_render`, and read the diff.

mod common;

use std::path::{Path, PathBuf};

use pairbeat::control::render::{self, TextOptions, Zone};
use pairbeat::control::Status;

/// "Last updated" in every golden file.
const NOW: u64 = 1_795_265_000;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/status")
}

fn load(name: &str) -> Status {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}.json: {e}"))
}

fn golden(name: &str, actual: &str) {
    common::golden(&fixtures().join(name), actual);
}

#[test]
fn healthy_pair() {
    let s = load("healthy");
    golden("healthy.txt", &render::text(&s, TextOptions::default(), NOW, Zone::Utc));
    golden(
        "healthy-A-f.txt",
        &render::text(
            &s,
            TextOptions {
                attributes: true,
                failcounts: true,
            },
            NOW,
            Zone::Utc,
        ),
    );
}

#[test]
fn blocked_group_standby_peer_dead_link_and_failures() {
    let s = load("trouble");
    golden("trouble.txt", &render::text(&s, TextOptions::default(), NOW, Zone::Utc));
    golden(
        "trouble-A-f.txt",
        &render::text(
            &s,
            TextOptions {
                attributes: true,
                failcounts: true,
            },
            NOW,
            Zone::Utc,
        ),
    );
}

#[test]
fn replicas_with_what_needs_the_operator() {
    let mut s = load("replicas");
    // As pairbeatd does with what the replicas' daemons answered.
    let views = s.replicas.clone();
    s.set_replicas(views);
    let problems: Vec<(String, String)> = s
        .attention
        .iter()
        .filter_map(|a| match a {
            pairbeat::control::status::Attention::Replica { name, problem, .. } => {
                Some((name.clone(), problem.clone()))
            }
            _ => None,
        })
        .collect();
    let expected = [
        ("r1", "io_frozen"),
        ("r2", "split_brain_pending"),
        ("r2", "data_not_up_to_date"),
        ("r3", "unreachable"),
    ];
    assert_eq!(
        problems,
        expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>(),
        "r0 is healthy and needs nothing"
    );
    golden(
        "replicas.txt",
        &render::text(&s, TextOptions::default(), NOW, Zone::Utc),
    );
    let xml = quick_xml::se::to_string_with_root("pairbeat-status", &s).unwrap();
    for needle in [
        "<connection>Connected</connection>",
        "<io_frozen>true</io_frozen>",
        "<problem>split_brain_pending</problem>",
        "<unreachable>/run/pairbeat/replica/r3.sock",
    ] {
        assert!(xml.contains(needle), "{needle} not in {xml}");
    }
    // The JSON reads back as it was written (the schema round-trips).
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
}

#[test]
fn xml_carries_the_same_content() {
    let s = load("trouble");
    let xml = quick_xml::se::to_string_with_root("pairbeat-status", &s).unwrap();
    for needle in [
        "<cluster>hadoop-nn</cluster>",
        "<local_node>bravo</local_node>",
        "<blocked>true</blocked>",
        "<state>dead</state>",
        "<outcome>timed out</outcome>",
        "<forged>12</forged>",
    ] {
        assert!(xml.contains(needle), "{needle} not in {xml}");
    }
    // Every JSON key's value is in the XML too.
    let json: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json["group"]["resources"].as_array().unwrap().len(),
        xml.matches("<resources>").count()
    );
}
