//! The node: membership, role, the group engine and the tie-break reachability
//! composed into one pure state machine. The daemon (`crate::daemon`) and the
//! whole-pair simulation (`tests/sim_cluster.rs`) drive this same code.
//!
//! In the style of quinn-proto's `Connection`:
//! - **inputs** are `handle_*` methods, each with an explicit `now` (monotonic) and
//!   `wall` (seconds since the Unix epoch, for timestamps only): a datagram, the
//!   timer, an agent's result, a tie-break probe, the fencing device's answer, an
//!   operator's command;
//! - **outputs** are queued inside and taken with [`Node::poll_effect`]: packets to
//!   send, agent operations to run, state to persist, fencing to start, log lines.
//!   Nothing is returned that a caller could drop: an engine operation that was
//!   asked for stays queued until the shell takes it;
//! - **the timer** is [`Node::poll_timeout`]: the shell keeps one, armed there.
//!
//! After every input the node takes its turn ([`Node::turn`]): the tie-break count,
//! the role's decision, then what follows from it, in one fixed order that exists
//! only here.
//!
//! **Inputs in the order they happened.** A node that was not scheduled for a while
//! (a stalled VM, a swapping host, SIGSTOP) cannot tell, from the timer alone, a
//! silent peer from its own absence: its sockets may hold the keepalives it slept
//! through. So when an input arrives more than [`stall_threshold`] after the
//! previous one (the timer wakes the node at least every keepalive, so a longer gap
//! means it was not running), the node acts on no liveness deadline for
//! [`stall_grace`]; the shell reads what its sockets hold meanwhile. This holds
//! whatever order the shell delivers inputs in after the pause.
//!
//! Outputs cannot be dropped: the cores' own `Vec`s never leave this module, and
//! the node's fields are private, so a caller can neither call a core directly nor
//! lose what one asked for:
//!
//! ```compile_fail
//! # fn f(node: &mut pairbeat::node::Node) {
//! let outs = node.engine.set_target(pairbeat::resources::Target::Active); // private
//! # }
//! ```
//!
//! ```compile_fail
//! # fn f(node: &mut pairbeat::node::Node) {
//! node.engine().set_target(pairbeat::resources::Target::Active); // read-only view
//! # }
//! ```

pub mod status;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::{Config, OpName};
use crate::membership::{DropReason, Event, Identity, LivenessEvent, Membership, Output, PeerLiveness};
use crate::model::{DataAction, DataGate, DataSplitBrain, FenceState, Note, Persist, Timing};
use crate::outdate::{self, AskId, Relay};
use crate::reach::Reach;
use crate::replica::state::OutdateRc;
use crate::resources::{self, Engine, Outcome, Request, RscState, Target};
use crate::role::{PeerFacts, Role, RoleSettings, Saved};
use crate::wire::auth::Auth;

/// What the node asks the shell to do. Taken with [`Node::poll_effect`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send these bytes on every link (one packet: the receiver de-duplicates).
    Transmit(Vec<u8>),
    /// Run an agent operation; answer with [`Node::handle_agent_result`].
    RunAgent(Request),
    /// Run the fencing device against the peer; answer with
    /// [`Node::handle_fence_result`]. `peer_runs_group`: its last advert said it
    /// runs (or may run) the group, which `[fence] priority_delay` favours.
    FencePeer { peer_runs_group: bool },
    /// Write this to the state dir durably.
    Persist(Persist),
    /// A line for the log.
    Log(Note),
    /// Outdate the local replica `replica` for the peer's ask; answer with
    /// [`Node::handle_outdate_local`].
    OutdateLocal { replica: String, ask: AskId, gi: String },
    /// The local replica's ask [`Node::handle_outdate_peer`] `id` is answered.
    OutdateAnswered { id: u64, rc: OutdateRc, detail: String },
    /// A data split brain is decided: tell the local replica (keep or discard).
    Replica(DataAction),
}

/// What the state dir held at start, and who this node is on the wire.
#[derive(Debug, Clone, Default)]
pub struct Boot {
    pub uuid: [u8; 16],
    /// Per-boot generation (Heartbeat's `hg`), already incremented by the shell.
    pub generation: u64,
    /// The peer's (generation, seq) persisted before this start.
    pub peer_floor: Option<(u64, u64)>,
    pub saved: Saved,
}

/// An operator's command (from the control socket or a signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Standby,
    Online,
    Takeover,
    Resolve {
        keep: String,
    },
    Acknowledge,
    /// Forget failures of one resource (by id) or of all.
    Cleanup {
        resource: Option<String>,
    },
    /// SIGTERM: hand the group over, then exit (see [`Node::finished`]).
    Leave,
}

/// The answer to a command, for the operator: what was done, or why not.
pub type Reply = Result<String, String>;

/// The gap between two inputs past which the node assumes it was not running.
pub fn stall_threshold(timing: &Timing) -> Duration {
    timing.keepalive + timing.keepalive / 2
}

/// How long, after a stall, no liveness deadline is acted on: two keepalives, time
/// enough to read what the sockets hold and for a live peer's next keepalive to come.
/// Below deadtime by the config's rule `deadtime > 2 × keepalive`.
pub fn stall_grace(timing: &Timing) -> Duration {
    timing.keepalive * 2
}

/// The fencing device's last `monitor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCheck {
    pub ok: bool,
    pub detail: String,
}

/// The last time the group settled somewhere, for "Last change:".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub at: u64,
    pub what: String,
}

pub struct Node {
    names: Names,
    timing: Timing,
    membership: Membership,
    role: Role,
    engine: Engine,
    reach: Option<Reach>,
    /// The replicas' outdate asks, both ways.
    relay: Relay,
    /// The group's replicas whose data diverged from the peer's, as their daemons
    /// last said.
    split_brains: Vec<DataSplitBrain>,
    /// The replicas the group runs: an outdate of one of them closes the gate.
    group_replicas: Vec<String>,
    effects: VecDeque<Effect>,
    /// The `now` of the last input, to notice a stall.
    last_input: Instant,
    /// The wall time of the last input, for failure timestamps in status.
    last_wall: u64,
    drops: DropLog,
    last_change: Option<Change>,
    device: Option<DeviceCheck>,
}

/// Names for log lines.
struct Names {
    peer: String,
    links: Vec<String>,
    resources: Vec<String>,
    local: String,
}

impl Node {
    /// A node as configured, with what its state dir held. Nothing happens before
    /// [`Node::start`].
    pub fn new(config: &Config, boot: Boot, now: Instant) -> Node {
        let me = Identity {
            node: config.local_name().to_string(),
            uuid: boot.uuid,
            generation: boot.generation,
            nodes: config.nodes.clone(),
        };
        let mut role = Role::new(RoleSettings::from_config(config), boot.saved);
        let group_replicas = config.group.replicas();
        if !group_replicas.is_empty() {
            // The group runs a replica: closed until its daemon has said otherwise.
            role.set_data(DataGate::Closed);
        }
        let membership = Membership::new(
            me,
            config.peer_name().to_string(),
            config.auth.clone(),
            config.timing,
            config.links.len(),
            boot.peer_floor,
            now,
        );
        Node {
            names: Names {
                peer: config.peer_name().to_string(),
                links: config.links.iter().map(|l| l.name.clone()).collect(),
                resources: config.group.resources.iter().map(|r| r.id.clone()).collect(),
                local: config.local_name().to_string(),
            },
            timing: config.timing,
            membership,
            role,
            engine: Engine::new(&config.group),
            reach: config
                .tiebreak
                .as_ref()
                .map(|t| Reach::new(t.targets.len(), t.timeout, config.timing.deadtime)),
            relay: Relay::new(
                config
                    .replicas
                    .iter()
                    .map(|r| (r.name.clone(), r.outdate_timeout))
                    .collect(),
                config.timing.keepalive,
            ),
            split_brains: Vec::new(),
            group_replicas,
            effects: VecDeque::new(),
            last_input: now,
            last_wall: 0,
            drops: DropLog::default(),
            last_change: None,
            device: None,
        }
    }

    /// Whether the shell may still run `req`, emitted earlier: a promotion waits
    /// behind the ownership epoch's write (a barrier), and a slow disk can hold it
    /// for seconds, during which the promotion gate may close (the peer outdated
    /// this node's data, a split brain was found). Such a promotion is refused with
    /// the reason, which the shell hands back as the operation's failure. Found by
    /// the cluster simulation with a slow disk under the state files (seed 678).
    pub fn admit(&self, req: &crate::resources::Request) -> Result<(), String> {
        if req.action == crate::resources::Action::Promote && self.role.data() == DataGate::Closed {
            return Err(format!(
                "not promoted: the promotion gate closed while the promotion waited for the state directory's disk ({})",
                self.names.resources.get(req.rsc).map_or("?", String::as_str)
            ));
        }
        Ok(())
    }

    /// Timeouts an OCF agent's meta-data advertises (read by the shell before start).
    pub fn set_metadata_timeouts(&mut self, rsc: usize, timeouts: Vec<(OpName, Duration)>) {
        self.engine.set_metadata_timeouts(rsc, timeouts);
    }

    /// Probes every resource (the policy decides on what really runs here) and
    /// advertises before the first keepalive.
    pub fn start(&mut self, now: Instant, wall: u64) {
        // The shell's setup (agent meta-data reads) since `new` is no stall.
        self.last_input = self.last_input.max(now);
        self.input(now, wall);
        let outs = self.engine.start_probing();
        self.engine_outputs(outs, wall);
        self.turn(now, wall);
    }

    // ---- inputs -------------------------------------------------------------

    /// A datagram arrived on link `link`.
    pub fn handle_datagram(&mut self, now: Instant, wall: u64, link: usize, data: &[u8]) {
        self.input(now, wall);
        let outs = self.membership.on_datagram(now, wall, link, data);
        self.membership_outputs(outs, now);
        self.turn(now, wall);
    }

    /// The timer: call at or after [`Node::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant, wall: u64) {
        self.input(now, wall);
        let outs = self.engine.on_timeout(now);
        self.engine_outputs(outs, wall);
        let outs = self.membership.on_timeout(now, wall);
        self.membership_outputs(outs, now);
        self.turn(now, wall);
    }

    /// The agent operation `id` finished.
    pub fn handle_agent_result(&mut self, now: Instant, wall: u64, id: u64, outcome: Outcome, reason: Option<String>) {
        self.input(now, wall);
        let outs = self.engine.on_result(now, id, outcome, reason);
        self.engine_outputs(outs, wall);
        self.turn(now, wall);
    }

    /// A tie-break probe of target `target` finished at `at`.
    pub fn handle_probe(&mut self, now: Instant, wall: u64, target: usize, answered: bool, at: Instant) {
        self.input(now, wall);
        if let Some(r) = self.reach.as_mut() {
            r.on_probe(target, answered, at);
        }
        self.turn(now, wall);
    }

    /// The fencing device finished with the peer.
    pub fn handle_fence_result(&mut self, now: Instant, wall: u64, ok: bool, detail: &str) {
        self.input(now, wall);
        self.role.fence_done(ok, detail, now);
        self.turn(now, wall);
    }

    /// The fencing device's periodic `monitor` finished; a change is logged.
    pub fn handle_device_check(&mut self, now: Instant, wall: u64, ok: bool, detail: String) {
        self.input(now, wall);
        if self.device.as_ref().map(|d| d.ok) != Some(ok) {
            self.effects.push_back(Effect::Log(if ok {
                Note::info(format!("fencing device answers ({detail})"))
            } else {
                Note::error(format!(
                    "fencing device does NOT answer its monitor ({detail}): a takeover that needs fencing would fail"
                ))
            }));
        }
        self.device = Some(DeviceCheck { ok, detail });
        self.turn(now, wall);
    }

    /// A keepalive could not be sent on link `link`; logged at most every ten seconds.
    pub fn handle_send_error(&mut self, now: Instant, link: usize, error: &str) {
        let name = self.link_name(link);
        if let Some(n) = self.drops.note(now, &name, format!("keepalive not sent: {error}")) {
            self.effects.push_back(Effect::Log(n));
        }
    }

    /// An operator's command.
    pub fn handle_command(&mut self, now: Instant, wall: u64, command: Command) -> Reply {
        self.input(now, wall);
        let reply = self.command(now, wall, command);
        self.turn(now, wall);
        reply
    }

    /// The local replica `replica` lost its peer while Primary and asks, showing
    /// its generations `gi`, that the peer's replica be outdated. The answer comes
    /// as [`Effect::OutdateAnswered`] with the returned id.
    pub fn handle_outdate_peer(&mut self, now: Instant, wall: u64, replica: &str, gi: &str) -> Result<u64, String> {
        self.input(now, wall);
        let mut out = Vec::new();
        let dead = self.membership.peer() == PeerLiveness::Dead;
        let id = self.relay.ask(now, replica, gi, dead, &mut out);
        if id.is_ok() {
            self.log(Note::warn(format!(
                "replica {replica} lost its peer: asking {} to outdate its copy{}",
                self.names.peer,
                if dead { " (it is dead on every link)" } else { "" }
            )));
        }
        self.relay_outputs(out, wall);
        self.turn(now, wall);
        id
    }

    /// What the replicas' daemons said: the promotion gate, and the data split
    /// brains they found (decided by the policy, see `Role::data_split_brains`).
    pub fn handle_replicas(&mut self, now: Instant, wall: u64, gate: DataGate, split_brains: Vec<DataSplitBrain>) {
        self.input(now, wall);
        self.split_brains = split_brains;
        self.set_gate(gate, wall);
        self.turn(now, wall);
    }

    /// What the group's replicated data here allows now; a change is logged, and
    /// advertised by the turn that follows.
    fn set_gate(&mut self, gate: DataGate, wall: u64) {
        // A closed gate never starts a promotion, whatever the target says this
        // turn (the engine may act on a result before the role decides again).
        let outs = self.engine.hold_promotion(gate == DataGate::Closed);
        self.engine_outputs(outs, wall);
        let was = self.role.data();
        if self.role.set_data(gate) {
            let words = |g: DataGate| match g {
                DataGate::Open => "no replica".to_string(),
                DataGate::Score(n) => format!("eligible (promotion score {n})"),
                DataGate::IfPeerFenced => "Consistent: eligible only once the peer is fenced".to_string(),
                DataGate::Closed => "NOT eligible".to_string(),
            };
            let n = format!("promotion gate: {} -> {}", words(was), words(gate));
            self.log(if gate == DataGate::Closed {
                Note::warn(n)
            } else {
                Note::info(n)
            });
        }
    }

    /// The local replica answered the peer's outdate ask `ask`.
    pub fn handle_outdate_local(
        &mut self,
        now: Instant,
        wall: u64,
        replica: &str,
        ask: AskId,
        rc: OutdateRc,
        detail: String,
    ) {
        self.input(now, wall);
        self.log(Note::info(format!(
            "replica {replica}: outdate asked by {}: {} ({detail})",
            self.names.peer,
            rc.words()
        )));
        if rc == OutdateRc::Outdated && self.group_replicas.iter().any(|r| r == replica) {
            // Stale from now on, not from the shell's next reading of the replica.
            self.set_gate(DataGate::Closed, wall);
        }
        let mut out = Vec::new();
        self.relay.local_done(replica, ask, rc, detail, &mut out);
        self.relay_outputs(out, wall);
        self.turn(now, wall);
    }

    /// New keys (authkeys reloaded); effective for the next packet.
    pub fn set_auth(&mut self, auth: Auth) {
        self.membership.set_auth(auth);
    }

    // ---- outputs ------------------------------------------------------------

    /// The next thing to do, oldest first.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When the node next has work of its own (keepalive, deadlines, monitors,
    /// tie-break expiry, fence retry, heal waits).
    pub fn poll_timeout(&self) -> Instant {
        let now = self.last_input;
        [
            self.engine.next_deadline(),
            self.reach.as_ref().and_then(|r| r.next_change(now)),
            self.role.next_deadline(),
            self.relay.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .fold(self.membership.next_deadline(), Instant::min)
    }

    /// Leaving (SIGTERM) and nothing of the group runs here any more, or it is
    /// blocked: the daemon may exit.
    pub fn finished(&self) -> bool {
        self.role.leaving() && (self.engine.all_stopped() || self.engine.is_blocked())
    }

    // ---- read-only views, for status and the simulation's checks -------------

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn reach(&self) -> Option<&Reach> {
        self.reach.as_ref()
    }

    pub fn last_change(&self) -> Option<&Change> {
        self.last_change.as_ref()
    }

    pub fn device_check(&self) -> Option<&DeviceCheck> {
        self.device.as_ref()
    }

    /// The wall time of a monotonic instant, by the latest input's clocks.
    pub fn wall_at(&self, at: Instant) -> u64 {
        self.last_wall
            .saturating_sub(self.last_input.saturating_duration_since(at).as_secs())
    }

    pub fn local_name(&self) -> &str {
        &self.names.local
    }

    pub fn peer_name(&self) -> &str {
        &self.names.peer
    }

    // ---- the turn -----------------------------------------------------------

    /// Every input passes here first: the clocks, and a stall noticed.
    fn input(&mut self, now: Instant, wall: u64) {
        let gap = now.saturating_duration_since(self.last_input);
        if gap > stall_threshold(&self.timing) {
            let grace = stall_grace(&self.timing);
            self.membership.hold_deadlines(now + grace);
            self.role.stalled();
            self.effects.push_back(Effect::Log(Note::warn(format!(
                "this node was not scheduled for {} ms (a stalled VM, a swapping host, SIGSTOP?): reading what the links hold before believing any deadline (for {} ms)",
                gap.as_millis(),
                grace.as_millis()
            ))));
        }
        self.last_input = self.last_input.max(now);
        self.last_wall = wall;
    }

    /// This node's part after any input, in the one order that exists: the
    /// tie-break count, the role's decision, then its consequences: persist before
    /// anything acts on it, the advert before the group moves, the target, holding
    /// or re-asserting monitors, fencing.
    fn turn(&mut self, now: Instant, wall: u64) {
        if let Some(r) = &self.reach {
            let n = r.count(now);
            if self.role.reach() != Some(n) {
                self.effects.push_back(Effect::Log(Note::info(format!(
                    "tie-break: {n} of {} target(s) reachable",
                    r.len()
                ))));
            }
            self.role.set_reach(n);
        }
        let facts = PeerFacts {
            liveness: self.membership.peer(),
            advert: self.membership.peer_advert(),
            ran_ms: self.membership.peer_ran_ms(now),
            late: self.membership.peer_late(),
            catching_up: self.membership.catching_up(now),
        };
        let act = self.role.reconsider(facts, &self.engine, now, wall);
        self.effects.extend(act.notes.into_iter().map(Effect::Log));
        self.effects.extend(act.persist.into_iter().map(Effect::Persist));
        self.membership.set_running_since(act.running_since);
        if let Some(advert) = act.advert {
            self.membership.set_advert(advert);
            let out = self.membership.send_now(now, wall);
            self.membership_outputs(vec![out], now);
        }
        if let Some(t) = act.target {
            let outs = self.engine.set_target(t);
            self.engine_outputs(outs, wall);
        }
        let outs = self.engine.set_quiet(act.quiet);
        self.engine_outputs(outs, wall);
        if act.reassert {
            self.effects.push_back(Effect::Log(Note::info(
                "re-asserting the group's resources (a monitor of each) before the peer stops its copy",
            )));
            let outs = self.engine.reassert();
            self.engine_outputs(outs, wall);
        }
        if act.fence {
            self.effects.push_back(Effect::FencePeer {
                peer_runs_group: self.peer_runs_group(),
            });
        }
        // The relay after the role: a fencing result or a dead peer settles its asks.
        let mut out = Vec::new();
        let dead = self.membership.peer() == PeerLiveness::Dead;
        self.relay
            .poll(now, dead, self.fence_view(), self.role.fences_done(), &mut out);
        self.relay_outputs(out, wall);
        // Every turn, also with none pending: the role learns that the split
        // brains it lost are over.
        {
            // Only on a fresh view of the peer: an advert from before a silence may
            // say it stopped the group it has run since (found by the cluster
            // simulation: a node decided to keep its data on such an advert, the
            // peer later kept its own, and both replicas waited forever).
            let peer = self
                .membership
                .peer_advert()
                .filter(|_| self.membership.peer() == PeerLiveness::Up && !self.membership.peer_late());
            let heal = self
                .role
                .data_split_brains(&self.split_brains, self.engine.holding(), peer, now, wall);
            self.effects.extend(heal.notes.into_iter().map(Effect::Log));
            self.effects.extend(heal.persist.into_iter().map(Effect::Persist));
            self.effects.extend(heal.actions.into_iter().map(Effect::Replica));
        }
    }

    /// The peer's last advert said it runs the group (or holds any of it).
    fn peer_runs_group(&self) -> bool {
        self.membership
            .peer_advert()
            .is_some_and(|a| a.holding != crate::model::Holding::Stopped)
    }

    /// Fencing, as the relay sees it.
    fn fence_view(&self) -> outdate::Fence {
        if !self.role.fencing() {
            return outdate::Fence::None;
        }
        match self.role.fence_state() {
            FenceState::NotFenced => outdate::Fence::Idle,
            FenceState::InProgress => outdate::Fence::InProgress,
            FenceState::Fenced => outdate::Fence::Fenced,
            FenceState::Failed => outdate::Fence::Failed,
        }
    }

    fn relay_outputs(&mut self, outs: Vec<outdate::Out>, wall: u64) {
        for o in outs {
            match o {
                outdate::Out::SendAsk { .. } | outdate::Out::SendAnswer { .. } => {
                    if let Some(bytes) = self.membership.relay(&o, wall) {
                        self.effects.push_back(Effect::Transmit(bytes));
                    }
                }
                outdate::Out::OutdateLocal { replica, ask, gi } => {
                    self.effects.push_back(Effect::OutdateLocal { replica, ask, gi })
                }
                outdate::Out::FencePeer => {
                    if self.role.fence_for_data() {
                        self.log(Note::warn(format!(
                            "{} did not confirm that its replica is outdated: fencing it",
                            self.names.peer
                        )));
                        self.effects.push_back(Effect::FencePeer {
                            peer_runs_group: self.peer_runs_group(),
                        });
                    }
                }
                outdate::Out::Answered { id, rc, detail } => {
                    let n = format!("outdate ask {id}: {} ({detail})", rc.words());
                    self.log(match rc {
                        OutdateRc::Inconsistent | OutdateRc::Outdated | OutdateRc::Fenced => Note::info(n),
                        _ => Note::warn(n),
                    });
                    self.effects.push_back(Effect::OutdateAnswered { id, rc, detail });
                }
            }
        }
    }

    fn command(&mut self, now: Instant, wall: u64, command: Command) -> Reply {
        match command {
            Command::Resolve { keep } => {
                let peer_waits = self.membership.peer() == PeerLiveness::Up
                    && self.membership.peer_advert().is_some_and(|a| a.awaiting_operator);
                self.role.resolve(&keep, peer_waits)
            }
            Command::Acknowledge => self.role.acknowledge(),
            Command::Standby => {
                self.log(Note::info("standby requested by the operator"));
                self.role.set_standby(true);
                Ok("this node is in standby: the group moves to the peer (`pairbeat online` ends standby)".into())
            }
            Command::Online => {
                self.log(Note::info("online requested by the operator"));
                self.role.set_standby(false);
                Ok("this node is online: it may run the group again".into())
            }
            Command::Takeover => {
                self.role.request_takeover()?;
                self.log(Note::info("takeover requested by the operator"));
                Ok("asked the peer to hand the group over; it starts here once the peer has stopped it".into())
            }
            Command::Cleanup { resource } => {
                let index = match &resource {
                    None => None,
                    Some(id) => match self.names.resources.iter().position(|r| r == id) {
                        Some(i) => Some(i),
                        None => return Err(format!("no resource `{id}` in the group")),
                    },
                };
                let what = resource.as_deref().unwrap_or("all resources");
                self.log(Note::info(format!("cleanup of {what} requested")));
                let outs = self.engine.cleanup(now, index);
                self.engine_outputs(outs, wall);
                Ok(format!(
                    "cleaned up {}: failures forgotten, state probed again",
                    resource.as_deref().unwrap_or("every resource")
                ))
            }
            Command::Leave => {
                self.log(Note::info(
                    "SIGTERM: handing the group over (stopping it here), then exiting",
                ));
                self.role.leave();
                Ok("leaving".into())
            }
        }
    }

    fn log(&mut self, n: Note) {
        self.effects.push_back(Effect::Log(n));
    }

    fn link_name(&self, i: usize) -> String {
        self.names.links.get(i).cloned().unwrap_or_else(|| format!("#{i}"))
    }

    fn membership_outputs(&mut self, outs: Vec<Output>, now: Instant) {
        for o in outs {
            match o {
                Output::Broadcast(bytes) => self.effects.push_back(Effect::Transmit(bytes)),
                Output::PersistPeer { generation, seq } => self
                    .effects
                    .push_back(Effect::Persist(Persist::PeerFloor { generation, seq })),
                Output::Dropped { link, why } => {
                    let name = self.link_name(link);
                    if let Some(n) = self.drops.note(now, &name, drop_reason(why)) {
                        self.effects.push_back(Effect::Log(n));
                    }
                }
                Output::Event(e) => {
                    let n = self.membership_note(e);
                    self.effects.push_back(Effect::Log(n));
                }
                Output::Relay(r) => {
                    let mut out = Vec::new();
                    self.relay.on_message(r, self.fence_view(), &mut out);
                    self.relay_outputs(out, self.last_wall);
                }
            }
        }
    }

    fn membership_note(&self, e: Event) -> Note {
        let peer = &self.names.peer;
        match e {
            Event::Liveness(e) => match e {
                LivenessEvent::LinkUp { link } => Note::info(format!("Link {peer}:{} up", self.link_name(link))),
                LivenessEvent::LinkLate { link, silent } => Note::debug(format!(
                    "Link {peer}:{} late: silent {} ms",
                    self.link_name(link),
                    silent.as_millis()
                )),
                LivenessEvent::LinkDead { link, silent } => Note::warn(format!(
                    "Link {peer}:{} dead (silent {} ms)",
                    self.link_name(link),
                    silent.as_millis()
                )),
                LivenessEvent::PeerUp => Note::info(format!("Node {peer} is up")),
                LivenessEvent::PeerDead { silent } => Note::warn(format!(
                    "Node {peer} is dead: silent on every link for {} ms",
                    silent.as_millis()
                )),
                LivenessEvent::LateHeartbeat { interval } => Note::warn(format!(
                    "Late heartbeat: Node {peer}: interval {} ms",
                    interval.as_millis()
                )),
            },
            Event::PeerRestarted { generation, previous } => match previous {
                Some(p) => Note::warn(format!("Node {peer} restarted (generation {p} -> {generation})")),
                None => Note::info(format!("Node {peer}: generation {generation}")),
            },
            Event::PeerAdvert(a) => Note::debug(format!("{peer} advertises {a:?}")),
            Event::PacketsLost { count } => Note::debug(format!("{count} packet(s) from {peer} lost on every link")),
        }
    }

    fn engine_outputs(&mut self, outs: Vec<resources::Output>, wall: u64) {
        for o in outs {
            match o {
                resources::Output::Run(req) => {
                    self.effects.push_back(Effect::Log(Note::debug(format!(
                        "{} {} (timeout {} ms)",
                        req.action.name(),
                        self.names.resources[req.rsc],
                        req.timeout.as_millis()
                    ))));
                    self.effects.push_back(Effect::RunAgent(req));
                }
                resources::Output::Event(e) => {
                    if let resources::Event::Settled { target } = &e {
                        let what = match target {
                            Target::Active => format!("group running on {}", self.names.local),
                            Target::Passive | Target::Stopped => format!("group stopped on {}", self.names.local),
                        };
                        self.last_change = Some(Change { at: wall, what });
                    }
                    let n = self.engine_note(&e);
                    self.effects.push_back(Effect::Log(n));
                }
            }
        }
    }

    fn engine_note(&self, e: &resources::Event) -> Note {
        use resources::Event;
        let id = |i: usize| self.names.resources[i].as_str();
        match e {
            Event::Changed { rsc, from, to } => match to {
                RscState::Started | RscState::Promoted | RscState::Stopped if *from != RscState::Unknown => {
                    Note::info(format!("resource {}: {:?} -> {:?}", id(*rsc), from, to))
                }
                RscState::Started | RscState::Promoted => {
                    Note::info(format!("resource {} found running (adopted, not restarted)", id(*rsc)))
                }
                _ => Note::debug(format!("resource {}: {:?} -> {:?}", id(*rsc), from, to)),
            },
            Event::Failed { rsc, failure } => Note::warn(format!(
                "resource {}: {} failed: {}{}",
                id(*rsc),
                failure.action,
                failure.outcome,
                failure.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            )),
            Event::LeaveNode { reason, .. } => Note::warn(format!(
                "the group may no longer run on this node: {reason}; stopping it here"
            )),
            Event::FenceMe { reason, .. } => Note::error(format!(
                "this node must be fenced before the peer may take over: {reason}"
            )),
            Event::Blocked { reason, .. } => Note::error(format!(
                "group BLOCKED: {reason}; nothing more is done with it until `pairbeat cleanup`, and it must not start on the peer unless this node is fenced"
            )),
            Event::Settled { target } => Note::info(match target {
                Target::Active => "group running on this node",
                Target::Passive => "group in standby on this node",
                Target::Stopped => "group stopped on this node",
            }),
        }
    }
}

fn drop_reason(why: DropReason) -> String {
    match why {
        DropReason::Wire(e) => e.to_string(),
        DropReason::UnknownNode => "authentic packet from a node that is not our peer".into(),
        DropReason::Unsequenced => "packet without generation or sequence number".into(),
        DropReason::Replay => "replayed packet (old generation or sequence number)".into(),
    }
}

/// Bad packets and failed sends are logged at most once per link and reason every
/// ten seconds, with a count, so a flood cannot fill the disk or drown the log.
#[derive(Default)]
struct DropLog {
    last: HashMap<(String, String), (Option<Instant>, u64)>,
}

const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

impl DropLog {
    fn note(&mut self, now: Instant, link: &str, reason: String) -> Option<Note> {
        let entry = self.last.entry((link.to_string(), reason.clone())).or_insert((None, 0));
        entry.1 += 1;
        if entry
            .0
            .is_none_or(|t| now.saturating_duration_since(t) >= DROP_LOG_EVERY)
        {
            let n = Note::warn(format!(
                "link {link}: {reason} ({} in the last {}s)",
                entry.1,
                DROP_LOG_EVERY.as_secs()
            ));
            *entry = (Some(now), 0);
            return Some(n);
        }
        None
    }
}

#[cfg(test)]
mod tests;
