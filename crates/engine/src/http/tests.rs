//! Tests of the client against a canned-response HTTP server (hyper on `127.0.0.1:0`, stopped when the test
//! ends): what goes on the wire, and how answers (errors, 200 with an error body, CRC mismatches, ranges)
//! are read.

use super::*;
use crate::crc64::checksum;
use crate::store::DeleteResult;
use crate::store::MultipartStore;
use crate::store::OssExtensions;
use crate::store::PartCopySource;
use crate::store::Upload;
use crate::store::UploadId;
use crate::store::{
    Body, BucketStore, ByteRange, CompleteOptions, CompletedPart, CopyConditions, CopyOptions, ListRequest, ObjectRef,
    ObjectStore, PutOptions, Versioning,
};
use crate::tags::TagSet;
use futures::stream;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// A request the mock received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    /// Path and query as sent.
    pub(crate) target: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A canned answer.
pub(crate) struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Reply {
    pub(crate) fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Bytes::new() }
    }

    pub(crate) fn header(mut self, name: &str, value: impl ToString) -> Self {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }

    pub(crate) fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

/// A canned-response server; dropping it stops the server and its connections.
pub(crate) struct Mock {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mock {
    pub(crate) async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            // Connections live in the set, so aborting this task drops (and stops) them too.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((io, _)) = listener.accept().await else { return };
                let (handler, log) = (handler.clone(), log.clone());
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (handler, log) = (handler.clone(), log.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let seen = Seen {
                            method: parts.method.to_string(),
                            target: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                            headers: parts.headers,
                            body,
                        };
                        let reply = match check_signature(&seen) {
                            Ok(()) => handler(&seen),
                            Err(e) => {
                                let se = e.service_error().cloned().unwrap_or_default();
                                Reply::new(se.status).body(crate::xml::error_document(&se, "mock"))
                            }
                        };
                        log.lock().unwrap().push(seen);
                        let mut resp = hyper::Response::builder().status(reply.status);
                        for (k, v) in &reply.headers {
                            resp = resp.header(k.as_str(), v.as_str());
                        }
                        Ok::<_, Infallible>(resp.body(Full::new(reply.body)).unwrap())
                    }
                });
                conns.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(io);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Mock { addr, seen, task }
    }

    /// The mock's address, `127.0.0.1:port`.
    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    fn store(&self) -> HttpStore {
        self.store_with(SignatureVersion::V4)
    }

    fn store_with(&self, version: SignatureVersion) -> HttpStore {
        self.builder(version).build().unwrap()
    }

    fn builder(&self, version: SignatureVersion) -> crate::http::HttpStoreBuilder {
        HttpStore::oss()
            .endpoint(format!("http://{}", self.addr))
            .region("cn-hangzhou")
            .credentials(Credentials::new("test-ak", "test-secret-do-not-print").with_security_token("test-token"))
            .signature_version(version)
            .system_proxy(false)
            .read_timeout(Some(Duration::from_secs(5)))
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn last(&self) -> Seen {
        self.seen().pop().expect("the mock received a request")
    }
}

/// Verifies the signature of a request as the server would (OSS V1/V4, or AWS SigV4 over the path as sent):
/// the mock answers 403 otherwise, so every test also checks that what is signed is what is sent.
fn check_signature(seen: &Seen) -> Result<()> {
    let (path, query) = seen.target.split_once('?').unwrap_or((&seen.target, ""));
    let query = crate::util::parse_query(query)?;
    if crate::sign::s3::is_signed_with_sigv4(&seen.headers, &query) {
        let target = crate::sign::s3::S3Target { method: &seen.method, uri: path, query: &query };
        let creds = Credentials::new("test-ak", "test-secret-do-not-print").with_security_token("test-token");
        let lookup = move |ak: &str| (ak == "test-ak").then(|| creds.clone());
        let at = seen.header("x-amz-date").and_then(crate::sign::s3::parse_amz_date).unwrap_or_else(SystemTime::now);
        return crate::sign::s3::verify(&target, &seen.headers, &lookup, at).map(|_| ());
    }
    let path = path.strip_prefix('/').unwrap_or(path);
    let host = seen.header("host").unwrap_or_default();
    let (bucket, key) = match (host.split_once(".localhost"), path.split_once('/')) {
        (Some((b, _)), _) => (Some(b), Some(crate::util::pct_decode(path)?).filter(|k| !k.is_empty())),
        (None, Some((b, k))) => (Some(b), Some(crate::util::pct_decode(k)?).filter(|k| !k.is_empty())),
        (None, None) => (Some(path).filter(|b| !b.is_empty()), None),
    };
    let target = SignTarget { method: &seen.method, bucket, key: key.as_deref(), query: &query };
    let creds = Credentials::new("test-ak", "test-secret-do-not-print").with_security_token("test-token");
    let lookup = move |ak: &str| (ak == "test-ak").then(|| creds.clone());
    // Clock skew is the handlers' business (see the RequestTimeTooSkewed test): check at the request's own time.
    let at = seen.header("date").and_then(|d| httpdate::parse_http_date(d).ok()).unwrap_or_else(SystemTime::now);
    crate::sign::verify(&target, &seen.headers, &lookup, at).map(|_| ())
}

pub(crate) fn error_doc(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
         <RequestId>RID-1</RequestId><HostId>h</HostId><EC>0000-00000000</EC></Error>"
    )
}

pub(crate) fn streamed(parts: &[&'static [u8]]) -> Body {
    let len = parts.iter().map(|p| p.len() as u64).sum();
    let chunks: Vec<Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Body::from_stream(len, stream::iter(chunks).boxed())
}

#[tokio::test]
async fn put_object_sends_length_crc_signature_and_options() {
    let crc = checksum(b"hello world");
    let mock = Mock::start(move |_| {
        Reply::new(200)
            .header("etag", "\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"")
            .header("x-oss-hash-crc64ecma", crc)
            .header("x-oss-version-id", "v1")
            .header("x-oss-request-id", "RID-9")
    })
    .await;
    let store = mock.store();
    let opts =
        PutOptions { tags: Some(TagSet::from_pairs([("k", "a b")]).unwrap()), content_md5: true, ..Default::default() };
    let out = store.put_object("bkt", "dir/中 x+y", Body::from("hello world"), &opts).await.unwrap();
    assert_eq!(out.etag, "5EB63BBBE01EEED093CB22BB8F5ACDC3");
    assert_eq!(out.crc64, Some(crc));
    assert_eq!(out.version_id.as_deref(), Some("v1"));

    let out = store.put_object("bkt", "s", streamed(&[b"hello", b" ", b"world"]), &PutOptions::default()).await;
    assert_eq!(out.unwrap().crc64, Some(crc));

    let seen = mock.seen();
    let first = &seen[0];
    assert_eq!(first.method, "PUT");
    assert_eq!(first.target, "/bkt/dir/%E4%B8%AD%20x%2By");
    assert_eq!(first.body, "hello world");
    assert_eq!(first.header("content-length"), Some("11"));
    assert_eq!(first.header("content-md5"), Some(crate::util::content_md5(b"hello world").as_str()));
    assert_eq!(first.header("x-oss-tagging"), Some("k=a%20b"));
    assert_eq!(first.header("x-oss-security-token"), Some("test-token"));
    assert!(first.header("authorization").unwrap().starts_with("OSS4-HMAC-SHA256 Credential=test-ak/"));
    assert!(first.header("x-oss-date").is_some());
    let streamed = &seen[1];
    assert_eq!(streamed.header("content-length"), Some("11"));
    assert_eq!(streamed.header("transfer-encoding"), None);
    assert_eq!(streamed.header("content-md5"), None);
    assert_eq!(streamed.body, "hello world");
}

#[tokio::test]
async fn signature_v1_is_sent_when_asked() {
    let mock = Mock::start(|_| Reply::new(200)).await;
    mock.store_with(SignatureVersion::V1).delete_tagging(&ObjectRef::new("bkt", "k")).await.unwrap();
    let seen = mock.last();
    assert!(seen.header("authorization").unwrap().starts_with("OSS test-ak:"));
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("DELETE", "/bkt/k?tagging"));
}

#[tokio::test]
async fn wrong_crc_on_put_object_and_upload_part_is_a_retryable_integrity_error() {
    let mock = Mock::start(|_| Reply::new(200).header("etag", "\"E\"").header("x-oss-hash-crc64ecma", "12345")).await;
    let store = mock.store();
    let e = store.put_object("bkt", "k", Body::from("hello"), &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity);
    assert!(e.is_retryable());
    let s = e.to_string();
    assert!(s.contains("12345") && s.contains(&checksum(b"hello").to_string()) && s.contains("key: k"), "{s}");

    let e = store
        .upload_part(Upload::new("bkt", "k", UploadId::new("U1")).part(7), streamed(&[b"hel", b"lo"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity);
    assert!(e.is_retryable());
    let s = e.to_string();
    assert!(s.contains("part 7") && s.contains("U1"), "{s}");
    assert_eq!(mock.last().target, "/bkt/k?partNumber=7&uploadId=U1");
    assert!(!format!("{e:?}").contains("test-secret"));
}

#[tokio::test]
async fn upload_part_receipt_and_part_number_checks() {
    let crc = checksum(b"part");
    let mock = Mock::start(move |_| Reply::new(200).header("etag", "\"P1\"").header("x-oss-hash-crc64ecma", crc)).await;
    let store = mock.store();
    let r = store.upload_part(Upload::new("bkt", "k", UploadId::new("U+1")).part(1), Body::from("part")).await.unwrap();
    assert_eq!((r.part_number.get(), r.etag.as_str(), r.crc64, r.size), (1, "P1", Some(crc), 4));
    assert_eq!(mock.last().target, "/bkt/k?partNumber=1&uploadId=U%2B1");
    // OSS checks the body by the CRC-64 it reports; Content-MD5 goes too when the store is built to send it.
    assert!(mock.last().header("content-md5").is_none());
    let md5 = mock.builder(SignatureVersion::V4).content_md5(true).build().unwrap();
    md5.upload_part(Upload::new("bkt", "k", "U+1").part(1), Body::from("part")).await.unwrap();
    assert_eq!(mock.last().header("content-md5"), Some(crate::util::content_md5(b"part").as_str()));
    let e =
        store.upload_part(Upload::new("bkt", "k", UploadId::new("U")).part(10_001), Body::from("x")).await.unwrap_err();
    assert_eq!(e.service_code(), Some("InvalidArgument"), "refused before sending, in the service's words");
}

#[tokio::test]
async fn a_short_stream_fails_with_the_stream_error() {
    let mock = Mock::start(|_| Reply::new(200)).await;
    let body = Body::from_stream(10, stream::iter(vec![Ok(Bytes::from_static(b"abc"))]).boxed());
    let e = mock.store().put_object("bkt", "k", body, &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.service_code(), Some("IncompleteBody"), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn complete_answered_200_with_an_error_body_is_an_error() {
    let mock = Mock::start(|_| Reply::new(200).body(error_doc("InternalError", "Please try again."))).await;
    let parts = [CompletedPart::new(1, "\"A\""), CompletedPart::new(2, "B")];
    let e = mock
        .store()
        .complete_multipart(
            &Upload::new("bkt", "k", UploadId::new("U1")),
            &parts,
            &CompleteOptions { forbid_overwrite: true },
        )
        .await;
    let e = e.unwrap_err();
    assert_eq!(e.service_code(), Some("InternalError"));
    assert!(e.is_retryable());
    assert!(e.to_string().contains("U1"), "{e}");

    let seen = mock.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/bkt/k?uploadId=U1&encoding-type=url"));
    assert_eq!(seen.header("x-oss-forbid-overwrite"), Some("true"));
    assert_eq!(seen.header("content-md5"), Some(crate::util::content_md5(&seen.body).as_str()));
    let doc: crate::xml::CompleteMultipartUpload = crate::xml::from_slice(&seen.body).unwrap();
    let got: Vec<(u32, &str)> = doc.parts.iter().map(|p| (p.part_number, p.etag.as_str())).collect();
    assert_eq!(got, vec![(1, "\"A\""), (2, "\"B\"")]);
}

#[tokio::test]
async fn complete_reads_the_result() {
    let mock = Mock::start(|_| {
        Reply::new(200).header("x-oss-hash-crc64ecma", "99").header("x-oss-version-id", "v2").body(
            "<CompleteMultipartUploadResult><EncodingType>url</EncodingType><Location>l</Location>\
             <Bucket>bkt</Bucket><Key>k</Key><ETag>\"ABC-2\"</ETag></CompleteMultipartUploadResult>",
        )
    })
    .await;
    let parts = [CompletedPart::new(1, "A")];
    let out = mock
        .store()
        .complete_multipart(&Upload::new("bkt", "k", UploadId::new("U1")), &parts, &CompleteOptions::default())
        .await
        .unwrap();
    assert_eq!((out.etag.as_str(), out.crc64, out.version_id.as_deref()), ("ABC-2", Some(99), Some("v2")));
}

#[tokio::test]
async fn upload_part_copy_sends_the_source_and_fails_on_an_error_body() {
    let mock = Mock::start(|_| Reply::new(200).body(error_doc("InternalError", "copy failed late"))).await;
    let src = ObjectRef::new("src", "dir/中 x+y").at_version("CAEQ+1");
    let conds = CopyConditions { if_match: Some("\"E1\"".into()), if_none_match: None };
    let e = mock
        .store()
        .upload_part_copy(
            Upload::new("bkt", "k", UploadId::new("U1")).part(3),
            &PartCopySource {
                source: src.clone(),
                range: Some(ByteRange::inclusive(0, 99)),
                conditions: conds.clone(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.service_code(), Some("InternalError"));
    let seen = mock.last();
    assert_eq!(seen.target, "/bkt/k?partNumber=3&uploadId=U1");
    assert_eq!(seen.header("x-oss-copy-source"), Some("/src/dir/%E4%B8%AD%20x%2By?versionId=CAEQ+1"));
    assert_eq!(seen.header("x-oss-copy-source-range"), Some("bytes=0-99"));
    assert_eq!(seen.header("x-oss-copy-source-if-match"), Some("\"E1\""));
}

#[tokio::test]
async fn upload_part_copy_receipt() {
    let mock = Mock::start(|seen| match seen.method.as_str() {
        "HEAD" => Reply::new(200).header("content-length", "1000"),
        _ => Reply::new(200).body(
            "<CopyPartResult><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>\"C3\"</ETag></CopyPartResult>",
        ),
    })
    .await;
    let store = mock.store();
    let (src, none) = (ObjectRef::new("src", "s"), CopyConditions::default());
    let r = store
        .upload_part_copy(
            Upload::new("bkt", "k", UploadId::new("U")).part(3),
            &PartCopySource { source: src.clone(), range: Some(ByteRange::at(100, 50)), conditions: none.clone() },
        )
        .await
        .unwrap();
    assert_eq!((r.part_number.get(), r.etag.as_str(), r.size), (3, "C3", 50));
    let open_ended = Some(ByteRange { first: 900, last: None });
    let r = store
        .upload_part_copy(
            Upload::new("bkt", "k", UploadId::new("U")).part(4),
            &PartCopySource { source: src.clone(), range: open_ended, conditions: none.clone() },
        )
        .await
        .unwrap();
    assert_eq!(r.size, 100);
}

#[tokio::test]
async fn slow_down_is_retryable_and_names_the_object() {
    let mock = Mock::start(|_| {
        Reply::new(503)
            .header("x-oss-request-id", "RID-503")
            .body(error_doc("SlowDown", "Please reduce your request rate."))
    })
    .await;
    let e = mock.store().get_object(&ObjectRef::new("bkt", "a/b"), None).await.unwrap_err();
    assert_eq!(e.service_code(), Some("SlowDown"));
    assert_eq!(e.status(), Some(503));
    assert!(e.is_retryable());
    assert_eq!(e.service_error().unwrap().request_id.as_deref(), Some("RID-1"));
    assert!(e.to_string().contains("a/b"), "{e}");
}

#[tokio::test]
async fn whole_get_checks_the_crc_while_streaming() {
    let good = checksum(b"hello world");
    let mock = Mock::start(move |seen| {
        let crc = if seen.target.ends_with("/bad") { good ^ 1 } else { good };
        Reply::new(200)
            .header("x-oss-hash-crc64ecma", crc)
            .header("etag", "\"E\"")
            .header("last-modified", "Fri, 24 Feb 2012 06:07:48 GMT")
            .body("hello world")
    })
    .await;
    let store = mock.store();
    let got = store.get_object(&ObjectRef::new("bkt", "good"), None).await.unwrap();
    assert_eq!((got.info.size, got.range, got.info.crc64), (11, Some((0, 10)), Some(good)));
    assert_eq!(got.bytes().await.unwrap(), "hello world");
    assert_eq!(mock.last().header("range"), None);

    let got = store.get_object(&ObjectRef::new("bkt", "bad"), None).await.unwrap();
    let e = got.bytes().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity);
    assert!(e.is_retryable());
    assert!(e.to_string().contains("key: bad"), "{e}");
}

#[tokio::test]
async fn ranged_get_must_be_answered_with_206() {
    let mock = Mock::start(|seen| match seen.target.as_str() {
        "/bkt/whole" => Reply::new(200).header("x-oss-hash-crc64ecma", checksum(b"hello world")).body("hello world"),
        _ => Reply::new(206)
            .header("content-range", "bytes 6-10/11")
            .header("x-oss-hash-crc64ecma", checksum(b"hello world"))
            .body("world"),
    })
    .await;
    let store = mock.store();
    let e = store.get_object(&ObjectRef::new("bkt", "whole"), Some(ByteRange::at(6, 5))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.to_string().contains("206"), "{e}");
    let seen = mock.last();
    assert_eq!(seen.header("range"), Some("bytes=6-10"));
    assert_eq!(seen.header("x-oss-range-behavior"), Some("standard"));

    let got = store.get_object(&ObjectRef::new("bkt", "part").at_version("v1"), Some(ByteRange::at(6, 100))).await;
    let got = got.unwrap();
    assert_eq!((got.info.size, got.range), (11, Some((6, 10))));
    assert_eq!(got.bytes().await.unwrap(), "world");
    assert_eq!(mock.last().target, "/bkt/part?versionId=v1");
}

#[tokio::test]
async fn head_errors_come_from_x_oss_err() {
    let doc = error_doc("NoSuchKey", "The specified key does not exist.");
    let mock = Mock::start(move |_| {
        Reply::new(404)
            .header("x-oss-err", crate::util::b64(doc.as_bytes()))
            .header("x-oss-ec", "0026-00000001")
            .header("x-oss-request-id", "RID-404")
    })
    .await;
    let e = mock.store().head_object(&ObjectRef::new("bkt", "missing")).await.unwrap_err();
    assert_eq!(e.service_code(), Some("NoSuchKey"));
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("missing"), "{e}");
    let e = mock.store().get_object_meta(&ObjectRef::new("bkt", "missing")).await.unwrap_err();
    assert_eq!(e.service_code(), Some("NoSuchKey"));
    assert_eq!(mock.last().target, "/bkt/missing?objectMeta");
}

#[tokio::test]
async fn head_object_reads_the_headers() {
    let mock = Mock::start(|_| {
        Reply::new(200)
            .header("content-length", "42")
            .header("etag", "\"E\"")
            .header("x-oss-object-type", "Multipart")
            .header("x-oss-tagging-count", "3")
            .header("x-oss-meta-a", "1")
    })
    .await;
    let info = mock.store().head_object(&ObjectRef::new("bkt", "k").at_version("v 1")).await.unwrap();
    assert_eq!((info.size, info.etag.as_str(), info.tagging_count), (42, "E", 3));
    assert_eq!(info.object_type, crate::store::ObjectType::Multipart);
    assert_eq!(info.metadata.user.get("a").map(String::as_str), Some("1"));
    assert_eq!(mock.last().target, "/bkt/k?versionId=v%201");
}

#[tokio::test]
async fn append_conflict_keeps_the_next_position() {
    let mock = Mock::start(|seen| {
        if seen.target.ends_with("position=0") {
            Reply::new(200).header("x-oss-next-append-position", 5).header("x-oss-hash-crc64ecma", checksum(b"hello"))
        } else {
            Reply::new(409)
                .header("x-oss-next-append-position", 5)
                .body(error_doc("PositionNotEqualToLength", "Position is not equal to file length"))
        }
    })
    .await;
    let store = mock.store();
    let opts = PutOptions { forbid_overwrite: true, ..Default::default() };
    let r = store.append_object("bkt", "log", 0, Body::from("hello"), &opts).await.unwrap();
    assert_eq!((r.next_position, r.crc64), (5, Some(checksum(b"hello"))));
    assert_eq!(mock.last().target, "/bkt/log?append&position=0");
    assert_eq!(mock.last().header("x-oss-forbid-overwrite"), Some("true"));

    let e = store.append_object("bkt", "log", 3, Body::from("x"), &opts).await.unwrap_err();
    assert_eq!(e.service_code(), Some("PositionNotEqualToLength"));
    assert_eq!(e.service_error().unwrap().header("x-oss-next-append-position"), Some("5"));
    assert_eq!(mock.last().header("x-oss-forbid-overwrite"), None, "options only on the first append");
}

#[tokio::test]
async fn listings_decode_url_encoded_names() {
    let mock = Mock::start(|_| {
        Reply::new(200).body(
            "<ListBucketResult><Name>bkt</Name><Prefix>dir%2F</Prefix><MaxKeys>2</MaxKeys>\
             <EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextContinuationToken>t%2B1</NextContinuationToken>\
             <Contents><Key>dir/%E4%B8%AD%20x%2By</Key><LastModified>2012-02-24T08:42:32.000Z</LastModified>\
             <ETag>\"E\"</ETag><Type>Appendable</Type><Size>3</Size><StorageClass>IA</StorageClass></Contents>\
             <CommonPrefixes><Prefix>dir/sub%20dir/</Prefix></CommonPrefixes></ListBucketResult>",
        )
    })
    .await;
    let req = ListRequest {
        prefix: Some("dir/".into()),
        delimiter: Some("/".into()),
        max_keys: Some(2),
        ..Default::default()
    };
    let page = mock.store().list_objects("bkt", &req).await.unwrap();
    assert_eq!(page.objects[0].key, "dir/中 x+y");
    assert_eq!(page.objects[0].storage_class, crate::StorageClass::InfrequentAccess);
    assert_eq!(page.objects[0].last_modified, 1330072952);
    assert_eq!(page.common_prefixes, vec!["dir/sub dir/".to_string()]);
    assert_eq!(page.next_continuation_token.as_deref(), Some("t+1"));
    assert!(page.is_truncated);
    assert_eq!(mock.last().target, "/bkt/?list-type=2&prefix=dir%2F&delimiter=%2F&max-keys=2&encoding-type=url");
}

#[tokio::test]
async fn copy_object_directives_and_tagging_round_trip() {
    let mock = Mock::start(|seen| match (seen.method.as_str(), seen.target.contains("tagging")) {
        ("GET", true) => Reply::new(200).body(TagSet::from_pairs([("k4+-=", "+-=._:/")]).unwrap().to_xml()),
        ("PUT", true) => Reply::new(200).header("x-oss-version-id", "v9"),
        _ => Reply::new(200)
            .header("x-oss-hash-crc64ecma", "5")
            .body("<CopyObjectResult><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>\"CE\"</ETag></CopyObjectResult>"),
    })
    .await;
    let store = mock.store();
    let mut opts = CopyOptions::from(ObjectRef::new("src", "a b"));
    opts.tagging = crate::store::Directive::Replace(TagSet::from_pairs([("x", "y z")]).unwrap());
    let out = store.copy_object("bkt", "dst", &opts).await.unwrap();
    assert_eq!((out.etag.as_str(), out.crc64), ("CE", Some(5)));
    let seen = mock.last();
    assert_eq!(seen.header("x-oss-copy-source"), Some("/src/a%20b"));
    assert_eq!(seen.header("x-oss-metadata-directive"), Some("COPY"));
    assert_eq!(seen.header("x-oss-tagging-directive"), Some("Replace"));
    assert_eq!(seen.header("x-oss-tagging"), Some("x=y%20z"));

    let obj = ObjectRef::new("bkt", "dst").at_version("v9");
    let tags = store.get_tagging(&obj).await.unwrap();
    assert_eq!(tags.get("k4+-="), Some("+-=._:/"));
    assert_eq!(mock.last().target, "/bkt/dst?tagging&versionId=v9");
    assert_eq!(store.put_tagging(&obj, &tags).await.unwrap().as_deref(), Some("v9"));
    let seen = mock.last();
    assert_eq!(TagSet::parse_xml(&seen.body).unwrap(), tags);
    assert!(seen.header("content-md5").is_some());
}

#[tokio::test]
async fn symlinks_and_buckets() {
    let mock = Mock::start(|seen| match (seen.method.as_str(), seen.target.as_str()) {
        ("GET", "/bkt/link?symlink") => Reply::new(200).header("x-oss-symlink-target", "dir/%E4%B8%AD%20x%2By"),
        ("GET", "/bkt/?versioning") => {
            Reply::new(200).body("<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>")
        }
        _ => Reply::new(200),
    })
    .await;
    let store = mock.store();
    store.put_symlink("bkt", "link", "dir/中 x+y", &PutOptions::default()).await.unwrap();
    assert_eq!(mock.last().header("x-oss-symlink-target"), Some("dir%2F%E4%B8%AD%20x%2By"));
    let info = store.get_symlink(&ObjectRef::new("bkt", "link")).await.unwrap();
    assert_eq!(info.target, "dir/中 x+y");

    store.create_bucket("bkt").await.unwrap();
    assert_eq!((mock.last().method.as_str(), mock.last().target.as_str()), ("PUT", "/bkt/"));
    store.put_versioning("bkt", true).await.unwrap();
    assert!(String::from_utf8_lossy(&mock.last().body).contains("<Status>Enabled</Status>"));
    assert_eq!(store.get_versioning("bkt").await.unwrap(), Versioning::Suspended);
    store.delete_bucket("bkt").await.unwrap();
    assert_eq!(mock.last().method, "DELETE");
}

#[tokio::test]
async fn connection_refused_is_a_retryable_transport_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let store = HttpStore::oss()
        .endpoint(format!("http://{addr}"))
        .region("cn-hangzhou")
        .credentials(Credentials::new("ak", "sk"))
        .system_proxy(false)
        .build()
        .unwrap();
    let e = store.head_object(&ObjectRef::new("bkt", "k")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert!(e.is_retryable());
}

#[test]
fn builder_defaults_and_debug_hide_secrets() {
    let creds = Credentials::new("ak", "very-secret").with_security_token("tok-secret");
    let local = HttpStore::oss().endpoint("http://127.0.0.1:1").region("r").credentials(creds.clone()).build().unwrap();
    assert!(local.path_style());
    let remote = HttpStore::oss().endpoint("https://oss-cn-hangzhou.aliyuncs.com").credentials(creds.clone()).build();
    let remote = remote.unwrap();
    assert!(!remote.path_style());
    assert_eq!(remote.region(), "cn-hangzhou");
    let dbg = format!("{remote:?}");
    assert!(!dbg.contains("very-secret") && !dbg.contains("tok-secret"), "{dbg}");
    assert!(HttpStore::oss().endpoint("https://example.com").credentials(creds.clone()).build().is_err());
    assert_eq!(region_of("oss-cn-beijing-internal.aliyuncs.com").as_deref(), Some("cn-beijing"));
    assert_eq!(region_of("https://bkt.oss-eu-west-1.aliyuncs.com").as_deref(), Some("eu-west-1"));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_mock_and_the_error_is_permanent() {
    let mock = Mock::start(|_| Reply::new(200)).await;
    let store = HttpStore::oss()
        .endpoint(format!("http://{}", mock.addr))
        .region("cn-hangzhou")
        .credentials(Credentials::new("test-ak", "wrong").with_security_token("test-token"))
        .system_proxy(false)
        .build()
        .unwrap();
    let e = store.delete_object(&ObjectRef::new("bkt", "k")).await.unwrap_err();
    assert_eq!(e.service_code(), Some("SignatureDoesNotMatch"));
    assert!(!e.is_retryable());
    assert!(e.service_error().unwrap().extra("StringToSign").is_some());
}

#[tokio::test]
async fn a_large_in_memory_body_goes_out_whole_with_its_length() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let crc = checksum(&data);
    let mock = Mock::start(move |_| Reply::new(200).header("x-oss-hash-crc64ecma", crc)).await;
    let out = mock
        .store()
        .upload_part(Upload::new("bkt", "k", UploadId::new("U")).part(2), Body::from(data.clone()))
        .await
        .unwrap();
    assert_eq!((out.crc64, out.size), (Some(crc), 300_000));
    let seen = mock.last();
    assert_eq!(seen.header("content-length"), Some("300000"));
    assert_eq!(seen.header("transfer-encoding"), None);
    assert_eq!(seen.body, data);
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_transport_error_after_the_read_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let store = HttpStore::oss()
        .endpoint(format!("http://{addr}"))
        .region("cn-hangzhou")
        .credentials(Credentials::new("ak", "sk"))
        .system_proxy(false)
        .read_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    // A hang guard far above the 300 ms: the error must come from the read timeout, which names itself.
    let obj = ObjectRef::new("bkt", "k");
    let head = store.head_object(&obj);
    let e =
        tokio::time::timeout(Duration::from_secs(30), head).await.expect("the read timeout never fired").unwrap_err();
    hold.abort();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("no progress"), "{e}");
}

#[tokio::test]
async fn virtual_host_requests_to_bucket_dot_localhost_reach_a_local_server() {
    let mock = Mock::start(|seen| {
        let host = seen.header("host").unwrap_or_default().to_owned();
        Reply::new(200).header("x-oss-version-id", host)
    })
    .await;
    let store = HttpStore::oss()
        .endpoint(format!("http://localhost:{}", mock.addr.port()))
        .region("cn-hangzhou")
        .credentials(Credentials::new("test-ak", "test-secret-do-not-print").with_security_token("test-token"))
        .path_style(false)
        .system_proxy(false)
        .build()
        .unwrap();
    let out = store.delete_object(&ObjectRef::new("bkt", "a b")).await.unwrap();
    assert_eq!(out.version_id, Some(format!("bkt.localhost:{}", mock.addr.port())));
    assert_eq!(mock.last().target, "/a%20b");
}

#[tokio::test]
async fn request_time_too_skewed_corrects_the_signing_clock() {
    let server_time = SystemTime::now() + Duration::from_secs(3600);
    let mock = Mock::start(move |seen| {
        let date = seen.header("date").and_then(|d| httpdate::parse_http_date(d).ok()).unwrap();
        let off = server_time.duration_since(date).map(|d| d.as_secs()).unwrap_or(0);
        if off > 60 {
            Reply::new(403).header("date", httpdate::fmt_http_date(server_time)).body(error_doc(
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
            ))
        } else {
            Reply::new(204)
        }
    })
    .await;
    let store = mock.store();
    let e = store.delete_object(&ObjectRef::new("bkt", "k")).await.unwrap_err();
    assert_eq!(e.service_code(), Some("RequestTimeTooSkewed"));
    assert!(e.is_retryable());
    store.delete_object(&ObjectRef::new("bkt", "k")).await.unwrap();
}

#[tokio::test]
async fn delete_objects_sends_one_request_and_answers_each_object_in_place() {
    let answer = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult><EncodingType>url</EncodingType>\
        <Deleted><Key>a%20b</Key></Deleted>\
        <Deleted><Key>v</Key><VersionId>V1</VersionId><DeleteMarker>true</DeleteMarker>\
        <DeleteMarkerVersionId>M1</DeleteMarkerVersionId></Deleted>\
        <Error><Key>denied</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>\
        </DeleteResult>";
    let mock = Mock::start(move |_| Reply::new(200).body(answer)).await;
    let objs = [
        ObjectRef::new("bkt", "a b"),
        ObjectRef::new("bkt", "v").at_version("V1"),
        ObjectRef::new("bkt", "denied"),
        ObjectRef::new("bkt", "quietly-gone"),
        ObjectRef::new("other", "x"),
    ];
    let results = mock.store().delete_objects("bkt", &objs).await.unwrap();
    assert_eq!(mock.seen().len(), 1, "one request for the batch");
    let sent = mock.last();
    assert_eq!((sent.method.as_str(), sent.target.as_str()), ("POST", "/bkt/?delete"));
    assert!(sent.header("content-md5").is_some(), "DeleteMultipleObjects requires Content-MD5");
    let body = String::from_utf8(sent.body.to_vec()).unwrap();
    assert!(body.contains("<Key>a b</Key>") && body.contains("<VersionId>V1</VersionId>"), "{body}");
    assert!(!body.contains("<Key>x</Key>"), "the other bucket's object is not sent: {body}");
    assert_eq!(results[0].as_ref().unwrap(), &DeleteResult::default());
    assert_eq!(results[1].as_ref().unwrap(), &DeleteResult { version_id: Some("M1".into()), delete_marker: true });
    let denied = results[2].as_ref().unwrap_err();
    assert_eq!((denied.kind(), denied.service_code()), (ErrorKind::AccessDenied, Some("AccessDenied")));
    assert!(results[3].is_ok(), "a quiet answer omits what was deleted");
    assert_eq!(results[4].as_ref().unwrap_err().kind(), ErrorKind::InvalidInput);
}
