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
        /// Objects listed, unfinished and failed first [default: 50].
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Drop a job from the ledger, aborting its unfinished multipart uploads first.
    Forget {
        /// The job.
        job: i64,
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
        "bytes_total": c.bytes_total, "bytes_done": c.bytes_done,
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

fn job_json(j: &JobRow) -> serde_json::Value {
    let (source, destination) = route(j);
    json!({
        "job": j.id.0, "kind": j.kind.as_str(), "state": state_name(j.state), "source": source, "destination": destination,
        "created": j.created, "updated": j.updated, "objects": counts_json(&j.counts),
        "resumable_by_id": CpArgs::from_recorded(&j.note).is_some(),
    })
}

fn object_json(o: &ObjectRow) -> serde_json::Value {
    json!({
        "source": o.source, "bucket": o.dest_bucket, "key": o.dest_key, "size": o.size,
        "state": object_state_name(o.state), "upload_id": o.upload_id.as_deref(), "error": o.error,
    })
}

/// Runs `transfer resume`.
pub(crate) async fn resume(args: ResumeArgs, out: OutputArgs) -> u8 {
    let found = (|| {
        let ledger = open_ledger(args.checkpoint.as_ref())?;
        let job = match args.job {
            Some(id) => find(&ledger, id)?,
            None => ledger.jobs()?.into_iter().rev().find(|j| j.state != JobState::Done).ok_or_else(|| {
                Usage(format!(
                    "no unfinished job in the ledger {}; `transfer jobs` lists them",
                    ledger.path().display()
                ))
            })?,
        };
        if job.state == JobState::Done {
            return Err(Usage(format!("job {} is done; nothing to resume", job.id)));
        }
        let mut cp = CpArgs::from_recorded(&job.note).ok_or_else(|| {
            Usage(format!(
                "job {} was not started by `transfer cp` (its options are not recorded); resume it with the program that started it",
                job.id
            ))
        })?;
        cp.checkpoint = Some(ledger.path().to_path_buf());
        Ok::<_, Usage>((job, cp))
    })();
    let (job, cp) = match found {
        Ok(f) => f,
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
            Some(JobsCommand::Forget { job, store }) => forget(&ledger, job, &store, out).await,
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
            out!("{}", job_json(j));
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
        "BYTES DONE"
    );
    for j in &jobs {
        let c = &j.counts;
        let (source, destination) = route(j);
        out!(
            "{:>5}  {:<8} {:<6} {:>15} {:>7} {:>21}  {} -> {}",
            j.id.0,
            state_name(j.state),
            j.kind,
            format!("{}/{}", c.tagged + c.skipped, c.total),
            c.failed,
            format!("{}/{}", human_bytes(c.bytes_done), human_bytes(c.bytes_total)),
            source,
            destination
        );
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
        let mut j = job_json(&job);
        j["options"] = serde_json::from_str(&job.note).unwrap_or(serde_json::Value::Null);
        j["objects_shown"] = shown.iter().map(object_json).collect();
        out!("{j}");
        return Ok(EXIT_OK);
    }
    let c = &job.counts;
    out!("job {} ({}): {}", job.id, job.kind, state_name(job.state));
    let (source, destination) = route(&job);
    out!("  {source} -> {destination}");
    out!("  options: {}", job.note);
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
    out!("  bytes: {} of {} in place", human_bytes(c.bytes_done), human_bytes(c.bytes_total));
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
