//! Request signing and verification: the OSS dialect's signature V4 (`OSS4-HMAC-SHA256`, the default) and V1
//! (HMAC-SHA1), and the S3 dialect's AWS SigV4 (`AWS4-HMAC-SHA256`, [`s3`]); header auth and presigned (query)
//! auth, STS security tokens. OSS V4 and AWS SigV4 share one implementation of the V4 family ([`sigv4`]).
//!
//! The client signs with [`Signer::sign`]; the server (with the `server` feature) checks with `verify`. Both
//! build the string to sign
//! from the same [`SignTarget`] (method, bucket, raw key, decoded query) and the same header map, so they
//! cannot drift apart. Every test vector of the OSS reference (section 6) is a unit test in [`v1`] and [`v4`].

use crate::error::{Error, Result};
use std::fmt;
use std::time::{Duration, SystemTime};

pub mod provider;
pub mod s3;
pub mod sigv4;
pub mod v1;
pub mod v4;
#[cfg(feature = "server")]
mod verify;

#[cfg(feature = "server")]
pub use verify::{verify, Verified};

pub use provider::{CredentialsFile, CredentialsProvider};

/// How far a request's date may be from the server's clock (OSS: 15 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// An access key pair, optionally with an STS security token.
///
/// The secret and the token are never printed: `Debug` shows only the access key id.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret: String,
    security_token: Option<String>,
    expiration: Option<SystemTime>,
}

impl Credentials {
    /// A long-term key pair.
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self { access_key_id: access_key_id.into(), secret: secret.into(), security_token: None, expiration: None }
    }

    /// The same credentials, valid until `at` (an STS token's expiration): a store asks its
    /// [provider](CredentialsProvider) for new ones before then.
    pub fn with_expiration(mut self, at: SystemTime) -> Self {
        self.expiration = Some(at);
        self
    }

    /// When they stop being valid, if known.
    pub fn expiration(&self) -> Option<SystemTime> {
        self.expiration
    }

    /// The same key with an STS security token.
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    /// Reads `OSS_ACCESS_KEY_ID`, `OSS_ACCESS_KEY_SECRET` and, if set, `OSS_SESSION_TOKEN`.
    pub fn from_env() -> Result<Self> {
        Self::from_env_vars("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN")
    }

    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, if set, `AWS_SESSION_TOKEN`.
    pub fn from_aws_env() -> Result<Self> {
        Self::from_env_vars("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    }

    /// Reads the named variables (the token variable is optional).
    pub fn from_env_vars(id_var: &str, secret_var: &str, token_var: &str) -> Result<Self> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(id), Some(secret)) = (get(id_var), get(secret_var)) else {
            return Err(Error::invalid(format!(
                "missing credentials: set the environment variables {id_var} and {secret_var}"
            )));
        };
        let creds = Self::new(id, secret);
        Ok(match get(token_var) {
            Some(t) => creds.with_security_token(t),
            None => creds,
        })
    }

    /// The access key id (not secret).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The STS token, if any.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_deref()
    }

    /// The secret. Only the signers read it.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .field("security_token", &self.security_token.as_ref().map(|_| "<redacted>"))
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// A signature version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    /// `OSS ak:signature`, HMAC-SHA1.
    V1,
    /// `OSS4-HMAC-SHA256`, the default of the current SDKs.
    #[default]
    V4,
}

/// What a signature covers besides the headers.
#[derive(Debug, Clone, Copy)]
pub struct SignTarget<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// Bucket, when the request addresses one.
    pub bucket: Option<&'a str>,
    /// Object key, raw (not percent-encoded).
    pub key: Option<&'a str>,
    /// The query parameters sent, decoded, in any order.
    pub query: &'a [(String, String)],
}

/// Signs requests for one region.
#[derive(Debug, Clone)]
pub struct Signer {
    /// V1 or V4.
    pub version: SignatureVersion,
    /// Region id, e.g. `cn-hangzhou` (V4 credential scope).
    pub region: String,
    /// Product in the V4 scope: `oss`.
    pub product: String,
    /// Extra headers to sign with V4 (`AdditionalHeaders`), lower-case.
    pub additional_headers: Vec<String>,
}

impl Signer {
    /// A signer for `region` with product `oss`.
    pub fn new(version: SignatureVersion, region: impl Into<String>) -> Self {
        Self { version, region: region.into(), product: "oss".into(), additional_headers: Vec::new() }
    }

    /// Signs in place: sets `date` (and with V4 `x-oss-date` and `x-oss-content-sha256: UNSIGNED-PAYLOAD`),
    /// `x-oss-security-token` when the credentials carry one, then `authorization`. Content-Type,
    /// Content-MD5 and the `x-oss-*` headers must already be in `headers`.
    pub fn sign(&self, creds: &Credentials, target: &SignTarget<'_>, headers: &mut http::HeaderMap, now: SystemTime) {
        set(headers, "date", &httpdate::fmt_http_date(now));
        if let Some(token) = creds.security_token() {
            set(headers, "x-oss-security-token", token);
        }
        let auth = match self.version {
            SignatureVersion::V1 => v1::authorization(creds, target, headers),
            SignatureVersion::V4 => {
                set(headers, "x-oss-date", &v4::amz_date(now));
                if !headers.contains_key("x-oss-content-sha256") {
                    set(headers, "x-oss-content-sha256", v4::UNSIGNED_PAYLOAD);
                }
                v4::authorization(creds, target, headers, &self.region, &self.product, &self.additional_headers)
            }
        };
        set(headers, "authorization", &auth);
    }

    /// Query parameters that make a presigned URL valid for `expires` from `now`. Append them to the
    /// request's own query.
    pub fn presign(
        &self,
        creds: &Credentials,
        target: &SignTarget<'_>,
        headers: &http::HeaderMap,
        now: SystemTime,
        expires: Duration,
    ) -> Vec<(String, String)> {
        match self.version {
            SignatureVersion::V1 => v1::presign(creds, target, headers, now, expires),
            SignatureVersion::V4 => v4::presign(creds, target, headers, now, expires, &self.region, &self.product),
        }
    }
}

fn set(headers: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = http::HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// A header's value as text, trimmed; `None` when absent or not text.
pub(crate) fn header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// HMAC-SHA1 of `data` under `key`.
pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Constant-time comparison of two signatures.
#[cfg(feature = "server")]
pub(crate) fn same_signature(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credentials::new("AKID", "very-secret").with_security_token("tok-123");
        let s = format!("{c:?}");
        assert!(s.contains("AKID") && !s.contains("very-secret") && !s.contains("tok-123"), "{s}");
    }
}
