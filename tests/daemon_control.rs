//! Whole-binary tests of `pairbeatd` and `pairbeat status`: the control socket, the
//! JSON schema, refusal of bad configs, reload, and clean shutdown.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"[cluster]
name = "lab"

[[node]]
name = "alpha"

[[node]]
name = "bravo"

[[link]]
kind = "ucast"
interface = "lo"
port = @PORT1@
address.alpha = "127.0.0.1"
address.bravo = "127.0.0.2"

[[link]]
name = "ring2"
kind = "ucast"
interface = "lo"
port = @PORT2@
address.alpha = "127.0.0.3"
address.bravo = "127.0.0.4"

[timing]
keepalive = "100ms"
deadtime = "500ms"
initdead = "1s"

[auth]
authkeys = "authkeys"

[group]
id = "web"

# The scripted test agent (tests/agents), from a private OCF root: these tests run
# in the host's namespace and must not touch its network.
[[group.resource]]
id = "vip"
agent = "ocf:pbtest:scripted"
params = { state = "@DIR@/vip.running" }

[[group.resource]]
id = "www"
agent = "ocf:pbtest:scripted"
params = { state = "@DIR@/www.running" }

[daemon]
socket = "@DIR@/pb.sock"
state_dir = "@DIR@/state"
ocf_root = "@DIR@/ocf"
"#;

/// A scratch directory with a config and authkeys; the daemon started from it is
/// killed (by its own PID) when this is dropped, whatever the test did.
struct Lab {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    /// Two UDP ports on loopback, different for every lab so tests can run in parallel.
    port: u16,
}

/// Hands out port pairs no other lab in this run uses.
fn ports() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 2_000) as u16 * 10;
    base + 2 * NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let keys = dir.path().join("authkeys");
        std::fs::write(&keys, "auth 1\n1 sha1 secret\n").unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A private OCF root holding only the scripted test agent.
        std::fs::create_dir_all(dir.path().join("ocf/resource.d")).unwrap();
        std::os::unix::fs::symlink(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/pbtest"),
            dir.path().join("ocf/resource.d/pbtest"),
        )
        .unwrap();
        let lab = Lab {
            dir,
            daemon: None,
            port: ports(),
        };
        lab.write_config(CONFIG);
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self, text: &str) {
        let text = text
            .replace("@DIR@", self.dir.path().to_str().unwrap())
            .replace("@PORT1@", &self.port.to_string())
            .replace("@PORT2@", &(self.port + 1).to_string());
        std::fs::write(self.path("pairbeat.toml"), text).unwrap();
    }

    fn socket(&self) -> PathBuf {
        self.path("pb.sock")
    }

    fn pairbeatd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pairbeatd"));
        c.arg("-c").arg(self.path("pairbeat.toml")).args(["--node", "alpha"]);
        c
    }

    /// Starts the daemon and waits until its socket answers.
    fn start(&mut self) {
        let child = self
            .pairbeatd()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.status_json().is_ok() {
                return;
            }
            if let Some(exit) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(self.daemon.as_mut().unwrap().stderr.as_mut().unwrap(), &mut err)
                    .unwrap();
                panic!("pairbeatd exited ({exit}) instead of answering:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("pairbeatd did not answer on {} within 10s", self.socket().display());
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.daemon.as_ref().unwrap().id() as i32)
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap();
    }

    fn pairbeat(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap()
    }

    fn status_json(&self) -> Result<serde_json::Value, String> {
        let out = self.pairbeat(&["status", "--output-as=json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls for up to 10 s.
fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn status_json_shows_the_daemons_view() {
    let mut lab = Lab::new();
    lab.start();
    let s = lab.status_json().unwrap();
    assert_eq!(s["schema"], 1);
    assert_eq!(s["cluster"], "lab");
    assert_eq!(s["local_node"], "alpha");
    assert_eq!(s["daemon"]["pid"], lab.pid().as_raw());
    assert_eq!(
        s["nodes"][0],
        serde_json::json!({"name": "alpha", "local": true, "state": "online"})
    );
    assert_eq!(
        s["nodes"][1],
        serde_json::json!({"name": "bravo", "local": false, "state": "unknown"})
    );
    assert_eq!(
        s["links"][1],
        serde_json::json!({"name": "ring2", "kind": "ucast", "interface": "lo", "port": lab.port + 1, "peer": "bravo", "state": "unknown"})
    );
    assert_eq!(s["packets"]["forged"], 0);
    assert_eq!(s["group"]["id"], "web");
    // alpha is the preferred node, so it runs the group.
    let owner = wait_until(|| lab.status_json().unwrap()["group"]["owner"] == "alpha");
    assert!(owner, "{}", lab.status_json().unwrap());
    let s = lab.status_json().unwrap();
    assert_eq!(
        s["group"]["resources"][0],
        serde_json::json!({"id": "vip", "agent": "ocf:pbtest:scripted", "state": "started", "node": "alpha", "fail_count": 0, "migration_threshold": null, "last_failure": null})
    );
    assert_eq!(s["group"]["blocked"], false);
    assert!(lab.path("vip.running").exists() && lab.path("www.running").exists());

    let text = lab.pairbeat(&["mon"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("  * Resource Group: web:\n    * vip\t(ocf:pbtest:scripted):\t Started alpha"),
        "{text}"
    );
    // bravo never started: after initdead it is offline.
    assert!(text.contains("  * Online: [ alpha ]\n  * OFFLINE: [ bravo ]"), "{text}");

    // realtime = true by default: the daemon runs SCHED_RR (policy 2, /proc/PID/stat field 41).
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", lab.pid())).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let policy: u32 = after_comm.split(' ').nth(41 - 3).unwrap().parse().unwrap();
    assert_eq!(policy, libc::SCHED_RR as u32, "pairbeatd is not running realtime");

    // Root only: the socket is 0600 and the state dir was made 0700.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&lab.socket()), 0o600);
    assert_eq!(mode(&lab.path("state")), 0o700);
}

#[test]
fn invalid_config_is_refused_with_the_same_report_as_config_check() {
    let lab = Lab::new();
    lab.write_config(
        &CONFIG
            .replacen("kind = \"ucast\"", "kind = \"ucst\"", 1)
            .replace("id = \"www\"", "id = \"vip\"")
            .replace("deadtime = \"500ms\"", "deadtime = \"150ms\""),
    );
    let daemon = lab.pairbeatd().output().unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args([
            "config",
            "check",
            lab.path("pairbeat.toml").to_str().unwrap(),
            "--node",
            "alpha",
        ])
        .output()
        .unwrap();
    assert_eq!(
        daemon.status.code(),
        Some(78),
        "an invalid configuration exits EX_CONFIG, which the unit's RestartPreventExitStatus= names"
    );
    assert!(!check.status.success());
    let report = String::from_utf8_lossy(&check.stderr);
    assert_eq!(String::from_utf8_lossy(&daemon.stderr), report);
    assert!(report.contains("unknown link kind `ucst`"), "{report}");
    assert!(report.contains("resource id `vip` is already used"), "{report}");
    assert!(
        report.contains("deadtime (150ms) must be more than twice keepalive (100ms)"),
        "{report}"
    );
    assert!(report.contains("3 errors"), "{report}");
    // Each of the three names its file:line:column.
    let positioned = report.lines().filter(|l| {
        let mut parts = l.splitn(4, ':');
        parts.next().is_some_and(|p| p.ends_with("pairbeat.toml"))
            && parts.next().is_some_and(|n| n.parse::<u32>().is_ok())
            && parts.next().is_some_and(|n| n.parse::<u32>().is_ok())
            && parts.next().is_some_and(|rest| rest.starts_with(" error:"))
    });
    assert_eq!(positioned.count(), 3, "{report}");
    assert!(!lab.socket().exists(), "a refused daemon must not create its socket");
}

#[test]
fn a_link_port_in_use_exits_71_with_one_line_naming_the_link() {
    let lab = Lab::new();
    // Somebody else holds the first link's address and port (without SO_REUSEADDR).
    let squatter = std::net::UdpSocket::bind(("127.0.0.1", lab.port)).unwrap();
    let out = lab.pairbeatd().output().unwrap();
    drop(squatter);
    assert_eq!(out.status.code(), Some(71), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("pairbeatd:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(&format!("{}", lab.port)), "names the port: {err}");
    assert!(!lab.socket().exists(), "nothing was started: {err}");
}

#[test]
fn status_without_a_daemon_says_so_in_one_line() {
    let lab = Lab::new();
    let out = lab.pairbeat(&["status"]);
    // A distinct code (69, EX_UNAVAILABLE) says "no daemon", as cl_status hbstatus does.
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no pairbeatd answers on") && err.contains("is the daemon running?"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_live_socket_is_never_taken_over_and_a_stale_one_is_replaced() {
    let mut lab = Lab::new();
    lab.start();
    let second = lab.pairbeatd().output().unwrap();
    assert_eq!(
        second.status.code(),
        Some(71),
        "an operating-system failure exits EX_OSERR"
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("another pairbeatd already answers on"));
    assert!(lab.status_json().is_ok(), "the first daemon must be unharmed");

    // SIGKILL leaves the socket file behind; the next start must clean it up.
    let mut child = lab.daemon.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lab.socket().exists());
    lab.start();
    assert_eq!(lab.status_json().unwrap()["daemon"]["pid"], lab.pid().as_raw());
}

#[test]
fn reload_keeps_the_running_config_when_the_new_one_is_bad() {
    let mut lab = Lab::new();
    lab.start();
    lab.write_config(&CONFIG.replace("name = \"lab\"", "name = \"lab\"\ncolour = \"blue\""));
    lab.signal(nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lab.status_json().unwrap()["cluster"],
        "lab",
        "bad reload must change nothing"
    );

    lab.write_config(
        &CONFIG
            .replace("name = \"lab\"", "name = \"lab2\"")
            .replace("id = \"web\"", "id = \"web2\""),
    );
    lab.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.status_json().unwrap()["cluster"] != "lab2" {
        assert!(Instant::now() < deadline, "good reload not applied");
        std::thread::sleep(Duration::from_millis(20));
    }

    lab.signal(nix::sys::signal::Signal::SIGTERM);
    let out = lab.daemon.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("unknown key `colour` in [cluster]"), "{log}");
    assert!(
        log.contains("reload refused: 1 error(s)") && log.contains("still running the previous configuration"),
        "{log}"
    );
    assert!(log.contains("configuration reloaded"), "{log}");
    // The group changed too: not applied while running, and the log says so.
    assert!(
        log.contains("the group, failover and daemon settings changed: they take effect at the next restart"),
        "{log}"
    );
    assert!(!lab.socket().exists(), "a clean stop removes the socket");
    assert!(log.contains("SIGTERM: handing the group over"), "{log}");
    assert!(
        !lab.path("vip.running").exists() && !lab.path("www.running").exists(),
        "SIGTERM must stop the group:\n{log}"
    );
}

#[test]
fn socket_group_members_may_ask_and_others_may_not() {
    // nobody's primary group is nogroup on Debian; give the socket to that group.
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
    let group = nix::unistd::Group::from_gid(nobody.gid)
        .unwrap()
        .expect("nobody's group");
    let mut lab = Lab::new();
    lab.write_config(&CONFIG.replace("[daemon]", &format!("[daemon]\nsocket_group = \"{}\"", group.name)));
    lab.start();
    assert_eq!(
        std::fs::metadata(lab.socket()).unwrap().permissions().mode() & 0o777,
        0o660
    );
    // std drops root's supplementary groups when it sets uid as root.
    let as_user = |uid: u32, gid: u32| {
        Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .arg("-s")
            .arg(lab.socket())
            .args(["status", "--output-as=json"])
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap()
    };
    let ok = as_user(nobody.uid.as_raw(), nobody.gid.as_raw());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // A user outside the group cannot even connect, and is told who may and how.
    let refused = as_user(nobody.uid.as_raw(), 1);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(err.contains("permission denied on "), "{err}");
    assert!(
        err.contains(&format!("members of group `{}` ([daemon] socket_group)", group.name)),
        "{err}"
    );
    assert!(err.contains(&format!("usermod -aG {} USER", group.name)), "{err}");
    assert!(!err.contains("is the daemon running"), "{err}");

    // Without socket_group the socket is root's alone, and the refusal says so.
    let mut root_only = Lab::new();
    root_only.start();
    assert_eq!(
        std::fs::metadata(root_only.socket()).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .arg("-s")
        .arg(root_only.socket())
        .args(["status"])
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(err.contains("pairbeatd lets only root talk to it"), "{err}");
    assert!(err.contains("[daemon] socket_group"), "{err}");
}

#[test]
fn a_failing_resource_shows_in_status_and_cleanup_recovers_it() {
    let mut lab = Lab::new();
    // www's start fails with an exit reason; on_fail defaults to restart, and a failed
    // start makes the node ineligible, so the group stops and says why.
    lab.write_config(&CONFIG.replace(
        "params = { state = \"@DIR@/www.running\" }",
        "params = { state = \"@DIR@/www.running\", exit_start = \"1\", reason = \"port 80 is taken\" }",
    ));
    lab.start();
    assert!(
        wait_until(|| lab.status_json().unwrap()["group"]["banned"].is_string()),
        "{}",
        lab.status_json().unwrap()
    );
    let s = lab.status_json().unwrap();
    let www = &s["group"]["resources"][1];
    assert_eq!(www["fail_count"], 1);
    assert_eq!(www["last_failure"]["action"], "start");
    assert_eq!(www["last_failure"]["reason"], "port 80 is taken");
    assert!(
        wait_until(|| !lab.path("vip.running").exists()),
        "the group must leave the node"
    );
    let text = String::from_utf8_lossy(&lab.pairbeat(&["status"]).stdout).into_owned();
    assert!(
        text.contains("Failed Resource Actions:\n  * www start on alpha returned 'generic error (exit 1, soft)' at "),
        "{text}"
    );
    assert!(text.contains(": 'port 80 is taken'"), "{text}");
    assert!(text.contains("Group web may not run on alpha"), "{text}");

    // Fix the agent's problem, then clean up: the group comes back.
    lab.write_config(CONFIG);
    // The running daemon keeps its config; clean up only resets what it knows. Make the
    // fix visible to the agent itself: its params are fixed at start, so restart it.
    lab.signal(nix::sys::signal::Signal::SIGINT);
    lab.daemon.take().unwrap().wait().unwrap();
    lab.start();
    assert!(wait_until(|| lab.status_json().unwrap()["group"]["owner"] == "alpha"));
    let out = lab.pairbeat(&["cleanup", "www"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cleaned up www"));
    let out = lab.pairbeat(&["cleanup", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no resource `nope` in the group"));
}

#[test]
fn a_hung_stop_blocks_the_group_and_is_never_ignored() {
    let mut lab = Lab::new();
    // www's stop hangs for a minute; its timeout is 1 s.
    lab.write_config(&CONFIG.replace(
        "params = { state = \"@DIR@/www.running\" }",
        "params = { state = \"@DIR@/www.running\", sleep_stop = \"60\" }\nop = [{ name = \"stop\", timeout = \"1s\" }]",
    ));
    lab.start();
    assert!(wait_until(|| lab.status_json().unwrap()["group"]["owner"] == "alpha"));
    let t = Instant::now();
    lab.signal(nix::sys::signal::Signal::SIGTERM);
    let out = lab.daemon.take().unwrap().wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    // Three attempts, each killed at its timeout, then the group is blocked: vip under
    // www is NOT stopped (nothing may happen under a resource in doubt).
    assert_eq!(log.matches("resource www: stop failed: timed out").count(), 3, "{log}");
    assert!(
        log.contains("group BLOCKED: stop of www failed 3 time(s) (timed out)"),
        "{log}"
    );
    assert!(log.contains("exiting with the group BLOCKED"), "{log}");
    assert!(lab.path("vip.running").exists(), "vip was stopped under a blocked www");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

/// pairbeat-replicad started by a test, stopped by its own PID whatever the test did.
struct Replicad(Child);

impl Drop for Replicad {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn status_shows_each_replica_as_its_daemon_answers_and_says_when_it_does_not() {
    let mut lab = Lab::new();
    let replica = r#"
[[replica]]
name = "r0"
backing = "@DIR@/r0.img"
size = "16MiB"
port = @RPORT@
address.alpha = "127.0.0.1"
address.bravo = "127.0.0.2"
"#
    .replace("@RPORT@", &(lab.port + 7000).to_string());
    lab.write_config(&format!("{CONFIG}{replica}"));
    lab.start();
    let unanswered = |s: &serde_json::Value| {
        s["replicas"][0]["name"] == "r0"
            && s["replicas"][0]["unreachable"]
                .as_str()
                .is_some_and(|u| u.contains("r0.sock"))
    };
    assert!(
        wait_until(|| unanswered(&lab.status_json().unwrap())),
        "{}",
        lab.status_json().unwrap()
    );
    let s = lab.status_json().unwrap();
    let attention = s["attention"].as_array().unwrap();
    assert!(
        attention
            .iter()
            .any(|a| a["kind"] == "replica" && a["name"] == "r0" && a["problem"] == "unreachable"),
        "{s}"
    );

    // Its daemon started (alone: bravo has none), pairbeatd shows what it answers.
    let conf = lab.path("pairbeat.toml");
    let create = Command::new(env!("CARGO_BIN_EXE_pairbeat"))
        .args([
            "replica",
            "-c",
            conf.to_str().unwrap(),
            "--node",
            "alpha",
            "create",
            "r0",
        ])
        .output()
        .unwrap();
    assert!(create.status.success(), "{}", String::from_utf8_lossy(&create.stderr));
    let _replicad = Replicad(
        Command::new(env!("CARGO_BIN_EXE_pairbeat-replicad"))
            .args(["-c", conf.to_str().unwrap(), "--node", "alpha", "r0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let answered = || {
        let s = lab.status_json().unwrap();
        s["replicas"][0]["status"]["role"] == "Secondary" && s["replicas"][0]["unreachable"].is_null()
    };
    assert!(wait_until(answered), "{}", lab.status_json().unwrap());
    let s = lab.status_json().unwrap();
    assert_eq!(s["replicas"][0]["status"]["disk"], "Inconsistent", "just created");
    let text = lab.pairbeat(&["mon"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Replicated Disks:\n  * r0: Secondary Inconsistent/DUnknown"),
        "{text}"
    );
    assert!(
        text.contains("  * Replica r0: the local disk is Inconsistent"),
        "{text}"
    );
}

#[test]
fn agents_set_node_attributes_through_pairbeats_crm_tools() {
    let mut lab = Lab::new();
    lab.start();
    // pairbeatd made Pacemaker's tools for its agents: symlinks to this pairbeat.
    let tools = lab.path("state/agent-tools");
    for t in ["crm_attribute", "crm_master", "attrd_updater", "crm_node"] {
        let target = std::fs::read_link(tools.join(t)).unwrap();
        assert_eq!(target, Path::new(env!("CARGO_BIN_EXE_pairbeat")), "{t}");
    }
    let tool = |name: &str, args: &[&str], instance: Option<&str>| {
        let mut c = Command::new(tools.join(name));
        c.args(args)
            .env_clear()
            .env("PAIRBEAT_SOCKET", lab.socket())
            .env("PAIRBEAT_NODE", "alpha");
        if let Some(i) = instance {
            c.env("OCF_RESOURCE_INSTANCE", i);
        }
        c.output().unwrap()
    };
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // As ocf:linbit:drbd calls crm_master: set, read back, delete, read again.
    let set = tool("crm_master", &["-Q", "-l", "reboot", "-v", "10000"], Some("www"));
    assert!(set.status.success(), "{}", text(&set));
    let got = tool("crm_master", &["-q", "-l", "reboot", "-G"], Some("www"));
    assert_eq!(String::from_utf8_lossy(&got.stdout), "10000\n", "{}", text(&got));
    let s = lab.status_json().unwrap();
    assert_eq!(
        s["attributes"],
        serde_json::json!([{"name": "master-www", "value": "10000"}])
    );
    assert_eq!(s["group"]["resources"][1]["promotion_score"], 10000);
    let a = lab.pairbeat(&["status", "-A"]);
    assert!(
        String::from_utf8_lossy(&a.stdout).contains("master-www"),
        "{}",
        text(&a)
    );
    let del = tool("crm_master", &["-l", "reboot", "-D"], Some("www"));
    assert!(del.status.success(), "{}", text(&del));
    let gone = tool("crm_master", &["-q", "-G"], Some("www"));
    assert_eq!(
        gone.status.code(),
        Some(105),
        "not set: Pacemaker's CRM_EX_NOSUCH: {}",
        text(&gone)
    );

    // Other attributes, and crm_node.
    let up = tool("attrd_updater", &["-n", "pingd", "-U", "300"], None);
    assert!(up.status.success(), "{}", text(&up));
    let q = tool("crm_attribute", &["-n", "pingd", "-G"], None);
    assert_eq!(
        String::from_utf8_lossy(&q.stdout),
        "scope=status  name=pingd value=300\n"
    );
    let n = tool("crm_node", &["-n"], None);
    assert_eq!(String::from_utf8_lossy(&n.stdout), "alpha\n");

    // Refusals, each with its reason, and the daemon unharmed.
    let bad = tool("crm_master", &["-v", "lots"], Some("www"));
    assert_eq!(bad.status.code(), Some(64), "{}", text(&bad));
    assert!(text(&bad).contains("`lots` is not a score"), "{}", text(&bad));
    let peer = tool("crm_attribute", &["-N", "bravo", "-n", "x", "-v", "1"], None);
    assert_eq!(peer.status.code(), Some(64));
    assert!(text(&peer).contains("this node's attributes only"), "{}", text(&peer));
    let usage = tool("crm_attribute", &["--cib-file=/tmp/x", "-n", "x"], None);
    assert_eq!(usage.status.code(), Some(64));
    assert!(text(&usage).contains("pairbeat is not Pacemaker"), "{}", text(&usage));
    let no_rsc = tool("crm_master", &["-v", "5"], None);
    assert_eq!(no_rsc.status.code(), Some(64));
    assert!(text(&no_rsc).contains("OCF_RESOURCE_INSTANCE"), "{}", text(&no_rsc));
    assert_eq!(lab.status_json().unwrap()["attributes"][0]["name"], "pingd");
}

/// Broken state files. Those that protect against replays (`generation`, `uuid`)
/// stop the start, naming the file and the fix: guessing would reuse a generation
/// the peer has heard. A state directory that cannot be written (read-only, full)
/// stops it too, saying why. The records (`epoch`, `peer`, `split-brains.json`)
/// are said, kept aside as `NAME.damaged`, and the daemon runs. Never a panic.
#[test]
fn broken_state_files_are_named_with_the_fix_and_never_panic() {
    for (file, text) in [("generation", "garbage\n"), ("generation", ""), ("uuid", "0123\n")] {
        let lab = Lab::new();
        std::fs::create_dir_all(lab.path("state")).unwrap();
        std::fs::write(lab.path("state").join(file), text).unwrap();
        let out = lab.pairbeatd().output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(71), "{file} {text:?}: {err}");
        assert!(
            err.contains(&format!("{file} is corrupt")) && err.contains("move it aside"),
            "{file} {text:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!lab.socket().exists(), "nothing started: {err}");
    }
    // A read-only state directory and a full one, each in a mount namespace of
    // the daemon's own (nothing outside sees the mounts).
    for (what, mount, expect) in [
        ("read-only", "mount --bind -o ro \"$S\" \"$S\"", "Read-only file system"),
        (
            "full",
            "mount -t tmpfs -o size=4k none \"$S\"; cat /dev/zero > \"$S/fill\" 2>/dev/null || true",
            "No space left on device",
        ),
    ] {
        let lab = Lab::new();
        let state = lab.path("state");
        std::fs::create_dir_all(&state).unwrap();
        let script = format!(
            "set -e; S={s}; {mount}; exec {bin} -c {conf} --node alpha",
            s = state.display(),
            bin = env!("CARGO_BIN_EXE_pairbeatd"),
            conf = lab.path("pairbeat.toml").display()
        );
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(71), "{what}: {err}");
        assert!(err.contains("cannot write") && err.contains(expect), "{what}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Records: said, kept aside, and the daemon runs.
    let mut lab = Lab::new();
    let state = lab.path("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("epoch"), "not a number\n").unwrap();
    std::fs::write(state.join("peer"), "12 x\n").unwrap();
    std::fs::write(state.join("split-brains.json"), "{\"records\": [tru").unwrap();
    lab.start();
    assert!(lab.status_json().is_ok());
    lab.signal(nix::sys::signal::Signal::SIGTERM);
    let out = lab.daemon.take().unwrap().wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    for (file, says) in [
        ("epoch", "the ownership epoch starts again from 0"),
        ("peer", "the peer's sequence floor is lost"),
        ("split-brains.json", "starting a new log"),
    ] {
        assert!(log.contains(says), "{file}: {log}");
        assert!(
            state.join(format!("{file}.damaged")).exists(),
            "{file} kept aside: {log}"
        );
    }
    assert!(!log.contains("panicked"), "{log}");
}

/// Keys and fence passwords never leave where they belong: the authkeys secret and
/// a fence password appear in no log line (at debug level, through a fence), in no
/// status form (text, JSON, XML), on no command line or environment of pairbeatd
/// or the fence agent it runs; the agent gets its password on stdin only. And an
/// authkeys file others can read is refused, naming the fix.
#[test]
fn secrets_never_reach_logs_status_or_the_process_list() {
    const KEY: &str = "HB-KEY-0815-secret";
    const PASSWD: &str = "FENCE-PW-4711-secret";
    let mut lab = Lab::new();
    std::fs::write(lab.path("authkeys"), format!("auth 1\n1 sha1 {KEY}\n")).unwrap();
    // A fence agent that records how it was called, and says the peer is off.
    let agent = lab.path("fence_record");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\nd={}\ncat >> \"$d/fence.stdin\"\necho \"$0 $*\" >> \"$d/fence.argv\"\nenv >> \"$d/fence.env\"\nexit 0\n",
            lab.dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = CONFIG.replace(
        "[daemon]\n",
        &format!(
            "[fence]\nagent = \"{}\"\nparams = {{ login = \"admin\", passwd = \"{PASSWD}\" }}\n\n[daemon]\nlog_level = \"debug\"\n",
            agent.display()
        ),
    );
    lab.write_config(&config);
    std::fs::set_permissions(lab.path("pairbeat.toml"), std::fs::Permissions::from_mode(0o600)).unwrap();
    lab.start();
    // The peer never comes: after initdead it is fenced before the group starts.
    assert!(
        wait_until(|| std::fs::read_to_string(lab.path("fence.stdin")).is_ok_and(|s| s.contains("action=off"))),
        "the peer was fenced"
    );
    let stdin = std::fs::read_to_string(lab.path("fence.stdin")).unwrap();
    assert!(
        stdin.contains(&format!("passwd={PASSWD}")),
        "the agent gets its password on stdin: {stdin}"
    );
    let mut seen = Vec::new();
    for form in ["text", "json", "xml"] {
        let out = lab.pairbeat(&["status", &format!("--output-as={form}")]);
        assert!(out.status.success());
        seen.push((
            format!("status {form}"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    let pid = lab.daemon.as_ref().unwrap().id();
    for f in ["cmdline", "environ"] {
        let b = std::fs::read(format!("/proc/{pid}/{f}")).unwrap();
        seen.push((
            format!("pairbeatd's {f}"),
            String::from_utf8_lossy(&b).replace('\0', " "),
        ));
    }
    for f in ["fence.argv", "fence.env"] {
        seen.push((f.to_string(), std::fs::read_to_string(lab.path(f)).unwrap()));
    }
    lab.signal(nix::sys::signal::Signal::SIGTERM);
    let out = lab.daemon.take().unwrap().wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(log.contains("fenc"), "the log speaks of the fence: {log}");
    seen.push(("the log".into(), log));
    for (what, text) in &seen {
        for secret in [KEY, PASSWD] {
            assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
        }
    }
    // An authkeys file others can read: refused, with the fix.
    std::fs::set_permissions(lab.path("authkeys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = lab.pairbeatd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("readable by group or others") && err.contains("chmod 600"),
        "{err}"
    );
}

/// The daemon's size from /proc: resident KiB, open descriptors, threads.
fn footprint(pid: u32) -> (u64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (field("VmRSS:"), fds, field("Threads:") as usize)
}

/// PartialStart (CTS): SIGTERM while pairbeatd is still starting — during initdead,
/// and with the group's start in flight (www's start takes 3 s). Each time it
/// exits 0 within a bound and leaves nothing of the group running.
#[test]
fn sigterm_while_starting_exits_in_bounded_time_and_leaves_nothing() {
    let mut lab = Lab::new();
    lab.start();
    let t = Instant::now();
    lab.signal(nix::sys::signal::Signal::SIGTERM);
    let out = lab.daemon.take().unwrap().wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}:\n{log}", t.elapsed());
    assert!(
        !lab.path("vip.running").exists() && !lab.path("www.running").exists(),
        "{log}"
    );

    let mut lab = Lab::new();
    lab.write_config(&CONFIG.replace(
        "params = { state = \"@DIR@/www.running\" }",
        "params = { state = \"@DIR@/www.running\", sleep_start = \"3\", record = \"@DIR@/www.record\" }",
    ));
    lab.start();
    assert!(
        wait_until(|| std::fs::read_to_string(lab.path("www.record")).is_ok_and(|r| r.contains("ACTION start"))),
        "www's start began"
    );
    let t = Instant::now();
    lab.signal(nix::sys::signal::Signal::SIGTERM);
    let out = lab.daemon.take().unwrap().wait_with_output().unwrap();
    let took = t.elapsed();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // At most the start's own time, then the stops: not its 7 s timeout and more.
    assert!(took < Duration::from_secs(6), "took {took:?}:\n{log}");
    assert!(
        !lab.path("vip.running").exists() && !lab.path("www.running").exists(),
        "the group is left running:\n{log}"
    );
    println!(
        "SIGTERM with a 3 s start in flight: exited 0 after {} ms, nothing left",
        took.as_millis()
    );
}

/// Standby alone (Heartbeat's StandbyTest with no peer): the group leaves this
/// node and, with no peer to take it, runs nowhere; status says standby. Standby
/// survives a restart (the state dir), the group staying stopped past initdead;
/// `online` brings it back.
#[test]
fn standby_alone_stops_the_group_and_survives_a_restart() {
    let mut lab = Lab::new();
    lab.start();
    assert!(wait_until(|| lab.status_json().unwrap()["group"]["owner"] == "alpha"));
    let out = lab.pairbeat(&["standby"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stopped = |lab: &Lab| {
        let s = lab.status_json().unwrap();
        s["group"]["owner"].is_null()
            && s["nodes"][0]["state"] == "standby"
            && !lab.path("vip.running").exists()
            && !lab.path("www.running").exists()
    };
    assert!(wait_until(|| stopped(&lab)), "{}", lab.status_json().unwrap());
    lab.signal(nix::sys::signal::Signal::SIGTERM);
    lab.daemon.take().unwrap().wait().unwrap();
    lab.start();
    std::thread::sleep(Duration::from_secs(2)); // past initdead (1 s)
    assert!(
        stopped(&lab),
        "standby lost across a restart: {}",
        lab.status_json().unwrap()
    );
    let out = lab.pairbeat(&["online"]);
    assert!(out.status.success());
    assert!(
        wait_until(|| lab.status_json().unwrap()["group"]["owner"] == "alpha" && lab.path("www.running").exists()),
        "{}",
        lab.status_json().unwrap()
    );
}

/// MemoryTest (Heartbeat's CTS): resource recoveries over and over (www's marker
/// removed behind the daemon's back, found by a 100 ms monitor, www restarted)
/// while pairbeatd's resident memory, descriptors and threads are sampled: after
/// the first recoveries, no growth. MEMORY_RECOVERIES sets how many (default 100).
#[test]
fn resource_recoveries_leave_memory_descriptors_and_threads_flat() {
    let n: u64 = std::env::var("MEMORY_RECOVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut lab = Lab::new();
    lab.write_config(&CONFIG.replace(
        "params = { state = \"@DIR@/www.running\" }",
        "params = { state = \"@DIR@/www.running\" }\nmigration_threshold = 1000000\nop = [{ name = \"monitor\", interval = \"100ms\", timeout = \"5s\" }]",
    ));
    lab.start();
    assert!(wait_until(|| lab.status_json().unwrap()["group"]["owner"] == "alpha"));
    let pid = lab.daemon.as_ref().unwrap().id();
    let fails = |lab: &Lab| {
        lab.status_json().unwrap()["group"]["resources"][1]["fail_count"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut base = None;
    let t = Instant::now();
    for i in 1..=n {
        std::fs::remove_file(lab.path("www.running")).unwrap();
        assert!(
            wait_until(|| fails(&lab) >= i && lab.path("www.running").exists()),
            "recovery {i}: {}",
            lab.status_json().unwrap()
        );
        if i == 10 {
            std::thread::sleep(Duration::from_millis(300));
            base = Some(footprint(pid));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (rss0, fds0, threads0) = base.unwrap();
    let (rss, fds, threads) = footprint(pid);
    println!(
        "{n} recoveries in {} ms: after 10 {rss0} KiB, {fds0} fds, {threads0} threads; after {n} {rss} KiB, {fds} fds, {threads} threads",
        t.elapsed().as_millis()
    );
    assert!(rss <= rss0 + 1024, "resident memory grew from {rss0} to {rss} KiB");
    assert!(fds <= fds0 + 2, "descriptors grew from {fds0} to {fds}");
    assert!(threads <= threads0 + 4, "threads grew from {threads0} to {threads}");
}

/// LoggingTest (Heartbeat's CTS; Pacemaker's LogAudit): each `[daemon] log` target
/// carries the daemon's lines. A file: timestamped lines, nothing on stderr. Syslog:
/// RFC 3164 datagrams with facility daemon and the program's name, to a /dev/log
/// that is this test's socket (pairbeatd runs in a mount namespace of its own whose
/// /dev is a copy with that one entry added); with no /dev/log at all, the start is
/// refused (exit 71) naming it.
#[test]
fn each_log_target_carries_the_daemons_lines() {
    let mut lab = Lab::new();
    let file = lab.path("pairbeatd.log");
    lab.write_config(&CONFIG.replace("[daemon]\n", &format!("[daemon]\nlog = \"{}\"\n", file.display())));
    lab.start();
    assert!(wait_until(|| lab.status_json().unwrap()["group"]["owner"] == "alpha"));
    lab.signal(nix::sys::signal::Signal::SIGTERM);
    let out = lab.daemon.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("decision: run the group here"), "{text}");
    assert!(text.contains("SIGTERM"), "{text}");
    // Every line starts with a date (digits), unlike the stderr form.
    assert!(
        text.lines().all(|l| l.starts_with(|c: char| c.is_ascii_digit())),
        "{text}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("decision"),
        "the file target writes nothing to stderr"
    );

    // Syslog, in a mount namespace whose /dev has our socket as /dev/log (or none).
    let run_with_dev_log = |lab: &Lab, sock: Option<&Path>| -> Child {
        let save = lab.path("devsave");
        std::fs::create_dir_all(&save).unwrap();
        let script = format!(
            "set -e; mount --rbind /dev {save}; mount -t tmpfs none /dev; \
             for f in null zero urandom random; do touch /dev/$f; mount --bind {save}/$f /dev/$f; done; \
             {link} exec {bin} -c {conf} --node alpha",
            save = save.display(),
            link = sock
                .map(|s| format!("ln -s {} /dev/log;", s.display()))
                .unwrap_or_default(),
            bin = env!("CARGO_BIN_EXE_pairbeatd"),
            conf = lab.path("pairbeat.toml").display()
        );
        Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut lab = Lab::new();
    lab.write_config(&CONFIG.replace("[daemon]\n", "[daemon]\nlog = \"syslog\"\n"));
    let out = run_with_dev_log(&lab, None).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(71), "{err}");
    assert!(err.contains("cannot reach syslog (/dev/log)"), "{err}");

    let sock_path = lab.path("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    lab.daemon = Some(run_with_dev_log(&lab, Some(&sock_path)));
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline
        && !lines
            .iter()
            .any(|l: &String| l.contains("decision: run the group here"))
    {
        if let Ok(n) = sock.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let all = lines.join("\n");
    assert!(all.contains("decision: run the group here"), "syslog got:\n{all}");
    // <30> is facility daemon (3) at info (6); the tag is the program and its pid.
    assert!(
        lines.iter().any(|l| l.starts_with("<30>") && l.contains("pairbeatd[")),
        "syslog got:\n{all}"
    );
}
