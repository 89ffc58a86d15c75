//! The replica's fence-peer handler: a Primary that lost its peer asks the local
//! pairbeatd (its control socket, `outdate-peer`) to have the peer's replica
//! outdated over the heartbeat links, and hands the answer to the core, which
//! resumes or keeps I/O frozen by its `fencing` mode.
//!
//! A thread of its own: the ask waits for the peer (up to `outdate_timeout`, and for
//! the fencing device after that), and nothing may wait under the hub's lock. A
//! pairbeatd that is restarting is tried again until `outdate_timeout` has passed;
//! one that never answers counts as a failed handler (DRBD's "fence-peer helper
//! broken"): with `resource-and-stonith` I/O stays frozen, and `pairbeat replica
//! resume-io` is the operator's override.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::hub::Hub;
use crate::control::client::{request_within, ClientError};
use crate::control::Request;
use crate::replica::gi::Gi;
use crate::replica::state::OutdateRc;

/// How long an answer may take beyond `outdate_timeout`: the fencing device's run.
const FENCE_BUDGET: Duration = Duration::from_secs(300);
/// Between attempts to reach a pairbeatd that does not listen (restarting).
const RETRY: Duration = Duration::from_millis(200);

/// Starts the thread; the hub's outdate asks go to it from now on.
pub fn start(hub: &Arc<Hub>, socket: PathBuf, name: String, outdate_timeout: Duration) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<Gi>();
    let h = Arc::clone(hub);
    std::thread::Builder::new()
        .name(format!("outdate-{name}"))
        .spawn(move || {
            for gi in rx {
                let (rc, detail) = ask(&socket, &name, gi, outdate_timeout);
                log::warn!("outdate-peer for {name}: {} ({detail})", rc.words());
                h.handle(|c, now| c.replica.handle_outdate_rc(now, rc));
            }
        })?;
    hub.handle(|c, _| c.outdater = Some(tx));
    Ok(())
}

/// One ask, answered: DRBD's code and what pairbeatd said.
fn ask(socket: &std::path::Path, name: &str, gi: Gi, outdate_timeout: Duration) -> (OutdateRc, String) {
    let req = Request::OutdatePeer {
        replica: name.to_string(),
        generations: gi.to_string(),
    };
    let until = Instant::now() + outdate_timeout;
    loop {
        match request_within(socket, &req, outdate_timeout + FENCE_BUDGET) {
            Ok(resp) => {
                let text = resp.message.unwrap_or_default();
                return match OutdateRc::from_answer(&text) {
                    Some(rc) => (rc, text),
                    None => (OutdateRc::Failed, format!("pairbeatd's answer has no code: {text:?}")),
                };
            }
            Err(ClientError::Connect { .. }) if Instant::now() + RETRY < until => std::thread::sleep(RETRY),
            Err(e) => return (OutdateRc::Failed, e.to_string()),
        }
    }
}
