//! Server faults injected between our client and `transfer serve` by the test proxy: resets, 500 and 503
//! answers, a 200 with an error body, a slow answer and a cut body. Each request, retried on its own as the
//! error classification says, completes with the right bytes.

use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::{bucket, client_for, data, Served, AK, SK};
use std::time::Duration;
use transfer_engine::run::RetryPolicy;
use transfer_engine::sign::{Credentials, SignatureVersion::V4};
use transfer_engine::store::{Body, CompleteOptions, CompletedPart, PutOptions};
use transfer_engine::MultipartStore;
use transfer_engine::{ObjectRef, ObjectStore};

fn quick() -> RetryPolicy {
    RetryPolicy::default().base_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(20))
}

fn rule(method: &'static str, contains: &'static str, fault: Fault, times: usize) -> Rule {
    Rule { method: Some(method), contains, fault, times }
}

#[tokio::test]
async fn a_multipart_upload_survives_every_kind_of_fault() {
    let served = Served::start();
    let direct = served.client(V4);
    let b = bucket(&direct, "faults").await;
    let proxy = FaultProxy::start(
        &served.endpoint,
        vec![
            rule("PUT", "partNumber=1", Fault::Reset, 1),
            rule("PUT", "partNumber=2", Fault::Status(503, "SlowDown"), 2),
            rule("PUT", "partNumber=3", Fault::Status(500, "InternalError"), 1),
            rule("PUT", "partNumber=3", Fault::Delay(Duration::from_millis(300)), 1),
            rule("POST", "uploadId=", Fault::ErrorBody200, 1),
            rule("GET", "/faults/obj", Fault::CutBody, 1),
        ],
    )
    .await;
    let store = client_for(&proxy.endpoint, V4, Credentials::new(AK, SK));
    let policy = quick();
    let content = data(3 * 100 * 1024 + 17, 21);
    let (put, done) = (PutOptions::default(), CompleteOptions::default());
    let id = policy.run("initiate", |_| store.initiate_multipart(&b, "obj", &put)).await.unwrap();
    let mut parts = Vec::new();
    for (i, chunk) in content.chunks(100 * 1024).enumerate() {
        let n = i as u32 + 1;
        // Every attempt re-reads the part from the source, as the engine does.
        let r = policy.run("upload part", |_| store.upload_part(id.part(n), Body::from(chunk.to_vec()))).await.unwrap();
        parts.push(CompletedPart::from(&r));
    }
    policy.run("complete", |_| store.complete_multipart(&id, &parts, &done)).await.unwrap();
    let obj = ObjectRef::new(&b, "obj");
    let got = policy.run("get", |_| async { store.get_object(&obj, None).await?.bytes().await }).await.unwrap();
    assert_eq!(got.as_ref(), content.as_slice());
    assert_eq!(proxy.pending(), 0, "every scheduled fault must have been hit");
    assert_eq!(proxy.injected(), 7);
}

#[tokio::test]
async fn permanent_errors_are_not_retried_through_the_proxy() {
    let served = Served::start();
    let b = bucket(&served.client(V4), "permanent").await;
    let proxy = FaultProxy::start(&served.endpoint, vec![]).await;
    let store = client_for(&proxy.endpoint, V4, Credentials::new(AK, SK));
    let missing = ObjectRef::new(&b, "missing");
    let mut attempts = 0;
    let e = quick()
        .run("head", |_| {
            attempts += 1;
            store.head_object(&missing)
        })
        .await
        .unwrap_err();
    assert_eq!((e.service_code(), attempts), (Some("NoSuchKey"), 1));
}
