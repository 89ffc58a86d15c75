//! `pairbeatd`: the tokio shell around the pure node (`crate::node`).
//!
//! It owns everything that does I/O: the control socket, the link sockets, the
//! state files, agent and fencing processes, signals, and the single timer (a
//! timerfd armed at the node's next deadline: `loop_timer`). The
//! node decides; the shell hands it each input with the monotonic clock (and the
//! wall clock for timestamps only), then carries out every effect it queued, in
//! order ([`Shell::drain`]). Keepalives go out from this one loop, which never
//! waits: agents, probes and the fencing device run in tasks or threads, and the
//! state files are written by one writer thread, in order (`persister`); what must
//! follow a durable write (the group's start after a new epoch) is held until the
//! writer says it is on disk, keepalives are not.
//!
//! Before the node hears of a timer, the shell reads every datagram its sockets
//! already hold (`Shell::read_pending`): after a pause the keepalives the peer sent
//! meanwhile are seen before any deadline is believed.

mod control_server;
mod error;
mod loop_timer;
pub mod persister;
mod realtime;
mod replicas;
mod state_files;
mod systemd;
mod transport;

use std::path::PathBuf;
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::agent::{self, Paths, RunResult};
use crate::config::{self, Config};
use crate::control::status::{DaemonInfo, Status};
use crate::control::{Request, Response};
use crate::node::{self, Boot, Command, Effect, Node};

pub use control_server::BindError;
pub use error::Error;
pub use realtime::make_realtime;

/// What the daemon was started with.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    /// Overrides the hostname as this node's name.
    pub node: Option<String>,
}

fn wall_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn daemon_info(config: &Config) -> DaemonInfo {
    DaemonInfo {
        pid: std::process::id(),
        config: std::path::absolute(&config.path)
            .unwrap_or_else(|_| config.path.clone())
            .display()
            .to_string(),
        started_at: wall_secs(),
        uptime_ms: 0,
    }
}

/// Runs the daemon until SIGTERM/SIGINT. The config must already be validated.
pub async fn run(opts: Options, config: Config) -> Result<(), Error> {
    let mut shell = Shell::new(opts, config).await?;
    shell.run().await;
    Ok(())
}

/// What the agent, probe and fencing tasks report back to the loop.
enum Report {
    /// An agent operation finished: its id, the resource's index, the result.
    Agent(u64, usize, RunResult),
    Probe(crate::fence::probe::ProbeResult),
    Fence(crate::fence::device::FenceOutcome),
    DeviceCheck(crate::fence::device::FenceOutcome),
    /// A round of the replicas' poll is in: the promotion gate may have moved.
    Replicas,
    /// The state writer finished the write with this token (and all before it).
    Persisted(u64),
    /// The local replica answered the peer's outdate ask.
    Outdated {
        replica: String,
        ask: crate::outdate::AskId,
        rc: crate::replica::state::OutdateRc,
        detail: String,
    },
}

/// The shell's state: the node, its sockets, and the channels its tasks answer on.
struct Shell {
    opts: Options,
    config: Config,
    node: Node,
    /// `Status::initial` with the daemon's facts; the node fills in the rest.
    template: Status,
    /// What the replicas' daemons last said.
    replicas: replicas::Poller,
    /// The replicas the group runs (their names): the promotion gate.
    group_replicas: Vec<String>,
    started: Instant,
    sockets: Vec<transport::LinkSocket>,
    paths: Paths,
    reports_tx: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
    commands: mpsc::Receiver<control_server::Command>,
    server: tokio::task::JoinHandle<()>,
    notify: systemd::Notifier,
    last_status: String,
    /// Writes the state files off the loop, in order.
    persister: persister::Persister,
    /// A barrier write not yet on disk (its token): effects after it wait in `held`.
    awaiting: Option<u64>,
    held: std::collections::VecDeque<Effect>,
    /// The local replicas' outdate asks, answered when the relay has an answer.
    outdates: std::collections::HashMap<u64, tokio::sync::oneshot::Sender<Response>>,
    /// What agents set through pairbeat's crm_attribute and friends.
    attributes: crate::attributes::Attributes,
}

/// One unit of work for the loop, from whichever source was ready first.
enum Wake {
    Timer,
    /// A datagram of this many bytes on this link, in the loop's buffer.
    Datagram(usize, usize),
    Report(Report),
    Command(control_server::Command),
    DeviceMonitor,
    Watchdog,
    Term,
    Int,
    Hup,
}

impl Shell {
    async fn new(opts: Options, config: Config) -> Result<Shell, Error> {
        let state_dir = config.daemon.state_dir.clone();
        prepare_state_dir(&state_dir)?;
        let generation = state_files::next_generation(&state_dir, wall_secs()).map_err(Error::StateDir)?;
        let uuid = state_files::uuid(&state_dir).map_err(Error::StateDir)?;
        let boot = Boot {
            uuid,
            generation,
            peer_floor: state_files::load_peer(&state_dir),
            saved: state_files::load_saved(&state_dir),
        };
        // Link sockets before the control socket: a config that cannot bind is refused whole.
        let mut sockets = Vec::new();
        for link in &config.links {
            sockets.push(transport::open(link, config.local).map_err(Error::Link)?);
        }
        let socket_path = config.daemon.socket.clone();
        let listener = control_server::bind(&config.daemon)?;
        log::info!(
            "pairbeatd {} started: cluster {}, this node {} (generation {generation}), peer {}, {} link(s), control socket {}",
            env!("CARGO_PKG_VERSION"),
            config.cluster_name,
            config.local_name(),
            config.peer_name(),
            config.links.len(),
            socket_path.display()
        );
        let now = Instant::now();
        let mut node = Node::new(&config, boot, now);
        let paths = Paths {
            ocf_root: config.daemon.ocf_root.clone(),
            tools: agent_tools(&state_dir),
            socket: Some(std::path::absolute(&socket_path).unwrap_or_else(|_| socket_path.clone())),
            node: Some((
                config.local_name().to_string(),
                std::fs::canonicalize(&config.path).unwrap_or_else(|_| config.path.clone()),
            )),
            ..Paths::default()
        };
        load_metadata(&mut node, &paths, &config).await;
        let (reports_tx, reports) = mpsc::channel::<Report>(256);
        if let Some(t) = &config.tiebreak {
            let (probe_tx, mut probe_rx) = mpsc::channel(64);
            crate::fence::probe::spawn(&t.targets, t.interval, t.timeout, probe_tx);
            let tx = reports_tx.clone();
            tokio::spawn(async move {
                while let Some(p) = probe_rx.recv().await {
                    if tx.send(Report::Probe(p)).await.is_err() {
                        return;
                    }
                }
            });
        }
        let (cmd_tx, commands) = mpsc::channel::<control_server::Command>(16);
        let server = tokio::spawn(control_server::serve(listener, cmd_tx));
        let template = Status::initial(&config, daemon_info(&config));
        let (round_tx, mut round_rx) = mpsc::channel::<()>(4);
        let replicas = replicas::spawn(&config, template.replicas.clone(), round_tx);
        let tx = reports_tx.clone();
        tokio::spawn(async move {
            while round_rx.recv().await.is_some() {
                if tx.send(Report::Replicas).await.is_err() {
                    return;
                }
            }
        });
        let group_replicas = config.group.replicas();
        let tx = reports_tx.clone();
        let persister = persister::Persister::spawn(state_dir.clone(), move |token| {
            // Fails only once the loop is gone: nothing waits for the report then.
            let _ = tx.blocking_send(Report::Persisted(token));
        })
        .map_err(|e| Error::StateDir(format!("cannot start the state writer thread: {e}")))?;
        let shell = Shell {
            opts,
            node,
            template,
            replicas,
            group_replicas,
            started: now,
            sockets,
            paths,
            reports_tx,
            reports,
            commands,
            server,
            notify: systemd::Notifier::from_env(),
            last_status: String::new(),
            outdates: std::collections::HashMap::new(),
            persister,
            awaiting: None,
            held: std::collections::VecDeque::new(),
            attributes: Default::default(),
            config,
        };
        Ok(shell)
    }

    async fn run(&mut self) {
        // Config loaded, every socket bound: systemd may consider us started.
        self.notify.send("READY=1\nSTATUS=probing resources");
        self.last_status = "probing resources".to_string();
        self.node.start(Instant::now(), wall_secs());
        self.drain();
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                log::error!("{e}");
                return;
            }
        };
        let mut device_monitor = self
            .config
            .fence
            .as_ref()
            .map(|f| tokio::time::interval(f.monitor_interval));
        let mut watchdog = self.notify.watchdog.map(tokio::time::interval);
        let mut leaving = false;
        let mut timer = match loop_timer::LoopTimer::new() {
            Ok(t) => t,
            Err(e) => {
                log::error!("cannot create the loop's timer (timerfd): {e}");
                return;
            }
        };
        let mut buf = vec![0u8; crate::wire::MAX_DATAGRAM + 1];
        loop {
            if self.node.finished() {
                if self.node.engine().is_blocked() {
                    log::error!("exiting with the group BLOCKED: a stop failed; see `pairbeat status` after restart");
                }
                break;
            }
            timer.set(self.node.poll_timeout());
            let wake = tokio::select! {
                biased;
                _ = timer.wait() => Wake::Timer,
                (link, n) = recv_any(&self.sockets, &mut buf) => Wake::Datagram(link, n),
                Some(r) = self.reports.recv() => Wake::Report(r),
                Some(c) = self.commands.recv() => Wake::Command(c),
                _ = tick(&mut device_monitor) => Wake::DeviceMonitor,
                _ = tick(&mut watchdog) => Wake::Watchdog,
                _ = signals.term.recv() => Wake::Term,
                _ = signals.int.recv() => Wake::Int,
                _ = signals.hup.recv() => Wake::Hup,
            };
            match wake {
                Wake::Timer => {
                    self.read_pending(&mut buf);
                    self.node.handle_timeout(Instant::now(), wall_secs());
                }
                Wake::Datagram(link, n) => self.node.handle_datagram(Instant::now(), wall_secs(), link, &buf[..n]),
                Wake::Report(r) => self.on_report(r),
                Wake::Command(c) => self.on_command(c),
                Wake::DeviceMonitor => self.check_device(),
                Wake::Watchdog => {
                    // From the main loop itself: if it wedges, keepalives stop and so does this.
                    self.notify.send("WATCHDOG=1");
                }
                Wake::Term => {
                    self.notify
                        .send("STOPPING=1\nSTATUS=handing the group over and stopping");
                    if leaving {
                        log::warn!("second SIGTERM: exiting without waiting for the group to stop");
                        break;
                    }
                    leaving = true;
                    let _ = self.node.handle_command(Instant::now(), wall_secs(), Command::Leave);
                }
                Wake::Int => {
                    log::info!("SIGINT: exiting (resources are left as they are)");
                    break;
                }
                Wake::Hup => {
                    self.notify.send("RELOADING=1");
                    self.reload();
                    self.notify.send("READY=1");
                }
            }
            self.drain();
        }
        self.server.abort();
        // Only remove the socket we created; another daemon may have replaced it meanwhile.
        let _ = std::fs::remove_file(&self.config.daemon.socket);
        log::info!("pairbeatd stopped");
    }

    /// Hands the node every datagram the sockets already hold (without waiting):
    /// older news first, then the deadline.
    fn read_pending(&mut self, buf: &mut [u8]) {
        // Bounded, so a flood cannot hold the keepalive back for long.
        for _ in 0..256 {
            let mut got = false;
            for i in 0..self.sockets.len() {
                if let Ok((n, _)) = self.sockets[i].try_recv_from(buf) {
                    got = true;
                    self.node.handle_datagram(Instant::now(), wall_secs(), i, &buf[..n]);
                }
            }
            if !got {
                return;
            }
        }
    }

    /// Carries out what the node queued, in order; while a barrier write is on its
    /// way to disk, everything but keepalives and log lines waits behind it.
    fn drain(&mut self) {
        loop {
            let e = match self.awaiting {
                None => self.held.pop_front().or_else(|| self.node.poll_effect()),
                Some(_) => self.node.poll_effect(),
            };
            let Some(e) = e else { break };
            if self.awaiting.is_some() && !matches!(e, Effect::Transmit(_) | Effect::Log(_)) {
                self.held.push_back(e);
                continue;
            }
            match e {
                Effect::Transmit(bytes) => self.transmit(&bytes),
                Effect::RunAgent(req) => {
                    if let Err(why) = self.node.admit(&req) {
                        log::warn!("{why}");
                        let refused = crate::resources::Outcome::Error(crate::resources::Severity::Soft, 1);
                        self.node
                            .handle_agent_result(Instant::now(), wall_secs(), req.id, refused, Some(why));
                        continue;
                    }
                    let r = self.config.group.resources[req.rsc].clone();
                    let (paths, tx) = (self.paths.clone(), self.reports_tx.clone());
                    tokio::spawn(async move {
                        let result = agent::run_op(&paths, &r, req.action, req.timeout, req.reassert).await;
                        let _ = tx.send(Report::Agent(req.id, req.rsc, result)).await;
                    });
                }
                Effect::FencePeer { peer_runs_group } => self.fence_peer(peer_runs_group),
                Effect::Persist(p) => {
                    let barrier = persister::is_barrier(&p);
                    let token = self.persister.write(p);
                    if barrier {
                        self.awaiting = Some(token);
                    }
                }
                Effect::Log(n) => log::log!(n.level, "{}", n.text),
                Effect::OutdateLocal { replica, ask, gi } => self.outdate_local(replica, ask, gi),
                Effect::Replica(action) => self.replica_command(action),
                Effect::OutdateAnswered { id, rc, detail } => {
                    if let Some(reply) = self.outdates.remove(&id) {
                        let _ = reply.send(Response::done(format!("{}: {detail}", rc.code())));
                    }
                }
            }
        }
        let status = node::status::summary_line(&self.node);
        if status != self.last_status {
            self.notify.send(&format!("STATUS={status}"));
            self.last_status = status;
        }
    }

    fn transmit(&mut self, bytes: &[u8]) {
        for i in 0..self.sockets.len() {
            let s = &self.sockets[i];
            // Never wait for a socket: a full buffer loses this keepalive, not the next.
            if let Err(e) = s.try_send_to(bytes, s.dest) {
                self.node.handle_send_error(Instant::now(), i, &e.to_string());
            }
        }
    }

    fn fence_peer(&self, peer_runs_group: bool) {
        let Some(f) = self.config.fence.clone() else { return };
        let peer = 1 - self.config.local;
        let delay = crate::fence::device::fence_delay(&f, peer, peer_runs_group);
        log::warn!(
            "fencing {} with {} (action {}{})",
            self.config.peer_name(),
            f.agent.display(),
            f.action,
            if delay.is_zero() {
                String::new()
            } else {
                format!(
                    ", after a delay of {}{}",
                    config::format_duration(delay),
                    if peer_runs_group && !f.priority_delay.is_zero() {
                        " (priority_delay: it runs the group)"
                    } else {
                        ""
                    }
                )
            }
        );
        let tx = self.reports_tx.clone();
        tokio::spawn(async move {
            let out = crate::fence::device::fence_node(f, peer, peer_runs_group).await;
            let _ = tx.send(Report::Fence(out)).await;
        });
    }

    /// A data split brain decided: the keeper's replica connects again, the loser's
    /// gives its data up (saved aside first) and resyncs. Then a poll, so status and
    /// the gate follow at once.
    fn replica_command(&self, action: crate::model::DataAction) {
        use crate::model::DataAction;
        use crate::replicad::control::{request_within, Request};
        let (replica, requests) = match action {
            DataAction::Keep(r) => (r, vec![Request::Connect]),
            // Discarding connects by itself (a `connect` would withdraw the discard).
            DataAction::Discard(r) => (r, vec![Request::DiscardMyData]),
        };
        let socket = crate::replicad::socket_path(&self.config, &replica);
        let poll = std::sync::Arc::clone(&self.replicas.now);
        tokio::task::spawn_blocking(move || {
            for req in requests {
                match request_within(&socket, &req, LOCAL_REPLICA) {
                    Ok(a) if a.ok => log::info!("replica {replica}: {req:?}: {}", a.message.unwrap_or_default()),
                    Ok(a) => log::error!("replica {replica}: {req:?} refused: {}", a.error.unwrap_or_default()),
                    Err(e) => log::error!("replica {replica}: {req:?} failed: {e}"),
                }
            }
            poll.notify_one();
        });
    }

    /// The peer's outdate ask, carried to the local replica: its daemon if it
    /// answers, else its metadata at rest (under the lock a running daemon holds).
    fn outdate_local(&self, replica: String, ask: crate::outdate::AskId, gi: String) {
        let Some(r) = self.config.replicas.iter().find(|r| r.name == replica) else {
            return;
        };
        let (socket, meta) = (crate::replicad::socket_path(&self.config, &replica), r.meta.clone());
        let tx = self.reports_tx.clone();
        tokio::task::spawn_blocking(move || {
            use crate::replica::state::OutdateRc;
            use crate::replicad::control::{request_within, Request};
            let req = Request::Outdate {
                generations: Some(gi.clone()),
            };
            let text = match request_within(&socket, &req, LOCAL_REPLICA) {
                Ok(a) => a.message.or(a.error).unwrap_or_default(),
                Err(running) => {
                    let requester = gi.parse().ok();
                    match crate::replicad::disk::outdate_at_rest(&meta, requester) {
                        Ok(t) | Err(t) if OutdateRc::from_answer(&t).is_some() => t,
                        Ok(t) | Err(t) => format!("1: {running}; {t}"),
                    }
                }
            };
            let rc = OutdateRc::from_answer(&text).unwrap_or(OutdateRc::Failed);
            let _ = tx.blocking_send(Report::Outdated {
                replica,
                ask,
                rc,
                detail: text,
            });
        });
    }

    fn check_device(&self) {
        let Some(f) = self.config.fence.clone() else { return };
        let (peer, tx) = (1 - self.config.local, self.reports_tx.clone());
        tokio::spawn(async move {
            let out = crate::fence::device::run(&f, peer, "monitor").await;
            let _ = tx.send(Report::DeviceCheck(out)).await;
        });
    }

    fn on_report(&mut self, r: Report) {
        let (now, wall) = (Instant::now(), wall_secs());
        match r {
            Report::Agent(id, rsc, result) => {
                if self
                    .config
                    .group
                    .resources
                    .get(rsc)
                    .is_some_and(|r| r.replica().is_some())
                {
                    // A replica was promoted, demoted, started or stopped: status and
                    // the gate follow now, not at the next poll.
                    self.replicas.now.notify_one();
                }
                self.node
                    .handle_agent_result(now, wall, id, result.outcome, result.reason)
            }
            Report::Probe((i, answered, at)) => self.node.handle_probe(now, wall, i, answered, at),
            Report::Fence(out) => self.node.handle_fence_result(now, wall, out.ok, &out.detail),
            Report::DeviceCheck(out) => self.node.handle_device_check(now, wall, out.ok, out.detail),
            Report::Replicas => self.refresh_gate(now, wall),
            // `drain` (after every wake) carries out what waited for it.
            Report::Persisted(token) => {
                if self.awaiting.is_some_and(|a| token >= a) {
                    self.awaiting = None;
                }
            }
            Report::Outdated {
                replica,
                ask,
                rc,
                detail,
            } => {
                // The node closes the gate itself; status follows at the next round.
                self.replicas.now.notify_one();
                self.node.handle_outdate_local(now, wall, &replica, ask, rc, detail)
            }
        }
    }

    /// The promotion gate from what the replicas' daemons last said and the scores
    /// the group's promotable agents set: the weakest decides.
    fn refresh_gate(&mut self, now: Instant, wall: u64) {
        let views = self.replicas.views.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let gate = replicas::gate(&views, &self.group_replicas).and(self.attributes.gate(&self.config.group));
        let split = replicas::split_brains(&views, &self.group_replicas);
        self.node.handle_replicas(now, wall, gate, split);
    }

    /// An agent's crm_attribute / crm_master / attrd_updater call.
    fn attribute(&mut self, name: &str, value: Option<String>, delete: bool) -> Response {
        let changed = match (value, delete) {
            (Some(_), true) => return Response::error("give a value or delete, not both"),
            (None, false) => {
                return Response {
                    message: self.attributes.get(name).map(str::to_string),
                    ..Response::done("")
                }
            }
            (Some(v), false) => self.attributes.set(name, &v),
            (None, true) => self.attributes.delete(name),
        };
        match changed {
            Err(e) => Response::error(e),
            Ok(changed) => {
                if changed {
                    log::info!(
                        "attribute {name} {}",
                        match self.attributes.get(name) {
                            Some(v) => format!("= {v}"),
                            None => "deleted".to_string(),
                        }
                    );
                }
                if name.starts_with("master-") {
                    self.refresh_gate(Instant::now(), wall_secs());
                }
                Response::done(if changed { "changed" } else { "unchanged" })
            }
        }
    }

    fn on_command(&mut self, c: control_server::Command) {
        let command = match c.request {
            Request::Status => {
                let _ = c.reply.send(Response::status(self.status()));
                return;
            }
            Request::Resolve { keep } => Command::Resolve { keep },
            Request::Acknowledge => Command::Acknowledge,
            Request::Standby => Command::Standby,
            Request::Online => Command::Online,
            Request::Takeover => Command::Takeover,
            Request::Cleanup { resource } => Command::Cleanup { resource },
            Request::Attribute { name, value, delete } => {
                let _ = c.reply.send(self.attribute(&name, value, delete));
                return;
            }
            Request::OutdatePeer { replica, generations } => {
                match self
                    .node
                    .handle_outdate_peer(Instant::now(), wall_secs(), &replica, &generations)
                {
                    Ok(id) => {
                        self.outdates.insert(id, c.reply);
                    }
                    Err(e) => {
                        let _ = c.reply.send(Response::error(e));
                    }
                }
                return;
            }
        };
        let reply = match self.node.handle_command(Instant::now(), wall_secs(), command) {
            Ok(m) => Response::done(m),
            Err(e) => Response::error(e),
        };
        let _ = c.reply.send(reply);
    }

    /// The status model, built from the node now.
    fn status(&self) -> Status {
        let mut s = node::status::project(&self.node, &self.template, Instant::now());
        s.daemon.uptime_ms = self.started.elapsed().as_millis() as u64;
        let views = self.replicas.views.lock().unwrap_or_else(|p| p.into_inner()).clone();
        s.set_replicas(views);
        s.set_attributes(&self.attributes);
        s
    }
}

/// The directory agents get as HA_SBIN_DIR and first in PATH: Pacemaker's
/// attribute tools ([`crate::crm::TOOLS`]) as symlinks to the `pairbeat`
/// executable installed beside this pairbeatd. Without it, agents that set
/// promotion scores fail to, which the log says once here.
fn agent_tools(state_dir: &std::path::Path) -> Option<PathBuf> {
    let cli = std::env::current_exe().ok()?.with_file_name("pairbeat");
    if !cli.is_file() {
        log::warn!(
            "{} is not there: agents that call crm_master or crm_attribute (ocf:linbit:drbd) cannot set their promotion scores",
            cli.display()
        );
        return None;
    }
    let dir = state_dir.join("agent-tools");
    let made = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        for tool in crate::crm::TOOLS {
            let link = dir.join(tool);
            if std::fs::read_link(&link).ok().as_deref() != Some(cli.as_path()) {
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&cli, &link)?;
            }
        }
        Ok(())
    })();
    match made {
        Ok(()) => Some(dir),
        Err(e) => {
            log::warn!(
                "cannot make {} ({e}): agents that call crm_master or crm_attribute cannot set their promotion scores",
                dir.display()
            );
            None
        }
    }
}

/// How long the local replica may take to answer what pairbeatd asks of it for
/// the pair (persist Outdated, connect, discard its data).
const LOCAL_REPLICA: std::time::Duration = std::time::Duration::from_secs(10);

/// The first datagram any link socket has, with its link index.
async fn recv_any(sockets: &[transport::LinkSocket], buf: &mut [u8]) -> (usize, usize) {
    std::future::poll_fn(|cx| {
        for (i, s) in sockets.iter().enumerate() {
            // A receive error (an ICMP unreachable reported on the socket) is not a
            // datagram: poll again, so the socket ends Pending with its waker set.
            loop {
                match s.poll_recv(cx, buf) {
                    Poll::Ready(Ok(n)) => return Poll::Ready((i, n)),
                    Poll::Ready(Err(e)) => log::debug!("link {i}: receive failed: {e}"),
                    Poll::Pending => break,
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// An optional interval's next tick; never, without one.
async fn tick(i: &mut Option<tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> Result<Signals, Error> {
        let watch = |kind, name: &'static str| signal(kind).map_err(|e| Error::Signal { name, source: e });
        Ok(Signals {
            term: watch(SignalKind::terminate(), "SIGTERM")?,
            int: watch(SignalKind::interrupt(), "SIGINT")?,
            hup: watch(SignalKind::hangup(), "SIGHUP")?,
        })
    }
}

/// Reads each OCF agent's meta-data for its advised timeouts; says what is missing.
async fn load_metadata(node: &mut Node, paths: &Paths, config: &Config) {
    for (i, r) in config.group.resources.iter().enumerate() {
        if !matches!(r.agent, crate::config::AgentSpec::Ocf { .. }) {
            continue;
        }
        match agent::metadata(paths, r).await {
            Ok(md) => node.set_metadata_timeouts(i, md.timeouts),
            Err(e) => log::warn!("resource {}: {e}", r.id),
        }
    }
}

impl Shell {
    /// SIGHUP: read the configuration again; a bad one changes nothing. The keys and the
    /// cluster name are applied at once; any other change takes effect at the next
    /// restart, and the log says so.
    fn reload(&mut self) {
        let opts = &self.opts;
        log::info!("SIGHUP: reloading {}", opts.config_path.display());
        match config::load(&opts.config_path, opts.node.as_deref()) {
            Ok((new, warnings)) => {
                for w in &warnings.items {
                    log::warn!("{}", w.to_string().lines().next().unwrap_or(""));
                }
                let applied = Config {
                    auth: new.auth.clone(),
                    cluster_name: new.cluster_name.clone(),
                    ..self.config.clone()
                };
                if applied != new {
                    log::warn!(
                    "links, nodes, timing, the group, failover and daemon settings changed: they take effect at the next restart"
                );
                }
                self.node.set_auth(new.auth.clone());
                self.template.cluster = new.cluster_name.clone();
                // What runs: the new keys and name, everything else as before.
                self.config = applied;
                log::info!("configuration reloaded (keys and cluster name applied)");
            }
            Err(diags) => {
                for d in &diags.items {
                    let line = d.to_string();
                    let line = line.lines().next().unwrap_or("");
                    match d.severity {
                        crate::config::Severity::Error => log::error!("{line}"),
                        crate::config::Severity::Warning => log::warn!("{line}"),
                    }
                }
                log::error!(
                    "reload refused: {} error(s) in {}; still running the previous configuration",
                    diags.error_count(),
                    opts.config_path.display()
                );
            }
        }
    }
}

/// The state directory holds the generation counter and records; root-only.
fn prepare_state_dir(dir: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::StateDir(format!("cannot create state directory {}: {e}", dir.display())))
}
