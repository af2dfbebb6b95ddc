//! The one part pipeline: every object of every job goes through [`Engine::transfer`], whatever its bytes come
//! from.
//!
//! A source ([`ObjectSource`]) says how its object's bytes reach the destination: a local file read with
//! positional reads ([`super::upload`]), a server-side copy within one store ([`super::copy`]), ranged GETs from
//! another store ([`super::relay`]). The driver does the rest, the same way for all of them:
//! - the overwrite policy, once, before anything is written for the object;
//! - one request below the multipart threshold, or a multipart upload: opened (or reconciled with ListParts on
//!   resume), its parts taken in order under the memory budget, each sent by its own task under the job's one
//!   bound on requests in flight, every acknowledged part recorded in the ledger, the parts in flight finishing
//!   and being recorded even after a failure or a stop, then completed from what the ledger holds;
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
    CompleteOptions, CompletedPart, ObjectInfo, ObjectRef, PartNumber, PartReceipt, PutOptions, PutResult, Upload,
};
use crate::tags::TagSet;
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
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
        }
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
        }
    }
}

/// A part on its way: sends it (retried under the engine's policy, each attempt under a request permit) and
/// answers the server's receipt and the digest the ledger keeps for the part (empty when the bytes were never
/// seen).
pub(super) type Sending = BoxFuture<'static, Result<(PartReceipt, String)>>;

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
    /// does what must happen in order (reading and hashing a file), and answers `None` when `recorded`, the
    /// ledger's part as the server still holds it, can be reused, else the part's [`Sending`]. `halt` is set
    /// once another part failed: a part waiting for its request permit must not send then.
    async fn part(
        &mut self,
        part: Part,
        recorded: Option<&PartRow>,
        to: &Arc<Upload>,
        halt: &Halt,
    ) -> Result<Option<Sending>>;

    /// After the last part and before Complete: what the whole source must satisfy (a file's digest).
    fn check(&mut self) -> Result<()> {
        Ok(())
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
            Ok(Outcome {
                size: plan.size,
                crc64: put.crc64.filter(|_| verified || source.expected_crc64().is_some()),
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
        let (upload, done) = match self.open_upload(row, dest, opts).await {
            Err(e) if self.refused_overwrite(&e) => return Ok(Written::Refused(None)),
            opened => opened?,
        };
        let to = Arc::new(upload.clone());
        let writer = self.inner.ledger.part_writer();
        let (mut sent, mut reused) = (0u32, 0u32);
        // Parts are taken in order ahead of sending by at most one per request slot (and the memory budget).
        let mut tasks = PartTasks::new(2 * self.inner.config.plan.max_in_flight);
        let taking = async {
            for part in plan.parts() {
                self.check_stopped()?;
                if !tasks.ready().await {
                    break;
                }
                let memory = match source.buffers() {
                    true => Some(self.inner.scheduler.memory(part.len).await),
                    false => None,
                };
                let Some(sending) = source.part(part, done.get(&part.number), &to, &tasks.halt()).await? else {
                    reused += 1;
                    self.reused(part.len);
                    continue;
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
        let sending = tasks.finish().await.and(taking);
        let flushed = writer.flush().await;
        sending?;
        flushed?;
        source.check()?;
        match self.complete_recorded(row, &upload, plan).await {
            Err(e) if self.refused_overwrite(&e) => Ok(Written::Refused(Some(upload))),
            Err(e) => Err(e),
            Ok((put, combined)) => Ok(Written::Put { put, verified: combined.is_some(), sent, reused }),
        }
    }

    /// Records `e` on the object's ledger row; a stop is not a failure (the object stays resumable as it was).
    async fn record_failure(&self, row: &ObjectRow, e: &Error) {
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
            let upload = Upload::new(&row.dest_bucket, &row.dest_key, id.clone());
            match self.inner.store.abort_multipart(&upload).await {
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
    async fn finish(
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

    /// Every part of an existing upload, by number, with its ETag (all pages of ListParts).
    async fn listed_parts(&self, upload: &Upload) -> Result<HashMap<u32, String>> {
        let inner = &self.inner;
        let mut out = HashMap::new();
        let mut marker = None;
        loop {
            let page = self
                .retrying("ListParts", |_| async {
                    let _slot = inner.scheduler.request().await;
                    inner.store.list_parts(upload, marker, None).await
                })
                .await?;
            out.extend(page.parts.into_iter().map(|p| (p.part_number.get(), p.etag)));
            if !page.is_truncated || page.next_marker.is_none() {
                return Ok(out);
            }
            marker = page.next_marker;
        }
    }

    /// The upload to continue with and the parts it already holds (reconciled with the server: only parts
    /// ListParts still reports with the recorded ETag), or a new upload of `dest` initiated with `opts` when
    /// there is none or the server no longer knows it.
    async fn open_upload(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        opts: &PutOptions,
    ) -> Result<(Upload, BTreeMap<u32, PartRow>)> {
        let inner = &self.inner;
        let (bucket, key) = (dest.bucket.as_str(), dest.key.as_str());
        if let Some(id) = row.upload_id.clone() {
            let rid = row.id;
            let upload = Upload::new(bucket, key, id.clone());
            let mut recorded: BTreeMap<u32, PartRow> =
                self.db(move |l| l.parts(rid)).await?.into_iter().map(|p| (p.number, p)).collect();
            match self.listed_parts(&upload).await {
                Ok(listed) => {
                    recorded.retain(|n, p| listed.get(n).is_some_and(|e| e.eq_ignore_ascii_case(&p.etag)));
                    return Ok((upload, recorded));
                }
                Err(e) if e.kind() == ErrorKind::UploadNotFound => {
                    tracing::info!(upload_id = %id, "the server no longer knows the upload; starting the object again");
                    self.db(move |l| l.set_upload(rid, None)).await?;
                }
                Err(e) => return Err(e),
            }
        }
        let upload = self
            .retrying("InitiateMultipartUpload", |_| async {
                let _slot = inner.scheduler.request().await;
                inner.store.initiate_multipart(bucket, key, opts).await
            })
            .await?;
        let (rid, uid) = (row.id, upload.id.clone());
        self.db(move |l| l.set_upload(rid, Some(uid.as_str()))).await?;
        Ok((upload, BTreeMap::new()))
    }

    /// Completes `upload` from the parts the ledger holds for `row` (after the part writer was flushed): they
    /// must be exactly `1..=plan.part_count()`. Returns the result and the CRC-64 combined from the parts'
    /// CRCs (`None` if any part lacks one), checked against the server's.
    async fn complete_recorded(
        &self,
        row: &ObjectRow,
        upload: &Upload,
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
            .map(|p| CompletedPart {
                part_number: PartNumber::new(p.number),
                etag: p.etag.clone(),
                checksum: p.checksum,
            })
            .collect();
        let r = self.complete(upload, &completed, plan.size, combined).await?;
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
    async fn complete(
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
