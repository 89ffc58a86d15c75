//! Init integration: systemd's notify protocol (READY, STATUS, WATCHDOG, RELOADING,
//! STOPPING) as a real pairbeatd sends it, and the SysV init script's verbs.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A config for this host (named by its hostname, as the init script runs without --node).
fn config(dir: &Path, port: u16) -> std::path::PathBuf {
    let me = pairbeat::config::hostname();
    std::fs::write(dir.join("authkeys"), "auth 1\n1 sha1 k\n").unwrap();
    std::fs::set_permissions(dir.join("authkeys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[cluster]\nname = \"init\"\n[[node]]\nname = \"{me}\"\n[[node]]\nname = \"nobody-else\"\n\
         [[link]]\nkind = \"ucast\"\ninterface = \"lo\"\nport = {port}\naddress.\"{me}\" = \"127.0.0.1\"\naddress.nobody-else = \"127.0.0.2\"\n\
         [timing]\nkeepalive = \"100ms\"\ndeadtime = \"500ms\"\ninitdead = \"1s\"\n[auth]\nauthkeys = \"authkeys\"\n\
         [daemon]\nsocket = \"{d}/pb.sock\"\nstate_dir = \"{d}/state\"\nrealtime = false\n",
        d = dir.display()
    );
    let p = dir.join("pairbeat.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn systemd_notify_ready_status_watchdog_reload_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), 31_000 + (std::process::id() % 1000) as u16);
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairbeatd"))
        .arg("-c")
        .arg(&conf)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut got: Vec<String> = Vec::new();
    let collect = |got: &mut Vec<String>, until: Duration| {
        let end = Instant::now() + until;
        let mut buf = [0u8; 512];
        while Instant::now() < end {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    // Up to READY first: a freshly built binary's first start may fault its pages
    // in from a busy disk (a one-off of 1 s was seen), which is not the rhythm.
    let start = Instant::now();
    while got.is_empty() && start.elapsed() < Duration::from_secs(10) {
        collect(&mut got, Duration::from_millis(50));
    }
    let text = |g: &[String]| g.join(" | ");
    assert!(got.first().is_some_and(|m| m.starts_with("READY=1")), "{}", text(&got));
    let ready = got.len();
    collect(&mut got, Duration::from_millis(1500));
    assert!(
        got.iter()
            .any(|m| m.starts_with("STATUS=group stopped; peer nobody-else")),
        "{}",
        text(&got)
    );
    // WATCHDOG_USEC 200 ms: a ping every 100 ms, counted over 1.5 s from READY.
    let pings = got[ready..].iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(
        pings >= 8,
        "{pings} watchdog pings in 1.5 s after READY: {}",
        text(&got)
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    collect(&mut got, Duration::from_millis(300));
    let after: Vec<&String> = got.iter().skip_while(|m| *m != "RELOADING=1").collect();
    assert!(
        after.iter().any(|m| m.starts_with("READY=1")),
        "no READY after RELOADING: {}",
        text(&got)
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    collect(&mut got, Duration::from_millis(300));
    assert!(got.iter().any(|m| m.starts_with("STOPPING=1")), "{}", text(&got));
    assert!(child.wait().unwrap().success());
}

#[test]
fn sysv_script_starts_reports_reloads_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), 32_000 + (std::process::id() % 1000) as u16);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/init.d/pairbeat");
    let run = |verb: &str| {
        Command::new("sh")
            .arg(&script)
            .arg(verb)
            .env("DAEMON", env!("CARGO_BIN_EXE_pairbeatd"))
            .env("CLI", env!("CARGO_BIN_EXE_pairbeat"))
            .env("CONFIG", &conf)
            .env("PIDFILE", dir.path().join("pid"))
            .env("LOGFILE", dir.path().join("out.log"))
            .output()
            .unwrap()
    };
    assert_eq!(run("status").status.code(), Some(3));
    let out = run("start");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(dir.path().join("out.log")).unwrap_or_default()
    );
    let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = run("status");
    assert_eq!(status.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("running (pid {pid})")));
    assert!(run("reload").status.success());
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(dir.path().join("out.log")).unwrap();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(run("stop").status.success());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pairbeatd still runs after stop"
    );
    assert_eq!(run("status").status.code(), Some(3));
    // A broken configuration is refused before anything starts, with exit 6.
    std::fs::write(&conf, "[cluster\n").unwrap();
    assert_eq!(run("start").status.code(), Some(6));
}

#[test]
fn the_systemd_unit_says_what_the_daemon_does() {
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/pairbeatd.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillMode=process",
        "ExecStart=/usr/sbin/pairbeatd -c /etc/pairbeat/pairbeat.toml",
        // ComponentFail: a daemon killed outright is started again (it adopts the
        // running group), but not one whose configuration can never work (78).
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "{line} missing from the unit"
        );
    }
}

#[test]
fn the_replicad_template_unit_runs_one_daemon_per_replica() {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/pairbeat-replicad@.service")).unwrap();
    for line in [
        "ExecStart=/usr/sbin/pairbeat-replicad -c /etc/pairbeat/pairbeat.toml %i",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "Before=pairbeatd.service",
        "KillMode=process",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "{line} missing from the unit"
        );
    }
}

/// A replica that is not configured, or whose metadata was never created, can never
/// start: EX_CONFIG (78), which the unit does not restart, and a message saying how
/// to fix it.
#[test]
fn replicad_refuses_what_can_never_work_with_exit_78_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("authkeys");
    std::fs::write(&keys, "auth 1\n1 sha256 s3cret\n").unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let conf = dir.path().join("pairbeat.toml");
    let text = format!(
        "[cluster]\nname = \"c\"\n[[node]]\nname = \"alpha\"\n[[node]]\nname = \"bravo\"\n[[link]]\nkind = \"ucast\"\ninterface = \"lo\"\naddress.alpha = \"127.0.0.1\"\naddress.bravo = \"127.0.0.2\"\n[timing]\nkeepalive = \"1s\"\ndeadtime = \"10s\"\n[auth]\nauthkeys = \"{}\"\n[daemon]\nsocket = \"{}\"\n[[replica]]\nname = \"r0\"\nbacking = \"{}\"\nsize = \"1MiB\"\naddress.alpha = \"127.0.0.1\"\naddress.bravo = \"127.0.0.2\"\n",
        keys.display(),
        dir.path().join("pb.sock").display(),
        dir.path().join("r0.img").display()
    );
    std::fs::write(&conf, text).unwrap();
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let run = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat-replicad"))
            .args(["-c", conf.to_str().unwrap(), "--node", "alpha", name])
            .output()
            .unwrap()
    };
    let out = run("r9");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[replica]] named `r9` (configured: r0)"));
    let out = run("r0");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pairbeat replica create r0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
