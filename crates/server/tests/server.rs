//! The server in process, driven over HTTP with signed requests.

mod common;

use common::{code_of, header, Call, TestServer, AK};
use http::Method;
use transfer_engine::sign::Credentials;
use transfer_engine::util::{b64_decode, content_md5};

#[tokio::test]
async fn a_wrong_signature_is_signature_does_not_match() {
    let s = TestServer::start().await;
    let r = s.send(Call::new(Method::PUT, Some("bkt"), None).signed_by(Some(Credentials::new(AK, "wrong")))).await;
    assert_eq!(r.status(), 403);
    let id = header(&r, "x-oss-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 24);
    assert_eq!(header(&r, "server"), Some("transfer"));
    assert!(header(&r, "date").is_some());
    assert_eq!(header(&r, "content-type"), Some("application/xml"));
    let body = r.text().await.unwrap();
    assert_eq!(code_of(&body), "SignatureDoesNotMatch", "{body}");
    assert!(body.contains(&format!("<RequestId>{id}</RequestId>")) && body.contains("<StringToSign>"), "{body}");
    // Unknown key id, and no signature at all.
    let r = s.send(Call::new(Method::GET, None, None).signed_by(Some(Credentials::new("nobody", "x")))).await;
    assert_eq!((r.status().as_u16(), code_of(&r.text().await.unwrap()).as_str()), (403, "InvalidAccessKeyId"));
    let r = s.send(Call::new(Method::GET, Some("bkt"), Some("k")).signed_by(None)).await;
    assert_eq!((r.status().as_u16(), code_of(&r.text().await.unwrap()).as_str()), (403, "AccessDenied"));
    s.stop().await;
}

#[tokio::test]
async fn put_get_head_round_trip_with_metadata_and_tags() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    let key = "dir/a b+c/中.txt";
    let r = s
        .send(
            Call::new(Method::PUT, Some("bkt"), Some(key))
                .h("content-type", "text/plain")
                .h("x-oss-meta-key1", "value1")
                .h("cache-control", "no-cache")
                .h("x-oss-tagging", "k1=v1&k4%2B-%3D=%2B-%3D._%3A/")
                .h("content-md5", &content_md5(b"hello world"))
                .body(&b"hello world"[..]),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), Some("\"5EB63BBBE01EEED093CB22BB8F5ACDC3\""));
    assert_eq!(header(&r, "x-oss-hash-crc64ecma"), Some("5981764153023615706"));
    let r = s.send(Call::new(Method::HEAD, Some("bkt"), Some(key))).await;
    assert_eq!(r.status(), 200);
    for (name, value) in [
        ("content-length", "11"),
        ("content-type", "text/plain"),
        ("x-oss-meta-key1", "value1"),
        ("cache-control", "no-cache"),
        ("x-oss-object-type", "Normal"),
        ("x-oss-storage-class", "Standard"),
        ("x-oss-tagging-count", "2"),
        ("x-oss-hash-crc64ecma", "5981764153023615706"),
        ("content-md5", content_md5(b"hello world").as_str()),
    ] {
        assert_eq!(header(&r, name), Some(value), "{name}");
    }
    let r = s.send(Call::new(Method::GET, Some("bkt"), Some(key))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello world");
    let r = s.send(Call::new(Method::GET, Some("bkt"), Some(key)).q("tagging", "")).await;
    let body = r.text().await.unwrap();
    assert!(body.contains("<Key>k4+-=</Key><Value>+-=._:/</Value>"), "{body}");
    let r = s.send(Call::new(Method::HEAD, Some("bkt"), Some(key)).q("objectMeta", "")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), Some("11"));
    assert!(header(&r, "x-oss-meta-key1").is_none());
    s.stop().await;
}

#[tokio::test]
async fn virtual_host_addressing() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    let host = format!("bkt.localhost:{}", s.addr.port());
    let r = s.send(Call::new(Method::PUT, Some("bkt"), Some("vh/key")).body(&b"via host"[..]).host(host.clone())).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = s.send(Call::new(Method::GET, Some("bkt"), Some("vh/key"))).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"via host");
    let r = s.send(Call::new(Method::GET, Some("bkt"), Some("vh/key")).host(host)).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"via host");
    s.stop().await;
}

#[tokio::test]
async fn a_content_md5_mismatch_stores_nothing() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    let r = s
        .send(
            Call::new(Method::PUT, Some("bkt"), Some("k")).h("content-md5", &content_md5(b"other")).body(&b"data"[..]),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(code_of(&r.text().await.unwrap()), "InvalidDigest");
    let r = s.send(Call::new(Method::HEAD, Some("bkt"), Some("k"))).await;
    assert_eq!(r.status(), 404);
    // Operations without a body check the digest of what was sent too (the V2 SDK sends MD5("") on them).
    let r = s
        .send(Call::new(Method::POST, Some("bkt"), Some("k")).q("uploads", "").h("content-md5", &content_md5(b"")))
        .await;
    assert_eq!(r.status(), 200);
    let r = s
        .send(Call::new(Method::POST, Some("bkt"), Some("k")).q("uploads", "").h("content-md5", &content_md5(b"x")))
        .await;
    assert_eq!((r.status().as_u16(), code_of(&r.text().await.unwrap()).as_str()), (400, "InvalidDigest"));
    let r = s.send(Call::new(Method::PUT, Some("bkt"), Some("k")).h("content-md5", "garbage").body(&b"data"[..])).await;
    assert_eq!((r.status().as_u16(), code_of(&r.text().await.unwrap()).as_str()), (400, "InvalidDigest"));
    s.stop().await;
}

#[tokio::test]
async fn head_of_a_missing_key_puts_the_error_in_x_oss_err() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    let r = s.send(Call::new(Method::HEAD, Some("bkt"), Some("missing"))).await;
    assert_eq!(r.status(), 404);
    let err = String::from_utf8(b64_decode(header(&r, "x-oss-err").unwrap()).unwrap()).unwrap();
    assert_eq!(code_of(&err), "NoSuchKey", "{err}");
    assert!(r.bytes().await.unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn part_numbers_outside_the_range_are_invalid_arguments() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    let r = s.send(Call::new(Method::POST, Some("bkt"), Some("mp")).q("uploads", "")).await;
    let body = r.text().await.unwrap();
    let upload_id = body.split("<UploadId>").nth(1).and_then(|s| s.split('<').next()).unwrap().to_owned();
    for bad in ["0", "10001", "abc"] {
        let r = s
            .send(
                Call::new(Method::PUT, Some("bkt"), Some("mp"))
                    .q("partNumber", bad)
                    .q("uploadId", &upload_id)
                    .body(&b"x"[..]),
            )
            .await;
        assert_eq!(r.status(), 400, "{bad}");
        let body = r.text().await.unwrap();
        assert_eq!(code_of(&body), "InvalidArgument");
        assert!(body.contains("<ArgumentName>partNumber</ArgumentName>"), "{body}");
        assert!(body.contains(&format!("<ArgumentValue>{bad}</ArgumentValue>")), "{body}");
    }
    s.stop().await;
}

#[tokio::test]
async fn ranges_follow_x_oss_range_behavior() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    s.put("bkt", "r", b"0123456789").await;
    let get = |range: &str, standard: bool| {
        let mut c = Call::new(Method::GET, Some("bkt"), Some("r")).h("range", range);
        if standard {
            c = c.h("x-oss-range-behavior", "standard");
        }
        s.send(c)
    };
    let r = get("bytes=20-", true).await;
    assert_eq!(r.status(), 416);
    assert_eq!(code_of(&r.text().await.unwrap()), "InvalidRange");
    let r = get("bytes=5-100", true).await;
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), Some("bytes 5-9/10"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"56789");
    let r = get("bytes=20-", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"0123456789");
    let r = get("bytes=2-3", false).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"23");
    s.stop().await;
}

#[tokio::test]
async fn multipart_upload_and_complete() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    let r =
        s.send(Call::new(Method::POST, Some("bkt"), Some("big obj")).q("uploads", "").q("encoding-type", "url")).await;
    let body = r.text().await.unwrap();
    assert!(body.contains("<Key>big%20obj</Key>") && body.contains("<EncodingType>url</EncodingType>"), "{body}");
    let upload_id = body.split("<UploadId>").nth(1).and_then(|s| s.split('<').next()).unwrap().to_owned();
    let part1 = vec![b'a'; 100 * 1024];
    let part2 = b"tail".to_vec();
    let mut etags = Vec::new();
    for (n, data) in [(1, &part1), (2, &part2)] {
        let r = s
            .send(
                Call::new(Method::PUT, Some("bkt"), Some("big obj"))
                    .q("partNumber", &n.to_string())
                    .q("uploadId", &upload_id)
                    .body(data.clone()),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert!(header(&r, "x-oss-hash-crc64ecma").is_some());
        etags.push(header(&r, "etag").unwrap().to_owned());
    }
    let r = s.send(Call::new(Method::GET, Some("bkt"), Some("big obj")).q("uploadId", &upload_id)).await;
    let body = r.text().await.unwrap();
    assert!(body.contains("<PartNumber>2</PartNumber>") && body.contains("<IsTruncated>false</IsTruncated>"), "{body}");
    let doc = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part><Part><PartNumber>2</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
        etags[0], etags[1]
    );
    let r = s
        .send(
            Call::new(Method::POST, Some("bkt"), Some("big obj"))
                .q("uploadId", &upload_id)
                .h("content-md5", &content_md5(doc.as_bytes()))
                .body(doc),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "etag").is_some_and(|e| e.ends_with("-2\"")));
    let mut whole = part1.clone();
    whole.extend_from_slice(&part2);
    assert_eq!(header(&r, "x-oss-hash-crc64ecma"), Some(transfer_engine::crc64::checksum(&whole).to_string().as_str()));
    let r = s.send(Call::new(Method::GET, Some("bkt"), Some("big obj"))).await;
    assert_eq!(header(&r, "x-oss-object-type"), Some("Multipart"));
    assert_eq!(r.bytes().await.unwrap().len(), whole.len());
    let r = s.send(Call::new(Method::POST, Some("bkt"), Some("x")).q("uploadId", "nope").body("<bad")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(code_of(&r.text().await.unwrap()), "MalformedXML");
    s.stop().await;
}

#[tokio::test]
async fn listing_copy_append_and_bucket_operations() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    for k in ["a/1", "a/2", "b", "c"] {
        s.put("bkt", k, k.as_bytes()).await;
    }
    let r = s
        .send(Call::new(Method::GET, Some("bkt"), None).q("list-type", "2").q("delimiter", "/").q("max-keys", "2"))
        .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("<Prefix>a/</Prefix>") && body.contains("<Key>b</Key>"), "{body}");
    assert!(body.contains("<IsTruncated>true</IsTruncated>") && body.contains("<KeyCount>2</KeyCount>"), "{body}");
    let r = s.send(Call::new(Method::GET, Some("bkt"), None).q("delimiter", "/").q("max-keys", "1")).await;
    let body = r.text().await.unwrap();
    assert!(body.contains("<NextMarker>a/</NextMarker>"), "{body}");
    let r = s.send(Call::new(Method::GET, Some("bkt"), None).q("delimiter", "/").q("marker", "a/")).await;
    let body = r.text().await.unwrap();
    assert!(!body.contains("<Prefix>a/</Prefix>") && body.contains("<Key>b</Key>"), "{body}");
    // Copy with REPLACE metadata.
    let r = s
        .send(
            Call::new(Method::PUT, Some("bkt"), Some("copy"))
                .h("x-oss-copy-source", "/bkt/a%2F1")
                .h("x-oss-metadata-directive", "REPLACE")
                .h("x-oss-meta-k", "v"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "etag").is_some());
    assert!(r.text().await.unwrap().contains("<CopyObjectResult>"));
    let r = s.send(Call::new(Method::HEAD, Some("bkt"), Some("copy"))).await;
    assert_eq!(header(&r, "x-oss-meta-k"), Some("v"));
    // Append, then a wrong position.
    let r =
        s.send(Call::new(Method::POST, Some("bkt"), Some("log")).q("append", "").q("position", "0").body("abc")).await;
    assert_eq!(header(&r, "x-oss-next-append-position"), Some("3"));
    let r =
        s.send(Call::new(Method::POST, Some("bkt"), Some("log")).q("append", "").q("position", "1").body("d")).await;
    assert_eq!(r.status(), 409);
    assert_eq!(header(&r, "x-oss-next-append-position"), Some("3"));
    assert_eq!(code_of(&r.text().await.unwrap()), "PositionNotEqualToLength");
    // Versioning, delete markers, bucket listing and deletion.
    let doc = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
    let r = s.send(Call::new(Method::PUT, Some("bkt"), None).q("versioning", "").body(doc)).await;
    assert_eq!(r.status(), 200);
    let r = s.send(Call::new(Method::GET, Some("bkt"), None).q("versioning", "")).await;
    assert!(r.text().await.unwrap().contains("<Status>Enabled</Status>"));
    let r = s.send(Call::new(Method::DELETE, Some("bkt"), Some("b"))).await;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "x-oss-delete-marker"), Some("true"));
    let r = s.send(Call::new(Method::DELETE, Some("bkt"), None)).await;
    assert_eq!(r.status(), 409);
    let r = s.send(Call::new(Method::POST, Some("bkt"), Some("k"))).await;
    assert_eq!(r.status(), 405);
    s.stop().await;
}

#[tokio::test]
async fn v1_signatures_chunked_bodies_and_missing_content_length() {
    let mut s = TestServer::start().await;
    s.signer = transfer_engine::sign::Signer::new(transfer_engine::sign::SignatureVersion::V1, "cn-hangzhou");
    s.create_bucket("bkt").await;
    s.put("bkt", "v1", b"x").await;
    // A chunked PUT has no Content-Length: OSS takes it (oss2's put_object of a stream sends one).
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"chunk"))]);
    let mut headers = http::HeaderMap::new();
    let target =
        transfer_engine::sign::SignTarget { method: "PUT", bucket: Some("bkt"), key: Some("chunked"), query: &[] };
    s.signer.sign(&s.creds, &target, &mut headers, std::time::SystemTime::now());
    let r = s
        .client
        .put(format!("http://{}/bkt/chunked", s.addr))
        .headers(headers)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = s.send(Call::new(Method::GET, Some("bkt"), Some("chunked"))).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"chunk");
    // Neither Content-Length nor chunked: 411.
    let (status, resp) = s.raw(&s.raw_head("PUT", "bkt", Some("unsized"), &[], &[])).await;
    assert_eq!(status, 411, "{resp}");
    assert_eq!(code_of(common::body_of(&resp)), "MissingContentLength");
    s.stop().await;
}

#[tokio::test]
async fn list_buckets_acl_delete_multiple_and_presigned_urls() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    s.create_bucket("bkt2").await;
    let r = s.send(Call::new(Method::GET, None, None)).await;
    let body = r.text().await.unwrap();
    assert!(body.contains("<Name>bkt</Name>") && body.contains("<Name>bkt2</Name>"), "{body}");
    assert!(body.contains("<CreationDate>") && body.contains("<StorageClass>Standard</StorageClass>"), "{body}");
    let r = s.send(Call::new(Method::GET, Some("bkt"), None).q("acl", "")).await;
    assert!(r.text().await.unwrap().contains("<Grant>private</Grant>"));
    let r = s.send(Call::new(Method::GET, Some("nope"), None).q("acl", "")).await;
    assert_eq!(code_of(&r.text().await.unwrap()), "NoSuchBucket");
    let r = s.send(Call::new(Method::GET, Some("bkt"), None).q("versions", "")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<ListVersionsResult>"), "ListObjectVersions is served");
    let r = s.send(Call::new(Method::GET, Some("bkt"), None).q("inventory", "")).await;
    assert_eq!(r.status(), 501, "an operation of OSS this server does not have");
    // DeleteMultipleObjects.
    s.put("bkt", "d/1", b"1").await;
    s.put("bkt", "d 2", b"2").await;
    let doc = "<Delete><Quiet>false</Quiet><Object><Key>d/1</Key></Object><Object><Key>d 2</Key></Object></Delete>";
    let r = s
        .send(
            Call::new(Method::POST, Some("bkt"), None)
                .q("delete", "")
                .q("encoding-type", "url")
                .h("content-md5", &content_md5(doc.as_bytes()))
                .body(doc),
        )
        .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("<Deleted><Key>d/1</Key></Deleted>") && body.contains("<Key>d%202</Key>"), "{body}");
    let r = s.send(Call::new(Method::HEAD, Some("bkt"), Some("d/1"))).await;
    assert_eq!(r.status(), 404);
    // A presigned GET (V1 and V4).
    s.put("bkt", "shared", b"presigned").await;
    for version in [transfer_engine::sign::SignatureVersion::V1, transfer_engine::sign::SignatureVersion::V4] {
        let signer = transfer_engine::sign::Signer::new(version, "cn-hangzhou");
        let target =
            transfer_engine::sign::SignTarget { method: "GET", bucket: Some("bkt"), key: Some("shared"), query: &[] };
        let params = signer.presign(
            &s.creds,
            &target,
            &http::HeaderMap::new(),
            std::time::SystemTime::now(),
            std::time::Duration::from_secs(60),
        );
        let q: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", transfer_engine::util::pct_encode(k), transfer_engine::util::pct_encode(v)))
            .collect();
        let r = s.client.get(format!("http://{}/bkt/shared?{}", s.addr, q.join("&"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{version:?}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"presigned");
    }
    s.stop().await;
}

#[tokio::test]
async fn security_tokens_are_required_when_configured() {
    let root = tempfile::tempdir().unwrap();
    let store = transfer_engine::local::LocalStore::open_with(
        root.path(),
        transfer_engine::local::LocalOptions::default().fsync(false),
    )
    .unwrap();
    let creds = Credentials::new("sts-id", "sts-secret").with_security_token("token-1");
    let server =
        transfer_server::Server::bind("127.0.0.1:0".parse().unwrap(), std::sync::Arc::new(store), creds.clone())
            .await
            .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let signer = transfer_engine::sign::Signer::new(transfer_engine::sign::SignatureVersion::V4, "cn-hangzhou");
    let client = reqwest::Client::new();
    for (signing, expected) in [(creds.clone(), 200), (Credentials::new("sts-id", "sts-secret"), 403)] {
        let mut headers = http::HeaderMap::new();
        let target = transfer_engine::sign::SignTarget { method: "GET", bucket: None, key: None, query: &[] };
        signer.sign(&signing, &target, &mut headers, std::time::SystemTime::now());
        let r = client.get(format!("http://{addr}/")).headers(headers).send().await.unwrap();
        assert_eq!(r.status(), expected);
        if expected == 403 {
            assert_eq!(code_of(&r.text().await.unwrap()), "InvalidSecurityToken");
        }
    }
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
