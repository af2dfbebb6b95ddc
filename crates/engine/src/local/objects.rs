//! Object operations of the local store: put, head, get (ranges), meta, list, delete, copy and tagging, plus the
//! read-side resolution every operation shares (versions, delete markers, symlinks) and the copy preconditions.

use super::blobs::{self, Content};
use super::index::{self, Facts, VersionRow};
use super::{errors, now, Leftovers, LocalStore};
use crate::error::{Error, Result};
use crate::meta::{Metadata, StorageClass};
use crate::store::{
    validate_key, Body, ByteRange, Capabilities, CopyConditions, CopyOptions, DeleteResult, Directive, GetObject,
    ListEntry, ListPage, ListRequest, ObjectInfo, ObjectMetaSummary, ObjectRef, ObjectType, PartNumber, PutOptions,
    PutResult, RestoreAnswer, RestoreRequest, RestoreState, VersionEntry, Versioning, VersionsPage, VersionsRequest,
};
use crate::tags::TagSet;
use futures::stream::{self, StreamExt};
use rusqlite::Connection;

/// OSS's error number for `FileAlreadyExists` on PutObject and CopyObject.
pub(super) const EC_PUT_EXISTS: &str = "0026-00000002";

/// A version resolved for reading.
#[derive(Debug)]
pub(super) struct Resolved {
    /// The version the request named (the link itself, for a symlink).
    pub row: VersionRow,
    /// The bucket's versioning state.
    pub versioning: Versioning,
    /// Facts of the bytes served: the target's for a followed symlink, else `row`'s.
    pub content: Facts,
    /// The content's bytes, opened under the index lock, when asked for.
    pub file: Option<Content>,
    /// Where a restore of the named version stands (archived objects).
    pub restore: Option<RestoreState>,
}

impl Resolved {
    /// The HeadObject facts: size, ETag, CRC-64 and metadata of the content; type, version and tag count of the
    /// named version.
    pub(super) fn info(&self) -> ObjectInfo {
        let c = &self.content;
        ObjectInfo {
            size: c.size,
            etag: c.etag.clone(),
            last_modified: c.last_modified,
            crc64: c.crc64,
            object_type: self.row.facts.object_type,
            version_id: index::reported_version(self.versioning, &self.row.version_id),
            tagging_count: self.row.facts.tags.len(),
            next_append_position: (self.row.facts.object_type == ObjectType::Appendable).then_some(c.size),
            metadata: c.metadata.clone(),
            restore: self.restore.clone(),
            encryption: None,
            checksum: None,
            parts_count: None,
        }
    }

    /// Fails with `InvalidObjectState` when the content is archived and not restored: its bytes cannot be read
    /// (GetObject, CopyObject, UploadPartCopy), as on OSS.
    pub(super) fn readable(&self) -> Result<()> {
        match self.info().needs_restore() {
            true => Err(errors::invalid_object_state(&self.row.key)),
            false => Ok(()),
        }
    }
}

/// Blocking: resolves `obj` (see [`index::resolve`] for the errors), following a symlink to its target's
/// current version when `follow` (a missing target, or a target that is itself a link, is
/// `SymlinkTargetNotExist`), and opening the content's bytes when `open`.
pub(super) fn resolve(
    c: &Connection,
    blobs: &blobs::Blobs,
    obj: &ObjectRef,
    follow: bool,
    open: bool,
) -> Result<Resolved> {
    let (row, versioning) = index::resolve(c, obj)?;
    let content = match (&row.facts.symlink_target, follow) {
        (Some(target), true) => match index::latest(c, &obj.bucket, target)? {
            Some(t) if !t.facts.delete_marker && t.facts.symlink_target.is_none() => t.facts,
            _ => return Err(errors::symlink_target_missing(target)),
        },
        _ => row.facts.clone(),
    };
    let file = match (&content.data, open) {
        (Some(name), true) => Some(blobs.open_content(name)?),
        _ => None,
    };
    let now = now();
    let restore =
        index::restore_of(c, &obj.bucket, &row.key, &row.version_id, now)?.map(|(ready, expires)| match ready > now {
            true => RestoreState::Ongoing,
            false => RestoreState::Restored {
                expiry: Some(httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires.max(0) as u64),
                )),
            },
        });
    Ok(Resolved { row, versioning, content, file, restore })
}

fn unquote(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// ETags compare without their quotes and case-insensitively.
pub(super) fn etag_eq(a: &str, b: &str) -> bool {
    unquote(a).eq_ignore_ascii_case(unquote(b))
}

/// `x-oss-copy-source-if-match` / `-if-none-match` against the source's ETag: 412 `PreconditionFailed`.
pub(super) fn check_conditions(etag: &str, cond: &CopyConditions) -> Result<()> {
    if let Some(m) = &cond.if_match {
        if !etag_eq(m, etag) {
            return Err(errors::precondition_failed("x-oss-copy-source-if-match"));
        }
    }
    if let Some(n) = &cond.if_none_match {
        if etag_eq(n, etag) {
            return Err(errors::precondition_failed("x-oss-copy-source-if-none-match"));
        }
    }
    Ok(())
}

/// The inclusive byte range to serve from an object of `size` bytes, with standard semantics: the end is
/// clamped; a start at or past the end is 416 `InvalidRange`. A zero-length object read whole has no range.
pub(super) fn resolve_range(range: Option<ByteRange>, size: u64) -> Result<Option<(u64, u64)>> {
    match range {
        None if size == 0 => Ok(None),
        None => Ok(Some((0, size - 1))),
        Some(r) => {
            if r.first >= size || r.last.is_some_and(|l| l < r.first) {
                return Err(errors::invalid_range(r.first, size));
            }
            Ok(Some((r.first, r.last.unwrap_or(u64::MAX).min(size - 1))))
        }
    }
}

/// Upper-case hex MD5 of `data`.
pub(super) fn md5_upper(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode_upper(Md5::digest(data))
}

/// A body that may take the object (or part) past `limit` bytes when written from `offset` on (an append's
/// position; 0 otherwise): one of known length is refused before a byte of it is read, one of unknown length
/// (a chunked request) fails with the same `EntityTooLarge` once it goes past the limit, so nothing is kept.
pub(super) fn within_limit(mut body: Body, offset: u64, limit: u64) -> Result<Body> {
    if let Some(len) = body.known_len() {
        let total = offset.saturating_add(len);
        if total > limit {
            return Err(errors::entity_too_large(total, limit));
        }
        return Ok(body);
    }
    // The MD5 check stays with the body, for the writer to apply to the MD5 it computes anyway.
    let check = body.take_md5_check();
    let mut seen = offset;
    let mut over = false;
    let stream = body.into_stream().map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len() as u64);
        if over || seen > limit {
            over = true;
            return Err(errors::entity_too_large(seen, limit));
        }
        Ok(chunk)
    });
    let limited = Body::from_stream_of_unknown_length(stream.boxed());
    Ok(match check {
        Some(c) => limited.with_md5_check(c),
        None => limited,
    })
}

/// The facts of a new object with bytes.
pub(super) fn new_facts(
    object_type: ObjectType,
    w: blobs::Written,
    etag: String,
    meta: &Metadata,
    tags: Option<&TagSet>,
) -> Facts {
    Facts {
        delete_marker: false,
        object_type,
        size: w.size,
        etag,
        crc64: Some(w.crc),
        last_modified: now(),
        metadata: index::with_defaults(meta),
        tags: tags.cloned().unwrap_or_default(),
        symlink_target: None,
        data: None,
    }
}

fn no_guard(_: &Connection) -> Result<Leftovers> {
    Ok(Leftovers::default())
}

fn encode_token(key: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_token(token: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| {
        Error::code(400, "InvalidArgument", "The continuation token provided is incorrect.")
            .with_extra("ArgumentName", "continuation-token")
            .with_extra("ArgumentValue", token)
    })
}

/// The common prefix `key` rolls up to: `prefix` plus the rest of `key` up to and including the first
/// `delimiter` after the prefix.
fn rollup(key: &[u8], prefix: &[u8], delimiter: &[u8]) -> Option<Vec<u8>> {
    let rest = key.strip_prefix(prefix)?;
    let at = rest.windows(delimiter.len()).position(|w| w == delimiter)?;
    Some(key[..prefix.len() + at + delimiter.len()].to_vec())
}

/// The smallest bound above every key that starts with `p`: keys are UTF-8, which never contains 0xFF.
fn past(p: &[u8]) -> Vec<u8> {
    let mut v = p.to_vec();
    v.push(0xFF);
    v
}

/// Blocking: one listing page (see [`LocalStore::list_objects`](crate::store::ObjectStore::list_objects)).
fn list_page(c: &Connection, bucket: &str, req: &ListRequest) -> Result<ListPage> {
    index::bucket_versioning(c, bucket)?;
    let max = req.max_keys.unwrap_or(1000).min(1000) as usize;
    if max == 0 {
        return Ok(ListPage::default());
    }
    let prefix = req.prefix.clone().unwrap_or_default().into_bytes();
    let delim = req.delimiter.clone().filter(|d| !d.is_empty()).map(String::into_bytes);
    let token = req.continuation_token.as_deref().map(decode_token).transpose()?;
    let start = [req.start_after.clone().map(String::into_bytes), token].into_iter().flatten().max();
    // Keys are listed from `lower` (inclusive) and `skip` (exclusive) on.
    let (mut lower, mut skip) = (prefix.clone(), None);
    if let Some(s) = start.filter(|s| *s >= prefix) {
        match delim.as_deref().and_then(|d| rollup(&s, &prefix, d)) {
            Some(cp) => lower = past(&cp),
            None => (lower, skip) = (s.clone(), Some(s)),
        }
    }
    let mut page = ListPage::default();
    let mut last: Option<Vec<u8>> = None;
    // With a delimiter, every key under a common prefix is skipped by the next query: fetch few at a time, so a
    // page of prefixes does not read a thousand rows under each.
    let batch = if delim.is_some() { (max + 1).min(64) } else { (max + 1).min(1001) };
    'scan: loop {
        let rows = index::list_current(c, bucket, &lower, batch)?;
        let full = rows.len() == batch;
        for row in rows {
            let key = row.key.as_bytes();
            if skip.as_deref() == Some(key) {
                continue;
            }
            if !key.starts_with(&prefix) {
                break 'scan;
            }
            if page.objects.len() + page.common_prefixes.len() == max {
                page.is_truncated = true;
                break 'scan;
            }
            if let Some(cp) = delim.as_deref().and_then(|d| rollup(key, &prefix, d)) {
                page.common_prefixes.push(String::from_utf8_lossy(&cp).into_owned());
                lower = past(&cp);
                skip = None;
                last = Some(cp);
                continue 'scan;
            }
            let f = &row.facts;
            page.objects.push(ListEntry {
                key: row.key.clone(),
                size: f.size,
                etag: f.etag.clone(),
                last_modified: f.last_modified,
                storage_class: f.metadata.storage_class.unwrap_or(StorageClass::Standard),
                object_type: f.object_type,
            });
            lower = key.to_vec();
            skip = Some(key.to_vec());
            last = Some(key.to_vec());
        }
        if !full {
            break;
        }
    }
    if page.is_truncated {
        page.next_continuation_token = last.map(|k| encode_token(&k));
    }
    Ok(page)
}

impl LocalStore {
    pub(super) async fn put_impl(&self, bucket: &str, key: &str, body: Body, opts: &PutOptions) -> Result<PutResult> {
        validate_key(key)?;
        opts.metadata.validate()?;
        let body = within_limit(body, 0, Capabilities::OSS.max_put_size)?;
        let forbid = opts.forbid_overwrite.then_some(EC_PUT_EXISTS);
        self.precheck(bucket, key, forbid).await?;
        let staged = self.blobs().receive(body).await?;
        let w = staged.written;
        let facts = new_facts(ObjectType::Normal, w, w.etag(), &opts.metadata, opts.tags.as_ref());
        self.publish(bucket, key, facts, Some(staged), forbid, no_guard).await
    }

    /// Resolves `obj` on the index thread.
    pub(super) async fn resolve(&self, obj: &ObjectRef, follow: bool, open: bool) -> Result<Resolved> {
        validate_key(&obj.key)?;
        let obj = obj.clone();
        self.db(move |c, b| resolve(c, b, &obj, follow, open)).await
    }

    pub(super) async fn head_impl(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        Ok(self.resolve(obj, true, false).await?.info())
    }

    /// HeadObject of part `n` of a multipart object (its pieces are its parts); part 1 of any other object is
    /// the whole of it, without a part count, as S3 answers.
    pub(super) async fn head_part_impl(&self, obj: &ObjectRef, n: PartNumber) -> Result<ObjectInfo> {
        let r = self.resolve(obj, true, false).await?;
        let sizes = r.content.data.as_deref().map(blobs::piece_sizes).transpose()?.flatten();
        let mut info = r.info();
        match sizes {
            Some(sizes) if (1..=sizes.len()).contains(&(n.get() as usize)) => {
                (info.size, info.parts_count) = (sizes[n.get() as usize - 1], Some(sizes.len() as u32));
            }
            None if n.get() == 1 => {}
            _ => return Err(Error::code(416, "InvalidPartNumber", "The requested partnumber is not satisfiable")),
        }
        Ok(info)
    }

    pub(super) async fn meta_impl(&self, obj: &ObjectRef) -> Result<ObjectMetaSummary> {
        let r = self.resolve(obj, false, false).await?;
        let f = &r.row.facts;
        Ok(ObjectMetaSummary {
            size: f.size,
            etag: f.etag.clone(),
            last_modified: f.last_modified,
            last_access_time: None,
            version_id: index::reported_version(r.versioning, &r.row.version_id),
            crc64: f.crc64,
        })
    }

    pub(super) async fn get_impl(&self, obj: &ObjectRef, range: Option<ByteRange>) -> Result<GetObject> {
        let mut r = self.resolve(obj, true, true).await?;
        r.readable()?;
        let served = resolve_range(range, r.content.size)?;
        let body = match (served, r.file.take()) {
            (Some((first, last)), Some(content)) => content.stream(first, last - first + 1),
            _ => stream::empty().boxed(),
        };
        Ok(GetObject { info: r.info(), range: served, body })
    }

    /// RestoreObject: an archived version becomes readable `delay` from now, for `req.days` days; while it is
    /// on its way a second request is answered `InProgress` (409 over HTTP); a restored one has its days
    /// extended. An object that is not archived is refused, as OSS refuses it.
    pub(super) async fn restore_impl(
        &self,
        obj: &ObjectRef,
        req: &RestoreRequest,
        delay: std::time::Duration,
    ) -> Result<RestoreAnswer> {
        let r = self.resolve(obj, false, false).await?;
        use StorageClass::{Archive, ColdArchive, DeepColdArchive};
        if !matches!(r.row.facts.metadata.storage_class, Some(Archive | ColdArchive | DeepColdArchive)) {
            return Err(errors::not_archived(&obj.key));
        }
        let (bucket, key, version) = (obj.bucket.clone(), r.row.key.clone(), r.row.version_id.clone());
        let (days, delay) = (i64::from(req.days.max(1)) * 86_400, delay.as_secs() as i64);
        self.db(move |c, _| {
            let now = now();
            let (answer, span) = match index::restore_of(c, &bucket, &key, &version, now)? {
                None => (RestoreAnswer::Started, (now + delay, now + delay + days)),
                Some((ready, _)) if ready > now => return Ok(RestoreAnswer::InProgress),
                Some((ready, _)) => (RestoreAnswer::Restored, (ready, now + days)),
            };
            index::set_restore(c, &bucket, &key, &version, span)?;
            Ok(answer)
        })
        .await
    }

    /// ListObjectVersions: versions and delete markers by key, each key's newest first.
    pub(super) async fn list_versions_impl(&self, bucket: &str, req: &VersionsRequest) -> Result<VersionsPage> {
        let (bucket, req) = (bucket.to_owned(), req.clone());
        self.db(move |c, _| {
            let versioning = index::bucket_versioning(c, &bucket)?;
            let max = req.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
            let prefix = req.prefix.clone().unwrap_or_default();
            let after = match (&req.key_marker, &req.version_id_marker) {
                (None, _) => None,
                (Some(k), None) => Some((k.as_bytes().to_vec(), None)),
                (Some(k), Some(v)) => Some((k.as_bytes().to_vec(), index::version_seq(c, &bucket, k, v)?)),
            };
            let after = after.as_ref().map(|(k, seq)| (k.as_slice(), *seq));
            let rows = index::list_versions(c, &bucket, prefix.as_bytes(), after, max + 1)?;
            let mut versions: Vec<VersionEntry> = rows
                .iter()
                .take_while(|r| r.key.starts_with(&prefix))
                .map(|r| VersionEntry {
                    key: r.key.clone(),
                    version_id: index::reported_version(versioning, &r.version_id)
                        .unwrap_or_else(|| super::ids::NULL_VERSION.to_owned()),
                    is_latest: r.is_latest,
                    delete_marker: r.facts.delete_marker,
                    size: r.facts.size,
                    etag: r.facts.etag.clone(),
                    last_modified: r.facts.last_modified,
                    storage_class: r.facts.metadata.storage_class.unwrap_or(StorageClass::Standard),
                    object_type: r.facts.object_type,
                })
                .collect();
            let is_truncated = versions.len() > max;
            versions.truncate(max);
            let next = versions.last().filter(|_| is_truncated);
            Ok(VersionsPage {
                next_key_marker: next.map(|v| v.key.clone()),
                next_version_id_marker: next.map(|v| v.version_id.clone()),
                versions,
                is_truncated,
            })
        })
        .await
    }

    pub(super) async fn list_impl(&self, bucket: &str, req: &ListRequest) -> Result<ListPage> {
        let (bucket, req) = (bucket.to_owned(), req.clone());
        self.db(move |c, _| list_page(c, &bucket, &req)).await
    }

    pub(super) async fn delete_impl(&self, obj: &ObjectRef) -> Result<DeleteResult> {
        validate_key(&obj.key)?;
        let obj = obj.clone();
        let (result, left) = self
            .db(move |c, _| {
                let tx = c.transaction()?;
                let v = index::bucket_versioning(&tx, &obj.bucket)?;
                let mut left = Leftovers::default();
                let result = match (&obj.version_id, v) {
                    (Some(vid), _) => {
                        let removed = index::remove_version(&tx, &obj.bucket, &obj.key, vid)?;
                        let delete_marker = removed.as_ref().is_some_and(|r| r.facts.delete_marker);
                        left.data.extend(removed.and_then(|r| r.facts.data));
                        DeleteResult { version_id: index::reported_version(v, vid), delete_marker }
                    }
                    (None, Versioning::Off) => {
                        let removed = index::remove_version(&tx, &obj.bucket, &obj.key, super::ids::NULL_VERSION)?;
                        left.data.extend(removed.and_then(|r| r.facts.data));
                        DeleteResult::default()
                    }
                    (None, _) => {
                        let ins = index::insert_version(&tx, &obj.bucket, &obj.key, v, &Facts::delete_marker(now()))?;
                        left.data.extend(ins.replaced_data);
                        DeleteResult { version_id: Some(ins.version_id), delete_marker: true }
                    }
                };
                tx.commit()?;
                Ok((result, left))
            })
            .await?;
        self.clean(left);
        Ok(result)
    }

    pub(super) async fn copy_impl(&self, bucket: &str, key: &str, opts: &CopyOptions) -> Result<PutResult> {
        validate_key(key)?;
        validate_key(&opts.source.key)?;
        if let Directive::Replace(m) = &opts.metadata {
            m.validate()?;
        }
        let forbid = opts.forbid_overwrite.then_some(EC_PUT_EXISTS);
        self.precheck(bucket, key, forbid).await?;
        // A copy of a symlink copies the link, so the source is not followed.
        let mut src = self.resolve(&opts.source, false, true).await?;
        src.readable()?;
        let f = &src.row.facts;
        check_conditions(&f.etag, &opts.conditions)?;
        let metadata = match &opts.metadata {
            Directive::Copy => f.metadata.clone(),
            Directive::Replace(m) => index::with_defaults(m),
        };
        let tags = match &opts.tagging {
            Directive::Copy => f.tags.clone(),
            Directive::Replace(t) => t.clone(),
        };
        let is_link = f.object_type == ObjectType::Symlink;
        let facts = Facts {
            delete_marker: false,
            object_type: if is_link { ObjectType::Symlink } else { ObjectType::Normal },
            size: f.size,
            etag: f.etag.clone(),
            crc64: f.crc64,
            last_modified: now(),
            metadata,
            tags,
            symlink_target: f.symlink_target.clone(),
            data: None,
        };
        let staged = match src.file.take() {
            Some(content) => {
                let pieces = content.pieces(0, facts.size);
                Some(self.blocking(move |b| b.assemble(pieces, false)).await?)
            }
            None => None,
        };
        self.publish(bucket, key, facts, staged, forbid, no_guard).await
    }

    /// Put/DeleteObjectTagging: replaces the tags of the version `obj` names; returns its version id.
    pub(super) async fn set_tagging(&self, obj: &ObjectRef, tags: TagSet) -> Result<Option<String>> {
        validate_key(&obj.key)?;
        let obj = obj.clone();
        self.db(move |c, _| {
            let tx = c.transaction()?;
            let (row, v) = index::resolve(&tx, &obj)?;
            index::set_tags(&tx, row.seq, &tags)?;
            tx.commit()?;
            Ok(index::reported_version(v, &row.version_id))
        })
        .await
    }

    pub(super) async fn get_tagging_impl(&self, obj: &ObjectRef) -> Result<TagSet> {
        Ok(self.resolve(obj, false, false).await?.row.facts.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_and_ranges() {
        assert_eq!(rollup(b"a/b/c", b"a/", b"/"), Some(b"a/b/".to_vec()));
        assert_eq!(rollup(b"a/b", b"a/", b"/"), None);
        assert_eq!(rollup(b"x", b"a/", b"/"), None);
        assert_eq!(rollup(b"p--q--r", b"", b"--"), Some(b"p--".to_vec()));
        assert_eq!(resolve_range(None, 0).unwrap(), None);
        assert_eq!(resolve_range(None, 10).unwrap(), Some((0, 9)));
        assert_eq!(resolve_range(Some(ByteRange::inclusive(5, 100)), 10).unwrap(), Some((5, 9)));
        assert_eq!(resolve_range(Some(ByteRange { first: 3, last: None }), 10).unwrap(), Some((3, 9)));
        let e = resolve_range(Some(ByteRange::at(10, 1)), 10).unwrap_err();
        assert_eq!((e.status(), e.service_code()), (Some(416), Some("InvalidRange")));
        assert!(resolve_range(Some(ByteRange::at(0, 1)), 0).is_err());
        assert!(etag_eq("\"abc\"", "ABC") && !etag_eq("abc", "abd"));
        assert_eq!(decode_token(&encode_token("中/x".as_bytes())).unwrap(), "中/x".as_bytes());
    }
}
