//! Header mapping, one function per direction: request headers to [`PutOptions`] / [`CopyOptions`]
//! ([`put_options`], [`copy_options`]), and what the store reports to response headers ([`info_headers`],
//! [`put_result_headers`], ...).

use crate::response::invalid_argument;
use http::HeaderMap;
use transfer_engine::meta::{Metadata, StorageClass};
use transfer_engine::store::{
    ByteRange, CopyConditions, CopyOptions, Directive, ObjectInfo, ObjectMetaSummary, ObjectRef, ObjectType,
    PutOptions, PutResult,
};
use transfer_engine::util::{b64, pct_decode};
use transfer_engine::{Error, Result, TagSet};

const META_PREFIX: &str = "x-oss-meta-";

/// A request header as text; `None` when absent. A value that is not visible ASCII is refused.
pub(crate) fn get<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| invalid_argument(format!("The header {name} has a value that is not ASCII text."), name, "")),
    }
}

fn flag(h: &HeaderMap, name: &str) -> Result<bool> {
    Ok(get(h, name)?.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")))
}

/// Maps a tag-set or metadata validation failure to OSS's code for it.
fn as_service(e: Error, code: &str) -> Error {
    if e.service_error().is_some() {
        e
    } else {
        Error::code(400, code, e.message().to_owned())
    }
}

/// The metadata a write carries: `x-oss-meta-*`, the standard headers and `x-oss-storage-class`.
pub(crate) fn metadata(h: &HeaderMap) -> Result<Metadata> {
    let mut m = Metadata::default();
    for (name, value) in h {
        let name = name.as_str();
        if let Some(user) = name.strip_prefix(META_PREFIX) {
            let value = value
                .to_str()
                .map_err(|_| invalid_argument(format!("The metadata header {name} is not ASCII text."), name, ""))?;
            m.insert_user(user, value.trim()).map_err(|e| as_service(e, "InvalidArgument"))?;
        } else if matches!(
            name,
            "content-type"
                | "cache-control"
                | "content-disposition"
                | "content-encoding"
                | "content-language"
                | "expires"
        ) {
            if let Some(v) = get(h, name)? {
                m.set_standard(name, v.to_owned());
            }
        }
    }
    if let Some(class) = get(h, "x-oss-storage-class")? {
        m.storage_class = Some(StorageClass::parse(class).map_err(|_| {
            invalid_argument(format!("Invalid storage class {class:?}."), "x-oss-storage-class", class)
        })?);
    }
    m.validate().map_err(|e| as_service(e, "InvalidArgument"))?;
    Ok(m)
}

/// Tags from `x-oss-tagging`, parsed as OSS does: a pair whose value holds an unencoded `=` (`a=b=c`) or any
/// tag that breaks a limit is 400 `InvalidTag`. This deliberately refuses what the V2 SDK's Copier sends when
/// it re-sends copied tags unencoded (`k4+-==+-=._:/`): OSS refuses it too, and a stand-in that accepted it
/// would hide that bug from whoever tests against us.
pub(crate) fn tags(h: &HeaderMap) -> Result<Option<TagSet>> {
    let Some(v) = get(h, "x-oss-tagging")? else { return Ok(None) };
    TagSet::parse_header(v).map(Some).map_err(|e| as_service(e, "InvalidTag"))
}

/// The options of a write: metadata, tags, `x-oss-forbid-overwrite`.
pub(crate) fn put_options(h: &HeaderMap) -> Result<PutOptions> {
    Ok(PutOptions::default().metadata(metadata(h)?).tags(tags(h)?).forbid_overwrite(flag(h, "x-oss-forbid-overwrite")?))
}

/// `x-oss-forbid-overwrite: true`.
pub(crate) fn forbid_overwrite(h: &HeaderMap) -> Result<bool> {
    flag(h, "x-oss-forbid-overwrite")
}

/// Parses `x-oss-copy-source`: `/bucket/url-encoded-key[?versionId=...]` (the leading `/` is optional).
pub(crate) fn copy_source(h: &HeaderMap) -> Result<ObjectRef> {
    let raw = get(h, "x-oss-copy-source")?.unwrap_or_default();
    let bad =
        || invalid_argument(format!("Copy Source {raw:?} must be of the form /bucket/key."), "x-oss-copy-source", raw);
    let (path, version) = match raw.split_once("?versionId=") {
        Some((p, v)) => (p, Some(v)),
        None => (raw, None),
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = path.split_once('/').ok_or_else(bad)?;
    let (bucket, key) = (pct_decode(bucket).map_err(|_| bad())?, pct_decode(key).map_err(|_| bad())?);
    if bucket.is_empty() || key.is_empty() {
        return Err(bad());
    }
    let mut obj = ObjectRef::new(bucket, key);
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        obj = obj.at_version(pct_decode(v).map_err(|_| bad())?);
    }
    Ok(obj)
}

/// `x-oss-copy-source-if-match` / `-if-none-match`.
pub(crate) fn copy_conditions(h: &HeaderMap) -> Result<CopyConditions> {
    let etag = |name| Ok::<_, Error>(get(h, name)?.map(|v| unquote(v).to_owned()));
    Ok(CopyConditions::default()
        .if_match(etag("x-oss-copy-source-if-match")?)
        .if_none_match(etag("x-oss-copy-source-if-none-match")?))
}

/// `x-oss-copy-source-range: bytes=first-last`; `None` when absent.
pub(crate) fn copy_source_range(h: &HeaderMap) -> Result<Option<ByteRange>> {
    let Some(v) = get(h, "x-oss-copy-source-range")? else { return Ok(None) };
    let bad = || {
        invalid_argument(
            format!("The copy source range {v:?} is not of the form bytes=first-last."),
            "x-oss-copy-source-range",
            v,
        )
    };
    let spec = v.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last = match b.trim() {
        "" => None,
        b => Some(b.parse::<u64>().map_err(|_| bad())?),
    };
    if last.is_some_and(|l| l < first) {
        return Err(bad());
    }
    Ok(Some(ByteRange { first, last }))
}

fn directive(h: &HeaderMap, name: &str) -> Result<bool> {
    match get(h, name)? {
        None => Ok(false),
        Some(v) if v.trim().eq_ignore_ascii_case("copy") => Ok(false),
        Some(v) if v.trim().eq_ignore_ascii_case("replace") => Ok(true),
        Some(v) => Err(invalid_argument(format!("The {name} value {v:?} is neither COPY nor REPLACE."), name, v)),
    }
}

/// The options of CopyObject: source, metadata and tagging directives, source conditions, forbid-overwrite.
pub(crate) fn copy_options(h: &HeaderMap) -> Result<CopyOptions> {
    let metadata =
        if directive(h, "x-oss-metadata-directive")? { Directive::Replace(metadata(h)?) } else { Directive::Copy };
    let tagging = if directive(h, "x-oss-tagging-directive")? {
        Directive::Replace(tags(h)?.unwrap_or_default())
    } else {
        Directive::Copy
    };
    Ok(CopyOptions::from(copy_source(h)?)
        .metadata(metadata)
        .tagging(tagging)
        .conditions(copy_conditions(h)?)
        .forbid_overwrite(forbid_overwrite(h)?))
}

/// An ETag without its quotes.
pub(crate) fn unquote(etag: &str) -> &str {
    let t = etag.trim();
    t.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(t)
}

/// An ETag with quotes, as it goes on the wire.
pub(crate) fn quote(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// The `Content-MD5` an ETag stands for, when the ETag is a plain MD5 (32 hex digits).
pub(crate) fn md5_of_etag(etag: &str) -> Option<String> {
    let etag = unquote(etag);
    if etag.len() != 32 {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(etag.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(b64(&raw))
}

/// An HTTP date from seconds since the epoch.
pub(crate) fn http_date(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    httpdate::fmt_http_date(t)
}

type Pairs = Vec<(String, String)>;

fn push(out: &mut Pairs, name: &str, value: impl Into<String>) {
    out.push((name.to_owned(), value.into()));
}

/// Everything HeadObject (and GetObject) reports about an object, except `Content-Length`.
pub(crate) fn info_headers(info: &ObjectInfo) -> Pairs {
    let mut out = Pairs::new();
    let m = &info.metadata;
    push(&mut out, "content-type", m.content_type.as_deref().unwrap_or("application/octet-stream"));
    for (name, value) in m.standard().filter(|(n, _)| *n != "content-type") {
        push(&mut out, name, value);
    }
    push(&mut out, "etag", quote(&info.etag));
    push(&mut out, "last-modified", http_date(info.last_modified));
    if info.object_type == ObjectType::Normal {
        if let Some(md5) = md5_of_etag(&info.etag) {
            push(&mut out, "content-md5", md5);
        }
    }
    if let Some(crc) = info.crc64 {
        push(&mut out, "x-oss-hash-crc64ecma", crc.to_string());
    }
    push(&mut out, "x-oss-storage-class", m.storage_class.unwrap_or(StorageClass::Standard).as_str());
    push(&mut out, "x-oss-object-type", info.object_type.as_str());
    if let Some(v) = &info.version_id {
        push(&mut out, "x-oss-version-id", v);
    }
    if info.tagging_count > 0 {
        push(&mut out, "x-oss-tagging-count", info.tagging_count.to_string());
    }
    if let Some(p) = info.next_append_position {
        push(&mut out, "x-oss-next-append-position", p.to_string());
    }
    if let Some(r) = &info.restore {
        push(&mut out, "x-oss-restore", r.to_header());
    }
    for (name, value) in &m.user {
        push(&mut out, &format!("{META_PREFIX}{name}"), value);
    }
    out
}

/// GetObjectMeta's six headers.
pub(crate) fn meta_summary_headers(s: &ObjectMetaSummary) -> Pairs {
    let mut out = Pairs::new();
    push(&mut out, "content-length", s.size.to_string());
    push(&mut out, "etag", quote(&s.etag));
    push(&mut out, "last-modified", http_date(s.last_modified));
    // OSS sends it even without access tracking (then it is the modification time); the SDKs expect it.
    push(&mut out, "x-oss-last-access-time", http_date(s.last_access_time.unwrap_or(s.last_modified)));
    if let Some(v) = &s.version_id {
        push(&mut out, "x-oss-version-id", v);
    }
    if let Some(crc) = s.crc64 {
        push(&mut out, "x-oss-hash-crc64ecma", crc.to_string());
    }
    out
}

/// What a write reports: `ETag`, `Content-MD5` for a plain MD5 ETag, `x-oss-hash-crc64ecma`,
/// `x-oss-version-id`.
pub(crate) fn put_result_headers(r: &PutResult, with_md5: bool) -> Pairs {
    let mut out = Pairs::new();
    push(&mut out, "etag", quote(&r.etag));
    if with_md5 {
        if let Some(md5) = md5_of_etag(&r.etag) {
            push(&mut out, "content-md5", md5);
        }
    }
    if let Some(crc) = r.crc64 {
        push(&mut out, "x-oss-hash-crc64ecma", crc.to_string());
    }
    if let Some(v) = &r.version_id {
        push(&mut out, "x-oss-version-id", v);
    }
    out
}

/// The `response-content-*` / `response-expires` / `response-cache-control` query overrides of GetObject.
pub(crate) fn response_overrides(query: &[(String, String)]) -> Pairs {
    const MAP: [(&str, &str); 6] = [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ];
    MAP.iter()
        .filter_map(|(q, h)| query.iter().find(|(k, _)| k == q).map(|(_, v)| ((*h).to_owned(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn put_options_from_headers() {
        let h = map(&[
            ("x-oss-meta-Key1", "value1"),
            ("content-type", "text/plain"),
            ("cache-control", "no-cache"),
            ("x-oss-storage-class", "IA"),
            ("x-oss-tagging", "k1=v1&k4%2B-%3D=%2B-%3D._%3A/"),
            ("x-oss-forbid-overwrite", "true"),
        ]);
        let o = put_options(&h).unwrap();
        assert_eq!(o.metadata.user.get("key1").map(String::as_str), Some("value1"));
        assert_eq!(o.metadata.content_type.as_deref(), Some("text/plain"));
        assert_eq!(o.metadata.storage_class, Some(StorageClass::InfrequentAccess));
        assert_eq!(o.tags.as_ref().unwrap().get("k4+-="), Some("+-=._:/"));
        assert!(o.forbid_overwrite);
        // The V2 Copier's unencoded tags are refused, as OSS refuses `a=b=c`.
        let e = put_options(&map(&[("x-oss-tagging", "k1=v1&k4+-==+-=._:/")])).unwrap_err();
        assert_eq!(e.service_code(), Some("InvalidTag"));
        let e = put_options(&map(&[("x-oss-tagging", "a=b*")])).unwrap_err();
        assert_eq!(e.service_code(), Some("InvalidTag"));
        let e = put_options(&map(&[("x-oss-storage-class", "Gold")])).unwrap_err();
        assert_eq!(e.service_code(), Some("InvalidArgument"));
    }

    #[test]
    fn copy_options_from_headers() {
        let h = map(&[
            ("x-oss-copy-source", "/src/dir/a%20b%2Fc?versionId=V1"),
            ("x-oss-metadata-directive", "replace"),
            ("x-oss-tagging-directive", "Replace"),
            ("x-oss-tagging", "a=1"),
            ("x-oss-copy-source-if-match", "\"ABC\""),
        ]);
        let o = copy_options(&h).unwrap();
        assert_eq!(o.source, ObjectRef::new("src", "dir/a b/c").at_version("V1"));
        assert!(matches!(o.metadata, Directive::Replace(_)));
        assert!(matches!(&o.tagging, Directive::Replace(t) if t.get("a") == Some("1")));
        assert_eq!(o.conditions.if_match.as_deref(), Some("ABC"));
        let o = copy_options(&map(&[("x-oss-copy-source", "src/k")])).unwrap();
        assert_eq!((o.metadata, o.tagging), (Directive::Copy, Directive::Copy));
        assert!(copy_options(&map(&[("x-oss-copy-source", "/nokey")])).is_err());
        assert!(copy_options(&map(&[("x-oss-copy-source", "/b/k"), ("x-oss-metadata-directive", "X")])).is_err());
    }

    #[test]
    fn ranges_and_etags() {
        let r = copy_source_range(&map(&[("x-oss-copy-source-range", "bytes=5-9")])).unwrap();
        assert_eq!(r, Some(ByteRange::inclusive(5, 9)));
        assert!(copy_source_range(&map(&[("x-oss-copy-source-range", "bytes=9-5")])).is_err());
        assert_eq!(md5_of_etag("\"781E5E245D69B566979B86E28D23F2C7\"").as_deref(), Some("eB5eJF1ptWaXm4bijSPyxw=="));
        assert_eq!(md5_of_etag("1C787C506EABFB9B45EAAA8DB039F4B2-2"), None);
    }

    #[test]
    fn info_headers_cover_the_seed_fields() {
        let mut metadata = Metadata::with_user([("key1", "value1")]).unwrap();
        metadata.cache_control = Some("no-cache".into());
        let info = ObjectInfo {
            size: 10,
            etag: "781E5E245D69B566979B86E28D23F2C7".into(),
            last_modified: 1_700_000_000,
            crc64: Some(42),
            object_type: ObjectType::Normal,
            version_id: Some("v".into()),
            tagging_count: 2,
            next_append_position: None,
            metadata,
            restore: None,
            encryption: None,
            checksum: None,
            parts_count: None,
        };
        let h = info_headers(&info);
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("content-type"), Some("application/octet-stream"));
        assert_eq!(get("etag"), Some("\"781E5E245D69B566979B86E28D23F2C7\""));
        assert_eq!(get("content-md5"), Some("eB5eJF1ptWaXm4bijSPyxw=="));
        assert_eq!(get("x-oss-hash-crc64ecma"), Some("42"));
        assert_eq!(get("x-oss-storage-class"), Some("Standard"));
        assert_eq!(get("x-oss-object-type"), Some("Normal"));
        assert_eq!(get("x-oss-tagging-count"), Some("2"));
        assert_eq!(get("x-oss-meta-key1"), Some("value1"));
        assert_eq!(get("cache-control"), Some("no-cache"));
        assert_eq!(get("last-modified"), Some("Tue, 14 Nov 2023 22:13:20 GMT"));
    }
}
