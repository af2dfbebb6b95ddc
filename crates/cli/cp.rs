//! `transfer cp SRC DST`: files and directories into a bucket, objects and prefixes server-side, resumable.
//!
//! Every option but the output ones is recorded with the job in the ledger (no credentials: they come from the
//! environment or a profile's variables), so `transfer resume` runs the job again exactly as it was started.

use crate::addr::{parse_size, Location, Scheme};
use crate::output::{human_bytes, OutputArgs, ProgressDisplay};
use crate::remote::{check_bucket, ChecksumArg, Opened, SrcStoreArgs, StoreArgs};
use crate::{Usage, EXIT_CLOSED_PIPE, EXIT_FAILED, EXIT_OK, EXIT_RESUMABLE, EXIT_USAGE};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use transfer_engine::checkpoint::{JobId, JobState, Ledger};
use transfer_engine::job::{
    Compare, CopyRequest, DirRequest, DownloadRequest, Engine, EngineConfig, Event, JobHandle, KeyFilter, KeyRange,
    Overwrite, PlannedAction, PrefixCopyRequest, PrefixDownloadRequest, Reader, SkipReason, StreamRequest,
    StreamUploadRequest, SyncRequest, SyncSide, TagOn, UploadRequest, Writer,
};
use transfer_engine::plan::PlanOptions;
use transfer_engine::store::{Capabilities, Directive, ListRequest, RestoreRequest, RestoreTier};
use transfer_engine::{Metadata, ObjectRef, StorageClass, TagSet};

#[derive(Debug, Clone, Copy, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TagOnArg {
    Initiate,
    Complete,
}

#[derive(Debug, Clone, Copy, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DirectiveArg {
    Copy,
    Replace,
}

/// Options of `transfer cp`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct CpArgs {
    /// Files, directories (with -r), a quoted glob ('photos/*.jpg': the files under photos/ whose names match,
    /// at any depth, as s5cmd matches), or one oss://, s3://, local://BUCKET/KEY (a trailing / names a
    /// prefix). Several sources go into a prefix (DST ending in /), each as its own resumable job.
    #[arg(value_name = "SRC", required = true, num_args = 1..)]
    #[serde(skip)]
    pub sources: Vec<String>,
    /// The one source of this job: one of `sources`, or the recorded one.
    #[arg(skip)]
    pub src: String,
    /// oss://, s3:// or local://BUCKET/KEY (a trailing /, or a directory or prefix source, names a prefix);
    /// for a remote source also a local path (a file, or a directory with a trailing / or -r) or - (stdout).
    pub dst: String,
    /// Copy a directory or a prefix (implied by a trailing /).
    #[arg(short, long)]
    pub recursive: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub src_store: SrcStoreArgs,
    /// How the bodies sent are checked by the server: crc32c (s3:// default: x-amz-checksum-crc32c) or md5
    /// (Content-MD5: on s3:// instead, for servers without S3's checksums; on oss:// in addition to the
    /// CRC-64 check every oss:// transfer makes) [default: the profile's, else crc32c on s3://, none on oss://].
    #[arg(long, value_enum)]
    #[serde(default)]
    pub checksum: Option<ChecksumArg>,
    /// Create the destination bucket if it does not exist.
    #[arg(long)]
    pub create_bucket: bool,
    /// A tag for every object (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Tags in header form: 'k1=v1&k2=v2' (percent-encode special characters).
    #[arg(long)]
    pub tagging: Option<String>,
    /// When tags are applied: with the object's creation, or by PutObjectTagging once it exists.
    #[arg(long, value_enum, default_value = "initiate")]
    pub tag_on: TagOnArg,
    /// For copies: keep the source's tags or use --tag/--tagging.
    #[arg(long, value_enum, default_value = "copy")]
    pub tagging_directive: DirectiveArg,
    /// For copies: keep the source's metadata or use --meta and the content options.
    #[arg(long, value_enum, default_value = "copy")]
    pub metadata_directive: DirectiveArg,
    /// User metadata for every object (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Content-Type of every object.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Cache-Control of every object.
    #[arg(long)]
    pub cache_control: Option<String>,
    /// Storage class: Standard, IA, Archive, ColdArchive, DeepColdArchive.
    #[arg(long)]
    pub storage_class: Option<String>,
    /// Preferred part size (e.g. 8MiB); the planner raises it when an object would need over 10,000 parts.
    #[arg(long, value_parser = parse_size)]
    pub part_size: Option<u64>,
    /// With - (stdin) as SRC: the stream's length, when known. It is then planned as a file of that size, and a
    /// stream of another length fails without publishing anything. Without it, parts grow as the stream goes.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    #[serde(default)]
    pub expected_size: Option<u64>,
    /// Files of at least this size go as multipart uploads, smaller ones as one PutObject.
    #[arg(long, value_parser = parse_size, default_value = "64MiB")]
    pub multipart_threshold: u64,
    /// Server-side copies of at least this size go as UploadPartCopy parts (parallel, resumable), smaller ones as
    /// one CopyObject. Default: --multipart-threshold. Never above the destination's CopyObject limit (oss:// and
    /// local:// 1 GiB, s3:// 5 GiB): a larger value is lowered to it, with a warning.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub copy_threshold: Option<u64>,
    /// Skip objects whose destination already exists (and forbid the server to overwrite one that appears meanwhile).
    #[arg(long, conflicts_with = "update")]
    pub no_clobber: bool,
    /// Skip objects whose destination has the same size and CRC-64 (a download: a file with the object's size
    /// and CRC-64, or, on a store without CRC-64, the MD5 the object's ETag is).
    #[arg(long)]
    pub update: bool,
    /// Only files or objects matching this glob (repeatable); a pattern without / matches the base name, one with
    /// / the path under the source; * and ? stay within a / segment, ** crosses them.
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out files or objects matching this glob (repeatable; wins over --include).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Downloads: set each file's permissions (rwxrwxrwx) from the mode its upload recorded (`mode` metadata,
    /// as rclone writes it); setuid, setgid and sticky bits are never restored.
    #[arg(long)]
    #[serde(default)]
    pub preserve_mode: bool,
    /// Restore archived sources (Archive, ColdArchive, DeepColdArchive; S3's Glacier classes) before reading
    /// them: RestoreObject, then wait until the store says the object is readable (a restore already under way
    /// is waited for). Without it such objects are skipped, and said so.
    #[arg(long)]
    #[serde(default)]
    pub restore_archived: bool,
    /// Days a restored copy stays readable (with --restore-archived).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "restore_archived")]
    #[serde(default = "one_day")]
    pub restore_days: u32,
    /// How fast a restore is made (ColdArchive, DeepColdArchive, Glacier): expedited, standard or bulk
    /// [default: the store's].
    #[arg(long, value_name = "TIER", value_parser = ["expedited", "standard", "bulk"], requires = "restore_archived")]
    #[serde(default)]
    pub restore_tier: Option<String>,
    /// The version of the one source object to copy or download, on a versioned bucket (default: the current
    /// one).
    #[arg(long, value_name = "ID")]
    #[serde(default)]
    pub version_id: Option<String>,
    /// Succeed when the source holds nothing (or nothing the filters take); without it, an empty source is an
    /// error (exit 1), as a misspelt prefix usually is.
    #[arg(long)]
    #[serde(default)]
    pub allow_empty: bool,
    /// Print the plan (each object, its size, and PUT, multipart with its part size, or server-side copy), move
    /// nothing and record nothing.
    #[arg(long)]
    #[serde(skip)]
    pub dry_run: bool,
    /// Requests in flight, shared by every object of the job.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Most bytes per second the process sends, and separately receives, shared by every object and part of the
    /// job: a rate for both (50MiB/s; off), UP:DOWN (10MiB/s:off), or a timetable of those by local time,
    /// "08:00,512KiB/s 19:00,off" (every day) or "Mon-08:00,1MiB/s:4MiB/s Sat-00:00,off" (a week). SIGUSR2
    /// turns it off, and on again.
    #[arg(long, value_parser = crate::bwlimit::check, value_name = "RATE|TIMETABLE")]
    #[serde(default)]
    pub bwlimit: Option<String>,
    /// Most requests per second to each endpoint (a cap; throttling answers slow the requests of an endpoint
    /// together whether or not it is set).
    #[arg(long, value_name = "N", value_parser = parse_tps)]
    #[serde(default)]
    pub tpslimit: Option<f64>,
    /// oss:// only: OSS's own limit on each request that carries object data (x-oss-traffic-limit), from
    /// 30KiB/s to 100MiB/s; the server holds every request to it (requests in parallel each get it). --bwlimit
    /// is the process's own limit, shared.
    #[arg(long, value_name = "RATE", value_parser = parse_traffic_limit)]
    #[serde(default)]
    pub traffic_limit: Option<u64>,
    /// Most bytes held in part buffers at once.
    #[arg(long, value_parser = parse_size, default_value = "256MiB")]
    pub memory_limit: u64,
    /// The checkpoint ledger (default: $TRANSFER_LEDGER, else $XDG_STATE_HOME/transfer/ledger.db).
    #[arg(long)]
    #[serde(skip)]
    pub checkpoint: Option<PathBuf>,
    /// `transfer sync`: its options (a sync is a cp that compares and deletes).
    #[arg(skip)]
    #[serde(default)]
    pub sync: Option<SyncOptions>,
    /// `transfer shard run`: the sync covers the relative keys in (after, upto] only.
    #[arg(skip)]
    #[serde(default)]
    pub shard: Option<(Option<String>, Option<String>)>,
    /// `transfer shard run`: the keys of split objects, which the shard passes over.
    #[arg(skip)]
    #[serde(skip)]
    pub elsewhere: Vec<String>,
    /// `transfer shard run`: the part ranges of split objects the shard sends.
    #[arg(skip)]
    #[serde(skip)]
    pub chunks: Vec<transfer_engine::job::Chunk>,
    /// `transfer shard run` of a plan from a manifest: only these relative keys.
    #[arg(skip)]
    #[serde(skip)]
    pub keys: Option<Vec<String>>,
}

/// How entries on both sides of a sync are compared.
#[derive(Debug, Clone, Copy, ValueEnum, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CompareArg {
    /// Size and CRC-64 (catches same-size edits; from the ledger, a HEAD, or a read of the file).
    SizeCrc,
    /// Size and modification time (the `mtime` metadata, else Last-Modified).
    SizeMtime,
    /// Size only.
    Size,
    /// ETags (bucket to bucket within one store).
    Etag,
}

/// Options only `transfer sync` has.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub(crate) struct SyncOptions {
    /// How entries on both sides are compared.
    #[arg(long, value_enum, default_value = "size-crc")]
    pub compare: CompareArg,
    /// Remove from DST what SRC does not have: only after every copy succeeded and both sides were listed
    /// whole (DeleteMultiple, 1,000 a request; a versioned bucket keeps the data under a delete marker).
    #[arg(long)]
    pub delete: bool,
    /// Delete at most N; more to delete ends the run with exit 3 (the same command lists again and goes on).
    #[arg(long, value_name = "N", requires = "delete")]
    pub max_delete: Option<u64>,
    /// Delete even when SRC lists nothing (without it, an empty SRC, as a misspelt prefix is, deletes nothing).
    #[arg(long, requires = "delete")]
    pub allow_empty_source: bool,
}

/// Options of `transfer sync`: cp's that apply, and the sync's own.
#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("sources", |a| a.value_name("SRC").num_args(1).action(clap::ArgAction::Set).help(
        "What DST is made like: a directory, or oss://, s3://, local://BUCKET[/PREFIX]"
    )),
    mut_arg("dst", |a| a.help(
        "What is made like SRC: oss://, s3://, local://BUCKET[/PREFIX], or a directory (created if missing)"
    )),
    mut_arg("recursive", |a| a.hide(true)),
    mut_arg("no_clobber", |a| a.hide(true)),
    mut_arg("update", |a| a.hide(true)),
    mut_arg("version_id", |a| a.hide(true)),
    mut_arg("allow_empty", |a| a.help("Succeed when SRC holds nothing and nothing is deleted")),
)]
pub(crate) struct SyncArgs {
    #[command(flatten)]
    pub cp: CpArgs,
    #[command(flatten)]
    pub sync: SyncOptions,
}

/// `transfer sync SRC DST`.
pub(crate) async fn run_sync(args: SyncArgs, out: OutputArgs) -> u8 {
    match sync_options(args) {
        Ok(cp) => run(cp, out, None).await,
        Err(Usage(msg)) => {
            tracing::error!("{msg}");
            EXIT_USAGE
        }
    }
}

/// The options of a job `transfer sync` runs (or each shard of `transfer shard plan`).
pub(crate) fn sync_options(args: SyncArgs) -> Result<CpArgs, Usage> {
    let SyncArgs { mut cp, sync } = args;
    if cp.update || cp.no_clobber || cp.recursive || cp.version_id.is_some() {
        return Err(Usage(
            "sync compares every entry by --compare and syncs whole directories and prefixes: --update, --no-clobber, \
             -r and --version-id are cp's"
                .into(),
        ));
    }
    cp.src = cp.sources[0].clone();
    cp.sync = Some(sync);
    Ok(cp)
}

fn one_day() -> u32 {
    1
}

/// How a job's options are kept in the ledger: `{"cp": CpArgs}`.
#[derive(Serialize, Deserialize)]
struct Recorded {
    cp: CpArgs,
}

impl CpArgs {
    /// The options as recorded with the job: paths absolute, no ledger path (the job lives in it).
    pub(crate) fn recorded(&self) -> Result<String, Usage> {
        let mut cp = self.clone();
        if let (Location::Path(p), false) = (Location::parse(&cp.src)?, cp.src == STDIN) {
            let abs = std::path::absolute(&p)?.display().to_string();
            // Keep a trailing '/' (it means "the directory's contents").
            cp.src = if cp.src.ends_with('/') && !abs.ends_with('/') { format!("{abs}/") } else { abs };
        }
        if let (Location::Path(p), false) = (Location::parse(&cp.dst)?, cp.dst == "-") {
            let abs = std::path::absolute(&p)?.display().to_string();
            cp.dst = if cp.dst.ends_with('/') && !abs.ends_with('/') { format!("{abs}/") } else { abs };
        }
        cp.store = cp.store.absolute()?;
        cp.checkpoint = None;
        Ok(serde_json::to_string(&Recorded { cp })?)
    }

    /// The options a job was started with, from the note recorded with it.
    pub(crate) fn from_recorded(note: &str) -> Option<CpArgs> {
        serde_json::from_str::<Recorded>(note).ok().map(|r| r.cp)
    }

    /// The command that runs this job, as a person would type it: the options that differ from the defaults
    /// (sizes with units), values quoted for a POSIX shell where they need it.
    pub(crate) fn command_line(&self) -> String {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            cp: CpArgs,
        }
        let verb = if self.sync.is_some() { "sync" } else { "cp" };
        let mut line = format!("transfer {verb} {} {}", quote(&self.src), quote(&self.dst));
        #[derive(clap::Parser)]
        struct SyncDefaults {
            #[command(flatten)]
            sync: SyncOptions,
        }
        let defaults = <Defaults as clap::Parser>::try_parse_from(["cp", "SRC", "DST"]).map(|d| d.cp);
        if let (Ok(mine), Ok(Ok(mut base))) = (serde_json::to_value(self), defaults.map(serde_json::to_value)) {
            let sync = <SyncDefaults as clap::Parser>::try_parse_from(["sync"]).map(|d| d.sync);
            if let (serde_json::Value::Object(b), Ok(Ok(sync))) = (&mut base, sync.map(serde_json::to_value)) {
                b.insert("sync".into(), sync);
            }
            flags(&mut line, &mine, &base);
        }
        line
    }
}

/// Appends `--name value` for every field of `mine` that differs from `base` (nested groups flattened).
fn flags(line: &mut String, mine: &serde_json::Value, base: &serde_json::Value) {
    use serde_json::Value;
    let (Value::Object(mine), Value::Object(base)) = (mine, base) else { return };
    for (name, value) in mine {
        if matches!(name.as_str(), "src" | "dst") || base.get(name) == Some(value) {
            continue;
        }
        let flag = match name.as_str() {
            "tags" => "tag".to_owned(),
            n => n.replace('_', "-"),
        };
        let sized = matches!(
            name.as_str(),
            "part_size"
                | "multipart_threshold"
                | "copy_threshold"
                | "memory_limit"
                | "bwlimit"
                | "expected_size"
                | "traffic_limit"
        );
        match value {
            Value::Object(_) => flags(line, value, base.get(name).unwrap_or(&Value::Null)),
            Value::Null | Value::Bool(false) => {}
            Value::Bool(true) => line.push_str(&format!(" --{flag}")),
            Value::Array(items) => {
                for item in items {
                    line.push_str(&format!(" --{flag} {}", quote(&plain(item))));
                }
            }
            Value::Number(n) if sized => {
                let size = n.as_u64().map_or_else(|| n.to_string(), size_with_unit);
                line.push_str(&format!(" --{flag} {size}"));
            }
            other => line.push_str(&format!(" --{flag} {}", quote(&plain(other)))),
        }
    }
}

/// `8MiB` for 8388608: the largest binary unit that divides the size.
fn size_with_unit(bytes: u64) -> String {
    match bytes {
        0 => "0".to_owned(),
        b if b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => b.to_string(),
    }
}

fn plain(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `s` as one word for a POSIX shell.
fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Parses `KEY=VALUE`.
fn pair(s: &str, flag: &str) -> Result<(String, String), Usage> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| Usage(format!("{flag} {s:?}: write KEY=VALUE")))
}

/// The tags `--tagging` and `--tag` give, validated.
pub(crate) fn parse_tags(tagging: Option<&str>, tags: &[String]) -> Result<TagSet, Usage> {
    let mut set = match tagging {
        Some(t) => TagSet::parse_header(t).map_err(|e| Usage(format!("--tagging: {}", e.message())))?,
        None => TagSet::new(),
    };
    for t in tags {
        let (k, v) = pair(t, "--tag")?;
        set.insert(k, v).map_err(|e| Usage(format!("--tag: {}", e.message())))?;
    }
    Ok(set)
}

/// Everything `cp` needs, validated before any byte moves.
struct Plan {
    src: Location,
    dst: Location,
    engine: Engine,
    ledger: Ledger,
    /// `transfer resume N`: the job to run (the engine checks it is this command's); otherwise the engine finds
    /// the job this command started before, or records a new one.
    resume: Option<JobId>,
    /// The options recorded with a new job, so `transfer resume` can run it again.
    note: String,
    tags: Option<TagSet>,
    metadata: Metadata,
    explicit_metadata: bool,
    filter: KeyFilter,
}

/// Opens the ledger named by `--checkpoint`, or the default one.
pub(crate) fn open_ledger(checkpoint: Option<&PathBuf>) -> Result<Ledger, Usage> {
    let path = match checkpoint {
        Some(p) => p.clone(),
        None => Ledger::default_path()?,
    };
    Ok(Ledger::open(&path)?)
}

async fn prepare(args: &CpArgs, resume: Option<JobId>) -> Result<Plan, Usage> {
    let src = Location::parse(&args.src)?;
    let dst = Location::parse(&args.dst)?;
    local_source_exists(&src)?;
    let (dst_scheme, dst_bucket) = match (&dst, &src) {
        (Location::Remote { scheme, bucket, .. }, _) => (*scheme, bucket.clone()),
        // A download: the remote side is the store the engine reads.
        (Location::Path(_), Location::Remote { scheme, bucket, .. }) => (*scheme, bucket.clone()),
        (Location::Path(p), Location::Path(_)) => {
            return Err(Usage(format!(
                "both {} and {} are local paths; one side must be oss://, s3:// or local://BUCKET/KEY",
                src,
                p.display()
            )))
        }
    };
    let download = matches!(dst, Location::Path(_));
    match args.src == STDIN {
        true => stream_usage(args, &dst)?,
        false if args.expected_size.is_some() => {
            return Err(Usage("--expected-size is the length of a stream: it applies to - (stdin) as SRC".into()))
        }
        false => {}
    }
    if args.preserve_mode && !download {
        return Err(Usage("--preserve-mode applies to downloads (uploads record every file's mode)".into()));
    }
    if args.dst == "-" && (args.recursive || src.is_container()) {
        return Err(Usage("- (stdout) takes one object; a prefix goes into a directory".into()));
    }
    let sync = args.sync.is_some();
    match &src {
        Location::Path(p) if sync && !p.is_dir() => {
            return Err(Usage(format!(
                "{} is not a directory: sync makes a directory or prefix like another (cp copies one file)",
                p.display()
            )))
        }
        Location::Path(p) if p.is_dir() && !args.recursive && !args.src.ends_with('/') && !sync => {
            return Err(Usage(format!("{} is a directory; add -r to copy it", p.display())))
        }
        Location::Path(_) if args.src_store.any() => {
            return Err(Usage("--src-endpoint, --src-region and --src-profile apply to a remote source only".into()))
        }
        _ => {}
    }
    let tags = parse_tags(args.tagging.as_deref(), &args.tags)?;
    let mut metadata = Metadata::default();
    for m in &args.meta {
        let (k, v) = pair(m, "--meta")?;
        metadata.insert_user(&k, v).map_err(|e| Usage(format!("--meta: {}", e.message())))?;
    }
    metadata.content_type = args.content_type.clone();
    metadata.cache_control = args.cache_control.clone();
    if let Some(c) = &args.storage_class {
        metadata.storage_class =
            Some(StorageClass::parse(c).map_err(|e| Usage(format!("--storage-class: {}", e.message())))?);
    }
    metadata.validate().map_err(|e| Usage(e.message().to_owned()))?;
    let explicit_metadata = !args.meta.is_empty()
        || args.content_type.is_some()
        || args.cache_control.is_some()
        || args.storage_class.is_some();
    let filter = KeyFilter::new(&args.include, &args.exclude)
        .map_err(|e| Usage(format!("--include/--exclude: {}", e.message())))?;
    let many = sync || args.recursive || args.src.ends_with('/') || matches!(&src, Location::Path(p) if p.is_dir());
    if !filter.is_empty() && !many {
        return Err(Usage(
            "--include and --exclude choose among the files of a directory or the objects of a prefix; add -r".into(),
        ));
    }

    let store = match download {
        // --src-* name the source's store for a download too (the only store it uses).
        true => args.src_store.over(&args.store, true).open_bucket(dst_scheme, &dst_bucket).await?,
        false => open_destination(args, dst_scheme, &dst_bucket).await?,
    };
    // The source's store: the destination's (a server-side copy), or another one (a relay through this process)
    // when the scheme differs or a --src-* option names another endpoint, region or profile.
    let relay = match &src {
        Location::Remote { .. } if download => None,
        Location::Remote { scheme, bucket, .. } if *scheme != dst_scheme || args.src_store.any() => {
            Some(args.src_store.over(&args.store, *scheme == dst_scheme).open_bucket(*scheme, bucket).await?)
        }
        Location::Remote { bucket, .. } if *bucket != dst_bucket => {
            check_bucket(&store, bucket).await?;
            None
        }
        _ => None,
    };
    if let (Location::Remote { .. }, None, false) = (&src, &relay, download) {
        warn_copy_threshold(args.copy_threshold, store.objects.capabilities(), dst_scheme);
    }
    if let Some(p) = args.part_size {
        // Parts are bytes this process holds when it reads them: a file's, or a relayed object's.
        let buffered = matches!(src, Location::Path(_)) || relay.is_some() || download;
        check_part_size(
            p,
            store.objects.capabilities(),
            dst_scheme,
            buffered.then_some((args.jobs, args.memory_limit)),
        )?;
    }
    if args.version_id.is_some() && (!matches!(src, Location::Remote { .. }) || args.recursive || src.is_container()) {
        return Err(Usage("--version-id names a version of one source object (oss://, s3://, local://)".into()));
    }
    if let Location::Remote { bucket, key, .. } = &src {
        if !args.recursive && !src.is_container() && !sync {
            let version = args.version_id.as_deref();
            single_source_exists(relay.as_ref().unwrap_or(&store), &src, source_object(bucket, key, version)).await?;
        }
    }
    let ledger = open_ledger(args.checkpoint.as_ref())?;
    let mut plan = PlanOptions::default()
        .max_in_flight(args.jobs)
        .memory_budget(args.memory_limit)
        .multipart_threshold(args.multipart_threshold)
        .copy_threshold(args.copy_threshold);
    if let Some(p) = args.part_size {
        plan.preferred_part_size = p;
        plan.copy_part_size = p;
    }
    let config = EngineConfig::default()
        .plan(plan)
        .tag_on(match args.tag_on {
            TagOnArg::Initiate => TagOn::Initiate,
            TagOnArg::Complete => TagOn::Complete,
        })
        .overwrite(match (args.no_clobber, args.update) {
            (true, _) => Overwrite::IfMissing,
            (false, true) => Overwrite::IfDifferent,
            (false, false) => Overwrite::Always,
        })
        .restore_mode(args.preserve_mode)
        .restore(args.restore_archived.then(|| {
            let request = RestoreRequest::days(args.restore_days);
            match args.restore_tier.as_deref().and_then(RestoreTier::parse) {
                Some(tier) => request.tier(tier),
                None => request,
            }
        }))
        .dry_run(args.dry_run);
    let engine = match relay {
        Some(source) => Engine::relay(store.objects.clone(), source.objects, ledger.clone(), config)?,
        None => Engine::new(store.objects.clone(), ledger.clone(), config)?,
    };
    Ok(Plan {
        src,
        dst,
        engine,
        ledger,
        resume,
        note: args.recorded()?,
        tags: Some(tags).filter(|t| !t.is_empty()),
        metadata,
        explicit_metadata,
        filter,
    })
}

/// `--tpslimit N`: a positive number of requests per second.
fn parse_tps(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(format!("{s:?} is not a number of requests per second above 0 (e.g. 10, or 0.5)")),
    }
}

/// `--traffic-limit RATE`: bytes per second within what OSS takes (its header is in bits per second).
fn parse_traffic_limit(s: &str) -> Result<u64, String> {
    let bytes = crate::addr::parse_rate(s)?;
    let range = transfer_engine::run::OSS_TRAFFIC_LIMIT;
    if !range.contains(&bytes.saturating_mul(8)) {
        return Err(format!(
            "{s}: OSS takes a traffic limit from 30KiB/s to 100MiB/s ({} to {} bit/s)",
            range.start(),
            range.end()
        ));
    }
    Ok(bytes)
}

/// SRC `-`: the upload of a stream on stdin.
const STDIN: &str = "-";

/// What a stream on stdin can go to, and the options that cannot apply to one.
fn stream_usage(args: &CpArgs, dst: &Location) -> Result<(), Usage> {
    let refuse = |what: &str| Err(Usage(format!("- (stdin) is a stream: {what}")));
    match dst {
        Location::Remote { key, .. } if key.is_empty() || dst.is_container() => {
            return refuse("it goes into one object; name its key (e.g. oss://bucket/backup.tar.zst)")
        }
        Location::Remote { .. } => {}
        Location::Path(_) => return refuse("it goes to oss://, s3:// or local://BUCKET/KEY"),
    }
    if args.recursive || !args.include.is_empty() || !args.exclude.is_empty() {
        return refuse("-r, --include and --exclude choose among files; a stream is one object");
    }
    if args.update {
        return refuse(
            "--update would have to read it to compare it with the destination, and then it is gone; use \
             --no-clobber to leave an existing object alone",
        );
    }
    if args.dry_run && args.expected_size.is_none() {
        return refuse("a dry run plans it from its length, which only --expected-size can tell without reading it");
    }
    Ok(())
}

/// Says so when `--copy-threshold` is above what one CopyObject of the destination copies: the planner lowers it
/// to that limit ([`PlanOptions::copy_threshold_for`]), so larger objects still go as UploadPartCopy.
fn warn_copy_threshold(threshold: Option<u64>, caps: &Capabilities, scheme: Scheme) {
    let Some(t) = threshold else { return };
    let plan = PlanOptions::default().copy_threshold(Some(t));
    if plan.copy_threshold_for(caps) < t {
        tracing::warn!(
            "--copy-threshold {} is above the largest object one CopyObject copies on {}:// ({}): \
             objects larger than that are copied with UploadPartCopy",
            human_bytes(t),
            scheme.name(),
            human_bytes(caps.max_copy_size)
        );
    }
}

/// `--part-size` must be a part the destination takes: a value outside is refused with the range, not adjusted
/// behind the user's back. Where parts are held in memory and `jobs` of them do not fit `--memory-limit`, large
/// files get smaller parts (the planner's rule), and a warning says so and how to keep the size.
fn check_part_size(p: u64, caps: &Capabilities, scheme: Scheme, memory: Option<(usize, u64)>) -> Result<(), Usage> {
    if p < caps.min_part_size || p > caps.max_part_size {
        return Err(Usage(format!(
            "--part-size {}: {}:// takes parts of {} to {}; choose a size in that range",
            human_bytes(p),
            scheme.name(),
            human_bytes(caps.min_part_size),
            human_bytes(caps.max_part_size)
        )));
    }
    if let Some((jobs, limit)) = memory {
        if p.saturating_mul(jobs as u64) > limit {
            tracing::warn!(
                "--part-size {} with --jobs {jobs} would hold {} of parts in memory, above --memory-limit {}: \
                 multipart files get parts of {} instead; raise --memory-limit (or lower --jobs) to keep {}",
                human_bytes(p),
                human_bytes(p.saturating_mul(jobs as u64)),
                human_bytes(limit),
                human_bytes((limit / jobs.max(1) as u64).max(caps.min_part_size)),
                human_bytes(p)
            );
        }
    }
    Ok(())
}

/// The one source object a command names, at `version` when one is given.
fn source_object(bucket: &str, key: &str, version: Option<&str>) -> ObjectRef {
    let obj = ObjectRef::new(bucket, key);
    match version {
        Some(v) => obj.at_version(v),
        None => obj,
    }
}

/// A remote source named without `-r` must be an object: when it is not one but a prefix of others, say to add
/// `-r` (as for a local directory); when it is neither, say so. Either way before any job exists.
async fn single_source_exists(store: &Opened, src: &Location, obj: ObjectRef) -> Result<(), Usage> {
    use transfer_engine::ErrorKind;
    let e = match store.objects.head_object(&obj).await {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::ObjectNotFound => e,
        // Anything else (access, transport) is the job's to report, with its retries.
        Err(_) => return Ok(()),
    };
    if let Some(v) = &obj.version_id {
        return Err(Usage(format!("{src} has no version {v} at {}: {}", store.what, crate::remote::explain(&e))));
    }
    let (bucket, key) = (&obj.bucket, &obj.key);
    let prefix = format!("{key}/");
    let under = ListRequest::default().prefix(Some(prefix)).max_keys(Some(1));
    match store.objects.list_objects(bucket, &under).await {
        Ok(page) if !page.objects.is_empty() || !page.common_prefixes.is_empty() => {
            Err(Usage(format!("{src} is not an object but a prefix of objects; add -r to copy what is under {src}/")))
        }
        _ => Err(Usage(format!("there is no object {src} at {}: {}", store.what, crate::remote::explain(&e)))),
    }
}

/// Opens the destination's store and checks its bucket, creating it first with `--create-bucket`.
async fn open_destination(args: &CpArgs, scheme: Scheme, bucket: &str) -> Result<Opened, Usage> {
    if !args.create_bucket {
        return args.store.open_bucket(scheme, bucket).await;
    }
    let store = args.store.open(scheme)?;
    // A bucket that lists exists: nothing to create, nothing to say (some stores answer a create of an existing
    // bucket of theirs with success, which would read as "created" on every run).
    let one = ListRequest::default().max_keys(Some(1));
    if store.objects.list_objects(bucket, &one).await.is_ok() {
        return Ok(store);
    }
    match store.buckets.create_bucket(bucket).await {
        Ok(()) => tracing::info!("created the bucket {bucket} at {}", store.what),
        Err(e) if e.kind() == transfer_engine::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Usage(format!("cannot create bucket {bucket:?} at {}: {e}", store.what))),
    }
    check_bucket(&store, bucket).await?;
    Ok(store)
}

/// Starts the job the addresses describe.
async fn start(args: &CpArgs, p: &Plan) -> Result<JobHandle, Usage> {
    let start = match (&p.src, &p.dst) {
        _ if args.sync.is_some() => sync_job(args, p)?,
        (Location::Remote { bucket, key, .. }, Location::Path(path)) => download(args, p, bucket, key, path)?,
        (_, Location::Remote { bucket, key, .. }) => upload_or_copy(args, p, bucket, key)?,
        (Location::Path(_), Location::Path(_)) => unreachable!("refused in prepare"),
    };
    // `prepare` checked every bucket the job uses.
    let start = start.note(p.note.clone()).buckets_checked();
    let start = match p.resume {
        Some(job) => start.job(job),
        None => start,
    };
    let handle = start.await?;
    if p.resume.is_none() && !args.dry_run && args.dst != "-" && args.src != STDIN && args.sync.is_none() {
        let (ledger, job) = (p.ledger.clone(), handle.job());
        if let Ok(Some((done, at))) = ledger.off_thread(move |l| l.finished_before(job)).await {
            let how = match (args.update, args.no_clobber) {
                (false, false) if matches!(p.dst, Location::Path(_)) => {
                    "fetches everything again; add --update to skip files already there unchanged"
                }
                (false, false) => "sends everything again; add --update to skip what is already there unchanged",
                _ => "checks each object against what is there",
            };
            tracing::info!(
                "job {done} did this and finished at {}; job {job} is a new run and {how}",
                transfer_engine::xml::iso8601(at)
            );
        }
    }
    Ok(handle)
}

/// The job of an upload (a local source) or a copy (a remote one) into `bucket/dst_key`.
fn upload_or_copy(
    args: &CpArgs,
    p: &Plan,
    bucket: &str,
    dst_key: &str,
) -> Result<transfer_engine::job::JobStart, Usage> {
    Ok(match &p.src {
        Location::Path(_) if args.src == STDIN => p.engine.upload_stream(
            StreamUploadRequest::new(Reader::from_blocking(std::io::stdin()), bucket, dst_key)
                .metadata(p.metadata.clone())
                .tags(p.tags.clone().unwrap_or_default())
                .expected_size(args.expected_size),
        ),
        Location::Path(path) if path.is_dir() => p.engine.upload_dir(
            DirRequest::new(path, bucket, dst_key)
                .metadata(p.metadata.clone())
                .tags(p.tags.clone().unwrap_or_default())
                .filter(p.filter.clone()),
        ),
        Location::Path(path) => {
            let key = if p.dst.is_container() {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| Usage(format!("{} has no UTF-8 file name", path.display())))?;
                format!("{dst_key}{name}")
            } else {
                dst_key.to_owned()
            };
            p.engine.upload_one(
                UploadRequest::new(path, bucket, key)
                    .metadata(p.metadata.clone())
                    .tags(p.tags.clone().unwrap_or_default()),
            )
        }
        Location::Remote { bucket: sb, key: sk, .. } => {
            let (metadata, tags) = copy_directives(args, p)?;
            if p.src.is_container() || args.recursive {
                // `-r oss://b/photos` means the objects under photos/, not photos2/ too.
                let src_prefix = crate::addr::prefix_of(sk);
                p.engine.copy_prefix(
                    PrefixCopyRequest::new(sb, src_prefix, bucket, dst_key)
                        .metadata(metadata)
                        .tags(tags)
                        .filter(p.filter.clone()),
                )
            } else {
                let key = if p.dst.is_container() {
                    format!("{dst_key}{}", sk.rsplit('/').next().unwrap_or(sk))
                } else {
                    dst_key.to_owned()
                };
                let source = source_object(sb, sk, args.version_id.as_deref());
                p.engine.copy_one(CopyRequest::new(source, bucket, key).metadata(metadata).tags(tags))
            }
        }
    })
}

/// Each copied object's metadata and tags: its source's, or with `--*-directive replace` the command's.
fn copy_directives(args: &CpArgs, p: &Plan) -> Result<(Directive<Metadata>, Directive<TagSet>), Usage> {
    let metadata = match (args.metadata_directive, p.explicit_metadata) {
        (DirectiveArg::Replace, _) => Directive::Replace(p.metadata.clone()),
        (DirectiveArg::Copy, true) => {
            return Err(Usage("--meta and content options need --metadata-directive replace for copies".into()))
        }
        (DirectiveArg::Copy, false) => Directive::Copy,
    };
    let tags = match args.tagging_directive {
        DirectiveArg::Replace => Directive::Replace(p.tags.clone().unwrap_or_default()),
        DirectiveArg::Copy if p.tags.is_some() => {
            return Err(Usage("--tag/--tagging need --tagging-directive replace for copies".into()))
        }
        DirectiveArg::Copy => Directive::Copy,
    };
    Ok((metadata, tags))
}

/// The job of `transfer sync`.
fn sync_job(args: &CpArgs, p: &Plan) -> Result<transfer_engine::job::JobStart, Usage> {
    Ok(p.engine.sync(sync_request(args, p)?))
}

/// The engine and the sync request `transfer sync` runs with `args`: how `transfer shard` splits and completes
/// objects exactly as its shards' syncs would write them.
pub(crate) async fn sync_engine(args: &CpArgs) -> Result<(Engine, SyncRequest), Usage> {
    let p = prepare(args, None).await?;
    let req = sync_request(args, &p)?;
    Ok((p.engine, req))
}

/// What `transfer sync` makes like what: SRC and DST as sides (a directory, or a bucket's prefix).
fn sync_request(args: &CpArgs, p: &Plan) -> Result<SyncRequest, Usage> {
    let opts = args.sync.as_ref().expect("a sync's options");
    let side = |l: &Location| match l {
        Location::Path(path) => SyncSide::dir(path),
        Location::Remote { bucket, key, .. } => SyncSide::prefix(bucket, key),
    };
    let (metadata, tags) = match &p.src {
        // Files have no metadata or tags of their own: the command's go on every object.
        Location::Path(_) => {
            (Directive::Replace(p.metadata.clone()), Directive::Replace(p.tags.clone().unwrap_or_default()))
        }
        Location::Remote { .. } => copy_directives(args, p)?,
    };
    let compare = match opts.compare {
        CompareArg::SizeCrc => Compare::SizeCrc,
        CompareArg::SizeMtime => Compare::SizeMtime,
        CompareArg::Size => Compare::Size,
        CompareArg::Etag => Compare::Etag,
    };
    let range = args.shard.clone().map(|(after, upto)| KeyRange::new(after, upto)).unwrap_or_default();
    Ok(SyncRequest::new(side(&p.src), side(&p.dst))
        .range(range)
        .elsewhere(args.elsewhere.iter().cloned().collect())
        .chunks(args.chunks.clone())
        .keys(args.keys.clone())
        .compare(compare)
        .delete(opts.delete)
        .max_delete(opts.max_delete)
        .allow_empty_source(opts.allow_empty_source)
        .metadata(metadata)
        .tags(tags)
        .filter(p.filter.clone()))
}

/// The job of a download of `bucket/key` (an object, or a prefix with -r or a trailing /) to `path`: a file,
/// or a directory the object goes into under its base name.
fn download(
    args: &CpArgs,
    p: &Plan,
    bucket: &str,
    key: &str,
    path: &Path,
) -> Result<transfer_engine::job::JobStart, Usage> {
    if p.src.is_container() || args.recursive {
        let prefix = crate::addr::prefix_of(key);
        return Ok(p.engine.download_prefix(PrefixDownloadRequest::new(bucket, prefix, path).filter(p.filter.clone())));
    }
    let object = source_object(bucket, key, args.version_id.as_deref());
    if path == Path::new("-") {
        return Ok(p.engine.download_stream(StreamRequest::new(object, Writer::new(tokio::io::stdout()))));
    }
    let into_dir = path.is_dir() || p.dst.to_string().ends_with('/');
    let file = match into_dir {
        true => path.join(key.rsplit('/').next().unwrap_or(key)),
        false => path.to_path_buf(),
    };
    Ok(p.engine.download_one(DownloadRequest::new(object, file)))
}

/// The next delivery of `signal`; never, when it could not be installed.
async fn signalled(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal.as_mut() {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs `transfer cp`, or with `resume`, that job of the ledger.
/// A local source must exist (a remote one is checked against its store later); - is stdin.
fn local_source_exists(src: &Location) -> Result<(), Usage> {
    match src {
        Location::Path(p) if !p.exists() && p != Path::new(STDIN) => {
            Err(Usage(format!("{} does not exist", p.display())))
        }
        _ => Ok(()),
    }
}

/// A local source written as a glob (`dir/*.jpg`, `dir/20*/x?.txt`): the directory before the first
/// component with a glob character, and the rest as an include pattern (matched as `--include` matches: a
/// pattern without `/` against names at any depth, one with `/` against the path). `None`: not a glob (or an
/// existing path whose name holds such characters).
fn split_glob(src: &str) -> Result<Option<(String, String)>, Usage> {
    let is_glob = |c: &str| c.contains(['*', '?', '[']);
    if !matches!(Location::parse(src), Ok(Location::Path(_))) || Path::new(src).exists() || !is_glob(src) {
        return Ok(None);
    }
    let parts: Vec<&str> = src.split('/').collect();
    let first = parts.iter().position(|c| is_glob(c)).unwrap_or(parts.len());
    let root = match parts[..first].join("/") {
        r if r.is_empty() && src.starts_with('/') => "/".to_owned(),
        r if r.is_empty() => "./".to_owned(),
        r => format!("{r}/"),
    };
    if !Path::new(&root).is_dir() {
        return Err(Usage(format!("{root} does not exist (the directory of the glob {src})")));
    }
    Ok(Some((root, parts[first..].join("/"))))
}

/// `transfer cp SRC... DST`. Every source is checked before anything moves; each is then its own job (so each
/// resumes on its own), run one after the other. The exit status is the jobs' when they agree, else 3: some
/// are in place and the rest resume.
impl CpArgs {
    /// The arguments of `transfer cp ARGV...` (after `cp`), on the store `store`: how another command (`cat`)
    /// runs a copy with exactly cp's behaviour.
    pub(crate) fn from_argv(argv: Vec<String>, store: StoreArgs) -> Result<CpArgs, Usage> {
        #[derive(clap::Parser)]
        struct Cp {
            #[command(flatten)]
            args: CpArgs,
        }
        let mut args = <Cp as clap::Parser>::try_parse_from(argv).map_err(|e| Usage(e.to_string()))?.args;
        args.store = store;
        Ok(args)
    }
}

pub(crate) async fn run_sources(args: CpArgs, out: OutputArgs) -> u8 {
    let several = args.sources.len() > 1;
    if several && !args.dst.ends_with('/') {
        tracing::error!("{} sources go into a prefix: end the destination with / ({}/)", args.sources.len(), args.dst);
        return EXIT_USAGE;
    }
    let mut jobs = Vec::new();
    for src in &args.sources {
        let mut one = args.clone();
        one.src = src.clone();
        match split_glob(src) {
            Ok(None) => {}
            Ok(Some(_)) if !args.include.is_empty() => {
                tracing::error!(
                    "the glob {src} is a filter as --include is: give the directory and put every pattern in                      --include"
                );
                return EXIT_USAGE;
            }
            Ok(Some((root, pattern))) => {
                one.src = root;
                one.recursive = true;
                one.include = vec![pattern];
            }
            Err(Usage(msg)) => {
                tracing::error!("{msg}");
                return EXIT_USAGE;
            }
        }
        // A malformed address is left to the job's own checks, which name it.
        if let Some(Err(Usage(msg))) = Location::parse(&one.src).ok().map(|src| local_source_exists(&src)) {
            tracing::error!("{msg}");
            return EXIT_USAGE;
        }
        jobs.push(one);
    }
    let mut codes = Vec::new();
    for one in jobs {
        if several {
            tracing::info!("{} -> {}", one.src, one.dst);
        }
        let code = run(one, out, None).await;
        if code == EXIT_CLOSED_PIPE {
            return code;
        }
        codes.push(code);
    }
    match codes.as_slice() {
        [first, rest @ ..] if rest.iter().all(|c| c == first) => *first,
        _ => EXIT_RESUMABLE,
    }
}

pub(crate) async fn run(args: CpArgs, out: OutputArgs, resume: Option<JobId>) -> u8 {
    run_reporting(args, out, resume, &mut None).await
}

/// [`run`], keeping the job's summary in `summary` when it ran (not for a usage error).
pub(crate) async fn run_reporting(
    mut args: CpArgs,
    out: OutputArgs,
    resume: Option<JobId>,
    summary: &mut Option<transfer_engine::job::JobSummary>,
) -> u8 {
    // The destination's store takes --checksum (a recorded job keeps it there).
    args.store.checksum = args.checksum.or(args.store.checksum);
    // One pair of limits for every store of the process (sending, receiving: a relay's source receives under
    // the same limit as a download), moved along its timetable while the job runs.
    let schedule = match args.bwlimit.as_deref().map(crate::bwlimit::Timetable::parse) {
        Some(Ok(t)) => Some(std::sync::Arc::new(t)),
        Some(Err(e)) => {
            tracing::error!("{e}");
            return EXIT_USAGE;
        }
        None => None,
    };
    let (limit, _timetable) = match &schedule {
        Some(t) => {
            let (limit, task) = t.start();
            (Some(limit), task.map(AbortOnDrop))
        }
        None => (None, None),
    };
    args.store.limits = limit;
    args.store.tpslimit = args.tpslimit;
    args.store.traffic_limit = args.traffic_limit.map(|bytes| bytes * 8);
    if args.dst == "-" && out.json {
        tracing::error!("--json writes to stdout, which carries the object's bytes with -; drop --json");
        return EXIT_USAGE;
    }
    let plan = match prepare(&args, resume).await {
        Ok(p) => p,
        Err(Usage(msg)) => {
            tracing::error!("{msg}");
            return EXIT_USAGE;
        }
    };
    // SIGUSR2 toggles the bandwidth limit: listened for before the job starts, so it never meets the signal's
    // default action (ending the process).
    let limit = args
        .store
        .limits
        .clone()
        .zip(schedule)
        .map(|(l, t)| (l, t, tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2()).ok()));
    let handle = match start(&args, &plan).await {
        Ok(h) => h,
        Err(Usage(msg)) => {
            tracing::error!("{msg}");
            return EXIT_USAGE;
        }
    };
    let download = matches!(plan.dst, Location::Path(_));
    let kind = Kind {
        dry_run: args.dry_run,
        download,
        stream: args.dst == "-",
        stdin: args.src == STDIN,
        sync: args.sync.is_some(),
    };
    let code = follow(handle, &plan.ledger, out, kind, limit, summary).await;
    if code == EXIT_EMPTY {
        if args.allow_empty {
            return EXIT_OK;
        }
        let filtered = if plan.filter.is_empty() { "" } else { " that --include/--exclude take" };
        tracing::error!(
            "nothing to copy: {} holds no files or objects{filtered}; check the address, or pass --allow-empty if an \
             empty source is expected",
            plan.src
        );
        return EXIT_FAILED;
    }
    code
}

/// Aborts a background task when dropped (the --bwlimit timetable's, with the job that needs it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What kind of job [`follow`] shows: a dry run, a download (to files or `-`), a stream to stdout.
#[derive(Clone, Copy)]
struct Kind {
    dry_run: bool,
    download: bool,
    stream: bool,
    /// The upload of stdin, which cannot resume.
    stdin: bool,
    sync: bool,
}

/// What [`follow`] answers for a job that found nothing at all (the caller decides: `--allow-empty`).
const EXIT_EMPTY: u8 = u8::MAX;

/// Prints what a dry run found: objects and bytes per action, and the part sizes chosen.
fn dry_run_summary(t: &PlanTally, p: &transfer_engine::job::Progress, failed: usize, out: OutputArgs) -> u8 {
    let bytes: u64 = t.by_action.values().map(|(_, b)| b).sum();
    if out.json {
        let by: serde_json::Map<String, serde_json::Value> =
            t.by_action.iter().map(|(k, (n, b))| ((*k).to_owned(), json!({"objects": n, "bytes": b}))).collect();
        let sizes: Vec<_> = t.part_sizes.iter().map(|(s, n)| json!({"part_size": s, "objects": n})).collect();
        out!(
            "{}",
            json!({"event": "summary", "dry_run": true, "objects": p.objects_planned, "bytes": bytes,
                   "by_action": by, "part_sizes": sizes, "objects_failed": failed})
        );
    } else {
        let by: Vec<String> = t
            .by_action
            .iter()
            .map(|(k, (n, b))| format!("{n} {} ({})", k.replace('_', " "), human_bytes(*b)))
            .collect();
        let sizes: Vec<String> = t.part_sizes.keys().map(|s| human_bytes(*s)).collect();
        out!(
            "plan: {} objects, {}: {}{}; nothing moved",
            p.objects_planned,
            human_bytes(bytes),
            if by.is_empty() { "nothing to do".to_owned() } else { by.join(", ") },
            if sizes.is_empty() { String::new() } else { format!("; part size {}", sizes.join(", ")) },
        );
    }
    if failed > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// What a dry run would do, added up.
#[derive(Default)]
struct PlanTally {
    /// (objects, bytes) per action name.
    by_action: std::collections::BTreeMap<&'static str, (u64, u64)>,
    /// Part sizes chosen, with how many objects use each.
    part_sizes: std::collections::BTreeMap<u64, u64>,
}

impl PlanTally {
    fn add(&mut self, action: &PlannedAction, size: u64) {
        let e = self.by_action.entry(action_name(action)).or_default();
        e.0 += 1;
        e.1 += size;
        if let PlannedAction::Multipart { part_size, .. }
        | PlannedAction::MultipartCopy { part_size, .. }
        | PlannedAction::Download { part_size, parts: 2.. } = action
        {
            *self.part_sizes.entry(*part_size).or_default() += 1;
        }
    }
}

fn action_name(action: &PlannedAction) -> &'static str {
    match action {
        PlannedAction::Put => "put",
        PlannedAction::Multipart { .. } => "multipart",
        PlannedAction::Copy => "copy",
        PlannedAction::MultipartCopy { .. } => "multipart_copy",
        PlannedAction::Download { .. } => "download",
        PlannedAction::Skip(_) => "skip",
        PlannedAction::Delete => "delete",
    }
}

/// Shows a running job until it ends (Ctrl-C once stops it gracefully, twice quits at once), prints its summary,
/// and returns the exit status.
async fn follow(
    mut handle: JobHandle,
    ledger: &Ledger,
    out: OutputArgs,
    Kind { dry_run, download, stream, stdin, sync }: Kind,
    limit: Option<(
        crate::bwlimit::Limits,
        std::sync::Arc<crate::bwlimit::Timetable>,
        Option<tokio::signal::unix::Signal>,
    )>,
    summary_out: &mut Option<transfer_engine::job::JobSummary>,
) -> u8 {
    let job = handle.job();
    let resume_hint = match stdin {
        false => format!("run `transfer resume {job}` (or the same command again) to continue"),
        true => "a stream cannot be read twice, so it does not resume: run the whole pipeline again; \
                 `transfer cleanup` aborts any upload an interrupted run left"
            .to_owned(),
    };
    // What an unfinished job's exit status is: resumable (3), but for a stream, which cannot resume.
    let unfinished = if stdin { EXIT_FAILED } else { EXIT_RESUMABLE };
    let mut interrupts = 0;
    let mut crc_verified = true;
    // Every object this run wrote had its bytes checked by something (a CRC-64, an MD5).
    let mut all_verified = true;
    let mut planned = PlanTally::default();
    let mut display = ProgressDisplay::new(if dry_run { OutputArgs { quiet: true, ..out } } else { out });
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    // Registered once, before the job's first event; if it cannot be registered, Ctrl-C keeps its default effect.
    // Ctrl-C, or SIGTERM (what Kubernetes and Slurm send before they kill): stop as a user would.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    // SIGUSR2 turns the bandwidth limit off, and on again (as rclone's does).
    let (limit, mut sigusr2) = match limit {
        Some((l, t, signal)) => (Some((l, t)), signal),
        None => (None, None),
    };
    loop {
        tokio::select! {
            event = handle.next_event() => match event {
                None => break,
                Some(Event::Done { key, outcome }) => {
                    if let Some((first, last)) = outcome.chunk {
                        let (sent, reused) = outcome.parts();
                        if out.json {
                            out!("{}", json!({"event": "chunk", "key": key, "first_part": first, "last_part": last,
                                              "bytes": outcome.size, "parts_sent": sent, "parts_reused": reused}));
                        } else {
                            tracing::info!("parts {first}-{last} of {key} are on the server ({sent} sent, {reused} there already)");
                        }
                        continue;
                    }
                    let (crc, skipped) = (outcome.crc64, outcome.skipped);
                    // Every object this run moved had its CRC-64 checked (earlier runs checked theirs).
                    if skipped.is_none() && !outcome.already_done {
                        crc_verified &= crc.is_some();
                        all_verified &= outcome.verified.any();
                    }
                    let (sent, reused) = outcome.parts();
                    if outcome.source_changed && !out.json {
                        tracing::info!("{key}: the source changed since an earlier run started on it; it was sent again");
                    }
                    if out.json {
                        out!("{}", json!({
                            "event": "done", "key": key, "bytes": outcome.size, "already_done": outcome.already_done,
                            "skipped": skipped.map(|r| r.to_string()),
                            "parts_sent": sent, "parts_reused": reused, "crc64": crc.map(|c| c.to_string()),
                            "source_changed": outcome.source_changed,
                            "blake3": Some(&outcome.blake3).filter(|b| !b.is_empty()),
                            "verified": {
                                "crc64": outcome.verified.crc64,
                                "md5": outcome.verified.md5,
                                "checksum": outcome.verified.checksum,
                                "blake3": outcome.verified.blake3,
                            },
                        }));
                    } else if let (Some(SkipReason::Unchanged), true) = (skipped, sync) {
                        // A sync's unchanged entries are most of every run after the first: not news.
                        tracing::debug!("unchanged {key}");
                    } else if let Some(reason) = skipped {
                        tracing::info!("skipped {key}: {reason}");
                    } else if outcome.already_done {
                        tracing::debug!("{key}: already there ({})", human_bytes(outcome.size));
                    } else if display.live() {
                        tracing::debug!("done {key} ({})", human_bytes(outcome.size));
                    } else {
                        tracing::info!("done {key} ({})", human_bytes(outcome.size));
                    }
                }
                Some(Event::Planned { key, plan }) => {
                    planned.add(&plan.action, plan.size);
                    let (part_size, parts) = match plan.action {
                        PlannedAction::Multipart { part_size, parts } | PlannedAction::MultipartCopy { part_size, parts } | PlannedAction::Download { part_size, parts } => (Some(part_size), Some(parts)),
                        _ => (None, None),
                    };
                    if out.json {
                        out!("{}", json!({
                            "event": "planned", "key": key, "bucket": plan.bucket, "source": plan.source, "bytes": plan.size,
                            "action": action_name(&plan.action), "part_size": part_size, "parts": parts,
                            "reason": match plan.action { PlannedAction::Skip(r) => Some(r.to_string()), _ => None },
                        }));
                    } else {
                        let how = match plan.action {
                            PlannedAction::Put => "PUT".to_owned(),
                            PlannedAction::Copy => "COPY".to_owned(),
                            PlannedAction::Multipart { part_size, parts } => format!("MULTIPART {parts} x {}", human_bytes(part_size)),
                            PlannedAction::MultipartCopy { part_size, parts } => format!("PART-COPY {parts} x {}", human_bytes(part_size)),
                            PlannedAction::Download { parts: 1, .. } => "GET".to_owned(),
                            PlannedAction::Download { part_size, parts } => format!("GET {parts} x {}", human_bytes(part_size)),
                            PlannedAction::Skip(r) => format!("SKIP ({r})"),
                            PlannedAction::Delete => "DELETE".to_owned(),
                        };
                        // A download's destination is a file: its path, in `key`.
                        let to = if plan.bucket.is_empty() { plan.key.clone() } else { format!("{}/{key}", plan.bucket) };
                        match plan.source.as_str() {
                            "" => out!("{how:<24} {:>12}  {to}", human_bytes(plan.size)),
                            from => out!("{how:<24} {:>12}  {to}  <- {from}", human_bytes(plan.size)),
                        }
                    }
                }
                Some(Event::Deleted { key, delete_marker }) => {
                    if out.json {
                        out!("{}", json!({"event": "deleted", "key": key, "delete_marker": delete_marker}));
                    } else if delete_marker {
                        tracing::info!("deleted {key} (a delete marker: the bucket keeps its versions)");
                    } else {
                        tracing::info!("deleted {key}");
                    }
                }
                // The reader of a streamed download went away: stop quietly, as a program killed by SIGPIPE.
                Some(Event::Failed { error, .. }) if stream && transfer_engine::job::is_closed_output(&error) => {
                    display.finish();
                    return EXIT_CLOSED_PIPE;
                }
                Some(Event::Failed { key, error }) => {
                    let (kind, code) = (error.kind().to_string(), error.service_code().map(str::to_owned));
                    let error = crate::remote::explain(&error);
                    if out.json {
                        out!("{}", json!({"event": "failed", "key": key, "kind": kind, "code": code, "error": error}));
                    }
                    tracing::error!("failed {key}: {error}");
                }
            },
            _ = tick.tick() => display.update(&handle.progress()),
            Some(()) = async { match sigusr2.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                if let Some((limits, table)) = &limit {
                    if limits.on() {
                        limits.set(crate::bwlimit::Rates { up: None, down: None });
                        tracing::warn!("bandwidth limit off (SIGUSR2 turns it on again)");
                    } else {
                        let rates = table.rate_now();
                        limits.set(rates);
                        tracing::warn!("bandwidth limit on again: {rates} (SIGUSR2 turns it off)");
                    }
                }
            }
            Some(()) = async { tokio::select! { s = signalled(&mut sigint) => s, s = signalled(&mut sigterm) => s } } => {
                interrupts += 1;
                if interrupts == 1 {
                    tracing::warn!("stopping: parts in flight finish and are recorded (Ctrl-C again to quit now)");
                    handle.stop();
                } else {
                    display.finish();
                    // Every part acknowledged so far is in the ledger's writer queue: commit it before leaving
                    // (bounded, so a wedged disk cannot keep the process from quitting).
                    let flushed = tokio::time::timeout(Duration::from_secs(5), ledger.flush()).await;
                    if !matches!(flushed, Ok(Ok(()))) {
                        eprintln!("warning: could not flush the ledger; parts acknowledged in the last moments will be sent again");
                    }
                    eprintln!("stopped now; {resume_hint}");
                    std::process::exit(unfinished.into());
                }
            }
        }
    }
    display.finish();
    let summary = match handle.wait().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("job {job}: {e}");
            return EXIT_FAILED;
        }
    };
    *summary_out = Some(summary.clone());
    let p = &summary.progress;
    if summary.state == JobState::Done && p.listing_finished && p.objects_found == 0 && p.objects_deleted == 0 {
        // A job that found nothing is no job: the ledger keeps no trace of it.
        if !dry_run {
            let id = summary.job;
            if let Err(e) = ledger.off_thread(move |l| l.forget_job(id)).await {
                tracing::debug!("could not forget the empty job {id}: {e}");
            }
        }
        return EXIT_EMPTY;
    }
    if dry_run {
        return dry_run_summary(&planned, p, summary.failures.len(), out);
    }
    // A full disk is no failure of the objects: once there is room, the same command goes on.
    let disk_full = summary.failures.iter().any(|(_, e)| e.kind() == transfer_engine::ErrorKind::InsufficientStorage);
    let (code, state) = match summary.state {
        JobState::Done => (EXIT_OK, "done"),
        JobState::Stopped => (unfinished, "stopped"),
        _ if disk_full => (unfinished, "stopped on a full disk"),
        // Nothing of the job is in place: it failed (running it again still resumes what it can).
        _ if p.objects_done
            + p.objects_already_done
            + p.objects_skipped
            + p.objects_settled_earlier
            + p.chunks_done
            == 0 =>
        {
            (EXIT_FAILED, "failed")
        }
        _ => (EXIT_RESUMABLE, "partly failed"),
    };
    if out.json {
        out!(
            "{}",
            json!({
                "event": "summary", "job": summary.job.0, "state": state,
                "objects_transferred": p.objects_done, "objects_skipped": p.objects_already_done + p.objects_skipped,
                "objects_already_done": p.objects_already_done, "objects_failed": p.objects_failed,
                "objects_unchanged": p.objects_skipped, "objects_deleted": p.objects_deleted,
                "chunks_done": p.chunks_done, "chunks_failed": p.chunks_failed,
                "deletions_withheld": summary.deletions_withheld,
                "requests_retried": p.requests_retried, "requests_throttled": p.requests_throttled,
                "slowed_seconds": p.slowed.as_secs_f64(),
                "bytes_transferred": p.bytes_acknowledged, "bytes_reused": p.bytes_reused,
                "bytes_sent": p.bytes_acknowledged.saturating_sub(p.bytes_reused),
                "duration_secs": p.elapsed.as_secs_f64(),
                "crc64_verified": crc_verified && p.objects_failed == 0,
                "verified": all_verified && p.objects_failed == 0,
                "ledger": ledger.path().display().to_string(),
            })
        );
    } else if !(out.quiet && code == EXIT_OK) {
        // A short table, as rclone ends: objects, bytes (what this run sent apart from what an earlier one had
        // delivered), retries, time.
        let earlier = match p.objects_already_done {
            0 => String::new(),
            n => format!(" ({n} done by an earlier run)"),
        };
        if sync {
            let chunks = match (p.chunks_done, p.chunks_failed) {
                (0, 0) => String::new(),
                (done, failed) => format!("; chunks of split objects: {done} in place, {failed} failed"),
            };
            eprintln!(
                "{state}: {} copied, {} unchanged{earlier}, {} deleted, {} failed{chunks} (job {job})",
                p.objects_done,
                p.objects_already_done + p.objects_skipped,
                p.objects_deleted,
                p.objects_failed,
            );
        } else {
            eprintln!(
                "{state}: {} objects transferred, {} skipped{earlier}, {} failed (job {job})",
                p.objects_done,
                p.objects_already_done + p.objects_skipped,
                p.objects_failed,
            );
        }
        let sent = p.bytes_acknowledged.saturating_sub(p.bytes_reused);
        let mut bytes = match download {
            true => format!(
                "{} written: {} received at {}/s",
                human_bytes(p.bytes_acknowledged),
                human_bytes(sent),
                human_bytes(p.bytes_per_second as u64)
            ),
            false => format!(
                "{} acknowledged: {} sent at {}/s",
                human_bytes(p.bytes_acknowledged),
                human_bytes(sent),
                human_bytes(p.bytes_per_second as u64)
            ),
        };
        if p.bytes_reused > 0 {
            bytes.push_str(&format!(", {} delivered by an earlier run", human_bytes(p.bytes_reused)));
        }
        eprintln!("  bytes:    {bytes}");
        eprintln!("  retried:  {} requests", p.requests_retried);
        if p.requests_throttled > 0 {
            eprintln!(
                "  throttled: {} requests; the endpoint's requests were slowed together for {:.1}s",
                p.requests_throttled,
                p.slowed.as_secs_f64()
            );
        }
        eprintln!("  elapsed:  {:.1}s", p.elapsed.as_secs_f64());
        for (key, error) in &summary.failures {
            eprintln!("  failed {key}: {error}");
        }
    }
    if summary.deletions_withheld > 0 && summary.state == JobState::Stopped {
        eprintln!(
            "--max-delete reached: {} more to delete; the same command lists both sides again and goes on",
            summary.deletions_withheld
        );
    } else if code != EXIT_OK {
        eprintln!("{resume_hint}");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cp: CpArgs,
    }

    fn parse(args: &[&str]) -> CpArgs {
        let mut cp = Cli::try_parse_from(["cp"].iter().chain(args)).unwrap().cp;
        cp.src = cp.sources[0].clone();
        cp
    }

    #[test]
    fn a_job_reads_back_as_the_command_that_runs_it() {
        let mut cp = parse(&["-r", "--tag", "a=b c", "--part-size", "8MiB", "--jobs", "16", "./d/", "oss://bkt/p/"]);
        cp.src = "/home/me/my photos/".into();
        assert_eq!(
            cp.command_line(),
            "transfer cp '/home/me/my photos/' oss://bkt/p/ --jobs 16 --part-size 8MiB --recursive --tag 'a=b c'"
        );
        assert_eq!(parse(&["a", "oss://bkt/k"]).command_line(), "transfer cp a oss://bkt/k");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn a_glob_becomes_a_directory_and_an_include() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("photos/2025")).unwrap();
        let glob = format!("{}/photos/*.jpg", dir.path().display());
        let (root, pattern) = split_glob(&glob).unwrap().unwrap();
        assert_eq!((root, pattern.as_str()), (format!("{}/photos/", dir.path().display()), "*.jpg"));
        let deeper = format!("{}/photos/20*/*.jpg", dir.path().display());
        assert_eq!(split_glob(&deeper).unwrap().unwrap().1, "20*/*.jpg");
        assert!(split_glob(&format!("{}/photos", dir.path().display())).unwrap().is_none(), "no glob");
        assert!(split_glob("oss://bkt/*.jpg").unwrap().is_none(), "remote addresses are not globbed here");
        let missing = split_glob(&format!("{}/nowhere/*.jpg", dir.path().display())).unwrap_err();
        assert!(missing.0.contains("nowhere") && missing.0.contains("does not exist"), "{}", missing.0);
    }

    #[test]
    fn the_copy_threshold_is_recorded_as_given_and_an_unset_one_stays_unset() {
        let unset = parse(&["oss://bkt/k", "oss://bkt/k2"]);
        assert_eq!(unset.copy_threshold, None);
        let recorded = unset.recorded().unwrap();
        assert_eq!(CpArgs::from_recorded(&recorded).unwrap().copy_threshold, None, "{recorded}");
        let set = parse(&["--copy-threshold", "8MiB", "s3://bkt/k", "s3://bkt/k2"]);
        assert_eq!(set.copy_threshold, Some(8 << 20));
        assert_eq!(CpArgs::from_recorded(&set.recorded().unwrap()).unwrap().copy_threshold, Some(8 << 20));
        // Jobs recorded before the threshold could be unset carry the old default, 1 GiB: they keep it (their
        // ledger rows were planned with it), and a record without the field means no threshold.
        let mut old: serde_json::Value = serde_json::from_str(&recorded).unwrap();
        old["cp"]["copy_threshold"] = json!(1u64 << 30);
        assert_eq!(CpArgs::from_recorded(&old.to_string()).unwrap().copy_threshold, Some(1 << 30));
        old["cp"].as_object_mut().unwrap().remove("copy_threshold");
        assert_eq!(CpArgs::from_recorded(&old.to_string()).unwrap().copy_threshold, None);
    }
}
