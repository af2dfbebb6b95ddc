//! Scale-out on one machine: a migration run as one `transfer sync` against the same migration cut into shards
//! (`transfer shard plan`) and run as P processes at once (`transfer shard run`, as P pods of an Indexed Job
//! would), against `transfer serve` behind a proxy that holds every request 20 ms (a store that far away, so
//! the run is bound by latency, as against a real store, and not by this machine's two cores first).
//!
//! `cargo bench --bench shards` seeds N small objects (default 10,000 of 1 KiB) and 4 of 64 MiB, then for each
//! P in 1 (the single sync), 2, 4, 8 copies them server-side to a fresh prefix and reports the wall time, the
//! speed-up and efficiency (speed-up / P), the LIST requests against the single run's, and whether the
//! destination holds every source key exactly once (0 missing, 0 extra). It rewrites `benches/SHARDS.md`.
//! Environment: `TRANSFER_SHARDS_OBJECTS` (10000), `TRANSFER_SHARDS_DELAY_MS` (20), `TRANSFER_SHARDS_JOBS`
//! (8 requests in flight per process), `TRANSFER_SHARDS_PER_PROCESS` (4 shards in the plan per process).
//! Under `cargo test` it runs a smoke pass (200 objects, P = 2, no delay) and writes nothing.

#[path = "support/proxy.rs"]
mod proxy;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::Credentials;
use transfer_engine::store::ListRequest;
use transfer_engine::ObjectStore;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const AK: &str = "shards-bench-key";
const SK: &str = "shards-bench-secret";
const BUCKET: &str = "scale";
const BIN: &str = env!("CARGO_BIN_EXE_transfer");

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Serve {
    child: Child,
    endpoint: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(root: &Path) -> Res<Serve> {
    let mut child = Command::new(BIN)
        .args(["serve", "--no-fsync", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let endpoint = line.trim().strip_prefix("listening on ").ok_or("serve did not say where it listens")?.to_owned();
    Ok(Serve { child, endpoint })
}

/// `transfer ARGS` against `endpoint` (S3 dialect), failing with its stderr.
fn transfer(endpoint: &str, ledger: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SK)
        .env("TRANSFER_ENDPOINT", endpoint)
        .env("TRANSFER_REGION", "us-east-1")
        .env("TRANSFER_LEDGER", ledger)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn run(mut c: Command) -> Res<()> {
    let out = c.output()?;
    if !out.status.success() {
        return Err(format!("{c:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// Every key under `prefix`, relative to it.
fn keys(rt: &tokio::runtime::Runtime, store: &HttpStore, prefix: &str) -> Res<BTreeSet<String>> {
    rt.block_on(async {
        let mut out = BTreeSet::new();
        let mut req = ListRequest::default().prefix(Some(prefix.to_owned())).max_keys(Some(1000));
        loop {
            let page = store.list_objects(BUCKET, &req).await?;
            out.extend(page.objects.iter().map(|o| o.key[prefix.len()..].to_owned()));
            match page.next_continuation_token {
                Some(t) if page.is_truncated => req = req.continuation_token(Some(t)),
                _ => return Ok(out),
            }
        }
    })
}

struct Row {
    processes: u64,
    shards: u64,
    plan_secs: f64,
    secs: f64,
    lists: u64,
    requests: u64,
    missing: usize,
    extra: usize,
    /// The plan's heaviest shard (its range's bytes and 64 KiB an object, and its chunks' bytes) against an even
    /// share of all of it.
    largest: f64,
    splits: usize,
}

/// Runs `shards` shards of the plan at `plan` as an Indexed Job of that many completions, `p` at once (the next
/// index starts when one ends), then the merge; answers the shards' wall time.
fn run_shards(proxy: &proxy::CountingProxy, dir: &Path, plan: &Path, shards: u64, p: u64) -> Res<f64> {
    let t = Instant::now();
    let mut next = 0;
    let mut running: Vec<(u64, Child)> = Vec::new();
    while next < shards || !running.is_empty() {
        while running.len() < p as usize && next < shards {
            let mut c = transfer(
                &proxy.endpoint,
                &dir.join(format!("l{next}.db")),
                &["shard", "run", plan.to_str().unwrap(), "--index", &next.to_string()],
            );
            running.push((next, c.spawn()?));
            next += 1;
        }
        let mut i = 0;
        while i < running.len() {
            if let Some(status) = running[i].1.try_wait()? {
                let (index, child) = running.remove(i);
                if !status.success() {
                    let out = child.wait_with_output()?;
                    return Err(format!("shard {index}: {}", String::from_utf8_lossy(&out.stderr)).into());
                }
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t.elapsed().as_secs_f64();
    run(transfer(&proxy.endpoint, &dir.join("l.db"), &["shard", "merge", plan.to_str().unwrap()]))?;
    Ok(secs)
}

/// One migration of `src/` (relative to the bucket) to a fresh prefix: a single `transfer sync` for `p` = 1,
/// else a plan of `p × per_process` shards run `p` at once; with every key checked at the destination.
#[allow(clippy::too_many_arguments)]
fn migrate(
    rt: &tokio::runtime::Runtime,
    store: &HttpStore,
    proxy: &proxy::CountingProxy,
    work: &Path,
    (src, dest): (&str, &str),
    source: &BTreeSet<String>,
    (p, per_process, jobs): (u64, u64, u64),
) -> Res<Row> {
    let dir = work.join(format!("run-{}", dest.trim_end_matches('/').replace('/', "-")));
    std::fs::create_dir_all(&dir)?;
    let jobs_arg = jobs.to_string();
    let (from, to) = (format!("s3://{BUCKET}/{src}"), format!("s3://{BUCKET}/{dest}"));
    proxy.take();
    let (plan_secs, secs, shards, largest, splits) = if p == 1 {
        let t = Instant::now();
        run(transfer(&proxy.endpoint, &dir.join("l.db"), &["sync", "--jobs", &jobs_arg, &from, &to]))?;
        (0.0, t.elapsed().as_secs_f64(), 1, 1.0, 0)
    } else {
        let plan = dir.join("plan");
        let shards = p * per_process;
        let t = Instant::now();
        run(transfer(
            &proxy.endpoint,
            &dir.join("l.db"),
            &[
                "shard",
                "plan",
                &from,
                &to,
                "--jobs",
                &jobs_arg,
                "--shards",
                &shards.to_string(),
                "--plan",
                plan.to_str().unwrap(),
            ],
        ))?;
        let plan_secs = t.elapsed().as_secs_f64();
        // The plan's own requests (one listing of the source, the split objects' uploads) are not the copy's.
        proxy.take();
        // The planner may make fewer ranges than asked (a heavy object takes several shares).
        let planned: serde_json::Value = serde_json::from_slice(&std::fs::read(plan.join("plan.json"))?)?;
        let ranges = planned["shards"].as_array().ok_or("a plan without shards")?;
        // What the planner balances: bytes, and 64 KiB for each object's requests.
        let loads: Vec<u64> = ranges
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_u64().unwrap_or(0);
                n("bytes") + n("objects") * 65_536 + n("chunk_bytes")
            })
            .collect();
        let even = loads.iter().sum::<u64>() as f64 / loads.len().max(1) as f64;
        let largest = loads.iter().copied().max().unwrap_or(0) as f64 / even.max(1.0);
        let splits = planned["splits"].as_array().map_or(0, Vec::len);
        let shards = ranges.len() as u64;
        let secs = run_shards(proxy, &dir, &plan, shards, p)?;
        (plan_secs, secs, shards, largest, splits)
    };
    let counts = proxy.take();
    let got = keys(rt, store, dest)?;
    let row = Row {
        processes: p,
        shards,
        plan_secs,
        secs,
        lists: counts.get("LIST").copied().unwrap_or(0),
        requests: counts.values().sum(),
        missing: source.difference(&got).count(),
        extra: got.difference(source).count(),
        largest,
        splits,
    };
    eprintln!(
        "  {src} → {dest}: {p} process(es), {shards} shard(s): {:.2} s (plan {:.2} s), {} LIST, {} requests, \
         heaviest shard {:.2} × even, {splits} split, {} missing, {} extra",
        row.secs, row.plan_secs, row.lists, row.requests, row.largest, row.missing, row.extra
    );
    if row.missing + row.extra > 0 {
        return Err(format!("{p} processes: {} missing, {} extra keys", row.missing, row.extra).into());
    }
    Ok(row)
}

/// Seeds `bucket/prefix` from the directory `src` with one `transfer cp -r`.
fn seed(endpoint: &str, work: &Path, src: &Path, prefix: &str) -> Res<()> {
    let t = Instant::now();
    run(transfer(
        endpoint,
        &work.join(format!("seed-{}.db", prefix.trim_end_matches('/'))),
        &["cp", "-r", "--create-bucket", "--jobs", "64", src.to_str().unwrap(), &format!("s3://{BUCKET}/{prefix}")],
    ))?;
    eprintln!("  seeded {prefix} in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Res<()> {
    std::fs::create_dir_all(path.parent().ok_or("no parent")?)?;
    Ok(std::fs::write(path, bytes)?)
}

fn main() -> Res<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let objects = if full { env_u64("TRANSFER_SHARDS_OBJECTS", 10_000) } else { 200 };
    let listed = if full { env_u64("TRANSFER_SHARDS_LIST_OBJECTS", 100_000) } else { 2_000 };
    let delay = Duration::from_millis(if full { env_u64("TRANSFER_SHARDS_DELAY_MS", 20) } else { 0 });
    let jobs = env_u64("TRANSFER_SHARDS_JOBS", 8);
    let per_process = env_u64("TRANSFER_SHARDS_PER_PROCESS", 4);
    let (big, huge) = if full { (4, 2u64 << 30) } else { (1, 80 << 20) };
    let widths: Vec<u64> = if full { vec![1, 2, 4, 8] } else { vec![1, 2] };
    let work = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let server = serve(&work.path().join("store"))?;
    let store = HttpStore::s3()
        .endpoint(server.endpoint.clone())
        .region("us-east-1")
        .credentials(Credentials::new(AK, SK))
        .build()?;
    eprintln!(
        "shards bench: {objects} × 1 KiB and {big} × 64 MiB, {} ms per request, {jobs} in flight a process",
        delay.as_millis()
    );

    // The uniform source: seeded from a directory, straight to the server.
    let src = work.path().join("src");
    for i in 0..objects {
        write(&src.join(format!("p{:03}/o{i:07}", i % 500)), &i.to_le_bytes().repeat(128))?;
    }
    for i in 0..big {
        write(&src.join(format!("big/b{i}")), &vec![i as u8; 64 << 20])?;
    }
    seed(&server.endpoint, work.path(), &src, "src/")?;
    let source = keys(&rt, &store, "src/")?;
    // The skewed one: 80% of the small objects' bytes under hot/, and one huge object.
    let skew = work.path().join("skew");
    let (cold, hot) = if full { (2_000u64, 200u64) } else { (200, 20) };
    for i in 0..cold {
        write(&skew.join(format!("cold/c{i:04}")), &i.to_le_bytes().repeat(25 * 128))?;
    }
    for i in 0..hot {
        write(&skew.join(format!("hot/h{i:03}")), &i.to_le_bytes().repeat(128 * 1024))?;
    }
    let f = std::fs::File::create(skew.join("huge.bin"))?;
    f.set_len(huge)?;
    drop(f);
    seed(&server.endpoint, work.path(), &skew, "skew/")?;
    let skewed = keys(&rt, &store, "skew/")?;

    let proxy = proxy::CountingProxy::with_delay(&rt, &server.endpoint, delay)?;
    let mut rows = Vec::new();
    for &p in &widths {
        rows.push(migrate(
            &rt,
            &store,
            &proxy,
            work.path(),
            ("src/", &format!("p{p}/")),
            &source,
            (p, per_process, jobs),
        )?);
    }
    let mut skew_rows = Vec::new();
    for p in [1, 4.min(*widths.last().unwrap_or(&1))] {
        skew_rows.push(migrate(
            &rt,
            &store,
            &proxy,
            work.path(),
            ("skew/", &format!("skew-p{p}/")),
            &skewed,
            (p, per_process, jobs),
        )?);
    }

    // Listing throughput: one `transfer ls -r` (page after page) against the planner's listing (the prefixes
    // under the source, 16 at a time) of the same keys.
    let many = work.path().join("many");
    for i in 0..listed {
        write(&many.join(format!("d{:03}/k{i:07}", i % 100)), b"")?;
    }
    seed(&server.endpoint, work.path(), &many, "many/")?;
    std::fs::remove_dir_all(&many)?;
    proxy.take();
    let t = Instant::now();
    run(transfer(&proxy.endpoint, &work.path().join("ls.db"), &["ls", "-r", &format!("s3://{BUCKET}/many/")]))?;
    let ls_secs = t.elapsed().as_secs_f64();
    let ls_lists = proxy.take().get("LIST").copied().unwrap_or(0);
    let plan_dir = work.path().join("many-plan");
    let t = Instant::now();
    run(transfer(
        &proxy.endpoint,
        &work.path().join("many.db"),
        &[
            "shard",
            "plan",
            &format!("s3://{BUCKET}/many/"),
            &format!("s3://{BUCKET}/many-copy/"),
            "--shards",
            "64",
            "--plan",
            plan_dir.to_str().unwrap(),
        ],
    ))?;
    let plan_secs = t.elapsed().as_secs_f64();
    let plan_lists = proxy.take().get("LIST").copied().unwrap_or(0);
    let planned: serde_json::Value = serde_json::from_slice(&std::fs::read(plan_dir.join("plan.json"))?)?;
    if planned["listed"]["objects"].as_u64() != Some(listed) {
        return Err(format!("the plan listed {} of {listed} keys", planned["listed"]["objects"]).into());
    }
    eprintln!(
        "  listing {listed} keys: ls -r {ls_secs:.2} s ({ls_lists} LIST), plan {plan_secs:.2} s ({plan_lists} LIST)"
    );
    if !full {
        return Ok(());
    }
    let mut md = String::from(
        "# Scale-out on one machine: one sync against the same migration in shards\n\nRewritten by `cargo bench --bench shards` (`benches/shards.rs`). Do not edit by hand.\n\n",
    );
    md.push_str(&format!(
        "- {}\n- {objects} objects of 1 KiB and {big} of 64 MiB under one prefix, copied server-side to a fresh prefix of the same bucket of `transfer serve` (S3 dialect, no fsync), through a proxy holding every request {} ms; {jobs} requests in flight in each process; {per_process} shards in the plan per process at once (an Indexed Job of that many completions and that parallelism).\n- The plan (one listing of the source, and the split objects' uploads initiated) is timed apart ('plan s') and its requests are not in the counts; every run's destination listed against the source afterwards.\n\n",
        chrono_like_now(),
        delay.as_millis()
    ));
    let table = |rows: &[Row], md: &mut String| {
        let base = &rows[0];
        md.push_str("| processes | shards | split objects | heaviest shard × even share | plan s | wall s | speed-up | efficiency | LIST requests | × the single run's LISTs | all requests | missing | extra |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in rows {
            let speedup = base.secs / r.secs;
            md.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {} | {} | {} |\n",
                r.processes,
                r.shards,
                r.splits,
                r.largest,
                r.plan_secs,
                r.secs,
                speedup,
                speedup / r.processes as f64,
                r.lists,
                r.lists as f64 / base.lists.max(1) as f64,
                r.requests,
                r.missing,
                r.extra
            ));
        }
    };
    table(&rows, &mut md);
    md.push_str(&format!(
        "\n## A skewed keyspace\n\n2,000 objects of 25 KiB under cold/, 200 of 1 MiB under hot/ (80% of the small objects' bytes) and one of {} GiB, the same way:\n\n",
        huge >> 30
    ));
    table(&skew_rows, &mut md);
    md.push_str(&format!(
        "\n## Listing\n\n{listed} keys under 100 prefixes, through the same proxy: `transfer ls -r` (page after page) {ls_secs:.2} s ({ls_lists} LIST requests, {:.0} keys/s); the planner's listing of them (`shard plan --shards 64`: the prefixes 16 at a time) {plan_secs:.2} s ({plan_lists} LIST requests, {:.0} keys/s): {:.2}× faster.\n",
        listed as f64 / ls_secs,
        listed as f64 / plan_secs,
        ls_secs / plan_secs
    ));
    md.push_str(NOTES);
    std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/SHARDS.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// How to read the tables, appended to them.
const NOTES: &str =
    "\nHow to read it: every process and the server share this machine's two cores, so efficiency falls \
where they saturate. LIST requests: each shard lists its own range of both sides, so a shard adds at most one \
partial page a side to a single pass; with 10,000 keys (ten 1,000-key pages) that is visible, with ranges of a \
million keys it is 0.1% (the column 'all requests' is the cost that matters: the copies and the requests around \
them). An object of at least half a shard's share (and 64 MiB) is split: the planner initiates its upload, its \
parts go in chunks to several shards, and the merge completes it; the heaviest shard (bytes, and 64 KiB an \
object for its requests: what the plan balances) against an even share shows how well the plan balanced. The plan may hold fewer shards than asked: a range never splits an \
object below that size.\n";

/// The date and time now, UTC, from the system clock (the bench needs no calendar crate).
fn chrono_like_now() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output();
    out.map(|o| format!("Date: {}", String::from_utf8_lossy(&o.stdout).trim())).unwrap_or_default()
}
