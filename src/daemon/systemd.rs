//! systemd's notify protocol, without libsystemd: datagrams to `$NOTIFY_SOCKET`.
//! READY=1 once the config is loaded and every socket is bound; STATUS= as the
//! group moves; WATCHDOG=1 from the main loop at half of `$WATCHDOG_USEC`, so a
//! wedged loop (the one that sends keepalives) gets the daemon restarted;
//! RELOADING=1 / READY=1 around SIGHUP; STOPPING=1 on SIGTERM. Without
//! `$NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// How often to send WATCHDOG=1, when systemd asked for it.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|p| {
            let p = p.to_string_lossy().into_owned();
            let addr = if let Some(name) = p.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                SocketAddr::from_pathname(&p).ok()?
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        // WATCHDOG_PID, when set, names the process the watchdog is for.
        let for_us = std::env::var("WATCHDOG_PID").map_or(true, |p| p.parse() == Ok(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2));
        Notifier { target, watchdog }
    }

    /// Sends one notification; failures are logged, never fatal (systemd may be gone).
    pub fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                log::debug!("sd_notify {state:?}: {e}");
            }
        }
    }
}
