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
