//! Uploading one file: one PutObject below the threshold, a resumable multipart upload above it.
//!
//! The file is read in order, part by part, with positional reads: a memory permit is taken before each read,
//! so buffered bytes stay within the budget, and each part is handed to its own task that takes a request
//! permit and sends it. The whole-file blake3 is computed on this ordered read. A part is recorded in the ledger
//! only once the server acknowledged it; a retry re-reads the part from the file and refuses bytes that changed.
//!
//! On resume, the ledger's parts are reconciled with ListParts: a part is reused only if the server still has
//! it with the same ETag and the file's bytes still hash to the recorded blake3. An upload id the server no
//! longer knows starts the object again; a changed file (size, mtime or inode) aborts the old upload first.

use super::digest::{part_digest, FileDigest};
use super::overwrite::not_started;
use super::parts::PartTasks;
use super::{Engine, SkipReason, TagOn, UploadRequest};
use crate::checkpoint::{Fingerprint, JobId, ObjectRow, ObjectState, PartRow};
use crate::crc64;
use crate::error::{Error, ErrorKind, Result, Retry};
use crate::plan::{plan_object, Method, ObjectPlan};
use crate::run::BufferPool;
use crate::store::{validate_key, Body, CompleteOptions, CompletedPart, ObjectInfo, ObjectRef, PutOptions, PutResult};
use crate::tags::TagSet;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Bytes in the object.
    pub size: u64,
    /// The object's ETag.
    pub etag: String,
    /// CRC-64/XZ of the object as the server reported it, checked against the bytes sent; `None` when the
    /// store reports none (S3), so the object's CRC-64 was not verified end to end.
    pub crc64: Option<u64>,
    /// blake3 of the file, hex.
    pub blake3: String,
    /// Requests that carried bytes in this run (parts, or 1 for a single PUT).
    pub parts_sent: u32,
    /// Parts an earlier run had delivered and this run reused.
    pub parts_reused: u32,
    /// True when the ledger already had the object done (or skipped) and nothing was sent.
    pub already_done: bool,
    /// `Some` when the [overwrite policy](super::Overwrite) left the destination alone in this run. Nothing
    /// was written; `size` is the file's, `etag` and `crc64` are the destination's (empty and `None` if it
    /// could not be read), `blake3` is empty.
    pub skipped: Option<SkipReason>,
}

impl UploadOutcome {
    /// The outcome of a file of `size` bytes the policy skipped, with the destination's HEAD when known.
    fn left_alone(size: u64, reason: SkipReason, dest: Option<&ObjectInfo>) -> UploadOutcome {
        UploadOutcome {
            size,
            etag: dest.map(|h| h.etag.clone()).unwrap_or_default(),
            crc64: dest.and_then(|h| h.crc64),
            blake3: String::new(),
            parts_sent: 0,
            parts_reused: 0,
            already_done: false,
            skipped: Some(reason),
        }
    }
}

pub(super) fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot {what} {}", path.display())).with_source(e)
}

fn fingerprint(meta: &std::fs::Metadata) -> Fingerprint {
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Fingerprint::File { size: meta.len(), mtime_ns, inode: meta.ino() }
}

/// `len` bytes of `file` at `offset`, read straight into the spare capacity of `buf` (a reused part buffer or a
/// new one; emptied first): no zeroing first (that was 5% of a big upload's CPU). `rustix` sets the length it filled, so no
/// unsafe code is needed here.
fn pread_exact(file: &File, mut buf: Vec<u8>, len: usize, mut offset: u64) -> std::io::Result<Vec<u8>> {
    buf.clear();
    buf.reserve(len);
    while buf.len() < len {
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), offset)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file is shorter than planned"));
        }
        offset += n as u64;
    }
    // The allocation may hold more than asked for, and a read may fill it: keep exactly the part.
    buf.truncate(len);
    Ok(buf)
}

/// Reads `len` bytes at `offset` into a buffer of `pool`, off the async threads.
async fn read_at(pool: &BufferPool, file: Arc<File>, path: Arc<Path>, offset: u64, len: u64) -> Result<Bytes> {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let buf = pread_exact(&file, pool.take(len as usize), len as usize, offset)
            .map_err(|e| io_error("read", &path, e))?;
        Ok(pool.freeze(buf))
    })
    .await?
}

/// Reads part `offset..offset + len` and takes its digest into `digest`, off the async threads; returns the bytes,
/// the part's digest and `digest` back.
async fn read_part(
    pool: &BufferPool,
    file: Arc<File>,
    path: Arc<Path>,
    offset: u64,
    len: u64,
    mut digest: FileDigest,
) -> Result<(Bytes, String, FileDigest)> {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let buf = pread_exact(&file, pool.take(len as usize), len as usize, offset)
            .map_err(|e| io_error("read", &path, e))?;
        let part = digest.part(offset, &buf);
        Ok((pool.freeze(buf), part, digest))
    })
    .await?
}

/// Where the bytes of one request come from: a range of the file, already read once.
struct Source {
    file: Arc<File>,
    path: Arc<Path>,
    offset: u64,
    len: u64,
    /// The first read's digest ([`part_digest`]), and whether it is a chaining value.
    digest: String,
    tree: bool,
    /// Where a re-read gets its buffer.
    buffers: BufferPool,
}

impl Source {
    /// The bytes for an attempt: `first` (the first read) when given, else a fresh read checked against the
    /// first read's blake3, so a retry never sends bytes that changed.
    async fn bytes(&self, first: Option<Bytes>) -> Result<Bytes> {
        if let Some(b) = first {
            return Ok(b);
        }
        let data = read_at(&self.buffers, self.file.clone(), self.path.clone(), self.offset, self.len).await?;
        if part_digest(self.tree, self.offset, &data) != self.digest {
            return Err(Error::invalid(format!(
                "{} changed while it was being uploaded (bytes {}..{} differ on re-read); run the upload again",
                self.path.display(),
                self.offset,
                self.offset + self.len
            )));
        }
        Ok(data)
    }
}

pub(super) fn check_crc(expected: u64, got: Option<u64>, what: &str) -> Result<()> {
    match got {
        Some(g) if g != expected => Err(Error::new(
            ErrorKind::Integrity,
            format!("{what}: the server's CRC-64 {g} does not match the {expected} of the bytes sent"),
        )),
        _ => Ok(()),
    }
}

impl UploadRequest {
    /// The destination object.
    pub(super) fn dest(&self) -> ObjectRef {
        ObjectRef::new(&self.bucket, &self.key)
    }

    /// Checks the key and metadata, opens the file: its absolute path, the open file and its size and
    /// fingerprint.
    pub(super) fn open(&self) -> Result<(Arc<Path>, Arc<File>, u64, Fingerprint)> {
        validate_key(&self.key)?;
        self.metadata.validate()?;
        let path: Arc<Path> = std::path::absolute(&self.path).map_err(|e| io_error("resolve", &self.path, e))?.into();
        let file = File::open(&path).map_err(|e| io_error("open", &path, e))?;
        let meta = file.metadata().map_err(|e| io_error("stat", &path, e))?;
        if !meta.is_file() {
            return Err(Error::invalid(format!("{} is not a regular file", path.display())));
        }
        Ok((path, Arc::new(file), meta.len(), fingerprint(&meta)))
    }
}

impl Engine {
    /// Uploads one file as `req.bucket/req.key` within `job`, resuming what the ledger says an earlier run
    /// delivered. Running it again after a crash, a kill or a failure continues the same upload; running it
    /// again after success does nothing and returns the recorded outcome.
    ///
    /// With an [overwrite policy](super::Overwrite), a file nothing was sent for yet is first checked against
    /// its destination, and may be skipped (recorded as skipped in the ledger, reported in
    /// [`UploadOutcome::skipped`]). With [`EngineConfig::dry_run`](super::EngineConfig::dry_run) set, nothing
    /// is written: the call fails with [`ErrorKind::InvalidInput`] (use [`Engine::plan_upload_file`]).
    pub async fn upload_file(&self, job: JobId, req: &UploadRequest) -> Result<UploadOutcome> {
        self.refuse_dry_run("upload_file", "plan_upload_file")?;
        let (path, file, size, fp) = req.open()?;
        let plan = plan_object(size, &self.inner.caps, &self.inner.config.plan)?;
        let with_digest;
        let (req, digest) = match self.with_digest(req, &file, &path, size).await? {
            Some((r, d)) => {
                with_digest = r;
                (&with_digest, Some(d))
            }
            None => (req, None),
        };
        let source = path.to_string_lossy().into_owned();
        let row = {
            let (b, k, tags, fp, part_size) =
                (req.bucket.clone(), req.key.clone(), req.tags.clone(), fp.clone(), plan.part_size());
            self.db(move |l| l.upsert_object(job, &source, &b, &k, size, &fp, part_size, tags.as_ref())).await?
        };
        let row = if row.fingerprint != fp || row.plan_part_size != plan.part_size() {
            self.restart(row, fp, size, plan.part_size()).await?
        } else {
            row
        };
        match row.state {
            ObjectState::Tagged | ObjectState::Skipped => return Ok(done_outcome(&row)),
            ObjectState::Completed => {
                self.apply_tags(&row, &req.dest(), req.tags.as_ref()).await?;
                return Ok(done_outcome(&row));
            }
            _ => {}
        }
        let expect = digest.as_deref();
        let result = match self.check_upload(&row, req, &file, &path, size).await {
            Ok(Some(skipped)) => return Ok(skipped),
            Ok(None) => match plan.method {
                Method::Single => self.put_single(&row, req, file, path.clone(), size, expect).await,
                Method::Multipart { .. } => self.put_multipart(&row, req, file, path.clone(), &plan, expect).await,
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                self.record_failure(&row, &e).await;
                Err(e
                    .with_context("file", path.display())
                    .with_context("object", format!("{}/{}", req.bucket, req.key)))
            }
        }
    }

    /// The overwrite policy for an object nothing was sent for yet: `Some` (recorded as skipped) when it leaves
    /// the destination alone.
    async fn check_upload(
        &self,
        row: &ObjectRow,
        req: &UploadRequest,
        file: &Arc<File>,
        path: &Arc<Path>,
        size: u64,
    ) -> Result<Option<UploadOutcome>> {
        if !not_started(row) {
            return Ok(None);
        }
        let dest = req.dest();
        let Some((reason, head)) = self.upload_skip(&dest, file, path, size).await? else { return Ok(None) };
        self.skip(row, &dest, None).await?;
        Ok(Some(UploadOutcome::left_alone(size, reason, Some(&head))))
    }

    /// The store refused to overwrite the destination (`FileAlreadyExists`): the object is skipped.
    async fn upload_refused(
        &self,
        row: &ObjectRow,
        req: &UploadRequest,
        size: u64,
        upload_id: Option<&str>,
    ) -> Result<UploadOutcome> {
        let head = self.skip_refused(row, &req.dest(), upload_id).await?;
        Ok(UploadOutcome::left_alone(size, SkipReason::Exists, head.as_ref()))
    }

    /// Records `e` on the object's ledger row; a stop is not a failure (the object stays resumable as it was).
    pub(super) async fn record_failure(&self, row: &ObjectRow, e: &Error) {
        if e.kind() != ErrorKind::Stopped {
            let (id, msg) = (row.id, e.to_string());
            if let Err(db) = self.db(move |l| l.fail_object(id, &msg)).await {
                tracing::warn!(error = %db, "could not record a failure in the ledger");
            }
        }
    }

    /// The source changed since the ledger's plan: abort the old upload (if any) and start the object again.
    pub(super) async fn restart(
        &self,
        row: ObjectRow,
        fp: Fingerprint,
        size: u64,
        part_size: u64,
    ) -> Result<ObjectRow> {
        if let Some(id) = &row.upload_id {
            match self.inner.store.abort_multipart(&row.dest_bucket, &row.dest_key, id).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UploadNotFound => {}
                Err(e) => {
                    tracing::warn!(upload_id = %id, error = %e, "could not abort the stale upload; `transfer cleanup` can")
                }
            }
        }
        tracing::info!(source = %row.source, "source changed since the last run; starting the object again");
        let id = row.id;
        self.db(move |l| {
            l.reset_object(id, &fp, size, part_size)?;
            l.object_by_id(id)
        })
        .await
    }

    fn put_options(&self, req: &UploadRequest) -> PutOptions {
        PutOptions {
            metadata: req.metadata.clone(),
            tags: if self.inner.config.tag_on == TagOn::Initiate { req.tags.clone() } else { None },
            content_md5: self.inner.config.content_md5,
            forbid_overwrite: self.forbid_overwrite(),
        }
    }

    /// Applies `tags` to `dest` after the object exists (policy `Complete`, or repairing a crash between
    /// Complete and PutObjectTagging), then records that they are on. Shared by uploads and copies.
    pub(super) async fn apply_tags(&self, row: &ObjectRow, dest: &ObjectRef, tags: Option<&TagSet>) -> Result<()> {
        if row.tags_applied {
            return Ok(());
        }
        if let (TagOn::Complete, Some(tags)) = (self.inner.config.tag_on, tags) {
            let obj = dest;
            let inner = &self.inner;
            self.retrying("PutObjectTagging", |_| async {
                let _slot = inner.scheduler.request().await;
                inner.store.put_tagging(obj, tags).await
            })
            .await?;
        }
        let id = row.id;
        self.db(move |l| l.mark_tags_applied(id)).await
    }

    /// The object's bytes are in place as `r`: records it in the ledger (with the blake3 of the bytes when
    /// known: copies never see theirs), then applies the tags per policy. Shared by uploads and copies.
    pub(super) async fn finish(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        tags: Option<&TagSet>,
        r: &PutResult,
        blake3: Option<String>,
    ) -> Result<()> {
        let (id, etag, crc) = (row.id, r.etag.clone(), r.crc64);
        // Tags sent with the object's creation (or none to send) are in place with it: one ledger step.
        let in_place = !row.tags_applied && (self.inner.config.tag_on == TagOn::Initiate || tags.is_none());
        self.db(move |l| l.finish_object_tagged(id, &etag, crc, blake3.as_deref(), in_place)).await?;
        if in_place {
            return Ok(());
        }
        self.apply_tags(row, dest, tags).await
    }

    /// With [`DigestOptions`](super::DigestOptions) set: the request with the file's blake3 added to its tags
    /// and/or metadata, and the digest. Reads the file once, in 1 MiB slices.
    async fn with_digest(
        &self,
        req: &UploadRequest,
        file: &Arc<File>,
        path: &Arc<Path>,
        size: u64,
    ) -> Result<Option<(UploadRequest, String)>> {
        let opts = &self.inner.config.digest;
        if opts.tag.is_none() && opts.metadata.is_none() {
            return Ok(None);
        }
        const SLICE: u64 = 1 << 20;
        let _memory = self.inner.scheduler.memory(SLICE.min(size).max(1)).await;
        let (f, p) = (file.clone(), path.clone());
        let digest = tokio::task::spawn_blocking(move || {
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; SLICE.min(size) as usize];
            let mut offset = 0;
            while offset < size {
                let n = SLICE.min(size - offset) as usize;
                f.read_exact_at(&mut buf[..n], offset).map_err(|e| io_error("read", &p, e))?;
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Ok::<_, Error>(hasher.finalize().to_hex().to_string())
        })
        .await??;
        let mut r = req.clone();
        if let Some(key) = &opts.tag {
            let mut tags = r.tags.take().unwrap_or_default();
            tags.insert(key.clone(), digest.clone())?;
            r.tags = Some(tags);
        }
        if let Some(name) = &opts.metadata {
            r.metadata.insert_user(name, digest.clone())?;
            r.metadata.validate()?;
        }
        Ok(Some((r, digest)))
    }

    async fn put_single(
        &self,
        row: &ObjectRow,
        req: &UploadRequest,
        file: Arc<File>,
        path: Arc<Path>,
        size: u64,
        expect: Option<&str>,
    ) -> Result<UploadOutcome> {
        let inner = &self.inner;
        let _memory = inner.scheduler.memory(size).await;
        let data = read_at(&inner.buffers, file.clone(), path.clone(), 0, size).await?;
        let hash = blake3::hash(&data);
        check_digest(expect, &hash, &path)?;
        let digest = hash.to_hex().to_string();
        let src = Source { file, path, offset: 0, len: size, digest, tree: false, buffers: inner.buffers.clone() };
        let opts = self.put_options(req);
        let mut first = Some(data);
        let dest = req.dest();
        let r = self
            .retrying("PutObject", |n| {
                let (src, opts, dest) = (&src, &opts, &dest);
                let bytes = src.bytes(first.take());
                async move {
                    let bytes = bytes.await?;
                    let _slot = inner.scheduler.request().await;
                    self.check_stopped()?;
                    // The client checks the server's CRC-64 against the bytes it sent.
                    match inner.store.put_object(&req.bucket, &req.key, Body::from(bytes.clone()), opts).await {
                        Err(e) => self.earlier_attempt(e, n, dest, size, Some(crc64::checksum(&bytes))).await,
                        ok => ok,
                    }
                }
            })
            .await;
        let r = match r {
            Err(e) if self.refused_overwrite(&e) => return self.upload_refused(row, req, size, None).await,
            r => r?,
        };
        self.acknowledged(size);
        let blake3 = hash.to_hex().to_string();
        self.finish(row, &req.dest(), req.tags.as_ref(), &r, Some(blake3.clone())).await?;
        Ok(UploadOutcome {
            size,
            etag: r.etag,
            // What the server reported, checked against the bytes sent; none when it reports none.
            crc64: r.crc64,
            blake3,
            parts_sent: 1,
            parts_reused: 0,
            already_done: false,
            skipped: None,
        })
    }

    /// Every part of an existing upload, by number, with its ETag (all pages of ListParts).
    pub(super) async fn listed_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<HashMap<u32, String>> {
        let inner = &self.inner;
        let mut out = HashMap::new();
        let mut marker = None;
        loop {
            let page = self
                .retrying("ListParts", |_| async {
                    let _slot = inner.scheduler.request().await;
                    inner.store.list_parts(bucket, key, upload_id, marker, None).await
                })
                .await?;
            out.extend(page.parts.into_iter().map(|p| (p.part_number, p.etag)));
            if !page.is_truncated || page.next_marker.is_none() {
                return Ok(out);
            }
            marker = page.next_marker;
        }
    }

    /// The upload id to continue with and the parts it already holds (reconciled with the server: only parts
    /// ListParts still reports with the recorded ETag), or a new upload of `bucket/key` initiated with `opts`
    /// when there is none or the server no longer knows it. Shared by uploads and copies.
    pub(super) async fn open_upload(
        &self,
        row: &ObjectRow,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<(String, BTreeMap<u32, PartRow>)> {
        let inner = &self.inner;
        if let Some(id) = row.upload_id.clone() {
            let rid = row.id;
            let mut recorded: BTreeMap<u32, PartRow> =
                self.db(move |l| l.parts(rid)).await?.into_iter().map(|p| (p.number, p)).collect();
            match self.listed_parts(bucket, key, &id).await {
                Ok(listed) => {
                    recorded.retain(|n, p| listed.get(n).is_some_and(|e| e.eq_ignore_ascii_case(&p.etag)));
                    return Ok((id, recorded));
                }
                Err(e) if e.kind() == ErrorKind::UploadNotFound => {
                    tracing::info!(upload_id = %id, "the server no longer knows the upload; starting the object again");
                    self.db(move |l| l.set_upload(rid, None)).await?;
                }
                Err(e) => return Err(e),
            }
        }
        let id = self
            .retrying("InitiateMultipartUpload", |_| async {
                let _slot = inner.scheduler.request().await;
                inner.store.initiate_multipart(bucket, key, opts).await
            })
            .await?;
        let (rid, uid) = (row.id, id.clone());
        self.db(move |l| l.set_upload(rid, Some(&uid))).await?;
        Ok((id, BTreeMap::new()))
    }

    async fn put_multipart(
        &self,
        row: &ObjectRow,
        req: &UploadRequest,
        file: Arc<File>,
        path: Arc<Path>,
        plan: &ObjectPlan,
        expect: Option<&str>,
    ) -> Result<UploadOutcome> {
        let (upload_id, done) = match self.open_upload(row, &req.bucket, &req.key, &self.put_options(req)).await {
            Err(e) if self.refused_overwrite(&e) => return self.upload_refused(row, req, plan.size, None).await,
            opened => opened?,
        };
        let writer = self.inner.ledger.part_writer();
        let mut digest = Some(FileDigest::new(plan.part_size(), plan.part_count()));
        let tree = digest.as_ref().is_some_and(FileDigest::is_tree);
        let (mut sent, mut reused) = (0u32, 0u32);
        // Reading runs ahead of sending by at most one part per request slot (and the memory budget).
        let mut tasks = PartTasks::new(2 * self.inner.config.plan.max_in_flight);
        let reading = async {
            for part in plan.parts() {
                self.check_stopped()?;
                if !tasks.ready().await {
                    break;
                }
                let memory = self.inner.scheduler.memory(part.len).await;
                let taken = digest.take().expect("the digest comes back with every part");
                let (data, hash, back) =
                    read_part(&self.inner.buffers, file.clone(), path.clone(), part.offset, part.len, taken).await?;
                digest = Some(back);
                if done.get(&part.number).is_some_and(|p| p.size == part.len && p.blake3 == hash) {
                    reused += 1;
                    self.acknowledged(part.len);
                    continue;
                }
                sent += 1;
                let (offset, len, buffers) = (part.offset, part.len, self.inner.buffers.clone());
                let src = Source { file: file.clone(), path: path.clone(), offset, len, digest: hash, tree, buffers };
                let (engine, writer, halt) = (self.clone(), writer.clone(), tasks.halt());
                let (bucket, key, upload_id, object) = (req.bucket.clone(), req.key.clone(), upload_id.clone(), row.id);
                tasks.spawn(async move {
                    let _memory = memory;
                    let inner = &engine.inner;
                    let md5 = inner.config.content_md5;
                    let mut first = Some(data);
                    let receipt = engine
                        .retrying("UploadPart", |_| {
                            let bytes = src.bytes(first.take());
                            let (bucket, key, upload_id) = (&bucket, &key, &upload_id);
                            let (engine, halt) = (&engine, &halt);
                            async move {
                                let bytes = bytes.await?;
                                let _slot = inner.scheduler.request().await;
                                // A part queued behind the bound is not in flight: a stop, or a failed part,
                                // keeps it from starting.
                                halt.check()?;
                                engine.check_stopped()?;
                                inner
                                    .store
                                    .upload_part(bucket, key, upload_id, part.number, Body::from(bytes), md5)
                                    .await
                            }
                        })
                        .await
                        .map_err(|e| e.with_context("part", part.number).with_context("upload id", &upload_id))?;
                    // The client checked the server's CRC-64 against the bytes sent; it is what the ledger keeps.
                    engine.acknowledged(part.len);
                    writer.record(
                        object,
                        PartRow {
                            number: part.number,
                            offset: part.offset,
                            size: part.len,
                            etag: receipt.etag,
                            crc64: receipt.crc64,
                            blake3: src.digest.clone(),
                            checksum: receipt.checksum,
                        },
                    );
                    Ok(())
                });
            }
            Ok::<(), Error>(())
        }
        .await;
        // Parts already sending finish and are recorded even after a failure or a stop; a part's own error
        // outranks the reader's (a stop, or a failed read).
        let sending = tasks.finish().await.and(reading);
        // Whatever happened, what the server acknowledged is made durable before returning.
        let flushed = writer.flush().await;
        sending?;
        flushed?;

        let hash = match digest {
            Some(d) => d.finish(),
            // A read failed mid-way: `reading` carried that error out above.
            None => unreachable!("the digest is back unless a read failed"),
        };
        check_digest(expect, &hash, &path)?;
        let (r, combined) = match self.complete_recorded(row, &req.bucket, &req.key, &upload_id, plan).await {
            Err(e) if self.refused_overwrite(&e) => {
                return self.upload_refused(row, req, plan.size, Some(&upload_id)).await
            }
            completed => completed?,
        };
        let blake3 = hash.to_hex().to_string();
        self.finish(row, &req.dest(), req.tags.as_ref(), &r, Some(blake3.clone())).await?;
        Ok(UploadOutcome {
            size: plan.size,
            etag: r.etag,
            // The server's, checked against the parts' combined CRC-64; none when either is missing.
            crc64: r.crc64.filter(|_| combined.is_some()),
            blake3,
            parts_sent: sent,
            parts_reused: reused,
            already_done: false,
            skipped: None,
        })
    }

    /// Completes `upload_id` from the parts the ledger holds for `row` (after the part writer was flushed): they
    /// must be exactly `1..=plan.part_count()`. Returns the result and the CRC-64 combined from the parts'
    /// CRCs (`None` if any part lacks one), checked against the server's. Shared by uploads and copies.
    pub(super) async fn complete_recorded(
        &self,
        row: &ObjectRow,
        bucket: &str,
        key: &str,
        upload_id: &str,
        plan: &ObjectPlan,
    ) -> Result<(PutResult, Option<u64>)> {
        let rid = row.id;
        let parts = self.db(move |l| l.parts(rid)).await?;
        let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        if numbers != (1..=plan.part_count()).collect::<Vec<_>>() {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("the ledger holds parts {numbers:?} of {}", plan.part_count()),
            ));
        }
        let combined = parts.iter().try_fold(0u64, |acc, p| p.crc64.map(|c| crc64::combine(acc, c, p.size)));
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| CompletedPart { part_number: p.number, etag: p.etag.clone(), checksum: p.checksum })
            .collect();
        let r = self.complete(bucket, key, upload_id, &completed, plan.size, combined).await?;
        if let Some(expected) = combined {
            check_crc(expected, r.crc64, "CompleteMultipartUpload").map_err(|e| e.with_retry(Retry::Permanent))?;
        }
        Ok((r, combined))
    }

    /// CompleteMultipartUpload, retried. A retry answered `NoSuchUpload` may mean an earlier attempt succeeded
    /// (the server finishes even if the client went away): the object is then checked by HEAD (size, and the
    /// CRC-64 or, without one, the multipart ETag; see [`completed_from`]).
    /// Under [`Overwrite::IfMissing`](super::Overwrite::IfMissing) it carries `x-oss-forbid-overwrite`; a
    /// retry answered `FileAlreadyExists` is checked the same way.
    pub(super) async fn complete(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        size: u64,
        crc: Option<u64>,
    ) -> Result<PutResult> {
        let inner = &self.inner;
        let opts = CompleteOptions { forbid_overwrite: self.forbid_overwrite() };
        let dest = ObjectRef::new(bucket, key);
        self.retrying("CompleteMultipartUpload", |n| {
            let (opts, dest) = (&opts, &dest);
            async move {
                let _slot = inner.scheduler.request().await;
                match inner.store.complete_multipart(bucket, key, upload_id, parts, opts).await {
                    Err(e) if self.refused_overwrite(&e) => self.earlier_attempt(e, n, dest, size, crc).await,
                    Err(e) if n > 1 && e.kind() == ErrorKind::UploadNotFound => {
                        let head = inner.store.head_object(&ObjectRef::new(bucket, key)).await?;
                        // The CRC-64 where both sides have one; else the multipart ETag, where it follows a
                        // known rule (S3 has no CRC-64); else the size alone.
                        let same = match (crc, head.crc64) {
                            (Some(a), Some(b)) => a == b,
                            _ => completed_from(parts, &head.etag).unwrap_or(true),
                        };
                        if head.size == size && same {
                            Ok(PutResult { etag: head.etag, crc64: head.crc64, version_id: head.version_id })
                        } else {
                            Err(e)
                        }
                    }
                    other => other,
                }
            }
        })
        .await
        .map_err(|e| e.with_context("upload id", upload_id))
    }
}

/// Whether `etag`, a multipart object's ETag (`<32 hex>-<part count>`), is the one completing `parts` gives:
/// S3's rule (the MD5 of the parts' binary MD5s) or OSS's (the MD5 of their upper-case hex ETags). `None` when
/// neither rule can say: an ETag of another form, or part ETags that are not MD5s (S3 with SSE-KMS).
fn completed_from(parts: &[CompletedPart], etag: &str) -> Option<bool> {
    use md5::{Digest, Md5};
    let (digest, count) = etag.trim_matches('"').split_once('-')?;
    if count.parse::<usize>().ok()? != parts.len() || digest.len() != 32 {
        return None;
    }
    let (mut binary, mut upper) = (Md5::new(), Md5::new());
    for p in parts {
        let hex_etag = p.etag.trim_matches('"');
        binary.update(hex::decode(hex_etag).ok().filter(|b| b.len() == 16)?);
        upper.update(hex_etag.to_ascii_uppercase());
    }
    let (s3, oss) = (hex::encode(binary.finalize()), hex::encode(upper.finalize()));
    Some(digest.eq_ignore_ascii_case(&s3) || digest.eq_ignore_ascii_case(&oss))
}

/// The bytes sent must hash to the digest the object is labelled with.
fn check_digest(expect: Option<&str>, got: &blake3::Hash, path: &Path) -> Result<()> {
    match expect {
        Some(d) if d != got.to_hex().as_str() => Err(Error::invalid(format!(
            "{} changed while it was being uploaded (its blake3 is no longer the {d} computed first); run the upload again",
            path.display()
        ))),
        _ => Ok(()),
    }
}

fn done_outcome(row: &ObjectRow) -> UploadOutcome {
    UploadOutcome {
        size: row.size,
        etag: row.etag.clone().unwrap_or_default(),
        crc64: row.crc64,
        blake3: row.blake3.clone().unwrap_or_default(),
        parts_sent: 0,
        parts_reused: 0,
        already_done: true,
        skipped: None,
    }
}

#[cfg(test)]
mod read_tests {
    use super::pread_exact;
    use std::io::Write as _;

    #[test]
    fn exact_reads_at_offsets_and_short_files_fail() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        assert_eq!(pread_exact(&f, Vec::new(), 1000, 5).unwrap(), &data[5..1005]);
        assert_eq!(pread_exact(&f, Vec::new(), 99_000, 1000).unwrap(), &data[1000..]);
        assert!(pread_exact(&f, Vec::new(), 0, 0).unwrap().is_empty());
        assert_eq!(pread_exact(&f, Vec::new(), 10, 99_995).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
        // A reused buffer, larger and holding an earlier part, gives exactly the part asked for.
        let used = pread_exact(&f, Vec::with_capacity(200_000), 99_000, 1000).unwrap();
        let ptr = used.as_ptr();
        let again = pread_exact(&f, used, 500, 7).unwrap();
        assert_eq!((again.as_slice(), again.as_ptr()), (&data[7..507], ptr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    fn part(n: u32, body: &[u8]) -> CompletedPart {
        CompletedPart::new(n, hex::encode(Md5::digest(body)))
    }

    #[test]
    fn a_multipart_etag_is_recognised_by_s3s_and_osss_rules() {
        let parts = [part(1, b"first"), part(2, b"second")];
        let binary: Vec<u8> = parts.iter().flat_map(|p| hex::decode(&p.etag).unwrap()).collect();
        let s3 = format!("\"{}-2\"", hex::encode(Md5::digest(&binary)));
        assert_eq!(completed_from(&parts, &s3), Some(true));
        let joined: String = parts.iter().map(|p| p.etag.to_ascii_uppercase()).collect();
        let oss = format!("{}-2", hex::encode_upper(Md5::digest(joined.as_bytes())));
        assert_eq!(completed_from(&parts, &oss), Some(true));
        // Another object's ETag, another part count, or a rule we cannot apply.
        assert_eq!(completed_from(&parts[..1], &s3), None);
        assert_eq!(completed_from(&[part(1, b"x"), part(2, b"y")], &s3), Some(false));
        assert_eq!(completed_from(&parts, "0123456789abcdef0123456789abcdef"), None);
        let kms = [CompletedPart::new(1, "not-an-md5")];
        assert_eq!(completed_from(&kms, &format!("{}-1", "0".repeat(32))), None);
    }
}
