//! `transfer serve` answering the S3 dialect on the same port as the OSS one: our S3 client (AWS SigV4, `x-amz-*`)
//! and our OSS client against one server, each request's dialect chosen by its signature.

use crate::util::{data, Served, AK, SK};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::{Credentials, SignatureVersion::V4};
use transfer_engine::store::{
    ByteRange, CompleteOptions, CompletedPart, CopyOptions, Directive, ListRequest, ObjectType, PutOptions,
};
use transfer_engine::MultipartStore;
use transfer_engine::OssExtensions;
use transfer_engine::{BucketStore, ErrorKind, Metadata, ObjectRef, ObjectStore, StorageClass, TagSet};

fn s3(served: &Served, creds: Credentials) -> HttpStore {
    HttpStore::s3()
        .endpoint(&served.endpoint)
        .region("us-east-1")
        .credentials(creds)
        .system_proxy(false)
        .build()
        .unwrap()
}

#[tokio::test]
async fn one_port_serves_s3_and_oss_requests() {
    let served = Served::start();
    let s = s3(&served, Credentials::new(AK, SK));
    let oss = served.client(V4);
    s.create_bucket("both").await.unwrap();

    let mut meta = Metadata::with_user([("origin", "s3")]).unwrap();
    meta.content_type = Some("text/plain".into());
    meta.storage_class = Some(StorageClass::InfrequentAccess);
    let tags = TagSet::from_pairs([("k", "v w")]).unwrap();
    let opts = PutOptions::default().metadata(meta.clone()).tags(Some(tags.clone())).content_md5(true);
    let body = data(5000, 3);
    let put = s.put_object("both", "dir/a b+c", body.clone().into(), &opts).await.unwrap();
    let obj = ObjectRef::new("both", "dir/a b+c");

    // Written through S3, read through both dialects.
    let head = s.head_object(&obj).await.unwrap();
    assert_eq!((head.size, head.etag.as_str()), (5000, put.etag.as_str()));
    assert_eq!(head.metadata.user, meta.user);
    assert_eq!(head.metadata.storage_class, Some(StorageClass::InfrequentAccess));
    assert_eq!(oss.head_object(&obj).await.unwrap().metadata.user, meta.user);
    assert_eq!(s.get_object(&obj, None).await.unwrap().bytes().await.unwrap().to_vec(), body);
    let r = s.get_object(&obj, Some(ByteRange::inclusive(4990, 9999))).await.unwrap();
    assert_eq!(r.range, Some((4990, 4999)));
    assert_eq!(s.get_tagging(&obj).await.unwrap().sorted(), tags.sorted());
    assert_eq!(oss.get_tagging(&obj).await.unwrap().sorted(), tags.sorted());

    // Forbid overwrite travels as If-None-Match: *.
    let again = PutOptions::default().forbid_overwrite(true);
    let refused = s.put_object("both", "dir/a b+c", b"x".to_vec().into(), &again).await;
    assert!(refused.is_err_and(|e| e.kind() == transfer_engine::ErrorKind::AlreadyExists));

    // Multipart with out-of-order parts, CopyObject with replaced metadata and tags, a listing.
    let id = s.initiate_multipart("both", "mp", &opts).await.unwrap();
    let parts = [(2u32, data(1000, 2)), (1, data(5 * 1024 * 1024, 1))];
    for (n, b) in &parts {
        s.upload_part(id.part(*n), b.clone().into()).await.unwrap();
    }
    let listed = s.list_parts(&id, None, Some(1)).await.unwrap();
    assert!(listed.is_truncated && listed.parts[0].part_number == 1);
    let all = s.list_parts(&id, None, None).await.unwrap();
    let done: Vec<CompletedPart> = all.parts.iter().map(CompletedPart::from).collect();
    s.complete_multipart(&id, &done, &CompleteOptions::default()).await.unwrap();
    let mp = ObjectRef::new("both", "mp");
    assert_eq!(s.head_object(&mp).await.unwrap().object_type, ObjectType::Multipart);
    let want: Vec<u8> = parts[1].1.iter().chain(parts[0].1.iter()).copied().collect();
    assert_eq!(s.get_object(&mp, None).await.unwrap().bytes().await.unwrap().to_vec(), want);

    let mut copy = CopyOptions::from(obj.clone());
    copy.metadata = Directive::Replace(Metadata::with_user([("origin", "copy")]).unwrap());
    copy.tagging = Directive::Replace(TagSet::from_pairs([("copied", "1")]).unwrap());
    s.copy_object("both", "copy", &copy).await.unwrap();
    let c = ObjectRef::new("both", "copy");
    assert_eq!(s.head_object(&c).await.unwrap().metadata.user.get("origin").map(String::as_str), Some("copy"));
    assert_eq!(s.get_tagging(&c).await.unwrap().get("copied"), Some("1"));
    let page = s.list_objects("both", &ListRequest::default().prefix(Some("dir/".into()))).await.unwrap();
    assert_eq!(page.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["dir/a b+c"]);

    // Unsupported in S3, whatever the server could do.
    let e = s.append_object("both", "log", 0, b"x".to_vec().into(), &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn sigv4_is_checked_with_s3_errors() {
    let served = Served::start();
    let good = s3(&served, Credentials::new(AK, SK));
    good.create_bucket("signed").await.unwrap();
    let obj = ObjectRef::new("signed", "k");
    // A HEAD answer has no body in S3: the client knows only the status.
    let e = s3(&served, Credentials::new(AK, "wrong-secret")).head_object(&obj).await.unwrap_err();
    assert_eq!((e.status(), e.is_retryable()), (Some(403), false));
    let e = s3(&served, Credentials::new(AK, "wrong-secret")).get_object(&obj, None).await.unwrap_err();
    assert_eq!(e.service_code(), Some("SignatureDoesNotMatch"));
    assert!(e.service_error().unwrap().extra("CanonicalRequest").is_some());
    let e = s3(&served, Credentials::new("nobody", SK)).get_object(&obj, None).await.unwrap_err();
    assert_eq!(e.service_code(), Some("InvalidAccessKeyId"));
    let e = good.get_object(&obj, None).await.unwrap_err();
    assert_eq!((e.status(), e.service_code()), (Some(404), Some("NoSuchKey")));
}

/// A raw S3 PUT of `path` (with at most one value-less sub-resource, `?tagging`) to `served`, signed for
/// `payload_hash` (what `x-amz-content-sha256` declares), with `body` and extra `headers`: the status and the
/// error code.
async fn raw_put(
    served: &Served,
    path: &str,
    body: &[u8],
    payload_hash: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use transfer_engine::sign::s3::{S3Signer, S3Target};
    let host = served.endpoint.trim_start_matches("http://").to_owned();
    let mut h = http::HeaderMap::new();
    h.insert("host", host.parse().unwrap());
    h.insert("content-length", body.len().to_string().parse().unwrap());
    for (k, v) in headers {
        h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let (uri, query) = match path.split_once('?') {
        Some((p, q)) => (p, vec![(q.to_owned(), String::new())]),
        None => (path, vec![]),
    };
    let target = S3Target { method: "PUT", uri, query: &query };
    S3Signer::new("us-east-1").sign(
        &Credentials::new(AK, SK),
        &target,
        &mut h,
        payload_hash,
        std::time::SystemTime::now(),
    );
    let r = reqwest::Client::new()
        .put(format!("{}{path}", served.endpoint))
        .headers(h)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let code = text.split("<Code>").nth(1).and_then(|t| t.split("</Code>").next()).unwrap_or_default().to_owned();
    (status, code)
}

#[tokio::test]
async fn bodies_must_match_the_sha256_their_signature_covers_and_their_md5() {
    use transfer_engine::sign::sigv4::sha256_hex;
    let served = Served::start();
    let s = s3(&served, Credentials::new(AK, SK));
    s.create_bucket("hashed").await.unwrap();
    let body = b"the bytes that were signed";
    // A body that is not the one signed for: refused, nothing kept.
    let other = sha256_hex(b"other bytes");
    assert_eq!(raw_put(&served, "/hashed/k", body, &other, &[]).await, (400, "XAmzContentSHA256Mismatch".into()));
    assert_eq!(s.head_object(&ObjectRef::new("hashed", "k")).await.unwrap_err().status(), Some(404));
    // A payload hash that is no hash.
    assert_eq!(raw_put(&served, "/hashed/k", body, "not-a-sha256", &[]).await, (400, "InvalidArgument".into()));
    // Content-MD5 under UNSIGNED-PAYLOAD: S3's BadDigest for a mismatch, InvalidDigest for a malformed one.
    let wrong_md5 = transfer_engine::util::content_md5(b"other bytes");
    let unsigned = transfer_engine::sign::s3::UNSIGNED_PAYLOAD;
    assert_eq!(
        raw_put(&served, "/hashed/k", body, unsigned, &[("content-md5", &wrong_md5)]).await,
        (400, "BadDigest".into())
    );
    assert_eq!(
        raw_put(&served, "/hashed/k", body, unsigned, &[("content-md5", "nope")]).await,
        (400, "InvalidDigest".into())
    );
    assert_eq!(s.head_object(&ObjectRef::new("hashed", "k")).await.unwrap_err().status(), Some(404));
    // The right hash (and MD5) is stored; so is an unsigned payload.
    let md5 = transfer_engine::util::content_md5(body);
    assert_eq!(raw_put(&served, "/hashed/k", body, &sha256_hex(body), &[("content-md5", &md5)]).await.0, 200);
    assert_eq!(raw_put(&served, "/hashed/u", body, unsigned, &[]).await.0, 200);
    for k in ["k", "u"] {
        assert_eq!(
            s.get_object(&ObjectRef::new("hashed", k), None).await.unwrap().bytes().await.unwrap().as_ref(),
            body
        );
    }
    // A signed hash on a request that takes no body is checked too (PutObjectTagging's XML).
    let tagging = b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>";
    let (status, code) = raw_put(&served, "/hashed/k?tagging", tagging, &other, &[]).await;
    assert_eq!((status, code.as_str()), (400, "XAmzContentSHA256Mismatch"));
}
