//! Service and bucket operations: ListBuckets (GetService), PutBucket, DeleteBucket, GetBucketInfo,
//! GetBucketLocation, bucket versioning, ListObjects (V1 and V2) and DeleteMultipleObjects.

use crate::handlers::Req;
use crate::response::{malformed_xml, Reply};
use crate::ServedStore;
use std::fmt::Write as _;
use transfer_engine::store::{ListPage, ListRequest, ObjectRef, Versioning, VersionsRequest};
use transfer_engine::xml::{
    self, escape, iso8601, CommonPrefix, ListBucketResult, ListedObject, VersioningConfiguration,
};
use transfer_engine::{Error, ErrorKind, Result, ServiceError};

/// The location reported for every bucket.
const LOCATION: &str = "oss-local";
/// Default and largest page of ListObjects / ListBuckets.
const DEFAULT_KEYS: u32 = 100;
const MAX_KEYS: u32 = 1000;

/// Most objects one DeleteMultipleObjects may name (OSS and S3).
const MAX_DELETE: usize = 1000;

/// OSS's error number for a DeleteMultipleObjects without Content-MD5.
pub(crate) const EC_DELETE_WITHOUT_MD5: &str = "0016-00000606";

/// DeleteMultipleObjects without Content-MD5 (or, in S3, an `x-amz-checksum-*`): 400 `InvalidRequest`. The
/// S3 edge names S3's alternative in the message.
fn delete_without_md5() -> Error {
    Error::service(ServiceError {
        status: 400,
        code: "InvalidRequest".into(),
        message: "Missing required header for this request: Content-MD5. DeleteMultipleObjects needs the base64 MD5 \
                  of its XML body in Content-MD5."
            .into(),
        ec: Some(EC_DELETE_WITHOUT_MD5.into()),
        ..Default::default()
    })
}

/// A DeleteMultipleObjects naming more than [`MAX_DELETE`] objects: 400 `MalformedXML`, as OSS and S3 answer it.
fn too_many_to_delete(n: usize) -> Error {
    Error::code(
        400,
        "MalformedXML",
        format!(
            "The XML you provided was not well-formed or did not validate against our published schema: <Delete> \
             names {n} objects, at most {MAX_DELETE} are allowed; send them in batches of {MAX_DELETE}."
        ),
    )
}

fn element(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", escape(value));
}

/// ListBuckets: `prefix`, `marker` and `max-keys` apply to the store's sorted bucket list.
pub(crate) async fn list_buckets<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let prefix = req.q_str("prefix").unwrap_or_default();
    let marker = req.q_str("marker").unwrap_or_default();
    let max = req.q_num::<u32>("max-keys")?.unwrap_or(MAX_KEYS).clamp(1, MAX_KEYS) as usize;
    let mut buckets: Vec<(String, i64)> =
        store.list_buckets().await?.into_iter().filter(|(n, _)| n.starts_with(&prefix) && *n > marker).collect();
    buckets.sort();
    let truncated = buckets.len() > max;
    buckets.truncate(max);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult>");
    element(&mut out, "Prefix", &prefix);
    element(&mut out, "Marker", &marker);
    element(&mut out, "MaxKeys", &max.to_string());
    element(&mut out, "IsTruncated", if truncated { "true" } else { "false" });
    if truncated {
        element(&mut out, "NextMarker", buckets.last().map(|(n, _)| n.as_str()).unwrap_or_default());
    }
    out.push_str("<Owner><ID>transfer</ID><DisplayName>transfer</DisplayName></Owner><Buckets>");
    for (name, created) in &buckets {
        out.push_str("<Bucket>");
        element(&mut out, "CreationDate", &iso8601(*created));
        element(&mut out, "ExtranetEndpoint", &req.host);
        element(&mut out, "IntranetEndpoint", &req.host);
        element(&mut out, "Location", LOCATION);
        element(&mut out, "Name", name);
        element(&mut out, "Region", LOCATION.trim_start_matches("oss-"));
        element(&mut out, "StorageClass", "Standard");
        out.push_str("</Bucket>");
    }
    out.push_str("</Buckets></ListAllMyBucketsResult>");
    Ok(Reply::xml(out))
}

/// PutBucket (a `CreateBucketConfiguration` body is accepted and ignored).
pub(crate) async fn put_bucket<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    req.small_body().await?;
    store.create_bucket(req.bucket()).await?;
    Ok(Reply::ok().header("location", format!("/{}", req.bucket())))
}

/// DeleteBucket.
pub(crate) async fn delete_bucket<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    store.delete_bucket(req.bucket()).await?;
    Ok(Reply::no_content())
}

fn versioning_status(v: Versioning) -> Option<&'static str> {
    match v {
        Versioning::Off => None,
        Versioning::Enabled => Some("Enabled"),
        Versioning::Suspended => Some("Suspended"),
    }
}

/// GetBucketInfo: the bucket's name, location, versioning and creation date.
pub(crate) async fn get_bucket_info<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let versioning = store.get_versioning(req.bucket()).await?;
    let created = match store.list_buckets().await {
        Ok(all) => all.into_iter().find(|(n, _)| n == req.bucket()).map_or(0, |(_, c)| c),
        Err(_) => 0,
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<BucketInfo><Bucket>");
    element(&mut out, "AccessMonitor", "Disabled");
    element(&mut out, "CreationDate", &iso8601(created));
    element(&mut out, "ExtranetEndpoint", &req.host);
    element(&mut out, "IntranetEndpoint", &req.host);
    element(&mut out, "Location", LOCATION);
    element(&mut out, "StorageClass", "Standard");
    element(&mut out, "Name", req.bucket());
    element(&mut out, "Versioning", versioning_status(versioning).unwrap_or_default());
    out.push_str("<Owner><DisplayName>transfer</DisplayName><ID>transfer</ID></Owner>");
    out.push_str("<AccessControlList><Grant>private</Grant></AccessControlList>");
    out.push_str("</Bucket></BucketInfo>");
    Ok(Reply::xml(out))
}

/// GetBucketLocation.
pub(crate) async fn get_bucket_location<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    store.get_versioning(req.bucket()).await?;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    element(&mut out, "LocationConstraint", LOCATION);
    Ok(Reply::xml(out))
}

/// GetBucketAcl: every bucket is private to the configured credentials (the V2 SDK's `is_bucket_exist` asks
/// this).
pub(crate) async fn get_bucket_acl<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    store.get_versioning(req.bucket()).await?;
    let out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AccessControlPolicy><Owner><ID>transfer</ID>\
               <DisplayName>transfer</DisplayName></Owner><AccessControlList><Grant>private</Grant>\
               </AccessControlList></AccessControlPolicy>";
    Ok(Reply::xml(out.to_owned()))
}

/// GetBucketVersioning.
pub(crate) async fn get_versioning<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let v = store.get_versioning(req.bucket()).await?;
    Reply::xml_of(&VersioningConfiguration { status: versioning_status(v).map(str::to_owned) })
}

/// PutBucketVersioning: `Enabled` or `Suspended`.
pub(crate) async fn put_versioning<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    let body = req.small_body().await?;
    let doc: VersioningConfiguration = xml::from_slice(&body).map_err(|_| malformed_xml())?;
    let enabled = match doc.status.as_deref().map(str::trim) {
        Some("Enabled") => true,
        Some("Suspended") => false,
        _ => return Err(malformed_xml()),
    };
    store.put_versioning(req.bucket(), enabled).await?;
    Ok(Reply::ok())
}

fn max_keys(req: &Req) -> Result<u32> {
    Ok(req.q_num::<u32>("max-keys")?.unwrap_or(DEFAULT_KEYS).clamp(1, MAX_KEYS))
}

fn contents(req: &Req, page: &ListPage) -> (Vec<ListedObject>, Vec<CommonPrefix>) {
    let objects = page
        .objects
        .iter()
        .map(|o| ListedObject {
            key: req.enc(&o.key),
            last_modified: iso8601(o.last_modified),
            etag: crate::headers::quote(&o.etag),
            object_type: o.object_type.as_str().to_owned(),
            size: o.size,
            storage_class: o.storage_class.as_str().to_owned(),
        })
        .collect();
    let prefixes = page.common_prefixes.iter().map(|p| CommonPrefix { prefix: req.enc(p) }).collect();
    (objects, prefixes)
}

/// The `start_after` that continues a V1 listing after `marker`. A marker inside a rolled-up prefix (the
/// `NextMarker` of a page that ended on a common prefix) skips everything under that prefix, so the prefix is
/// not reported twice.
fn v1_start_after(marker: &str, prefix: &str, delimiter: Option<&str>) -> String {
    if let (Some(d), Some(rest)) = (delimiter.filter(|d| !d.is_empty()), marker.strip_prefix(prefix)) {
        if let Some(i) = rest.find(d) {
            return format!("{prefix}{}{}", &rest[..i + d.len()], char::MAX);
        }
    }
    marker.to_owned()
}

/// ListObjects (V1, `marker` / `NextMarker`).
pub(crate) async fn list_objects_v1<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let prefix = req.q_str("prefix");
    let delimiter = req.q_str("delimiter");
    let marker = req.q_str("marker");
    let max = max_keys(&req)?;
    let list = ListRequest::default()
        .prefix(prefix.clone())
        .delimiter(delimiter.clone())
        .start_after(
            marker.as_deref().map(|m| v1_start_after(m, prefix.as_deref().unwrap_or_default(), delimiter.as_deref())),
        )
        .continuation_token(None)
        .max_keys(Some(max));
    let page = store.list_objects(req.bucket(), &list).await?;
    let next_marker = page.is_truncated.then(|| {
        let last_key = page.objects.last().map(|o| o.key.as_str()).unwrap_or_default();
        let last_prefix = page.common_prefixes.last().map(String::as_str).unwrap_or_default();
        req.enc(last_key.max(last_prefix))
    });
    let (contents, common_prefixes) = contents(&req, &page);
    Reply::xml_of(&ListBucketResult {
        name: req.bucket().to_owned(),
        prefix: req.enc(prefix.as_deref().unwrap_or_default()),
        marker: Some(req.enc(marker.as_deref().unwrap_or_default())),
        max_keys: max,
        delimiter: req.enc(delimiter.as_deref().unwrap_or_default()),
        encoding_type: req.encoding_type(),
        is_truncated: page.is_truncated,
        next_marker,
        contents,
        common_prefixes,
        ..Default::default()
    })
}

/// ListObjectsV2 (`list-type=2`, continuation tokens).
pub(crate) async fn list_objects_v2<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let list = ListRequest::default()
        .prefix(req.q_str("prefix"))
        .delimiter(req.q_str("delimiter"))
        .start_after(req.q_str("start-after"))
        .continuation_token(req.q_str("continuation-token"))
        .max_keys(Some(max_keys(&req)?));
    let page = store.list_objects(req.bucket(), &list).await?;
    let key_count = (page.objects.len() + page.common_prefixes.len()) as u32;
    let (contents, common_prefixes) = contents(&req, &page);
    let enc_opt = |v: &Option<String>| v.as_deref().map(|s| req.enc(s));
    Reply::xml_of(&ListBucketResult {
        name: req.bucket().to_owned(),
        prefix: req.enc(list.prefix.as_deref().unwrap_or_default()),
        start_after: enc_opt(&list.start_after),
        continuation_token: enc_opt(&list.continuation_token),
        max_keys: list.max_keys.unwrap_or(DEFAULT_KEYS),
        delimiter: req.enc(list.delimiter.as_deref().unwrap_or_default()),
        encoding_type: req.encoding_type(),
        is_truncated: page.is_truncated,
        next_continuation_token: enc_opt(&page.next_continuation_token.filter(|_| page.is_truncated)),
        key_count: Some(key_count),
        contents,
        common_prefixes,
        ..Default::default()
    })
}

/// ListObjectVersions (`GET /bucket?versions`): versions and delete markers by key, each key's newest first,
/// paged by `key-marker` and `version-id-marker`; the same document in both dialects.
pub(crate) async fn list_versions<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let list = VersionsRequest::default()
        .prefix(req.q_str("prefix"))
        .key_marker(req.q_str("key-marker"))
        .version_id_marker(req.q_str("version-id-marker"))
        .max_keys(Some(max_keys(&req)?));
    let page = store.list_versions(req.bucket(), &list).await?;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListVersionsResult>");
    element(&mut out, "Name", req.bucket());
    element(&mut out, "Prefix", &req.enc(list.prefix.as_deref().unwrap_or_default()));
    element(&mut out, "KeyMarker", &req.enc(list.key_marker.as_deref().unwrap_or_default()));
    element(&mut out, "VersionIdMarker", list.version_id_marker.as_deref().unwrap_or_default());
    element(&mut out, "MaxKeys", &list.max_keys.unwrap_or(DEFAULT_KEYS).to_string());
    element(&mut out, "Delimiter", "");
    if let Some(enc) = req.encoding_type() {
        element(&mut out, "EncodingType", &enc);
    }
    element(&mut out, "IsTruncated", if page.is_truncated { "true" } else { "false" });
    if let (true, Some(k), Some(v)) = (page.is_truncated, &page.next_key_marker, &page.next_version_id_marker) {
        element(&mut out, "NextKeyMarker", &req.enc(k));
        element(&mut out, "NextVersionIdMarker", v);
    }
    for v in &page.versions {
        let tag = if v.delete_marker { "DeleteMarker" } else { "Version" };
        let _ = write!(out, "<{tag}>");
        element(&mut out, "Key", &req.enc(&v.key));
        element(&mut out, "VersionId", &v.version_id);
        element(&mut out, "IsLatest", if v.is_latest { "true" } else { "false" });
        element(&mut out, "LastModified", &iso8601(v.last_modified));
        if !v.delete_marker {
            element(&mut out, "ETag", &format!("\"{}\"", v.etag));
            element(&mut out, "Type", v.object_type.as_str());
            element(&mut out, "Size", &v.size.to_string());
            element(&mut out, "StorageClass", v.storage_class.as_str());
        }
        out.push_str("<Owner><ID>transfer</ID><DisplayName>transfer</DisplayName></Owner>");
        let _ = write!(out, "</{tag}>");
    }
    out.push_str("</ListVersionsResult>");
    Ok(Reply::xml(out))
}

/// DeleteMultipleObjects (`POST /bucket?delete`): deletes each named object, answering `<DeleteResult>` with a
/// `<Deleted>` or an `<Error>` per object (a missing bucket fails the whole request). As OSS requires, the
/// request carries Content-MD5 (S3 takes an `x-amz-checksum-*` instead), checked before the body is read, and
/// names at most 1,000 objects.
pub(crate) async fn delete_multiple<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    if !req.headers.contains_key("content-md5") && !req.s3_checksum {
        return Err(delete_without_md5());
    }
    let body = req.small_body().await?;
    let doc: xml::Delete = xml::from_slice(&body).map_err(|_| malformed_xml())?;
    if doc.objects.len() > MAX_DELETE {
        return Err(too_many_to_delete(doc.objects.len()));
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult>");
    if req.url_encoded() {
        element(&mut out, "EncodingType", "url");
    }
    for o in &doc.objects {
        let mut obj = ObjectRef::new(req.bucket(), o.key.as_str());
        if let Some(v) = o.version_id.as_deref().filter(|v| !v.is_empty()) {
            obj = obj.at_version(v);
        }
        match store.delete_object(&obj).await {
            Err(e) if e.kind() == ErrorKind::BucketNotFound => return Err(e),
            Err(e) => {
                let se = crate::response::service_error_of(&e);
                out.push_str("<Error>");
                element(&mut out, "Key", &req.enc(&o.key));
                if let Some(v) = &obj.version_id {
                    element(&mut out, "VersionId", v);
                }
                element(&mut out, "Code", &se.code);
                element(&mut out, "Message", &se.message);
                out.push_str("</Error>");
            }
            Ok(_) if doc.quiet == Some(true) => {}
            Ok(r) => {
                out.push_str("<Deleted>");
                element(&mut out, "Key", &req.enc(&o.key));
                if let Some(v) = &obj.version_id {
                    element(&mut out, "VersionId", v);
                }
                if r.delete_marker {
                    element(&mut out, "DeleteMarker", "true");
                    element(&mut out, "DeleteMarkerVersionId", r.version_id.as_deref().unwrap_or_default());
                }
                out.push_str("</Deleted>");
            }
        }
    }
    out.push_str("</DeleteResult>");
    Ok(Reply::xml(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_markers_skip_rolled_up_prefixes() {
        assert_eq!(v1_start_after("a/b", "", None), "a/b");
        assert_eq!(v1_start_after("dir/", "", Some("/")), format!("dir/{}", char::MAX));
        assert_eq!(v1_start_after("p/dir/x", "p/", Some("/")), format!("p/dir/{}", char::MAX));
        assert_eq!(v1_start_after("p/file", "p/", Some("/")), "p/file");
    }
}
