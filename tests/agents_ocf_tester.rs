//! Every agent in agents/ passes the resource-agents package's `ocf-tester`, run
//! inside a network-namespace host (agents may start listeners). An agent added
//! without an entry here fails this test: say how to test it. (agents/heartbeat/
//! holds Heartbeat v1 scripts, which are not OCF: tests/netns_replica.rs covers
//! replicadisk.)

mod common;

use std::path::Path;

use common::{pairbeat_config, wait_for, Net};

/// ocf-tester `-o` options, and environment variables, for one agent's run.
type TesterSetup = (Vec<String>, Vec<(&'static str, String)>);

/// ocf-tester options per agent, and environment for the run, after any setup the
/// agent needs in host 0 of `net`. `@DIR@` is a scratch dir.
fn options(agent: &str, net: &mut Net) -> Option<TesterSetup> {
    let root = env!("CARGO_MANIFEST_DIR");
    match agent {
        // Hadoop cannot run here: its hadoop-daemon.sh is a stand-in (tests/fixtures/hadoop-standin).
        "hadoop" => Some((
            vec![
                format!("hadoop_home={root}/tests/fixtures/hadoop-standin"),
                "pid_dir=@DIR@".into(),
                "port=18020".into(),
            ],
            vec![("STANDIN_PORT", "18020".into())],
        )),
        // A real replica, alone (its peer never runs): created, made UpToDate once
        // with `primary --force`, stopped; the agent then starts the daemon itself.
        // fencing = "dont-care": a restarted replica whose peer is unknown is then
        // UpToDate rather than Consistent (DRBD's attach rule), so it may promote
        // alone; with fencing, promotion alone needs the peer outdated first.
        "replica" => Some(replica_setup(net)),
        _ => None,
    }
}

fn replica_setup(net: &mut Net) -> TesterSetup {
    let dir = net.path("alpha");
    std::fs::create_dir_all(&dir).unwrap();
    let extra = format!(
        "realtime = false\n\n[[replica]]\nname = \"r0\"\nbacking = \"{}\"\nsize = \"8MiB\"\nextent = \"1MiB\"\nport = 7789\naddress.alpha = \"{}\"\naddress.bravo = \"{}\"\nfencing = \"dont-care\"\n",
        dir.join("r0.img").display(),
        net.addr(0, 0),
        net.addr(1, 0)
    );
    let conf = pairbeat_config(net, 0, "keepalive = \"100ms\"\ndeadtime = \"500ms\"", &extra);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pairbeat"))
            .args(["replica", "-c", conf.to_str().unwrap(), "--node", "alpha"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pairbeat replica {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["create", "r0"]);
    let log = net.path("replicad.log");
    let pid = net.spawn(
        0,
        Path::new(env!("CARGO_BIN_EXE_pairbeat-replicad")),
        &["-c", conf.to_str().unwrap(), "--node", "alpha", "r0"],
        &log,
    );
    let sock = dir.join("replica").join("r0.sock");
    assert!(
        wait_for(std::time::Duration::from_secs(10), || sock.exists()).is_some(),
        "replicad did not start: {}",
        net.logs()
    );
    cli(&["primary", "r0", "--force"]);
    cli(&["secondary", "r0"]);
    cli(&["down", "r0"]);
    assert!(
        net.wait_exit(pid, std::time::Duration::from_secs(10))
            .is_some_and(|st| st.success()),
        "`down` stops the daemon with status 0: {}",
        net.logs()
    );
    let bindir = Path::new(env!("CARGO_BIN_EXE_pairbeat")).parent().unwrap();
    (
        vec![
            "replica=r0".into(),
            format!("config={}", conf.display()),
            format!("bindir={}", bindir.display()),
            "daemon=direct".into(),
        ],
        vec![("PAIRBEAT_NODE", "alpha".into()), ("HA_RSCTMP", "@DIR@".into())],
    )
}

#[test]
fn every_agent_in_agents_passes_ocf_tester() {
    assert!(
        Path::new("/usr/sbin/ocf-tester").exists(),
        "ocf-tester is missing: `make test` installs resource-agents via scripts/setup"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("agents");
    let mut tested = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".md") || path.is_dir() {
            continue;
        }
        let mut net = Net::new(1);
        let (opts, env) = options(&name, &mut net)
            .unwrap_or_else(|| panic!("agents/{name} has no ocf-tester options in {}", file!()));
        let scratch = net.path("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let mut cmd = String::new();
        for (k, v) in &env {
            cmd.push_str(&format!("{k}={} ", v.replace("@DIR@", scratch.to_str().unwrap())));
        }
        cmd.push_str(&format!("ocf-tester -n test-{name}"));
        for o in opts {
            cmd.push_str(&format!(" -o '{}'", o.replace("@DIR@", scratch.to_str().unwrap())));
        }
        cmd.push_str(&format!(" {}", path.display()));
        let out = net.exec(0, &format!("env {cmd} 2>&1"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("passed all tests"),
            "agents/{name} fails ocf-tester:\n{text}"
        );
        tested += 1;
    }
    assert!(tested > 0, "no agent tested");
}
