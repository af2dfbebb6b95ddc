//! Multipart uploads: Initiate, UploadPart, UploadPartCopy, Complete (including `x-oss-complete-all`), Abort,
//! ListParts and ListMultipartUploads.

use crate::handlers::Req;
use crate::headers::{self, md5_of_etag, put_result_headers, quote, unquote};
use crate::object::now_secs;
use crate::response::{invalid_argument, malformed_xml, Reply};
use crate::ServedStore;
use transfer_engine::store::{
    Checksum, CompleteOptions, CompletedPart, ListUploadsRequest, PartCopySource, PartNumber, PartReceipt, Upload,
    UploadId,
};
use transfer_engine::xml::{
    self, iso8601, CompleteMultipartUpload, CompleteMultipartUploadResult, CopyResultXml,
    InitiateMultipartUploadResult, ListMultipartUploadsResult, ListPartsResult, ListedPart, ListedUpload,
};
use transfer_engine::Result;

/// Most parts or uploads in one page.
const MAX_PAGE: u32 = 1000;

/// `?partNumber=`: an integer in 1..=10000, or 400 `InvalidArgument` naming it.
fn part_number(req: &Req) -> Result<u32> {
    let v = req.q("partNumber").unwrap_or_default();
    let n = v.parse::<u32>().map_err(|_| {
        invalid_argument("Part number must be an integer between 1 and 10000, inclusive.", "partNumber", v)
    })?;
    transfer_engine::store::validate_part_number(n)?;
    Ok(n)
}

fn upload_id(req: &Req) -> &str {
    req.q("uploadId").unwrap_or_default()
}

/// The upload a request names: its bucket, key and `?uploadId=`.
fn upload(req: &Req) -> Upload {
    Upload::new(req.bucket(), req.key(), upload_id(req))
}

fn page_size(req: &Req, name: &str) -> Result<u32> {
    Ok(req.q_num::<u32>(name)?.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE))
}

/// InitiateMultipartUpload.
pub(crate) async fn initiate<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let opts = headers::put_options(&req.headers)?;
    let upload = store.initiate_multipart(req.bucket(), req.key(), &opts).await?;
    Reply::xml_of(&InitiateMultipartUploadResult {
        bucket: req.bucket().to_owned(),
        key: req.enc(req.key()),
        upload_id: upload.id.to_string(),
        encoding_type: req.encoding_type(),
    })
}

fn receipt_headers(r: &PartReceipt) -> Vec<(String, String)> {
    let mut out = vec![("etag".to_owned(), quote(&r.etag))];
    if let Some(md5) = md5_of_etag(&r.etag) {
        out.push(("content-md5".into(), md5));
    }
    if let Some(crc) = r.crc64 {
        out.push(("x-oss-hash-crc64ecma".into(), crc.to_string()));
    }
    out
}

/// UploadPart.
pub(crate) async fn upload_part<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    let n = part_number(&req)?;
    let body = req.data_body()?;
    let r = store.upload_part(upload(&req).part(n), body).await?;
    Ok(Reply::ok().headers(receipt_headers(&r)))
}

/// UploadPartCopy.
pub(crate) async fn upload_part_copy<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    req.traffic_limit()?;
    let n = part_number(&req)?;
    let source = headers::copy_source(&req.headers)?;
    let range = headers::copy_source_range(&req.headers)?;
    let conditions = headers::copy_conditions(&req.headers)?;
    let from = PartCopySource { source: source.clone(), range, conditions };
    let r = store.upload_part_copy(upload(&req).part(n), &from).await?;
    let doc = CopyResultXml {
        last_modified: iso8601(now_secs()),
        etag: quote(&r.etag),
        checksum_crc32c: r.checksum.map(|c| c.value()),
    };
    // oss2 takes the part's ETag from the header, the V2 SDK from the XML: send both.
    Ok(Reply::xml_rooted(&doc, "CopyPartResult")?
        .headers(receipt_headers(&r))
        .header_opt("x-oss-copy-source-version-id", source.version_id))
}

/// Every uploaded part, for `x-oss-complete-all: yes`.
async fn all_parts<S: ServedStore>(store: &S, req: &Req) -> Result<Vec<CompletedPart>> {
    let mut parts = Vec::new();
    let mut marker = None;
    loop {
        let page = store.list_parts(&upload(req), marker, Some(MAX_PAGE)).await?;
        parts.extend(page.parts.iter().map(CompletedPart::from));
        match (page.is_truncated, page.next_marker.or(page.parts.last().map(|p| p.part_number))) {
            (true, Some(next)) if Some(next) != marker => marker = Some(next),
            _ => return Ok(parts),
        }
    }
}

/// CompleteMultipartUpload.
pub(crate) async fn complete<S: ServedStore>(store: &S, mut req: Req) -> Result<Reply> {
    let opts = CompleteOptions::default().forbid_overwrite(headers::forbid_overwrite(&req.headers)?);
    let complete_all = req.header("x-oss-complete-all")?.is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"));
    let body = req.small_body().await?;
    let parts = if complete_all {
        if !body.is_empty() {
            return Err(invalid_argument(
                "The request body must be empty when x-oss-complete-all is yes.",
                "x-oss-complete-all",
                "yes",
            ));
        }
        all_parts(store, &req).await?
    } else {
        let doc: CompleteMultipartUpload = xml::from_slice(&body).map_err(|_| malformed_xml())?;
        doc.parts
            .into_iter()
            .map(|p| {
                let checksum = p.checksum_crc32c.as_deref().map(Checksum::parse_crc32c).transpose();
                Ok(CompletedPart {
                    part_number: PartNumber::new(p.part_number),
                    etag: unquote(&p.etag).to_owned(),
                    checksum: checksum.map_err(|_| malformed_xml())?,
                })
            })
            .collect::<Result<_>>()?
    };
    let r = store.complete_multipart(&upload(&req), &parts, &opts).await?;
    let location =
        format!("http://{}/{}/{}", req.host, req.bucket(), transfer_engine::util::pct_encode_path(req.key()));
    Ok(Reply::xml_of(&CompleteMultipartUploadResult {
        encoding_type: req.encoding_type(),
        location,
        bucket: req.bucket().to_owned(),
        key: req.enc(req.key()),
        etag: quote(&r.etag),
    })?
    .headers(put_result_headers(&r, false)))
}

/// AbortMultipartUpload.
pub(crate) async fn abort<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    store.abort_multipart(&upload(&req)).await?;
    Ok(Reply::no_content())
}

/// ListParts.
pub(crate) async fn list_parts<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let marker: Option<u32> = req.q_num("part-number-marker")?;
    let max = page_size(&req, "max-parts")?;
    let page = store.list_parts(&upload(&req), marker.map(PartNumber::new), Some(max)).await?;
    let next = page.next_marker.or(page.parts.last().map(|p| p.part_number)).map_or(0, PartNumber::get);
    Reply::xml_of(&ListPartsResult {
        bucket: req.bucket().to_owned(),
        encoding_type: req.encoding_type(),
        key: req.enc(req.key()),
        upload_id: upload_id(&req).to_owned(),
        part_number_marker: marker.unwrap_or(0),
        next_part_number_marker: next,
        max_parts: max,
        is_truncated: page.is_truncated,
        parts: page
            .parts
            .iter()
            .map(|p| ListedPart {
                part_number: p.part_number.get(),
                last_modified: iso8601(p.last_modified),
                etag: quote(&p.etag),
                hash_crc64ecma: p.crc64,
                size: p.size,
                checksum_crc32c: p.checksum.map(|c| c.value()),
            })
            .collect(),
    })
}

/// ListMultipartUploads.
pub(crate) async fn list_uploads<S: ServedStore>(store: &S, req: Req) -> Result<Reply> {
    let list = ListUploadsRequest::default()
        .prefix(req.q_str("prefix"))
        .key_marker(req.q_str("key-marker"))
        .upload_id_marker(req.q_str("upload-id-marker").map(UploadId::new))
        .max_uploads(Some(page_size(&req, "max-uploads")?));
    let page = store.list_uploads(req.bucket(), &list).await?;
    Reply::xml_of(&ListMultipartUploadsResult {
        bucket: req.bucket().to_owned(),
        encoding_type: req.encoding_type(),
        key_marker: req.enc(list.key_marker.as_deref().unwrap_or_default()),
        upload_id_marker: list.upload_id_marker.as_ref().map(UploadId::to_string).unwrap_or_default(),
        next_key_marker: req.enc(page.next_key_marker.as_deref().unwrap_or_default()),
        next_upload_id_marker: page.next_upload_id_marker.as_ref().map(UploadId::to_string).unwrap_or_default(),
        delimiter: req.enc(req.q("delimiter").unwrap_or_default()),
        prefix: req.enc(list.prefix.as_deref().unwrap_or_default()),
        max_uploads: list.max_uploads.unwrap_or(MAX_PAGE),
        is_truncated: page.is_truncated,
        uploads: page
            .uploads
            .iter()
            .map(|u| ListedUpload {
                key: req.enc(&u.key),
                upload_id: u.upload_id.to_string(),
                initiated: iso8601(u.initiated),
            })
            .collect(),
    })
}
