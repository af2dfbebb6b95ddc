//! The S3 dialect at the server's edge: a request signed with AWS SigV4 is verified as S3 verifies it, its
//! `x-amz-*` headers are read into the OSS vocabulary the handlers speak, and the answer's `x-oss-*` headers are
//! written back as S3's. Which dialect a request speaks is decided per request by its signature, so one port
//! serves both.
//!
//! The names come from [`Dialect::S3`] and [`Dialect::OSS`]; the values that differ are translated here: S3
//! storage-class names, `If-None-Match: *` (S3's forbid-overwrite), and S3's standard range semantics (OSS
//! needs `x-oss-range-behavior: standard`). Headers without an S3 counterpart (`x-oss-hash-crc64ecma`,
//! `x-oss-object-type`, the base64 error document of a HEAD, ...) are not sent to S3 clients. Errors get S3's
//! codes where the two differ ([`error_to_s3`]), and the SHA-256 a signature covers is handed to the body
//! checks ([`payload_sha256`]).

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use transfer_engine::dialect::Dialect;
use transfer_engine::sign::s3::UNSIGNED_PAYLOAD;
use transfer_engine::store::CRC32C_HEADER;
use transfer_engine::{Error, Result, StorageClass};

/// Request headers an S3 client may send that the handlers read under their OSS names.
const REQUEST_SUFFIXES: &[&str] = &[
    "tagging",
    "tagging-directive",
    "metadata-directive",
    "copy-source",
    "copy-source-range",
    "copy-source-if-match",
    "copy-source-if-none-match",
    "storage-class",
];

/// S3's whole-body checksum headers (`x-amz-checksum-<algorithm>`): one of them stands in for Content-MD5 where S3
/// requires an integrity check (DeleteObjects).
const CHECKSUM_HEADERS: &[&str] = &[
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
];

/// True when an S3 request carries a whole-body checksum header.
pub(crate) fn has_checksum_header(headers: &HeaderMap) -> bool {
    CHECKSUM_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// Response headers the handlers write under OSS names that S3 has too.
const RESPONSE_SUFFIXES: &[&str] = &[
    "request-id",
    "version-id",
    "delete-marker",
    "tagging-count",
    "copy-source-version-id",
    "storage-class",
    "restore",
    "mp-parts-count",
];

fn put(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
        headers.insert(n, v);
    }
}

/// Rewrites an S3 request's headers into the OSS vocabulary, in place. Every `x-amz-*` header is consumed
/// (the signature was checked before); `x-oss-*` headers an S3 client sent are dropped, not obeyed.
pub(crate) fn request_to_oss(method: &Method, headers: &mut HeaderMap) -> Result<()> {
    let (s3, oss) = (&Dialect::S3, &Dialect::OSS);
    let old = std::mem::take(headers);
    let mut out = HeaderMap::with_capacity(old.len());
    for (name, value) in old.iter() {
        let n = name.as_str();
        if n.starts_with(oss.prefix) {
            continue;
        }
        // S3's CRC-32C has no OSS name: the body check reads it as it is (and the answer echoes it).
        if n == CRC32C_HEADER {
            out.append(name.clone(), value.clone());
            continue;
        }
        if let Some(user) = n.strip_prefix(s3.meta_prefix) {
            if let Ok(name) = HeaderName::from_bytes(format!("{}{user}", oss.meta_prefix).as_bytes()) {
                out.append(name, value.clone());
            }
            continue;
        }
        if let Some(suffix) = n.strip_prefix(s3.prefix) {
            if REQUEST_SUFFIXES.contains(&suffix) {
                let v = value.to_str().unwrap_or_default();
                let v = if suffix == "storage-class" {
                    StorageClass::parse(v).map(|c| c.as_str().to_owned()).unwrap_or_else(|_| v.to_owned())
                } else {
                    v.to_owned()
                };
                put(&mut out, &oss.h(suffix), &v);
            }
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    // S3's conditional write: `If-None-Match: *` on PutObject, CopyObject and CompleteMultipartUpload.
    if matches!(*method, Method::PUT | Method::POST) && out.get("if-none-match").is_some_and(|v| v.as_bytes() == b"*") {
        out.remove("if-none-match");
        put(&mut out, oss.forbid_overwrite.0, oss.forbid_overwrite.1);
    }
    if out.contains_key("range") {
        put(&mut out, &oss.h("range-behavior"), "standard");
    }
    *headers = out;
    Ok(())
}

/// Rewrites an answer's headers for an S3 client, in place: the OSS headers S3 has become `x-amz-*` (storage
/// classes by their S3 names), the others are removed.
pub(crate) fn response_to_s3(headers: &mut HeaderMap) {
    let (s3, oss) = (&Dialect::S3, &Dialect::OSS);
    let old = std::mem::take(headers);
    for (name, value) in old.iter() {
        let n = name.as_str();
        if let Some(user) = n.strip_prefix(oss.meta_prefix) {
            if let Ok(name) = HeaderName::from_bytes(format!("{}{user}", s3.meta_prefix).as_bytes()) {
                headers.append(name, value.clone());
            }
        } else if let Some(suffix) = n.strip_prefix(oss.prefix) {
            if RESPONSE_SUFFIXES.contains(&suffix) {
                let v = value.to_str().unwrap_or_default();
                let v = match suffix {
                    "storage-class" => {
                        StorageClass::parse(v).ok().and_then(|c| s3.storage_class_name(c)).unwrap_or(v).to_owned()
                    }
                    _ => v.to_owned(),
                };
                put(headers, &s3.h(suffix), &v);
            }
        } else {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// The SHA-256 the body must have, from the `x-amz-content-sha256` a signature covered: `None` for
/// `UNSIGNED-PAYLOAD`; 400 `InvalidArgument` for anything but 64 hex digits (streaming `aws-chunked` payloads
/// were refused with the signature).
pub(crate) fn payload_sha256(declared: &str) -> Result<Option<[u8; 32]>> {
    if declared == UNSIGNED_PAYLOAD {
        return Ok(None);
    }
    let mut out = [0u8; 32];
    match hex::decode_to_slice(declared, &mut out) {
        Ok(()) => Ok(Some(out)),
        Err(_) => Err(Error::code(
            400,
            "InvalidArgument",
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or the hex SHA-256 of the body.",
        )
        .with_extra("ArgumentName", "x-amz-content-sha256")
        .with_extra("ArgumentValue", declared)),
    }
}

/// An error as S3 answers it. The handlers speak OSS; where S3 names the same failure differently, this table
/// renames it (one row per code), and the OSS error number (`EC`) goes:
///
/// | OSS | S3 |
/// |---|---|
/// | 409 `FileAlreadyExists` (`x-oss-forbid-overwrite`) | 412 `PreconditionFailed`, `Condition` `If-None-Match` |
/// | 400 `InvalidDigest` for a body that does not match its `Content-MD5` | 400 `BadDigest` (a malformed `Content-MD5` stays `InvalidDigest`, as in S3) |
/// | 400 `InvalidObjectName` | 400 `KeyTooLongError` for a key over 1024 bytes, else `InvalidArgument` |
/// | 403 `InvalidSecurityToken` | 400 `InvalidToken` |
/// | 400 `InvalidRequest` for DeleteMultipleObjects without Content-MD5 | the same, naming S3's alternative, `x-amz-checksum-*` |
pub(crate) fn error_to_s3(err: &Error) -> Error {
    let mut se = crate::response::service_error_of(err);
    let ec = se.ec.take();
    match se.code.as_str() {
        "FileAlreadyExists" => {
            se.status = 412;
            se.code = "PreconditionFailed".into();
            se.message = "At least one of the pre-conditions you specified did not hold".into();
            se.extra = vec![("Condition".into(), "If-None-Match".into())];
        }
        "InvalidDigest" if se.extra("CalculatedDigest").is_some() => {
            se.code = "BadDigest".into();
            se.message = "The Content-MD5 you specified did not match what we received.".into();
        }
        "InvalidObjectName" => {
            let too_long = se.message.contains("long");
            se.code = if too_long { "KeyTooLongError" } else { "InvalidArgument" }.into();
        }
        "InvalidSecurityToken" => {
            se.status = 400;
            se.code = "InvalidToken".into();
        }
        "InvalidRequest" if ec.as_deref() == Some(crate::bucket::EC_DELETE_WITHOUT_MD5) => {
            se.message = "Missing required header for this request: Content-MD5 OR x-amz-checksum-*. Send the \
                          MD5 or a checksum of the XML body."
                .into();
        }
        _ => {}
    }
    Error::service(se)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn s3_request_headers_become_oss_ones() {
        let mut h = map(&[
            ("x-amz-meta-color", "blue"),
            ("x-amz-tagging", "a=1"),
            ("x-amz-storage-class", "STANDARD_IA"),
            ("x-amz-copy-source", "/b/k"),
            ("x-amz-date", "20240101T000000Z"),
            ("x-oss-forbid-overwrite", "false"),
            ("if-none-match", "*"),
            ("range", "bytes=0-9"),
            ("content-type", "text/plain"),
        ]);
        request_to_oss(&Method::PUT, &mut h).unwrap();
        let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(get("x-oss-meta-color").as_deref(), Some("blue"));
        assert_eq!(get("x-oss-tagging").as_deref(), Some("a=1"));
        assert_eq!(get("x-oss-storage-class").as_deref(), Some("IA"));
        assert_eq!(get("x-oss-copy-source").as_deref(), Some("/b/k"));
        assert_eq!(get("x-oss-forbid-overwrite").as_deref(), Some("true"));
        assert_eq!(get("x-oss-range-behavior").as_deref(), Some("standard"));
        assert_eq!(get("content-type").as_deref(), Some("text/plain"));
        assert!(h.get("if-none-match").is_none() && h.get("x-amz-date").is_none());
        let mut get_if = map(&[("if-none-match", "\"etag\"")]);
        request_to_oss(&Method::GET, &mut get_if).unwrap();
        assert_eq!(get_if.get("if-none-match").unwrap(), "\"etag\"");
    }

    #[test]
    fn oss_response_headers_become_s3_ones_or_go() {
        let mut h = map(&[
            ("x-oss-request-id", "R1"),
            ("x-oss-version-id", "v1"),
            ("x-oss-meta-color", "blue"),
            ("x-oss-storage-class", "IA"),
            ("x-oss-hash-crc64ecma", "42"),
            ("x-oss-object-type", "Normal"),
            ("x-oss-err", "PEVycm9yLz4="),
            ("etag", "\"e\""),
        ]);
        response_to_s3(&mut h);
        let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(get("x-amz-request-id").as_deref(), Some("R1"));
        assert_eq!(get("x-amz-version-id").as_deref(), Some("v1"));
        assert_eq!(get("x-amz-meta-color").as_deref(), Some("blue"));
        assert_eq!(get("x-amz-storage-class").as_deref(), Some("STANDARD_IA"));
        assert_eq!(get("etag").as_deref(), Some("\"e\""));
        assert!(h.keys().all(|k| !k.as_str().starts_with("x-oss-")), "{h:?}");
    }

    #[test]
    fn oss_errors_get_s3_codes() {
        let exists = Error::code(409, "FileAlreadyExists", "exists").with_extra("EC", "x");
        let se = error_to_s3(&exists).service_error().unwrap().clone();
        assert_eq!(
            (se.status, se.code.as_str(), se.extra("Condition")),
            (412, "PreconditionFailed", Some("If-None-Match"))
        );
        let mismatch = Error::code(400, "InvalidDigest", "m").with_extra("CalculatedDigest", "AAAA");
        assert_eq!(error_to_s3(&mismatch).service_code(), Some("BadDigest"));
        let malformed = Error::code(400, "InvalidDigest", "m");
        assert_eq!(error_to_s3(&malformed).service_code(), Some("InvalidDigest"));
        assert_eq!(error_to_s3(&Error::code(404, "NoSuchKey", "k")).service_code(), Some("NoSuchKey"));
    }

    #[test]
    fn the_signed_payload_hash_is_read() {
        assert_eq!(payload_sha256(UNSIGNED_PAYLOAD).unwrap(), None);
        let empty = transfer_engine::sign::s3::EMPTY_SHA256;
        assert_eq!(hex::encode(payload_sha256(empty).unwrap().unwrap()), empty);
        assert_eq!(payload_sha256("nope").unwrap_err().service_code(), Some("InvalidArgument"));
    }
}
