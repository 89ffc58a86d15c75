//! Interop with the real Heartbeat 3.0.6 (Debian package `heartbeat`) as a wire peer.
//!
//! Host a runs pairbeatd as node `alpha`; host b runs Heartbeat as node `bravo`
//! (`crm off`, no resources) in its own mount and UTS namespaces, with a private
//! /etc/ha.d, /var/lib/heartbeat and /run. With the same authkeys each sees the
//! other alive and notices its death; with different keys each rejects the other.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{pairbeat_config, sh, status, wait_for, Net};

const HEARTBEAT: &str = "/usr/libexec/heartbeat/heartbeat";
const TIMING: &str = "keepalive = \"200ms\"\nwarntime = \"1s\"\ndeadtime = \"2s\"\ninitdead = \"4s\"";

/// Writes Heartbeat's files for host b and returns the wrapper that runs a command
/// in Heartbeat's private filesystem view.
fn heartbeat_files(net: &Net, secret: &str) -> PathBuf {
    assert!(
        std::path::Path::new(HEARTBEAT).exists(),
        "{HEARTBEAT} is missing: `make test` installs the Debian package heartbeat via scripts/setup"
    );
    let dir = net.path("hb");
    let (etc, var) = (dir.join("etc"), dir.join("var"));
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&var).unwrap();
    // Heartbeat needs its scripts (harc, rc.d, resource.d) and state layout, so start from the package's.
    sh(&format!(
        "cp -a /etc/ha.d/. {} && cp -a /var/lib/heartbeat/. {}",
        etc.display(),
        var.display()
    ));
    std::fs::write(
        etc.join("ha.cf"),
        format!(
            "logfile {log}\ndebugfile {log}.debug\nuse_logd no\nudpport 694\nkeepalive 200ms\nwarntime 1\ndeadtime 2\ninitdead 4\n\
             ucast pb0 {peer}\nnode alpha\nnode bravo\ncrm off\nauto_failback off\nrealtime off\n",
            log = dir.join("ha-log").display(),
            peer = net.addr(0, 0)
        ),
    )
    .unwrap();
    std::fs::write(etc.join("authkeys"), format!("auth 1\n1 sha1 {secret}\n")).unwrap();
    sh(&format!("chmod 600 {}", etc.join("authkeys").display()));
    std::fs::write(etc.join("haresources"), "").unwrap();
    let wrapper = dir.join("in-hb-ns.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nset -e\nmount --bind {etc} /etc/ha.d\nmount --bind {var} /var/lib/heartbeat\nmount -t tmpfs tmpfs /run\n\
             mkdir -p /run/heartbeat/ccm /run/heartbeat/crm\nchown hacluster:haclient /run/heartbeat/ccm /run/heartbeat/crm\n\
             hostname bravo\nexec \"$@\"\n",
            etc = etc.display(),
            var = var.display()
        ),
    )
    .unwrap();
    sh(&format!("chmod 755 {}", wrapper.display()));
    wrapper
}

struct Pair {
    net: Net,
    pairbeatd: u32,
    heartbeat: u32,
    socket: PathBuf,
}

fn start(pairbeat_secret: &str, heartbeat_secret: &str) -> Pair {
    let mut net = Net::new(1);
    let wrapper = heartbeat_files(&net, heartbeat_secret);
    let unshare = PathBuf::from("/usr/bin/unshare");
    let hb_log = net.path("hb/stdout.log");
    let heartbeat = net.spawn(
        1,
        &unshare,
        &["--mount", "--uts", wrapper.to_str().unwrap(), HEARTBEAT, "-f"],
        &hb_log,
    );
    let conf = pairbeat_config(&net, 0, TIMING, "realtime = false");
    std::fs::write(
        net.path("alpha").join("authkeys"),
        format!("auth 1\n1 sha1 {pairbeat_secret}\n"),
    )
    .unwrap();
    let log = net.path("alpha.log");
    let pairbeatd = net.spawn(
        0,
        std::path::Path::new(env!("CARGO_BIN_EXE_pairbeatd")),
        &["-c", conf.to_str().unwrap(), "--node", "alpha"],
        &log,
    );
    let socket = net.path("alpha").join("pb.sock");
    Pair {
        net,
        pairbeatd,
        heartbeat,
        socket,
    }
}

impl Pair {
    /// `cl_status ARGS` run inside Heartbeat's namespaces, where its API socket is.
    fn cl_status(&self, args: &str) -> String {
        let out = Command::new("nsenter")
            .args([
                "-t",
                &self.heartbeat.to_string(),
                "-m",
                "-u",
                "-n",
                "sh",
                "-c",
                &format!("cl_status {args}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn pairbeat_sees_bravo(&self) -> String {
        status(&self.socket)
            .map(|s| s["nodes"][1]["state"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        let read = |p: PathBuf| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        format!(
            "--- pairbeatd\n{}\n--- heartbeat\n{}\n{}",
            read(self.net.path("alpha.log")),
            read(self.net.path("hb/ha-log")),
            read(self.net.path("hb/stdout.log"))
        )
    }
}

#[test]
fn pairbeat_and_heartbeat_see_each_other_and_each_detects_the_others_death() {
    let mut p = start("interop-secret", "interop-secret");
    let both = wait_for(Duration::from_secs(8), || {
        p.cl_status("nodestatus alpha") == "active" && p.pairbeat_sees_bravo() == "online"
    });
    assert!(
        both.is_some(),
        "not mutually alive within 8s (initdead 4s):\n{}",
        p.logs()
    );
    println!(
        "Heartbeat says alpha is active, pairbeat says bravo is online, after {} ms",
        both.unwrap().as_millis()
    );
    assert_eq!(p.cl_status("hblinkstatus alpha pb0"), "up");
    let s = status(&p.socket).unwrap();
    assert_eq!(s["links"][0]["state"], "up");
    assert_eq!(s["packets"]["forged"], 0, "{}", s["packets"]);

    // Heartbeat's death, seen by pairbeat.
    let hb = p.heartbeat;
    p.net.kill9(hb);
    let t = wait_for(Duration::from_secs(5), || p.pairbeat_sees_bravo() == "offline")
        .unwrap_or_else(|| panic!("pairbeat missed Heartbeat's death:\n{}", p.logs()));
    println!(
        "kill -9 of Heartbeat detected by pairbeat after {} ms (deadtime 2000 ms)",
        t.as_millis()
    );
    assert!(t <= Duration::from_millis(2200 + 300), "{t:?}");
}

#[test]
fn heartbeat_detects_pairbeats_death() {
    let mut p = start("interop-secret", "interop-secret");
    assert!(
        wait_for(Duration::from_secs(8), || p.cl_status("nodestatus alpha") == "active").is_some(),
        "{}",
        p.logs()
    );
    let pb = p.pairbeatd;
    p.net.kill9(pb);
    let t = wait_for(Duration::from_secs(6), || p.cl_status("nodestatus alpha") == "dead")
        .unwrap_or_else(|| panic!("Heartbeat missed pairbeat's death:\n{}", p.logs()));
    println!(
        "kill -9 of pairbeatd detected by Heartbeat after {} ms (deadtime 2000 ms)",
        t.as_millis()
    );
    let log = String::from_utf8_lossy(&std::fs::read(p.net.path("hb/ha-log")).unwrap()).into_owned();
    assert!(log.contains("node alpha: is dead"), "{log}");
}

#[test]
fn with_different_keys_each_rejects_the_other() {
    let p = start("pairbeat-key", "heartbeat-key");
    // Both keep sending; neither may ever believe the other.
    assert!(
        wait_for(Duration::from_secs(3), || status(&p.socket)
            .is_some_and(|s| s["packets"]["forged"].as_u64() >= Some(3)))
        .is_some(),
        "{}",
        p.logs()
    );
    std::thread::sleep(Duration::from_secs(5)); // past initdead on both sides
    assert_eq!(p.pairbeat_sees_bravo(), "offline", "{}", p.logs());
    assert_eq!(status(&p.socket).unwrap()["packets"]["accepted"], 0);
    assert_ne!(p.cl_status("nodestatus alpha"), "active", "{}", p.logs());
    // Heartbeat logs rejected packets raw, so its log is not all text.
    let log = String::from_utf8_lossy(&std::fs::read(p.net.path("hb/ha-log")).unwrap()).into_owned();
    assert!(
        !log.contains("Link alpha:pb0 up"),
        "Heartbeat accepted a packet signed with another key:\n{log}"
    );
    assert!(
        log.contains("authentication failed"),
        "Heartbeat did not say why it dropped alpha's packets:\n{log}"
    );
}
