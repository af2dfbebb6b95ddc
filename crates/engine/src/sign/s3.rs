//! AWS Signature Version 4 for the S3 dialect: `AWS4-HMAC-SHA256 Credential=<ak>/<yyyymmdd>/<region>/s3/aws4_request,
//! SignedHeaders=<names>, Signature=<hex>`, in the `Authorization` header or in a presigned query
//! (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature`).
//!
//! The algorithm is the V4 family's ([`super::sigv4`], scheme [`Scheme::AWS`]); what is S3's own:
//! - the canonical URI is the request path exactly as sent (percent-encoded once, never normalised), so it
//!   differs between path-style (`/bucket/key`) and virtual-hosted (`/key`) requests;
//! - the signed headers are named in the signature (`SignedHeaders`); the client signs every header it sets,
//!   `host` included;
//! - the payload hash is the `x-amz-content-sha256` header: the hex SHA-256 of the body or
//!   `UNSIGNED-PAYLOAD`. This client never uses `aws-chunked` streaming signatures.
//!
//! With the `server` feature, `verify` checks a request on the server side and answers S3's own errors. It checks
//! the signature over the declared payload hash; comparing that hash with the body is the server's job, as it
//! reads the body.

use super::sigv4::{self, Scheme};
use super::{header, Credentials};
use std::time::{Duration, SystemTime};

pub use super::sigv4::{amz_date, parse_amz_date};

/// The algorithm name.
pub const ALGORITHM: &str = Scheme::AWS.algorithm;
/// The payload hash of a body that is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The SHA-256 of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Longest validity of a presigned URL (7 days).
pub const MAX_PRESIGN_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);

/// What an S3 signature covers besides the headers.
#[derive(Debug, Clone, Copy)]
pub struct S3Target<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// The request path as sent, percent-encoded (`/bucket/key` or `/key`; `/` at least).
    pub uri: &'a str,
    /// The query parameters sent, decoded, in any order.
    pub query: &'a [(String, String)],
}

/// Every header name present, lower-case, sorted and deduplicated: what the client signs.
pub fn header_names(headers: &http::HeaderMap) -> Vec<String> {
    let mut names: Vec<String> =
        headers.keys().map(|n| n.as_str().to_owned()).filter(|n| n != "authorization").collect();
    names.sort();
    names.dedup();
    names
}

/// The canonical request over `signed` (lower-case, sorted header names).
pub fn canonical_request(
    target: &S3Target<'_>,
    headers: &http::HeaderMap,
    signed: &[String],
    payload_hash: &str,
) -> String {
    let uri = if target.uri.is_empty() { "/" } else { target.uri };
    sigv4::canonical_request(
        target.method,
        uri,
        &Scheme::AWS.canonical_query(target.query),
        &Scheme::AWS.canonical_headers(headers, signed),
        &signed.join(";"),
        payload_hash,
    )
}

/// `yyyymmdd/region/service/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    Scheme::AWS.scope(date, region, service)
}

/// The `Authorization` value over the headers `signed`, for a request whose `x-amz-date` is set.
pub fn authorization_with(
    creds: &Credentials,
    target: &S3Target<'_>,
    headers: &http::HeaderMap,
    signed: &[String],
    payload_hash: &str,
    region: &str,
    service: &str,
) -> String {
    let datetime = header(headers, "x-amz-date").unwrap_or_default();
    let cr = canonical_request(target, headers, signed, payload_hash);
    let scope = scope(datetime, region, service);
    let sts = Scheme::AWS.string_to_sign(datetime, &scope, &cr);
    let sig = Scheme::AWS.signature(creds.secret(), datetime, region, service, &sts);
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
        creds.access_key_id(),
        signed.join(";")
    )
}

/// Signs S3 requests for one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Signer {
    /// Region of the scope, e.g. `us-east-1`.
    pub region: String,
    /// Service of the scope: `s3`.
    pub service: String,
}

impl S3Signer {
    /// A signer for `region` and service `s3`.
    pub fn new(region: impl Into<String>) -> Self {
        Self { region: region.into(), service: "s3".into() }
    }

    /// Signs in place: sets `x-amz-date`, `x-amz-content-sha256` (`payload_hash`, unless already set),
    /// `x-amz-security-token` when the credentials carry one, then `authorization` over every header present.
    /// `host` and the request's own headers must already be in `headers`.
    pub fn sign(
        &self,
        creds: &Credentials,
        target: &S3Target<'_>,
        headers: &mut http::HeaderMap,
        payload_hash: &str,
        now: SystemTime,
    ) {
        set(headers, "x-amz-date", &amz_date(now));
        if !headers.contains_key("x-amz-content-sha256") {
            set(headers, "x-amz-content-sha256", payload_hash);
        }
        if let Some(token) = creds.security_token() {
            set(headers, "x-amz-security-token", token);
        }
        headers.remove("authorization");
        let payload = header(headers, "x-amz-content-sha256").unwrap_or(payload_hash).to_owned();
        let signed = header_names(headers);
        let auth = authorization_with(creds, target, headers, &signed, &payload, &self.region, &self.service);
        set(headers, "authorization", &auth);
    }

    /// Query parameters that make a presigned URL valid for `expires` (at most 7 days) from `now`, over the
    /// headers in `headers` (at least `host`). Append them to the request's own query.
    pub fn presign(
        &self,
        creds: &Credentials,
        target: &S3Target<'_>,
        headers: &http::HeaderMap,
        now: SystemTime,
        expires: Duration,
    ) -> Vec<(String, String)> {
        let datetime = amz_date(now);
        let scope = scope(&datetime, &self.region, &self.service);
        let signed = header_names(headers);
        let mut added = vec![
            ("X-Amz-Algorithm".to_owned(), ALGORITHM.to_owned()),
            ("X-Amz-Credential".to_owned(), format!("{}/{scope}", creds.access_key_id())),
            ("X-Amz-Date".to_owned(), datetime.clone()),
            ("X-Amz-Expires".to_owned(), expires.min(MAX_PRESIGN_EXPIRES).as_secs().to_string()),
            ("X-Amz-SignedHeaders".to_owned(), signed.join(";")),
        ];
        if let Some(t) = creds.security_token() {
            added.push(("X-Amz-Security-Token".into(), t.into()));
        }
        let mut query = target.query.to_vec();
        query.extend(added.iter().cloned());
        let cr = canonical_request(&S3Target { query: &query, ..*target }, headers, &signed, UNSIGNED_PAYLOAD);
        let sts = Scheme::AWS.string_to_sign(&datetime, &scope, &cr);
        added.push((
            "X-Amz-Signature".into(),
            Scheme::AWS.signature(creds.secret(), &datetime, &self.region, &self.service, &sts),
        ));
        added
    }
}

fn set(headers: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = http::HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

#[cfg(feature = "server")]
mod verify;
#[cfg(feature = "server")]
pub use verify::{is_signed_with_sigv4, verify, S3Verified};

#[cfg(all(test, feature = "server"))]
mod tests;
