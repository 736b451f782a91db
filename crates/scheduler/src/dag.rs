//! The DAG scheduler: the single owner of jobs, stages and running tasks.
//!
//! Stage states:
//!
//! ```text
//!            submit, parents missing            parents available
//!   Idle ───────────────────────────▶ Waiting ──────────────────▶ Running
//!    ▲  │ submit, parents available                                 │  │
//!    │  └──────────────────────────────────────────────────────────▶│  │
//!    │              all tasks done / job gone / fetch failed        │  │
//!    └──────────────────────────────────────────────────────────────┘  │
//!                      fetch failed: back to Waiting for the lost map  ◀┘
//! ```
//!
//! A shuffle-map stage is *available* when every map partition has a registered output;
//! availability is derived from the outputs, not stored, so losing an output (fetch
//! failure, lost executor) makes the stage unavailable again and only the missing map
//! partitions re-run. Shuffle-map stages outlive their job, so later jobs reuse their
//! outputs (Spark's skipped stages).
//!
//! Failures are classified at the task boundary: a fetch failure re-runs the lost map
//! output and then the reading stage; any other failure retries the task (on another
//! executor when there is one) until `max_failures` attempts, then fails every job that
//! needs the stage with the first real cause.

use crate::backend::{SchedulerBackend, TaskLaunch};
use crate::event::{Event, JobMessage, TaskId, TaskReport};
use crate::listener::{
    ListenerBus, SchedulerEvent, StageInfo, StageKind as ListenerStageKind, TaskEndStatus, now_ms,
};
use crossbeam_channel::{Receiver, Sender};
use spate_core::error::Error;
use spate_core::plan::{pipeline_depth, plan_stages};
use spate_core::rdd::{Dependency, RddBase, ShuffleId};
use spate_core::ship::SerArc;
use spate_core::shuffle::{MapStatus, ShuffleDependency, ShuffleService};
use spate_core::task::{MAX_PIPELINE_DEPTH, ResultJob, TaskFailure, TaskKind, TaskOutput};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tracing::{Span, debug, info, info_span, warn};

type StageId = usize;
type JobId = usize;

/// How long a task waits for a slot on the executor caching its partition before it
/// runs (and recomputes the partition) elsewhere (Spark's `spark.locality.wait`).
const LOCALITY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A stage fails after this many fetch-failure resubmissions in a row (Spark's
/// `spark.stage.maxConsecutiveAttempts`).
const MAX_STAGE_ATTEMPTS: u32 = 4;

/// Where a stage is in its life; see the module diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StageState {
    Idle,
    Waiting,
    Running,
}

enum StageKind {
    ShuffleMap {
        dep: SerArc<dyn ShuffleDependency>,
        outputs: Vec<Option<MapStatus>>,
    },
    Result {
        job: JobId,
        func: SerArc<dyn ResultJob>,
    },
}

struct Stage {
    rdd: Arc<dyn RddBase>,
    kind: StageKind,
    parents: Vec<StageId>,
    state: StageState,
    /// Bumped on every (re)submission, so queued tasks of an older attempt are dropped.
    attempt: u32,
    /// Task units not yet done in the current attempt (map partition, or result index).
    pending: HashSet<usize>,
    jobs: BTreeSet<JobId>,
    fetch_failures: u32,
    span: Span,
}

impl Stage {
    fn is_available(&self) -> bool {
        match &self.kind {
            StageKind::ShuffleMap { outputs, .. } => outputs.iter().all(Option::is_some),
            StageKind::Result { .. } => false,
        }
    }
}

struct ActiveJob {
    result_stage: StageId,
    partitions: Vec<usize>,
    done: Vec<bool>,
    remaining: usize,
    stages: Vec<StageId>,
    reply: Sender<JobMessage>,
    started: Instant,
    span: Span,
}

struct RunningTask {
    started: Instant,
    stage: StageId,
    stage_attempt: u32,
    unit: usize,
    partition: usize,
    attempt: u32,
    executor: String,
}

struct ExecutorSlots {
    free: usize,
}

/// Failures of one task unit: how many, the first cause, and where.
#[derive(Default)]
struct UnitFailures {
    count: u32,
    first: Option<String>,
    /// The first failure of the task itself (a panic, an error), as opposed to the loss
    /// of the executor it ran on: what the job's error reports when there is one.
    first_own: Option<String>,
    executors: HashSet<String>,
}

/// All scheduling state; driven by [`DagScheduler::run`].
pub(crate) struct DagScheduler {
    backend: Box<dyn SchedulerBackend>,
    shuffle: Arc<dyn ShuffleService>,
    max_failures: u32,
    next_stage: StageId,
    next_job: JobId,
    next_task: TaskId,
    stages: HashMap<StageId, Stage>,
    shuffle_stages: HashMap<ShuffleId, StageId>,
    jobs: HashMap<JobId, ActiveJob>,
    waiting: BTreeSet<StageId>,
    queue: VecDeque<(StageId, u32, usize)>,
    running: HashMap<TaskId, RunningTask>,
    executors: BTreeMap<String, ExecutorSlots>,
    failures: HashMap<(StageId, usize), UnitFailures>,
    /// Map partitions whose accumulator updates were applied.
    accumulated: HashSet<(StageId, usize)>,
    /// Where partitions of persisted RDDs are cached: `(cache key, partition)` → executors.
    cache_locs: HashMap<(u64, usize), BTreeSet<String>>,
    /// Since when a queued task has waited for a slot where its cached partition is.
    locality_wait: HashMap<(StageId, usize), Instant>,
    /// Launch copies of straggling tasks.
    speculation: bool,
    /// Units that got a speculative copy.
    speculated: HashSet<(StageId, usize)>,
    /// Run times of the tasks of a stage that succeeded (for the straggler threshold).
    durations: HashMap<StageId, Vec<std::time::Duration>>,
    bus: ListenerBus,
}

impl DagScheduler {
    pub(crate) fn new(
        backend: Box<dyn SchedulerBackend>,
        shuffle: Arc<dyn ShuffleService>,
        max_failures: u32,
        speculation: bool,
        bus: ListenerBus,
    ) -> Self {
        DagScheduler {
            backend,
            shuffle,
            max_failures: max_failures.max(1),
            next_stage: 0,
            next_job: 0,
            next_task: 0,
            stages: HashMap::new(),
            shuffle_stages: HashMap::new(),
            jobs: HashMap::new(),
            waiting: BTreeSet::new(),
            queue: VecDeque::new(),
            running: HashMap::new(),
            executors: BTreeMap::new(),
            failures: HashMap::new(),
            accumulated: HashSet::new(),
            cache_locs: HashMap::new(),
            locality_wait: HashMap::new(),
            speculation,
            speculated: HashSet::new(),
            durations: HashMap::new(),
            bus,
        }
    }

    /// No RDD reads `shuffle` any more (its last reading node was dropped on the driver):
    /// drop its map stage and its outputs. A stage that an active job still uses is kept
    /// (no such job can exist, as the job would hold the reading node; this is a guard).
    fn remove_shuffle(&mut self, shuffle: ShuffleId) {
        if let Some(&stage) = self.shuffle_stages.get(&shuffle) {
            if self.stages.get(&stage).is_some_and(|s| !s.jobs.is_empty()) {
                return;
            }
            self.shuffle_stages.remove(&shuffle);
            self.forget_stage(stage);
        }
        debug!(shuffle, "shuffle removed: no RDD reads it any more");
        self.shuffle.remove_shuffle(shuffle);
        self.backend.remove_shuffle(shuffle);
    }

    /// Drop a stage no job will run again (a finished job's result stage, a removed
    /// shuffle's map stage) and everything kept per stage (stage ids are never reused).
    fn forget_stage(&mut self, stage: StageId) {
        self.stages.remove(&stage);
        self.waiting.remove(&stage);
        self.failures.retain(|(s, _), _| *s != stage);
        self.accumulated.retain(|(s, _)| *s != stage);
        self.locality_wait.retain(|(s, _), _| *s != stage);
        self.speculated.retain(|(s, _)| *s != stage);
        self.durations.remove(&stage);
    }

    fn post(&self, event: impl FnOnce() -> SchedulerEvent) {
        if self.bus.active() {
            self.bus.post(event());
        }
    }

    /// The event loop: runs until `Stop` or until every sender is gone.
    pub(crate) fn run(mut self, events: Receiver<Event>) {
        loop {
            // Wake up now and then even without events: tasks waiting for locality may
            // run elsewhere once their wait is over.
            let event = match events.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(e) => e,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    self.speculate();
                    self.make_offers();
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            match event {
                Event::JobSubmitted {
                    job,
                    partitions,
                    reply,
                } => self.job_submitted(job, partitions, reply),
                Event::TaskEnded {
                    task,
                    result,
                    report,
                } => self.task_ended(task, result, report),
                Event::ExecutorAdded {
                    executor,
                    cores,
                    address,
                } => {
                    info!(executor, cores, "executor added");
                    self.post(|| SchedulerEvent::ExecutorAdded {
                        time: now_ms(),
                        executor: executor.clone(),
                        cores,
                        address,
                    });
                    self.executors
                        .insert(executor, ExecutorSlots { free: cores });
                }
                Event::ExecutorObserved {
                    executor,
                    cores,
                    address,
                } => self.post(|| SchedulerEvent::ExecutorAdded {
                    time: now_ms(),
                    executor,
                    cores,
                    address,
                }),
                Event::ExecutorLost { executor, reason } => {
                    self.post(|| SchedulerEvent::ExecutorRemoved {
                        time: now_ms(),
                        executor: executor.clone(),
                        reason: reason.clone(),
                    });
                    self.executor_lost(&executor, &reason)
                }
                Event::Unpersist { key } => {
                    self.cache_locs.retain(|(k, _), _| *k != key);
                    self.backend.unpersist(key);
                }
                Event::RemoveShuffle { shuffle } => self.remove_shuffle(shuffle),
                Event::BackendFailed { reason } => {
                    warn!("backend failed: {reason}");
                    let jobs: Vec<JobId> = self.jobs.keys().copied().collect();
                    for job in jobs {
                        self.end_job(
                            job,
                            Some(Error::Other(format!(
                                "no executors can run job {job}: {reason}"
                            ))),
                        );
                    }
                }
                Event::Stop => break,
            }
            self.cancel_stale();
            self.make_offers();
        }
        for (_, job) in self.jobs.drain() {
            let _ = job.reply.send(JobMessage::Failed(Error::SchedulerStopped(
                "the context was stopped while the job ran".into(),
            )));
        }
        // Local mode caches in this very process: free what this context cached.
        let keys: BTreeSet<u64> = self.cache_locs.keys().map(|(k, _)| *k).collect();
        for k in keys {
            spate_core::cache::remove(k);
        }
        self.backend.stop();
        self.post(|| SchedulerEvent::ApplicationEnd { time: now_ms() });
        self.bus.stop();
    }

    fn job_submitted(
        &mut self,
        func: SerArc<dyn ResultJob>,
        partitions: Vec<usize>,
        reply: Sender<JobMessage>,
    ) {
        let job_id = self.next_job;
        self.next_job += 1;
        if partitions.is_empty() {
            let _ = reply.send(JobMessage::Done);
            return;
        }
        let rdd = func.rdd();
        let plan = plan_stages(&rdd);
        // A pipeline deeper than a task's stack would crash the process running it.
        for planned in &plan.stages {
            let reused = planned
                .shuffle
                .as_ref()
                .is_some_and(|d| self.shuffle_stages.contains_key(&d.shuffle_id()));
            let depth = if reused {
                0
            } else {
                pipeline_depth(&planned.rdd)
            };
            if depth > MAX_PIPELINE_DEPTH {
                let _ = reply.send(JobMessage::Failed(Error::LineageTooDeep {
                    depth,
                    limit: MAX_PIPELINE_DEPTH,
                    rdd: planned.rdd.meta().to_string(),
                }));
                return;
            }
        }
        let span = info_span!("job", id = job_id);
        let mut stage_ids = Vec::with_capacity(plan.stages.len());
        let mut result_stage = 0;
        for planned in plan.stages {
            let parents: Vec<StageId> = planned
                .parents
                .iter()
                .filter_map(|s| self.shuffle_stages.get(s).copied())
                .collect();
            let id = match planned.shuffle {
                Some(dep) => match self.shuffle_stages.get(&dep.shuffle_id()) {
                    Some(&existing) => existing,
                    None => {
                        let maps = dep.rdd().num_partitions();
                        let id = self.new_stage(
                            planned.rdd,
                            StageKind::ShuffleMap {
                                outputs: vec![None; maps],
                                dep: dep.clone(),
                            },
                            parents,
                            &span,
                        );
                        self.shuffle_stages.insert(dep.shuffle_id(), id);
                        id
                    }
                },
                None => {
                    result_stage = self.new_stage(
                        planned.rdd,
                        StageKind::Result {
                            job: job_id,
                            func: func.clone(),
                        },
                        parents,
                        &span,
                    );
                    result_stage
                }
            };
            if let Some(stage) = self.stages.get_mut(&id) {
                stage.jobs.insert(job_id);
            }
            stage_ids.push(id);
        }
        span.in_scope(|| info!(stages = stage_ids.len(), partitions = partitions.len(), rdd = %rdd.meta(), "job submitted"));
        self.post(|| SchedulerEvent::JobStart {
            time: now_ms(),
            job: job_id,
            rdd: rdd.meta().to_string(),
            partitions: partitions.len(),
            stages: stage_ids
                .iter()
                .filter_map(|id| self.stages.get(id).map(|s| (id, s)))
                .map(|(id, s)| StageInfo {
                    stage: *id,
                    name: s.rdd.meta().to_string(),
                    kind: match s.kind {
                        StageKind::ShuffleMap { .. } => ListenerStageKind::ShuffleMap,
                        StageKind::Result { .. } => ListenerStageKind::Result,
                    },
                    tasks: match &s.kind {
                        StageKind::ShuffleMap { outputs, .. } => outputs.len(),
                        StageKind::Result { .. } => partitions.len(),
                    },
                    parents: s.parents.clone(),
                })
                .collect(),
        });
        let n = partitions.len();
        self.jobs.insert(
            job_id,
            ActiveJob {
                result_stage,
                partitions,
                done: vec![false; n],
                remaining: n,
                stages: stage_ids,
                reply,
                started: Instant::now(),
                span,
            },
        );
        self.submit_stage(result_stage);
    }

    fn new_stage(
        &mut self,
        rdd: Arc<dyn RddBase>,
        kind: StageKind,
        parents: Vec<StageId>,
        job_span: &Span,
    ) -> StageId {
        let id = self.next_stage;
        self.next_stage += 1;
        let span = info_span!(parent: job_span, "stage", id, rdd = %rdd.meta());
        self.stages.insert(
            id,
            Stage {
                rdd,
                kind,
                parents,
                state: StageState::Idle,
                attempt: 0,
                pending: HashSet::new(),
                jobs: BTreeSet::new(),
                fetch_failures: 0,
                span,
            },
        );
        id
    }

    fn is_available(&self, stage: StageId) -> bool {
        self.stages.get(&stage).is_some_and(Stage::is_available)
    }

    /// Submit stage `id`, or, if stages it reads are missing, those first (it waits).
    /// Iterative, so chains of any number of shuffles submit on the scheduler's thread.
    fn submit_stage(&mut self, id: StageId) {
        let mut todo = vec![id];
        while let Some(id) = todo.pop() {
            let Some(stage) = self.stages.get(&id) else {
                continue;
            };
            if stage.state != StageState::Idle {
                continue;
            }
            let missing: Vec<StageId> = stage
                .parents
                .iter()
                .copied()
                .filter(|p| !self.is_available(*p))
                .collect();
            if missing.is_empty() {
                self.submit_missing_tasks(id);
            } else {
                if let Some(stage) = self.stages.get_mut(&id) {
                    stage.state = StageState::Waiting;
                }
                self.waiting.insert(id);
                todo.extend(missing.into_iter().rev());
            }
        }
    }

    fn submit_missing_tasks(&mut self, id: StageId) {
        let Some(stage) = self.stages.get_mut(&id) else {
            return;
        };
        let units: Vec<usize> = match &stage.kind {
            StageKind::ShuffleMap { outputs, .. } => (0..outputs.len())
                .filter(|&m| outputs[m].is_none())
                .collect(),
            StageKind::Result { job, .. } => match self.jobs.get(job) {
                Some(j) => (0..j.done.len()).filter(|&i| !j.done[i]).collect(),
                None => Vec::new(),
            },
        };
        self.waiting.remove(&id);
        if units.is_empty() {
            stage.state = StageState::Idle;
            if stage.is_available() {
                self.stage_available(id);
            }
            return;
        }
        stage.attempt += 1;
        stage.state = StageState::Running;
        stage.pending = units.iter().copied().collect();
        let attempt = stage.attempt;
        stage
            .span
            .in_scope(|| info!(tasks = units.len(), attempt, "stage submitted"));
        let tasks = units.len();
        self.post(|| SchedulerEvent::StageSubmitted {
            time: now_ms(),
            stage: id,
            attempt,
            tasks,
        });
        for u in units {
            self.queue.push_back((id, attempt, u));
        }
    }

    fn stage_available(&mut self, id: StageId) {
        if let Some(stage) = self.stages.get_mut(&id) {
            stage.state = StageState::Idle;
            stage.fetch_failures = 0;
            stage.span.in_scope(|| info!("stage finished"));
            let attempt = stage.attempt;
            self.post(|| SchedulerEvent::StageCompleted {
                time: now_ms(),
                stage: id,
                attempt,
                failure: None,
            });
        }
        let ready: Vec<StageId> = self
            .waiting
            .iter()
            .copied()
            .filter(|w| {
                self.stages
                    .get(w)
                    .is_some_and(|s| s.parents.iter().all(|p| self.is_available(*p)))
            })
            .collect();
        for w in ready {
            self.submit_missing_tasks(w);
        }
    }

    /// Give queued tasks to executors with free cores, preferring an executor where the
    /// task has not failed before.
    fn make_offers(&mut self) {
        if self.queue.is_empty() || !self.executors.values().any(|e| e.free > 0) {
            return;
        }
        let now = Instant::now();
        let mut kept = VecDeque::new();
        while let Some((stage_id, attempt, unit)) = self.queue.pop_front() {
            if !self.executors.values().any(|e| e.free > 0) {
                kept.push_back((stage_id, attempt, unit));
                continue;
            }
            let Some(stage) = self.stages.get(&stage_id) else {
                self.locality_wait.remove(&(stage_id, unit));
                continue;
            };
            if stage.attempt != attempt
                || stage.state != StageState::Running
                || !stage.pending.contains(&unit)
            {
                self.locality_wait.remove(&(stage_id, unit));
                continue;
            }
            let partition_of_unit = match &stage.kind {
                StageKind::ShuffleMap { .. } => Some(unit),
                StageKind::Result { job, .. } => self
                    .jobs
                    .get(job)
                    .and_then(|j| j.partitions.get(unit).copied()),
            };
            // Where its partition is cached first, then where much of its shuffle input is.
            let mut preferred = partition_of_unit
                .map(|p| self.cached_on(&stage.rdd, p))
                .unwrap_or_default();
            // Delay scheduling: a task whose cached partition is on a busy executor waits
            // a little for a slot there rather than recomputing it elsewhere.
            let cache_busy = !preferred.is_empty()
                && preferred
                    .iter()
                    .all(|e| self.executors.get(e).is_none_or(|x| x.free == 0))
                && preferred.iter().any(|e| self.executors.contains_key(e));
            if cache_busy {
                let since = *self.locality_wait.entry((stage_id, unit)).or_insert(now);
                if now.duration_since(since) < LOCALITY_WAIT {
                    kept.push_back((stage_id, attempt, unit));
                    continue;
                }
            }
            self.locality_wait.remove(&(stage_id, unit));
            // Only for a task that runs now: its inputs' locations and where it must not go.
            let shuffle_locations = self.parent_locations(stage_id);
            let failed_on = self.failures.get(&(stage_id, unit)).map(|f| &f.executors);
            // A speculative copy goes elsewhere than the running original when it can.
            let running_on: Vec<&String> = self
                .running
                .values()
                .filter(|t| t.stage == stage_id && t.unit == unit)
                .map(|t| &t.executor)
                .collect();
            for e in preferred_executors(&shuffle_locations) {
                if !preferred.contains(&e) {
                    preferred.push(e);
                }
            }
            // Somewhere it has not failed first, then where its input is.
            let pick = self
                .executors
                .iter()
                .filter(|(_, e)| e.free > 0)
                .map(|(name, _)| name)
                .min_by_key(|name| {
                    (
                        failed_on.is_some_and(|f| f.contains(*name)),
                        running_on.contains(name),
                        !preferred.contains(*name),
                    )
                })
                .cloned();
            let Some(executor) = pick else {
                kept.push_back((stage_id, attempt, unit));
                continue;
            };
            let (kind, partition) = match &stage.kind {
                StageKind::ShuffleMap { dep, .. } => (TaskKind::ShuffleMap(dep.clone()), unit),
                StageKind::Result { job, func } => match self.jobs.get(job) {
                    Some(j) => (TaskKind::Result(func.clone()), j.partitions[unit]),
                    None => continue,
                },
            };
            let id = self.next_task;
            self.next_task += 1;
            let avoid: Vec<String> = failed_on
                .map(|f| f.iter().cloned().collect())
                .unwrap_or_default();
            let task_attempt = self.failures.get(&(stage_id, unit)).map_or(0, |f| f.count)
                + running_on.len() as u32;
            if let Some(e) = self.executors.get_mut(&executor) {
                e.free -= 1;
            }
            self.running.insert(
                id,
                RunningTask {
                    started: now,
                    stage: stage_id,
                    stage_attempt: attempt,
                    unit,
                    partition,
                    attempt: task_attempt,
                    executor: executor.clone(),
                },
            );
            self.post(|| SchedulerEvent::TaskStart {
                time: now_ms(),
                task: id,
                stage: stage_id,
                stage_attempt: attempt,
                partition,
                attempt: task_attempt,
                executor: executor.clone(),
            });
            debug!(
                task = id,
                stage = stage_id,
                partition,
                executor,
                "launching task"
            );
            self.backend.launch(
                &executor,
                TaskLaunch {
                    id,
                    stage: stage_id,
                    partition,
                    attempt: task_attempt,
                    kind,
                    shuffle_locations,
                    preferred,
                    avoid,
                },
            );
        }
        self.queue = kept;
    }

    /// Take back tasks a backend still queues whose stage attempt is over (their job ended,
    /// or a fetch failure restarted the stage): they would only waste resources.
    fn cancel_stale(&mut self) {
        if !self.backend.can_cancel() {
            return;
        }
        let stale: Vec<TaskId> = self
            .running
            .iter()
            .filter(|(_, t)| {
                self.stages
                    .get(&t.stage)
                    .is_none_or(|s| s.attempt != t.stage_attempt || s.state != StageState::Running)
            })
            .map(|(id, _)| *id)
            .collect();
        if stale.is_empty() {
            return;
        }
        for id in self.backend.cancel(&stale) {
            if let Some(t) = self.running.remove(&id) {
                debug!(
                    task = id,
                    stage = t.stage,
                    "cancelled a queued task of a finished stage attempt"
                );
                self.post(|| SchedulerEvent::TaskEnd {
                    time: now_ms(),
                    task: id,
                    stage: t.stage,
                    stage_attempt: t.stage_attempt,
                    partition: t.partition,
                    attempt: t.attempt,
                    executor: t.executor.clone(),
                    status: TaskEndStatus::Cancelled,
                    error: None,
                    metrics: Default::default(),
                });
                if let Some(e) = self.executors.get_mut(&t.executor) {
                    e.free += 1;
                }
            }
        }
    }

    /// Speculation: once 3/4 of a running stage's tasks are done, a task running longer
    /// than 1.5 × the median of the finished ones (and at least 100 ms) gets a copy; the
    /// first to finish counts, the other's output is ignored (results, accumulator
    /// updates) or is an equally valid map output.
    fn speculate(&mut self) {
        if !self.speculation {
            return;
        }
        let mut copies = Vec::new();
        for (id, stage) in &self.stages {
            if stage.state != StageState::Running || stage.pending.is_empty() {
                continue;
            }
            let Some(done) = self.durations.get(id).filter(|d| !d.is_empty()) else {
                continue;
            };
            let total = done.len() + stage.pending.len();
            if done.len() * 4 < total * 3 {
                continue;
            }
            let mut sorted = done.clone();
            sorted.sort();
            let threshold =
                (sorted[sorted.len() / 2] * 3 / 2).max(std::time::Duration::from_millis(100));
            for t in self.running.values() {
                if t.stage == *id
                    && t.stage_attempt == stage.attempt
                    && stage.pending.contains(&t.unit)
                    && t.started.elapsed() > threshold
                    && !self.speculated.contains(&(*id, t.unit))
                {
                    copies.push((*id, stage.attempt, t.unit));
                }
            }
        }
        for (stage, attempt, unit) in copies {
            self.speculated.insert((stage, unit));
            if let Some(s) = self.stages.get(&stage) {
                s.span
                    .in_scope(|| info!(unit, "speculating: launching a copy of a slow task"));
            }
            self.queue.push_back((stage, attempt, unit));
        }
    }

    /// Executors holding a cached partition `p` of a persisted RDD in the narrow lineage of
    /// `rdd` (followed while partitions map one to one).
    fn cached_on(&self, rdd: &Arc<dyn RddBase>, p: usize) -> Vec<String> {
        if self.cache_locs.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut stack = vec![rdd.clone()];
        while let Some(r) = stack.pop() {
            if let Some((key, _)) = r.storage()
                && let Some(execs) = self.cache_locs.get(&(key, p))
            {
                out.extend(execs.iter().cloned());
                continue;
            }
            for dep in r.dependencies() {
                if let Dependency::Narrow(parent) = dep
                    && parent.num_partitions() == r.num_partitions()
                {
                    stack.push(parent);
                }
            }
        }
        out
    }

    /// Where the map outputs a stage reads are: per parent shuffle, the executor of each
    /// map partition.
    fn parent_locations(&self, stage: StageId) -> Vec<(ShuffleId, Vec<String>)> {
        let Some(s) = self.stages.get(&stage) else {
            return Vec::new();
        };
        s.parents
            .iter()
            .filter_map(|p| match self.stages.get(p).map(|p| &p.kind) {
                Some(StageKind::ShuffleMap { dep, outputs }) => Some((
                    dep.shuffle_id(),
                    outputs
                        .iter()
                        .map(|o| o.as_ref().map_or_else(String::new, |o| o.executor.clone()))
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }

    fn task_ended(
        &mut self,
        task: TaskId,
        result: Result<TaskOutput, TaskFailure>,
        report: TaskReport,
    ) {
        let Some(rt) = self.running.remove(&task) else {
            return;
        };
        let TaskReport {
            metrics,
            accumulators,
            executor,
            cached,
        } = report;
        // Where it really ran (under Mesos the backend placed it, not the DAG).
        let ran_on = executor.unwrap_or_else(|| rt.executor.clone());
        if result.is_ok() {
            if self.speculation {
                self.durations
                    .entry(rt.stage)
                    .or_default()
                    .push(rt.started.elapsed());
            }
            for block in cached {
                self.cache_locs
                    .entry(block)
                    .or_default()
                    .insert(ran_on.clone());
            }
        }
        self.post(|| SchedulerEvent::TaskEnd {
            time: now_ms(),
            task,
            stage: rt.stage,
            stage_attempt: rt.stage_attempt,
            partition: rt.partition,
            attempt: rt.attempt,
            executor: ran_on.clone(),
            status: match &result {
                Ok(_) => TaskEndStatus::Success,
                Err(TaskFailure::FetchFailed { .. }) => TaskEndStatus::FetchFailed,
                Err(_) => TaskEndStatus::Failed,
            },
            error: result.as_ref().err().map(TaskFailure::message),
            metrics,
        });
        if let Some(e) = self.executors.get_mut(&rt.executor) {
            e.free += 1;
        }
        let current = self
            .stages
            .get(&rt.stage)
            .is_some_and(|s| s.attempt == rt.stage_attempt);
        match result {
            Ok(TaskOutput::Map(status)) => {
                let Some(stage) = self.stages.get_mut(&rt.stage) else {
                    return;
                };
                if let StageKind::ShuffleMap { outputs, .. } = &mut stage.kind {
                    // An output of an older attempt is still a valid output.
                    outputs[rt.unit] = Some(status);
                }
                // Accumulator updates count once per map partition, however often it is
                // (re)computed.
                if self.accumulated.insert((rt.stage, rt.unit)) {
                    spate_core::accumulator::apply(accumulators);
                }
                self.unit_done(rt.stage, rt.unit, current);
            }
            Ok(TaskOutput::Result(value)) => {
                let job_id = match self.stages.get(&rt.stage).map(|s| &s.kind) {
                    Some(StageKind::Result { job, .. }) => *job,
                    _ => return,
                };
                let finished = match self.jobs.get_mut(&job_id) {
                    Some(job) if !job.done[rt.unit] => {
                        // Before the result: the action returns with every update in.
                        spate_core::accumulator::apply(accumulators);
                        job.done[rt.unit] = true;
                        job.remaining -= 1;
                        let _ = job.reply.send(JobMessage::Result {
                            index: rt.unit,
                            value,
                        });
                        job.remaining == 0
                    }
                    _ => false,
                };
                self.unit_done(rt.stage, rt.unit, current);
                if finished {
                    self.end_job(job_id, None);
                }
            }
            Err(TaskFailure::FetchFailed {
                shuffle,
                map,
                executor,
                message,
            }) => {
                self.fetch_failed(&rt, shuffle, map, &executor, &message);
            }
            Err(failure) => {
                // Retries avoid where it failed, also when a backend placed it.
                self.failures
                    .entry((rt.stage, rt.unit))
                    .or_default()
                    .executors
                    .insert(ran_on);
                self.task_failed(rt, failure.message(), true)
            }
        }
    }

    fn unit_done(&mut self, stage_id: StageId, unit: usize, current_attempt: bool) {
        let Some(stage) = self.stages.get_mut(&stage_id) else {
            return;
        };
        if !current_attempt {
            return;
        }
        stage.pending.remove(&unit);
        if stage.state == StageState::Running && stage.pending.is_empty() {
            stage.state = StageState::Idle;
            match &stage.kind {
                StageKind::ShuffleMap { .. } if stage.is_available() => {
                    self.stage_available(stage_id)
                }
                // Outputs were lost while the stage ran: run what is missing again.
                StageKind::ShuffleMap { .. } => self.submit_stage(stage_id),
                StageKind::Result { .. } => {}
            }
        }
    }

    /// Task `rt` failed; `own` when the task itself failed, not its executor.
    fn task_failed(&mut self, rt: RunningTask, message: String, own: bool) {
        let entry = self.failures.entry((rt.stage, rt.unit)).or_default();
        entry.count += 1;
        entry.executors.insert(rt.executor.clone());
        entry.first.get_or_insert_with(|| message.clone());
        if own {
            entry.first_own.get_or_insert_with(|| message.clone());
        }
        let first = entry
            .first_own
            .clone()
            .or_else(|| entry.first.clone())
            .unwrap_or_default();
        let count = entry.count;
        let Some(stage) = self.stages.get(&rt.stage) else {
            return;
        };
        stage.span.in_scope(|| {
            warn!(
                unit = rt.unit,
                attempt = count,
                executor = rt.executor,
                "task failed: {message}"
            )
        });
        if count >= self.max_failures {
            self.abort_stage(rt.stage, rt.unit, count, first);
        } else if stage.attempt == rt.stage_attempt && stage.state == StageState::Running {
            self.queue.push_back((rt.stage, rt.stage_attempt, rt.unit));
        }
    }

    /// A task could not read map output `map` of `shuffle`. The first report from the
    /// current attempt of the reading stage unregisters that output and resubmits: the
    /// missing map partitions run again, then the stage. Reports from tasks of an older
    /// attempt are ignored: the output they missed may already have been recomputed, and
    /// unregistering it again would throw the fresh output away.
    fn fetch_failed(
        &mut self,
        rt: &RunningTask,
        shuffle: ShuffleId,
        map: usize,
        executor: &str,
        message: &str,
    ) {
        let Some(stage) = self.stages.get_mut(&rt.stage) else {
            return;
        };
        if stage.attempt != rt.stage_attempt || stage.state != StageState::Running {
            stage.span.in_scope(|| {
                debug!(
                    shuffle,
                    map, "ignoring fetch failure of an older attempt: {message}"
                )
            });
            return;
        }
        stage
            .span
            .in_scope(|| warn!(shuffle, map, "fetch failed: {message}"));
        let (stage_id, attempt) = (rt.stage, stage.attempt);
        self.post(|| SchedulerEvent::StageCompleted {
            time: now_ms(),
            stage: stage_id,
            attempt,
            failure: Some(format!("fetch failed: {message}")),
        });
        let Some(stage) = self.stages.get_mut(&rt.stage) else {
            return;
        };
        stage.fetch_failures += 1;
        let failures = stage.fetch_failures;
        // A new attempt: reports still in flight from this one become stale.
        stage.attempt += 1;
        stage.state = StageState::Idle;
        stage.pending.clear();
        if let Some(&map_stage) = self.shuffle_stages.get(&shuffle) {
            if let Some(StageKind::ShuffleMap { outputs, .. }) =
                self.stages.get_mut(&map_stage).map(|s| &mut s.kind)
                && let Some(slot) = outputs.get_mut(map)
            {
                *slot = None;
            }
            self.shuffle.remove_map_output(shuffle, map);
        }
        if message.contains(spate_shuffle::client::UNREACHABLE) {
            // Its block server is gone (a lost machine): every output it held is lost,
            // not just this one; re-run them all now rather than one per fetch failure.
            self.forget_outputs_of(executor);
        }
        if failures > MAX_STAGE_ATTEMPTS {
            let msg = format!("fetch failed {failures} times in a row; last: {message}");
            self.abort_stage(rt.stage, rt.unit, failures, msg);
            return;
        }
        self.submit_stage(rt.stage);
    }

    /// Unregister every map output held by `executor`.
    fn forget_outputs_of(&mut self, executor: &str) {
        for stage in self.stages.values_mut() {
            if let StageKind::ShuffleMap { outputs, dep } = &mut stage.kind {
                for (m, slot) in outputs.iter_mut().enumerate() {
                    if slot.as_ref().is_some_and(|s| s.executor == executor) {
                        *slot = None;
                        self.shuffle.remove_map_output(dep.shuffle_id(), m);
                    }
                }
            }
        }
    }

    fn executor_lost(&mut self, executor: &str, reason: &str) {
        warn!(executor, reason, "executor lost");
        self.executors.remove(executor);
        // Its cached partitions are gone: they are recomputed where tasks run next.
        self.cache_locs.retain(|_, execs| {
            execs.remove(executor);
            !execs.is_empty()
        });
        self.forget_outputs_of(executor);
        let lost: Vec<TaskId> = self
            .running
            .iter()
            .filter(|(_, t)| t.executor == executor)
            .map(|(id, _)| *id)
            .collect();
        // A reason that already names the executor ("executor X died (…)") is the message.
        let message = if reason.starts_with(&format!("executor {executor} ")) {
            reason.to_string()
        } else {
            format!("executor {executor} lost: {reason}")
        };
        for id in lost {
            if let Some(rt) = self.running.remove(&id) {
                self.task_failed(rt, message.clone(), false);
            }
        }
    }

    fn abort_stage(&mut self, stage_id: StageId, unit: usize, attempts: u32, message: String) {
        let Some(stage) = self.stages.get(&stage_id) else {
            return;
        };
        let partition = match &stage.kind {
            StageKind::Result { job, .. } => self
                .jobs
                .get(job)
                .and_then(|j| j.partitions.get(unit).copied())
                .unwrap_or(unit),
            StageKind::ShuffleMap { .. } => unit,
        };
        let rdd = stage.rdd.meta().to_string();
        let jobs: Vec<JobId> = stage.jobs.iter().copied().collect();
        let stage_attempt = stage.attempt;
        self.post(|| SchedulerEvent::StageCompleted {
            time: now_ms(),
            stage: stage_id,
            attempt: stage_attempt,
            failure: Some(message.clone()),
        });
        for job in jobs {
            let err = Error::JobFailed {
                job,
                stage: stage_id,
                rdd: rdd.clone(),
                partition,
                attempts,
                message: message.clone(),
            };
            self.end_job(job, Some(err));
        }
    }

    /// Finish a job (successfully when `error` is `None`) and release its stages.
    fn end_job(&mut self, job_id: JobId, error: Option<Error>) {
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        let elapsed = job.started.elapsed();
        if error.is_none()
            && let Some(s) = self.stages.get(&job.result_stage)
        {
            let attempt = s.attempt;
            self.post(|| SchedulerEvent::StageCompleted {
                time: now_ms(),
                stage: job.result_stage,
                attempt,
                failure: None,
            });
        }
        self.post(|| SchedulerEvent::JobEnd {
            time: now_ms(),
            job: job_id,
            succeeded: error.is_none(),
            error: error.as_ref().map(ToString::to_string),
        });
        match error {
            None => {
                job.span
                    .in_scope(|| info!(ms = elapsed.as_millis() as u64, "job finished"));
                let _ = job.reply.send(JobMessage::Done);
            }
            Some(e) => {
                job.span.in_scope(|| warn!("job failed: {e}"));
                let _ = job.reply.send(JobMessage::Failed(e));
            }
        }
        for id in job.stages {
            let Some(stage) = self.stages.get_mut(&id) else {
                continue;
            };
            stage.jobs.remove(&job_id);
            if stage.jobs.is_empty() {
                if stage.state != StageState::Idle {
                    stage.state = StageState::Idle;
                    stage.pending.clear();
                    stage.attempt += 1;
                }
                self.waiting.remove(&id);
                self.failures.retain(|(s, _), _| *s != id);
            }
        }
        self.forget_stage(job.result_stage);
    }
}

/// A reading task prefers executors that hold at least this share of one parent's map
/// outputs (Spark's reducer locality fraction).
const PREFERRED_SHARE: f64 = 0.2;

/// Executors holding at least [`PREFERRED_SHARE`] of the map outputs of some parent
/// shuffle, most outputs first.
fn preferred_executors(locations: &[(ShuffleId, Vec<String>)]) -> Vec<String> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (_, execs) in locations {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in execs.iter().filter(|e| !e.is_empty()) {
            *counts.entry(e).or_default() += 1;
        }
        for (e, n) in counts {
            if n as f64 >= PREFERRED_SHARE * execs.len() as f64 && !out.iter().any(|o| o.1 == e) {
                out.push((n, e.to_string()));
            }
        }
    }
    out.sort_by_key(|o| std::cmp::Reverse(o.0));
    out.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_executors_hold_a_fifth_of_a_parent() {
        let locs = |v: &[&str]| vec![(0, v.iter().map(|s| s.to_string()).collect())];
        assert_eq!(
            preferred_executors(&locs(&["a", "a", "a", "b", "c", "d", "e", "f", "g", "h"])),
            vec!["a".to_string()]
        );
        assert_eq!(
            preferred_executors(&locs(&["a", "b", "b", "b", "a"])),
            vec!["b".to_string(), "a".to_string()]
        );
        assert!(preferred_executors(&locs(&["", ""])).is_empty());
        assert!(preferred_executors(&[]).is_empty());
    }
}
