//! The state files, written by one thread in the order the node asked for them, so
//! that a slow disk never holds back the loop and its keepalives.
//!
//! Each write is two fsyncs (the file, then its directory); on a busy host one can
//! take longer than a short deadtime, and the peer would declare a node dead that is
//! only waiting for its disk. So the loop hands every write to this thread and goes
//! on. Order is kept: one thread, one queue.
//!
//! Some writes are barriers ([`is_barrier`]): the ownership epoch and standby must
//! be on disk before what the node asked next is carried out (the group's start, a
//! stop for standby). The shell holds those later effects, keepalives and log lines
//! excepted, until this thread reports the barrier written. The others (the
//! split-brain log, the peer's sequence floor) are records: written in order,
//! waited for by nobody.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::Persist;

/// A write slower than this is logged: at the shortest deadtimes it would have cost
/// keepalives had the loop made it.
const SLOW: Duration = Duration::from_millis(100);

/// The node's later effects wait for this write to be on disk.
pub fn is_barrier(p: &Persist) -> bool {
    matches!(p, Persist::Epoch(_) | Persist::Standby(_))
}

/// The writer thread and its queue. Dropping it lets the queued writes finish.
pub struct Persister {
    tx: Option<mpsc::Sender<(u64, Persist)>>,
    thread: Option<JoinHandle<()>>,
    next: u64,
}

impl Persister {
    /// Starts the writer for `dir`; `done(token)` is called after each write, in order.
    pub fn spawn(dir: PathBuf, done: impl Fn(u64) + Send + 'static) -> std::io::Result<Persister> {
        let (tx, rx) = mpsc::channel::<(u64, Persist)>();
        let thread = std::thread::Builder::new()
            .name("state-writer".to_string())
            .spawn(move || {
                for (token, p) in rx {
                    let what = name(&p);
                    let t = Instant::now();
                    super::state_files::persist(&dir, p);
                    let took = t.elapsed();
                    if took > SLOW {
                        log::warn!(
                            "writing {what} in {} took {} ms: the state directory's disk is slow (keepalives went on meanwhile)",
                            dir.display(),
                            took.as_millis()
                        );
                    }
                    done(token);
                }
            })?;
        Ok(Persister {
            tx: Some(tx),
            thread: Some(thread),
            next: 0,
        })
    }

    /// Queues a write; returns its token (increasing: a token's report means every
    /// write before it is done too).
    pub fn write(&mut self, p: Persist) -> u64 {
        self.next += 1;
        if let Some(tx) = &self.tx {
            // The thread only ends when `tx` is dropped, so this cannot fail.
            let _ = tx.send((self.next, p));
        }
        self.next
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn name(p: &Persist) -> &'static str {
    match p {
        Persist::Standby(_) => "standby",
        Persist::Epoch(_) => "epoch",
        Persist::SplitBrainLog(_) => "split-brains.json",
        Persist::PeerFloor { .. } => "peer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn writes_land_in_order_and_each_is_reported_after_it_is_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, check) = (Arc::clone(&seen), dir.clone());
        let mut p = Persister::spawn(dir.clone(), move |token| {
            // When token 2 is reported, epoch 8 (the later write) is on disk.
            let epoch = std::fs::read_to_string(check.join("epoch")).unwrap_or_default();
            s.lock().unwrap().push((token, epoch.trim().to_string()));
        })
        .unwrap();
        assert_eq!(p.write(Persist::Epoch(7)), 1);
        assert_eq!(p.write(Persist::Epoch(8)), 2);
        assert_eq!(p.write(Persist::Standby(true)), 3);
        drop(p);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![(1, "7".to_string()), (2, "8".to_string()), (3, "8".to_string())]
        );
        assert!(dir.join("standby").exists(), "dropping the writer finishes the queue");
    }

    #[test]
    fn only_epoch_and_standby_hold_back_what_follows() {
        assert!(is_barrier(&Persist::Epoch(1)));
        assert!(is_barrier(&Persist::Standby(false)));
        assert!(!is_barrier(&Persist::SplitBrainLog("{}".to_string())));
        assert!(!is_barrier(&Persist::PeerFloor { generation: 1, seq: 2 }));
    }
}
