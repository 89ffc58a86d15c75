//! `pairbeatd`: the pairbeat daemon. Runs in the foreground; systemd or the SysV
//! script puts it in the background.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pairbeat::config::{self, DEFAULT_CONFIG_PATH};
use pairbeat::daemon::{self, Error, Options};

#[derive(Parser)]
#[command(name = "pairbeatd", version, about = "pairbeat two-node high-availability daemon")]
struct Args {
    /// Configuration file.
    #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// This node's name in the configuration (default: the hostname, as `uname -n`).
    #[arg(long)]
    node: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A refused configuration was reported in full already (as by `config check`).
            if !matches!(e, Error::Config { .. }) {
                log::error!("{e}");
                eprintln!("pairbeatd: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(args: Args) -> Result<(), Error> {
    let loaded = config::load(&args.config, args.node.as_deref()).and_then(pairbeat::agent::check_installed_agents);
    let (config, warnings) = match loaded {
        Ok(ok) => ok,
        Err(diags) => {
            // The same report as `pairbeat config check`, so one can be checked against the other.
            eprint!("{}", diags.report(&args.config));
            return Err(Error::Config {
                path: args.config.display().to_string(),
                errors: diags.error_count(),
            });
        }
    };
    if !warnings.items.is_empty() {
        eprint!("{warnings}");
    }
    pairbeat::logging::init(&config.daemon.log, config.daemon.log_level, "pairbeatd").map_err(Error::Logging)?;
    if config.daemon.realtime {
        for problem in daemon::make_realtime() {
            log::warn!("realtime: {problem}; running without it");
        }
    }
    // One thread runs everything: keepalives never wait for another thread's lock.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let opts = Options {
        config_path: args.config,
        node: args.node,
    };
    runtime.block_on(daemon::run(opts, config))
}
