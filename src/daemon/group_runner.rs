//! The shell around the group engine: runs the operations it asks for as agent
//! processes (each in its own task, so the main loop never waits for an agent),
//! feeds results back, logs every decision once with its reason, and mirrors the
//! engine's view into status.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::Shared;
use crate::agent::{self, Paths, RunResult};
use crate::config::{Config, Resource};
use crate::control::status::{FailureStatus, ResourceState};
use crate::resources::{Engine, Event, Output, RscState, Target};

/// A finished operation: (request id, result).
pub type Finished = (u64, RunResult);

pub struct GroupRunner {
    pub engine: Engine,
    paths: Paths,
    rscs: Vec<Resource>,
    local: String,
    done: mpsc::Sender<Finished>,
    /// Monotonic instant ↔ wall time, for failure timestamps in status.
    epoch: (Instant, SystemTime),
    /// The last time the group settled, for "Last change:".
    last_change: Option<crate::control::status::Change>,
}

impl GroupRunner {
    pub fn new(config: &Config, done: mpsc::Sender<Finished>) -> Self {
        GroupRunner {
            engine: Engine::new(&config.group),
            paths: Paths {
                ocf_root: config.daemon.ocf_root.clone(),
                ..Paths::default()
            },
            rscs: config.group.resources.clone(),
            local: config.local_name().to_string(),
            done,
            epoch: (Instant::now(), SystemTime::now()),
            last_change: None,
        }
    }

    /// Reads each OCF agent's meta-data for its advised timeouts; says what is missing.
    pub async fn load_metadata(&mut self) {
        for (i, r) in self.rscs.iter().enumerate() {
            if !matches!(r.agent, crate::config::AgentSpec::Ocf { .. }) {
                continue;
            }
            match agent::metadata(&self.paths, r).await {
                Ok(md) => self.engine.set_metadata_timeouts(i, md.timeouts),
                Err(e) => log::warn!("resource {}: {e}", r.id),
            }
        }
    }

    /// Carries out the engine's outputs.
    pub fn handle(&mut self, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Run(req) => {
                    let r = &self.rscs[req.rsc];
                    log::debug!(
                        "{} {} (timeout {} ms)",
                        req.action.name(),
                        r.id,
                        req.timeout.as_millis()
                    );
                    let (paths, rsc, done) = (self.paths.clone(), r.clone(), self.done.clone());
                    tokio::spawn(async move {
                        let result = agent::run(&paths, &rsc, req.action, req.timeout).await;
                        let _ = done.send((req.id, result)).await;
                    });
                }
                Output::Event(e) => {
                    if let Event::Settled { target } = &e {
                        let what = match target {
                            Target::Active => format!("group running on {}", self.local),
                            Target::Passive | Target::Stopped => format!("group stopped on {}", self.local),
                        };
                        self.last_change = Some(crate::control::status::Change {
                            at: self.wall(Instant::now()),
                            what,
                        });
                    }
                    self.log(&e);
                }
            }
        }
    }

    fn log(&self, e: &Event) {
        let id = |i: usize| self.rscs[i].id.as_str();
        match e {
            Event::Changed { rsc, from, to } => match to {
                RscState::Started | RscState::Promoted | RscState::Stopped if *from != RscState::Unknown => {
                    log::info!("resource {}: {:?} -> {:?}", id(*rsc), from, to)
                }
                RscState::Started | RscState::Promoted => log::info!("resource {} found running (adopted, not restarted)", id(*rsc)),
                _ => log::debug!("resource {}: {:?} -> {:?}", id(*rsc), from, to),
            },
            Event::Failed { rsc, failure } => log::warn!(
                "resource {}: {} failed: {}{}",
                id(*rsc),
                failure.action,
                failure.outcome,
                failure.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            Event::LeaveNode { reason, .. } => log::warn!("the group may no longer run on this node: {reason}; stopping it here"),
            Event::FenceMe { reason, .. } => log::error!("this node must be fenced before the peer may take over: {reason}"),
            Event::Blocked { reason, .. } => log::error!(
                "group BLOCKED: {reason}; nothing more is done with it until `pairbeat cleanup`, and it must not start on the peer unless this node is fenced"
            ),
            Event::Settled { target } => match target {
                Target::Active => log::info!("group running on this node"),
                Target::Passive => log::info!("group in standby on this node"),
                Target::Stopped => log::info!("group stopped on this node"),
            },
        }
    }

    /// Mirrors resource states into status.
    pub fn publish(&self, shared: &Arc<Mutex<Shared>>) {
        let Ok(mut s) = shared.lock() else { return };
        let mut all_up = !self.rscs.is_empty();
        for (i, r) in s.status.group.resources.iter_mut().enumerate() {
            let v = self.engine.view(i);
            r.state = match v.state {
                RscState::Unknown => ResourceState::Unknown,
                RscState::Stopped => ResourceState::Stopped,
                RscState::Started => ResourceState::Started,
                RscState::Promoted => ResourceState::Promoted,
                RscState::Failed => ResourceState::Failed,
                RscState::Blocked => ResourceState::Blocked,
            };
            all_up &= matches!(v.state, RscState::Started | RscState::Promoted);
            r.node = match v.state {
                RscState::Started | RscState::Promoted | RscState::Failed | RscState::Blocked => {
                    Some(self.local.clone())
                }
                _ => None,
            };
            r.fail_count = v.fail_count;
            r.last_failure = v.last_failure.map(|f| FailureStatus {
                action: f.action.to_string(),
                outcome: f.outcome.to_string(),
                reason: f.reason,
                at: self.wall(f.at),
            });
        }
        s.status.group.owner = (all_up && self.engine.target() == Some(Target::Active)).then(|| self.local.clone());
        s.status.group.blocked = self.engine.is_blocked();
        if self.last_change.is_some() {
            s.status.last_change = self.last_change.clone();
        }
        s.status.group.banned = self.engine.banned().map(str::to_string);
    }

    fn wall(&self, at: Instant) -> u64 {
        let t = self.epoch.1 + at.saturating_duration_since(self.epoch.0);
        t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// The index of a resource by id.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.rscs.iter().position(|r| r.id == id)
    }
}
