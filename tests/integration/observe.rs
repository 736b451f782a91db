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

    let starts = events
        .iter()
        .filter(|e| matches!(e, SchedulerEvent::TaskStart { .. }))
        .count();
    let ends = events
        .iter()
        .filter(|e| matches!(e, SchedulerEvent::TaskEnd { .. }))
        .count();
    assert_eq!(starts, ends, "every started task ended");
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
