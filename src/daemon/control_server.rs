//! The daemon side of the control socket: bind safely, check who is asking, answer.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::{Gid, Uid};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::config::DaemonSettings;
use crate::control::{parse_request, Request, Response, MAX_REQUEST_BYTES};

/// Concurrent CLI connections, so a runaway script cannot exhaust fds. When all
/// are taken, the one that has waited longest for a request is dropped for the
/// newcomer: clients that connect and say nothing never lock the others out.
const MAX_CLIENTS: usize = 32;
/// A client that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(30);

/// The clients waiting for their next request line, oldest first: who gives up
/// its slot when all are taken.
#[derive(Default)]
struct Idle {
    next: u64,
    waiting: std::collections::VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>,
}

impl Idle {
    fn enter(&mut self) -> (u64, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.next += 1;
        self.waiting.push_back((self.next, tx));
        (self.next, rx)
    }

    fn leave(&mut self, id: u64) {
        self.waiting.retain(|(i, _)| *i != id);
    }

    /// Drops the client idle the longest; false if none is idle.
    fn evict_oldest(&mut self) -> bool {
        while let Some((_, tx)) = self.waiting.pop_front() {
            if tx.send(()).is_ok() {
                return true;
            }
        }
        false
    }
}

#[derive(Default)]
struct IdleShared {
    idle: std::sync::Mutex<Idle>,
    /// A client began to wait for a request: the acceptor, waiting for a slot,
    /// may take that one's.
    became_idle: tokio::sync::Notify,
}

type IdleClients = Arc<IdleShared>;

fn idle_lock(idle: &IdleClients) -> std::sync::MutexGuard<'_, Idle> {
    idle.idle.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another pairbeatd already answers on {0}; stop it first, or give this one another [daemon] socket")]
    InUse(PathBuf),
    #[error("cannot create the control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("socket_group `{0}` does not exist")]
    NoGroup(String),
}

/// Who may talk to the daemon, fixed at bind time.
#[derive(Clone, Copy)]
struct Allowed {
    gid: Option<Gid>,
}

pub struct Listener {
    inner: UnixListener,
    allowed: Allowed,
}

/// Binds the control socket: a live socket is never stolen, a stale one is replaced,
/// and the file is never reachable with looser permissions than configured.
pub fn bind(settings: &DaemonSettings) -> Result<Listener, BindError> {
    let path = &settings.socket;
    let io_err = |source| BindError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.clone()));
        }
        // Left behind by a daemon that died: nobody listens, so it is safe to replace.
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let gid = match &settings.socket_group {
        None => None,
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| BindError::NoGroup(name.clone()))?
                .gid,
        ),
    };
    // umask closes the window between bind() and chmod() in which others could connect.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let std_listener = bound.map_err(io_err)?;
    if let Some(gid) = gid {
        nix::unistd::chown(path.as_path(), None, Some(gid)).map_err(|e| io_err(e.into()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io_err)?;
    }
    std_listener.set_nonblocking(true).map_err(io_err)?;
    let inner = UnixListener::from_std(std_listener).map_err(io_err)?;
    Ok(Listener {
        inner,
        allowed: Allowed { gid },
    })
}

/// A request, carried to the main loop (which alone owns the engines and the status)
/// and answered from there.
pub struct Command {
    pub request: Request,
    pub reply: tokio::sync::oneshot::Sender<Response>,
}

pub async fn serve(listener: Listener, commands: tokio::sync::mpsc::Sender<Command>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let idle = IdleClients::default();
    loop {
        let (stream, _) = match listener.inner.accept().await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Full: the longest-idle client makes room; with none idle yet (clients
        // just accepted have not read yet), wait for a slot or for one to idle.
        // (Found by the flood test: waiting for a slot alone, 32 silent clients
        // held the socket for their whole idle timeout.)
        let permit = loop {
            if let Ok(p) = slots.clone().try_acquire_owned() {
                break p;
            }
            if idle_lock(&idle).evict_oldest() {
                log::debug!("control socket: {MAX_CLIENTS} clients connected; dropped the one idle longest");
            }
            tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => break p,
                    Err(_) => return,
                },
                _ = idle.became_idle.notified() => {}
            }
        };
        let allowed = listener.allowed;
        let commands = commands.clone();
        let idle = idle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = client(stream, allowed, commands, idle).await {
                log::debug!("control client: {e}");
            }
        });
    }
}

async fn client(
    stream: UnixStream,
    allowed: Allowed,
    commands: tokio::sync::mpsc::Sender<Command>,
    idle: IdleClients,
) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if let Err(why) = authorize(Uid::from_raw(cred.uid()), Gid::from_raw(cred.gid()), allowed) {
        log::warn!("control socket: refused uid {} ({why})", cred.uid());
        return write_response(&mut write, &Response::error(why)).await;
    }
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let (id, evicted) = idle_lock(&idle).enter();
        idle.became_idle.notify_one();
        let mut limited = (&mut reader).take(MAX_REQUEST_BYTES as u64 + 1);
        let read = tokio::time::timeout(IDLE, limited.read_until(b'\n', &mut line));
        let n = tokio::select! {
            r = read => match r {
                Ok(r) => r,
                Err(_) => Ok(0), // idle
            },
            _ = evicted => Ok(0), // its slot went to a newcomer
        };
        idle_lock(&idle).leave(id);
        let n = n?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_REQUEST_BYTES {
            let resp = Response::error(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
            return write_response(&mut write, &resp).await;
        }
        let resp = match std::str::from_utf8(&line)
            .map_err(|_| "request is not UTF-8".to_string())
            .and_then(parse_request)
        {
            // Every request, status included, is answered by the main loop: one place.
            Ok(request) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                match commands.send(Command { request, reply }).await {
                    Ok(()) => answer
                        .await
                        .unwrap_or_else(|_| Response::error("the daemon is shutting down")),
                    Err(_) => Response::error("the daemon is shutting down"),
                }
            }
            Err(e) => Response::error(e),
        };
        write_response(&mut write, &resp).await?;
    }
}

async fn write_response(w: &mut tokio::net::unix::OwnedWriteHalf, resp: &Response) -> io::Result<()> {
    let mut text = serde_json::to_string(resp).map_err(io::Error::other)?;
    text.push('\n');
    w.write_all(text.as_bytes()).await
}

/// Root, the daemon's own user, or a member of `socket_group` may talk to the daemon.
fn authorize(uid: Uid, gid: Gid, allowed: Allowed) -> Result<(), String> {
    if uid.is_root() || uid == Uid::effective() {
        return Ok(());
    }
    let Some(group) = allowed.gid else {
        return Err(format!(
            "permission denied: uid {uid} is not root (no [daemon] socket_group is configured)"
        ));
    };
    if gid == group {
        return Ok(());
    }
    // Supplementary membership: the group's member list names the user.
    let user = nix::unistd::User::from_uid(uid).ok().flatten();
    let member = nix::unistd::Group::from_gid(group).ok().flatten();
    if let (Some(user), Some(g)) = (user, member) {
        if g.mem.contains(&user.name) {
            return Ok(());
        }
    }
    Err(format!(
        "permission denied: uid {uid} is neither root nor in the socket group"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_self_are_allowed_others_are_not() {
        let none = Allowed { gid: None };
        assert!(authorize(Uid::from_raw(0), Gid::from_raw(0), none).is_ok());
        assert!(authorize(Uid::effective(), Gid::from_raw(12345), none).is_ok());
        // A uid that is neither root nor this process.
        let stranger = if Uid::effective().as_raw() == 54321 {
            54322
        } else {
            54321
        };
        {
            let e = authorize(Uid::from_raw(stranger), Gid::from_raw(54321), none).unwrap_err();
            assert!(e.contains("permission denied"), "{e}");
            let g = Allowed {
                gid: Some(Gid::from_raw(777)),
            };
            assert!(authorize(Uid::from_raw(stranger), Gid::from_raw(777), g).is_ok());
            assert!(authorize(Uid::from_raw(stranger), Gid::from_raw(778), g).is_err());
        }
    }
}
