//! The fuzz targets on stable Rust, as part of `make test`: each target of
//! `pairbeat::fuzzing` runs over its seed corpus (real files from the fixtures:
//! Heartbeat's packets, the seeds' ha.cf / haresources / authkeys / drbd.conf,
//! etc/pairbeat.toml, status answers, real agents' meta-data, every replica frame)
//! and FUZZ_SMOKE_MUTATIONS (default 4,000) deterministic mutations of it: bit
//! flips, bytes inserted, deleted, repeated and spliced from another seed,
//! interesting numbers written over a field. It is not coverage-guided: the
//! campaign (`scripts/fuzz`, cargo-fuzz with libFuzzer) is; this keeps every
//! target building and every crash the campaign found (its seeds in
//! `fuzz/seeds/TARGET/`) fixed, on every run.
//!
//! `FUZZ_WRITE_SEEDS=DIR` writes each target's seeds to DIR/TARGET/ (what
//! `scripts/fuzz` starts libFuzzer's corpus from) instead of running them.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::Rng;
use pairbeat::replica::data::Data;
use pairbeat::replica::gi::{DiskState, Gi};
use pairbeat::replica::meta::Meta;
use pairbeat::replica::wire::{self, Frame, Hello, State};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(root().join(rel)).unwrap_or_else(|e| panic!("seed {rel}: {e}"))
}

/// Each file of `fuzz/seeds/TARGET/`: hand-made seeds and the crashes found so far.
fn committed(target: &str) -> Vec<Vec<u8>> {
    let dir = root().join("fuzz/seeds").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn frames() -> Vec<Frame> {
    let gi = Gi {
        current: 0xAB01,
        bitmap: 0xAB00,
        history: [0x1234, 0],
    };
    vec![
        Frame::Hello(Hello {
            protocol: wire::PROTOCOL,
            name: "r0".into(),
            node: 1,
            resource: [7; 16],
            size: 64 * 1024,
            extent: 4096,
            nonce: [9; 32],
        }),
        Frame::Auth { mac: vec![1; 32] },
        Frame::State(State {
            primary: true,
            disk: DiskState::UpToDate,
            gi,
            flags: 3,
            dirty: 1,
        }),
        Frame::DirtyMap { bytes: vec![0xff, 0] },
        Frame::Decision {
            rule: 3,
            code: -2,
            sync_uuid: 0xAB01,
        },
        Frame::Write {
            offset: 4096,
            data: Data::from(vec![0x5a; 512]),
        },
        Frame::WriteAck,
        Frame::Discard { offset: 0, len: 8192 },
        Frame::Flush,
        Frame::FlushAck,
        Frame::RsData {
            offset: 8192,
            data: Data::from(vec![0xa5; 4096]),
        },
        Frame::RsAck {
            offset: 8192,
            len: 4096,
        },
        Frame::RsDone { gi },
        Frame::Ping,
        Frame::Pong,
        Frame::Bye { outdated: true },
    ]
}

/// The seeds of `target`, from real files where there are some.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut s = committed(target);
    match target {
        "packet" => {
            let text = String::from_utf8(read("tests/fixtures/heartbeat/packets.txt")).unwrap();
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let w: Vec<&str> = line.split_whitespace().collect();
                if w.len() == 3 {
                    let hex = w[2];
                    s.push(
                        (0..hex.len() / 2)
                            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                            .collect(),
                    );
                }
            }
        }
        "config" => {
            for f in [
                "etc/pairbeat.toml",
                "tests/fixtures/seed-000.expected.toml",
                "tests/fixtures/seed-003-drbd.expected.toml",
            ] {
                s.push(read(f));
            }
        }
        "import" => {
            for seed in ["seed-000", "seed-003"] {
                let mut all = Vec::new();
                for (i, f) in ["ha.cf", "haresources", "authkeys", "drbd.conf"].iter().enumerate() {
                    if i > 0 {
                        all.push(0);
                    }
                    all.extend(read(&format!("tests/fixtures/{seed}/{f}")));
                }
                s.push(all);
            }
        }
        "control" => {
            for line in [
                r#"{"command":"status"}"#,
                r#"{"command":"cleanup","resource":"vip"}"#,
                r#"{"command":"resolve","keep":"alpha"}"#,
                r#"{"command":"outdate_peer","replica":"r0","generations":"0000000000000005:0000000000000000:0000000000000000:0000000000000000"}"#,
                r#"{"command":"attribute","name":"master-ns","value":"100"}"#,
                r#"{"cmd":"primary","force":true}"#,
                r#"{"cmd":"outdate","generations":"0000000000000005:0000000000000000:0000000000000000:0000000000000000"}"#,
                r#"{"cmd":"resync-rate","rate":"10M"}"#,
                "beat 12 false",
                "fuse 7",
                "4: Outdated",
                r#"{"ok":false,"error":"no such resource"}"#,
            ] {
                s.push(line.as_bytes().to_vec());
            }
            for f in ["healthy", "trouble"] {
                let status = String::from_utf8(read(&format!("tests/fixtures/status/{f}.json"))).unwrap();
                s.push(format!("{{\"ok\":true,\"status\":{status}}}").into_bytes());
            }
        }
        "agent_metadata" => {} // fuzz/seeds/agent_metadata: real agents' meta-data
        "agent_output" => {
            for out in [
                "running",
                "OK",
                "stopped\n",
                "-n\0master-ns\0-v\x00100\0-l\0reboot",
                "--promotion\0-v\x005",
                "-G\0-n\0x\0-q",
                "-N\0alpha\0-n\0standby\0-G",
                "-q\0-n",
            ] {
                s.push(out.as_bytes().to_vec());
            }
        }
        "replica_frames" => {
            let all: Vec<u8> = frames()
                .iter()
                .enumerate()
                .flat_map(|(i, f)| wire::encode(i as u64 + 1, 0, f))
                .collect();
            s.push(all);
            // The record form the target seals itself: [type][len][payload].
            for f in frames() {
                let b = wire::encode(1, 0, &f);
                let ty = u16::from_le_bytes([b[4], b[5]]) as u8;
                let payload = &b[wire::HEADER..];
                let mut r = vec![ty, payload.len().min(255) as u8];
                r.extend_from_slice(&payload[..payload.len().min(255)]);
                s.push(r);
            }
        }
        "replica_meta" => {
            let mut m = Meta::create([3; 16], 1 << 20, 65536, 1);
            m.gi.current = 0xAB00;
            m.dirty.set(3);
            let slot = m.encode();
            let mut file = vec![0u8; m.file_size() as usize];
            let at = m.slot_offset(m.seq) as usize;
            file[at..at + slot.len()].copy_from_slice(&slot);
            s.push(slot);
            s.push(file);
        }
        "state_files" => {
            use pairbeat::split_brain::{Log, Side};
            let side = |n: &str| Side {
                node: n.into(),
                epoch: 3,
                ran_ms: Some(60_000),
            };
            let mut log = Log::default();
            log.begin(
                1_700_000_000,
                Some(1_699_999_990),
                "keep-preferred",
                side("alpha"),
                side("bravo"),
            );
            log.end(1_700_000_005, Some("alpha"), false);
            s.push(log.to_json().into_bytes());
        }
        other => panic!("no seeds for target {other}"),
    }
    assert!(!s.is_empty(), "target {target} has no seeds");
    s
}

/// One deterministic mutation of `seed` (another seed may be spliced in).
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len() as u64;
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len) as usize;
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1) as usize;
                b.insert(i, rng.next() as u8);
            }
            2 if len > 0 => {
                let i = rng.below(len) as usize;
                let n = (rng.below(16) as usize).min(b.len() - i);
                b.drain(i..i + n);
            }
            3 if len > 0 => {
                // Repeat a chunk: long lines, deep nesting, many frames.
                let i = rng.below(len) as usize;
                let n = (1 + rng.below(32) as usize).min(b.len() - i);
                let chunk = b[i..i + n].to_vec();
                for _ in 0..1 + rng.below(8) {
                    b.splice(i..i, chunk.iter().copied());
                }
            }
            4 if !other.is_empty() => {
                let i = rng.below(len + 1) as usize;
                let j = rng.below(other.len() as u64) as usize;
                let n = (1 + rng.below(64) as usize).min(other.len() - j);
                b.splice(i..i, other[j..j + n].iter().copied());
            }
            5 if len >= 4 => {
                // An interesting number over a field.
                const N: [u32; 8] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff];
                let i = rng.below(len - 3) as usize;
                let v = N[rng.below(8) as usize].to_le_bytes();
                b[i..i + 4].copy_from_slice(&v);
            }
            6 if len > 0 => {
                b.truncate(rng.below(len) as usize);
            }
            _ if len > 0 => {
                // A byte that means something to text parsers.
                const T: &[u8] = b"\"'=[]{}#\n\r\t \\:;,.-0123456789\0\xff";
                let i = rng.below(len) as usize;
                b[i] = T[rng.below(T.len() as u64) as usize];
            }
            _ => b.push(rng.next() as u8),
        }
    }
    b
}

fn mutations() -> usize {
    std::env::var("FUZZ_SMOKE_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4_000)
}

/// Runs `target` on its seeds and their mutations; a panic names the input (hex)
/// and where to put it so that it stays a regression seed.
fn smoke(target: &str) {
    let f = pairbeat::fuzzing::target(target).expect("a target of pairbeat::fuzzing");
    let seeds = seeds(target);
    if let Some(dir) = std::env::var_os("FUZZ_WRITE_SEEDS") {
        let d = Path::new(&dir).join(target);
        std::fs::create_dir_all(&d).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i:03}")), s).unwrap();
        }
        return;
    }
    let run = |input: &[u8]| {
        if std::panic::catch_unwind(|| f(input)).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!(
                "fuzz target {target} panicked on this input; save it as fuzz/seeds/{target}/crash-NAME \
                 (`echo {hex} | xxd -r -p > fuzz/seeds/{target}/crash-NAME`) and fix the decoder"
            );
        }
    };
    let t = Instant::now();
    for s in &seeds {
        run(s);
    }
    let mut rng = Rng(0x5eed ^ target.len() as u64);
    let n = mutations();
    for i in 0..n {
        let seed = &seeds[i % seeds.len()];
        let other = &seeds[rng.below(seeds.len() as u64) as usize];
        run(&mutate(&mut rng, seed, other));
    }
    eprintln!(
        "{target}: {} seeds, {n} mutations, {} ms",
        seeds.len(),
        t.elapsed().as_millis()
    );
}

#[test]
fn every_target_has_seeds_and_a_fuzz_binary() {
    let manifest = String::from_utf8(read("fuzz/Cargo.toml")).unwrap();
    for (name, _) in pairbeat::fuzzing::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\""))
                && root().join(format!("fuzz/fuzz_targets/{name}.rs")).exists(),
            "fuzz target {name}: add fuzz/fuzz_targets/{name}.rs and its [[bin]] in fuzz/Cargo.toml"
        );
        assert!(!seeds(name).is_empty());
    }
}

#[test]
fn packet() {
    smoke("packet");
}

#[test]
fn config() {
    smoke("config");
}

#[test]
fn import() {
    smoke("import");
}

#[test]
fn control() {
    smoke("control");
}

#[test]
fn agent_metadata() {
    smoke("agent_metadata");
}

#[test]
fn agent_output() {
    smoke("agent_output");
}

#[test]
fn replica_frames() {
    smoke("replica_frames");
}

#[test]
fn replica_meta() {
    smoke("replica_meta");
}

#[test]
fn state_files() {
    smoke("state_files");
}
