//! Real Heartbeat 3.0.6 packets (tests/fixtures/heartbeat/packets.txt, captured from
//! two Debian nodes with key `1 sha1 somesecret`) as test vectors: each must
//! authenticate and decode, and sealing its fields again must give the same bytes —
//! which proves the field encoding and both digests (inner and outer) are Heartbeat's.

use std::collections::BTreeMap;

use pairbeat::config::{Auth, AuthKey, AuthMethod};
use pairbeat::wire::{self, WireError};

fn auth(index: u8, secret: &str) -> Auth {
    let mut keys = BTreeMap::new();
    keys.insert(
        index,
        AuthKey {
            method: AuthMethod::Sha1,
            secret: secret.as_bytes().to_vec(),
        },
    );
    Auth {
        sign_index: index,
        keys,
        authkeys_file: None,
    }
}

fn packets() -> Vec<(String, String, Vec<u8>)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/heartbeat/packets.txt"
    ))
    .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            let (kind, src, hex) = (w.next().unwrap(), w.next().unwrap(), w.next().unwrap());
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (kind.to_string(), src.to_string(), bytes)
        })
        .collect()
}

#[test]
fn every_captured_packet_authenticates_decodes_and_reencodes_byte_exact() {
    let auth = auth(1, "somesecret");
    let all = packets();
    assert!(all.len() >= 20, "expected the whole capture, got {}", all.len());
    for (kind, src, bytes) in &all {
        let msg = wire::open(bytes, &auth).unwrap_or_else(|e| panic!("{kind} from {src}: {e}"));
        assert_eq!(msg.get("t"), Some(kind.as_str()));
        assert!(msg.get("src").is_some_and(|s| s.starts_with("node")));
        assert_eq!(msg.get_bin("srcuuid").map(<[u8]>::len), Some(16), "{kind}");
        // seal() recomputes the inner auth field and the outer trailer from scratch.
        let mut fields = msg.clone();
        fields.fields.retain(|f| f.name != "auth");
        assert_eq!(
            &wire::seal(&fields, &auth),
            bytes,
            "{kind} from {src} re-encodes differently"
        );
    }
}

#[test]
fn status_fields_read_as_heartbeat_means_them() {
    let auth = auth(1, "somesecret");
    let (_, _, bytes) = packets().into_iter().find(|p| p.0 == "status").unwrap();
    let msg = wire::open(&bytes, &auth).unwrap();
    assert_eq!(msg.get("st"), Some("active"));
    assert_eq!(msg.get_hex("dt"), Some(500), "dt is hex milliseconds: deadtime 500ms");
    assert_eq!(msg.get_hex("seq"), Some(0x97));
    assert_eq!(msg.get_hex("hg"), Some(0x6b019b22));
    assert_eq!(msg.get("protocol"), Some("1"));
}

#[test]
fn wrong_key_or_unknown_index_is_rejected() {
    let (_, _, bytes) = packets().into_iter().next().unwrap();
    assert_eq!(wire::open(&bytes, &auth(1, "othersecret")), Err(WireError::Forged));
    assert_eq!(
        wire::open(&bytes, &auth(2, "somesecret")),
        Err(WireError::UnknownKey(1))
    );
}

#[test]
fn any_flipped_byte_is_caught() {
    let auth = auth(1, "somesecret");
    let (_, _, bytes) = packets().into_iter().next().unwrap();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(wire::open(&bad, &auth).is_err(), "flipping byte {i} went unnoticed");
    }
}

#[test]
fn truncations_are_errors_not_panics() {
    let auth = auth(1, "somesecret");
    let (_, _, bytes) = packets().into_iter().next().unwrap();
    for n in 0..bytes.len() {
        assert!(wire::open(&bytes[..n], &auth).is_err(), "prefix of {n} bytes accepted");
    }
}

#[test]
fn the_reference_verifier_packet_checks_too() {
    // From reference/heartbeat-auth-verify.py: node alpha, `auth 2` / `2 sha1 testsecret`.
    let mut pkt =
        b"###\n11:(0)t=status,10:(0)st=init,10:(0)dt=2ee0,13:(0)protocol=1,12:(0)src=alpha,27:(1)srcuuid=".to_vec();
    pkt.extend_from_slice(b",7\xa8\x8e\x00\xbfE\x7f\xbdw\xd6q\"\xccb0");
    pkt.extend_from_slice(b",8:(0)seq=1,14:(0)hg=6b019143,14:(0)ts=6b019142,31:(0)ld=0.25 0.16 0.06 1/93 10422,8:(0)ttl=3,50:(0)auth=2 13b728528ebe5b0c48dfc81e4ea2da07c57e932d,%%%\n42:2 11e1b3aad50af4217b185d5ac86f45656bc923af,");
    let auth = auth(2, "testsecret");
    let msg = wire::open(&pkt, &auth).unwrap();
    assert_eq!(msg.get_hex("hg"), Some(1795264835));
    let mut fields = msg.clone();
    fields.fields.retain(|f| f.name != "auth");
    assert_eq!(wire::seal(&fields, &auth), pkt);
}

#[test]
fn classic_form_is_verified_by_its_inner_digest() {
    let auth = auth(1, "somesecret");
    let (_, _, bytes) = packets().into_iter().next().unwrap();
    let msg = wire::open(&bytes, &auth).unwrap();
    // Re-express the same message in the classic encoding.
    let mut classic = b">>>\n".to_vec();
    for f in &msg.fields {
        if f.name == "auth" {
            continue;
        }
        classic.extend_from_slice(&msg_classic_line(f));
    }
    let auth_field = msg.get("auth").unwrap();
    classic.extend_from_slice(format!("auth={auth_field}\n<<<\n").as_bytes());
    let back = wire::open(&classic, &auth).unwrap();
    assert_eq!(back.fields.len(), msg.fields.len());
    let tampered = String::from_utf8_lossy(&classic)
        .replace("st=active", "st=dead")
        .into_bytes();
    assert_eq!(wire::open(&tampered, &auth), Err(WireError::Forged));
}

fn msg_classic_line(f: &wire::Field) -> Vec<u8> {
    let mut m = wire::Message::new();
    m.fields.push(f.clone());
    m.classic_text(None)
}
