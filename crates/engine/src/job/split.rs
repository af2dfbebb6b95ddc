//! Split objects: one object cut into part ranges of a single multipart upload, the ranges sent by different
//! processes (the shards of a migration, `transfer shard`), the upload completed once by another.
//!
//! - [`Engine::split`] (the planner) compares the object with its destination as a sync does and, when it
//!   must be written, initiates its upload with the metadata and tags the sync would give it ([`Split`]).
//! - A sync whose [`SyncRequest::chunks`] name ranges of it sends those parts ([`Chunk`]) before it lists its
//!   own keys: resumably, each acknowledged part recorded in its ledger, each part the server already lists
//!   and the source recognises kept, the source pinned to the version the planner split (a file of the same
//!   size and modification time, an object of the same ETag). A chunk never completes anything, and its
//!   ledger row ([`ObjectRow::is_chunk`]) names the upload only to keep its parts: the upload is the plan's,
//!   not the shard's (`transfer cleanup` leaves it alone, and a chunk never aborts it). Every sync of the migration passes over the split keys on both sides
//!   ([`SyncRequest::elsewhere`]): neither compared, copied nor deleted there.
//! - [`Engine::complete_split`] (the merge) takes ListParts as the truth: every part present with its planned
//!   size and the ETag a chunk's receipt names, the parts' CRC-64s combined equal to the source's where both
//!   are known; then CompleteMultipartUpload (with the overwrite policy's no-clobber), the CRC-64 checked
//!   again, and the tags when they go on after completion. An upload already gone is a completion that
//!   happened: accepted when the destination is that object.

use super::copy::CopySource;
use super::jobs::Work;
use super::pipeline::{check_crc, combined_listed, held, same_object, ObjectSource, Outcome};
use super::relay::RelaySource;
use super::sync::Entry;
use super::{Engine, Overwrite, SyncRequest, SyncSide, TagOn};
use crate::checkpoint::{FileState, Fingerprint, JobId, ObjectRow};
use crate::error::{Error, ErrorKind, Result, Retry};
use crate::plan::{Method, ObjectPlan};
use crate::store::{CompletedPart, ObjectRef, PartReceipt, PutOptions, PutResult, Upload, UploadId};
use crate::tags::TagSet;
use std::collections::BTreeMap;

/// How the ledger's name of a chunk begins ([`Chunk::ledger_source`], [`ObjectRow::is_chunk`]).
pub const CHUNK_SOURCE: &str = "chunk of upload ";

/// What [`Engine::split`] made of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Splitting {
    /// Not split: the sync of its range settles it as any other object (its destination holds it already, or
    /// the overwrite policy leaves the destination alone).
    Whole,
    /// Its upload was initiated: send its parts in [`Chunk`]s, complete it with [`Engine::complete_split`].
    Split(Split),
}

/// An object [`Engine::split`] initiated the upload of.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Split {
    /// The upload.
    pub upload_id: UploadId,
    /// The object's size.
    pub size: u64,
    /// Every part's size but the last's.
    pub part_size: u64,
    /// How many parts (at least 2).
    pub parts: u32,
    /// The source as it was split: every chunk refuses another.
    pub version: SourceVersion,
    /// The source's CRC-64, when its store reports one: the parts combined must equal it.
    pub crc64: Option<u64>,
    /// The tags [`Engine::complete_split`] applies after completing (with [`TagOn::Complete`]); with
    /// [`TagOn::Initiate`] they went on with the upload, and this is `None`.
    pub tags: Option<TagSet>,
}

impl Split {
    /// The split as a plan read it back: what [`Engine::split`] answered.
    pub fn new(upload_id: UploadId, size: u64, part_size: u64, version: SourceVersion) -> Split {
        let parts = size.div_ceil(part_size.max(1)) as u32;
        Split { upload_id, size, part_size, parts, version, crc64: None, tags: None }
    }

    /// With the source's CRC-64.
    pub fn crc64(mut self, crc64: Option<u64>) -> Split {
        self.crc64 = crc64;
        self
    }

    /// With the tags to apply after completing.
    pub fn tags(mut self, tags: Option<TagSet>) -> Split {
        self.tags = tags;
        self
    }

    fn plan(&self) -> ObjectPlan {
        ObjectPlan { size: self.size, method: Method::Multipart { part_size: self.part_size, parts: self.parts } }
    }
}

/// Which version of a source a split was planned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceVersion {
    /// A file of this size and modification time (nanoseconds since the epoch).
    File {
        /// Bytes.
        size: u64,
        /// Modification time.
        mtime_ns: i128,
    },
    /// An object with this ETag.
    Object {
        /// Its ETag.
        etag: String,
    },
}

/// Parts `first..=last` of a split object, for a sync to send ([`SyncRequest::chunks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Chunk {
    /// The object's key relative to both sides of the sync.
    pub rel: String,
    /// The split.
    pub split: Split,
    /// First part number.
    pub first: u32,
    /// Last part number (inclusive).
    pub last: u32,
}

impl Chunk {
    /// Parts `first..=last` of `split`, the object at `rel`.
    pub fn new(rel: impl Into<String>, split: Split, first: u32, last: u32) -> Chunk {
        Chunk { rel: rel.into(), split, first, last }
    }

    /// The destination's key, as a sync's events name it.
    pub(super) fn key(&self, req: &SyncRequest) -> String {
        match &req.destination {
            SyncSide::Prefix { prefix, .. } => format!("{}{}", super::jobs::with_slash(prefix), self.rel),
            SyncSide::Dir(d) => d.join(&self.rel).display().to_string(),
        }
    }

    /// The name of the chunk's row in its job's ledger ([`Ledger::object`](crate::checkpoint::Ledger::object)),
    /// whose parts are the chunk's receipts: the upload and the part range.
    pub fn ledger_source(&self) -> String {
        format!("{CHUNK_SOURCE}{} parts {}-{}", self.split.upload_id, self.first, self.last)
    }
}

/// A source that is no longer what the planner split: its chunks never publish.
fn changed_since_plan(what: &str) -> Error {
    Error::new(
        ErrorKind::PreconditionFailed,
        format!("{what} changed since the migration was planned: its split upload cannot take it; plan it again"),
    )
    .with_retry(Retry::Permanent)
}

impl Engine {
    /// The entry of `rel` on `side`, the destination's or the source's (a HEAD, or a stat); `None` when there is
    /// none.
    pub(super) async fn entry(&self, side: &SyncSide, rel: &str, dest: bool) -> Result<Option<Entry>> {
        match side {
            SyncSide::Prefix { bucket, prefix } => {
                let obj = ObjectRef::new(bucket, format!("{}{rel}", super::jobs::with_slash(prefix)));
                let head = match dest {
                    true => self.head(&obj).await,
                    false => self.source_head(&obj).await,
                };
                match head {
                    Ok(h) => Ok(Some(Entry::Object {
                        key: obj.key,
                        size: h.size,
                        etag: h.etag,
                        last_modified: h.last_modified,
                    })),
                    Err(e) if e.kind() == ErrorKind::ObjectNotFound => Ok(None),
                    Err(e) => Err(e),
                }
            }
            SyncSide::Dir(dir) => {
                let path = super::download::path_under(dir, rel).map_err(Error::invalid)?;
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => Ok(Some(Entry::File { path, state: FileState::of(&m) })),
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(super::upload::io_error("stat", &path, e)),
                }
            }
        }
    }

    /// The source entry of `rel`, which must exist.
    async fn source_entry(&self, req: &SyncRequest, rel: &str) -> Result<Entry> {
        self.entry(&req.source, rel, false).await?.ok_or_else(|| {
            Error::new(ErrorKind::ObjectNotFound, format!("{rel} is no longer in the source"))
                .with_retry(Retry::Permanent)
        })
    }

    /// Splits the object at `rel` (relative to both sides of `req`): compares it with its destination as the
    /// sync does, and unless the destination holds it (or the overwrite policy leaves the destination alone, or
    /// it is one part at the sync's part size), initiates its multipart upload with the metadata and tags the
    /// sync would write, parts of the size the sync would choose. Refused for an archived object, or a directory
    /// destination.
    pub async fn split(&self, req: &SyncRequest, rel: &str) -> Result<Splitting> {
        req.validate(self.inner.source.is_some())?;
        // What the sync would not take (its filter, a download's temporary name) is not split either.
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if !req.filter.matches(rel) || super::is_temp_name(name) || crate::store::validate_key(rel).is_err() {
            return Ok(Splitting::Whole);
        }
        let src = self.source_entry(req, rel).await?;
        if let Some(dst) = self.entry(&req.destination, rel, true).await? {
            if self.inner.config.overwrite == Overwrite::IfMissing || self.unchanged(req, &src, &dst).await? {
                return Ok(Splitting::Whole);
            }
        }
        // Planned as the sync plans its parts, but multipart whatever the thresholds: the parts are what is split.
        let mut multipart = self.inner.config.plan.clone();
        multipart.multipart_threshold = 0;
        multipart.copy_threshold = Some(0);
        let (dest, opts, plan, version, crc64, tags) = match self.sync_work(req, rel, &src)? {
            // A file labelled with its BLAKE3 is checked against the label as it is read whole: not split.
            Work::Upload(_)
                if self.inner.config.digest.tag.is_some() || self.inner.config.digest.metadata.is_some() =>
            {
                return Ok(Splitting::Whole)
            }
            Work::Upload(up) => {
                let (_, _, meta, _) = up.open()?;
                let plan = crate::plan::plan_object(meta.len(), &self.inner.caps, &multipart)?;
                let opts = self.put_options(&self.file_metadata(&up, &meta)?, up.tags.as_ref());
                let state = FileState::of(&meta);
                let version = SourceVersion::File { size: state.size, mtime_ns: state.mtime_ns };
                (up.dest(), opts, plan, version, None, up.tags)
            }
            Work::Copy(copy) => {
                let head = self.source_head(&copy.source).await?;
                // An archived object is its range's to restore (or skip) as the sync does.
                if head.needs_restore() {
                    return Ok(Splitting::Whole);
                }
                let plan = match self.inner.source {
                    Some(_) => crate::plan::plan_object(head.size, &self.inner.caps, &multipart)?,
                    None => crate::plan::plan_copy(head.size, &self.inner.caps, &multipart)?,
                };
                let tags = self.copy_tags(&copy, &head).await?;
                let metadata = match &copy.metadata {
                    crate::store::Directive::Copy => head.metadata.clone(),
                    crate::store::Directive::Replace(m) => m.clone(),
                };
                let opts = self.put_options(&metadata, tags.as_ref());
                (copy.dest(), opts, plan, SourceVersion::Object { etag: head.etag }, head.crc64, tags)
            }
            _ => return Err(Error::invalid("only an object written into a bucket can be split")),
        };
        let (part_size, parts) = match plan.method {
            Method::Multipart { part_size, parts } if parts >= 2 => (part_size, parts),
            // One part at the sync's part size: nothing to split; its range's sync writes it.
            _ => return Ok(Splitting::Whole),
        };
        let upload = self.initiate(&dest, &opts).await?;
        let tags = tags.filter(|_| self.inner.config.tag_on == TagOn::Complete);
        Ok(Splitting::Split(Split { upload_id: upload.id, size: plan.size, part_size, parts, version, crc64, tags }))
    }

    /// InitiateMultipartUpload, retried.
    async fn initiate(&self, dest: &ObjectRef, opts: &PutOptions) -> Result<Upload> {
        let inner = &self.inner;
        self.retrying("InitiateMultipartUpload", |_| async {
            let _slot = inner.scheduler.request().await;
            inner.store.initiate_multipart(&dest.bucket, &dest.key, opts).await
        })
        .await
    }

    /// Sends the parts of `chunk` within `job` (see the module docs).
    pub(super) async fn send_chunk(&self, job: JobId, req: &SyncRequest, chunk: &Chunk) -> Result<Outcome> {
        let split = &chunk.split;
        let plan = split.plan();
        if chunk.first == 0 || chunk.first > chunk.last || chunk.last > split.parts {
            return Err(Error::invalid(format!(
                "parts {}-{} are not parts of {} ({} parts)",
                chunk.first, chunk.last, chunk.rel, split.parts
            )));
        }
        let src = self.source_entry(req, &chunk.rel).await?;
        match self.sync_work(req, &chunk.rel, &src)? {
            Work::Upload(up) => {
                let (path, file, meta, fp) = up.open()?;
                let state = FileState::of(&meta);
                if split.version != (SourceVersion::File { size: state.size, mtime_ns: state.mtime_ns }) {
                    return Err(changed_since_plan(&path.display().to_string()));
                }
                let row = self.chunk_row(job, chunk, &up.dest(), fp).await?;
                let mut source = super::upload::FileSource::new(self, file, path, meta, &plan, None);
                self.send_window(&row, &up.dest(), chunk, &mut source).await
            }
            Work::Copy(copy) => {
                let head = self.source_head(&copy.source).await?;
                let fp = Fingerprint::Object {
                    etag: head.etag.clone(),
                    version_id: head.version_id.clone(),
                    size: head.size,
                };
                if split.version != (SourceVersion::Object { etag: head.etag.clone() }) || head.size != split.size {
                    return Err(changed_since_plan(&copy.source.to_string()));
                }
                let row = self.chunk_row(job, chunk, &copy.dest(), fp).await?;
                let source = copy.source.clone();
                match self.inner.source.clone() {
                    Some(store) => {
                        let mut relay = RelaySource { engine: self.clone(), store, source, head };
                        self.send_window(&row, &copy.dest(), chunk, &mut relay).await
                    }
                    None => {
                        let mut server_side = CopySource { engine: self.clone(), source, head };
                        self.send_window(&row, &copy.dest(), chunk, &mut server_side).await
                    }
                }
            }
            _ => Err(Error::invalid("only an object written into a bucket can be split")),
        }
    }

    /// The ledger row of a chunk (its parts sent so far), reset when the source is not what it recorded.
    async fn chunk_row(&self, job: JobId, chunk: &Chunk, dest: &ObjectRef, fp: Fingerprint) -> Result<ObjectRow> {
        let (source, size, part_size) = (chunk.ledger_source(), chunk.split.size, chunk.split.part_size);
        let (bucket, key, recorded) = (dest.bucket.clone(), dest.key.clone(), fp.clone());
        let upload = chunk.split.upload_id.clone();
        self.db(move |l| {
            let row = l.upsert_object(job, &source, &bucket, &key, size, &recorded, part_size, None)?;
            // Parts recorded of another source, or of another upload, are not this chunk's (never aborted here:
            // the upload is the plan's).
            if row.fingerprint != recorded || row.plan_part_size != part_size || row.upload_id.as_ref() != Some(&upload)
            {
                l.reset_object(row.id, &recorded, size, part_size)?;
                l.set_upload(row.id, Some(upload.as_str()))?;
            }
            l.object_by_id(row.id)
        })
        .await
    }

    /// Sends the parts of `chunk` the planner's upload does not hold as this source's, through the pipeline.
    async fn send_window(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        chunk: &Chunk,
        source: &mut impl ObjectSource,
    ) -> Result<Outcome> {
        let upload = Upload::new(&dest.bucket, &dest.key, chunk.split.upload_id.clone());
        let rid = row.id;
        let recorded = self.db(move |l| l.parts(rid)).await?;
        let listed = match self.listed_parts(&upload).await {
            Err(e) if e.kind() == ErrorKind::UploadNotFound => {
                return Err(Error::new(
                    ErrorKind::UploadNotFound,
                    format!(
                        "the upload {} of {dest} is gone: the merge completed it, or `transfer shard abort` aborted it",
                        upload.id
                    ),
                )
                .with_retry(Retry::Permanent))
            }
            listed => listed?,
        };
        let held = held(recorded, listed);
        let plan = chunk.split.plan();
        let window = || plan.parts().filter(|p| (chunk.first..=chunk.last).contains(&p.number));
        let bytes = window().map(|p| p.len).sum();
        let (sent, reused) = self
            .take_parts(row, &upload, &held, window(), source)
            .await
            .map_err(|e| e.with_context("upload id", &upload.id).with_context("object", dest))?;
        source.unchanged()?;
        Ok(Outcome {
            size: bytes,
            etag: String::new(),
            crc64: None,
            blake3: String::new(),
            parts_sent: sent,
            parts_reused: reused,
            already_done: false,
            skipped: None,
            verified: super::Verified::default(),
            source_changed: false,
            chunk: Some((chunk.first, chunk.last)),
        })
    }

    /// Completes the split object at `rel` (relative to both sides of `req`) from the parts the server lists,
    /// each checked against `receipts` (what the chunks recorded, by part number): see the module docs.
    /// Answers the object, and whether this call completed it (false: an earlier one had).
    pub async fn complete_split(
        &self,
        req: &SyncRequest,
        rel: &str,
        split: &Split,
        receipts: &BTreeMap<u32, PartReceipt>,
    ) -> Result<(PutResult, bool)> {
        let SyncSide::Prefix { bucket, prefix } = &req.destination else {
            return Err(Error::invalid("only an object written into a bucket can be split"));
        };
        let dest = ObjectRef::new(bucket, format!("{}{rel}", super::jobs::with_slash(prefix)));
        let upload = Upload::new(bucket, &dest.key, split.upload_id.clone());
        let plan = split.plan();
        let received: Vec<CompletedPart> = receipts
            .values()
            .map(|r| CompletedPart { part_number: r.part_number, etag: r.etag.clone(), checksum: r.checksum })
            .collect();
        let received_crc =
            receipts.values().try_fold(0u64, |acc, r| r.crc64.map(|c| crate::crc64::combine(acc, c, r.size)));
        let listed = match self.listed_parts(&upload).await {
            Err(e) if e.kind() == ErrorKind::UploadNotFound => {
                // Completed by an earlier merge (or aborted): the destination tells which.
                let head = self.head(&dest).await.ok();
                let whole = receipts.len() as u32 == split.parts;
                return match head {
                    Some(h) if whole && same_object(&h, &received, split.size, received_crc).unwrap_or(false) => {
                        // Its tags may not have followed (a merge killed between Complete and PutObjectTagging).
                        self.split_tags(&dest, split).await?;
                        Ok((PutResult { etag: h.etag, crc64: h.crc64, version_id: h.version_id }, false))
                    }
                    _ => Err(Error::new(
                        ErrorKind::UploadNotFound,
                        format!("the upload {} of {dest} is gone and the object is not the split one: plan the object again", upload.id),
                    )
                    .with_retry(Retry::Permanent)),
                };
            }
            listed => listed?,
        };
        let mut parts = Vec::with_capacity(plan.part_count() as usize);
        for part in plan.parts() {
            let n = part.number;
            let Some(info) = listed.get(&n) else {
                return Err(Error::new(ErrorKind::Protocol, format!("part {n} of {dest} is not on the server yet"))
                    .with_retry(Retry::Permanent));
            };
            let Some(receipt) = receipts.get(&n) else {
                return Err(Error::new(ErrorKind::Protocol, format!("no chunk reported part {n} of {dest}"))
                    .with_retry(Retry::Permanent));
            };
            // A server that lists parts without their ETags (s3s-fs) can only be held to their sizes here, and to
            // the receipts' ETags by Complete.
            let etag = if info.etag.is_empty() { &receipt.etag } else { &info.etag };
            if info.size != part.len || !etag.eq_ignore_ascii_case(&receipt.etag) {
                // Not what any chunk sent: the object can never be completed from this upload.
                self.abort_quietly(&upload).await;
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "part {n} of {dest} on the server ({} bytes, ETag {}) is not the one its chunk sent ({} bytes, ETag {}): \
                         nothing was published, the upload was aborted; plan the object again",
                        info.size, info.etag, part.len, receipt.etag
                    ),
                )
                .with_retry(Retry::Permanent));
            }
            parts.push(CompletedPart { part_number: info.part_number, etag: etag.clone(), checksum: info.checksum });
        }
        let combined = combined_listed(&listed, &plan);
        if let (Some(want), Some(got)) = (split.crc64, combined) {
            if want != got {
                self.abort_quietly(&upload).await;
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "the parts of {dest} have the CRC-64 {got}, not the source's {want}: nothing was published, \
                         the upload was aborted; plan the object again"
                    ),
                )
                .with_retry(Retry::Permanent));
            }
        }
        let put = self.complete(&upload, &parts, split.size, combined).await?;
        if let Some(expected) = combined {
            check_crc(expected, put.crc64, "CompleteMultipartUpload").map_err(|e| e.with_retry(Retry::Permanent))?;
        }
        self.split_tags(&dest, split).await?;
        Ok((put, true))
    }

    /// The tags a split object gets after completion, when tags go on then (PutObjectTagging, idempotent).
    async fn split_tags(&self, dest: &ObjectRef, split: &Split) -> Result<()> {
        let Some(tags) = &split.tags else { return Ok(()) };
        let inner = &self.inner;
        self.retrying("PutObjectTagging", |_| async {
            let _slot = inner.scheduler.request().await;
            inner.store.put_tagging(dest, tags).await
        })
        .await
        .map(|_| ())
    }
}
