//! Multipart uploads of the local store: initiate, upload part (from a body or a copy source), complete, abort,
//! ListParts and ListMultipartUploads.
//!
//! Parts are staged as files under `.staging/<upload id>/` and recorded in the index; re-uploading a number
//! replaces the part. Complete checks the list against the recorded parts and hard-links their staged files as
//! the pieces of a new data entry under the index lock (no byte is copied), then re-checks the parts and
//! publishes the object and drops the upload in one transaction.

use super::blobs::{self, Staged};
use super::index::{self, Facts, PartRow, UploadRow};
use super::objects::{check_conditions, etag_eq, md5_upper, resolve, resolve_range};
use super::{errors, ids, now, Leftovers, LocalStore};
use crate::error::Result;
use crate::store::{
    validate_key, Body, ByteRange, Capabilities, CompleteOptions, CompletedPart, CopyConditions, ListUploadsRequest,
    ObjectRef, ObjectType, PartInfo, PartNumber, PartReceipt, PartsPage, PutOptions, PutResult, UploadId, UploadsPage,
};
use std::collections::HashMap;

/// OSS's error number for `FileAlreadyExists` on CompleteMultipartUpload.
const EC_COMPLETE_EXISTS: &str = "0042-00000214";

/// Default and largest page of ListParts and ListMultipartUploads.
const MAX_PAGE: u32 = 1000;

fn check_part_size(len: u64) -> Result<()> {
    let limit = Capabilities::OSS.max_part_size;
    if len > limit {
        return Err(errors::entity_too_large(len, limit));
    }
    Ok(())
}

/// The ETag of a completed upload: upper-hex MD5 of the concatenated upper-hex part ETags, then `-<count>`.
pub(super) fn multipart_etag(parts: &[PartRow]) -> String {
    let joined: String = parts.iter().map(|p| p.etag.to_ascii_uppercase()).collect();
    format!("{}-{}", md5_upper(joined.as_bytes()), parts.len())
}

/// Blocking: checks a Complete list against the recorded parts of `upload_id` and returns the listed rows in
/// order. `InvalidPart` for a missing part or an ETag mismatch, `EntityTooSmall` for a part but the last under
/// the minimum part size.
fn match_parts(c: &rusqlite::Connection, upload_id: &str, listed: &[CompletedPart]) -> Result<Vec<PartRow>> {
    let recorded: HashMap<u32, PartRow> =
        index::parts(c, upload_id, 0, u32::MAX)?.into_iter().map(|p| (p.part_number, p)).collect();
    let rows = listed
        .iter()
        .map(|l| match recorded.get(&l.part_number.get()) {
            Some(p) if etag_eq(&p.etag, &l.etag) => Ok(p.clone()),
            _ => Err(errors::invalid_part(l.part_number.get())),
        })
        .collect::<Result<Vec<_>>>()?;
    let min = Capabilities::OSS.min_part_size;
    if let Some(small) = rows[..rows.len() - 1].iter().find(|p| p.size < min) {
        return Err(errors::entity_too_small(small.part_number, small.size));
    }
    Ok(rows)
}

impl LocalStore {
    pub(super) async fn initiate_impl(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        validate_key(key)?;
        opts.metadata.validate()?;
        let row = UploadRow {
            upload_id: ids::upload_id(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            initiated: now(),
            metadata: index::with_defaults(&opts.metadata),
            tags: opts.tags.clone(),
        };
        let id = row.upload_id.clone();
        self.db(move |c, _| {
            index::bucket_versioning(c, &row.bucket)?;
            index::insert_upload(c, &row)
        })
        .await?;
        Ok(id)
    }

    /// Fails unless `upload_id` is an upload of `bucket/key`.
    async fn check_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadRow> {
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.db(move |c, _| index::upload(c, &b, &k, &u)).await
    }

    /// Moves a staged part into the upload's directory and records it, replacing a part with the same number.
    async fn commit_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        n: u32,
        staged: Staged,
    ) -> Result<PartReceipt> {
        let w = staged.written;
        let file = self.blobs().publish_part(staged, upload_id).await?;
        let row = PartRow { part_number: n, etag: w.etag(), size: w.size, crc64: w.crc, last_modified: now(), file };
        let (b, k, u, r) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned(), row.clone());
        let res = self
            .db(move |c, _| {
                let tx = c.transaction()?;
                index::upload(&tx, &b, &k, &u)?;
                let old = index::put_part(&tx, &u, &r)?;
                tx.commit()?;
                Ok(old)
            })
            .await;
        match res {
            Ok(old) => {
                self.blobs().remove_parts(upload_id, old.as_slice());
                Ok(PartReceipt {
                    part_number: PartNumber::new(n),
                    etag: row.etag,
                    crc64: Some(row.crc64),
                    size: row.size,
                    checksum: None,
                })
            }
            Err(e) => {
                self.blobs().remove_parts(upload_id, &[row.file]);
                Err(e)
            }
        }
    }

    pub(super) async fn upload_part_impl(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        n: u32,
        body: Body,
    ) -> Result<PartReceipt> {
        validate_key(key)?;
        crate::store::validate_part_number(n)?;
        let body = super::objects::within_limit(body, 0, Capabilities::OSS.max_part_size)?;
        self.check_upload(bucket, key, upload_id).await?;
        let staged = self.blobs().receive(body).await?;
        self.commit_part(bucket, key, upload_id, n, staged).await
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload_part_copy_impl(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        n: u32,
        source: &ObjectRef,
        range: Option<ByteRange>,
        conditions: &CopyConditions,
    ) -> Result<PartReceipt> {
        validate_key(key)?;
        validate_key(&source.key)?;
        crate::store::validate_part_number(n)?;
        self.check_upload(bucket, key, upload_id).await?;
        let src = source.clone();
        let mut r = self.db(move |c, b| resolve(c, b, &src, true, true)).await?;
        r.readable()?;
        check_conditions(&r.content.etag, conditions)?;
        let piece = match (resolve_range(range, r.content.size)?, r.file.take()) {
            (Some((first, last)), Some(content)) => {
                check_part_size(last - first + 1)?;
                content.pieces(first, last - first + 1)
            }
            _ => Vec::new(),
        };
        let staged = self.blocking(move |b| b.assemble(piece, true)).await?;
        self.commit_part(bucket, key, upload_id, n, staged).await
    }

    pub(super) async fn complete_impl(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        opts: &CompleteOptions,
    ) -> Result<PutResult> {
        validate_key(key)?;
        if parts.is_empty() {
            return Err(errors::malformed_xml("the part list is empty"));
        }
        if parts.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
            return Err(errors::invalid_part_order());
        }
        let forbid = opts.forbid_overwrite.then_some(EC_COMPLETE_EXISTS);
        let (b, k, u, listed) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned(), parts.to_vec());
        // The listed parts are hard-linked as the object's pieces under the index lock, so they are the very
        // files the rows name; no byte is copied, and the upload keeps its parts should the publish fail.
        let (upload, rows, data) = self
            .db(move |c, blobs| {
                let upload = index::upload(c, &b, &k, &u)?;
                if let Some(ec) = forbid {
                    index::ensure_absent(c, &b, &k, index::bucket_versioning(c, &b)?, ec)?;
                }
                let rows = match_parts(c, &u, &listed)?;
                let files: Vec<(String, u64)> = rows.iter().map(|p| (p.file.clone(), p.size)).collect();
                let data = blobs.link_parts(&u, &files)?;
                Ok((upload, rows, data))
            })
            .await?;
        let facts = Facts {
            delete_marker: false,
            object_type: ObjectType::Multipart,
            size: rows.iter().map(|p| p.size).sum(),
            etag: multipart_etag(&rows),
            crc64: Some(blobs::fold_crc(rows.iter().map(|p| (p.crc64, p.size)))),
            last_modified: now(),
            metadata: upload.metadata,
            tags: upload.tags.unwrap_or_default(),
            symlink_target: None,
            data: Some(data),
        };
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let guard = move |c: &rusqlite::Connection| {
            // The upload must still be there with the very part files that were linked.
            index::upload(c, &b, &k, &u)?;
            let now_rows = index::parts(c, &u, 0, u32::MAX)?;
            for r in &rows {
                if !now_rows.iter().any(|n| n.part_number == r.part_number && n.file == r.file) {
                    return Err(errors::invalid_part(r.part_number));
                }
            }
            index::delete_upload(c, &u)?;
            Ok(Leftovers { data: Vec::new(), upload: Some(u) })
        };
        self.publish(bucket, key, facts, None, forbid, guard).await
    }

    pub(super) async fn abort_impl(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        validate_key(key)?;
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.db(move |c, _| {
            let tx = c.transaction()?;
            index::upload(&tx, &b, &k, &u)?;
            index::delete_upload(&tx, &u)?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.blobs().remove_upload(upload_id);
        Ok(())
    }

    pub(super) async fn list_parts_impl(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: Option<u32>,
        max_parts: Option<u32>,
    ) -> Result<PartsPage> {
        validate_key(key)?;
        let max = max_parts.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let mut rows = self
            .db(move |c, _| {
                index::upload(c, &b, &k, &u)?;
                index::parts(c, &u, marker.unwrap_or(0), max + 1)
            })
            .await?;
        let is_truncated = rows.len() > max as usize;
        rows.truncate(max as usize);
        let parts: Vec<PartInfo> = rows
            .into_iter()
            .map(|p| PartInfo {
                part_number: PartNumber::new(p.part_number),
                etag: p.etag,
                size: p.size,
                crc64: Some(p.crc64),
                checksum: None,
                last_modified: p.last_modified,
            })
            .collect();
        let next_marker = parts.last().map(|p| p.part_number);
        Ok(PartsPage { parts, next_marker, is_truncated })
    }

    pub(super) async fn list_uploads_impl(&self, bucket: &str, req: &ListUploadsRequest) -> Result<UploadsPage> {
        let max = req.max_uploads.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let (b, req) = (bucket.to_owned(), req.clone());
        let mut uploads = self
            .db(move |c, _| {
                index::bucket_versioning(c, &b)?;
                let prefix = req.prefix.as_deref().unwrap_or("");
                index::list_uploads(
                    c,
                    &b,
                    prefix,
                    req.key_marker.as_deref(),
                    req.upload_id_marker.as_ref().map(UploadId::as_str),
                    max + 1,
                )
            })
            .await?;
        let is_truncated = uploads.len() > max as usize;
        uploads.truncate(max as usize);
        let (next_key_marker, next_upload_id_marker) = match uploads.last() {
            Some(l) if is_truncated => (Some(l.key.clone()), Some(l.upload_id.clone())),
            _ => (None, None),
        };
        Ok(UploadsPage { uploads, next_key_marker, next_upload_id_marker, is_truncated })
    }
}
