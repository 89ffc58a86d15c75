//! The replica's pure core (`crate::replica::state::Replica`) behind one lock, with
//! what carries out its effects: the disk queue, the link's outlet, the kernel's
//! pending block requests, the control commands waiting for an answer.
//!
//! Every thread that brings an input calls [`Hub::handle`]: the FUSE threads
//! (block requests), the disk threads (finished operations), the link's reader
//! thread (frames, the end of the connection) and the event loop (commands,
//! timers, a new connection). It takes the clock under the lock, so the core sees
//! time move forward only, and carries out the effects on the spot: a frame goes to
//! the socket, a reply to the kernel, from that same thread. The first version
//! routed every input through the event loop; on this machine kind each thread
//! hand-off costs tens of microseconds (waking an idle virtual CPU), and a
//! replicated write and flush crossed nine of them (BENCHMARKS.md).
//!
//! The lock is never held across a wait: disk I/O runs on the disk threads, sends
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
use crate::replica::data::Data;
use crate::replica::state::{CmdId, Command, DiskOp, Effect, IoId, OutdateRc, Replica, Reply, ReqId, Request};
use crate::replica::wire;

pub struct Hub {
    core: Mutex<Core>,
    /// Disk operations in the core's order, until the core has heard of them.
    queue: Mutex<Queue>,
    /// The disk threads wait on it for work.
    work: Condvar,
    disk: Disk,
    /// Wakes the event loop: the core's next deadline moved earlier, a connection
    /// is wanted or not any more, or a device is to be attached.
    pub kick: Notify,
}

/// The disk queue. Operations run side by side where the core could not tell the
/// difference (a disk with a volatile cache reorders writes between flushes the
/// same way), and their results reach the core in the order it emitted them, so the
/// core sees a disk that runs one operation at a time (`Reach::waits_for` has the
/// rules):
/// - a read, write or discard starts once nothing unfinished before it overlaps
///   its range (a write before a read of the same blocks, a resync block before
///   the application's newer write: the extent lock relies on it) and no metadata
///   write before it is unfinished;
/// - a flush starts once everything before it has finished;
/// - a metadata write starts after the metadata writes and flushes before it, and
///   nothing after it starts until it has finished;
/// - the divergent copy runs alone.
///
/// A sequential writer's megabyte writes were each written alone on both sides
/// (queue depth one), and every new extent's dirty bit waited for all the writes
/// before it; the disk takes several at once.
#[derive(Default)]
struct Queue {
    ops: VecDeque<Entry>,
    /// The ticket of `ops[0]`; tickets are consecutive.
    first: u64,
    running: usize,
    /// How many are waiting to start: a disk thread is woken only when one is
    /// (waking an idle virtual CPU costs tens of microseconds here).
    waiting: usize,
    /// One thread at a time gives results to the core, in order.
    reporting: bool,
}

struct Entry {
    io: IoId,
    reach: Reach,
    state: Slot,
}

enum Slot {
    Waiting(DiskOp),
    Running,
    Done(Result<Option<Data>, String>),
}

/// What an operation touches, for the queue's ordering.
#[derive(Clone, Copy)]
enum Reach {
    /// A read, a write or a discard of `[start, end)`.
    Range {
        start: u64,
        end: u64,
        writes: bool,
    },
    Sync,
    Meta,
    /// The divergent copy: alone, as if nothing else existed.
    Save,
}

impl Reach {
    fn of(op: &DiskOp) -> Reach {
        let range = |offset: u64, len: u64, writes| Reach::Range {
            start: offset,
            end: offset.saturating_add(len),
            writes,
        };
        match op {
            DiskOp::Read { offset, len } => range(*offset, u64::from(*len), false),
            DiskOp::Write { offset, data } => range(*offset, data.len() as u64, true),
            DiskOp::Discard { offset, len } => range(*offset, *len, true),
            DiskOp::Sync => Reach::Sync,
            DiskOp::Meta(_) => Reach::Meta,
            DiskOp::SaveDivergent { .. } => Reach::Save,
        }
    }

    /// Whether `self` must wait for `earlier` (unfinished) to finish.
    fn waits_for(self, earlier: Reach) -> bool {
        use Reach::*;
        match (self, earlier) {
            (Save, _) | (_, Save) => true,
            // A flush covers every write before it.
            (Sync, _) => true,
            // Metadata slots are written in order, each after the flush before it
            // (the core writes "consistent" only after a flush of the data).
            (Meta, Meta | Sync) => true,
            // A metadata write is durable before anything after it starts: a
            // dirty bit before its extent's first write, a SyncTarget's
            // "inconsistent" before the resync data.
            (Range { .. }, Meta) => true,
            (Meta, Range { .. }) | (Range { .. }, Sync) => false,
            (
                Range {
                    start: a,
                    end: b,
                    writes: w1,
                },
                Range {
                    start: c,
                    end: d,
                    writes: w2,
                },
            ) => (w1 || w2) && a < d && c < b,
        }
    }

    /// Nothing after it starts before it has finished.
    fn holds_back_all(self) -> bool {
        matches!(self, Reach::Meta | Reach::Save)
    }
}

impl Queue {
    /// The first operation that may start now: its ticket and operation. With
    /// `small_only`, only if it is small (see `small`).
    fn pick(&mut self, small_only: bool) -> Option<(u64, DiskOp)> {
        if self.running >= DISK_THREADS {
            return None;
        }
        let mut unfinished: Vec<Reach> = Vec::new();
        for (i, e) in self.ops.iter_mut().enumerate() {
            match &e.state {
                Slot::Done(_) => continue,
                Slot::Waiting(op) if !unfinished.iter().any(|&u| e.reach.waits_for(u)) => {
                    if small_only && !small(op) {
                        return None;
                    }
                    let Slot::Waiting(op) = std::mem::replace(&mut e.state, Slot::Running) else {
                        unreachable!("matched Waiting")
                    };
                    self.running += 1;
                    self.waiting -= 1;
                    return Some((self.first + i as u64, op));
                }
                Slot::Waiting(_) | Slot::Running => {
                    if e.reach.holds_back_all() {
                        return None;
                    }
                    unfinished.push(e.reach);
                }
            }
        }
        None
    }
}

/// Operations small enough to run on the thread that brought their request when
/// the queue is idle, instead of waking a disk thread: one hand-off fewer on a
/// replicated write's path. Large writes still go to the disk threads, so the
/// link's reader keeps reading while they are written (sequential throughput).
fn small(op: &DiskOp) -> bool {
    match op {
        DiskOp::Read { len, .. } => *len <= INLINE_MAX,
        DiskOp::Write { data, .. } => data.len() <= INLINE_MAX as usize,
        DiskOp::Discard { .. } | DiskOp::Sync | DiskOp::Meta(_) => true,
        DiskOp::SaveDivergent { .. } => false,
    }
}

const INLINE_MAX: u32 = 32 * 1024;
/// At most this many operations run inline in a row before the disk threads take over.
const INLINE_RUN: usize = 4;
/// Disk operations in flight at once (the disk threads; an inline one counts too).
const DISK_THREADS: usize = 4;

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
    /// Where outdate asks go (pairbeatd's relay); without one, an ask is answered
    /// "failed" at once.
    pub outdater: Option<std::sync::mpsc::Sender<crate::replica::gi::Gi>>,
}

impl Hub {
    /// The hub and its disk threads.
    pub fn start(replica: Replica, disk: Disk, name: &str) -> std::io::Result<Arc<Hub>> {
        let hub = Arc::new(Hub {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            disk,
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
                outdater: None,
            }),
            kick: Notify::new(),
        });
        for i in 0..DISK_THREADS {
            let h = Arc::clone(&hub);
            std::thread::Builder::new()
                .name(format!("disk{i}-{name}"))
                .spawn(move || h.disk_thread())?;
        }
        Ok(hub)
    }

    /// A disk thread: runs whatever the queue lets start.
    fn disk_thread(&self) {
        loop {
            let mut q = lock(&self.queue);
            let next = loop {
                match q.pick(false) {
                    Some(next) => break next,
                    None => q = self.work.wait(q).unwrap_or_else(|p| p.into_inner()),
                }
            };
            if q.waiting > 0 {
                // Another may start beside this one.
                self.work.notify_one();
            }
            drop(q);
            self.run(next);
        }
    }

    /// Runs one operation the queue let start, and gives the core every result
    /// that is next in order.
    fn run(&self, (ticket, op): (u64, DiskOp)) {
        let result = self.disk.run(op).map_err(|e| e.to_string());
        let mut q = lock(&self.queue);
        q.running -= 1;
        let first = q.first;
        q.ops[(ticket - first) as usize].state = Slot::Done(result);
        if q.waiting > 0 {
            // Its end may let others start (each woken thread wakes the next).
            self.work.notify_one();
        }
        if q.reporting {
            return;
        }
        q.reporting = true;
        loop {
            let mut done = Vec::new();
            while q.ops.front().is_some_and(|e| matches!(e.state, Slot::Done(_))) {
                let e = q.ops.pop_front().expect("front");
                q.first += 1;
                let Slot::Done(r) = e.state else {
                    unreachable!("matched Done")
                };
                done.push((e.io, r));
            }
            if done.is_empty() {
                q.reporting = false;
                return;
            }
            drop(q);
            self.handle(|c, now| {
                for (io, r) in done {
                    c.replica.handle_io(now, io, r);
                }
            });
            q = lock(&self.queue);
        }
    }

    /// On a thread that brought a request: runs the queue's next small operations
    /// here if nothing is running, else leaves them to the disk threads.
    fn run_inline(&self) {
        for _ in 0..INLINE_RUN {
            let mut q = lock(&self.queue);
            if q.running > 0 {
                return;
            }
            let Some(next) = q.pick(true) else {
                if q.waiting > 0 {
                    self.work.notify_one();
                }
                return;
            };
            drop(q);
            self.run(next);
        }
        // More than an inline run's worth: the disk threads take the rest.
        if lock(&self.queue).waiting > 0 {
            self.work.notify_one();
        }
    }

    /// Runs `f` on the core under the lock with the time now, carries out every
    /// effect it queued, and kicks the event loop if it must look again. Disk
    /// operations it queued go to the disk threads.
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
            let mut q = lock(&self.queue);
            q.waiting += c.ops.len();
            for (io, op) in c.ops.drain(..) {
                q.ops.push_back(Entry {
                    io,
                    reach: Reach::of(&op),
                    state: Slot::Waiting(op),
                });
            }
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
                self.work.notify_one();
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
            // StandAlone (a split brain waiting for the policy) takes no connection:
            // the peer retries until this side is told to connect or to discard.
            if c.outlet.is_some() || c.stopped || !c.replica.wants_connection() {
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
                Effect::OutdatePeer { gi } => {
                    let sent = self.outdater.as_ref().is_some_and(|tx| tx.send(gi).is_ok());
                    if !sent {
                        log::error!("outdate-peer: no relay to pairbeatd; answering \"failed\"");
                        self.replica.handle_outdate_rc(Instant::now(), OutdateRc::Failed);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(ops: Vec<DiskOp>) -> Queue {
        let mut q = Queue {
            waiting: ops.len(),
            ..Queue::default()
        };
        for (io, op) in ops.into_iter().enumerate() {
            q.ops.push_back(Entry {
                io: io as IoId,
                reach: Reach::of(&op),
                state: Slot::Waiting(op),
            });
        }
        q
    }

    fn write(offset: u64, len: usize) -> DiskOp {
        DiskOp::Write {
            offset,
            data: Data::zeroed(len),
        }
    }

    fn read(offset: u64, len: u32) -> DiskOp {
        DiskOp::Read { offset, len }
    }

    /// The tickets `pick` hands out until it has nothing more that may start.
    fn startable(q: &mut Queue) -> Vec<u64> {
        std::iter::from_fn(|| q.pick(false).map(|(t, _)| t)).collect()
    }

    fn finish(q: &mut Queue, ticket: u64) {
        q.running -= 1;
        q.ops[(ticket - q.first) as usize].state = Slot::Done(Ok(None));
    }

    #[test]
    fn disjoint_reads_and_writes_run_together_overlapping_ones_in_order() {
        let mut q = queue(vec![
            write(0, 8192),
            write(8192, 4096),
            read(4096, 4096), // reads what the first write writes
            read(4096, 4096),
            write(1 << 20, 4096),
        ]);
        assert_eq!(
            startable(&mut q),
            vec![0, 1, 4],
            "the read waits for the write it overlaps"
        );
        finish(&mut q, 0);
        assert_eq!(startable(&mut q), vec![2, 3], "then both reads of it, together");
    }

    fn meta() -> DiskOp {
        DiskOp::Meta(Box::new(crate::replica::meta::Meta::create(
            [1; 16],
            1 << 30,
            4 << 20,
            0,
        )))
    }

    #[test]
    fn the_divergent_copy_runs_alone() {
        let mut q = queue(vec![
            write(0, 4096),
            write(4096, 4096),
            DiskOp::SaveDivergent { extents: vec![1] },
            write(1 << 20, 4096),
        ]);
        assert_eq!(startable(&mut q), vec![0, 1]);
        finish(&mut q, 1);
        assert_eq!(
            startable(&mut q),
            Vec::<u64>::new(),
            "one write before it is unfinished"
        );
        finish(&mut q, 0);
        assert_eq!(startable(&mut q), vec![2], "alone");
        finish(&mut q, 2);
        assert_eq!(startable(&mut q), vec![3]);
    }

    #[test]
    fn a_flush_waits_for_the_writes_before_it_and_a_metadata_write_for_the_flush() {
        let mut q = queue(vec![
            write(0, 4096),
            DiskOp::Sync,
            write(8192, 4096),
            meta(),
            write(1 << 20, 4096),
        ]);
        assert_eq!(
            startable(&mut q),
            vec![0, 2],
            "a later write need not wait for the flush"
        );
        finish(&mut q, 0);
        assert_eq!(startable(&mut q), vec![1], "the flush; the metadata write waits for it");
        finish(&mut q, 1);
        assert_eq!(
            startable(&mut q),
            vec![3],
            "the metadata write need not wait for the write before it"
        );
        finish(&mut q, 3);
        assert_eq!(startable(&mut q), vec![4], "what follows a metadata write waits for it");
    }

    #[test]
    fn a_discard_orders_like_a_write_of_its_range() {
        let mut q = queue(vec![
            write(0, 8192),
            DiskOp::Discard {
                offset: 4096,
                len: 4096,
            },
            read(4096, 4096),
            DiskOp::Discard {
                offset: 1 << 20,
                len: 4096,
            },
        ]);
        assert_eq!(startable(&mut q), vec![0, 3]);
        finish(&mut q, 0);
        assert_eq!(startable(&mut q), vec![1]);
        finish(&mut q, 1);
        assert_eq!(startable(&mut q), vec![2], "the read sees the hole");
    }

    #[test]
    fn no_more_than_the_disk_threads_at_once_and_small_only_inline() {
        let mut q = queue((0..DISK_THREADS as u64 + 2).map(|i| write(i << 20, 4096)).collect());
        assert_eq!(startable(&mut q).len(), DISK_THREADS);
        let mut q = queue(vec![write(0, 1 << 20), write(1 << 20, 4096)]);
        assert!(q.pick(true).is_none(), "a large write is not run inline");
        let mut q = queue(vec![write(0, 4096)]);
        assert_eq!(q.pick(true).map(|(t, _)| t), Some(0));
    }
}
