//! Heartbeat's `realtime`: SCHED_RR and locked memory for the daemon, so that a
//! loaded or swapping host cannot delay keepalives into a false failover.
//!
//! SCHED_RESET_ON_FORK keeps agents and other children at normal priority: only
//! pairbeatd's own thread runs realtime. Failure is logged and tolerated, as
//! Heartbeat does ("Cannot lock ourselves into memory"): the daemon still runs.

/// Priority within SCHED_RR: above every normal task, below the kernel's own
/// realtime threads (interrupt handlers run at 50).
const PRIORITY: libc::c_int = 10;

/// Applies realtime scheduling to the calling thread and locks memory; returns what
/// could not be done, for the log.
pub fn make_realtime() -> Vec<String> {
    let mut problems = Vec::new();
    let param = libc::sched_param {
        sched_priority: PRIORITY,
    };
    // SAFETY: sched_setscheduler reads `param` only; pid 0 means the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if rc != 0 {
        problems.push(format!(
            "cannot switch to SCHED_RR: {}",
            std::io::Error::last_os_error()
        ));
    }
    if let Err(e) = crate::memlock::lock_memory() {
        problems.push(format!("cannot lock ourselves into memory: {e}"));
    }
    problems
}
