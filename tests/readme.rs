//! The README's commands, run as written: the main job on the embedded default, `transfer serve` over the same
//! store, and the migration walk-through against it, each a code block read from README.md itself (so the test
//! breaks when the README and the program part ways). Three substitutions, and no others: `cargo run --release
//! --` is the binary this test run built (the same program, without a second build), `transfer` on a line is
//! found on the `PATH` as `cargo install` would put it, and serve's `127.0.0.1:9000` is the port it got.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::{Credentials, SignatureVersion};
use transfer_engine::store::ListUploadsRequest;
use transfer_engine::{MultipartStore, ObjectRef, ObjectStore};

const README: &str = include_str!("../README.md");
const BIN: &str = env!("CARGO_BIN_EXE_transfer");

/// The fenced blocks without a language (shell) under the `## heading`, up to the next `## `.
fn blocks(heading: &str) -> Vec<String> {
    let start = README.find(&format!("\n## {heading}\n")).unwrap_or_else(|| panic!("README has no ## {heading}"));
    let section = &README[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line) {
            (None, "```") => current = Some(String::new()),
            (Some(b), "```") => {
                out.push(std::mem::take(b));
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

fn as_written(block: &str) -> String {
    block.replace("cargo run --release --", BIN)
}

/// `bash -euo pipefail -c SCRIPT` in `dir`, `transfer` on the PATH, a clean home and state for the ledger.
fn shell(dir: &Path, script: &str) -> Command {
    let bin = dir.join(".bin");
    std::fs::create_dir_all(&bin).unwrap();
    let _ = std::os::unix::fs::symlink(BIN, bin.join("transfer"));
    let mut c = Command::new("bash");
    c.args(["-euo", "pipefail", "-c", script]).current_dir(dir);
    c.env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()));
    c.env("HOME", dir).env("XDG_STATE_HOME", dir.join(".state")).env("XDG_DATA_HOME", dir.join(".data"));
    for v in ["TRANSFER_ENDPOINT", "TRANSFER_REGION", "TRANSFER_PROFILE", "TRANSFER_LEDGER", "TRANSFER_CONFIG"] {
        c.env_remove(v);
    }
    for v in ["OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"] {
        c.env_remove(v);
    }
    c.env_remove("AWS_SECRET_ACCESS_KEY").env_remove("AWS_SESSION_TOKEN");
    c
}

fn ran(what: &str, out: Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's serve command (a shell and the server, in a process group of their own), on the port it
/// picks; the group is killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

async fn get(store: &HttpStore, bucket: &str, key: &str) -> Vec<u8> {
    let r = store.get_object(&ObjectRef::new(bucket, key), None).await;
    r.unwrap_or_else(|e| panic!("{bucket}/{key}: {e}")).bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_runs_as_written() {
    let two = blocks("Two commands");
    assert_eq!(two.len(), 3, "the main job, the test command, and serve over the same store: {two:?}");
    let (main_job, test_command, serve) = (&two[0], &two[1], &two[2]);
    assert_eq!(test_command.trim(), "./scripts/test", "the test command is the one this runs under");
    let dir = tempfile::tempdir().unwrap();
    // The main job copies this repository's crates/ from where the README is.
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("crates"), dir.path().join("crates"))
        .unwrap();
    ran("the main job", shell(dir.path(), &as_written(main_job)).output().unwrap());

    // Serve the same store, and look at what arrived.
    let serve = as_written(serve).replace("127.0.0.1:9000", "127.0.0.1:0");
    let mut child = shell(dir.path(), serve.trim()).process_group(0).stdout(Stdio::piped()).spawn().expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let endpoint = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    let _serve = Serve(child);
    let store = HttpStore::oss()
        .endpoint(&endpoint)
        .region("cn-hangzhou")
        .credentials(Credentials::new("local", "local-secret"))
        .signature_version(SignatureVersion::V4)
        .build()
        .unwrap();
    let manifest = "crates/engine/Cargo.toml";
    let want = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest)).unwrap();
    assert_eq!(get(&store, "demo", manifest).await, want);
    let tags = store.get_tagging(&ObjectRef::new("demo", manifest)).await.unwrap();
    assert_eq!(tags.get("project"), Some("transfer"), "{tags:?}");

    // The walk-through, against that server.
    let walk = blocks("A migration, step by step");
    assert_eq!(walk.len(), 1, "{walk:?}");
    let port = endpoint.rsplit(':').next().unwrap();
    let script = walk[0].replace("127.0.0.1:9000", &format!("127.0.0.1:{port}"));
    ran("the walk-through", shell(dir.path(), &script).output().unwrap());

    let cat = std::fs::read(dir.path().join("photos/cat.jpg")).unwrap();
    assert!(cat.len() > 64 << 20, "step 0 makes a file that goes in parts");
    for (bucket, key) in [("archive", "photos/cat.jpg"), ("archive", "2026/cat.jpg"), ("offsite", "2026/cat.jpg")] {
        assert!(get(&store, bucket, key).await == cat, "{bucket}/{key} holds the file's bytes");
        let tags = store.get_tagging(&ObjectRef::new(bucket, key)).await.unwrap();
        assert_eq!((tags.get("project"), tags.get("k4+-=")), (Some("alpha"), Some("+-=._:/")), "{bucket}/{key}");
        let head = store.head_object(&ObjectRef::new(bucket, key)).await.unwrap();
        assert_eq!(head.metadata.user.get("origin").map(String::as_str), Some("laptop"), "{bucket}/{key}");
    }
    assert_eq!(get(&store, "offsite", "2026/2025/note.txt").await, b"meow\n");
    // Step 6 mirrored the photos, the second sync the file added between the two.
    assert_eq!(get(&store, "archive", "mirror/2025/new.txt").await, b"hiss\n");
    assert!(get(&store, "archive", "mirror/cat.jpg").await == cat);
    // Step 7 streamed a tar of the photos (the shell listed it back): one object, tagged, at least the photos.
    let tar = ObjectRef::new("archive", "backups/photos.tar");
    assert!(store.head_object(&tar).await.unwrap().size > cat.len() as u64);
    assert_eq!(store.get_tagging(&tar).await.unwrap().get("kind"), Some("backup"));
    // Step 5 restored the photos with their modification times (the shell compared the bytes).
    for name in ["cat.jpg", "2025/note.txt"] {
        let mtime = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(
            mtime(dir.path().join("restored").join(name)),
            mtime(dir.path().join("photos").join(name)),
            "{name}"
        );
    }
    for bucket in ["archive", "offsite"] {
        let left = store.list_uploads(bucket, &ListUploadsRequest::default()).await.unwrap();
        assert!(left.uploads.is_empty(), "no upload left behind in {bucket}: {:?}", left.uploads);
    }
}
