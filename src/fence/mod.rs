//! The I/O half of split-brain prevention: the fencing device (run with the
//! fence-agents calling convention) and the ping tie-break probes. What to do with
//! their answers is the policy's business (`policy`); the pure bookkeeping of which
//! targets answered lately is `crate::reach`.

pub mod device;
pub mod probe;
