//! `transfer shard`: a migration larger than one machine, cut into shards that an engine operators already run
//! executes (a Kubernetes Indexed Job, a Slurm job array, an AWS Batch array job), never a scheduler of ours.
//!
//! - `shard plan SRC DST --shards M --plan LOC` lists SRC once (a bucket's prefix, the prefixes under it 16 at
//!   a time, or a directory) and cuts it
//!   into at most M contiguous key ranges balanced by weight (bytes, plus 64 KiB per object for its requests):
//!   ranges, not a hash of the key, so each shard lists only its own range. The plan (JSON) records the ranges
//!   and the options every shard runs with, and is written create-only to LOC: a directory every worker sees, or
//!   a prefix in a bucket (`oss://b/_plans/mig-1/`).
//! - `shard run LOC [--index I]` (the index otherwise from `JOB_COMPLETION_INDEX`, `SLURM_ARRAY_TASK_ID` or
//!   `AWS_BATCH_JOB_ARRAY_INDEX`) runs one range as a sync (`transfer sync` limited to the range: what the
//!   destination lacks or holds differently is copied, what it holds already is not), with its own ledger, so a
//!   killed shard rerun goes on where it stopped. It writes `shards/I/result.json` after every attempt, and once
//!   every entry of the range settled without failure, `shards/I/DONE`, create-only: of two attempts of one index
//!   running at once (Kubernetes may start a replacement before the first is gone), both copy the same bytes to
//!   the same keys and one DONE is written. A shard whose DONE exists exits 0 at once.
//! - An object at least `--split-above` that the destination lacks is split (`Engine::split`): the planner
//!   initiates its upload, its parts go in contiguous chunks to
//!   different shards (each sends only those, `SyncRequest::chunks`), every shard passes over its key, and the
//!   merge completes it.
//! - `shard merge LOC` checks that every index is DONE and that each shard's counts add up (copied + unchanged +
//!   failed = listed), completes the split objects from ListParts checked against the chunks' receipts, and
//!   writes `report/summary.json` and `report/failed.csv` (shaped like an S3 Batch Operations completion report)
//!   beside the plan. `shard status LOC` shows where every index is; `shard abort LOC` aborts the split
//!   objects' uploads.

use crate::addr::Location;
use crate::cp::{CpArgs, SyncArgs};
use crate::output::OutputArgs;
use crate::remote::{Opened, StoreArgs};
use crate::{Usage, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use clap::{Args, Subcommand};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use transfer_engine::checkpoint::{Ledger, ObjectState};
use transfer_engine::job::JobSummary;
use transfer_engine::job::{Chunk, SourceVersion, Split, Splitting};
use transfer_engine::store::{ListRequest, ObjectRef, PutOptions};
use transfer_engine::store::{PartNumber, PartReceipt, Upload, UploadId};
use transfer_engine::{ErrorKind, TagSet};

/// The plan's format, checked by every shard.
const FORMAT: &str = "transfer-plan/1";
/// What an object weighs besides its bytes when ranges are balanced: its requests.
const OBJECT_WEIGHT: u64 = 64 * 1024;
/// Where the index comes from when `--index` is not given, in this order.
const INDEX_VARIABLES: [&str; 3] = ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID", "AWS_BATCH_JOB_ARRAY_INDEX"];
/// The most keys the planner keeps to cut at (every k-th beyond that): its memory stays bounded.
const MAX_SAMPLES: usize = 1 << 20;

/// `transfer shard`.
#[derive(Debug, Subcommand)]
pub(crate) enum ShardCommand {
    /// List SRC once and cut it into key ranges balanced by bytes; write the plan to --plan.
    Plan(Box<PlanArgs>),
    /// Run one shard of a plan (its index from --index, JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or
    /// AWS_BATCH_JOB_ARRAY_INDEX): a sync of its key range, resumable; DONE (create-only) when it is whole.
    Run(RunArgs),
    /// Check that every shard is DONE and its counts add up; write report/summary.json and report/failed.csv.
    Merge(LocArgs),
    /// Show which shards are done, failed or not started.
    Status(LocArgs),
    /// Abort the multipart uploads the plan initiated for its split objects.
    Abort(LocArgs),
}

/// Options of `transfer shard plan`: SRC DST and every option of `transfer sync` (each shard runs with them).
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    sync: SyncArgs,
    /// How many shards (at most: never more than there are keys). About 3-4 times the workers that run at once,
    /// so the engine's scheduling balances what the plan could not.
    #[arg(long)]
    shards: u32,
    /// Where the plan goes, create-only: a directory every worker sees, or oss://, s3://, local://BUCKET/PREFIX/
    /// (outside the source's range).
    #[arg(long, value_name = "DIR|URL")]
    plan: String,
    /// Objects at least this large (into a bucket) are split: the planner initiates each one's multipart upload,
    /// its parts are sent in ranges by several shards, and `shard merge` completes it. [default: half a shard's
    /// bytes, at least 64MiB]
    #[arg(long, value_name = "SIZE", value_parser = crate::addr::parse_size)]
    split_above: Option<u64>,
    /// Plan only the keys in this file (- for stdin) instead of listing SRC: one key relative to SRC per line,
    /// URL-encoded, as `shard merge` writes report/retry.txt. Each shard asks for each of its keys (HEAD, stat)
    /// rather than listing its range.
    #[arg(long, value_name = "FILE")]
    files_from: Option<PathBuf>,
}

/// Options of `transfer shard run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    loc: LocArgs,
    /// The shard to run [default: $JOB_COMPLETION_INDEX, $SLURM_ARRAY_TASK_ID or $AWS_BATCH_JOB_ARRAY_INDEX].
    #[arg(long)]
    index: Option<u32>,
    /// This shard's ledger (default: $TRANSFER_LEDGER, else $XDG_STATE_HOME/transfer/ledger.db).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

/// Where a plan is, and how to reach it.
#[derive(Debug, Args)]
pub(crate) struct LocArgs {
    /// The plan: the directory or oss://, s3://, local://BUCKET/PREFIX/ `shard plan --plan` wrote it to.
    #[arg(value_name = "PLAN")]
    plan: String,
    #[command(flatten)]
    store: StoreArgs,
}

/// The plan, as written.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    format: String,
    /// Unix seconds.
    created: i64,
    source: String,
    destination: String,
    /// The options every shard runs with: `transfer sync`'s, as a job records them.
    options: String,
    /// What the listing found.
    listed: Totals,
    shards: Vec<Range>,
    /// Objects cut into part ranges across shards: in no range (every shard passes over their keys).
    #[serde(default)]
    splits: Vec<SplitPlan>,
    /// A plan from a manifest (`--files-from`): the only keys the shards take, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<String>>,
}

/// An object the planner split: its upload, initiated, and which shard sends which parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SplitPlan {
    /// The key relative to both sides.
    key: String,
    upload_id: String,
    size: u64,
    part_size: u64,
    parts: u32,
    /// The source's version: an object's ETag, or a file's modification time (ns, decimal).
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtime_ns: Option<String>,
    /// The source's CRC-64 (decimal), when its store reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    crc64: Option<String>,
    /// Tags the merge applies after completing (a tagging header), when tags go on on complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<String>,
    chunks: Vec<ChunkPlan>,
}

/// Parts `first..=last` of a split object, sent by shard `shard`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ChunkPlan {
    shard: u32,
    first: u32,
    last: u32,
}

impl SplitPlan {
    fn split(&self) -> Result<Split, Usage> {
        let bad = || Usage(format!("the plan's split of {} cannot be read", self.key));
        let version = match (&self.etag, &self.mtime_ns) {
            (Some(etag), _) => SourceVersion::Object { etag: etag.clone() },
            (None, Some(m)) => SourceVersion::File { size: self.size, mtime_ns: m.parse().map_err(|_| bad())? },
            (None, None) => return Err(bad()),
        };
        let crc64 = self.crc64.as_deref().map(str::parse).transpose().map_err(|_| bad())?;
        let tags = self.tags.as_deref().map(TagSet::parse_header).transpose().map_err(|_| bad())?;
        let split = Split::new(UploadId::new(&self.upload_id), self.size, self.part_size, version);
        if split.parts != self.parts {
            return Err(bad());
        }
        Ok(split.crc64(crc64).tags(tags))
    }

    fn chunk(&self, c: &ChunkPlan) -> Result<Chunk, Usage> {
        Ok(Chunk::new(&self.key, self.split()?, c.first, c.last))
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct Totals {
    objects: u64,
    bytes: u64,
}

/// One shard: the relative keys in `(after, upto]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Range {
    index: u32,
    after: Option<String>,
    upto: Option<String>,
    /// What the planner's listing found in it.
    objects: u64,
    bytes: u64,
    /// Bytes of split objects' parts the shard sends besides.
    #[serde(default)]
    chunk_bytes: u64,
}

/// What one attempt of a shard came to (`result.json`, and `DONE` when whole).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShardResult {
    index: u32,
    /// Which attempt: host and process.
    attempt: String,
    /// `done`, `stopped` or `failed`.
    state: String,
    /// Source entries in the range.
    listed: u64,
    copied: u64,
    unchanged: u64,
    failed: u64,
    /// Entries an earlier, interrupted attempt of the shard settled (copied or found unchanged) before the
    /// point this one went on from.
    settled_earlier: u64,
    bytes_copied: u64,
    /// Unix seconds.
    finished: i64,
    failures: Vec<Failure>,
    /// The parts of split objects this shard sent, as the server acknowledged them.
    #[serde(default)]
    chunks: Vec<ChunkResult>,
}

/// One chunk's parts, for the merge to check ListParts against.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkResult {
    key: String,
    upload_id: String,
    first: u32,
    last: u32,
    parts: Vec<PartResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartResult {
    number: u32,
    size: u64,
    etag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    crc64: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Failure {
    key: String,
    code: String,
    message: String,
}

/// Where a plan and its results live: a directory, or a prefix in a bucket.
enum PlanStore {
    Dir(PathBuf),
    Remote { store: Opened, bucket: String, prefix: String, url: String },
}

impl PlanStore {
    async fn open(loc: &str, store: &StoreArgs) -> Result<PlanStore, Usage> {
        Ok(match Location::parse(loc)? {
            Location::Path(p) => PlanStore::Dir(std::path::absolute(&p)?),
            Location::Remote { scheme, bucket, key } => {
                let prefix = crate::addr::prefix_of(&key);
                let url = format!("{}://{bucket}/{prefix}", scheme.name());
                PlanStore::Remote { store: store.open_bucket(scheme, &bucket).await?, bucket, prefix, url }
            }
        })
    }

    fn name(&self, file: &str) -> String {
        match self {
            PlanStore::Dir(d) => d.join(file).display().to_string(),
            PlanStore::Remote { url, .. } => format!("{url}{file}"),
        }
    }

    /// The file's bytes; `None` when there is none.
    async fn get(&self, file: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            PlanStore::Dir(d) => match std::fs::read(d.join(file)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read {}: {e}", self.name(file))),
            },
            PlanStore::Remote { store, bucket, prefix, .. } => {
                let obj = ObjectRef::new(bucket, format!("{prefix}{file}"));
                match store.objects.get_object(&obj, None).await {
                    Ok(got) => got.bytes().await.map(|b| Some(b.to_vec())).map_err(|e| e.to_string()),
                    Err(e) if e.kind() == ErrorKind::ObjectNotFound => Ok(None),
                    Err(e) => Err(format!("cannot read {}: {e}", self.name(file))),
                }
            }
        }
    }

    /// Writes the file; with `create_only`, only if there is none (false: there was one, left as it was). A
    /// reader never sees half of it: a temporary file linked into place, or one PUT.
    async fn put(&self, file: &str, bytes: Vec<u8>, create_only: bool) -> Result<bool, String> {
        let failed = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", self.name(file));
        match self {
            PlanStore::Dir(d) => {
                let path = d.join(file);
                let dir = path.parent().unwrap_or(d);
                std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
                let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tmp = dir.join(format!(".{base}.{}-{}.tmp", hostname(), std::process::id()));
                let written = (|| {
                    let mut f = std::fs::File::create(&tmp)?;
                    std::io::Write::write_all(&mut f, &bytes)?;
                    f.sync_all()
                })();
                let placed = written.and_then(|()| match create_only {
                    // A hard link is made whole or not at all, and never over an existing name.
                    true => match std::fs::hard_link(&tmp, &path) {
                        Ok(()) => Ok(true),
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                        Err(e) => Err(e),
                    },
                    false => std::fs::rename(&tmp, &path).map(|()| true),
                });
                let _ = std::fs::remove_file(&tmp);
                placed.map_err(|e| failed(&e))
            }
            PlanStore::Remote { store, bucket, prefix, .. } => {
                let mut opts = PutOptions::default();
                opts.forbid_overwrite = create_only;
                let key = format!("{prefix}{file}");
                match store.objects.put_object(bucket, &key, bytes.into(), &opts).await {
                    Ok(_) => Ok(true),
                    Err(e) if create_only && e.kind() == ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(failed(&e)),
                }
            }
        }
    }

    async fn plan(&self) -> Result<Plan, Usage> {
        let bytes = self.get("plan.json").await.map_err(Usage)?.ok_or_else(|| {
            Usage(format!("there is no plan at {}: write one with `transfer shard plan`", self.name("")))
        })?;
        let plan: Plan = serde_json::from_slice(&bytes)
            .map_err(|e| Usage(format!("{} is not a plan transfer can read: {e}", self.name("plan.json"))))?;
        if plan.format != FORMAT {
            return Err(Usage(format!(
                "{} is a plan of format {:?}; this transfer reads {FORMAT:?}",
                self.name("plan.json"),
                plan.format
            )));
        }
        Ok(plan)
    }
}

/// Runs `transfer shard`.
pub(crate) async fn run(cmd: ShardCommand, out: OutputArgs) -> u8 {
    let result = match cmd {
        ShardCommand::Plan(args) => plan(*args, out).await,
        ShardCommand::Run(args) => run_shard(args, out).await,
        ShardCommand::Merge(args) => merge(args, out).await,
        ShardCommand::Status(args) => status(args, out).await,
        ShardCommand::Abort(args) => abort(args, out).await,
    };
    match result {
        Ok(code) => code,
        Err(Usage(msg)) => {
            tracing::error!("{msg}");
            EXIT_USAGE
        }
    }
}

/// Keys kept to cut at, with the weight of everything up to and including each: every `stride`-th key listed,
/// the stride doubling whenever there are too many, so memory stays bounded whatever the source holds.
struct Cuts {
    samples: Vec<(String, u64, u64, u64)>,
    stride: u64,
    seen: u64,
    totals: Totals,
    weight: u64,
    rule: SplitRule,
    /// Objects that may be large enough to split, in key order: those at least the rule's threshold for the
    /// weight listed so far (the final threshold is no lower), so at most about 2 × shards of them are held.
    big: Vec<(String, u64)>,
}

impl Default for Cuts {
    fn default() -> Self {
        Cuts::new(SplitRule::default())
    }
}

/// Which objects a plan splits.
#[derive(Debug, Clone, Copy, Default)]
struct SplitRule {
    /// `--split-above`.
    above: Option<u64>,
    /// The shards asked for; 0 or 1: nothing is split.
    shards: u64,
}

/// The smallest object split by default.
const MIN_SPLIT: u64 = 64 << 20;

impl SplitRule {
    /// The size from which an object is split once `weight` is listed: `--split-above`, else half a shard's
    /// share of it (at least [`MIN_SPLIT`]); `None`: nothing is split.
    fn threshold(&self, weight: u64) -> Option<u64> {
        (self.shards > 1).then(|| self.above.unwrap_or_else(|| MIN_SPLIT.max(weight / (2 * self.shards))))
    }
}

impl Cuts {
    fn new(rule: SplitRule) -> Cuts {
        Cuts { samples: Vec::new(), stride: 1, seen: 0, totals: Totals::default(), weight: 0, rule, big: Vec::new() }
    }

    /// Drops the candidates below the threshold for what is listed now, when they became many.
    fn prune(&mut self, always: bool) {
        let Some(t) = self.rule.threshold(self.weight) else { return };
        if always || self.big.len() as u64 > 4 * self.rule.shards + 64 {
            self.big.retain(|(_, size)| *size >= t);
        }
    }

    /// The objects to split (of those listed, in key order).
    fn take_split(&mut self) -> Vec<(String, u64)> {
        self.prune(true);
        std::mem::take(&mut self.big)
    }

    /// The cut points without the objects `split` (sorted by key), which go to no range.
    fn without(mut self, split: &[(String, u64)]) -> Cuts {
        if split.is_empty() {
            return self;
        }
        let (mut i, mut gone) = (0, (0u64, 0u64, 0u64));
        for (key, weight, objects, bytes) in &mut self.samples {
            while i < split.len() && split[i].0 <= *key {
                gone = (gone.0 + split[i].1 + OBJECT_WEIGHT, gone.1 + 1, gone.2 + split[i].1);
                i += 1;
            }
            (*weight, *objects, *bytes) = (*weight - gone.0, *objects - gone.1, *bytes - gone.2);
        }
        for (_, size) in split {
            self.weight -= size + OBJECT_WEIGHT;
            self.totals.objects -= 1;
            self.totals.bytes -= size;
        }
        self
    }
    /// Keeps a cut point, halving what is kept (and doubling the stride) when there are too many.
    fn keep(&mut self, sample: (String, u64, u64, u64)) {
        self.samples.push(sample);
        if self.samples.len() >= MAX_SAMPLES {
            self.stride *= 2;
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 0
            });
        }
    }

    /// `other`, listed after everything in `self`, appended.
    fn append(&mut self, other: Cuts) {
        for (key, weight, objects, bytes) in other.samples {
            let sample = (key, self.weight + weight, self.totals.objects + objects, self.totals.bytes + bytes);
            self.keep(sample);
        }
        self.totals.objects += other.totals.objects;
        self.totals.bytes += other.totals.bytes;
        self.weight += other.weight;
        self.seen += other.seen;
        self.big.extend(other.big);
        self.prune(false);
    }

    fn add(&mut self, rel: &str, size: u64) {
        self.totals.objects += 1;
        self.totals.bytes += size;
        self.weight += size + OBJECT_WEIGHT;
        self.seen += 1;
        if self.rule.threshold(self.weight).is_some_and(|t| size >= t) {
            self.big.push((rel.to_owned(), size));
            self.prune(false);
        }
        if self.seen.is_multiple_of(self.stride) {
            self.keep((rel.to_owned(), self.weight, self.totals.objects, self.totals.bytes));
        }
    }

    /// At most `m` ranges covering every key, each ending where the weight listed reaches its share.
    fn ranges(self, m: u32) -> Vec<Range> {
        let mut ranges = Vec::new();
        let mut after: Option<String> = None;
        let (mut done_objects, mut done_bytes) = (0, 0);
        let mut next = 1u64;
        let m = u64::from(m.max(1));
        // Never at the last key: the last range holds it, and whatever is added past it after the plan. Nothing to
        // weigh (every object split): one range.
        let cuttable = if self.weight == 0 { 0 } else { self.samples.len().saturating_sub(1) };
        for (key, weight, objects, bytes) in &self.samples[..cuttable] {
            if next >= m {
                break;
            }
            if u128::from(*weight) * u128::from(m) >= u128::from(next) * u128::from(self.weight) {
                ranges.push(Range {
                    index: ranges.len() as u32,
                    after: after.clone(),
                    upto: Some(key.clone()),
                    objects: objects - done_objects,
                    bytes: bytes - done_bytes,
                    chunk_bytes: 0,
                });
                (done_objects, done_bytes) = (*objects, *bytes);
                after = Some(key.clone());
                // A single heavy key may cover several shares: the next cut is past all of them.
                next = (u128::from(*weight) * u128::from(m) / u128::from(self.weight.max(1))) as u64 + 1;
            }
        }
        ranges.push(Range {
            index: ranges.len() as u32,
            after,
            upto: None,
            objects: self.totals.objects - done_objects,
            bytes: self.totals.bytes - done_bytes,
            chunk_bytes: 0,
        });
        ranges
    }
}

/// Whether `plan` is at or under `side` (a bucket's prefix, or a directory).
fn inside(plan: &Location, side: &Location) -> bool {
    match (plan, side) {
        (Location::Remote { bucket: pb, key: pk, .. }, Location::Remote { bucket: sb, key: sk, .. }) => {
            pb == sb && pk.starts_with(sk.as_str())
        }
        (Location::Path(p), Location::Path(s)) => {
            let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            abs(p).starts_with(abs(s))
        }
        _ => false,
    }
}

/// Lists the source in key order into `cuts`, holding only what cuts keep: a directory walked one directory at a
/// time in key order (a directory `d` sorts as `d/`, as a listing of its keys would), a prefix by its pages.
async fn list_source(src: &Location, store: &StoreArgs, cuts: &mut Cuts) -> Result<(), Usage> {
    match src {
        Location::Path(dir) => {
            if !dir.is_dir() {
                return Err(Usage(format!("{}: shard plan takes a directory or a bucket's prefix", dir.display())));
            }
            walk(dir, "", cuts)
        }
        Location::Remote { scheme, bucket, key } => {
            let opened = store.open_bucket(*scheme, bucket).await?;
            let prefix = crate::addr::prefix_of(key);
            // One level by delimiter, page after page: the objects right under the prefix, and the prefixes under
            // it, in key order. Each of those prefixes is listed whole into cuts of its own, up to LISTERS at once,
            // and they are joined in key order: a bucket of many prefixes is listed many times faster than page
            // after page, and what is held at once is a page and LISTERS prefixes' cut points.
            let top = ListRequest::default()
                .prefix(Some(prefix.clone()).filter(|p| !p.is_empty()))
                .delimiter(Some("/".into()))
                .max_keys(Some(1000));
            let pages = futures::stream::try_unfold(Some(top), |req| {
                let opened = &opened;
                async move {
                    let Some(req) = req else { return Ok(None) };
                    let page = list_page(opened, bucket, &req, src).await?;
                    let next = match page.next_continuation_token {
                        Some(t) if page.is_truncated => Some(req.continuation_token(Some(t))),
                        _ => None,
                    };
                    let mut segments: Vec<Segment> =
                        page.objects.into_iter().map(|o| Segment::Object(o.key, o.size)).collect();
                    segments.extend(page.common_prefixes.into_iter().map(Segment::Prefix));
                    // Both kinds sort by their key (a prefix ends in '/', and every key under it follows it).
                    segments.sort_by(|a, b| a.key().cmp(b.key()));
                    Ok::<_, Usage>(Some((futures::stream::iter(segments.into_iter().map(Ok::<_, Usage>)), next)))
                }
            });
            let rule = cuts.rule;
            let listed = pages
                .try_flatten()
                .map_ok(|segment| {
                    let (opened, prefix) = (&opened, prefix.as_str());
                    async move {
                        let mut part = Cuts::new(rule);
                        match segment {
                            Segment::Object(key, size) => part.add(&key[prefix.len()..], size),
                            Segment::Prefix(p) => list_into(opened, bucket, (&p, prefix), src, &mut part).await?,
                        }
                        Ok::<_, Usage>(part)
                    }
                })
                .try_buffered(LISTERS);
            futures::pin_mut!(listed);
            while let Some(part) = listed.try_next().await? {
                cuts.append(part);
            }
            Ok(())
        }
    }
}

/// Walks `dir` (at `rel` under the source) in key order into `cuts`.
fn walk(dir: &Path, rel: &str, cuts: &mut Cuts) -> Result<(), Usage> {
    let unreadable = |e: std::io::Error| Usage(format!("cannot read {}: {e}", dir.display()));
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(unreadable)? {
        let e = e.map_err(unreadable)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = e.metadata().map_err(|err| Usage(format!("{}: {err}", e.path().display())))?;
        if meta.is_dir() {
            entries.push((format!("{name}/"), None));
        } else if meta.is_file() {
            entries.push((name, Some(meta.len())));
        }
    }
    entries.sort_unstable();
    for (name, size) in entries {
        match size {
            Some(size) => cuts.add(&format!("{rel}{name}"), size),
            None => walk(&dir.join(name.trim_end_matches('/')), &format!("{rel}{name}"), cuts)?,
        }
    }
    Ok(())
}

/// The keys of a manifest (`--files-from`): one URL-encoded relative key per line, sorted and without repeats.
fn read_manifest(file: &Path) -> Result<Vec<String>, Usage> {
    let text = match file == Path::new("-") {
        true => std::io::read_to_string(std::io::stdin()),
        false => std::fs::read_to_string(file),
    }
    .map_err(|e| Usage(format!("cannot read the manifest {}: {e}", file.display())))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let key = percent_encoding::percent_decode_str(line.trim()).decode_utf8().map_err(|_| {
            Usage(format!("{} line {}: {line:?} is not a URL-encoded UTF-8 key", file.display(), n + 1))
        })?;
        keys.push(key.into_owned());
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

/// A manifest's line for `key`: URL-encoded (a key may hold a newline).
fn manifest_line(key: &str) -> String {
    format!("{}\n", percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC))
}

/// The sizes of `keys` (sorted) under the source into `cuts`, asked for LISTERS at a time; a key the source does
/// not have weighs nothing (its shard still settles it: with --delete, removes it from the destination).
async fn weigh_keys(src: &Location, store: &StoreArgs, keys: &[String], cuts: &mut Cuts) -> Result<(), Usage> {
    let opened = match src {
        Location::Remote { scheme, bucket, .. } => Some(store.open_bucket(*scheme, bucket).await?),
        Location::Path(_) => None,
    };
    let sizes = futures::stream::iter(keys)
        .map(|rel| {
            let opened = opened.as_ref();
            async move {
                let size = match (src, opened) {
                    (Location::Remote { bucket, key, .. }, Some(o)) => {
                        let prefix = crate::addr::prefix_of(key);
                        match o.objects.head_object(&ObjectRef::new(bucket, format!("{prefix}{rel}"))).await {
                            Ok(h) => Some(h.size),
                            Err(e) if e.kind() == ErrorKind::ObjectNotFound => None,
                            Err(e) => return Err(Usage(format!("cannot read {src}{rel}: {e}"))),
                        }
                    }
                    (Location::Path(dir), _) => {
                        std::fs::metadata(dir.join(rel)).ok().filter(|m| m.is_file()).map(|m| m.len())
                    }
                    _ => None,
                };
                Ok::<_, Usage>((rel, size))
            }
        })
        .buffered(LISTERS);
    futures::pin_mut!(sizes);
    while let Some((rel, size)) = sizes.try_next().await? {
        if let Some(size) = size {
            cuts.add(rel, size);
        }
    }
    Ok(())
}

/// How many prefixes the planner lists at once.
const LISTERS: usize = 16;

/// What the planner's first listing found right under the source's prefix.
enum Segment {
    Object(String, u64),
    Prefix(String),
}

impl Segment {
    fn key(&self) -> &str {
        match self {
            Segment::Object(k, _) | Segment::Prefix(k) => k,
        }
    }
}

async fn list_page(
    opened: &Opened,
    bucket: &str,
    req: &ListRequest,
    src: &Location,
) -> Result<transfer_engine::store::ListPage, Usage> {
    opened.objects.list_objects(bucket, req).await.map_err(|e| Usage(format!("cannot list {src}: {e}")))
}

/// Every object under `under` into `cuts`, by its key relative to `base`, page by page.
async fn list_into(
    opened: &Opened,
    bucket: &str,
    (under, base): (&str, &str),
    src: &Location,
    cuts: &mut Cuts,
) -> Result<(), Usage> {
    let mut req = ListRequest::default().prefix(Some(under.to_owned())).max_keys(Some(1000));
    loop {
        let page = list_page(opened, bucket, &req, src).await?;
        for o in &page.objects {
            let rel = &o.key[base.len()..];
            if !rel.is_empty() && !rel.ends_with('/') {
                cuts.add(rel, o.size);
            }
        }
        match page.next_continuation_token {
            Some(t) if page.is_truncated => req = req.continuation_token(Some(t)),
            _ => return Ok(()),
        }
    }
}

async fn plan(args: PlanArgs, out: OutputArgs) -> Result<u8, Usage> {
    let PlanArgs { sync, shards, plan: loc, split_above, files_from } = args;
    if shards == 0 {
        return Err(Usage("--shards must be at least 1".into()));
    }
    let mut cp = crate::cp::sync_options(sync)?;
    // Every shard's range is its own: an empty one is no error.
    cp.allow_empty = true;
    let src = Location::parse(&cp.src)?;
    // The plan and the shards' results must be neither copied (inside the source) nor deleted or overwritten
    // (inside the destination).
    let plan_at = Location::parse(&loc)?;
    for (side, what) in [(&cp.src, "source"), (&cp.dst, "destination")] {
        if inside(&plan_at, &Location::parse(side)?) {
            return Err(Usage(format!("the plan {loc} lies inside the {what} {side}: put it outside")));
        }
    }
    // Each worker brings its own credentials (environment, profile, --credentials-file): the planner's file is
    // not theirs.
    cp.store.credentials_file = None;
    let store = PlanStore::open(&loc, &cp.store).await?;
    if store.get("plan.json").await.map_err(Usage)?.is_some() {
        return Err(Usage(format!(
            "{} exists: a plan is never replaced (its shards may be running); choose another --plan",
            store.name("plan.json")
        )));
    }
    // Objects are split only into a bucket (a multipart upload holds the parts), and only across shards.
    let into_bucket = matches!(Location::parse(&cp.dst)?, Location::Remote { .. });
    let mut cuts = Cuts::new(SplitRule { above: split_above, shards: u64::from(shards) * u64::from(into_bucket) });
    // The source's own store options (`--src-*`), as the shards will read it.
    let src_store = match &src {
        Location::Remote { scheme, .. } => {
            let dst_scheme = match Location::parse(&cp.dst)? {
                Location::Remote { scheme, .. } => Some(scheme),
                Location::Path(_) => None,
            };
            cp.src_store.over(&cp.store, dst_scheme.is_none_or(|d| d == *scheme))
        }
        Location::Path(_) => cp.store.clone(),
    };
    let keys = match &files_from {
        Some(file) => {
            let keys = read_manifest(file)?;
            weigh_keys(&src, &src_store, &keys, &mut cuts).await?;
            Some(keys)
        }
        None => {
            list_source(&src, &src_store, &mut cuts).await?;
            None
        }
    };
    let listed = cuts.totals;
    let big = cuts.take_split();
    let splits = split_objects(&cp, &big).await?;
    // Each split object leaves its range with the weight the listing gave it.
    let split_keys: Vec<(String, u64)> = big.into_iter().filter(|(k, _)| splits.iter().any(|s| s.key == *k)).collect();
    let mut ranges = cuts.without(&split_keys).ranges(shards);
    let splits = deal_chunks(splits, &mut ranges);
    let plan = Plan {
        format: FORMAT.into(),
        created: chrono::Utc::now().timestamp(),
        source: cp.src.clone(),
        destination: cp.dst.clone(),
        options: cp.recorded()?,
        listed,
        shards: ranges,
        splits,
        keys,
    };
    let text = serde_json::to_vec_pretty(&plan).map_err(|e| Usage(e.to_string()))?;
    let written = match store.put("plan.json", text, true).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("{} appeared meanwhile: another plan was written there", store.name("plan.json"))),
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        // The uploads this plan initiated would be known to no one: abort them.
        abort_uploads(&cp, &plan, None).await;
        return Err(Usage(e));
    }
    let heaviest = plan.shards.iter().map(|s| s.bytes + s.chunk_bytes).max().unwrap_or(0);
    if out.json {
        out!(
            "{}",
            json!({"event": "planned", "plan": store.name("plan.json"), "shards": plan.shards.len(),
                   "objects": listed.objects, "bytes": listed.bytes, "largest_shard_bytes": heaviest,
                   "split_objects": plan.splits.len()})
        );
    } else {
        eprintln!(
            "planned {} shards of {} objects, {} bytes (the largest shard {} bytes; {} objects split): {}",
            plan.shards.len(),
            listed.objects,
            listed.bytes,
            heaviest,
            plan.splits.len(),
            store.name("plan.json")
        );
    }
    Ok(EXIT_OK)
}

/// Splits each of `big` (relative keys and sizes, in key order) whose destination does not hold it already:
/// its upload initiated as the shards' sync would write the object. Those left whole stay in their ranges.
async fn split_objects(cp: &CpArgs, big: &[(String, u64)]) -> Result<Vec<SplitPlan>, Usage> {
    if big.is_empty() {
        return Ok(Vec::new());
    }
    let (engine, req) = crate::cp::sync_engine(cp).await?;
    let (engine, req) = (&engine, &req);
    let split = futures::stream::iter(big.iter().map(|(key, _)| key.clone()))
        .map(|key| async move {
            let why = |e: transfer_engine::Error| Usage(format!("cannot split {key}: {e}"));
            Ok::<_, Usage>(match engine.split(req, &key).await.map_err(why)? {
                Splitting::Whole => None,
                Splitting::Split(s) => Some(SplitPlan {
                    key,
                    upload_id: s.upload_id.as_str().to_owned(),
                    size: s.size,
                    part_size: s.part_size,
                    parts: s.parts,
                    etag: match &s.version {
                        SourceVersion::Object { etag } => Some(etag.clone()),
                        SourceVersion::File { .. } => None,
                    },
                    mtime_ns: match &s.version {
                        SourceVersion::File { mtime_ns, .. } => Some(mtime_ns.to_string()),
                        SourceVersion::Object { .. } => None,
                    },
                    crc64: s.crc64.map(|c| c.to_string()),
                    tags: s.tags.as_ref().map(TagSet::to_header),
                    chunks: Vec::new(),
                }),
            })
        })
        .buffered(LISTERS);
    futures::pin_mut!(split);
    let mut splits = Vec::new();
    loop {
        match split.next().await {
            None => return Ok(splits),
            Some(Ok(s)) => splits.extend(s),
            Some(Err(e)) => {
                // Nothing records the uploads initiated so far: abort them (and those still being initiated).
                while let Some(s) = split.next().await {
                    splits.extend(s.ok().flatten());
                }
                let dests = Location::parse(&cp.dst)?;
                abort_split_uploads(cp, &dests, &splits, None).await;
                return Err(e);
            }
        }
    }
}

/// Deals each split object's parts to the shards, water-filling: part after part to the shard whose bytes (its
/// range's and its chunks') are fewest, so the object tops the lightest shards up evenly; then each shard's parts
/// are one contiguous chunk (shards in index order), so no shard holds two chunks of one object.
fn deal_chunks(mut splits: Vec<SplitPlan>, ranges: &mut [Range]) -> Vec<SplitPlan> {
    use std::cmp::Reverse;
    for split in &mut splits {
        let mut heap: std::collections::BinaryHeap<Reverse<(u64, u32)>> =
            ranges.iter().map(|r| Reverse((r.bytes + r.chunk_bytes, r.index))).collect();
        let mut allotted = vec![0u32; ranges.len()];
        for n in 1..=split.parts {
            let Some(Reverse((load, index))) = heap.pop() else { break };
            let len = (u64::from(n) * split.part_size).min(split.size) - u64::from(n - 1) * split.part_size;
            allotted[index as usize] += 1;
            heap.push(Reverse((load + len, index)));
        }
        let mut first = 1;
        for (range, count) in ranges.iter_mut().zip(allotted).filter(|(_, c)| *c > 0) {
            let last = first + count - 1;
            let bytes = (u64::from(last) * split.part_size).min(split.size) - u64::from(first - 1) * split.part_size;
            range.chunk_bytes += bytes;
            split.chunks.push(ChunkPlan { shard: range.index, first, last });
            first = last + 1;
        }
    }
    splits
}

/// The index to run: `--index`, else the first engine variable set.
fn shard_index(given: Option<u32>, count: usize) -> Result<u32, Usage> {
    let index = match given {
        Some(i) => i,
        None => {
            let found = INDEX_VARIABLES.iter().find_map(|v| std::env::var(v).ok().map(|val| (v, val)));
            let Some((var, val)) = found else {
                return Err(Usage(format!(
                    "which shard? give --index, or run under an engine that sets {}",
                    INDEX_VARIABLES.join(", ")
                )));
            };
            val.trim().parse().map_err(|_| Usage(format!("{var}={val:?} is not a shard index")))?
        }
    };
    if index as usize >= count {
        return Err(Usage(format!("shard {index} is not in the plan: it has shards 0 to {}", count.saturating_sub(1))));
    }
    Ok(index)
}

fn ledger_file(index: u32) -> String {
    format!("shards/{index}/ledger.db")
}

/// Puts the shard's last ledger snapshot at `path`, if the plan keeps one.
async fn restore_ledger(store: &PlanStore, index: u32, path: &Path) -> Result<(), Usage> {
    let Some(bytes) = store.get(&ledger_file(index)).await.map_err(Usage)? else { return Ok(()) };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".ledger-{index}.{}.tmp", std::process::id()));
    let placed = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, &bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    placed.map_err(|e| Usage(format!("cannot write the ledger {}: {e}", path.display())))?;
    tracing::info!("shard {index}: its ledger restored from {}", store.name(&ledger_file(index)));
    Ok(())
}

/// Keeps a copy of the shard's ledger beside the plan, for an attempt on another machine.
async fn snapshot_ledger(store: &PlanStore, index: u32, path: &Path) -> Result<(), String> {
    let tmp = path.with_file_name(format!(".ledger-snapshot-{index}.{}.db", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let taken = Ledger::open(path)
        .and_then(|l| l.snapshot_into(&tmp))
        .map_err(|e| e.to_string())
        .and_then(|()| std::fs::read(&tmp).map_err(|e| e.to_string()));
    let _ = std::fs::remove_file(&tmp);
    store.put(&ledger_file(index), taken?, false).await.map(|_| ())
}

fn done_file(index: u32) -> String {
    format!("shards/{index}/DONE")
}

fn result_file(index: u32) -> String {
    format!("shards/{index}/result.json")
}

async fn run_shard(args: RunArgs, out: OutputArgs) -> Result<u8, Usage> {
    let store = PlanStore::open(&args.loc.plan, &args.loc.store).await?;
    let plan = store.plan().await?;
    let index = shard_index(args.index, plan.shards.len())?;
    if let Some(done) = store.get(&done_file(index)).await.map_err(Usage)? {
        let by = serde_json::from_slice::<ShardResult>(&done).map(|r| r.attempt).unwrap_or_default();
        eprintln!("shard {index} is done (by {by}); nothing to do");
        return Ok(EXIT_OK);
    }
    let range = &plan.shards[index as usize];
    let mut cp = worker_options(&store, &plan, &args.loc.store)?;
    cp.checkpoint = args.checkpoint.clone();
    cp.shard = Some((range.after.clone(), range.upto.clone()));
    // Split objects are passed over by every shard; their chunks are sent by the shards the plan names.
    cp.elsewhere = plan.splits.iter().map(|s| s.key.clone()).collect();
    for split in &plan.splits {
        for c in split.chunks.iter().filter(|c| c.shard == index) {
            cp.chunks.push(split.chunk(c)?);
        }
    }
    let chunks = cp.chunks.clone();
    cp.keys = plan.keys.as_ref().map(|keys| {
        let range = transfer_engine::job::KeyRange::new(range.after.clone(), range.upto.clone());
        keys.iter().filter(|k| range.contains(k)).cloned().collect()
    });
    let ledger_path = match &cp.checkpoint {
        Some(p) => p.clone(),
        None => Ledger::default_path()?,
    };
    // On a machine without this shard's ledger (a pod rescheduled elsewhere), the last attempt's snapshot.
    if !ledger_path.exists() {
        restore_ledger(&store, index, &ledger_path).await?;
    }
    tracing::info!("shard {index} of {}: keys ({}, {}]", plan.shards.len(), bound(&range.after), bound(&range.upto));
    let mut summary = None;
    let code = crate::cp::run_reporting(cp, out, None, &mut summary).await;
    let Some(summary) = summary else { return Ok(code) };
    let result = shard_result(index, &summary, &ledger_path, &chunks).await;
    let text = serde_json::to_vec_pretty(&result).map_err(|e| Usage(e.to_string()))?;
    if let Err(e) = store.put(&result_file(index), text.clone(), false).await {
        tracing::error!("{e}");
        return Ok(EXIT_FAILED);
    }
    if let Err(e) = snapshot_ledger(&store, index, &ledger_path).await {
        // Only a convenience: a shard without it compares with the destination instead.
        tracing::warn!("could not keep the ledger beside the plan: {e}");
    }
    if code == EXIT_OK && result.state == "done" {
        match store.put(&done_file(index), text, true).await {
            Ok(true) => tracing::info!("shard {index} is done: {}", store.name(&done_file(index))),
            Ok(false) => tracing::info!("shard {index} was finished by another attempt at the same time"),
            Err(e) => {
                tracing::error!("{e}");
                return Ok(EXIT_FAILED);
            }
        }
    }
    Ok(code)
}

/// The options the plan's shards run with, and this worker's own way to the store where it gives one (an
/// internal endpoint, its profile) over the planner's. The plan names no secrets: this process's own
/// credentials (environment, profile) reach the stores.
fn worker_options(store: &PlanStore, plan: &Plan, own: &StoreArgs) -> Result<CpArgs, Usage> {
    let mut cp = CpArgs::from_recorded(&plan.options)
        .ok_or_else(|| Usage(format!("{} holds options this transfer cannot read", store.name("plan.json"))))?;
    cp.store.endpoint = own.endpoint.clone().or(cp.store.endpoint);
    cp.store.region = own.region.clone().or(cp.store.region);
    cp.store.profile = own.profile.clone().or(cp.store.profile);
    cp.store.credentials_file = own.credentials_file.clone().or(cp.store.credentials_file);
    cp.store.local_root = own.local_root.clone().or(cp.store.local_root);
    Ok(cp)
}

fn bound(b: &Option<String>) -> &str {
    b.as_deref().unwrap_or("")
}

/// What an attempt came to, from its summary and, for the failed keys, its ledger.
async fn shard_result(index: u32, s: &JobSummary, ledger: &Path, chunks: &[Chunk]) -> ShardResult {
    let p = &s.progress;
    let mut failures: Vec<Failure> = Vec::new();
    let mut chunk_results = Vec::new();
    if let Ok(ledger) = Ledger::open(ledger) {
        for c in chunks {
            let (job, source) = (s.job, c.ledger_source());
            let parts = ledger
                .off_thread(move |l| match l.object(job, &source)? {
                    Some(row) => l.parts(row.id),
                    None => Ok(Vec::new()),
                })
                .await
                .unwrap_or_default();
            chunk_results.push(ChunkResult {
                key: c.rel.clone(),
                upload_id: c.split.upload_id.as_str().to_owned(),
                first: c.first,
                last: c.last,
                parts: parts
                    .into_iter()
                    .filter(|p| (c.first..=c.last).contains(&p.number))
                    .map(|p| PartResult {
                        number: p.number,
                        size: p.size,
                        etag: p.etag,
                        crc64: p.crc64.map(|c| c.to_string()),
                    })
                    .collect(),
            });
        }
        let job = s.job;
        let mut after = 0;
        while let Ok(page) = ledger.off_thread(move |l| l.objects(job, Some(ObjectState::Failed), after, 1000)).await {
            let Some(last) = page.last() else { break };
            after = last.id;
            failures.extend(page.into_iter().map(|o| Failure {
                key: o.dest_key,
                code: String::new(),
                message: o.error.unwrap_or_default(),
            }));
        }
    }
    // Failures the ledger did not keep (a listing that failed): from the summary.
    for (key, e) in &s.failures {
        if !failures.iter().any(|f| f.key == *key) {
            failures.push(Failure {
                key: key.clone(),
                code: e.service_code().unwrap_or(&e.kind().to_string()).to_owned(),
                message: e.to_string(),
            });
        }
    }
    let state = match s.state {
        transfer_engine::checkpoint::JobState::Done => "done",
        transfer_engine::checkpoint::JobState::Stopped => "stopped",
        _ => "failed",
    };
    ShardResult {
        index,
        attempt: format!("{}:{}", hostname(), std::process::id()),
        state: state.into(),
        listed: p.objects_found + p.objects_settled_earlier,
        settled_earlier: p.objects_settled_earlier,
        copied: p.objects_done,
        unchanged: p.objects_skipped + p.objects_already_done,
        failed: p.objects_failed,
        bytes_copied: p.bytes_acknowledged.saturating_sub(p.bytes_reused),
        finished: chrono::Utc::now().timestamp(),
        failures,
        chunks: chunk_results,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into())
}

/// Where each shard is: its DONE, else its last attempt's result.
async fn shard_states(store: &PlanStore, plan: &Plan) -> Result<Vec<(u32, Option<ShardResult>, bool)>, Usage> {
    let mut states = Vec::new();
    for s in &plan.shards {
        let read = |b: Vec<u8>| serde_json::from_slice::<ShardResult>(&b).ok();
        let (result, done) = match store.get(&done_file(s.index)).await.map_err(Usage)? {
            Some(b) => (read(b), true),
            None => (store.get(&result_file(s.index)).await.map_err(Usage)?.and_then(read), false),
        };
        states.push((s.index, result, done));
    }
    Ok(states)
}

async fn status(args: LocArgs, out: OutputArgs) -> Result<u8, Usage> {
    let store = PlanStore::open(&args.plan, &args.store).await?;
    let plan = store.plan().await?;
    let states = shard_states(&store, &plan).await?;
    for (index, result, done) in &states {
        let state = match (done, result) {
            (true, _) => "done",
            (false, Some(r)) => r.state.as_str(),
            (false, None) => "not started",
        };
        let r = result.as_ref();
        if out.json {
            out!(
                "{}",
                json!({"event": "shard", "index": index, "state": state, "listed": r.map(|r| r.listed),
                       "copied": r.map(|r| r.copied), "unchanged": r.map(|r| r.unchanged), "failed": r.map(|r| r.failed)})
            );
        } else {
            let counts = r.map_or(String::new(), |r| {
                format!("  {} listed, {} copied, {} unchanged, {} failed", r.listed, r.copied, r.unchanged, r.failed)
            });
            out!("{index:>5}  {state:<11}{counts}");
        }
    }
    let done = states.iter().filter(|s| s.2).count();
    eprintln!("{done} of {} shards done", states.len());
    Ok(EXIT_OK)
}

async fn merge(args: LocArgs, out: OutputArgs) -> Result<u8, Usage> {
    let store = PlanStore::open(&args.plan, &args.store).await?;
    let plan = store.plan().await?;
    let states = shard_states(&store, &plan).await?;
    let mut problems = Vec::new();
    // listed, copied, unchanged, failed, settled by earlier attempts, bytes copied
    let mut totals = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut failed_rows = String::from("Bucket,Key,VersionId,TaskStatus,ErrorCode,HTTPStatusCode,ResultMessage\n");
    // What failed, as keys relative to both sides: the manifest of a retry (`shard plan --files-from`).
    let mut retry = std::collections::BTreeSet::new();
    let dest_bucket = match Location::parse(&plan.destination)? {
        Location::Remote { bucket, .. } => bucket,
        Location::Path(p) => p.display().to_string(),
    };
    for (index, result, done) in &states {
        let Some(r) = result else {
            problems.push(format!("shard {index} has not run"));
            continue;
        };
        if !done {
            problems.push(format!("shard {index} is not done ({}: {} failed)", r.state, r.failed));
        }
        if r.copied + r.unchanged + r.failed + r.settled_earlier != r.listed {
            problems.push(format!(
                "shard {index}: {} copied + {} unchanged + {} failed + {} settled by an earlier attempt is not the {} listed",
                r.copied, r.unchanged, r.failed, r.settled_earlier, r.listed
            ));
        }
        totals.0 += r.listed;
        totals.1 += r.copied;
        totals.2 += r.unchanged;
        totals.3 += r.failed;
        totals.4 += r.settled_earlier;
        totals.5 += r.bytes_copied;
        for f in &r.failures {
            retry.extend(relative(&plan, &f.key));
            failed_rows.push_str(&format!(
                "{},{},,failed,{},,{}\n",
                csv(&dest_bucket),
                csv(&f.key),
                csv(&f.code),
                csv(&f.message)
            ));
        }
    }
    let splits =
        complete_splits(&store, &plan, &states, &args.store, &mut problems, &mut failed_rows, &dest_bucket).await?;
    retry.extend(splits.2);
    totals.0 += plan.splits.len() as u64;
    totals.1 += splits.0;
    totals.3 += splits.1;
    let pending = plan.splits.len() as u64 - splits.0 - splits.1;
    let (listed, copied, unchanged, failed, earlier, bytes) = totals;
    let complete = problems.is_empty();
    let summary = json!({
        "plan": store.name("plan.json"), "source": plan.source, "destination": plan.destination,
        "shards": plan.shards.len(), "shards_done": states.iter().filter(|s| s.2).count(), "complete": complete,
        "planned": {"objects": plan.listed.objects, "bytes": plan.listed.bytes},
        "listed": listed, "copied": copied, "unchanged": unchanged, "failed": failed,
        "settled_by_earlier_attempts": earlier, "bytes_copied": bytes,
        "split": {"objects": plan.splits.len(), "completed": splits.0, "failed": splits.1, "waiting": pending},
        "problems": problems,
    });
    let text = serde_json::to_vec_pretty(&summary).map_err(|e| Usage(e.to_string()))?;
    store.put("report/summary.json", text, false).await.map_err(Usage)?;
    store.put("report/failed.csv", failed_rows.into_bytes(), false).await.map_err(Usage)?;
    let manifest: String = retry.iter().map(|k| manifest_line(k)).collect();
    store.put("report/retry.txt", manifest.into_bytes(), false).await.map_err(Usage)?;
    if out.json {
        out!("{}", json!({"event": "merged", "summary": summary}));
    } else {
        eprintln!(
            "{} of {} shards done: {listed} listed, {copied} copied, {unchanged} unchanged, {failed} failed; report: {}",
            states.iter().filter(|s| s.2).count(),
            states.len(),
            store.name("report/summary.json")
        );
        for p in &problems {
            eprintln!("  {p}");
        }
    }
    Ok(if complete { EXIT_OK } else { EXIT_FAILED })
}

/// Completes every split object whose chunks' shards are all done, from ListParts checked against their
/// receipts: `(completed now or before, failed, the keys that failed)`. What is not done yet, or failed, goes
/// into `problems`.
async fn complete_splits(
    store: &PlanStore,
    plan: &Plan,
    states: &[(u32, Option<ShardResult>, bool)],
    own: &StoreArgs,
    problems: &mut Vec<String>,
    failed_rows: &mut String,
    dest_bucket: &str,
) -> Result<(u64, u64, Vec<String>), Usage> {
    if plan.splits.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let cp = worker_options(store, plan, own)?;
    let (engine, req) = crate::cp::sync_engine(&cp).await?;
    let done: std::collections::HashMap<u32, &ShardResult> =
        states.iter().filter(|s| s.2).filter_map(|(i, r, _)| Some((*i, r.as_ref()?))).collect();
    let (mut completed, mut failed, mut keys) = (0, 0, Vec::new());
    for split in &plan.splits {
        let waiting: Vec<String> =
            split.chunks.iter().filter(|c| !done.contains_key(&c.shard)).map(|c| c.shard.to_string()).collect();
        if !waiting.is_empty() {
            problems.push(format!("{} (split) waits for shards {}", split.key, waiting.join(", ")));
            continue;
        }
        let mut receipts = BTreeMap::new();
        for c in &split.chunks {
            let results = done[&c.shard].chunks.iter().filter(|r| r.key == split.key && r.upload_id == split.upload_id);
            for p in results.flat_map(|r| &r.parts) {
                receipts.insert(
                    p.number,
                    PartReceipt {
                        part_number: PartNumber::new(p.number),
                        etag: p.etag.clone(),
                        crc64: p.crc64.as_deref().and_then(|c| c.parse().ok()),
                        size: p.size,
                        checksum: None,
                    },
                );
            }
        }
        match engine.complete_split(&req, &split.key, &split.split()?, &receipts).await {
            Ok((_, now)) => {
                completed += 1;
                tracing::info!("{} (split): {}", split.key, if now { "completed" } else { "completed before" });
            }
            Err(e) => {
                failed += 1;
                keys.push(split.key.clone());
                problems.push(format!("{} (split): {e}", split.key));
                let code = e.service_code().map_or_else(|| e.kind().to_string(), str::to_owned);
                failed_rows.push_str(&format!(
                    "{},{},,failed,{},,{}\n",
                    csv(dest_bucket),
                    csv(&split.key),
                    csv(&code),
                    csv(&e.to_string())
                ));
            }
        }
    }
    Ok((completed, failed, keys))
}

/// The key relative to both sides of a failure's key (the destination's key, or a download's source key).
fn relative(plan: &Plan, key: &str) -> Option<String> {
    let under = |prefix: &str, key: &str| {
        let prefix = crate::addr::prefix_of(prefix);
        key.strip_prefix(prefix.as_str()).map(str::to_owned)
    };
    match (Location::parse(&plan.destination).ok()?, Location::parse(&plan.source).ok()?) {
        (Location::Remote { key: prefix, .. }, _) => under(&prefix, key),
        (Location::Path(_), Location::Remote { key: prefix, .. }) => under(&prefix, key),
        (Location::Path(_), Location::Path(_)) => None,
    }
}

/// `transfer shard abort`: aborts the uploads the planner initiated for split objects (what their shards sent
/// is discarded). The shards and merge of the plan then fail on them; plan again to migrate them.
async fn abort(args: LocArgs, out: OutputArgs) -> Result<u8, Usage> {
    let store = PlanStore::open(&args.plan, &args.store).await?;
    let plan = store.plan().await?;
    let cp = worker_options(&store, &plan, &args.store)?;
    let (aborted, gone, failed) = abort_uploads(&cp, &plan, Some(out)).await;
    eprintln!("{aborted} split uploads aborted, {gone} already gone (completed or aborted), {failed} failed");
    Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED })
}

/// Aborts the uploads of `plan`'s split objects: `(aborted, already gone, failed)`.
async fn abort_uploads(cp: &CpArgs, plan: &Plan, out: Option<OutputArgs>) -> (u64, u64, u64) {
    match Location::parse(&plan.destination) {
        Ok(dest) => abort_split_uploads(cp, &dest, &plan.splits, out).await,
        Err(_) => (0, 0, plan.splits.len() as u64),
    }
}

/// Aborts the uploads of `splits` at `dest` (through `cp`'s store options): `(aborted, already gone, failed)`.
async fn abort_split_uploads(
    cp: &CpArgs,
    dest: &Location,
    splits: &[SplitPlan],
    out: Option<OutputArgs>,
) -> (u64, u64, u64) {
    let Location::Remote { scheme, bucket, key: prefix } = dest else { return (0, 0, 0) };
    if splits.is_empty() {
        return (0, 0, 0);
    }
    let prefix = crate::addr::prefix_of(prefix);
    let opened = match cp.store.open_bucket(*scheme, bucket).await {
        Ok(o) => o,
        Err(Usage(e)) => {
            tracing::error!("cannot abort the split uploads: {e}");
            return (0, 0, splits.len() as u64);
        }
    };
    let (mut aborted, mut gone, mut failed) = (0, 0, 0);
    for split in splits {
        let upload = Upload::new(bucket, format!("{prefix}{}", split.key), UploadId::new(&split.upload_id));
        let state = match opened.objects.abort_multipart(&upload).await {
            Ok(()) => {
                aborted += 1;
                "aborted"
            }
            Err(e) if e.kind() == ErrorKind::UploadNotFound => {
                gone += 1;
                "gone"
            }
            Err(e) => {
                failed += 1;
                tracing::error!("{}: cannot abort upload {}: {e}", upload.key, upload.id);
                "failed"
            }
        };
        if out.is_some_and(|o| o.json) {
            out!("{}", json!({"event": "abort", "key": upload.key, "upload_id": split.upload_id, "state": state}));
        }
    }
    (aborted, gone, failed)
}

/// A CSV field, quoted when it needs to be.
fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(sizes: &[(&str, u64)], m: u32) -> Vec<Range> {
        let mut c = Cuts::default();
        for (k, s) in sizes {
            c.add(k, *s);
        }
        c.ranges(m)
    }

    #[test]
    fn ranges_cover_every_key_once_and_balance_by_bytes() {
        let keys: Vec<(String, u64)> = (0..100).map(|i| (format!("k{i:03}"), 1 << 20)).collect();
        let refs: Vec<(&str, u64)> = keys.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        let r = cut(&refs, 4);
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].after.as_deref(), r[3].upto.as_deref()), (None, None));
        for w in r.windows(2) {
            assert_eq!(w[0].upto, w[1].after, "contiguous");
        }
        assert!(r.iter().all(|s| s.objects == 25), "{r:?}");
        assert_eq!(r.iter().map(|s| s.objects).sum::<u64>(), 100);
    }

    #[test]
    fn one_heavy_prefix_and_one_huge_object_still_balance() {
        // 80% of the bytes under a/, one 2 GiB object, the rest small.
        let mut keys: Vec<(String, u64)> = (0..800).map(|i| (format!("a/{i:04}"), 10 << 20)).collect();
        keys.push(("m/huge".into(), 2 << 30));
        keys.extend((0..200).map(|i| (format!("z/{i:04}"), 1 << 20)));
        let refs: Vec<(&str, u64)> = keys.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        let r = cut(&refs, 8);
        let total: u64 = keys.iter().map(|k| k.1).sum();
        assert_eq!(r.iter().map(|s| s.bytes).sum::<u64>(), total);
        // No shard holds more than its share plus the one object too large to split.
        assert!(r.iter().all(|s| s.bytes <= total / 8 + (2 << 30)), "{r:?}");
        assert!(r.iter().filter(|s| s.bytes > 0).count() >= 6, "{r:?}");
    }

    #[test]
    fn cuts_listed_in_pieces_and_joined_cut_as_one_listing() {
        let keys: Vec<(String, u64)> = (0..300).map(|i| (format!("p{}/k{i:03}", i / 100), 1000 + i)).collect();
        let mut whole = Cuts::default();
        let mut joined = Cuts::default();
        for chunk in keys.chunks(100) {
            let mut part = Cuts::default();
            for (k, s) in chunk {
                whole.add(k, *s);
                part.add(k, *s);
            }
            joined.append(part);
        }
        let (a, b) = (whole.ranges(5), joined.ranges(5));
        let bounds = |r: &[Range]| r.iter().map(|s| (s.upto.clone(), s.objects, s.bytes)).collect::<Vec<_>>();
        assert_eq!(bounds(&a), bounds(&b));
    }

    #[test]
    fn a_directory_is_walked_in_the_order_its_keys_list() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["a.txt", "a-b", "a/x", "a/y/z", "b"] {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let mut c = Cuts::default();
        walk(dir.path(), "", &mut c).unwrap();
        let keys: Vec<&str> = c.samples.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(keys, ["a-b", "a.txt", "a/x", "a/y/z", "b"]);
    }

    #[test]
    fn a_plan_may_not_lie_inside_either_side() {
        let at = |s: &str| Location::parse(s).unwrap();
        assert!(inside(&at("oss://bkt/data/_plan/"), &at("oss://bkt/data/")));
        assert!(inside(&at("oss://bkt/x/"), &at("oss://bkt/")));
        assert!(!inside(&at("oss://bkt/plans/"), &at("oss://bkt/data/")));
        assert!(!inside(&at("oss://other/data/"), &at("oss://bkt/data/")));
        assert!(inside(&at("/srv/data/plan"), &at("/srv/data")));
        assert!(!inside(&at("/srv/plans"), &at("/srv/data")));
    }

    #[test]
    fn split_objects_leave_their_ranges_and_a_plan_of_only_split_objects_is_one_range() {
        let mut c = Cuts::new(SplitRule { above: Some(1000), shards: 4 });
        for (k, s) in [("a", 10), ("b", 5000), ("c", 10), ("d", 7000), ("e", 10)] {
            c.add(k, s);
        }
        let big = c.take_split();
        assert_eq!(big, [("b".to_owned(), 5000), ("d".to_owned(), 7000)]);
        let r = c.without(&big).ranges(4);
        assert_eq!(r.iter().map(|s| s.bytes).sum::<u64>(), 30);
        assert_eq!(r.iter().map(|s| s.objects).sum::<u64>(), 3);
        // Every object split (a retry of split objects): nothing left to weigh, one range, not one per key.
        let mut only = Cuts::new(SplitRule { above: Some(1000), shards: 2 });
        for k in ["p", "q", "r", "s", "t"] {
            only.add(k, 4000);
        }
        let big = only.take_split();
        let r = only.without(&big).ranges(2);
        assert_eq!((r.len(), r[0].after.as_deref(), r[0].upto.as_deref()), (1, None, None), "{r:?}");
    }

    #[test]
    fn fewer_keys_than_shards_give_fewer_shards() {
        let r = cut(&[("a", 1), ("b", 1), ("c", 1)], 8);
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[2].upto, None);
        assert_eq!(r.iter().map(|s| s.objects).sum::<u64>(), 3);
        assert_eq!(cut(&[], 4).len(), 1);
    }

    #[test]
    fn sampling_keeps_memory_bounded_and_cuts_within_a_stride() {
        let mut c = Cuts::default();
        for i in 0..(MAX_SAMPLES as u64 * 3) {
            c.add(&format!("{i:010}"), 100);
        }
        assert!(c.samples.len() < MAX_SAMPLES);
        let r = c.ranges(3);
        assert_eq!(r.iter().map(|s| s.objects).sum::<u64>(), MAX_SAMPLES as u64 * 3);
    }
}
