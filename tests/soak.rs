//! Kills at random moments, through the built binary: `transfer cp` of a multipart upload and of a multipart
//! copy is killed with SIGKILL ten times through a proxy that counts what it receives, then run to the end. The
//! object must be byte-identical with its tags, no incomplete upload may be left, and what was sent again must
//! be at most what was in flight at the kills, and no part the server acknowledged may be sent (or copied) again:
//! parts the server acknowledged but the ledger had not recorded yet are found again on the server. The same again with the ledger's
//! log (`-wal`) deleted after every kill: then the destination alone says what arrived.
//!
//! A few seconds a case. `TRANSFER_SOAK_SEED` replays a run (each case prints its seed); `TRANSFER_SOAK_TRACE=1`
//! prints every part request with when it came and was answered, and the kills.

use crate::cli::{run, transfer};
use crate::util::fault::{Fault, FaultProxy, Rule, Seen};
use crate::util::{bucket, data, Served};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::ListUploadsRequest;
use transfer_engine::{MultipartStore, ObjectRef, ObjectStore, TagSet};

/// The size of a case: `TRANSFER_SOAK_PART_KIB` (128), `TRANSFER_SOAK_PARTS` (24), `TRANSFER_SOAK_KILLS` (10),
/// `TRANSFER_SOAK_JOBS` (2) and `TRANSFER_SOAK_MAX_WAIT_MS` (500, the longest a run goes before its kill) make
/// it larger, as the closing measurements of a change are (say 50 parts of 4 MiB, 4 in flight, 20 kills).
struct Shape {
    part: usize,
    parts: usize,
    kills: usize,
    jobs: usize,
    max_wait: u64,
}

impl Shape {
    fn from_env() -> Shape {
        let var = |name: &str, default: usize| {
            std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&v| v > 0).unwrap_or(default)
        };
        Shape {
            part: var("TRANSFER_SOAK_PART_KIB", 128) * 1024,
            parts: var("TRANSFER_SOAK_PARTS", 24),
            kills: var("TRANSFER_SOAK_KILLS", 10),
            jobs: var("TRANSFER_SOAK_JOBS", 2),
            max_wait: var("TRANSFER_SOAK_MAX_WAIT_MS", 500) as u64,
        }
    }

    fn len(&self) -> usize {
        self.part * self.parts
    }

    /// `cp` with this shape's parts and requests in flight; `threshold` is the flag that makes it multipart.
    fn args(&self, threshold: &str, extra: &[&str], from: String, to: String) -> Vec<String> {
        let part = format!("{}KiB", self.part / 1024);
        let sized = ["cp", "--part-size", &part, threshold, &part, "--jobs", &self.jobs.to_string()].map(String::from);
        sized.into_iter().chain(extra.iter().map(|s| s.to_string())).chain([from, to]).collect()
    }
}

/// A small deterministic generator (xorshift64*), seeded per case.
struct Rng(u64);

impl Rng {
    fn new(case: &str) -> Rng {
        let seed = std::env::var("TRANSFER_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        println!("soak {case}: TRANSFER_SOAK_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// What the part requests through the proxy came to: body bytes that arrived whole (or requests, for copies),
/// and the most that can have been lost at the kills: the requests in flight at each.
fn accounting(
    seen: &[Seen],
    kills: &[Instant],
    is_part: impl Fn(&Seen) -> bool,
    weight: impl Fn(&Seen) -> u64,
) -> (u64, u64) {
    let parts: Vec<&Seen> = seen.iter().filter(|s| is_part(s)).collect();
    if std::env::var_os("TRANSFER_SOAK_TRACE").is_some() {
        let t0 = seen[0].came;
        for s in &parts {
            println!(
                "{:>6} {:?} {:?} {}",
                s.came.duration_since(t0).as_millis(),
                s.answered.map(|a| a.duration_since(t0).as_millis()),
                s.received,
                s.target
            );
        }
        for k in kills {
            println!("kill at {}", k.duration_since(t0).as_millis());
        }
    }
    let sent = parts.iter().filter(|s| s.received.is_some()).map(|s| weight(s)).sum();
    let in_flight =
        kills.iter().map(|&k| parts.iter().filter(|s| s.in_flight_at(k)).map(|s| weight(s)).sum::<u64>()).sum();
    (sent, in_flight)
}

/// Requests for a part the server had already acknowledged (answered 200 to an earlier request for the same part
/// of the same upload, before this one came): what a resume that trusts the destination never sends.
fn sent_after_acknowledged(seen: &[Seen], is_part: impl Fn(&Seen) -> bool) -> usize {
    let parts: Vec<&Seen> = seen.iter().filter(|s| is_part(s)).collect();
    parts
        .iter()
        .filter(|s| {
            parts.iter().any(|earlier| {
                earlier.target == s.target
                    && earlier.upstream == Some(200)
                    && earlier.answered.is_some_and(|a| a < s.came)
            })
        })
        .count()
}

fn is_part_put(s: &Seen) -> bool {
    s.method == "PUT" && s.target.contains("uploadId=")
}

/// Runs `transfer <args>` through `proxy`, killing it at a random moment, up to ten times, the ledger's log
/// deleted after each kill when `lose_log`; then to the end (unless a run ended before its kill). Returns the
/// kill times.
async fn kill_repeatedly(
    proxy: &FaultProxy,
    ledger: &Path,
    args: &[String],
    lose_log: bool,
    rng: &mut Rng,
    shape: &Shape,
) -> Vec<Instant> {
    let mut kills = Vec::new();
    for _ in 0..shape.kills {
        let mut child = transfer(&proxy.endpoint, ledger)
            .args(args)
            .arg("-q")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(100 + rng.below(shape.max_wait.max(101) - 100));
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills.push(Instant::now());
            child.wait().unwrap();
            if lose_log {
                for ext in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{ext}", ledger.display()));
                }
            }
            continue;
        }
        // It ended before its kill: that was the last run.
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "a run ended on its own: {}", String::from_utf8_lossy(&out.stderr));
        return kills;
    }
    let out = run(transfer(&proxy.endpoint, ledger).args(args));
    assert_eq!(out.status.code(), Some(0), "the last run: {}", String::from_utf8_lossy(&out.stderr));
    kills
}

/// Parts are slowed down so that kills find them in flight.
async fn slow_parts(served: &Served) -> FaultProxy {
    let slow = Rule {
        method: Some("PUT"),
        contains: "uploadId=",
        fault: Fault::Delay(Duration::from_millis(120)),
        times: 1 << 20,
    };
    FaultProxy::start(&served.endpoint, vec![slow]).await
}

async fn no_uploads_left(store: &dyn MultipartStore, b: &str) {
    let left = store.list_uploads(b, &ListUploadsRequest::default()).await.unwrap();
    assert!(left.uploads.is_empty(), "uploads left behind: {:?}", left.uploads);
}

async fn upload_soak(case: &str, lose_log: bool) {
    let mut rng = Rng::new(case);
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, case).await;
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, file) = (tmp.path().join("ledger.db"), tmp.path().join("big.bin"));
    let shape = Shape::from_env();
    let bytes = data(shape.len(), rng.below(1 << 30));
    std::fs::write(&file, &bytes).unwrap();
    let proxy = slow_parts(&served).await;
    let (from, to) = (file.display().to_string(), format!("oss://{b}/big.bin"));
    let args = shape.args("--multipart-threshold", &["--tag", "soak=upload"], from, to);
    let kills = kill_repeatedly(&proxy, &ledger, &args, lose_log, &mut rng, &shape).await;

    let obj = ObjectRef::new(&b, "big.bin");
    let got = store.get_object(&obj, None).await.unwrap().bytes().await.unwrap();
    assert!(got == bytes, "the object is not the file");
    assert_eq!(store.get_tagging(&obj).await.unwrap(), TagSet::from_pairs([("soak", "upload")]).unwrap());
    no_uploads_left(&store, &b).await;
    let (sent, in_flight) = accounting(&proxy.seen(), &kills, is_part_put, |s| s.declared);
    let needless = sent_after_acknowledged(&proxy.seen(), is_part_put);
    println!(
        "soak {case}: {} kills, {sent} part bytes for a {} byte file, {in_flight} in flight at the kills, \
         {needless} parts sent again after the server acknowledged them",
        kills.len(),
        bytes.len()
    );
    assert_eq!(needless, 0, "parts the server had acknowledged were sent again");
    assert!(
        sent <= bytes.len() as u64 + in_flight,
        "{sent} part bytes were sent for a {} byte file: more than the {in_flight} in flight at {} kills was sent again",
        bytes.len(),
        kills.len()
    );
}

async fn copy_soak(case: &str, lose_log: bool) {
    let mut rng = Rng::new(case);
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, case).await;
    let shape = Shape::from_env();
    let bytes = data(shape.len(), rng.below(1 << 30));
    store.put_object(&b, "src.bin", bytes.clone().into(), &Default::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let proxy = slow_parts(&served).await;
    let (from, to) = (format!("oss://{b}/src.bin"), format!("oss://{b}/copy.bin"));
    let args = shape.args("--copy-threshold", &["--tag", "soak=copy", "--tagging-directive", "replace"], from, to);
    let kills = kill_repeatedly(&proxy, &ledger, &args, lose_log, &mut rng, &shape).await;

    let obj = ObjectRef::new(&b, "copy.bin");
    let got = store.get_object(&obj, None).await.unwrap().bytes().await.unwrap();
    assert!(got == bytes, "the copy is not the source");
    assert_eq!(store.get_tagging(&obj).await.unwrap(), TagSet::from_pairs([("soak", "copy")]).unwrap());
    no_uploads_left(&store, &b).await;
    let is_copy = |s: &Seen| is_part_put(s) && s.has("x-oss-copy-source");
    let (calls, in_flight) = accounting(&proxy.seen(), &kills, is_copy, |_| 1);
    let needless = sent_after_acknowledged(&proxy.seen(), is_copy);
    println!(
        "soak {case}: {} kills, {calls} UploadPartCopy calls for {} parts, {in_flight} in flight at the kills, \
         {needless} made again after the server acknowledged them",
        kills.len(),
        shape.parts
    );
    assert_eq!(needless, 0, "parts the server had acknowledged were copied again");
    assert!(
        calls <= shape.parts as u64 + in_flight,
        "{calls} UploadPartCopy calls for {} parts: more than the {in_flight} in flight at {} kills were made again",
        shape.parts,
        kills.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_ten_times_resends_only_what_was_in_flight() {
    upload_soak("soak-upload", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_ten_times_with_its_ledger_log_lost_resends_only_what_was_in_flight() {
    upload_soak("soak-upload-nolog", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_killed_ten_times_copies_again_only_what_was_in_flight() {
    copy_soak("soak-copy", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_killed_ten_times_with_its_ledger_log_lost_copies_again_only_what_was_in_flight() {
    copy_soak("soak-copy-nolog", true).await;
}
