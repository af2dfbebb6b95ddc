//! Signature checks: every request is verified with [`transfer_engine::sign::verify`] against the configured
//! credentials before anything else happens.

use crate::routing::Target;
use http::{HeaderMap, Method};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use transfer_engine::sign::{self, Credentials, CredentialsFile, SignTarget, Verified};
use transfer_engine::Result;

/// The credentials a server accepts: fixed ones, or those a file names, re-read when it changes (at most once a
/// second). A key the file no longer names stays accepted until its `Expiration`, as an STS token stays valid
/// after a new one was issued; one without an expiration is revoked at once. Expired credentials are refused.
#[derive(Debug)]
pub(crate) struct Keys {
    fixed: Vec<Credentials>,
    file: Option<(CredentialsFile, Mutex<FileKeys>)>,
}

#[derive(Debug, Default)]
struct FileKeys {
    current: Option<Credentials>,
    previous: Vec<Credentials>,
    polled: Option<Instant>,
}

impl Keys {
    pub(crate) fn fixed(keys: Vec<Credentials>) -> Keys {
        Keys { fixed: keys, file: None }
    }

    /// The credentials `file` names (read now, so a bad file fails at once), instead of fixed ones.
    pub(crate) fn from_file(file: CredentialsFile) -> Result<Keys> {
        let current = file.read()?;
        let state = FileKeys { current: Some(current), previous: Vec::new(), polled: Some(Instant::now()) };
        Ok(Keys { fixed: Vec::new(), file: Some((file, Mutex::new(state))) })
    }

    pub(crate) fn push(&mut self, key: Credentials) {
        self.fixed.push(key);
    }

    /// The accepted credentials of access key `ak`: a key not known yet has the file looked at again first (a
    /// client may have seen the file's new key before this server's once-a-second look).
    fn lookup(&self, ak: &str) -> Option<Credentials> {
        let find = |keys: Vec<Credentials>| keys.into_iter().find(|c| c.access_key_id() == ak);
        find(self.accepted(false)).or_else(|| self.file.as_ref().and_then(|_| find(self.accepted(true))))
    }

    /// The credentials accepted now; `look` has the file looked at even within a second of the last look.
    fn accepted(&self, look: bool) -> Vec<Credentials> {
        let now = SystemTime::now();
        let valid = |c: &Credentials| c.expiration().is_none_or(|e| e > now);
        let mut keys: Vec<Credentials> = self.fixed.iter().filter(|c| valid(c)).cloned().collect();
        if let Some((file, state)) = &self.file {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if look || s.polled.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                s.polled = Some(Instant::now());
                if sign::CredentialsProvider::changed(file) {
                    match file.read() {
                        Ok(fresh) if s.current.as_ref() != Some(&fresh) => {
                            tracing::info!(
                                access_key_id = fresh.access_key_id(),
                                "accepting the credentials file's new key"
                            );
                            if let Some(old) = s.current.replace(fresh) {
                                if old.expiration().is_some() {
                                    s.previous.push(old);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the credentials file; the keys accepted so far stay")
                        }
                    }
                }
                s.previous.retain(|c| valid(c));
            }
            keys.extend(s.current.iter().chain(&s.previous).filter(|c| valid(c)).cloned());
        }
        keys
    }
}

/// Verifies the signature of a request (header or presigned, V1 or V4) against `keys`. Errors are OSS's:
/// `AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `RequestTimeTooSkewed`,
/// `InvalidSecurityToken`.
pub(crate) fn check(keys: &Keys, method: &Method, target: &Target, headers: &HeaderMap) -> Result<Verified> {
    let st = SignTarget {
        method: method.as_str(),
        bucket: target.bucket.as_deref(),
        key: target.key.as_deref(),
        query: &target.query,
    };
    let lookup = |ak: &str| keys.lookup(ak);
    sign::verify(&st, headers, &lookup, SystemTime::now())
}

/// Verifies an AWS SigV4 signature (header or presigned) over the path as received. Errors are S3's:
/// `AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `RequestTimeTooSkewed`, `InvalidToken`,
/// `AuthorizationHeaderMalformed`.
pub(crate) fn check_s3(
    keys: &Keys,
    method: &Method,
    path: &str,
    target: &Target,
    headers: &HeaderMap,
) -> Result<sign::s3::S3Verified> {
    let st = sign::s3::S3Target { method: method.as_str(), uri: path, query: &target.query };
    let lookup = |ak: &str| keys.lookup(ak);
    sign::s3::verify(&st, headers, &lookup, SystemTime::now())
}
