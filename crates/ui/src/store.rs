//! The application's state as the UI shows it, folded from scheduler events.
//!
//! [`Store`] is a [`Listener`]: it runs on the listener bus's thread and updates shared
//! state that the web server reads. Everything the pages and the JSON API show comes from
//! here, so replaying an event log into a store gives the same pages.

use serde::Serialize;
use spate_core::metrics::TaskMetrics;
use spate_scheduler::listener::{Listener, SchedulerEvent, StageKind, TaskEndStatus};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where a job, stage or task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not started.
    Pending,
    /// Running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed.
    Failed,
    /// A stage whose outputs existed already, so its job did not run it.
    Skipped,
    /// A task taken back before it started.
    Cancelled,
}

/// The application.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AppInfo {
    /// Program name.
    pub name: String,
    /// Master URL.
    pub master: String,
    /// Start, ms since the epoch.
    pub start: u64,
    /// End, when the context stopped.
    pub end: Option<u64>,
}

/// One job.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    /// Job id.
    pub job: usize,
    /// The RDD its action ran on.
    pub rdd: String,
    /// Partitions asked for.
    pub partitions: usize,
    /// Its stages, parents first.
    pub stages: Vec<usize>,
    /// Where it is.
    pub status: Status,
    /// Why it failed.
    pub error: Option<String>,
    /// Submission time.
    pub start: u64,
    /// End time.
    pub end: Option<u64>,
    /// Tasks of its stages that succeeded / all of its stages' tasks (skipped stages
    /// excluded).
    pub tasks_done: usize,
    /// Tasks of a full run of its stages.
    pub tasks_total: usize,
    /// Failed task attempts.
    pub tasks_failed: usize,
}

/// One stage.
#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    /// Stage id.
    pub stage: usize,
    /// Its last RDD, with where the program made it.
    pub name: String,
    /// What it produces.
    pub kind: StageKind,
    /// Tasks of a full run.
    pub tasks_total: usize,
    /// Stages it reads from.
    pub parents: Vec<usize>,
    /// Jobs that need it.
    pub jobs: Vec<usize>,
    /// Latest attempt (0: never submitted).
    pub attempt: u32,
    /// Where it is.
    pub status: Status,
    /// Why its last attempt ended early.
    pub failure: Option<String>,
    /// First submission.
    pub submitted: Option<u64>,
    /// Last completion.
    pub completed: Option<u64>,
    /// Tasks that succeeded (all attempts).
    pub tasks_done: usize,
    /// Task attempts that failed.
    pub tasks_failed: usize,
    /// Tasks running now.
    pub tasks_running: usize,
    /// Sum of the succeeded tasks' metrics.
    pub metrics: TaskMetrics,
}

/// One task attempt.
#[derive(Clone, Debug, Serialize)]
pub struct Task {
    /// Task id.
    pub task: u64,
    /// Stage.
    pub stage: usize,
    /// Stage attempt it belongs to.
    pub stage_attempt: u32,
    /// Partition.
    pub partition: usize,
    /// Attempt of this partition.
    pub attempt: u32,
    /// Executor (the real one once it ended).
    pub executor: String,
    /// Where it is.
    pub status: Status,
    /// `fetch_failed` when it could not read a map output.
    pub fetch_failed: bool,
    /// Failure message.
    pub error: Option<String>,
    /// Launch time.
    pub start: u64,
    /// End time.
    pub end: Option<u64>,
    /// Launch to end, ms.
    pub duration_ms: Option<u64>,
    /// What it did.
    pub metrics: TaskMetrics,
}

/// One executor.
#[derive(Clone, Debug, Serialize)]
pub struct Executor {
    /// Executor id.
    pub executor: String,
    /// Block server `host:port`.
    pub address: Option<String>,
    /// Task slots.
    pub cores: usize,
    /// `active` or `lost`.
    pub state: &'static str,
    /// Why it was lost.
    pub reason: Option<String>,
    /// When it joined.
    pub added: u64,
    /// Tasks that succeeded there.
    pub tasks_done: usize,
    /// Task attempts that failed there.
    pub tasks_failed: usize,
    /// Tasks running there now.
    pub tasks_running: usize,
    /// Sum of its succeeded tasks' metrics.
    pub metrics: TaskMetrics,
}

/// Everything the UI knows.
#[derive(Debug, Default)]
pub struct State {
    /// The application.
    pub app: AppInfo,
    /// Jobs by id.
    pub jobs: BTreeMap<usize, Job>,
    /// Stages by id.
    pub stages: BTreeMap<usize, Stage>,
    /// Task attempts by stage, in launch order.
    pub tasks: BTreeMap<usize, Vec<Task>>,
    /// Executors by id.
    pub executors: BTreeMap<String, Executor>,
    /// Task id → (stage, index in `tasks[stage]`).
    task_index: BTreeMap<u64, (usize, usize)>,
    /// Task attempts kept; over [`State::max_tasks`], the oldest finished stages lose their
    /// task rows (their summaries stay).
    retained: usize,
    /// Most task attempts kept (0: the default, [`MAX_RETAINED_TASKS`]).
    pub max_tasks: usize,
}

/// Task attempts the UI keeps by default (Spark's `spark.ui.retainedTasks`).
pub const MAX_RETAINED_TASKS: usize = 100_000;

impl State {
    /// Fold one event in.
    pub fn apply(&mut self, e: &SchedulerEvent) {
        match e {
            SchedulerEvent::ApplicationStart { time, app, master } => {
                self.app = AppInfo {
                    name: app.clone(),
                    master: master.clone(),
                    start: *time,
                    end: None,
                };
            }
            SchedulerEvent::ApplicationEnd { time } => self.app.end = Some(*time),
            SchedulerEvent::JobStart {
                time,
                job,
                rdd,
                partitions,
                stages,
            } => {
                for s in stages {
                    let st = self.stages.entry(s.stage).or_insert_with(|| Stage {
                        stage: s.stage,
                        name: s.name.clone(),
                        kind: s.kind,
                        tasks_total: s.tasks,
                        parents: s.parents.clone(),
                        jobs: Vec::new(),
                        attempt: 0,
                        status: Status::Pending,
                        failure: None,
                        submitted: None,
                        completed: None,
                        tasks_done: 0,
                        tasks_failed: 0,
                        tasks_running: 0,
                        metrics: TaskMetrics::default(),
                    });
                    st.jobs.push(*job);
                    if st.status == Status::Skipped {
                        st.status = Status::Pending;
                    }
                }
                self.jobs.insert(
                    *job,
                    Job {
                        job: *job,
                        rdd: rdd.clone(),
                        partitions: *partitions,
                        stages: stages.iter().map(|s| s.stage).collect(),
                        status: Status::Running,
                        error: None,
                        start: *time,
                        end: None,
                        tasks_done: 0,
                        tasks_total: 0,
                        tasks_failed: 0,
                    },
                );
                self.refresh_job(*job);
            }
            SchedulerEvent::JobEnd {
                time,
                job,
                succeeded,
                error,
            } => {
                let stages = self
                    .jobs
                    .get(job)
                    .map(|j| j.stages.clone())
                    .unwrap_or_default();
                for s in stages {
                    if let Some(st) = self.stages.get_mut(&s)
                        && st.status == Status::Pending
                    {
                        // Its outputs existed: the job never ran it.
                        st.status = if *succeeded {
                            Status::Skipped
                        } else {
                            Status::Pending
                        };
                    }
                }
                if let Some(j) = self.jobs.get_mut(job) {
                    j.status = if *succeeded {
                        Status::Succeeded
                    } else {
                        Status::Failed
                    };
                    j.error = error.clone();
                    j.end = Some(*time);
                }
                self.refresh_job(*job);
            }
            SchedulerEvent::StageSubmitted {
                time,
                stage,
                attempt,
                ..
            } => {
                if let Some(s) = self.stages.get_mut(stage) {
                    s.attempt = *attempt;
                    s.status = Status::Running;
                    s.failure = None;
                    s.submitted.get_or_insert(*time);
                }
            }
            SchedulerEvent::StageCompleted {
                time,
                stage,
                failure,
                ..
            } => {
                if let Some(s) = self.stages.get_mut(stage) {
                    s.completed = Some(*time);
                    s.failure = failure.clone();
                    s.status = if failure.is_none() {
                        Status::Succeeded
                    } else {
                        Status::Failed
                    };
                }
                self.refresh_jobs_of(*stage);
            }
            SchedulerEvent::TaskStart {
                time,
                task,
                stage,
                stage_attempt,
                partition,
                attempt,
                executor,
            } => {
                let list = self.tasks.entry(*stage).or_default();
                self.task_index.insert(*task, (*stage, list.len()));
                list.push(Task {
                    task: *task,
                    stage: *stage,
                    stage_attempt: *stage_attempt,
                    partition: *partition,
                    attempt: *attempt,
                    executor: executor.clone(),
                    status: Status::Running,
                    fetch_failed: false,
                    error: None,
                    start: *time,
                    end: None,
                    duration_ms: None,
                    metrics: TaskMetrics::default(),
                });
                if let Some(s) = self.stages.get_mut(stage) {
                    s.tasks_running += 1;
                }
                if let Some(x) = self.executors.get_mut(executor) {
                    x.tasks_running += 1;
                }
                self.retained += 1;
                self.trim();
            }
            SchedulerEvent::TaskEnd {
                time,
                task,
                stage,
                executor,
                status,
                error,
                metrics,
                ..
            } => {
                let ok = *status == TaskEndStatus::Success;
                let cancelled = *status == TaskEndStatus::Cancelled;
                let mut launched_on = None;
                if let Some(&(s, i)) = self.task_index.get(task)
                    && let Some(t) = self.tasks.get_mut(&s).and_then(|l| l.get_mut(i))
                {
                    launched_on = Some(std::mem::replace(&mut t.executor, executor.clone()));
                    t.status = match (ok, cancelled) {
                        (true, _) => Status::Succeeded,
                        (_, true) => Status::Cancelled,
                        _ => Status::Failed,
                    };
                    t.fetch_failed = *status == TaskEndStatus::FetchFailed;
                    t.error = error.clone();
                    t.end = Some(*time);
                    t.duration_ms = Some(time.saturating_sub(t.start));
                    t.metrics = *metrics;
                }
                if let Some(s) = self.stages.get_mut(stage) {
                    s.tasks_running = s.tasks_running.saturating_sub(1);
                    if ok {
                        s.tasks_done += 1;
                        s.metrics.add(metrics);
                    } else if !cancelled {
                        s.tasks_failed += 1;
                    }
                }
                if let Some(x) = launched_on.as_ref().and_then(|l| self.executors.get_mut(l)) {
                    x.tasks_running = x.tasks_running.saturating_sub(1);
                }
                if let Some(x) = self.executors.get_mut(executor) {
                    if ok {
                        x.tasks_done += 1;
                        x.metrics.add(metrics);
                    } else if !cancelled {
                        x.tasks_failed += 1;
                    }
                }
                self.refresh_jobs_of(*stage);
            }
            SchedulerEvent::ExecutorAdded {
                time,
                executor,
                cores,
                address,
            } => {
                let x = self
                    .executors
                    .entry(executor.clone())
                    .or_insert_with(|| Executor {
                        executor: executor.clone(),
                        address: None,
                        cores: *cores,
                        state: "active",
                        reason: None,
                        added: *time,
                        tasks_done: 0,
                        tasks_failed: 0,
                        tasks_running: 0,
                        metrics: TaskMetrics::default(),
                    });
                x.cores = *cores;
                x.state = "active";
                if address.is_some() {
                    x.address = address.clone();
                }
            }
            SchedulerEvent::ExecutorRemoved {
                executor, reason, ..
            } => {
                if let Some(x) = self.executors.get_mut(executor) {
                    x.state = "lost";
                    x.reason = Some(reason.clone());
                    x.tasks_running = 0;
                }
            }
        }
    }

    /// Drop the task rows of the oldest finished stages while over the limit.
    fn trim(&mut self) {
        let max = if self.max_tasks == 0 {
            MAX_RETAINED_TASKS
        } else {
            self.max_tasks
        };
        while self.retained > max {
            let oldest = self.tasks.keys().copied().find(|s| {
                self.stages.get(s).is_some_and(|st| {
                    st.tasks_running == 0
                        && matches!(
                            st.status,
                            Status::Succeeded | Status::Failed | Status::Skipped
                        )
                })
            });
            let Some(stage) = oldest else { return };
            if let Some(list) = self.tasks.remove(&stage) {
                self.retained -= list.len();
                for t in list {
                    self.task_index.remove(&t.task);
                }
            }
        }
    }

    fn refresh_jobs_of(&mut self, stage: usize) {
        let jobs = self
            .stages
            .get(&stage)
            .map(|s| s.jobs.clone())
            .unwrap_or_default();
        for j in jobs {
            self.refresh_job(j);
        }
    }

    /// Recount a job's task figures from its stages.
    fn refresh_job(&mut self, job: usize) {
        let Some(j) = self.jobs.get(&job) else { return };
        let (mut done, mut total, mut failed) = (0, 0, 0);
        for s in j.stages.iter().filter_map(|s| self.stages.get(s)) {
            if s.status == Status::Skipped {
                continue;
            }
            total += s.tasks_total;
            done += s.tasks_done.min(s.tasks_total);
            failed += s.tasks_failed;
        }
        if let Some(j) = self.jobs.get_mut(&job) {
            (j.tasks_done, j.tasks_total, j.tasks_failed) = (done, total, failed);
        }
    }
}

/// Shared state, updated from the listener bus.
#[derive(Clone, Default)]
pub struct Store(pub Arc<Mutex<State>>);

impl Store {
    /// Read the state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match self.0.lock() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

impl Listener for Store {
    fn on_event(&mut self, event: &SchedulerEvent) {
        if let Ok(mut s) = self.0.lock() {
            s.apply(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_scheduler::listener::StageInfo;

    #[test]
    fn a_job_folds_into_jobs_stages_tasks_and_executors() {
        let mut st = State::default();
        let info = |stage, kind, parents: Vec<usize>| StageInfo {
            stage,
            name: format!("s{stage}"),
            kind,
            tasks: 2,
            parents,
        };
        for e in [
            SchedulerEvent::ExecutorAdded {
                time: 0,
                executor: "e1".into(),
                cores: 2,
                address: Some("127.0.0.1:9".into()),
            },
            SchedulerEvent::JobStart {
                time: 1,
                job: 0,
                rdd: "r".into(),
                partitions: 2,
                stages: vec![
                    info(0, StageKind::ShuffleMap, vec![]),
                    info(1, StageKind::Result, vec![0]),
                ],
            },
            SchedulerEvent::StageSubmitted {
                time: 2,
                stage: 0,
                attempt: 1,
                tasks: 2,
            },
            SchedulerEvent::TaskStart {
                time: 3,
                task: 0,
                stage: 0,
                stage_attempt: 1,
                partition: 0,
                attempt: 0,
                executor: "e1".into(),
            },
            SchedulerEvent::TaskEnd {
                time: 10,
                task: 0,
                stage: 0,
                stage_attempt: 1,
                partition: 0,
                attempt: 0,
                executor: "e1".into(),
                status: TaskEndStatus::Success,
                error: None,
                metrics: TaskMetrics {
                    input_records: 7,
                    ..Default::default()
                },
            },
        ] {
            st.apply(&e);
        }
        assert_eq!(st.stages[&0].status, Status::Running);
        assert_eq!(st.stages[&0].tasks_done, 1);
        assert_eq!(st.stages[&0].metrics.input_records, 7);
        assert_eq!(st.tasks[&0][0].duration_ms, Some(7));
        assert_eq!(st.executors["e1"].tasks_done, 1);
        assert_eq!(st.executors["e1"].tasks_running, 0);
        assert_eq!((st.jobs[&0].tasks_done, st.jobs[&0].tasks_total), (1, 4));
        st.apply(&SchedulerEvent::JobEnd {
            time: 11,
            job: 0,
            succeeded: false,
            error: Some("boom".into()),
        });
        assert_eq!(st.jobs[&0].status, Status::Failed);
        assert_eq!(
            st.stages[&1].status,
            Status::Pending,
            "never ran, not skipped: the job failed"
        );
    }

    #[test]
    fn old_finished_stages_lose_their_task_rows_over_the_limit() {
        let mut st = State {
            max_tasks: 3,
            ..State::default()
        };
        let stages: Vec<StageInfo> = (0..3)
            .map(|s| StageInfo {
                stage: s,
                name: format!("s{s}"),
                kind: StageKind::ShuffleMap,
                tasks: 2,
                parents: vec![],
            })
            .collect();
        st.apply(&SchedulerEvent::JobStart {
            time: 0,
            job: 0,
            rdd: "r".into(),
            partitions: 2,
            stages,
        });
        let mut task = 0;
        for stage in 0..3 {
            for p in 0..2 {
                st.apply(&SchedulerEvent::TaskStart {
                    time: 0,
                    task,
                    stage,
                    stage_attempt: 1,
                    partition: p,
                    attempt: 0,
                    executor: "e".into(),
                });
                st.apply(&SchedulerEvent::TaskEnd {
                    time: 1,
                    task,
                    stage,
                    stage_attempt: 1,
                    partition: p,
                    attempt: 0,
                    executor: "e".into(),
                    status: TaskEndStatus::Success,
                    error: None,
                    metrics: TaskMetrics::default(),
                });
                task += 1;
            }
            st.apply(&SchedulerEvent::StageCompleted {
                time: 2,
                stage,
                attempt: 1,
                failure: None,
            });
        }
        assert!(
            !st.tasks.contains_key(&0) && !st.tasks.contains_key(&1),
            "oldest rows dropped"
        );
        assert_eq!(st.tasks[&2].len(), 2);
        assert_eq!(st.stages[&0].tasks_done, 2, "summaries stay");
    }
}
