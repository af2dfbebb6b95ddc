//! What only a wire can show: writes that refuse to overwrite, signatures, and bodies damaged on the way.

use super::{read, Dialect, Target};
use crate::util::data;
use crate::util::fault::{Fault, FaultProxy, Rule};
use transfer_engine::sign::Credentials;
use transfer_engine::store::{CompleteOptions, CompletedPart, CopyConditions, CopyOptions, PutOptions};
use transfer_engine::ErrorKind;

pub async fn forbid_overwrite(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("no-clobber").await;
    let obj = scope.obj("k");
    let forbid = PutOptions::default().forbid_overwrite(true);
    // A new key is written.
    s.put_object(&obj.bucket, &obj.key, b"first".to_vec().into(), &forbid).await.unwrap();
    // An existing one is refused in the dialect's words: OSS's 409 FileAlreadyExists, S3's 412
    // PreconditionFailed (If-None-Match: *). Permanent either way.
    let (status, code) = exists_error(t);
    let e = s.put_object(&obj.bucket, &obj.key, b"second".to_vec().into(), &forbid).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(status), Some(code), false), "{e}");
    // Whatever the dialect's words, the kind is the same: the destination exists.
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(read(s, &obj).await, b"first");

    // CompleteMultipartUpload too.
    let id = s.initiate_multipart(&obj.bucket, &obj.key, &PutOptions::default()).await.unwrap();
    let r = s.upload_part(id.part(1), b"third".to_vec().into()).await.unwrap();
    let parts = [CompletedPart::from(&r)];
    let e = s.complete_multipart(&id, &parts, &CompleteOptions::default().forbid_overwrite(true)).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(status), Some(code), false), "{e}");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(read(s, &obj).await, b"first");
    s.abort_multipart(&id).await.unwrap();
}

/// The error a write that must not overwrite meets when the key exists, in the target's dialect.
fn exists_error(t: &Target) -> (u16, &'static str) {
    match t.wire.as_ref().map(|w| w.dialect) {
        None | Some(Dialect::Oss) => (409, "FileAlreadyExists"),
        Some(Dialect::S3) => (412, "PreconditionFailed"),
    }
}

pub async fn forbid_overwrite_on_copy(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("no-clobber-copy").await;
    s.put_object(&scope.bucket, &scope.key("src"), b"source".to_vec().into(), &PutOptions::default()).await.unwrap();
    let mut copy = CopyOptions::from(scope.obj("src"));
    copy.forbid_overwrite = true;
    s.copy_object(&scope.bucket, &scope.key("dst"), &copy).await.unwrap();
    assert_eq!(read(s, &scope.obj("dst")).await, b"source");
    s.put_object(&scope.bucket, &scope.key("src"), b"changed".to_vec().into(), &PutOptions::default()).await.unwrap();
    let e = s.copy_object(&scope.bucket, &scope.key("dst"), &copy).await.unwrap_err();
    let (status, code) = exists_error(t);
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(status), Some(code), false), "{e}");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(read(s, &scope.obj("dst")).await, b"source");

    // Pinned to the source's ETag and forbidden to overwrite: S3 answers 412 for either, and the kind still
    // says which. The destination exists (the source is current): AlreadyExists.
    let current = s.head_object(&scope.obj("src")).await.unwrap().etag;
    copy.conditions = CopyConditions::default().if_match(Some(current));
    let e = s.copy_object(&scope.bucket, &scope.key("dst"), &copy).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // The source changed (a stale pin) and the destination is new: PreconditionFailed, nothing written.
    copy.conditions = CopyConditions::default().if_match(Some("0123456789abcdef0123456789abcdef".into()));
    let e = s.copy_object(&scope.bucket, &scope.key("new"), &copy).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert_eq!(s.head_object(&scope.obj("new")).await.unwrap_err().kind(), ErrorKind::ObjectNotFound);
}

pub async fn signatures_are_checked(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("signed").await;
    let obj = scope.obj("k");
    s.put_object(&obj.bucket, &obj.key, b"x".to_vec().into(), &PutOptions::default()).await.unwrap();
    let wire = t.wire.as_ref().unwrap();
    let id = wire.credentials.access_key_id().to_owned();

    let wrong = t.client_with(Credentials::new(&id, "wrong-secret"));
    let e = wrong.get_object(&obj, None).await.unwrap_err();
    assert_eq!(
        (e.status(), e.service_code(), e.is_retryable()),
        (Some(403), Some("SignatureDoesNotMatch"), false),
        "{e}"
    );
    let e =
        wrong.put_object(&obj.bucket, &obj.key, b"forged".to_vec().into(), &PutOptions::default()).await.unwrap_err();
    assert_eq!((e.status(), e.service_code()), (Some(403), Some("SignatureDoesNotMatch")), "{e}");
    // A HEAD answer has no body to say why (S3), or says it in a header (OSS): the status is always there.
    let e = wrong.head_object(&obj).await.unwrap_err();
    assert_eq!((e.status(), e.is_retryable()), (Some(403), false), "{e}");

    // An unknown key: 403, permanent (S3 and OSS say InvalidAccessKeyId; s3s-fs says NotSignedUp).
    let unknown = t.client_with(Credentials::new("no-such-access-key", "whatever"));
    let e = unknown.get_object(&obj, None).await.unwrap_err();
    assert_eq!((e.status(), e.is_retryable()), (Some(403), false), "{e}");
    // Nothing forged arrived.
    assert_eq!(read(s, &obj).await, b"x");
}

pub async fn corrupted_bodies_are_refused(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("digests").await;
    let wire = t.wire.as_ref().unwrap();
    // Flips a byte of the first PUT's body on its way: the signature does not cover it (an unsigned payload
    // above 64 KiB), only Content-MD5 does.
    let proxy = FaultProxy::start(
        &wire.endpoint,
        vec![Rule { method: Some("PUT"), contains: "/damaged", fault: Fault::CorruptRequest, times: 1 }],
    )
    .await;
    let via = t.client_at(&proxy.endpoint, wire.credentials.clone());
    let obj = scope.obj("damaged");
    let body = data(200 * 1024, 4);
    let opts = PutOptions::default().content_md5(true);
    let e = via.put_object(&obj.bucket, &obj.key, body.clone().into(), &opts).await.unwrap_err();
    let code = match wire.dialect {
        Dialect::Oss => "InvalidDigest",
        Dialect::S3 => "BadDigest",
    };
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(400), Some(code), true), "{e}");
    assert_eq!(proxy.injected(), 1);
    // The retry the classification invites goes through.
    via.put_object(&obj.bucket, &obj.key, body.clone().into(), &opts).await.unwrap();
    assert_eq!(read(s, &obj).await, body);
}

pub async fn damaged_bodies_fail_with_the_default_protection(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("default-digests").await;
    let wire = t.wire.as_ref().unwrap();
    // The client's default options, no Content-MD5: OSS catches a damaged body by the CRC-64 the server reports
    // of what it received, S3 by the x-amz-checksum-crc32c the server checks (declared on the upload for
    // parts). Either way the call fails, retryably, and the retry lands the right bytes.
    let proxy = FaultProxy::start(
        &wire.endpoint,
        vec![
            Rule { method: Some("PUT"), contains: "/whole", fault: Fault::CorruptRequest, times: 1 },
            Rule { method: Some("PUT"), contains: "partNumber=1&", fault: Fault::CorruptRequest, times: 1 },
        ],
    )
    .await;
    let via = t.client_at(&proxy.endpoint, wire.credentials.clone());
    let caught = |e: &transfer_engine::Error| {
        let by_dialect = match wire.dialect {
            Dialect::Oss => e.kind() == ErrorKind::Integrity,
            Dialect::S3 => (e.status(), e.service_code()) == (Some(400), Some("BadDigest")),
        };
        by_dialect && e.is_retryable()
    };
    let body = data(200 * 1024, 5);
    let obj = scope.obj("whole");
    let e = via.put_object(&obj.bucket, &obj.key, body.clone().into(), &PutOptions::default()).await.unwrap_err();
    assert!(caught(&e), "{e}");
    via.put_object(&obj.bucket, &obj.key, body.clone().into(), &PutOptions::default()).await.unwrap();
    assert_eq!(read(s, &obj).await, body);

    let mp = scope.obj("parts");
    let id = via.initiate_multipart(&mp.bucket, &mp.key, &PutOptions::default()).await.unwrap();
    let e = via.upload_part(id.part(1), body.clone().into()).await.unwrap_err();
    assert!(caught(&e), "{e}");
    assert_eq!(proxy.injected(), 2);
    let r = via.upload_part(id.part(1), body.clone().into()).await.unwrap();
    if wire.dialect == Dialect::S3 {
        assert!(r.checksum.is_some(), "the receipt keeps the part's CRC-32C for Complete");
    }
    via.complete_multipart(&id, &[CompletedPart::from(&r)], &CompleteOptions::default()).await.unwrap();
    assert_eq!(read(s, &mp).await, body);
}
