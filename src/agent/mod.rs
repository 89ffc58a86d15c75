//! Running resource agents: OCF, LSB init scripts and Heartbeat v1 resource scripts.
//!
//! Each operation runs through [`crate::child`] (its own process group, a clean
//! environment, stdin from /dev/null, inherited descriptors closed, a parent-death
//! signal, output captured up to a cap); parameters reach agents only through
//! `OCF_RESKEY_*`, never a shell string. When the time limit passes the whole
//! process group gets SIGTERM, then SIGKILL after [`KILL_GRACE`]. Exit codes (and, for Heartbeat
//! `status`, the printed words) become [`Outcome`]s; an `ocf-exit-reason:` line on
//! stderr is kept for status.

pub mod metadata;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::child::{self, ChildOutcome, ChildSpec};
use crate::config::{AgentSpec, Resource};
use crate::resources::{Action, Outcome, Severity};

pub use crate::child::OUTPUT_CAP;
/// After SIGTERM to a timed-out operation's process group, how long before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);
/// The PATH agents run with.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where agents live, and what they are told of this node. Defaults are the
/// standard Linux paths.
#[derive(Debug, Clone)]
pub struct Paths {
    pub ocf_root: PathBuf,
    pub init_d: PathBuf,
    pub heartbeat_resource_d: PathBuf,
    /// This node's name and pairbeatd's configuration file, given to every agent as
    /// PAIRBEAT_NODE and PAIRBEAT_CONFIG (and to OCF agents as Pacemaker's
    /// OCF_RESKEY_CRM_meta_on_node): pairbeat's own agents find their daemons by
    /// them, also on a host whose hostname is not its node name.
    pub node: Option<(String, PathBuf)>,
    /// Pacemaker's attribute tools as pairbeat provides them (`crm_master`,
    /// `crm_attribute`, …): given as HA_SBIN_DIR and first in PATH.
    pub tools: Option<PathBuf>,
    /// pairbeatd's control socket, as PAIRBEAT_SOCKET (where those tools ask).
    pub socket: Option<PathBuf>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            ocf_root: PathBuf::from("/usr/lib/ocf"),
            init_d: PathBuf::from("/etc/init.d"),
            heartbeat_resource_d: PathBuf::from("/etc/ha.d/resource.d"),
            node: None,
            tools: None,
            socket: None,
        }
    }
}

/// What an operation came to, with what the agent said.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: Outcome,
    /// The last `ocf-exit-reason:` line, or for failures without one, the last
    /// line of stderr (what an operator most needs to see).
    pub reason: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunResult {
    /// An agent that is not there or cannot be executed: OCF's "not installed".
    fn not_installed(reason: String, started: Instant) -> Self {
        RunResult {
            outcome: Outcome::not_installed(),
            reason: Some(reason),
            stdout: String::new(),
            stderr: String::new(),
            elapsed: started.elapsed(),
        }
    }
}

impl Paths {
    /// The executable for a resource's agent, if it exists.
    pub fn executable(&self, agent: &AgentSpec) -> Result<PathBuf, String> {
        let candidates: Vec<PathBuf> = match agent {
            AgentSpec::Ocf { provider, kind } => vec![self.ocf_root.join("resource.d").join(provider).join(kind)],
            AgentSpec::Lsb { name } => vec![self.init_d.join(name)],
            // ResourceManager's search order: resource.d, then init.d.
            AgentSpec::Heartbeat { name } => vec![self.heartbeat_resource_d.join(name), self.init_d.join(name)],
            // Nothing to execute: pairbeatd runs it (`run` never gets here).
            AgentSpec::Builtin { .. } => vec![],
        };
        candidates.iter().find(|p| is_executable(p)).cloned().ok_or_else(|| {
            format!(
                "agent {agent} is not installed (looked for {})",
                join_paths(&candidates)
            )
        })
    }
}

fn join_paths(p: &[PathBuf]) -> String {
    p.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The agent's command line and environment for one verb (`start`, `monitor`,
/// `meta-data`, …); `interval` and `depth` matter to monitors only.
fn command(
    paths: &Paths,
    exe: &Path,
    rsc: &Resource,
    verb: &str,
    interval: Duration,
    depth: u32,
    timeout: Duration,
) -> ChildSpec {
    let mut cmd = ChildSpec::new(exe, timeout);
    cmd.kill_grace = KILL_GRACE;
    match &paths.tools {
        Some(t) => cmd.env("PATH", format!("{}:{PATH}", t.display())).env("HA_SBIN_DIR", t),
        None => cmd.env("PATH", PATH),
    };
    cmd.env("LANG", "C");
    if let Some(s) = &paths.socket {
        cmd.env("PAIRBEAT_SOCKET", s);
    }
    if let Some((name, config)) = &paths.node {
        cmd.env("PAIRBEAT_NODE", name).env("PAIRBEAT_CONFIG", config);
        if matches!(rsc.agent, AgentSpec::Ocf { .. }) {
            cmd.env("OCF_RESKEY_CRM_meta_on_node", name);
        }
    }
    match &rsc.agent {
        AgentSpec::Ocf { provider, kind } => {
            cmd.arg(verb)
                .env("OCF_ROOT", &paths.ocf_root)
                .env("OCF_RA_VERSION_MAJOR", "1")
                .env("OCF_RA_VERSION_MINOR", "1")
                .env("OCF_RESOURCE_INSTANCE", &rsc.id)
                .env("OCF_RESOURCE_TYPE", kind)
                .env("OCF_RESOURCE_PROVIDER", provider)
                .env("OCF_RESKEY_CRM_meta_interval", interval.as_millis().to_string())
                .env("OCF_RESKEY_CRM_meta_timeout", timeout.as_millis().to_string())
                .env("OCF_CHECK_LEVEL", depth.to_string());
            if rsc.promotable {
                // What Pacemaker tells a promotable clone's instances: one instance per
                // node on two nodes, one of them promoted. pairbeat sends no clone
                // notifications (see docs/operator-guide.md, "Real DRBD").
                for (k, v) in [
                    ("clone_max", "2"),
                    ("clone_node_max", "1"),
                    ("master_max", "1"),
                    ("master_node_max", "1"),
                    ("promoted_max", "1"),
                    ("promoted_node_max", "1"),
                    ("notify", "false"),
                ] {
                    cmd.env(format!("OCF_RESKEY_CRM_meta_{k}"), v);
                }
            }
            for (k, v) in &rsc.params {
                cmd.env(format!("OCF_RESKEY_{k}"), v);
            }
        }
        AgentSpec::Lsb { .. } => {
            cmd.arg(verb);
        }
        AgentSpec::Heartbeat { .. } => {
            for a in &rsc.args {
                cmd.arg(a);
            }
            cmd.arg(verb);
        }
        AgentSpec::Builtin { .. } => {}
    }
    cmd
}

/// The verb an action is for this agent's class.
fn verb(agent: &AgentSpec, action: Action) -> &'static str {
    match agent {
        AgentSpec::Ocf { .. } => match action {
            Action::Probe | Action::Monitor { .. } => "monitor",
            other => other.name(),
        },
        _ => lsb_verb(action),
    }
}

fn lsb_verb(action: Action) -> &'static str {
    match action {
        Action::Start => "start",
        Action::Stop => "stop",
        // LSB and Heartbeat v1 scripts know status, not monitor; promote/demote are
        // refused for them by config validation.
        _ => "status",
    }
}

/// Runs one action of a resource's agent, within `timeout`.
pub async fn run(paths: &Paths, rsc: &Resource, action: Action, timeout: Duration) -> RunResult {
    run_op(paths, rsc, action, timeout, false).await
}

/// [`run`], for a monitor that re-asserts the group after a split brain
/// (`reassert`): a built-in virtual IP announces itself again then.
pub async fn run_op(paths: &Paths, rsc: &Resource, action: Action, timeout: Duration, reassert: bool) -> RunResult {
    let started = Instant::now();
    if let AgentSpec::Builtin { .. } = rsc.agent {
        return run_builtin(rsc, action, timeout, reassert, started).await;
    }
    let exe = match paths.executable(&rsc.agent) {
        Ok(p) => p,
        Err(e) => return RunResult::not_installed(e, started),
    };
    let (interval, depth) = match action {
        Action::Monitor { interval, check_level } => (interval, check_level),
        _ => (Duration::ZERO, 0),
    };
    let cmd = command(paths, &exe, rsc, verb(&rsc.agent, action), interval, depth, timeout);
    let ChildOutcome {
        code,
        timed_out,
        stdout,
        stderr,
        ..
    } = match child::run(&cmd).await {
        Ok(r) => r,
        Err(e) => return RunResult::not_installed(format!("cannot run {}: {e}", exe.display()), started),
    };
    let is_status = matches!(action, Action::Probe | Action::Monitor { .. });
    let outcome = if timed_out {
        Outcome::TimedOut
    } else {
        match (&rsc.agent, code) {
            (AgentSpec::Heartbeat { .. }, _) if is_status => Outcome::from_heartbeat_status(&stdout),
            (_, None) => Outcome::Error(Severity::Soft, 1),
            (AgentSpec::Ocf { .. } | AgentSpec::Builtin { .. }, Some(c)) => Outcome::from_ocf(c),
            (AgentSpec::Lsb { .. }, Some(c)) => Outcome::from_lsb(c, is_status),
            (AgentSpec::Heartbeat { .. }, Some(c)) => Outcome::from_heartbeat(c),
        }
    };
    let reason = exit_reason(&stderr).or_else(|| {
        if timed_out {
            Some(format!(
                "{} did not finish within {} ms; its process group was killed",
                action.name(),
                timeout.as_millis()
            ))
        } else if outcome.is_error() {
            stderr
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        } else {
            None
        }
    });
    RunResult {
        outcome,
        reason,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    }
}

/// A built-in agent's operation, in the daemon's runtime: no process, no pipes.
async fn run_builtin(rsc: &Resource, action: Action, timeout: Duration, reassert: bool, started: Instant) -> RunResult {
    use crate::builtin::{failed, Answer};
    let result = |outcome, reason| RunResult {
        outcome,
        reason,
        stdout: String::new(),
        stderr: String::new(),
        elapsed: started.elapsed(),
    };
    // config check refuses bad parameters; a config loaded otherwise still gets a reason.
    let not_configured = |e: Vec<crate::builtin::ParamError>| {
        failed(6, e.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "))
    };
    if matches!(action, Action::Promote | Action::Demote) {
        return result(
            Outcome::Error(Severity::Hard, 3),
            Some(format!("{} cannot {}", rsc.agent, action.name())),
        );
    }
    let answer = match &rsc.agent {
        AgentSpec::Builtin { name } if name == "filesystem" => {
            use crate::filesystem::mount::{run, Op};
            let op = match action {
                Action::Start => Op::Start,
                Action::Stop => Op::Stop,
                Action::Monitor { check_level, .. } => Op::Monitor { depth: check_level },
                _ => Op::Monitor { depth: 0 },
            };
            match crate::filesystem::parse(&rsc.params) {
                // The operation keeps its own deadline (a blocking mount cannot be cancelled).
                Ok(fs) => tokio::time::timeout(timeout + Duration::from_millis(500), run(&fs, op, timeout))
                    .await
                    .ok(),
                Err(e) => Some(not_configured(e)),
            }
        }
        _ => {
            use crate::vip::net::{run, Op};
            let op = match action {
                Action::Start => Op::Start,
                Action::Stop => Op::Stop,
                Action::Monitor { .. } => Op::Monitor { announce: reassert },
                _ => Op::Monitor { announce: false },
            };
            match crate::vip::parse(&rsc.params) {
                Ok(vip) => tokio::time::timeout(timeout, run(&vip, op)).await.ok(),
                Err(e) => Some(not_configured(e)),
            }
        }
    };
    match answer {
        None => result(
            Outcome::TimedOut,
            Some(format!(
                "{} did not finish within {} ms",
                action.name(),
                timeout.as_millis()
            )),
        ),
        Some(Answer::Done | Answer::Running) => result(Outcome::Success, None),
        Some(Answer::NotRunning) => result(Outcome::NotRunning, None),
        Some(Answer::Failed { code, reason }) => result(Outcome::from_ocf(code), Some(reason)),
    }
}

/// Runs `meta-data` and parses it (OCF agents only).
pub async fn metadata(paths: &Paths, rsc: &Resource) -> Result<metadata::MetaData, String> {
    let AgentSpec::Ocf { .. } = rsc.agent else {
        return Err("only OCF agents have meta-data".into());
    };
    let exe = paths.executable(&rsc.agent)?;
    let md = command(paths, &exe, rsc, "meta-data", Duration::ZERO, 0, Duration::from_secs(5));
    let ChildOutcome {
        code,
        timed_out,
        stdout,
        stderr,
        ..
    } = child::run(&md)
        .await
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if timed_out {
        return Err(format!("{} meta-data did not finish within 5 s", exe.display()));
    }
    if code != Some(0) {
        return Err(format!(
            "{} meta-data failed (exit {:?}): {}",
            exe.display(),
            code,
            stderr.trim()
        ));
    }
    metadata::parse(&stdout)
}

fn exit_reason(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("ocf-exit-reason:").map(|r| r.trim().to_string()))
        .filter(|r| !r.is_empty())
}

/// Checks each OCF resource's params against its agent's meta-data, where the agent
/// is installed: a missing required parameter is an error, an unknown one a warning
/// with the closest known name (some agents take parameters they do not declare).
pub async fn check_params(config: &crate::config::Config) -> crate::config::Diagnostics {
    use crate::config::{diag::closest, Location};
    let paths = Paths {
        ocf_root: config.daemon.ocf_root.clone(),
        ..Paths::default()
    };
    let mut diags = crate::config::Diagnostics::default();
    let here = Location::file(&config.path);
    for r in &config.group.resources {
        if let AgentSpec::Builtin { .. } = r.agent {
            // Its parameters are checked with the config; here, what this host has.
            if let Ok(vip) = crate::vip::parse(&r.params) {
                if let Err(e) = crate::vip::net::check_host(&vip).await {
                    diags.error(
                        here.clone(),
                        format!("resource {} ({}): {e}", r.id, r.agent),
                        Some("name an interface of this host in `nic` (see `ip link`), with cidr_netmask".into()),
                    );
                }
            }
            continue;
        }
        if !matches!(r.agent, AgentSpec::Ocf { .. }) {
            continue;
        }
        let md = match metadata(&paths, r).await {
            Ok(md) => md,
            Err(e) => {
                diags.warning(
                    here.clone(),
                    format!("resource {}: {e}; its parameters were not checked", r.id),
                    None,
                );
                continue;
            }
        };
        for p in md
            .parameters
            .iter()
            .filter(|p| p.required && !r.params.contains_key(&p.name))
        {
            diags.error(
                here.clone(),
                format!(
                    "resource {} ({}): required parameter `{}` is missing",
                    r.id, r.agent, p.name
                ),
                Some(format!(
                    "add {} = \"...\" to its params (see `{} meta-data`)",
                    p.name, r.agent
                )),
            );
        }
        for name in r.params.keys().filter(|k| !md.parameters.iter().any(|p| &p.name == *k)) {
            let help = closest(name, md.parameters.iter().map(|p| p.name.as_str()))
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| "the agent's meta-data does not declare it".into());
            diags.warning(
                here.clone(),
                format!("resource {} ({}): unknown parameter `{name}`", r.id, r.agent),
                Some(help),
            );
        }
    }
    diags
}

/// `check_params` for a freshly loaded config, from synchronous code (the CLI, and
/// the daemon before its runtime starts): the same findings for both.
pub fn check_installed_agents(
    (config, mut warnings): (crate::config::Config, crate::config::Diagnostics),
) -> Result<(crate::config::Config, crate::config::Diagnostics), crate::config::Diagnostics> {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(_) => return Ok((config, warnings)),
    };
    let found = rt.block_on(check_params(&config));
    warnings.extend(found);
    if warnings.has_errors() {
        Err(warnings.sorted())
    } else {
        Ok((config, warnings.sorted()))
    }
}
