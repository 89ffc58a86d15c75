//! `pairbeatd`: the tokio shell around the pure core.
//!
//! It owns everything that does I/O: the control socket, signals, (in later
//! stages) the heartbeat sockets, agent processes and the single timer. Today it
//! loads the configuration, serves `status` on the control socket, reloads on
//! SIGHUP (keeping the running configuration when the new one is invalid), and
//! shuts down cleanly on SIGTERM or SIGINT.

mod control_server;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, Config};
use crate::control::status::{DaemonInfo, Status};

pub use control_server::BindError;

/// What the daemon was started with.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    /// Overrides the hostname as this node's name.
    pub node: Option<String>,
}

/// State the control server reads and the rest of the daemon updates.
pub struct Shared {
    pub config: Config,
    pub status: Status,
    pub started: Instant,
}

impl Shared {
    /// A consistent snapshot for one status request.
    pub fn snapshot(&self) -> Status {
        let mut s = self.status.clone();
        s.daemon.uptime_ms = self.started.elapsed().as_millis() as u64;
        s
    }
}

fn daemon_info(config: &Config) -> DaemonInfo {
    DaemonInfo {
        pid: std::process::id(),
        config: std::path::absolute(&config.path)
            .unwrap_or_else(|_| config.path.clone())
            .display()
            .to_string(),
        started_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        uptime_ms: 0,
    }
}

/// Runs the daemon until SIGTERM/SIGINT. The config must already be validated.
pub async fn run(opts: Options, config: Config) -> Result<(), String> {
    prepare_state_dir(&config)?;
    let status = Status::initial(&config, daemon_info(&config));
    let socket_path = config.daemon.socket.clone();
    let listener = control_server::bind(&config.daemon).map_err(|e| e.to_string())?;
    log::info!(
        "pairbeatd {} started: cluster {}, this node {}, control socket {}",
        env!("CARGO_PKG_VERSION"),
        config.cluster_name,
        config.local_name(),
        socket_path.display()
    );
    let shared = Arc::new(Mutex::new(Shared {
        config,
        status,
        started: Instant::now(),
    }));

    let server = tokio::spawn(control_server::serve(listener, shared.clone()));
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
    loop {
        tokio::select! {
            _ = term.recv() => { log::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { log::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => reload(&opts, &shared),
        }
    }
    server.abort();
    // Only remove the socket we created; another daemon may have replaced it meanwhile.
    let _ = std::fs::remove_file(&socket_path);
    log::info!("pairbeatd stopped");
    Ok(())
}

/// SIGHUP: read the configuration again; a bad one changes nothing.
fn reload(opts: &Options, shared: &Arc<Mutex<Shared>>) {
    log::info!("SIGHUP: reloading {}", opts.config_path.display());
    match config::load(&opts.config_path, opts.node.as_deref()) {
        Ok((new, warnings)) => {
            for w in &warnings.items {
                log::warn!("{}", w.to_string().lines().next().unwrap_or(""));
            }
            let mut s = shared.lock().unwrap();
            if new.daemon.socket != s.config.daemon.socket {
                log::warn!("[daemon] socket changed; the new path takes effect at the next restart");
            }
            let info = s.status.daemon.clone();
            s.status = Status::initial(&new, info);
            s.config = new;
            log::info!("configuration reloaded");
        }
        Err(diags) => {
            for d in &diags.items {
                log::error!("{}", d.to_string().lines().next().unwrap_or(""));
            }
            log::error!(
                "reload refused: {} error(s) in {}; still running the previous configuration",
                diags.error_count(),
                opts.config_path.display()
            );
        }
    }
}

/// The state directory holds the generation counter and records; root-only.
fn prepare_state_dir(config: &Config) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = &config.daemon.state_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create state directory {}: {e}", dir.display()))
}
