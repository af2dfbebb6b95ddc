//! What the server takes and refuses at the edge of a request: chunked bodies, presigned URLs' lifetimes, and
//! DeleteMultipleObjects' Content-MD5 and size, in both dialects.

mod common;

use common::{body_of, chunked, code_of, Call, TestServer, AK, SK};
use http::Method;
use std::time::{Duration, SystemTime};
use transfer_engine::sign::s3::{S3Signer, S3Target, UNSIGNED_PAYLOAD};
use transfer_engine::sign::sigv4::sha256_hex;
use transfer_engine::sign::{Credentials, SignTarget, SignatureVersion, Signer};
use transfer_engine::util::{content_md5, pct_encode};

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A chunked request: `head` (without its blank line's successor) plus `parts` as chunks.
fn with_chunks(mut head: Vec<u8>, parts: &[&[u8]]) -> Vec<u8> {
    head.extend_from_slice(&chunked(parts));
    head
}

async fn get(s: &TestServer, key: &str) -> Vec<u8> {
    let r = s.send(Call::new(Method::GET, Some("bkt"), Some(key))).await;
    assert_eq!(r.status(), 200, "GET {key}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn chunked_bodies_are_taken_by_put_upload_part_and_append() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    let te = [("transfer-encoding", "chunked")];

    // PutObject: an empty chunked body, then one of several chunks.
    let (status, resp) = s.raw(&with_chunks(s.raw_head("PUT", "bkt", Some("empty"), &[], &te), &[])).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(get(&s, "empty").await, b"");
    let parts: [&[u8]; 3] = [b"first chunk, ", &[b'x'; 70_000], b" and the end"];
    let whole = parts.concat();
    let (status, resp) = s.raw(&with_chunks(s.raw_head("PUT", "bkt", Some("streamed"), &[], &te), &parts)).await;
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains(&format!("x-oss-hash-crc64ecma: {}", transfer_engine::crc64::checksum(&whole))), "{resp}");
    assert_eq!(get(&s, "streamed").await, whole);

    // A chunked body still has to match its Content-MD5: refused, nothing kept.
    let md5 = content_md5(b"something else");
    let head = s.raw_head("PUT", "bkt", Some("checked"), &[], &[te[0], ("content-md5", &md5)]);
    let (status, resp) = s.raw(&with_chunks(head, &[b"abc", b"def"])).await;
    assert_eq!((status, code_of(body_of(&resp)).as_str()), (400, "InvalidDigest"), "{resp}");
    assert_eq!(s.send(Call::new(Method::HEAD, Some("bkt"), Some("checked"))).await.status(), 404);

    // UploadPart: two chunked parts (the first at the 100 KiB minimum), completed, read back whole.
    let r = s.send(Call::new(Method::POST, Some("bkt"), Some("mp")).q("uploads", "")).await;
    let body = r.text().await.unwrap();
    let upload_id = body.split("<UploadId>").nth(1).and_then(|s| s.split('<').next()).unwrap().to_owned();
    let part1 = vec![b'p'; 100 * 1024];
    let part2 = b"the last part".to_vec();
    let mut etags = Vec::new();
    for (n, data) in [(1, &part1), (2, &part2)] {
        let query = q(&[("partNumber", &n.to_string()), ("uploadId", &upload_id)]);
        let head = s.raw_head("PUT", "bkt", Some("mp"), &query, &te);
        let (half_a, half_b) = data.split_at(data.len() / 2);
        let (status, resp) = s.raw(&with_chunks(head, &[half_a, half_b])).await;
        assert_eq!(status, 200, "part {n}: {resp}");
        let etag = resp.lines().find_map(|l| l.strip_prefix("etag: ")).unwrap().trim().to_owned();
        etags.push(etag);
    }
    let doc = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part><Part><PartNumber>2</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
        etags[0], etags[1]
    );
    let r = s.send(Call::new(Method::POST, Some("bkt"), Some("mp")).q("uploadId", &upload_id).body(doc)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(get(&s, "mp").await, [part1, part2].concat());

    // AppendObject: a chunked first append, then a chunked second one at the returned position.
    let head = s.raw_head("POST", "bkt", Some("log"), &q(&[("append", ""), ("position", "0")]), &te);
    let (status, resp) = s.raw(&with_chunks(head, &[b"line 1\n", b"line 2\n"])).await;
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains("x-oss-next-append-position: 14"), "{resp}");
    let head = s.raw_head("POST", "bkt", Some("log"), &q(&[("append", ""), ("position", "14")]), &te);
    let (status, resp) = s.raw(&with_chunks(head, &[b"line 3\n"])).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(get(&s, "log").await, b"line 1\nline 2\nline 3\n");

    // Neither Content-LENGTH nor chunked: still 411.
    let (status, resp) = s.raw(&s.raw_head("PUT", "bkt", Some("nolength"), &[], &[])).await;
    assert_eq!((status, code_of(body_of(&resp)).as_str()), (411, "MissingContentLength"), "{resp}");
    s.stop().await;
}

/// The head of a raw S3 request signed with SigV4 for `payload_hash`, with `extra` headers.
fn s3_head(
    s: &TestServer,
    method: &str,
    path: &str,
    query: &[(String, String)],
    payload_hash: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut h = http::HeaderMap::new();
    h.insert("host", s.addr.to_string().parse().unwrap());
    for (k, v) in extra {
        h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let target = S3Target { method, uri: path, query };
    S3Signer::new("us-east-1").sign(&Credentials::new(AK, SK), &target, &mut h, payload_hash, SystemTime::now());
    let mut uri = path.to_owned();
    if !query.is_empty() {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| if v.is_empty() { pct_encode(k) } else { format!("{}={}", pct_encode(k), pct_encode(v)) })
            .collect();
        uri = format!("{uri}?{}", q.join("&"));
    }
    let mut head = format!("{method} {uri} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in &h {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[tokio::test]
async fn s3_chunked_bodies_are_checked_against_the_signed_sha256() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    let te = [("transfer-encoding", "chunked")];
    let parts: [&[u8]; 2] = [b"signed ", b"bytes"];
    let whole = parts.concat();
    let head = s3_head(&s, "PUT", "/bkt/signed", &[], &sha256_hex(&whole), &te);
    let (status, resp) = s.raw(&with_chunks(head, &parts)).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(get(&s, "signed").await, whole);
    let head = s3_head(&s, "PUT", "/bkt/tampered", &[], &sha256_hex(b"other bytes"), &te);
    let (status, resp) = s.raw(&with_chunks(head, &parts)).await;
    assert_eq!((status, code_of(body_of(&resp)).as_str()), (400, "XAmzContentSHA256Mismatch"), "{resp}");
    assert_eq!(s.send(Call::new(Method::HEAD, Some("bkt"), Some("tampered"))).await.status(), 404);
    let head = s3_head(&s, "PUT", "/bkt/empty", &[], UNSIGNED_PAYLOAD, &te);
    let (status, resp) = s.raw(&with_chunks(head, &[])).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(get(&s, "empty").await, b"");
    s.stop().await;
}

fn query_string(params: &[(String, String)]) -> String {
    params.iter().map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v))).collect::<Vec<_>>().join("&")
}

#[tokio::test]
async fn presigned_v4_urls_live_at_most_seven_days_in_both_dialects() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    s.put("bkt", "shared", b"presigned").await;
    let week = Duration::from_secs(604_800);
    let eight_days = Duration::from_secs(8 * 24 * 3600);

    // OSS V4: seven days is the limit; eight days is refused before the signature is looked at.
    let signer = Signer::new(SignatureVersion::V4, "cn-hangzhou");
    let t = SignTarget { method: "GET", bucket: Some("bkt"), key: Some("shared"), query: &[] };
    let url = |params: &[(String, String)]| format!("http://{}/bkt/shared?{}", s.addr, query_string(params));
    let ok = signer.presign(&s.creds, &t, &http::HeaderMap::new(), SystemTime::now(), week);
    let r = s.client.get(url(&ok)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"presigned");
    // Our presigner makes a week of eight days; a URL made elsewhere may claim them.
    let capped = signer.presign(&s.creds, &t, &http::HeaderMap::new(), SystemTime::now(), eight_days);
    assert!(capped.iter().any(|(k, v)| k == "x-oss-expires" && v == "604800"), "{capped:?}");
    let long: Vec<(String, String)> = ok
        .iter()
        .map(|(k, v)| (k.clone(), if k == "x-oss-expires" { "691200".to_owned() } else { v.clone() }))
        .collect();
    let r = s.client.get(url(&long)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers().get("x-oss-ec").map(|v| v.to_str().unwrap()), Some("0002-00000232"));
    let body = r.text().await.unwrap();
    assert_eq!(code_of(&body), "AccessDenied", "{body}");
    assert!(body.contains("x-oss-expires must be from 1 to 604800 seconds"), "{body}");

    // S3: X-Amz-Expires over a week is S3's AuthorizationQueryParametersError, in S3's words.
    let host = http::HeaderMap::from_iter([(http::header::HOST, s.addr.to_string().parse().unwrap())]);
    let st = S3Target { method: "GET", uri: "/bkt/shared", query: &[] };
    let ok = S3Signer::new("us-east-1").presign(&s.creds, &st, &host, SystemTime::now(), week);
    let r = s.client.get(url(&ok)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let long: Vec<(String, String)> = ok
        .iter()
        .map(|(k, v)| (k.clone(), if k == "X-Amz-Expires" { "691200".to_owned() } else { v.clone() }))
        .collect();
    let r = s.client.get(url(&long)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert_eq!(code_of(&body), "AuthorizationQueryParametersError", "{body}");
    assert!(body.contains("X-Amz-Expires must be less than a week (in seconds) that is 604800"), "{body}");
    s.stop().await;
}

fn delete_doc(keys: impl IntoIterator<Item = String>) -> String {
    let objects: String = keys.into_iter().map(|k| format!("<Object><Key>{k}</Key></Object>")).collect();
    format!("<Delete><Quiet>true</Quiet>{objects}</Delete>")
}

#[tokio::test]
async fn delete_multiple_needs_content_md5_and_at_most_1000_keys() {
    let s = TestServer::start().await;
    s.create_bucket("bkt").await;
    s.put("bkt", "k0", b"0").await;
    let delete = |doc: String, md5: bool| {
        let mut call = Call::new(Method::POST, Some("bkt"), None).q("delete", "");
        if md5 {
            call = call.h("content-md5", &content_md5(doc.as_bytes()));
        }
        s.send(call.body(doc))
    };

    // No Content-MD5: OSS's refusal (EC 0016-00000606), and nothing deleted.
    let r = delete(delete_doc(["k0".to_owned()]), false).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers().get("x-oss-ec").map(|v| v.to_str().unwrap()), Some("0016-00000606"));
    let body = r.text().await.unwrap();
    assert_eq!(code_of(&body), "InvalidRequest", "{body}");
    assert!(body.contains("Content-MD5"), "{body}");
    assert_eq!(s.send(Call::new(Method::HEAD, Some("bkt"), Some("k0"))).await.status(), 200);

    // 1,001 keys: MalformedXML, saying how many are allowed; nothing deleted.
    let r = delete(delete_doc((0..1001).map(|i| format!("k{i}"))), true).await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert_eq!(code_of(&body), "MalformedXML", "{body}");
    assert!(body.contains("1001") && body.contains("at most 1000"), "{body}");
    assert_eq!(s.send(Call::new(Method::HEAD, Some("bkt"), Some("k0"))).await.status(), 200);

    // 1,000 keys with Content-MD5: deleted.
    let r = delete(delete_doc((0..1000).map(|i| format!("k{i}"))), true).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(s.send(Call::new(Method::HEAD, Some("bkt"), Some("k0"))).await.status(), 404);

    // S3: Content-MD5 or an x-amz-checksum-* header.
    s.put("bkt", "s3k", b"s").await;
    let doc = delete_doc(["s3k".to_owned()]);
    let query = q(&[("delete", "")]);
    let cl = doc.len().to_string();
    let server = &s;
    let send_s3 = |extra: Vec<(&'static str, String)>| {
        let mut headers: Vec<(&str, &str)> = vec![("content-length", &cl)];
        headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let mut req = s3_head(server, "POST", "/bkt/", &query, &sha256_hex(doc.as_bytes()), &headers);
        req.extend_from_slice(doc.as_bytes());
        async move { server.raw(&req).await }
    };
    let (status, resp) = send_s3(vec![]).await;
    assert_eq!((status, code_of(body_of(&resp)).as_str()), (400, "InvalidRequest"), "{resp}");
    assert!(resp.contains("Content-MD5 OR x-amz-checksum-*") && !resp.contains("x-oss-ec"), "{resp}");
    assert_eq!(s.send(Call::new(Method::HEAD, Some("bkt"), Some("s3k"))).await.status(), 200);
    let crc = transfer_engine::store::Checksum::crc32c(doc.as_bytes()).value();
    let (status, resp) = send_s3(vec![("x-amz-checksum-crc32c", crc)]).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(s.send(Call::new(Method::HEAD, Some("bkt"), Some("s3k"))).await.status(), 404);
    s.put("bkt", "s3k", b"s").await;
    let (status, resp) = send_s3(vec![("content-md5", content_md5(doc.as_bytes()))]).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(s.send(Call::new(Method::HEAD, Some("bkt"), Some("s3k"))).await.status(), 404);
    s.stop().await;
}
