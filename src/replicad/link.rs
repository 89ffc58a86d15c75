//! The replication link: one TCP connection to the peer's replicad. The node listed
//! first in `[cluster]` connects (every second until it succeeds), the other
//! listens; either way HELLO and AUTH (`crate::replica::hello`) come first, and a
//! peer that fails them is dropped with a log line that says why.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::config::replica::ReplicaConfig;
use crate::config::{AuthKey, Config};
use crate::replica::hello::{auth_input, check_hello};
use crate::replica::meta::Meta;
use crate::replica::wire::{self, Envelope, Frame, Hello, PROTOCOL};
use crate::wire::auth::{digest, verify};

/// How long a peer has to finish HELLO and AUTH.
const HANDSHAKE: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(1);

pub enum Event {
    /// An authenticated connection, with any bytes read past AUTH.
    Up(Conn),
    Frame(u64, Envelope),
    Down(u64, String),
}

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
    events: mpsc::UnboundedSender<Event>,
    /// The connection in use: its id and its writer.
    current: Option<(u64, mpsc::UnboundedSender<Vec<u8>>, tokio::task::JoinHandle<()>)>,
    trying: Option<tokio::task::JoinHandle<()>>,
    next_id: u64,
}

impl Link {
    pub fn new(config: &Config, r: &ReplicaConfig, meta: &Meta, events: mpsc::UnboundedSender<Event>) -> Self {
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
            current: None,
            trying: None,
            next_id: 1,
        }
    }

    /// Keeps a connection attempt running while the core wants a link and has none.
    pub fn want(&mut self, wants: bool) {
        if !wants {
            if let Some(t) = self.trying.take() {
                t.abort();
            }
            return;
        }
        if self.current.is_some() || self.trying.as_ref().is_some_and(|t| !t.is_finished()) {
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
                            let _ = events.send(Event::Up(Conn { id, stream, rest }));
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

    /// Starts reading and writing on an authenticated connection.
    pub fn adopt(&mut self, conn: Conn) -> bool {
        if self.current.is_some() {
            return false;
        }
        let Conn { id, stream, mut rest } = conn;
        let (mut rd, mut wr) = stream.into_split();
        let events = self.events.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                loop {
                    match wire::decode(&rest) {
                        Ok(Some((env, used))) => {
                            rest.drain(..used);
                            if events.send(Event::Frame(id, env)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = events.send(Event::Down(id, format!("bad frame from the peer: {e}")));
                            return;
                        }
                    }
                }
                match rd.read(&mut buf).await {
                    Ok(0) => {
                        let _ = events.send(Event::Down(id, "the peer closed the connection".into()));
                        return;
                    }
                    Ok(n) => rest.extend_from_slice(&buf[..n]),
                    Err(e) => {
                        let _ = events.send(Event::Down(id, format!("read: {e}")));
                        return;
                    }
                }
            }
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let events = self.events.clone();
        let writer = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if let Err(e) = wr.write_all(&bytes).await {
                    let _ = events.send(Event::Down(id, format!("write: {e}")));
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        self.current = Some((id, tx, writer));
        true
    }

    pub fn is_current(&self, id: u64) -> bool {
        self.current.as_ref().is_some_and(|c| c.0 == id)
    }

    /// Forgets the connection if `id` is the one in use; true if it was.
    pub fn drop_if_current(&mut self, id: u64) -> bool {
        if self.is_current(id) {
            self.disconnect();
            true
        } else {
            false
        }
    }

    pub fn send(&mut self, bytes: Vec<u8>) {
        if let Some((_, tx, _)) = &self.current {
            let _ = tx.send(bytes);
        }
    }

    pub fn disconnect(&mut self) {
        if let Some((_, tx, writer)) = self.current.take() {
            drop(tx);
            // The writer finishes what it holds and shuts the socket; the reader
            // then sees the close.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
            });
        }
    }

    /// Sends what is queued (a BYE) before the process exits.
    pub async fn flush(&mut self) {
        if let Some((_, tx, writer)) = self.current.take() {
            drop(tx);
            let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        }
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
