//! This node's part in the pair: its operator mode (standby, persisted in the state
//! dir; leaving, on SIGTERM; a pending takeover request), what it advertises to the
//! peer, and the policy decision that sets the group's target. Re-evaluated after
//! every event; a changed advert goes out at once, and each decision is logged once
//! with its reason.

use std::path::PathBuf;

use crate::membership::{Membership, Output, PeerLiveness};
use crate::policy::{self, Advert, Decision, Local, Mode, Peer};
use crate::resources::{Engine, Target};

pub struct Role {
    me: usize,
    preferred: usize,
    auto_failback: bool,
    standby_file: PathBuf,
    pub standby: bool,
    pub leaving: bool,
    pub takeover: bool,
    advert: Option<Advert>,
    decision: Option<Decision>,
}

impl Role {
    pub fn new(me: usize, preferred: usize, auto_failback: bool, state_dir: &std::path::Path) -> Self {
        let standby_file = state_dir.join("standby");
        let standby = standby_file.exists();
        if standby {
            log::info!("this node is in standby (set before the restart; `pairbeat online` ends it)");
        }
        Role {
            me,
            preferred,
            auto_failback,
            standby_file,
            standby,
            leaving: false,
            takeover: false,
            advert: None,
            decision: None,
        }
    }

    /// Standby survives restarts: an operator who took a node out expects it to stay out.
    pub fn set_standby(&mut self, on: bool) {
        self.standby = on;
        self.takeover = false;
        let r = if on {
            std::fs::write(&self.standby_file, "standby\n")
        } else {
            std::fs::remove_file(&self.standby_file).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        };
        if let Err(e) = r {
            log::warn!("cannot record standby in {}: {e}", self.standby_file.display());
        }
    }

    pub fn mode(&self, engine: &Engine) -> Mode {
        if self.leaving {
            Mode::Leaving
        } else if self.standby {
            Mode::Standby
        } else if engine.banned().is_some() {
            Mode::Banned
        } else {
            Mode::Online
        }
    }

    /// Recomputes advert and decision. Returns the packet to send at once if the advert
    /// changed, and the new target if it changed.
    pub fn reconsider(
        &mut self,
        core: &mut Membership,
        engine: &Engine,
        wall_secs: u64,
    ) -> (Option<Output>, Option<Target>) {
        if self.takeover
            && engine.holding() == policy::Holding::Running
            && engine.is_settled()
            && engine.target() == Some(Target::Active)
        {
            self.takeover = false;
        }
        let advert = Advert {
            holding: engine.holding(),
            mode: self.mode(engine),
            takeover: self.takeover,
            settled: engine.is_settled(),
        };
        let mut send = None;
        if self.advert != Some(advert) {
            self.advert = Some(advert);
            core.set_advert(advert);
            send = Some(core.send_now(wall_secs));
        }
        // Decide on facts: not before every resource was probed.
        if !engine.probed() {
            return (send, None);
        }
        let peer = match core.peer() {
            PeerLiveness::Unknown => Peer::Unknown,
            PeerLiveness::Up => Peer::Alive(core.peer_advert()),
            PeerLiveness::Dead => Peer::Dead(core.peer_advert()),
        };
        let local = Local {
            me: self.me,
            preferred: self.preferred,
            auto_failback: self.auto_failback,
            advert,
        };
        let mut decision = policy::decide(&local, peer);
        if self.leaving {
            // Shutting down: everything stops, promotables included.
            decision.target = Target::Stopped;
        }
        let mut target = None;
        if self.decision.as_ref() != Some(&decision) {
            let verb = match decision.target {
                Target::Active => "run the group here",
                Target::Passive => "keep the group off this node",
                Target::Stopped => "stop everything here",
            };
            log::info!("decision: {verb}: {}", decision.reason);
            self.decision = Some(decision.clone());
        }
        if engine.target() != Some(decision.target) {
            target = Some(decision.target);
        }
        (send, target)
    }
}
