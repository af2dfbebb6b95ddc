//! [`Body`]: the bytes of a write, either in memory or a stream of known length.

use crate::error::{Error, Result};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use std::fmt;

/// The bytes of a write: a buffer, or a stream that must yield exactly [`Body::len`] bytes.
///
/// A store consumes the stream and stores nothing unless the stream ends cleanly with exactly `len` bytes: an
/// item that is an error (a dropped connection, a Content-MD5 mismatch found by a wrapper at the end) aborts
/// the write and that error is returned. This is how `transfer serve` streams a 5 GB PUT into the store and
/// still refuses a body whose digest does not match.
pub struct Body {
    len: u64,
    inner: Inner,
}

enum Inner {
    Bytes(Bytes),
    Stream(BoxStream<'static, Result<Bytes>>),
}

impl Body {
    /// A body held in memory. Cheap to clone, so a retry can resend it.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self { len: bytes.len() as u64, inner: Inner::Bytes(bytes) }
    }

    /// A body of `len` bytes produced by `stream`.
    pub fn from_stream(len: u64, stream: BoxStream<'static, Result<Bytes>>) -> Self {
        Self { len, inner: Inner::Stream(stream) }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::from_bytes(Bytes::new())
    }

    /// The declared length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer, when the body is in memory.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.inner {
            Inner::Bytes(b) => Some(b),
            Inner::Stream(_) => None,
        }
    }

    /// The chunks as a stream; it fails with `IncompleteBody` if the chunks do not add up to [`Body::len`].
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes>> {
        let declared = self.len;
        let inner = match self.inner {
            Inner::Bytes(b) => return stream::once(async move { Ok(b) }).boxed(),
            Inner::Stream(s) => s,
        };
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
                        if seen > declared {
                            done = true;
                            Some(Err(incomplete(declared, seen)))
                        } else {
                            Some(Ok(chunk))
                        }
                    }
                    Some(Err(e)) => {
                        done = true;
                        Some(Err(e))
                    }
                    None if seen != declared => Some(Err(incomplete(declared, seen))),
                    None => None,
                };
                futures::future::ready(out)
            })
            .boxed()
    }

    /// Reads the whole body into memory.
    pub async fn collect(self) -> Result<Bytes> {
        if let Inner::Bytes(b) = self.inner {
            return Ok(b);
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
        f.debug_struct("Body").field("len", &self.len).field("kind", &kind).finish()
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
}
