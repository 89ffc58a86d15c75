//! `pairbeatd`: the tokio shell around the pure core.
//!
//! It owns everything that does I/O: the control socket, the link sockets, the
//! state files, signals, and the single timer. The membership core decides; the
//! shell feeds it datagrams and deadlines (with the monotonic clock, never the
//! wall clock, except for the informational `ts` field) and carries out what it
//! returns. Keepalives go out from this one loop, which does nothing that can
//! block: slow work (state-file writes) goes to a blocking thread.

mod control_server;
mod group_runner;
mod realtime;
mod state_files;
mod systemd;
mod transport;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::{self, Config};
use crate::control::status::{DaemonInfo, LinkState, NodeState, Status};
use crate::control::{Request, Response};
use crate::membership::{DropReason, Event, Identity, LinkLiveness, LivenessEvent, Membership, Output, PeerLiveness};
use crate::role;

pub use control_server::BindError;
pub use realtime::make_realtime;

/// What the daemon was started with.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    /// Overrides the hostname as this node's name.
    pub node: Option<String>,
}

/// State the control server reads and the main loop updates.
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
pub async fn run(opts: Options, config: Config) -> Result<(), String> {
    let state_dir = config.daemon.state_dir.clone();
    prepare_state_dir(&state_dir)?;
    let generation = state_files::next_generation(&state_dir, wall_secs())?;
    let uuid = state_files::uuid(&state_dir)?;
    let peer_floor = state_files::load_peer(&state_dir);

    // Link sockets before the control socket: a config that cannot bind is refused whole.
    let mut sockets = Vec::new();
    for link in &config.links {
        sockets.push(transport::open(link, config.local)?);
    }
    let socket_path = config.daemon.socket.clone();
    let listener = control_server::bind(&config.daemon).map_err(|e| e.to_string())?;
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
    let me = Identity {
        node: config.local_name().to_string(),
        uuid,
        generation,
        nodes: config.nodes.clone(),
    };
    let mut core = Membership::new(
        me,
        config.peer_name().to_string(),
        config.auth.clone(),
        config.timing,
        config.links.len(),
        peer_floor,
        now,
    );
    // The group, and this node's part in the pair (the policy decides the target).
    let (done_tx, mut done_rx) = mpsc::channel::<group_runner::Finished>(64);
    let mut group = group_runner::GroupRunner::new(&config, done_tx);
    group.load_metadata().await;
    let mut role = role::Role::new(&config, state_files::load_saved(&state_dir));
    // Split-brain protection: tie-break probes and the fencing device report here.
    let (probe_tx, mut probe_rx) = mpsc::channel::<crate::fence::probe::ProbeResult>(64);
    let mut reach = config.tiebreak.as_ref().map(|t| {
        crate::fence::probe::spawn(&t.targets, t.interval, t.timeout, probe_tx.clone());
        crate::fence::reach::Reach::new(t.targets.len(), t.timeout, config.timing.deadtime)
    });
    drop(probe_tx);
    let (fence_tx, mut fence_rx) = mpsc::channel::<FenceReport>(4);
    let fence_cfg = config.fence.clone();
    let mut fence_monitor = fence_cfg.as_ref().map(|f| tokio::time::interval(f.monitor_interval));
    let peer_index = 1 - config.local;
    let peer_name = config.peer_name().to_string();
    let status = Status::initial(&config, daemon_info(&config));
    let shared = Arc::new(Mutex::new(Shared {
        config,
        status,
        started: now,
    }));
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<control_server::Command>(16);
    let server = tokio::spawn(control_server::serve(listener, cmd_tx));
    group.publish(&shared);

    // One receive task per link feeds the loop; the loop is the only writer.
    let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(1024);
    let sockets: Vec<Arc<transport::LinkSocket>> = sockets.into_iter().map(Arc::new).collect();
    let mut receivers = Vec::new();
    for (i, s) in sockets.iter().enumerate() {
        receivers.push(tokio::spawn(receive(i, s.clone(), tx.clone())));
    }
    drop(tx);
    // Probe every resource first: the policy decides on what really runs here.
    let outs = group.engine.start_probing();
    group.handle(outs);
    // Config loaded, every socket bound: systemd may consider us started.
    let notify = systemd::Notifier::from_env();
    notify.send("READY=1\nSTATUS=probing resources");
    let mut watchdog = notify.watchdog.map(|every| tokio::time::interval(every));
    let mut last_status = String::new();

    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
    let mut drops = DropLog::default();
    let mut stopping = false;
    loop {
        // This node's part: advert to the peer (sent at once when it changes), and the target.
        let now = Instant::now();
        if let Some(r) = &reach {
            let n = r.count(now);
            if role.reach != Some(n) {
                log::info!("tie-break: {n} of {} target(s) reachable", r.len());
            }
            role.reach = Some(n);
        }
        let act = role.reconsider(&mut core, &group.engine, now, wall_secs());
        for p in act.persist {
            state_files::persist(&state_dir, p);
        }
        if let Some(o) = act.send {
            carry_out(o, &sockets, &shared, &state_dir, &mut drops);
        }
        if let Some(t) = act.target {
            let outs = group.engine.set_target(t);
            group.handle(outs);
        }
        let outs = group.engine.set_quiet(act.quiet);
        group.handle(outs);
        if act.reassert {
            log::info!("re-asserting the group's resources (a monitor of each) before the peer stops its copy");
            let outs = group.engine.reassert();
            group.handle(outs);
        }
        if act.fence {
            if let Some(f) = fence_cfg.clone() {
                let delay = f.delay[peer_index];
                log::warn!(
                    "fencing {peer_name} with {} (action {}{})",
                    f.agent.display(),
                    f.action,
                    if delay.is_zero() {
                        String::new()
                    } else {
                        format!(", after its delay of {}", config::format_duration(delay))
                    }
                );
                let tx = fence_tx.clone();
                tokio::spawn(async move {
                    let out = crate::fence::device::fence_node(f, peer_index).await;
                    let _ = tx.send(FenceReport::Fence(out)).await;
                });
            }
        }
        publish_role(&role, &core, &group, &shared);
        publish_protection(&role, reach.as_ref(), now, &shared);
        let summary = status_line(&shared);
        if summary != last_status {
            notify.send(&format!("STATUS={summary}"));
            last_status = summary;
        }
        if stopping && (group.engine.all_stopped() || group.engine.is_blocked()) {
            if group.engine.is_blocked() {
                log::error!("exiting with the group BLOCKED: a stop failed; see `pairbeat status` after restart");
            }
            break;
        }
        let mut deadline = core.next_deadline();
        if let Some(d) = group.engine.next_deadline() {
            deadline = deadline.min(d);
        }
        if let Some(d) = reach.as_ref().and_then(|r| r.next_change(now)) {
            deadline = deadline.min(d);
        }
        if let Some(d) = role.next_deadline() {
            deadline = deadline.min(d);
        }
        let deadline = tokio::time::Instant::from_std(deadline);
        let outputs = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                let outs = group.engine.on_timeout(now);
                group.handle(outs);
                group.publish(&shared);
                core.on_timeout(now, wall_secs())
            }
            Some((link, data)) = rx.recv() => core.on_datagram(Instant::now(), wall_secs(), link, &data),
            Some((id, result)) = done_rx.recv() => {
                let outs = group.engine.on_result(Instant::now(), id, result.outcome, result.reason);
                group.handle(outs);
                group.publish(&shared);
                Vec::new()
            }
            Some((i, answered, at)) = probe_rx.recv() => {
                if let Some(r) = reach.as_mut() {
                    r.on_probe(i, answered, at);
                }
                Vec::new()
            }
            Some(report) = fence_rx.recv() => {
                match report {
                    FenceReport::Fence(out) => role.fence_done(out.ok, &out.detail, Instant::now()),
                    FenceReport::Monitor(out) => publish_device_check(out, &shared),
                }
                Vec::new()
            }
            _ = async { fence_monitor.as_mut().unwrap().tick().await }, if fence_monitor.is_some() => {
                if let Some(f) = fence_cfg.clone() {
                    let tx = fence_tx.clone();
                    tokio::spawn(async move {
                        let out = crate::fence::device::run(&f, peer_index, "monitor").await;
                        let _ = tx.send(FenceReport::Monitor(out)).await;
                    });
                }
                Vec::new()
            }
            Some(cmd) = cmd_rx.recv() => {
                let resp = command(cmd.request, &mut group, &mut role, &core, &shared);
                let _ = cmd.reply.send(resp);
                Vec::new()
            }
            _ = async { watchdog.as_mut().unwrap().tick().await }, if watchdog.is_some() => {
                // From the main loop itself: if it wedges, keepalives stop and so does this.
                notify.send("WATCHDOG=1");
                Vec::new()
            }
            _ = term.recv() => {
                notify.send("STOPPING=1\nSTATUS=handing the group over and stopping");
                if stopping {
                    log::warn!("second SIGTERM: exiting without waiting for the group to stop");
                    break;
                }
                log::info!("SIGTERM: handing the group over (stopping it here), then exiting");
                stopping = true;
                role.leaving = true;
                Vec::new()
            }
            _ = int.recv() => {
                log::info!("SIGINT: exiting (resources are left as they are)");
                break;
            }
            _ = hup.recv() => {
                notify.send("RELOADING=1");
                if let Some(auth) = reload(&opts, &shared) {
                    core.set_auth(auth);
                }
                notify.send("READY=1");
                Vec::new()
            }
        };
        if outputs.is_empty() {
            continue;
        }
        for o in outputs {
            carry_out(o, &sockets, &shared, &state_dir, &mut drops);
        }
        publish(&core, &shared);
    }
    server.abort();
    for r in receivers {
        r.abort();
    }
    // Only remove the socket we created; another daemon may have replaced it meanwhile.
    let _ = std::fs::remove_file(&socket_path);
    log::info!("pairbeatd stopped");
    Ok(())
}

/// What the fencing tasks report.
enum FenceReport {
    Fence(crate::fence::device::FenceOutcome),
    Monitor(crate::fence::device::FenceOutcome),
}

/// Answers a control request (status, and the commands that change something).
fn command(
    request: Request,
    group: &mut group_runner::GroupRunner,
    role: &mut role::Role,
    core: &Membership,
    shared: &Arc<Mutex<Shared>>,
) -> Response {
    match request {
        Request::Resolve { keep } => {
            let peer_waits = core.peer() == PeerLiveness::Up && core.peer_advert().is_some_and(|a| a.awaiting_operator);
            match role.resolve(&keep, peer_waits) {
                Ok(m) => Response::done(m),
                Err(e) => Response::error(e),
            }
        }
        Request::Acknowledge => match role.acknowledge() {
            Ok(m) => Response::done(m),
            Err(e) => Response::error(e),
        },
        Request::Standby => {
            log::info!("standby requested by the operator");
            role.set_standby(true);
            Response::done("this node is in standby: the group moves to the peer (`pairbeat online` ends standby)")
        }
        Request::Online => {
            log::info!("online requested by the operator");
            role.set_standby(false);
            Response::done("this node is online: it may run the group again")
        }
        Request::Takeover => {
            if role.standby {
                return Response::error("this node is in standby; run `pairbeat online` first");
            }
            log::info!("takeover requested by the operator");
            role.takeover = true;
            Response::done("asked the peer to hand the group over; it starts here once the peer has stopped it")
        }
        Request::Status => Response::status(
            shared
                .lock()
                .map(|s| s.snapshot())
                .unwrap_or_else(|e| e.into_inner().snapshot()),
        ),
        Request::Cleanup { resource } => {
            let index = match &resource {
                None => None,
                Some(id) => match group.index(id) {
                    Some(i) => Some(i),
                    None => return Response::error(format!("no resource `{id}` in the group")),
                },
            };
            log::info!(
                "cleanup of {} requested",
                resource.as_deref().unwrap_or("all resources")
            );
            let outs = group.engine.cleanup(Instant::now(), index);
            group.handle(outs);
            group.publish(shared);
            Response::done(format!(
                "cleaned up {}: failures forgotten, state probed again",
                resource.as_deref().unwrap_or("every resource")
            ))
        }
    }
}

async fn receive(link: usize, s: Arc<transport::LinkSocket>, tx: mpsc::Sender<(usize, Vec<u8>)>) {
    // One byte more than a datagram can hold, so an oversized one is seen as such.
    let mut buf = vec![0u8; crate::wire::MAX_DATAGRAM + 1];
    loop {
        match s.socket.recv_from(&mut buf).await {
            Ok((n, _from)) => {
                if tx.send((link, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                log::warn!("link {link}: receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn carry_out(
    o: Output,
    sockets: &[Arc<transport::LinkSocket>],
    shared: &Arc<Mutex<Shared>>,
    state_dir: &std::path::Path,
    drops: &mut DropLog,
) {
    let link_name = |i: usize| {
        shared
            .lock()
            .map(|s| s.config.links[i].name.clone())
            .unwrap_or_default()
    };
    let peer = || {
        shared
            .lock()
            .map(|s| s.config.peer_name().to_string())
            .unwrap_or_default()
    };
    match o {
        Output::Broadcast(bytes) => {
            for (i, s) in sockets.iter().enumerate() {
                // Never wait for a socket: a full buffer loses this keepalive, not the next.
                if let Err(e) = s.socket.try_send_to(&bytes, s.dest) {
                    drops.send_failed(&link_name(i), &e);
                }
            }
        }
        Output::Event(Event::Liveness(e)) => match e {
            LivenessEvent::LinkUp { link } => log::info!("Link {}:{} up", peer(), link_name(link)),
            LivenessEvent::LinkLate { link, silent } => log::debug!(
                "Link {}:{} late: silent {} ms",
                peer(),
                link_name(link),
                silent.as_millis()
            ),
            LivenessEvent::LinkDead { link, silent } => log::warn!(
                "Link {}:{} dead (silent {} ms)",
                peer(),
                link_name(link),
                silent.as_millis()
            ),
            LivenessEvent::PeerUp => log::info!("Node {} is up", peer()),
            LivenessEvent::PeerDead { silent } => log::warn!(
                "Node {} is dead: silent on every link for {} ms",
                peer(),
                silent.as_millis()
            ),
            LivenessEvent::LateHeartbeat { interval } => {
                log::warn!("Late heartbeat: Node {}: interval {} ms", peer(), interval.as_millis())
            }
        },
        Output::Event(Event::PeerRestarted { generation, previous }) => match previous {
            Some(p) => log::warn!("Node {} restarted (generation {p} -> {generation})", peer()),
            None => log::info!("Node {}: generation {generation}", peer()),
        },
        Output::Event(Event::PeerAdvert(a)) => log::debug!("{} advertises {a:?}", peer()),
        Output::Event(Event::PacketsLost { count }) => {
            log::debug!("{count} packet(s) from {} lost on every link", peer())
        }
        Output::Dropped { link, why } => drops.dropped(&link_name(link), why),
        Output::PersistPeer { generation, seq } => {
            let dir = state_dir.to_path_buf();
            // Off the loop: a slow disk must not hold back keepalives.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = state_files::save_peer(&dir, generation, seq) {
                    log::warn!("{e}");
                }
            });
        }
    }
}

/// One line for systemd's STATUS= (shown by `systemctl status`).
fn status_line(shared: &Arc<Mutex<Shared>>) -> String {
    let Ok(s) = shared.lock() else { return String::new() };
    let peer = &s.status.nodes[1 - s.config.local];
    let peer_state = match peer.state {
        NodeState::Online => "online",
        NodeState::Offline => "OFFLINE",
        NodeState::Standby => "standby",
        NodeState::Unknown => "not heard yet",
    };
    let group = match (&s.status.group.owner, s.status.group.blocked) {
        (_, true) => "group BLOCKED".to_string(),
        (Some(o), _) => format!("group on {o}"),
        (None, _) => "group stopped".to_string(),
    };
    format!("{group}; peer {} {peer_state}", peer.name)
}

/// Node states from this node's mode and the peer's advert.
fn publish_role(role: &role::Role, core: &Membership, group: &group_runner::GroupRunner, shared: &Arc<Mutex<Shared>>) {
    let Ok(mut s) = shared.lock() else { return };
    let local = s.config.local;
    s.status.nodes[local].state = match role.mode(&group.engine) {
        crate::policy::Mode::Standby | crate::policy::Mode::Leaving => NodeState::Standby,
        _ => NodeState::Online,
    };
    if core.peer() == PeerLiveness::Up {
        if let Some(a) = core.peer_advert() {
            if matches!(a.mode, crate::policy::Mode::Standby | crate::policy::Mode::Leaving) {
                s.status.nodes[1 - local].state = NodeState::Standby;
            }
        }
    }
    // The group runs on the peer when the peer says so (and it does not run here).
    if s.status.group.owner.is_none()
        && core.peer() == PeerLiveness::Up
        && core
            .peer_advert()
            .is_some_and(|a| a.holding == crate::policy::Holding::Running && a.settled)
    {
        let peer = s.config.peer_name().to_string();
        s.status.group.owner = Some(peer.clone());
        // A settled peer that runs the group runs all of it: say so, as it would.
        for r in s
            .status
            .group
            .resources
            .iter_mut()
            .filter(|r| r.state == crate::control::status::ResourceState::Stopped)
        {
            r.state = crate::control::status::ResourceState::Started;
            r.node = Some(peer.clone());
        }
    }
}

/// The fencing device's last `monitor`, for status; a change is logged.
fn publish_device_check(out: crate::fence::device::FenceOutcome, shared: &Arc<Mutex<Shared>>) {
    let Ok(mut s) = shared.lock() else { return };
    let Some(f) = s.status.protection.fencing.as_mut() else {
        return;
    };
    if f.device_ok != Some(out.ok) {
        if out.ok {
            log::info!("fencing device answers ({})", out.detail);
        } else {
            log::error!(
                "fencing device does NOT answer its monitor ({}): a takeover that needs fencing would fail",
                out.detail
            );
        }
    }
    f.device_ok = Some(out.ok);
    f.device_detail = Some(out.detail);
}

/// Split-brain protection and the last decision, for status.
fn publish_protection(
    role: &role::Role,
    reach: Option<&crate::fence::reach::Reach>,
    now: Instant,
    shared: &Arc<Mutex<Shared>>,
) {
    let Ok(mut s) = shared.lock() else { return };
    let p = &mut s.status.protection;
    p.epoch = role.epoch();
    p.awaiting_operator = role.awaiting_operator();
    if let (Some(t), Some(r)) = (p.tiebreak.as_mut(), reach) {
        t.reachable = r.count(now);
        for (i, target) in t.targets.iter_mut().enumerate() {
            target.reachable = r.reachable(i, now);
        }
    }
    if let Some(f) = p.fencing.as_mut() {
        f.peer = match role.fence {
            crate::policy::FenceState::NotFenced => "not_fenced",
            crate::policy::FenceState::InProgress => "in_progress",
            crate::policy::FenceState::Fenced => "fenced",
            crate::policy::FenceState::Failed => "failed",
        }
        .to_string();
        f.last = role.fence_last.clone();
    }
    s.status.split_brains = role.split_brains();
    s.status.decision = role.decision().map(|d| d.reason.to_string());
}

/// Mirrors the core's view into the status the control socket serves.
fn publish(core: &Membership, shared: &Arc<Mutex<Shared>>) {
    let Ok(mut s) = shared.lock() else { return };
    let local = s.config.local;
    s.status.nodes[1 - local].state = match core.peer() {
        PeerLiveness::Unknown => NodeState::Unknown,
        PeerLiveness::Up => NodeState::Online,
        PeerLiveness::Dead => NodeState::Offline,
    };
    for (i, l) in s.status.links.iter_mut().enumerate() {
        l.state = match core.link(i) {
            LinkLiveness::Unknown => LinkState::Unknown,
            LinkLiveness::Up => LinkState::Up,
            LinkLiveness::Late => LinkState::Late,
            LinkLiveness::Dead => LinkState::Dead,
        };
    }
    s.status.packets = core.counters();
}

/// Bad packets are logged at most once per link and reason every ten seconds, with a
/// count, so a flood cannot fill the disk or drown the log.
#[derive(Default)]
struct DropLog {
    last: std::collections::HashMap<(String, String), (Instant, u64)>,
}

const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

impl DropLog {
    fn dropped(&mut self, link: &str, why: DropReason) {
        let reason = match why {
            DropReason::Wire(e) => e.to_string(),
            DropReason::UnknownNode => "authentic packet from a node that is not our peer".into(),
            DropReason::Unsequenced => "packet without generation or sequence number".into(),
            DropReason::Replay => "replayed packet (old generation or sequence number)".into(),
        };
        self.note(link, reason);
    }

    fn send_failed(&mut self, link: &str, e: &std::io::Error) {
        self.note(link, format!("keepalive not sent: {e}"));
    }

    fn note(&mut self, link: &str, reason: String) {
        let now = Instant::now();
        let entry = self
            .last
            .entry((link.to_string(), reason.clone()))
            .or_insert((now - DROP_LOG_EVERY, 0));
        entry.1 += 1;
        if now.duration_since(entry.0) >= DROP_LOG_EVERY {
            log::warn!(
                "link {link}: {reason} ({} in the last {}s)",
                entry.1,
                DROP_LOG_EVERY.as_secs()
            );
            *entry = (now, 0);
        }
    }
}

/// SIGHUP: read the configuration again; a bad one changes nothing. The keys and the
/// cluster name are applied at once (the keys are returned for the core); any other
/// change takes effect at the next restart, and the log says so.
fn reload(opts: &Options, shared: &Arc<Mutex<Shared>>) -> Option<crate::config::Auth> {
    log::info!("SIGHUP: reloading {}", opts.config_path.display());
    match config::load(&opts.config_path, opts.node.as_deref()) {
        Ok((new, warnings)) => {
            for w in &warnings.items {
                log::warn!("{}", w.to_string().lines().next().unwrap_or(""));
            }
            let mut s = shared.lock().ok()?;
            let applied = Config {
                auth: new.auth.clone(),
                cluster_name: new.cluster_name.clone(),
                ..s.config.clone()
            };
            if applied != new {
                log::warn!(
                    "links, nodes, timing, the group, failover and daemon settings changed: they take effect at the next restart"
                );
            }
            let auth = new.auth.clone();
            s.status.cluster = new.cluster_name.clone();
            // What runs: the new keys and name, everything else as before.
            s.config = applied;
            log::info!("configuration reloaded (keys and cluster name applied)");
            Some(auth)
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
            None
        }
    }
}

/// The state directory holds the generation counter and records; root-only.
fn prepare_state_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create state directory {}: {e}", dir.display()))
}
