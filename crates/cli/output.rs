//! What the commands print, and where.
//!
//! - Logs go through `tracing` to stderr: `-q` shows warnings and errors only, `-v` adds debug lines, `-vv` trace;
//!   `RUST_LOG` overrides. Colours only on a terminal.
//! - A running job shows, on a terminal, one live progress line (bytes acknowledged by the server, rate, ETA,
//!   objects done of found, failures); log lines print above it. Not on a terminal: one log line per object and a
//!   progress line every ten seconds, no control characters.
//! - `--json`: one JSON object per line on stdout (events, then a summary); logs stay on stderr.

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::Duration;
use transfer_engine::job::Progress;

/// Output options shared by the commands.
#[derive(Debug, Clone, Copy, Default, Args)]
pub(crate) struct OutputArgs {
    /// One JSON object per line on stdout (events, then a summary).
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Only warnings, errors and the summary.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = "Global options")]
    pub quiet: bool,
    /// More detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    pub verbose: u8,
}

/// The live progress line, while one is shown: log lines are printed around it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn bar() -> Option<ProgressBar> {
    BAR.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Sends tracing's output to stderr, above the progress line when one is shown.
struct LogWriter;

/// One formatted log record, written out in one piece when dropped.
struct Record(Vec<u8>);

impl std::io::Write for Record {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match bar() {
            Some(b) => b.suspend(write),
            None => write(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = Record;
    fn make_writer(&'a self) -> Record {
        Record(Vec::new())
    }
}

/// Sets up logging for the process.
pub(crate) fn init_logging(out: OutputArgs) {
    let level = match (out.quiet, out.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,reqwest=warn,rustls=warn")));
    tracing_subscriber::fmt()
        .with_writer(LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(out.verbose > 0)
        .with_env_filter(filter)
        .init();
}

/// Bytes for people: `1.5 GiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// One line of progress: what the server acknowledged, the rate, the ETA once every object is known, objects and
/// failures.
pub(crate) fn progress_line(p: &Progress) -> String {
    let eta = match (p.listing_finished, p.bytes_per_second) {
        (true, r) if r > 0.0 => {
            let left = p.bytes_found.saturating_sub(p.bytes_acknowledged) as f64 / r;
            format!("ETA {}", indicatif::HumanDuration(Duration::from_secs_f64(left.min(1e9))))
        }
        (true, _) => "ETA -".to_owned(),
        (false, _) => "ETA ? (listing)".to_owned(),
    };
    let finished = p.objects_done + p.objects_already_done + p.objects_skipped + p.objects_failed;
    let mut line = format!(
        "{} of {}{} acknowledged, {}/s, {eta}; objects {finished}/{}{}",
        human_bytes(p.bytes_acknowledged),
        human_bytes(p.bytes_found),
        if p.listing_finished { "" } else { "+" },
        human_bytes(p.bytes_per_second as u64),
        p.objects_found,
        if p.listing_finished { "" } else { "+" },
    );
    if p.objects_failed > 0 {
        line.push_str(&format!(", {} failed", p.objects_failed));
    }
    line
}

/// How a running job shows its progress.
pub(crate) struct ProgressDisplay {
    bar: Option<ProgressBar>,
    last_line: std::time::Instant,
    plain: bool,
}

impl ProgressDisplay {
    /// A live line on a terminal, periodic lines otherwise, nothing with `--json` or `-q`.
    pub(crate) fn new(out: OutputArgs) -> ProgressDisplay {
        let shown = !out.json && !out.quiet;
        let bar = (shown && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(5));
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            *BAR.lock().unwrap_or_else(|p| p.into_inner()) = Some(b.clone());
            b
        });
        ProgressDisplay { plain: shown && bar.is_none(), bar, last_line: std::time::Instant::now() }
    }

    /// Shows `p`.
    pub(crate) fn update(&mut self, p: &Progress) {
        if let Some(b) = &self.bar {
            b.set_length(p.bytes_found.max(1));
            b.set_position(p.bytes_acknowledged);
            b.set_message(progress_line(p));
        } else if self.plain && self.last_line.elapsed() >= Duration::from_secs(10) {
            self.last_line = std::time::Instant::now();
            tracing::info!("{}", progress_line(p));
        }
    }

    /// True when per-object lines would drown the live line (they go to debug level then).
    pub(crate) fn live(&self) -> bool {
        self.bar.is_some()
    }

    /// Removes the live line.
    pub(crate) fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
            *BAR.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_say_what_is_known() {
        let mut p = Progress {
            bytes_acknowledged: 1 << 20,
            bytes_found: 4 << 20,
            objects_found: 10,
            objects_done: 2,
            objects_already_done: 1,
            objects_failed: 1,
            objects_skipped: 0,
            objects_planned: 0,
            requests_retried: 0,
            listing_finished: false,
            bytes_per_second: (1 << 20) as f64,
            elapsed: Duration::from_secs(1),
        };
        let line = progress_line(&p);
        assert!(line.contains("1.00 MiB of 4.00 MiB+"), "{line}");
        assert!(
            line.contains("ETA ? (listing)") && line.contains("objects 4/10+") && line.contains("1 failed"),
            "{line}"
        );
        p.listing_finished = true;
        let line = progress_line(&p);
        assert!(
            line.contains("ETA 3 seconds") && line.contains("objects 4/10;") || line.contains("objects 4/10,"),
            "{line}"
        );
        assert!(!line.chars().any(|c| c.is_control()), "no control characters in plain lines");
    }
}
