//! CRC-64 checking wrappers for the bodies the client sends and receives.
//!
//! Uploads: [`UploadTap::wrap`] feeds every chunk of an outgoing stream into a running CRC-64 (shared with the
//! caller), refreshes the idle-timeout clock, and parks an error of the source stream where the caller can take
//! it back after the HTTP stack reports a failed send. The caller compares the CRC with the server's
//! `x-oss-hash-crc64ecma` through [`check_crc`].
//!
//! Downloads: [`verify_download`] holds back one chunk so the last chunk is only released after the byte count
//! and (for whole-object reads) the CRC-64 have been checked; on a mismatch the stream ends with an error
//! instead of the last chunk, and a caller that writes chunks as they come never sees a clean end.

use crate::crc64::Crc64;
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The clock of the last progress on a connection: the idle timeout fires when no byte moved for too long.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    /// A clock that saw progress now.
    pub(crate) fn new() -> Self {
        Self { base: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    /// Records progress now.
    pub(crate) fn touch(&self) {
        let now = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// How long since the last progress.
    pub(crate) fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

#[derive(Default)]
struct TapState {
    crc: Crc64,
    error: Option<Error>,
}

/// The caller's side of a wrapped upload stream: the CRC-64 of what was sent, and the source stream's error.
#[derive(Clone)]
pub(crate) struct UploadTap {
    state: Arc<Mutex<TapState>>,
}

impl std::fmt::Debug for UploadTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (crc, len) = self.sent();
        f.debug_struct("UploadTap").field("crc", &crc).field("len", &len).finish()
    }
}

impl UploadTap {
    /// Wraps `stream`: returns the stream to hand to the HTTP client and the tap that observes it.
    pub(crate) fn wrap(
        stream: BoxStream<'static, Result<Bytes>>,
        progress: Progress,
    ) -> (impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static, UploadTap) {
        let tap = UploadTap { state: Arc::new(Mutex::new(TapState::default())) };
        let state = tap.state.clone();
        let out = stream.map(move |item| {
            progress.touch();
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            match item {
                Ok(chunk) => {
                    st.crc.update(&chunk);
                    Ok(chunk)
                }
                Err(e) => {
                    let msg = e.to_string();
                    st.error.get_or_insert(e);
                    Err(std::io::Error::other(format!("request body failed: {msg}")))
                }
            }
        });
        (out, tap)
    }

    /// CRC-64 and length of the bytes handed to the HTTP client so far.
    pub(crate) fn sent(&self) -> (u64, u64) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (st.crc.value(), st.crc.len())
    }

    /// The error the source stream produced, if any (taken once).
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).error.take()
    }
}

/// Compares the CRC-64 the client computed with the one the server reported. A missing server value passes
/// (copies and old objects may have none); a different one is a retryable [`ErrorKind::Integrity`] error.
pub(crate) fn check_crc(what: &str, computed: u64, reported: Option<u64>) -> Result<()> {
    match reported {
        Some(got) if got != computed => Err(Error::new(
            ErrorKind::Integrity,
            format!("CRC-64 mismatch on {what}: the client computed {computed}, the server reported {got}"),
        )),
        _ => Ok(()),
    }
}

struct Verify {
    inner: BoxStream<'static, Result<Bytes>>,
    pending: Option<Bytes>,
    crc: Crc64,
    expected_len: u64,
    expected_crc: Option<u64>,
    idle: Option<Duration>,
    done: bool,
}

/// Wraps a response body: every chunk must arrive within `idle` of the previous one, the body must carry
/// exactly `expected_len` bytes (else a retryable transport error), and when `expected_crc` is given the
/// CRC-64 of the body must equal it (else a retryable integrity error in place of the last chunk).
pub(crate) fn verify_download(
    inner: BoxStream<'static, Result<Bytes>>,
    expected_len: u64,
    expected_crc: Option<u64>,
    idle: Option<Duration>,
) -> BoxStream<'static, Result<Bytes>> {
    let st = Verify { inner, pending: None, crc: Crc64::new(), expected_len, expected_crc, idle, done: false };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let next = match st.idle {
                Some(d) => match tokio::time::timeout(d, st.inner.next()).await {
                    Ok(n) => n,
                    Err(_) => Some(Err(Error::new(
                        ErrorKind::Transport,
                        format!("no response bytes for {} s; the download stalled", d.as_secs()),
                    ))),
                },
                None => st.inner.next().await,
            };
            match next {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    st.crc.update(&chunk);
                    if st.crc.len() > st.expected_len {
                        st.done = true;
                        let msg = format!("the response body is longer than its {} bytes", st.expected_len);
                        return Some((Err(Error::new(ErrorKind::Protocol, msg)), st));
                    }
                    if let Some(prev) = st.pending.replace(chunk) {
                        return Some((Ok(prev), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    if st.crc.len() != st.expected_len {
                        let msg = format!(
                            "the response body was cut short: {} of {} bytes received",
                            st.crc.len(),
                            st.expected_len
                        );
                        return Some((Err(Error::new(ErrorKind::Transport, msg)), st));
                    }
                    if let Err(e) = check_crc("the downloaded object", st.crc.value(), st.expected_crc) {
                        return Some((Err(e), st));
                    }
                    let last = st.pending.take()?;
                    return Some((Ok(last), st));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc64::checksum;
    use futures::stream;
    use futures::TryStreamExt;

    fn chunks(parts: &[&'static [u8]]) -> BoxStream<'static, Result<Bytes>> {
        stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()).boxed()
    }

    #[tokio::test]
    async fn download_passes_when_crc_and_length_match() {
        let crc = checksum(b"hello world");
        let got: Vec<Bytes> =
            verify_download(chunks(&[b"hello", b" ", b"world"]), 11, Some(crc), None).try_collect().await.unwrap();
        assert_eq!(got.concat(), b"hello world");
    }

    #[tokio::test]
    async fn download_crc_mismatch_replaces_the_last_chunk() {
        let mut s = verify_download(chunks(&[b"hello", b" ", b"world"]), 11, Some(42), None);
        assert_eq!(s.next().await.unwrap().unwrap(), "hello");
        assert_eq!(s.next().await.unwrap().unwrap(), " ");
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity);
        assert!(e.is_retryable());
        assert!(e.to_string().contains("42"), "{e}");
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn short_body_is_a_transport_error() {
        let e = verify_download(chunks(&[b"hello"]), 11, None, None).try_collect::<Vec<_>>().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transport);
        assert!(e.is_retryable());
    }

    #[tokio::test]
    async fn upload_tap_computes_crc_and_keeps_the_source_error() {
        let (s, tap) = UploadTap::wrap(chunks(&[b"hello", b" world"]), Progress::new());
        let sent: Vec<Bytes> = s.try_collect().await.unwrap();
        assert_eq!(sent.concat(), b"hello world");
        assert_eq!(tap.sent(), (checksum(b"hello world"), 11));

        let failing = stream::iter(vec![Ok(Bytes::from_static(b"x")), Err(Error::invalid("disk gone"))]).boxed();
        let (s, tap) = UploadTap::wrap(failing, Progress::new());
        assert!(s.try_collect::<Vec<_>>().await.is_err());
        assert_eq!(tap.take_error().unwrap().message(), "disk gone");
    }

    #[test]
    fn crc_mismatch_names_both_values() {
        check_crc("part", 7, Some(7)).unwrap();
        check_crc("part", 7, None).unwrap();
        let e = check_crc("part 3", 7, Some(8)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity);
        assert!(e.is_retryable());
        let s = e.to_string();
        assert!(s.contains("part 3") && s.contains('7') && s.contains('8'), "{s}");
    }
}
