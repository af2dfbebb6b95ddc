//! Object operations: Put, Copy, Get (ranges, conditions), Head, GetObjectMeta, Delete, Append, symlinks and
//! tagging.

use crate::handlers::Req;
use crate::headers::{self, http_date, info_headers, put_result_headers, quote, unquote};
use crate::response::{invalid_argument, malformed_xml, Reply};
use crate::ServedStore;
use http::StatusCode;
use std::time::{SystemTime, UNIX_EPOCH};
use transfer_engine::store::{ByteRange, ObjectInfo};
use transfer_engine::util::{pct_decode, pct_encode_path};
use transfer_engine::xml::{iso8601, CopyResultXml};
use transfer_engine::{Error, ErrorKind, Result, TagSet};

/// Seconds since the epoch, now.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// PutObject.
pub(crate) async fn put_object<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    let opts = headers::put_options(&req.headers)?;
    let body = req.data_body()?;
    let r = store.put_object(req.bucket(), req.key(), body, &opts).await?;
    Ok(Reply::ok().headers(put_result_headers(&r, true)))
}

/// CopyObject.
pub(crate) async fn copy_object<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    // The store copies within itself: the limit is checked, and nothing crosses the network to slow.
    req.traffic_limit()?;
    let opts = headers::copy_options(&req.headers)?;
    let r = store.copy_object(req.bucket(), req.key(), &opts).await?;
    let doc = CopyResultXml { last_modified: iso8601(now_secs()), etag: quote(&r.etag), checksum_crc32c: None };
    Ok(Reply::xml_rooted(&doc, "CopyObjectResult")?
        .headers(put_result_headers(&r, false))
        .header_opt("x-oss-copy-source-version-id", opts.source.version_id.as_deref()))
}

/// The answer to conditional headers: `Ok(None)` to go on, a 304 reply, or a 412 error.
fn check_conditions(req: &Req, info: &ObjectInfo) -> Result<Option<Reply>> {
    let failed = |cond: &str| {
        Error::code(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
            .with_extra("Condition", cond)
    };
    let etag_in = |list: &str| list.split(',').any(|t| t.trim() == "*" || unquote(t) == info.etag);
    let date = |v: &str| {
        httpdate::parse_http_date(v.trim())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
    };
    if let Some(v) = req.header("if-match")? {
        if !etag_in(v) {
            return Err(failed("If-Match"));
        }
    }
    if let Some(t) = req.header("if-unmodified-since")?.and_then(date) {
        if info.last_modified > t {
            return Err(failed("If-Unmodified-Since"));
        }
    }
    let not_modified = match (req.header("if-none-match")?, req.header("if-modified-since")?.and_then(date)) {
        (Some(v), _) => etag_in(v),
        (None, Some(t)) => info.last_modified <= t,
        (None, None) => false,
    };
    Ok(not_modified.then(|| {
        Reply::new(StatusCode::NOT_MODIFIED)
            .header("etag", quote(&info.etag))
            .header("last-modified", http_date(info.last_modified))
    }))
}

/// How a `Range` header applies to an object of `size` bytes: `Ok(Some(range))` to serve it, `Ok(None)` to serve
/// everything with 200. With `x-oss-range-behavior: standard` the end is clamped and a start past the end is 416
/// `InvalidRange`; without it OSS ignores any range it cannot serve exactly (start or end past the end).
fn resolve_range(header: &str, size: u64, standard: bool) -> Result<Option<(u64, u64)>> {
    let Ok(resolved) = ByteRange::resolve(header, size) else { return Ok(None) };
    match resolved {
        None if standard => Err(Error::code(416, "InvalidRange", "The requested range cannot be satisfied.")
            .with_header("content-range", format!("bytes */{size}"))),
        None => Ok(None),
        Some(range) => {
            let end =
                header.trim().strip_prefix("bytes=").and_then(|s| s.split_once('-')).filter(|(a, _)| !a.is_empty());
            let end_past = end.and_then(|(_, b)| b.trim().parse::<u64>().ok()).is_some_and(|b| b >= size);
            Ok(if end_past && !standard { None } else { Some(range) })
        }
    }
}

/// GetObject: whole, or one range; conditions; `response-*` overrides.
pub(crate) async fn get_object<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let obj = req.obj();
    let limit = req.traffic_limit()?;
    let range = match req.header("range")? {
        None => None,
        Some(header) => {
            let standard = req.header("x-oss-range-behavior")?.is_some_and(|v| v.eq_ignore_ascii_case("standard"));
            let info = store.head_object(&obj).await?;
            if let Some(reply) = check_conditions(&req, &info)? {
                return Ok(reply);
            }
            resolve_range(header, info.size, standard)?
        }
    };
    let got = store.get_object(&obj, range.map(|(a, b)| ByteRange::inclusive(a, b))).await?;
    if let Some(reply) = check_conditions(&req, &got.info)? {
        return Ok(reply);
    }
    let mut headers = info_headers(&got.info);
    let length = got.range.map_or(0, |(a, b)| b - a + 1);
    let mut reply = Reply::ok();
    if range.is_some() {
        headers.retain(|(n, _)| n != "content-md5");
        let (a, b) = got.range.unwrap_or_default();
        reply = reply
            .status(StatusCode::PARTIAL_CONTENT)
            .header("content-range", format!("bytes {a}-{b}/{}", got.info.size));
    }
    Ok(reply
        .headers(headers)
        .headers(headers::response_overrides(&req.target.query))
        .header("accept-ranges", "bytes")
        .header("content-length", length.to_string())
        .with_stream(transfer_engine::run::paced(got.body, limit)))
}

/// HeadObject.
pub(crate) async fn head_object<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    // `?partNumber=N` (S3's part HEAD): the part's size, and the object's part count.
    let info = match req.q_num::<u32>("partNumber")? {
        Some(n) => store.head_part(&req.obj(), n.into()).await?,
        None => store.head_object(&req.obj()).await?,
    };
    if let Some(reply) = check_conditions(&req, &info)? {
        return Ok(reply);
    }
    Ok(Reply::ok()
        .headers(info_headers(&info))
        .header_opt("x-oss-mp-parts-count", info.parts_count.map(|n| n.to_string()))
        .header("accept-ranges", "bytes")
        .header("content-length", info.size.to_string()))
}

/// GetObjectMeta.
pub(crate) async fn get_object_meta<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let summary = store.get_object_meta(&req.obj()).await?;
    Ok(Reply::ok().headers(headers::meta_summary_headers(&summary)))
}

/// DeleteObject.
pub(crate) async fn delete_object<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let r = store.delete_object(&req.obj()).await?;
    Ok(Reply::no_content()
        .header_opt("x-oss-delete-marker", r.delete_marker.then_some("true"))
        .header_opt("x-oss-version-id", r.version_id))
}

/// AppendObject.
pub(crate) async fn append_object<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    let position: u64 = req
        .q_num("position")?
        .ok_or_else(|| invalid_argument("The position parameter is required for AppendObject.", "position", ""))?;
    let opts = headers::put_options(&req.headers)?;
    let body = req.data_body()?;
    let r = store.append_object(req.bucket(), req.key(), position, body, &opts).await?;
    Ok(Reply::ok()
        .header("x-oss-next-append-position", r.next_position.to_string())
        .header_opt("x-oss-hash-crc64ecma", r.crc64.map(|c| c.to_string()))
        .header_opt("x-oss-version-id", r.version_id))
}

/// PutSymlink.
pub(crate) async fn put_symlink<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let raw = req.header("x-oss-symlink-target")?.unwrap_or_default();
    let target = pct_decode(raw)
        .map_err(|_| invalid_argument("The symlink target is not valid.", "x-oss-symlink-target", raw))?;
    if target.is_empty() {
        return Err(invalid_argument("The x-oss-symlink-target header is required.", "x-oss-symlink-target", raw));
    }
    let opts = headers::put_options(&req.headers)?;
    let r = store.put_symlink(req.bucket(), req.key(), &target, &opts).await?;
    Ok(Reply::ok().headers(put_result_headers(&r, false)))
}

/// GetSymlink: the target goes percent-encoded in `x-oss-symlink-target`.
pub(crate) async fn get_symlink<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let s = store.get_symlink(&req.obj()).await?;
    Ok(Reply::ok()
        .header("x-oss-symlink-target", pct_encode_path(&s.target))
        .header_opt("x-oss-version-id", s.version_id))
}

/// PutObjectTagging.
pub(crate) async fn put_tagging<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    let body = req.small_body().await?;
    let tags = TagSet::parse_xml(&body).map_err(|e| match e.kind() {
        ErrorKind::InvalidInput => Error::code(400, "InvalidTag", e.message().to_owned()),
        _ => malformed_xml(),
    })?;
    let version = store.put_tagging(&req.obj(), &tags).await?;
    Ok(Reply::ok().header_opt("x-oss-version-id", version))
}

/// RestoreObject: 202 when a restore begins, 200 when the object was restored already (its days extended), 409
/// `RestoreAlreadyInProgress` while one is under way. The body (`<RestoreRequest><Days>`, and the tier in
/// `JobParameters` or S3's `GlacierJobParameters`) is optional: one day at the default priority.
pub(crate) async fn restore_object<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    use transfer_engine::store::{RestoreAnswer, RestoreRequest, RestoreTier};
    let body = req.small_body().await?;
    let text = std::str::from_utf8(&body).map_err(|_| malformed_xml())?;
    let element = |name: &str| {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let at = text.find(&open)? + open.len();
        text[at..].find(&close).map(|end| text[at..at + end].trim().to_owned())
    };
    let days = match element("Days") {
        Some(d) => d.parse::<u32>().ok().filter(|d| (1..=365).contains(d)).ok_or_else(|| {
            Error::code(400, "InvalidArgument", "The Days element must be an integer between 1 and 365.")
        })?,
        None => 1,
    };
    let mut restore = RestoreRequest::days(days);
    if let Some(t) = element("Tier") {
        let tier = RestoreTier::parse(&t)
            .ok_or_else(|| Error::code(400, "InvalidArgument", format!("The Tier {t:?} is not valid.")))?;
        restore = restore.tier(tier);
    }
    let obj = req.obj();
    let reply = match store.restore_object(&obj, &restore).await? {
        RestoreAnswer::Started => Reply::new(hyper::StatusCode::ACCEPTED),
        RestoreAnswer::Restored => Reply::ok(),
        RestoreAnswer::InProgress => {
            return Err(Error::code(409, "RestoreAlreadyInProgress", "The restore operation is in progress."))
        }
    };
    Ok(reply.header_opt("x-oss-version-id", obj.version_id))
}

/// GetObjectTagging.
pub(crate) async fn get_tagging<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let obj = req.obj();
    let tags = store.get_tagging(&obj).await?;
    Ok(Reply::xml(tags.to_xml()).header_opt("x-oss-version-id", obj.version_id))
}

/// DeleteObjectTagging.
pub(crate) async fn delete_tagging<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let obj = req.obj();
    store.delete_tagging(&obj).await?;
    Ok(Reply::no_content().header_opt("x-oss-version-id", obj.version_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_behavior_header() {
        // Standard: clamp the end, 416 past the start.
        assert_eq!(resolve_range("bytes=0-9", 100, true).unwrap(), Some((0, 9)));
        assert_eq!(resolve_range("bytes=90-200", 100, true).unwrap(), Some((90, 99)));
        assert_eq!(resolve_range("bytes=100-", 100, true).unwrap_err().status(), Some(416));
        assert_eq!(resolve_range("bytes=-10", 100, true).unwrap(), Some((90, 99)));
        // Default OSS behaviour: anything not servable exactly is ignored.
        assert_eq!(resolve_range("bytes=90-200", 100, false).unwrap(), None);
        assert_eq!(resolve_range("bytes=100-", 100, false).unwrap(), None);
        assert_eq!(resolve_range("bytes=5-", 100, false).unwrap(), Some((5, 99)));
        assert_eq!(resolve_range("bytes=9-3", 100, false).unwrap(), None);
        assert_eq!(resolve_range("junk", 100, true).unwrap(), None);
        assert_eq!(resolve_range("bytes=0-0", 0, true).unwrap_err().status(), Some(416));
    }
}
