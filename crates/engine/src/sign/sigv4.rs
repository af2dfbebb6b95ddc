//! The V4 signing family shared by OSS V4 (`OSS4-HMAC-SHA256`) and AWS SigV4 (`AWS4-HMAC-SHA256`): the
//! canonical request, the string to sign and the HMAC-SHA256 key chain.
//!
//! ```text
//! CanonicalRequest = VERB \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n HashedPayload
//! StringToSign     = ALGORITHM \n datetime \n scope \n hex(sha256(CanonicalRequest))
//! scope            = yyyymmdd/region/service/TERMINATOR
//! SigningKey       = HMAC(HMAC(HMAC(HMAC(KEY_PREFIX + secret, yyyymmdd), region), service), TERMINATOR)
//! ```
//! The two dialects differ only in data, held by a [`Scheme`]: the names, how a query parameter without a
//! value is written (`k` for OSS, `k=` for AWS) and whether runs of spaces inside header values are collapsed
//! (AWS) or kept (OSS). Which headers are signed, and what the canonical URI is, are the dialects' own rules
//! ([`super::v4`], [`super::s3`]).

use super::hmac_sha256;
use crate::util::pct_encode;
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// The constants of one V4 signature dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    /// `OSS4-HMAC-SHA256` or `AWS4-HMAC-SHA256`.
    pub algorithm: &'static str,
    /// Prepended to the secret for the first HMAC: `aliyun_v4` or `AWS4`.
    pub key_prefix: &'static str,
    /// Last element of the scope: `aliyun_v4_request` or `aws4_request`.
    pub terminator: &'static str,
    /// A query parameter with an empty value is written `k=` (AWS) rather than `k` (OSS).
    pub empty_value_with_equals: bool,
    /// Runs of spaces inside a header value become one space (AWS "trimall"); OSS only trims the ends.
    pub collapse_spaces: bool,
}

impl Scheme {
    /// OSS signature V4.
    pub const OSS: Scheme = Scheme {
        algorithm: "OSS4-HMAC-SHA256",
        key_prefix: "aliyun_v4",
        terminator: "aliyun_v4_request",
        empty_value_with_equals: false,
        collapse_spaces: false,
    };

    /// AWS Signature Version 4.
    pub const AWS: Scheme = Scheme {
        algorithm: "AWS4-HMAC-SHA256",
        key_prefix: "AWS4",
        terminator: "aws4_request",
        empty_value_with_equals: true,
        collapse_spaces: true,
    };

    /// Encoded `k=v` pairs sorted by encoded key, then value, `&`-joined.
    pub fn canonical_query(&self, query: &[(String, String)]) -> String {
        let mut pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (pct_encode(k), pct_encode(v))).collect();
        pairs.sort();
        pairs
            .into_iter()
            .map(|(k, v)| if v.is_empty() && !self.empty_value_with_equals { k } else { format!("{k}={v}") })
            .collect::<Vec<_>>()
            .join("&")
    }

    /// One header's canonical value: every value trimmed (and, for AWS, inner runs of spaces collapsed), joined
    /// with `,`.
    pub fn header_value(&self, headers: &http::HeaderMap, name: &str) -> String {
        headers
            .get_all(name)
            .iter()
            .map(|v| {
                let s = String::from_utf8_lossy(v.as_bytes());
                if self.collapse_spaces {
                    s.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
                } else {
                    s.trim().to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `name:value\n` for each of `names` (lower-case, sorted by the caller).
    pub fn canonical_headers(&self, headers: &http::HeaderMap, names: &[String]) -> String {
        names.iter().map(|n| format!("{n}:{}\n", self.header_value(headers, n))).collect()
    }

    /// `yyyymmdd/region/service/terminator`; `date` may be the full `yyyymmddTHHMMSSZ`.
    pub fn scope(&self, date: &str, region: &str, service: &str) -> String {
        format!("{}/{region}/{service}/{}", &date[..date.len().min(8)], self.terminator)
    }

    /// The string to sign.
    pub fn string_to_sign(&self, datetime: &str, scope: &str, canonical_request: &str) -> String {
        format!("{}\n{datetime}\n{scope}\n{}", self.algorithm, sha256_hex(canonical_request.as_bytes()))
    }

    /// The signing key of one day, region and service.
    pub fn signing_key(&self, secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
        // The key changes once a day: the last one derived is kept (four HMACs per request were a tenth of a
        // small object's cost). The cache is never printed; the secret is in this process's memory anyway.
        type Last = Option<(String, String, String, String, Vec<u8>)>;
        static LAST: std::sync::Mutex<Last> = std::sync::Mutex::new(None);
        let day = &date[..date.len().min(8)];
        let seed = format!("{}{secret}", self.key_prefix);
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, d, r, v, key)) = last.as_ref() {
            if *s == seed && d == day && r == region && *v == format!("{service}/{}", self.terminator) {
                return key.clone();
            }
        }
        let k = hmac_sha256(seed.as_bytes(), day.as_bytes());
        let k = hmac_sha256(&k, region.as_bytes());
        let k = hmac_sha256(&k, service.as_bytes());
        let key = hmac_sha256(&k, self.terminator.as_bytes());
        *last = Some((seed, day.to_owned(), region.to_owned(), format!("{service}/{}", self.terminator), key.clone()));
        key
    }

    /// hex(HMAC-SHA256(signing key, string to sign)).
    pub fn signature(&self, secret: &str, date: &str, region: &str, service: &str, string_to_sign: &str) -> String {
        hex::encode(hmac_sha256(&self.signing_key(secret, date, region, service), string_to_sign.as_bytes()))
    }

    /// Splits `ak/yyyymmdd/region/service/terminator` (the access key id may itself contain `/`).
    pub fn parse_credential<'a>(&self, s: &'a str) -> Option<CredentialScope<'a>> {
        let mut it = s.rsplitn(5, '/');
        let terminator = it.next()?;
        let service = it.next()?;
        let region = it.next()?;
        let date = it.next()?;
        let access_key_id = it.next()?;
        (terminator == self.terminator && date.len() == 8).then_some(CredentialScope {
            access_key_id,
            date,
            region,
            service,
        })
    }
}

/// The parts of a `Credential=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialScope<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// `yyyymmdd`.
    pub date: &'a str,
    /// Region.
    pub region: &'a str,
    /// Service or product (`s3`, `oss`).
    pub service: &'a str,
}

/// The canonical request from its parts.
pub fn canonical_request(
    method: &str,
    uri: &str,
    query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!("{method}\n{uri}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}")
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `yyyymmddTHHMMSSZ`.
pub fn amz_date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%Y%m%dT%H%M%SZ").to_string()
}

/// Parses `yyyymmddTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok().map(|d| d.and_utc().into())
}
