//! The replication link's frames: one TCP connection per replica, frames in order.
//!
//! Each frame is a 24-byte little-endian header — magic, type, flags, sequence
//! number, payload length, CRC32C — and its payload. The CRC covers the header
//! (with the CRC field zero) and the payload; a mismatch drops the connection, as
//! DRBD's `data-integrity-alg` does, and the reconnect resyncs what was in flight.
//! Peers authenticate at connect (HELLO, then AUTH with an HMAC over both nonces);
//! the codec only carries the bytes.
//!
//! [`decode`] takes a buffer that may hold a partial frame and never panics on any
//! input: a frame that cannot be one is an error naming what is wrong.

use super::data::Data;
use super::gi::{DiskState, Gi};

pub const MAGIC: u32 = 0x5042_5231; // "PBR1"
pub const HEADER: usize = 24;
/// Largest payload: a 1 MiB write (FUSE's largest here) with its offset.
pub const MAX_PAYLOAD: usize = (1 << 20) + 64;
/// The protocol version HELLO carries.
pub const PROTOCOL: u16 = 1;

/// Everything that goes over the replication link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame each way.
    Hello(Hello),
    /// HMAC over the handshake (see the worker's `auth`).
    Auth {
        mac: Vec<u8>,
    },
    /// Role, disk, generations: at handshake and on every change.
    State(State),
    /// The sender's dirty-extent map (merged into the receiver's at connect).
    DirtyMap {
        bytes: Vec<u8>,
    },
    /// The connecting side's handshake result; the other checks it is the mirror
    /// of its own. `code` is DRBD's uuid_compare number after the disk-state and
    /// discard overrides; `sync_uuid` is what a target adopts.
    Decision {
        rule: u8,
        code: i32,
        sync_uuid: u64,
    },
    Write {
        offset: u64,
        data: Data,
    },
    /// The write with this frame's sequence number is in the peer's backing file.
    WriteAck,
    Discard {
        offset: u64,
        len: u64,
    },
    /// Make everything before this durable.
    Flush,
    /// Everything up to this flush is durable on the peer.
    FlushAck,
    /// Resync data, in ascending offset order.
    RsData {
        offset: u64,
        data: Data,
    },
    RsAck {
        offset: u64,
        len: u64,
    },
    /// The resync is complete; the target adopts this tuple.
    RsDone {
        gi: Gi,
    },
    Ping,
    Pong,
    /// A clean disconnect; `outdated` says the sender persisted Outdated first.
    Bye {
        outdated: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub protocol: u16,
    pub node: u8,
    pub resource: [u8; 16],
    pub size: u64,
    pub extent: u32,
    pub nonce: [u8; 32],
    /// The replica's name, for log lines on a mismatch.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub primary: bool,
    pub disk: DiskState,
    pub gi: Gi,
    pub flags: u32,
    pub dirty: u64,
}

/// A frame as read: its sequence number, flags and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub seq: u64,
    pub flags: u16,
    pub frame: Frame,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a pairbeat replica frame (magic {0:#010x}): is something else listening on the replication port?")]
    Magic(u32),
    #[error("frame of {0} bytes is larger than the protocol allows ({MAX_PAYLOAD})")]
    TooLong(usize),
    #[error("frame checksum mismatch (corrupted on the link)")]
    Checksum,
    #[error("unknown frame type {0}: the peer runs a newer protocol")]
    Type(u16),
    #[error("malformed {kind} frame: {what}")]
    Payload { kind: &'static str, what: String },
}

fn type_of(f: &Frame) -> u16 {
    match f {
        Frame::Hello(_) => 1,
        Frame::Auth { .. } => 2,
        Frame::State(_) => 3,
        Frame::DirtyMap { .. } => 4,
        Frame::Decision { .. } => 5,
        Frame::Write { .. } => 10,
        Frame::WriteAck => 11,
        Frame::Discard { .. } => 12,
        Frame::Flush => 13,
        Frame::FlushAck => 14,
        Frame::RsData { .. } => 20,
        Frame::RsAck { .. } => 21,
        Frame::RsDone { .. } => 22,
        Frame::Ping => 30,
        Frame::Pong => 31,
        Frame::Bye { .. } => 32,
    }
}

fn disk_code(d: DiskState) -> u8 {
    match d {
        DiskState::Diskless => 0,
        DiskState::Inconsistent => 1,
        DiskState::Outdated => 2,
        DiskState::Consistent => 3,
        DiskState::UpToDate => 4,
    }
}

fn put_gi(p: &mut Vec<u8>, g: &Gi) {
    for u in [g.current, g.bitmap, g.history[0], g.history[1]] {
        p.extend_from_slice(&u.to_le_bytes());
    }
}

/// Appends `f`'s payload to `p`, all but a write's or resync block's data (see
/// [`Encoded`]).
fn payload(f: &Frame, p: &mut Vec<u8>) {
    match f {
        Frame::Hello(h) => {
            p.extend_from_slice(&h.protocol.to_le_bytes());
            p.push(h.node);
            p.extend_from_slice(&h.resource);
            p.extend_from_slice(&h.size.to_le_bytes());
            p.extend_from_slice(&h.extent.to_le_bytes());
            p.extend_from_slice(&h.nonce);
            p.extend_from_slice(h.name.as_bytes());
        }
        Frame::Auth { mac } => p.extend_from_slice(mac),
        Frame::State(s) => {
            p.push(u8::from(s.primary));
            p.push(disk_code(s.disk));
            put_gi(p, &s.gi);
            p.extend_from_slice(&s.flags.to_le_bytes());
            p.extend_from_slice(&s.dirty.to_le_bytes());
        }
        Frame::DirtyMap { bytes } => p.extend_from_slice(bytes),
        Frame::Decision { rule, code, sync_uuid } => {
            p.push(*rule);
            p.extend_from_slice(&code.to_le_bytes());
            p.extend_from_slice(&sync_uuid.to_le_bytes());
        }
        Frame::Write { offset, .. } | Frame::RsData { offset, .. } => p.extend_from_slice(&offset.to_le_bytes()),
        Frame::Discard { offset, len } | Frame::RsAck { offset, len } => {
            p.extend_from_slice(&offset.to_le_bytes());
            p.extend_from_slice(&len.to_le_bytes());
        }
        Frame::RsDone { gi } => put_gi(p, gi),
        Frame::Bye { outdated } => p.push(u8::from(*outdated)),
        Frame::WriteAck | Frame::Flush | Frame::FlushAck | Frame::Ping | Frame::Pong => {}
    }
}

/// One frame's bytes in two parts: the header with every field, and a write's or
/// resync block's data, shared with the disk's copy rather than copied (a socket
/// takes both in one `sendmsg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub head: Vec<u8>,
    pub data: Option<Data>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.head.len() + self.data.as_ref().map_or(0, |d| d.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes from `from` on, as at most two slices.
    pub fn slices(&self, from: usize) -> [&[u8]; 2] {
        let data = self.data.as_deref().unwrap_or(&[]);
        if from < self.head.len() {
            [&self.head[from..], data]
        } else {
            [&data[from - self.head.len()..], &[]]
        }
    }
}

/// One frame, encoded without copying its data.
pub fn encode_parts(seq: u64, flags: u16, frame: &Frame) -> Encoded {
    let data = match frame {
        Frame::Write { data, .. } | Frame::RsData { data, .. } => Some(data.clone()),
        _ => None,
    };
    let mut b = Vec::with_capacity(HEADER + 64);
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(&type_of(frame).to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&[0; 4]);
    payload(frame, &mut b);
    let len = (b.len() - HEADER + data.as_ref().map_or(0, |d| d.len())) as u32;
    b[16..20].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32c::crc32c(&b);
    if let Some(d) = &data {
        crc = crc32c::crc32c_append(crc, d);
    }
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    Encoded { head: b, data }
}

/// One frame's bytes, in one buffer.
pub fn encode(seq: u64, flags: u16, frame: &Frame) -> Vec<u8> {
    let Encoded { mut head, data } = encode_parts(seq, flags, frame);
    if let Some(d) = data {
        head.extend_from_slice(&d);
    }
    head
}

/// Reads fields off a payload, each read checked.
struct Reader<'a> {
    b: &'a [u8],
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(FrameError::Payload {
                kind: self.kind,
                what: format!("{what} is cut short"),
            });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self, what: &str) -> Result<u8, FrameError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().expect("2")))
    }
    fn u32(&mut self, what: &str) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4")))
    }
    fn u64(&mut self, what: &str) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8")))
    }
    fn gi(&mut self) -> Result<Gi, FrameError> {
        Ok(Gi {
            current: self.u64("current UUID")?,
            bitmap: self.u64("bitmap UUID")?,
            history: [self.u64("history UUID")?, self.u64("history UUID")?],
        })
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
    fn end(&self) -> Result<(), FrameError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Payload {
                kind: self.kind,
                what: format!("{} bytes left over", self.b.len()),
            })
        }
    }
    fn bad(&self, what: String) -> FrameError {
        FrameError::Payload { kind: self.kind, what }
    }
}

fn parse(ty: u16, body: &[u8]) -> Result<Frame, FrameError> {
    let kind = match ty {
        1 => "HELLO",
        2 => "AUTH",
        3 => "STATE",
        4 => "DIRTYMAP",
        5 => "DECISION",
        10 => "WRITE",
        11 => "WRITE_ACK",
        12 => "DISCARD",
        13 => "FLUSH",
        14 => "FLUSH_ACK",
        20 => "RS_DATA",
        21 => "RS_ACK",
        22 => "RS_DONE",
        30 => "PING",
        31 => "PONG",
        32 => "BYE",
        other => return Err(FrameError::Type(other)),
    };
    let mut r = Reader { b: body, kind };
    let frame = match ty {
        1 => {
            let protocol = r.u16("protocol")?;
            let node = r.u8("node")?;
            let resource = r.take(16, "resource UUID")?.try_into().expect("16");
            let size = r.u64("size")?;
            let extent = r.u32("extent")?;
            let nonce = r.take(32, "nonce")?.try_into().expect("32");
            let name = std::str::from_utf8(r.rest())
                .map_err(|_| r.bad("the name is not UTF-8".into()))?
                .to_string();
            Frame::Hello(Hello {
                protocol,
                node,
                resource,
                size,
                extent,
                nonce,
                name,
            })
        }
        2 => Frame::Auth { mac: r.rest().to_vec() },
        3 => {
            let primary = match r.u8("role")? {
                0 => false,
                1 => true,
                x => return Err(r.bad(format!("role {x}"))),
            };
            let disk = match r.u8("disk state")? {
                0 => DiskState::Diskless,
                1 => DiskState::Inconsistent,
                2 => DiskState::Outdated,
                3 => DiskState::Consistent,
                4 => DiskState::UpToDate,
                x => return Err(r.bad(format!("disk state {x}"))),
            };
            Frame::State(State {
                primary,
                disk,
                gi: r.gi()?,
                flags: r.u32("flags")?,
                dirty: r.u64("dirty count")?,
            })
        }
        4 => Frame::DirtyMap {
            bytes: r.rest().to_vec(),
        },
        5 => Frame::Decision {
            rule: r.u8("rule")?,
            code: r.u32("code")? as i32,
            sync_uuid: r.u64("sync UUID")?,
        },
        10 | 20 => {
            let offset = r.u64("offset")?;
            let data = Data::copy_from(r.rest());
            if data.is_empty() {
                return Err(r.bad("no data".into()));
            }
            if ty == 10 {
                Frame::Write { offset, data }
            } else {
                Frame::RsData { offset, data }
            }
        }
        12 | 21 => {
            let (offset, len) = (r.u64("offset")?, r.u64("length")?);
            if ty == 12 {
                Frame::Discard { offset, len }
            } else {
                Frame::RsAck { offset, len }
            }
        }
        22 => Frame::RsDone { gi: r.gi()? },
        32 => Frame::Bye {
            outdated: r.u8("outdated")? != 0,
        },
        11 => Frame::WriteAck,
        13 => Frame::Flush,
        14 => Frame::FlushAck,
        30 => Frame::Ping,
        _ => Frame::Pong,
    };
    r.end()?;
    Ok(frame)
}

/// The first frame in `buf`, and how many bytes it took; `Ok(None)` when `buf`
/// holds only part of one (read more and call again).
pub fn decode(buf: &[u8]) -> Result<Option<(Envelope, usize)>, FrameError> {
    let Some(head) = header(buf)? else {
        return Ok(None);
    };
    if buf.len() < HEADER + head.len {
        return Ok(None);
    }
    let crc = crc32c::crc32c_append(head.crc_start(buf), &buf[HEADER..HEADER + head.len]);
    if crc != head.crc {
        return Err(FrameError::Checksum);
    }
    let frame = parse(head.ty, &buf[HEADER..HEADER + head.len])?;
    Ok(Some((head.envelope(frame), HEADER + head.len)))
}

/// A header's fields, checked as far as they can be without the payload.
struct Header {
    ty: u16,
    flags: u16,
    seq: u64,
    len: usize,
    crc: u32,
}

fn header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let u32_at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().expect("4"));
    let magic = u32_at(0);
    if magic != MAGIC {
        return Err(FrameError::Magic(magic));
    }
    let len = u32_at(16) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    Ok(Some(Header {
        ty: u16::from_le_bytes([buf[4], buf[5]]),
        flags: u16::from_le_bytes([buf[6], buf[7]]),
        seq: u64::from_le_bytes(buf[8..16].try_into().expect("8")),
        len,
        crc: u32_at(20),
    }))
}

impl Header {
    /// The CRC of the header with its CRC field zero.
    fn crc_start(&self, buf: &[u8]) -> u32 {
        crc32c::crc32c_append(crc32c::crc32c(&buf[..20]), &[0; 4])
    }

    fn envelope(&self, frame: Frame) -> Envelope {
        Envelope {
            seq: self.seq,
            flags: self.flags,
            frame,
        }
    }
}

/// A WRITE's or RS_DATA's header and offset, whose data is yet to be read.
pub const DATA_HEAD: usize = HEADER + 8;

/// When `buf` starts with a WRITE or RS_DATA frame of at least `min` data bytes,
/// and holds its header and offset: the data's length. The reader then reads the
/// data straight into an aligned [`Data`] and calls [`decode_data`].
pub fn data_frame(buf: &[u8], min: usize) -> Result<Option<usize>, FrameError> {
    match header(buf)? {
        Some(h) if matches!(h.ty, 10 | 20) && h.len >= 8 + min.max(1) && buf.len() >= DATA_HEAD => Ok(Some(h.len - 8)),
        _ => Ok(None),
    }
}

/// The frame whose first [`DATA_HEAD`] bytes are `head` (see [`data_frame`]) and
/// whose data is `data`.
pub fn decode_data(head: &[u8], data: Data) -> Result<Envelope, FrameError> {
    let cut = || FrameError::Payload {
        kind: "WRITE",
        what: "the header or offset is cut short".into(),
    };
    let h = header(head)?.filter(|_| head.len() >= DATA_HEAD).ok_or_else(cut)?;
    let crc = crc32c::crc32c_append(
        crc32c::crc32c_append(h.crc_start(head), &head[HEADER..DATA_HEAD]),
        &data,
    );
    if crc != h.crc {
        return Err(FrameError::Checksum);
    }
    let offset = u64::from_le_bytes(head[HEADER..DATA_HEAD].try_into().expect("8"));
    Ok(h.envelope(if h.ty == 10 {
        Frame::Write { offset, data }
    } else {
        Frame::RsData { offset, data }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_frame() -> Vec<Frame> {
        let gi = Gi {
            current: 0xA1,
            bitmap: 4,
            history: [7, 0],
        };
        vec![
            Frame::Hello(Hello {
                protocol: PROTOCOL,
                node: 1,
                resource: [9; 16],
                size: 1 << 30,
                extent: 4 << 20,
                nonce: [3; 32],
                name: "r0".into(),
            }),
            Frame::Auth { mac: vec![1; 32] },
            Frame::State(State {
                primary: true,
                disk: DiskState::UpToDate,
                gi,
                flags: 0x31,
                dirty: 12,
            }),
            Frame::DirtyMap { bytes: vec![0xff, 1] },
            Frame::Decision {
                rule: 50,
                code: -1,
                sync_uuid: 77,
            },
            Frame::Write {
                offset: 4096,
                data: vec![0xee; 4096].into(),
            },
            Frame::WriteAck,
            Frame::Discard {
                offset: 0,
                len: 1 << 20,
            },
            Frame::Flush,
            Frame::FlushAck,
            Frame::RsData {
                offset: 8 << 20,
                data: vec![1; 100].into(),
            },
            Frame::RsAck {
                offset: 8 << 20,
                len: 100,
            },
            Frame::RsDone { gi },
            Frame::Ping,
            Frame::Pong,
            Frame::Bye { outdated: true },
        ]
    }

    #[test]
    fn every_frame_round_trips_also_when_it_arrives_in_pieces() {
        let mut stream = Vec::new();
        let frames = every_frame();
        for (i, f) in frames.iter().enumerate() {
            stream.extend(encode(i as u64, 0, f));
        }
        // Fed a byte at a time, the decoder waits, then yields each frame whole.
        let (mut buf, mut got) = (Vec::new(), Vec::new());
        for b in stream {
            buf.push(b);
            while let Some((env, used)) = decode(&buf).unwrap() {
                buf.drain(..used);
                got.push(env);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got.iter().map(|e| e.frame.clone()).collect::<Vec<_>>(), frames);
        assert!(got.iter().enumerate().all(|(i, e)| e.seq == i as u64));
    }

    #[test]
    fn a_data_frame_decodes_the_same_read_in_two_parts() {
        for frame in [
            Frame::Write {
                offset: 8192,
                data: Data::copy_from(&[0xab; 12288]),
            },
            Frame::RsData {
                offset: 1 << 20,
                data: Data::copy_from(&[3; 5000]),
            },
        ] {
            let parts = encode_parts(7, 0, &frame);
            assert_eq!(parts.head.len(), DATA_HEAD, "the data is not in the head");
            let whole = encode(7, 0, &frame);
            assert_eq!(parts.len(), whole.len());
            for from in [0, 5, DATA_HEAD, DATA_HEAD + 100] {
                assert_eq!(parts.slices(from).concat(), whole[from..], "the slices from {from}");
            }
            assert_eq!(
                data_frame(&whole[..DATA_HEAD - 1], 4096),
                Ok(None),
                "offset not read yet"
            );
            assert_eq!(data_frame(&whole, 1 << 20), Ok(None), "smaller than the minimum");
            let len = data_frame(&whole[..DATA_HEAD], 4096).unwrap().expect("a data frame");
            let data = Data::copy_from(&whole[DATA_HEAD..]);
            assert_eq!(len, data.len());
            let env = decode_data(&whole[..DATA_HEAD], data.clone()).unwrap();
            assert_eq!(Some((env.clone(), whole.len())), decode(&whole).unwrap());
            assert_eq!(env.frame, frame);
            let mut bad = whole[DATA_HEAD..].to_vec();
            bad[len - 1] ^= 1;
            assert_eq!(
                decode_data(&whole[..DATA_HEAD], Data::from(bad)),
                Err(FrameError::Checksum)
            );
            assert!(
                decode_data(&whole[..HEADER], data).is_err(),
                "a cut head is an error, not a panic"
            );
        }
        assert_eq!(data_frame(&encode(1, 0, &Frame::Ping), 0), Ok(None), "not a data frame");
    }

    #[test]
    fn a_corrupted_frame_is_refused_with_its_reason() {
        let good = encode(
            1,
            0,
            &Frame::Write {
                offset: 0,
                data: vec![5; 512].into(),
            },
        );
        for at in [4, 8, 30, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert_eq!(decode(&bad), Err(FrameError::Checksum), "flip at {at}");
        }
        let mut other = good.clone();
        other[0] = b'G';
        assert!(matches!(decode(&other), Err(FrameError::Magic(_))));
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&(u32::MAX).to_le_bytes());
        assert!(matches!(decode(&huge), Err(FrameError::TooLong(_))));
        // A checksummed frame whose payload is nonsense for its type.
        let mut body = encode(1, 0, &Frame::Ping);
        body[4] = 99;
        let crc = {
            let mut c = body.clone();
            c[20..24].fill(0);
            crc32c::crc32c(&c)
        };
        body[20..24].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&body), Err(FrameError::Type(99)));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let frames = every_frame();
        for round in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut b = encode(round, 0, &frames[(rng % frames.len() as u64) as usize]);
            // Random damage, then a valid checksum so the payload parser is reached.
            let n = b.len();
            for _ in 0..1 + rng % 4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = HEADER.min(n - 1) + (rng as usize % (n - HEADER.min(n - 1)).max(1));
                if i < n {
                    b[i] = rng as u8;
                }
            }
            if rng % 3 == 0 {
                b.truncate(HEADER + (rng as usize % (n - HEADER + 1)));
                let len = (b.len() - HEADER) as u32;
                b[16..20].copy_from_slice(&len.to_le_bytes());
            }
            if rng % 5 == 0 {
                b[4] = (rng >> 8) as u8 % 40;
            }
            b[20..24].fill(0);
            let crc = crc32c::crc32c(&b);
            b[20..24].copy_from_slice(&crc.to_le_bytes());
            let _ = decode(&b);
        }
    }
}
