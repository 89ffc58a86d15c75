//! The replicated disk's pure core: DRBD 8.4's two-node semantics without the
//! kernel module. Nothing here does I/O; `pairbeat-replicad` is the shell around it.
//!
//! - [`data`]: block data, shared and aligned, from the kernel to both disks.
//! - [`gi`]: generation identifiers and the connect-time decision table.
//! - [`dirtymap`]: which extents may differ from the peer.
//! - [`meta`]: the metadata file's two checksummed slots.
//! - [`wire`]: the replication link's frames.
//! - [`hello`]: what the link's HELLO must agree on and what AUTH's HMAC covers.
//! - [`state`]: one replica's state machine (data path, handshake, resync, peer loss).

pub mod data;
pub mod dirtymap;
pub mod gi;
pub mod hello;
pub mod meta;
pub mod report;
pub mod state;
pub mod wire;
