//! Signature V4: `OSS4-HMAC-SHA256 Credential=<ak>/<yyyymmdd>/<region>/oss/aliyun_v4_request[,AdditionalHeaders=..],Signature=<hex>`.
//!
//! ```text
//! CanonicalRequest = VERB \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n AdditionalHeaders \n HashedPayload
//! StringToSign     = "OSS4-HMAC-SHA256" \n x-oss-date \n scope \n hex(sha256(CanonicalRequest))
//! SigningKey       = HMAC(HMAC(HMAC(HMAC("aliyun_v4" + secret, yyyymmdd), region), product), "aliyun_v4_request")
//! ```
//! The canonical URI always names the bucket (`/bucket/key`), even for virtual-hosted requests. Canonical
//! headers are `x-oss-*`, `content-type`, `content-md5` and the ones listed in `AdditionalHeaders`. The
//! canonical request, string to sign and key chain are the V4 family's ([`super::sigv4`], scheme
//! [`Scheme::OSS`]).

use super::sigv4::{self, Scheme};
use super::{header, Credentials, SignTarget};
use crate::util::pct_encode_path;
use std::time::{Duration, SystemTime};

pub use super::sigv4::{amz_date, parse_amz_date};

/// The algorithm name.
pub const ALGORITHM: &str = Scheme::OSS.algorithm;
/// The only payload hash OSS accepts.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// `/bucket/key` percent-encoded, `/` kept; `/bucket/` without key; `/` without bucket.
pub fn canonical_uri(target: &SignTarget<'_>) -> String {
    match target.bucket {
        None => "/".into(),
        Some(b) => pct_encode_path(&format!("/{b}/{}", target.key.unwrap_or_default())),
    }
}

/// Encoded `k[=v]` pairs sorted by encoded key, `&`-joined.
pub fn canonical_query(query: &[(String, String)]) -> String {
    Scheme::OSS.canonical_query(query)
}

fn is_default_signed(name: &str) -> bool {
    name.starts_with("x-oss-") || name == "content-type" || name == "content-md5"
}

/// The additional headers that are actually present, lower-case, sorted, deduplicated; default-signed ones
/// are dropped.
pub fn effective_additional(headers: &http::HeaderMap, additional: &[String]) -> Vec<String> {
    let mut v: Vec<String> = additional
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty() && !is_default_signed(h) && headers.contains_key(h.as_str()))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The canonical request. `additional` must come from [`effective_additional`].
pub fn canonical_request(
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    additional: &[String],
    payload_hash: &str,
) -> String {
    let mut signed: Vec<String> = headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| is_default_signed(n) || additional.iter().any(|a| a == n))
        .map(str::to_owned)
        .collect();
    signed.sort();
    signed.dedup();
    sigv4::canonical_request(
        target.method,
        &canonical_uri(target),
        &canonical_query(target.query),
        &Scheme::OSS.canonical_headers(headers, &signed),
        &additional.join(";"),
        payload_hash,
    )
}

/// `yyyymmdd/region/product/aliyun_v4_request`.
pub fn scope(date: &str, region: &str, product: &str) -> String {
    Scheme::OSS.scope(date, region, product)
}

/// The string to sign.
pub fn string_to_sign(datetime: &str, scope: &str, canonical_request: &str) -> String {
    Scheme::OSS.string_to_sign(datetime, scope, canonical_request)
}

/// hex(HMAC-SHA256(signing key, string to sign)).
pub fn signature(secret: &str, date: &str, region: &str, product: &str, string_to_sign: &str) -> String {
    Scheme::OSS.signature(secret, date, region, product, string_to_sign)
}

/// The `Authorization` header value for a request whose `x-oss-date` is already set.
pub fn authorization(
    creds: &Credentials,
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    region: &str,
    product: &str,
    additional: &[String],
) -> String {
    let datetime = header(headers, "x-oss-date").unwrap_or_default().to_owned();
    let additional = effective_additional(headers, additional);
    let payload = header(headers, "x-oss-content-sha256").unwrap_or(UNSIGNED_PAYLOAD);
    let cr = canonical_request(target, headers, &additional, payload);
    let scope = scope(&datetime, region, product);
    let sig = signature(creds.secret(), &datetime, region, product, &string_to_sign(&datetime, &scope, &cr));
    let mut out = format!("{ALGORITHM} Credential={}/{scope}", creds.access_key_id());
    if !additional.is_empty() {
        out.push_str(",AdditionalHeaders=");
        out.push_str(&additional.join(";"));
    }
    out.push_str(",Signature=");
    out.push_str(&sig);
    out
}

/// The longest a V4 presigned URL may be valid: 7 days. OSS refuses a longer `x-oss-expires` (EC
/// 0002-00000232, "the expiration time is invalid"), as S3 refuses a longer `X-Amz-Expires`.
pub const MAX_PRESIGN_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);

/// Presigned-URL query parameters (`x-oss-signature-version`, `x-oss-credential`, `x-oss-date`,
/// `x-oss-expires` (at most [`MAX_PRESIGN_EXPIRES`]: a longer one is cut to it, as OSS would refuse it),
/// `x-oss-security-token`, then `x-oss-signature`).
pub fn presign(
    creds: &Credentials,
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    now: SystemTime,
    expires: Duration,
    region: &str,
    product: &str,
) -> Vec<(String, String)> {
    let datetime = amz_date(now);
    let scope = scope(&datetime, region, product);
    let mut added = vec![
        ("x-oss-signature-version".to_owned(), ALGORITHM.to_owned()),
        ("x-oss-credential".to_owned(), format!("{}/{scope}", creds.access_key_id())),
        ("x-oss-date".to_owned(), datetime.clone()),
        ("x-oss-expires".to_owned(), expires.min(MAX_PRESIGN_EXPIRES).as_secs().to_string()),
    ];
    if let Some(t) = creds.security_token() {
        added.push(("x-oss-security-token".into(), t.into()));
    }
    let mut query = target.query.to_vec();
    query.extend(added.iter().cloned());
    let signed = SignTarget { query: &query, ..*target };
    let cr = canonical_request(&signed, headers, &[], UNSIGNED_PAYLOAD);
    let sig = signature(creds.secret(), &datetime, region, product, &string_to_sign(&datetime, &scope, &cr));
    added.push(("x-oss-signature".into(), sig));
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn target_query() -> Vec<(String, String)> {
        crate::util::parse_query("param1=value1&%2Bparam1=value3&%7Cparam1=value4&%2Bparam2=&%7Cparam2=&param2=")
            .unwrap()
    }

    fn headers(content_type: &str, sha: bool) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("x-oss-head1", "value".parse().unwrap());
        h.insert("abc", "value".parse().unwrap());
        h.insert("zabc", "value".parse().unwrap());
        h.insert("xyz", "value".parse().unwrap());
        h.insert("content-type", content_type.parse().unwrap());
        if sha {
            h.insert("x-oss-content-sha256", UNSIGNED_PAYLOAD.parse().unwrap());
        }
        h
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn sign(creds: &Credentials, secs: u64, additional: &[&str]) -> (String, http::HeaderMap) {
        let q = target_query();
        let t = SignTarget { method: "PUT", bucket: Some("bucket"), key: Some("1234+-/123/1.txt"), query: &q };
        let mut h = headers("text/plain", true);
        let mut signer = super::super::Signer::new(super::super::SignatureVersion::V4, "cn-hangzhou");
        signer.additional_headers = additional.iter().map(|s| s.to_string()).collect();
        signer.sign(creds, &t, &mut h, at(secs));
        (h.get("authorization").unwrap().to_str().unwrap().to_owned(), h)
    }

    #[test]
    fn vector_1_header_auth() {
        let q = target_query();
        let t = SignTarget { method: "PUT", bucket: Some("bucket"), key: Some("1234+-/123/1.txt"), query: &q };
        let mut h = headers("text/plain", true);
        h.insert("x-oss-date", "20231216T162057Z".parse().unwrap());
        let cr = canonical_request(&t, &h, &[], UNSIGNED_PAYLOAD);
        assert_eq!(
            cr,
            "PUT\n/bucket/1234%2B-/123/1.txt\n%2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2\ncontent-type:text/plain\nx-oss-content-sha256:UNSIGNED-PAYLOAD\nx-oss-date:20231216T162057Z\nx-oss-head1:value\n\n\nUNSIGNED-PAYLOAD"
        );
        let sts = string_to_sign("20231216T162057Z", &scope("20231216T162057Z", "cn-hangzhou", "oss"), &cr);
        assert!(sts.ends_with("f4613657f1b108998e8dbd10a1aa5da621dc2c6e02c9ddec0f163664848704c4"), "{sts}");
        let (auth, _) = sign(&Credentials::new("ak", "sk"), 1702743657, &[]);
        assert_eq!(
            auth,
            "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,Signature=e21d18daa82167720f9b1047ae7e7f1ce7cb77a31e8203a7d5f4624fa0284afe"
        );
    }

    #[test]
    fn vector_2_sts_token() {
        let (auth, h) = sign(&Credentials::new("ak", "sk").with_security_token("token"), 1702784856, &[]);
        assert_eq!(h.get("x-oss-security-token").unwrap(), "token");
        assert_eq!(
            auth,
            "OSS4-HMAC-SHA256 Credential=ak/20231217/cn-hangzhou/oss/aliyun_v4_request,Signature=b94a3f999cf85bcdc00d332fbd3734ba03e48382c36fa4d5af5df817395bd9ea"
        );
    }

    #[test]
    fn vector_3_additional_headers() {
        for extra in [&["ZAbc", "abc"][..], &["x-oss-head1", "abc", "ZAbc", "x-oss-no-exist"][..]] {
            let (auth, _) = sign(&Credentials::new("ak", "sk"), 1702747512, extra);
            assert_eq!(
                auth,
                "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,AdditionalHeaders=abc;zabc,Signature=4a4183c187c07c8947db7620deb0a6b38d9fbdd34187b6dbaccb316fa251212f"
            );
        }
    }

    fn presigned(creds: &Credentials, secs: u64, additional: &[&str]) -> Vec<(String, String)> {
        let q = target_query();
        let t = SignTarget { method: "PUT", bucket: Some("bucket"), key: Some("1234+-/123/1.txt"), query: &q };
        let h = headers("application/octet-stream", false);
        if additional.is_empty() {
            presign(creds, &t, &h, at(secs), Duration::from_secs(599), "cn-hangzhou", "oss")
        } else {
            presign_with_additional(creds, &t, &h, at(secs), additional)
        }
    }

    #[test]
    fn presigned_urls_are_valid_for_at_most_a_week() {
        let q = target_query();
        let t = SignTarget { method: "GET", bucket: Some("bucket"), key: Some("k"), query: &q };
        let h = headers("application/octet-stream", false);
        let creds = Credentials::new("ak", "sk");
        let expires = |days: u64| {
            let added =
                presign(&creds, &t, &h, at(1702747512), Duration::from_secs(days * 86_400), "cn-hangzhou", "oss");
            added.into_iter().find(|(k, _)| k == "x-oss-expires").map(|(_, v)| v).unwrap()
        };
        assert_eq!(expires(1), "86400");
        assert_eq!(expires(7), "604800");
        assert_eq!(expires(8), "604800", "OSS refuses more than 7 days: the URL is made for 7");
    }

    /// Vector 4c signs `AdditionalHeaders` in the query (`x-oss-additional-headers`).
    fn presign_with_additional(
        creds: &Credentials,
        t: &SignTarget<'_>,
        h: &http::HeaderMap,
        now: SystemTime,
        additional: &[&str],
    ) -> Vec<(String, String)> {
        let add: Vec<String> = effective_additional(h, &additional.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let datetime = amz_date(now);
        let sc = scope(&datetime, "cn-hangzhou", "oss");
        let mut q = t.query.to_vec();
        q.extend([
            ("x-oss-signature-version".to_owned(), ALGORITHM.to_owned()),
            ("x-oss-credential".to_owned(), format!("ak/{sc}")),
            ("x-oss-date".to_owned(), datetime.clone()),
            ("x-oss-expires".to_owned(), "599".to_owned()),
            ("x-oss-additional-headers".to_owned(), add.join(";")),
        ]);
        let st = SignTarget { query: &q, ..*t };
        let cr = canonical_request(&st, h, &add, UNSIGNED_PAYLOAD);
        let sig = signature(creds.secret(), &datetime, "cn-hangzhou", "oss", &string_to_sign(&datetime, &sc, &cr));
        vec![("x-oss-signature".into(), sig)]
    }

    #[test]
    fn vector_4_presign() {
        let p = presigned(&Credentials::new("ak", "sk"), 1702781677, &[]);
        assert_eq!(p.last().unwrap().1, "a39966c61718be0d5b14e668088b3fa07601033f6518ac7b523100014269c0fe");
        let p = presigned(&Credentials::new("ak", "sk").with_security_token("token"), 1702785388, &[]);
        assert_eq!(p.last().unwrap().1, "3817ac9d206cd6dfc90f1c09c00be45005602e55898f26f5ddb06d7892e1f8b5");
        let t = parse_amz_date("20231217T033009Z").unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let p = presigned(&Credentials::new("ak", "sk"), t, &["abc", "ZAbc"]);
        assert_eq!(p.last().unwrap().1, "6bd984bfe531afb6db1f7550983a741b103a8c58e5e14f83ea474c2322dfa2b7");
    }
}
