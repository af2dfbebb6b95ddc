//! `transfer cp SRC DST`: files and directories into a bucket, objects and prefixes server-side, resumable.

use crate::addr::{parse_size, Location, Scheme};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use transfer_engine::checkpoint::{JobId, JobSpec, JobState, Ledger};
use transfer_engine::job::{CopyRequest, DirRequest, Engine, EngineConfig, Event, JobHandle, PrefixCopyRequest, TagOn, UploadRequest};
use transfer_engine::local::LocalStore;
use transfer_engine::oss::OssStore;
use transfer_engine::plan::PlanOptions;
use transfer_engine::sign::{Credentials, SignatureVersion};
use transfer_engine::store::Directive;
use transfer_engine::{BucketStore, Metadata, ObjectRef, ObjectStore, StorageClass, TagSet};

/// Exit statuses, as `--help` and the README document them.
pub(crate) const EXIT_OK: u8 = 0;
pub(crate) const EXIT_FAILED: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_RESUMABLE: u8 = 3;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum TagOnArg {
    Initiate,
    Complete,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DirectiveArg {
    Copy,
    Replace,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SigArg {
    V4,
    V1,
}

/// Options of `transfer cp`.
#[derive(Debug, Args)]
pub(crate) struct CpArgs {
    /// A file or directory, or oss://BUCKET/KEY, local://BUCKET/KEY (a trailing / names a prefix).
    src: String,
    /// oss://BUCKET/KEY or local://BUCKET/KEY; a trailing / (or a directory / prefix source) names a prefix.
    dst: String,
    /// Copy a directory or a prefix (implied by a trailing /).
    #[arg(short, long)]
    recursive: bool,
    /// OSS endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9000.
    #[arg(long, env = "TRANSFER_ENDPOINT")]
    endpoint: Option<String>,
    /// Region of the endpoint (V4 signatures); inferred from oss-<region>.aliyuncs.com endpoints.
    #[arg(long, env = "TRANSFER_REGION")]
    region: Option<String>,
    /// Signature version.
    #[arg(long, value_enum, default_value = "v4")]
    signature_version: SigArg,
    /// Root directory of the embedded local store behind local:// addresses.
    #[arg(long, env = "TRANSFER_LOCAL_ROOT")]
    local_root: Option<PathBuf>,
    /// A tag for every object (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// Tags in header form: 'k1=v1&k2=v2' (percent-encode special characters).
    #[arg(long)]
    tagging: Option<String>,
    /// When tags are applied: with the object's creation, or by PutObjectTagging once it exists.
    #[arg(long, value_enum, default_value = "initiate")]
    tag_on: TagOnArg,
    /// For copies: keep the source's tags or use --tag/--tagging.
    #[arg(long, value_enum, default_value = "copy")]
    tagging_directive: DirectiveArg,
    /// For copies: keep the source's metadata or use --meta and the content options.
    #[arg(long, value_enum, default_value = "copy")]
    metadata_directive: DirectiveArg,
    /// User metadata for every object (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// Content-Type of every object.
    #[arg(long)]
    content_type: Option<String>,
    /// Cache-Control of every object.
    #[arg(long)]
    cache_control: Option<String>,
    /// Storage class: Standard, IA, Archive, ColdArchive, DeepColdArchive.
    #[arg(long)]
    storage_class: Option<String>,
    /// Preferred part size (e.g. 8MiB); the planner raises it when an object would need over 10,000 parts.
    #[arg(long, value_parser = parse_size)]
    part_size: Option<u64>,
    /// Requests in flight, shared by every object of the job.
    #[arg(long, default_value_t = 8)]
    jobs: usize,
    /// Most bytes held in part buffers at once.
    #[arg(long, value_parser = parse_size, default_value = "256MiB")]
    memory_limit: u64,
    /// The checkpoint ledger (default: $TRANSFER_LEDGER, else $XDG_STATE_HOME/transfer/ledger.db).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// One JSON event per line on stdout, then a JSON summary.
    #[arg(long)]
    json: bool,
    /// Print only errors and the summary.
    #[arg(short, long)]
    quiet: bool,
}

/// A usage or configuration error: exit 2, nothing moved.
struct Usage(String);

impl<E: std::fmt::Display> From<E> for Usage {
    fn from(e: E) -> Self {
        Usage(e.to_string())
    }
}

/// Parses `KEY=VALUE`.
fn pair(s: &str, flag: &str) -> Result<(String, String), Usage> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| Usage(format!("{flag} {s:?}: write KEY=VALUE")))
}

/// Everything `cp` needs, validated before any byte moves.
struct Plan {
    src: Location,
    dst: Location,
    engine: Engine,
    ledger: Ledger,
    job: JobId,
    tags: Option<TagSet>,
    metadata: Metadata,
    explicit_metadata: bool,
}

fn local_root(args: &CpArgs) -> Result<PathBuf, Usage> {
    if let Some(r) = &args.local_root {
        return Ok(r.clone());
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| Usage("no HOME: give --local-root DIR for local:// addresses".into()))?;
    Ok(base.join("transfer/local"))
}

/// Opens the store an address names and checks its bucket exists (which also proves the endpoint answers and the
/// credentials are accepted), before any byte moves.
async fn open_store(args: &CpArgs, scheme: Scheme, bucket: &str) -> Result<Arc<dyn ObjectStore>, Usage> {
    async fn check<S: BucketStore>(s: &S, bucket: &str, what: &str) -> Result<(), Usage> {
        s.get_versioning(bucket).await.map(|_| ()).map_err(|e| match e.service_code() {
            Some("NoSuchBucket") => Usage(format!("bucket {bucket:?} does not exist at {what}; create it first")),
            _ => Usage(format!("cannot use bucket {bucket:?} at {what}: {e}")),
        })
    }
    match scheme {
        Scheme::Local => {
            let root = local_root(args)?;
            let store = LocalStore::open(&root).map_err(|e| Usage(format!("local store at {}: {e}", root.display())))?;
            check(&store, bucket, &format!("local root {}", root.display())).await?;
            Ok(Arc::new(store))
        }
        Scheme::Oss => {
            let endpoint = args.endpoint.clone().ok_or_else(|| Usage("oss:// needs --endpoint URL (or TRANSFER_ENDPOINT)".into()))?;
            let creds = Credentials::from_env()?;
            let mut b = OssStore::builder().endpoint(endpoint.clone()).credentials(creds).signature_version(match args.signature_version {
                SigArg::V4 => SignatureVersion::V4,
                SigArg::V1 => SignatureVersion::V1,
            });
            if let Some(r) = &args.region {
                b = b.region(r.clone());
            }
            let store = b.build()?;
            check(&store, bucket, &endpoint).await?;
            Ok(Arc::new(store))
        }
    }
}

async fn prepare(args: &CpArgs) -> Result<Plan, Usage> {
    let src = Location::parse(&args.src)?;
    let dst = Location::parse(&args.dst)?;
    let (dst_scheme, dst_bucket) = match &dst {
        Location::Remote { scheme, bucket, .. } => (*scheme, bucket.clone()),
        Location::Path(_) => return Err(Usage("downloads are not supported yet: the destination must be oss:// or local://".into())),
    };
    match &src {
        Location::Path(p) if !p.exists() => return Err(Usage(format!("{} does not exist", p.display()))),
        Location::Path(p) if p.is_dir() && !args.recursive && !args.src.ends_with('/') => {
            return Err(Usage(format!("{} is a directory; add -r to copy it", p.display())))
        }
        Location::Remote { scheme, .. } if *scheme != dst_scheme => {
            return Err(Usage("a server-side copy needs both sides on the same store (both oss:// or both local://)".into()))
        }
        _ => {}
    }
    let mut tags = match &args.tagging {
        Some(t) => TagSet::parse_header(t).map_err(|e| Usage(format!("--tagging: {}", e.message())))?,
        None => TagSet::new(),
    };
    for t in &args.tags {
        let (k, v) = pair(t, "--tag")?;
        tags.insert(k, v).map_err(|e| Usage(format!("--tag: {}", e.message())))?;
    }
    let mut metadata = Metadata::default();
    for m in &args.meta {
        let (k, v) = pair(m, "--meta")?;
        metadata.insert_user(&k, v).map_err(|e| Usage(format!("--meta: {}", e.message())))?;
    }
    metadata.content_type = args.content_type.clone();
    metadata.cache_control = args.cache_control.clone();
    if let Some(c) = &args.storage_class {
        metadata.storage_class = Some(StorageClass::parse(c).map_err(|e| Usage(format!("--storage-class: {}", e.message())))?);
    }
    metadata.validate().map_err(|e| Usage(e.message().to_owned()))?;
    let explicit_metadata = !args.meta.is_empty() || args.content_type.is_some() || args.cache_control.is_some() || args.storage_class.is_some();

    let store = open_store(args, dst_scheme, &dst_bucket).await?;
    let ledger_path = match &args.checkpoint {
        Some(p) => p.clone(),
        None => Ledger::default_path()?,
    };
    let ledger = Ledger::open(&ledger_path)?;
    let mut plan = PlanOptions { max_in_flight: args.jobs, memory_budget: args.memory_limit, ..PlanOptions::default() };
    if let Some(p) = args.part_size {
        plan.preferred_part_size = p;
        plan.copy_part_size = p;
    }
    let config = EngineConfig {
        plan,
        tag_on: match args.tag_on {
            TagOnArg::Initiate => TagOn::Initiate,
            TagOnArg::Complete => TagOn::Complete,
        },
        ..EngineConfig::default()
    };
    let engine = Engine::new(store, ledger.clone(), config)?;
    let source_id = match &src {
        Location::Path(p) => std::path::absolute(p)?.display().to_string(),
        remote => remote.to_string(),
    };
    let spec = JobSpec {
        kind: if matches!(src, Location::Path(_)) { "upload" } else { "copy" }.into(),
        source: source_id,
        destination: dst.to_string(),
        options_json: json!({ "tag_on": format!("{:?}", args.tag_on), "part_size": args.part_size, "jobs": args.jobs }).to_string(),
    };
    let job = match ledger.find_job(&spec.source, &spec.destination)? {
        Some(j) => j,
        None => ledger.create_job(&spec)?,
    };
    Ok(Plan { src, dst, engine, ledger, job, tags: Some(tags).filter(|t| !t.is_empty()), metadata, explicit_metadata })
}

/// Starts the job the addresses describe.
fn start(args: &CpArgs, p: &Plan) -> Result<JobHandle, Usage> {
    let Location::Remote { bucket, key: dst_key, .. } = &p.dst else { unreachable!("checked in prepare") };
    let handle = match &p.src {
        Location::Path(path) if path.is_dir() => p.engine.upload_dir(
            p.job,
            DirRequest { dir: path.clone(), bucket: bucket.clone(), prefix: dst_key.clone(), metadata: p.metadata.clone(), tags: p.tags.clone(), filter: transfer_engine::job::KeyFilter::default() },
        )?,
        Location::Path(path) => {
            let key = if p.dst.is_container() {
                let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| Usage(format!("{} has no UTF-8 file name", path.display())))?;
                format!("{dst_key}{name}")
            } else {
                dst_key.clone()
            };
            p.engine.upload_one(p.job, UploadRequest { path: path.clone(), bucket: bucket.clone(), key, metadata: p.metadata.clone(), tags: p.tags.clone() })?
        }
        Location::Remote { bucket: sb, key: sk, .. } => {
            let metadata = match (args.metadata_directive, p.explicit_metadata) {
                (DirectiveArg::Replace, _) => Directive::Replace(p.metadata.clone()),
                (DirectiveArg::Copy, true) => return Err(Usage("--meta and content options need --metadata-directive replace for copies".into())),
                (DirectiveArg::Copy, false) => Directive::Copy,
            };
            let tags = match args.tagging_directive {
                DirectiveArg::Replace => Directive::Replace(p.tags.clone().unwrap_or_default()),
                DirectiveArg::Copy if p.tags.is_some() => return Err(Usage("--tag/--tagging need --tagging-directive replace for copies".into())),
                DirectiveArg::Copy => Directive::Copy,
            };
            if p.src.is_container() || args.recursive {
                p.engine.copy_prefix(
                    p.job,
                    PrefixCopyRequest { src_bucket: sb.clone(), src_prefix: sk.clone(), bucket: bucket.clone(), prefix: dst_key.clone(), metadata, tags, filter: transfer_engine::job::KeyFilter::default() },
                )?
            } else {
                let key = if p.dst.is_container() { format!("{dst_key}{}", sk.rsplit('/').next().unwrap_or(sk)) } else { dst_key.clone() };
                p.engine.copy_one(p.job, CopyRequest { source: ObjectRef::new(sb, sk), bucket: bucket.clone(), key, metadata, tags })?
            }
        }
    };
    Ok(handle)
}

/// Runs `transfer cp`.
pub(crate) fn run(args: CpArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("transfer cp: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(cp(args)))
}

async fn cp(args: CpArgs) -> u8 {
    let plan = match prepare(&args).await {
        Ok(p) => p,
        Err(Usage(msg)) => {
            eprintln!("transfer cp: {msg}");
            return EXIT_USAGE;
        }
    };
    let mut handle = match start(&args, &plan) {
        Ok(h) => h,
        Err(Usage(msg)) => {
            eprintln!("transfer cp: {msg}");
            return EXIT_USAGE;
        }
    };
    let resume_hint = format!("run the same `transfer cp` command again to resume job {}", plan.job.0);
    let mut interrupts = 0;
    let mut crc_verified = true;
    // Registered once, before the job's first event; if it cannot be registered, Ctrl-C keeps its default effect.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    loop {
        tokio::select! {
            event = handle.next_event() => match event {
                None => break,
                Some(Event::Done { key, outcome }) => {
                    let crc = match &outcome {
                        transfer_engine::job::ObjectOutcome::Uploaded(o) => o.crc64,
                        transfer_engine::job::ObjectOutcome::Copied(o) => o.crc64,
                    };
                    crc_verified &= crc.is_some();
                    if args.json {
                        println!("{}", json!({"event": "done", "key": key, "bytes": outcome.size(), "already_done": outcome.already_done()}));
                    } else if !args.quiet {
                        eprintln!("done {key} ({} bytes){}", outcome.size(), if outcome.already_done() { ", already there" } else { "" });
                    }
                }
                // Dry runs are not wired into `transfer cp` yet: this job never plans.
                Some(Event::Planned { .. }) => {}
                Some(Event::Failed { key, error }) => {
                    if args.json {
                        println!("{}", json!({"event": "failed", "key": key, "error": error}));
                    }
                    eprintln!("failed {key}: {error}");
                }
            },
            Some(()) = async { match sigint.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                interrupts += 1;
                if interrupts == 1 {
                    eprintln!("stopping: parts in flight finish and are recorded (Ctrl-C again to quit now)");
                    handle.stop();
                } else {
                    eprintln!("stopped now; {resume_hint}");
                    std::process::exit(EXIT_RESUMABLE.into());
                }
            }
        }
    }
    let summary = match handle.join().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("transfer cp: {e}");
            return EXIT_FAILED;
        }
    };
    let p = &summary.progress;
    let (code, state) = match summary.state {
        JobState::Done => (EXIT_OK, "done"),
        JobState::Stopped => (EXIT_RESUMABLE, "stopped"),
        _ => (EXIT_RESUMABLE, "partly failed"),
    };
    if args.json {
        println!(
            "{}",
            json!({
                "event": "summary", "job": summary.job.0, "state": state,
                "objects_transferred": p.objects_done, "objects_skipped": p.objects_already_done, "objects_failed": p.objects_failed,
                "bytes_transferred": p.bytes_acknowledged, "duration_secs": p.elapsed.as_secs_f64(),
                "crc64_verified": crc_verified && p.objects_failed == 0,
                "ledger": plan.ledger.path().display().to_string(),
            })
        );
    } else {
        eprintln!(
            "{state}: {} objects transferred, {} already there, {} failed, {} bytes in {:.1}s (job {})",
            p.objects_done, p.objects_already_done, p.objects_failed, p.bytes_acknowledged, p.elapsed.as_secs_f64(), summary.job.0
        );
    }
    if code == EXIT_RESUMABLE {
        eprintln!("{resume_hint}");
    }
    code
}
