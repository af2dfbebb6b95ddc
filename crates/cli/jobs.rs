//! `transfer resume [JOB]` and `transfer jobs [show JOB | forget JOB]`: the ledger's jobs, for people.

use crate::cleanup::{job_store, owned_uploads, Sweep, Tally};
use crate::cp::{open_ledger, CpArgs};
use crate::output::{human_bytes, OutputArgs};
use crate::remote::StoreArgs;
use crate::{Usage, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use transfer_engine::checkpoint::{Counts, JobId, JobRow, JobState, Ledger, ObjectRow, ObjectState};

/// Options of `transfer resume`.
#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The job to continue (default: the newest unfinished one).
    job: Option<i64>,
    /// The checkpoint ledger (default: $TRANSFER_LEDGER, else $XDG_STATE_HOME/transfer/ledger.db).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

/// Options of `transfer jobs`.
#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    #[command(subcommand)]
    command: Option<JobsCommand>,
    /// The checkpoint ledger (default: $TRANSFER_LEDGER, else $XDG_STATE_HOME/transfer/ledger.db).
    #[arg(long, global = true)]
    checkpoint: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// A job's options, its objects by state, and its failures.
    Show {
        /// The job.
        job: i64,
        /// Objects listed, unfinished and failed first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Drop a job from the ledger, aborting its unfinished multipart uploads first; or, with --finished, every
    /// finished job (they have none), which keeps a long-used ledger small.
    Forget {
        /// The job.
        #[arg(required_unless_present = "finished", conflicts_with = "finished")]
        job: Option<i64>,
        /// Every finished job instead of one.
        #[arg(long)]
        finished: bool,
        /// With --finished: only jobs that finished longer ago than this: 90s, 30m, 12h, 7d, 2w.
        #[arg(long, requires = "finished", value_parser = crate::cleanup::parse_duration)]
        older_than: Option<std::time::Duration>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Running => "running",
        JobState::Stopped => "stopped",
        JobState::Done => "done",
        JobState::Failed => "failed",
    }
}

/// A job's state as it is: one the ledger says is running but no process runs was interrupted (killed, or quit
/// by a second Ctrl-C) and resumes like a stopped one.
fn job_state(ledger: &Ledger, j: &JobRow) -> &'static str {
    match j.state {
        JobState::Running if !ledger.is_running(j.id) => "interrupted",
        s => state_name(s),
    }
}

fn object_state_name(s: ObjectState) -> &'static str {
    match s {
        ObjectState::Pending => "pending",
        ObjectState::Uploading => "uploading",
        ObjectState::Completed => "completed",
        ObjectState::Tagged => "done",
        ObjectState::Failed => "failed",
        ObjectState::Skipped => "skipped",
    }
}

fn find(ledger: &Ledger, job: i64) -> Result<JobRow, Usage> {
    ledger.jobs()?.into_iter().find(|j| j.id.0 == job).ok_or_else(|| {
        Usage(format!("there is no job {job} in the ledger {}; `transfer jobs` lists them", ledger.path().display()))
    })
}

fn counts_json(c: &Counts) -> serde_json::Value {
    json!({
        "total": c.total, "done": c.tagged + c.skipped, "pending": c.pending, "uploading": c.uploading,
        "completed_untagged": c.completed, "failed": c.failed, "skipped": c.skipped,
        "bytes_total": c.bytes_total, "bytes_done": c.bytes_done, "bytes_in_parts": c.bytes_in_parts,
    })
}

/// A job's source and destination as the user wrote them (the addresses `transfer cp` recorded), else as the
/// engine keeps them (a path, `bucket/key`).
fn route(j: &JobRow) -> (String, String) {
    match CpArgs::from_recorded(&j.note) {
        Some(cp) => (cp.src, cp.dst),
        None => (j.source.clone(), j.destination.clone()),
    }
}

fn job_json(ledger: &Ledger, j: &JobRow) -> serde_json::Value {
    let (source, destination) = route(j);
    json!({
        "job": j.id.0, "kind": j.kind.as_str(), "state": job_state(ledger, j), "source": source, "destination": destination,
        "created": j.created, "updated": j.updated, "objects": counts_json(&j.counts), "error": j.error,
        "listing_finished": j.listed, "sync_cursor": j.sync_cursor,
        "resumable_by_id": CpArgs::from_recorded(&j.note).is_some() && !j.is_stream() && !is_shard(j),
    })
}

fn object_json(o: &ObjectRow) -> serde_json::Value {
    json!({
        "source": o.source, "bucket": o.dest_bucket, "key": o.dest_key, "size": o.size,
        "state": object_state_name(o.state), "upload_id": o.upload_id.as_deref(), "error": o.error,
    })
}

/// Whether `transfer shard run` started the job: only it resumes it (it gives the plan's chunks and split keys).
fn is_shard(j: &JobRow) -> bool {
    CpArgs::from_recorded(&j.note).is_some_and(|cp| cp.shard.is_some())
}

/// Runs `transfer resume`.
pub(crate) async fn resume(args: ResumeArgs, out: OutputArgs) -> u8 {
    let found = (|| {
        let ledger = open_ledger(args.checkpoint.as_ref())?;
        let job = match args.job {
            Some(id) => find(&ledger, id)?,
            None => match ledger
                .jobs()?
                .into_iter()
                .rev()
                .find(|j| j.state != JobState::Done && !j.is_stream() && !is_shard(j))
            {
                Some(job) => job,
                None => {
                    return Ok(Err(format!(
                        "nothing to resume: no unfinished job in the ledger {} (`transfer jobs` lists them)",
                        ledger.path().display()
                    )))
                }
            },
        };
        // Resuming what is finished is done at once: the job is where it was asked to be.
        if job.state == JobState::Done {
            return Ok(Err(format!("nothing to resume: job {} is done", job.id)));
        }
        if job.is_stream() {
            return Err(Usage(format!(
                "job {} uploaded a stream (stdin to {}), which cannot be read twice: run the pipeline again \
                 (it starts the object over); `transfer cleanup` aborts what the interrupted run left",
                job.id, job.destination
            )));
        }
        let mut cp = CpArgs::from_recorded(&job.note).ok_or_else(|| {
            Usage(format!(
                "job {} was not started by `transfer cp` (its options are not recorded); resume it with the program that started it",
                job.id
            ))
        })?;
        if let Some((after, upto)) = &cp.shard {
            return Err(Usage(format!(
                "job {} is a shard of a migration (keys ({}, {}]): run `transfer shard run PLAN` for it again, which \
                 knows the plan's split objects",
                job.id,
                after.as_deref().unwrap_or(""),
                upto.as_deref().unwrap_or("")
            )));
        }
        cp.checkpoint = Some(ledger.path().to_path_buf());
        Ok::<_, Usage>(Ok((job, cp)))
    })();
    let (job, cp) = match found {
        Ok(Ok(f)) => f,
        Ok(Err(nothing)) => {
            eprintln!("{nothing}");
            return EXIT_OK;
        }
        Err(Usage(msg)) => {
            tracing::error!("{msg}");
            return EXIT_USAGE;
        }
    };
    tracing::info!("resuming job {}: {} -> {}", job.id, cp.src, cp.dst);
    crate::cp::run(cp, out, Some(job.id)).await
}

/// Runs `transfer jobs`.
pub(crate) async fn jobs(args: JobsArgs, out: OutputArgs) -> u8 {
    let result = async {
        let ledger = open_ledger(args.checkpoint.as_ref())?;
        match args.command {
            None => list(&ledger, out),
            Some(JobsCommand::Show { job, limit }) => show(&ledger, job, limit, out),
            Some(JobsCommand::Forget { job: Some(job), store, .. }) => forget(&ledger, job, &store, out).await,
            Some(JobsCommand::Forget { job: None, older_than, .. }) => forget_finished(&ledger, older_than, out),
        }
    }
    .await;
    match result {
        Ok(code) => code,
        Err(Usage(msg)) => {
            tracing::error!("{msg}");
            EXIT_USAGE
        }
    }
}

fn list(ledger: &Ledger, out: OutputArgs) -> Result<u8, Usage> {
    let jobs = ledger.jobs()?;
    if out.json {
        for j in &jobs {
            out!("{}", job_json(ledger, j));
        }
        return Ok(EXIT_OK);
    }
    if jobs.is_empty() {
        out!("no jobs in {}", ledger.path().display());
        return Ok(EXIT_OK);
    }
    out!(
        "{:>5}  {:<8} {:<6} {:>15} {:>7} {:>21}  ROUTE",
        "JOB",
        "STATE",
        "KIND",
        "OBJECTS DONE",
        "FAILED",
        "BYTES ACKED"
    );
    for j in &jobs {
        let c = &j.counts;
        let (source, destination) = route(j);
        out!(
            "{:>5}  {:<8} {:<6} {:>15} {:>7} {:>21}  {} -> {}",
            j.id.0,
            job_state(ledger, j),
            j.kind,
            format!("{}/{}{}", c.tagged + c.skipped, c.total, if j.listed { "" } else { "+" }),
            c.failed,
            format!("{}/{}", human_bytes(c.bytes_done + c.bytes_in_parts), human_bytes(c.bytes_total)),
            source,
            destination
        );
    }
    if jobs.iter().any(|j| !j.listed) {
        out!("(+: the last run ended before its source was listed whole; the counts are of what it found)");
    }
    // What failed beyond the objects (a source that could not be listed) counts in no column: say it.
    for j in jobs.iter().filter(|j| j.error.is_some()) {
        out!("job {}: {}", j.id, j.error.as_deref().unwrap_or_default());
    }
    Ok(EXIT_OK)
}

fn show(ledger: &Ledger, id: i64, limit: usize, out: OutputArgs) -> Result<u8, Usage> {
    let job = find(ledger, id)?;
    // Unfinished and failed objects first: they are what a person looks for.
    let mut shown = Vec::new();
    for state in [
        ObjectState::Failed,
        ObjectState::Uploading,
        ObjectState::Completed,
        ObjectState::Pending,
        ObjectState::Tagged,
        ObjectState::Skipped,
    ] {
        let mut after = 0;
        while shown.len() < limit {
            let page = ledger.objects(job.id, Some(state), after, limit - shown.len())?;
            let Some(last) = page.last() else { break };
            after = last.id;
            shown.extend(page);
        }
    }
    if out.json {
        let mut j = job_json(ledger, &job);
        j["options"] = serde_json::from_str(&job.note).unwrap_or(serde_json::Value::Null);
        j["objects_shown"] = shown.iter().map(object_json).collect();
        out!("{j}");
        return Ok(EXIT_OK);
    }
    let c = &job.counts;
    out!("job {} ({}): {}", job.id, job.kind, job_state(ledger, &job));
    if let Some(e) = &job.error {
        out!("  not listed: {e}");
    }
    if let Some(c) = &job.sync_cursor {
        out!("  sync pass under way: compared up to {c}; its next run lists both sides after it");
    }
    let (source, destination) = route(&job);
    out!("  {source} -> {destination}");
    match CpArgs::from_recorded(&job.note) {
        Some(cp) => out!("  command: {}", cp.command_line()),
        None if job.note.is_empty() => {}
        None => out!("  note: {}", job.note),
    }
    out!(
        "  objects: {} total, {} done, {} skipped, {} pending, {} uploading, {} awaiting tags, {} failed",
        c.total,
        c.tagged,
        c.skipped,
        c.pending,
        c.uploading,
        c.completed,
        c.failed
    );
    out!(
        "  bytes: {} of {} in place, {} more in acknowledged parts",
        human_bytes(c.bytes_done),
        human_bytes(c.bytes_total),
        human_bytes(c.bytes_in_parts)
    );
    for o in &shown {
        let mut line =
            format!("  {:<9} {}/{} ({})", object_state_name(o.state), o.dest_bucket, o.dest_key, human_bytes(o.size));
        if let Some(u) = &o.upload_id {
            line.push_str(&format!(" upload {u}"));
        }
        if let Some(e) = &o.error {
            line.push_str(&format!(": {e}"));
        }
        out!("{line}");
    }
    if (shown.len() as u64) < c.total {
        out!("  ... {} more (--limit N shows more)", c.total - shown.len() as u64);
    }
    if job.state != JobState::Done {
        out!("  continue it with: transfer resume {}", job.id);
    }
    Ok(EXIT_OK)
}

/// `transfer jobs forget --finished [--older-than AGE]`: drops finished jobs (no upload of theirs is open).
fn forget_finished(ledger: &Ledger, older_than: Option<std::time::Duration>, out: OutputArgs) -> Result<u8, Usage> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let min_age = older_than.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut forgotten = Vec::new();
    for job in ledger.jobs()? {
        if job.state != JobState::Done || now.saturating_sub(job.updated) < min_age {
            continue;
        }
        match ledger.forget_job(job.id) {
            Ok(()) => forgotten.push(job.id.0),
            // Run again and running now: it is not finished any more.
            Err(e) if e.kind() == transfer_engine::ErrorKind::Locked => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !forgotten.is_empty() {
        // Their rows' space goes back to the file system: the ledger stays the size of the jobs it keeps.
        if let Err(e) = ledger.compact() {
            tracing::warn!("the ledger {} was not compacted: {e}", ledger.path().display());
        }
    }
    if out.json {
        out!("{}", json!({"event": "forgotten", "jobs": forgotten}));
    } else {
        let ids: Vec<String> = forgotten.iter().map(|id| id.to_string()).collect();
        match ids.len() {
            0 => eprintln!("no finished job to forget"),
            n => eprintln!("forgot {n} finished job{}: {}", if n == 1 { "" } else { "s" }, ids.join(", ")),
        }
    }
    Ok(EXIT_OK)
}

async fn forget(ledger: &Ledger, id: i64, store: &StoreArgs, out: OutputArgs) -> Result<u8, Usage> {
    let job = find(ledger, id)?;
    let mut sweep = Sweep { ledger, older_than: None, dry_run: false, out, tally: Tally::default() };
    {
        let _lock = ledger.lock_job(job.id).map_err(|e| Usage(format!("cannot forget job {id}: {e}")))?;
        let candidates = owned_uploads(ledger, JobId(id), None).await?;
        if !candidates.is_empty() {
            let store = job_store(&job, store, crate::addr::Scheme::Oss)?;
            sweep.abort(&store, candidates).await;
        }
    }
    let tally = sweep.tally;
    if tally.failed > 0 {
        tracing::error!(
            "job {id} kept: {} of its uploads could not be aborted (see above); try again, or `transfer cleanup --all`",
            tally.failed
        );
        return Ok(EXIT_FAILED);
    }
    ledger.forget_job(job.id)?;
    if out.json {
        out!("{}", json!({"event": "forgotten", "job": id, "uploads_aborted": tally.aborted}));
    } else {
        eprintln!("forgot job {id}; aborted {} unfinished uploads", tally.aborted);
    }
    Ok(EXIT_OK)
}
