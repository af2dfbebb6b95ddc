//! [`Body`]: the bytes of a write, either in memory or a stream (of known length, or, for a chunked HTTP request,
//! of a length known only at its end).

use crate::error::{Error, Result};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use std::fmt;

/// The bytes of a write: a buffer, or a stream that must yield exactly [`Body::len`] bytes, or a stream whose
/// length is known only once it ends ([`Body::from_stream_of_unknown_length`]: `transfer serve` receiving a
/// `Transfer-Encoding: chunked` request).
///
/// A store consumes the stream and stores nothing unless the stream ends cleanly with exactly `len` bytes: an
/// item that is an error (a dropped connection, a Content-MD5 mismatch found by a wrapper at the end) aborts
/// the write and that error is returned. This is how `transfer serve` streams a 5 GB PUT into the store and
/// still refuses a body whose digest does not match.
///
/// A body may carry the MD5 its bytes must have ([`Body::with_md5_check`], `Content-MD5`): [`Body::into_stream`]
/// then hashes the bytes and fails at the end on a mismatch, unless the consumer took the check to apply it to
/// the MD5 it computes anyway (the local store does, so each byte is hashed once).
pub struct Body {
    /// The declared length; `None` for a stream of unknown length.
    len: Option<u64>,
    inner: Inner,
    md5: Option<Md5Check>,
}

/// An MD5 the bytes of a [`Body`] must have, and the error bytes with another one are.
#[derive(Debug, Clone, Copy)]
pub struct Md5Check {
    /// The digest the bytes must have.
    pub expected: [u8; 16],
    /// The error for bytes whose MD5 is the argument.
    pub mismatch: fn(&[u8; 16]) -> Error,
}

impl Md5Check {
    /// `Ok` when `calculated` is the expected digest, else the mismatch error.
    pub fn check(&self, calculated: &[u8; 16]) -> Result<()> {
        if *calculated == self.expected {
            Ok(())
        } else {
            Err((self.mismatch)(calculated))
        }
    }
}

enum Inner {
    Bytes(Bytes),
    Stream(BoxStream<'static, Result<Bytes>>),
}

impl Body {
    /// A body held in memory. Cheap to clone, so a retry can resend it.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self { len: Some(bytes.len() as u64), inner: Inner::Bytes(bytes), md5: None }
    }

    /// A body of `len` bytes produced by `stream`.
    pub fn from_stream(len: u64, stream: BoxStream<'static, Result<Bytes>>) -> Self {
        Self { len: Some(len), inner: Inner::Stream(stream), md5: None }
    }

    /// A body whose length is known only once `stream` ends (an HTTP request body sent with
    /// `Transfer-Encoding: chunked`). A consumer that needs the length first (an HTTP client, which sends
    /// `Content-Length`) refuses it; a store that receives it enforces its size limits as the bytes arrive.
    pub fn from_stream_of_unknown_length(stream: BoxStream<'static, Result<Bytes>>) -> Self {
        Self { len: None, inner: Inner::Stream(stream), md5: None }
    }

    /// This body's bytes must have the MD5 `check.expected`; see [`Body`].
    pub fn with_md5_check(mut self, check: Md5Check) -> Self {
        self.md5 = Some(check);
        self
    }

    /// Takes the MD5 check off the body, for a consumer that hashes the bytes anyway and applies it itself
    /// (after the last byte, before keeping anything).
    pub fn take_md5_check(&mut self) -> Option<Md5Check> {
        self.md5.take()
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::from_bytes(Bytes::new())
    }

    /// The declared length in bytes. A body of unknown length ([`Body::from_stream_of_unknown_length`])
    /// declares none and answers `u64::MAX`, so that a consumer checking it against a limit refuses it rather
    /// than trust a guess; [`Body::known_len`] tells the two apart.
    pub fn len(&self) -> u64 {
        self.len.unwrap_or(u64::MAX)
    }

    /// The declared length, `None` for a body of unknown length.
    pub fn known_len(&self) -> Option<u64> {
        self.len
    }

    /// True for a zero-length body (never for a body of unknown length).
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// The buffer, when the body is in memory (and carries no MD5 check: such a body is read as a stream).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.inner {
            Inner::Bytes(b) if self.md5.is_none() => Some(b),
            _ => None,
        }
    }

    /// The chunks as a stream; it fails with `IncompleteBody` if the chunks do not add up to [`Body::len`] (a body
    /// of unknown length takes what comes), and at the end with the check's error if the body carries an MD5
    /// check the bytes fail.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes>> {
        let declared = self.len;
        let check = self.md5;
        let inner = match (self.inner, check) {
            (Inner::Bytes(b), None) => return stream::once(async move { Ok(b) }).boxed(),
            (Inner::Bytes(b), Some(_)) => stream::once(async move { Ok(b) }).boxed(),
            (Inner::Stream(s), _) => s,
        };
        let mut md5 = check.map(|_| Md5::new());
        let mut seen = 0u64;
        let mut done = false;
        inner
            .map(Some)
            .chain(stream::once(async { None }))
            .filter_map(move |item| {
                let out = match item {
                    _ if done => None,
                    Some(Ok(chunk)) => {
                        seen += chunk.len() as u64;
                        if let Some(declared) = declared.filter(|&d| seen > d) {
                            done = true;
                            Some(Err(incomplete(declared, seen)))
                        } else {
                            if let Some(h) = &mut md5 {
                                h.update(&chunk);
                            }
                            Some(Ok(chunk))
                        }
                    }
                    Some(Err(e)) => {
                        done = true;
                        Some(Err(e))
                    }
                    None if declared.is_some_and(|d| seen != d) => Some(Err(incomplete(declared.unwrap_or(0), seen))),
                    None => match (md5.take(), &check) {
                        (Some(h), Some(c)) => c.check(&h.finalize().into()).err().map(Err),
                        _ => None,
                    },
                };
                futures::future::ready(out)
            })
            .boxed()
    }

    /// Reads the whole body into memory.
    pub async fn collect(self) -> Result<Bytes> {
        if let (Inner::Bytes(b), None) = (&self.inner, &self.md5) {
            return Ok(b.clone());
        }
        let chunks: Vec<Bytes> = self.into_stream().try_collect().await?;
        Ok(Bytes::from(chunks.concat()))
    }
}

fn incomplete(declared: u64, seen: u64) -> Error {
    Error::code(
        400,
        "IncompleteBody",
        format!("You did not provide the number of bytes specified by the Content-Length HTTP header: expected {declared}, got {seen}."),
    )
    .with_retry(crate::Retry::Temporary)
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Bytes(_) => "bytes",
            Inner::Stream(_) => "stream",
        };
        f.debug_struct("Body")
            .field("len", &self.len)
            .field("kind", &kind)
            .field("md5_check", &self.md5.is_some())
            .finish()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self::from_bytes(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Self::from_bytes(v)
    }
}

impl From<&'static [u8]> for Body {
    fn from(v: &'static [u8]) -> Self {
        Self::from_bytes(Bytes::from_static(v))
    }
}

impl From<&'static str> for Body {
    fn from(v: &'static str) -> Self {
        Self::from_bytes(Bytes::from_static(v.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stream_length_is_enforced() {
        let chunks = || stream::iter(vec![Ok(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"de"))]).boxed();
        assert_eq!(Body::from_stream(5, chunks()).collect().await.unwrap(), Bytes::from_static(b"abcde"));
        let e = Body::from_stream(6, chunks()).collect().await.unwrap_err();
        assert_eq!(e.service_code(), Some("IncompleteBody"));
        assert!(Body::from_stream(4, chunks()).collect().await.is_err());
    }

    #[tokio::test]
    async fn a_stream_of_unknown_length_takes_what_comes_and_keeps_its_md5_check() {
        let chunks = || stream::iter(vec![Ok(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"de"))]).boxed();
        let body = Body::from_stream_of_unknown_length(chunks());
        assert_eq!((body.known_len(), body.len(), body.is_empty()), (None, u64::MAX, false));
        assert_eq!(body.collect().await.unwrap(), Bytes::from_static(b"abcde"));
        let empty = Body::from_stream_of_unknown_length(stream::empty().boxed());
        assert_eq!(empty.collect().await.unwrap(), Bytes::new());
        let bad = Md5Check { expected: [0; 16], mismatch };
        let e = Body::from_stream_of_unknown_length(chunks()).with_md5_check(bad).collect().await.unwrap_err();
        assert_eq!(e.service_code(), Some("InvalidDigest"));
        assert_eq!(Body::from_stream(5, chunks()).known_len(), Some(5));
    }

    fn mismatch(got: &[u8; 16]) -> Error {
        Error::code(400, "InvalidDigest", hex::encode(got))
    }

    #[tokio::test]
    async fn an_md5_check_fails_the_stream_at_its_end_unless_taken() {
        let chunks = || stream::iter(vec![Ok(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"de"))]).boxed();
        let good = Md5Check { expected: Md5::digest(b"abcde").into(), mismatch };
        let bad = Md5Check { expected: [0; 16], mismatch };
        assert_eq!(Body::from_stream(5, chunks()).with_md5_check(good).collect().await.unwrap(), &b"abcde"[..]);
        let e = Body::from_stream(5, chunks()).with_md5_check(bad).collect().await.unwrap_err();
        assert_eq!(
            (e.service_code(), e.message()),
            (Some("InvalidDigest"), hex::encode(Md5::digest(b"abcde")).as_str())
        );
        // Every chunk passes before the error.
        let items: Vec<Result<Bytes>> =
            Body::from_stream(5, chunks()).with_md5_check(bad).into_stream().collect().await;
        assert!(items.len() == 3 && items[..2].iter().all(|i| i.is_ok()) && items[2].is_err());
        // In memory too, and such a body is not handed out as a buffer.
        let mem = Body::from_bytes(&b"abcde"[..]).with_md5_check(bad);
        assert!(mem.as_bytes().is_none());
        assert!(mem.collect().await.is_err());
        // Taken, the check is the consumer's.
        let mut body = Body::from_stream(5, chunks()).with_md5_check(bad);
        assert!(body.take_md5_check().is_some_and(|c| c.check(&Md5::digest(b"abcde").into()).is_err()));
        assert_eq!(body.collect().await.unwrap(), &b"abcde"[..]);
    }
}
