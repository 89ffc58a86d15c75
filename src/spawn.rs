//! Starting a program without copying the daemon: `clone(CLONE_VM | CLONE_VFORK)`,
//! what `posix_spawn` does inside glibc, plus the two things `posix_spawn` cannot
//! do and a cluster manager needs before `exec` (a parent-death signal, and every
//! inherited descriptor above 2 closed).
//!
//! Why not `fork`: a forked child gets a copy of pairbeatd's page tables, and until
//! it has exec'd every page pairbeatd writes takes a copy-on-write fault. With a
//! monitor every few seconds that was most of the active node's idle CPU
//! (BENCHMARKS.md, "Idle, a second look"), and it lengthens every agent start in a
//! failover. Why not `std::process::Command` without `pre_exec` (which would use
//! `posix_spawn`): it has no place for `PR_SET_PDEATHSIG` or `close_range`.
//!
//! The child shares our memory until it execs, and we are suspended meanwhile (that
//! is `CLONE_VFORK`), so it may only make system calls on data prepared before the
//! clone: no allocation, no lock, no Rust runtime. Signals are blocked around the
//! clone and every handled or ignored signal is set back to its default in the
//! child before it unblocks them, so none of our handlers (tokio's) can run in the
//! child on our memory. A failed `exec` is reported through a field of the shared
//! argument block, and the child then exits 127.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// What the caller wants for the program's standard input.
pub enum Stdin {
    /// `/dev/null`.
    Null,
    /// A pipe whose write end the caller gets.
    Piped,
}

/// A started program: its pid (also its process group), its pipes, and a pidfd
/// to wait on.
pub struct Spawned {
    pid: libc::pid_t,
    /// `None` once the program has been reaped.
    pidfd: Option<AsyncFd<OwnedFd>>,
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
}

/// The argument block the child reads (and writes `errno` into). It lives on the
/// parent's stack, which the parent does not touch until the child has exec'd or
/// exited.
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Descriptors for 0, 1, 2.
    fds: [RawFd; 3],
    /// Set by the child when something before `exec` (or `exec` itself) failed.
    errno: libc::c_int,
}

/// The child's stack: the few calls it makes need little. The real limit is what
/// `execve` and the libc wrappers use, a few hundred bytes.
const CHILD_STACK: usize = 64 * 1024;

fn cstring(s: &OsStr, what: &str) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} holds a NUL byte")))
}

/// A pipe whose both ends are close-on-exec (the child's end is dup2'd to 0/1/2,
/// which clears the flag on the copy only).
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array, which is valid.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the calling thread's signal mask by the raw system call (glibc's own two
/// signals included, which `pthread_sigmask` would leave open) and gives back the
/// one before. Async-signal-safe: the child uses it too.
fn set_signal_mask(mask: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the syscall reads `mask` and writes `old`,
    // both valid, with the kernel's set size (8 bytes on Linux).
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            mask as *const libc::sigset_t,
            &mut old as *mut libc::sigset_t,
            8usize,
        );
        old
    }
}

/// Blocks every signal in the calling thread and gives back the mask to restore.
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, filled by sigfillset.
    let all = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        all
    };
    set_signal_mask(&all)
}

/// The kernel's `struct sigaction` (not libc's, which differs), to set a signal's
/// disposition by the raw system call.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Sets `sig` to its default by the raw system call. Async-signal-safe.
fn default_internal_signal(sig: libc::c_int) {
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: the kernel reads one KernelSigaction of the size given.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &dfl as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
    }
}

/// The child, between clone and exec. Only system calls on prepared data.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's ChildArgs, alive and untouched until we exec or
    // exit (CLONE_VFORK); everything called here is a thin system-call wrapper.
    unsafe {
        let args = &mut *(arg as *mut ChildArgs);
        let fail = |args: &mut ChildArgs| -> libc::c_int {
            args.errno = *libc::__errno_location();
            libc::_exit(127)
        };
        // Every handled or ignored signal back to its default: a handler of ours
        // must not run here on our memory, and an ignored SIGPIPE (Rust's runtime
        // sets it) would survive exec.
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if sig == 32 || sig == 33 {
                // glibc's own (cancellation, setxid): its wrapper refuses them, and
                // a daemon started by posix_spawn has them ignored (glibc's child
                // sets them so), which would pass on to the program.
                default_internal_signal(sig);
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction != libc::SIG_DFL {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        // Die with us rather than outlive a crashed daemon as an orphan.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return fail(args);
        }
        // Its own process group, so a time limit takes down all it started.
        if libc::setpgid(0, 0) != 0 {
            return fail(args);
        }
        for (target, &fd) in args.fds.iter().enumerate() {
            if libc::dup2(fd, target as libc::c_int) < 0 {
                return fail(args);
            }
        }
        // Nothing of ours leaks into the program (sockets, state files): ours are
        // close-on-exec already, this also covers what we inherited.
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
            for fd in 3..1024 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        // An empty mask for the program (a blocked mask survives exec).
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        set_signal_mask(&none);
        libc::execve(args.program, args.argv, args.envp);
        fail(args)
    }
}

/// Starts `program` with exactly `args` and `env`, stdout and stderr piped, in its
/// own process group. An `Err` means it did not start (the error is exec's own, so
/// a missing program is `NotFound`).
pub fn spawn(
    program: &OsStr,
    args: &[impl AsRef<OsStr>],
    env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
    stdin: Stdin,
) -> io::Result<Spawned> {
    // Everything the child reads is made here, before the clone.
    let prog = cstring(program, "the program's path")?;
    let mut argv_c = vec![prog.clone()];
    for a in args {
        argv_c.push(cstring(a.as_ref(), "an argument")?);
    }
    let mut env_c = Vec::with_capacity(env.len());
    for (k, v) in env {
        let mut kv = k.as_ref().as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_ref().as_bytes());
        env_c.push(cstring(OsStr::from_bytes(&kv), "an environment variable")?);
    }
    let argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect();

    let (in_child, in_ours) = match stdin {
        Stdin::Null => (OwnedFd::from(std::fs::File::open("/dev/null")?), None),
        Stdin::Piped => {
            let (r, w) = pipe_pair()?;
            (r, Some(w))
        }
    };
    let (out_ours, out_child) = pipe_pair()?;
    let (err_ours, err_child) = pipe_pair()?;
    let mut block = ChildArgs {
        program: prog.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        fds: [in_child.as_raw_fd(), out_child.as_raw_fd(), err_child.as_raw_fd()],
        errno: 0,
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down; the top, 16-byte aligned as the ABI wants.
    let top = ((stack.as_mut_ptr() as usize + CHILD_STACK) & !15) as *mut libc::c_void;

    let mask = block_all_signals();
    // SAFETY: child_main only makes system calls on `block`, which outlives the
    // child's use of it (CLONE_VFORK suspends us until it execs or exits); the
    // stack is ours and unused by anyone else.
    let pid = unsafe {
        libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut block as *mut ChildArgs as *mut libc::c_void,
        )
    };
    let clone_err = io::Error::last_os_error();
    set_signal_mask(&mask);
    drop(stack);
    if pid < 0 {
        return Err(clone_err);
    }
    // Read after the child is gone from our memory: a volatile read, since the
    // compiler cannot see the child write it.
    // SAFETY: `block.errno` is a valid, aligned c_int.
    let errno = unsafe { std::ptr::read_volatile(&block.errno) };
    if errno != 0 {
        let mut status = 0;
        // SAFETY: our own child, which has exited (the vfork returned).
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(errno));
    }
    drop((in_child, out_child, err_child));
    // SAFETY: pidfd_open on our own unreaped child (its pid cannot be reused).
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = if pidfd < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: kill and reap our own child; we cannot wait on it otherwise.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(e);
    } else {
        // SAFETY: a new descriptor, ours alone.
        unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) }
    };
    // The program runs from here on: if wrapping its pipes or pidfd fails, it is
    // killed and reaped rather than left running unwatched.
    let wrap = || -> io::Result<Spawned> {
        let receiver = |fd: OwnedFd| -> io::Result<pipe::Receiver> {
            set_nonblocking(&fd)?;
            pipe::Receiver::from_owned_fd_unchecked(fd)
        };
        let stdin = match in_ours {
            Some(fd) => {
                set_nonblocking(&fd)?;
                Some(pipe::Sender::from_owned_fd_unchecked(fd)?)
            }
            None => None,
        };
        Ok(Spawned {
            pid,
            // SAFETY: the OwnedFd keeps its one descriptor for as long as it lives,
            // which is as long as the AsyncFd that owns it.
            pidfd: Some(
                unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
                    .map_err(|e| e.into_parts().1)?,
            ),
            stdin,
            stdout: Some(receiver(out_ours)?),
            stderr: Some(receiver(err_ours)?),
        })
    };
    wrap().inspect_err(|_| {
        // SAFETY: our own child and its process group; reaped so no zombie stays.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    })
}

impl Spawned {
    /// The program's pid, which is also its process group's id.
    pub fn id(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits for the program to exit and reaps it. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            let Some(fd) = &self.pidfd else {
                return Err(io::Error::other("already reaped"));
            };
            if let Some(status) = try_reap(self.pid)? {
                self.pidfd = None;
                return Ok(status);
            }
            let mut ready = fd.readable().await?;
            ready.clear_ready();
        }
    }
}

/// `waitpid` without blocking: `None` while the program runs.
fn try_reap(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    // SAFETY: waitpid on our own child, status is valid.
    match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
        0 => Ok(None),
        p if p == pid => Ok(Some(ExitStatus::from_raw(status))),
        _ => Err(io::Error::last_os_error()),
    }
}

impl Drop for Spawned {
    /// A program whose wait was given up (the caller's future dropped) is still
    /// reaped when it exits, so no zombie is left behind.
    fn drop(&mut self) {
        let Some(fd) = self.pidfd.take() else { return };
        let pid = self.pid;
        if let Ok(Some(_)) = try_reap(pid) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                loop {
                    if !matches!(try_reap(pid), Ok(None)) {
                        return;
                    }
                    match fd.readable().await {
                        Ok(mut r) => r.clear_ready(),
                        Err(_) => return,
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;

    const NO_ENV: [(&str, &str); 0] = [];

    async fn output(s: &mut Spawned) -> (ExitStatus, String) {
        let mut out = String::new();
        s.stdout.take().unwrap().read_to_string(&mut out).await.unwrap();
        (s.wait().await.unwrap(), out)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_program_gets_its_args_env_and_exit_code() {
        let mut s = spawn(
            OsStr::new("/bin/sh"),
            &["-c", "echo \"$0 $1 $X\"; exit 3", "zero", "one"],
            &[("X", "ex")],
            Stdin::Null,
        )
        .unwrap();
        let (status, out) = output(&mut s).await;
        assert_eq!(out, "zero one ex\n");
        assert_eq!(status.code(), Some(3));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn signals_are_unblocked_and_at_their_defaults_in_the_program() {
        // The test harness, as pairbeatd, runs with SIGPIPE ignored (Rust's runtime);
        // tokio installs a handler too. Neither may reach the program.
        let _sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).unwrap();
        // cat sets no handler of its own (grep would: SIGSEGV).
        let mut s = spawn(OsStr::new("/bin/cat"), &["/proc/self/status"], &NO_ENV, Stdin::Null).unwrap();
        let (status, out) = output(&mut s).await;
        assert!(status.success(), "{out}");
        let masks: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("SigBlk:") || l.starts_with("SigIgn:") || l.starts_with("SigCgt:"))
            .collect();
        assert_eq!(masks.len(), 3, "{out}");
        for line in masks {
            let mask = line.split_whitespace().nth(1).unwrap();
            assert!(mask.chars().all(|c| c == '0'), "{line}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_exec_is_an_error_and_leaves_no_child() {
        let e = spawn(OsStr::new("/nonexistent/agent"), &["x"], &NO_ENV, Stdin::Null)
            .err()
            .expect("spawned what does not exist");
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let plain = tempfile::NamedTempFile::new().unwrap();
        let e = spawn(plain.path().as_os_str(), &["x"], &NO_ENV, Stdin::Null)
            .err()
            .expect("executed a file that is not executable");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        // A child whose exec failed carries this thread's name (other tests'
        // children run beside this one).
        let me = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
        let left: Vec<String> = children()
            .into_iter()
            .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == me))
            .collect();
        assert!(left.is_empty(), "children left behind: {left:?}");
    }

    /// Our children, as the kernel lists them (threads' children included).
    fn children() -> Vec<String> {
        let mut all = Vec::new();
        for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            all.extend(c.split_whitespace().map(String::from));
        }
        all.sort();
        all
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stdin_bytes_reach_the_program_and_its_own_group_is_made() {
        let mut s = spawn(
            OsStr::new("/bin/sh"),
            &["-c", "read l; echo \"$l $(ps -o pgid= $$)\""],
            &[("PATH", "/usr/bin:/bin")],
            Stdin::Piped,
        )
        .unwrap();
        use tokio::io::AsyncWriteExt;
        let mut w = s.stdin.take().unwrap();
        w.write_all(b"hello\n").await.unwrap();
        drop(w);
        let pid = s.id();
        let (status, out) = output(&mut s).await;
        assert!(status.success());
        assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["hello", &pid.to_string()]);
    }

    #[test]
    fn the_program_dies_with_the_thread_that_started_it() {
        // PR_SET_PDEATHSIG fires when the thread that started the program ends: in
        // pairbeatd that is the runtime's one thread, i.e. the daemon's death.
        let pid = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let s = spawn(OsStr::new("/bin/sleep"), &["30"], &NO_ENV, Stdin::Null).unwrap();
                let pid = s.id();
                std::mem::forget(s);
                pid
            })
        })
        .join()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sleep {pid} outlived the thread that started it"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "status {status:#x}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_program_is_reaped_when_it_exits() {
        let s = spawn(OsStr::new("/bin/sleep"), &["0.2"], &NO_ENV, Stdin::Null).unwrap();
        let pid = s.id().to_string();
        drop(s);
        assert!(children().contains(&pid));
        let deadline = Instant::now() + Duration::from_secs(5);
        while children().contains(&pid) {
            assert!(Instant::now() < deadline, "{pid} was never reaped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
