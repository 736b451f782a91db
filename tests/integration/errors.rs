//! Bad input and failures: clear errors naming the problem, no panics, no hangs, and the
//! context stays usable.

use crate::fixtures::{TempDir, ctx};
use spate::Error;

#[test]
fn missing_path_is_an_error_naming_it() {
    let e = ctx()
        .text_file("/definitely/not/here.txt")
        .expect_err("missing file");
    assert!(matches!(e, Error::InputNotFound(_)));
    assert_eq!(
        e.to_string(),
        "input path does not exist: /definitely/not/here.txt"
    );
}

#[test]
fn glob_matching_nothing_is_an_error_naming_it() {
    let dir = TempDir::new("glob");
    let pattern = dir.str("*.nothing");
    let e = ctx().text_file(&pattern).expect_err("no match");
    assert_eq!(
        e.to_string(),
        format!("input pattern matched no files: {pattern}")
    );
}

#[test]
fn unopenable_file_in_a_directory_is_an_error_naming_it() {
    let dir = TempDir::new("dangling");
    std::fs::write(dir.join("ok.txt"), "fine\n").expect("write");
    std::os::unix::fs::symlink(dir.join("gone.txt"), dir.join("link.txt")).expect("symlink");
    let e = ctx().text_file(&dir.str("")).expect_err("dangling link");
    let msg = e.to_string();
    assert!(
        msg.starts_with("opening ") && msg.contains("link.txt"),
        "{msg}"
    );
}

#[test]
fn invalid_utf8_names_file_and_byte_offset() {
    let dir = TempDir::new("utf8");
    let path = dir.join("bad.txt");
    std::fs::write(&path, b"good line\nbad \xff byte\n").expect("write");
    let rdd = ctx().text_file(&path.to_string_lossy()).expect("exists");
    let e = rdd.count().expect_err("invalid utf-8 fails the job");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "invalid UTF-8 in {} at byte offset 14",
            path.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("partition 0"), "{msg}");
}

#[test]
fn empty_inputs_are_not_errors() {
    let dir = TempDir::new("empty");
    std::fs::write(dir.join("empty.txt"), "").expect("write");
    assert_eq!(
        ctx()
            .text_file(&dir.str("empty.txt"))
            .expect("empty file")
            .count()
            .expect("count"),
        0
    );
    let sub = dir.join("emptydir");
    std::fs::create_dir(&sub).expect("mkdir");
    let r = ctx().text_file(&sub.to_string_lossy()).expect("empty dir");
    assert_eq!(r.num_partitions(), 0);
    assert_eq!(r.collect().expect("collect"), Vec::<String>::new());
    assert!(r.is_empty().expect("is_empty"));
    assert_eq!(
        ctx()
            .parallelize(Vec::<i32>::new(), 3)
            .reduce(|a, b| a + b)
            .expect("reduce"),
        None
    );
}

#[test]
fn directory_glob_and_gzip_inputs() {
    use std::io::Write;
    let dir = TempDir::new("inputs");
    std::fs::write(dir.join("a.txt"), "1\n2\n").expect("write");
    std::fs::write(dir.join("b.txt"), "3\n").expect("write");
    std::fs::write(dir.join("_SUCCESS"), "").expect("write");
    std::fs::write(dir.join(".hidden"), "9\n").expect("write");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"4\n5\n").expect("gzip");
    std::fs::write(dir.join("c.gz"), gz.finish().expect("gzip")).expect("write");
    let mut all = ctx()
        .text_file(&dir.str(""))
        .expect("dir")
        .collect()
        .expect("collect");
    all.sort();
    assert_eq!(all, vec!["1", "2", "3", "4", "5"]);
    let txt = ctx()
        .text_file(&dir.str("*.txt"))
        .expect("glob")
        .count()
        .expect("count");
    assert_eq!(txt, 3);
}

#[test]
fn bzip2_inputs_with_several_streams_are_read_and_damage_is_named() {
    use std::io::Write;
    let dir = TempDir::new("bz2");
    let bz = |text: &[u8]| {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(text).expect("bz2");
        e.finish().expect("bz2")
    };
    // two concatenated streams, as pbzip2 (or `cat a.bz2 b.bz2`) makes
    let mut bytes = bz(b"alpha beta\ngamma\n");
    bytes.extend(bz(b"delta\n"));
    std::fs::write(dir.join("in.bz2"), &bytes).expect("write");
    let lines = ctx()
        .text_file(&dir.str("in.bz2"))
        .expect("bz2")
        .collect()
        .expect("collect");
    assert_eq!(lines, vec!["alpha beta", "gamma", "delta"]);
    let mut broken = bytes.clone();
    let mid = broken.len() / 3;
    broken[mid] ^= 0xff;
    std::fs::write(dir.join("broken.bz2"), &broken).expect("write");
    let e = ctx()
        .text_file(&dir.str("broken.bz2"))
        .expect("planned")
        .collect()
        .expect_err("damaged")
        .to_string();
    assert!(e.contains("broken.bz2"), "{e}");
}

#[test]
fn zstd_inputs_with_several_frames_and_compressed_outputs_round_trip() {
    let dir = TempDir::new("zstd");
    // two concatenated frames, as `cat a.zst b.zst` makes
    let mut bytes = zstd::encode_all(&b"alpha beta\ngamma\n"[..], 3).expect("zstd");
    bytes.extend(zstd::encode_all(&b"delta\n"[..], 1).expect("zstd"));
    std::fs::write(dir.join("in.zst"), bytes).expect("write");
    let lines = ctx()
        .text_file(&dir.str("in.zst"))
        .expect("zst")
        .collect()
        .expect("collect");
    assert_eq!(lines, vec!["alpha beta", "gamma", "delta"]);

    let data: Vec<String> = (0..5000).map(|i| format!("line {i}")).collect();
    for (codec, ext) in [
        (spate::rdd::Codec::Gzip, "gz"),
        (spate::rdd::Codec::Zstd, "zst"),
        (spate::rdd::Codec::Bzip2, "bz2"),
        (spate::rdd::Codec::None, ""),
    ] {
        let out = dir.join(&format!("out-{ext}"));
        ctx()
            .parallelize(data.clone(), 3)
            .save_as_text_file_with(&out, codec)
            .expect("save");
        let part = if ext.is_empty() {
            "part-00002".to_string()
        } else {
            format!("part-00002.{ext}")
        };
        assert!(out.join(&part).exists(), "{part}");
        let mut back = ctx()
            .text_file(&out.to_string_lossy())
            .expect("read back")
            .collect()
            .expect("collect");
        back.sort();
        let mut want = data.clone();
        want.sort();
        assert_eq!(back, want, "{ext}");
    }
}

#[test]
fn a_corrupt_compressed_file_names_the_file() {
    let dir = TempDir::new("zstd-bad");
    std::fs::write(dir.join("bad.zst"), b"this is not zstd at all").expect("write");
    let err = ctx()
        .text_file(&dir.str("bad.zst"))
        .expect("listed")
        .count()
        .expect_err("corrupt");
    assert!(err.to_string().contains("bad.zst"), "{err}");
}

#[test]
fn a_panicking_closure_fails_the_job_with_message_stage_and_partition() {
    let r = ctx().range(0, 100, 4).map(|x| {
        if x == 60 {
            panic!("bad record {x}");
        }
        x
    });
    let e = r.count().expect_err("panic fails the job");
    let msg = e.to_string();
    assert!(matches!(e, Error::JobFailed { partition: 2, .. }), "{msg}");
    assert!(msg.contains("panicked: bad record 60"), "{msg}");
    assert!(msg.contains("stage"), "{msg}");
    assert!(msg.contains("partition 2"), "{msg}");
    // the context is still usable
    assert_eq!(ctx().range(0, 10, 2).count().expect("later job runs"), 10);
}

#[test]
fn a_panic_in_a_reduce_side_closure_fails_the_job_cleanly() {
    let pairs = ctx().range(0, 50, 3).map(|x| (x % 5, x));
    let r = pairs.reduce_by_key(|a, b| {
        if a + b > 200 {
            panic!("overflow guard")
        } else {
            a + b
        }
    });
    let e = r.collect().expect_err("fails");
    assert!(e.to_string().contains("overflow guard"), "{e}");
}

#[test]
fn retries_until_max_failures_then_reports_the_first_cause() {
    let ctx = spate::Context::builder()
        .master("local[2,3]")
        .build()
        .expect("ctx");
    use std::sync::atomic::{AtomicUsize, Ordering};
    static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
    let e = ctx
        .range(0, 4, 1)
        .map(|x| -> i64 {
            let n = ATTEMPTS.fetch_add(1, Ordering::SeqCst);
            panic!("attempt {n} failed on {x}");
        })
        .collect()
        .expect_err("always fails");
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 3, "three attempts");
    match e {
        Error::JobFailed {
            attempts, message, ..
        } => {
            assert_eq!(attempts, 3);
            assert!(
                message.contains("attempt 0 failed on 0"),
                "first cause kept: {message}"
            );
        }
        other => panic!("expected JobFailed, got {other}"),
    }
}

#[test]
fn a_task_that_fails_once_succeeds_on_retry() {
    let ctx = spate::Context::builder()
        .master("local[2]")
        .max_failures(2)
        .build()
        .expect("ctx");
    use std::sync::atomic::{AtomicBool, Ordering};
    static FAILED: AtomicBool = AtomicBool::new(false);
    let v = ctx
        .range(0, 6, 3)
        .map(|x| {
            if x == 3 && !FAILED.swap(true, Ordering::SeqCst) {
                panic!("transient");
            }
            x * 2
        })
        .collect()
        .expect("retry succeeds");
    assert_eq!(v, vec![0, 2, 4, 6, 8, 10]);
}

#[test]
fn save_refuses_to_overwrite_and_writes_atomically() {
    let dir = TempDir::new("save");
    let out = dir.join("out");
    ctx().range(0, 10, 3).save_as_text_file(&out).expect("save");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    );
    let back = ctx()
        .text_file(&out.to_string_lossy())
        .expect("read back")
        .map(|l| l.parse::<i64>().unwrap_or(-1));
    assert_eq!(
        back.collect().expect("collect"),
        (0..10).collect::<Vec<_>>()
    );
    let e = ctx()
        .range(0, 1, 1)
        .save_as_text_file(&out)
        .expect_err("exists");
    assert!(matches!(e, Error::OutputExists(_)), "{e}");
}

#[test]
fn bad_master_urls_are_config_errors() {
    for m in ["local[0]", "spark://x", "local[two]"] {
        let e = spate::Context::builder()
            .master(m)
            .build()
            .err()
            .expect("rejected");
        assert!(e.to_string().contains("invalid master URL"), "{e}");
    }
}

#[test]
fn unreachable_mesos_master_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let e = spate::Context::builder()
        .master("mesos://127.0.0.1:1")
        .build()
        .err()
        .expect("no master there");
    let msg = e.to_string();
    assert!(
        matches!(e, Error::Unreachable { .. }),
        "not a configuration error: {msg}"
    );
    assert!(
        msg.starts_with("cannot reach the Mesos master at 127.0.0.1:1: "),
        "{msg}"
    );
    assert!(msg.ends_with("is it running?"), "{msg}");
    // Through ZooKeeper: nothing listens there either.
    let e = spate::Context::builder()
        .master("mesos://zk://127.0.0.1:1/mesos")
        .build()
        .err()
        .expect("no ZooKeeper there");
    let msg = e.to_string();
    assert!(matches!(e, Error::Unreachable { .. }), "{msg}");
    assert!(msg.contains("ZooKeeper at 127.0.0.1:1"), "{msg}");
}

#[test]
fn a_failing_pipe_command_fails_the_job_with_its_status_and_stderr() {
    let r = ctx().parallelize(vec![1, 2, 3], 2);
    let e = r
        .pipe(&["sh", "-c", "echo 'no such table: users' >&2; exit 3"])
        .collect()
        .expect_err("the command fails");
    let msg = e.to_string();
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("no such table: users"), "{msg}");
    let e = r
        .pipe(&["/nonexistent/spate-command"])
        .count()
        .expect_err("cannot start");
    assert!(
        e.to_string()
            .contains("cannot start `/nonexistent/spate-command`"),
        "{e}"
    );
}

#[test]
fn zip_of_mismatched_rdds_is_an_error() {
    let a = ctx().range(0, 10, 2);
    assert!(matches!(
        a.zip(&ctx().range(0, 10, 3)),
        Err(Error::ZipMismatch(_))
    ));
    let z = a.zip(&a.filter(|x| x % 2 == 0)).expect("same partitions");
    assert!(matches!(z.collect(), Err(Error::JobFailed { .. })));
}

#[test]
fn actions_after_stop_fail_cleanly() {
    let ctx = spate::Context::builder()
        .master("local[1]")
        .build()
        .expect("ctx");
    let r = ctx.range(0, 10, 2);
    ctx.stop();
    let e = r.count().expect_err("stopped");
    assert!(matches!(e, Error::SchedulerStopped(_)), "{e}");
}
