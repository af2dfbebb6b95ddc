//! Copying one object server-side, bucket to bucket: one CopyObject below the copy threshold, a resumable
//! multipart upload of UploadPartCopy parts above it — with the same metadata and tags whichever path the size
//! selects.
//!
//! The official SDKs' Copier leaves the single path to the server's directives and carries metadata and tags
//! over by hand on the multipart path (with the tagging header unencoded). Here both are resolved once, before
//! anything is written: for [`Directive::Copy`] from the source's HEAD (and GetObjectTagging at the same
//! version, unless the HEAD counted no tags on a store whose HEAD counts them, or the store has no tagging),
//! for [`Directive::Replace`] as given. Both paths then send them
//! explicitly: CopyObject with `REPLACE` directives, InitiateMultipartUpload with the metadata and the tagging
//! header (or PutObjectTagging after the object exists, with [`TagOn::Complete`]). The resolved tags are kept in
//! the ledger row, so a crash between the object's creation and its tagging is repaired on resume.
//!
//! Every request is pinned to the source's ETag (`x-oss-copy-source-if-match`). A source that changed between
//! runs (ETag or size differ from the ledger) aborts the old upload and starts the object again; one that
//! changes during a run (412 on a part or on CopyObject) restarts the object once from a fresh HEAD, and fails
//! if it changes again.
//!
//! Parts are recorded in the ledger as the server acknowledges them, with the CRC-64 it reported and an empty
//! blake3 (a copy never sees its bytes). On resume, the ledger's parts are reconciled with ListParts: a part is
//! reused if the server still has it with the recorded ETag. A failed part lets the parts in flight finish and
//! be recorded before the run fails, so the next run reuses them.

use super::overwrite::not_started;
use super::parts::PartTasks;
use super::upload::check_crc;
use super::{Engine, SkipReason, TagOn};
use crate::checkpoint::{Fingerprint, JobId, ObjectRow, ObjectState, PartRow};
use crate::error::{Error, Result, Retry};
use crate::meta::Metadata;
use crate::plan::{Method, ObjectPlan};
use crate::store::{
    validate_key, ByteRange, CopyConditions, CopyOptions, Directive, ObjectInfo, ObjectRef, ObjectStore, PutOptions,
};
use crate::tags::TagSet;
use std::sync::Arc;

/// One object to copy (server-side within one store, relayed with [`Engine::relay`]): [`CopyRequest::new`],
/// then the options that apply.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyRequest {
    /// The source object, optionally at a version.
    pub source: ObjectRef,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// The destination's metadata: the source's ([`Directive::Copy`], the default) or these.
    pub metadata: Directive<Metadata>,
    /// The destination's tags: the source's ([`Directive::Copy`], the default) or these.
    pub tags: Directive<TagSet>,
}

impl CopyRequest {
    /// `source` to `bucket/key`, keeping the source's metadata and tags.
    pub fn new(source: ObjectRef, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self { source, bucket: bucket.into(), key: key.into(), metadata: Directive::Copy, tags: Directive::Copy }
    }

    /// The destination's metadata: the source's ([`Directive::Copy`]) or these.
    pub fn metadata(mut self, metadata: Directive<Metadata>) -> Self {
        self.metadata = metadata;
        self
    }

    /// The destination's tags: the source's ([`Directive::Copy`]) or these.
    pub fn tags(mut self, tags: Directive<TagSet>) -> Self {
        self.tags = tags;
        self
    }

    pub(super) fn dest(&self) -> ObjectRef {
        ObjectRef::new(&self.bucket, &self.key)
    }

    /// Checks the keys and the replacement metadata.
    pub(super) fn validate(&self) -> Result<()> {
        validate_key(&self.key)?;
        validate_key(&self.source.key)?;
        if let Directive::Replace(m) = &self.metadata {
            m.validate()?;
        }
        Ok(())
    }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOutcome {
    /// Bytes in the object.
    pub size: u64,
    /// The destination's ETag.
    pub etag: String,
    /// CRC-64/XZ of the destination as the server reported it (checked against the source's when both exist).
    pub crc64: Option<u64>,
    /// Copy requests made in this run (UploadPartCopy parts, or 1 for a single CopyObject).
    pub parts_sent: u32,
    /// Parts an earlier run had copied and this run reused.
    pub parts_reused: u32,
    /// True when the ledger already had the object copied (or skipped) and no bytes were copied in this run.
    pub already_done: bool,
    /// `Some` when the [overwrite policy](super::Overwrite) left the destination alone in this run. Nothing
    /// was written; `size` is the source's, `etag` and `crc64` are the destination's (empty and `None` if it
    /// could not be read).
    pub skipped: Option<SkipReason>,
}

impl CopyOutcome {
    /// The outcome of a copy of `size` bytes the policy skipped, with the destination's HEAD when known.
    fn left_alone(size: u64, reason: SkipReason, dest: Option<&ObjectInfo>) -> CopyOutcome {
        CopyOutcome {
            size,
            etag: dest.map(|h| h.etag.clone()).unwrap_or_default(),
            crc64: dest.and_then(|h| h.crc64),
            parts_sent: 0,
            parts_reused: 0,
            already_done: false,
            skipped: Some(reason),
        }
    }
}

/// True for an error meaning the source no longer matches the ETag a copy was pinned to.
fn source_changed(e: &Error) -> bool {
    e.kind() == crate::ErrorKind::PreconditionFailed
}

/// What the destination must carry, resolved once per run.
struct Resolved {
    head: ObjectInfo,
    metadata: Metadata,
    tags: Option<TagSet>,
}

impl Engine {
    /// Copies `req.source` to `req.bucket/req.key` within `job`, server-side, resuming what the ledger says an
    /// earlier run copied. The ledger row is keyed by the source (`bucket/key[?versionId=..]`). Running it again
    /// after success does nothing and returns the recorded outcome; after a failure it continues (or, if the
    /// source changed, starts again and aborts the stale upload).
    ///
    /// With an [overwrite policy](super::Overwrite), an object nothing was copied for yet is first checked
    /// against its destination, and may be skipped (recorded as skipped in the ledger, reported in
    /// [`CopyOutcome::skipped`]). With [`EngineConfig::dry_run`](super::EngineConfig::dry_run) set, nothing
    /// is written: the call fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) (use
    /// [`Engine::plan_copy_object`]).
    pub async fn copy_object(&self, job: JobId, req: &CopyRequest) -> Result<CopyOutcome> {
        self.refuse_dry_run("copy_object", "plan_copy_object")?;
        req.validate()?;
        match self.copy_run(job, req).await {
            Err(e) if source_changed(&e) => {
                tracing::info!(source = %req.source, "the source changed during the copy; starting again from a fresh HEAD");
                self.copy_run(job, req).await
            }
            other => other,
        }
    }

    /// HEAD of `obj` in the destination store, retried, with a request permit.
    pub(super) async fn head(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        self.head_in(&self.inner.store, obj).await
    }

    /// HEAD of a copy's source, in the store copies read from.
    pub(super) async fn source_head(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        self.head_in(self.source_store(), obj).await.map_err(|e| e.with_context("source", obj))
    }

    async fn head_in(&self, store: &Arc<dyn ObjectStore>, obj: &ObjectRef) -> Result<ObjectInfo> {
        let inner = &self.inner;
        self.retrying("HeadObject", |_| async {
            let _slot = inner.scheduler.request().await;
            store.head_object(obj).await
        })
        .await
    }

    /// The tags the destination must carry (`None`: none).
    async fn copy_tags(&self, req: &CopyRequest, head: &ObjectInfo) -> Result<Option<TagSet>> {
        let caps = self.source_store().capabilities();
        let tags = match &req.tags {
            Directive::Replace(t) => t.clone(),
            // No tags to read: the source's store has no tagging, or its HEAD counted none.
            Directive::Copy if !caps.tagging => TagSet::new(),
            Directive::Copy if caps.tag_count_on_head && head.tagging_count == 0 => TagSet::new(),
            Directive::Copy => {
                let inner = &self.inner;
                let read = self
                    .retrying("GetObjectTagging", |_| async {
                        let _slot = inner.scheduler.request().await;
                        self.source_store().get_tagging(&req.source).await
                    })
                    .await;
                match read {
                    // A server that does not implement tagging (Garage, say) holds no tags to keep.
                    Err(e) if e.kind() == crate::ErrorKind::Unsupported => {
                        tracing::debug!(source = %req.source, "the source's store has no tagging: no tags to copy");
                        TagSet::new()
                    }
                    read => read?,
                }
            }
        };
        Ok((!tags.is_empty()).then_some(tags))
    }

    /// One attempt at the object: HEAD, ledger, then the planned path.
    async fn copy_run(&self, job: JobId, req: &CopyRequest) -> Result<CopyOutcome> {
        let head = self.source_head(&req.source).await?;
        let size = head.size;
        let fp = Fingerprint::Object { etag: head.etag.clone(), version_id: head.version_id.clone(), size };
        let plan = self.plan_copy(size)?;
        let source = req.source.to_string();
        let existing = {
            let source = source.clone();
            self.db(move |l| l.object(job, &source)).await?
        };
        if let Some(row) = &existing {
            if row.dest_bucket != req.bucket || row.dest_key != req.key {
                return Err(Error::invalid(format!(
                    "job {} already copies {source} to {}/{}, not to {}/{}; use another job for another destination",
                    job.0, row.dest_bucket, row.dest_key, req.bucket, req.key
                )));
            }
        }
        let same = |row: &ObjectRow| {
            let same_source = matches!(&row.fingerprint, Fingerprint::Object { etag, size: s, .. } if *etag == head.etag && *s == size);
            same_source && row.plan_part_size == plan.part_size()
        };
        let row = match existing {
            Some(row) if same(&row) => row,
            existing => {
                // New, or the source changed: resolve its tags now and record them with the row.
                let tags = self.copy_tags(req, &head).await?;
                let row = match existing {
                    Some(row) => self.restart(row, fp, size, plan.part_size()).await?,
                    None => {
                        let (b, k, fp, t, ps) =
                            (req.bucket.clone(), req.key.clone(), fp, tags.clone(), plan.part_size());
                        self.db(move |l| l.upsert_object(job, &source, &b, &k, size, &fp, ps, t.as_ref())).await?
                    }
                };
                let id = row.id;
                self.db(move |l| {
                    l.set_tags(id, tags.as_ref())?;
                    l.object_by_id(id)
                })
                .await?
            }
        };
        let tags = row.tag_set()?;
        match row.state {
            ObjectState::Tagged | ObjectState::Skipped => return Ok(done_outcome(&row)),
            ObjectState::Completed => {
                self.apply_tags(&row, &req.dest(), tags.as_ref()).await?;
                return Ok(done_outcome(&row));
            }
            _ => {}
        }
        let metadata = match &req.metadata {
            Directive::Copy => head.metadata.clone(),
            Directive::Replace(m) => m.clone(),
        };
        let resolved = Resolved { head, metadata, tags };
        let result = match self.check_copy(&row, req, &resolved.head).await {
            Ok(Some(skipped)) => return Ok(skipped),
            Ok(None) => match plan.method {
                Method::Single => self.copy_single(&row, req, &resolved).await,
                Method::Multipart { .. } => self.copy_multipart(&row, req, &resolved, &plan).await,
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                self.record_failure(&row, &e).await;
                Err(e.with_context("source", &req.source).with_context("object", format!("{}/{}", req.bucket, req.key)))
            }
        }
    }

    /// The overwrite policy for an object nothing was copied for yet: `Some` (recorded as skipped) when it
    /// leaves the destination alone.
    async fn check_copy(&self, row: &ObjectRow, req: &CopyRequest, src: &ObjectInfo) -> Result<Option<CopyOutcome>> {
        if !not_started(row) {
            return Ok(None);
        }
        let dest = req.dest();
        let Some((reason, head)) = self.copy_skip(&dest, src).await? else { return Ok(None) };
        self.skip(row, &dest, None).await?;
        Ok(Some(CopyOutcome::left_alone(src.size, reason, Some(&head))))
    }

    /// The store refused to overwrite the destination (`FileAlreadyExists`): the object is skipped.
    async fn copy_refused(
        &self,
        row: &ObjectRow,
        req: &CopyRequest,
        size: u64,
        upload_id: Option<&str>,
    ) -> Result<CopyOutcome> {
        let head = self.skip_refused(row, &req.dest(), upload_id).await?;
        Ok(CopyOutcome::left_alone(size, SkipReason::Exists, head.as_ref()))
    }

    /// The source's CRC-64 against the destination's, when both are known.
    fn check_source_crc(src: &ObjectInfo, got: Option<u64>, what: &str) -> Result<()> {
        match src.crc64 {
            Some(expected) => check_crc(expected, got, what).map_err(|e| e.with_retry(Retry::Permanent)),
            None => Ok(()),
        }
    }

    fn conditions(src: &ObjectInfo) -> CopyConditions {
        CopyConditions { if_match: Some(src.etag.clone()), if_none_match: None }
    }

    async fn copy_single(&self, row: &ObjectRow, req: &CopyRequest, r: &Resolved) -> Result<CopyOutcome> {
        let inner = &self.inner;
        // Both directives are REPLACE with what was resolved, so the result is the multipart path's, explicitly.
        // With tags on complete, the copy carries none (not the source's) and they are applied after.
        let tags = match inner.config.tag_on {
            TagOn::Initiate => r.tags.clone().unwrap_or_default(),
            TagOn::Complete => TagSet::new(),
        };
        let opts = CopyOptions {
            source: req.source.clone(),
            metadata: Directive::Replace(r.metadata.clone()),
            tagging: Directive::Replace(tags),
            conditions: Self::conditions(&r.head),
            forbid_overwrite: self.forbid_overwrite(),
        };
        let dest = req.dest();
        let put = match &inner.source {
            // Another store: the bytes go through this process, with the same metadata and tags.
            Some(source) => {
                let opts = PutOptions {
                    metadata: r.metadata.clone(),
                    tags: (inner.config.tag_on == TagOn::Initiate).then(|| r.tags.clone()).flatten(),
                    content_md5: inner.config.content_md5,
                    forbid_overwrite: self.forbid_overwrite(),
                };
                self.relay_put(source, &req.source, &r.head, (&req.bucket, &req.key), &opts).await
            }
            None => {
                self.retrying("CopyObject", |n| {
                    let (opts, dest) = (&opts, &dest);
                    async move {
                        let _slot = inner.scheduler.request().await;
                        self.check_stopped()?;
                        match inner.store.copy_object(&req.bucket, &req.key, opts).await {
                            Err(e) => self.earlier_attempt(e, n, dest, r.head.size, r.head.crc64).await,
                            ok => ok,
                        }
                    }
                })
                .await
            }
        };
        let put = match put {
            Err(e) if self.refused_overwrite(&e) => return self.copy_refused(row, req, r.head.size, None).await,
            put => put?,
        };
        self.acknowledged(r.head.size);
        Self::check_source_crc(&r.head, put.crc64, "CopyObject")?;
        self.finish(row, &req.dest(), r.tags.as_ref(), &put, None).await?;
        Ok(CopyOutcome {
            size: r.head.size,
            etag: put.etag,
            crc64: put.crc64,
            parts_sent: 1,
            parts_reused: 0,
            already_done: false,
            skipped: None,
        })
    }

    async fn copy_multipart(
        &self,
        row: &ObjectRow,
        req: &CopyRequest,
        r: &Resolved,
        plan: &ObjectPlan,
    ) -> Result<CopyOutcome> {
        let inner = &self.inner;
        let opts = PutOptions {
            metadata: r.metadata.clone(),
            tags: if inner.config.tag_on == TagOn::Initiate { r.tags.clone() } else { None },
            content_md5: false,
            forbid_overwrite: self.forbid_overwrite(),
        };
        let (upload_id, done) = match self.open_upload(row, &req.bucket, &req.key, &opts).await {
            Err(e) if self.refused_overwrite(&e) => return self.copy_refused(row, req, plan.size, None).await,
            opened => opened?,
        };
        let writer = inner.ledger.part_writer();
        let conditions = Self::conditions(&r.head);
        let in_flight = inner.config.plan.max_in_flight.max(1);
        let (mut sent, mut reused) = (0u32, 0u32);
        let mut tasks = PartTasks::new(in_flight);
        let mut stopped = None;
        for part in plan.parts() {
            if done.get(&part.number).is_some_and(|p| p.offset == part.offset && p.size == part.len) {
                reused += 1;
                self.acknowledged(part.len);
                continue;
            }
            if let Err(e) = self.check_stopped() {
                stopped = Some(e);
                break;
            }
            // Bound the tasks of this object; each attempt also takes one of the engine's request permits.
            // A server-side copy holds no bytes; a relayed part holds its bytes under a memory permit.
            if !tasks.ready().await {
                break;
            }
            let memory = match inner.source {
                Some(_) => Some(inner.scheduler.memory(part.len).await),
                None => None,
            };
            sent += 1;
            let (engine, writer, conditions, halt) = (self.clone(), writer.clone(), conditions.clone(), tasks.halt());
            let (bucket, key, upload_id, source, object) =
                (req.bucket.clone(), req.key.clone(), upload_id.clone(), req.source.clone(), row.id);
            let head = r.head.clone();
            tasks.spawn(async move {
                let _memory = memory;
                let inner = &engine.inner;
                let receipt = match &inner.source {
                    Some(store) => {
                        let at = (bucket.as_str(), key.as_str(), upload_id.as_str(), part.number);
                        engine.relay_part(store, &source, &head, (part.offset, part.len), at, &halt).await
                    }
                    None => {
                        let range = ByteRange::at(part.offset, part.len);
                        engine
                            .retrying("UploadPartCopy", |_| async {
                                let _slot = inner.scheduler.request().await;
                                halt.check()?;
                                engine.check_stopped()?;
                                inner
                                    .store
                                    .upload_part_copy(
                                        &bucket,
                                        &key,
                                        &upload_id,
                                        part.number,
                                        &source,
                                        Some(range),
                                        &conditions,
                                    )
                                    .await
                            })
                            .await
                    }
                }
                .map_err(|e| e.with_context("part", part.number).with_context("upload id", &upload_id))?;
                engine.acknowledged(part.len);
                // A copy never sees its bytes: the part's blake3 is recorded empty.
                writer.record(
                    object,
                    PartRow {
                        number: part.number,
                        offset: part.offset,
                        size: part.len,
                        etag: receipt.etag,
                        crc64: receipt.crc64,
                        blake3: String::new(),
                        checksum: receipt.checksum,
                    },
                );
                Ok(())
            });
        }
        // Parts in flight finish (and are recorded) even after a failure, so the next run reuses them.
        let sending = tasks.finish().await.and(stopped.map_or(Ok(()), Err));
        let flushed = writer.flush().await;
        sending?;
        flushed?;

        let (put, _) = match self.complete_recorded(row, &req.bucket, &req.key, &upload_id, plan).await {
            Err(e) if self.refused_overwrite(&e) => {
                return self.copy_refused(row, req, plan.size, Some(&upload_id)).await
            }
            completed => completed?,
        };
        Self::check_source_crc(&r.head, put.crc64, "CompleteMultipartUpload")?;
        self.finish(row, &req.dest(), r.tags.as_ref(), &put, None).await?;
        Ok(CopyOutcome {
            size: plan.size,
            etag: put.etag,
            crc64: put.crc64,
            parts_sent: sent,
            parts_reused: reused,
            already_done: false,
            skipped: None,
        })
    }
}

fn done_outcome(row: &ObjectRow) -> CopyOutcome {
    CopyOutcome {
        size: row.size,
        etag: row.etag.clone().unwrap_or_default(),
        crc64: row.crc64,
        parts_sent: 0,
        parts_reused: 0,
        already_done: true,
        skipped: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn a_failed_precondition_means_the_source_changed() {
        assert!(source_changed(&Error::code(412, "PreconditionFailed", "At least one of the pre-conditions ...")));
        assert!(!source_changed(&Error::code(403, "AccessDenied", "no")));
        assert!(!source_changed(&Error::new(ErrorKind::Io, "reset")));
    }
}
