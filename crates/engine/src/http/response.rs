//! Reading OSS responses: error documents (body or, on HEAD, the base64 `x-oss-err` header), transport
//! failures, and the typed facts carried in response headers (ETag, CRC-64, version id, object info).

use crate::dialect::Dialect;
use crate::error::{Error, ErrorKind, Result, ServiceError};
use crate::meta::{Metadata, StorageClass};
use crate::store::{ObjectChecksum, ObjectInfo, ObjectMetaSummary, ObjectType};
use http::HeaderMap;

/// Response headers copied into [`ServiceError::headers`] when present (dialect suffixes, then plain names).
const ERROR_HEADERS: &[&str] = &["request-id", "ec", "next-append-position", "version-id", "delete-marker"];
const ERROR_PLAIN_HEADERS: &[&str] = &["date", "content-range", "retry-after"];

/// A header as text (`None` when absent or not visible ASCII).
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// A header that must parse as a number, `None` when absent; a malformed value is a protocol error.
pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>> {
    match header(headers, name) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Error::new(ErrorKind::Protocol, format!("response header {name}: {v:?} is not a number"))),
    }
}

/// An ETag without its quotes (and without a weak `W/` marker).
pub(crate) fn unquote(etag: &str) -> String {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"').to_owned()
}

/// The response's ETag, unquoted (empty when absent).
pub(crate) fn etag(headers: &HeaderMap) -> String {
    header(headers, "etag").map(unquote).unwrap_or_default()
}

/// An HTTP date (`Last-Modified`) as seconds since the epoch.
pub(crate) fn http_date(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    Some(match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    })
}

/// Percent-decodes a value the server sent with `EncodingType` `url`; passes it through otherwise.
pub(crate) fn url_decoded(value: String, encoded: bool) -> Result<String> {
    if !encoded {
        return Ok(value);
    }
    crate::util::pct_decode(&value).map_err(|e| {
        Error::new(ErrorKind::Protocol, format!("the server sent {value:?} as URL-encoded, but it does not decode"))
            .with_source(e)
    })
}

/// True when a response said `<EncodingType>url</EncodingType>`.
pub(crate) fn is_url_encoded(encoding_type: &Option<String>) -> bool {
    encoding_type.as_deref().is_some_and(|e| e.eq_ignore_ascii_case("url"))
}

/// The common facts of a write response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteFacts {
    pub(crate) etag: String,
    pub(crate) crc64: Option<u64>,
    pub(crate) version_id: Option<String>,
}

/// ETag, CRC-64 and version id of a write response.
pub(crate) fn write_facts(d: &Dialect, headers: &HeaderMap) -> Result<WriteFacts> {
    Ok(WriteFacts { etag: etag(headers), crc64: crc64(d, headers)?, version_id: version_id(d, headers) })
}

/// The `x-oss-hash-crc64ecma` value.
pub(crate) fn crc64(d: &Dialect, headers: &HeaderMap) -> Result<Option<u64>> {
    match d.crc64_header {
        Some(name) => header_u64(headers, name),
        None => Ok(None),
    }
}

/// The `x-oss-version-id` value.
pub(crate) fn version_id(d: &Dialect, headers: &HeaderMap) -> Option<String> {
    header(headers, &d.h("version-id")).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// The type of an object whose store does not say (S3): a multipart ETag ends in `-<parts>`.
pub(crate) fn object_type_of_etag(etag: &str) -> ObjectType {
    match unquote(etag).rsplit_once('-') {
        Some((_, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => ObjectType::Multipart,
        _ => ObjectType::Normal,
    }
}

/// Metadata from response headers: `x-oss-meta-*`, the standard headers and the storage class (Standard when
/// the server does not say).
pub(crate) fn metadata(d: &Dialect, headers: &HeaderMap) -> Metadata {
    let mut m = Metadata::default();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        let name = name.as_str();
        if let Some(user) = name.strip_prefix(d.meta_prefix) {
            m.user.insert(user.to_owned(), value.to_owned());
        } else {
            m.set_standard(name, value.to_owned());
        }
    }
    m.storage_class = Some(
        header(headers, &d.h("storage-class"))
            .and_then(|s| StorageClass::parse(s).ok())
            .unwrap_or(StorageClass::Standard),
    );
    m
}

/// HeadObject's facts from response headers. `size` is passed in because a ranged GET reports the whole
/// size in `Content-Range`, not `Content-Length`.
pub(crate) fn object_info(d: &Dialect, headers: &HeaderMap, size: u64) -> Result<ObjectInfo> {
    Ok(ObjectInfo {
        size,
        etag: etag(headers),
        last_modified: header(headers, "last-modified").and_then(http_date).unwrap_or(0),
        crc64: crc64(d, headers)?,
        object_type: header(headers, &d.h("object-type"))
            .and_then(ObjectType::parse)
            .unwrap_or_else(|| object_type_of_etag(&etag(headers))),
        version_id: version_id(d, headers),
        tagging_count: header_u64(headers, &d.h("tagging-count"))?.unwrap_or(0) as usize,
        next_append_position: header_u64(headers, &d.h("next-append-position"))?,
        metadata: metadata(d, headers),
        restore: header(headers, &d.h("restore")).and_then(crate::store::RestoreState::parse),
        encryption: header(headers, &d.h("server-side-encryption"))
            .map(str::to_owned)
            .or_else(|| header(headers, &d.h("server-side-encryption-customer-algorithm")).map(|_| "SSE-C".to_owned())),
        checksum: object_checksum(d, headers)?,
        parts_count: header_u64(headers, &d.h("mp-parts-count"))?.and_then(|n| u32::try_from(n).ok()),
    })
}

/// The object's CRC-32C (`x-amz-checksum-crc32c`, with `x-amz-checksum-type`), where the dialect asks for it.
/// A value that does not parse is no checksum (said in the log): a store's quirk must not fail its reads.
fn object_checksum(d: &Dialect, headers: &HeaderMap) -> Result<Option<ObjectChecksum>> {
    if d.checksum_mode.is_none() {
        return Ok(None);
    }
    let Some(value) = header(headers, crate::store::CRC32C_HEADER) else { return Ok(None) };
    match ObjectChecksum::parse(value, header(headers, &d.h("checksum-type")), &etag(headers)) {
        Ok(c) => Ok(Some(c)),
        Err(e) => {
            tracing::warn!(error = %e, "the object's checksum is not used");
            Ok(None)
        }
    }
}

/// `Content-Length`, required.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<u64> {
    header_u64(headers, "content-length")?
        .ok_or_else(|| Error::new(ErrorKind::Protocol, "the response has no Content-Length"))
}

/// GetObjectMeta's facts.
pub(crate) fn meta_summary(d: &Dialect, headers: &HeaderMap) -> Result<ObjectMetaSummary> {
    Ok(ObjectMetaSummary {
        size: content_length(headers)?,
        etag: etag(headers),
        last_modified: header(headers, "last-modified").and_then(http_date).unwrap_or(0),
        last_access_time: header(headers, &d.h("last-access-time")).and_then(http_date),
        version_id: version_id(d, headers),
        crc64: crc64(d, headers)?,
    })
}

/// Parses `Content-Range: bytes first-last/total`.
pub(crate) fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (first, last, total) = (a.trim().parse().ok()?, b.trim().parse().ok()?, total.trim().parse().ok()?);
    (first <= last && last < total).then_some((first, last, total))
}

/// True when an XML body's root element is `<Error>`: OSS may answer CompleteMultipartUpload, UploadPartCopy
/// and CopyObject with 200 OK and an error document when it fails after sending the status.
pub(crate) fn is_error_document(body: &[u8]) -> bool {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => return e.name().as_ref() == b"Error",
            Ok(Event::Eof) | Err(_) => return false,
            _ => {}
        }
        buf.clear();
    }
}

/// The service error of a failed response. `body` is the error document; for a HEAD (no body) the document
/// comes from the base64 `x-oss-err` header, and without one the code is derived from the status. The request
/// id, EC and the headers a caller acts on are always recorded.
pub(crate) fn service_error(d: &Dialect, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let mut se = if !body.is_empty() {
        crate::xml::parse_error(status, body)
    } else if let Some(doc) = header(headers, &d.h("err")).and_then(|v| crate::util::b64_decode(v).ok()) {
        crate::xml::parse_error(status, &doc)
    } else {
        let code = match status {
            304 => "NotModified",
            403 => "AccessDenied",
            404 => "NoSuchKey",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            412 => "PreconditionFailed",
            416 => "InvalidRange",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            _ => "BadErrorResponse",
        };
        let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        ServiceError { status, code: code.into(), message: format!("HTTP {status} {reason}"), ..Default::default() }
    };
    if se.request_id.as_deref().unwrap_or("").is_empty() {
        se.request_id = header(headers, &d.h("request-id")).map(str::to_owned);
    }
    if se.ec.is_none() {
        se.ec = header(headers, &d.h("ec")).map(str::to_owned);
    }
    let names = ERROR_HEADERS.iter().map(|s| d.h(s)).chain(ERROR_PLAIN_HEADERS.iter().map(|s| s.to_string()));
    for name in names {
        if let Some(v) = header(headers, &name) {
            se.headers.push((name, v.to_owned()));
        }
    }
    Error::service(se)
}

/// Maps a reqwest failure (connect, reset, timeout, body cut short) to a retryable transport error. The URL
/// is dropped from the message: it names the bucket and key already given as context and nothing secret, but
/// keeping one form of the object name in messages is enough.
pub(crate) fn transport(e: reqwest::Error) -> Error {
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "the request timed out"
    } else if e.is_body() {
        "the request or response body failed"
    } else if e.is_decode() {
        "the response body could not be read"
    } else if e.is_builder() {
        return Error::invalid("the HTTP request could not be built").with_source(e.without_url());
    } else {
        "the connection failed"
    };
    Error::new(ErrorKind::Transport, what).with_source(e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const D: &Dialect = &Dialect::OSS;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn head_error_comes_from_the_base64_header() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><RequestId>R1</RequestId><EC>0026-00000001</EC></Error>";
        let h = map(&[
            ("x-oss-err", &crate::util::b64(doc.as_bytes())),
            ("x-oss-ec", "0026-00000001"),
            ("x-oss-request-id", "R1"),
        ]);
        let e = service_error(D, 404, &h, b"");
        assert_eq!(e.service_code(), Some("NoSuchKey"));
        let se = e.service_error().unwrap();
        assert_eq!(se.ec.as_deref(), Some("0026-00000001"));
        assert_eq!(se.request_id.as_deref(), Some("R1"));
        assert!(!e.is_retryable());
    }

    #[test]
    fn head_error_without_a_document_uses_the_status_and_headers() {
        let h = map(&[("x-oss-ec", "0026-00000001"), ("x-oss-request-id", "R2")]);
        let e = service_error(D, 404, &h, b"");
        assert_eq!(e.service_code(), Some("NoSuchKey"));
        assert_eq!(e.service_error().unwrap().ec.as_deref(), Some("0026-00000001"));
        assert_eq!(e.service_error().unwrap().request_id.as_deref(), Some("R2"));
        assert!(service_error(D, 503, &HeaderMap::new(), b"").is_retryable());
    }

    #[test]
    fn body_error_keeps_the_headers_that_matter() {
        let body = b"<Error><Code>PositionNotEqualToLength</Code><Message>Position is not equal to file length</Message><EC>0026-00000016</EC></Error>";
        let h = map(&[("x-oss-request-id", "R3"), ("x-oss-next-append-position", "11"), ("server", "x")]);
        let e = service_error(D, 409, &h, body);
        let se = e.service_error().unwrap();
        assert_eq!(se.code, "PositionNotEqualToLength");
        assert_eq!(se.request_id.as_deref(), Some("R3"));
        assert_eq!(se.header("x-oss-next-append-position"), Some("11"));
        assert_eq!(se.header("server"), None);
        let slow = service_error(D, 503, &h, b"<Error><Code>SlowDown</Code><Message>m</Message></Error>");
        assert!(slow.is_retryable());
    }

    #[test]
    fn error_documents_are_recognised_in_ok_bodies() {
        assert!(is_error_document(b"<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code></Error>"));
        assert!(!is_error_document(b"<?xml version=\"1.0\"?><CompleteMultipartUploadResult/>"));
        assert!(!is_error_document(b""));
    }

    #[test]
    fn object_info_reads_every_field() {
        let h = map(&[
            ("content-length", "11"),
            ("etag", "\"5EB63BBBE01EEED093CB22BB8F5ACDC3\""),
            ("last-modified", "Fri, 24 Feb 2012 06:07:48 GMT"),
            ("x-oss-hash-crc64ecma", "5981764153023615706"),
            ("x-oss-object-type", "Appendable"),
            ("x-oss-version-id", "v1"),
            ("x-oss-tagging-count", "2"),
            ("x-oss-next-append-position", "11"),
            ("x-oss-storage-class", "IA"),
            ("x-oss-meta-color", "blue"),
            ("content-type", "text/plain"),
            ("cache-control", "no-cache"),
        ]);
        let info = object_info(D, &h, content_length(&h).unwrap()).unwrap();
        assert_eq!(info.size, 11);
        assert_eq!(info.etag, "5EB63BBBE01EEED093CB22BB8F5ACDC3");
        assert_eq!(info.last_modified, 1330063668);
        assert_eq!(info.crc64, Some(5981764153023615706));
        assert_eq!(info.object_type, ObjectType::Appendable);
        assert_eq!(info.version_id.as_deref(), Some("v1"));
        assert_eq!(info.tagging_count, 2);
        assert_eq!(info.next_append_position, Some(11));
        assert_eq!(info.metadata.storage_class, Some(StorageClass::InfrequentAccess));
        assert_eq!(info.metadata.user.get("color").map(String::as_str), Some("blue"));
        assert_eq!(info.metadata.content_type.as_deref(), Some("text/plain"));
        assert_eq!(info.metadata.cache_control.as_deref(), Some("no-cache"));
        assert!(object_info(D, &map(&[("x-oss-hash-crc64ecma", "nope")]), 0).is_err());
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(content_range("bytes 5-4/100"), None);
        assert_eq!(content_range("bytes 0-100/100"), None);
        assert_eq!(content_range("bytes */100"), None);
    }
}
