//! The one part pipeline: every object of every job goes through [`Engine::transfer`], whatever its bytes come
//! from.
//!
//! A source ([`ObjectSource`]) says how its object's bytes reach the destination: a local file read with
//! positional reads ([`super::upload`]), a server-side copy within one store ([`super::copy`]), ranged GETs from
//! another store ([`super::relay`]). The driver does the rest, the same way for all of them:
//! - the overwrite policy, once, before anything is written for the object;
//! - one request below the multipart threshold, or a multipart upload: opened, its parts taken in order under
//!   the memory budget, each sent by its own task under the job's one bound on requests in flight, every
//!   acknowledged part recorded in the ledger, the parts in flight finishing and being recorded even after a
//!   failure or a stop, then completed from what the ledger holds;
//! - the destination is the truth, the ledger only keeps re-sends small: the recorded upload is checked by
//!   ListParts, and a part the server holds that the ledger missed is adopted once the source shows it is its
//!   part; without a recorded upload (a new object, a lost ledger, an Initiate whose answer was lost) an upload
//!   of the key that fits the plan is found by ListMultipartUploads; a recorded upload the server no longer
//!   knows is settled by HEAD before anything is sent again;
//! - a store's refusal to overwrite (the destination appeared meanwhile) as a skip, its upload aborted;
//! - the CRC-64 check against what the source says it holds, the ledger's record of the object, and the tags
//!   (on initiate, or applied after, with a crash between repaired on resume).

use super::overwrite::not_started;
use super::parts::{Halt, PartTasks};
use super::{Engine, SkipReason, TagOn};
use crate::checkpoint::{Fingerprint, ObjectRow, PartRow};
use crate::crc64;
use crate::error::{Error, ErrorKind, Result, Retry};
use crate::plan::{Method, ObjectPlan, Part};
use crate::run::RequestPermit;
use crate::store::{
    CompleteOptions, CompletedPart, ListUploadsRequest, ObjectInfo, ObjectRef, PartInfo, PartNumber, PartReceipt,
    PutOptions, PutResult, Upload, UploadId,
};
use crate::tags::TagSet;
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// What a job did to one object: an upload, a copy or a relay alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes in the object.
    pub size: u64,
    /// The destination's ETag.
    pub etag: String,
    /// CRC-64/XZ of the destination as the server reported it, checked end to end: against the parts' CRCs
    /// combined, the bytes sent, or the copy source's; `None` when it could not be checked (S3 reports none).
    pub crc64: Option<u64>,
    /// BLAKE3 of the bytes, hex, when this process saw them (uploads); empty for copies.
    pub blake3: String,
    /// Requests that carried bytes in this run (parts, or 1 for a single request).
    pub parts_sent: u32,
    /// Parts an earlier run had delivered and this run reused.
    pub parts_reused: u32,
    /// True when the ledger already had the object done (or skipped) and nothing was sent.
    pub already_done: bool,
    /// `Some` when the [overwrite policy](super::Overwrite) left the destination alone in this run. Nothing
    /// was written; `size` is the source's, `etag` and `crc64` are the destination's (empty and `None` if it
    /// could not be read), `blake3` is empty.
    pub skipped: Option<SkipReason>,
    /// What this run checked of the bytes it wrote, end to end (nothing for an object it did not write).
    pub verified: Verified,
    /// The source changed after an earlier run (or an earlier attempt of this one) had started on the object:
    /// another size, modification time or inode for a file, another ETag, version or size for an object. What
    /// had been sent or fetched of the old source was discarded and the object started again.
    pub source_changed: bool,
    /// `Some((first, last))` for a [`Chunk`](super::Chunk): parts `first..=last` of a split object were sent
    /// (or found on the server) and `size` is their bytes; the object itself is not complete.
    pub chunk: Option<(u32, u32)>,
}

/// What was checked of an object's bytes, end to end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// Its CRC-64/XZ: the server's against the bytes sent (or the copy source's); for a download, the parts'
    /// CRC-64s combined against the object's (`x-oss-hash-crc64ecma`).
    pub crc64: bool,
    /// A download's bytes have the MD5 the object's ETag is: of the bytes (an object written in one request),
    /// or of the parts' MD5s under the upload's part layout (`hex-N`). Checked on stores without CRC-64 and
    /// without a CRC-32C of the object.
    pub md5: bool,
    /// A download's bytes have the CRC-32C the store reports for the object (S3's `x-amz-checksum-crc32c`, of
    /// the bytes or, composite, of the parts' CRC-32Cs under the upload's layout). Checked on stores without
    /// CRC-64.
    pub checksum: bool,
    /// A download's bytes have the BLAKE3 an earlier upload labelled the object with
    /// ([`DigestOptions`](super::DigestOptions), named in the engine's configuration).
    pub blake3: bool,
}

impl Verified {
    /// True when anything was checked.
    pub fn any(&self) -> bool {
        self.crc64 || self.md5 || self.checksum || self.blake3
    }
}

impl Outcome {
    /// Requests that moved bytes in this run, and parts an earlier run delivered that this one reused.
    pub fn parts(&self) -> (u32, u32) {
        (self.parts_sent, self.parts_reused)
    }

    /// An object of `size` bytes the policy left alone, with the destination's HEAD when known.
    pub(super) fn left_alone(size: u64, reason: SkipReason, dest: Option<&ObjectInfo>) -> Outcome {
        Outcome {
            size,
            etag: dest.map(|h| h.etag.clone()).unwrap_or_default(),
            crc64: dest.and_then(|h| h.crc64),
            blake3: String::new(),
            parts_sent: 0,
            parts_reused: 0,
            already_done: false,
            skipped: Some(reason),
            verified: Verified::default(),
            source_changed: false,
            chunk: None,
        }
    }

    /// This outcome, of an object whose source changed after work on it had begun (`changed`).
    pub(super) fn changed(mut self, changed: bool) -> Outcome {
        self.source_changed |= changed;
        self
    }

    /// What the ledger recorded of an object an earlier run finished (or skipped).
    pub(super) fn recorded(row: &ObjectRow) -> Outcome {
        Outcome {
            size: row.size,
            etag: row.etag.clone().unwrap_or_default(),
            crc64: row.crc64,
            blake3: row.blake3.clone().unwrap_or_default(),
            parts_sent: 0,
            parts_reused: 0,
            already_done: true,
            skipped: None,
            verified: Verified::default(),
            source_changed: false,
            chunk: None,
        }
    }
}

/// A part on its way: sends it (retried under the engine's policy, each attempt under a request permit) and
/// answers the server's receipt and the digest the ledger keeps for the part (empty when the bytes were never
/// seen).
pub(super) type Sending = BoxFuture<'static, Result<(PartReceipt, String)>>;

/// The most unfinished uploads of one object [`Engine::find_upload`] asks for their parts.
const MAX_UPLOADS_WEIGHED: usize = 8;

/// What the server already holds of a part when the pipeline comes to it.
#[derive(Debug, Clone)]
pub(super) enum Held {
    /// The ledger recorded it, and ListParts still reports it with the recorded ETag.
    Recorded(PartRow),
    /// ListParts reports it but the ledger never recorded it: acknowledged just before a kill (parts are
    /// committed in groups), or sent by a run whose ledger was lost. Kept only when the source shows it is its
    /// part ([`ObjectSource::part`]).
    Listed(PartInfo),
}

/// What a source makes of a part ([`ObjectSource::part`]).
pub(super) enum Step {
    /// The server's part is this one: nothing is sent. `Some` is a [`Held::Listed`] part adopted, for the
    /// ledger to record.
    Keep(Option<PartRow>),
    /// The part must be sent.
    Send(Sending),
}

/// The ledger's row for a part the server listed and the source recognised as its own.
pub(super) fn adopted(part: &Part, info: &PartInfo, blake3: String) -> PartRow {
    PartRow {
        number: part.number,
        offset: part.offset,
        size: part.len,
        etag: info.etag.clone(),
        crc64: info.crc64,
        blake3,
        checksum: info.checksum,
    }
}

/// Where one object's bytes come from. See the module docs.
#[async_trait]
pub(super) trait ObjectSource: Send {
    /// Whether the overwrite policy leaves `dest` alone, with the destination's HEAD if so.
    async fn skip(&mut self, dest: &ObjectRef) -> Result<Option<(SkipReason, ObjectInfo)>>;

    /// The whole object in one request (PutObject, CopyObject).
    async fn put(&mut self, dest: &ObjectRef, opts: &PutOptions) -> Result<PutResult>;

    /// Whether a part holds its bytes in this process while in flight, under a memory permit.
    fn buffers(&self) -> bool;

    /// Called for every part in order, one at a time (after its memory permit, when [`buffers`](Self::buffers)):
    /// does what must happen in order (reading and hashing a file), and answers [`Step::Keep`] when `held`,
    /// what the server holds of the part, is this part, else the part's [`Sending`]. `halt` is set once
    /// another part failed: a part waiting for its request permit must not send then.
    async fn part(&mut self, part: Part, held: Option<&Held>, to: &Arc<Upload>, halt: &Halt) -> Result<Step>;

    /// After the last part and before Complete: what the whole source must satisfy (a file's digest).
    fn check(&mut self) -> Result<()> {
        Ok(())
    }

    /// After a range of parts ([`Chunk`](super::Chunk)): the source is still what they were read from (a file
    /// not written meanwhile).
    fn unchanged(&self) -> Result<()> {
        Ok(())
    }

    /// Whether parts of an upload found on the server (not the ledger's own) can be adopted: a source that
    /// checks each part's bytes (a file), or whose parts are checked together before Complete (a copy with a
    /// CRC-64). A copy without one re-sends them.
    fn trusts_found_parts(&self) -> bool {
        true
    }

    /// Whether the object `head` (the destination's HEAD) already holds exactly this source's bytes, as far as a
    /// local check can tell (a file read again, a copy source's CRC-64): how a resumed job whose ledger lost an
    /// object finds it completed by an earlier run. False when it cannot tell.
    async fn in_place(&mut self, _head: &ObjectInfo, _plan: &ObjectPlan) -> Result<bool> {
        Ok(false)
    }

    /// The CRC-64 the destination must have, when the source tells it (a copy source's).
    fn expected_crc64(&self) -> Option<u64> {
        None
    }

    /// The BLAKE3 (hex) of the bytes sent, when this process saw them all.
    fn blake3(&self) -> Option<String> {
        None
    }
}

/// An upload to continue, or the object an earlier run completed.
enum Opened {
    /// The upload, and what the server holds of its parts, by number.
    Upload(Upload, BTreeMap<u32, Held>),
    /// The recorded upload is gone because a run completed it and was stopped before recording that: the
    /// destination is that object (see [`Engine::completed_earlier`]). Whether its CRC-64 was checked.
    Completed(PutResult, bool),
}

/// What writing the object's bytes came to.
enum Written {
    /// In place: the result, whether its CRC-64 was checked end to end, requests sent and parts reused.
    Put { put: PutResult, verified: bool, sent: u32, reused: u32 },
    /// The store refused to overwrite the destination; the multipart upload to abort, if one was opened.
    Refused(Option<Upload>),
}

impl Engine {
    /// Moves one object from `source` to `dest` as `plan` says, within the ledger row `row` (not yet done): see
    /// the module docs. Failures are recorded on the row.
    pub(super) async fn transfer(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        tags: Option<&TagSet>,
        plan: &ObjectPlan,
        opts: &PutOptions,
        source: &mut impl ObjectSource,
    ) -> Result<Outcome> {
        let result = async {
            if not_started(row) {
                if let Some((reason, head)) = source.skip(dest).await? {
                    self.skip(row, None).await?;
                    return Ok(Outcome::left_alone(plan.size, reason, Some(&head)));
                }
            }
            let written = match plan.method {
                Method::Single => match source.put(dest, opts).await {
                    Err(e) if self.refused_overwrite(&e) => Written::Refused(None),
                    put => {
                        self.acknowledged(plan.size);
                        Written::Put { put: put?, verified: true, sent: 1, reused: 0 }
                    }
                },
                Method::Multipart { .. } => self.multipart(row, dest, opts, plan, source).await?,
            };
            let (put, verified, sent, reused) = match written {
                Written::Put { put, verified, sent, reused } => (put, verified, sent, reused),
                Written::Refused(upload_id) => {
                    let head = self.skip_refused(row, dest, upload_id.as_ref()).await?;
                    return Ok(Outcome::left_alone(plan.size, SkipReason::Exists, head.as_ref()));
                }
            };
            if let Some(expected) = source.expected_crc64() {
                check_crc(expected, put.crc64, "the copy").map_err(|e| e.with_retry(Retry::Permanent))?;
            }
            let blake3 = source.blake3();
            self.finish(row, dest, tags, &put, blake3.clone()).await?;
            let crc64 = put.crc64.filter(|_| verified || source.expected_crc64().is_some());
            Ok(Outcome {
                size: plan.size,
                verified: Verified { crc64: crc64.is_some(), ..Verified::default() },
                source_changed: false,
                chunk: None,
                crc64,
                etag: put.etag,
                blake3: blake3.unwrap_or_default(),
                parts_sent: sent,
                parts_reused: reused,
                already_done: false,
                skipped: None,
            })
        }
        .await;
        if let Err(e) = &result {
            self.record_failure(row, e).await;
        }
        result
    }

    /// The multipart path of [`Engine::transfer`].
    async fn multipart(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        opts: &PutOptions,
        plan: &ObjectPlan,
        source: &mut impl ObjectSource,
    ) -> Result<Written> {
        let (upload, held) = match self.open_upload(row, dest, opts, plan, source).await {
            Err(e) if self.refused_overwrite(&e) => return Ok(Written::Refused(None)),
            Err(e) => return Err(e),
            Ok(Opened::Completed(put, verified)) => {
                self.reused(plan.size);
                return Ok(Written::Put { put, verified, sent: 0, reused: plan.part_count() });
            }
            Ok(Opened::Upload(upload, held)) => (upload, held),
        };
        let (sent, reused) = self.take_parts(row, &upload, &held, plan.parts(), source).await?;
        source.check()?;
        match self.complete_recorded(row, &upload, (plan.part_count(), plan.size), source.expected_crc64()).await {
            Err(e) if self.refused_overwrite(&e) => Ok(Written::Refused(Some(upload))),
            Err(e) => Err(e),
            Ok((put, combined)) => Ok(Written::Put { put, verified: combined.is_some(), sent, reused }),
        }
    }

    /// Takes `parts` (of `upload`, in order) through the pipeline: each one the server holds (`held`) and the
    /// source recognises is kept, the others are sent under the memory budget and the bound on requests, every
    /// acknowledged part recorded on `row`. Parts in flight finish and are recorded whatever happens. Answers
    /// the parts sent and the parts kept.
    pub(super) async fn take_parts(
        &self,
        row: &ObjectRow,
        upload: &Upload,
        held: &BTreeMap<u32, Held>,
        parts: impl Iterator<Item = Part>,
        source: &mut impl ObjectSource,
    ) -> Result<(u32, u32)> {
        let to = Arc::new(upload.clone());
        let writer = self.inner.ledger.part_writer();
        let (mut sent, mut reused) = (0u32, 0u32);
        // Parts are taken in order ahead of sending by at most one per request slot (and the memory budget).
        let mut tasks = PartTasks::new(2 * self.inner.config.plan.max_in_flight);
        let taking = async {
            for part in parts {
                self.check_stopped()?;
                if !tasks.ready().await {
                    break;
                }
                let memory = match source.buffers() {
                    true => Some(self.inner.scheduler.memory(part.len).await),
                    false => None,
                };
                let sending = match source.part(part, held.get(&part.number), &to, &tasks.halt()).await? {
                    Step::Send(sending) => sending,
                    Step::Keep(adopted) => {
                        if let Some(p) = adopted {
                            writer.record(row.id, p);
                        }
                        reused += 1;
                        self.reused(part.len);
                        continue;
                    }
                };
                sent += 1;
                let (engine, writer, object, upload_id) = (self.clone(), writer.clone(), row.id, upload.id.clone());
                tasks.spawn(async move {
                    let _memory = memory;
                    let (receipt, digest) = sending
                        .await
                        .map_err(|e| e.with_context("part", part.number).with_context("upload id", &upload_id))?;
                    engine.acknowledged(part.len);
                    writer.record(
                        object,
                        PartRow {
                            number: part.number,
                            offset: part.offset,
                            size: part.len,
                            etag: receipt.etag,
                            crc64: receipt.crc64,
                            blake3: digest,
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
        // outranks the taker's (a stop, or a failed read). Whatever happened, what the server acknowledged is
        // made durable before returning.
        tasks.finish_recorded(taking, &writer).await?;
        Ok((sent, reused))
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
            self.abort_quietly(&Upload::new(&row.dest_bucket, &row.dest_key, id.clone())).await;
        }
        tracing::info!(source = %row.source, "source changed since the last run; starting the object again");
        let id = row.id;
        self.db(move |l| {
            l.reset_object(id, &fp, size, part_size)?;
            l.object_by_id(id)
        })
        .await
    }

    /// The outcome of a row an earlier run took to its end (done, skipped), after applying its tags if a crash
    /// came between the object's completion and its tagging; `None` for a row with work left.
    pub(super) async fn already_done(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        tags: Option<&TagSet>,
    ) -> Result<Option<Outcome>> {
        use crate::checkpoint::ObjectState;
        match row.state {
            ObjectState::Tagged | ObjectState::Skipped => Ok(Some(Outcome::recorded(row))),
            ObjectState::Completed => {
                self.apply_tags(row, dest, tags).await?;
                Ok(Some(Outcome::recorded(row)))
            }
            _ => Ok(None),
        }
    }

    /// The options of every write that creates an object: its metadata, its tags when they go on at initiate,
    /// the engine's Content-MD5 and overwrite settings.
    pub(super) fn put_options(&self, metadata: &crate::meta::Metadata, tags: Option<&TagSet>) -> PutOptions {
        PutOptions {
            metadata: metadata.clone(),
            tags: if self.inner.config.tag_on == TagOn::Initiate { tags.cloned() } else { None },
            // Content-MD5 is the store's configuration (`HttpStoreBuilder::content_md5`).
            content_md5: false,
            forbid_overwrite: self.forbid_overwrite(),
        }
    }

    /// Applies `tags` to `dest` after the object exists (policy `Complete`, or repairing a crash between
    /// Complete and PutObjectTagging), then records that they are on.
    async fn apply_tags(&self, row: &ObjectRow, dest: &ObjectRef, tags: Option<&TagSet>) -> Result<()> {
        if row.tags_applied {
            return Ok(());
        }
        if let (TagOn::Complete, Some(tags)) = (self.inner.config.tag_on, tags) {
            let inner = &self.inner;
            self.retrying("PutObjectTagging", |_| async {
                let _slot = inner.scheduler.request().await;
                inner.store.put_tagging(dest, tags).await
            })
            .await?;
        }
        let id = row.id;
        self.db(move |l| l.mark_tags_applied(id)).await
    }

    /// The object's bytes are in place as `r`: records it in the ledger (with the BLAKE3 of the bytes when
    /// known), then applies the tags per policy.
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

    /// Every part of an existing upload, by number (all pages of ListParts).
    pub(super) async fn listed_parts(&self, upload: &Upload) -> Result<BTreeMap<u32, PartInfo>> {
        let inner = &self.inner;
        let mut out = BTreeMap::new();
        let mut marker = None;
        loop {
            let page = self
                .retrying("ListParts", |_| async {
                    let _slot = inner.scheduler.request().await;
                    inner.store.list_parts(upload, marker, None).await
                })
                .await?;
            out.extend(page.parts.into_iter().map(|p| (p.part_number.get(), p)));
            if !page.is_truncated || page.next_marker.is_none() {
                return Ok(out);
            }
            marker = page.next_marker;
        }
    }

    /// The upload to continue with and what the server holds of its parts, or the object an earlier run
    /// completed. The destination is the truth: the ledger's upload, checked by ListParts (a part the ledger
    /// recorded counts only if the server lists it with the recorded ETag; a part only the server lists is
    /// [`Held::Listed`]); without one (a new object, a kill before the upload id was recorded, a lost ledger),
    /// an upload of the key that fits the plan ([`Engine::find_upload`]); else a new upload of `dest`
    /// initiated with `opts`.
    async fn open_upload(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        opts: &PutOptions,
        plan: &ObjectPlan,
        source: &mut impl ObjectSource,
    ) -> Result<Opened> {
        let inner = &self.inner;
        let (bucket, key) = (dest.bucket.as_str(), dest.key.as_str());
        let rid = row.id;
        if let Some(id) = row.upload_id.clone() {
            let upload = Upload::new(bucket, key, id.clone());
            let recorded = self.db(move |l| l.parts(rid)).await?;
            match self.listed_parts(&upload).await {
                Ok(listed) => return Ok(Opened::Upload(upload, held(recorded, listed))),
                Err(e) if e.kind() == ErrorKind::UploadNotFound => {
                    if let Some((put, verified)) = self.completed_earlier(dest, plan, &recorded).await? {
                        tracing::info!(upload_id = %id, "an earlier run completed the object before it was stopped");
                        return Ok(Opened::Completed(put, verified));
                    }
                    tracing::info!(upload_id = %id, "the server no longer knows the upload; starting the object again");
                    self.db(move |l| l.set_upload(rid, None)).await?;
                }
                Err(e) => return Err(e),
            }
        }
        let mut seen = HashSet::new();
        if let Some((upload, listed)) = self.find_upload(dest, plan, &mut seen).await? {
            tracing::info!(upload_id = %upload.id, "continuing the unfinished upload found on the server");
            let uid = upload.id.clone();
            self.db(move |l| l.set_upload(rid, Some(uid.as_str()))).await?;
            let listed = if source.trusts_found_parts() { listed } else { BTreeMap::new() };
            return Ok(Opened::Upload(upload, held(Vec::new(), listed)));
        }
        // A job that ran before may have completed the object and lost its record with the ledger: the
        // destination says so when it holds the source's bytes.
        if self.tracker.as_ref().is_some_and(|t| t.resumed()) {
            if let Some(head) = self.head_if_any(dest).await? {
                if source.in_place(&head, plan).await? {
                    tracing::info!(object = %dest, "an earlier run of this job completed the object");
                    let verified = head.crc64.is_some();
                    let put = PutResult { etag: head.etag, crc64: head.crc64, version_id: head.version_id };
                    return Ok(Opened::Completed(put, verified));
                }
            }
        }
        let upload = self
            .retrying("InitiateMultipartUpload", |n| {
                let mut seen = seen.clone();
                async move {
                    // A retry may follow an upload the server initiated but whose answer was lost: take it
                    // rather than leave it behind.
                    if n > 1 {
                        if let Some((upload, _)) = self.find_upload(dest, plan, &mut seen).await? {
                            return Ok(upload);
                        }
                    }
                    let _slot = inner.scheduler.request().await;
                    inner.store.initiate_multipart(bucket, key, opts).await
                }
            })
            .await?;
        let uid = upload.id.clone();
        self.db(move |l| l.set_upload(rid, Some(uid.as_str()))).await?;
        Ok(Opened::Upload(upload, BTreeMap::new()))
    }

    /// An unfinished upload of `dest` that fits `plan` (every part it holds has the plan's size for its number),
    /// with its parts: of those ListMultipartUploads reports for the key and `seen` does not hold yet, the one
    /// holding the most of the plan's bytes (the newest among equals: runs killed within a second initiate
    /// uploads of the same time, and the one a lost ledger forgot may hold far more than the last). Uploads
    /// that do not fit are another writer's, and the others are left too: reported, never touched. At most
    /// [`MAX_UPLOADS_WEIGHED`] are asked for their parts. Every upload looked at is added to `seen`. `None` when the store has no ListMultipartUploads or the credentials may not use it
    /// (then not asked again). Uploads are not filtered by when they were initiated: a ledger lost whole makes
    /// a new job, whose uploads the old job initiated (and moto reports one fixed time for every upload).
    async fn find_upload(
        &self,
        dest: &ObjectRef,
        plan: &ObjectPlan,
        seen: &mut HashSet<UploadId>,
    ) -> Result<Option<(Upload, BTreeMap<u32, PartInfo>)>> {
        use std::sync::atomic::Ordering::Relaxed;
        let inner = &self.inner;
        if !inner.caps.list_uploads || inner.no_list_uploads.load(Relaxed) {
            return Ok(None);
        }
        let mut found = Vec::new();
        let mut req = ListUploadsRequest { prefix: Some(dest.key.clone()), ..Default::default() };
        loop {
            let page = self
                .retrying("ListMultipartUploads", |_| {
                    let req = &req;
                    async move {
                        let _slot = inner.scheduler.request().await;
                        inner.store.list_uploads(&dest.bucket, req).await
                    }
                })
                .await;
            let page = match page {
                Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::AccessDenied) => {
                    tracing::warn!(error = %e, "cannot list multipart uploads here: an upload a lost ledger knew is not looked for");
                    inner.no_list_uploads.store(true, Relaxed);
                    return Ok(None);
                }
                page => page?,
            };
            found.extend(page.uploads.into_iter().filter(|u| u.key == dest.key && !seen.contains(&u.upload_id)));
            if !page.is_truncated || page.next_key_marker.as_deref().is_none_or(|k| k > dest.key.as_str()) {
                break;
            }
            req.key_marker = page.next_key_marker;
            req.upload_id_marker = page.next_upload_id_marker;
        }
        found.sort_by_key(|u| std::cmp::Reverse(u.initiated));
        let left_alone = |upload: &Upload| {
            tracing::warn!(upload_id = %upload.id, object = %dest, "another unfinished upload of the object is left alone (`transfer cleanup` removes it)");
        };
        let held = |parts: &BTreeMap<u32, PartInfo>| parts.values().map(|p| p.size).sum::<u64>();
        let mut chosen: Option<(Upload, BTreeMap<u32, PartInfo>)> = None;
        for (i, info) in found.into_iter().enumerate() {
            seen.insert(info.upload_id.clone());
            let upload = Upload::new(&dest.bucket, &dest.key, info.upload_id);
            if i >= MAX_UPLOADS_WEIGHED {
                left_alone(&upload);
                continue;
            }
            let parts = match self.listed_parts(&upload).await {
                Err(e) if e.kind() == ErrorKind::UploadNotFound => continue,
                Err(e) if e.kind() == ErrorKind::AccessDenied => return Ok(None),
                parts => parts?,
            };
            let fits = parts.values().all(|p| plan.part(p.part_number.get()).is_some_and(|want| want.len == p.size));
            if !fits {
                tracing::warn!(upload_id = %upload.id, object = %dest, "an unfinished upload of the object does not fit this job's plan: left alone (`transfer cleanup` removes it)");
                continue;
            }
            match &chosen {
                Some((_, best)) if held(best) >= held(&parts) => left_alone(&upload),
                _ => {
                    if let Some((other, _)) = chosen.replace((upload, parts)) {
                        left_alone(&other);
                    }
                }
            }
        }
        Ok(chosen)
    }

    /// The destination's HEAD, retried; `None` when there is no such object.
    async fn head_if_any(&self, dest: &ObjectRef) -> Result<Option<ObjectInfo>> {
        let inner = &self.inner;
        let head = self
            .retrying("HeadObject", |_| async {
                let _slot = inner.scheduler.request().await;
                inner.store.head_object(dest).await
            })
            .await;
        match head {
            // Write-only credentials may not look: as good as not there (the object is sent).
            Err(e) if matches!(e.kind(), ErrorKind::ObjectNotFound | ErrorKind::AccessDenied) => Ok(None),
            head => head.map(Some),
        }
    }

    /// When the ledger's upload is gone: whether an earlier run completed it (and was stopped before recording
    /// that), judged by the destination's HEAD against the recorded parts (all of them, the size, and the
    /// CRC-64 combined or the multipart ETag, see [`same_object`]). `Some` with the result and whether its
    /// CRC-64 was checked; `None` when the destination is not that object or cannot be told to be.
    async fn completed_earlier(
        &self,
        dest: &ObjectRef,
        plan: &ObjectPlan,
        recorded: &[PartRow],
    ) -> Result<Option<(PutResult, bool)>> {
        if !recorded.iter().map(|p| p.number).eq(1..=plan.part_count()) {
            return Ok(None);
        }
        let Some(head) = self.head_if_any(dest).await? else { return Ok(None) };
        let parts: Vec<CompletedPart> = recorded.iter().map(completed_part).collect();
        let crc = combined_crc(recorded);
        Ok(match same_object(&head, &parts, plan.size, crc) {
            Some(true) => {
                let verified = crc.is_some() && head.crc64.is_some();
                Some((PutResult { etag: head.etag, crc64: head.crc64, version_id: head.version_id }, verified))
            }
            _ => None,
        })
    }

    /// Completes `upload` (`count` parts, `size` bytes) from the parts the ledger holds for `row` (after the part
    /// writer was flushed): they must be exactly `1..=count`. Returns the result and the CRC-64 combined from the parts'
    /// CRCs (`None` if any part lacks one), checked against the server's. When the source tells the CRC-64 the
    /// object must have (`expected`, a copy's) and the parts tell theirs, they are checked first: parts that do
    /// not make up the source are never published; the upload is aborted and forgotten, so the next run sends
    /// the object again.
    pub(super) async fn complete_recorded(
        &self,
        row: &ObjectRow,
        upload: &Upload,
        (count, size): (u32, u64),
        expected: Option<u64>,
    ) -> Result<(PutResult, Option<u64>)> {
        let rid = row.id;
        let parts = self.db(move |l| l.parts(rid)).await?;
        let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        if numbers != (1..=count).collect::<Vec<_>>() {
            return Err(Error::new(ErrorKind::Protocol, format!("the ledger holds parts {numbers:?} of {count}")));
        }
        let combined = combined_crc(&parts);
        if let (Some(want), Some(got)) = (expected, combined) {
            if want != got {
                self.abort_quietly(upload).await;
                self.db(move |l| l.set_upload(rid, None)).await?;
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!("the parts on the server have the CRC-64 {got}, not the source's {want}: nothing was published, the upload was aborted; run the job again to send the object again"),
                )
                .with_retry(Retry::Permanent));
            }
        }
        let completed: Vec<CompletedPart> = parts.iter().map(completed_part).collect();
        let r = self.complete(upload, &completed, size, combined).await?;
        if let Some(expected) = combined {
            check_crc(expected, r.crc64, "CompleteMultipartUpload").map_err(|e| e.with_retry(Retry::Permanent))?;
        }
        Ok((r, combined))
    }

    /// AbortMultipartUpload, once; an upload already gone is fine, another failure is only reported.
    pub(super) async fn abort_quietly(&self, upload: &Upload) {
        match self.inner.store.abort_multipart(upload).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UploadNotFound => {}
            Err(e) => {
                tracing::warn!(upload_id = %upload.id, error = %e, "could not abort the upload; `transfer cleanup` can")
            }
        }
    }

    /// CompleteMultipartUpload, retried. A retry answered `NoSuchUpload` may mean an earlier attempt succeeded
    /// (the server finishes even if the client went away): the object is then checked by HEAD (size, and the
    /// CRC-64 or, without one, the multipart ETag; see [`completed_from`]).
    /// Under [`Overwrite::IfMissing`](super::Overwrite::IfMissing) it carries `x-oss-forbid-overwrite`; a
    /// retry answered `FileAlreadyExists` is checked the same way.
    pub(super) async fn complete(
        &self,
        upload: &Upload,
        parts: &[CompletedPart],
        size: u64,
        crc: Option<u64>,
    ) -> Result<PutResult> {
        let inner = &self.inner;
        let opts = CompleteOptions { forbid_overwrite: self.forbid_overwrite() };
        let dest = &ObjectRef::new(&upload.bucket, &upload.key);
        self.retrying("CompleteMultipartUpload", |n| {
            let opts = &opts;
            async move {
                let _slot = inner.scheduler.request().await;
                match inner.store.complete_multipart(upload, parts, opts).await {
                    Err(e) if self.refused_overwrite(&e) => self.earlier_attempt(e, n, dest, size, crc).await,
                    Err(e) if n > 1 && e.kind() == ErrorKind::UploadNotFound => {
                        let head = inner.store.head_object(dest).await?;
                        // This attempt's own upload is gone: where neither the CRC-64 nor the ETag can tell,
                        // the size alone.
                        if same_object(&head, parts, size, crc).unwrap_or(head.size == size) {
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
        .map_err(|e| e.with_context("upload id", &upload.id))
    }

    /// One request that writes a whole object (PutObject, CopyObject), retried: each attempt under a request
    /// permit, none started once the job stops. A refusal to overwrite on a retry may be the answer to an
    /// earlier attempt that wrote the object and whose answer was lost: it is taken as the write when the
    /// destination has `size` bytes and the CRC-64 `crc` gives (asked only then).
    pub(super) async fn write_object<F, Fut>(
        &self,
        what: &str,
        dest: &ObjectRef,
        size: u64,
        crc: impl Fn() -> Option<u64>,
        mut attempt: F,
    ) -> Result<PutResult>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<PutResult>>,
    {
        let crc = &crc;
        self.retrying(what, |n| {
            let request = attempt();
            async move {
                let _slot = self.inner.scheduler.request().await;
                self.check_stopped()?;
                match request.await {
                    Err(e) => self.earlier_attempt(e, n, dest, size, crc()).await,
                    ok => ok,
                }
            }
        })
        .await
    }

    /// One part request, retried: each attempt under a request permit. A part queued behind the bound is not in
    /// flight: once the job stops, or another part of the object failed (`halt`), it fails instead of sending.
    pub(super) async fn write_part<F, Fut>(&self, what: &str, halt: &Halt, mut attempt: F) -> Result<PartReceipt>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<PartReceipt>>,
    {
        self.retrying(what, |_| {
            let request = attempt();
            async move {
                let _slot: RequestPermit = self.inner.scheduler.request().await;
                halt.check()?;
                self.check_stopped()?;
                request.await
            }
        })
        .await
    }
}

/// The server's CRC-64 must be the one of the bytes sent (or of the copy source).
pub(super) fn check_crc(expected: u64, got: Option<u64>, what: &str) -> Result<()> {
    match got {
        Some(g) if g != expected => Err(Error::new(
            ErrorKind::Integrity,
            format!("{what}: the server's CRC-64 {g} does not match the {expected} of the bytes sent"),
        )),
        _ => Ok(()),
    }
}

/// The parts the server holds, by number: what the ledger recorded (when the server lists it with the recorded
/// ETag) and what only the server lists.
pub(super) fn held(recorded: Vec<PartRow>, listed: BTreeMap<u32, PartInfo>) -> BTreeMap<u32, Held> {
    let mut recorded: HashMap<u32, PartRow> = recorded.into_iter().map(|p| (p.number, p)).collect();
    listed
        .into_iter()
        .map(|(n, info)| match recorded.remove(&n) {
            // A server that lists parts without their ETags (s3s-fs) still tells the part is there and its size:
            // the ledger's receipt stands for it (Complete names the recorded ETag).
            Some(p) if p.etag.eq_ignore_ascii_case(&info.etag) || (info.etag.is_empty() && info.size == p.size) => {
                (n, Held::Recorded(p))
            }
            _ => (n, Held::Listed(info)),
        })
        .collect()
}

fn completed_part(p: &PartRow) -> CompletedPart {
    CompletedPart { part_number: PartNumber::new(p.number), etag: p.etag.clone(), checksum: p.checksum }
}

/// The CRC-64 of the parts a server lists for `plan`, combined in order; `None` if any lacks one.
pub(super) fn combined_listed(listed: &BTreeMap<u32, PartInfo>, plan: &ObjectPlan) -> Option<u64> {
    plan.parts().try_fold(0u64, |acc, p| listed.get(&p.number)?.crc64.map(|c| crc64::combine(acc, c, p.len)))
}

/// The CRC-64 of the parts' bytes in order, combined from theirs; `None` if any part lacks one.
fn combined_crc(parts: &[PartRow]) -> Option<u64> {
    parts.iter().try_fold(0u64, |acc, p| p.crc64.map(|c| crc64::combine(acc, c, p.size)))
}

/// Whether `head` is the object completing `parts` gives: `size` bytes, and the CRC-64 `crc` where both sides
/// have one, else the multipart ETag where it follows a known rule ([`completed_from`]). `None` when neither
/// can tell (S3 has no CRC-64; ETags of servers that follow no rule).
pub(super) fn same_object(head: &ObjectInfo, parts: &[CompletedPart], size: u64, crc: Option<u64>) -> Option<bool> {
    if head.size != size {
        return Some(false);
    }
    match (crc, head.crc64) {
        (Some(a), Some(b)) => Some(a == b),
        _ => completed_from(parts, &head.etag),
    }
}

/// Whether `etag`, a multipart object's ETag (`<32 hex>-<part count>`), is the one completing `parts` gives:
/// S3's rule (the MD5 of the parts' binary MD5s) or OSS's (the MD5 of their upper-case hex ETags). `None` when
/// neither rule can say: an ETag of another form, or part ETags that are not MD5s (S3 with SSE-KMS).
pub(super) fn completed_from(parts: &[CompletedPart], etag: &str) -> Option<bool> {
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
