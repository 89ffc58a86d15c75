//! `pairbeat-replicad`: serves one replicated disk (`[[replica]]` NAME in
//! pairbeat.toml). Runs in the foreground; the systemd unit
//! `pairbeat-replicad@NAME.service` runs one per disk. It keeps serving while
//! pairbeatd restarts or is upgraded.
//!
//! Two processes: this one, the supervisor (`replicad::supervisor`), starts itself
//! again with `--worker` and aborts and kills that worker when it hangs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pairbeat::config::{self, DEFAULT_CONFIG_PATH};

#[derive(Parser)]
#[command(
    name = "pairbeat-replicad",
    version,
    about = "pairbeat replicated disk daemon (one per [[replica]])"
)]
struct Args {
    /// Configuration file.
    #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// This node's name in the configuration (default: the hostname, as `uname -n`).
    #[arg(long)]
    node: Option<String>,
    /// Run as the worker the supervisor starts (internal).
    #[arg(long, hide = true)]
    worker: bool,
    /// The replica to serve: a `name` of a [[replica]] section.
    name: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (config, warnings) = match config::load(&args.config, args.node.as_deref()) {
        Ok(ok) => ok,
        Err(diags) => {
            eprint!("{}", diags.report(&args.config));
            // EX_CONFIG: systemd's RestartPreventExitStatus stops the restart loop.
            return ExitCode::from(78);
        }
    };
    if !warnings.items.is_empty() && !args.worker {
        eprint!("{warnings}");
    }
    let program = if args.worker {
        "pairbeat-replicad[worker]"
    } else {
        "pairbeat-replicad"
    };
    if let Err(e) = pairbeat::logging::init(&config.daemon.log, config.daemon.log_level, program) {
        eprintln!("pairbeat-replicad: {e}");
        return ExitCode::from(71);
    }
    // Before any thread starts: the FUSE mount is to be seen by no one but us, and
    // the supervisor's fusectl mount stays its own.
    if let Err(e) = pairbeat::replicad::device::private_mounts() {
        eprintln!("pairbeat-replicad: cannot make a private mount namespace ({e}); it needs root (CAP_SYS_ADMIN)");
        return ExitCode::from(71);
    }
    if !args.worker {
        let mut worker_args = vec!["-c".into(), args.config.clone().into_os_string()];
        if let Some(n) = &args.node {
            worker_args.extend(["--node".into(), n.into()]);
        }
        worker_args.push(args.name.clone().into());
        let io_watchdog = config
            .replicas
            .iter()
            .find(|r| r.name == args.name)
            .map_or(std::time::Duration::from_secs(10), |r| r.io_watchdog);
        let run_dir = config::replica::run_dir(&config);
        return ExitCode::from(pairbeat::replicad::supervisor::run(
            worker_args,
            io_watchdog,
            &run_dir,
            &args.name,
        ));
    }
    // Before the runtime's threads: the environment is read and cleared here.
    let beat = pairbeat::replicad::supervisor::Beat::from_env();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pairbeat-replicad: cannot start the runtime: {e}");
            return ExitCode::from(71);
        }
    };
    let opts = pairbeat::replicad::Options {
        config,
        name: args.name,
        volatile: std::env::var_os("PAIRBEAT_REPLICA_VOLATILE").is_some_and(|v| v == "1"),
        beat,
    };
    match runtime.block_on(pairbeat::replicad::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("pairbeat-replicad: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
