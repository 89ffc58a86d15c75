//! Small files in the state directory that must survive restarts:
//!
//! - `generation`: our per-boot generation (Heartbeat's `hb_generation`: decimal,
//!   space-padded to 15 characters, newline), incremented and fsync'd at each start
//!   so our packets after a restart are never mistaken for replays, and replays of
//!   our earlier life are refused by the peer;
//! - `uuid`: our 16-byte node UUID (`srcuuid` on the wire), made once;
//! - `peer`: the peer's generation and newest sequence number, so packets recorded
//!   before our restart are refused after it;
//! - `standby`: present while the operator keeps this node in standby;
//! - `epoch`: the ownership epoch (keep-last-writer compares them after a split brain);
//! - `split-brains.json`: the split-brain log, until acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `data` to `dir/name` atomically and durably: temp file, fsync, rename, fsync dir.
fn write_durably(dir: &Path, name: &str, data: &[u8]) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, &path).map_err(err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

/// Reads the last generation, adds one, and makes that durable before we send anything.
pub fn next_generation(dir: &Path, now_secs: u64) -> Result<u64, String> {
    let path = dir.join("generation");
    let next = match fs::read_to_string(&path) {
        Ok(text) => {
            let last: u64 = text.trim().parse().map_err(|_| {
                format!(
                    "{} is corrupt ({:?}); move it aside to start a new generation (the peer will see a restart)",
                    path.display(),
                    text.trim()
                )
            })?;
            last + 1
        }
        // Like Heartbeat: the first generation is the time, so a wiped state dir still
        // starts above any generation this node had before.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => now_secs,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    write_durably(dir, "generation", format!("{next:>15}\n").as_bytes())?;
    Ok(next)
}

/// Our node UUID, created on first start.
pub fn uuid(dir: &Path) -> Result<[u8; 16], String> {
    let path = dir.join("uuid");
    if let Ok(text) = fs::read_to_string(&path) {
        if let Some(u) = parse_hex16(text.trim()) {
            return Ok(u);
        }
        return Err(format!(
            "{} is corrupt; move it aside to make a new one",
            path.display()
        ));
    }
    let mut u = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut u))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    // RFC 4122 version 4, as Heartbeat's uuid_generate does.
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    let text: String = u.iter().map(|b| format!("{b:02x}")).collect();
    write_durably(dir, "uuid", format!("{text}\n").as_bytes())?;
    Ok(u)
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut u = [0u8; 16];
    for (i, b) in u.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(u)
}

/// The peer floor saved by `save_peer`, if any. A damaged file is said and set
/// aside: without it the peer's packets from before this restart are refused only
/// from its next generation on (its current one is taken as heard first), so the
/// daemon goes on, as Heartbeat does without its floor.
pub fn load_peer(dir: &Path) -> Option<(u64, u64)> {
    let path = dir.join("peer");
    let text = fs::read_to_string(&path).ok()?;
    let mut w = text.split_whitespace();
    let floor = (|| Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?)))();
    if floor.is_none() {
        log::error!(
            "{} is damaged ({:?}): the peer's sequence floor is lost, so a packet recorded in the peer's current generation before this restart is no longer refused; kept as peer.damaged, a new one is written",
            path.display(),
            text.trim()
        );
        let _ = fs::rename(&path, dir.join("peer.damaged"));
    }
    floor
}

pub fn save_peer(dir: &Path, generation: u64, seq: u64) -> Result<(), String> {
    write_durably(dir, "peer", format!("{generation} {seq}\n").as_bytes())
}

/// Standby, epoch and the split-brain log, as the role needs them at start.
pub fn load_saved(dir: &Path) -> crate::role::Saved {
    let log = match fs::read_to_string(dir.join("split-brains.json")) {
        Ok(text) => crate::split_brain::Log::from_json(&text).unwrap_or_else(|e| {
            log::error!(
                "{}: {e}; starting a new log, the old one is kept as split-brains.json.damaged",
                dir.display()
            );
            let _ = fs::rename(dir.join("split-brains.json"), dir.join("split-brains.json.damaged"));
            crate::split_brain::Log::default()
        }),
        Err(_) => crate::split_brain::Log::default(),
    };
    crate::role::Saved {
        standby: dir.join("standby").exists(),
        epoch: load_epoch(dir),
        log,
    }
}

/// The ownership epoch; 0 without one. A damaged file is said and set aside: 0 only
/// makes this node's claim the weaker one (keep-last-writer keeps the peer's
/// newer run), and its next start of the group takes an epoch past the peer's.
fn load_epoch(dir: &Path) -> u64 {
    let path = dir.join("epoch");
    let Ok(text) = fs::read_to_string(&path) else { return 0 };
    text.trim().parse().unwrap_or_else(|_| {
        log::error!(
            "{} is damaged ({:?}): the ownership epoch starts again from 0 (after a split brain, keep-last-writer keeps the peer's run until this node runs the group again); kept as epoch.damaged",
            path.display(),
            text.trim()
        );
        let _ = fs::rename(&path, dir.join("epoch.damaged"));
        0
    })
}

/// Writes what the role asked to keep; a failure is logged (the daemon goes on:
/// losing a record is better than stopping the cluster).
pub fn persist(dir: &Path, p: crate::role::Persist) {
    use crate::role::Persist;
    let r = match p {
        Persist::Standby(true) => write_durably(dir, "standby", b"standby\n"),
        Persist::Standby(false) => match fs::remove_file(dir.join("standby")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove standby: {e}")),
            _ => Ok(()),
        },
        Persist::Epoch(e) => write_durably(dir, "epoch", format!("{e}\n").as_bytes()),
        Persist::SplitBrainLog(json) => write_durably(dir, "split-brains.json", json.as_bytes()),
        Persist::PeerFloor { generation, seq } => save_peer(dir, generation, seq),
    };
    if let Err(e) = r {
        log::error!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_starts_at_the_time_and_increments_durably() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(next_generation(d.path(), 1_795_264_835).unwrap(), 1_795_264_835);
        assert_eq!(
            fs::read_to_string(d.path().join("generation")).unwrap(),
            "     1795264835\n"
        );
        assert_eq!(next_generation(d.path(), 5).unwrap(), 1_795_264_836);
        fs::write(d.path().join("generation"), "junk").unwrap();
        assert!(next_generation(d.path(), 5).unwrap_err().contains("is corrupt"));
    }

    #[test]
    fn what_the_role_persists_comes_back_at_start() {
        use crate::role::Persist;
        let d = tempfile::tempdir().unwrap();
        let fresh = load_saved(d.path());
        assert_eq!((fresh.standby, fresh.epoch, fresh.log.records.len()), (false, 0, 0));
        let mut log = crate::split_brain::Log::default();
        let side = |n: &str| crate::split_brain::Side {
            node: n.into(),
            epoch: 1,
            ran_ms: None,
        };
        log.begin(10, None, "stop-both", side("a"), side("b"));
        log.end(11, None, true);
        persist(d.path(), Persist::Standby(true));
        persist(d.path(), Persist::Epoch(42));
        persist(d.path(), Persist::SplitBrainLog(log.to_json()));
        let back = load_saved(d.path());
        assert_eq!((back.standby, back.epoch), (true, 42));
        assert_eq!(back.log, log);
        assert!(back.log.awaiting_operator(), "a stop-both wait survives a restart");
        persist(d.path(), Persist::Standby(false));
        assert!(!load_saved(d.path()).standby);
        // A damaged log is kept aside, and the daemon starts with an empty one.
        fs::write(d.path().join("split-brains.json"), "{not json").unwrap();
        assert!(load_saved(d.path()).log.records.is_empty());
        assert!(d.path().join("split-brains.json.damaged").exists());
    }

    #[test]
    fn uuid_is_made_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let a = uuid(d.path()).unwrap();
        assert_eq!(uuid(d.path()).unwrap(), a);
        assert_eq!(a[6] >> 4, 4);
    }

    #[test]
    fn peer_floor_round_trips() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load_peer(d.path()), None);
        save_peer(d.path(), 7, 99).unwrap();
        assert_eq!(load_peer(d.path()), Some((7, 99)));
    }
}
