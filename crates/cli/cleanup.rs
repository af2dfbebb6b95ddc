//! `transfer cleanup`: finds incomplete multipart uploads and aborts them, so nothing is left billed.
//!
//! By default only the uploads the ledger says we created, of jobs no transfer is running (each job's lock is
//! held meanwhile, so none starts either); `--all URL` takes every incomplete upload under the prefix.
//! `--older-than` keeps recent ones; `--dry-run` lists without aborting. After each abort, ListParts must answer
//! NoSuchUpload: the upload is verifiably gone. An aborted ledger upload is cleared from its object, so resuming
//! that job starts the object again instead of failing on a missing upload.

use crate::addr::{Location, Scheme};
use crate::bucket::policy;
use crate::cp::{open_ledger, CpArgs};
use crate::output::OutputArgs;
use crate::remote::{Opened, StoreArgs};
use crate::{Usage, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use transfer_engine::checkpoint::{JobId, JobRow, JobState, Ledger, ObjectState};
use transfer_engine::store::ListUploadsRequest;
use transfer_engine::store::Upload;
use transfer_engine::ErrorKind;

/// Options of `transfer cleanup`.
#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    /// Only uploads under this bucket or prefix: oss://, s3:// or local://BUCKET/PREFIX (required with --all).
    url: Option<String>,
    /// Every incomplete upload under URL, not only those the ledger says we created.
    #[arg(long, requires = "url")]
    all: bool,
    /// Also the uploads of this resumable job (stopped, failed or interrupted), which cleanup keeps by default
    /// so `transfer resume` continues where it stopped (repeatable).
    #[arg(long = "job", value_name = "JOB")]
    jobs: Vec<i64>,
    /// Also the uploads of every resumable job: their progress is lost, and a resume sends their objects again.
    #[arg(long, conflicts_with = "jobs")]
    include_resumable: bool,
    /// Only uploads initiated longer ago than this: 90s, 30m, 12h, 7d, 2w.
    #[arg(long, value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// List what would be aborted, abort nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// The checkpoint ledger (default: $TRANSFER_LEDGER, else $XDG_STATE_HOME/transfer/ledger.db).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

/// Parses `90s`, `30m`, `12h`, `7d`, `2w` (a bare number is seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration; write e.g. 90s, 30m, 12h, 7d or 2w"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => return Err(format!("{s:?}: unknown unit {other:?}; use s, m, h, d or w")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// One incomplete upload to abort.
pub(crate) struct Candidate {
    pub upload: Upload,
    /// The ledger's object, for uploads the ledger owns.
    pub object: Option<i64>,
}

/// One sweep over incomplete uploads: how to treat them, and what happened to them.
pub(crate) struct Sweep<'a> {
    pub ledger: &'a Ledger,
    /// Keep uploads initiated less than this long ago.
    pub older_than: Option<Duration>,
    /// List, abort nothing.
    pub dry_run: bool,
    pub out: OutputArgs,
    pub tally: Tally,
}

/// What happened to the candidates.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub aborted: u64,
    pub listed: u64,
    pub gone: u64,
    pub failed: u64,
}

impl Sweep<'_> {
    /// Aborts (or, in a dry run, lists) `candidates` in `store`, checks with ListParts that each is gone, and
    /// clears the ledger's upload id of owned ones.
    pub(crate) async fn abort(&mut self, store: &Opened, candidates: Vec<Candidate>) {
        let (ledger, older_than, dry_run, out) = (self.ledger, self.older_than, self.dry_run, self.out);
        let tally = &mut self.tally;
        let now = chrono_now();
        for c in candidates {
            let at = c.upload.to_string();
            // The server's view: the upload's initiation time, or that it is already gone.
            let initiated = match initiated(store, &c).await {
                Ok(Some(t)) => t,
                Ok(None) => {
                    tally.gone += 1;
                    report(out, "gone", &c, &format!("{at}: already gone from the server"));
                    clear(ledger, &c).await;
                    continue;
                }
                Err(e) => {
                    tally.failed += 1;
                    report(out, "failed", &c, &format!("{at}: cannot list it: {e}"));
                    continue;
                }
            };
            let age = Duration::from_secs(now.saturating_sub(initiated).max(0) as u64);
            if older_than.is_some_and(|min| age < min) {
                tracing::debug!("{at}: kept, initiated {}s ago", age.as_secs());
                continue;
            }
            if dry_run {
                tally.listed += 1;
                report(out, "would_abort", &c, &format!("would abort {at} (initiated {}s ago)", age.as_secs()));
                continue;
            }
            let result = match policy().run("AbortMultipartUpload", |_| store.objects.abort_multipart(&c.upload)).await
            {
                Ok(()) => verify_gone(store, &c).await,
                Err(e) if e.kind() == ErrorKind::UploadNotFound => verify_gone(store, &c).await,
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(()) => {
                    tally.aborted += 1;
                    report(out, "aborted", &c, &format!("aborted {at}; ListParts confirms it is gone"));
                    clear(ledger, &c).await;
                }
                Err(e) => {
                    tally.failed += 1;
                    report(out, "failed", &c, &format!("{at}: {e}"));
                }
            }
        }
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn report(out: OutputArgs, event: &str, c: &Candidate, line: &str) {
    if out.json {
        out!(
            "{}",
            json!({"event": event, "bucket": c.upload.bucket, "key": c.upload.key, "upload_id": c.upload.id.as_str(), "message": line})
        );
    } else if event == "failed" {
        tracing::error!("{line}");
    } else {
        tracing::info!("{line}");
    }
}

/// When the server says `c` was initiated, or `None` when it no longer has it.
async fn initiated(store: &Opened, c: &Candidate) -> transfer_engine::Result<Option<i64>> {
    let u = &c.upload;
    let mut req = ListUploadsRequest::default().prefix(Some(u.key.clone()));
    loop {
        let page = policy().run("ListMultipartUploads", |_| store.objects.list_uploads(&u.bucket, &req)).await?;
        if let Some(u) = page.uploads.iter().find(|l| l.upload_id == u.id && l.key == u.key) {
            return Ok(Some(u.initiated));
        }
        if !page.is_truncated {
            return Ok(None);
        }
        req.key_marker = page.next_key_marker;
        req.upload_id_marker = page.next_upload_id_marker;
    }
}

/// ListParts must answer NoSuchUpload.
async fn verify_gone(store: &Opened, c: &Candidate) -> Result<(), String> {
    match policy().run("ListParts", |_| store.objects.list_parts(&c.upload, None, Some(1))).await {
        Err(e) if e.kind() == ErrorKind::UploadNotFound => Ok(()),
        Err(e) => Err(format!("aborted, but ListParts could not confirm it is gone: {e}")),
        Ok(_) => Err("aborted, but ListParts still lists it; run cleanup again".into()),
    }
}

/// Forgets the ledger's upload id of an owned upload that is gone.
async fn clear(ledger: &Ledger, c: &Candidate) {
    if let Some(id) = c.object {
        if let Err(e) = ledger.off_thread(move |l| l.forget_upload(id)).await {
            tracing::warn!("could not clear the upload id of object {id} in the ledger: {e}");
        }
    }
}

/// The uploads of `job` the ledger holds that did not complete, under `within` (bucket, prefix) if given.
pub(crate) async fn owned_uploads(
    ledger: &Ledger,
    job: JobId,
    within: Option<&(String, String)>,
) -> transfer_engine::Result<Vec<Candidate>> {
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let page = ledger.off_thread(move |l| l.objects(job, None, after, 1000)).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for row in page {
            // A chunk's upload is its migration's plan's: `transfer shard abort` aborts it.
            if row.is_chunk() {
                continue;
            }
            let Some(upload_id) = row.upload_id else {
                continue;
            };
            if matches!(row.state, ObjectState::Completed | ObjectState::Tagged | ObjectState::Skipped) {
                continue;
            }
            if within.is_some_and(|(b, p)| row.dest_bucket != *b || !row.dest_key.starts_with(p.as_str())) {
                continue;
            }
            found.push(Candidate {
                upload: Upload::new(row.dest_bucket, row.dest_key, upload_id),
                object: Some(row.id),
            });
        }
    }
    Ok(found)
}

/// The scheme of the store a job writes to, from the options `transfer cp` recorded with it; `None` for a job
/// another program recorded.
fn recorded_scheme(job: &JobRow) -> Option<Scheme> {
    match Location::parse(&CpArgs::from_recorded(&job.note)?.dst).ok()? {
        Location::Remote { scheme, .. } => Some(scheme),
        Location::Path(_) => None,
    }
}

/// The store a job writes to: the one its recorded options name, else the one this command's options name
/// (with `scheme`, for a job another program recorded).
pub(crate) fn job_store(job: &JobRow, fallback: &StoreArgs, scheme: Scheme) -> Result<Opened, Usage> {
    match CpArgs::from_recorded(&job.note) {
        Some(cp) => cp.store.open(recorded_scheme(job).unwrap_or(scheme)),
        None => fallback.open(scheme),
    }
}

/// Runs `transfer cleanup`.
pub(crate) async fn run(args: CleanupArgs, out: OutputArgs) -> u8 {
    match cleanup(args, out).await {
        Ok(code) => code,
        Err(Usage(msg)) => {
            tracing::error!("{msg}");
            EXIT_USAGE
        }
    }
}

async fn cleanup(args: CleanupArgs, out: OutputArgs) -> Result<u8, Usage> {
    let within = match args.url.as_deref().map(Location::parse).transpose()? {
        None => None,
        Some(Location::Remote { scheme, bucket, key }) => Some((scheme, bucket, key)),
        Some(Location::Path(p)) => {
            return Err(Usage(format!("{}: cleanup needs oss://, s3:// or local://BUCKET/PREFIX", p.display())))
        }
    };
    let ledger = open_ledger(args.checkpoint.as_ref())?;
    let mut sweep =
        Sweep { ledger: &ledger, older_than: args.older_than, dry_run: args.dry_run, out, tally: Tally::default() };
    if args.all {
        let (scheme, bucket, prefix) = within.expect("clap requires URL with --all");
        let store = args.store.open_bucket(scheme, &bucket).await?;
        let candidates = all_uploads(&store, &bucket, &prefix).await?;
        sweep.abort(&store, candidates).await;
    } else {
        let jobs = ledger.jobs()?;
        for job in jobs {
            if let Some((scheme, ..)) = &within {
                if recorded_scheme(&job).is_some_and(|s| s != *scheme) {
                    continue;
                }
            }
            // A stream's job cannot resume (its bytes are gone): its uploads are only ever left over.
            let resumable = job.state != JobState::Done && !job.is_stream();
            let included = args.include_resumable || args.jobs.contains(&job.id.0);
            // A job a transfer is running keeps its uploads; holding its lock keeps it from starting meanwhile.
            let _lock = match ledger.lock_job(job.id) {
                Ok(l) => l,
                Err(e) => {
                    tracing::info!("job {}: skipped, {e}", job.id);
                    continue;
                }
            };
            let scope = within.as_ref().map(|(_, b, p)| (b.clone(), p.clone()));
            let candidates = owned_uploads(&ledger, job.id, scope.as_ref()).await?;
            if candidates.is_empty() {
                continue;
            }
            if resumable && !included {
                let (id, n) = (job.id, candidates.len());
                let why = format!(
                    "job {id} ({}): kept {n} incomplete upload(s) so `transfer resume {id}` continues where it \
                     stopped; `transfer cleanup --job {id}` (or --include-resumable) aborts them, `transfer jobs \
                     forget {id}` drops the job with them",
                    // Its lock is ours now: a job still marked running was interrupted.
                    if job.state == JobState::Running { "interrupted" } else { crate::jobs::state_name(job.state) }
                );
                if out.json {
                    out!("{}", json!({"event": "kept", "job": id.0, "uploads": n, "message": why}));
                } else {
                    eprintln!("{why}");
                }
                continue;
            }
            let store = job_store(&job, &args.store, within.as_ref().map_or(Scheme::Oss, |(s, ..)| *s))?;
            sweep.abort(&store, candidates).await;
        }
    }
    let tally = sweep.tally;
    let verb = if args.dry_run { "would abort" } else { "aborted" };
    let n = if args.dry_run { tally.listed } else { tally.aborted };
    if out.json {
        out!(
            "{}",
            json!({"event": "summary", "dry_run": args.dry_run, "aborted": tally.aborted, "would_abort": tally.listed,
                   "already_gone": tally.gone, "failed": tally.failed})
        );
    } else {
        eprintln!("{verb} {n} uploads; {} already gone; {} failed", tally.gone, tally.failed);
    }
    Ok(if tally.failed > 0 { EXIT_FAILED } else { EXIT_OK })
}

/// Every incomplete upload under `bucket/prefix`.
async fn all_uploads(store: &Opened, bucket: &str, prefix: &str) -> Result<Vec<Candidate>, Usage> {
    let mut found = Vec::new();
    let mut req = ListUploadsRequest::default().prefix(Some(prefix.to_owned()).filter(|p| !p.is_empty()));
    loop {
        let page = policy()
            .run("ListMultipartUploads", |_| store.objects.list_uploads(bucket, &req))
            .await
            .map_err(|e| Usage(format!("cannot list the uploads in {bucket}: {e}")))?;
        found.extend(
            page.uploads
                .into_iter()
                .map(|u| Candidate { upload: Upload::new(bucket, u.key, u.upload_id), object: None }),
        );
        if !page.is_truncated {
            return Ok(found);
        }
        req.key_marker = page.next_key_marker;
        req.upload_id_marker = page.next_upload_id_marker;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(30 * 60));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("3 fortnights").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("d").is_err());
    }
}
