//! What the commands print, and where.
//!
//! - Messages go through `tracing` to stderr as plain sentences (`error: ...`, `warning: ...`, or the sentence
//!   itself): `-q` shows warnings and errors only (nothing on success), `-v` adds debug lines (per-object lines
//!   beside the live line), `-vv` everything at trace level, the HTTP client's debug lines too, as timestamped
//!   records naming their module. `RUST_LOG` overrides the levels.
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
    /// Only warnings and errors: nothing on success.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = "Global options")]
    pub quiet: bool,
    /// More detail: -v per-object and debug lines, -vv trace records with timestamps (the HTTP client's too).
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
        (false, 0) => "info,hyper=warn,reqwest=warn,rustls=warn",
        (false, 1) => "debug,hyper=warn,reqwest=warn,rustls=warn",
        (false, _) => "trace,hyper=debug,hyper_util=debug,reqwest=debug,rustls=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_writer(LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    if out.verbose >= 2 {
        builder.with_target(true).init();
    } else {
        builder.event_format(Plain).init();
    }
}

/// Messages for people: `error: ...`, `warning: ...`, or the sentence alone; fields follow as `key=value`.
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        match *meta.level() {
            tracing::Level::ERROR => write!(writer, "error: ")?,
            tracing::Level::WARN => write!(writer, "warning: ")?,
            tracing::Level::INFO => {}
            // The command's own detail (a line per object) reads as a sentence; the library's is marked.
            _ if meta.target().starts_with("transfer::") || meta.target() == "transfer" => {}
            _ => write!(writer, "debug: ")?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Bytes for people: `1.5 GiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// One line of progress: what the server acknowledged of what is known, the rate of what this run sent, the ETA
/// (a lower bound while the listing goes on: more may be found), objects finished of found, failures. Short
/// enough for an 80-column terminal beside the bar.
pub(crate) fn progress_line(p: &Progress) -> String {
    let more = if p.listing_finished { "" } else { "+" };
    let left = p.bytes_found.saturating_sub(p.bytes_acknowledged) as f64;
    let eta = match (p.listing_finished, p.bytes_per_second > 0.0) {
        (true, true) => format!("ETA {}", short_duration(left / p.bytes_per_second)),
        (false, true) => format!("ETA >{} (listing)", short_duration(left / p.bytes_per_second)),
        (true, false) => "ETA -".to_owned(),
        (false, false) => "ETA ? (listing)".to_owned(),
    };
    let finished = p.objects_done + p.objects_already_done + p.objects_skipped + p.objects_failed;
    let mut line = format!(
        "{}/{}{more} acknowledged, {}/s, {eta}, objects {finished}/{}{more}",
        human_bytes(p.bytes_acknowledged),
        human_bytes(p.bytes_found),
        human_bytes(p.bytes_per_second as u64),
        p.objects_found,
    );
    if p.objects_failed > 0 {
        line.push_str(&format!(", {} failed", p.objects_failed));
    }
    line
}

/// `42s`, `3m05s`, `2h07m`: a duration in at most five characters or so.
pub(crate) fn short_duration(secs: f64) -> String {
    let s = secs.clamp(0.0, 359_999.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// How a running job shows its progress.
pub(crate) struct ProgressDisplay {
    bar: Option<ProgressBar>,
    last_line: std::time::Instant,
    plain: bool,
}

impl ProgressDisplay {
    /// A live line when stderr is a terminal (with `--json` too: the JSON goes to stdout), periodic lines
    /// otherwise but not with `--json`; nothing with `-q`.
    pub(crate) fn new(out: OutputArgs) -> ProgressDisplay {
        let bar = (!out.quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(5));
            b.set_style(
                // The message takes what the terminal's width leaves, and is cut rather than wrapped.
                ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:12}] {wide_msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            *BAR.lock().unwrap_or_else(|p| p.into_inner()) = Some(b.clone());
            b
        });
        ProgressDisplay { plain: !out.json && !out.quiet && bar.is_none(), bar, last_line: std::time::Instant::now() }
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
            bytes_reused: 0,
            bytes_found: 4 << 20,
            objects_found: 10,
            objects_done: 2,
            objects_already_done: 1,
            objects_failed: 1,
            chunks_done: 0,
            chunks_failed: 0,
            objects_deleted: 0,
            objects_settled_earlier: 0,
            objects_skipped: 0,
            objects_planned: 0,
            requests_retried: 0,
            requests_throttled: 0,
            slowed: Duration::ZERO,
            listing_finished: false,
            bytes_per_second: (1 << 20) as f64,
            elapsed: Duration::from_secs(1),
        };
        let line = progress_line(&p);
        assert!(line.contains("1.00 MiB/4.00 MiB+"), "{line}");
        // While the listing goes on, the ETA of what is known is a lower bound.
        assert!(
            line.contains("ETA >3s (listing)") && line.contains("objects 4/10+") && line.contains("1 failed"),
            "{line}"
        );
        p.listing_finished = true;
        let line = progress_line(&p);
        assert!(line.contains("ETA 3s") && line.contains("objects 4/10,"), "{line}");
        assert!(!line.chars().any(|c| c.is_control()), "no control characters in plain lines");
        assert_eq!(
            (short_duration(42.4), short_duration(185.0), short_duration(7620.0)),
            ("42s".into(), "3m05s".into(), "2h07m".into())
        );
        p.bytes_per_second = 0.0;
        p.listing_finished = false;
        assert!(progress_line(&p).contains("ETA ? (listing)"));
    }
}
