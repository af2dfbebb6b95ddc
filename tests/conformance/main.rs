//! One conformance suite, run against every target: each case is written once, as an async function of a
//! [`Target`], and the [`conformance!`] table at the bottom makes one test per (target, case), named
//! `conformance::<target>::<case>` (`cargo test --test conformance moto::`).
//!
//! A target is a store ([`ObjectStore`] + [`BucketStore`]), a way to get a bucket to work in, and the
//! capabilities it declares ([`TargetCaps`]). A case lists the capabilities it needs; where a target declares
//! it lacks one, the runner reports the case *ignored* (its own runner, libtest-mimic, decides that when the
//! binary starts), never passed. Nothing else skips a case: a case that fails on one target but not another is
//! a bug (ours, fixed) or a capability (declared here). `cargo test --test conformance declared` prints the
//! whole matrix.
//!
//! Targets ([`targets`]): the local store in process; `transfer serve` through the OSS dialect and through the
//! S3 dialect; moto and s3s-fs, two third-party S3 servers started on 127.0.0.1; and any real endpoint named by
//! environment variables (`TRANSFER_CONFORMANCE_S3_*`, `TRANSFER_CONFORMANCE_OSS_*`), ignored unless asked for
//! with `--ignored`.

/// The test support the integration tests share; this binary uses part of it.
#[allow(dead_code)]
#[path = "../util/mod.rs"]
mod util;

use futures::future::BoxFuture;
use futures::FutureExt;
use std::any::Any;
use std::sync::Arc;
use transfer_engine::sign::Credentials;
use transfer_engine::store::Upload;
use transfer_engine::store::{ListRequest, ListUploadsRequest};
use transfer_engine::{BucketStore, Metadata, ObjectRef, ObjectStore, TagSet};
use util::caps::TargetCaps;

mod copy;
mod engine;
mod faults;
mod multipart;
mod objects;
mod tagging;
mod targets;
mod wire;

/// A capability a case needs.
#[derive(Debug, Clone, Copy)]
pub enum Cap {
    Http,
    Proxy,
    BucketAdmin,
    Tagging,
    Versioning,
    ListUploads,
    ListUploadsPaging,
    ListPartsPaging,
    NoSuchUpload,
    NoSuchBucket,
    BucketNotEmpty,
    CopySourceIfMatch,
    ConditionalPut,
    ConditionalCopy,
    ChecksSignatures,
    ChecksContentMd5,
    ChecksDefaultDigests,
}

impl Cap {
    fn has(self, c: &TargetCaps) -> bool {
        match self {
            Cap::Http => c.http,
            Cap::Proxy => c.proxy,
            Cap::BucketAdmin => c.bucket_admin,
            Cap::Tagging => c.tagging,
            Cap::Versioning => c.versioning,
            Cap::ListUploads => c.list_uploads,
            Cap::ListUploadsPaging => c.list_uploads_paging,
            Cap::ListPartsPaging => c.list_parts_paging,
            Cap::NoSuchUpload => c.no_such_upload,
            Cap::NoSuchBucket => c.no_such_bucket,
            Cap::BucketNotEmpty => c.bucket_not_empty,
            Cap::CopySourceIfMatch => c.copy_source_if_match,
            Cap::ConditionalPut => c.conditional_put,
            Cap::ConditionalCopy => c.conditional_copy,
            Cap::ChecksSignatures => c.checks_signatures,
            Cap::ChecksContentMd5 => c.checks_content_md5,
            Cap::ChecksDefaultDigests => c.checks_default_digests,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Cap::Http => "wire (it runs in process)",
            Cap::Proxy => "test proxy in front (not on loopback, or no wire)",
            Cap::BucketAdmin => "bucket administration (the suite works in a bucket it is given)",
            Cap::Tagging => "object tagging",
            Cap::Versioning => "bucket versioning",
            Cap::ListUploads => "ListMultipartUploads",
            Cap::ListUploadsPaging => "ListMultipartUploads paging (max-uploads, markers)",
            Cap::ListPartsPaging => "ListParts paging (max-parts, part-number-marker)",
            Cap::NoSuchUpload => "NoSuchUpload for unknown upload ids",
            Cap::NoSuchBucket => "NoSuchBucket for missing buckets",
            Cap::BucketNotEmpty => "BucketNotEmpty (DeleteBucket refuses a bucket with objects)",
            Cap::CopySourceIfMatch => "copy-source-if-match checks",
            Cap::ConditionalPut => "writes that refuse to overwrite",
            Cap::ConditionalCopy => "copies that refuse to overwrite",
            Cap::ChecksSignatures => "signature checks",
            Cap::ChecksContentMd5 => "Content-MD5 checks",
            Cap::ChecksDefaultDigests => "checks of bodies under the default protection (CRC-64 / CRC-32C)",
        }
    }
}

/// Which wire a target speaks, when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Oss,
    S3,
}

/// How to reach a target over HTTP: for cases that sign with other credentials or put a proxy in between.
#[derive(Debug, Clone)]
pub struct Wire {
    pub endpoint: String,
    pub dialect: Dialect,
    pub region: String,
    pub credentials: Credentials,
    /// Path-style addressing (`Some(false)`: virtual-hosted; `None`: the client's default for the endpoint).
    pub path_style: Option<bool>,
}

/// Every operation a case may call: the engine's store contract and OSS's own operations (a target without
/// them answers `Unsupported`, as its capabilities declare).
pub trait TestStore: transfer_engine::Store + transfer_engine::OssExtensions {}

impl<T: transfer_engine::Store + transfer_engine::OssExtensions + ?Sized> TestStore for T {}

/// A store under test, with what keeps it alive (a server process, a temporary directory).
pub struct Target {
    pub name: &'static str,
    pub store: Arc<dyn TestStore>,
    pub buckets: Arc<dyn BucketStore>,
    pub caps: TargetCaps,
    /// `None` for the store in process.
    pub wire: Option<Wire>,
    /// A real endpoint's bucket: cases work under a unique prefix in it instead of creating buckets.
    fixed_bucket: Option<String>,
    /// A unique prefix per test on a fixed bucket.
    run_prefix: String,
    _keep: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).field("caps", &self.caps).finish_non_exhaustive()
    }
}

/// Where a case works: a bucket, and a prefix every key it writes starts with (empty on a bucket of its own).
#[derive(Debug, Clone)]
pub struct Scope {
    pub bucket: String,
    pub prefix: String,
}

impl Scope {
    /// The full key of `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The object `name`.
    pub fn obj(&self, name: &str) -> ObjectRef {
        ObjectRef::new(&self.bucket, self.key(name))
    }
}

impl Target {
    /// A bucket for a case: a new bucket `name` on targets the suite owns; on a real endpoint, its bucket and a
    /// prefix unique to this test.
    pub async fn scope(&self, name: &str) -> Scope {
        match &self.fixed_bucket {
            Some(b) => Scope { bucket: b.clone(), prefix: format!("{}{name}/", self.run_prefix) },
            None => {
                self.buckets
                    .create_bucket(name)
                    .await
                    .unwrap_or_else(|e| panic!("{}: create bucket {name}: {e}", self.name));
                Scope { bucket: name.to_owned(), prefix: String::new() }
            }
        }
    }

    /// A scope in a bucket with versioning enabled (a real endpoint's bucket must already have it).
    pub async fn versioned_scope(&self, name: &str) -> Scope {
        let scope = self.scope(name).await;
        if self.fixed_bucket.is_none() {
            self.buckets.put_versioning(&scope.bucket, true).await.unwrap();
        }
        assert_eq!(
            self.buckets.get_versioning(&scope.bucket).await.unwrap(),
            transfer_engine::store::Versioning::Enabled
        );
        scope
    }

    /// A client of the target with other credentials (only on targets with a wire).
    pub fn client_with(&self, credentials: Credentials) -> Arc<dyn TestStore> {
        let endpoint = self.wire.as_ref().expect("a target with a wire").endpoint.clone();
        self.client_at(&endpoint, credentials)
    }

    /// A client of this target's dialect at `endpoint` (the target's, or a proxy's in front of it) signing with
    /// `credentials` (only on targets with a wire).
    pub fn client_at(&self, endpoint: &str, credentials: Credentials) -> Arc<dyn TestStore> {
        let wire = self.wire.as_ref().expect("a target with a wire");
        let wire = Wire { endpoint: endpoint.to_owned(), credentials, ..wire.clone() };
        match wire.dialect {
            Dialect::Oss => Arc::new(targets::oss_client(&wire)),
            Dialect::S3 => Arc::new(targets::s3_client(&wire, self.caps.tagging)),
        }
    }

    /// Removes what a case left under its prefix on a real endpoint's bucket (objects and uploads; old
    /// versions stay, as the store contract has no ListObjectVersions).
    async fn clean_up(&self) {
        let Some(bucket) = &self.fixed_bucket else { return };
        let prefix = Some(self.run_prefix.clone());
        let mut token = None;
        loop {
            let req = ListRequest::default().prefix(prefix.clone()).continuation_token(token.clone());
            let Ok(page) = self.store.list_objects(bucket, &req).await else { break };
            for o in &page.objects {
                let _ = self.store.delete_object(&ObjectRef::new(bucket, &o.key)).await;
            }
            if !page.is_truncated || page.next_continuation_token.is_none() {
                break;
            }
            token = page.next_continuation_token;
        }
        let req = ListUploadsRequest::default().prefix(prefix.clone());
        if let Ok(page) = self.store.list_uploads(bucket, &req).await {
            for u in &page.uploads {
                let _ = self.store.abort_multipart(&Upload::new(bucket, &u.key, u.upload_id.clone())).await;
            }
        }
    }
}

/// A target as the table names it: its name, its declared capabilities, and how to start it (a real endpoint
/// not configured panics: its cases run only when asked for).
#[derive(Debug)]
pub struct TargetDef {
    pub name: &'static str,
    pub caps: fn() -> TargetCaps,
    pub start: fn(&str) -> Target,
}

/// What `def` lacks of what a case needs, described (empty: the case runs there).
fn missing(def: &TargetDef, needs: &[Cap]) -> Vec<&'static str> {
    let caps = (def.caps)();
    needs.iter().filter(|c| !c.has(&caps)).map(|c| c.describe()).collect()
}

/// Runs `case` against the target `def` (which declares every capability it needs).
async fn run(def: &TargetDef, case: &str, f: for<'a> fn(&'a Target) -> BoxFuture<'a, ()>) {
    let test = format!("conformance::{}::{case}", def.name);
    let target = (def.start)(&test);
    let outcome = std::panic::AssertUnwindSafe(f(&target)).catch_unwind().await;
    target.clean_up().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Metadata the cases write: user metadata and two standard headers.
pub fn meta() -> Metadata {
    let mut m = Metadata::with_user([("origin", "backup"), ("team", "storage")]).unwrap();
    m.content_type = Some("application/x-test".into());
    m.cache_control = Some("no-cache".into());
    m
}

/// Tags the cases write, with characters that need encoding in the tagging header.
pub fn tags() -> TagSet {
    TagSet::from_pairs([("k4+-=", "+-=._:/"), ("plain", "v w")]).unwrap()
}

/// Asserts that `got` carries `want`'s user metadata, Content-Type and Cache-Control.
#[track_caller]
/// The metadata `want` is on the object: its user metadata, besides the file's modification time and mode an
/// upload records (which must read as such), and its standard headers.
pub fn assert_meta(got: &Metadata, want: &Metadata) {
    use transfer_engine::job::{parse_mtime, MODE_METADATA, MTIME_METADATA};
    let mut user = got.user.clone();
    if !want.user.contains_key(MTIME_METADATA) {
        if let Some(t) = user.remove(MTIME_METADATA) {
            assert!(parse_mtime(&t).is_some(), "mtime {t:?}");
        }
    }
    if !want.user.contains_key(MODE_METADATA) {
        if let Some(m) = user.remove(MODE_METADATA) {
            assert!(u32::from_str_radix(&m, 8).is_ok_and(|m| m & 0o170000 == 0o100000), "a regular file's mode: {m:?}");
        }
    }
    assert_eq!(user, want.user);
    assert_eq!(got.content_type, want.content_type);
    assert_eq!(got.cache_control, want.cache_control);
}

/// The whole object.
pub async fn read(store: &dyn ObjectStore, obj: &ObjectRef) -> Vec<u8> {
    store.get_object(obj, None).await.unwrap_or_else(|e| panic!("GET {obj}: {e}")).bytes().await.unwrap().to_vec()
}

/// The object's tags, sorted.
pub async fn tags_of(store: &dyn ObjectStore, obj: &ObjectRef) -> Vec<transfer_engine::tags::Tag> {
    store.get_tagging(obj).await.unwrap_or_else(|e| panic!("GetObjectTagging {obj}: {e}")).sorted()
}

/// A case of the table: its name, the capabilities it needs, and its body.
struct Case {
    name: &'static str,
    needs: &'static [Cap],
    body: for<'a> fn(&'a Target) -> BoxFuture<'a, ()>,
}

/// The table: the targets CI runs, the targets that run only when asked for (with why), and the cases, each
/// `module::function [Cap, ...]`.
macro_rules! conformance {
    (targets: [$($target:ident),* $(,)?], ignored: [$($ignored:ident = $why:literal),* $(,)?],
     cases: [$($module:ident :: $case:ident [$($cap:ident),*]),* $(,)?]) => {
        /// The targets CI runs.
        const TARGETS: &[fn() -> TargetDef] = &[$(targets::$target),*];
        /// The targets that run only when asked for, with the reason.
        const ASKED_FOR: &[(fn() -> TargetDef, &str)] = &[$((targets::$ignored, $why)),*];
        /// The cases, with the capabilities each needs.
        const CASES: &[Case] = &[$(Case {
            name: stringify!($case),
            needs: &[$(Cap::$cap),*],
            body: |t| Box::pin($module::$case(t)),
        }),*];
    };
}

conformance! {
    targets: [local, serve_oss, serve_s3, moto, s3s_fs],
    // Real endpoints run only when asked for (`-- --ignored`, with their variables set): the runner reports
    // them as ignored, never as passed.
    ignored: [
        env_s3 = "needs a real S3 endpoint: set TRANSFER_CONFORMANCE_S3_ENDPOINT, _REGION, _BUCKET and run with --ignored",
        env_oss = "needs a real OSS endpoint: set TRANSFER_CONFORMANCE_OSS_ENDPOINT, _REGION, _BUCKET and run with --ignored",
    ],
    cases: [
        objects::put_get_head_with_metadata [],
        objects::listing_with_prefixes_and_paging [],
        objects::delete_many [],
        objects::missing_bucket [NoSuchBucket],
        objects::buckets [BucketAdmin],
        objects::delete_bucket_refuses_objects [BucketAdmin, BucketNotEmpty],
        objects::versioning_states [BucketAdmin, Versioning],
        objects::versions_are_listed_by_key_newest_first [Versioning],
        tagging::tags_on_put [Tagging],
        tagging::put_get_delete_tagging [Tagging],
        tagging::tags_on_a_specific_version [Tagging, Versioning],
        multipart::parts_out_of_order_with_metadata [],
        multipart::tags_on_initiate [Tagging],
        multipart::list_parts_in_pages [ListPartsPaging],
        multipart::abort [],
        multipart::unknown_upload_ids [NoSuchUpload],
        multipart::list_uploads [ListUploads],
        multipart::list_uploads_in_pages [ListUploads, ListUploadsPaging],
        copy::upload_part_copy_with_ranges [],
        copy::copies_check_the_source_etag [CopySourceIfMatch],
        copy::copy_object_metadata_directive [],
        copy::copy_object_tagging_directive [Tagging],
        engine::resumable_upload [],
        engine::resumable_download [],
        engine::downloads_check_the_blake3_an_upload_labelled [],
        engine::multipart_copy_keeps_or_replaces_metadata [],
        engine::copy_threshold_defaults_to_the_stores_copy_limit [],
        engine::prefix_copy_over_several_pages [],
        engine::tags_on_upload_and_both_copy_modes [Tagging],
        engine::parts_the_server_acknowledged_are_not_sent_again [],
        engine::a_lost_ledger_costs_checks_not_resends [ListUploads],
        engine::a_completed_upload_the_ledger_missed_is_not_sent_again [NoSuchUpload],
        engine::copy_parts_the_server_acknowledged_are_not_copied_again [],
        engine::a_file_changed_during_its_upload_never_publishes [ConditionalPut],
        engine::a_file_reached_through_a_symlink_uploads [],
        engine::no_clobber_upload_when_the_destination_appears [ConditionalPut],
        engine::no_clobber_copy_when_the_destination_appears [ConditionalPut, ConditionalCopy],
        wire::forbid_overwrite [ConditionalPut],
        wire::forbid_overwrite_on_copy [ConditionalCopy, CopySourceIfMatch],
        wire::signatures_are_checked [Http, ChecksSignatures],
        wire::corrupted_bodies_are_refused [Proxy, ChecksContentMd5],
        wire::damaged_bodies_fail_with_the_default_protection [Proxy, ChecksDefaultDigests],
        faults::engine_jobs_through_faults [Proxy],
        faults::lost_complete_answers [Proxy, NoSuchUpload],
    ]
}

/// Which cases each target runs and which it cannot (by its declared capabilities), every gap of its entry in
/// the matrix, and that every case runs against at least two targets in CI.
fn declared_skips() -> Result<(), libtest_mimic::Failed> {
    let mut runs = vec![0usize; CASES.len()];
    for def in TARGETS.iter().map(|t| t()) {
        let mut skipped = Vec::new();
        for (i, case) in CASES.iter().enumerate() {
            let missing = missing(&def, case.needs);
            if missing.is_empty() {
                runs[i] += 1;
            } else {
                skipped.push(format!("{} (no {})", case.name, missing.join(", no ")));
            }
        }
        println!(
            "{}: runs {} of {} cases; cannot run: {}; gaps (the only checks any test drops there): {}",
            def.name,
            CASES.len() - skipped.len(),
            CASES.len(),
            skipped.join("; "),
            (def.caps)().gaps().join(", ")
        );
    }
    for (case, n) in CASES.iter().zip(runs) {
        if n < 2 {
            return Err(format!("{} runs against {n} target(s) in CI", case.name).into());
        }
    }
    Ok(())
}

/// One trial per (target, case), ignored where the target declares it lacks what the case needs or is a real
/// endpoint not asked for; and the matrix check.
fn main() {
    let (args, filters) = arguments();
    let defs = TARGETS.iter().map(|t| (t(), None)).chain(ASKED_FOR.iter().map(|(t, why)| (t(), Some(*why))));
    let mut trials = vec![libtest_mimic::Trial::test("conformance::declared_skips", declared_skips)];
    for (def, asked_for) in defs {
        for case in CASES {
            let lacks = missing(&def, case.needs);
            let name = format!("conformance::{}::{}", def.name, case.name);
            let ignored = asked_for.is_some() || !lacks.is_empty();
            let (target, case_name, body) = (def.name, case.name, case.body);
            let trial = libtest_mimic::Trial::test(name, move || {
                if !lacks.is_empty() {
                    // Asked for with --ignored: it still cannot run there.
                    return Err(format!("{target} declares no {}", lacks.join(", no ")).into());
                }
                let def =
                    TARGETS.iter().chain(ASKED_FOR.iter().map(|(t, _)| t)).map(|t| t()).find(|d| d.name == target);
                let def = def.expect("a target of the table");
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                rt.block_on(run(&def, case_name, body));
                Ok(())
            });
            trials.push(trial.with_ignored_flag(ignored));
        }
    }
    if !filters.is_empty() {
        let keep = |name: &str| filters.iter().any(|f| if args.exact { name == f } else { name.contains(f.as_str()) });
        trials.retain(|t| keep(t.name()));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// The command line as libtest-mimic reads it, and the filters apart: libtest takes any number of them (`cargo
/// test --test tests --test conformance -- a:: b::` passes the same ones to both binaries), libtest-mimic one.
fn arguments() -> (libtest_mimic::Arguments, Vec<String>) {
    const TAKES_A_VALUE: &[&str] = &["--test-threads", "--logfile", "--skip", "--color", "--format", "-Z"];
    let mut args = std::env::args();
    let mut kept: Vec<String> = args.next().into_iter().collect();
    let mut filters = Vec::new();
    while let Some(a) = args.next() {
        if TAKES_A_VALUE.contains(&a.as_str()) {
            kept.push(a);
            kept.extend(args.next());
        } else if a.starts_with('-') {
            kept.push(a);
        } else {
            filters.push(a);
        }
    }
    (libtest_mimic::Arguments::from_iter(kept), filters)
}
