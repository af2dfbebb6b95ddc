//! The request a handler sees ([`Req`]) and [`dispatch`], which hands each [`Op`] to its handler in
//! [`crate::object`], [`crate::multipart`] or [`crate::bucket`].

use crate::body;
use crate::response::{invalid_argument, Reply};
use crate::routing::{Op, Target};
use crate::ServedStore;
use crate::{bucket, multipart, object};
use bytes::Bytes;
use http::HeaderMap;
use hyper::body::Incoming;
use std::sync::Arc;
use transfer_engine::run::{Bandwidth, OSS_TRAFFIC_LIMIT};
use transfer_engine::store::{Body, ObjectRef, CRC32C_HEADER};
use transfer_engine::util::pct_encode_path;
use transfer_engine::{Error, Result};

/// An authenticated request, resolved to its operation.
#[derive(Debug)]
pub(crate) struct Req {
    /// The operation.
    pub(crate) op: Op,
    /// Bucket, key and query.
    pub(crate) target: Target,
    /// Request headers.
    pub(crate) headers: HeaderMap,
    /// The body, until a handler takes it.
    pub(crate) body: Option<Incoming>,
    /// The `Host` the client used (for `Location`).
    pub(crate) host: String,
    /// The body's SHA-256 an S3 request's signature covers (`x-amz-content-sha256`, when not
    /// `UNSIGNED-PAYLOAD`): the body must have it.
    pub(crate) payload_sha256: Option<[u8; 32]>,
    /// An S3 request that carries an `x-amz-checksum-*` header (S3 takes one where OSS requires Content-MD5).
    pub(crate) s3_checksum: bool,
    /// How long the body may go without a byte ([`crate::Timeouts::body`]).
    pub(crate) body_timeout: std::time::Duration,
}

/// A body no handler took (an operation refused before it read it) is drained in the background, so the client
/// reads the refusal instead of a reset connection.
impl Drop for Req {
    fn drop(&mut self) {
        if let Some(body) = self.body.take() {
            body::drain_unread(body, &self.headers, self.body_timeout);
        }
    }
}

impl Req {
    /// The bucket (routing guarantees one for bucket and object operations).
    pub(crate) fn bucket(&self) -> &str {
        self.target.bucket.as_deref().unwrap_or_default()
    }

    /// The object key (routing guarantees one for object operations).
    pub(crate) fn key(&self) -> &str {
        self.target.key.as_deref().unwrap_or_default()
    }

    /// A query parameter.
    pub(crate) fn q(&self, name: &str) -> Option<&str> {
        self.target.q(name)
    }

    /// A query parameter that must be a number when present.
    pub(crate) fn q_num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        match self.q(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| invalid_argument(format!("The parameter {name} must be a number, not {v:?}."), name, v)),
        }
    }

    /// A query parameter, `None` when absent or empty.
    pub(crate) fn q_str(&self, name: &str) -> Option<String> {
        self.q(name).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// The object, at `?versionId=` when given.
    pub(crate) fn obj(&self) -> ObjectRef {
        let obj = ObjectRef::new(self.bucket(), self.key());
        match self.q_str("versionId") {
            Some(v) => obj.at_version(v),
            None => obj,
        }
    }

    /// A request header as text.
    pub(crate) fn header(&self, name: &str) -> Result<Option<&str>> {
        crate::headers::get(&self.headers, name)
    }

    /// True with `encoding-type=url`: keys, prefixes and markers in the reply are URL-encoded.
    pub(crate) fn url_encoded(&self) -> bool {
        self.q("encoding-type").is_some_and(|v| v.eq_ignore_ascii_case("url"))
    }

    /// `<EncodingType>` of the reply.
    pub(crate) fn encoding_type(&self) -> Option<String> {
        self.url_encoded().then(|| "url".to_owned())
    }

    /// A key, prefix or marker as the reply carries it (URL-encoded with `encoding-type=url`).
    pub(crate) fn enc(&self, s: &str) -> String {
        if self.url_encoded() {
            pct_encode_path(s)
        } else {
            s.to_owned()
        }
    }

    fn take_body(&mut self) -> Result<Incoming> {
        self.body.take().ok_or_else(|| Error::code(500, "InternalError", "The request body was already read."))
    }

    /// The streamed data body (PutObject, UploadPart, AppendObject), read no faster than its
    /// `x-oss-traffic-limit`.
    pub(crate) fn data_body(&mut self) -> Result<Body> {
        let limit = self.traffic_limit()?;
        let incoming = self.take_body()?;
        body::data_body(&self.headers, incoming, self.payload_sha256, self.body_timeout, limit)
    }

    /// `x-oss-traffic-limit` (bits per second, as OSS takes it: 245,760 to 838,860,800) as a limit on this
    /// request's bytes; a value outside is 400 `InvalidArgument`.
    pub(crate) fn traffic_limit(&self) -> Result<Option<Arc<Bandwidth>>> {
        let Some(v) = self.header("x-oss-traffic-limit")? else { return Ok(None) };
        match v.trim().parse::<u64>() {
            Ok(bits) if OSS_TRAFFIC_LIMIT.contains(&bits) => Ok(Some(Arc::new(Bandwidth::new(Some(bits / 8))))),
            _ => Err(invalid_argument(
                format!(
                    "x-oss-traffic-limit must be between {} and {} bit/s.",
                    OSS_TRAFFIC_LIMIT.start(),
                    OSS_TRAFFIC_LIMIT.end()
                ),
                "x-oss-traffic-limit",
                v,
            )),
        }
    }

    /// A small body read whole (XML).
    pub(crate) async fn small_body(&mut self) -> Result<Bytes> {
        let incoming = self.take_body()?;
        body::small_body(&self.headers, incoming, self.payload_sha256, self.body_timeout).await
    }
}

/// Runs the handler of `req.op`. A body sent to an operation that takes none is still read and checked
/// against `Content-MD5` (and a signed SHA-256), so a wrong digest is never ignored.
pub(crate) async fn dispatch<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    let has_body = req.headers.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    if !req.op.reads_body() && (has_body || req.headers.contains_key("content-md5") || req.payload_sha256.is_some()) {
        req.small_body().await?;
    }
    // A data body's CRC-32C was checked as it streamed in (a mismatch failed the call): echoed, as S3 does.
    let echo = match req.op.reads_body() {
        true => req.headers.get(CRC32C_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned),
        false => None,
    };
    let reply = match req.op {
        Op::ListBuckets => bucket::list_buckets(store, req).await,
        Op::PutBucket => bucket::put_bucket(store, req).await,
        Op::DeleteBucket => bucket::delete_bucket(store, req).await,
        Op::GetBucketInfo => bucket::get_bucket_info(store, req).await,
        Op::GetBucketLocation => bucket::get_bucket_location(store, req).await,
        Op::GetBucketAcl => bucket::get_bucket_acl(store, req).await,
        Op::GetBucketVersioning => bucket::get_versioning(store, req).await,
        Op::PutBucketVersioning => bucket::put_versioning(store, req).await,
        Op::ListObjects => bucket::list_objects_v1(store, req).await,
        Op::ListObjectsV2 => bucket::list_objects_v2(store, req).await,
        Op::ListVersions => bucket::list_versions(store, req).await,
        Op::DeleteMultipleObjects => bucket::delete_multiple(store, req).await,
        Op::ListUploads => multipart::list_uploads(store, req).await,
        Op::PutObject => object::put_object(store, req).await,
        Op::CopyObject => object::copy_object(store, req).await,
        Op::GetObject => object::get_object(store, req).await,
        Op::HeadObject => object::head_object(store, req).await,
        Op::GetObjectMeta => object::get_object_meta(store, req).await,
        Op::DeleteObject => object::delete_object(store, req).await,
        Op::AppendObject => object::append_object(store, req).await,
        Op::PutSymlink => object::put_symlink(store, req).await,
        Op::GetSymlink => object::get_symlink(store, req).await,
        Op::PutTagging => object::put_tagging(store, req).await,
        Op::GetTagging => object::get_tagging(store, req).await,
        Op::RestoreObject => object::restore_object(store, req).await,
        Op::DeleteTagging => object::delete_tagging(store, req).await,
        Op::InitiateMultipart => multipart::initiate(store, req).await,
        Op::UploadPart => multipart::upload_part(store, req).await,
        Op::UploadPartCopy => multipart::upload_part_copy(store, req).await,
        Op::CompleteMultipart => multipart::complete(store, req).await,
        Op::AbortMultipart => multipart::abort(store, req).await,
        Op::ListParts => multipart::list_parts(store, req).await,
    }?;
    Ok(reply.header_opt(CRC32C_HEADER, echo))
}
