//! Server-side checks of AWS SigV4 (`transfer serve`'s S3 side; the `server` feature).

use super::super::sigv4::{parse_amz_date, Scheme};
use super::super::verify::check_skew;
use super::super::{header, same_signature, Credentials, MAX_CLOCK_SKEW};
use super::{canonical_request, S3Target, ALGORITHM, MAX_PRESIGN_EXPIRES, UNSIGNED_PAYLOAD};
use crate::error::{Error, Result};
use std::time::{Duration, SystemTime};

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

/// A presigned URL's `X-Amz-Expires` that S3 refuses: 400 `AuthorizationQueryParametersError` with S3's own
/// words (checked before the signature, as S3 does).
fn bad_expires(message: &str) -> Error {
    Error::code(400, "AuthorizationQueryParametersError", message)
}

/// `X-Amz-Expires` in seconds: a number from 0 to 604800 (7 days), or S3's refusal. A missing one counts as 0
/// (the URL has expired).
fn presign_expires(value: Option<&str>) -> Result<u64> {
    let Some(v) = value else { return Ok(0) };
    let secs: i64 = v.trim().parse().map_err(|_| bad_expires("X-Amz-Expires should be a number"))?;
    if secs < 0 {
        return Err(bad_expires("X-Amz-Expires must be non-negative"));
    }
    if Duration::from_secs(secs as u64) > MAX_PRESIGN_EXPIRES {
        return Err(bad_expires(&format!(
            "X-Amz-Expires must be less than a week (in seconds) that is {}",
            MAX_PRESIGN_EXPIRES.as_secs()
        )));
    }
    Ok(secs as u64)
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
    let expires = presign_expires(query_value(q, "X-Amz-Expires"))?;
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
