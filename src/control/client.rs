//! A blocking client for the control socket; the CLI needs one request, not a runtime.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no pairbeatd answers on {path} ({source}); is the daemon running?")]
    Connect { path: String, source: std::io::Error },
    /// The socket is there, but its permissions keep this user out.
    #[error("permission denied on {path}: {who}")]
    Denied { path: String, who: String },
    #[error("lost the connection to pairbeatd on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("pairbeatd on {path} sent an answer this pairbeat cannot read ({detail}); are the daemon and the CLI the same version?")]
    Garbled { path: String, detail: String },
    #[error("pairbeatd refused: {0}")]
    Refused(String),
}

/// Who the socket's owner and mode let in, and what this user can do about it:
/// pairbeatd makes the socket 0600 (root only), or 0660 in `socket_group`.
fn who_may(socket: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(socket) else {
        return "its directory keeps this user out; run as root".into();
    };
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| meta.gid().to_string());
    if meta.mode() & 0o060 == 0o060 && meta.gid() != 0 {
        format!(
            "pairbeatd lets root and members of group `{group}` ([daemon] socket_group) talk to it; run as root, or add this user to `{group}` (usermod -aG {group} USER, then log in again)"
        )
    } else {
        "pairbeatd lets only root talk to it; run as root, or name a group of yours in [daemon] socket_group of pairbeat.toml and restart pairbeatd".into()
    }
}

/// How long the CLI waits for the daemon before giving up: status must never hang a shell.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one request and returns the daemon's answer.
pub fn request(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    request_within(socket, req, TIMEOUT)
}

/// `request`, waiting at most `limit` for the answer (an outdate ask waits for the
/// peer, and perhaps for fencing it).
pub fn request_within(socket: &Path, req: &Request, limit: Duration) -> Result<Response, ClientError> {
    let path = socket.display().to_string();
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    let stream = UnixStream::connect(socket).map_err(|source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ClientError::Denied {
                path: path.clone(),
                who: who_may(socket),
            }
        } else {
            ClientError::Connect {
                path: path.clone(),
                source,
            }
        }
    })?;
    stream.set_read_timeout(Some(limit)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_string(req).expect("requests always serialize");
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ClientError::Garbled {
            path,
            detail: "empty answer".into(),
        });
    }
    let resp: Response = serde_json::from_str(&answer).map_err(|e| ClientError::Garbled {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    if !resp.ok {
        return Err(ClientError::Refused(
            resp.error.unwrap_or_else(|| "no reason given".into()),
        ));
    }
    Ok(resp)
}
