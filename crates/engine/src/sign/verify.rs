//! Server-side signature checks: recompute the signature a request should carry and compare.
//!
//! [`verify`] accepts the four ways a request can be signed (V1 or V4, in the `Authorization` header or in a
//! presigned query) and answers with OSS's own errors, so an SDK pointed at our server reacts as it would to
//! OSS: `AccessDenied` (no signature, expired presigned URL, no date), `InvalidAccessKeyId`,
//! `InvalidSecurityToken`, `RequestTimeTooSkewed` (more than 15 minutes off) and `SignatureDoesNotMatch`,
//! which carries the string to sign (and the V4 canonical request) so a client can compare.

use super::{header, same_signature, v1, v4, Credentials, SignTarget, SignatureVersion, MAX_CLOCK_SKEW};
use crate::error::{Error, Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Who signed an accepted request, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id.
    pub access_key_id: String,
    /// The signature version used.
    pub version: SignatureVersion,
}

fn denied(message: &str) -> Error {
    Error::code(403, "AccessDenied", message)
}

pub(crate) use super::v4::MAX_PRESIGN_EXPIRES as MAX_V4_PRESIGN_EXPIRES;

/// `x-oss-expires` in seconds: from 1 to 604800 (7 days), else 403 `AccessDenied` with EC 0002-00000232 (checked
/// before the signature). A missing one counts as 0 (the URL has expired).
fn v4_presign_expires(value: Option<&str>) -> Result<u64> {
    let Some(v) = value else { return Ok(0) };
    match v.trim().parse::<u64>() {
        Ok(secs) if (1..=MAX_V4_PRESIGN_EXPIRES.as_secs()).contains(&secs) => Ok(secs),
        _ => Err(Error::service(crate::ServiceError {
            status: 403,
            code: "AccessDenied".into(),
            message: format!(
                "Invalid signed URL expiration time: x-oss-expires must be from 1 to {} seconds (7 days), not {v:?}. \
                 Presign the URL again with a shorter expiry.",
                MAX_V4_PRESIGN_EXPIRES.as_secs()
            ),
            ec: Some("0002-00000232".into()),
            ..Default::default()
        })),
    }
}

fn query_value<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// `RequestTimeTooSkewed` unless the request's time is within [`MAX_CLOCK_SKEW`] of `now` (both dialects).
pub(super) fn check_skew(request_time: SystemTime, now: SystemTime, shown: &str) -> Result<()> {
    let skew = now.duration_since(request_time).or_else(|e| Ok::<_, ()>(e.duration())).unwrap_or_default();
    if skew > MAX_CLOCK_SKEW {
        return Err(Error::code(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )
        .with_extra("RequestTime", shown)
        .with_extra("ServerTime", httpdate::fmt_http_date(now)));
    }
    Ok(())
}

fn check_token(creds: &Credentials, presented: Option<&str>) -> Result<()> {
    match creds.security_token() {
        Some(expected) if presented != Some(expected) => {
            Err(Error::code(403, "InvalidSecurityToken", "The security token you provided is invalid."))
        }
        _ => Ok(()),
    }
}

fn mismatch(
    version: SignatureVersion,
    ak: &str,
    provided: &str,
    string_to_sign: &str,
    canonical: Option<&str>,
) -> Error {
    let (ec, how) = match version {
        SignatureVersion::V1 => ("0002-00000040", "Check your AccessKeySecret and signing method (V1)."),
        SignatureVersion::V4 => ("0002-00000228", "Check your AccessKeySecret, region and signing method (V4)."),
    };
    let mut se = crate::ServiceError {
        status: 403,
        code: "SignatureDoesNotMatch".into(),
        message: format!("The request signature we calculated does not match the signature you provided. {how}"),
        ec: Some(ec.into()),
        ..Default::default()
    };
    se.extra.push(("OSSAccessKeyId".into(), ak.into()));
    se.extra.push(("SignatureProvided".into(), provided.into()));
    se.extra.push(("StringToSign".into(), string_to_sign.into()));
    if let Some(c) = canonical {
        se.extra.push(("CanonicalRequest".into(), c.into()));
    }
    Error::service(se)
}

fn lookup_creds(lookup: &dyn Fn(&str) -> Option<Credentials>, ak: &str) -> Result<Credentials> {
    lookup(ak).ok_or_else(|| {
        Error::code(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
            .with_extra("OSSAccessKeyId", ak)
    })
}

/// Checks the signature of a request. See the module docs for the errors.
pub fn verify(
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    now: SystemTime,
) -> Result<Verified> {
    if let Some(auth) = header(headers, "authorization") {
        if let Some(rest) = auth.strip_prefix(v4::ALGORITHM) {
            return verify_v4_header(target, headers, rest, lookup, now);
        }
        if let Some(rest) = auth.strip_prefix("OSS ") {
            return verify_v1_header(target, headers, rest, lookup, now);
        }
        return Err(Error::code(400, "InvalidArgument", "The Authorization header is not an OSS V1 or V4 signature.")
            .with_extra("ArgumentName", "Authorization"));
    }
    if query_value(target.query, "x-oss-signature").is_some() {
        return verify_v4_query(target, headers, lookup, now);
    }
    if query_value(target.query, "Signature").is_some() {
        return verify_v1_query(target, headers, lookup, now);
    }
    Err(denied("Anonymous access is forbidden: sign the request with an AccessKeyId and AccessKeySecret."))
}

fn verify_v1_header(
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    rest: &str,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    now: SystemTime,
) -> Result<Verified> {
    let (ak, provided) = rest.trim().rsplit_once(':').ok_or_else(|| denied("Malformed V1 Authorization header."))?;
    let creds = lookup_creds(lookup, ak)?;
    let date = v1::header_date(headers);
    let when = httpdate::parse_http_date(date).map_err(|_| denied("OSS authentication requires a valid Date."))?;
    check_skew(when, now, date)?;
    // oss2 and the Go SDK send `x-oss-security-token`; the Python V2 SDK's V1 signer sends `security-token`.
    check_token(&creds, header(headers, "x-oss-security-token").or_else(|| header(headers, "security-token")))?;
    let sts = v1::string_to_sign(target, headers, date);
    if !same_signature(&v1::signature(creds.secret(), &sts), provided) {
        return Err(mismatch(SignatureVersion::V1, ak, provided, &sts, None));
    }
    Ok(Verified { access_key_id: ak.into(), version: SignatureVersion::V1 })
}

fn verify_v1_query(
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    now: SystemTime,
) -> Result<Verified> {
    let q = target.query;
    let ak = query_value(q, "OSSAccessKeyId").ok_or_else(|| denied("Presigned URL lacks OSSAccessKeyId."))?;
    let expires = query_value(q, "Expires").unwrap_or_default();
    let provided = query_value(q, "Signature").unwrap_or_default();
    let creds = lookup_creds(lookup, ak)?;
    let expires_at: u64 = expires.parse().map_err(|_| denied("Presigned URL has an invalid Expires."))?;
    if epoch(now) > expires_at {
        return Err(denied("Request has expired.")
            .with_extra("Expires", expires)
            .with_extra("ServerTime", epoch(now).to_string()));
    }
    check_token(&creds, query_value(q, "security-token"))?;
    let sts = v1::string_to_sign(target, headers, expires);
    if !same_signature(&v1::signature(creds.secret(), &sts), provided) {
        return Err(mismatch(SignatureVersion::V1, ak, provided, &sts, None));
    }
    Ok(Verified { access_key_id: ak.into(), version: SignatureVersion::V1 })
}

use super::sigv4::{CredentialScope as Scope, Scheme};

fn parse_credential(s: &str) -> Option<Scope<'_>> {
    Scheme::OSS.parse_credential(s)
}

#[allow(clippy::too_many_arguments)]
fn check_v4(
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    scope: &Scope<'_>,
    creds: &Credentials,
    datetime: &str,
    additional: &[String],
    provided: &str,
    payload: &str,
) -> Result<Verified> {
    if !datetime.starts_with(scope.date) {
        return Err(denied("The date in the credential scope does not match x-oss-date."));
    }
    let additional = v4::effective_additional(headers, additional);
    let cr = v4::canonical_request(target, headers, &additional, payload);
    let sc = v4::scope(datetime, scope.region, scope.service);
    let sts = v4::string_to_sign(datetime, &sc, &cr);
    let expected = v4::signature(creds.secret(), datetime, scope.region, scope.service, &sts);
    if !same_signature(&expected, provided) {
        return Err(mismatch(SignatureVersion::V4, scope.access_key_id, provided, &sts, Some(&cr)));
    }
    Ok(Verified { access_key_id: scope.access_key_id.into(), version: SignatureVersion::V4 })
}

fn verify_v4_header(
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    rest: &str,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    now: SystemTime,
) -> Result<Verified> {
    let (mut credential, mut additional, mut provided) = (None, Vec::new(), None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("AdditionalHeaders=") {
            additional = v.split(';').map(str::to_owned).collect();
        } else if let Some(v) = part.strip_prefix("Signature=") {
            provided = Some(v);
        }
    }
    let scope = credential.and_then(parse_credential).ok_or_else(|| denied("Malformed V4 Credential."))?;
    let provided = provided.ok_or_else(|| denied("V4 Authorization header lacks Signature."))?;
    let creds = lookup_creds(lookup, scope.access_key_id)?;
    let datetime = header(headers, "x-oss-date").ok_or_else(|| denied("V4 requests must carry x-oss-date."))?;
    let when = v4::parse_amz_date(datetime).ok_or_else(|| denied("x-oss-date is not yyyymmddTHHMMSSZ."))?;
    check_skew(when, now, datetime)?;
    let payload = header(headers, "x-oss-content-sha256").unwrap_or(v4::UNSIGNED_PAYLOAD);
    if payload != v4::UNSIGNED_PAYLOAD {
        return Err(Error::code(400, "InvalidArgument", "x-oss-content-sha256 must be UNSIGNED-PAYLOAD.")
            .with_extra("ArgumentName", "x-oss-content-sha256"));
    }
    check_token(&creds, header(headers, "x-oss-security-token"))?;
    check_v4(target, headers, &scope, &creds, datetime, &additional, provided, payload)
}

fn verify_v4_query(
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    now: SystemTime,
) -> Result<Verified> {
    let q = target.query;
    let scope = query_value(q, "x-oss-credential")
        .and_then(parse_credential)
        .ok_or_else(|| denied("Malformed x-oss-credential."))?;
    let creds = lookup_creds(lookup, scope.access_key_id)?;
    let datetime = query_value(q, "x-oss-date").unwrap_or_default();
    let when = v4::parse_amz_date(datetime).ok_or_else(|| denied("x-oss-date is not yyyymmddTHHMMSSZ."))?;
    let expires = v4_presign_expires(query_value(q, "x-oss-expires"))?;
    if now > when + Duration::from_secs(expires) {
        return Err(denied("Request has expired.").with_extra("ServerTime", httpdate::fmt_http_date(now)));
    }
    check_token(&creds, query_value(q, "x-oss-security-token"))?;
    let additional: Vec<String> = query_value(q, "x-oss-additional-headers")
        .map(|v| v.split(';').map(str::to_owned).collect())
        .unwrap_or_default();
    let provided = query_value(q, "x-oss-signature").unwrap_or_default().to_owned();
    let signed_query: Vec<(String, String)> = q.iter().filter(|(k, _)| k != "x-oss-signature").cloned().collect();
    let signed = SignTarget { query: &signed_query, ..*target };
    check_v4(&signed, headers, &scope, &creds, datetime, &additional, &provided, v4::UNSIGNED_PAYLOAD)
}

#[cfg(test)]
mod tests {
    use super::super::{SignatureVersion, Signer};
    use super::*;

    fn lookup(ak: &str) -> Option<Credentials> {
        match ak {
            "ak" => Some(Credentials::new("ak", "sk")),
            "sts" => Some(Credentials::new("sts", "sk2").with_security_token("tok")),
            _ => None,
        }
    }

    fn signed(
        version: SignatureVersion,
        creds: &Credentials,
        at: SystemTime,
    ) -> (Vec<(String, String)>, http::HeaderMap) {
        let query = vec![("uploadId".to_owned(), "U1".to_owned()), ("partNumber".to_owned(), "3".to_owned())];
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "application/octet-stream".parse().unwrap());
        h.insert("x-oss-meta-a", "b".parse().unwrap());
        let t = SignTarget { method: "PUT", bucket: Some("bkt"), key: Some("dir/a b+c"), query: &query };
        Signer::new(version, "cn-hangzhou").sign(creds, &t, &mut h, at);
        (query, h)
    }

    fn target(query: &[(String, String)]) -> SignTarget<'_> {
        SignTarget { method: "PUT", bucket: Some("bkt"), key: Some("dir/a b+c"), query }
    }

    #[test]
    fn signer_and_verifier_agree_for_both_versions() {
        let now = SystemTime::now();
        for v in [SignatureVersion::V1, SignatureVersion::V4] {
            let (q, h) = signed(v, &Credentials::new("ak", "sk"), now);
            assert_eq!(verify(&target(&q), &h, &lookup, now).unwrap().version, v);
            let (q, h) = signed(v, &Credentials::new("sts", "sk2").with_security_token("tok"), now);
            verify(&target(&q), &h, &lookup, now).unwrap();
        }
    }

    #[test]
    fn wrong_secret_key_or_tampering_is_refused() {
        let now = SystemTime::now();
        for v in [SignatureVersion::V1, SignatureVersion::V4] {
            let (q, h) = signed(v, &Credentials::new("ak", "wrong"), now);
            let e = verify(&target(&q), &h, &lookup, now).unwrap_err();
            assert_eq!(e.service_code(), Some("SignatureDoesNotMatch"));
            assert!(e.service_error().unwrap().extra("StringToSign").is_some());

            let (q, mut h) = signed(v, &Credentials::new("ak", "sk"), now);
            h.insert("x-oss-meta-a", "tampered".parse().unwrap());
            assert_eq!(
                verify(&target(&q), &h, &lookup, now).unwrap_err().service_code(),
                Some("SignatureDoesNotMatch")
            );

            let (q, h) = signed(v, &Credentials::new("nobody", "sk"), now);
            assert_eq!(verify(&target(&q), &h, &lookup, now).unwrap_err().service_code(), Some("InvalidAccessKeyId"));

            let (q, h) = signed(v, &Credentials::new("sts", "sk2"), now);
            assert_eq!(verify(&target(&q), &h, &lookup, now).unwrap_err().service_code(), Some("InvalidSecurityToken"));

            let old = now - Duration::from_secs(16 * 60);
            let (q, h) = signed(v, &Credentials::new("ak", "sk"), old);
            assert_eq!(verify(&target(&q), &h, &lookup, now).unwrap_err().service_code(), Some("RequestTimeTooSkewed"));
        }
        let e = verify(&target(&[]), &http::HeaderMap::new(), &lookup, now).unwrap_err();
        assert_eq!((e.status(), e.service_code()), (Some(403), Some("AccessDenied")));
    }

    #[test]
    fn presigned_urls_verify_and_expire() {
        let now = SystemTime::now();
        for v in [SignatureVersion::V1, SignatureVersion::V4] {
            let base = vec![("versionId".to_owned(), "v1".to_owned())];
            let h = http::HeaderMap::new();
            let t = SignTarget { method: "GET", bucket: Some("bkt"), key: Some("k"), query: &base };
            let mut q = base.clone();
            q.extend(Signer::new(v, "cn-hangzhou").presign(
                &Credentials::new("ak", "sk"),
                &t,
                &h,
                now,
                Duration::from_secs(60),
            ));
            let tq = SignTarget { query: &q, ..t };
            assert_eq!(verify(&tq, &h, &lookup, now).unwrap().version, v);
            let later = now + Duration::from_secs(120);
            let e = verify(&tq, &h, &lookup, later).unwrap_err();
            assert_eq!(e.service_code(), Some("AccessDenied"), "{v:?}");
            assert!(e.message().contains("expired"));
        }
    }

    #[test]
    fn v4_presigned_urls_are_valid_for_at_most_seven_days() {
        let now = SystemTime::now();
        let h = http::HeaderMap::new();
        let t = SignTarget { method: "GET", bucket: Some("bkt"), key: Some("k"), query: &[] };
        let presign = |secs| {
            Signer::new(SignatureVersion::V4, "cn-hangzhou").presign(
                &Credentials::new("ak", "sk"),
                &t,
                &h,
                now,
                Duration::from_secs(secs),
            )
        };
        let week = presign(604_800);
        assert!(verify(&SignTarget { query: &week, ..t }, &h, &lookup, now).is_ok());
        // Our presigner cuts a longer validity to a week; a URL made elsewhere may claim eight days (the
        // expiry is checked before the signature).
        let capped = presign(8 * 24 * 3600);
        assert!(capped.iter().any(|(k, v)| k == "x-oss-expires" && v == "604800"), "{capped:?}");
        let eight_days: Vec<(String, String)> = week
            .iter()
            .map(|(k, v)| (k.clone(), if k == "x-oss-expires" { "691200".to_owned() } else { v.clone() }))
            .collect();
        let e = verify(&SignTarget { query: &eight_days, ..t }, &h, &lookup, now).unwrap_err();
        let se = e.service_error().unwrap();
        assert_eq!((se.status, se.code.as_str(), se.ec.as_deref()), (403, "AccessDenied", Some("0002-00000232")));
        assert!(e.message().contains("x-oss-expires") && e.message().contains("604800"), "{e}");
    }
}
