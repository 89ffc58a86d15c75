//! Every agent in agents/ passes the resource-agents package's `ocf-tester`, run
//! inside a network-namespace host (agents may start listeners). An agent added
//! without an entry here fails this test: say how to test it.

mod common;

use std::path::Path;

use common::Net;

/// ocf-tester `-o` options, and environment variables, for one agent's run.
type TesterSetup = (Vec<String>, Vec<(&'static str, String)>);

/// ocf-tester options per agent, and environment for the run. `@DIR@` is a scratch dir.
fn options(agent: &str) -> Option<TesterSetup> {
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
        _ => None,
    }
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
        if name.ends_with(".md") {
            continue;
        }
        let (opts, env) =
            options(&name).unwrap_or_else(|| panic!("agents/{name} has no ocf-tester options in {}", file!()));
        let net = Net::new(1);
        let scratch = net.path("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let mut cmd = String::new();
        for (k, v) in &env {
            cmd.push_str(&format!("{k}={v} "));
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
