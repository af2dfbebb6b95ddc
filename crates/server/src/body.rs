//! Request bodies: the hyper body as a streamed [`Body`] of its `Content-Length` (or of unknown length, sent
//! with `Transfer-Encoding: chunked`), cut off when it sends nothing for the body timeout, with `Content-MD5`,
//! an S3 `x-amz-checksum-crc32c` and the SHA-256 an S3 request signed (`x-amz-content-sha256`) checked (a
//! mismatch fails the body at its end, so the store keeps nothing), and small XML bodies read whole. The SHA-256
//! and the CRC-32C are checked here as the bytes go by; `Content-MD5` goes with the body as its [`Md5Check`],
//! which the local store applies to the MD5 it computes for the ETag anyway, so each byte is hashed once. What
//! a refused request leaves unread of its body is drained in the background (up to a limit), so the client
//! reads the refusal rather than a reset connection.

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use http::HeaderMap;
use http_body_util::{BodyDataStream, BodyExt};
use hyper::body::{Body as _, Incoming};
use md5::{Digest, Md5};
use sha2::Sha256;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use transfer_engine::store::{Body, Checksum, Md5Check, CRC32C_HEADER};
use transfer_engine::{Error, ErrorKind, Result};

/// Largest XML request body (a Complete of 10 000 parts is about 1 MB).
const MAX_XML_BODY: u64 = 8 * 1024 * 1024;

fn invalid_digest() -> Error {
    Error::code(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
}

/// A body whose MD5 is not the `Content-MD5` it came with. OSS calls it `InvalidDigest`, S3 `BadDigest`: the
/// `CalculatedDigest` element (what S3 sends with it) tells the S3 edge which it is.
fn md5_mismatch(calculated: &[u8]) -> Error {
    Error::code(400, "InvalidDigest", "The Content-MD5 you specified did not match what was received.")
        .with_extra("CalculatedDigest", transfer_engine::util::b64(calculated))
}

/// [`md5_mismatch`] as a body's [`Md5Check`] calls it.
fn md5_check_mismatch(calculated: &[u8; 16]) -> Error {
    md5_mismatch(calculated)
}

/// A malformed `x-amz-checksum-crc32c`, refused before any byte is read.
fn invalid_crc32c() -> Error {
    Error::code(400, "InvalidRequest", format!("Value for {CRC32C_HEADER} header is invalid."))
}

/// A body whose CRC-32C is not the `x-amz-checksum-crc32c` it came with (S3's answer).
fn crc32c_mismatch() -> Error {
    Error::code(400, "BadDigest", "The CRC32C you specified did not match the calculated checksum.")
}

/// A body whose SHA-256 is not the `x-amz-content-sha256` its signature covers (S3 only).
fn sha256_mismatch(expected: &[u8; 32], calculated: &[u8]) -> Error {
    Error::code(
        400,
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    )
    .with_extra("ClientComputedContentSHA256", hex::encode(expected))
    .with_extra("S3ComputedContentSHA256", hex::encode(calculated))
}

/// The digests a body must have: `Content-MD5`, an S3 CRC-32C, and the SHA-256 an S3 signature covers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expected {
    md5: Option<[u8; 16]>,
    crc32c: Option<u32>,
    sha256: Option<[u8; 32]>,
}

impl Expected {
    /// `Content-MD5` (checked for form at once: a malformed one is `InvalidDigest` before any byte is read) and
    /// the SHA-256 an S3 request signed, if any.
    pub(crate) fn of(h: &HeaderMap, sha256: Option<[u8; 32]>) -> Result<Expected> {
        Ok(Expected { md5: expected_md5(h)?, crc32c: expected_crc32c(h)?, sha256 })
    }

    fn is_empty(&self) -> bool {
        self.md5.is_none() && self.crc32c.is_none() && self.sha256.is_none()
    }

    fn hashers(&self) -> Hashers {
        Hashers {
            md5: self.md5.map(|_| Md5::new()),
            crc32c: self.crc32c.map(|_| 0),
            sha256: self.sha256.map(|_| Sha256::new()),
        }
    }
}

/// Running digests of the bytes seen so far.
#[derive(Default)]
struct Hashers {
    md5: Option<Md5>,
    crc32c: Option<u32>,
    sha256: Option<Sha256>,
}

impl Hashers {
    fn update(&mut self, chunk: &[u8]) {
        if let Some(h) = &mut self.md5 {
            h.update(chunk);
        }
        if let Some(c) = &mut self.crc32c {
            *c = crc32c::crc32c_append(*c, chunk);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(chunk);
        }
    }

    /// Compares the digests with `expected`: the signed SHA-256 first (S3 checks the payload as part of the
    /// request's authentication), then Content-MD5.
    fn check(self, expected: &Expected) -> Result<()> {
        if let (Some(h), Some(want)) = (self.sha256, &expected.sha256) {
            let got = h.finalize();
            if got.as_slice() != want {
                return Err(sha256_mismatch(want, &got));
            }
        }
        if let (Some(h), Some(want)) = (self.md5, &expected.md5) {
            let got = h.finalize();
            if got.as_slice() != want {
                return Err(md5_mismatch(&got));
            }
        }
        if self.crc32c.zip(expected.crc32c).is_some_and(|(got, want)| got != want) {
            return Err(crc32c_mismatch());
        }
        Ok(())
    }
}

fn missing_length() -> Error {
    Error::code(
        411,
        "MissingContentLength",
        "You must provide the Content-Length HTTP header (or send the body with Transfer-Encoding: chunked).",
    )
}

/// A body that sent no byte for `idle`: S3's and OSS's `RequestTimeout`, with `Connection: close` (the rest of
/// the body is never read, so the connection cannot carry another request).
fn body_timeout(idle: Duration) -> Error {
    Error::code(
        400,
        "RequestTimeout",
        format!(
            "Your socket connection to the server was not read from or written to within the timeout period: no \
             byte of the request body arrived for {} s. Idle connections will be closed; send the body without \
             pausing, or retry.",
            idle.as_secs_f64()
        ),
    )
    .with_header("connection", "close")
}

/// True when the request's body is sent with `Transfer-Encoding: chunked` (its last coding), so its length is
/// known only at its end.
fn is_chunked(h: &HeaderMap) -> bool {
    h.get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// The declared `Content-Length`; `None` when absent.
fn content_length(h: &HeaderMap) -> Result<Option<u64>> {
    match h.get(http::header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| Error::code(400, "InvalidArgument", "The Content-Length header is not a number.")),
    }
}

/// The expected digest from `Content-MD5`, checked for form before any byte is read.
fn expected_md5(h: &HeaderMap) -> Result<Option<[u8; 16]>> {
    let Some(v) = h.get("content-md5") else { return Ok(None) };
    let raw = v.to_str().ok().and_then(|s| transfer_engine::util::b64_decode(s).ok()).ok_or_else(invalid_digest)?;
    <[u8; 16]>::try_from(raw.as_slice()).map(Some).map_err(|_| invalid_digest())
}

/// The expected CRC-32C from `x-amz-checksum-crc32c`, checked for form before any byte is read.
fn expected_crc32c(h: &HeaderMap) -> Result<Option<u32>> {
    let Some(v) = h.get(CRC32C_HEADER) else { return Ok(None) };
    match v.to_str().ok().map(Checksum::parse_crc32c) {
        Some(Ok(Checksum::Crc32c(c))) => Ok(Some(c)),
        _ => Err(invalid_crc32c()),
    }
}

/// The most of a refused request's body that is read and thrown away so that its client, still sending, gets to
/// read the answer (a connection closed under a client that is still sending is reset, and the client sees a
/// broken connection, which it retries, instead of the error). Covers a 64 MiB part, this engine's default;
/// anything larger, known from its `Content-Length`, is not read: its connection is closed at once.
const DRAIN_LIMIT: u64 = 128 * 1024 * 1024;

/// The request body's data frames as a stream, cut off when the body sends nothing for `idle` (the timer runs
/// only while the consumer waits for bytes, not while it writes what it has). Dropped before the body ended,
/// the rest is drained in the background ([`drain_later`]) so the answer reaches the client.
struct Frames {
    /// `None` once the body ended, failed or timed out.
    inner: Option<BodyDataStream<Incoming>>,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The timer is set for the current wait.
    armed: bool,
    /// Bytes still to come by the `Content-Length`; `None` for a chunked body.
    left: Option<u64>,
}

impl Frames {
    fn new(body: Incoming, idle: Duration, declared: Option<u64>) -> Self {
        Frames {
            inner: Some(body.into_data_stream()),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
            left: declared,
        }
    }
}

impl Stream for Frames {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        if !this.armed {
            this.timer.as_mut().reset(tokio::time::Instant::now() + this.idle);
            this.armed = true;
        }
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.armed = false;
                this.left = this.left.map(|l| l.saturating_sub(chunk.len() as u64));
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.inner = None;
                let e = Error::new(ErrorKind::Transport, "reading the request body failed").with_source(e);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.inner = None;
                    Poll::Ready(Some(Err(body_timeout(this.idle))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            drain_later(inner, self.idle, self.left);
        }
    }
}

/// Reads what is left of a body nobody wants (a refused write) in the background and throws it away, so that
/// the connection stays in step and the client reads the answer: up to [`DRAIN_LIMIT`] bytes, as long as bytes
/// keep coming within `idle`. A body declared larger is not read; dropping it closes the connection.
pub(crate) fn drain_later(mut frames: BodyDataStream<Incoming>, idle: Duration, left: Option<u64>) {
    if left.is_some_and(|l| l == 0 || l > DRAIN_LIMIT) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let mut drained = 0u64;
        while drained <= DRAIN_LIMIT {
            match tokio::time::timeout(idle, frames.next()).await {
                Ok(Some(Ok(chunk))) => drained += chunk.len() as u64,
                _ => break,
            }
        }
    });
}

/// An unread request body (an operation refused before it took its body) drained like a [`Frames`] dropped.
pub(crate) fn drain_unread(body: Incoming, h: &HeaderMap, idle: Duration) {
    if body.is_end_stream() {
        return;
    }
    let declared = content_length(h).ok().flatten();
    drain_later(body.into_data_stream(), idle, declared);
}

fn chunks(body: Incoming, idle: Duration, declared: Option<u64>) -> BoxStream<'static, Result<Bytes>> {
    Frames::new(body, idle, declared).boxed()
}

/// The body of a data-carrying request (PutObject, UploadPart, AppendObject): of its `Content-Length`, or of
/// unknown length with `Transfer-Encoding: chunked` (the store enforces its limits as the bytes arrive); with
/// neither, 411 `MissingContentLength`. A malformed `Content-MD5` or `x-amz-checksum-crc32c` is refused at once,
/// and a body that does not match its digests fails at its end with 400 `XAmzContentSHA256Mismatch` (checked
/// first), `InvalidDigest` or `BadDigest`. A body that pauses for `idle` fails with 400 `RequestTimeout`. With a
/// `limit` (`x-oss-traffic-limit`), its bytes are taken no faster than the rate.
pub(crate) fn data_body(
    h: &HeaderMap,
    body: Incoming,
    sha256: Option<[u8; 32]>,
    idle: Duration,
    limit: Option<std::sync::Arc<transfer_engine::run::Bandwidth>>,
) -> Result<Body> {
    // From here on, a refusal drains what is left of the body (see `Frames`).
    let stream = transfer_engine::run::paced(chunks(body, idle, content_length(h).ok().flatten()), limit);
    let len = match content_length(h)? {
        Some(len) => Some(len),
        None if is_chunked(h) => None,
        None => return Err(missing_length()),
    };
    let Expected { md5, crc32c, sha256 } = Expected::of(h, sha256)?;
    let streamed = Expected { md5: None, crc32c, sha256 };
    let stream = match streamed.is_empty() {
        false => DigestCheck { inner: stream, hashers: Some(streamed.hashers()), expected: streamed }.boxed(),
        true => stream,
    };
    let body = match len {
        Some(len) => Body::from_stream(len, stream),
        None => Body::from_stream_of_unknown_length(stream),
    };
    Ok(match md5 {
        Some(expected) => body.with_md5_check(Md5Check { expected, mismatch: md5_check_mismatch }),
        None => body,
    })
}

/// A small body read whole (XML documents), checked against its digests when given.
pub(crate) async fn small_body(
    h: &HeaderMap,
    body: Incoming,
    sha256: Option<[u8; 32]>,
    idle: Duration,
) -> Result<Bytes> {
    // From here on, a refusal drains what is left of the body (see `Frames`).
    let mut stream = chunks(body, idle, content_length(h).ok().flatten());
    let expected = Expected::of(h, sha256)?;
    if content_length(h)?.is_some_and(|n| n > MAX_XML_BODY) {
        return Err(Error::code(
            400,
            "EntityTooLarge",
            format!("The request body is larger than {MAX_XML_BODY} bytes."),
        ));
    }
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
        if out.len() as u64 > MAX_XML_BODY {
            return Err(Error::code(
                400,
                "EntityTooLarge",
                format!("The request body is larger than {MAX_XML_BODY} bytes."),
            ));
        }
    }
    let mut hashers = expected.hashers();
    hashers.update(&out);
    hashers.check(&expected)?;
    Ok(Bytes::from(out))
}

/// Passes chunks through while hashing them; at the end yields the first digest mismatch, if any. Data bodies
/// use it for the signed SHA-256 only (their `Content-MD5` is the body's [`Md5Check`]).
struct DigestCheck {
    inner: BoxStream<'static, Result<Bytes>>,
    /// `None` once the stream ended.
    hashers: Option<Hashers>,
    expected: Expected,
}

impl Stream for DigestCheck {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.hashers.is_none() {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(h) = &mut self.hashers {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.hashers = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let hashers = self.hashers.take().unwrap_or_default();
                match hashers.check(&self.expected) {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn check(data: &'static [&'static [u8]], expected: Expected) -> Body {
        let inner = stream::iter(data.iter().map(|c| Ok(Bytes::from_static(c)))).boxed();
        let len = data.iter().map(|c| c.len() as u64).sum();
        Body::from_stream(len, DigestCheck { inner, hashers: Some(expected.hashers()), expected }.boxed())
    }

    #[tokio::test]
    async fn md5_is_checked_at_the_end() {
        let good = Expected { md5: Some(Md5::digest(b"0123456789").into()), ..Default::default() };
        assert_eq!(check(&[b"01234", b"56789"], good).collect().await.unwrap(), Bytes::from_static(b"0123456789"));
        let e = check(&[b"01234", b"5678X"], good).collect().await.unwrap_err();
        assert_eq!(e.service_code(), Some("InvalidDigest"));
        assert!(e.service_error().unwrap().extra("CalculatedDigest").is_some());
    }

    #[tokio::test]
    async fn the_signed_sha256_is_checked_at_the_end_before_md5() {
        let sha: [u8; 32] = Sha256::digest(b"0123456789").into();
        let md5: [u8; 16] = Md5::digest(b"0123456789").into();
        let good = Expected { md5: Some(md5), crc32c: None, sha256: Some(sha) };
        assert_eq!(check(&[b"0123", b"456789"], good).collect().await.unwrap(), Bytes::from_static(b"0123456789"));
        let e = check(&[b"0123", b"45678X"], good).collect().await.unwrap_err();
        assert_eq!((e.status(), e.service_code()), (Some(400), Some("XAmzContentSHA256Mismatch")));
        let only_sha = Expected { sha256: Some(sha), ..Default::default() };
        assert!(check(&[b"X"], only_sha).collect().await.is_err());
    }

    #[tokio::test]
    async fn crc32c_is_checked_at_the_end() {
        let mut h = HeaderMap::new();
        h.insert(CRC32C_HEADER, Checksum::crc32c(b"0123456789").value().parse().unwrap());
        let good = Expected::of(&h, None).unwrap();
        assert_eq!(check(&[b"012", b"3456789"], good).collect().await.unwrap(), Bytes::from_static(b"0123456789"));
        let e = check(&[b"012", b"345678X"], good).collect().await.unwrap_err();
        assert_eq!((e.status(), e.service_code()), (Some(400), Some("BadDigest")));
        for bad in ["AAAA", "not base64!", "AAAAAAAA"] {
            h.insert(CRC32C_HEADER, bad.parse().unwrap());
            assert_eq!(Expected::of(&h, None).unwrap_err().service_code(), Some("InvalidRequest"), "{bad}");
        }
    }

    #[test]
    fn chunked_is_the_last_transfer_coding() {
        let mut h = HeaderMap::new();
        assert!(!is_chunked(&h));
        h.insert(http::header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(is_chunked(&h));
        h.insert(http::header::TRANSFER_ENCODING, "gzip, Chunked".parse().unwrap());
        assert!(is_chunked(&h));
        h.insert(http::header::TRANSFER_ENCODING, "chunked, gzip".parse().unwrap());
        assert!(!is_chunked(&h));
    }

    #[test]
    fn malformed_md5_is_refused_before_reading() {
        let mut h = HeaderMap::new();
        h.insert("content-md5", "not-base64!".parse().unwrap());
        assert_eq!(expected_md5(&h).unwrap_err().service_code(), Some("InvalidDigest"));
        h.insert("content-md5", "AAAA".parse().unwrap());
        assert_eq!(expected_md5(&h).unwrap_err().service_code(), Some("InvalidDigest"));
        h.insert("content-md5", "eB5eJF1ptWaXm4bijSPyxw==".parse().unwrap());
        assert!(expected_md5(&h).unwrap().is_some());
    }
}
