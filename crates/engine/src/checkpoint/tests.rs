use super::*;
use crate::tags::TagSet;
use std::collections::HashSet;

fn spec(source: &str, destination: &str) -> JobSpec {
    JobSpec {
        kind: JobKind::Upload,
        source: source.into(),
        destination: destination.into(),
        note: r#"{"part_size":8388608}"#.into(),
    }
}

fn file_fp(size: u64) -> Fingerprint {
    Fingerprint::File { size, mtime_ns: 1_700_000_000_123_456_789, inode: u64::MAX - 3 }
}

fn part(number: u32) -> PartRow {
    PartRow {
        number,
        offset: u64::from(number - 1) * 1024,
        size: 1024,
        etag: format!("\"etag-{number}\""),
        crc64: Some(u64::MAX - u64::from(number)),
        blake3: format!("{number:064x}"),
        checksum: (number % 2 == 1).then_some(crate::store::Checksum::Crc32c(number * 7919)),
    }
}

fn new_object(l: &Ledger, job: JobId, source: &str) -> ObjectRow {
    l.upsert_object(job, source, "bucket", &format!("dst/{source}"), 4096, &file_fp(4096), 1024, None).unwrap()
}

#[test]
fn open_migrate_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/ledger.db");
    let tags = TagSet::from_pairs([("k4+-=", "+-=._:/"), ("a", "")]).unwrap();
    let fp_obj = Fingerprint::Object { etag: "\"abc\"".into(), version_id: Some("v1".into()), size: 7 };
    let (job, obj_id) = {
        let l = Ledger::open(&path).unwrap();
        let job = l.create_job(&spec("/src", "oss://b/p")).unwrap();
        let o = l.upsert_object(job, "/src/a", "b", "p/a", 4096, &file_fp(4096), 1024, Some(&tags)).unwrap();
        l.upsert_object(job, "b2/k", "b", "p/k", 7, &fp_obj, 1024, None).unwrap();
        l.set_upload(o.id, Some("U1")).unwrap();
        let w = l.part_writer();
        w.record(o.id, part(1));
        w.record(o.id, part(2));
        futures::executor::block_on(w.flush()).unwrap();
        (job, o.id)
    };
    let l = Ledger::open(&path).unwrap();
    let c = l.conn();
    let app_id: i32 = c.pragma_query_value(None, "application_id", |r| r.get(0)).unwrap();
    let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    drop(c);
    assert_eq!((app_id, version, mode.as_str()), (APPLICATION_ID, SCHEMA_VERSION, "wal"));
    assert_eq!(l.find_job(JobKind::Upload, "/src", "oss://b/p").unwrap(), Some(job));
    let o = l.object(job, "/src/a").unwrap().unwrap();
    assert_eq!(o.id, obj_id);
    assert_eq!(o.fingerprint, file_fp(4096));
    assert_eq!(o.upload_id.as_deref(), Some("U1"));
    assert_eq!(o.state, ObjectState::Uploading);
    assert_eq!(o.tag_set().unwrap(), Some(tags));
    assert_eq!(l.parts(o.id).unwrap(), vec![part(1), part(2)]);
    assert_eq!(l.object(job, "b2/k").unwrap().unwrap().fingerprint, fp_obj);
    // Upsert of an existing source returns the stored row untouched.
    let again = l.upsert_object(job, "/src/a", "other", "other", 1, &file_fp(1), 5, None).unwrap();
    assert_eq!(again, o);
    let jobs = l.jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].counts.total, 2);
    assert_eq!(jobs[0].counts.uploading, 1);
    assert_eq!(jobs[0].counts.pending, 1);
    assert_eq!(jobs[0].counts.bytes_total, 4096 + 7);
}

fn assert_refused(path: &Path, expect: &str) {
    let before = std::fs::read(path).unwrap();
    let err = Ledger::open(path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(expect), "{msg}");
    assert!(msg.contains("--checkpoint"), "{msg}");
    assert_eq!(std::fs::read(path).unwrap(), before, "the refused file was modified");
}

#[test]
fn foreign_sqlite_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "application_id", 0x1234_5678).unwrap();
        c.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('x');",
        )
        .unwrap();
    }
    assert_refused(&path, "another application");
    // No application id at all, but tables: also someone else's.
    let path = dir.path().join("plain.db");
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    assert_refused(&path, "another application");
}

#[test]
fn garbage_file_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    std::fs::write(&path, b"this is not a database, just some text that someone saved here\n".repeat(100)).unwrap();
    assert_refused(&path, "not an SQLite database");
    // A file with the SQLite magic but garbage after it.
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 8192));
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(&path, "SQLite cannot read it");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    Ledger::open(&path).unwrap();
    Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    let before = std::fs::read(&path).unwrap();
    let msg = Ledger::open(&path).unwrap_err().to_string();
    assert!(msg.contains("newer transfer") && msg.contains(&path.display().to_string()), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn job_lock_is_exclusive_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let job = l.create_job(&spec("a", "b")).unwrap();
    let other = l.create_job(&spec("c", "d")).unwrap();
    let first = l.lock_job(job).unwrap();
    assert_eq!(first.job(), job);
    // A second handle (as another process would have) cannot take it.
    let second = Ledger::open(l.path()).unwrap();
    let err = second.lock_job(job).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("job {job}")) && msg.contains("another transfer is running it"), "{msg}");
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    // Other jobs are independent; forgetting a locked job is refused.
    let _other_lock = second.lock_job(other).unwrap();
    assert!(l.forget_job(job).is_err());
    let file = lock::lock_path(l.path(), job);
    assert!(file.exists(), "the lock file is there while the job runs");
    drop(first);
    assert!(!file.exists(), "and goes with the lock: a ledger's directory keeps no file per finished job");
    // A lock left on a file that is no longer at the path (opened just before it went) is nobody's job lock.
    let stale = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    stale.try_lock().unwrap();
    let fresh = l.lock_job(job).unwrap();
    assert!(file.exists());
    drop(fresh);
    drop(stale);
    let again = second.lock_job(job).unwrap();
    drop(again);
    assert!(l.lock_job(JobId(999)).is_err(), "no lock for a job that does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_writer_commits_everything_recorded_before_flush() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let job = l.create_job(&spec("s", "d")).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let o = new_object(&l, job, &format!("f{i}"));
        l.set_upload(o.id, Some(&format!("U{i}"))).unwrap();
        ids.push(o.id);
    }
    let writer = l.part_writer();
    let mut tasks = Vec::new();
    for &id in &ids {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            for n in 1..=1000u32 {
                w.record(id, part(n));
                if n % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    writer.flush().await.unwrap();
    // Read straight from the file through another connection: committed, not just queued.
    let check = Connection::open(l.path()).unwrap();
    let n: i64 = check.query_row("SELECT count(*) FROM parts", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 5000);
    for &id in &ids {
        let parts = l.parts(id).unwrap();
        assert_eq!(parts.len(), 1000);
        assert_eq!(parts[999], part(1000));
    }
    // A flush with nothing queued returns at once; a re-recorded part replaces the old row.
    writer.flush().await.unwrap();
    let mut p = part(1);
    p.etag = "\"new\"".into();
    writer.record(ids[0], p.clone());
    writer.flush().await.unwrap();
    assert_eq!(l.parts(ids[0]).unwrap()[0], p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_on_the_writer_in_order_with_parts_and_a_failed_call_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let job = l.create_job(&spec("s", "d")).unwrap();
    // Steps of many objects at once, as a job with many objects in flight makes them: each answers its own row.
    let rows = futures::future::try_join_all((0..50).map(|i| {
        let source = format!("f{i}");
        l.call(move |l| l.upsert_object(job, &source, "b", "k", 1, &file_fp(1), 1024, None))
    }))
    .await
    .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.source.clone()).collect::<Vec<_>>(),
        (0..50).map(|i| format!("f{i}")).collect::<Vec<_>>()
    );
    let o = rows[0].clone();
    l.call(move |l| l.set_upload(o.id, Some("U"))).await.unwrap();
    // Parts recorded before a call are in before it runs: finishing the object right after them, without a
    // flush, deletes them all and leaves none to arrive later.
    let w = l.part_writer();
    for n in 1..=20 {
        w.record(o.id, part(n));
    }
    l.call(move |l| l.finish_object_tagged(o.id, "\"e\"", None, None, true)).await.unwrap();
    w.flush().await.unwrap();
    assert!(l.parts(o.id).unwrap().is_empty());
    assert_eq!(l.object_by_id(o.id).unwrap().state, ObjectState::Tagged);
    // A step that fails after writing leaves no trace, and the steps beside it in the batch still commit.
    let (a, b) = (rows[1].id, rows[2].id);
    let failing = l.call(move |l| {
        l.skip_object(a)?;
        Err::<(), _>(Error::invalid("the step fails after writing"))
    });
    let fine = l.call(move |l| l.skip_object(b));
    let (failing, fine) = futures::join!(failing, fine);
    assert_eq!(failing.unwrap_err().kind(), ErrorKind::InvalidInput);
    fine.unwrap();
    let check = Connection::open(l.path()).unwrap();
    let state =
        |id: i64| -> String { check.query_row("SELECT state FROM objects WHERE id = ?1", [id], |r| r.get(0)).unwrap() };
    assert_eq!((state(a).as_str(), state(b).as_str()), ("pending", "skipped"));
    // A step that panics fails alone, undone; the writer and the connection carry on.
    let panicked = l
        .call(move |l| -> Result<()> {
            l.skip_object(a)?;
            panic!("a ledger step that panics (expected by this test)")
        })
        .await;
    assert_eq!(panicked.unwrap_err().kind(), ErrorKind::Io);
    assert_eq!(state(a), "pending");
    let c = rows[3].id;
    l.call(move |l| l.skip_object(c)).await.unwrap();
    assert_eq!(state(c), "skipped");
    assert!(l.create_job(&spec("after", "the panic")).is_ok(), "direct calls are not caught in a dead transaction");
    assert_eq!(
        Connection::open(l.path()).unwrap().query_row("SELECT count(*) FROM jobs", [], |r| r.get::<_, i64>(0)).unwrap(),
        2
    );
    // A caller that stops waiting leaves the step holding the last clone of the ledger: it still runs and
    // commits, and the writer thread, dropping the ledger itself, ends without joining itself.
    use futures::FutureExt as _;
    drop(w);
    let abandoned = async move {
        l.call(move |l| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            l.skip_object(a)
        })
        .await
    };
    assert!(abandoned.now_or_never().is_none(), "sent, not yet answered");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state(a) != "skipped" {
        assert!(std::time::Instant::now() < deadline, "the abandoned step never committed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_for_objects_without_an_upload_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let job = l.create_job(&spec("s", "d")).unwrap();
    let o = new_object(&l, job, "f");
    let w = l.part_writer();
    w.record(o.id, part(1)); // no upload id yet
    w.record(123_456, part(1)); // no such object
    w.flush().await.unwrap();
    assert!(l.parts(o.id).unwrap().is_empty());
    l.set_upload(o.id, Some("U")).unwrap();
    w.record(o.id, part(1));
    w.flush().await.unwrap();
    assert_eq!(l.parts(o.id).unwrap().len(), 1);
}

#[test]
fn reset_and_upload_changes_drop_parts() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let job = l.create_job(&spec("s", "d")).unwrap();
    let o = new_object(&l, job, "f");
    let keep = new_object(&l, job, "g");
    l.set_upload(o.id, Some("U1")).unwrap();
    l.set_upload(keep.id, Some("U9")).unwrap();
    let w = l.part_writer();
    for n in 1..=4 {
        w.record(o.id, part(n));
        w.record(keep.id, part(n));
    }
    // No explicit flush: reset waits for the queued parts, so none lands after it.
    let changed = Fingerprint::File { size: 9000, mtime_ns: -5, inode: 1 };
    l.reset_object(o.id, &changed, 9000, 2048).unwrap();
    let r = l.object_by_id(o.id).unwrap();
    assert_eq!(r.state, ObjectState::Pending);
    assert_eq!(r.upload_id, None);
    assert_eq!((r.size, r.plan_part_size, r.fingerprint), (9000, 2048, changed));
    assert!(l.parts(o.id).unwrap().is_empty());
    assert_eq!(l.parts(keep.id).unwrap().len(), 4, "other objects keep their parts");
    // Same upload id again keeps the parts; a new one drops them.
    l.set_upload(keep.id, Some("U9")).unwrap();
    assert_eq!(l.parts(keep.id).unwrap().len(), 4);
    l.set_upload(keep.id, Some("U10")).unwrap();
    assert!(l.parts(keep.id).unwrap().is_empty());
    assert!(l.reset_object(987_654, &file_fp(1), 1, 1).is_err());
}

#[test]
fn object_lifecycle_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let job = l.create_job(&spec("s", "d")).unwrap();
    let tags = TagSet::from_pairs([("team", "x")]).unwrap();
    let tagged = l.upsert_object(job, "t", "b", "t", 100, &file_fp(100), 10, Some(&tags)).unwrap();
    let plain = l.upsert_object(job, "p", "b", "p", 50, &file_fp(50), 10, None).unwrap();
    let bad = new_object(&l, job, "x");
    let skip = new_object(&l, job, "s");
    l.set_upload(tagged.id, Some("U")).unwrap();
    l.finish_object(tagged.id, "\"E\"", Some(u64::MAX), Some("b3")).unwrap();
    let r = l.object_by_id(tagged.id).unwrap();
    assert_eq!(r.state, ObjectState::Completed, "tags still to apply");
    assert_eq!((r.etag.as_deref(), r.crc64, r.blake3.as_deref()), (Some("\"E\""), Some(u64::MAX), Some("b3")));
    l.fail_object(tagged.id, "AccessDenied on PutObjectTagging").unwrap();
    let r = l.object_by_id(tagged.id).unwrap();
    assert_eq!(r.state, ObjectState::Completed, "a failure after the object exists must not un-complete it");
    assert_eq!(r.error.as_deref(), Some("AccessDenied on PutObjectTagging"));
    l.mark_tags_applied(tagged.id).unwrap();
    let r = l.object_by_id(tagged.id).unwrap();
    assert!(r.tags_applied && r.state == ObjectState::Tagged && r.state.is_done());
    l.finish_object(plain.id, "\"P\"", None, None).unwrap();
    assert_eq!(l.object_by_id(plain.id).unwrap().state, ObjectState::Tagged, "nothing to tag: done");
    l.fail_object(bad.id, "NoSuchBucket").unwrap();
    assert_eq!(l.object_by_id(bad.id).unwrap().error.as_deref(), Some("NoSuchBucket"));
    l.skip_object(skip.id).unwrap();
    let c = l.counts(job).unwrap();
    assert_eq!((c.tagged, c.failed, c.skipped, c.pending, c.total), (2, 1, 1, 0, 4));
    assert_eq!((c.bytes_total, c.bytes_done), (100 + 50 + 4096 * 2, 150));
    assert!(l.finish_object(424_242, "e", None, None).is_err());

    l.set_job_state(job, JobState::Done).unwrap();
    assert_eq!(l.jobs().unwrap()[0].state, JobState::Done);
    l.forget_job(job).unwrap();
    assert!(l.jobs().unwrap().is_empty());
    assert_eq!(l.counts(job).unwrap(), Counts::default());
    assert!(l.object_by_id(tagged.id).is_err());
    assert!(!lock::lock_path(l.path(), job).exists());
}

#[test]
fn paging_walks_every_object_once() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let job = l.create_job(&spec("s", "d")).unwrap();
    let noise = l.create_job(&spec("s2", "d2")).unwrap();
    for i in 0..250 {
        let o = new_object(&l, job, &format!("k{i:03}"));
        if i % 3 == 0 {
            l.fail_object(o.id, "boom").unwrap();
        }
        new_object(&l, noise, &format!("n{i}"));
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = l.objects(job, None, after, 64).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 64);
        assert!(page.iter().all(|o| o.job == job));
        after = page.last().unwrap().id;
        seen.extend(page.into_iter().map(|o| o.source));
    }
    assert_eq!(seen.len(), 250);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 250);
    assert_eq!(seen[0], "k000");
    let mut failed = Vec::new();
    let mut after = 0;
    loop {
        let page = l.objects(job, Some(ObjectState::Failed), after, 10).unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        assert!(page.iter().all(|o| o.state == ObjectState::Failed && o.error.as_deref() == Some("boom")));
        failed.extend(page.into_iter().map(|o| o.source));
    }
    assert_eq!(failed.len(), 84);
    assert_eq!(failed[1], "k003");
}

#[test]
fn find_job_returns_the_newest_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    assert_eq!(l.find_job(JobKind::Upload, "s", "d").unwrap(), None);
    let a = l.create_job(&spec("s", "d")).unwrap();
    let b = l.create_job(&spec("s", "d")).unwrap();
    let _other = l.create_job(&spec("s", "elsewhere")).unwrap();
    assert_eq!(l.find_job(JobKind::Upload, "s", "d").unwrap(), Some(b));
    l.set_job_state(b, JobState::Done).unwrap();
    assert_eq!(l.find_job(JobKind::Upload, "s", "d").unwrap(), Some(a));
    l.set_job_state(a, JobState::Failed).unwrap();
    assert_eq!(l.find_job(JobKind::Upload, "s", "d").unwrap(), Some(a), "a failed job is resumable");
    l.set_job_state(a, JobState::Done).unwrap();
    assert_eq!(l.find_job(JobKind::Upload, "s", "d").unwrap(), None);
    assert!(l.set_job_state(JobId(77), JobState::Done).is_err());
    assert_eq!(l.find_job(JobKind::Copy, "s", "elsewhere").unwrap(), None, "the kind is part of a job's identity");
}

#[test]
fn schema_has_no_place_for_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let c = l.conn();
    let mut names = Vec::new();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(tables.len(), 6, "{tables:?}");
    for t in &tables {
        names.push(t.clone());
        let cols: Vec<String> = c
            .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(!cols.is_empty());
        names.extend(cols);
    }
    assert!(names.iter().any(|n| n == "upload_id"), "the column scan sees real columns: {names:?}");
    for n in &names {
        let n = n.to_ascii_lowercase();
        for bad in [
            "secret",
            "password",
            "passwd",
            "token",
            "credential",
            "access_key",
            "accesskey",
            "auth",
            "signature",
            "session",
        ] {
            assert!(!n.contains(bad), "column or table {n:?} looks like it holds a secret");
        }
    }
    for sql in schema::MIGRATIONS {
        let sql = sql.to_ascii_lowercase();
        assert!(!sql.contains("secret text") && !sql.contains("password"), "migration mentions a secret column");
    }
}

#[test]
fn default_path_follows_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    };
    assert_eq!(
        default_path_from(env(&[("TRANSFER_LEDGER", "/x/l.db"), ("HOME", "/h")])).unwrap(),
        PathBuf::from("/x/l.db")
    );
    assert_eq!(
        default_path_from(env(&[("XDG_STATE_HOME", "/st"), ("HOME", "/h")])).unwrap(),
        PathBuf::from("/st/transfer/ledger.db")
    );
    assert_eq!(
        default_path_from(env(&[("XDG_STATE_HOME", "relative"), ("HOME", "/h")])).unwrap(),
        PathBuf::from("/h/.local/state/transfer/ledger.db")
    );
    let msg = default_path_from(env(&[("TRANSFER_LEDGER", "")])).unwrap_err().to_string();
    assert!(msg.contains("HOME") && msg.contains("--checkpoint"), "{msg}");
}

#[test]
fn set_tags_replaces_the_tags_to_apply() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let job = l.create_job(&spec("s", "d")).unwrap();
    let row = l.upsert_object(job, "o", "b", "o", 10, &file_fp(10), 10, None).unwrap();
    assert_eq!(row.tag_set().unwrap(), None);
    let tags = TagSet::from_pairs([("k4+-=", "+-=._:/")]).unwrap();
    l.set_tags(row.id, Some(&tags)).unwrap();
    l.finish_object(row.id, "E", None, None).unwrap();
    let r = l.object_by_id(row.id).unwrap();
    assert_eq!(r.tag_set().unwrap(), Some(tags));
    assert_eq!(r.state, ObjectState::Completed, "tags recorded by set_tags remain to be applied");
    l.set_tags(row.id, None).unwrap();
    assert_eq!(l.object_by_id(row.id).unwrap().tag_set().unwrap(), None);
    assert!(l.set_tags(987_654, None).is_err());
}

#[test]
fn forgetting_jobs_and_compacting_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let l = Ledger::open(&path).unwrap();
    let keep = l.create_job(&spec("keep", "d")).unwrap();
    new_object(&l, keep, "kept");
    let size = || {
        l.compact().unwrap();
        std::fs::metadata(&path).unwrap().len()
            + std::fs::metadata(dir.path().join("ledger.db-wal")).map_or(0, |m| m.len())
    };
    let small = size();
    let big = l.create_job(&spec("big", "d")).unwrap();
    for i in 0..3000 {
        new_object(&l, big, &format!("some/longer/path/to/a/file-{i:05}"));
    }
    let grown = size();
    assert!(grown > small + 200_000, "{small} -> {grown}");
    l.forget_job(big).unwrap();
    let compacted = size();
    assert!(
        compacted < small + 20_000,
        "the file is the size of what it keeps again: {small} -> {grown} -> {compacted}"
    );
    assert!(l.object(keep, "kept").unwrap().is_some());
}

#[test]
fn a_new_job_is_in_the_main_file_before_the_log_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let l = Ledger::open(&path).unwrap();
    let job = l.create_job(&spec("/src", "oss://b/p")).unwrap();
    // A kill now, and the `-wal` lost with it: the main file alone still knows the job.
    let alone = dir.path().join("alone.db");
    std::fs::copy(&path, &alone).unwrap();
    let copy = Ledger::open(&alone).unwrap();
    assert_eq!(copy.find_job(JobKind::Upload, "/src", "oss://b/p").unwrap(), Some(job));
}

#[test]
fn a_damaged_ledger_is_reported_when_an_interrupted_job_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let (job, clean) = {
        let l = Ledger::open(&path).unwrap();
        let job = l.create_job(&spec("/src", "oss://b/p")).unwrap();
        let clean = l.create_job(&spec("/src", "oss://b/other")).unwrap();
        for i in 0..3000 {
            new_object(&l, job, &format!("some/longer/source/path/file-{i:05}"));
        }
        l.set_job_state(clean, JobState::Stopped).unwrap();
        // `job` stays `running`: its run was killed.
        l.compact().unwrap();
        (job, clean)
    };
    let l = Ledger::open(&path).unwrap();
    l.check().unwrap();
    l.start_run(job, true).unwrap();
    drop(l);
    // A page in the middle of the objects is overwritten (a disk error, a bad copy).
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096 * (bytes.len() / 4096 / 2);
    bytes[page..page + 4096].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7) as u8);
    std::fs::write(&path, &bytes).unwrap();

    let l = Ledger::open(&path).unwrap();
    // A job that ended cleanly starts without a check; an interrupted one is checked, and the damage named.
    l.start_run(clean, true).unwrap();
    l.start_run(job, false).unwrap(); // a job created by this run is not checked
    let e = l.start_run(job, true).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("is damaged") && msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("move it aside"), "{msg}");
    assert!(l.check().is_err());
}

#[test]
fn migration_5_rebuilds_objects_keeping_rows_parts_ids_and_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        // A ledger as the build before 0005 left it: an upload with two parts, and a deleted newest object.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        for sql in &schema::MIGRATIONS[..4] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        c.pragma_update(None, "user_version", 4).unwrap();
        c.execute_batch(
            "INSERT INTO jobs (kind, source, destination, options_json, created, updated)
                 VALUES ('upload', '/s', 'b/p', '{}', 1, 1);
             INSERT INTO objects (job, source, dest_bucket, dest_key, size, fp_kind, fp_size, fp_mtime_ns, fp_inode,
                                  plan_part_size, upload_id, state, updated)
                 VALUES (1, '/s/a', 'b', 'p/a', 2048, 'file', 2048, '17', 9, 1024, 'U1', 'uploading', 1),
                        (1, '/s/b', 'b', 'p/b', 1, 'file', 1, '17', 10, 1024, NULL, 'pending', 1);
             INSERT INTO parts (object, number, offset, size, etag, crc64, blake3)
                 VALUES (1, 1, 0, 1024, 'e1', 5, 'h1'), (1, 2, 1024, 1024, 'e2', NULL, 'h2');
             DELETE FROM objects WHERE id = 2;",
        )
        .unwrap();
    }
    let l = Ledger::open(&path).unwrap();
    let seq: i64 =
        l.conn().query_row("SELECT seq FROM sqlite_sequence WHERE name = 'objects'", [], |r| r.get(0)).unwrap();
    assert_eq!(seq, 2, "the AUTOINCREMENT counter survives the rebuild");
    let job = JobId(1);
    let row = l.upsert_object(job, "/s/a", "b", "p/a", 2048, &file_fp(2048), 1024, None).unwrap();
    assert_eq!((row.id, row.upload_id.as_ref().map(|u| u.as_str())), (1, Some("U1")));
    let parts = l.parts(1).unwrap();
    assert_eq!(
        parts.iter().map(|p| (p.number, p.etag.as_str(), p.crc64)).collect::<Vec<_>>(),
        [(1, "e1", Some(5)), (2, "e2", None)]
    );
    // The foreign key still cascades, ids are not reused, and a stream's row is accepted.
    let stream = l.upsert_object(job, "-", "b", "p/s", 0, &Fingerprint::Stream, 1024, None).unwrap();
    assert_eq!(stream.fingerprint, Fingerprint::Stream);
    assert!(stream.id > 2, "the deleted object's id 2 is not reused: {}", stream.id);
    l.conn().exec("DELETE FROM objects WHERE id = 1", []).unwrap();
    assert!(l.parts(1).unwrap().is_empty());
    let count: i64 = l.conn().query_row("SELECT count(*) FROM parts", [], |r| r.get(0)).unwrap();
    assert_eq!(count, 0);
}
