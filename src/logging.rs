//! The log backend chosen by `[daemon] log`: stderr (the journal under systemd), a
//! file, or syslog. Everything in pairbeat logs through the `log` facade.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;

use crate::config::LogTarget;

/// Writes "TIME LEVEL message" lines to stderr or a file.
struct LineLogger {
    out: Mutex<Box<dyn Write + Send>>,
    /// The journal stamps lines itself; a file needs our timestamp.
    timestamps: bool,
}

impl log::Log for LineLogger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = String::new();
        if self.timestamps {
            // Microseconds: pairbeat's own steps between two agents take well under a
            // millisecond, and the log is where `scripts/bench-breakdown` reads them.
            line.push_str(&humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string());
            line.push(' ');
        }
        line.push_str(&format!("{:<5} {}\n", record.level(), record.args()));
        if let Ok(mut out) = self.out.lock() {
            // A full disk must not take the daemon down: a lost log line is the lesser evil.
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }

    fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

/// Installs the logger once per process; the error names the target that failed.
pub fn init(target: &LogTarget, level: log::LevelFilter, program: &str) -> Result<(), String> {
    let logger: Box<dyn log::Log> = match target {
        LogTarget::Stderr => Box::new(LineLogger {
            out: Mutex::new(Box::new(std::io::stderr())),
            timestamps: false,
        }),
        LogTarget::File(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            Box::new(LineLogger {
                out: Mutex::new(Box::new(file)),
                timestamps: true,
            })
        }
        LogTarget::Syslog => {
            let formatter = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_DAEMON,
                hostname: None,
                process: program.into(),
                pid: std::process::id(),
            };
            let logger = syslog::unix(formatter).map_err(|e| format!("cannot reach syslog (/dev/log): {e}"))?;
            Box::new(syslog::BasicLogger::new(logger))
        }
    };
    log::set_boxed_logger(logger).map_err(|e| format!("logger already set: {e}"))?;
    log::set_max_level(level);
    Ok(())
}
