//! `transfer serve` as a process: the first stdout line, a signed request, SIGTERM, and the missing
//! credentials error.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::SystemTime;
use transfer_engine::sign::{Credentials, SignTarget, SignatureVersion, Signer};

fn transfer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_transfer"))
}

#[test]
fn serve_without_credentials_exits_2_naming_the_variables() {
    let root = tempfile::tempdir().unwrap();
    let out = transfer()
        .args(["serve", "--root"])
        .arg(root.path())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("OSS_ACCESS_KEY_ID")
        .env_remove("OSS_ACCESS_KEY_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OSS_ACCESS_KEY_ID") && err.contains("OSS_ACCESS_KEY_SECRET"), "{err}");
    assert!(out.stdout.is_empty());
}

#[cfg(unix)]
#[tokio::test]
async fn serve_announces_its_address_answers_and_stops_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let mut child = transfer()
        .args(["serve", "--no-fsync", "--root"])
        .arg(root.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("OSS_ACCESS_KEY_ID", "cli-ak")
        .env("OSS_ACCESS_KEY_SECRET", "cli-sk")
        .env_remove("OSS_SESSION_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let addr = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first:?}")).to_owned();
    assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"), "{addr}");

    let mut headers = http::HeaderMap::new();
    let target = SignTarget { method: "PUT", bucket: Some("clibucket"), key: None, query: &[] };
    Signer::new(SignatureVersion::V4, "cn-hangzhou").sign(
        &Credentials::new("cli-ak", "cli-sk"),
        &target,
        &mut headers,
        SystemTime::now(),
    );
    let r = reqwest::Client::new().put(format!("http://{addr}/clibucket/")).headers(headers).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("server").unwrap(), "transfer");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
