//! Directed cases of the replica's state machine, each one rule of the data path
//! or of promotion, driven through its public inputs (the simulation in
//! sim_replica.rs covers them at random; these say them one at a time).

use std::time::{Duration, Instant};

use pairbeat::replica::gi::DiskState;
use pairbeat::replica::meta::{Flags, Meta};
use pairbeat::replica::state::{Command, Conn, DiskOp, Effect, Fencing, OutdateRc, Replica, Reply, Request, Settings};
use pairbeat::replica::wire::{Frame, State};

/// A plain `pairbeat replica primary`.
const PROMOTE: Command = Command::Promote {
    force: false,
    new_data: false,
};

fn settings(fencing: Fencing) -> Settings {
    Settings {
        me: 0,
        fencing,
        timeout: Duration::from_millis(200),
        ping_interval: Duration::from_millis(100),
        resync_rate: 0,
        al_interval: Duration::from_secs(5),
        ask_again: Duration::from_secs(1),
        chunk: 4096,
        window: 16384,
        salt: 42,
    }
}

fn meta(flags: u32) -> Meta {
    let mut m = Meta::create([1; 16], 64 * 1024, 4096, 0);
    m.flags = Flags(flags);
    m.gi.current = 0xAB00;
    m
}

fn effects(r: &mut Replica) -> Vec<Effect> {
    std::iter::from_fn(|| r.poll_effect()).collect()
}

/// Answers every disk operation at once, returning the other effects.
fn run_disk(r: &mut Replica, now: Instant) -> Vec<Effect> {
    let mut rest = Vec::new();
    loop {
        let batch = effects(r);
        if batch.is_empty() {
            return rest;
        }
        for e in batch {
            match e {
                Effect::Disk { io, op } => {
                    let data = match op {
                        DiskOp::Read { len, .. } => Some(vec![0; len as usize].into()),
                        _ => None,
                    };
                    r.handle_io(now, io, Ok(data));
                }
                other => rest.push(other),
            }
        }
    }
}

/// Connects `r` to a peer whose STATE is `r`'s own as `tweak` leaves it, and
/// completes the handshake whichever way `r` decides.
fn handshake(r: &mut Replica, now: Instant, tweak: impl FnOnce(&mut State)) {
    r.handle_connected(now);
    let mut peer_state = match effects(r).into_iter().find_map(|e| match e {
        Effect::Send {
            frame: Frame::State(s), ..
        } => Some(s),
        _ => None,
    }) {
        Some(s) => s,
        None => panic!("no STATE sent at connect"),
    };
    tweak(&mut peer_state);
    r.handle_frame(now, 1, Frame::State(peer_state));
    r.handle_frame(now, 2, Frame::DirtyMap { bytes: vec![0; 2] });
    let out = run_disk(r, now);
    r.handle_frame(now, 3, answer_decision(&out));
}

/// The peer's answer to the DECISION among `out`: the same rule, the mirrored code.
fn answer_decision(out: &[Effect]) -> Frame {
    let (code, rule) = out
        .iter()
        .find_map(|e| match e {
            Effect::Send {
                frame: Frame::Decision { code, rule, .. },
                ..
            } => Some((*code, *rule)),
            _ => None,
        })
        .expect("a DECISION");
    Frame::Decision {
        rule,
        code: -code,
        sync_uuid: 0,
    }
}

fn up_to_date() -> u32 {
    Flags::CONSISTENT | Flags::WAS_UP_TO_DATE | Flags::PEER_OUTDATED
}

#[test]
fn a_write_is_answered_only_when_local_and_peer_both_have_it() {
    let now = Instant::now();
    let mut r = Replica::new(settings(Fencing::ResourceOnly), meta(up_to_date()), now);
    r.handle_command(now, 1, PROMOTE);
    let out = run_disk(&mut r, now);
    assert!(
        out.iter().any(|e| matches!(e, Effect::Done { cmd: 1, result: Ok(_) })),
        "{out:?}"
    );
    // Connect to a Secondary peer with the same generation: no resync.
    handshake(&mut r, now, |peer| {
        peer.primary = false;
        peer.gi.current &= !1;
    });
    run_disk(&mut r, now);
    assert_eq!(r.conn(), Conn::Connected);

    r.handle_request(
        now,
        7,
        Request::Write {
            offset: 0,
            data: vec![9; 512].into(),
        },
    );
    let out = run_disk(&mut r, now);
    let seq = out
        .iter()
        .find_map(|e| match e {
            Effect::Send {
                seq,
                frame: Frame::Write { .. },
            } => Some(*seq),
            _ => None,
        })
        .expect("the write goes to the peer");
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Reply { req: 7, .. })),
        "answered before the peer acknowledged: {out:?}"
    );
    r.handle_frame(now, seq, Frame::WriteAck);
    let out = effects(&mut r);
    assert!(
        out.contains(&Effect::Reply {
            req: 7,
            reply: Reply::Written(512)
        }),
        "{out:?}"
    );
    // The written extent stays dirty for a crash (the activity log), but the peer
    // has it: nothing is out of sync.
    assert_eq!(r.status().out_of_sync, 0, "{:?}", r.status());
}

#[test]
fn a_resync_held_back_by_its_rate_goes_on_at_once_when_unthrottled() {
    let now = Instant::now();
    let mut m = meta(up_to_date());
    m.gi.bitmap = 0xCD00;
    for e in 0..4 {
        m.dirty.set(e);
    }
    // One byte a second: no chunk can go yet.
    let s = Settings {
        resync_rate: 1,
        ..settings(Fencing::ResourceOnly)
    };
    let mut r = Replica::new(s, m, now);
    // The peer holds what this side had when it started its bitmap: this side is
    // the SyncSource.
    handshake(&mut r, now, |peer| {
        peer.primary = false;
        peer.disk = DiskState::Outdated;
        peer.gi = pairbeat::replica::gi::Gi {
            current: 0xCD00,
            bitmap: 0,
            history: [0, 0],
        };
    });
    let sends_data = |out: &[Effect]| {
        out.iter().any(|e| {
            matches!(
                e,
                Effect::Send {
                    frame: Frame::RsData { .. },
                    ..
                }
            )
        })
    };
    let out = run_disk(&mut r, now);
    assert_eq!(r.conn(), Conn::SyncSource, "{out:?}");
    assert!(!sends_data(&out), "throttled to 1 byte/s, yet sent: {out:?}");
    r.handle_command(now, 9, Command::SetResyncRate(0));
    let out = run_disk(&mut r, now);
    assert!(sends_data(&out), "unthrottled, and nothing sent: {out:?}");
}

#[test]
fn promotion_refuses_stale_data_and_says_why() {
    let now = Instant::now();
    for (flags, why) in [(0, "Inconsistent"), (Flags::CONSISTENT, "Outdated")] {
        let mut r = Replica::new(settings(Fencing::ResourceOnly), meta(flags), now);
        r.handle_command(now, 1, PROMOTE);
        let out = run_disk(&mut r, now);
        let err = out
            .iter()
            .find_map(|e| match e {
                Effect::Done { result: Err(e), .. } => Some(e.clone()),
                _ => None,
            })
            .expect("refused");
        assert!(err.contains(why), "{err}");
        assert!(!r.is_primary() && r.promotion_score().is_none());
    }
    // Consistent: the peer must be shown outdated first; unreachable is not enough.
    let mut r = Replica::new(
        settings(Fencing::ResourceOnly),
        meta(Flags::CONSISTENT | Flags::WAS_UP_TO_DATE),
        now,
    );
    assert_eq!((r.status().disk, r.promotion_score()), (DiskState::Consistent, Some(0)));
    r.handle_command(now, 2, PROMOTE);
    assert!(run_disk(&mut r, now)
        .iter()
        .any(|e| matches!(e, Effect::OutdatePeer { .. })));
    r.handle_outdate_rc(now, OutdateRc::Unreachable);
    let out = run_disk(&mut r, now);
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Done { cmd: 2, result: Err(m) } if m.contains("did not confirm"))),
        "{out:?}"
    );
    // A fenced peer does not make Consistent data up to date either (stricter than DRBD).
    r.handle_command(now, 3, PROMOTE);
    run_disk(&mut r, now);
    r.handle_outdate_rc(now, OutdateRc::Fenced);
    assert!(!r.is_primary());
    // The peer persisted Outdated: now it may.
    r.handle_command(now, 4, PROMOTE);
    run_disk(&mut r, now);
    r.handle_outdate_rc(now, OutdateRc::Outdated);
    let out = run_disk(&mut r, now);
    assert!(
        out.iter().any(|e| matches!(e, Effect::Done { cmd: 4, result: Ok(_) })),
        "{out:?}"
    );
    assert!(r.is_primary());
    // Promoted while disconnected: a new generation, the old one kept as the bitmap UUID.
    assert_eq!(r.meta().gi.bitmap, 0xAB00);
    assert_eq!(r.meta().gi.current & 1, 1);
}

/// A Primary connected to a Secondary peer and in sync (the first test's
/// handshake, compressed), under `fencing`.
fn connected_primary(now: Instant, fencing: Fencing) -> Replica {
    let mut r = Replica::new(settings(fencing), meta(up_to_date()), now);
    r.handle_command(now, 1, PROMOTE);
    run_disk(&mut r, now);
    r.handle_connected(now);
    let st = effects(&mut r)
        .into_iter()
        .find_map(|e| match e {
            Effect::Send {
                frame: Frame::State(s), ..
            } => Some(s),
            _ => None,
        })
        .unwrap();
    let peer = pairbeat::replica::wire::State { primary: false, ..st };
    r.handle_frame(now, 1, Frame::State(peer));
    r.handle_frame(now, 2, Frame::DirtyMap { bytes: vec![0; 2] });
    run_disk(&mut r, now);
    r.handle_frame(
        now,
        3,
        Frame::Decision {
            rule: 40,
            code: 0,
            sync_uuid: 0,
        },
    );
    run_disk(&mut r, now);
    r
}

#[test]
fn a_primary_that_loses_its_peer_answers_nothing_until_the_peer_is_outdated() {
    let now = Instant::now();
    // Connected, a write in flight, then the link goes.
    let mut r = connected_primary(now, Fencing::ResourceAndStonith);
    r.handle_request(
        now,
        5,
        Request::Write {
            offset: 4096,
            data: vec![1; 512].into(),
        },
    );
    run_disk(&mut r, now);
    r.handle_disconnected(now, "link down");
    let out = run_disk(&mut r, now);
    assert!(out.iter().any(|e| matches!(e, Effect::OutdatePeer { .. })), "{out:?}");
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Reply { .. })),
        "answered while frozen: {out:?}"
    );
    assert!(r.status().frozen);
    // resource-and-stonith: an unreachable peer keeps I/O frozen.
    r.handle_outdate_rc(now, OutdateRc::Unreachable);
    assert!(!run_disk(&mut r, now).iter().any(|e| matches!(e, Effect::Reply { .. })));
    assert!(r.status().frozen);
    // Held, it asks again after `ask_again` (1 s here), not before: a fence that
    // failed may succeed on pairbeatd's retry.
    let again = now + Duration::from_secs(1);
    assert_eq!(r.poll_timeout(), Some(again));
    r.handle_timeout(now + Duration::from_millis(999));
    assert!(!run_disk(&mut r, now)
        .iter()
        .any(|e| matches!(e, Effect::OutdatePeer { .. })));
    r.handle_timeout(again);
    let out = run_disk(&mut r, again);
    assert!(out.iter().any(|e| matches!(e, Effect::OutdatePeer { .. })), "{out:?}");
    assert!(r.status().frozen);
    // Failed again: held again, the next ask twice as late (each ask may run the
    // peer's fencing device once more).
    r.handle_outdate_rc(again, OutdateRc::Failed);
    assert_eq!(r.poll_timeout(), Some(again + Duration::from_secs(2)));
    // The operator overrides: a new generation is persisted before the answer.
    let before = r.meta().gi;
    r.handle_command(now, 9, Command::ResumeIo);
    let out = run_disk(&mut r, now);
    assert!(
        out.contains(&Effect::Reply {
            req: 5,
            reply: Reply::Written(512)
        }),
        "{out:?}"
    );
    assert_ne!(r.meta().gi.current, before.current);
    assert_eq!(r.meta().gi.bitmap & !1, before.current & !1);
}

/// A fence that failed and then succeeded on pairbeatd's retry: the replica's next
/// ask is answered "fenced" and I/O resumes on its own (it stayed frozen for good).
#[test]
fn held_io_resumes_when_a_later_ask_finds_the_peer_fenced() {
    let now = Instant::now();
    let mut r = connected_primary(now, Fencing::ResourceAndStonith);
    r.handle_disconnected(now, "link down");
    run_disk(&mut r, now);
    r.handle_outdate_rc(now, OutdateRc::Failed);
    run_disk(&mut r, now);
    r.handle_request(
        now,
        7,
        Request::Write {
            offset: 0,
            data: vec![2; 512].into(),
        },
    );
    assert!(!run_disk(&mut r, now).iter().any(|e| matches!(e, Effect::Reply { .. })));
    let again = now + Duration::from_secs(1);
    r.handle_timeout(again);
    assert!(run_disk(&mut r, again)
        .iter()
        .any(|e| matches!(e, Effect::OutdatePeer { .. })));
    r.handle_outdate_rc(again, OutdateRc::Fenced);
    let out = run_disk(&mut r, again);
    assert!(
        out.contains(&Effect::Reply {
            req: 7,
            reply: Reply::Written(512)
        }),
        "{out:?}"
    );
    assert!(!r.status().frozen);
    assert_eq!(r.poll_timeout().filter(|t| *t <= again), None, "no deadline left due");
}

/// A crashed Primary comes back Consistent and the handshake finds its data the
/// newer: it becomes SyncSource and UpToDate, and says so to the peer (found by the
/// PostgreSQL test: it did not, so the new Primary on the other side showed its
/// peer Consistent for good, and the pair never read as in sync).
#[test]
fn a_consistent_side_found_newer_tells_the_peer_it_is_up_to_date() {
    let now = Instant::now();
    let mut m = meta(Flags::CONSISTENT | Flags::WAS_UP_TO_DATE | Flags::CRASHED_PRIMARY);
    m.gi.bitmap = 0xCD00; // the peer's current: this side moved on from it
    m.dirty.set(0);
    let mut r = Replica::new(settings(Fencing::ResourceOnly), m, now);
    assert_eq!(r.status().disk, DiskState::Consistent);
    r.handle_connected(now);
    let mut out = effects(&mut r);
    let mut peer = out
        .iter()
        .find_map(|e| match e {
            Effect::Send {
                frame: Frame::State(s), ..
            } => Some(*s),
            _ => None,
        })
        .expect("a STATE at connect");
    peer.disk = DiskState::UpToDate;
    peer.primary = false;
    peer.gi.current = 0xCD00;
    peer.gi.bitmap = 0;
    peer.flags = 0;
    r.handle_frame(now, 1, Frame::State(peer));
    r.handle_frame(now, 2, Frame::DirtyMap { bytes: vec![0; 2] });
    out.extend(run_disk(&mut r, now));
    r.handle_frame(now, 3, answer_decision(&out));
    out.extend(run_disk(&mut r, now));
    assert_eq!(r.status().conn, Conn::SyncSource, "{out:?}");
    // The STATE at connect said Consistent; one after it says UpToDate.
    let told: Vec<DiskState> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Send {
                frame: Frame::State(s), ..
            } => Some(s.disk),
            _ => None,
        })
        .collect();
    assert_eq!(told, vec![DiskState::Consistent, DiskState::UpToDate], "{out:?}");
}

#[test]
fn a_sequential_writer_finds_the_next_extents_marked_and_a_random_one_does_not() {
    let now = Instant::now();
    let mut r = Replica::new(settings(Fencing::ResourceOnly), meta(up_to_date()), now);
    r.handle_command(now, 1, PROMOTE);
    run_disk(&mut r, now);
    let write = |r: &mut Replica, req: u64, extent: u64| {
        r.handle_request(
            now,
            req,
            Request::Write {
                offset: extent * 4096,
                data: vec![req as u8; 4096].into(),
            },
        );
    };
    let metas = |out: &[Effect]| {
        out.iter()
            .filter(|e| {
                matches!(
                    e,
                    Effect::Disk {
                        op: DiskOp::Meta(_),
                        ..
                    }
                )
            })
            .count()
    };
    let dirty = |r: &Replica| (0..8).filter(|&e| r.meta().dirty.get(e)).collect::<Vec<u64>>();
    write(&mut r, 10, 0);
    run_disk(&mut r, now);
    assert_eq!(dirty(&r), [0], "a first write marks its own extent only");
    // Into the next extent: that one and the two after it, in one metadata write.
    write(&mut r, 11, 1);
    let out = effects(&mut r);
    assert_eq!(metas(&out), 1, "{out:?}");
    for e in out {
        if let Effect::Disk { io, op } = e {
            assert!(matches!(op, DiskOp::Meta(_)), "the write waits for its bit: {op:?}");
            r.handle_io(now, io, Ok(None));
        }
    }
    run_disk(&mut r, now);
    assert_eq!(dirty(&r), [0, 1, 2, 3]);
    // The writer reaches extent 2: its bit is durable, so the write goes out at
    // once, not held until the metadata write marking the next one completes.
    write(&mut r, 12, 2);
    let out = effects(&mut r);
    assert!(
        out.iter().any(|e| matches!(
            e,
            Effect::Disk {
                op: DiskOp::Write { offset: 8192, .. },
                ..
            }
        )),
        "the write to a marked extent was held: {out:?}"
    );
    for e in out {
        if let Effect::Disk { io, .. } = e {
            r.handle_io(now, io, Ok(None));
        }
    }
    run_disk(&mut r, now);
    assert_eq!(dirty(&r), [0, 1, 2, 3, 4], "one more marked ahead");
    // A write far away (the extent before it clean) marks only its own.
    write(&mut r, 13, 6);
    run_disk(&mut r, now);
    assert!(r.meta().dirty.get(6) && !r.meta().dirty.get(7), "{:?}", dirty(&r));
}
