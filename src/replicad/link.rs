//! The replication link: one TCP connection to the peer's replicad. The node listed
//! first in `[cluster]` connects (every second until it succeeds), the other
//! listens; either way HELLO and AUTH (`crate::replica::hello`) come first, and a
//! peer that fails them is dropped with a log line that says why.
//!
//! Connecting and the handshake are tokio tasks; a connection in use is served by
//! two plain threads (`Outlet`): a reader that hands each batch of frames straight
//! to the replica's core, and a writer for what a non-blocking send could not
//! take. The data path thus never waits for the event loop to be scheduled.

use std::collections::VecDeque;
use std::io::{IoSlice, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::config::replica::ReplicaConfig;
use crate::config::{AuthKey, Config};
use crate::replica::data::Data;
use crate::replica::hello::{auth_input, check_hello};
use crate::replica::meta::Meta;
use crate::replica::wire::{self, Encoded, Envelope, Frame, Hello, DATA_HEAD, PROTOCOL};
use crate::wire::auth::{digest, verify};

/// How long a peer has to finish HELLO and AUTH.
const HANDSHAKE: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(1);
/// How long a closed outlet may take to send what it holds.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// An authenticated connection, with any bytes read past AUTH.
pub struct Conn {
    id: u64,
    stream: TcpStream,
    rest: Vec<u8>,
}

#[derive(Clone)]
struct Me {
    name: String,
    node: u8,
    resource: [u8; 16],
    size: u64,
    extent: u32,
    key: AuthKey,
}

pub struct Link {
    me: Me,
    local: SocketAddr,
    peer: SocketAddr,
    connects: bool,
    events: mpsc::UnboundedSender<Conn>,
    trying: Option<tokio::task::JoinHandle<()>>,
    next_id: u64,
}

impl Link {
    pub fn new(config: &Config, r: &ReplicaConfig, meta: &Meta, events: mpsc::UnboundedSender<Conn>) -> Self {
        let me = config.local;
        Link {
            me: Me {
                name: r.name.clone(),
                node: me as u8,
                resource: meta.resource,
                size: meta.size,
                extent: meta.extent,
                key: config.auth.signing_key().clone(),
            },
            local: SocketAddr::new(r.address[me], r.port),
            peer: SocketAddr::new(r.address[1 - me], r.port),
            connects: me == 0,
            events,
            trying: None,
            next_id: 1,
        }
    }

    /// Keeps a connection attempt running while the core wants a link and has none.
    pub fn want(&mut self, wants: bool) {
        // Once a connection is up, `wants` is false until it goes away again.
        if !wants {
            if let Some(t) = self.trying.take() {
                t.abort();
            }
            return;
        }
        if self.trying.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let (me, events) = (self.me.clone(), self.events.clone());
        let (local, peer, connects) = (self.local, self.peer, self.connects);
        self.trying = Some(tokio::spawn(async move {
            loop {
                let attempt = if connects {
                    connect(peer).await
                } else {
                    accept(local).await
                };
                match attempt {
                    Ok((stream, from)) => match tokio::time::timeout(HANDSHAKE, handshake(&me, stream)).await {
                        Ok(Ok((stream, rest))) => {
                            log::info!("replication link up with {from}");
                            let _ = events.send(Conn { id, stream, rest });
                            return;
                        }
                        Ok(Err(why)) => log::warn!("replication peer {from} refused: {why}"),
                        Err(_) => log::warn!(
                            "replication peer {from} refused: no HELLO and AUTH within {} s",
                            HANDSHAKE.as_secs()
                        ),
                    },
                    Err(e) => log::debug!("replication link: {e}"),
                }
                tokio::time::sleep(RETRY).await;
            }
        }));
    }
}

impl Conn {
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// What the reader thread hands over: frames decoded from one read, in order.
pub type Frames = Vec<Envelope>;

/// The sending half of a connection in use, called under the replica's lock.
///
/// A frame goes out on the caller's thread with a non-blocking `send` when nothing
/// is queued before it (nearly always): no thread hand-off between the core's
/// decision and the socket. What the socket cannot take at once is queued for the
/// connection's writer thread, which blocks on it outside every lock, so a peer
/// that stops reading never holds up this side's reader (two replicads each stuck
/// writing to the other under their locks would wait for ever).
pub struct Outlet {
    id: u64,
    sock: Arc<std::net::TcpStream>,
    out: Arc<(Mutex<Outbox>, Condvar)>,
    writer: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Outbox {
    frames: VecDeque<Encoded>,
    /// How much of the first frame has gone already.
    sent: usize,
    /// The writer thread holds a frame taken from the front.
    busy: bool,
    closed: bool,
    broken: bool,
}

/// The receiving half of a connection, not yet reading: the outlet is installed
/// first, so no frame can arrive before the core knows the connection.
pub struct Reader {
    id: u64,
    sock: Arc<std::net::TcpStream>,
    rest: Vec<u8>,
}

/// Starts the connection's writer thread and returns both halves.
pub fn open(conn: Conn) -> std::io::Result<(Outlet, Reader)> {
    let Conn { id, stream, rest } = conn;
    let sock = stream.into_std()?;
    // Blocking for the two threads; the callers' sends pass MSG_DONTWAIT instead.
    sock.set_nonblocking(false)?;
    let sock = Arc::new(sock);
    let out = Arc::new((Mutex::new(Outbox::default()), Condvar::new()));
    let (ws, wo) = (Arc::clone(&sock), Arc::clone(&out));
    let writer = std::thread::Builder::new()
        .name(format!("link-wr-{id}"))
        .spawn(move || write_queued(&ws, &wo))?;
    let outlet = Outlet {
        id,
        sock: Arc::clone(&sock),
        out,
        writer: Some(writer),
    };
    Ok((outlet, Reader { id, sock, rest }))
}

impl Reader {
    /// Starts the reader thread. It calls `on_frames` with what each read
    /// completed, and `on_down` once, when the connection ends (closed by the peer,
    /// an error, a frame that does not decode, or the outlet's `close`).
    pub fn start(
        self,
        mut on_frames: impl FnMut(Frames) + Send + 'static,
        on_down: impl FnOnce(String) + Send + 'static,
    ) -> std::io::Result<()> {
        let Reader { id, sock, rest } = self;
        std::thread::Builder::new()
            .name(format!("link-rd-{id}"))
            .spawn(move || on_down(read_frames(&sock, rest, &mut on_frames)))
            .map(drop)
    }
}

/// Reads until the connection ends; returns why it did.
///
/// A write's or resync block's data is read into its own aligned `Data`, straight
/// from the socket for whatever part is not buffered yet: the disk writes it as it
/// is (O_DIRECT), and a megabyte frame is never shifted along a buffer.
fn read_frames(mut sock: &std::net::TcpStream, rest: Vec<u8>, on_frames: &mut impl FnMut(Frames)) -> String {
    let mut inbox = Inbox::new(rest);
    let mut frames = Vec::new();
    let bad = |e: wire::FrameError| format!("bad frame from the peer: {e}");
    loop {
        loop {
            let buf = inbox.filled();
            match wire::data_frame(buf, 1).map_err(bad) {
                Err(why) => return why,
                Ok(Some(len)) => {
                    let mut head = [0u8; DATA_HEAD];
                    head.copy_from_slice(&buf[..DATA_HEAD]);
                    let have = (buf.len() - DATA_HEAD).min(len);
                    if have < len && !frames.is_empty() {
                        // The core hears of what came before while the rest arrives.
                        on_frames(std::mem::take(&mut frames));
                    }
                    let data = Data::filled(len, |d| {
                        d[..have].copy_from_slice(&buf[DATA_HEAD..DATA_HEAD + have]);
                        sock.read_exact(&mut d[have..])
                    });
                    inbox.consume(DATA_HEAD + have);
                    match data {
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            return "the peer closed the connection".into()
                        }
                        Err(e) => return format!("read: {e}"),
                        Ok(data) => match wire::decode_data(&head, data) {
                            Ok(env) => frames.push(env),
                            Err(e) => return bad(e),
                        },
                    }
                }
                Ok(None) => match wire::decode(buf) {
                    Ok(Some((env, n))) => {
                        inbox.consume(n);
                        frames.push(env);
                    }
                    Ok(None) => break,
                    Err(e) => return bad(e),
                },
            }
        }
        if !frames.is_empty() {
            on_frames(std::mem::take(&mut frames));
        }
        match inbox.read_from(sock) {
            Ok(0) => return "the peer closed the connection".into(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return format!("read: {e}"),
        }
    }
}

/// The reader's buffer: bytes read and not yet decoded are `buf[lo..hi]`.
struct Inbox {
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
}

impl Inbox {
    const START: usize = 256 * 1024;

    fn new(mut rest: Vec<u8>) -> Inbox {
        let hi = rest.len();
        rest.resize(hi.max(Self::START), 0);
        Inbox { buf: rest, lo: 0, hi }
    }

    fn filled(&self) -> &[u8] {
        &self.buf[self.lo..self.hi]
    }

    fn consume(&mut self, n: usize) {
        self.lo += n;
        if self.lo == self.hi {
            (self.lo, self.hi) = (0, 0);
        }
    }

    /// One read into the free space, made first by moving what is left to the
    /// front (a partial header or small frame) or, for a large control frame
    /// (a dirty map), by growing up to the largest frame.
    fn read_from(&mut self, mut sock: &std::net::TcpStream) -> std::io::Result<usize> {
        if self.hi == self.buf.len() {
            if self.lo > 0 {
                self.buf.copy_within(self.lo..self.hi, 0);
                self.hi -= self.lo;
                self.lo = 0;
            } else {
                let more = (self.buf.len() * 2)
                    .min(wire::HEADER + wire::MAX_PAYLOAD)
                    .max(self.hi + 1);
                self.buf.resize(more, 0);
            }
        }
        let n = sock.read(&mut self.buf[self.hi..])?;
        self.hi += n;
        Ok(n)
    }
}

/// The writer thread: sends what the callers could not, then shuts the socket
/// once the outlet is closed and everything queued has gone.
fn write_queued(sock: &std::net::TcpStream, out: &(Mutex<Outbox>, Condvar)) {
    let (lock, cv) = out;
    let mut o = lock.lock().expect("outbox lock");
    loop {
        if let Some(frame) = o.frames.pop_front() {
            let from = std::mem::take(&mut o.sent);
            o.busy = true;
            drop(o);
            // Blocking: all of it, or the connection is gone.
            let sent = send_from(sock, &frame, from, 0).is_ok_and(|n| n == frame.len());
            o = lock.lock().expect("outbox lock");
            o.busy = false;
            if !sent {
                o.broken = true;
                o.frames.clear();
                let _ = sock.shutdown(std::net::Shutdown::Both);
                return;
            }
        } else if o.closed {
            let _ = sock.shutdown(std::net::Shutdown::Both);
            return;
        } else {
            o = cv.wait(o).expect("outbox lock");
        }
    }
}

/// Sends `frame` from byte `from` on, and returns how far it got: all of it, or,
/// with `MSG_DONTWAIT` in `flags`, where the socket could take no more.
fn send_from(
    sock: &std::net::TcpStream,
    frame: &Encoded,
    mut from: usize,
    flags: libc::c_int,
) -> std::io::Result<usize> {
    let sock = socket2::SockRef::from(sock);
    while from < frame.len() {
        let [a, b] = frame.slices(from);
        match sock.send_vectored_with_flags(&[IoSlice::new(a), IoSlice::new(b)], flags | libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => from += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(from)
}

impl Outlet {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends `frame` after everything sent before. Never blocks.
    pub fn send(&self, frame: Encoded) {
        let (lock, cv) = &*self.out;
        let mut o = lock.lock().expect("outbox lock");
        if o.closed || o.broken {
            return;
        }
        if o.frames.is_empty() && !o.busy {
            match send_from(&self.sock, &frame, 0, libc::MSG_DONTWAIT) {
                Ok(off) if off == frame.len() => return,
                // The writer thread sends the rest, from here.
                Ok(off) => o.sent = off,
                Err(_) => {
                    // The reader sees the end and reports it.
                    o.broken = true;
                    let _ = self.sock.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
        o.frames.push_back(frame);
        cv.notify_one();
    }

    /// Sends what is queued, then closes the connection (the peer, and this side's
    /// reader, see the end).
    ///
    /// A peer that stopped reading (dead, but its TCP connection not timed out)
    /// would keep the writer blocked on a full socket for as long as TCP retries,
    /// with the frames' memory: after `CLOSE_GRACE` the socket is shut regardless.
    pub fn close(&self) {
        let (lock, cv) = &*self.out;
        let mut o = lock.lock().expect("outbox lock");
        let pending = !o.closed && (o.busy || !o.frames.is_empty());
        o.closed = true;
        cv.notify_one();
        drop(o);
        if pending {
            let sock = Arc::clone(&self.sock);
            let _ = std::thread::Builder::new().name("link-close".into()).spawn(move || {
                std::thread::sleep(CLOSE_GRACE);
                let _ = sock.shutdown(std::net::Shutdown::Both);
            });
        }
    }

    /// `close`, and waits up to a second for the queue to go out (a BYE before the
    /// process exits).
    pub async fn flush(mut self) {
        self.close();
        if let Some(w) = self.writer.take() {
            for _ in 0..100 {
                if w.is_finished() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

impl Drop for Outlet {
    /// An outlet let go of still sends what it holds, and closes its connection.
    fn drop(&mut self) {
        self.close();
    }
}

async fn connect(peer: SocketAddr) -> std::io::Result<(TcpStream, SocketAddr)> {
    let s = TcpStream::connect(peer).await?;
    s.set_nodelay(true)?;
    Ok((s, peer))
}

async fn accept(local: SocketAddr) -> std::io::Result<(TcpStream, SocketAddr)> {
    let sock = socket2::Socket::new(socket2::Domain::for_address(local), socket2::Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&local.into())?;
    sock.listen(4)?;
    let listener = TcpListener::from_std(sock.into())?;
    let (s, from) = listener.accept().await?;
    s.set_nodelay(true)?;
    Ok((s, from))
}

/// HELLO both ways, then AUTH both ways. Returns the stream and any bytes read past
/// the peer's AUTH.
async fn handshake(me: &Me, mut s: TcpStream) -> Result<(TcpStream, Vec<u8>), String> {
    let mut nonce = [0u8; 32];
    super::getrandom(&mut nonce);
    let mine = Hello {
        protocol: PROTOCOL,
        node: me.node,
        resource: me.resource,
        size: me.size,
        extent: me.extent,
        nonce,
        name: me.name.clone(),
    };
    s.write_all(&wire::encode(0, 0, &Frame::Hello(mine.clone())))
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let theirs = match next_frame(&mut s, &mut buf).await? {
        Frame::Hello(h) => h,
        other => return Err(format!("expected HELLO, got {other:?}")),
    };
    check_hello(&mine, &theirs)?;
    let mac = digest(&me.key, &auth_input(&me.name, &mine, &theirs)).into_bytes();
    s.write_all(&wire::encode(0, 0, &Frame::Auth { mac }))
        .await
        .map_err(|e| e.to_string())?;
    match next_frame(&mut s, &mut buf).await? {
        Frame::Auth { mac } if verify(&me.key, &auth_input(&me.name, &theirs, &mine), &mac) => Ok((s, buf)),
        Frame::Auth { .. } => {
            Err("its AUTH does not verify: a different key (authkeys), or replayed handshake bytes".into())
        }
        other => Err(format!("expected AUTH, got {other:?}")),
    }
}

async fn next_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Frame, String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((env, used)) = wire::decode(buf).map_err(|e| e.to_string())? {
            buf.drain(..used);
            return Ok(env.frame);
        }
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A connection to a peer that accepts and then never reads: the outlet's queue
    /// fills and its writer thread blocks in `write`.
    async fn stalled_outlet() -> (Outlet, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let (peer, _) = listener.accept().unwrap();
        let (outlet, _reader) = open(Conn {
            id: 1,
            stream,
            rest: Vec::new(),
        })
        .unwrap();
        let frame = Frame::Write {
            offset: 0,
            data: Data::zeroed(1 << 20),
        };
        for seq in 0..64 {
            outlet.send(wire::encode_parts(seq, 0, &frame));
        }
        (outlet, peer)
    }

    #[tokio::test]
    async fn a_dropped_outlet_whose_peer_stopped_reading_lets_its_writer_go() {
        let (mut outlet, _peer) = stalled_outlet().await;
        let writer = outlet.writer.take().expect("a writer thread");
        let o = &outlet.out.0;
        for _ in 0..100 {
            if o.lock().unwrap().busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(o.lock().unwrap().busy, "the writer is blocked on the full socket");
        let t0 = Instant::now();
        drop(outlet);
        while !writer.is_finished() {
            assert!(
                t0.elapsed() < CLOSE_GRACE + Duration::from_secs(3),
                "the writer still blocks {} s after the drop",
                t0.elapsed().as_secs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            t0.elapsed() >= CLOSE_GRACE - Duration::from_millis(100),
            "what was queued got its grace"
        );
    }
}
