//! Test hosts for integration tests: network namespaces joined by veth pairs, and
//! processes started in them. Everything a test creates is removed when its guard
//! is dropped, even when the test fails; processes are killed by the PID we got.

#![allow(dead_code)]

pub mod sim;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Fails (never skips) when the machine cannot run namespace tests, saying why.
pub fn require_root_and_ip() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "network-namespace tests need root: run `make test` as root"
    );
    let ok = Command::new("ip")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`ip` (iproute2) is missing: `make test` installs it via scripts/setup"
    );
}

pub fn sh(cmd: &str) -> Output {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A unique small number per lab in this test run, for names and subnets.
fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Fits an address octet: at most 30 * 8 + 7 = 247.
    (std::process::id() % 31) * 8 + NEXT.fetch_add(1, Ordering::Relaxed) % 8
}

/// Two hosts, `a` and `b`, each in its own network namespace and its own private
/// mount namespace, joined by `links` veth pairs: pair i is `pbI` in both,
/// 10.(200+i).N.1/24 in a and .2 in b. Each host's mount namespace is held open by
/// a sleeping holder process that every command of that host joins, so a filesystem
/// mounted by one daemon is still mounted for the next, as on a real host.
pub struct Net {
    pub id: u32,
    pub ns: Vec<String>,
    pub links: usize,
    pub dir: tempfile::TempDir,
    procs: Vec<Child>,
    holders: Vec<Child>,
    loops: Vec<String>,
    /// The bridge's namespace, for a LAN.
    switch: Option<String>,
}

impl Net {
    /// Hosts `a` and `b` joined by `links` veth pairs (`pbI` on both sides).
    pub fn new(links: usize) -> Net {
        let mut net = Net::hosts(2, links);
        let (a, b, id) = (net.ns[0].clone(), net.ns[1].clone(), net.id);
        for i in 0..links {
            sh(&format!(
                "ip link add pbt{id}x{i} netns {a} type veth peer name pbt{id}y{i} netns {b} && \
                 ip -n {a} link set pbt{id}x{i} name pb{i} && ip -n {b} link set pbt{id}y{i} name pb{i} && \
                 ip -n {a} addr add {} brd + dev pb{i} && ip -n {b} addr add {} brd + dev pb{i} && \
                 ip -n {a} link set pb{i} up && ip -n {b} link set pb{i} up",
                format_args!("{}/24", net.addr(0, i)),
                format_args!("{}/24", net.addr(1, i)),
            ));
        }
        net.links = links;
        net
    }

    /// `hosts` hosts (a, b, c, …) on one LAN: each one's `pb0` is plugged into a bridge
    /// in a switch namespace of its own, with address 10.200.N.(h+1)/24.
    pub fn lan(hosts: usize) -> Net {
        let mut net = Net::hosts(hosts, 1);
        let id = net.id;
        let sw = format!("pbt{id}s");
        let _ = Command::new("ip").args(["netns", "del", &sw]).output();
        sh(&format!(
            "ip netns add {sw} && ip -n {sw} link add br0 type bridge && ip -n {sw} link set br0 up"
        ));
        net.switch = Some(sw.clone());
        for h in 0..hosts {
            let n = net.ns[h].clone();
            sh(&format!(
                "ip link add pbt{id}p{h} netns {sw} type veth peer name pb0 netns {n} && \
                 ip -n {sw} link set pbt{id}p{h} master br0 up && \
                 ip -n {n} addr add {}/24 brd + dev pb0 && ip -n {n} link set pb0 up",
                net.addr(h, 0)
            ));
        }
        net
    }

    /// The namespaces, each with a mount-namespace holder, and nothing joining them yet.
    fn hosts(count: usize, links: usize) -> Net {
        require_root_and_ip();
        let id = next_id();
        let ns: Vec<String> = (0..count)
            .map(|h| format!("pbt{id}{}", (b'a' + h as u8) as char))
            .collect();
        let mut net = Net {
            id,
            ns: ns.clone(),
            links,
            dir: tempfile::tempdir().unwrap(),
            procs: Vec::new(),
            holders: Vec::new(),
            loops: Vec::new(),
            switch: None,
        };
        for n in &ns {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            sh(&format!("ip netns add {n} && ip -n {n} link set lo up"));
            let holder = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    n,
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sleep",
                    "infinity",
                ])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            net.holders.push(holder);
        }
        // The holders must have entered their namespaces before anyone joins them.
        let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        for (h, holder) in net.holders.iter().enumerate() {
            let pid = holder.id();
            let ok = wait_for(Duration::from_secs(5), || {
                std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|m| m != own)
            });
            assert!(ok.is_some(), "host {h}'s mount namespace holder did not start");
        }
        net
    }

    /// Every `*.log` in the lab's directory, each under a `--- path` line: what a
    /// failing test prints.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "log") {
                all += &format!(
                    "--- {}\n{}",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                );
            }
        }
        all
    }

    /// A process of host h (its namespace holder), for tools that enter it by PID.
    pub fn holder_pid(&self, h: usize) -> u32 {
        self.holders[h].id()
    }

    /// A direct veth link `pbI` between hosts `h1` and `h2`, addressed as link i.
    pub fn veth(&mut self, h1: usize, h2: usize, i: usize) {
        let (a, b, id) = (self.ns[h1].clone(), self.ns[h2].clone(), self.id);
        sh(&format!(
            "ip link add pbt{id}x{i} netns {a} type veth peer name pbt{id}y{i} netns {b} && \
             ip -n {a} link set pbt{id}x{i} name pb{i} && ip -n {b} link set pbt{id}y{i} name pb{i} && \
             ip -n {a} addr add {}/24 brd + dev pb{i} && ip -n {b} addr add {}/24 brd + dev pb{i} && \
             ip -n {a} link set pb{i} up && ip -n {b} link set pb{i} up",
            self.addr(h1, i),
            self.addr(h2, i),
        ));
    }

    /// Host h's address on link i.
    pub fn addr(&self, h: usize, i: usize) -> String {
        format!("10.{}.{}.{}", 200 + i, self.id, h + 1)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `nsenter` into host h's network and mount namespaces.
    fn enter(&self, h: usize) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holders[h].id().to_string(), "-m", "-n", "--"]);
        c
    }

    /// Runs a command inside host h and waits for it.
    pub fn exec(&self, h: usize, cmd: &str) -> Output {
        self.enter(h).args(["sh", "-c", cmd]).output().unwrap()
    }

    /// Makes an ext4 filesystem on a new loop device (detached when the Net is dropped).
    pub fn loop_ext4(&mut self, size_mb: u32) -> String {
        let img = self.path(&format!("disk{}.img", self.loops.len()));
        sh(&format!("truncate -s {size_mb}M {}", img.display()));
        let out = sh(&format!("losetup --find --show {}", img.display()));
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        self.loops.push(dev.clone());
        sh(&format!("mkfs.ext4 -q -F {dev}"));
        dev
    }

    /// Starts a long-running process in host h (nsenter execs it: the PID is the program's).
    pub fn spawn(&mut self, h: usize, program: &Path, args: &[&str], log: &Path) -> u32 {
        let file = std::fs::File::create(log).unwrap();
        let child = self
            .enter(h)
            .arg(program)
            .args(args)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.procs.push(child);
        pid
    }

    /// SIGKILL to one of our processes, by its PID.
    pub fn kill9(&mut self, pid: u32) {
        if let Some(c) = self.procs.iter_mut().find(|c| c.id() == pid) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, pid: u32, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
    }

    /// Waits for one of our processes to exit, up to `limit`.
    pub fn wait_exit(&mut self, pid: u32, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let c = self.procs.iter_mut().find(|c| c.id() == pid)?;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Copies what a failed test's lab leaves (logs, state files, the client's records;
/// not disk images) to `target/tmp/failed-labs/`, so that a failure seen once in CI
/// can still be read after the lab's directory is removed. The path is printed.
fn keep_for_the_record(dir: &Path) {
    fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            let (p, t) = (e.path(), e.file_type()?);
            let big = e.metadata().map(|m| m.len() > 64 << 20).unwrap_or(true);
            if t.is_dir() {
                copy(&p, &to.join(e.file_name()))?;
            } else if t.is_file() && !big && p.extension().is_none_or(|x| x != "img") {
                let _ = std::fs::copy(&p, to.join(e.file_name()));
            }
        }
        Ok(())
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = std::thread::current().name().unwrap_or("test").replace("::", "-");
    let to = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("failed-labs")
        .join(format!("{name}-{stamp}-{}", std::process::id()));
    match copy(dir, &to) {
        Ok(()) => eprintln!("the failed lab's logs and state files are kept in {}", to.display()),
        Err(e) => eprintln!("could not keep the failed lab's files in {}: {e}", to.display()),
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            keep_for_the_record(self.dir.path());
        }
        for c in self.procs.iter_mut().chain(self.holders.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Daemons a test started inside a host (services) may outlive the ones we
        // track: end every process still in the hosts' network namespaces, by PID.
        for n in &self.ns {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", n]).output() {
                for pid in String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        for n in self.ns.iter().chain(self.switch.iter()) {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        // With the last process of a host gone, its mounts are gone; a loop device still
        // busy is detached by the kernel when released (losetup -d sets autoclear).
        for dev in &self.loops {
            let _ = Command::new("losetup").args(["-d", dev]).output();
        }
    }
}

/// Polls `probe` every few milliseconds until it returns true; the elapsed time, or None at the limit.
pub fn wait_for(limit: Duration, mut probe: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// A pairbeat.toml for node `me` of a two-host Net: one ucast link per veth pair.
pub fn pairbeat_config(net: &Net, me: usize, timing: &str, extra: &str) -> PathBuf {
    let kinds = vec!["ucast"; net.links];
    pairbeat_config_with(net, me, &kinds, timing, extra)
}

/// As `pairbeat_config`, with the kind of each link ("ucast", "bcast" or "mcast").
pub fn pairbeat_config_with(net: &Net, me: usize, kinds: &[&str], timing: &str, extra: &str) -> PathBuf {
    let mut links = String::new();
    for (i, kind) in kinds.iter().enumerate() {
        links.push_str(&format!(
            "[[link]]\nname = \"ring{i}\"\nkind = \"{kind}\"\ninterface = \"pb{i}\"\n"
        ));
        match *kind {
            "ucast" => links.push_str(&format!(
                "address.alpha = \"{}\"\naddress.bravo = \"{}\"\n",
                net.addr(0, i),
                net.addr(1, i)
            )),
            "mcast" => links.push_str(&format!("group = \"239.0.{}.{i}\"\n", net.id)),
            _ => {}
        }
        links.push('\n');
    }
    let name = ["alpha", "bravo"][me];
    let dir = net.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("authkeys");
    std::fs::write(&keys, "auth 1\n1 sha1 lab-secret\n").unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = format!(
        "[cluster]\nname = \"lab\"\n\n[[node]]\nname = \"alpha\"\n\n[[node]]\nname = \"bravo\"\n\n{links}[timing]\n{timing}\n\n[auth]\nauthkeys = \"{}\"\n\n[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\n{extra}\n",
        keys.display(),
        dir.join("pb.sock").display(),
        dir.join("state").display()
    );
    let path = dir.join("pairbeat.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The JSON status of the daemon with this control socket, if it answers.
pub fn status(socket: &Path) -> Option<serde_json::Value> {
    let resp = pairbeat::control::client::request(socket, &pairbeat::control::Request::Status).ok()?;
    serde_json::to_value(resp.status?).ok()
}

/// splitmix64: a small deterministic PRNG, the same on every machine, so every
/// simulated schedule is reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// An OCF root for a test: the real agents of the resource-agents package (and their
/// shell library) plus the test agents of tests/agents/pbtest.
pub fn ocf_root(dir: &Path) -> PathBuf {
    let root = dir.join("ocf");
    std::fs::create_dir_all(root.join("resource.d")).unwrap();
    let link = |from: &Path, to: PathBuf| {
        if !to.exists() {
            std::os::unix::fs::symlink(from, to).unwrap();
        }
    };
    link(Path::new("/usr/lib/ocf/lib"), root.join("lib"));
    link(
        Path::new("/usr/lib/ocf/resource.d/heartbeat"),
        root.join("resource.d/heartbeat"),
    );
    link(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/pbtest"),
        root.join("resource.d/pbtest"),
    );
    root
}

/// The group the real-agent tests run: ext4 on `dev` mounted at `mnt`
/// (ocf:heartbeat:Filesystem) → `vip` on pb0 (ocf:heartbeat:IPaddr2) → an HTTP server
/// on the VIP serving `mnt` (ocf:pbtest:httpd), each monitored.
pub fn web_group(dev: &str, mnt: &str, vip: &str, pidfile: &str) -> String {
    format!(
        r#"[group]
id = "web"

[[group.resource]]
id = "fs"
agent = "ocf:heartbeat:Filesystem"
params = {{ device = "{dev}", directory = "{mnt}", fstype = "ext4" }}
op = [{{ name = "monitor", interval = "2s", timeout = "20s" }}]

[[group.resource]]
id = "vip"
agent = "ocf:heartbeat:IPaddr2"
params = {{ ip = "{vip}", cidr_netmask = 24, nic = "pb0" }}
op = [{{ name = "monitor", interval = "1s", timeout = "10s" }}]

[[group.resource]]
id = "http"
agent = "ocf:pbtest:httpd"
params = {{ ip = "{vip}", dir = "{mnt}", pidfile = "{pidfile}" }}
op = [{{ name = "monitor", interval = "1s", timeout = "10s" }}]
"#
    )
}

/// Compares `actual` with the golden file at `path`; `UPDATE_GOLDEN=1` rewrites it.
pub fn golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        expected == actual,
        "{} differs from the output:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// What a pairbeat-replicad answers on its control socket, if it answers.
pub fn replica_status(socket: &Path) -> Option<pairbeat::replicad::control::ReplicaStatus> {
    pairbeat::replicad::control::request(socket, &pairbeat::replicad::control::Request::Status)
        .ok()?
        .status
}

/// The two hosts' replica images (`alpha/r0.img`, `bravo/r0.img`) hold the same bytes.
#[track_caller]
pub fn assert_images_equal(net: &Net) {
    let sum = |h: &str| {
        let out = sh(&format!("sha256sum < {}", net.path(h).join("r0.img").display()));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(sum("alpha"), sum("bravo"), "the two images differ");
}
