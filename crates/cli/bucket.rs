//! The everyday object and bucket commands: `ls`, `du`, `rm`, `mb`, `rb`, `cat`.
//!
//! Each is one store's requests, retried as any request is, with the exit status `--help` gives: 0 done,
//! 1 a request failed, 2 bad input (nothing done), 3 partly done (`rm`: some objects could not be removed).
//! Listings are read page by page: nothing holds a whole bucket's keys.

use crate::addr::{Location, Scheme};
use crate::object::rfc3339;
use crate::output::{human_bytes, OutputArgs};
use crate::remote::{explain, Opened, StoreArgs};
use crate::{Usage, EXIT_FAILED, EXIT_OK, EXIT_RESUMABLE, EXIT_USAGE};
use clap::Args;
use futures::TryStreamExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use transfer_engine::job::KeyFilter;
use transfer_engine::run::RetryPolicy;
use transfer_engine::store::{ListEntry, ListRequest, VersionEntry, VersionsRequest};
use transfer_engine::{ErrorKind, ObjectRef};

/// Most keys one DeleteMultipleObjects takes.
const DELETE_BATCH: usize = 1000;

/// Options of `transfer ls`.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// oss://, s3:// or local://BUCKET[/PREFIX]; without a bucket (`oss://`), the buckets.
    url: String,
    /// Every object under the prefix, not only its first level (no `DIR` rows).
    #[arg(short, long)]
    recursive: bool,
    /// Add each object's storage class and ETag.
    #[arg(short, long)]
    long: bool,
    /// Every version and delete marker under the prefix (at any depth), each key's newest first, with its
    /// version id and whether it is the current one.
    #[arg(long)]
    all_versions: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Options of `transfer du`.
#[derive(Debug, Args)]
pub(crate) struct DuArgs {
    /// oss://, s3:// or local://BUCKET[/PREFIX].
    url: String,
    #[command(flatten)]
    store: StoreArgs,
}

/// Options of `transfer rm`.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// The object (oss://BUCKET/KEY), or with -r every object under a prefix.
    url: String,
    /// Every object under the prefix (DeleteMultipleObjects, 1,000 a request).
    #[arg(short, long)]
    recursive: bool,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// With -r: only objects matching this glob, relative to the prefix (repeatable).
    #[arg(long = "include", value_name = "GLOB")]
    include: Vec<String>,
    /// With -r: leave objects matching this glob (repeatable; wins over --include).
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// Remove this version of the object (versioned buckets).
    #[arg(long)]
    version_id: Option<String>,
    /// Remove every version and delete marker of the object (with -r: of every key under the prefix), so
    /// nothing of it is left; without it, a versioned bucket keeps the versions under a delete marker.
    #[arg(long)]
    all_versions: bool,
    /// With -r on a whole bucket (no prefix): yes, every object of it.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Options of `transfer mb` and `transfer rb`.
#[derive(Debug, Args)]
pub(crate) struct BucketArgs {
    /// oss://, s3:// or local://BUCKET.
    url: String,
    /// `rb` only: remove the bucket's objects and incomplete multipart uploads first.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Options of `transfer cat`.
#[derive(Debug, Args)]
pub(crate) struct CatArgs {
    /// oss://, s3:// or local://BUCKET/KEY.
    url: String,
    /// A specific version of the object.
    #[arg(long)]
    version_id: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Why a one-store command stopped: bad input (2), a failed request (1), or some objects of many (3).
pub(crate) enum Failure {
    Usage(String),
    Request(String),
    Partial(String),
}

impl From<Usage> for Failure {
    fn from(u: Usage) -> Self {
        Failure::Usage(u.0)
    }
}

/// The exit status of a one-store command, its error said.
pub(crate) fn exit(result: Result<(), Failure>) -> u8 {
    let (code, msg) = match result {
        Ok(()) => return EXIT_OK,
        Err(Failure::Usage(m)) => (EXIT_USAGE, m),
        Err(Failure::Request(m)) => (EXIT_FAILED, m),
        Err(Failure::Partial(m)) => (EXIT_RESUMABLE, m),
    };
    tracing::error!("{msg}");
    code
}

/// A remote address: its scheme, bucket and key (or prefix). `bucket_optional`: `oss://` alone is taken.
fn remote(url: &str, bucket_optional: bool) -> Result<(Scheme, String, String), Usage> {
    for scheme in [Scheme::Oss, Scheme::S3, Scheme::Local] {
        if bucket_optional && url == format!("{}://", scheme.name()) {
            return Ok((scheme, String::new(), String::new()));
        }
    }
    match Location::parse(url).map_err(Usage)? {
        Location::Remote { scheme, bucket, key } => Ok((scheme, bucket, key)),
        Location::Path(_) => Err(Usage(format!("{url}: name a bucket as oss://, s3:// or local://BUCKET[/KEY]"))),
    }
}

/// Requests are retried as the engine retries them.
pub(crate) fn policy() -> RetryPolicy {
    RetryPolicy::default()
}

fn request_failed(what: &str, e: &transfer_engine::Error) -> Failure {
    Failure::Request(format!("{what}: {}", explain(e)))
}

/// Every object under `prefix` of `bucket`, page by page, with the filter applied to keys relative to it.
fn objects<'a>(
    store: &'a Opened,
    bucket: &'a str,
    prefix: &'a str,
    filter: Option<&'a KeyFilter>,
) -> impl futures::Stream<Item = transfer_engine::Result<ListEntry>> + 'a {
    let req = ListRequest::default().prefix((!prefix.is_empty()).then(|| prefix.to_owned())).max_keys(Some(1000));
    let store: Arc<dyn transfer_engine::ObjectStore> = store.objects.clone();
    transfer_engine::store::list_all(store, bucket, req).try_filter(move |e| {
        let rel = e.key.strip_prefix(prefix).unwrap_or(&e.key);
        std::future::ready(filter.is_none_or(|f| f.matches(rel)))
    })
}

/// Runs `transfer ls`.
pub(crate) async fn ls(args: LsArgs, out: OutputArgs) -> u8 {
    exit(
        async {
            let (scheme, bucket, prefix) = remote(&args.url, true)?;
            let store = args.store.open(scheme)?;
            if bucket.is_empty() {
                let buckets = policy()
                    .run("ListBuckets", |_| store.buckets.list_buckets())
                    .await
                    .map_err(|e| request_failed(&format!("listing the buckets of {}", store.what), &e))?;
                for (name, created) in buckets {
                    match out.json {
                        true => out!("{}", json!({"bucket": name, "created": rfc3339(created)})),
                        false => out!("{}  {}://{name}", rfc3339(created), scheme.name()),
                    }
                }
                return Ok(());
            }
            if args.all_versions {
                return list_versions(&store, &bucket, &prefix, None, |v| {
                    print_version(&v, out);
                    std::future::ready(Ok(()))
                })
                .await
                .map_err(|e| request_failed(&format!("listing the versions under {}", args.url), &e));
            }
            let mut req =
                ListRequest::default().prefix((!prefix.is_empty()).then(|| prefix.clone())).max_keys(Some(1000));
            if !args.recursive {
                req = req.delimiter(Some("/".into()));
            }
            loop {
                let page = policy()
                    .run("ListObjects", |_| store.objects.list_objects(&bucket, &req))
                    .await
                    .map_err(|e| request_failed(&format!("listing {}", args.url), &e))?;
                // One page's prefixes, then its objects: each group in key order.
                for p in &page.common_prefixes {
                    match out.json {
                        true => out!("{}", json!({"type": "prefix", "prefix": p})),
                        false => out!("{:>20}  {:>12}  {p}", "", "DIR"),
                    }
                }
                for e in &page.objects {
                    let modified = rfc3339(e.last_modified);
                    if out.json {
                        out!(
                            "{}",
                            json!({"type": "object", "key": e.key, "size": e.size, "last_modified": modified,
                                   "etag": e.etag, "storage_class": e.storage_class.as_str()})
                        );
                    } else if args.long {
                        out!("{modified}  {:>12}  {:<16}  {}  {}", e.size, e.storage_class.as_str(), e.etag, e.key);
                    } else {
                        out!("{modified}  {:>12}  {}", e.size, e.key);
                    }
                }
                match page.next_continuation_token {
                    Some(token) if page.is_truncated => req = req.continuation_token(Some(token)),
                    _ => return Ok(()),
                }
            }
        }
        .await,
    )
}

/// One line of `ls --all-versions`.
fn print_version(v: &VersionEntry, out: OutputArgs) {
    let modified = rfc3339(v.last_modified);
    if out.json {
        let kind = if v.delete_marker { "delete_marker" } else { "version" };
        out!(
            "{}",
            json!({"type": kind, "key": v.key, "version_id": v.version_id, "is_latest": v.is_latest,
                   "size": v.size, "last_modified": modified, "etag": v.etag, "storage_class": v.storage_class.as_str()})
        );
        return;
    }
    let size = if v.delete_marker { "DELETED".to_owned() } else { v.size.to_string() };
    let current = if v.is_latest { "  (current)" } else { "" };
    out!("{modified}  {size:>12}  {}  {}{current}", v.version_id, v.key);
}

/// Calls `each` on every version and delete marker under `prefix` (only those of the key `exact`, when given),
/// page by page.
async fn list_versions<F, Fut>(
    store: &Opened,
    bucket: &str,
    prefix: &str,
    exact: Option<&str>,
    mut each: F,
) -> transfer_engine::Result<()>
where
    F: FnMut(VersionEntry) -> Fut,
    Fut: std::future::Future<Output = transfer_engine::Result<()>>,
{
    let mut req =
        VersionsRequest::default().prefix((!prefix.is_empty()).then(|| prefix.to_owned())).max_keys(Some(1000));
    loop {
        let page = policy().run("ListObjectVersions", |_| store.objects.list_versions(bucket, &req)).await?;
        for v in page.versions {
            if exact.is_none_or(|k| v.key == k) {
                each(v).await?;
            }
        }
        if !page.is_truncated {
            return Ok(());
        }
        req = req.key_marker(page.next_key_marker).version_id_marker(page.next_version_id_marker);
    }
}

/// Runs `transfer du`: objects and bytes under a prefix, in all and by storage class.
pub(crate) async fn du(args: DuArgs, out: OutputArgs) -> u8 {
    exit(
        async {
            let (scheme, bucket, prefix) = remote(&args.url, false)?;
            let store = args.store.open(scheme)?;
            let mut by_class: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
            let mut listing = std::pin::pin!(objects(&store, &bucket, &prefix, None));
            while let Some(e) =
                listing.try_next().await.map_err(|e| request_failed(&format!("listing {}", args.url), &e))?
            {
                let c = by_class.entry(e.storage_class.as_str()).or_default();
                (c.0, c.1) = (c.0 + 1, c.1 + e.size);
            }
            let (objects, bytes) = by_class.values().fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
            if out.json {
                let classes: serde_json::Map<String, serde_json::Value> =
                    by_class.iter().map(|(k, (n, b))| (k.to_string(), json!({"objects": n, "bytes": b}))).collect();
                out!("{}", json!({"url": args.url, "objects": objects, "bytes": bytes, "storage_classes": classes}));
            } else {
                out!("{bytes} bytes ({}) in {objects} objects: {}", human_bytes(bytes), args.url);
                for (class, (n, b)) in &by_class {
                    out!("  {class}: {b} bytes ({}) in {n} objects", human_bytes(*b));
                }
            }
            Ok(())
        }
        .await,
    )
}

/// Runs `transfer rm`.
pub(crate) async fn rm(args: RmArgs, out: OutputArgs) -> u8 {
    exit(
        async {
            let (scheme, bucket, key) = remote(&args.url, false)?;
            let filtered = !args.include.is_empty() || !args.exclude.is_empty();
            if args.all_versions {
                return rm_all_versions(&args, scheme, (&bucket, &key), out).await;
            }
            if !args.recursive {
                if key.is_empty() || key.ends_with('/') {
                    return Err(Failure::Usage(format!(
                        "{}: a prefix; add -r to remove every object under it (or name one object)",
                        args.url
                    )));
                }
                if filtered {
                    return Err(Failure::Usage(
                        "--include and --exclude choose among the objects of a prefix; add -r".into(),
                    ));
                }
                let store = args.store.open(scheme)?;
                let mut obj = ObjectRef::new(&bucket, &key);
                if let Some(v) = &args.version_id {
                    obj = obj.at_version(v.clone());
                }
                return remove_one(&store, &obj, args.dry_run, out).await;
            }
            if args.version_id.is_some() {
                return Err(Failure::Usage("--version-id names one object's version; drop -r".into()));
            }
            if key.is_empty() && !args.force {
                return Err(Failure::Usage(format!(
                    "{}: every object of the bucket; add --force if that is what you mean",
                    args.url
                )));
            }
            let filter = KeyFilter::new(&args.include, &args.exclude)
                .map_err(|e| Failure::Usage(format!("--include/--exclude: {}", e.message())))?;
            let store = args.store.open(scheme)?;
            crate::remote::check_bucket(&store, &bucket).await?;
            let (removed, failed) = remove_all(&store, &bucket, &key, Some(&filter), args.dry_run, out).await?;
            let verb = if args.dry_run { "would remove" } else { "removed" };
            if out.json {
                out!("{}", json!({"event": "summary", "removed": removed, "failed": failed, "dry_run": args.dry_run}));
            } else {
                tracing::info!("{verb} {removed} objects under {}", args.url);
            }
            match failed {
                0 => Ok(()),
                n => Err(Failure::Partial(format!("{n} objects under {} could not be removed (see above)", args.url))),
            }
        }
        .await,
    )
}

/// `rm --all-versions`: every version and delete marker of one key, or with -r of every key under a prefix.
async fn rm_all_versions(
    args: &RmArgs,
    scheme: Scheme,
    (bucket, key): (&str, &str),
    out: OutputArgs,
) -> Result<(), Failure> {
    if args.version_id.is_some() {
        return Err(Failure::Usage("--all-versions removes every version; drop --version-id".into()));
    }
    if !args.include.is_empty() || !args.exclude.is_empty() {
        return Err(Failure::Usage("--include and --exclude do not apply to --all-versions".into()));
    }
    if (key.is_empty() || key.ends_with('/')) && !args.recursive {
        return Err(Failure::Usage(format!("{}: a prefix; add -r to remove every version under it", args.url)));
    }
    if key.is_empty() && !args.force {
        return Err(Failure::Usage(format!(
            "{}: every version of every object of the bucket; add --force if that is what you mean",
            args.url
        )));
    }
    let store = args.store.open(scheme)?;
    // Listed whole first, then removed: removing while listing would move what the markers point at.
    let mut all = Vec::new();
    list_versions(&store, bucket, key, (!args.recursive).then_some(key), |v| {
        all.push(ObjectRef::new(bucket, v.key).at_version(v.version_id));
        std::future::ready(Ok(()))
    })
    .await
    .map_err(|e| request_failed(&format!("listing the versions under {}", args.url), &e))?;
    if all.is_empty() {
        return Err(Failure::Request(format!("{}: no versions there", args.url)));
    }
    let (mut removed, mut failed) = (0u64, 0u64);
    for batch in all.chunks(DELETE_BATCH) {
        let (r, f) = remove_batch(&store, bucket, batch, args.dry_run, out).await?;
        (removed, failed) = (removed + r, failed + f);
    }
    if out.json {
        out!("{}", json!({"event": "summary", "removed": removed, "failed": failed, "dry_run": args.dry_run}));
    }
    match failed {
        0 => Ok(()),
        n => Err(Failure::Partial(format!("{n} versions under {} could not be removed", args.url))),
    }
}

/// Removes `batch` (at most 1,000 objects or versions of `bucket`) in one request, each said; with `dry_run`
/// only says it. Answers how many were removed and how many could not be.
async fn remove_batch(
    store: &Opened,
    bucket: &str,
    batch: &[ObjectRef],
    dry_run: bool,
    out: OutputArgs,
) -> Result<(u64, u64), Failure> {
    if dry_run {
        batch.iter().for_each(|o| report_removed(o, true, out));
        return Ok((batch.len() as u64, 0));
    }
    let results = policy()
        .run("DeleteMultipleObjects", |_| store.objects.delete_objects(bucket, batch))
        .await
        .map_err(|e| request_failed(&format!("removing objects of {bucket}"), &e))?;
    let (mut removed, mut failed) = (0u64, 0u64);
    for (obj, r) in batch.iter().zip(results) {
        match r {
            Ok(_) => {
                removed += 1;
                report_removed(obj, false, out);
            }
            Err(e) => {
                failed += 1;
                match out.json {
                    true => out!(
                        "{}",
                        json!({"event": "failed", "key": obj.key, "version_id": obj.version_id, "error": explain(&e)})
                    ),
                    false => tracing::error!("{obj}: {}", explain(&e)),
                }
            }
        }
    }
    Ok((removed, failed))
}

/// Removes one object (or version): a missing object is an error, as `rm` of a missing file is.
async fn remove_one(store: &Opened, obj: &ObjectRef, dry_run: bool, out: OutputArgs) -> Result<(), Failure> {
    policy()
        .run("HeadObject", |_| store.objects.head_object(obj))
        .await
        .map_err(|e| request_failed(&obj.to_string(), &e))?;
    if !dry_run {
        let r = policy().run("DeleteObject", |_| store.objects.delete_object(obj)).await;
        let r = r.map_err(|e| request_failed(&obj.to_string(), &e))?;
        if r.delete_marker {
            tracing::info!("{obj}: a delete marker now hides it (versioned bucket); its versions are kept");
        }
    }
    report_removed(obj, dry_run, out);
    Ok(())
}

/// Says that `obj` was (or, in a dry run, would be) removed; its version too when it names one.
fn report_removed(obj: &ObjectRef, dry_run: bool, out: OutputArgs) {
    let event = if dry_run { "planned" } else { "removed" };
    let shown = match &obj.version_id {
        Some(v) => format!("{} (version {v})", obj.key),
        None => obj.key.clone(),
    };
    match (out.json, dry_run) {
        (true, _) => out!("{}", json!({"event": event, "key": obj.key, "version_id": obj.version_id})),
        (false, true) => out!("would remove {shown}"),
        (false, false) => tracing::info!("removed {shown}"),
    }
}

/// Removes every object under `prefix` (that `filter` takes), 1,000 a request; answers how many were removed
/// and how many could not be (each said). A listing that fails stops it with an error.
async fn remove_all(
    store: &Opened,
    bucket: &str,
    prefix: &str,
    filter: Option<&KeyFilter>,
    dry_run: bool,
    out: OutputArgs,
) -> Result<(u64, u64), Failure> {
    let (mut removed, mut failed) = (0u64, 0u64);
    let mut listing = std::pin::pin!(objects(store, bucket, prefix, filter).try_chunks(DELETE_BATCH));
    while let Some(batch) =
        listing.try_next().await.map_err(|e| request_failed(&format!("listing {bucket}/{prefix}"), &e.1))?
    {
        let refs: Vec<ObjectRef> = batch.iter().map(|e| ObjectRef::new(bucket, &e.key)).collect();
        let (r, f) = remove_batch(store, bucket, &refs, dry_run, out).await?;
        (removed, failed) = (removed + r, failed + f);
    }
    Ok((removed, failed))
}

/// Runs `transfer mb`.
pub(crate) async fn mb(args: BucketArgs) -> u8 {
    exit(
        async {
            let (scheme, bucket, key) = remote(&args.url, false)?;
            if !key.is_empty() || args.force {
                return Err(Failure::Usage(format!(
                    "mb takes a bucket only ({}://BUCKET), without --force",
                    scheme.name()
                )));
            }
            let store = args.store.open(scheme)?;
            policy()
                .run("PutBucket", |_| store.buckets.create_bucket(&bucket))
                .await
                .map_err(|e| request_failed(&format!("creating bucket {bucket} at {}", store.what), &e))?;
            tracing::info!("bucket {bucket} is there");
            Ok(())
        }
        .await,
    )
}

/// Runs `transfer rb`.
pub(crate) async fn rb(args: BucketArgs, out: OutputArgs) -> u8 {
    exit(
        async {
            let (scheme, bucket, key) = remote(&args.url, false)?;
            if !key.is_empty() {
                return Err(Failure::Usage(format!(
                    "rb removes a bucket ({}://BUCKET); to remove objects use rm -r",
                    scheme.name()
                )));
            }
            let store = args.store.open(scheme)?;
            let not_empty = || {
                Failure::Request(format!(
                    "bucket {bucket} is not empty (objects, object versions or incomplete multipart uploads): it is \
                     kept. Add --force to remove its objects and uploads first"
                ))
            };
            if !args.force {
                // Asked here, not left to the server: some (s3s-fs) delete a bucket with everything in it.
                let one = ListRequest::default().max_keys(Some(1));
                let page = policy().run("ListObjects", |_| store.objects.list_objects(&bucket, &one)).await;
                match page {
                    Ok(page) if !page.objects.is_empty() || !page.common_prefixes.is_empty() => return Err(not_empty()),
                    Ok(_) => {}
                    Err(e) => return Err(request_failed(&format!("removing bucket {bucket}"), &e)),
                }
            }
            if args.force {
                crate::remote::check_bucket(&store, &bucket).await?;
                let (_, failed) = remove_all(&store, &bucket, "", None, false, out).await?;
                if failed > 0 {
                    return Err(Failure::Partial(format!(
                        "{failed} objects of {bucket} could not be removed; the bucket is kept"
                    )));
                }
                abort_uploads(&store, &bucket).await?;
            }
            let deleted = policy().run("DeleteBucket", |_| store.buckets.delete_bucket(&bucket)).await;
            match deleted {
                Ok(()) => {
                    tracing::info!("bucket {bucket} removed");
                    Ok(())
                }
                Err(e) if e.service_code() == Some("BucketNotEmpty") => Err(not_empty()),
                Err(e) => Err(request_failed(&format!("removing bucket {bucket}"), &e)),
            }
        }
        .await,
    )
}

/// Aborts every incomplete multipart upload of `bucket`.
async fn abort_uploads(store: &Opened, bucket: &str) -> Result<(), Failure> {
    use transfer_engine::store::{ListUploadsRequest, Upload};
    let mut req = ListUploadsRequest::default();
    loop {
        let page = policy().run("ListMultipartUploads", |_| store.objects.list_uploads(bucket, &req)).await;
        let page = match page {
            Ok(p) => p,
            // A store without the listing holds none we could find.
            Err(e) if e.kind() == ErrorKind::Unsupported => return Ok(()),
            Err(e) => return Err(request_failed(&format!("listing the uploads of {bucket}"), &e)),
        };
        for u in page.uploads {
            let upload = Upload::new(bucket, u.key, u.upload_id);
            policy()
                .run("AbortMultipartUpload", |_| store.objects.abort_multipart(&upload))
                .await
                .map_err(|e| request_failed(&format!("aborting upload {} of {}", upload.id, upload.key), &e))?;
        }
        if !page.is_truncated {
            return Ok(());
        }
        (req.key_marker, req.upload_id_marker) = (page.next_key_marker, page.next_upload_id_marker);
    }
}

/// Runs `transfer cat`: the object's bytes to stdout, as `transfer cp URL -` writes them.
pub(crate) async fn cat(args: CatArgs, out: OutputArgs) -> u8 {
    let mut argv = vec!["cp".to_owned(), args.url, "-".to_owned()];
    if let Some(v) = args.version_id {
        argv.extend(["--version-id".to_owned(), v]);
    }
    let cp = match crate::cp::CpArgs::from_argv(argv, args.store) {
        Ok(cp) => cp,
        Err(u) => return exit(Err(Failure::Usage(u.0))),
    };
    crate::cp::run_sources(cp, OutputArgs { quiet: true, ..out }).await
}
