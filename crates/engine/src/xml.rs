//! XML bodies of the OSS (and S3) REST API, shared by the HTTP client and the server so both sides agree on
//! every element name. Parsing and writing go through quick-xml's serde support.
//!
//! Element names are the wire names (`UploadId`, `HashCrc64ecma`, ...). Repeated elements are `Vec`s with a
//! default, optional ones are `Option`s, so a server that omits an element still parses.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

/// Escapes text for an XML element or attribute.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Parses an XML document into `T`.
pub fn from_slice<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T> {
    let text = std::str::from_utf8(body).map_err(|_| Error::new(ErrorKind::Protocol, "XML body is not UTF-8"))?;
    quick_xml::de::from_str(text).map_err(|e| {
        let head: String = text.chars().take(200).collect();
        Error::new(ErrorKind::Protocol, format!("cannot parse XML body {head:?}")).with_source(e)
    })
}

/// Writes `T` as an XML document with the declaration.
pub fn to_string<T: Serialize>(value: &T) -> Result<String> {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut ser = quick_xml::se::Serializer::new(&mut out);
    ser.expand_empty_elements(false);
    value.serialize(ser).map_err(|e| Error::new(ErrorKind::Protocol, "cannot write XML").with_source(e))?;
    Ok(out)
}

/// Seconds since the epoch as ISO 8601 with milliseconds (`2012-02-24T08:42:32.000Z`).
pub fn iso8601(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses ISO 8601 / RFC 3339 to seconds since the epoch (0 when it cannot).
pub fn parse_iso8601(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s.trim()).map(|d| d.timestamp()).unwrap_or(0)
}

/// `<Tagging>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Tagging")]
pub struct Tagging {
    /// `<TagSet>`.
    #[serde(rename = "TagSet", default)]
    pub tag_set: TagSetXml,
}

/// `<TagSet>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagSetXml {
    /// `<Tag>` elements.
    #[serde(rename = "Tag", default)]
    pub tags: Vec<TagXml>,
}

/// `<Tag>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagXml {
    /// `<Key>`.
    #[serde(rename = "Key")]
    pub key: String,
    /// `<Value>`.
    #[serde(rename = "Value", default)]
    pub value: String,
}

/// `<CreateBucketConfiguration>`, the optional PutBucket body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "CreateBucketConfiguration")]
pub struct CreateBucketConfiguration {
    /// `<LocationConstraint>` (S3: the bucket's region).
    #[serde(rename = "LocationConstraint", default, skip_serializing_if = "Option::is_none")]
    pub location_constraint: Option<String>,
    /// `<StorageClass>` (OSS).
    #[serde(rename = "StorageClass", default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// `<InitiateMultipartUploadResult>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "InitiateMultipartUploadResult")]
pub struct InitiateMultipartUploadResult {
    /// `<Bucket>`.
    #[serde(rename = "Bucket")]
    pub bucket: String,
    /// `<Key>` (URL-encoded when `EncodingType` is `url`).
    #[serde(rename = "Key")]
    pub key: String,
    /// `<UploadId>`.
    #[serde(rename = "UploadId")]
    pub upload_id: String,
    /// `<EncodingType>`.
    #[serde(rename = "EncodingType", default, skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
}

/// `<CompleteMultipartUpload>`, the Complete request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "CompleteMultipartUpload")]
pub struct CompleteMultipartUpload {
    /// `<Part>` elements.
    #[serde(rename = "Part", default)]
    pub parts: Vec<CompletePart>,
}

/// A `<Part>` of the Complete body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletePart {
    /// `<PartNumber>`.
    #[serde(rename = "PartNumber")]
    pub part_number: u32,
    /// `<ETag>`, with quotes.
    #[serde(rename = "ETag")]
    pub etag: String,
    /// `<ChecksumCRC32C>` (S3, uploads with a CRC-32C), base64.
    #[serde(rename = "ChecksumCRC32C", default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc32c: Option<String>,
}

/// `<CompleteMultipartUploadResult>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "CompleteMultipartUploadResult")]
pub struct CompleteMultipartUploadResult {
    /// `<EncodingType>`.
    #[serde(rename = "EncodingType", default, skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
    /// `<Location>`.
    #[serde(rename = "Location", default)]
    pub location: String,
    /// `<Bucket>`.
    #[serde(rename = "Bucket", default)]
    pub bucket: String,
    /// `<Key>`.
    #[serde(rename = "Key", default)]
    pub key: String,
    /// `<ETag>`, with quotes.
    #[serde(rename = "ETag", default)]
    pub etag: String,
}

/// `<CopyObjectResult>` and `<CopyPartResult>` (same children).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CopyResultXml {
    /// `<LastModified>`.
    #[serde(rename = "LastModified", default)]
    pub last_modified: String,
    /// `<ETag>`, with quotes.
    #[serde(rename = "ETag", default)]
    pub etag: String,
    /// `<ChecksumCRC32C>` (S3, uploads with a CRC-32C), base64.
    #[serde(rename = "ChecksumCRC32C", default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc32c: Option<String>,
}

/// `<ListPartsResult>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "ListPartsResult")]
pub struct ListPartsResult {
    /// `<Bucket>`.
    #[serde(rename = "Bucket", default)]
    pub bucket: String,
    /// `<EncodingType>`.
    #[serde(rename = "EncodingType", default, skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
    /// `<Key>`.
    #[serde(rename = "Key", default)]
    pub key: String,
    /// `<UploadId>`.
    #[serde(rename = "UploadId", default)]
    pub upload_id: String,
    /// `<PartNumberMarker>`.
    #[serde(rename = "PartNumberMarker", default)]
    pub part_number_marker: u32,
    /// `<NextPartNumberMarker>`.
    #[serde(rename = "NextPartNumberMarker", default)]
    pub next_part_number_marker: u32,
    /// `<MaxParts>`.
    #[serde(rename = "MaxParts", default)]
    pub max_parts: u32,
    /// `<IsTruncated>`.
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    /// `<Part>` elements.
    #[serde(rename = "Part", default)]
    pub parts: Vec<ListedPart>,
}

/// A `<Part>` of ListParts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListedPart {
    /// `<PartNumber>`.
    #[serde(rename = "PartNumber")]
    pub part_number: u32,
    /// `<LastModified>`.
    #[serde(rename = "LastModified", default)]
    pub last_modified: String,
    /// `<ETag>`, with quotes.
    #[serde(rename = "ETag", default)]
    pub etag: String,
    /// `<HashCrc64ecma>`.
    #[serde(rename = "HashCrc64ecma", default, skip_serializing_if = "Option::is_none")]
    pub hash_crc64ecma: Option<u64>,
    /// `<Size>`.
    #[serde(rename = "Size", default)]
    pub size: u64,
    /// `<ChecksumCRC32C>` (S3, uploads with a CRC-32C), base64.
    #[serde(rename = "ChecksumCRC32C", default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc32c: Option<String>,
}

/// `<ListMultipartUploadsResult>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "ListMultipartUploadsResult")]
pub struct ListMultipartUploadsResult {
    /// `<Bucket>`.
    #[serde(rename = "Bucket", default)]
    pub bucket: String,
    /// `<EncodingType>`.
    #[serde(rename = "EncodingType", default, skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
    /// `<KeyMarker>`.
    #[serde(rename = "KeyMarker", default)]
    pub key_marker: String,
    /// `<UploadIdMarker>`.
    #[serde(rename = "UploadIdMarker", default)]
    pub upload_id_marker: String,
    /// `<NextKeyMarker>`.
    #[serde(rename = "NextKeyMarker", default)]
    pub next_key_marker: String,
    /// `<NextUploadIdMarker>`.
    #[serde(rename = "NextUploadIdMarker", default)]
    pub next_upload_id_marker: String,
    /// `<Delimiter>`.
    #[serde(rename = "Delimiter", default)]
    pub delimiter: String,
    /// `<Prefix>`.
    #[serde(rename = "Prefix", default)]
    pub prefix: String,
    /// `<MaxUploads>`.
    #[serde(rename = "MaxUploads", default)]
    pub max_uploads: u32,
    /// `<IsTruncated>`.
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    /// `<Upload>` elements.
    #[serde(rename = "Upload", default)]
    pub uploads: Vec<ListedUpload>,
}

/// An `<Upload>` of ListMultipartUploads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListedUpload {
    /// `<Key>`.
    #[serde(rename = "Key")]
    pub key: String,
    /// `<UploadId>`.
    #[serde(rename = "UploadId")]
    pub upload_id: String,
    /// `<Initiated>`.
    #[serde(rename = "Initiated", default)]
    pub initiated: String,
}

/// `<Delete>`, the body of DeleteMultipleObjects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Delete")]
pub struct Delete {
    /// `true`: the answer lists only the failures.
    #[serde(rename = "Quiet", default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<bool>,
    /// The objects to delete.
    #[serde(rename = "Object", default)]
    pub objects: Vec<DeleteObject>,
}

/// One `<Object>` of a `<Delete>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeleteObject {
    /// The key.
    #[serde(rename = "Key")]
    pub key: String,
    /// A version to delete; none: the current one.
    #[serde(rename = "VersionId", default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// `<DeleteResult>`, the answer of DeleteMultipleObjects.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeleteResultXml {
    /// `url` when keys are URL-encoded.
    #[serde(rename = "EncodingType", default)]
    pub encoding_type: Option<String>,
    /// The objects deleted.
    #[serde(rename = "Deleted", default)]
    pub deleted: Vec<DeletedXml>,
    /// The objects that could not be.
    #[serde(rename = "Error", default)]
    pub errors: Vec<DeleteErrorXml>,
}

/// One `<Deleted>` of a `<DeleteResult>`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeletedXml {
    /// The key.
    #[serde(rename = "Key")]
    pub key: String,
    /// The version deleted, when one was named.
    #[serde(rename = "VersionId", default)]
    pub version_id: Option<String>,
    /// Whether a delete marker was created (or deleted).
    #[serde(rename = "DeleteMarker", default)]
    pub delete_marker: Option<bool>,
    /// The delete marker's version.
    #[serde(rename = "DeleteMarkerVersionId", default)]
    pub delete_marker_version_id: Option<String>,
}

/// One `<Error>` of a `<DeleteResult>`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeleteErrorXml {
    /// The key.
    #[serde(rename = "Key")]
    pub key: String,
    /// The version named, if any.
    #[serde(rename = "VersionId", default)]
    pub version_id: Option<String>,
    /// The error code.
    #[serde(rename = "Code", default)]
    pub code: String,
    /// The message.
    #[serde(rename = "Message", default)]
    pub message: String,
}

/// `<ListAllMyBucketsResult>` of ListBuckets (GetService), as a client reads it: OSS pages it with
/// `Marker`/`NextMarker`, S3 with `ContinuationToken` (both optional: most answers hold every bucket).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "ListAllMyBucketsResult")]
pub struct ListAllMyBucketsResult {
    /// `<Buckets><Bucket>...</Bucket></Buckets>`.
    #[serde(rename = "Buckets", default)]
    pub buckets: BucketsXml,
    /// `<IsTruncated>` (OSS).
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    /// `<NextMarker>` (OSS).
    #[serde(rename = "NextMarker", default)]
    pub next_marker: Option<String>,
    /// `<ContinuationToken>` of the next page (S3).
    #[serde(rename = "ContinuationToken", default)]
    pub continuation_token: Option<String>,
}

/// `<Buckets>`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BucketsXml {
    /// Each `<Bucket>`.
    #[serde(rename = "Bucket", default)]
    pub bucket: Vec<BucketXml>,
}

/// One `<Bucket>` of ListBuckets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BucketXml {
    /// `<Name>`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// `<CreationDate>`, ISO 8601.
    #[serde(rename = "CreationDate", default)]
    pub creation_date: String,
}

/// `<ListBucketResult>` of ListObjects (V1: `Marker`/`NextMarker`) and ListObjectsV2 (continuation tokens).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "ListBucketResult")]
pub struct ListBucketResult {
    /// `<Name>`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// `<Prefix>`.
    #[serde(rename = "Prefix", default)]
    pub prefix: String,
    /// `<Marker>` (V1).
    #[serde(rename = "Marker", default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// `<StartAfter>` (V2).
    #[serde(rename = "StartAfter", default, skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
    /// `<ContinuationToken>` (V2).
    #[serde(rename = "ContinuationToken", default, skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
    /// `<MaxKeys>`.
    #[serde(rename = "MaxKeys", default)]
    pub max_keys: u32,
    /// `<Delimiter>`.
    #[serde(rename = "Delimiter", default)]
    pub delimiter: String,
    /// `<EncodingType>`.
    #[serde(rename = "EncodingType", default, skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
    /// `<IsTruncated>`.
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    /// `<NextMarker>` (V1).
    #[serde(rename = "NextMarker", default, skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    /// `<NextContinuationToken>` (V2).
    #[serde(rename = "NextContinuationToken", default, skip_serializing_if = "Option::is_none")]
    pub next_continuation_token: Option<String>,
    /// `<KeyCount>` (V2).
    #[serde(rename = "KeyCount", default, skip_serializing_if = "Option::is_none")]
    pub key_count: Option<u32>,
    /// `<Contents>` elements.
    #[serde(rename = "Contents", default)]
    pub contents: Vec<ListedObject>,
    /// `<CommonPrefixes>` elements.
    #[serde(rename = "CommonPrefixes", default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

/// A `<Contents>` of a listing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListedObject {
    /// `<Key>`.
    #[serde(rename = "Key")]
    pub key: String,
    /// `<LastModified>`.
    #[serde(rename = "LastModified", default)]
    pub last_modified: String,
    /// `<ETag>`, with quotes.
    #[serde(rename = "ETag", default)]
    pub etag: String,
    /// `<Type>`.
    #[serde(rename = "Type", default)]
    pub object_type: String,
    /// `<Size>`.
    #[serde(rename = "Size", default)]
    pub size: u64,
    /// `<StorageClass>`.
    #[serde(rename = "StorageClass", default)]
    pub storage_class: String,
}

/// A `<CommonPrefixes>` element.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommonPrefix {
    /// `<Prefix>`.
    #[serde(rename = "Prefix")]
    pub prefix: String,
}

/// `<VersioningConfiguration>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "VersioningConfiguration")]
pub struct VersioningConfiguration {
    /// `<Status>`: `Enabled` or `Suspended`; absent when never enabled.
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A `<ListVersionsResult>` (ListObjectVersions) as read: its `<Version>` and `<DeleteMarker>` entries in the
/// order the document has them (by key, each key's newest first), text as sent (keys still URL-encoded when
/// `encoding_type` says `url`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListVersionsResult {
    /// `<IsTruncated>`.
    pub is_truncated: bool,
    /// `<NextKeyMarker>`.
    pub next_key_marker: Option<String>,
    /// `<NextVersionIdMarker>`.
    pub next_version_id_marker: Option<String>,
    /// `<EncodingType>`.
    pub encoding_type: Option<String>,
    /// Each entry.
    pub entries: Vec<VersionXml>,
}

/// One `<Version>` or `<DeleteMarker>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionXml {
    /// A `<DeleteMarker>`.
    pub delete_marker: bool,
    /// `<Key>`.
    pub key: String,
    /// `<VersionId>`.
    pub version_id: String,
    /// `<IsLatest>`.
    pub is_latest: bool,
    /// `<LastModified>`.
    pub last_modified: String,
    /// `<ETag>`, with quotes.
    pub etag: String,
    /// `<Size>`.
    pub size: u64,
    /// `<StorageClass>`.
    pub storage_class: String,
    /// `<Type>` (OSS).
    pub object_type: String,
}

/// Parses a `<ListVersionsResult>`. Its two kinds of entries interleave, which serde's derived sequences
/// cannot keep in order, so it is read event by event.
pub fn parse_list_versions(body: &[u8]) -> crate::error::Result<ListVersionsResult> {
    use quick_xml::events::Event;
    let bad = |what: String| crate::error::Error::new(crate::error::ErrorKind::Protocol, what);
    let mut out = ListVersionsResult::default();
    let mut reader = quick_xml::Reader::from_reader(body);
    let (mut path, mut buf): (Vec<String>, Vec<u8>) = (Vec::new(), Vec::new());
    let mut entry: Option<VersionXml> = None;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if path.len() == 1 && (name == "Version" || name == "DeleteMarker") {
                    entry = Some(VersionXml { delete_marker: name == "DeleteMarker", ..Default::default() });
                }
                path.push(name);
            }
            Ok(Event::End(_)) => {
                if path.len() == 2 {
                    out.entries.extend(entry.take());
                }
                path.pop();
            }
            Ok(Event::Text(t)) => {
                let text = t.unescape().map_err(|e| bad(format!("ListVersionsResult: {e}")))?.into_owned();
                match (path.len(), path.last().map(String::as_str), entry.as_mut()) {
                    (2, Some("IsTruncated"), _) => out.is_truncated = text.trim() == "true",
                    (2, Some("NextKeyMarker"), _) => out.next_key_marker = Some(text),
                    (2, Some("NextVersionIdMarker"), _) => out.next_version_id_marker = Some(text),
                    (2, Some("EncodingType"), _) => out.encoding_type = Some(text),
                    (3, Some(field), Some(v)) => match field {
                        "Key" => v.key = text,
                        "VersionId" => v.version_id = text,
                        "IsLatest" => v.is_latest = text.trim() == "true",
                        "LastModified" => v.last_modified = text,
                        "ETag" => v.etag = text,
                        "Size" => v.size = text.trim().parse().map_err(|_| bad(format!("a <Size> of {text:?}")))?,
                        "StorageClass" => v.storage_class = text,
                        "Type" => v.object_type = text,
                        _ => {}
                    },
                    _ => {}
                }
            }
            Ok(Event::Eof) => break,
            Err(e) => return Err(bad(format!("ListVersionsResult is not XML: {e}"))),
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

/// Parses an `<Error>` document into its facts. Lenient, as the SDKs are: unknown children land in `extra`, and a
/// body that is not XML still yields the status with code `BadErrorResponse`.
pub fn parse_error(status: u16, body: &[u8]) -> crate::error::ServiceError {
    use quick_xml::events::Event;
    let mut se = crate::error::ServiceError { status, ..Default::default() };
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut path: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => path.push(String::from_utf8_lossy(e.name().as_ref()).into_owned()),
            Ok(Event::End(_)) => {
                path.pop();
            }
            Ok(Event::Text(t)) if path.len() == 2 && path[0] == "Error" => {
                let text = t.unescape().map(|c| c.into_owned()).unwrap_or_default();
                match path[1].as_str() {
                    "Code" => se.code = text,
                    "Message" => se.message = text,
                    "RequestId" => se.request_id = Some(text),
                    "EC" => se.ec = Some(text),
                    other => se.extra.push((other.to_owned(), text)),
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    if se.code.is_empty() {
        se.code = "BadErrorResponse".into();
        if se.message.is_empty() {
            se.message = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        }
    }
    se
}

/// Writes an `<Error>` document: Code, Message, RequestId, HostId, EC, then the extra children.
pub fn error_document(se: &crate::error::ServiceError, host_id: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n");
    let mut el = |name: &str, value: &str| {
        out.push_str(&format!("  <{name}>{}</{name}>\n", escape(value)));
    };
    el("Code", &se.code);
    el("Message", &se.message);
    el("RequestId", se.request_id.as_deref().unwrap_or_default());
    el("HostId", host_id);
    for (k, v) in &se.extra {
        el(k, v);
    }
    if let Some(ec) = &se.ec {
        el("EC", ec);
    }
    out.push_str("</Error>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oss_error_sample_parses() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>PositionNotEqualToLength</Code>
  <Message>Position is not equal to file length</Message>
  <RequestId>5C3D8D2A0ACA54D87B43****</RequestId>
  <HostId>demo-walker-6961.oss-cn-hangzhou.aliyuncs.com</HostId>
  <EC>0026-00000016</EC>
</Error>"#;
        let se = parse_error(409, body);
        assert_eq!(se.code, "PositionNotEqualToLength");
        assert_eq!(se.ec.as_deref(), Some("0026-00000016"));
        assert_eq!(se.request_id.as_deref(), Some("5C3D8D2A0ACA54D87B43****"));
        assert_eq!(se.extra("HostId"), Some("demo-walker-6961.oss-cn-hangzhou.aliyuncs.com"));
        let again = parse_error(409, error_document(&se, "h").as_bytes());
        assert_eq!((again.code, again.ec), (se.code, se.ec));
        assert_eq!(parse_error(502, b"<html>bad gateway</html>").code, "BadErrorResponse");
    }

    #[test]
    fn dtos_round_trip() {
        let lp = ListPartsResult {
            bucket: "b".into(),
            key: "k".into(),
            upload_id: "u".into(),
            max_parts: 2,
            is_truncated: true,
            next_part_number_marker: 2,
            parts: vec![
                ListedPart {
                    part_number: 1,
                    etag: "\"A\"".into(),
                    hash_crc64ecma: Some(u64::MAX),
                    size: 5,
                    ..Default::default()
                },
                ListedPart { part_number: 2, etag: "\"B\"".into(), size: 6, ..Default::default() },
            ],
            ..Default::default()
        };
        let s = to_string(&lp).unwrap();
        assert!(
            s.contains("<ListPartsResult>") && s.contains("<HashCrc64ecma>18446744073709551615</HashCrc64ecma>"),
            "{s}"
        );
        assert_eq!(from_slice::<ListPartsResult>(s.as_bytes()).unwrap(), lp);
        let c = CompleteMultipartUpload {
            parts: vec![CompletePart {
                part_number: 1,
                etag: "\"E\"".into(),
                checksum_crc32c: Some("4waSgw==".into()),
            }],
        };
        assert_eq!(from_slice::<CompleteMultipartUpload>(to_string(&c).unwrap().as_bytes()).unwrap(), c);
        let empty: ListBucketResult = from_slice(b"<ListBucketResult><Name>b</Name></ListBucketResult>").unwrap();
        assert!(empty.contents.is_empty());
        assert_eq!(parse_iso8601(&iso8601(1_700_000_000)), 1_700_000_000);
    }
}
