//! `s3://` addresses through the built binary: against `transfer serve`'s S3 dialect and against moto's S3 server.

use crate::cli::{run, summary};
use crate::util::moto::Moto;
use crate::util::{data, Served, AK, SK};
use std::path::Path;
use std::process::{Command, Output};
use transfer_engine::s3::S3Store;
use transfer_engine::sign::Credentials;
use transfer_engine::{BucketStore, ObjectRef, ObjectStore, TagSet};

/// `transfer` with AWS credentials and `endpoint`, and no OSS ones (an s3:// address must not need them).
fn transfer_s3(endpoint: &str, ledger: &Path, (id, secret): (&str, &str)) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_transfer"));
    c.env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("TRANSFER_ENDPOINT", endpoint)
        .env("TRANSFER_REGION", "us-east-1")
        .env("TRANSFER_LEDGER", ledger)
        .env_remove("OSS_ACCESS_KEY_ID")
        .env_remove("OSS_ACCESS_KEY_SECRET")
        .env_remove("AWS_SESSION_TOKEN");
    c
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A directory upload (one file multipart), a server-side prefix copy, stat and tag, through s3://.
async fn cp_stat_tag(store: &S3Store, endpoint: &str, creds: (&str, &str), b: &str) {
    store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("small.txt"), b"small").unwrap();
    let big = data(11 * 1024 * 1024, 4);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    let out = run(transfer_s3(endpoint, &ledger, creds)
        .args(["cp", "-r", "--json", "--multipart-threshold", "6MiB", "--part-size", "5MiB", "--tag", "tier=cold"])
        .arg(&src)
        .arg(format!("s3://{b}/up/")));
    ok(&out);
    let s = summary(&out);
    assert_eq!(s["objects_transferred"].as_u64(), Some(2));
    // S3 reports no CRC-64/XZ: the summary does not claim one was verified.
    assert_eq!(s["crc64_verified"], false, "{s}");
    let obj = ObjectRef::new(b, "up/big.bin");
    assert!(store.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref() == big.as_slice());
    assert_eq!(store.get_tagging(&obj).await.unwrap(), TagSet::from_pairs([("tier", "cold")]).unwrap());

    let out = run(transfer_s3(endpoint, &ledger, creds).args(["cp", "-r", "--json", &format!("s3://{b}/up/"), &format!("s3://{b}/copy/")]));
    ok(&out);
    assert_eq!(summary(&out)["objects_transferred"].as_u64(), Some(2));
    let copied = ObjectRef::new(b, "copy/big.bin");
    assert_eq!(store.head_object(&copied).await.unwrap().size, big.len() as u64);
    assert_eq!(store.get_tagging(&copied).await.unwrap(), TagSet::from_pairs([("tier", "cold")]).unwrap(), "tags kept by the copy");

    let out = run(transfer_s3(endpoint, &ledger, creds).args(["stat", "--json", &format!("s3://{b}/copy/small.txt")]));
    ok(&out);
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(facts["size"].as_u64(), Some(5));
    ok(&run(transfer_s3(endpoint, &ledger, creds).args(["tag", "put", "--tag", "a=b", &format!("s3://{b}/copy/small.txt")])));
    let tags = store.get_tagging(&ObjectRef::new(b, "copy/small.txt")).await.unwrap();
    assert_eq!(tags, TagSet::from_pairs([("a", "b")]).unwrap());
}

#[tokio::test]
async fn s3_addresses_against_transfer_serve() {
    let served = Served::start();
    let store = S3Store::builder()
        .endpoint(&served.endpoint)
        .region("us-east-1")
        .credentials(Credentials::new(AK, SK))
        .system_proxy(false)
        .build()
        .unwrap();
    cp_stat_tag(&store, &served.endpoint, (AK, SK), "s3cli").await;
    // OSS credentials do not stand in for AWS ones.
    let tmp = tempfile::tempdir().unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_transfer"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .env("TRANSFER_LEDGER", tmp.path().join("l.db"))
        .args(["stat", "--endpoint", &served.endpoint, "s3://s3cli/up/small.txt"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AWS_ACCESS_KEY_ID"));
}

#[tokio::test]
async fn s3_addresses_against_moto() {
    let Some(moto) = Moto::start("s3_addresses_against_moto") else { return };
    cp_stat_tag(&moto.client_in("us-east-1"), &moto.endpoint, ("moto-test-key", "moto-test-secret"), "s3cli-moto").await;
}
