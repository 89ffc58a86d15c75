//! `pairbeat`: the operator's command — status, configuration check and import.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use pairbeat::config::{self, import, DEFAULT_CONFIG_PATH, DEFAULT_SOCKET_PATH};
use pairbeat::control::{client, render, Request};

#[derive(Parser)]
#[command(name = "pairbeat", version, about = "Operate a pairbeat two-node cluster")]
struct Cli {
    /// Control socket of the local pairbeatd.
    #[arg(short = 's', long = "socket", global = true, env = "PAIRBEAT_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the cluster: nodes, links, the resource group (like crm_mon -1).
    #[command(visible_alias = "mon")]
    Status {
        /// Output format.
        #[arg(long = "output-as", value_enum, default_value_t = Format::Text)]
        output_as: Format,
        /// Show node attributes: each node's heartbeat links and packet counts.
        #[arg(short = 'A', long = "show-node-attributes")]
        attributes: bool,
        /// Show fail counts against migration thresholds.
        #[arg(short = 'f', long = "failcounts")]
        failcounts: bool,
        /// Refresh until interrupted (every 2 s, or -i).
        #[arg(short = 'w', long = "watch")]
        watch: bool,
        /// Refresh interval in seconds; implies --watch.
        #[arg(short = 'i', long = "interval", value_name = "SECONDS")]
        interval: Option<f64>,
        /// Print once and exit (the default; for crm_mon habits).
        #[arg(short = '1', long = "one-shot")]
        one_shot: bool,
    },
    /// Forget a resource's failures (all resources' without RESOURCE), unblock the
    /// group, and probe again.
    Cleanup { resource: Option<String> },
    /// Hand the group to the peer and keep this node out until `online` (kept across restarts).
    Standby,
    /// Ask the peer to hand the group to this node.
    Takeover,
    /// End standby on this node.
    Online,
    /// After a split brain under policy stop-both: let NODE run the group; the other
    /// node keeps it stopped. Run on either node.
    Resolve {
        /// The node whose copy of the data is kept.
        #[arg(long, value_name = "NODE")]
        keep: String,
    },
    /// Mark the split brains shown by `status` as seen (after checking the data).
    #[command(visible_alias = "ack")]
    Acknowledge,
    /// Check or import configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Operate a replicated disk ([[replica]] in pairbeat.toml) through its pairbeat-replicad.
    Replica {
        /// Configuration file (names the replicas and where their daemons listen).
        #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// This node's name in the configuration (default: the hostname).
        #[arg(long)]
        node: Option<String>,
        #[command(subcommand)]
        command: ReplicaCommand,
    },
}

#[derive(Subcommand)]
enum ReplicaCommand {
    /// Create the metadata (and a sparse image if the backing file is missing); no daemon needed.
    Create {
        name: String,
        /// Start over even if metadata exists (this node's data then resyncs from the peer).
        #[arg(long)]
        force: bool,
    },
    /// Promote to Primary. Refused for data that is not provably up to date.
    Primary {
        name: String,
        /// The operator asserts this node's data is the truth (a full resync to the peer follows).
        #[arg(long, conflicts_with = "new_data")]
        force: bool,
        /// Both replicas are freshly created, zeroed and connected: start them in sync.
        #[arg(long)]
        new_data: bool,
    },
    /// Demote to Secondary (refused while the device is in use).
    Secondary { name: String },
    /// Role, disk states, connection, out-of-sync bytes, resync progress, generations.
    Status {
        /// One replica (all configured ones without it).
        name: Option<String>,
        #[arg(long = "output-as", value_enum, default_value_t = Format::Text)]
        output_as: Format,
    },
    /// Set the resync rate now (bytes per second, "50MiB" etc.).
    ResyncRate { name: String, rate: String },
    /// Give up this node's data at the next split-brain handshake (it becomes SyncTarget).
    DiscardMyData { name: String },
    /// Persist Outdated on this node (what the peer's pairbeatd asks when it lost this node).
    Outdate { name: String },
    /// Operator override: resume I/O frozen by the fencing policy.
    ResumeIo { name: String },
    /// Try the replication link again after StandAlone, keeping this node's data
    /// (withdraws an earlier discard-my-data, as DRBD's `connect`).
    Connect { name: String },
    /// Stop the daemon cleanly, as `drbdadm down` (refused while Primary: demote first).
    /// Under systemd prefer `systemctl stop pairbeat-replicad@NAME`.
    Down { name: String },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a pairbeat.toml; exit 0 when valid (warnings allowed), 1 otherwise.
    Check {
        /// The file to check.
        #[arg(default_value = DEFAULT_CONFIG_PATH)]
        file: PathBuf,
        /// Check as this node (default: the hostname).
        #[arg(long)]
        node: Option<String>,
    },
    /// Translate Heartbeat's ha.cf, haresources and authkeys (and drbd.conf) into a pairbeat.toml on stdout.
    Import {
        /// Heartbeat's ha.cf: nodes, links, timing, failback.
        #[arg(long = "ha-cf", value_name = "FILE")]
        ha_cf: PathBuf,
        /// Heartbeat's haresources: the resource group.
        #[arg(long, value_name = "FILE")]
        haresources: Option<PathBuf>,
        /// Heartbeat's authkeys: pairbeat uses the file as it is.
        #[arg(long, value_name = "FILE")]
        authkeys: Option<PathBuf>,
        /// A drbd.conf (or drbd.d/*.res) whose resources become pairbeat replicas; haresources' drbddisk::NAME then runs the replica. Repeat for several files.
        #[arg(long = "drbd-conf", value_name = "FILE")]
        drbd_conf: Vec<PathBuf>,
        /// The node these files come from (default: this host's name); places ucast addresses. Run on that node itself, its own ucast address is read from the interface.
        #[arg(long)]
        node: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Xml,
}

/// Exit status when no daemon answers (sysexits' EX_UNAVAILABLE), distinct from
/// errors in what was asked, so scripts can tell "pairbeat is down" apart.
const EXIT_NO_DAEMON: u8 = 69;

fn main() -> ExitCode {
    // Run as crm_attribute, crm_master, attrd_updater or crm_node (the symlinks
    // pairbeatd gives agents): Pacemaker's tools, answered by pairbeatd.
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    let tool = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if pairbeat::crm::TOOLS.contains(&tool.as_str()) {
        let code = pairbeat::crm::main(&tool, &args.collect::<Vec<_>>());
        return ExitCode::from(code as u8);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Replica { config, node, command } => replica(&config, node.as_deref(), command),
        Command::Status {
            output_as,
            attributes,
            failcounts,
            watch,
            interval,
            one_shot,
        } => {
            let opts = render::TextOptions { attributes, failcounts };
            let every = match (watch || interval.is_some(), one_shot, interval) {
                (_, true, _) | (false, _, _) => None,
                (true, false, Some(i)) if i > 0.0 && i.is_finite() => Some(std::time::Duration::from_secs_f64(i)),
                (true, false, Some(i)) => {
                    eprintln!("pairbeat: -i {i}: the interval must be a positive number of seconds");
                    return ExitCode::from(2);
                }
                (true, false, None) => Some(std::time::Duration::from_secs(2)),
            };
            match every {
                None => status(&cli.socket, output_as, opts),
                Some(d) => loop {
                    // Clear the screen, print, wait: a poor man's crm_mon screen.
                    print!("\x1b[H\x1b[2J");
                    status(&cli.socket, output_as, opts);
                    std::thread::sleep(d);
                },
            }
        }
        Command::Cleanup { resource } => act(&cli.socket, Request::Cleanup { resource }),
        Command::Standby => act(&cli.socket, Request::Standby),
        Command::Takeover => act(&cli.socket, Request::Takeover),
        Command::Online => act(&cli.socket, Request::Online),
        Command::Resolve { keep } => act(&cli.socket, Request::Resolve { keep }),
        Command::Acknowledge => act(&cli.socket, Request::Acknowledge),
        Command::Config {
            command: ConfigCommand::Check { file, node },
        } => check(&file, node.as_deref()),
        Command::Config {
            command:
                ConfigCommand::Import {
                    ha_cf,
                    haresources,
                    authkeys,
                    drbd_conf,
                    node,
                },
        } => {
            // Run on the node itself (no --node, or --node naming this host), its
            // interfaces give the addresses ha.cf leaves out.
            let here = config::hostname();
            let local_addresses = if node.as_ref().is_none_or(|n| *n == here) {
                import::local_addresses()
            } else {
                Vec::new()
            };
            let from_node = node.or(Some(here));
            run_import(import::ImportInput {
                ha_cf,
                haresources,
                authkeys,
                from_node,
                drbd_conf,
                local_addresses,
            })
        }
    }
}

/// Sends a command to the daemon and prints what it did.
fn act(socket: &std::path::Path, request: Request) -> ExitCode {
    match client::request(socket, &request) {
        Ok(resp) => {
            println!("{}", resp.message.unwrap_or_else(|| "done".into()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pairbeat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn status(socket: &std::path::Path, format: Format, opts: render::TextOptions) -> ExitCode {
    match client::request(socket, &Request::Status) {
        Ok(resp) => {
            let Some(status) = resp.status else {
                eprintln!("pairbeat: the daemon answered without a status");
                return ExitCode::FAILURE;
            };
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&status).expect("status serializes")),
                Format::Xml => match quick_xml::se::to_string_with_root("pairbeat-status", &status) {
                    Ok(xml) => println!("<?xml version=\"1.0\"?>\n{xml}"),
                    Err(e) => {
                        eprintln!("pairbeat: cannot write the status as XML: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                Format::Text => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    print!("{}", render::text(&status, opts, now, render::Zone::Local));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e @ client::ClientError::Connect { .. }) => {
            eprintln!("pairbeat: {e}");
            ExitCode::from(EXIT_NO_DAEMON)
        }
        Err(e) => {
            eprintln!("pairbeat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(file: &std::path::Path, node: Option<&str>) -> ExitCode {
    match config::load(file, node).and_then(pairbeat::agent::check_installed_agents) {
        Ok((_, warnings)) => {
            print!("{}", warnings.report(file));
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprint!("{}", diags.report(file));
            ExitCode::FAILURE
        }
    }
}

fn run_import(input: import::ImportInput) -> ExitCode {
    match import::import(&input) {
        Ok(done) => {
            print!("{}", done.toml);
            eprint!("{}", done.notes);
            if !done.placeholders.is_empty() {
                eprintln!("pairbeat: fill in these values before `pairbeat config check` accepts the file:");
                for (p, what) in &done.placeholders {
                    eprintln!("  {p}: {what}");
                }
            }
            if done.notes.has_errors() {
                eprintln!("pairbeat: the Heartbeat files have errors (above); the translation may be incomplete");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(diags) => {
            eprint!("{diags}");
            ExitCode::FAILURE
        }
    }
}

fn replica(file: &std::path::Path, node: Option<&str>, command: ReplicaCommand) -> ExitCode {
    use pairbeat::replicad::control::{self, Request as R};
    let (config, _) = match config::load(file, node) {
        Ok(ok) => ok,
        Err(diags) => {
            eprint!("{}", diags.report(file));
            return ExitCode::FAILURE;
        }
    };
    let find = |name: &str| {
        config.replicas.iter().find(|r| r.name == name).ok_or_else(|| {
            let known: Vec<&str> = config.replicas.iter().map(|r| r.name.as_str()).collect();
            format!(
                "{}: no [[replica]] named `{name}` (configured: {})",
                file.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    };
    let ask = |name: &str, req: R| -> ExitCode {
        if let Err(e) = find(name) {
            eprintln!("pairbeat: {e}");
            return ExitCode::FAILURE;
        }
        match control::request(&pairbeat::replicad::socket_path(&config, name), &req) {
            Ok(a) if a.ok => {
                if let Some(m) = a.message {
                    println!("{name}: {m}");
                }
                ExitCode::SUCCESS
            }
            Ok(a) => {
                eprintln!("pairbeat: {name}: {}", a.error.unwrap_or_else(|| "refused".into()));
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("pairbeat: {e}");
                ExitCode::from(EXIT_NO_DAEMON)
            }
        }
    };
    match command {
        ReplicaCommand::Create { name, force } => {
            match find(&name).and_then(|r| pairbeat::replicad::create::create(&config, r, force)) {
                Ok(m) => {
                    println!("{m}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pairbeat: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ReplicaCommand::Primary { name, force, new_data } => ask(&name, R::Primary { force, new_data }),
        ReplicaCommand::Secondary { name } => ask(&name, R::Secondary),
        ReplicaCommand::DiscardMyData { name } => ask(&name, R::DiscardMyData),
        ReplicaCommand::Outdate { name } => ask(&name, R::Outdate { generations: None }),
        ReplicaCommand::ResumeIo { name } => ask(&name, R::ResumeIo),
        ReplicaCommand::Connect { name } => ask(&name, R::Connect),
        ReplicaCommand::Down { name } => {
            let sock = pairbeat::replicad::socket_path(&config, &name);
            if find(&name).is_ok() && !sock.exists() {
                println!("{name}: not running");
                return ExitCode::SUCCESS;
            }
            let rc = ask(&name, R::Down);
            if rc != ExitCode::SUCCESS {
                return rc;
            }
            // The daemon removes its socket as the last thing before it exits.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while sock.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if sock.exists() {
                eprintln!("pairbeat: {name}: the daemon did not stop within 60 s");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        ReplicaCommand::ResyncRate { name, rate } => match parse_size::parse_size(rate.trim()) {
            Ok(b) => ask(&name, R::ResyncRate { bytes_per_second: b }),
            Err(_) => {
                eprintln!("pairbeat: `{rate}` is not a rate: write e.g. 50MiB (per second) or a number of bytes");
                ExitCode::FAILURE
            }
        },
        ReplicaCommand::Status { name, output_as } => {
            let names: Vec<String> = match name {
                Some(n) => vec![n],
                None => config.replicas.iter().map(|r| r.name.clone()).collect(),
            };
            if names.is_empty() {
                eprintln!("pairbeat: {}: no [[replica]] configured", file.display());
                return ExitCode::FAILURE;
            }
            let mut all = Vec::new();
            let mut code = ExitCode::SUCCESS;
            for n in &names {
                if let Err(e) = find(n) {
                    eprintln!("pairbeat: {e}");
                    return ExitCode::FAILURE;
                }
                match control::request(&pairbeat::replicad::socket_path(&config, n), &R::Status) {
                    Ok(control::Answer { status: Some(s), .. }) => all.push(s),
                    Ok(a) => {
                        eprintln!("pairbeat: {n}: {}", a.error.unwrap_or_default());
                        code = ExitCode::FAILURE;
                    }
                    Err(e) => {
                        eprintln!("pairbeat: {e}");
                        code = ExitCode::from(EXIT_NO_DAEMON);
                    }
                }
            }
            match output_as {
                Format::Json => println!("{}", serde_json::to_string_pretty(&all).expect("status serializes")),
                Format::Xml => {
                    #[derive(serde::Serialize)]
                    struct Replicas {
                        replica: Vec<control::ReplicaStatus>,
                    }
                    match quick_xml::se::to_string_with_root("pairbeat-replicas", &Replicas { replica: all }) {
                        Ok(x) => println!("<?xml version=\"1.0\"?>\n{x}"),
                        Err(e) => {
                            eprintln!("pairbeat: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                Format::Text => {
                    for s in &all {
                        println!("{}", s.line());
                        println!(
                            "  generations {}  promotion score {}",
                            s.generations,
                            s.promotion_score.map_or("none".into(), |p| p.to_string())
                        );
                    }
                }
            }
            code
        }
    }
}
