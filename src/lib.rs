//! pairbeat: a two-node high-availability daemon in the line of Linux-HA Heartbeat + DRBD.
//!
//! The library holds everything the two binaries share: `pairbeatd` (the daemon)
//! and `pairbeat` (the operator's command). Modules, by job:
//!
//! Pure (no I/O, time passed in):
//! - [`model`]: the shared vocabulary; depends on nothing.
//! - [`wire`]: Heartbeat's packet format, digests and keys, the advert fields, replay checks.
//! - [`membership`]: is the peer alive, over which links.
//! - [`policy`]: who runs the group, as a pure function.
//! - [`role`]: this node's part: mode, advert, epoch, fencing state, heal handshake.
//! - [`resources`]: the group engine.
//! - [`reach`]: tie-break reachability.
//! - [`split_brain`]: the split-brain log.
//! - [`replica`]: the replicated disk's core: generations, decision table, metadata, frames.
//! - [`outdate`]: the outdate relay between the replicas, over the heartbeat links (dopd's job).
//! - [`attributes`]: node attributes agents set (promotion scores), and the gate they make.
//! - [`node`]: all of the above composed; the daemon and the simulation drive it.
//!
//! With I/O:
//! - [`config`]: pairbeat.toml — schema, validation with file:line errors, import of
//!   Heartbeat's ha.cf / haresources / authkeys.
//! - [`child`]: running one external program with hygiene, capture and kill rules.
//! - [`agent`]: running OCF / LSB / Heartbeat agents (through `child`), and the
//!   built-in ones: [`vip`] (rtnetlink, ARP) and [`filesystem`] (mount(2)), which
//!   share [`builtin`]'s vocabulary.
//! - [`fence`]: the fencing device (through `child`) and the tie-break probes.
//! - [`control`]: the unix-socket protocol between CLI and daemon, the status model, renderers.
//! - [`daemon`]: the tokio shell around the node: sockets, signals, the timer.
//! - [`replicad`]: the shell around one replica (pairbeat-replicad): disk thread,
//!   replication link, control socket.
//! - [`logging`]: the log backend chosen by `[daemon] log`.
//! - [`memlock`]: keeping a daemon's memory resident (`realtime`, the replica's supervisor).
//! - [`fuzzing`]: the fuzz targets' bodies (every decoder of outside input), shared by
//!   cargo-fuzz and the stable smoke test.
//! - [`crm`]: Pacemaker's `crm_attribute` / `crm_master` / `attrd_updater` / `crm_node`
//!   as agents call them under pairbeat (the `pairbeat` executable run by those names).
//!
//! `scripts/module-graph` (part of `make lint`) fails if the top-level modules ever
//! form a cycle.

pub mod agent;
pub mod attributes;
pub mod builtin;
pub mod child;
pub mod config;
pub mod control;
pub mod crm;
pub mod daemon;
pub mod fence;
pub mod filesystem;
pub mod fuzzing;
pub mod logging;
pub mod membership;
pub mod memlock;
pub mod model;
pub mod node;
pub mod outdate;
pub mod policy;
pub mod reach;
pub mod replica;
pub mod replicad;
pub mod resources;
pub mod role;
pub mod spawn;
pub mod split_brain;
pub mod vip;
pub mod wire;
