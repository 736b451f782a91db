//! What observers see: the event log of real jobs, with the figures checked against the
//! jobs.

use crate::fixtures::TempDir;
use spate::listener::{SchedulerEvent, StageKind, TaskEndStatus, read_event_log};
use spate::metrics::TaskMetrics;

fn log_of(dir: &std::path::Path) -> Vec<SchedulerEvent> {
    let files: Vec<_> = std::fs::read_dir(dir)
        .expect("event log dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "one log per application: {files:?}");
    read_event_log(&files[0]).expect("parses")
}

fn total(events: &[SchedulerEvent], stage: usize) -> (usize, TaskMetrics) {
    let mut m = TaskMetrics::default();
    let mut n = 0;
    for e in events {
        if let SchedulerEvent::TaskEnd {
            stage: s,
            status: TaskEndStatus::Success,
            metrics,
            ..
        } = e
            && *s == stage
        {
            n += 1;
            m.add(metrics);
        }
    }
    (n, m)
}

#[test]
fn the_event_log_records_jobs_stages_and_tasks_with_their_figures() {
    let dir = TempDir::new("eventlog");
    let ctx = spate::Context::builder()
        .master("local[2]")
        .app_name("observed")
        .event_log(&dir.0)
        .build()
        .expect("context");
    let mut counts = ctx
        .range(0, 1000, 4)
        .map(|x| (x % 10, 1u64))
        .reduce_by_key_n(|a, b| a + b, 3)
        .collect()
        .expect("job");
    counts.sort();
    assert_eq!(counts, (0..10).map(|k| (k, 100)).collect::<Vec<_>>());
    let failed = ctx
        .range(0, 10, 2)
        .map(|x| if x == 7 { panic!("seven is bad") } else { x })
        .count();
    assert!(failed.is_err());
    drop(ctx);

    let events = log_of(&dir.0);
    assert!(matches!(
        events.first(),
        Some(SchedulerEvent::ApplicationStart { app, master, .. }) if app == "observed" && master == "local[2]"
    ));
    assert!(matches!(
        events.last(),
        Some(SchedulerEvent::ApplicationEnd { .. })
    ));
    let stages = events
        .iter()
        .find_map(|e| match e {
            SchedulerEvent::JobStart { job: 0, stages, .. } => Some(stages.clone()),
            _ => None,
        })
        .expect("job 0 started");
    assert_eq!(stages.len(), 2);
    let map = stages
        .iter()
        .find(|s| s.kind == StageKind::ShuffleMap)
        .expect("map stage");
    let result = stages
        .iter()
        .find(|s| s.kind == StageKind::Result)
        .expect("result stage");
    assert_eq!((map.tasks, result.tasks), (4, 3));
    assert_eq!(result.parents, vec![map.stage]);
    assert!(map.name.contains("map"), "{}", map.name);

    let (maps, m) = total(&events, map.stage);
    assert_eq!(maps, 4);
    assert_eq!(m.input_records, 1000, "every number read once");
    assert_eq!(m.shuffle_write_records, 40, "10 combined keys per map task");
    let (reduces, r) = total(&events, result.stage);
    assert_eq!(reduces, 3);
    assert_eq!(r.shuffle_read_records, 40);
    assert_eq!(r.input_records, 0);

    // Every task of the finished job ended (the failed job's other task may still run
    // when the context stops).
    let of_job0 = |stage: &usize| *stage == map.stage || *stage == result.stage;
    let starts = events
        .iter()
        .filter(|e| matches!(e, SchedulerEvent::TaskStart { stage, .. } if of_job0(stage)))
        .count();
    let ends = events
        .iter()
        .filter(|e| matches!(e, SchedulerEvent::TaskEnd { stage, .. } if of_job0(stage)))
        .count();
    assert_eq!((starts, ends), (7, 7), "every started task ended");
    let completed: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            SchedulerEvent::StageCompleted {
                stage,
                failure: None,
                ..
            } => Some(*stage),
            _ => None,
        })
        .collect();
    assert!(
        completed.contains(&map.stage) && completed.contains(&result.stage),
        "{completed:?}"
    );

    let failure = events.iter().find_map(|e| match e {
        SchedulerEvent::TaskEnd {
            status: TaskEndStatus::Failed,
            error,
            ..
        } => error.clone(),
        _ => None,
    });
    assert!(failure.is_some_and(|f| f.contains("seven is bad")));
    let ends: Vec<(usize, bool)> = events
        .iter()
        .filter_map(|e| match e {
            SchedulerEvent::JobEnd { job, succeeded, .. } => Some((*job, *succeeded)),
            _ => None,
        })
        .collect();
    assert_eq!(ends, vec![(0, true), (1, false)]);
}

#[test]
fn an_unwritable_event_log_directory_is_a_clear_error() {
    let dir = TempDir::new("eventlog-bad");
    let file = dir.0.join("a-file");
    std::fs::write(&file, "x").expect("file");
    let err = spate::Context::builder()
        .master("local[1]")
        .event_log(file.join("sub"))
        .build()
        .err()
        .expect("cannot create a directory under a file");
    assert!(err.to_string().contains("event log"), "{err}");
    assert!(err.to_string().contains("a-file"), "{err}");
}

/// GET `path` from the UI at `base` (`http://host:port`): status and body.
fn http_get(base: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the UI");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, body.to_string())
}

fn api(base: &str, path: &str) -> serde_json::Value {
    let (status, body) = http_get(base, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn wait_for_job(base: &str, job: usize, want: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // Events reach the UI asynchronously: the job may not be there yet.
        let (status, body) = http_get(base, &format!("/api/jobs/{job}"));
        let v: serde_json::Value = if status == 200 {
            serde_json::from_str(&body).expect("json")
        } else {
            serde_json::Value::Null
        };
        if v["job"]["status"] == want {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {job} never {want}: {status} {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_web_ui_serves_the_jobs_figures_as_pages_and_json() {
    let ctx = spate::Context::builder()
        .master("local[2]")
        .app_name("ui-test")
        .ui(true)
        .build()
        .expect("context");
    let base = ctx.ui_url().expect("UI on").to_string();
    let counts = ctx
        .range(0, 1000, 4)
        .map(|x| (x % 10, 1u64))
        .reduce_by_key_n(|a, b| a + b, 3)
        .collect()
        .expect("job");
    assert_eq!(counts.len(), 10);
    let job = wait_for_job(&base, 0, "succeeded");
    assert_eq!(job["job"]["tasks_done"], 7);
    assert_eq!(job["job"]["tasks_total"], 7);
    let stages = job["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 2);
    let map = stages
        .iter()
        .find(|s| s["kind"] == "shuffle_map")
        .expect("map stage");
    let result = stages
        .iter()
        .find(|s| s["kind"] == "result")
        .expect("result stage");
    assert_eq!(map["metrics"]["input_records"], 1000);
    assert_eq!(map["metrics"]["shuffle_write_records"], 40);
    assert_eq!(result["metrics"]["shuffle_read_records"], 40);
    assert_eq!(result["parents"], serde_json::json!([map["stage"]]));
    assert_eq!(map["status"], "succeeded");

    let stage = api(&base, &format!("/api/stages/{}", map["stage"]));
    let tasks = stage["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 4);
    for t in tasks {
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["executor"], "driver");
        assert!(t["duration_ms"].is_u64());
        assert_eq!(t["metrics"]["input_records"], 250);
    }
    let executors = api(&base, "/api/executors");
    assert_eq!(executors[0]["executor"], "driver");
    assert_eq!(executors[0]["cores"], 2);
    assert_eq!(executors[0]["tasks_done"], 7);
    let app = api(&base, "/api/app");
    assert_eq!(app["app"]["name"], "ui-test");

    let failed = ctx
        .range(0, 10, 2)
        .map(|x| if x == 3 { panic!("three is bad") } else { x })
        .count();
    assert!(failed.is_err());
    let job = wait_for_job(&base, 1, "failed");
    assert!(
        job["job"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("three is bad")),
        "{job}"
    );

    // The HTML twins show the same things.
    let (status, home) = http_get(&base, "/");
    assert_eq!(status, 200);
    assert!(
        home.contains("ui-test")
            && home.contains("href=\"/jobs/0\"")
            && home.contains("three is bad")
    );
    let (_, page) = http_get(&base, "/jobs/0");
    assert!(
        page.contains("<svg id=\"dag\"")
            && page.contains(&format!("href=\"/stages/{}\"", map["stage"]))
    );
    let (_, page) = http_get(&base, &format!("/stages/{}", map["stage"]));
    assert_eq!(
        page.matches("<tr><td class=\"n\">").count(),
        4,
        "one row per task"
    );
    let (_, page) = http_get(&base, "/executors");
    assert!(page.contains("driver"));
    assert_eq!(http_get(&base, "/jobs/99").0, 404);
    assert_eq!(http_get(&base, "/secret").0, 404);
}

#[test]
fn the_web_ui_can_be_off_and_a_taken_port_is_a_clear_error() {
    let off = spate::Context::builder()
        .master("local[1]")
        .ui(false)
        .build()
        .expect("context");
    assert!(off.ui_url().is_none());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let err = spate::Context::builder()
        .master("local[1]")
        .ui_port(port)
        .build()
        .err()
        .expect("port taken");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

/// A Chromium-family browser for the headless test: `SPATE_CHROMIUM`, else the first of
/// the usual names on `PATH`.
fn browser() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("SPATE_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
    .find(|p| p.is_file())
}

/// Load `url` in headless Chromium and return the DOM it built.
fn rendered_dom(browser: &std::path::Path, url: &str) -> String {
    let profile = TempDir::new("chromium-profile");
    let mut child = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the browser");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser did not finish loading {url}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    reader.join().expect("reader")
}

/// The pages in a real browser: jobs, the stage DAG, tasks and executors are in the DOM
/// Chromium builds. Needs Chromium (`.ci/run` installs Debian's and sets
/// `SPATE_REQUIRE_BROWSER=1`); elsewhere it is skipped with a notice unless required.
#[test]
fn the_web_ui_renders_in_a_headless_browser() {
    let Some(browser) = browser() else {
        assert!(
            std::env::var_os("SPATE_REQUIRE_BROWSER").is_none(),
            "SPATE_REQUIRE_BROWSER is set but no chromium was found (apt-get install chromium, or set SPATE_CHROMIUM)"
        );
        eprintln!("NOTE: no chromium on PATH: the headless browser test of the web UI did not run");
        return;
    };
    let ctx = spate::Context::builder()
        .master("local[2]")
        .app_name("browser-test")
        .build()
        .expect("context");
    let base = ctx.ui_url().expect("UI on").to_string();
    let users = ctx.range(0, 100, 2).map(|i| (i, format!("u{i}")));
    let orders = ctx.range(0, 1000, 3).map(|o| (o % 100, o));
    assert_eq!(users.join(&orders).count().expect("join"), 1000);
    let job = wait_for_job(&base, 0, "succeeded");
    let stages: Vec<u64> = job["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["stage"].as_u64())
        .collect();
    assert_eq!(stages.len(), 3, "two shuffled inputs and the join");

    let home = rendered_dom(&browser, &format!("{base}/"));
    assert!(home.contains("browser-test"), "{home}");
    assert!(home.contains("<a href=\"/jobs/0\">0</a>"), "{home}");
    assert!(home.contains("succeeded"));

    let page = rendered_dom(&browser, &format!("{base}/jobs/0"));
    assert!(page.contains("<svg id=\"dag\""), "{page}");
    for s in &stages {
        assert!(
            page.contains(&format!("data-stage=\"{s}\"")),
            "stage {s} drawn: {page}"
        );
    }
    assert_eq!(
        page.matches("<line ").count(),
        2,
        "two arrows into the join stage"
    );

    let last = stages.iter().max().copied().unwrap_or(0);
    let page = rendered_dom(&browser, &format!("{base}/stages/{last}"));
    assert!(page.contains("id=\"tasks\""), "{page}");
    assert!(
        page.matches(">succeeded<").count() >= 2,
        "a row per task: {page}"
    );

    let page = rendered_dom(&browser, &format!("{base}/executors"));
    assert!(page.contains("driver"), "{page}");
}
