//! Copies between two stores through the built binary (`--src-endpoint`, another scheme): the bytes flow through
//! `transfer`, metadata and tags go with them, and a killed relay resumes sending only the missing parts.

use crate::cli::{run, summary, transfer};
use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::{bucket, data, s3_client, Served, AK, SK};
use std::process::Stdio;
use std::time::Duration;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::Upload;
use transfer_engine::store::{ListUploadsRequest, PutOptions};
use transfer_engine::MultipartStore;
use transfer_engine::{BucketStore, Metadata, ObjectRef, ObjectStore, TagSet};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_moves_between_two_endpoints_with_its_metadata_and_tags_and_resumes_after_a_kill() {
    let (from, to) = (Served::start(), Served::start());
    let (src, dst) = (from.client(V4), to.client(V4));
    bucket(&src, "origin").await;
    bucket(&dst, "target").await;
    let meta = Metadata::with_user([("owner", "ops")]).unwrap();
    let tags = TagSet::from_pairs([("k4+-=", "+-=._:/"), ("tier", "gold")]).unwrap();
    let opts = PutOptions::default().metadata(meta.clone()).tags(Some(tags.clone()));
    let big = data(3 * 1024 * 1024, 11);
    src.put_object("origin", "p/big.bin", big.clone().into(), &opts).await.unwrap();
    src.put_object("origin", "p/small.txt", b"small".to_vec().into(), &opts).await.unwrap();

    // Slow the destination's parts down, and kill the relay once it holds three of them.
    let slow = FaultProxy::start(
        &to.endpoint,
        vec![Rule {
            method: Some("PUT"),
            contains: "uploadId=",
            fault: Fault::Delay(Duration::from_millis(300)),
            times: 100_000,
        }],
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let args = [
        "cp",
        "-r",
        "--multipart-threshold",
        "1MiB",
        "--part-size",
        "100KiB",
        "--jobs",
        "2",
        "oss://origin/p/",
        "oss://target/q/",
    ];
    // The source is read through a recording proxy (the job records its endpoint, and the resume reads there).
    let wire_from = FaultProxy::start(&from.endpoint, vec![]).await;
    let mut child = transfer(&slow.endpoint, &ledger)
        .args(args)
        .args(["--src-endpoint", &wire_from.endpoint])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        assert!(child.try_wait().unwrap().is_none(), "the relay ended before it could be killed");
        let uploads = dst.list_uploads("target", &ListUploadsRequest::default()).await.unwrap().uploads;
        if let Some(u) = uploads.first() {
            if dst
                .list_parts(&Upload::new("target", &u.key, u.upload_id.clone()), None, None)
                .await
                .unwrap()
                .parts
                .len()
                >= 3
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Once the killed run's requests settle, what the server holds is what the resume must not send again.
    let settled = || slow.seen().iter().all(|s| s.answered.is_some());
    crate::util::until("the killed run's requests settle", Duration::from_secs(30), settled).await;
    let u = dst.list_uploads("target", &ListUploadsRequest::default()).await.unwrap().uploads.remove(0);
    let held: Vec<u32> = dst
        .list_parts(&Upload::new("target", &u.key, u.upload_id), None, None)
        .await
        .unwrap()
        .parts
        .iter()
        .map(|p| p.part_number.get())
        .collect();

    // The resume, counted at the proxies in front of both stores: every part the server held (those acknowledged
    // just before the kill, not yet in the ledger, too) is neither read from the source nor sent again.
    // The job recorded both endpoints (the proxies): the resume goes through them again.
    let (sent_before, read_before) = (slow.seen().len(), wire_from.seen().len());
    let out = run(transfer(&to.endpoint, &ledger).args(["resume", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut sent: Vec<u32> =
        slow.seen()[sent_before..].iter().filter(|s| s.method == "PUT").filter_map(|s| s.part_number()).collect();
    sent.sort_unstable();
    let expected: Vec<u32> = (1..=31).filter(|n| !held.contains(n)).collect();
    assert_eq!(sent, expected, "held {held:?}");
    let read =
        wire_from.seen()[read_before..].iter().filter(|s| s.method == "GET" && s.target.contains("big.bin")).count();
    assert_eq!(read, expected.len(), "one ranged GET of the source per part sent");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let done = lines.iter().find(|l| l["key"] == "q/big.bin").expect("the big object's event");
    assert_eq!(done["parts_reused"].as_u64(), Some(held.len() as u64), "{done}");
    for (key, bytes) in [("q/big.bin", big.as_slice()), ("q/small.txt", b"small".as_slice())] {
        let obj = ObjectRef::new("target", key);
        assert!(dst.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref() == bytes, "{key}");
        assert_eq!(dst.head_object(&obj).await.unwrap().metadata.user, meta.user, "{key}: metadata carried");
        assert_eq!(dst.get_tagging(&obj).await.unwrap().sorted(), tags.sorted(), "{key}: tags carried");
    }
    assert!(dst.list_uploads("target", &ListUploadsRequest::default()).await.unwrap().uploads.is_empty());
}

#[tokio::test]
async fn an_object_moves_from_oss_to_s3_and_from_the_local_store_to_oss() {
    let served = Served::start();
    let oss = served.client(V4);
    bucket(&oss, "from-oss").await;
    let s3 = s3_client(&served.endpoint, (AK, SK));
    s3.create_bucket("to-s3").await.unwrap();
    let opts = PutOptions::default().tags(Some(TagSet::from_pairs([("a", "1")]).unwrap()));
    oss.put_object("from-oss", "k", data(5000, 2).into(), &opts).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let out =
        run(transfer(&served.endpoint, &ledger).env("AWS_ACCESS_KEY_ID", AK).env("AWS_SECRET_ACCESS_KEY", SK).args([
            "cp",
            "--json",
            "oss://from-oss/k",
            "s3://to-s3/k",
            "--region",
            "us-east-1",
            "--src-region",
            "cn-hangzhou",
        ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary(&out)["objects_transferred"].as_u64(), Some(1));
    let obj = ObjectRef::new("to-s3", "k");
    assert!(s3.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref() == data(5000, 2).as_slice());
    assert_eq!(s3.get_tagging(&obj).await.unwrap(), TagSet::from_pairs([("a", "1")]).unwrap());

    // The embedded store to an endpoint.
    let root = tmp.path().join("local");
    {
        let local = transfer_engine::local::LocalStore::open(&root).unwrap();
        local.create_bucket("mine").await.unwrap();
        local.put_object("mine", "notes/n.txt", b"from local".to_vec().into(), &PutOptions::default()).await.unwrap();
    }
    let out = run(transfer(&served.endpoint, &ledger)
        .args(["cp", "-r", "--local-root"])
        .arg(&root)
        .args(["local://mine/notes/", "oss://from-oss/notes/"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = oss.get_object(&ObjectRef::new("from-oss", "notes/n.txt"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"from local");
}
