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
//! [`verify`] checks a request on the server side and answers S3's own errors. It checks the signature over
//! the declared payload hash; comparing that hash with the body is the server's job, as it reads the body.

use super::sigv4::{self, Scheme};
use super::verify::check_skew;
use super::{header, same_signature, Credentials, MAX_CLOCK_SKEW};
use crate::error::{Error, Result};
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

/// True when a request carries an AWS SigV4 signature (header or presigned query): how a server that speaks
/// both dialects tells an S3 request from an OSS one.
pub fn is_signed_with_sigv4(headers: &http::HeaderMap, query: &[(String, String)]) -> bool {
    header(headers, "authorization").is_some_and(|a| a.starts_with(ALGORITHM))
        || query.iter().any(|(k, v)| k == "X-Amz-Algorithm" && v == ALGORITHM)
}

/// Who signed an accepted S3 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Verified {
    /// The access key id.
    pub access_key_id: String,
    /// The region of the credential scope.
    pub region: String,
    /// The payload hash the signature covers (`UNSIGNED-PAYLOAD` or hex SHA-256), for the server to compare
    /// with the body.
    pub payload_hash: String,
}

fn denied(message: &str) -> Error {
    Error::code(403, "AccessDenied", message)
}

fn malformed(message: &str) -> Error {
    Error::code(400, "AuthorizationHeaderMalformed", message)
}

fn query_value<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Checks the SigV4 signature of an S3 request (header or presigned query). Errors are S3's:
/// `AccessDenied` (unsigned, expired), `AuthorizationHeaderMalformed`, `InvalidAccessKeyId`, `InvalidToken`,
/// `RequestTimeTooSkewed`, `InvalidRequest` (no `x-amz-content-sha256`) and `SignatureDoesNotMatch` (with the
/// string to sign and the canonical request, so a client can compare).
pub fn verify(
    target: &S3Target<'_>,
    headers: &http::HeaderMap,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    now: SystemTime,
) -> Result<S3Verified> {
    if let Some(auth) = header(headers, "authorization") {
        let rest = auth
            .strip_prefix(ALGORITHM)
            .ok_or_else(|| malformed("The authorization header is not AWS4-HMAC-SHA256."))?;
        return verify_header(target, headers, rest, lookup, now);
    }
    if query_value(target.query, "X-Amz-Signature").is_some() {
        return verify_query(target, headers, lookup, now);
    }
    Err(denied("Anonymous access is forbidden: sign the request with AWS Signature Version 4."))
}

fn lookup_creds(lookup: &dyn Fn(&str) -> Option<Credentials>, ak: &str) -> Result<Credentials> {
    lookup(ak).ok_or_else(|| {
        Error::code(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
            .with_extra("AWSAccessKeyId", ak)
    })
}

fn check_token(creds: &Credentials, presented: Option<&str>) -> Result<()> {
    match creds.security_token() {
        Some(expected) if presented != Some(expected) => {
            Err(Error::code(400, "InvalidToken", "The provided token is malformed or otherwise invalid."))
        }
        _ => Ok(()),
    }
}

fn signed_names(list: &str) -> Vec<String> {
    list.split(';').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect()
}

#[allow(clippy::too_many_arguments)]
fn check(
    target: &S3Target<'_>,
    headers: &http::HeaderMap,
    credential: &str,
    signed: &[String],
    datetime: &str,
    provided: &str,
    payload: &str,
    creds: &Credentials,
) -> Result<S3Verified> {
    let scope = Scheme::AWS.parse_credential(credential).ok_or_else(|| malformed("Malformed Credential."))?;
    if !datetime.starts_with(scope.date) {
        return Err(malformed("The date in the credential scope does not match x-amz-date."));
    }
    if !signed.iter().any(|n| n == "host") {
        return Err(malformed("The host header must be signed."));
    }
    if let Some(missing) = signed.iter().find(|n| !headers.contains_key(n.as_str())) {
        return Err(malformed(&format!("The signed header {missing} is not in the request.")));
    }
    let cr = canonical_request(target, headers, signed, payload);
    let sc = Scheme::AWS.scope(datetime, scope.region, scope.service);
    let sts = Scheme::AWS.string_to_sign(datetime, &sc, &cr);
    let expected = Scheme::AWS.signature(creds.secret(), datetime, scope.region, scope.service, &sts);
    if !same_signature(&expected, provided) {
        return Err(Error::code(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        )
        .with_extra("AWSAccessKeyId", scope.access_key_id)
        .with_extra("StringToSign", sts)
        .with_extra("SignatureProvided", provided)
        .with_extra("CanonicalRequest", cr));
    }
    Ok(S3Verified {
        access_key_id: scope.access_key_id.into(),
        region: scope.region.into(),
        payload_hash: payload.into(),
    })
}

fn verify_header(
    target: &S3Target<'_>,
    headers: &http::HeaderMap,
    rest: &str,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    now: SystemTime,
) -> Result<S3Verified> {
    let (mut credential, mut signed, mut provided) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(signed_names(v));
        } else if let Some(v) = part.strip_prefix("Signature=") {
            provided = Some(v);
        }
    }
    let (Some(credential), Some(signed), Some(provided)) = (credential, signed, provided) else {
        return Err(malformed("The authorization header needs Credential, SignedHeaders and Signature."));
    };
    let scope = Scheme::AWS.parse_credential(credential).ok_or_else(|| malformed("Malformed Credential."))?;
    let creds = lookup_creds(lookup, scope.access_key_id)?;
    let datetime = header(headers, "x-amz-date").ok_or_else(|| denied("AWS authentication requires x-amz-date."))?;
    let when = parse_amz_date(datetime).ok_or_else(|| denied("x-amz-date is not yyyymmddTHHMMSSZ."))?;
    check_skew(when, now, datetime)?;
    let payload = header(headers, "x-amz-content-sha256").ok_or_else(|| {
        Error::code(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    })?;
    if payload.starts_with("STREAMING-") {
        return Err(Error::code(501, "NotImplemented", "aws-chunked streaming signatures are not supported."));
    }
    check_token(&creds, header(headers, "x-amz-security-token"))?;
    check(target, headers, credential, &signed, datetime, provided, payload, &creds)
}

fn verify_query(
    target: &S3Target<'_>,
    headers: &http::HeaderMap,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    now: SystemTime,
) -> Result<S3Verified> {
    let q = target.query;
    if query_value(q, "X-Amz-Algorithm") != Some(ALGORITHM) {
        return Err(malformed("X-Amz-Algorithm must be AWS4-HMAC-SHA256."));
    }
    let credential = query_value(q, "X-Amz-Credential").unwrap_or_default();
    let scope = Scheme::AWS.parse_credential(credential).ok_or_else(|| malformed("Malformed X-Amz-Credential."))?;
    let creds = lookup_creds(lookup, scope.access_key_id)?;
    let datetime = query_value(q, "X-Amz-Date").unwrap_or_default();
    let when = parse_amz_date(datetime).ok_or_else(|| denied("X-Amz-Date is not yyyymmddTHHMMSSZ."))?;
    let expires: u64 = query_value(q, "X-Amz-Expires").and_then(|v| v.parse().ok()).unwrap_or(0);
    if Duration::from_secs(expires) > MAX_PRESIGN_EXPIRES {
        return Err(denied("X-Amz-Expires must be at most 604800 seconds."));
    }
    if now > when + Duration::from_secs(expires) || now + MAX_CLOCK_SKEW < when {
        return Err(denied("Request has expired.").with_extra("ServerTime", httpdate::fmt_http_date(now)));
    }
    check_token(&creds, query_value(q, "X-Amz-Security-Token"))?;
    let signed = signed_names(query_value(q, "X-Amz-SignedHeaders").unwrap_or_default());
    let provided = query_value(q, "X-Amz-Signature").unwrap_or_default().to_owned();
    let rest: Vec<(String, String)> = q.iter().filter(|(k, _)| k != "X-Amz-Signature").cloned().collect();
    let payload = header(headers, "x-amz-content-sha256").unwrap_or(UNSIGNED_PAYLOAD).to_owned();
    check(&S3Target { query: &rest, ..*target }, headers, credential, &signed, datetime, &provided, &payload, &creds)
}

#[cfg(test)]
mod tests;
