//! The HTTP client of both wire dialects: [`HttpStore`] implements the store traits
//! ([`ObjectStore`](crate::ObjectStore), [`MultipartStore`](crate::store::MultipartStore),
//! [`OssExtensions`](crate::store::OssExtensions), [`BucketStore`](crate::BucketStore)) over reqwest, as
//! Alibaba Cloud OSS speaks ([`HttpStore::oss`]) or as S3 does ([`HttpStore::s3`]).
//!
//! There is one client: a dialect is data ([`Dialect`]: header names, limits, which operations exist), a
//! signer ([`crate::sign`]: OSS V1 / V4, AWS SigV4) and the reading of its answers; no operation branches on
//! "is this OSS".
//!
//! ```no_run
//! # fn demo() -> transfer_engine::Result<()> {
//! use transfer_engine::http::HttpStore;
//! use transfer_engine::sign::{Credentials, SignatureVersion};
//! let oss = HttpStore::oss()
//!     .endpoint("http://127.0.0.1:1234")
//!     .region("cn-hangzhou")
//!     .credentials(Credentials::new("ak", "sk"))
//!     .signature_version(SignatureVersion::V4)
//!     .build()?;
//! let s3 = HttpStore::s3().endpoint("http://127.0.0.1:9000").region("us-east-1").build()?; // AWS_* credentials
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//! - Every operation goes through one path: a `Request` (method, bucket, key, decoded query,
//!   headers, body) is signed ([`crate::sign`]), sent, and its status checked; a failure becomes an
//!   [`Error`] with the service's code, EC and request id, plus the object key, upload id and part number as
//!   context. Errors on HEAD come from the base64 `x-oss-err` header. A 200 answer whose body is an `<Error>`
//!   document (CompleteMultipartUpload, UploadPartCopy, CopyObject) is an error too.
//! - Integrity: the CRC-64 of every uploaded body is computed while it is sent and compared with the
//!   server's `x-oss-hash-crc64ecma` (a mismatch is a retryable [`ErrorKind::Integrity`] error); a whole-object
//!   GET is checked while streaming and the last chunk fails on a mismatch. `Content-MD5` is sent for
//!   in-memory bodies when asked for (per call, or for every call with [`HttpStoreBuilder::content_md5`]) and
//!   always for XML bodies. Uploads always carry `Content-Length`, never chunked encoding.
//! - `RequestTimeTooSkewed` (retryable) also sets a clock offset from the answer's `Date`, used to sign the
//!   later requests of this store and its clones.
//! - Transport failures (connect, reset, timeouts, a body cut short) are retryable
//!   [`ErrorKind::Transport`] errors. Nothing is retried here: that is the scheduler's decision.
//! - Credentials never appear in `Debug`, logs or errors.

use crate::dialect::{Dialect, Family};
use crate::error::{Error, ErrorKind, Result};
use crate::run::{paced, Bandwidth, Pacer};
use crate::s3::S3Checksum;
use crate::sign::provider::Refreshing;
use crate::sign::s3::{S3Signer, S3Target};
use crate::sign::{Credentials, CredentialsProvider, SignTarget, SignatureVersion, Signer};
use crate::store::{validate_bucket_for, validate_key, Checksum};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod crc;
mod ops;
mod request;
mod response;

use crc::{Progress, UploadTap};
use request::{Endpoint, Request};

/// Default time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request may go without moving a byte (sending or receiving) before it fails.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time the server may work before answering a call that copies or assembles data (CopyObject,
/// UploadPartCopy, CompleteMultipartUpload).
pub const DEFAULT_SERVER_WORK_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// An object store over HTTP, in one wire dialect (OSS or S3). Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct HttpStore {
    client: reqwest::Client,
    endpoint: Endpoint,
    path_style: bool,
    signing: Signing,
    credentials: Refreshing,
    dialect: Dialect,
    content_md5: bool,
    /// Bodies carry a CRC-32C (`x-amz-checksum-crc32c`) instead of `Content-MD5` (S3).
    crc32c: bool,
    read_timeout: Option<Duration>,
    server_work_timeout: Duration,
    clock: Clock,
    /// The bandwidth limit request bodies share, if any ([`HttpStoreBuilder::upload_limit`]).
    upload_limit: Option<Arc<Bandwidth>>,
    /// The bandwidth limit streamed response bodies share, if any ([`HttpStoreBuilder::download_limit`]).
    download_limit: Option<Arc<Bandwidth>>,
    /// The endpoint's pacer: every request takes a turn ([`HttpStoreBuilder::pacer`]).
    pacer: Arc<Pacer>,
    /// `x-oss-traffic-limit` for the requests that carry object data ([`HttpStoreBuilder::traffic_limit`]).
    traffic_limit: Option<HeaderValue>,
}

impl fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStore")
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("dialect", &self.dialect.name)
            .field("signing", &self.signing)
            .field("access_key_id", &self.credentials.access_key_id())
            .field("content_md5", &self.content_md5)
            .field("crc32c", &self.crc32c)
            .field("upload_limit", &self.upload_limit.as_ref().map(|l| l.rate()))
            .field("download_limit", &self.download_limit.as_ref().map(|l| l.rate()))
            .finish_non_exhaustive()
    }
}

impl HttpStore {
    /// A builder for an Alibaba Cloud OSS endpoint ([`Dialect::OSS`]): signature V4 (or V1), `x-oss-*`
    /// headers, credentials from `OSS_ACCESS_KEY_ID` / `OSS_ACCESS_KEY_SECRET` / `OSS_SESSION_TOKEN`.
    pub fn oss() -> HttpStoreBuilder {
        HttpStoreBuilder::new(Dialect::OSS)
    }

    /// A builder for an S3 endpoint ([`Dialect::S3`]): AWS SigV4, `x-amz-*` headers, credentials from
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` (see [`crate::s3`]).
    pub fn s3() -> HttpStoreBuilder {
        HttpStoreBuilder::new(Dialect::S3)
    }

    /// The wire dialect this store speaks.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// True when requests use path-style addressing (`<endpoint>/<bucket>/<key>`).
    pub fn path_style(&self) -> bool {
        self.path_style
    }

    /// The signature version in use (an OSS store signs with V1 or V4).
    pub fn signature_version(&self) -> SignatureVersion {
        match &self.signing {
            Signing::Oss(s) => s.version,
            Signing::S3(_) => SignatureVersion::V4,
        }
    }

    /// The region requests are signed for.
    pub(crate) fn region(&self) -> &str {
        match &self.signing {
            Signing::Oss(s) => &s.region,
            Signing::S3(s) => &s.region,
        }
    }

    /// Sends `req` and hands the successful response to `then`. Every error, of the exchange or of `then`,
    /// carries the request's context (bucket, key, upload id, part number, ...).
    async fn call<T, F, Fut>(&self, req: Request, then: F) -> Result<T>
    where
        F: FnOnce(Response) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let context = req.context.clone();
        let out = match self.send(req).await {
            Ok(resp) => then(resp).await,
            Err(e) => Err(e),
        };
        out.map_err(|e| with_context(e, &context))
    }

    /// Sends one request in a turn of the endpoint's pacer (taken before signing: a hold must not age the
    /// signature), and tells the pacer how it ended.
    async fn send(&self, req: Request) -> Result<Response> {
        let turn = self.pacer.turn().await;
        let result = self.exchange(req).await;
        turn.ended(result.as_ref().err());
        result
    }

    /// Signs and sends one request; a non-2xx answer becomes the service error.
    async fn exchange(&self, req: Request) -> Result<Response> {
        let Request { method, bucket, key, query, mut headers, body, content_md5, context, invalid, slow } = req;
        if let Some(e) = invalid {
            return Err(e);
        }
        if let Some(b) = &bucket {
            validate_bucket_for(b, &self.dialect.capabilities)?;
        }
        let path_style = self.endpoint.path_style_for(self.path_style, bucket.as_deref());
        if let Some(k) = &key {
            validate_key(k)?;
        }
        let Some(len) = body.known_len() else {
            return Err(Error::invalid(
                "a body of unknown length cannot be sent: this client declares every body's Content-Length; \
                 collect the bytes first or give the stream's length (Body::from_stream)",
            ));
        };
        let has_body = len > 0 || method == Method::PUT || method == Method::POST;
        if has_body {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
            // A dialect without a CRC-64 of its bodies (S3) protects them by a checksum header when the call set
            // one (data bodies, under `crc32c`), and by Content-MD5 otherwise.
            let checksummed = self.crc32c && headers.contains_key(crate::store::CRC32C_HEADER);
            if content_md5 || self.content_md5 || (self.dialect.crc64_header.is_none() && !checksummed) {
                if let Some(b) = body.as_bytes() {
                    let md5 = HeaderValue::from_str(&crate::util::content_md5(b)).expect("base64 is a header value");
                    headers.insert("content-md5", md5);
                }
            }
        }
        if let Some(limit) = self.traffic_limit.as_ref().filter(|_| carries_data(&method, key.as_deref(), &query)) {
            headers.insert("x-oss-traffic-limit", limit.clone());
        }
        let credentials = self.credentials.current().await?;
        match &self.signing {
            Signing::Oss(signer) => {
                let target = SignTarget {
                    method: method.as_str(),
                    bucket: bucket.as_deref(),
                    key: key.as_deref(),
                    query: &query,
                };
                signer.sign(&credentials, &target, &mut headers, self.clock.now());
            }
            Signing::S3(signer) => {
                let authority = self.endpoint.authority(path_style, bucket.as_deref());
                let host =
                    HeaderValue::from_str(&authority).map_err(|_| Error::invalid(format!("bad host {authority:?}")))?;
                headers.insert(http::header::HOST, host);
                let path = Endpoint::path(path_style, bucket.as_deref(), key.as_deref());
                let target = S3Target { method: method.as_str(), uri: &path, query: &query };
                signer.sign(&credentials, &target, &mut headers, &payload_hash(&body), self.clock.now());
            }
        }

        // S3 answers 412 both to `If-None-Match: *` (the destination exists) and to a source condition (the
        // source changed): what the request carried decides which, here, once.
        let forbids = headers.contains_key(self.dialect.forbid_overwrite.0);
        let pinned = forbids && headers.contains_key(self.dialect.h("copy-source-if-match").as_str());
        let url = self.endpoint.url(path_style, bucket.as_deref(), key.as_deref(), &query);
        let progress = Progress::new();
        let mut builder = self.client.request(method.clone(), &url).headers(headers);
        // Every non-empty body goes out as a stream of known length (Content-Length set above, so never chunked):
        // the tap computes its CRC-64 and marks progress for the idle timeout as the bytes leave.
        let upload = if len == 0 {
            if has_body {
                builder = builder.body(Bytes::new());
            }
            None
        } else {
            let chunks = match body.as_bytes() {
                Some(b) => slices(b.clone()),
                None => body.into_stream(),
            };
            // Under a bandwidth limit each slice waits for its bytes before it goes (after the checksums above,
            // which were taken over the whole body).
            let chunks = paced(chunks, self.upload_limit.clone());
            let (stream, tap) = UploadTap::wrap(chunks, progress.clone());
            builder = builder.body(reqwest::Body::wrap_stream(stream));
            Some((tap, len))
        };
        tracing::debug!(method = %method, url = %url, "request");
        let sent = builder.send();
        let wait = match (self.read_timeout, slow) {
            (Some(idle), true) => Some(idle.max(self.server_work_timeout)),
            (idle, _) => idle,
        };
        let result = match wait {
            Some(idle) => idle_timeout(sent, &progress, idle).await,
            None => Ok(sent.await),
        };
        let resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                let parked = upload.as_ref().and_then(|(tap, _)| tap.take_error());
                return Err(parked.unwrap_or_else(|| response::transport(e)));
            }
            Err(stalled) => return Err(stalled),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let request_id = response::header(&headers, &self.dialect.h("request-id")).unwrap_or("").to_owned();
        tracing::debug!(method = %method, status, request_id = %request_id, "response");
        if (200..300).contains(&status) {
            let limit = self.download_limit.clone();
            return Ok(Response { status, headers, inner: resp, upload, context, idle: self.read_timeout, limit });
        }
        let body = match method {
            Method::HEAD => Bytes::new(),
            _ => read_body(resp, self.read_timeout).await.unwrap_or_default(),
        };
        let mut err = response::service_error(&self.dialect, status, &headers, &body);
        if err.kind() == ErrorKind::PreconditionFailed && forbids && !pinned {
            err = err.with_kind(ErrorKind::AlreadyExists);
        }
        if err.kind() == ErrorKind::ClockSkew {
            if let Some(server) = response::header(&headers, "date").and_then(|d| httpdate::parse_http_date(d).ok()) {
                self.clock.correct(server);
                tracing::warn!(offset_ms = self.clock.offset_ms(), "clock skew: later requests use the server's time");
            }
        }
        Err(err)
    }
}

/// Whether a request moves object data (PutObject, CopyObject, UploadPart, UploadPartCopy, AppendObject,
/// GetObject): the requests `x-oss-traffic-limit` applies to. Its query names only the part, the upload, the
/// append position, a version or a response override.
fn carries_data(method: &Method, key: Option<&str>, query: &[(String, String)]) -> bool {
    let data_query =
        |allowed: &[&str]| query.iter().all(|(k, _)| allowed.contains(&k.as_str()) || k.starts_with("response-"));
    key.is_some()
        && match *method {
            Method::PUT => data_query(&["partNumber", "uploadId"]),
            Method::POST => query.iter().any(|(k, _)| k == "append") && data_query(&["append", "position"]),
            Method::GET => data_query(&["versionId"]),
            _ => false,
        }
}

/// How requests are signed: the OSS signer (V1 or V4) or AWS SigV4 for the S3 dialect.
#[derive(Debug, Clone)]
pub(crate) enum Signing {
    /// OSS V1 / V4.
    Oss(Signer),
    /// AWS SigV4.
    S3(S3Signer),
}

/// Largest in-memory body whose SHA-256 is signed (XML documents, small objects); larger and streamed bodies
/// are sent as `UNSIGNED-PAYLOAD` (never `aws-chunked`).
const SIGNED_PAYLOAD_MAX: u64 = 64 * 1024;

/// `x-amz-content-sha256` of a body.
fn payload_hash(body: &crate::store::Body) -> String {
    match body.as_bytes() {
        Some(b) if (b.len() as u64) <= SIGNED_PAYLOAD_MAX => crate::sign::sigv4::sha256_hex(b),
        _ if body.is_empty() => crate::sign::s3::EMPTY_SHA256.to_owned(),
        _ => crate::sign::s3::UNSIGNED_PAYLOAD.to_owned(),
    }
}

/// The signing clock: local time plus the offset learnt from a `RequestTimeTooSkewed` answer's `Date`, so
/// the retry the error invites can succeed (the SDKs do the same).
#[derive(Debug, Clone, Default)]
struct Clock {
    offset_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Clock {
    fn offset_ms(&self) -> i64 {
        self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn now(&self) -> SystemTime {
        let now = SystemTime::now();
        let off = self.offset_ms();
        let d = Duration::from_millis(off.unsigned_abs());
        if off >= 0 {
            now + d
        } else {
            now - d
        }
    }

    /// Sets the offset so that `now()` matches `server` (an HTTP date, whole seconds).
    fn correct(&self, server: SystemTime) {
        let local = SystemTime::now();
        let off = match server.duration_since(local) {
            Ok(ahead) => ahead.as_millis() as i64,
            Err(behind) => -(behind.duration().as_millis() as i64),
        };
        self.offset_ms.store(off, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs `fut` (sending a request and waiting for its response headers), failing with a transport error when
/// no upload byte moved for `idle` (after the last byte, the server has `idle` to answer).
async fn idle_timeout<F: Future>(fut: F, progress: &Progress, idle: Duration) -> Result<F::Output> {
    tokio::pin!(fut);
    loop {
        let left = idle.saturating_sub(progress.idle());
        if left.is_zero() {
            return Err(Error::new(
                ErrorKind::Transport,
                format!("the request made no progress for {} s", idle.as_secs()),
            ));
        }
        tokio::select! {
            out = &mut fut => return Ok(out),
            _ = tokio::time::sleep(left) => {}
        }
    }
}

/// Reads a whole response body, each chunk within `idle` of the previous one.
async fn read_body(mut resp: reqwest::Response, idle: Option<Duration>) -> Result<Bytes> {
    let mut out = Vec::new();
    loop {
        let chunk = match idle {
            Some(d) => tokio::time::timeout(d, resp.chunk())
                .await
                .map_err(|_| Error::new(ErrorKind::Transport, format!("no response bytes for {} s", d.as_secs())))?,
            None => resp.chunk().await,
        };
        match chunk.map_err(response::transport)? {
            Some(c) => out.extend_from_slice(&c),
            None => return Ok(Bytes::from(out)),
        }
    }
}

/// Adds the request's context to an error, skipping names the error already has.
fn with_context(mut e: Error, context: &[(&'static str, String)]) -> Error {
    for (name, value) in context {
        if !e.context().iter().any(|(n, _)| n == name) {
            e = e.with_context(name, value);
        }
    }
    e
}

/// An in-memory body as a stream of slices (no copies), so its progress is observed like a stream's.
fn slices(b: Bytes) -> BoxStream<'static, Result<Bytes>> {
    const SLICE: usize = 64 * 1024;
    let n = b.len().div_ceil(SLICE);
    futures::stream::iter((0..n).map(move |i| Ok(b.slice(i * SLICE..((i + 1) * SLICE).min(b.len()))))).boxed()
}

/// A successful response.
pub(crate) struct Response {
    status: u16,
    headers: HeaderMap,
    inner: reqwest::Response,
    /// The request body's tap and declared length; `None` for an empty body.
    upload: Option<(UploadTap, u64)>,
    context: Vec<(&'static str, String)>,
    idle: Option<Duration>,
    /// The bandwidth limit a streamed body takes its bytes from ([`HttpStoreBuilder::download_limit`]).
    limit: Option<Arc<Bandwidth>>,
}

impl Response {
    /// The response headers.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    /// CRC-64 of the request body as sent. Fails when the HTTP stack answered before the whole body went out.
    pub(crate) fn sent_crc(&self) -> Result<u64> {
        let Some((tap, declared)) = &self.upload else { return Ok(0) };
        let (crc, len) = tap.sent();
        if len != *declared {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("only {len} of {declared} body bytes were sent before the server answered"),
            ));
        }
        Ok(crc)
    }

    /// Compares the CRC-64 of the body sent with the server's `x-oss-hash-crc64ecma`; returns the server value.
    pub(crate) fn check_upload_crc(&self, d: &Dialect, what: &str) -> Result<Option<u64>> {
        let sent = self.sent_crc()?;
        let reported = response::crc64(d, &self.headers)?;
        crc::check_crc(what, sent, reported).map_err(|e| self.with_request_id(d, e))?;
        Ok(reported)
    }

    /// Compares the checksum sent with the body with the one the server echoed (`x-amz-checksum-crc32c`); a
    /// server that checked the body and answers with another value (or a proxy that changed it) fails the call
    /// as an integrity error. A server that echoes nothing is not checked here.
    pub(crate) fn check_checksum(&self, d: &Dialect, sent: Option<Checksum>, what: &str) -> Result<()> {
        let Some(sent) = sent else { return Ok(()) };
        match response::header(&self.headers, sent.header()) {
            Some(v) if Checksum::parse_crc32c(v).ok() != Some(sent) => Err(self.with_request_id(
                d,
                Error::new(
                    ErrorKind::Integrity,
                    format!("checksum mismatch on {what}: the client sent {}, the server answered {v:?}", sent.value()),
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Adds the request id to a client-side finding about this response.
    pub(crate) fn with_request_id(&self, d: &Dialect, e: Error) -> Error {
        match response::header(&self.headers, &d.h("request-id")) {
            Some(id) => e.with_context("request id", id),
            None => e,
        }
    }

    /// The whole body.
    pub(crate) async fn bytes(self) -> Result<Bytes> {
        read_body(self.inner, self.idle).await
    }

    /// The body parsed as XML.
    pub(crate) async fn xml<T: for<'de> serde::Deserialize<'de>>(self) -> Result<T> {
        crate::xml::from_slice(&self.bytes().await?)
    }

    /// The body parsed as XML, unless it is an `<Error>` document (a 200 OK that failed): then the service
    /// error it describes.
    pub(crate) async fn xml_or_error<T: for<'de> serde::Deserialize<'de>>(self, d: &Dialect) -> Result<T> {
        let (status, headers) = (self.status, self.headers.clone());
        let body = self.bytes().await?;
        if response::is_error_document(&body) {
            return Err(response::service_error(d, status, &headers, &body));
        }
        crate::xml::from_slice(&body)
    }

    /// The body as a stream: each chunk within the idle timeout, exactly `len` bytes, and, when `crc` is
    /// given, a CRC-64 equal to it (checked before the last chunk is released). Errors carry the context.
    pub(crate) fn stream(self, len: u64, crc: Option<u64>) -> BoxStream<'static, Result<Bytes>> {
        let context = self.context;
        let raw = self.inner.bytes_stream().map_err(response::transport).boxed();
        let body = crc::verify_download(raw, len, crc, self.idle).map_err(move |e| with_context(e, &context));
        paced(body.boxed(), self.limit)
    }
}

/// Builds an [`HttpStore`] of one dialect: [`HttpStore::oss`] or [`HttpStore::s3`]. [`endpoint`](Self::endpoint)
/// is required; everything else has a default.
#[derive(Debug)]
pub struct HttpStoreBuilder {
    dialect: Dialect,
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<Arc<dyn CredentialsProvider>>,
    signature_version: Option<SignatureVersion>,
    path_style: Option<bool>,
    content_md5: bool,
    checksum: S3Checksum,
    tagging: bool,
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
    server_work_timeout: Duration,
    timeout: Option<Duration>,
    system_proxy: bool,
    upload_limit: Option<Arc<Bandwidth>>,
    download_limit: Option<Arc<Bandwidth>>,
    pacer: Option<Arc<Pacer>>,
    traffic_limit: Option<u64>,
}

impl HttpStoreBuilder {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            endpoint: None,
            region: None,
            credentials: None,
            signature_version: None,
            path_style: None,
            content_md5: false,
            checksum: S3Checksum::default(),
            tagging: true,
            upload_limit: None,
            download_limit: None,
            pacer: None,
            traffic_limit: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: Some(DEFAULT_READ_TIMEOUT),
            server_work_timeout: DEFAULT_SERVER_WORK_TIMEOUT,
            timeout: None,
            system_proxy: true,
        }
    }

    /// The service endpoint: `http://host[:port]` or `https://host[:port]` (a bare host means https), e.g.
    /// `https://oss-cn-hangzhou.aliyuncs.com`, `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    /// Required.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The region of the signature scope (and of buckets created). OSS: e.g. `cn-hangzhou`; without it, the
    /// region is read from an `oss-<region>[-internal].aliyuncs.com` endpoint (V1 needs none). S3: without it,
    /// `AWS_REGION`, then `AWS_DEFAULT_REGION`, then [`s3::DEFAULT_REGION`](crate::s3::DEFAULT_REGION).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The access key. Without it, the dialect's environment: [`Credentials::from_env`] (OSS) or
    /// [`Credentials::from_aws_env`] (S3).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(Arc::new(credentials));
        self
    }

    /// Credentials that change while the store is used: asked for again as they near their expiration, or
    /// when the provider says they changed (a [`CredentialsFile`](crate::sign::CredentialsFile) rewritten).
    /// See [`crate::sign::provider`].
    pub fn credentials_provider(mut self, provider: Arc<dyn CredentialsProvider>) -> Self {
        self.credentials = Some(provider);
        self
    }

    /// OSS: signature V4 (the default) or V1. S3 signs with AWS SigV4 only: V1 is refused by
    /// [`build`](Self::build).
    pub fn signature_version(mut self, version: SignatureVersion) -> Self {
        self.signature_version = Some(version);
        self
    }

    /// Path-style (`<endpoint>/<bucket>/<key>`) or virtual-hosted (`<bucket>.<endpoint host>/<key>`)
    /// addressing. Default: path style for an IP address or `localhost`, virtual-hosted otherwise.
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.path_style = Some(path_style);
        self
    }

    /// S3: how bodies are protected, [`S3Checksum::Crc32c`] (default) or [`S3Checksum::ContentMd5`]. OSS
    /// checks every body by the CRC-64 it reports; [`content_md5`](Self::content_md5) adds MD5 there.
    pub fn checksum(mut self, checksum: S3Checksum) -> Self {
        self.checksum = checksum;
        self
    }

    /// Request bodies take their bytes from `limit` before they go: give every store of a process the same
    /// [`Bandwidth`] and all their uploads share one limit (default none).
    pub fn upload_limit(mut self, limit: Arc<Bandwidth>) -> Self {
        self.upload_limit = Some(limit);
        self
    }

    /// Response bodies read as streams (GetObject) take their bytes from `limit` as they arrive: give every
    /// store of a process the same [`Bandwidth`] and all their downloads share one limit (default none).
    pub fn download_limit(mut self, limit: Arc<Bandwidth>) -> Self {
        self.download_limit = Some(limit);
        self
    }

    /// OSS's own limit on each request that carries object data (PutObject, UploadPart, UploadPartCopy,
    /// CopyObject, AppendObject, GetObject): `x-oss-traffic-limit`, in bits per second, within
    /// [`OSS_TRAFFIC_LIMIT`](crate::run::OSS_TRAFFIC_LIMIT). The server holds each request to it (requests in
    /// parallel each get the rate); [`upload_limit`](Self::upload_limit) is the client's own, shared limit. The
    /// OSS dialect only: [`build`](Self::build) refuses it for S3, and a rate outside the range.
    pub fn traffic_limit(mut self, bits_per_second: Option<u64>) -> Self {
        self.traffic_limit = bits_per_second;
        self
    }

    /// The pacer every request of this store takes a turn from (default: one of its own). Give the stores of one
    /// endpoint the same [`Pacer`] so a throttling answer to one slows them all; its [`Pacer::with_tps`] caps
    /// their requests per second together.
    pub fn pacer(mut self, pacer: Arc<Pacer>) -> Self {
        self.pacer = Some(pacer);
        self
    }

    /// Send `Content-MD5` with every in-memory body, in addition to the dialect's own check (default off).
    pub fn content_md5(mut self, enabled: bool) -> Self {
        self.content_md5 = enabled;
        self
    }

    /// Whether the server implements object tagging (default true). Some S3-compatible servers do not (s3s-fs);
    /// with `false` the store's [`Capabilities`](crate::store::Capabilities) say so, the engine neither reads
    /// nor copies tags, and a call that needs tags (tags on a write, the tagging calls) fails with
    /// [`ErrorKind::Unsupported`] without sending anything.
    pub fn tagging(mut self, enabled: bool) -> Self {
        self.tagging = enabled;
        self
    }

    /// Time allowed to open a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time a request may go without moving a byte, in either direction, before it fails (default 60 s;
    /// `None` disables it). Unlike an overall timeout it does not limit large bodies.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How long the server may work before answering CopyObject, UploadPartCopy or CompleteMultipartUpload,
    /// which copy or assemble data after the request is sent (default 15 min; the read timeout applies when
    /// it is longer).
    pub fn server_work_timeout(mut self, timeout: Duration) -> Self {
        self.server_work_timeout = timeout;
        self
    }

    /// An overall limit per request, body included (default none).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to honour the `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` environment (default true).
    pub fn system_proxy(mut self, enabled: bool) -> Self {
        self.system_proxy = enabled;
        self
    }

    /// Checks the settings and builds the store.
    pub fn build(self) -> Result<HttpStore> {
        let raw = self.endpoint.clone().ok_or_else(|| Error::invalid("the store needs an endpoint"))?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let region = self.region.clone().filter(|r| !r.is_empty());
        let (signing, credentials) = match self.dialect.family {
            Family::Oss => {
                let version = self.signature_version.unwrap_or(SignatureVersion::V4);
                let region = match (region, version) {
                    (Some(r), _) => r,
                    (None, SignatureVersion::V1) => String::new(),
                    (None, SignatureVersion::V4) => region_of(&raw).ok_or_else(|| {
                        Error::invalid(format!("signature V4 needs a region; set one for endpoint {raw:?}"))
                    })?,
                };
                let credentials = match self.credentials.clone() {
                    Some(p) => p,
                    None => Arc::new(Credentials::from_env()?),
                };
                (Signing::Oss(Signer::new(version, region)), credentials)
            }
            Family::S3 => {
                if self.signature_version == Some(SignatureVersion::V1) {
                    return Err(Error::invalid("S3 signs with AWS SigV4: signature V1 is OSS's"));
                }
                let region = region
                    .or_else(|| env("AWS_REGION"))
                    .or_else(|| env("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|| crate::s3::DEFAULT_REGION.to_owned());
                let credentials = match self.credentials.clone() {
                    Some(p) => p,
                    None => Arc::new(Credentials::from_aws_env()?) as Arc<dyn CredentialsProvider>,
                };
                (Signing::S3(S3Signer::new(region)), credentials)
            }
        };
        let mut dialect = self.dialect.clone();
        if !self.tagging {
            dialect.capabilities.tagging = false;
            dialect.capabilities.versioned_tagging = false;
        }
        let endpoint = Endpoint::parse(&raw)?;
        let mut client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("transfer/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = self.timeout {
            client = client.timeout(t);
        }
        if !self.system_proxy {
            client = client.no_proxy();
        }
        if endpoint.is_localhost() {
            client = client.dns_resolver(std::sync::Arc::new(LocalhostResolver));
        }
        let client =
            client.build().map_err(|e| Error::invalid("cannot set up the HTTP client").with_source(e.without_url()))?;
        let crc32c = dialect.family == Family::S3 && self.checksum == S3Checksum::Crc32c;
        let traffic_limit = match self.traffic_limit {
            None => None,
            Some(_) if dialect.family == Family::S3 => {
                return Err(Error::invalid("x-oss-traffic-limit is OSS's: an S3 store takes no traffic limit"))
            }
            Some(bits) if !crate::run::OSS_TRAFFIC_LIMIT.contains(&bits) => {
                return Err(Error::invalid(format!(
                    "a traffic limit of {bits} bit/s is outside what OSS takes ({} to {} bit/s: 30 KiB/s to 100 MiB/s)",
                    crate::run::OSS_TRAFFIC_LIMIT.start(),
                    crate::run::OSS_TRAFFIC_LIMIT.end()
                )))
            }
            Some(bits) => Some(HeaderValue::from(bits)),
        };
        Ok(HttpStore {
            client,
            path_style: self.path_style.unwrap_or_else(|| endpoint.default_path_style()),
            endpoint,
            signing,
            credentials: Refreshing::new(credentials),
            dialect,
            content_md5: self.content_md5,
            crc32c,
            read_timeout: self.read_timeout,
            server_work_timeout: self.server_work_timeout,
            clock: Clock::default(),
            upload_limit: self.upload_limit,
            download_limit: self.download_limit,
            pacer: self.pacer.unwrap_or_default(),
            traffic_limit,
        })
    }
}

/// Resolves `localhost` and every `*.localhost` name to the loopback addresses (RFC 6761), so virtual-hosted
/// requests to `<bucket>.localhost` reach a local server whatever the system resolver does with them. Installed
/// only for a `localhost` endpoint.
#[derive(Debug)]
struct LocalhostResolver;

impl reqwest::dns::Resolve for LocalhostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = if host == "localhost" || host.ends_with(".localhost") {
                vec![(std::net::Ipv4Addr::LOCALHOST, 0).into(), (std::net::Ipv6Addr::LOCALHOST, 0).into()]
            } else {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            };
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The region of an `oss-<region>[-internal].aliyuncs.com` endpoint.
fn region_of(endpoint: &str) -> Option<String> {
    let host = endpoint.split("://").last()?.split([':', '/']).next()?;
    let label = host.strip_suffix(".aliyuncs.com")?.rsplit('.').next()?;
    let region = label.strip_prefix("oss-")?;
    let region = region.strip_suffix("-internal").unwrap_or(region);
    (!region.is_empty() && region != "accelerate" && region != "accelerate-overseas").then(|| region.to_owned())
}

// The wire tests check every request's signature with the server's verifier.
#[cfg(all(test, feature = "server"))]
pub(crate) mod tests;
