//! The public AWS SigV4 vectors: the AWS Signature Version 4 test suite (credentials `AKIDEXAMPLE`, service
//! `service`, 2015-08-30T12:36:00Z) and the S3 examples of the S3 API reference ("Signature Calculations for
//! the Authorization Header" and "for Query String Parameters", 2013-05-24). Expected values are copied from
//! those documents, never computed here.

use super::*;
use std::time::UNIX_EPOCH;

const SUITE_AK: &str = "AKIDEXAMPLE";
const SUITE_SK: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const S3_AK: &str = "AKIAIOSFODNN7EXAMPLE";
const S3_SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn map(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, http::HeaderValue::from_str(v).unwrap());
    }
    h
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Signs one test-suite request (service `service`) and returns (canonical request, string to sign, authorization).
fn suite(
    method: &str,
    uri: &str,
    query: &[(&str, &str)],
    extra: &[(&'static str, &str)],
    body: &[u8],
) -> (String, String, String) {
    let mut pairs = vec![("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")];
    pairs.extend_from_slice(extra);
    let h = map(&pairs);
    let query = q(query);
    let t = S3Target { method, uri, query: &query };
    let signed = header_names(&h);
    let payload = sigv4::sha256_hex(body);
    let cr = canonical_request(&t, &h, &signed, &payload);
    let sts = Scheme::AWS.string_to_sign("20150830T123600Z", &scope("20150830", "us-east-1", "service"), &cr);
    let auth =
        authorization_with(&Credentials::new(SUITE_AK, SUITE_SK), &t, &h, &signed, &payload, "us-east-1", "service");
    (cr, sts, auth)
}

#[test]
fn suite_get_vanilla() {
    let (cr, sts, auth) = suite("GET", "/", &[], &[], b"");
    assert_eq!(cr, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sts, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
    assert_eq!(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

#[test]
fn suite_get_vanilla_query_order_key_case() {
    let (cr, sts, auth) = suite("GET", "/", &[("Param2", "value2"), ("Param1", "value1")], &[], b"");
    assert_eq!(cr, "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sts, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0");
    assert_eq!(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

#[test]
fn suite_post_x_www_form_urlencoded() {
    let (cr, sts, auth) =
        suite("POST", "/", &[], &[("content-type", "application/x-www-form-urlencoded")], b"Param1=value1");
    assert_eq!(cr, "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
    assert_eq!(sts, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281");
    assert_eq!(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
}

#[test]
fn suite_get_header_value_trim() {
    let (cr, _, auth) = suite("GET", "/", &[], &[("my-header1", " value1"), ("my-header2", "\"a   b   c\"")], b"");
    assert!(cr.contains("\nmy-header1:value1\nmy-header2:\"a b c\"\n"), "{cr}");
    assert_eq!(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
}

#[test]
fn suite_get_utf8_path_is_encoded_once() {
    let uri = crate::util::pct_encode_path("/\u{1234}");
    let (cr, sts, auth) = suite("GET", &uri, &[], &[], b"");
    assert_eq!(cr, "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sts, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102");
    assert_eq!(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
}

/// 2013-05-24T00:00:00Z, the time of the S3 examples.
fn may_2013() -> SystemTime {
    parse_amz_date("20130524T000000Z").unwrap()
}

/// Signs an S3 example with [`S3Signer`] (virtual-hosted on `examplebucket.s3.amazonaws.com`).
fn s3_example(
    method: &str,
    uri: &str,
    query: &[(&str, &str)],
    extra: &[(&'static str, &str)],
    payload: &str,
) -> String {
    let mut h = map(&[("host", "examplebucket.s3.amazonaws.com")]);
    for (k, v) in extra {
        h.append(*k, http::HeaderValue::from_str(v).unwrap());
    }
    let query = q(query);
    let t = S3Target { method, uri, query: &query };
    S3Signer::new("us-east-1").sign(&Credentials::new(S3_AK, S3_SK), &t, &mut h, payload, may_2013());
    assert_eq!(h.get("x-amz-date").unwrap(), "20130524T000000Z");
    h.get("authorization").unwrap().to_str().unwrap().to_owned()
}

#[test]
fn s3_get_object_with_range() {
    let auth = s3_example("GET", "/test.txt", &[], &[("range", "bytes=0-9")], EMPTY_SHA256);
    assert_eq!(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    // The string to sign of the example ends with the hash of its canonical request.
    let h = map(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", "20130524T000000Z"),
    ]);
    let t = S3Target { method: "GET", uri: "/test.txt", query: &[] };
    let cr = canonical_request(&t, &h, &header_names(&h), EMPTY_SHA256);
    assert_eq!(sigv4::sha256_hex(cr.as_bytes()), "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
}

#[test]
fn s3_put_object_with_a_signed_payload() {
    let body_hash = sigv4::sha256_hex(b"Welcome to Amazon S3.");
    assert_eq!(body_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    let uri = format!("/{}", crate::util::pct_encode_path("test$file.text"));
    let extra = [("date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")];
    let auth = s3_example("PUT", &uri, &[], &extra, &body_hash);
    assert_eq!(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

#[test]
fn s3_get_bucket_lifecycle_signs_an_empty_value_with_equals() {
    let auth = s3_example("GET", "/", &[("lifecycle", "")], &[], EMPTY_SHA256);
    assert!(auth.ends_with("SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"), "{auth}");
}

#[test]
fn s3_list_objects() {
    let auth = s3_example("GET", "/", &[("prefix", "J"), ("max-keys", "2")], &[], EMPTY_SHA256);
    assert!(auth.ends_with("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"), "{auth}");
}

#[test]
fn s3_presigned_get_object() {
    let h = map(&[("host", "examplebucket.s3.amazonaws.com")]);
    let t = S3Target { method: "GET", uri: "/test.txt", query: &[] };
    let p = S3Signer::new("us-east-1").presign(
        &Credentials::new(S3_AK, S3_SK),
        &t,
        &h,
        may_2013(),
        Duration::from_secs(86400),
    );
    let names: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature"
        ]
    );
    assert_eq!(p[1].1, "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request");
    assert_eq!(p[4].1, "host");
    assert_eq!(p[5].1, "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}

// --- the verifier ------------------------------------------------------------------------------------------

fn lookup(ak: &str) -> Option<Credentials> {
    match ak {
        "ak" => Some(Credentials::new("ak", "sk")),
        "sts" => Some(Credentials::new("sts", "sk2").with_security_token("tok")),
        _ => None,
    }
}

fn signed(creds: &Credentials, at: SystemTime) -> (Vec<(String, String)>, http::HeaderMap) {
    let query = q(&[("uploadId", "U1"), ("partNumber", "3")]);
    let mut h =
        map(&[("host", "127.0.0.1:9000"), ("content-type", "application/octet-stream"), ("x-amz-meta-a", "b  c")]);
    let t = S3Target { method: "PUT", uri: "/bkt/dir/a%20b%2Bc", query: &query };
    S3Signer::new("us-east-1").sign(creds, &t, &mut h, UNSIGNED_PAYLOAD, at);
    (query, h)
}

fn target(query: &[(String, String)]) -> S3Target<'_> {
    S3Target { method: "PUT", uri: "/bkt/dir/a%20b%2Bc", query }
}

#[test]
fn signer_and_verifier_agree() {
    let now = SystemTime::now();
    let (q, h) = signed(&Credentials::new("ak", "sk"), now);
    assert!(is_signed_with_sigv4(&h, &q));
    let v = verify(&target(&q), &h, &lookup, now).unwrap();
    assert_eq!(
        (v.access_key_id.as_str(), v.region.as_str(), v.payload_hash.as_str()),
        ("ak", "us-east-1", UNSIGNED_PAYLOAD)
    );
    let (q, h) = signed(&Credentials::new("sts", "sk2").with_security_token("tok"), now);
    verify(&target(&q), &h, &lookup, now).unwrap();
}

#[test]
fn the_verifier_refuses_with_s3_errors() {
    let now = SystemTime::now();
    let code = |q: &[(String, String)], h: &http::HeaderMap, at| {
        verify(&target(q), h, &lookup, at).unwrap_err().service_code().map(str::to_owned)
    };

    let (q, h) = signed(&Credentials::new("ak", "wrong"), now);
    let e = verify(&target(&q), &h, &lookup, now).unwrap_err();
    assert_eq!((e.status(), e.service_code()), (Some(403), Some("SignatureDoesNotMatch")));
    assert!(e.service_error().unwrap().extra("CanonicalRequest").unwrap().contains("/bkt/dir/a%20b%2Bc"));

    let (q, mut h) = signed(&Credentials::new("ak", "sk"), now);
    h.insert("x-amz-meta-a", "tampered".parse().unwrap());
    assert_eq!(code(&q, &h, now).as_deref(), Some("SignatureDoesNotMatch"));
    let (q, h) = signed(&Credentials::new("ak", "sk"), now);
    let other = S3Target { uri: "/bkt/dir/other", ..target(&q) };
    assert_eq!(verify(&other, &h, &lookup, now).unwrap_err().service_code(), Some("SignatureDoesNotMatch"));

    let (q, h) = signed(&Credentials::new("nobody", "sk"), now);
    assert_eq!(code(&q, &h, now).as_deref(), Some("InvalidAccessKeyId"));
    let (q, h) = signed(&Credentials::new("sts", "sk2"), now);
    assert_eq!(code(&q, &h, now).as_deref(), Some("InvalidToken"));
    let (q, h) = signed(&Credentials::new("ak", "sk"), now - Duration::from_secs(16 * 60));
    assert_eq!(code(&q, &h, now).as_deref(), Some("RequestTimeTooSkewed"));
    let (q, mut h) = signed(&Credentials::new("ak", "sk"), now);
    h.remove("x-amz-content-sha256");
    assert_eq!(code(&q, &h, now).as_deref(), Some("InvalidRequest"));
    let e = verify(&target(&[]), &http::HeaderMap::new(), &lookup, now).unwrap_err();
    assert_eq!((e.status(), e.service_code()), (Some(403), Some("AccessDenied")));
    let h = map(&[("authorization", "AWS4-HMAC-SHA256 Credential=ak/2013/us-east-1/s3/aws4_request")]);
    assert_eq!(code(&[], &h, now).as_deref(), Some("AuthorizationHeaderMalformed"));
}

#[test]
fn presigned_urls_verify_and_expire() {
    let now = SystemTime::now();
    let base = q(&[("versionId", "v1")]);
    let h = map(&[("host", "bkt.localhost:9000")]);
    let t = S3Target { method: "GET", uri: "/k", query: &base };
    let mut full = base.clone();
    full.extend(S3Signer::new("eu-west-1").presign(
        &Credentials::new("ak", "sk"),
        &t,
        &h,
        now,
        Duration::from_secs(60),
    ));
    assert!(is_signed_with_sigv4(&http::HeaderMap::new(), &full));
    let tq = S3Target { query: &full, ..t };
    assert_eq!(verify(&tq, &h, &lookup, now).unwrap().region, "eu-west-1");
    let e = verify(&tq, &h, &lookup, now + Duration::from_secs(120)).unwrap_err();
    assert_eq!(e.service_code(), Some("AccessDenied"));
    assert!(e.message().contains("expired"));
    let tampered = S3Target { method: "DELETE", ..tq };
    assert_eq!(verify(&tampered, &h, &lookup, now).unwrap_err().service_code(), Some("SignatureDoesNotMatch"));
    assert!(UNIX_EPOCH < now);
}

#[test]
fn presigned_urls_are_valid_for_at_most_a_week() {
    let now = SystemTime::now();
    let h = map(&[("host", "127.0.0.1:9000")]);
    let t = S3Target { method: "GET", uri: "/bkt/k", query: &[] };
    let p =
        S3Signer::new("us-east-1").presign(&Credentials::new("ak", "sk"), &t, &h, now, Duration::from_secs(604_800));
    assert!(verify(&S3Target { query: &p, ..t }, &h, &lookup, now).is_ok());
    for (value, message) in [
        ("691200", "X-Amz-Expires must be less than a week (in seconds) that is 604800"),
        ("-1", "X-Amz-Expires must be non-negative"),
        ("soon", "X-Amz-Expires should be a number"),
    ] {
        let q: Vec<(String, String)> = p
            .iter()
            .map(|(k, v)| (k.clone(), if k == "X-Amz-Expires" { value.to_owned() } else { v.clone() }))
            .collect();
        let e = verify(&S3Target { query: &q, ..t }, &h, &lookup, now).unwrap_err();
        assert_eq!((e.status(), e.service_code()), (Some(400), Some("AuthorizationQueryParametersError")), "{value}");
        assert_eq!(e.message(), message);
    }
}
