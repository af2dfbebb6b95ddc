//! The engine's jobs through the fault-injecting proxy (`util::fault`) in front of the target: resets, 500 and
//! 503 `SlowDown`, a slow answer, a `200 OK` carrying an `<Error>`, a lost answer and a cut body. Each request
//! is retried on its own as the error classification says, and the jobs end with the right bytes.

use super::{read, Target};
use crate::util::data;
use crate::util::fault::{Fault, FaultProxy, Rule};
use std::sync::Arc;
use std::time::Duration;
use transfer_engine::checkpoint::{JobState, Ledger};
use transfer_engine::job::{CopyRequest, Engine, EngineConfig, UploadRequest};
use transfer_engine::plan::PlanOptions;
use transfer_engine::run::RetryPolicy;
use transfer_engine::ObjectRef;

const MIB: usize = 1024 * 1024;

fn rule(method: &'static str, contains: &'static str, fault: Fault, times: usize) -> Rule {
    Rule { method: Some(method), contains, fault, times }
}

fn engine(store: Arc<dyn transfer_engine::Store>, ledger: &Ledger) -> Engine {
    let config = EngineConfig::default()
        .plan(
            PlanOptions::default()
                .preferred_part_size(5 * MIB as u64)
                .multipart_threshold(6 * MIB as u64)
                .copy_threshold(Some(6 * MIB as u64))
                .copy_part_size(5 * MIB as u64)
                .max_in_flight(2),
        )
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(20)));
    Engine::new(store, ledger.clone(), config).unwrap()
}

/// Uploads 12 MiB + 3 (three parts) as `<scope>/fault-up`, then copies it in three UploadPartCopy parts to
/// `<scope>/fault-copied`, both as jobs through a proxy applying `rules`; checks the bytes that arrived.
async fn jobs_through(t: &Target, scope_name: &str, rules: Vec<Rule>) {
    let scope = t.scope(scope_name).await;
    let wire = t.wire.as_ref().unwrap();
    let scheduled: usize = rules.iter().map(|r| r.times).sum();
    let proxy = FaultProxy::start(&wire.endpoint, rules).await;
    let via = t.client_at(&proxy.endpoint, wire.credentials.clone());
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let content = data(12 * MIB + 3, 31);
    let path = dir.path().join("big");
    std::fs::write(&path, &content).unwrap();
    let engine = engine(via.clone(), &ledger);

    let up = UploadRequest::new(&path, &scope.bucket, scope.key("fault-up"));
    let summary = engine.upload_one(up).await.unwrap().join().await.unwrap();
    assert_eq!(summary.state, JobState::Done, "{:?}", summary.failures);

    let src = ObjectRef::new(&scope.bucket, scope.key("fault-up"));
    let copy = CopyRequest::new(src, &scope.bucket, scope.key("fault-copied"));
    let summary = engine.copy_one(copy).await.unwrap().join().await.unwrap();
    assert_eq!(summary.state, JobState::Done, "{:?}", summary.failures);

    // Read back through the proxy too (a cut body is retried), and directly.
    let policy = RetryPolicy::default().base_delay(Duration::from_millis(5));
    for key in ["fault-up", "fault-copied"] {
        let obj = scope.obj(key);
        let got = policy.run("get", |_| async { via.get_object(&obj, None).await?.bytes().await }).await.unwrap();
        assert!(got.as_ref() == content.as_slice(), "{key} read through the proxy");
        assert!(read(&*t.store, &obj).await == content, "{key}");
    }
    assert_eq!(proxy.pending(), 0, "every scheduled fault must have been hit");
    assert_eq!(proxy.injected(), scheduled);
}

pub async fn engine_jobs_through_faults(t: &Target) {
    jobs_through(
        t,
        "faults",
        vec![
            // The upload's parts and its Complete.
            rule("PUT", "fault-up?partNumber=1&", Fault::Reset, 1),
            rule("PUT", "fault-up?partNumber=2&", Fault::Status(503, "SlowDown"), 2),
            rule("PUT", "fault-up?partNumber=3&", Fault::Status(500, "InternalError"), 1),
            rule("PUT", "fault-up?partNumber=3&", Fault::Delay(Duration::from_millis(300)), 1),
            rule("PUT", "fault-up?partNumber=1&", Fault::LoseResponse, 1),
            rule("POST", "fault-up?uploadId=", Fault::ErrorBody200, 1),
            // The copy's parts and its Complete.
            rule("PUT", "fault-copied?partNumber=1&", Fault::Status(503, "SlowDown"), 1),
            rule("PUT", "fault-copied?partNumber=2&", Fault::Reset, 1),
            rule("PUT", "fault-copied?partNumber=3&", Fault::LoseResponse, 1),
            rule("POST", "fault-copied?uploadId=", Fault::Status(500, "InternalError"), 1),
            // Reads.
            rule("GET", "fault-up", Fault::CutBody, 1),
            rule("GET", "fault-copied", Fault::Reset, 1),
        ],
    )
    .await;
}

/// The server completes a multipart upload whose answer is lost; the retried Complete meets `NoSuchUpload`,
/// and the engine finds the object there (HEAD: size, and CRC-64 where the dialect has one).
pub async fn lost_complete_answers(t: &Target) {
    jobs_through(
        t,
        "lost-answers",
        vec![
            rule("POST", "fault-up?uploadId=", Fault::LoseResponse, 1),
            rule("POST", "fault-copied?uploadId=", Fault::LoseResponse, 1),
        ],
    )
    .await;
}
