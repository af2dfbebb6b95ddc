//! The engine (`transfer_engine::job::Engine`) end to end: a multipart upload interrupted and resumed
//! without re-sending what arrived, and server-side copies on both paths (one CopyObject below the copy
//! threshold, UploadPartCopy parts above it; without a threshold, the store's CopyObject limit decides) keeping
//! or replacing metadata and tags.

use super::{assert_meta, meta, read, tags, tags_of, Dialect, Target};
use crate::util::data;
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transfer_engine::checkpoint::{JobId, JobKind, JobSpec, Ledger};
use transfer_engine::job::{
    CopyRequest, DigestOptions, DownloadRequest, Engine, EngineConfig, Overwrite, SkipReason, StreamRequest, TagOn,
    UploadRequest, Writer,
};
use transfer_engine::plan::PlanOptions;
use transfer_engine::run::RetryPolicy;
use transfer_engine::store::*;
use transfer_engine::{Error, ErrorKind, Metadata, ObjectRef, ObjectStore, Result, TagSet};

const MIB: usize = 1024 * 1024;

/// Parts of 5 MiB (S3's smallest), multipart from 6 MiB, two requests in flight.
fn config(tag_on: TagOn) -> EngineConfig {
    EngineConfig::default()
        .plan(
            PlanOptions::default()
                .preferred_part_size(5 * MIB as u64)
                .multipart_threshold(6 * MIB as u64)
                .copy_threshold(Some(6 * MIB as u64))
                .copy_part_size(5 * MIB as u64)
                .max_in_flight(2),
        )
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(20)))
        .tag_on(tag_on)
}

/// A ledger in a temporary directory, and jobs in it.
struct Jobs {
    dir: tempfile::TempDir,
    ledger: Ledger,
}

impl Jobs {
    fn new() -> Jobs {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
        Jobs { dir, ledger }
    }

    fn job(&self, kind: JobKind, destination: &str) -> JobId {
        let spec = JobSpec { kind, source: "conformance".into(), destination: destination.into(), note: String::new() };
        self.ledger.create_job(&spec).unwrap()
    }

    fn engine(&self, store: Arc<dyn Store>, tag_on: TagOn) -> Engine {
        Engine::new(store, self.ledger.clone(), config(tag_on)).unwrap()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// The target's store, recording the part numbers it is asked to upload or copy and the copy requests it sends, and
/// refusing one part (uploaded or copied) once (a permanent 403, as a revoked permission would): the run fails
/// after the parts in flight were acknowledged. It can also hide an object from the next HEAD of it, as if it
/// appeared just after, declare a lower CopyObject limit than the target's, lose the answer to a Complete the
/// server carried out (as a kill right after it would), and edit a file when a request comes.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn Store>,
    caps: Capabilities,
    fail_part: Option<u32>,
    failed: AtomicBool,
    sent: Mutex<Vec<u32>>,
    copies: Mutex<Vec<&'static str>>,
    hidden: Mutex<Vec<ObjectRef>>,
    lose_complete: AtomicBool,
    edit: Mutex<Option<Edit>>,
}

/// A file rewritten with other bytes when a request comes: a HEAD (before an object's single PutObject reads
/// it) or the upload of part `n`.
#[derive(Debug)]
struct Edit {
    on_part: Option<u32>,
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl Recording {
    /// Applies the edit waiting for this request (`part`: `None` for a HEAD), once.
    fn edit_on(&self, part: Option<u32>) {
        let mut edit = self.edit.lock().unwrap();
        if edit.as_ref().is_some_and(|e| e.on_part == part) {
            let e = edit.take().unwrap();
            // Another modification time than the file had, however coarse the filesystem's clock.
            std::thread::sleep(Duration::from_millis(20));
            std::fs::write(&e.path, &e.bytes).unwrap();
        }
    }
}

impl Recording {
    fn new(inner: Arc<dyn Store>, fail_part: Option<u32>) -> Arc<Recording> {
        Arc::new(Recording {
            caps: inner.capabilities().clone(),
            inner,
            fail_part,
            failed: AtomicBool::new(false),
            sent: Mutex::default(),
            copies: Mutex::default(),
            hidden: Mutex::default(),
            lose_complete: AtomicBool::new(false),
            edit: Mutex::default(),
        })
    }

    /// The target's store, declaring that one CopyObject copies at most `max_copy_size` bytes.
    fn with_copy_limit(inner: Arc<dyn Store>, max_copy_size: u64) -> Arc<Recording> {
        let caps = Capabilities { max_copy_size, ..inner.capabilities().clone() };
        let mut r = Arc::into_inner(Recording::new(inner, None)).unwrap();
        r.caps = caps;
        Arc::new(r)
    }

    /// The copy requests sent since the last call: `CopyObject`, `UploadPartCopy`.
    fn take_copies(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.copies.lock().unwrap())
    }

    /// The next HEAD of `obj` answers 404 `NoSuchKey`.
    fn hide_once(&self, obj: ObjectRef) {
        self.hidden.lock().unwrap().push(obj);
    }

    /// Refuses part `n` if it is the one to refuse, the first time.
    fn refuse_once(&self, n: u32) -> Result<()> {
        if self.fail_part == Some(n) && !self.failed.swap(true, Ordering::SeqCst) {
            return Err(Error::code(403, "AccessDenied", "refused once by the conformance suite"));
        }
        Ok(())
    }

    fn sent(&self) -> Vec<u32> {
        let mut v = self.sent.lock().unwrap().clone();
        v.sort();
        v
    }
}

#[async_trait]
impl ObjectStore for Recording {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    async fn put_object(&self, bucket: &str, key: &str, body: Body, opts: &PutOptions) -> Result<PutResult> {
        self.inner.put_object(bucket, key, body, opts).await
    }
    async fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        self.edit_on(None);
        let hidden = {
            let mut h = self.hidden.lock().unwrap();
            h.iter().position(|o| o == obj).map(|i| h.remove(i)).is_some()
        };
        if hidden {
            return Err(Error::code(404, "NoSuchKey", "hidden once by the conformance suite"));
        }
        self.inner.head_object(obj).await
    }
    async fn head_part(&self, obj: &ObjectRef, part: PartNumber) -> Result<ObjectInfo> {
        self.inner.head_part(obj, part).await
    }
    async fn get_object(&self, obj: &ObjectRef, range: Option<ByteRange>) -> Result<GetObject> {
        // A ranged GET of a download of 5 MiB parts counts (and may be refused) as the part it reads.
        if let Some(r) = range {
            let n = (r.first / (5 * MIB as u64)) as u32 + 1;
            self.refuse_once(n)?;
            self.sent.lock().unwrap().push(n);
        }
        self.inner.get_object(obj, range).await
    }
    async fn list_objects(&self, bucket: &str, req: &ListRequest) -> Result<ListPage> {
        self.inner.list_objects(bucket, req).await
    }
    async fn list_versions(&self, bucket: &str, req: &VersionsRequest) -> Result<VersionsPage> {
        self.inner.list_versions(bucket, req).await
    }
    async fn delete_object(&self, obj: &ObjectRef) -> Result<DeleteResult> {
        self.inner.delete_object(obj).await
    }
    async fn copy_object(&self, bucket: &str, key: &str, opts: &CopyOptions) -> Result<PutResult> {
        self.copies.lock().unwrap().push("CopyObject");
        self.inner.copy_object(bucket, key, opts).await
    }
    async fn put_tagging(&self, obj: &ObjectRef, tags: &TagSet) -> Result<Option<String>> {
        self.inner.put_tagging(obj, tags).await
    }
    async fn get_tagging(&self, obj: &ObjectRef) -> Result<TagSet> {
        self.inner.get_tagging(obj).await
    }
    async fn delete_tagging(&self, obj: &ObjectRef) -> Result<()> {
        self.inner.delete_tagging(obj).await
    }
    async fn restore_object(&self, obj: &ObjectRef, req: &RestoreRequest) -> Result<RestoreAnswer> {
        self.inner.restore_object(obj, req).await
    }
}

#[async_trait]
impl MultipartStore for Recording {
    async fn initiate_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<Upload> {
        self.inner.initiate_multipart(bucket, key, opts).await
    }
    async fn upload_part(&self, part: PartRef<'_>, body: Body) -> Result<PartReceipt> {
        let n = part.number.get();
        self.refuse_once(n)?;
        self.edit_on(Some(n));
        self.sent.lock().unwrap().push(n);
        self.inner.upload_part(part, body).await
    }
    async fn upload_part_copy(&self, part: PartRef<'_>, from: &PartCopySource) -> Result<PartReceipt> {
        self.refuse_once(part.number.get())?;
        self.copies.lock().unwrap().push("UploadPartCopy");
        self.sent.lock().unwrap().push(part.number.get());
        self.inner.upload_part_copy(part, from).await
    }
    async fn complete_multipart(
        &self,
        upload: &Upload,
        parts: &[CompletedPart],
        opts: &CompleteOptions,
    ) -> Result<PutResult> {
        let done = self.inner.complete_multipart(upload, parts, opts).await?;
        if self.lose_complete.swap(false, Ordering::SeqCst) {
            return Err(Error::code(403, "AccessDenied", "the answer was lost by the conformance suite"));
        }
        Ok(done)
    }
    async fn abort_multipart(&self, upload: &Upload) -> Result<()> {
        self.inner.abort_multipart(upload).await
    }
    async fn list_parts(&self, upload: &Upload, marker: Option<PartNumber>, max: Option<u32>) -> Result<PartsPage> {
        self.inner.list_parts(upload, marker, max).await
    }
    async fn list_uploads(&self, bucket: &str, req: &ListUploadsRequest) -> Result<UploadsPage> {
        self.inner.list_uploads(bucket, req).await
    }
}

pub async fn resumable_upload(t: &Target) {
    let scope = t.scope("engine").await;
    let jobs = Jobs::new();
    let job = jobs.job(JobKind::Upload, &scope.bucket);
    let content = data(12 * MIB + 3, 11); // three parts: 5 MiB, 5 MiB, 2 MiB + 3
    let path = jobs.file("big", &content);
    let mut req = UploadRequest::new(&path, &scope.bucket, scope.key("backup/big"));
    req.metadata = meta();

    // Part 2 is refused once: the run fails, with the parts the server acknowledged in the ledger.
    let first = Recording::new(t.store.clone(), Some(2));
    let e = jobs.engine(first.clone(), TagOn::Initiate).upload_file(job, &req).await.unwrap_err();
    assert_eq!(e.service_code(), Some("AccessDenied"), "{e}");
    let row = jobs.ledger.object(job, &path.to_string_lossy()).unwrap().unwrap();
    assert!(row.upload_id.is_some(), "the upload is kept for the resume");
    let recorded: Vec<u32> = jobs.ledger.parts(row.id).unwrap().iter().map(|p| p.number).collect();
    assert!(!recorded.is_empty() && !recorded.contains(&2), "{recorded:?}");
    // The ledger keeps what Complete must name again: each part's CRC-32C on S3 (the client's default), nothing
    // where the CRC-64 protects parts (OSS, the local store).
    let s3 = t.wire.as_ref().is_some_and(|w| w.dialect == Dialect::S3);
    for p in jobs.ledger.parts(row.id).unwrap() {
        let bytes = &content[p.offset as usize..(p.offset + p.size) as usize];
        assert_eq!(p.checksum, s3.then(|| Checksum::crc32c(bytes)), "part {}", p.number);
    }

    // The resume sends only what the server does not have, where ListParts lets it tell.
    let second = Recording::new(t.store.clone(), None);
    let out = jobs.engine(second.clone(), TagOn::Initiate).upload_file(job, &req).await.unwrap();
    assert_eq!(out.size, content.len() as u64);
    // Without ETags in ListParts (s3s-fs) a part the ledger recorded still stands where the server lists it at
    // its size: the receipt is named again at Complete.
    let missing: Vec<u32> = (1..=3).filter(|n| !recorded.contains(n)).collect();
    assert_eq!(second.sent(), missing, "recorded before: {recorded:?}");
    assert_eq!((out.parts_reused as usize, out.parts_sent as usize), (recorded.len(), missing.len()), "{out:?}");
    let s = &*t.store;
    let obj = scope.obj("backup/big");
    assert_eq!(read(s, &obj).await, content);
    let head = s.head_object(&obj).await.unwrap();
    assert_eq!(
        (head.size, head.etag.as_str(), head.object_type),
        (content.len() as u64, out.etag.as_str(), ObjectType::Multipart)
    );
    assert_meta(&head.metadata, &meta());
    // The CRC-64 is the whole object's where the store keeps one (OSS, the local store); S3 reports none.
    let crc = (!s3).then(|| transfer_engine::crc64::checksum(&content));
    assert_eq!(out.crc64, crc);
    // Done: running it again sends nothing.
    let again = jobs.engine(t.store.clone(), TagOn::Initiate).upload_file(job, &req).await.unwrap();
    assert!(again.already_done && again.parts_sent == 0, "{again:?}");
}

/// Uploads `content` as `key` with the engine (multipart above 6 MiB), with `meta()` and `tags`.
async fn upload(t: &Target, jobs: &Jobs, bucket: &str, key: &str, content: &[u8], tags: Option<TagSet>) {
    let job = jobs.job(JobKind::Upload, key);
    let path = jobs.file(&key.replace('/', "_"), content);
    let mut req = UploadRequest::new(&path, bucket, key);
    req.metadata = meta();
    req.tags = tags;
    jobs.engine(t.store.clone(), TagOn::Initiate).upload_file(job, &req).await.unwrap();
}

pub async fn multipart_copy_keeps_or_replaces_metadata(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("engine-copy").await;
    let jobs = Jobs::new();
    let mut new_meta = Metadata::with_user([("origin", "copy")]).unwrap();
    new_meta.content_type = Some("text/plain".into());
    // Below the copy threshold: one CopyObject; above it: UploadPartCopy in three parts.
    for (name, size, parts) in [("small", 3000, 1), ("big", 12 * MIB + 3, 3)] {
        let content = data(size, size as u64);
        let src_key = scope.key(&format!("src/{name}"));
        upload(t, &jobs, &scope.bucket, &src_key, &content, None).await;
        let src = ObjectRef::new(&scope.bucket, &src_key);
        let engine = jobs.engine(t.store.clone(), TagOn::Initiate);

        let kept = scope.key(&format!("kept/{name}"));
        let out = engine
            .copy_object(jobs.job(JobKind::Copy, &kept), &CopyRequest::new(src.clone(), &scope.bucket, &kept))
            .await
            .unwrap();
        assert_eq!((out.size, out.parts_sent), (size as u64, parts), "{name}");
        let kept = ObjectRef::new(&scope.bucket, &kept);
        assert_eq!(read(s, &kept).await, content, "{name}");
        assert_meta(&s.head_object(&kept).await.unwrap().metadata, &meta());

        let replaced = scope.key(&format!("replaced/{name}"));
        let mut req = CopyRequest::new(src, &scope.bucket, &replaced);
        req.metadata = Directive::Replace(new_meta.clone());
        engine.copy_object(jobs.job(JobKind::Copy, &replaced), &req).await.unwrap();
        let replaced = ObjectRef::new(&scope.bucket, &replaced);
        assert_eq!(read(s, &replaced).await, content, "{name}");
        assert_meta(&s.head_object(&replaced).await.unwrap().metadata, &new_meta);
    }
}

/// The store's CopyObject limit ([`Capabilities::max_copy_size`]) caps the copy threshold: without one set, the
/// multipart threshold (64 MiB) is lowered to it; a threshold above the limit is lowered to it, one below it
/// wins. The target declares OSS's limit (1 GiB) or S3's (5 GiB); the engine is shown a limit of 6 MiB here, so
/// that objects of a few MiB take the path those limits give large ones. Bytes, metadata and tags arrive on both
/// paths.
pub async fn copy_threshold_defaults_to_the_stores_copy_limit(t: &Target) {
    let s = &*t.store;
    let dialect = if s.capabilities().append { Capabilities::OSS } else { Capabilities::S3 };
    assert_eq!(s.capabilities().max_copy_size, dialect.max_copy_size);
    let scope = t.scope("copy-limit").await;
    let jobs = Jobs::new();
    let source_tags = t.caps.tagging.then(tags);
    let mut sources = Vec::new();
    for (name, size) in [("small", 3000), ("big", 12 * MIB + 3)] {
        let content = data(size, size as u64 + 7);
        let key = scope.key(&format!("src/{name}"));
        upload(t, &jobs, &scope.bucket, &key, &content, source_tags.clone()).await;
        sources.push((name, ObjectRef::new(&scope.bucket, key), content));
    }
    let store = Recording::with_copy_limit(t.store.clone(), 6 * MIB as u64);
    let one: &[&str] = &["CopyObject"];
    let parts: &[&str] = &["UploadPartCopy"; 3];
    for (threshold, small, big) in [
        // Unset: the store's limit (6 MiB here).
        (None, one, parts),
        // Above the limit: lowered to it.
        (Some(u64::MAX), one, parts),
        // Below it: the threshold wins (one part of 3000 bytes).
        (Some(1000), &["UploadPartCopy"][..], parts),
    ] {
        let mut cfg = config(TagOn::Initiate);
        cfg.plan.copy_threshold = threshold;
        let engine = Engine::new(store.clone(), jobs.ledger.clone(), cfg).unwrap();
        for ((name, src, content), want) in sources.iter().zip([small, big]) {
            let dest = scope.key(&format!("{}/{name}", threshold.map_or("unset".into(), |t| t.to_string())));
            let out = engine
                .copy_object(jobs.job(JobKind::Copy, &dest), &CopyRequest::new(src.clone(), &scope.bucket, &dest))
                .await
                .unwrap();
            assert_eq!(store.take_copies(), want, "copy threshold {threshold:?}, {name}");
            assert_eq!(out.parts_sent as usize, want.len(), "{out:?}");
            let dest = ObjectRef::new(&scope.bucket, &dest);
            assert_eq!(read(s, &dest).await, *content, "{dest}");
            assert_meta(&s.head_object(&dest).await.unwrap().metadata, &meta());
            if t.caps.tagging {
                assert_eq!(tags_of(s, &dest).await, tags().sorted(), "{dest}");
            }
        }
    }
}

pub async fn tags_on_upload_and_both_copy_modes(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("engine-tags").await;
    let jobs = Jobs::new();
    let new_tags = TagSet::from_pairs([("copied", "yes")]).unwrap();
    for (name, size) in [("small", 3000), ("big", 12 * MIB + 3)] {
        let content = data(size, size as u64 + 1);
        // Tags on initiate (in the tagging header of PutObject or InitiateMultipartUpload) and on complete
        // (PutObjectTagging once the object exists).
        for tag_on in [TagOn::Initiate, TagOn::Complete] {
            let key = scope.key(&format!("{tag_on:?}/{name}"));
            let job = jobs.job(JobKind::Upload, &key);
            let path = jobs.file(&format!("{tag_on:?}-{name}"), &content);
            let mut req = UploadRequest::new(&path, &scope.bucket, &key);
            req.tags = Some(tags());
            jobs.engine(t.store.clone(), tag_on).upload_file(job, &req).await.unwrap();
            assert_eq!(tags_of(s, &ObjectRef::new(&scope.bucket, &key)).await, tags().sorted(), "{key}");
        }
        let src = ObjectRef::new(&scope.bucket, scope.key(&format!("Initiate/{name}")));
        for tag_on in [TagOn::Initiate, TagOn::Complete] {
            let engine = jobs.engine(t.store.clone(), tag_on);
            let kept = scope.key(&format!("kept-{tag_on:?}/{name}"));
            engine
                .copy_object(jobs.job(JobKind::Copy, &kept), &CopyRequest::new(src.clone(), &scope.bucket, &kept))
                .await
                .unwrap();
            let kept = ObjectRef::new(&scope.bucket, &kept);
            assert_eq!(tags_of(s, &kept).await, tags().sorted(), "{kept}");
            assert_eq!(read(s, &kept).await, content);

            let replaced = scope.key(&format!("replaced-{tag_on:?}/{name}"));
            let mut req = CopyRequest::new(src.clone(), &scope.bucket, &replaced);
            req.tags = Directive::Replace(new_tags.clone());
            engine.copy_object(jobs.job(JobKind::Copy, &replaced), &req).await.unwrap();
            assert_eq!(tags_of(s, &ObjectRef::new(&scope.bucket, &replaced)).await, new_tags.sorted(), "{replaced}");
        }
    }
}

/// A source object and an existing destination for each path (`small`: one request; `big`: multipart), and
/// an engine under `--no-clobber` whose HEAD does not see the destination once: the write itself must be
/// refused by the store, and the engine must skip the object, neither failing nor overwriting.
async fn racing_destinations(t: &Target, scope: &super::Scope, jobs: &Jobs) -> Vec<(ObjectRef, ObjectRef, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, size) in [("small", 3000), ("big", 12 * MIB + 3)] {
        let content = data(size, 21);
        let src_key = scope.key(&format!("src/{name}"));
        upload(t, jobs, &scope.bucket, &src_key, &content, None).await;
        let dest = scope.obj(&format!("dest/{name}"));
        t.store
            .put_object(&dest.bucket, &dest.key, b"already there".to_vec().into(), &PutOptions::default())
            .await
            .unwrap();
        out.push((ObjectRef::new(&scope.bucket, &src_key), dest, content));
    }
    out
}

fn no_clobber_engine(t: &Target, jobs: &Jobs) -> (Arc<Recording>, Engine) {
    let store = Recording::new(t.store.clone(), None);
    let mut cfg = config(TagOn::Initiate);
    cfg.overwrite = Overwrite::IfMissing;
    (store.clone(), Engine::new(store, jobs.ledger.clone(), cfg).unwrap())
}

/// Nothing left behind under the scope.
async fn no_uploads_left(t: &Target, scope: &super::Scope) {
    if t.caps.list_uploads {
        let req = ListUploadsRequest::default().prefix(Some(scope.prefix.clone()));
        assert!(t.store.list_uploads(&scope.bucket, &req).await.unwrap().uploads.is_empty());
    }
}

pub async fn no_clobber_upload_when_the_destination_appears(t: &Target) {
    let scope = t.scope("no-clobber").await;
    let jobs = Jobs::new();
    let (store, engine) = no_clobber_engine(t, &jobs);
    for (i, (_, dest, content)) in racing_destinations(t, &scope, &jobs).await.into_iter().enumerate() {
        store.hide_once(dest.clone());
        let path = jobs.file(&format!("no-clobber-{i}"), &content);
        let req = UploadRequest::new(&path, &dest.bucket, &dest.key);
        let out = engine.upload_file(jobs.job(JobKind::Upload, &dest.key), &req).await.unwrap();
        assert_eq!(out.skipped, Some(SkipReason::Exists), "{dest}: {out:?}");
        assert_eq!(read(&*t.store, &dest).await, b"already there", "{dest}");
    }
    no_uploads_left(t, &scope).await;
}

pub async fn no_clobber_copy_when_the_destination_appears(t: &Target) {
    let scope = t.scope("no-clobber-copy").await;
    let jobs = Jobs::new();
    let (store, engine) = no_clobber_engine(t, &jobs);
    for (src, dest, _) in racing_destinations(t, &scope, &jobs).await {
        store.hide_once(dest.clone());
        let req = CopyRequest::new(src, &dest.bucket, &dest.key);
        let out = engine.copy_object(jobs.job(JobKind::Copy, &dest.key), &req).await.unwrap();
        assert_eq!(out.skipped, Some(SkipReason::Exists), "{dest}: {out:?}");
        assert_eq!(read(&*t.store, &dest).await, b"already there", "{dest}");
    }
    no_uploads_left(t, &scope).await;
}

/// The uploads left under the scope, by key.
async fn uploads_left(t: &Target, scope: &super::Scope) -> Vec<(String, UploadId)> {
    let req = ListUploadsRequest::default().prefix(Some(scope.prefix.clone()));
    let page = t.store.list_uploads(&scope.bucket, &req).await.unwrap();
    page.uploads.into_iter().map(|u| (u.key, u.upload_id)).collect()
}

/// A part of `content` (5 MiB parts) sent straight to the store, as a run that is gone sent it.
async fn send_part(t: &Target, upload: &Upload, n: u32, bytes: &[u8]) {
    t.store.upload_part(upload.part(n), Body::from(bytes.to_vec())).await.unwrap();
}

pub async fn parts_the_server_acknowledged_are_not_sent_again(t: &Target) {
    let scope = t.scope("acked").await;
    let jobs = Jobs::new();
    let job = jobs.job(JobKind::Upload, &scope.bucket);
    let content = data(12 * MIB + 3, 21); // 5 MiB, 5 MiB, 2 MiB + 3
    let path = jobs.file("big", &content);
    let req = UploadRequest::new(&path, &scope.bucket, scope.key("big"));
    let first = Recording::new(t.store.clone(), Some(2));
    jobs.engine(first, TagOn::Initiate).upload_file(job, &req).await.unwrap_err();
    let row = jobs.ledger.object(job, &path.to_string_lossy()).unwrap().unwrap();
    let upload = Upload::new(&scope.bucket, scope.key("big"), row.upload_id.clone().unwrap());
    let in_ledger: Vec<u32> = jobs.ledger.parts(row.id).unwrap().iter().map(|p| p.number).collect();
    // Part 2 reached the server, but the process was killed before the ledger recorded it.
    send_part(t, &upload, 2, &content[5 * MIB..10 * MIB]).await;

    let second = Recording::new(t.store.clone(), None);
    let out = jobs.engine(second.clone(), TagOn::Initiate).upload_file(job, &req).await.unwrap();
    let recorded: Vec<u32> = (1..=3).filter(|n| *n != 2).collect();
    if t.caps.list_parts_etags {
        // Only what the server did not hold goes: the parts the first run had in flight when part 2 was
        // refused were acknowledged, and part 2 is adopted from the server's listing, checked against the file.
        let unsent: Vec<u32> = recorded.iter().copied().filter(|n| !second.sent().contains(n)).collect();
        assert!(!second.sent().contains(&2), "part 2 was sent again: {:?}", second.sent());
        assert_eq!(out.parts_reused as usize, 1 + unsent.len(), "{out:?}");
    } else {
        // The parts the ledger recorded stand (the server lists them at their size); part 2, which only the server
        // holds, cannot be checked against the file without an ETag: it is sent again, as is what was unrecorded.
        println!(
            "NOTE conformance::{}: declares ListParts without ETags; parts only the server holds are sent again",
            t.name
        );
        let unrecorded: Vec<u32> = (1..=3).filter(|n| !in_ledger.contains(n)).collect();
        assert_eq!(second.sent(), unrecorded, "recorded before: {in_ledger:?}");
    }
    assert_eq!(read(&*t.store, &scope.obj("big")).await, content);
    no_uploads_left(t, &scope).await;
}

pub async fn a_lost_ledger_costs_checks_not_resends(t: &Target) {
    let scope = t.scope("lost-ledger").await;
    let content = data(12 * MIB + 3, 22);
    let key = scope.key("big");
    let s = &*t.store;
    // A run whose ledger is gone left its upload: parts 1 and 3 as the file has them, part 2 with other bytes.
    let theirs = s.initiate_multipart(&scope.bucket, &key, &PutOptions::default()).await.unwrap();
    send_part(t, &theirs, 1, &content[..5 * MIB]).await;
    send_part(t, &theirs, 2, &data(5 * MIB, 99)).await;
    send_part(t, &theirs, 3, &content[10 * MIB..]).await;
    // An older upload of the key, by another writer (parts of another size), is left alone.
    let other = s.initiate_multipart(&scope.bucket, &key, &PutOptions::default()).await.unwrap();
    send_part(t, &other, 1, &data(MIB, 98)).await;
    // A later run, killed before it sent a part, left an empty upload, initiated in a later second (the time
    // ListMultipartUploads reports has second precision; moto reports one fixed time): the upload holding the
    // most of the file is continued, not the newest.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let empty = s.initiate_multipart(&scope.bucket, &key, &PutOptions::default()).await.unwrap();

    let jobs = Jobs::new();
    let job = jobs.job(JobKind::Upload, &scope.bucket);
    let path = jobs.file("big", &content);
    let store = Recording::new(t.store.clone(), None);
    let req = UploadRequest::new(&path, &scope.bucket, &key);
    let out = jobs.engine(store.clone(), TagOn::Initiate).upload_file(job, &req).await.unwrap();
    if t.caps.list_parts_etags {
        assert_eq!(store.sent(), [2], "only the part whose bytes differ is sent");
        assert_eq!((out.parts_sent, out.parts_reused), (1, 2), "{out:?}");
    } else {
        println!("NOTE conformance::{}: declares ListParts without ETags; every part is sent again", t.name);
        assert_eq!(store.sent(), [1, 2, 3]);
    }
    assert_eq!(read(s, &scope.obj("big")).await, content);
    let mut left: Vec<String> = uploads_left(t, &scope).await.into_iter().map(|(_, id)| id.to_string()).collect();
    let mut want = vec![other.id.to_string(), empty.id.to_string()];
    left.sort();
    want.sort();
    assert_eq!(left, want, "the other writer's upload and the empty one are untouched");
    s.abort_multipart(&other).await.unwrap();
    s.abort_multipart(&empty).await.unwrap();
}

pub async fn a_completed_upload_the_ledger_missed_is_not_sent_again(t: &Target) {
    let scope = t.scope("missed-complete").await;
    let jobs = Jobs::new();
    let job = jobs.job(JobKind::Upload, &scope.bucket);
    let content = data(12 * MIB + 3, 23);
    let path = jobs.file("big", &content);
    let req = UploadRequest::new(&path, &scope.bucket, scope.key("big"));
    // The server completes the upload; the answer never arrives.
    let first = Recording::new(t.store.clone(), None);
    first.lose_complete.store(true, Ordering::SeqCst);
    jobs.engine(first, TagOn::Initiate).upload_file(job, &req).await.unwrap_err();

    let second = Recording::new(t.store.clone(), None);
    let out = jobs.engine(second.clone(), TagOn::Initiate).upload_file(job, &req).await.unwrap();
    assert_eq!(second.sent(), Vec::<u32>::new(), "the object in place was taken as the upload's: {out:?}");
    assert_eq!((out.parts_sent, out.parts_reused), (0, 3));
    assert_eq!(read(&*t.store, &scope.obj("big")).await, content);
    let row = jobs.ledger.object(job, &path.to_string_lossy()).unwrap().unwrap();
    assert_eq!(row.etag.as_deref(), Some(out.etag.as_str()));
    no_uploads_left(t, &scope).await;
}

pub async fn copy_parts_the_server_acknowledged_are_not_copied_again(t: &Target) {
    let scope = t.scope("acked-copy").await;
    let jobs = Jobs::new();
    let content = data(12 * MIB + 3, 24);
    upload(t, &jobs, &scope.bucket, &scope.key("src"), &content, None).await;
    let job = jobs.job(JobKind::Copy, &scope.key("dst"));
    let req = CopyRequest::new(scope.obj("src"), &scope.bucket, scope.key("dst"));
    let first = Recording::new(t.store.clone(), Some(2));
    jobs.engine(first, TagOn::Initiate).copy_object(job, &req).await.unwrap_err();
    let row = jobs.ledger.object(job, &scope.obj("src").to_string()).unwrap().unwrap();
    let upload = Upload::new(&scope.bucket, scope.key("dst"), row.upload_id.clone().unwrap());
    let in_ledger = jobs.ledger.parts(row.id).unwrap().len();
    // Part 2 was copied, but the process was killed before the ledger recorded it.
    let range = ByteRange::at(5 * MIB as u64, 5 * MIB as u64);
    t.store.upload_part_copy(upload.part(2), &PartCopySource::new(scope.obj("src"), Some(range))).await.unwrap();

    let second = Recording::new(t.store.clone(), None);
    let out = jobs.engine(second.clone(), TagOn::Initiate).copy_object(job, &req).await.unwrap();
    let copies = second.take_copies();
    if t.caps.list_parts_etags {
        assert!(!second.sent().contains(&2), "part 2 was copied again: {:?}", second.sent());
        assert_eq!(out.parts_reused as usize + copies.len(), 3, "{out:?}");
    } else {
        println!(
            "NOTE conformance::{}: declares ListParts without ETags; parts only the server holds are copied again",
            t.name
        );
        assert_eq!(copies.len(), 3 - in_ledger, "{in_ledger} parts recorded before");
    }
    assert_eq!(read(&*t.store, &scope.obj("dst")).await, content);
    no_uploads_left(t, &scope).await;
}

pub async fn a_file_changed_during_its_upload_never_publishes(t: &Target) {
    let scope = t.scope("changed").await;
    let jobs = Jobs::new();
    let job = jobs.job(JobKind::Upload, &scope.bucket);
    // Edited while its parts go (multipart), and between the plan and the read (a single PutObject, with the
    // no-clobber HEAD in between).
    for (name, len, on_part) in [("big", 12 * MIB + 3, Some(1)), ("small", 1000, None)] {
        let (old, new) = (data(len, 25), data(len, 26));
        let path = jobs.file(name, &old);
        let req = UploadRequest::new(&path, &scope.bucket, scope.key(name));
        let store = Recording::new(t.store.clone(), None);
        *store.edit.lock().unwrap() = Some(Edit { on_part, path: path.clone(), bytes: new.clone() });
        let mut cfg = config(TagOn::Initiate);
        cfg.overwrite = Overwrite::IfMissing;
        let engine = Engine::new(store, jobs.ledger.clone(), cfg).unwrap();
        let e = engine.upload_file(job, &req).await.unwrap_err();
        assert_eq!(e.kind(), transfer_engine::ErrorKind::PreconditionFailed, "{name}: {e}");
        assert!(e.to_string().contains("changed while it was being uploaded"), "{e}");
        let gone = t.store.head_object(&scope.obj(name)).await.unwrap_err();
        assert_eq!(gone.kind(), transfer_engine::ErrorKind::ObjectNotFound, "{name}: nothing is published");
        // The next run uploads the file as it is now, and leaves no upload behind.
        let out = jobs.engine(t.store.clone(), TagOn::Initiate).upload_file(job, &req).await.unwrap();
        assert_eq!(out.size, len as u64);
        assert_eq!(read(&*t.store, &scope.obj(name)).await, new, "{name}");
    }
    no_uploads_left(t, &scope).await;
}

/// A file reached through a symbolic link (as a directory walk follows them) is the link's target: its changed-
/// source check compares the target, so it uploads, single and multipart.
pub async fn a_file_reached_through_a_symlink_uploads(t: &Target) {
    let scope = t.scope("symlinked").await;
    let jobs = Jobs::new();
    let job = jobs.job(JobKind::Upload, &scope.bucket);
    for (name, len) in [("big", 12 * MIB + 3), ("small", 1000)] {
        let content = data(len, 27);
        let target = jobs.file(&format!("{name}.target"), &content);
        let link = target.with_file_name(name);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let req = UploadRequest::new(&link, &scope.bucket, scope.key(name));
        let out = jobs.engine(t.store.clone(), TagOn::Initiate).upload_file(job, &req).await.unwrap();
        assert_eq!(out.size, len as u64, "{name}");
        assert_eq!(read(&*t.store, &scope.obj(name)).await, content, "{name}");
    }
    no_uploads_left(t, &scope).await;
}

/// A prefix copy and a restore over more than two pages of the source's listing (pages of 100 keys, asked for), with keys that
/// need URL encoding: every object arrives, once, and every file.
pub async fn prefix_copy_over_several_pages(t: &Target) {
    use futures::{StreamExt, TryStreamExt};
    use transfer_engine::job::PrefixCopyRequest;
    let scope = t.scope("pages").await;
    let n = 257;
    let name = |i: usize| format!("d {:02}/a+b&c=d%e ü {i:05}.txt", i % 7);
    let (s, b) = (&*t.store, scope.bucket.as_str());
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let key = scope.key(&format!("src/{}", name(i)));
            async move {
                s.put_object(b, &key, Body::from(i.to_string().into_bytes()), &PutOptions::default()).await.unwrap();
            }
        })
        .await;
    let jobs = Jobs::new();
    let engine =
        Engine::new(t.store.clone(), jobs.ledger.clone(), config(TagOn::Initiate).list_page_size(100)).unwrap();
    let copy = PrefixCopyRequest::new(b, scope.key("src/"), b, scope.key("dst/"));
    let summary = engine.copy_prefix(copy).await.unwrap().join().await.unwrap();
    assert_eq!(summary.progress.objects_done, n as u64, "{:?}", summary.progress);
    let listing = ListRequest::default().prefix(Some(scope.key("dst/")));
    let mut arrived: Vec<String> = list_all(t.store.clone(), b, listing).map_ok(|e| e.key).try_collect().await.unwrap();
    arrived.sort();
    let mut expected: Vec<String> = (0..n).map(|i| scope.key(&format!("dst/{}", name(i)))).collect();
    expected.sort();
    assert!(arrived == expected, "{} of {n} keys arrived, or other keys did", arrived.len());
    for i in [0, n / 2, n - 1] {
        let got = read(s, &ObjectRef::new(b, scope.key(&format!("dst/{}", name(i))))).await;
        assert_eq!(got, i.to_string().into_bytes());
    }

    // The same prefix restored to a directory, listed in pages of 100 too: every file, with its bytes.
    let dir = jobs.dir.path().join("restored");
    let restore = transfer_engine::job::PrefixDownloadRequest::new(b, scope.key("src/"), &dir);
    let summary = engine.download_prefix(restore).await.unwrap().join().await.unwrap();
    assert_eq!(summary.progress.objects_done, n as u64, "{:?}", summary.progress);
    for i in 0..n {
        let got = std::fs::read(dir.join(name(i))).unwrap_or_else(|e| panic!("{}: {e}", name(i)));
        assert_eq!(got, i.to_string().into_bytes(), "{}", name(i));
    }
}

/// A backup labels each object with its file's BLAKE3 (in metadata, [`DigestOptions`]); a restore by an engine
/// configured the same way checks the bytes it wrote against that label, file and stream alike, and an object
/// whose bytes do not match its label is refused: nothing at the final path, the error says so.
pub async fn downloads_check_the_blake3_an_upload_labelled(t: &Target) {
    let scope = t.scope("digest").await;
    let jobs = Jobs::new();
    let labelled = |store: Arc<dyn Store>| {
        let digest = DigestOptions::default().metadata(Some("blake3".into()));
        Engine::new(store, jobs.ledger.clone(), config(TagOn::Initiate).digest(digest)).unwrap()
    };
    let content = data(11 * MIB + 5, 43);
    let key = scope.key("backup/labelled");
    let up = jobs.job(JobKind::Upload, &scope.bucket);
    let uploaded = labelled(t.store.clone())
        .upload_file(up, &UploadRequest::new(jobs.file("labelled", &content), &scope.bucket, &key))
        .await
        .unwrap();
    assert_eq!(uploaded.blake3, blake3::hash(&content).to_hex().to_string());

    let job = jobs.job(JobKind::Download, "restore");
    let out = jobs.dir.path().join("restored/labelled");
    let req = DownloadRequest::new(ObjectRef::new(&scope.bucket, &key), &out);
    let done = labelled(t.store.clone()).download_object(job, &req).await.unwrap();
    assert!(done.verified.blake3, "{done:?}");
    assert_eq!(done.blake3, uploaded.blake3, "the outcome carries the BLAKE3 of the bytes written");
    assert!(std::fs::read(&out).unwrap() == content);
    // An engine not told where the label is checks what the store offers, and no label.
    let plain = jobs.engine(t.store.clone(), TagOn::Initiate);
    let other = DownloadRequest::new(ObjectRef::new(&scope.bucket, &key), jobs.dir.path().join("restored/plain"));
    let done = plain.download_object(jobs.job(JobKind::Download, "plain"), &other).await.unwrap();
    assert!(!done.verified.blake3 && done.blake3.is_empty(), "{done:?}");

    // A label that is not the bytes' BLAKE3: refused, for a file and for a stream.
    let forged = scope.key("backup/forged");
    let meta = Metadata::with_user([("blake3", blake3::hash(b"other bytes").to_hex().as_str())]).unwrap();
    let opts = PutOptions::default().metadata(meta);
    t.store.put_object(&scope.bucket, &forged, content[..MIB].to_vec().into(), &opts).await.unwrap();
    let out = jobs.dir.path().join("restored/forged");
    let req = DownloadRequest::new(ObjectRef::new(&scope.bucket, &forged), &out);
    let job = jobs.job(JobKind::Download, "forged");
    let e = labelled(t.store.clone()).download_object(job, &req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(e.to_string().contains("BLAKE3"), "{e}");
    assert!(!out.exists(), "nothing at the final path");
    let (write, mut read) = tokio::io::duplex(64 * 1024);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut read, &mut got).await.unwrap();
        got
    });
    let stream = StreamRequest::new(ObjectRef::new(&scope.bucket, &forged), Writer::new(write));
    let e = labelled(t.store.clone()).download_stream(stream).await.unwrap().join().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JobFailed, "{e:?}");
    assert!(format!("{e:?}").contains("the bytes streamed have the BLAKE3"), "{e:?}");
    reader.await.unwrap();
}

/// A download (the library's [`Engine::download_object`]) of three parts whose last GET is refused (it waits
/// for a request slot of the two, so it fails after another part arrived): the run fails with nothing at the
/// final path and the parts that arrived in its temporary file and the ledger; the
/// next run fetches only the others and publishes the file byte-identical, with the modification time the
/// upload recorded. The object overwritten between two runs is fetched whole again, never mixed.
pub async fn resumable_download(t: &Target) {
    let scope = t.scope("download").await;
    let jobs = Jobs::new();
    let content = data(12 * MIB + 3, 41); // three parts: 5 MiB, 5 MiB, 2 MiB + 3
    let path = jobs.file("big", &content);
    let when = std::time::UNIX_EPOCH + Duration::new(1_600_000_000, 987_654_321);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
    let key = scope.key("backup/big");
    let up = jobs.job(JobKind::Upload, &scope.bucket);
    jobs.engine(t.store.clone(), TagOn::Initiate)
        .upload_file(up, &UploadRequest::new(&path, &scope.bucket, &key))
        .await
        .unwrap();

    let job = jobs.job(JobKind::Download, "restore");
    let out = jobs.dir.path().join("restored/big");
    let req = DownloadRequest::new(ObjectRef::new(&scope.bucket, &key), &out);
    let first = Recording::new(t.store.clone(), Some(3));
    let e = jobs.engine(first.clone(), TagOn::Initiate).download_object(job, &req).await.unwrap_err();
    assert_eq!(e.service_code(), Some("AccessDenied"), "{e}");
    assert!(!out.exists(), "nothing at the final path");
    let temp = transfer_engine::job::temp_path(&out, job);
    assert_eq!(std::fs::metadata(&temp).unwrap().len(), content.len() as u64, "the temporary file is kept");
    let row = jobs.ledger.object(job, &req.source.to_string()).unwrap().unwrap();
    let recorded: Vec<u32> = jobs.ledger.parts(row.id).unwrap().iter().map(|p| p.number).collect();
    assert!(!recorded.is_empty() && !recorded.contains(&3), "{recorded:?}");

    let second = Recording::new(t.store.clone(), None);
    let done = jobs.engine(second.clone(), TagOn::Initiate).download_object(job, &req).await.unwrap();
    let missing: Vec<u32> = (1..=3).filter(|n| !recorded.contains(n)).collect();
    assert_eq!(second.sent(), missing, "only the parts that had not arrived are fetched");
    assert_eq!(done.parts(), (missing.len() as u32, recorded.len() as u32));
    assert!(std::fs::read(&out).unwrap() == content);
    assert_eq!(std::fs::metadata(&out).unwrap().modified().unwrap(), when, "the recorded mtime is set back");
    assert!(!temp.exists());
    assert_eq!(done.verified.any(), t.caps.checks_multipart_downloads, "{done:?}");
    // Done: running it again fetches nothing while the file is there.
    let third = Recording::new(t.store.clone(), None);
    assert!(jobs.engine(third.clone(), TagOn::Initiate).download_object(job, &req).await.unwrap().already_done);
    assert!(third.sent().is_empty());

    // Another file of the job: its first run stops at part 2, then the object is overwritten.
    let other = DownloadRequest::new(ObjectRef::new(&scope.bucket, &key), jobs.dir.path().join("restored/again"));
    let fourth = Recording::new(t.store.clone(), Some(2));
    let other_job = jobs.job(JobKind::Download, "restore-again");
    jobs.engine(fourth, TagOn::Initiate).download_object(other_job, &other).await.unwrap_err();
    let newer = data(12 * MIB + 3, 42);
    t.store.put_object(&scope.bucket, &key, newer.clone().into(), &PutOptions::default()).await.unwrap();
    let fifth = Recording::new(t.store.clone(), None);
    let done = jobs.engine(fifth.clone(), TagOn::Initiate).download_object(other_job, &other).await.unwrap();
    assert_eq!(fifth.sent(), [1, 2, 3], "a changed object is fetched whole again");
    assert_eq!(done.parts_reused, 0);
    assert!(done.source_changed, "the outcome says the source changed since the first run");
    assert!(std::fs::read(&other.path).unwrap() == newer, "never a mix of two versions");

    // The same object into an AsyncWrite, in order, as a job with a handle: a pipe read slowly on the other end.
    let (write, mut read) = tokio::io::duplex(64 * 1024);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut read, &mut got).await.unwrap();
        got
    });
    let stream = StreamRequest::new(ObjectRef::new(&scope.bucket, &key), Writer::new(write));
    let summary = jobs.engine(t.store.clone(), TagOn::Initiate).download_stream(stream).await.unwrap().join().await;
    let summary = summary.unwrap();
    assert_eq!(summary.progress.bytes_acknowledged, newer.len() as u64);
    assert!(reader.await.unwrap() == newer, "the stream carries the object whole, in order");
}
