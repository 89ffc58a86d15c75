//! The fuzz targets' bodies: every decoder of outside input, given any bytes, must
//! return (an error naming the place and the fix is fine) and never panic or hang;
//! where a decoder has an encoder, what it accepts must survive the round trip.
//!
//! Two runners share them, so that what the campaign fuzzes is what `make test`
//! checks: `fuzz/fuzz_targets/*.rs` (cargo-fuzz and libFuzzer, coverage-guided, run
//! by `scripts/fuzz`) and `tests/fuzz_smoke.rs` (stable Rust, no instrumentation:
//! each target's seed corpus and a few thousand deterministic mutations of it).
//! A crash either finds becomes a seed in `fuzz/seeds/TARGET/` and stays there.
//!
//! Outside input, by who sends it: the peer's datagrams (`packet`); the operator's
//! files (`config`, `import`) and the control socket (`control`); agents (their
//! meta-data, `agent_metadata`; their output and the `crm_*` calls they make,
//! `agent_output`); the replica's peer and its own metadata file on disk
//! (`replica_frames`, `replica_meta`); the state directory (`state_files`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{Auth, AuthKey, AuthMethod};

/// A target's body: any bytes in, a panic on a broken contract.
pub type Target = fn(&[u8]);

/// Every target, by the name its fuzz binary and seed directory have.
pub const TARGETS: &[(&str, Target)] = &[
    ("packet", packet),
    ("config", config),
    ("import", import),
    ("control", control),
    ("agent_metadata", agent_metadata),
    ("agent_output", agent_output),
    ("replica_frames", replica_frames),
    ("replica_meta", replica_meta),
    ("state_files", state_files),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Text targets see invalid UTF-8 as the daemon would after a lossy read.
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Any datagram, under every auth method: `wire::open` returns, and whatever it
/// accepts survives a seal/open round trip; its fields as an advert parse or not.
pub fn packet(data: &[u8]) {
    use crate::wire;
    for method in [AuthMethod::Sha1, AuthMethod::Md5, AuthMethod::Sha256, AuthMethod::Crc] {
        let mut keys = BTreeMap::new();
        let secret = if method == AuthMethod::Crc {
            vec![]
        } else {
            b"fuzz".to_vec()
        };
        keys.insert(1, AuthKey { method, secret });
        let auth = Auth {
            sign_index: 1,
            keys,
            authkeys_file: None,
        };
        if let Ok(msg) = wire::open(data, &auth) {
            let mut fields = msg.clone();
            fields.fields.retain(|f| f.name != "auth");
            let again = wire::open(&wire::seal(&fields, &auth), &auth).expect("a sealed message opens");
            assert_eq!(again.fields.len(), fields.fields.len() + 1);
        }
    }
    for msg in [
        wire::message::Message::decode_netstring(data),
        wire::message::Message::decode_classic(data),
    ]
    .into_iter()
    .flatten()
    {
        let _ = wire::advert::parse(|name| msg.get(name).map(str::to_string));
    }
}

/// pairbeat.toml, parsed and validated as `config check` does, for either node; the
/// report (file:line:column, the line's text, a caret) is rendered, as it would be
/// printed.
pub fn config(data: &[u8]) {
    let path = Path::new("/nonexistent/pairbeat.toml");
    for node in ["alpha", "bravo"] {
        match crate::config::load_str(path, text(data), node) {
            Ok((_, warnings)) => drop(warnings.report(path)),
            Err(diags) => {
                assert!(diags.has_errors(), "a refused configuration names an error");
                drop(diags.report(path));
            }
        }
    }
}

/// Heartbeat's files as `config import` reads them: the input is ha.cf, haresources,
/// authkeys and a drbd.conf, separated by NUL bytes (missing parts are absent files).
/// The translation that comes out must itself parse as TOML.
pub fn import(data: &[u8]) {
    use crate::config::diag::SourceFile;
    use crate::config::import::{translate, ImportInput};
    let mut parts = data.split(|&b| b == 0).map(text);
    let ha_cf = SourceFile::new("/fuzz/ha.cf", parts.next().unwrap_or_default());
    let haresources = parts.next().map(|t| SourceFile::new("/fuzz/haresources", t));
    let authkeys = parts.next().map(|t| {
        (
            std::path::PathBuf::from("/fuzz/authkeys"),
            Some(SourceFile::new("/fuzz/authkeys", t)),
        )
    });
    let drbd: Vec<SourceFile> = parts
        .next()
        .map(|t| SourceFile::new("/fuzz/drbd.conf", t))
        .into_iter()
        .collect();
    let input = ImportInput {
        ha_cf: ha_cf.path.clone(),
        haresources: haresources.as_ref().map(|f| f.path.clone()),
        authkeys: authkeys.as_ref().map(|(p, _)| p.clone()),
        from_node: None,
        drbd_conf: drbd.iter().map(|f| f.path.clone()).collect(),
        local_addresses: Vec::new(),
    };
    let out = translate(&input, &ha_cf, haresources.as_ref(), authkeys, &drbd);
    if let Err(e) = out.toml.parse::<toml::Table>() {
        panic!("config import wrote TOML that does not parse ({e}):\n{}", out.toml);
    }
    drop(out.notes.report(&ha_cf.path));
}

/// One line on each control socket: pairbeatd's (from the CLI and scripts) and the
/// replica's (from the CLI, the agent and pairbeatd's relay); the replica
/// supervisor's lines from its worker; the relay's answer text; and the CLI's side:
/// any answer the daemon could send is rendered as text, JSON and XML.
pub fn control(data: &[u8]) {
    let line = text(data);
    if let Ok(req) = crate::control::parse_request(&line) {
        let again = serde_json::to_string(&req).expect("a request serializes");
        assert_eq!(
            crate::control::parse_request(&again).ok(),
            Some(req),
            "round trip of {again}"
        );
    }
    let _ = serde_json::from_str::<crate::replicad::control::Request>(line.trim());
    let _ = crate::replicad::supervisor::Line::parse(line.trim_end());
    let _ = crate::replica::state::OutdateRc::from_answer(&line);
    if let Ok(resp) = serde_json::from_str::<crate::control::Response>(&line) {
        if let Some(status) = resp.status {
            use crate::control::render::{text, TextOptions, Zone};
            let opts = TextOptions {
                attributes: true,
                failcounts: true,
            };
            drop(text(&status, opts, 1_700_000_000, Zone::Utc));
            drop(serde_json::to_string(&status));
            drop(quick_xml::se::to_string_with_root("pairbeat-status", &status));
        }
    }
}

/// An OCF agent's `meta-data` XML.
pub fn agent_metadata(data: &[u8]) {
    let _ = crate::agent::metadata::parse(&text(data));
}

/// What agents say: a Heartbeat resource script's `status` output, and the
/// arguments of `crm_attribute` / `crm_master` / `attrd_updater` / `crm_node` calls
/// (NUL-separated, as argv), for each tool, with and without a resource instance.
pub fn agent_output(data: &[u8]) {
    let t = text(data);
    let _ = crate::resources::outcome::Outcome::from_heartbeat_status(&t);
    let args: Vec<String> = t.split('\0').map(str::to_string).collect();
    for tool in crate::crm::TOOLS {
        for instance in [None, Some("ns")] {
            let _ = crate::crm::parse(tool, &args, instance);
        }
    }
}

/// Bytes from the replication link. As they come (almost all fail the CRC), and
/// each also made into a frame with a correct header and CRC around them, so that
/// the payload decoders see them; what decodes must re-encode to the same frame.
/// The frames then go to a live Replica core (UpToDate, Secondary, connected), as
/// a peer that passed authentication would send them: it may disconnect, never
/// panic.
pub fn replica_frames(data: &[u8]) {
    use crate::replica::wire::{self, Frame, HEADER, MAGIC};
    let mut frames: Vec<(u64, Frame)> = Vec::new();
    let mut rest = data;
    while let Ok(Some((env, n))) = wire::decode(rest) {
        frames.push((env.seq, env.frame));
        rest = &rest[n..];
    }
    // Records: [type u8][len u8][payload]; each sealed into a frame.
    let mut rest = data;
    let mut seq: u64 = 1;
    while rest.len() >= 2 {
        let (ty, len) = (u16::from(rest[0]), usize::from(rest[1]).min(rest.len() - 2));
        let payload = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let mut b = Vec::with_capacity(HEADER + payload.len());
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(payload);
        let crc = crc32c::crc32c(&b);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        if let Ok(Some((env, n))) = wire::decode(&b) {
            assert_eq!(n, b.len());
            let again = wire::encode(env.seq, env.flags, &env.frame);
            let (back, _) = wire::decode(&again).expect("re-encoded").expect("whole");
            assert_eq!(back, env, "round trip");
            frames.push((seq, env.frame));
        }
        seq += 1;
    }
    if frames.is_empty() {
        return;
    }
    feed_replica(frames);
}

/// A Secondary, UpToDate replica after connecting to a peer: the frames arrive as
/// the peer's; disk operations complete at once.
fn feed_replica(frames: Vec<(u64, crate::replica::wire::Frame)>) {
    use crate::replica::meta::{Flags, Meta};
    use crate::replica::state::{Effect, Fencing, Replica, Settings};
    let now = Instant::now();
    let settings = Settings {
        me: 0,
        fencing: Fencing::ResourceOnly,
        timeout: Duration::from_millis(200),
        ping_interval: Duration::from_millis(100),
        resync_rate: 0,
        al_interval: Duration::from_secs(5),
        ask_again: Duration::from_secs(1),
        chunk: 4096,
        window: 16384,
        salt: 42,
    };
    let mut meta = Meta::create([1; 16], 64 * 1024, 4096, 0);
    meta.flags = Flags(Flags::CONSISTENT | Flags::WAS_UP_TO_DATE);
    meta.gi.current = 0xAB00;
    let mut r = Replica::new(settings, meta, now);
    r.handle_connected(now);
    let mut t = now;
    for (seq, frame) in frames {
        t += Duration::from_millis(10);
        r.handle_frame(t, seq, frame);
        // Bounded: a core that kept emitting would be a hang.
        for _ in 0..10_000 {
            let Some(e) = r.poll_effect() else { break };
            if let Effect::Disk { io, op } = e {
                let data = match op {
                    crate::replica::state::DiskOp::Read { len, .. } => Some(vec![0u8; len as usize].into()),
                    _ => None,
                };
                r.handle_io(t, io, Ok(data));
            }
        }
        r.handle_timeout(t);
    }
}

/// The replica's metadata file as read at start (two slots, each checksummed), and
/// a slot alone; a slot that decodes re-encodes to the same metadata.
/// As with frames, each input is also sealed (its slot's checksum made right), so
/// that the fields behind the checksum are reached.
pub fn replica_meta(data: &[u8]) {
    use crate::replica::meta::Meta;
    let _ = Meta::decode(data);
    let round_trip = |slot: &[u8]| {
        if let Ok(m) = Meta::decode_slot(slot) {
            let again = m.encode();
            assert_eq!(Meta::decode_slot(&again).ok(), Some(m), "round trip");
        }
    };
    round_trip(data);
    if data.len() >= 104 {
        let extents = u64::from_le_bytes(data[96..104].try_into().expect("8 bytes"));
        let len = Meta::slot_size(extents.min(1 << 20));
        if extents <= 1 << 20 && data.len() >= len {
            let mut b = data[..len].to_vec();
            b[12..16].fill(0);
            let crc = crc32c::crc32c(&b);
            b[12..16].copy_from_slice(&crc.to_le_bytes());
            round_trip(&b);
        }
    }
}

/// The state directory's files as pairbeatd reads them at start: the split-brain log.
pub fn state_files(data: &[u8]) {
    if let Ok(log) = crate::split_brain::Log::from_json(&text(data)) {
        let again = log.to_json();
        assert!(
            crate::split_brain::Log::from_json(&again).is_ok(),
            "round trip of {again}"
        );
        drop(log.unacknowledged());
        let _ = log.awaiting_operator();
    }
}
