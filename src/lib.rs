//! pairbeat: a two-node high-availability daemon in the line of Linux-HA Heartbeat + DRBD.
//!
//! The library holds everything the two binaries share: `pairbeatd` (the daemon)
//! and `pairbeat` (the operator's command). Modules, by job:
//!
//! - [`config`]: pairbeat.toml — schema, validation with file:line errors, import of
//!   Heartbeat's ha.cf / haresources / authkeys.
//! - [`control`]: the unix-socket protocol between CLI and daemon, and the status model.
//! - [`daemon`]: the tokio shell that owns sockets, signals and timers.
//! - [`logging`]: the log backend chosen by `[daemon] log`.

pub mod agent;
pub mod config;
pub mod control;
pub mod daemon;
pub mod fence;
pub mod logging;
pub mod membership;
pub mod policy;
pub mod resources;
pub mod role;
pub mod split_brain;
pub mod wire;
