//! Request bodies: the hyper body as a streamed [`Body`] of its `Content-Length`, with `Content-MD5`, an S3
//! `x-amz-checksum-crc32c` and the SHA-256 an S3 request signed (`x-amz-content-sha256`) checked (a mismatch
//! fails the body at its end, so the store keeps nothing), and small XML bodies read whole. The SHA-256 and the
//! CRC-32C are checked here as the bytes go by;
//! `Content-MD5` goes with the body as its [`Md5Check`], which the local store applies to the MD5 it computes
//! for the ETag anyway, so each byte is hashed once.

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use md5::{Digest, Md5};
use sha2::Sha256;
use std::pin::Pin;
use std::task::{Context, Poll};
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
    Error::code(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
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

fn chunks(body: Incoming) -> BoxStream<'static, Result<Bytes>> {
    body.into_data_stream()
        .map(|r| r.map_err(|e| Error::new(ErrorKind::Transport, "reading the request body failed").with_source(e)))
        .boxed()
}

/// The body of a data-carrying request (PutObject, UploadPart, AppendObject): `Content-Length` is required
/// (411 `MissingContentLength`), a malformed `Content-MD5` or `x-amz-checksum-crc32c` is refused at once, and a
/// body that does not match its digests fails at its end with 400 `XAmzContentSHA256Mismatch` (checked first),
/// `InvalidDigest` or `BadDigest`.
pub(crate) fn data_body(h: &HeaderMap, body: Incoming, sha256: Option<[u8; 32]>) -> Result<Body> {
    let len = content_length(h)?.ok_or_else(missing_length)?;
    let Expected { md5, crc32c, sha256 } = Expected::of(h, sha256)?;
    let stream = chunks(body);
    let streamed = Expected { md5: None, crc32c, sha256 };
    let body = match streamed.is_empty() {
        false => Body::from_stream(
            len,
            DigestCheck { inner: stream, hashers: Some(streamed.hashers()), expected: streamed }.boxed(),
        ),
        true => Body::from_stream(len, stream),
    };
    Ok(match md5 {
        Some(expected) => body.with_md5_check(Md5Check { expected, mismatch: md5_check_mismatch }),
        None => body,
    })
}

/// A small body read whole (XML documents), checked against its digests when given.
pub(crate) async fn small_body(h: &HeaderMap, body: Incoming, sha256: Option<[u8; 32]>) -> Result<Bytes> {
    let expected = Expected::of(h, sha256)?;
    if content_length(h)?.is_some_and(|n| n > MAX_XML_BODY) {
        return Err(Error::code(
            400,
            "EntityTooLarge",
            format!("The request body is larger than {MAX_XML_BODY} bytes."),
        ));
    }
    let mut out = Vec::new();
    let mut stream = chunks(body);
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
