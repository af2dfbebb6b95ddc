//! Request bodies: the hyper body as a streamed [`Body`] of its `Content-Length`, with `Content-MD5` checked as
//! the bytes go by (a mismatch fails the last chunk, so the store keeps nothing), and small XML bodies read
//! whole.

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use md5::{Digest, Md5};
use std::pin::Pin;
use std::task::{Context, Poll};
use transfer_engine::store::Body;
use transfer_engine::{Error, ErrorKind, Result};

/// Largest XML request body (a Complete of 10 000 parts is about 1 MB).
const MAX_XML_BODY: u64 = 8 * 1024 * 1024;

fn invalid_digest() -> Error {
    Error::code(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
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

fn chunks(body: Incoming) -> BoxStream<'static, Result<Bytes>> {
    body.into_data_stream()
        .map(|r| r.map_err(|e| Error::new(ErrorKind::Transport, "reading the request body failed").with_source(e)))
        .boxed()
}

/// The body of a data-carrying request (PutObject, UploadPart, AppendObject): `Content-Length` is required
/// (411 `MissingContentLength`), a malformed `Content-MD5` is refused at once, and a mismatching one fails the
/// stream at its end with 400 `InvalidDigest`.
pub(crate) fn data_body(h: &HeaderMap, body: Incoming) -> Result<Body> {
    let len = content_length(h)?.ok_or_else(missing_length)?;
    let expected = expected_md5(h)?;
    let stream = chunks(body);
    Ok(match expected {
        Some(expected) => Body::from_stream(len, Md5Check { inner: stream, hasher: Md5::new(), expected, done: false }.boxed()),
        None => Body::from_stream(len, stream),
    })
}

/// A small body read whole (XML documents), checked against `Content-MD5` when given.
pub(crate) async fn small_body(h: &HeaderMap, body: Incoming) -> Result<Bytes> {
    let expected = expected_md5(h)?;
    if content_length(h)?.is_some_and(|n| n > MAX_XML_BODY) {
        return Err(Error::code(400, "EntityTooLarge", format!("The request body is larger than {MAX_XML_BODY} bytes.")));
    }
    let mut out = Vec::new();
    let mut stream = chunks(body);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
        if out.len() as u64 > MAX_XML_BODY {
            return Err(Error::code(400, "EntityTooLarge", format!("The request body is larger than {MAX_XML_BODY} bytes.")));
        }
    }
    if let Some(expected) = expected {
        if Md5::digest(&out).as_slice() != expected {
            return Err(invalid_digest());
        }
    }
    Ok(Bytes::from(out))
}

/// Passes chunks through while hashing them; at the end yields `InvalidDigest` if the MD5 differs.
struct Md5Check {
    inner: BoxStream<'static, Result<Bytes>>,
    hasher: Md5,
    expected: [u8; 16],
    done: bool,
}

impl Stream for Md5Check {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                let digest = std::mem::take(&mut self.hasher).finalize();
                if digest.as_slice() == self.expected {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(invalid_digest())))
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

    fn check(data: &'static [&'static [u8]], expected: [u8; 16]) -> Body {
        let inner = stream::iter(data.iter().map(|c| Ok(Bytes::from_static(c)))).boxed();
        let len = data.iter().map(|c| c.len() as u64).sum();
        Body::from_stream(len, Md5Check { inner, hasher: Md5::new(), expected, done: false }.boxed())
    }

    #[tokio::test]
    async fn md5_is_checked_at_the_end() {
        let good: [u8; 16] = Md5::digest(b"0123456789").into();
        assert_eq!(check(&[b"01234", b"56789"], good).collect().await.unwrap(), Bytes::from_static(b"0123456789"));
        let e = check(&[b"01234", b"5678X"], good).collect().await.unwrap_err();
        assert_eq!(e.service_code(), Some("InvalidDigest"));
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
