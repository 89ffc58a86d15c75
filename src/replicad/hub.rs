//! The replica's pure core (`crate::replica::state::Replica`) behind one lock, with
//! what carries out its effects: the disk queue, the link's outlet, the kernel's
//! pending block requests, the control commands waiting for an answer.
//!
//! Every thread that brings an input calls [`Hub::handle`]: the FUSE threads
//! (block requests), the disk thread (finished operations), the link's reader
//! thread (frames, the end of the connection) and the event loop (commands,
//! timers, a new connection). It takes the clock under the lock, so the core sees
//! time move forward only, and carries out the effects on the spot: a frame goes to
//! the socket, a reply to the kernel, from that same thread. The first version
//! routed every input through the event loop; on this machine kind each thread
//! hand-off costs tens of microseconds (waking an idle virtual CPU), and a
//! replicated write and flush crossed nine of them (BENCHMARKS.md).
//!
//! The lock is never held across a wait: disk I/O runs on the disk thread, sends
//! never block (`link::Outlet`), and nothing under it waits for FUSE (attaching and
//! detaching the device, whose ioctls call back through FUSE, run on threads of
//! their own). The event loop sleeps until the core's next deadline; an input on
//! another thread that makes it earlier, or that changes whether a connection is
//! wanted, kicks it awake.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{oneshot, Notify};

use super::control::Answer;
use super::device::{self, Pending};
use super::disk::Disk;
use super::link;
use crate::replica::state::{CmdId, Command, DiskOp, Effect, IoId, OutdateRc, Replica, Reply, ReqId, Request};
use crate::replica::wire;

pub struct Hub {
    core: Mutex<Core>,
    /// Disk operations in the core's order, and whether one is running.
    queue: Mutex<Queue>,
    /// The disk thread waits on it for work.
    work: Condvar,
    /// Taken only by whoever set `Queue::running`.
    disk: Mutex<Disk>,
    /// Wakes the event loop: the core's next deadline moved earlier, a connection
    /// is wanted or not any more, or a device is to be attached.
    pub kick: Notify,
}

#[derive(Default)]
struct Queue {
    ops: VecDeque<(IoId, DiskOp)>,
    running: bool,
}

/// Operations small enough to run on the thread that brought their request when
/// the queue is idle, instead of waking the disk thread: one hand-off fewer on a
/// replicated write's path. Large writes still go to the disk thread, so the link's
/// reader keeps reading while they are written (sequential throughput).
fn small(op: &DiskOp) -> bool {
    match op {
        DiskOp::Read { len, .. } => *len <= INLINE_MAX,
        DiskOp::Write { data, .. } => data.len() <= INLINE_MAX as usize,
        DiskOp::Discard { .. } | DiskOp::Sync | DiskOp::Meta(_) => true,
        DiskOp::SaveDivergent { .. } => false,
    }
}

const INLINE_MAX: u32 = 32 * 1024;
/// At most this many operations run inline in a row before the disk thread takes over.
const INLINE_RUN: usize = 4;

/// What the core lock guards.
pub struct Core {
    pub replica: Replica,
    /// Block requests the core has not answered, with their arrival (ids grow, so
    /// the first is the oldest).
    pub pending: BTreeMap<ReqId, (Instant, Pending)>,
    next_req: ReqId,
    /// Disk operations the last input queued, for the queue.
    ops: Vec<(IoId, DiskOp)>,
    outlet: Option<link::Outlet>,
    pub waiting: BTreeMap<CmdId, oneshot::Sender<Answer>>,
    /// The promotion whose device is attached once the core says Primary.
    pub promoting: Option<CmdId>,
    /// A promotion the core granted: the event loop attaches its device, and
    /// answers with what the core said.
    pub attach: Option<(CmdId, String)>,
    /// That promotion, until the event loop starts attaching.
    pub attach_start: Option<CmdId>,
    pub device: Option<device::Device>,
    /// What the event loop sleeps on: the deadline and whether it looks for a
    /// connection.
    armed: Option<Instant>,
    looking: bool,
    /// After the stop: block requests are refused.
    stopped: bool,
}

impl Hub {
    /// The hub and its disk thread.
    pub fn start(replica: Replica, disk: Disk, name: &str) -> std::io::Result<Arc<Hub>> {
        let hub = Arc::new(Hub {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            disk: Mutex::new(disk),
            core: Mutex::new(Core {
                replica,
                pending: BTreeMap::new(),
                next_req: 1,
                ops: Vec::new(),
                outlet: None,
                waiting: BTreeMap::new(),
                promoting: None,
                attach: None,
                attach_start: None,
                device: None,
                armed: None,
                looking: false,
                stopped: false,
            }),
            kick: Notify::new(),
        });
        let h = Arc::clone(&hub);
        std::thread::Builder::new()
            .name(format!("disk-{name}"))
            .spawn(move || h.disk_thread())?;
        Ok(hub)
    }

    /// The disk thread: runs whatever the queue holds when no one else is.
    fn disk_thread(&self) {
        loop {
            let mut q = lock(&self.queue);
            while q.running || q.ops.is_empty() {
                q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            let next = q.ops.pop_front().expect("not empty");
            q.running = true;
            drop(q);
            self.run(next);
        }
    }

    /// Runs one operation as the queue's only runner, gives its result to the core,
    /// and lets the next runner go.
    fn run(&self, (io, op): (IoId, DiskOp)) {
        let result = lock(&self.disk).run(op).map_err(|e| e.to_string());
        // Still `running`: the core hears of this operation before the next starts,
        // as it would from a single disk thread.
        self.handle_with(false, |c, now| c.replica.handle_io(now, io, result));
        let mut q = lock(&self.queue);
        q.running = false;
        if !q.ops.is_empty() {
            self.work.notify_one();
        }
    }

    /// On a thread that brought a request: runs the queue's next small operations
    /// here if nothing is running, else leaves them to the disk thread.
    fn run_inline(&self) {
        for _ in 0..INLINE_RUN {
            let mut q = lock(&self.queue);
            if q.running || q.ops.is_empty() {
                return;
            }
            if !small(&q.ops[0].1) {
                self.work.notify_one();
                return;
            }
            let next = q.ops.pop_front().expect("not empty");
            q.running = true;
            drop(q);
            self.run(next);
        }
    }

    /// Runs `f` on the core under the lock with the time now, carries out every
    /// effect it queued, and kicks the event loop if it must look again. Disk
    /// operations it queued go to the disk thread.
    pub fn handle<R>(&self, f: impl FnOnce(&mut Core, Instant) -> R) -> R {
        self.handle_with(false, f)
    }

    /// `handle` for a thread that may run the disk operations itself (a FUSE
    /// thread, the link's reader): see `small`.
    fn handle_inline<R>(&self, f: impl FnOnce(&mut Core, Instant) -> R) -> R {
        self.handle_with(true, f)
    }

    fn handle_with<R>(&self, inline: bool, f: impl FnOnce(&mut Core, Instant) -> R) -> R {
        let mut c = self.lock();
        let r = f(&mut c, Instant::now());
        c.drain();
        let queued = !c.ops.is_empty();
        if queued {
            // Under the core lock, so the queue holds them in the core's order.
            lock(&self.queue).ops.extend(c.ops.drain(..));
        }
        let deadline = c.replica.poll_timeout();
        let earlier = match (deadline, c.armed) {
            (Some(d), Some(a)) => d < a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let kick = earlier || c.wants_link() != c.looking || c.attach_start.is_some();
        drop(c);
        if kick {
            self.kick.notify_one();
        }
        if queued {
            if inline {
                self.run_inline();
            } else {
                let q = lock(&self.queue);
                if !q.running {
                    self.work.notify_one();
                }
            }
        }
        r
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    /// What the event loop sleeps on, recorded so other threads know when to kick:
    /// (look for a connection, the core's next deadline).
    pub fn arm(&self) -> (bool, Option<Instant>) {
        let mut c = self.lock();
        c.armed = c.replica.poll_timeout();
        c.looking = c.wants_link();
        (c.looking, c.armed)
    }

    /// A block request from the kernel, on the FUSE thread that read it.
    pub fn submit(&self, request: Request, reply: Pending) {
        self.handle_inline(|c, now| {
            if c.stopped {
                reply.answer(Reply::IoError("the replica is stopping".into()));
                return;
            }
            let id = c.next_req;
            c.next_req += 1;
            c.pending.insert(id, (now, reply));
            c.replica.handle_request(now, id, request);
        });
    }

    /// Serves an authenticated connection: its reader thread feeds this hub.
    pub fn adopt(self: &Arc<Self>, conn: link::Conn) {
        let id = conn.id();
        let (outlet, reader) = match link::open(conn) {
            Ok(halves) => halves,
            Err(e) => return log::warn!("replication link: cannot serve the connection: {e}"),
        };
        let fresh = self.handle(|c, now| {
            if c.outlet.is_some() || c.stopped {
                // Dropped, the outlet closes its connection.
                return false;
            }
            c.outlet = Some(outlet);
            c.replica.handle_connected(now);
            true
        });
        if !fresh {
            return;
        }
        let (frames, down) = (Arc::clone(self), Arc::clone(self));
        let started = reader.start(
            move |batch| {
                frames.handle_inline(|c, now| {
                    for env in batch {
                        // A frame may have ended the connection (the core's Disconnect).
                        if !c.is_current(id) {
                            return;
                        }
                        c.replica.handle_frame(now, env.seq, env.frame);
                        c.drain();
                    }
                });
            },
            move |why| down.lost(id, &why),
        );
        if let Err(e) = started {
            self.lost(id, &format!("cannot start its reader: {e}"));
        }
    }

    /// Connection `id` ended; the core hears of it if it was the one in use.
    fn lost(&self, id: u64, why: &str) {
        self.handle(|c, now| {
            if c.is_current(id) {
                c.outlet = None;
                log::warn!("replication link down: {why}");
                c.replica.handle_disconnected(now, why);
            }
        });
    }

    /// The stop: the core says BYE (a Secondary leaving a Primary outdates itself
    /// first), and the outlet that is to send it.
    pub fn stop(&self, cmd: CmdId) -> Option<link::Outlet> {
        self.handle(|c, now| {
            c.replica.handle_command(now, cmd, Command::Stop);
            // The BYE goes into the outlet before it is taken.
            c.drain();
            c.stopped = true;
            c.outlet.take()
        })
    }
}

/// A panic under a lock aborts the process (release profile), so a poisoned lock
/// is only seen in a test that is failing anyway.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    fn is_current(&self, id: u64) -> bool {
        self.outlet.as_ref().is_some_and(|o| o.id() == id)
    }

    fn wants_link(&self) -> bool {
        self.replica.wants_connection() && self.outlet.is_none() && !self.stopped
    }

    /// Carries out every effect the core queued, in order.
    pub fn drain(&mut self) {
        while let Some(e) = self.replica.poll_effect() {
            match e {
                Effect::Send { seq, frame } => {
                    if let Some(o) = &self.outlet {
                        o.send(wire::encode_parts(seq, 0, &frame));
                    }
                }
                Effect::Disk { io, op } => self.ops.push((io, op)),
                Effect::Reply { req, reply } => {
                    if let Some((_, p)) = self.pending.remove(&req) {
                        p.answer(reply);
                    }
                }
                Effect::Disconnect { reason } => {
                    log::warn!("dropping the replication link: {reason}");
                    // Dropped, the outlet sends what it holds and shuts the socket;
                    // its reader then ends, no longer current.
                    self.outlet = None;
                }
                Effect::OutdatePeer { .. } => {
                    log::warn!("outdate-peer: the relay through pairbeatd is not available yet; answering \"peer unreachable\"");
                    self.replica.handle_outdate_rc(Instant::now(), OutdateRc::Unreachable);
                }
                Effect::Done { cmd, result } => {
                    if self.promoting == Some(cmd) {
                        self.promoting = None;
                        if let Ok(m) = &result {
                            if self.replica.is_primary() && self.device.is_none() {
                                // The answer waits for the device.
                                self.attach = Some((cmd, m.clone()));
                                self.attach_start = Some(cmd);
                                continue;
                            }
                        }
                    }
                    if let Some(tx) = self.waiting.remove(&cmd) {
                        let _ = tx.send(match result {
                            Ok(m) => Answer::message(m),
                            Err(e) => Answer::error(e),
                        });
                    }
                }
                Effect::Log(n) => log::log!(n.level, "{}", n.text),
            }
        }
    }
}
