//! What the S3 client puts on the wire and how it reads S3's answers, against the canned-response server of
//! the OSS client's tests (which verifies every SigV4 signature over the path as sent).

use super::*;
use crate::http::tests::{Mock, Reply};
use crate::http::HttpStore;
use crate::sign::Credentials;
use crate::store::Body;
use crate::store::BucketStore;
use crate::store::ByteRange;
use crate::store::CompleteOptions;
use crate::store::CompletedPart;
use crate::store::CopyOptions;
use crate::store::MultipartStore;
use crate::store::ObjectStore;
use crate::store::OssExtensions;
use crate::store::PartCopySource;
use crate::store::PartNumber;
use crate::store::PutOptions;
use crate::store::Upload;
use crate::store::UploadId;
use crate::store::{Checksum, CopyConditions, Directive, ListRequest};
use crate::ObjectRef;
use crate::TagSet;
use crate::{ErrorKind, Metadata, StorageClass};
use std::time::Duration;

const S3_ERROR: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>k</Key><RequestId>4442587FB7D0A2F9</RequestId><HostId>h</HostId></Error>";

fn store(mock: &Mock, path_style: bool, region: &str) -> HttpStore {
    let host =
        if path_style { format!("http://{}", mock.addr()) } else { format!("http://localhost:{}", mock.addr().port()) };
    HttpStore::s3()
        .endpoint(host)
        .region(region)
        .path_style(path_style)
        .credentials(Credentials::new("test-ak", "test-secret-do-not-print").with_security_token("test-token"))
        .system_proxy(false)
        .read_timeout(Some(Duration::from_secs(5)))
        .build()
        .unwrap()
}

#[tokio::test]
async fn put_object_speaks_x_amz_and_signs_with_sigv4() {
    let mock = Mock::start(|_| Reply::new(200).header("etag", "\"abc\"").header("x-amz-version-id", "v1")).await;
    let s = store(&mock, true, "eu-west-1");
    let mut opts = PutOptions { content_md5: true, forbid_overwrite: true, ..Default::default() };
    opts.metadata = Metadata::with_user([("Color", "blue")]).unwrap();
    opts.metadata.storage_class = Some(StorageClass::InfrequentAccess);
    opts.tags = Some(TagSet::from_pairs([("k", "v w")]).unwrap());
    let r = s.put_object("bkt", "dir/a b+c", Body::from_bytes(b"hello".to_vec()), &opts).await.unwrap();
    assert_eq!((r.etag.as_str(), r.version_id.as_deref(), r.crc64), ("abc", Some("v1"), None));
    let seen = mock.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("PUT", "/bkt/dir/a%20b%2Bc"));
    assert_eq!(seen.header("host").unwrap(), mock.addr().to_string());
    assert_eq!(seen.header("x-amz-meta-color"), Some("blue"));
    assert_eq!(seen.header("x-amz-storage-class"), Some("STANDARD_IA"));
    assert_eq!(seen.header("x-amz-tagging"), Some("k=v%20w"));
    assert_eq!(seen.header("if-none-match"), Some("*"));
    assert_eq!(seen.header("content-md5"), Some("XUFAKrxLKna5cZ2REBfFkg=="));
    assert_eq!(seen.header("x-amz-content-sha256"), Some(crate::sign::sigv4::sha256_hex(b"hello").as_str()));
    assert_eq!(seen.header("x-amz-security-token"), Some("test-token"));
    let auth = seen.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=test-ak/") && auth.contains("/eu-west-1/s3/aws4_request"),
        "{auth}"
    );
    assert!(seen.headers.keys().all(|k| !k.as_str().starts_with("x-oss-")), "{:?}", seen.headers);
    assert!(!format!("{s:?}").contains("test-secret-do-not-print"));
}

#[tokio::test]
async fn large_bodies_are_unsigned_payload_never_aws_chunked() {
    let mock = Mock::start(|_| Reply::new(200).header("etag", "\"p\"")).await;
    let s = store(&mock, true, "us-east-1");
    let body = Body::from_bytes(vec![7u8; 200 * 1024]);
    let r = s.upload_part(Upload::new("bkt", "k", UploadId::new("U1")).part(2), body).await.unwrap();
    assert_eq!((r.part_number.get(), r.etag.as_str(), r.size), (2, "p", 200 * 1024));
    let seen = mock.last();
    assert_eq!(seen.target, "/bkt/k?partNumber=2&uploadId=U1");
    assert_eq!(seen.header("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"));
    assert_eq!(seen.header("content-length"), Some("204800"));
    assert_eq!(seen.header("content-encoding"), None);
    assert_eq!(seen.body.len(), 200 * 1024);
}

#[tokio::test]
async fn virtual_hosted_requests_put_the_bucket_in_the_host() {
    let mock = Mock::start(|_| Reply::new(200).header("content-length", "3").header("etag", "\"e-3\"")).await;
    let s = store(&mock, false, "us-east-1");
    assert!(!s.path_style());
    let info = s.head_object(&ObjectRef::new("bkt", "a/b.txt")).await.unwrap();
    assert_eq!(info.object_type, crate::store::ObjectType::Multipart, "a multipart ETag tells the type");
    let seen = mock.last();
    assert_eq!(seen.target, "/a/b.txt");
    assert_eq!(seen.header("host").unwrap(), format!("bkt.localhost:{}", mock.addr().port()));
}

#[tokio::test]
async fn append_and_symlink_are_unsupported_and_send_nothing() {
    let mock = Mock::start(|_| Reply::new(200)).await;
    let s = store(&mock, true, "us-east-1");
    assert!(!s.capabilities().append && !s.capabilities().symlink);
    assert_eq!(s.capabilities().min_part_size, 5 * 1024 * 1024);
    let e = s.append_object("bkt", "k", 0, Body::from_bytes(b"x".to_vec()), &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("AppendObject") && e.to_string().contains("s3"), "{e}");
    let e = s.put_symlink("bkt", "k", "t", &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    let e = s.get_symlink(&ObjectRef::new("bkt", "k")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    let mut cold = PutOptions::default();
    cold.metadata.storage_class = Some(StorageClass::ColdArchive);
    let e = s.put_object("bkt", "k", Body::empty(), &cold).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(mock.seen().is_empty());
}

#[tokio::test]
async fn errors_are_parsed_and_classified() {
    let mock = Mock::start(|seen| match seen.method.as_str() {
        "GET" => Reply::new(404).header("x-amz-request-id", "4442587FB7D0A2F9").body(S3_ERROR),
        "HEAD" => Reply::new(404).header("x-amz-request-id", "R2"),
        _ => Reply::new(503)
            .body("<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"),
    })
    .await;
    let s = store(&mock, true, "us-east-1");
    let e = s.get_object(&ObjectRef::new("bkt", "k"), None).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(404), Some("NoSuchKey"), false));
    assert_eq!(e.service_error().unwrap().request_id.as_deref(), Some("4442587FB7D0A2F9"));
    let e = s.head_object(&ObjectRef::new("bkt", "k")).await.unwrap_err();
    assert_eq!(e.service_code(), Some("NoSuchKey"));
    assert_eq!(e.service_error().unwrap().request_id.as_deref(), Some("R2"));
    let e = s.delete_object(&ObjectRef::new("bkt", "k")).await.unwrap_err();
    assert_eq!(e.service_code(), Some("SlowDown"));
    assert!(e.is_retryable() && e.to_string().contains("key: k"), "{e}");
}

#[tokio::test]
async fn copies_send_s3_directives_and_fail_on_an_error_body() {
    let mock = Mock::start(|seen| {
        if seen.target.contains("partNumber=1") {
            Reply::new(200).body("<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>")
        } else if seen.method == "HEAD" {
            Reply::new(200).header("content-length", "100").header("etag", "\"src\"")
        } else {
            Reply::new(200).body("<CopyPartResult><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>\"c\"</ETag></CopyPartResult>")
        }
    })
    .await;
    let s = store(&mock, true, "us-east-1");
    let mut opts = CopyOptions::from(ObjectRef::new("src", "a b").at_version("v+1"));
    opts.metadata = Directive::Replace(Metadata::with_user([("m", "1")]).unwrap());
    opts.tagging = Directive::Replace(TagSet::from_pairs([("t", "2")]).unwrap());
    opts.conditions.if_match = Some("\"src\"".into());
    s.copy_object("dst", "k", &opts).await.unwrap();
    let seen = mock.last();
    assert_eq!(seen.header("x-amz-copy-source"), Some("/src/a%20b?versionId=v+1"));
    assert_eq!(seen.header("x-amz-metadata-directive"), Some("REPLACE"));
    assert_eq!(seen.header("x-amz-tagging-directive"), Some("REPLACE"));
    assert_eq!(seen.header("x-amz-tagging"), Some("t=2"));
    assert_eq!(seen.header("x-amz-meta-m"), Some("1"));
    assert_eq!(seen.header("x-amz-copy-source-if-match"), Some("\"src\""));
    s.copy_object("dst", "k", &CopyOptions::from(ObjectRef::new("src", "a"))).await.unwrap();
    let seen = mock.last();
    assert_eq!(
        (seen.header("x-amz-metadata-directive"), seen.header("x-amz-tagging-directive")),
        (Some("COPY"), Some("COPY"))
    );

    let src = ObjectRef::new("src", "a");
    let e = s
        .upload_part_copy(
            Upload::new("dst", "k", UploadId::new("U")).part(1),
            &PartCopySource {
                source: src.clone(),
                range: Some(ByteRange::inclusive(0, 9)),
                conditions: CopyConditions::default(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!((e.service_code(), e.is_retryable()), (Some("InternalError"), true));
    // An open range is made explicit first (S3 accepts only bytes=first-last).
    let r = s
        .upload_part_copy(
            Upload::new("dst", "k", UploadId::new("U")).part(2),
            &PartCopySource {
                source: src.clone(),
                range: Some(ByteRange { first: 40, last: None }),
                conditions: CopyConditions::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!((r.etag.as_str(), r.size), ("c", 60));
    let seen = mock.last();
    assert_eq!(seen.header("x-amz-copy-source-range"), Some("bytes=40-99"));
}

#[tokio::test]
async fn multipart_listing_and_bucket_calls_use_s3_queries() {
    let mock = Mock::start(|seen| {
        let t = seen.target.as_str();
        if t.contains("uploads") && seen.method == "POST" {
            Reply::new(200).body("<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>")
        } else if t.contains("list-type=2") {
            Reply::new(200).body("<ListBucketResult><IsTruncated>true</IsTruncated><EncodingType>url</EncodingType><Contents><Key>a%20b</Key><Size>3</Size><ETag>\"x-2\"</ETag><LastModified>2024-01-01T00:00:00.000Z</LastModified><StorageClass>STANDARD</StorageClass></Contents><NextContinuationToken>1%2Fx+y=</NextContinuationToken></ListBucketResult>")
        } else if seen.method == "PUT" && t == "/nbk/" {
            Reply::new(409).body("<Error><Code>BucketAlreadyOwnedByYou</Code><Message>m</Message></Error>")
        } else {
            Reply::new(200).header("content-length", "0")
        }
    })
    .await;
    let s = store(&mock, true, "eu-west-1");
    assert_eq!(s.initiate_multipart("bkt", "k", &PutOptions::default()).await.unwrap().id.as_str(), "U1");
    assert_eq!(mock.last().target, "/bkt/k?uploads");
    let page = s.list_objects("bkt", &ListRequest { prefix: Some("a".into()), ..Default::default() }).await.unwrap();
    assert_eq!(page.objects[0].key, "a b");
    assert_eq!(page.objects[0].object_type, crate::store::ObjectType::Multipart);
    assert_eq!(page.next_continuation_token.as_deref(), Some("1%2Fx+y="), "S3 tokens are opaque");
    s.get_object_meta(&ObjectRef::new("bkt", "k")).await.unwrap();
    assert_eq!((mock.last().method.as_str(), mock.last().target.as_str()), ("HEAD", "/bkt/k"));
    s.create_bucket("nbk").await.unwrap();
    let seen = mock.last();
    let body = String::from_utf8(seen.body.to_vec()).unwrap();
    assert!(body.contains("<LocationConstraint>eu-west-1</LocationConstraint>"), "{body}");
    assert!(seen.header("content-md5").is_some());
    let _ = s.list_parts(&Upload::new("bkt", "k", UploadId::new("U1")), Some(PartNumber::from(3)), Some(2)).await;
    assert_eq!(mock.last().target, "/bkt/k?uploadId=U1&max-parts=2&part-number-marker=3");
}

#[tokio::test]
async fn bodies_carry_a_crc32c_declared_on_every_upload_and_named_at_complete() {
    // The mock echoes the checksum it was sent, except on part 9 where it answers another value.
    let mock = Mock::start(|seen| {
        let echo = seen.header("x-amz-checksum-crc32c").unwrap_or_default().to_owned();
        match (seen.method.as_str(), seen.target.as_str()) {
            ("POST", t) if t.ends_with("?uploads") => Reply::new(200).body(
                "<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>",
            ),
            ("POST", _) => Reply::new(200).body("<CompleteMultipartUploadResult><ETag>\"m-2\"</ETag></CompleteMultipartUploadResult>"),
            (_, t) if t.contains("partNumber=9") => Reply::new(200).header("etag", "\"p9\"").header("x-amz-checksum-crc32c", "AAAAAA=="),
            _ => Reply::new(200).header("etag", "\"e\"").header("x-amz-checksum-crc32c", echo),
        }
    })
    .await;
    let s = store(&mock, true, "us-east-1");
    s.put_object("bkt", "small", Body::from_bytes(b"123456789".to_vec()), &PutOptions::default()).await.unwrap();
    let seen = mock.last();
    assert_eq!(seen.header("x-amz-checksum-crc32c"), Some("4waSgw=="));
    assert_eq!(seen.header("content-md5"), None, "CRC-32C replaces Content-MD5 on data bodies");

    assert_eq!(s.initiate_multipart("bkt", "k", &PutOptions::default()).await.unwrap().id.as_str(), "U1");
    assert_eq!(mock.last().header("x-amz-checksum-algorithm"), Some("CRC32C"));
    let r = s
        .upload_part(Upload::new("bkt", "k", UploadId::new("U1")).part(1), Body::from_bytes(b"123456789".to_vec()))
        .await
        .unwrap();
    assert_eq!(r.checksum, Some(Checksum::Crc32c(0xE306_9283)));
    let e = s
        .upload_part(Upload::new("bkt", "k", UploadId::new("U1")).part(9), Body::from_bytes(b"x".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");

    s.complete_multipart(
        &Upload::new("bkt", "k", UploadId::new("U1")),
        &[CompletedPart::from(&r)],
        &CompleteOptions::default(),
    )
    .await
    .unwrap();
    let seen = mock.last();
    let body = String::from_utf8(seen.body.to_vec()).unwrap();
    assert!(body.contains("<ChecksumCRC32C>4waSgw==</ChecksumCRC32C>"), "{body}");
    assert!(seen.header("content-md5").is_some(), "XML documents keep Content-MD5");

    // Content-MD5 instead, for servers without S3's checksums: nothing declared, nothing named.
    let md5 = HttpStore::s3()
        .endpoint(format!("http://{}", mock.addr()))
        .region("us-east-1")
        .credentials(Credentials::new("test-ak", "test-secret-do-not-print").with_security_token("test-token"))
        .system_proxy(false)
        .checksum(S3Checksum::ContentMd5)
        .build()
        .unwrap();
    md5.put_object("bkt", "small", Body::from_bytes(b"hello".to_vec()), &PutOptions::default()).await.unwrap();
    let seen = mock.last();
    assert_eq!(
        (seen.header("content-md5"), seen.header("x-amz-checksum-crc32c")),
        (Some("XUFAKrxLKna5cZ2REBfFkg=="), None)
    );
    md5.initiate_multipart("bkt", "k", &PutOptions::default()).await.unwrap();
    assert_eq!(mock.last().header("x-amz-checksum-algorithm"), None);
    let r = md5
        .upload_part(Upload::new("bkt", "k", UploadId::new("U1")).part(1), Body::from_bytes(b"123456789".to_vec()))
        .await
        .unwrap();
    assert_eq!(r.checksum, None);
}
