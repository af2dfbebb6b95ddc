//! Credentials that change while a job runs: STS tokens last an hour, and a migration runs for days.
//!
//! A store asks its [`CredentialsProvider`] for the credentials to sign each request with, through a cache
//! (`Refreshing`) that asks again only when it must: when the credentials it holds come within
//! [`REFRESH_AHEAD`] of their expiration, or when the provider says they may have changed (a
//! [`CredentialsFile`] rewritten by whatever renews the token). A provider that fails while the held credentials
//! are still valid is retried on the next request, and the held ones are used meanwhile. Providers:
//! - [`Credentials`] themselves: fixed (the environment's, a profile's variables);
//! - [`CredentialsFile`]: a JSON file re-read when it changes (an STS token a sidecar renews, a Kubernetes
//!   Secret mounted as a file);
//! - anything an embedder implements (a callback asking its own STS client).
//!
//! Credentials are never logged: only their access key id and expiration.

use super::Credentials;
use crate::error::{Error, ErrorKind, Result};
use async_trait::async_trait;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How long before their expiration credentials are asked for again.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

/// How often at most a provider is asked whether its credentials [changed](CredentialsProvider::changed).
const POLL: Duration = Duration::from_secs(1);

/// Where a store's credentials come from. See the module docs.
#[async_trait]
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    /// The credentials to sign with now (with their [expiration](Credentials::expiration), when they have one).
    async fn credentials(&self) -> Result<Credentials>;

    /// Whether credentials it gave may be out of date before their expiration (its file was rewritten): asked
    /// at most once a second, so it must be cheap. Default: never.
    fn changed(&self) -> bool {
        false
    }
}

#[async_trait]
impl CredentialsProvider for Credentials {
    async fn credentials(&self) -> Result<Credentials> {
        Ok(self.clone())
    }
}

/// A JSON file holding credentials, re-read when it changes: `AccessKeyId`, `AccessKeySecret` (or AWS's
/// `SecretAccessKey`), optionally `SecurityToken` (or `SessionToken`) and `Expiration` (RFC 3339) — the form
/// Alibaba Cloud's and AWS's credential processes print. Replace it whole (write another file, then rename it
/// over this one) so a reader never sees half of it.
#[derive(Debug)]
pub struct CredentialsFile {
    path: PathBuf,
    /// The file's identity when last read: (inode, size, modification time in ns).
    seen: Mutex<Option<(u64, u64, i128)>>,
}

impl CredentialsFile {
    /// The file at `path` (read on the first request, not now).
    pub fn new(path: impl Into<PathBuf>) -> CredentialsFile {
        CredentialsFile { path: path.into(), seen: Mutex::new(None) }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stamp(&self) -> Option<(u64, u64, i128)> {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.ino(), m.len(), i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())))
    }

    /// Reads the file now.
    pub fn read(&self) -> Result<Credentials> {
        let stamp = self.stamp();
        let bad = |why: String| {
            Error::new(ErrorKind::Credentials, format!("the credentials file {}: {why}", self.path.display()))
        };
        let text = std::fs::read_to_string(&self.path).map_err(|e| bad(format!("cannot be read ({e})")))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("is not JSON ({})", e.classify_name())))?;
        let field =
            |names: &[&str]| names.iter().find_map(|n| doc.get(*n).and_then(|v| v.as_str())).filter(|v| !v.is_empty());
        let (Some(id), Some(secret)) = (field(&["AccessKeyId"]), field(&["AccessKeySecret", "SecretAccessKey"])) else {
            return Err(bad("needs AccessKeyId and AccessKeySecret (or SecretAccessKey)".into()));
        };
        let mut creds = Credentials::new(id, secret);
        if let Some(token) = field(&["SecurityToken", "SessionToken"]) {
            creds = creds.with_security_token(token);
        }
        if let Some(when) = field(&["Expiration"]) {
            let at = chrono::DateTime::parse_from_rfc3339(when)
                .map_err(|_| bad(format!("Expiration {when:?} is not an RFC 3339 time (2026-12-07T20:00:00Z)")))?;
            creds = creds.with_expiration(at.into());
        }
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        Ok(creds)
    }
}

/// What `serde_json` found wrong, without quoting the file (it holds a secret).
trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "a syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

#[async_trait]
impl CredentialsProvider for CredentialsFile {
    async fn credentials(&self) -> Result<Credentials> {
        self.read()
    }

    fn changed(&self) -> bool {
        let seen = *self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.is_none() || self.stamp() != seen
    }
}

/// A provider behind a cache: see the module docs.
#[derive(Clone)]
pub(crate) struct Refreshing {
    provider: Arc<dyn CredentialsProvider>,
    /// The credentials held, and when the provider was last asked or polled.
    held: Arc<Mutex<Option<(Credentials, Instant)>>>,
}

impl fmt::Debug for Refreshing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("Refreshing")
            .field("provider", &self.provider)
            .field("access_key_id", &held.as_ref().map(|(c, _)| c.access_key_id().to_owned()))
            .finish()
    }
}

impl Refreshing {
    pub(crate) fn new(provider: Arc<dyn CredentialsProvider>) -> Refreshing {
        Refreshing { provider, held: Arc::new(Mutex::new(None)) }
    }

    /// The access key id of the credentials held, if any were fetched.
    pub(crate) fn access_key_id(&self) -> Option<String> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(c, _)| c.access_key_id().to_owned())
    }

    /// The credentials to sign a request with now.
    pub(crate) async fn current(&self) -> Result<Credentials> {
        let held = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            match held.as_mut() {
                Some((c, polled)) => {
                    let near = c.expiration().is_some_and(|e| e <= SystemTime::now() + REFRESH_AHEAD);
                    if polled.elapsed() < POLL {
                        return Ok(c.clone());
                    }
                    *polled = Instant::now();
                    if !near && !self.provider.changed() {
                        return Ok(c.clone());
                    }
                    Some(c.clone())
                }
                None => None,
            }
        };
        match self.provider.credentials().await {
            Ok(fresh) => {
                if held.as_ref().is_some_and(|h| h.access_key_id() != fresh.access_key_id() || h != &fresh) {
                    tracing::info!(access_key_id = fresh.access_key_id(), expiration = ?fresh.expiration(), "credentials refreshed");
                }
                *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((fresh.clone(), Instant::now()));
                Ok(fresh)
            }
            // The held credentials still hold: use them, and ask again on a later request.
            Err(e) if held.as_ref().is_some_and(|h| h.expiration().is_none_or(|x| x > SystemTime::now())) => {
                tracing::warn!(error = %e, "could not refresh the credentials; the current ones are still valid");
                Ok(held.expect("checked above"))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, id: &str, expires: Option<&str>) {
        let tmp = path.with_extension("tmp");
        let exp = expires.map(|e| format!(r#", "Expiration": "{e}""#)).unwrap_or_default();
        std::fs::write(
            &tmp,
            format!(r#"{{"AccessKeyId": "{id}", "AccessKeySecret": "s-{id}", "SecurityToken": "t"{exp}}}"#),
        )
        .unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn a_rewritten_file_is_read_again_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        write(&path, "A", Some("2999-01-01T00:00:00Z"));
        let r = Refreshing::new(Arc::new(CredentialsFile::new(&path)));
        let a = r.current().await.unwrap();
        assert_eq!((a.access_key_id(), a.security_token()), ("A", Some("t")));
        assert!(a.expiration().is_some());
        write(&path, "B", None);
        // Held for up to a second, then the change is seen.
        assert_eq!(r.current().await.unwrap().access_key_id(), "A");
        r.held.lock().unwrap().as_mut().unwrap().1 -= POLL;
        assert_eq!(r.current().await.unwrap().access_key_id(), "B");
        // A broken file while the held credentials are valid: they stay in use.
        std::fs::write(&path, "{not json").unwrap();
        r.held.lock().unwrap().as_mut().unwrap().1 -= POLL;
        assert_eq!(r.current().await.unwrap().access_key_id(), "B");
        let e = CredentialsFile::new(&path).read().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Credentials);
        assert!(!e.to_string().contains("not json"), "the file's text is not quoted: {e}");
    }

    #[tokio::test]
    async fn credentials_near_their_expiration_are_asked_for_again() {
        #[derive(Debug, Default)]
        struct Counting(std::sync::atomic::AtomicU32);
        #[async_trait]
        impl CredentialsProvider for Counting {
            async fn credentials(&self) -> Result<Credentials> {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let expires =
                    SystemTime::now() + if n == 0 { Duration::from_secs(60) } else { Duration::from_secs(3600) };
                Ok(Credentials::new(format!("K{n}"), "s").with_expiration(expires))
            }
        }
        let provider = Arc::new(Counting::default());
        let r = Refreshing::new(provider.clone());
        assert_eq!(r.current().await.unwrap().access_key_id(), "K0");
        r.held.lock().unwrap().as_mut().unwrap().1 -= POLL;
        // K0 expires within REFRESH_AHEAD: asked again; K1 holds an hour: not asked again.
        assert_eq!(r.current().await.unwrap().access_key_id(), "K1");
        r.held.lock().unwrap().as_mut().unwrap().1 -= POLL;
        assert_eq!(r.current().await.unwrap().access_key_id(), "K1");
        assert_eq!(provider.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
