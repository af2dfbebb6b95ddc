//! Bad input, each with a test: the refusal carries OSS's error code and nothing changes on disk (no object,
//! no staged part, no data file appears or disappears).

use crate::util::{bucket, data, disk_snapshot, Served, AK, SK};
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};
use transfer_engine::sign::{Credentials, SignTarget, SignatureVersion::V4, Signer};
use transfer_engine::store::PartCopySource;
use transfer_engine::store::{Body, ByteRange, CompleteOptions, CompletedPart, CopyOptions, PutOptions};
use transfer_engine::MultipartStore;
use transfer_engine::OssExtensions;
use transfer_engine::{ObjectRef, ObjectStore, TagSet};

/// Asserts the error's service code, and that the server's disk is as it was before `op`.
async fn refused<T: std::fmt::Debug>(
    served: &Served,
    code: &str,
    op: impl std::future::Future<Output = transfer_engine::Result<T>>,
) -> transfer_engine::Error {
    let before = disk_snapshot(served.root());
    let err = op.await.expect_err("the operation must be refused");
    assert_eq!(err.service_code(), Some(code), "{err}");
    assert_eq!(disk_snapshot(served.root()), before, "a refused operation changed the disk: {err}");
    err
}

/// One raw HTTP/1.1 request over TCP, signed with V4, so tests can send what `reqwest` would normalise away
/// (a `..` segment). Returns the status and the body.
fn raw_request(
    served: &Served,
    method: &str,
    bucket: &str,
    raw_key: &str,
    key: &str,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let addr = served.endpoint.trim_start_matches("http://");
    let mut headers = http::HeaderMap::new();
    for (k, v) in extra {
        headers.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let t = SignTarget { method, bucket: Some(bucket), key: Some(key), query: &[] };
    Signer::new(V4, "cn-hangzhou").sign(&Credentials::new(AK, SK), &t, &mut headers, SystemTime::now());
    let mut req =
        format!("{method} /{bucket}/{raw_key} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    req.push_str("\r\n");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, resp)
}

#[tokio::test]
async fn wrong_signature() {
    let served = Served::start();
    let good = served.client(V4);
    let b = bucket(&good, "badsig").await;
    for v in [transfer_engine::sign::SignatureVersion::V1, V4] {
        let bad = served.client_with(v, Credentials::new(AK, "not-the-secret"));
        let e =
            refused(&served, "SignatureDoesNotMatch", bad.put_object(&b, "k", Body::from("x"), &PutOptions::default()))
                .await;
        assert_eq!(e.status(), Some(403));
        assert!(e.service_error().unwrap().extra("StringToSign").is_some());
    }
    let unknown = served.client_with(V4, Credentials::new("nobody", SK));
    refused(&served, "InvalidAccessKeyId", unknown.put_object(&b, "k", Body::from("x"), &PutOptions::default())).await;
    assert!(good
        .head_object(&ObjectRef::new(&b, "k"))
        .await
        .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound));
}

#[tokio::test]
async fn missing_or_expired_credentials() {
    let e =
        Credentials::from_env_vars("TRANSFER_TEST_UNSET_ID", "TRANSFER_TEST_UNSET_SECRET", "TRANSFER_TEST_UNSET_TOKEN")
            .unwrap_err();
    assert!(
        e.to_string().contains("TRANSFER_TEST_UNSET_ID") && e.to_string().contains("TRANSFER_TEST_UNSET_SECRET"),
        "{e}"
    );

    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "creds").await;
    store.put_object(&b, "k", Body::from("x"), &PutOptions::default()).await.unwrap();
    let http = reqwest::Client::new();
    let anonymous = http.get(format!("{}/{b}/k", served.endpoint)).send().await.unwrap();
    assert_eq!(anonymous.status(), 403);
    assert!(anonymous.text().await.unwrap().contains("<Code>AccessDenied</Code>"));

    // A presigned URL that expired a minute ago.
    let t = SignTarget { method: "GET", bucket: Some(&b), key: Some("k"), query: &[] };
    let past = SystemTime::now() - Duration::from_secs(120);
    let q = Signer::new(V4, "cn-hangzhou").presign(
        &Credentials::new(AK, SK),
        &t,
        &http::HeaderMap::new(),
        past,
        Duration::from_secs(60),
    );
    let expired = http.get(format!("{}/{b}/k", served.endpoint)).query(&q).send().await.unwrap();
    assert_eq!(expired.status(), 403);
    assert!(expired.text().await.unwrap().contains("expired"));

    // A request signed 20 minutes ago.
    let (status, body) = {
        let mut h = http::HeaderMap::new();
        Signer::new(V4, "cn-hangzhou").sign(
            &Credentials::new(AK, SK),
            &t,
            &mut h,
            SystemTime::now() - Duration::from_secs(1200),
        );
        let r = http.get(format!("{}/{b}/k", served.endpoint)).headers(h).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 403);
    assert!(body.contains("RequestTimeTooSkewed"), "{body}");
}

#[tokio::test]
async fn tag_set_over_the_limits() {
    let eleven: Vec<(String, String)> = (0..11).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let e = TagSet::from_pairs(eleven).unwrap_err();
    assert!(e.to_string().contains("k10"), "{e}");

    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "tags").await;
    let header: String = (0..11).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&");
    let before = disk_snapshot(served.root());
    let (status, body) = raw_request(&served, "PUT", &b, "tagged", "tagged", &[("x-oss-tagging", &header)]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>InvalidTag</Code>"), "{body}");
    let (status, body) = raw_request(&served, "PUT", &b, "tagged", "tagged", &[("x-oss-tagging", "a=b=c")]);
    assert_eq!(status, 400, "{body}");
    assert_eq!(disk_snapshot(served.root()), before);
    assert!(store
        .head_object(&ObjectRef::new(&b, "tagged"))
        .await
        .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound));
}

#[tokio::test]
async fn keys_that_escape_the_root() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "escape").await;
    let before = disk_snapshot(served.root());
    let long = "k".repeat(1024);
    for (raw, key) in [
        ("a/../../etc/passwd", "a/../../etc/passwd"),
        ("..", ".."),
        ("nul%00byte", "nul\0byte"),
        ("/abs", "/abs"),
        (long.as_str(), long.as_str()),
    ] {
        let (status, body) = raw_request(&served, "PUT", &b, raw, key, &[]);
        assert_eq!(status, 400, "{key:?}: {body}");
        assert!(body.contains("<Code>InvalidObjectName</Code>"), "{key:?}: {body}");
    }
    assert_eq!(disk_snapshot(served.root()), before);
    // Our client refuses them before sending.
    let e = store.put_object(&b, "x/../y", Body::from("x"), &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.service_code(), Some("InvalidObjectName"));
}

#[tokio::test]
async fn multipart_misuse() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "mpbad").await;
    let id = store.initiate_multipart(&b, "obj", &PutOptions::default()).await.unwrap();
    for n in [0u32, 10001] {
        let e = refused(&served, "InvalidArgument", store.upload_part(id.part(n), Body::from("x"))).await;
        assert_eq!(e.status(), Some(400));
    }
    let p1 = store.upload_part(id.part(1), Body::from(data(100 * 1024, 1))).await.unwrap();
    let p2 = store.upload_part(id.part(2), Body::from(data(1000, 2))).await.unwrap();
    let p3 = store.upload_part(id.part(3), Body::from(data(10, 3))).await.unwrap();
    let part = |r: &transfer_engine::store::PartReceipt| CompletedPart::from(r);
    let opts = CompleteOptions::default();

    let wrong = vec![part(&p1), CompletedPart::new(2, "0123456789ABCDEF0123456789ABCDEF")];
    refused(&served, "InvalidPart", store.complete_multipart(&id, &wrong, &opts)).await;
    let out_of_order = vec![part(&p2), part(&p1)];
    refused(&served, "InvalidPartOrder", store.complete_multipart(&id, &out_of_order, &opts)).await;
    let small_middle = vec![part(&p1), part(&p2), part(&p3)];
    refused(&served, "EntityTooSmall", store.complete_multipart(&id, &small_middle, &opts)).await;

    // The upload is intact and no object appeared.
    assert_eq!(store.list_parts(&id, None, None).await.unwrap().parts.len(), 3);
    assert!(store
        .head_object(&ObjectRef::new(&b, "obj"))
        .await
        .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound));
    store.complete_multipart(&id, &[part(&p1), part(&p2)], &opts).await.unwrap();
    assert_eq!(store.head_object(&ObjectRef::new(&b, "obj")).await.unwrap().size, 100 * 1024 + 1000);
}

#[tokio::test]
async fn append_at_the_wrong_position() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "appendbad").await;
    store.append_object(&b, "log", 0, Body::from("0123456789abc"), &PutOptions::default()).await.unwrap();
    let e = refused(
        &served,
        "PositionNotEqualToLength",
        store.append_object(&b, "log", 5, Body::from("zz"), &PutOptions::default()),
    )
    .await;
    assert_eq!(e.status(), Some(409));
    assert_eq!(e.service_error().unwrap().header("x-oss-next-append-position"), Some("13"));
    let obj = ObjectRef::new(&b, "log");
    assert_eq!(store.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref(), b"0123456789abc");
    store.put_object(&b, "plain", Body::from("x"), &PutOptions::default()).await.unwrap();
    refused(
        &served,
        "ObjectNotAppendable",
        store.append_object(&b, "plain", 1, Body::from("y"), &PutOptions::default()),
    )
    .await;
}

#[tokio::test]
async fn copy_from_a_missing_source_and_range_past_the_end() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "copybad").await;
    let missing = CopyOptions::from(ObjectRef::new(&b, "does-not-exist"));
    let e = refused(&served, "NoSuchKey", store.copy_object(&b, "dst", &missing)).await;
    assert_eq!(e.status(), Some(404));
    assert!(store
        .head_object(&ObjectRef::new(&b, "dst"))
        .await
        .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound));

    store.put_object(&b, "small", Body::from("0123456789"), &PutOptions::default()).await.unwrap();
    let e = refused(
        &served,
        "InvalidRange",
        store.get_object(&ObjectRef::new(&b, "small"), Some(ByteRange::inclusive(10, 20))),
    )
    .await;
    assert_eq!(e.status(), Some(416));
    let id = store.initiate_multipart(&b, "mp", &PutOptions::default()).await.unwrap();
    let src = ObjectRef::new(&b, "small");
    refused(
        &served,
        "InvalidRange",
        store.upload_part_copy(
            id.part(1),
            &PartCopySource {
                source: src.clone(),
                range: Some(ByteRange::inclusive(50, 60)),
                conditions: Default::default(),
            },
        ),
    )
    .await;
}

#[tokio::test]
async fn content_md5_mismatch_stores_nothing() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "digest").await;
    let before = disk_snapshot(served.root());
    let (status, body) = raw_request(&served, "PUT", &b, "d", "d", &[("content-md5", "eB5eJF1ptWaXm4bijSPyxw==")]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>InvalidDigest</Code>"), "{body}");
    assert_eq!(disk_snapshot(served.root()), before);
    assert!(store
        .head_object(&ObjectRef::new(&b, "d"))
        .await
        .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound));
}
