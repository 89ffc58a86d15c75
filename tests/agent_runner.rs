//! The agent runner against real processes: a scripted test agent (tests/agents)
//! that fails, hangs, ignores SIGTERM, prints garbage, leaves children behind and
//! exits with every OCF code; plus LSB and Heartbeat v1 scripts.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pairbeat::agent::{self, Paths, OUTPUT_CAP};
use pairbeat::config::{AgentSpec, OpName, Resource};
use pairbeat::resources::{Action, Outcome, Severity};

fn paths(dir: &Path) -> Paths {
    // An OCF root of our own: resource.d/pbtest -> tests/agents/pbtest.
    let root = dir.join("ocf");
    std::fs::create_dir_all(root.join("resource.d")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/pbtest");
    let link = root.join("resource.d/pbtest");
    if !link.exists() {
        std::os::unix::fs::symlink(&src, &link).unwrap();
    }
    // git does not keep modes reliably everywhere; make sure the script runs.
    std::fs::set_permissions(src.join("scripted"), std::fs::Permissions::from_mode(0o755)).unwrap();
    Paths {
        tools: None,
        socket: None,
        ocf_root: root,
        init_d: dir.join("init.d"),
        heartbeat_resource_d: dir.join("resource.d"),
        node: Some(("alpha".into(), "/etc/pairbeat/lab.toml".into())),
    }
}

fn scripted(id: &str, params: &[(&str, String)]) -> Resource {
    let mut p: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    p.entry("state".into())
        .or_insert_with(|| format!("/tmp/pbtest-{}-{id}", std::process::id()));
    Resource {
        id: id.into(),
        agent: AgentSpec::Ocf {
            provider: "pbtest".into(),
            kind: "scripted".into(),
        },
        params: p,
        args: vec![],
        promotable: false,
        migration_threshold: None,
        failure_timeout: None,
        ops: vec![],
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run(p: &Paths, r: &Resource, a: Action, t: Duration) -> agent::RunResult {
    rt().block_on(agent::run(p, r, a, t))
}

const T: Duration = Duration::from_secs(10);

#[test]
fn every_ocf_exit_code_becomes_its_outcome() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let cases = [
        (0, Outcome::Success),
        (1, Outcome::Error(Severity::Soft, 1)),
        (2, Outcome::Error(Severity::Hard, 2)),
        (3, Outcome::Error(Severity::Hard, 3)),
        (4, Outcome::Error(Severity::Hard, 4)),
        (5, Outcome::Error(Severity::Hard, 5)),
        (6, Outcome::Error(Severity::Fatal, 6)),
        (7, Outcome::NotRunning),
        (8, Outcome::RunningPromoted),
        (9, Outcome::FailedPromoted),
        (190, Outcome::Success),
        (191, Outcome::RunningPromoted),
        (42, Outcome::Error(Severity::Soft, 42)),
    ];
    for (code, want) in cases {
        let r = scripted("codes", &[("exit_monitor", code.to_string())]);
        assert_eq!(run(&p, &r, Action::Probe, T).outcome, want, "exit {code}");
    }
}

#[test]
fn the_environment_is_ocfs_and_nothing_else_and_params_never_meet_a_shell() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let record = d.path().join("record");
    let pwned = d.path().join("pwned");
    let evil = format!(
        "x; touch {} $(touch {}) `touch {}`",
        pwned.display(),
        pwned.display(),
        pwned.display()
    );
    let r = scripted(
        "envtest",
        &[("record", record.display().to_string()), ("evil", evil.clone())],
    );
    std::env::set_var("PAIRBEAT_TEST_LEAK", "must not reach agents");
    let res = run(
        &p,
        &r,
        Action::Monitor {
            interval: Duration::from_secs(10),
            check_level: 20,
        },
        Duration::from_secs(7),
    );
    assert_eq!(res.outcome, Outcome::NotRunning);
    let env = std::fs::read_to_string(&record).unwrap();
    for want in [
        "ACTION monitor 1".to_string(),
        format!("OCF_ROOT={}", p.ocf_root.display()),
        "OCF_RA_VERSION_MAJOR=1".into(),
        "OCF_RESOURCE_INSTANCE=envtest".into(),
        "OCF_RESOURCE_TYPE=scripted".into(),
        "OCF_RESOURCE_PROVIDER=pbtest".into(),
        "OCF_RESKEY_CRM_meta_interval=10000".into(),
        "OCF_RESKEY_CRM_meta_timeout=7000".into(),
        "OCF_CHECK_LEVEL=20".into(),
        format!("OCF_RESKEY_evil={evil}"),
        // pairbeat's own agents find their daemons by these.
        "PAIRBEAT_NODE=alpha".into(),
        "PAIRBEAT_CONFIG=/etc/pairbeat/lab.toml".into(),
        "OCF_RESKEY_CRM_meta_on_node=alpha".into(),
    ] {
        assert!(env.lines().any(|l| l == want), "missing {want:?} in:\n{env}");
    }
    assert!(
        !env.contains("PAIRBEAT_TEST_LEAK"),
        "the daemon's environment leaked:\n{env}"
    );
    assert!(!pwned.exists(), "a parameter was interpreted by a shell");
}

#[test]
fn inherited_descriptors_are_closed_and_stdin_is_empty() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    // A descriptor without close-on-exec, as a careless library might leave one.
    let marker = std::ffi::CString::new(d.path().join("marker").to_str().unwrap()).unwrap();
    let opened = unsafe { libc::open(marker.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600) };
    assert!(opened > 2);
    // Moved to a number no shell uses of its own: dash keeps its script on fd 10 and
    // saves stdout on the next free fd from 10 up while a `{ ...; } >> file` runs, so
    // a low marker fd could be mistaken for a leak (it was, once, as fd 11).
    let fd = unsafe { libc::dup2(opened, 200) };
    assert_eq!(fd, 200);
    unsafe { libc::close(opened) };
    let record = d.path().join("record");
    let r = scripted("fds", &[("record", record.display().to_string())]);
    run(&p, &r, Action::Probe, T);
    unsafe { libc::close(fd) };
    let env = std::fs::read_to_string(&record).unwrap();
    let fds: Vec<i32> = env
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    assert!(!fds.contains(&fd), "fd {fd} leaked into the agent: {fds:?}");
}

#[test]
fn a_hung_operation_is_killed_with_its_whole_process_group() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let gc = d.path().join("grandchild");
    let r = scripted(
        "hang",
        &[("sleep_stop", "60".into()), ("grandchild", gc.display().to_string())],
    );
    let res = run(&p, &r, Action::Stop, Duration::from_millis(500));
    assert_eq!(res.outcome, Outcome::TimedOut);
    assert!(
        res.reason.as_deref().unwrap().contains("did not finish within 500 ms"),
        "{:?}",
        res.reason
    );
    assert!(res.elapsed < Duration::from_secs(3), "took {:?}", res.elapsed);
    let pid: i32 = std::fs::read_to_string(&gc).unwrap().trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
        "the agent's background child {pid} survived"
    );
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

#[test]
fn an_agent_that_ignores_term_gets_kill() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let r = scripted("stubborn", &[("sleep_stop", "60".into()), ("ignore_term", "1".into())]);
    let res = run(&p, &r, Action::Stop, Duration::from_millis(300));
    assert_eq!(res.outcome, Outcome::TimedOut);
    // TERM is ignored, so KILL comes after the grace period.
    assert!(
        res.elapsed >= agent::KILL_GRACE && res.elapsed < agent::KILL_GRACE + Duration::from_secs(2),
        "{:?}",
        res.elapsed
    );
}

#[test]
fn garbage_output_is_capped_and_exit_reasons_are_kept() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let r = scripted(
        "noisy",
        &[
            ("garbage", "5000".into()),
            ("reason", "disk /dev/sdz is gone".into()),
            ("exit_start", "1".into()),
        ],
    );
    let res = run(&p, &r, Action::Start, T);
    assert_eq!(res.outcome, Outcome::Error(Severity::Soft, 1));
    // Head and tail kept, the middle of the flood counted as dropped.
    assert!(
        res.stdout.len() <= OUTPUT_CAP + 64 && res.stdout.len() > OUTPUT_CAP / 2,
        "{}",
        res.stdout.len()
    );
    assert!(
        res.stdout.starts_with("noise 0 ")
            && res.stdout.contains("bytes dropped ...]")
            && res.stdout.contains("noise 4999")
    );
    assert_eq!(res.reason.as_deref(), Some("disk /dev/sdz is gone"));
    // Garbage with exit 0 is simply success.
    let r = scripted("noisy2", &[("garbage", "10".into())]);
    assert_eq!(run(&p, &r, Action::Start, T).outcome, Outcome::Success);
    run(&p, &r, Action::Stop, T);
}

#[test]
fn a_daemon_holding_the_output_pipe_does_not_hold_up_the_result() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let gc = d.path().join("daemon");
    let r = scripted("daemonizer", &[("grandchild", gc.display().to_string())]);
    let res = run(&p, &r, Action::Start, T);
    assert_eq!(res.outcome, Outcome::Success);
    assert!(res.elapsed < Duration::from_secs(1), "{:?}", res.elapsed);
    let pid: i32 = std::fs::read_to_string(&gc).unwrap().trim().parse().unwrap();
    // The started "daemon" must be left running: it is the service.
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    unsafe { libc::kill(pid, libc::SIGKILL) };
    run(&p, &r, Action::Stop, T);
}

/// The result counts when the program exits, whatever a background child it left
/// does with the pipes (IPaddr2 leaves `send_arp`): everything the program wrote
/// before its exit is kept to the last byte, stdout and stderr both; the child's
/// later output is read (not left to fill the pipe) and dropped; and the child,
/// writing after the result, is not killed by a closed pipe (SIGPIPE). Checked on
/// a multi-threaded runtime too, where the reader runs beside the waiter.
#[test]
fn the_result_counts_at_exit_with_all_it_wrote_whatever_its_background_child_does() {
    let d = tempfile::tempdir().unwrap();
    let alive = d.path().join("child-wrote-and-lived");
    let pidfile = d.path().join("child.pid");
    // 3000 numbered lines on each stream just before the exit, with a child in the
    // background that holds both pipes for 30 s, writing to them after 300 ms.
    let prog = script(
        &d.path().join("bin"),
        "leaves-a-child",
        &format!(
            "sh -c 'echo $$ >{pid}; sleep 0.3; echo late; echo late >&2; touch {alive}; exec sleep 30' &\nseq 1 3000\nseq 1 3000 >&2\necho done\nexit 3",
            pid = pidfile.display(),
            alive = alive.display()
        ),
    );
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for rt in [rt(), mt] {
        let _ = std::fs::remove_file(&alive);
        let spec = pairbeat::child::ChildSpec::new(&prog, Duration::from_secs(60));
        let t = std::time::Instant::now();
        let out = rt.block_on(pairbeat::child::run(&spec)).unwrap();
        assert_eq!(out.code, Some(3));
        eprintln!("result after {:?} (program ran {:?})", t.elapsed(), out.elapsed);
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "waited for the background child: {:?}",
            t.elapsed()
        );
        let expected: String = (1..=3000).map(|i| format!("{i}\n")).collect();
        assert_eq!(out.stdout, expected + "done\n", "stdout, to its last byte");
        let expected: String = (1..=3000).map(|i| format!("{i}\n")).collect();
        assert_eq!(out.stderr, expected);
        // The child outlives the result, writes on, and lives past its write.
        let lived = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                while !alive.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
        });
        assert!(lived.is_ok(), "the background child died writing to its pipe");
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

#[test]
fn a_missing_agent_is_not_installed() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let mut r = scripted("missing", &[]);
    r.agent = AgentSpec::Ocf {
        provider: "pbtest".into(),
        kind: "nope".into(),
    };
    let res = run(&p, &r, Action::Probe, T);
    assert_eq!(res.outcome, Outcome::Error(Severity::Hard, 5));
    assert!(res.reason.unwrap().contains("is not installed"));
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn lsb_scripts_get_status_and_lsb_codes() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let marker = d.path().join("svc.on");
    script(
        &p.init_d,
        "svc",
        &format!(
        "case \"$1\" in start) touch {m};; stop) rm -f {m};; status) [ -e {m} ] && exit 0; exit 3;; *) exit 2;; esac",
        m = marker.display()
    ),
    );
    let mut r = scripted("svc", &[]);
    r.agent = AgentSpec::Lsb { name: "svc".into() };
    r.params.clear();
    assert_eq!(run(&p, &r, Action::Probe, T).outcome, Outcome::NotRunning);
    assert_eq!(run(&p, &r, Action::Start, T).outcome, Outcome::Success);
    assert_eq!(
        run(
            &p,
            &r,
            Action::Monitor {
                interval: Duration::from_secs(5),
                check_level: 0
            },
            T
        )
        .outcome,
        Outcome::Success
    );
    assert_eq!(run(&p, &r, Action::Stop, T).outcome, Outcome::Success);
}

#[test]
fn heartbeat_scripts_get_positional_args_and_are_judged_by_their_words() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let log = d.path().join("argv");
    // Found in resource.d first, as ResourceManager searches.
    script(&p.init_d, "drbdlike", "echo WRONG SCRIPT; exit 1");
    script(
        &p.heartbeat_resource_d,
        "drbdlike",
        &format!(
            "echo \"$@\" >> {log}\ncase \"$3\" in status) echo 'r0 is running (Primary)'; exit 3;; *) exit 0;; esac",
            log = log.display()
        ),
    );
    let mut r = scripted("drbd", &[]);
    r.agent = AgentSpec::Heartbeat {
        name: "drbdlike".into(),
    };
    r.params.clear();
    r.args = vec!["r0".into(), "with space".into()];
    assert_eq!(run(&p, &r, Action::Start, T).outcome, Outcome::Success);
    // The exit code of status is ignored; "running" in its output means owned.
    assert_eq!(run(&p, &r, Action::Probe, T).outcome, Outcome::Success);
    let argv = std::fs::read_to_string(&log).unwrap();
    assert_eq!(argv, "r0 with space start\nr0 with space status\n");
}

#[test]
fn metadata_gives_parameters_and_default_timeouts() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let md = rt().block_on(agent::metadata(&p, &scripted("md", &[]))).unwrap();
    assert!(md.parameters.iter().any(|x| x.name == "needed" && !x.required));
    assert!(md.timeouts.contains(&(OpName::Stop, Duration::from_secs(9))));
}

#[test]
fn config_check_reads_installed_agents_meta_data() {
    // The real IPaddr2 (resource-agents) requires `ip`.
    assert!(
        Path::new("/usr/lib/ocf/resource.d/heartbeat/IPaddr2").exists(),
        "resource-agents is missing: `make test` installs it via scripts/setup"
    );
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("authkeys"), "auth 1\n1 sha1 k\n").unwrap();
    std::fs::set_permissions(d.path().join("authkeys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = d.path().join("pairbeat.toml");
    let base = "[cluster]\nname = \"c\"\n[[node]]\nname = \"alpha\"\n[[node]]\nname = \"bravo\"\n\
        [[link]]\nkind = \"bcast\"\ninterface = \"eth0\"\n[auth]\nauthkeys = \"authkeys\"\n[group]\n\
        [[group.resource]]\nid = \"vip\"\nagent = \"ocf:heartbeat:IPaddr2\"\n";
    let check = |params: &str| {
        std::fs::write(&conf, format!("{base}{params}\n")).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .args(["config", "check", conf.to_str().unwrap(), "--node", "alpha"])
            .output()
            .unwrap()
    };
    let out = check("params = { ipp = \"10.0.0.5\" }");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("resource vip (ocf:heartbeat:IPaddr2): required parameter `ip` is missing"),
        "{err}"
    );
    assert!(
        err.contains("unknown parameter `ipp`") && err.contains("did you mean `ip`?"),
        "{err}"
    );
    let out = check("params = { ip = \"10.0.0.5\", cidr_netmask = 24 }");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // An agent that is not installed here cannot be checked, and says so.
    let out = check("params = { ip = \"10.0.0.5\" }\n[[group.resource]]\nid = \"x\"\nagent = \"ocf:nosuch:Thing\"");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("resource x: agent ocf:nosuch:Thing is not installed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
