//! The main loop's one timer: a timerfd, armed at the node's next deadline and
//! watched by the runtime's epoll like a socket.
//!
//! Why not `tokio::time::sleep_until`: tokio keeps its timers in a hierarchical
//! wheel, so a deadline a second away wakes the loop twice (once at the wheel
//! slot's start, 64 ms early, once at the deadline), and moving a deadline
//! earlier writes the runtime's eventfd, which wakes the loop once more for
//! nothing. Measured at keepalive 1 s: five to six wake-ups per keepalive sent and
//! received. A timerfd set to the exact deadline wakes the loop once, when due.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A timerfd that `AsyncFd` can watch (nix's implements `AsFd` only).
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct LoopTimer {
    fd: AsyncFd<Fd>,
    /// The deadline it is armed for.
    armed: Option<Instant>,
}

impl LoopTimer {
    pub fn new() -> std::io::Result<LoopTimer> {
        // CLOCK_MONOTONIC: std's Instant on Linux, the clock the node's deadlines use.
        let t = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the TimerFd owns its descriptor and returns the same one for as long
        // as it lives, which is as long as the AsyncFd that owns it.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(t), Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
        Ok(LoopTimer { fd, armed: None })
    }

    /// Arms the timer for `deadline` (a syscall only when it changes). A deadline
    /// already past fires at once.
    pub fn set(&mut self, deadline: Instant) {
        if self.armed == Some(deadline) {
            return;
        }
        // Relative to now: Instant's clock reading is not exposed; the error is the
        // few nanoseconds between the two readings. Zero would disarm the timer.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        match self.fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(wait)),
            TimerSetTimeFlags::empty(),
        ) {
            Ok(()) => self.armed = Some(deadline),
            // Cannot happen for a valid timerfd and duration; if it did, the loop would
            // still wake on datagrams, and the next set tries again.
            Err(e) => {
                log::error!("cannot arm the loop's timer: {e}");
                self.armed = None;
            }
        }
    }

    /// Until the armed deadline passes.
    pub async fn wait(&mut self) {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return std::future::pending().await;
            };
            // Consume the expiration count; EAGAIN means readiness was stale.
            let fired = guard.try_io(|fd| fd.get_ref().0.wait().map_err(std::io::Error::from));
            match fired {
                Ok(Ok(())) => {
                    // Consumed: the next poll need not read again to learn it is empty.
                    guard.clear_ready();
                    self.armed = None;
                    return;
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Ok(Err(e)) => {
                    log::error!("the loop's timer: {e}");
                    return;
                }
                // try_io cleared the readiness on WouldBlock: wait again.
                Err(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn it_fires_at_the_deadline_and_once() {
        let mut t = LoopTimer::new().unwrap();
        let start = Instant::now();
        t.set(start + Duration::from_millis(30));
        t.wait().await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30), "not before the deadline: {took:?}");
        // Re-armed later, a wait lasts until then, not until the old deadline.
        let again = Instant::now() + Duration::from_millis(20);
        t.set(again);
        t.wait().await;
        assert!(Instant::now() >= again);
        // A past deadline fires at once.
        t.set(Instant::now() - Duration::from_millis(5));
        tokio::time::timeout(Duration::from_secs(1), t.wait())
            .await
            .expect("a past deadline fires at once");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn moving_the_deadline_earlier_takes_effect() {
        let mut t = LoopTimer::new().unwrap();
        let start = Instant::now();
        t.set(start + Duration::from_secs(30));
        t.set(start + Duration::from_millis(10));
        tokio::time::timeout(Duration::from_secs(5), t.wait())
            .await
            .expect("the earlier deadline replaced the later one");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
