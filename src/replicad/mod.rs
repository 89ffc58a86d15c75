//! `pairbeat-replicad`: the shell around one replica's pure core
//! (`crate::replica::state::Replica`).
//!
//! One process per replicated disk. It owns the I/O: the disk threads (backing image
//! and metadata file, results in the core's order), the replication link (TCP: the node
//! listed first in `[cluster]` connects, the other listens; HELLO and AUTH before
//! anything else), the control socket `replica/NAME.sock` beside pairbeatd's (by
//! default `/run/pairbeat/replica/NAME.sock`) that the
//! `pairbeat replica` commands and the agents speak to, and the one timer. The core
//! decides; every input reaches it through `hub` with the monotonic clock, and its
//! effects are carried out in order by the thread that brought the input. This
//! event loop brings commands, timers, new connections and the device's attach and
//! detach; the data path (block requests, frames, finished disk operations) goes
//! to the hub from its own threads without waking this loop.
//!
//! A Primary serves the block device (`device`: a FUSE file seen only in this
//! process's mount namespace, a loop device on it, the symlink `replica/NAME.dev`).
//!
//! It is the worker of `supervisor`: each tick of this loop says so on the pipe,
//! with the age of the oldest unanswered block request, so a hung loop is aborted
//! and killed from outside. A failure the supervisor recorded
//! (`replica/NAME.failed`) is reported in the status until `secondary`
//! acknowledges it.
//!
//! A Primary that loses its peer asks pairbeatd (its control socket,
//! `outdate-peer`) to have the peer's replica outdated over the heartbeat links
//! (`crate::outdate`); the answer decides whether I/O resumes. A pairbeatd that
//! does not answer counts as a failed handler.

pub mod control;
pub mod create;
pub mod device;
pub mod disk;
mod hub;
mod link;
mod outdater;
pub mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::config::replica::ReplicaConfig;
use crate::config::Config;
use crate::replica::state::{CmdId, Command, Replica, Settings};
use control::{Answer, ReplicaStatus, Request};

/// What the event loop is woken by (the data path does not come here: see `hub`).
enum Wake {
    Link(link::Conn),
    Control(Request, oneshot::Sender<Answer>),
    /// A device attached (for this promotion) or detached (for this demotion, or
    /// for the stop), off the loop: the loop device's ioctls call back through FUSE,
    /// which the FUSE threads must keep serving meanwhile.
    Attached(CmdId, Result<device::Device, String>),
    Detached(Option<CmdId>, Result<(), Box<(device::Device, String)>>),
    Timer,
    /// Another thread changed what the loop sleeps on.
    Kick,
    /// The supervisor's tick.
    Tick,
    Stop,
}

/// What the event loop keeps besides the hub.
struct Shell {
    name: String,
    size: u64,
    run_dir: PathBuf,
    hub: Arc<hub::Hub>,
    link: link::Link,
    dev_tx: mpsc::UnboundedSender<Wake>,
    beat: supervisor::Beat,
    /// What the supervisor recorded of the last Primary's failure.
    failed: Option<String>,
}

pub struct Options {
    pub config: Config,
    pub name: String,
    /// Test-only: writes since the last flush are lost at a kill (PAIRBEAT_REPLICA_VOLATILE=1).
    pub volatile: bool,
    /// The pipe to the supervisor.
    pub beat: supervisor::Beat,
}

/// The replica's settings for the core, from its config section.
pub fn settings(config: &Config, r: &ReplicaConfig) -> Settings {
    Settings {
        me: config.local as u32,
        fencing: r.fencing,
        timeout: r.timeout,
        ping_interval: r.ping_interval,
        resync_rate: r.resync_rate,
        al_interval: r.al_interval,
        ask_again: r.outdate_timeout,
        chunk: 1 << 20,
        window: 32 << 20,
        salt: rand_u64(),
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom(&mut b);
    u64::from_le_bytes(b)
}

/// Fills `b` from the kernel's random source.
pub(crate) fn getrandom(b: &mut [u8]) {
    // /dev/urandom never blocks once the system is up, and needs no extra crate.
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(b);
    }
}

/// The control socket of replica `name`.
pub fn socket_path(config: &Config, name: &str) -> PathBuf {
    crate::config::replica::run_dir(config).join(format!("{name}.sock"))
}

/// Why the daemon could not run, with its exit status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration or the metadata can never work as they are (EX_CONFIG, 78:
    /// systemd does not restart it).
    #[error("{0}")]
    Config(String),
    /// Something of the host's failed and may pass (EX_OSERR, 71).
    #[error("{0}")]
    Os(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 78,
            Error::Os(_) => 71,
        }
    }
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(opts: Options) -> Result<(), Error> {
    inner(opts).await
}

async fn inner(opts: Options) -> Result<(), Error> {
    let Options {
        config,
        name,
        volatile,
        beat,
    } = opts;
    let Some(r) = config.replicas.iter().find(|r| r.name == name).cloned() else {
        let known: Vec<&str> = config.replicas.iter().map(|r| r.name.as_str()).collect();
        return Err(Error::Config(format!(
            "{}: no [[replica]] named `{name}` (configured: {})",
            config.path.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    };
    // Before the metadata is read: nobody edits it from here on.
    let _meta_lock = match disk::lock_meta(&r.meta) {
        Ok(l) => l,
        Err(e) if !r.meta.exists() => {
            return Err(Error::Config(format!(
                "{e}; create it with `pairbeat replica create {name}`"
            )))
        }
        Err(e) => return Err(Error::Os(e)),
    };
    let meta = disk::read_meta(&r.meta)
        .map_err(|e| Error::Config(format!("{e}; create it with `pairbeat replica create {name}`")))?;
    let expected = create::resource_of(&config, &r);
    if meta.resource != expected || meta.size != r.size || meta.extent != r.extent {
        return Err(Error::Config(format!(
            "{}: the metadata belongs to another replica (resource, size or extent differ from [[replica]] `{name}`); re-create it with `pairbeat replica create {name} --force`",
            r.meta.display()
        )));
    }
    let now = Instant::now();
    let replica = Replica::new(settings(&config, &r), meta, now);

    let d = disk::Disk::open(&r.backing, &r.meta, r.extent, volatile).map_err(|e| {
        Error::Os(format!(
            "cannot open {} and {}: {e}",
            r.backing.display(),
            r.meta.display()
        ))
    })?;
    let disk_state = replica.status().disk;
    let (link_tx, mut link_rx) = mpsc::unbounded_channel();
    let link = link::Link::new(&config, &r, replica.meta(), link_tx);
    let hub =
        hub::Hub::start(replica, d, &name).map_err(|e| Error::Os(format!("cannot start the disk threads: {e}")))?;

    outdater::start(&hub, config.daemon.socket.clone(), name.clone(), r.outdate_timeout)
        .map_err(|e| Error::Os(format!("cannot start the outdate thread: {e}")))?;

    let run_dir = crate::config::replica::run_dir(&config);
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::Os(format!("cannot create {}: {e}", run_dir.display())))?;
    // A Secondary publishes no device: a link left by a worker that died is stale.
    let _ = std::fs::remove_file(run_dir.join(format!("{name}.dev")));
    let failed = std::fs::read_to_string(supervisor::failed_path(&run_dir, &name))
        .ok()
        .map(|s| s.trim().to_string());
    if let Some(f) = &failed {
        log::error!("the last Primary of {name} failed: {f}; `pairbeat replica secondary {name}` acknowledges it");
    }
    let sock = socket_path(&config, &name);
    let _ = std::fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).map_err(|e| Error::Os(format!("cannot listen on {}: {e}", sock.display())))?;
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600)).ok();
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
    tokio::spawn(control::serve(listener, ctl_tx));

    let (dev_tx, mut dev_rx) = mpsc::unbounded_channel();
    let mut sh = Shell {
        name: name.clone(),
        size: r.size,
        run_dir,
        hub: Arc::clone(&hub),
        link,
        dev_tx,
        beat,
        failed,
    };
    let mut tick = tokio::time::interval(supervisor::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    let mut next_cmd: CmdId = 1;
    let signal = |k| tokio::signal::unix::signal(k).map_err(|e| Error::Os(format!("signals: {e}")));
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    log::info!(
        "pairbeat-replicad {}: replica {name}, {} bytes, {} on {}, peer {}:{}",
        env!("CARGO_PKG_VERSION"),
        r.size,
        disk_state,
        r.backing.display(),
        r.address[1 - config.local],
        r.port
    );

    loop {
        let (look, deadline) = hub.arm();
        sh.link.want(look);
        sh.attach_granted();
        let wake = tokio::select! {
            Some(c) = link_rx.recv() => Wake::Link(c),
            Some(d) = dev_rx.recv() => d,
            Some((req, answer)) = ctl_rx.recv() => Wake::Control(req, answer),
            _ = sleep_until(deadline) => Wake::Timer,
            _ = hub.kick.notified() => Wake::Kick,
            _ = tick.tick() => Wake::Tick,
            _ = term.recv() => Wake::Stop,
            _ = int.recv() => Wake::Stop,
        };
        match wake {
            Wake::Link(conn) => hub.adopt(conn),
            Wake::Control(req, answer) => {
                let id = next_cmd;
                next_cmd += 1;
                let primary = hub.handle(|c, _| c.replica.is_primary());
                if req == Request::Secondary && !primary {
                    let _ = answer.send(Answer::message(sh.acknowledge()));
                    continue;
                }
                if req == Request::Down {
                    if primary {
                        let _ = answer.send(Answer::error(format!(
                            "refusing to stop while Primary: demote first (`pairbeat replica secondary {name}`)"
                        )));
                        continue;
                    }
                    let _ = answer.send(Answer::message("stopping"));
                    // Let the control task write the answer before the loop ends.
                    for _ in 0..8 {
                        tokio::task::yield_now().await;
                    }
                    return sh.stop(next_cmd, &sock).await;
                }
                if let (Request::Primary { .. }, Some(f)) = (&req, &sh.failed) {
                    let _ = answer.send(Answer::error(format!(
                        "refusing to promote: the last Primary failed ({f}); once nothing uses its old device, acknowledge with `pairbeat replica secondary {name}`"
                    )));
                    continue;
                }
                if req == Request::Secondary {
                    // The device goes first; `Device::detach` refuses while a
                    // filesystem on it is mounted, and `Detached` says so.
                    if let Some(dev) = hub.handle(|c, _| c.device.take()) {
                        hub.handle(|c, _| c.waiting.insert(id, answer));
                        sh.detach(dev, Some(id));
                        continue;
                    }
                }
                match req.into_command() {
                    Err(e) => {
                        let _ = answer.send(Answer::error(format!("bad request: {e}")));
                    }
                    Ok(Some(cmd)) => hub.handle(|c, now| {
                        if matches!(cmd, Command::Promote { .. }) && !c.replica.is_primary() {
                            c.promoting = Some(id);
                        }
                        c.waiting.insert(id, answer);
                        c.replica.handle_command(now, id, cmd);
                    }),
                    Ok(None) => {
                        let failed = sh.failed.clone();
                        let st = hub.handle(|c, _| {
                            let mut st = status(&name, &c.replica);
                            st.device = c.device.as_ref().map(|d| d.loop_dev.display().to_string());
                            if st.failed.is_none() {
                                st.failed = failed;
                            }
                            st
                        });
                        let _ = answer.send(Answer::status(st));
                    }
                }
            }
            Wake::Attached(cmd, result) => {
                let name = &name;
                let announce = hub.handle(|c, now| {
                    let said = c
                        .attach
                        .take()
                        .filter(|(k, _)| *k == cmd)
                        .map(|(_, m)| m)
                        .unwrap_or_default();
                    let (answer, conn) = match result {
                        Ok(dev) => {
                            let path = dev.loop_dev.display().to_string();
                            log::info!(
                                "serving {name} as {path} ({})",
                                sh.run_dir.join(format!("{name}.dev")).display()
                            );
                            let conn = dev.fuse_conn;
                            c.device = Some(dev);
                            (Answer::message(format!("{said}, device {path}")), conn)
                        }
                        Err(e) => {
                            // No device, no Primary: step back.
                            log::error!("{e}");
                            c.replica.handle_command(now, 0, Command::Demote);
                            let a = Answer::error(format!(
                                "promoted, but the device could not be served, so demoted again: {e}"
                            ));
                            (a, None)
                        }
                    };
                    if let Some(tx) = c.waiting.remove(&cmd) {
                        let _ = tx.send(answer);
                    }
                    conn
                });
                if let Some(conn) = announce {
                    sh.beat.say(supervisor::Line::Fuse(conn));
                }
            }
            Wake::Detached(cmd, result) => {
                match result {
                    Ok(()) => {
                        sh.beat.say(supervisor::Line::NoFuse);
                        if let Some(cmd) = cmd {
                            hub.handle(|c, now| c.replica.handle_command(now, cmd, Command::Demote));
                        }
                    }
                    Err(failed) => {
                        let (dev, e) = *failed;
                        let tx = hub.handle(|c, _| {
                            c.device = Some(dev);
                            cmd.and_then(|k| c.waiting.remove(&k))
                        });
                        if let Some(tx) = tx {
                            let _ = tx.send(Answer::error(format!("refusing to demote: {e}")));
                        }
                        if stopping {
                            log::warn!("stopping with the device still in use: {e}");
                        }
                    }
                }
                if stopping && cmd.is_none() {
                    return sh.stop(next_cmd, &sock).await;
                }
            }
            Wake::Timer => hub.handle(|c, now| c.replica.handle_timeout(now)),
            Wake::Kick => {}
            Wake::Tick => {
                let (oldest, frozen) = hub.handle(|c, now| {
                    let oldest = c
                        .pending
                        .values()
                        .next()
                        .map_or(0, |(t, _)| now.duration_since(*t).as_millis());
                    (oldest, c.replica.is_frozen())
                });
                sh.beat.say(supervisor::Line::Beat {
                    oldest_ms: oldest as u64,
                    frozen,
                });
            }
            Wake::Stop => {
                stopping = true;
                match hub.handle(|c, _| c.device.take()) {
                    Some(dev) => sh.detach(dev, None),
                    None => return sh.stop(next_cmd, &sock).await,
                }
            }
        }
    }
}

impl Shell {
    /// Leaves cleanly: the core says BYE (a Secondary leaving a Primary outdates
    /// itself first), the link sends it, the socket goes.
    async fn stop(&mut self, cmd: CmdId, sock: &std::path::Path) -> Result<(), Error> {
        if let Some(outlet) = self.hub.stop(cmd) {
            outlet.flush().await;
        }
        log::info!("pairbeat-replicad: replica {} stopped", self.name);
        let _ = std::fs::remove_file(sock);
        Ok(())
    }

    /// `secondary` on a Secondary: clears a recorded failure, if there is one.
    fn acknowledge(&mut self) -> String {
        match self.failed.take() {
            Some(f) => {
                let _ = std::fs::remove_file(supervisor::failed_path(&self.run_dir, &self.name));
                log::info!("the operator acknowledged the failure of the last Primary: {f}");
                format!("already Secondary; acknowledged the last Primary's failure ({f})")
            }
            None => "already Secondary".into(),
        }
    }

    /// Detaches the device on a thread of its own; the loop hears back as `Detached`.
    fn detach(&mut self, dev: device::Device, cmd: Option<CmdId>) {
        let tx = self.dev_tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Wake::Detached(cmd, dev.detach()));
        });
    }

    /// Attaches the device of a promotion the core granted, on a thread of its
    /// own; the loop hears back as `Attached`.
    fn attach_granted(&mut self) {
        let Some(cmd) = self.hub.handle(|c, _| c.attach_start.take()) else {
            return;
        };
        let (run_dir, name, size, tx) = (self.run_dir.clone(), self.name.clone(), self.size, self.dev_tx.clone());
        let hub = Arc::clone(&self.hub);
        let submit: device::Submit = Arc::new(move |req, reply| hub.submit(req, reply));
        std::thread::spawn(move || {
            let _ = tx.send(Wake::Attached(cmd, device::attach(&run_dir, &name, size, submit)));
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// The status the control socket reports.
pub fn status(name: &str, r: &Replica) -> ReplicaStatus {
    ReplicaStatus::from_core(name, &r.status())
}
