//! A migration on a real Slurm cluster: `scripts/slurm` starts a one-node cluster on loopback (Debian's slurmctld,
//! slurmd and munge), and `deploy/slurm/transfer-migration.sh` plans, submits the array of shards and the merge
//! after it, against `transfer serve`. If Slurm cannot run here the test fails and says why: it never skips.

use crate::util::{data, Served, AK, SK};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::{ListRequest, PutOptions};
use transfer_engine::{BucketStore, Metadata, ObjectRef, ObjectStore, TagSet};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cluster `scripts/slurm start` started under a directory; stopped when dropped, whatever happened.
struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let out = Command::new(repo().join("scripts/slurm")).arg("start").arg(dir).output().unwrap();
        let cluster = Cluster { dir: dir.to_path_buf() };
        assert!(
            out.status.success(),
            "Slurm cannot run here: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// What the cluster says about its jobs, and its logs, for a failure's message.
    fn explain(&self) -> String {
        let squeue = Command::new("squeue").env("SLURM_CONF", self.conf()).output();
        let mut text = squeue.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        for log in ["slurmctld.log", "slurmd.log"] {
            let body = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(10).collect();
            text.push_str(&format!("\n--- {log}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/slurm")).arg("stop").arg(&self.dir).status();
    }
}

/// 40 objects and one of 24 MiB (tags and metadata on each) migrated by a Slurm array of 6 shards, 4 at once, the
/// large one split across several tasks, and the merge that runs after every shard succeeded: every object
/// arrives once with its bytes, tags and metadata, and the report's totals account for all 41.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_on_a_slurm_array() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("slurm").await.unwrap();
    let mut opts = PutOptions::default();
    opts.metadata = Metadata::with_user([("origin", "hpc")]).unwrap();
    opts.tags = Some(TagSet::from_pairs([("run", "slurm")]).unwrap());
    for i in 0..40u64 {
        store
            .put_object("slurm", &format!("src/{:02}/f{i}", i % 7), data(3000 + i as usize * 50, i).into(), &opts)
            .await
            .unwrap();
    }
    // One object large enough to be split across the array's tasks and completed by the merge.
    let big = data(24 << 20, 77);
    store.put_object("slurm", "src/03/big.bin", big.clone().into(), &opts).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&tmp.path().join("cluster"));
    let plan = tmp.path().join("plan");
    let state = tmp.path().join("state");
    let out = Command::new(repo().join("deploy/slurm/transfer-migration.sh"))
        .args(["oss://slurm/src/", "oss://slurm/dst/", plan.to_str().unwrap(), "6", "4"])
        .args(["--split-above", "8MiB", "--part-size", "1MiB"])
        .env("SLURM_CONF", cluster.conf())
        .env("TRANSFER", env!("CARGO_BIN_EXE_transfer"))
        .env("TRANSFER_STATE", &state)
        .env("TRANSFER_ENDPOINT", &served.endpoint)
        .env("TRANSFER_REGION", "cn-hangzhou")
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .env_remove("OSS_SESSION_TOKEN")
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the script failed: {said}");
    // The merge writes its report once every array task succeeded.
    let report = plan.join("report/summary.json");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !report.exists() {
        assert!(Instant::now() < deadline, "no report within 3 minutes: {said}\n{}", cluster.explain());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        (s["complete"].as_bool(), s["listed"].as_u64(), s["failed"].as_u64(), s["split"]["completed"].as_u64()),
        (Some(true), Some(41), Some(0), Some(1)),
        "{s}"
    );
    assert_eq!(s["shards_done"].as_u64(), s["shards"].as_u64(), "{s}");
    for i in 0..s["shards"].as_u64().unwrap() {
        assert!(state.join(format!("shard-{i}.log")).exists(), "array task {i} ran under Slurm");
    }
    let listed = store.list_objects("slurm", &ListRequest::default().prefix(Some("dst/".into()))).await.unwrap();
    assert_eq!(listed.objects.len(), 41);
    let split = ObjectRef::new("slurm", "dst/03/big.bin");
    assert!(store.get_object(&split, None).await.unwrap().bytes().await.unwrap() == big, "the split object");
    assert_eq!(store.get_tagging(&split).await.unwrap().get("run"), Some("slurm"));
    for i in [0u64, 17, 39] {
        let key = format!("dst/{:02}/f{i}", i % 7);
        let obj = ObjectRef::new("slurm", &key);
        let got = store.get_object(&obj, None).await.unwrap().bytes().await.unwrap();
        assert!(got == data(3000 + i as usize * 50, i), "{key}");
        assert_eq!(store.get_tagging(&obj).await.unwrap().get("run"), Some("slurm"));
        assert_eq!(store.head_object(&obj).await.unwrap().metadata.user.get("origin").map(String::as_str), Some("hpc"));
    }
}
