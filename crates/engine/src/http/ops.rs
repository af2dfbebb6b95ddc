//! The store operations, each mapped to its OSS call (reference section 2): which method, sub-resource,
//! query and headers it sends, and how its answer is read and checked.

use super::request::{self, copy_source, Request};
use super::response::{self as resp, is_url_encoded, url_decoded};
use super::{HttpStore, Response};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{
    AppendResult, Body, BucketStore, ByteRange, Capabilities, Checksum, CompleteOptions, CompletedPart, CopyConditions,
    CopyOptions, DeleteResult, Directive, GetObject, ListEntry, ListPage, ListRequest, ListUploadsRequest,
    MultipartStore, ObjectInfo, ObjectMetaSummary, ObjectRef, ObjectStore, ObjectType, OssExtensions, PartCopySource,
    PartInfo, PartNumber, PartReceipt, PartRef, PartsPage, PutOptions, PutResult, RestoreAnswer, RestoreRequest,
    SymlinkInfo, Upload, UploadId, UploadInfo, UploadsPage, VersionEntry, Versioning, VersionsPage, VersionsRequest,
};
use crate::tags::TagSet;
use crate::xml;
use crate::StorageClass;
use async_trait::async_trait;
use http::Method;

/// A request addressing an upload: its bucket, key and `?uploadId=`, named in the error context.
fn upload_request(method: Method, upload: &Upload) -> Request {
    let id = upload.id.as_str();
    Request::new(method).bucket(&upload.bucket).key(&upload.key).query("uploadId", id).context("upload id", id)
}

/// A request addressing one part of an upload (`?partNumber=&uploadId=`, in that order), after checking the
/// part number.
fn part_request(method: Method, part: PartRef<'_>) -> Result<Request> {
    crate::store::validate_part_number(part.number.get())?;
    let (u, n) = (part.upload, part.number);
    Ok(Request::new(method)
        .bucket(&u.bucket)
        .key(&u.key)
        .query("partNumber", n)
        .query("uploadId", u.id.as_str())
        .context("upload id", u.id.as_str())
        .context("part", n))
}

/// Most objects one DeleteMultipleObjects takes.
const MAX_DELETE: usize = 1000;

/// A request addressing `obj`'s bucket and key (the version id is added by the caller, after the
/// sub-resource).
fn object(method: Method, obj: &ObjectRef) -> Request {
    Request::new(method).bucket(&obj.bucket).key(&obj.key)
}

/// Adds `versionId` (query and context) when `obj` names a version.
fn version(req: Request, obj: &ObjectRef) -> Request {
    match &obj.version_id {
        Some(v) => req.query("versionId", v).context("version id", v),
        None => req,
    }
}

/// A HEAD that asks for the object's checksum where the dialect can.
fn head(d: &crate::dialect::Dialect, req: Request) -> Request {
    match d.checksum_mode {
        Some(name) => req.header(name, "ENABLED"),
        None => req,
    }
}

/// Adds the `x-oss-copy-source-if-*` conditions.
fn conditions(req: Request, d: &crate::dialect::Dialect, c: &CopyConditions) -> Request {
    req.header_opt(&d.h("copy-source-if-match"), c.if_match.as_deref())
        .header_opt(&d.h("copy-source-if-none-match"), c.if_none_match.as_deref())
}

fn protocol(message: String) -> Error {
    Error::new(ErrorKind::Protocol, message)
}

/// The error of an operation the dialect does not have: said, never worked around.
fn unsupported(d: &crate::dialect::Dialect, operation: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("{operation} does not exist in the {} dialect (see Capabilities)", d.name),
    )
    .with_context("operation", operation)
}

/// Adds `encoding-type=url` where the dialect accepts it on multipart calls.
fn multipart_encoding(req: Request, d: &crate::dialect::Dialect) -> Request {
    match d.multipart_url_encoding {
        true => req.query("encoding-type", "url"),
        false => req,
    }
}

impl HttpStore {
    fn put_result(&self, r: &Response) -> Result<PutResult> {
        let f = resp::write_facts(&self.dialect, r.headers())?;
        Ok(PutResult { etag: f.etag, crc64: f.crc64, version_id: f.version_id })
    }

    /// The result of CopyObject or UploadPartCopy: the XML ETag (or the header one) and the header facts, and
    /// the part's checksum when the server computed one (S3, in an upload with a checksum algorithm).
    async fn copy_result(&self, r: Response) -> Result<(PutResult, Option<Checksum>)> {
        let mut out = self.put_result(&r)?;
        let doc: xml::CopyResultXml = r.xml_or_error(&self.dialect).await?;
        if !doc.etag.is_empty() {
            out.etag = resp::unquote(&doc.etag);
        }
        let checksum = doc
            .checksum_crc32c
            .as_deref()
            .map(Checksum::parse_crc32c)
            .transpose()
            .map_err(|e| protocol(e.to_string()))?;
        Ok((out, checksum))
    }

    /// The checksum this store sends with an in-memory body (CRC-32C when the store checks bodies that way),
    /// and the request carrying it.
    fn body_checksum(&self, req: Request, body: &Body) -> (Request, Option<Checksum>) {
        match body.as_bytes().filter(|_| self.crc32c).map(|b| Checksum::crc32c(b)) {
            Some(c) => (req.header(c.header(), &c.value()), Some(c)),
            None => (req, None),
        }
    }
}

#[async_trait]
impl ObjectStore for HttpStore {
    fn capabilities(&self) -> &Capabilities {
        &self.dialect.capabilities
    }

    fn pacer(&self) -> Option<std::sync::Arc<crate::run::Pacer>> {
        Some(self.pacer.clone())
    }

    async fn put_object(&self, bucket: &str, key: &str, body: Body, opts: &PutOptions) -> Result<PutResult> {
        let d = &self.dialect;
        let req = Request::new(Method::PUT).bucket(bucket).key(key).put_options(d, opts);
        let (req, sent) = self.body_checksum(req, &body);
        let req = req.body(body, opts.content_md5);
        self.call(req, |r| async move {
            r.check_upload_crc(d, "the uploaded object")?;
            r.check_checksum(d, sent, "the uploaded object")?;
            self.put_result(&r)
        })
        .await
    }

    async fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        let d = &self.dialect;
        let req = head(d, version(object(Method::HEAD, obj), obj));
        self.call(req, |r| async move { resp::object_info(d, r.headers(), resp::content_length(r.headers())?) }).await
    }

    async fn head_part(&self, obj: &ObjectRef, part: PartNumber) -> Result<ObjectInfo> {
        let d = &self.dialect;
        if !d.part_head {
            return Err(unsupported(d, "HeadObject of a part"));
        }
        let req = head(d, version(object(Method::HEAD, obj).query("partNumber", part).context("part", part), obj));
        self.call(req, |r| async move { resp::object_info(d, r.headers(), resp::content_length(r.headers())?) }).await
    }

    async fn get_object(&self, obj: &ObjectRef, range: Option<ByteRange>) -> Result<GetObject> {
        let d = &self.dialect;
        let mut req = version(object(Method::GET, obj), obj);
        if let Some(rg) = &range {
            req = req.header("range", &rg.to_header()).context("range", rg.to_header());
            if d.range_behavior_header {
                req = req.header(&d.h("range-behavior"), "standard");
            }
        }
        self.call(req, |r| async move {
            let len = resp::content_length(r.headers())?;
            let (size, served, crc) = match range {
                Some(asked) => {
                    if r.status() != 206 {
                        return Err(protocol(format!(
                            "asked for {} but the server answered {} instead of 206 Partial Content",
                            asked.to_header(),
                            r.status()
                        )));
                    }
                    let cr = resp::header(r.headers(), "content-range").unwrap_or("");
                    let (first, last, total) = resp::content_range(cr)
                        .ok_or_else(|| protocol(format!("206 answer with an unusable Content-Range {cr:?}")))?;
                    let fits = first == asked.first && asked.last.is_none_or(|l| last <= l);
                    if !fits || last - first + 1 != len {
                        return Err(protocol(format!(
                            "asked for {} but the server sent {cr:?} with {len} bytes",
                            asked.to_header()
                        )));
                    }
                    (total, Some((first, last)), None)
                }
                None => {
                    if r.status() != 200 {
                        return Err(protocol(format!("a whole-object GET was answered with {}", r.status())));
                    }
                    (len, (len > 0).then(|| (0, len - 1)), resp::crc64(d, r.headers())?)
                }
            };
            let info = resp::object_info(d, r.headers(), size)?;
            Ok(GetObject { info, range: served, body: r.stream(len, crc) })
        })
        .await
    }

    async fn list_objects(&self, bucket: &str, req: &ListRequest) -> Result<ListPage> {
        let d = &self.dialect;
        let call = Request::new(Method::GET)
            .bucket(bucket)
            .query("list-type", 2)
            .query_opt("prefix", req.prefix.as_deref())
            .query_opt("delimiter", req.delimiter.as_deref())
            .query_opt("start-after", req.start_after.as_deref())
            .query_opt("continuation-token", req.continuation_token.as_deref())
            .query_opt("max-keys", req.max_keys)
            .query("encoding-type", "url");
        self.call(call, |r| async move {
            let doc: xml::ListBucketResult = r.xml().await?;
            let enc = is_url_encoded(&doc.encoding_type);
            let mut page = ListPage { is_truncated: doc.is_truncated, ..Default::default() };
            for o in doc.contents {
                page.objects.push(ListEntry {
                    key: url_decoded(o.key, enc)?,
                    size: o.size,
                    etag: resp::unquote(&o.etag),
                    last_modified: xml::parse_iso8601(&o.last_modified),
                    storage_class: StorageClass::parse(&o.storage_class).unwrap_or(StorageClass::Standard),
                    object_type: ObjectType::parse(&o.object_type)
                        .unwrap_or_else(|| resp::object_type_of_etag(&o.etag)),
                });
            }
            for p in doc.common_prefixes {
                page.common_prefixes.push(url_decoded(p.prefix, enc)?);
            }
            // Tokens are opaque; OSS encodes them with encoding-type=url (decode one only if it decodes), S3 does not.
            page.next_continuation_token = doc.next_continuation_token.filter(|t| !t.is_empty()).map(|t| {
                if d.encoded_continuation_token {
                    url_decoded(t.clone(), enc).unwrap_or(t)
                } else {
                    t
                }
            });
            Ok(page)
        })
        .await
    }

    async fn list_versions(&self, bucket: &str, req: &VersionsRequest) -> Result<VersionsPage> {
        let call = Request::new(Method::GET)
            .bucket(bucket)
            .query("versions", "")
            .query_opt("prefix", req.prefix.as_deref())
            .query_opt("key-marker", req.key_marker.as_deref())
            .query_opt("version-id-marker", req.version_id_marker.as_deref())
            .query_opt("max-keys", req.max_keys)
            .query("encoding-type", "url");
        self.call(call, |r| async move {
            let doc = xml::parse_list_versions(&r.bytes().await?)?;
            let encoded = is_url_encoded(&doc.encoding_type);
            let versions = doc
                .entries
                .into_iter()
                .map(|v| {
                    Ok(VersionEntry {
                        key: url_decoded(v.key, encoded)?,
                        version_id: v.version_id,
                        is_latest: v.is_latest,
                        delete_marker: v.delete_marker,
                        size: v.size,
                        etag: resp::unquote(&v.etag),
                        last_modified: xml::parse_iso8601(&v.last_modified),
                        storage_class: StorageClass::parse(&v.storage_class).unwrap_or(StorageClass::Standard),
                        object_type: ObjectType::parse(&v.object_type).unwrap_or(ObjectType::Normal),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(VersionsPage {
                versions,
                is_truncated: doc.is_truncated,
                next_key_marker: doc.next_key_marker.map(|k| url_decoded(k, encoded)).transpose()?,
                next_version_id_marker: doc.next_version_id_marker,
            })
        })
        .await
    }

    async fn delete_object(&self, obj: &ObjectRef) -> Result<DeleteResult> {
        let d = &self.dialect;
        let req = version(object(Method::DELETE, obj), obj);
        self.call(req, |r| async move {
            let marker =
                resp::header(r.headers(), &d.h("delete-marker")).is_some_and(|v| v.eq_ignore_ascii_case("true"));
            Ok(DeleteResult { version_id: resp::version_id(d, r.headers()), delete_marker: marker })
        })
        .await
    }

    async fn delete_objects(&self, bucket: &str, objects: &[ObjectRef]) -> Result<Vec<Result<DeleteResult>>> {
        if objects.len() > MAX_DELETE {
            return Err(Error::invalid(format!(
                "DeleteMultipleObjects deletes at most {MAX_DELETE} objects a call, not {}",
                objects.len()
            )));
        }
        let mut out: Vec<Option<Result<DeleteResult>>> = objects
            .iter()
            .map(|o| (o.bucket != bucket).then(|| Err(Error::invalid(format!("{o} is not in bucket {bucket}")))))
            .collect();
        let doc = xml::Delete {
            quiet: Some(false),
            objects: objects
                .iter()
                .zip(&out)
                .filter(|(_, done)| done.is_none())
                .map(|(o, _)| xml::DeleteObject { key: o.key.clone(), version_id: o.version_id.clone() })
                .collect(),
        };
        if !doc.objects.is_empty() {
            let req = Request::new(Method::POST).bucket(bucket).query("delete", "").xml(xml::to_string(&doc)?);
            let answer: xml::DeleteResultXml = self.call(req, |r| async move { r.xml().await }).await?;
            let enc = is_url_encoded(&answer.encoding_type);
            // Each answer goes to the first still unanswered request for the same key and version.
            let mut place = |key: String, version: Option<String>, result: Result<DeleteResult>| -> Result<()> {
                let key = url_decoded(key, enc)?;
                let version = version.filter(|v| !v.is_empty());
                let slot = objects
                    .iter()
                    .zip(out.iter_mut())
                    .find(|(o, done)| done.is_none() && o.key == key && (version.is_none() || o.version_id == version));
                if let Some((_, done)) = slot {
                    *done = Some(result);
                }
                Ok(())
            };
            for d in answer.deleted {
                let marker = d.delete_marker.unwrap_or(false);
                let version_id = if marker { d.delete_marker_version_id } else { d.version_id.clone() };
                place(d.key, d.version_id, Ok(DeleteResult { version_id, delete_marker: marker }))?;
            }
            for e in answer.errors {
                let err = Error::code(200, &e.code, e.message).with_context("key", &e.key);
                place(e.key, e.version_id, Err(err))?;
            }
        }
        // Quiet servers list only failures: an object not named was deleted.
        Ok(out.into_iter().map(|r| r.unwrap_or_else(|| Ok(DeleteResult::default()))).collect())
    }

    async fn copy_object(&self, bucket: &str, key: &str, opts: &CopyOptions) -> Result<PutResult> {
        let d = &self.dialect;
        let s = &opts.source;
        let mut req = Request::new(Method::PUT)
            .bucket(bucket)
            .key(key)
            .context("source", s)
            .header(&d.h("copy-source"), &copy_source(&s.bucket, &s.key, s.version_id.as_deref()))
            .slow();
        req = match &opts.metadata {
            Directive::Copy => req.header(&d.h("metadata-directive"), "COPY"),
            Directive::Replace(m) => req.header(&d.h("metadata-directive"), "REPLACE").metadata(d, m),
        };
        let (copy, replace) = d.tagging_directive;
        req = match &opts.tagging {
            // A store without tagging copies no tags whatever it is told; asking it for some is refused.
            Directive::Copy if !d.capabilities.tagging => req,
            Directive::Replace(t) if !d.capabilities.tagging && t.is_empty() => req,
            Directive::Replace(_) if !d.capabilities.tagging => req.refuse(request::no_tagging("tags on CopyObject")),
            Directive::Copy => req.header(&d.h("tagging-directive"), copy),
            Directive::Replace(t) => {
                let tags = (!t.is_empty()).then(|| t.to_header());
                req.header(&d.h("tagging-directive"), replace).header_opt(&d.h("tagging"), tags.as_deref())
            }
        };
        let req = conditions(req, d, &opts.conditions).forbid_overwrite(d, opts.forbid_overwrite);
        match self.call(req, |r| async move { self.copy_result(r).await.map(|(out, _)| out) }).await {
            // Pinned and forbidden to overwrite, S3 answers 412 for either condition: an existing destination
            // tells which (OSS refuses an overwrite with its own 409 and needs no look).
            Err(e) if e.kind() == ErrorKind::PreconditionFailed && opts.forbid_overwrite => {
                match self.head_object(&ObjectRef::new(bucket, key)).await {
                    Ok(_) => Err(e.with_kind(ErrorKind::AlreadyExists)),
                    Err(_) => Err(e),
                }
            }
            other => other,
        }
    }

    async fn put_tagging(&self, obj: &ObjectRef, tags: &TagSet) -> Result<Option<String>> {
        let d = &self.dialect;
        if !d.capabilities.tagging {
            return Err(request::no_tagging("PutObjectTagging"));
        }
        let req = version(object(Method::PUT, obj).query("tagging", ""), obj).xml(tags.to_xml());
        self.call(req, |r| async move { Ok(resp::version_id(d, r.headers())) }).await
    }

    async fn get_tagging(&self, obj: &ObjectRef) -> Result<TagSet> {
        if !self.dialect.capabilities.tagging {
            return Err(request::no_tagging("GetObjectTagging"));
        }
        let req = version(object(Method::GET, obj).query("tagging", ""), obj);
        self.call(req, |r| async move { TagSet::parse_xml(&r.bytes().await?) }).await
    }

    async fn delete_tagging(&self, obj: &ObjectRef) -> Result<()> {
        if !self.dialect.capabilities.tagging {
            return Err(request::no_tagging("DeleteObjectTagging"));
        }
        let req = version(object(Method::DELETE, obj).query("tagging", ""), obj);
        self.call(req, |_| async { Ok(()) }).await
    }

    async fn restore_object(&self, obj: &ObjectRef, r: &RestoreRequest) -> Result<RestoreAnswer> {
        // OSS names the priority's element JobParameters, S3 GlacierJobParameters.
        let params = match self.dialect.family {
            crate::dialect::Family::Oss => "JobParameters",
            crate::dialect::Family::S3 => "GlacierJobParameters",
        };
        let tier = r.tier.map_or_else(String::new, |t| format!("<{params}><Tier>{}</Tier></{params}>", t.as_str()));
        let doc = format!("<RestoreRequest><Days>{}</Days>{tier}</RestoreRequest>", r.days);
        let req = version(object(Method::POST, obj).query("restore", ""), obj).xml(doc);
        let answered = self.call(req, |r| async move { Ok(r.status()) }).await;
        match answered {
            Ok(202) => Ok(RestoreAnswer::Started),
            Ok(_) => Ok(RestoreAnswer::Restored),
            Err(e) if e.service_code() == Some("RestoreAlreadyInProgress") => Ok(RestoreAnswer::InProgress),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl MultipartStore for HttpStore {
    async fn initiate_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<Upload> {
        let d = &self.dialect;
        let req = Request::new(Method::POST).bucket(bucket).key(key).query("uploads", "");
        let req = match d.forbid_overwrite_on_initiate || !opts.forbid_overwrite {
            true => multipart_encoding(req, d).put_options(d, opts),
            false => multipart_encoding(req, d).put_options(d, &PutOptions { forbid_overwrite: false, ..opts.clone() }),
        };
        // S3 takes a checksum on a part only when the upload declared its algorithm.
        let req = match self.crc32c {
            true => req.header(&d.h("checksum-algorithm"), crate::store::CRC32C_ALGORITHM),
            false => req,
        };
        self.call(req, |r| async move {
            let doc: xml::InitiateMultipartUploadResult = r.xml().await?;
            if doc.upload_id.is_empty() {
                return Err(protocol("InitiateMultipartUpload returned no UploadId".into()));
            }
            Ok(Upload::new(bucket, key, doc.upload_id))
        })
        .await
    }

    async fn upload_part(&self, part: PartRef<'_>, body: Body) -> Result<PartReceipt> {
        let d = &self.dialect;
        let part_number = part.number;
        let size = body.len();
        let req = part_request(Method::PUT, part)?;
        let (req, checksum) = self.body_checksum(req, &body);
        let req = req.body(body, false);
        self.call(req, |r| async move {
            let what = format!("part {part_number}");
            let crc64 = r.check_upload_crc(d, &what)?;
            r.check_checksum(d, checksum, &what)?;
            Ok(PartReceipt { part_number, etag: resp::etag(r.headers()), crc64, size, checksum })
        })
        .await
    }

    async fn upload_part_copy(&self, part: PartRef<'_>, from: &PartCopySource) -> Result<PartReceipt> {
        let d = &self.dialect;
        let part_number = part.number;
        let PartCopySource { source, range, conditions: conds } = from;
        let range = *range;
        let req = part_request(Method::PUT, part)?;
        // An open range (`bytes=first-`) is made explicit first: S3 accepts only `bytes=first-last`.
        let range = match range {
            Some(ByteRange { first, last: None }) => {
                let size = self.head_object(source).await?.size;
                Some(ByteRange { first, last: Some(size.saturating_sub(1).max(first)) })
            }
            r => r,
        };
        let src = copy_source(&source.bucket, &source.key, source.version_id.as_deref());
        let range_header = range.map(|r| r.to_header());
        let req = req
            .context("source", source)
            .header(&d.h("copy-source"), &src)
            .header_opt(&d.h("copy-source-range"), range_header.as_deref())
            .slow();
        let req = conditions(req, d, conds);
        let (copied, checksum) = self.call(req, |r| async move { self.copy_result(r).await }).await?;
        // The answer does not say how many bytes the part holds: an explicit range does, otherwise ask the source.
        let size = match range {
            Some(ByteRange { first, last: Some(last) }) => last - first + 1,
            _ => {
                let total = self.head_object(source).await?.size;
                total.saturating_sub(range.map_or(0, |r| r.first))
            }
        };
        Ok(PartReceipt { part_number, etag: copied.etag, crc64: copied.crc64, size, checksum })
    }

    async fn complete_multipart(
        &self,
        upload: &Upload,
        parts: &[CompletedPart],
        opts: &CompleteOptions,
    ) -> Result<PutResult> {
        let d = &self.dialect;
        // Sent in the caller's order: a list out of order is the caller's bug, and OSS names it
        // (InvalidPartOrder) rather than this client hiding it.
        let doc = xml::CompleteMultipartUpload {
            parts: parts
                .iter()
                .map(|p| xml::CompletePart {
                    part_number: p.part_number.get(),
                    etag: format!("\"{}\"", resp::unquote(&p.etag)),
                    checksum_crc32c: p.checksum.map(|c| c.value()),
                })
                .collect(),
        };
        let req = multipart_encoding(upload_request(Method::POST, upload), d)
            .forbid_overwrite(d, opts.forbid_overwrite)
            .slow()
            .xml(xml::to_string(&doc)?);
        self.call(req, |r| async move {
            let mut out = self.put_result(&r)?;
            let doc: xml::CompleteMultipartUploadResult = r.xml_or_error(d).await?;
            if !doc.etag.is_empty() {
                out.etag = resp::unquote(&doc.etag);
            }
            Ok(out)
        })
        .await
    }

    async fn abort_multipart(&self, upload: &Upload) -> Result<()> {
        let req = upload_request(Method::DELETE, upload);
        self.call(req, |_| async { Ok(()) }).await
    }

    async fn list_parts(
        &self,
        upload: &Upload,
        marker: Option<PartNumber>,
        max_parts: Option<u32>,
    ) -> Result<PartsPage> {
        let d = &self.dialect;
        let req = upload_request(Method::GET, upload)
            .query_opt("max-parts", max_parts)
            .query_opt("part-number-marker", marker.map(PartNumber::get));
        let req = multipart_encoding(req, d);
        self.call(req, |r| async move {
            let doc: xml::ListPartsResult = r.xml().await?;
            let mut parts: Vec<PartInfo> = doc
                .parts
                .into_iter()
                .map(|p| {
                    let checksum = p.checksum_crc32c.as_deref().map(Checksum::parse_crc32c).transpose();
                    Ok(PartInfo {
                        part_number: PartNumber::new(p.part_number),
                        etag: resp::unquote(&p.etag),
                        size: p.size,
                        crc64: p.hash_crc64ecma,
                        checksum: checksum.map_err(|e| protocol(format!("ListParts: {e}")))?,
                        last_modified: xml::parse_iso8601(&p.last_modified),
                    })
                })
                .collect::<Result<_>>()?;
            // In ascending order, as the contract says, even from a server that lists them as they come (s3s-fs).
            parts.sort_by_key(|p| p.part_number);
            let next = (doc.is_truncated && doc.next_part_number_marker > 0)
                .then_some(PartNumber::new(doc.next_part_number_marker));
            Ok(PartsPage { parts, next_marker: next, is_truncated: doc.is_truncated })
        })
        .await
    }

    async fn list_uploads(&self, bucket: &str, req: &ListUploadsRequest) -> Result<UploadsPage> {
        let call = Request::new(Method::GET)
            .bucket(bucket)
            .query("uploads", "")
            .query_opt("prefix", req.prefix.as_deref())
            .query_opt("key-marker", req.key_marker.as_deref())
            .query_opt("upload-id-marker", req.upload_id_marker.as_ref().map(UploadId::as_str))
            .query_opt("max-uploads", req.max_uploads)
            .query("encoding-type", "url");
        self.call(call, |r| async move {
            let doc: xml::ListMultipartUploadsResult = r.xml().await?;
            let enc = is_url_encoded(&doc.encoding_type);
            let mut uploads = Vec::with_capacity(doc.uploads.len());
            for u in doc.uploads {
                uploads.push(UploadInfo {
                    key: url_decoded(u.key, enc)?,
                    upload_id: UploadId::new(u.upload_id),
                    initiated: xml::parse_iso8601(&u.initiated),
                });
            }
            let non_empty = |s: String| (!s.is_empty()).then_some(s);
            Ok(UploadsPage {
                uploads,
                next_key_marker: non_empty(doc.next_key_marker).map(|k| url_decoded(k, enc)).transpose()?,
                next_upload_id_marker: non_empty(doc.next_upload_id_marker).map(UploadId::new),
                is_truncated: doc.is_truncated,
            })
        })
        .await
    }
}

#[async_trait]
impl OssExtensions for HttpStore {
    async fn append_object(
        &self,
        bucket: &str,
        key: &str,
        position: u64,
        body: Body,
        opts: &PutOptions,
    ) -> Result<AppendResult> {
        let d = &self.dialect;
        if !d.capabilities.append {
            return Err(unsupported(d, "AppendObject").with_context("bucket", bucket).with_context("key", key));
        }
        let mut req = Request::new(Method::POST)
            .bucket(bucket)
            .key(key)
            .query("append", "")
            .query("position", position)
            .context("position", position);
        if position == 0 {
            req = req.put_options(d, opts);
        }
        let req = req.body(body, opts.content_md5);
        self.call(req, |r| async move {
            let sent = r.sent_crc()?;
            let crc64 = resp::crc64(d, r.headers())?;
            // The server reports the CRC of the whole object; the client knows it only for the first append.
            if position == 0 {
                super::crc::check_crc("the appended object", sent, crc64).map_err(|e| r.with_request_id(d, e))?;
            }
            let next_position = resp::header_u64(r.headers(), &d.h("next-append-position"))?
                .ok_or_else(|| protocol("AppendObject answered without x-oss-next-append-position".into()))?;
            Ok(AppendResult { next_position, crc64, version_id: resp::version_id(d, r.headers()) })
        })
        .await
    }

    async fn put_symlink(&self, bucket: &str, key: &str, target: &str, opts: &PutOptions) -> Result<PutResult> {
        let d = &self.dialect;
        if !d.capabilities.symlink {
            return Err(unsupported(d, "PutSymlink").with_context("bucket", bucket).with_context("key", key));
        }
        let req = Request::new(Method::PUT)
            .bucket(bucket)
            .key(key)
            .query("symlink", "")
            .header(&d.h("symlink-target"), &crate::util::pct_encode(target))
            .put_options(d, opts);
        self.call(req, |r| async move { self.put_result(&r) }).await
    }

    async fn get_symlink(&self, obj: &ObjectRef) -> Result<SymlinkInfo> {
        let d = &self.dialect;
        if !d.capabilities.symlink {
            return Err(unsupported(d, "GetSymlink").with_context("object", obj));
        }
        let req = version(object(Method::GET, obj).query("symlink", ""), obj);
        self.call(req, |r| async move {
            let raw = resp::header(r.headers(), &d.h("symlink-target"))
                .ok_or_else(|| protocol("GetSymlink answered without x-oss-symlink-target".into()))?;
            let target = crate::util::pct_decode(raw).unwrap_or_else(|_| raw.to_owned());
            Ok(SymlinkInfo { target, version_id: resp::version_id(d, r.headers()) })
        })
        .await
    }

    async fn get_object_meta(&self, obj: &ObjectRef) -> Result<ObjectMetaSummary> {
        let d = &self.dialect;
        let mut req = object(Method::HEAD, obj);
        if let Some(sub) = d.object_meta_query {
            req = req.query(sub, "");
        }
        let req = version(req, obj);
        self.call(req, |r| async move { resp::meta_summary(d, r.headers()) }).await
    }
}

#[async_trait]
impl BucketStore for HttpStore {
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let d = &self.dialect;
        let mut req = Request::new(Method::PUT).bucket(bucket);
        let region = self.region();
        // S3 creates buckets in us-east-1 unless the body names the region the request is signed for.
        if d.bucket_location_constraint && !region.is_empty() && region != "us-east-1" {
            let doc =
                xml::CreateBucketConfiguration { location_constraint: Some(region.to_owned()), storage_class: None };
            req = req.xml(xml::to_string(&doc)?);
        }
        match self.call(req, |_| async { Ok(()) }).await {
            Err(e) if e.service_code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            // Some servers (s3s-fs) answer BucketAlreadyExists for a bucket of one's own too: it is ours if we can
            // read its location (someone else's answers 403, and the original error stands).
            Err(e) if e.service_code() == Some("BucketAlreadyExists") => {
                let location = Request::new(Method::GET).bucket(bucket).query("location", "");
                match self.call(location, |_| async { Ok(()) }).await {
                    Ok(()) => Ok(()),
                    Err(_) => Err(e),
                }
            }
            other => other,
        }
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.call(Request::new(Method::DELETE).bucket(bucket), |_| async { Ok(()) }).await
    }

    async fn list_buckets(&self) -> Result<Vec<(String, i64)>> {
        let mut found = Vec::new();
        let mut next: Option<(&str, String)> = None;
        loop {
            let mut req = Request::new(Method::GET);
            if let Some((name, value)) = &next {
                req = req.query(name, value);
            }
            let doc: xml::ListAllMyBucketsResult = self.call(req, |r| async move { r.xml().await }).await?;
            found.extend(doc.buckets.bucket.into_iter().map(|b| (b.name, xml::parse_iso8601(&b.creation_date))));
            next = match (doc.continuation_token, doc.next_marker) {
                (Some(token), _) if !token.is_empty() => Some(("continuation-token", token)),
                (_, Some(marker)) if doc.is_truncated && !marker.is_empty() => Some(("marker", marker)),
                _ => return Ok(found),
            };
        }
    }

    async fn put_versioning(&self, bucket: &str, enabled: bool) -> Result<()> {
        let status = if enabled { "Enabled" } else { "Suspended" };
        let doc = xml::VersioningConfiguration { status: Some(status.into()) };
        let req = Request::new(Method::PUT).bucket(bucket).query("versioning", "").xml(xml::to_string(&doc)?);
        self.call(req, |_| async { Ok(()) }).await
    }

    async fn get_versioning(&self, bucket: &str) -> Result<Versioning> {
        let req = Request::new(Method::GET).bucket(bucket).query("versioning", "");
        self.call(req, |r| async move {
            let doc: xml::VersioningConfiguration = r.xml().await?;
            match doc.status.as_deref().map(str::trim) {
                None | Some("") => Ok(Versioning::Off),
                Some("Enabled") => Ok(Versioning::Enabled),
                Some("Suspended") => Ok(Versioning::Suspended),
                Some(other) => Err(protocol(format!("unknown versioning status {other:?}"))),
            }
        })
        .await
    }
}
