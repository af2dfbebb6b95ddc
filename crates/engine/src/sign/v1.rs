//! Signature V1: `Authorization: OSS <AccessKeyId>:<base64(HMAC-SHA1(secret, StringToSign))>`.
//!
//! ```text
//! StringToSign = VERB \n Content-MD5 \n Content-Type \n Date \n CanonicalizedOSSHeaders CanonicalizedResource
//! ```
//! `Date` is `x-oss-date` when present, else `Date` (for presigned URLs: the `Expires` epoch). The canonical
//! resource uses the raw key and only the whitelisted sub-resources, sorted, with decoded values.

use super::{header, hmac_sha1, Credentials, SignTarget};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Query parameters that are part of the V1 canonical resource (oss2's and the Go SDK's lists, merged).
const SUBRESOURCES: &[&str] = &[
    "acl",
    "append",
    "asyncFetch",
    "bucketInfo",
    "callback",
    "callback-var",
    "cname",
    "comp",
    "continuation-token",
    "cors",
    "delete",
    "encryption",
    "endTime",
    "img",
    "inventory",
    "inventoryId",
    "lifecycle",
    "live",
    "location",
    "logging",
    "metaQuery",
    "objectMeta",
    "partNumber",
    "policy",
    "position",
    "qos",
    "qosInfo",
    "referer",
    "regionList",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "requestPayment",
    "resourceGroup",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "sequential",
    "stat",
    "startTime",
    "status",
    "style",
    "styleName",
    "symlink",
    "tagging",
    "transferAcceleration",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "vod",
    "website",
    "worm",
    "wormExtend",
    "wormId",
    "x-oss-process",
    "x-oss-request-payer",
    "x-oss-traffic-limit",
    "cloudboxes",
];

/// `/bucket/key?sub&sub=v` with the raw key and sorted, whitelisted sub-resources.
pub fn canonical_resource(target: &SignTarget<'_>) -> String {
    let mut out = String::from("/");
    if let Some(b) = target.bucket {
        out.push_str(b);
        out.push('/');
        if let Some(k) = target.key {
            out.push_str(k);
        }
    }
    let mut subs: Vec<&(String, String)> =
        target.query.iter().filter(|(k, _)| SUBRESOURCES.contains(&k.as_str())).collect();
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (k, v)) in subs.into_iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        if !v.is_empty() {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// `x-oss-*` headers, lower-cased, sorted, `name:value\n` each.
fn canonical_oss_headers(headers: &http::HeaderMap) -> String {
    let mut hs: Vec<(String, &str)> = headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-oss-"))
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().trim()))
        .collect();
    hs.sort();
    hs.into_iter().map(|(n, v)| format!("{n}:{v}\n")).collect()
}

/// The string to sign, with `date` in the date slot.
pub fn string_to_sign(target: &SignTarget<'_>, headers: &http::HeaderMap, date: &str) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}{}",
        target.method,
        header(headers, "content-md5").unwrap_or_default(),
        header(headers, "content-type").unwrap_or_default(),
        date,
        canonical_oss_headers(headers),
        canonical_resource(target)
    )
}

/// The date a header-signed request puts in the date slot: `x-oss-date`, else `Date`.
pub fn header_date(headers: &http::HeaderMap) -> &str {
    header(headers, "x-oss-date").or_else(|| header(headers, "date")).unwrap_or_default()
}

/// base64(HMAC-SHA1(secret, string_to_sign)).
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    crate::util::b64(&hmac_sha1(secret.as_bytes(), string_to_sign.as_bytes()))
}

/// The `Authorization` header value.
pub fn authorization(creds: &Credentials, target: &SignTarget<'_>, headers: &http::HeaderMap) -> String {
    let sts = string_to_sign(target, headers, header_date(headers));
    format!("OSS {}:{}", creds.access_key_id(), signature(creds.secret(), &sts))
}

/// Presigned-URL query parameters: `OSSAccessKeyId`, `Expires`, `Signature` (and `security-token`).
pub fn presign(
    creds: &Credentials,
    target: &SignTarget<'_>,
    headers: &http::HeaderMap,
    now: SystemTime,
    expires: Duration,
) -> Vec<(String, String)> {
    let expires_at = (now + expires).duration_since(UNIX_EPOCH).unwrap_or_default().as_secs().to_string();
    let mut query: Vec<(String, String)> = target.query.to_vec();
    if let Some(t) = creds.security_token() {
        query.push(("security-token".into(), t.into()));
    }
    let signed = SignTarget { query: &query, ..*target };
    let sig = signature(creds.secret(), &string_to_sign(&signed, headers, &expires_at));
    let mut out = vec![
        ("OSSAccessKeyId".to_owned(), creds.access_key_id().to_owned()),
        ("Expires".to_owned(), expires_at),
        ("Signature".to_owned(), sig),
    ];
    if let Some(t) = creds.security_token() {
        out.push(("security-token".into(), t.into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Wed, 28 Dec 2022 10:27:41 GMT";

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn creds() -> Credentials {
        Credentials::new("ak", "sk")
    }

    fn put_headers() -> http::HeaderMap {
        headers(&[
            ("content-md5", "eB5eJF1ptWaXm4bijSPyxw=="),
            ("content-type", "text/html"),
            ("x-oss-meta-author", "alice"),
            ("x-oss-meta-magic", "abracadabra"),
            ("x-oss-date", DATE),
        ])
    }

    #[test]
    fn vector_1_put_object() {
        let t = SignTarget { method: "PUT", bucket: Some("examplebucket"), key: Some("nelson"), query: &[] };
        let h = put_headers();
        assert_eq!(
            string_to_sign(&t, &h, header_date(&h)),
            "PUT\neB5eJF1ptWaXm4bijSPyxw==\ntext/html\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-date:Wed, 28 Dec 2022 10:27:41 GMT\nx-oss-meta-author:alice\nx-oss-meta-magic:abracadabra\n/examplebucket/nelson"
        );
        assert_eq!(authorization(&creds(), &t, &h), "OSS ak:kSHKmLxlyEAKtZPkJhG9bZb5k7M=");
    }

    #[test]
    fn vector_2_acl_subresource() {
        let query = q(&[("acl", "")]);
        let t = SignTarget { method: "PUT", bucket: Some("examplebucket"), key: Some("nelson"), query: &query };
        assert_eq!(authorization(&creds(), &t, &put_headers()), "OSS ak:/afkugFbmWDQ967j1vr6zygBLQk=");
    }

    #[test]
    fn vector_3_non_subresource_dropped() {
        let query = q(&[("resourceGroup", ""), ("non-resousce", "null")]);
        let t = SignTarget { method: "GET", bucket: Some("examplebucket"), key: None, query: &query };
        let h = headers(&[("x-oss-date", DATE)]);
        assert_eq!(
            string_to_sign(&t, &h, header_date(&h)),
            "GET\n\n\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-date:Wed, 28 Dec 2022 10:27:41 GMT\n/examplebucket/?resourceGroup"
        );
        assert_eq!(authorization(&creds(), &t, &h), "OSS ak:vkQmfuUDyi1uDi3bKt67oemssIs=");
    }

    #[test]
    fn vector_4_subresources_sorted() {
        let query = q(&[("resourceGroup", ""), ("acl", "")]);
        let t = SignTarget { method: "GET", bucket: Some("examplebucket"), key: None, query: &query };
        let h = headers(&[("x-oss-date", DATE)]);
        assert!(string_to_sign(&t, &h, header_date(&h)).ends_with("/examplebucket/?acl&resourceGroup"));
        assert_eq!(authorization(&creds(), &t, &h), "OSS ak:x3E5TgOvl/i7PN618s5mEvpJDYk=");
    }

    #[test]
    fn vector_5_presign() {
        let query = q(&[("versionId", "versionId")]);
        let t = SignTarget { method: "GET", bucket: Some("bucket"), key: Some("key"), query: &query };
        let now = UNIX_EPOCH + Duration::from_secs(1699807420 - 60);
        let p = presign(&creds(), &t, &http::HeaderMap::new(), now, Duration::from_secs(60));
        assert_eq!(p[1], ("Expires".into(), "1699807420".into()));
        assert_eq!(p[2], ("Signature".into(), "dcLTea+Yh9ApirQ8o8dOPqtvJXQ=".into()));

        let t = SignTarget { key: Some("key+123"), ..t };
        let now = UNIX_EPOCH + Duration::from_secs(1699808204 - 60);
        let p =
            presign(&creds().with_security_token("token"), &t, &http::HeaderMap::new(), now, Duration::from_secs(60));
        assert_eq!(p[2], ("Signature".into(), "jzKYRrM5y6Br0dRFPaTGOsbrDhY=".into()));
        assert_eq!(p[3], ("security-token".into(), "token".into()));
    }
}
