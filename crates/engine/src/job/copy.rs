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
//! The object goes through the part pipeline ([`super::pipeline`]) with a [`CopySource`] (server-side), or a
//! [`RelaySource`](super::relay::RelaySource) when the engine copies from another store. Parts are recorded in
//! the ledger as the server acknowledges them, with the CRC-64 it reported and an empty BLAKE3 (a server-side
//! copy never sees its bytes); on resume, a part the server still lists with its recorded ETag is reused.

use super::parts::Halt;
use super::pipeline::{adopted, Held, ObjectSource, Outcome, Step};
use super::relay::RelaySource;
use super::{Engine, SkipReason};
use crate::checkpoint::{Fingerprint, JobId, ObjectRow};
use crate::error::{Error, Result};
use crate::meta::Metadata;
use crate::plan::{ObjectPlan, Part};
use crate::store::{
    validate_key, ByteRange, CopyConditions, CopyOptions, Directive, ObjectInfo, ObjectRef, ObjectStore,
    PartCopySource, PutOptions, PutResult, Upload,
};
use crate::tags::TagSet;
use async_trait::async_trait;
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

/// True for an error meaning the source no longer matches the ETag a copy was pinned to.
fn source_changed(e: &Error) -> bool {
    e.kind() == crate::ErrorKind::PreconditionFailed
}

impl Engine {
    /// Copies `req.source` to `req.bucket/req.key` within `job`, server-side, resuming what the ledger says an
    /// earlier run copied. The ledger row is keyed by the source (`bucket/key[?versionId=..]`). Running it again
    /// after success does nothing and returns the recorded outcome; after a failure it continues (or, if the
    /// source changed, starts again and aborts the stale upload).
    ///
    /// With an [overwrite policy](super::Overwrite), an object nothing was copied for yet is first checked
    /// against its destination, and may be skipped (recorded as skipped in the ledger, reported in
    /// [`Outcome::skipped`]). With [`EngineConfig::dry_run`](super::EngineConfig::dry_run) set, nothing
    /// is written: the call fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) (use
    /// [`Engine::plan_copy_object`]).
    pub async fn copy_object(&self, job: JobId, req: &CopyRequest) -> Result<Outcome> {
        self.refuse_dry_run("copy_object", "plan_copy_object")?;
        req.validate()?;
        match self.copy_run(job, req).await {
            Err(e) if source_changed(&e) => {
                tracing::info!(source = %req.source, "the source changed during the copy; starting again from a fresh HEAD");
                self.copy_run(job, req).await.map(|o| o.changed(true))
            }
            other => other,
        }
    }

    /// HEAD of `obj` in the destination store, retried, with a request permit.
    pub(super) async fn head(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        self.head_in(&*self.inner.store, obj).await
    }

    /// HEAD of a copy's source, in the store copies read from.
    pub(super) async fn source_head(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        self.head_in(&**self.source_store(), obj).await.map_err(|e| e.with_context("source", obj))
    }

    async fn head_in(&self, store: &dyn ObjectStore, obj: &ObjectRef) -> Result<ObjectInfo> {
        let inner = &self.inner;
        self.retrying("HeadObject", |_| async {
            let _slot = inner.scheduler.request().await;
            store.head_object(obj).await
        })
        .await
    }

    /// The tags the destination must carry (`None`: none).
    pub(super) async fn copy_tags(&self, req: &CopyRequest, head: &ObjectInfo) -> Result<Option<TagSet>> {
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
    async fn copy_run(&self, job: JobId, req: &CopyRequest) -> Result<Outcome> {
        let head = self.source_head(&req.source).await?;
        let size = head.size;
        let Some(head) = self.readable(&req.source, head).await? else {
            return Ok(Outcome::left_alone(size, SkipReason::Archived, None));
        };
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
        let same_source = |row: &ObjectRow| matches!(&row.fingerprint, Fingerprint::Object { etag, size: s, .. } if *etag == head.etag && *s == size);
        let same = |row: &ObjectRow| same_source(row) && row.plan_part_size == plan.part_size();
        let changed = existing.as_ref().is_some_and(|row| !same_source(row));
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
        let dest = req.dest();
        if let Some(done) = self.already_done(&row, &dest, tags.as_ref()).await? {
            return Ok(done);
        }
        let metadata = match &req.metadata {
            Directive::Copy => head.metadata.clone(),
            Directive::Replace(m) => m.clone(),
        };
        let opts = self.put_options(&metadata, tags.as_ref());
        let source = req.source.clone();
        let copied = match self.inner.source.clone() {
            // Another store: the bytes go through this process.
            Some(store) => {
                let mut relay = RelaySource { engine: self.clone(), store, source, head };
                self.transfer(&row, &dest, tags.as_ref(), &plan, &opts, &mut relay).await
            }
            None => {
                let mut copy = CopySource { engine: self.clone(), source, head };
                self.transfer(&row, &dest, tags.as_ref(), &plan, &opts, &mut copy).await
            }
        };
        copied
            .map(|o| o.changed(changed))
            .map_err(|e| e.with_context("source", &req.source).with_context("object", &dest))
    }
}

/// The source of a server-side copy within one store: CopyObject, or UploadPartCopy parts, every request
/// pinned to the source's ETag.
pub(super) struct CopySource {
    pub(super) engine: Engine,
    pub(super) source: ObjectRef,
    pub(super) head: ObjectInfo,
}

/// Every copy request is pinned to the ETag the source had when the run began.
pub(super) fn pinned(head: &ObjectInfo) -> CopyConditions {
    CopyConditions { if_match: Some(head.etag.clone()), if_none_match: None }
}

/// What a copy (server-side or relayed) makes of what the server holds of `part`, without seeing its bytes: a
/// part the ledger recorded covers the same bytes of the same source (the row is reset, its upload aborted,
/// when the source changes); a part only the server lists is adopted when it has the part's size and an ETag
/// and was written no earlier than the second the source's version (`source`, its HEAD) came to be, so it is
/// not a copy of an older version (but for one copied within that very second). A copy that carries a CRC-64
/// also checks its parts together against the source's before Complete ([`ObjectSource::expected_crc64`]).
pub(super) fn kept(part: &Part, held: Option<&Held>, source: &ObjectInfo) -> Option<Step> {
    match held? {
        Held::Recorded(p) => (p.offset == part.offset && p.size == part.len).then_some(Step::Keep(None)),
        Held::Listed(info) => {
            (info.size == part.len && !info.etag.is_empty() && info.last_modified >= source.last_modified)
                .then(|| Step::Keep(Some(adopted(part, info, String::new()))))
        }
    }
}

#[async_trait]
impl ObjectSource for CopySource {
    async fn skip(&mut self, dest: &ObjectRef) -> Result<Option<(SkipReason, ObjectInfo)>> {
        self.engine.copy_skip(dest, &self.head).await
    }

    async fn put(&mut self, dest: &ObjectRef, opts: &PutOptions) -> Result<PutResult> {
        // Both directives are REPLACE with what was resolved, so the result is the multipart path's, explicitly:
        // with tags on complete, the copy carries none (not the source's) and they are applied after.
        let copy = CopyOptions {
            source: self.source.clone(),
            metadata: Directive::Replace(opts.metadata.clone()),
            tagging: Directive::Replace(opts.tags.clone().unwrap_or_default()),
            conditions: pinned(&self.head),
            forbid_overwrite: opts.forbid_overwrite,
        };
        let (engine, head, copy) = (&self.engine, &self.head, &copy);
        engine
            .write_object(
                "CopyObject",
                dest,
                head.size,
                || head.crc64,
                || engine.inner.store.copy_object(&dest.bucket, &dest.key, copy),
            )
            .await
    }

    fn buffers(&self) -> bool {
        false
    }

    async fn part(&mut self, part: Part, held: Option<&Held>, to: &Arc<Upload>, halt: &Halt) -> Result<Step> {
        if let Some(keep) = kept(&part, held, &self.head) {
            return Ok(keep);
        }
        let (engine, to, halt) = (self.engine.clone(), to.clone(), halt.clone());
        let range = Some(ByteRange::at(part.offset, part.len));
        let from = PartCopySource::new(self.source.clone(), range).conditions(pinned(&self.head));
        Ok(Step::Send(Box::pin(async move {
            let receipt = engine
                .write_part("UploadPartCopy", &halt, || {
                    engine.inner.store.upload_part_copy(to.part(part.number), &from)
                })
                .await?;
            // A copy never sees its bytes: the part's BLAKE3 is recorded empty.
            Ok((receipt, String::new()))
        })))
    }

    fn expected_crc64(&self) -> Option<u64> {
        self.head.crc64
    }

    fn trusts_found_parts(&self) -> bool {
        self.head.crc64.is_some()
    }

    async fn in_place(&mut self, head: &ObjectInfo, _plan: &ObjectPlan) -> Result<bool> {
        Ok(same_bytes(head, &self.head))
    }
}

/// Whether `dest` holds the bytes of the copy source `source`, by their CRC-64s (the only checksum a copy's
/// destination and its source share: a multipart copy's ETag is not its source's).
pub(super) fn same_bytes(dest: &ObjectInfo, source: &ObjectInfo) -> bool {
    dest.size == source.size && dest.crc64.is_some() && dest.crc64 == source.crc64
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
