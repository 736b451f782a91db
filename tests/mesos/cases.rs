//! The cases, each against the real Mesos cluster of [`Harness`] and compared with
//! `local[2]`. A case returns a note for its timing line, or why it failed.

use crate::child::Driver;
use crate::cluster::{Cluster, executor_pids, framework_id, framework_named, used_cpus};
use crate::jobs::{self, Stall, check};
use spate::prelude::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Harness {
    pub local: Context,
    /// The cluster of the running case (the runner starts it for the case's topology).
    pub cluster: Option<Cluster>,
    /// This run's scratch directory.
    pub work: PathBuf,
}

impl Harness {
    pub fn cluster(&self) -> &Cluster {
        self.cluster
            .as_ref()
            .expect("the runner starts a cluster before each case")
    }

    pub fn url(&self) -> &str {
        &self.cluster().url
    }

    /// A fresh scratch directory for `tag`.
    pub fn dir(&self, tag: &str) -> PathBuf {
        let d = self.work.join(tag);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        d
    }

    /// A context on the cluster with default settings (the environment's
    /// `SPATE_TASK_CPUS` and friends apply; this test sets none).
    pub fn mesos(&self, app: &str) -> Result<Context, String> {
        Context::builder()
            .master(self.url())
            .app_name(app)
            .ui(false)
            .progress(false)
            .build()
            .map_err(|e| format!("the Mesos context on {}: {e}", self.url()))
    }

    /// A context on the cluster in `mode`.
    pub fn mesos_in(&self, app: &str, mode: spate::MesosMode) -> Result<Context, String> {
        self.mesos_with(app, mode, |b| b)
    }

    /// [`Harness::mesos_in`], with more settings made by `more`.
    pub fn mesos_with(
        &self,
        app: &str,
        mode: spate::MesosMode,
        more: impl FnOnce(spate::ContextBuilder) -> spate::ContextBuilder,
    ) -> Result<Context, String> {
        more(Context::builder())
            .master(self.url())
            .app_name(app)
            .ui(false)
            .progress(false)
            .mesos(spate::MesosOptions {
                mode: Some(mode),
                ..Default::default()
            })
            .build()
            .map_err(|e| format!("the {mode:?} Mesos context: {e}"))
    }
}

/// Run `job` on a thread; if it has not finished after `secs`, stop `ctx` (its jobs
/// fail) and report the time-out.
fn within<T: Send>(
    ctx: &Context,
    secs: f64,
    what: &str,
    job: impl FnOnce() -> T + Send,
) -> Result<T, String> {
    std::thread::scope(|s| {
        let handle = s.spawn(job);
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let timed_out = !handle.is_finished();
        if timed_out {
            ctx.stop();
        }
        let out = handle
            .join()
            .map_err(|_| format!("{what}: the job thread panicked"))?;
        if timed_out {
            Err(format!("{what}: not finished within {secs} s"))
        } else {
            Ok(out)
        }
    })
}

/// a. wordcount, join, pagerank and sort_by_key with default Mesos settings equal
/// local mode.
pub fn jobs_equal_local(h: &Harness) -> Result<String, String> {
    let ctx = h.mesos("mesos-test-jobs")?;
    let dir = h.dir("jobs");
    let note = within(&ctx, 150.0, "the jobs", || {
        jobs::jobs_equal(&ctx, &h.local, &dir)
    })??;
    drop(ctx);
    Ok(note)
}

/// b. The same jobs in fine-grained mode (one Mesos task per spate task, no
/// long-running executor).
pub fn fine_grained_jobs_equal_local(h: &Harness) -> Result<String, String> {
    let ctx = h.mesos_in("mesos-test-fine", spate::MesosMode::Fine)?;
    let dir = h.dir("fine");
    let note = within(&ctx, 150.0, "the jobs", || {
        jobs::jobs_equal(&ctx, &h.local, &dir)
    })??;
    drop(ctx);
    Ok(note)
}

/// Map output index files (`.../shuffle/shuffle_S_M.index`) in the executors'
/// sandboxes under `dir`.
fn shuffle_index_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if name.starts_with("shuffle_") && name.ends_with(".index") {
                out.push(path);
            }
        }
    }
    out
}

/// Dropping the last RDD that reads a shuffle deletes its map output files on the
/// executors, in both modes (the framework sends `RemoveShuffle` as framework
/// messages). Files of earlier cases' frameworks are left out by name.
pub fn dropped_shuffles_leave_executor_disks(h: &Harness) -> Result<String, String> {
    let mut note = Vec::new();
    for mode in [spate::MesosMode::Coarse, spate::MesosMode::Fine] {
        let run = &h.cluster().run;
        let before = shuffle_index_files(run);
        let ours = || -> Vec<PathBuf> {
            shuffle_index_files(run)
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect()
        };
        let job = |ctx: &Context| {
            let sums = ctx
                .range(0, 1000, 4)
                .map(|x| (x % 7, 1u64))
                .reduce_by_key_n(|a, b| a + b, 3);
            let keys = within(ctx, 120.0, "the job", || sums.count())?
                .map_err(|e| format!("{mode:?}: {e}"))?;
            check("keys", keys, 7)?;
            Ok::<_, String>(sums)
        };
        // By default small map outputs stay in the executors' memory: no files.
        let ctx = h.mesos_in("mesos-test-shuffle-in-memory", mode)?;
        drop(job(&ctx)?);
        check(
            &format!("{mode:?} map output files kept in memory"),
            ours().len(),
            0,
        )?;
        drop(ctx);
        // With no memory for them they go to the sandboxes, and go away with their RDD.
        let ctx = h.mesos_with("mesos-test-remove-shuffle", mode, |b| {
            b.shuffle_memory_bytes(0)
        })?;
        let sums = job(&ctx)?;
        check(&format!("{mode:?} map output files"), ours().len(), 4)?;
        drop(sums);
        let dropped = Instant::now();
        while !ours().is_empty() {
            if dropped.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "{mode:?}: map output files left 20 s after the shuffle's RDD was dropped: {:?}",
                    ours()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        note.push(format!("{mode:?} {:.1} s", dropped.elapsed().as_secs_f64()));
        drop(ctx);
    }
    Ok(format!("files gone after: {}", note.join(", ")))
}

/// Run [`jobs::stalled_counts`] on `ctx`; once its first reduce task stalls, call
/// `disturb` with the agent running it (1-based), then release the task. The result
/// and the time from the disturbance to the job's end.
fn disturbed_job(
    h: &Harness,
    ctx: &Context,
    tag: &str,
    limit_after: f64,
    disturb: impl FnOnce(usize) -> Result<(), String>,
) -> Result<(Vec<(i64, u64)>, Duration), String> {
    let dir = h.dir(tag);
    let ready = format!("spate-ready-{tag}-{}", std::process::id());
    let go = dir.join("go");
    let stall = Stall {
        once: dir.join("once").to_string_lossy().into_owned(),
        ready: ready.clone(),
        go: go.to_string_lossy().into_owned(),
        max_ms: 30_000,
    };
    std::thread::scope(|s| {
        let job = s.spawn(|| jobs::stalled_counts(ctx, Some(stall)));
        let cluster = h.cluster();
        let seen = crate::cluster::wait_until("a reduce task to stall", 90.0, || {
            Ok(cluster.agent_with_sandbox_file(&ready).is_some() || job.is_finished())
        });
        let agent = cluster.agent_with_sandbox_file(&ready);
        let disturbed = match (seen, agent) {
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err("the job ended before any reduce task stalled".to_string()),
            (Ok(()), Some(a)) => disturb(a),
        };
        let at = Instant::now();
        let _ = std::fs::write(&go, b"");
        if let Err(e) = disturbed {
            ctx.stop();
            let _ = job.join();
            return Err(e);
        }
        let deadline = at + Duration::from_secs_f64(limit_after);
        while !job.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !job.is_finished() {
            ctx.stop();
            let _ = job.join();
            return Err(format!(
                "the job did not finish within {limit_after} s of the disturbance"
            ));
        }
        let took = at.elapsed();
        let got = job
            .join()
            .map_err(|_| "the job thread panicked".to_string())?
            .map_err(|e| format!("the job failed: {e}"))?;
        Ok((got, took))
    })
}

/// c. The agent running a stalled reduce task is killed (`kill -9`, its executor with
/// it: a lost machine); the job finishes exactly, long before the master would remove
/// the agent (75 s).
pub fn agent_killed_mid_job(h: &Harness) -> Result<String, String> {
    let ctx = h.mesos("mesos-test-agent-kill")?;
    let mut killed = 0;
    let (got, took) = disturbed_job(h, &ctx, "agent-kill", 60.0, |agent| {
        killed = agent;
        h.cluster().kill_agent(agent)
    })?;
    println!(
        "agent_killed_mid_job: agent {killed} killed; the job finished {:.1} s later",
        took.as_secs_f64()
    );
    check(
        "result after losing an agent",
        got,
        jobs::stalled_counts(&h.local, None).map_err(|e| format!("local: {e}"))?,
    )?;
    if took >= Duration::from_secs(60) {
        return Err(format!(
            "the job took {:.1} s after the agent was killed (limit 60 s)",
            took.as_secs_f64()
        ));
    }
    drop(ctx);
    Ok(format!(
        "agent {killed} killed, job done {:.1} s later",
        took.as_secs_f64()
    ))
}

/// d. With ZooKeeper and two masters, the leading master is killed while a task stalls;
/// the framework follows the new leader and the job finishes exactly.
pub fn leading_master_killed_mid_job(h: &Harness) -> Result<String, String> {
    if !h.url().starts_with("mesos://zk://") {
        return Err(format!("expected a mesos://zk:// URL, got {}", h.url()));
    }
    let ctx = h.mesos("mesos-test-master-kill")?;
    let mut killed = 0;
    let (got, took) = disturbed_job(h, &ctx, "master-kill", 60.0, |_| {
        killed = h.cluster().leader_index()?;
        h.cluster().kill_master(killed)
    })?;
    let leader = h.cluster().leader().unwrap_or_else(|e| e);
    println!(
        "leading_master_killed_mid_job: master {killed} killed, new leader {leader}; the job finished {:.1} s later",
        took.as_secs_f64()
    );
    check(
        "result across a master failover",
        got,
        jobs::stalled_counts(&h.local, None).map_err(|e| format!("local: {e}"))?,
    )?;
    // The framework re-subscribed to the new leader under the same id, later jobs run,
    // and dropping the context tears it down there.
    let cluster = h.cluster();
    let name = "mesos-test-master-kill";
    let resubscribed = Instant::now();
    crate::cluster::wait_until("the framework at the new leader", 30.0, || {
        let state = cluster.state()?;
        match framework_named(&state, name) {
            (Some(_), _) => Ok(true),
            _ => Err(format!("no framework {name} at the new leader yet")),
        }
    })?;
    let resubscribed = resubscribed.elapsed();
    check(
        "a job after the failover",
        jobs::stalled_counts(&ctx, None).map_err(|e| format!("mesos: {e}"))?,
        jobs::stalled_counts(&h.local, None).map_err(|e| format!("local: {e}"))?,
    )?;
    drop(ctx);
    crate::cluster::wait_until(
        "TEARDOWN at the new leader",
        10.0,
        || match framework_named(&cluster.state()?, name) {
            (None, true) => Ok(true),
            (registered, completed) => Err(format!(
                "framework registered: {}, completed: {completed}",
                registered.is_some()
            )),
        },
    )?;
    Ok(format!(
        "master {killed} killed, job done {:.1} s later, framework at the new leader (waited {:.1} s after the job)",
        took.as_secs_f64(),
        resubscribed.as_secs_f64()
    ))
}

/// e. A driver child running a job gets `sig`: within 10 s it has exited, its framework
/// is completed (TEARDOWN) and no framework holds resources on the agents.
fn signal_tears_down(h: &Harness, sig: &str) -> Result<String, String> {
    let tag = format!("sig{}", sig.to_lowercase());
    let dir = h.dir(&tag);
    let name = format!("mesos-test-{tag}-{}", std::process::id());
    let mut driver = Driver::spawn(h.url(), "long-job", &dir, &name, &[])?;
    driver.wait_line("job running", 90.0)?;
    let cluster = h.cluster();
    let fid = framework_id(&cluster.state()?, &name)
        .ok_or_else(|| format!("no framework {name} at the master"))?;
    let sent = Instant::now();
    driver.signal(sig);
    let res = crate::cluster::wait_until(&format!("teardown after SIG{sig}"), 10.0, || {
        let exited = driver.describe_exit();
        let state = cluster.state()?;
        let (registered, completed) = framework_named(&state, &name);
        let cpus = used_cpus(&state);
        let executors = executor_pids(&cluster.run, &fid);
        if driver.exited().is_some()
            && registered.is_none()
            && completed
            && cpus == 0.0
            && executors.is_empty()
        {
            Ok(true)
        } else {
            Err(format!(
                "driver: {exited}; framework still registered: {}; completed: {completed}; cpus in use: {cpus}; executor processes left: {executors:?}",
                registered.is_some()
            ))
        }
    });
    let took = sent.elapsed();
    res.map_err(|e| format!("{e}; driver stderr:\n{}", driver.stderr_tail()))?;
    Ok(format!(
        "torn down {:.1} s after SIG{sig} (driver: {})",
        took.as_secs_f64(),
        driver.describe_exit()
    ))
}

pub fn sigterm_tears_the_framework_down(h: &Harness) -> Result<String, String> {
    signal_tears_down(h, "TERM")
}

pub fn sigint_tears_the_framework_down(h: &Harness) -> Result<String, String> {
    signal_tears_down(h, "INT")
}

/// f. A driver child is killed with SIGKILL mid-job (no TEARDOWN): its executors must
/// exit on their own, so that a new framework gets the agents' cpus and runs a job
/// within 30 s.
pub fn driver_killed_executors_exit(h: &Harness) -> Result<String, String> {
    let dir = h.dir("sigkill");
    let name = format!("mesos-test-sigkill-{}", std::process::id());
    let mut driver = Driver::spawn(h.url(), "long-job", &dir, &name, &[])?;
    driver.wait_line("job running", 90.0)?;
    let cluster = h.cluster();
    let fid = framework_id(&cluster.state()?, &name)
        .ok_or_else(|| format!("no framework {name} at the master"))?;
    let killed = Instant::now();
    driver.signal("KILL");
    if driver.wait_exit(5.0).is_none() {
        return Err("the driver child survived SIGKILL for 5 s".into());
    }
    let next_name = format!("mesos-test-after-sigkill-{}", std::process::id());
    let mut next = Driver::spawn(h.url(), "quick-job", &dir, &next_name, &[])?;
    let ran = next.wait_line("result ok", 30.0 - killed.elapsed().as_secs_f64());
    let took = killed.elapsed();
    let left = executor_pids(&cluster.run, &fid);
    let state = cluster.state()?;
    let (registered, _) = framework_named(&state, &name);
    if let Err(e) = ran {
        return Err(format!(
            "no job ran on a new framework within 30 s of the driver's SIGKILL ({e}); the killed framework: still registered: {}, executor processes alive: {left:?}, cpus in use: {}",
            registered.is_some(),
            used_cpus(&state)
        ));
    }
    if !left.is_empty() {
        return Err(format!(
            "a job ran, but executors of the killed framework are still alive after {:.1} s: {left:?}",
            took.as_secs_f64()
        ));
    }
    drop(next);
    Ok(format!(
        "new framework's job done {:.1} s after SIGKILL",
        took.as_secs_f64()
    ))
}

/// g. Many small jobs on one context, each equal to local mode; prints the total time
/// next to `local-cluster[2]` on the same jobs (figures, not checked).
pub fn many_small_jobs(h: &Harness) -> Result<String, String> {
    let n: i64 = std::env::var("SPATE_MESOS_SMALL_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let want = (0..n)
        .map(|i| jobs::small_job(&h.local, i).map_err(|e| format!("local job {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let run_all = |ctx: &Context, what: &str| -> Result<f64, String> {
        let t = Instant::now();
        for (i, w) in want.iter().enumerate() {
            let got = jobs::small_job(ctx, i as i64).map_err(|e| format!("{what} job {i}: {e}"))?;
            check(&format!("{what} job {i}"), &got, w)?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let mesos = h.mesos("mesos-test-small-jobs")?;
    let on_mesos = within(&mesos, 400.0, "the small jobs on Mesos", || {
        run_all(&mesos, "mesos")
    })??;
    drop(mesos);
    // A long heartbeat timeout: it also bounds how long the driver waits for an
    // executor's first frame, and an executor of a debug build hashes its 100+ MB binary
    // (SHA-256, `exe_id`) before registering, which can take over the default 10 s on a
    // loaded 2-core machine ("executor exec-0 exited before registering").
    let cluster = Context::builder()
        .master("local-cluster[2]")
        .heartbeat_timeout(Duration::from_secs(60))
        .ui(false)
        .progress(false)
        .build()
        .map_err(|e| format!("local-cluster[2]: {e}"))?;
    let on_cluster = run_all(&cluster, "local-cluster[2]")?;
    drop(cluster);
    let line = format!(
        "mesos {on_mesos:.1} s, local-cluster[2] {on_cluster:.1} s ({:.1}x) for {n} jobs",
        on_mesos / on_cluster.max(1e-3)
    );
    println!("many_small_jobs: {line}");
    Ok(line)
}

/// Settings that would override the defaults in a driver child.
const SETTINGS: [&str; 4] = [
    "SPATE_TASK_CPUS",
    "SPATE_TASK_MEM_MB",
    "SPATE_EXECUTOR_CPUS",
    "SPATE_EXECUTOR_MEM_MB",
];

/// h. With default settings (none in the environment either), a job runs on agents of
/// 1 cpu within 60 s.
pub fn default_settings_run_on_one_cpu_agents(h: &Harness) -> Result<String, String> {
    let dir = h.dir("defaults");
    let name = format!("mesos-test-defaults-{}", std::process::id());
    let started = Instant::now();
    let mut driver = Driver::spawn(h.url(), "quick-job", &dir, &name, &SETTINGS)?;
    match driver.wait_line("result ok", 60.0) {
        Ok(line) => {
            driver.wait_exit(10.0);
            Ok(format!(
                "{line} (child total {:.1} s)",
                started.elapsed().as_secs_f64()
            ))
        }
        Err(e) => {
            let launched = h
                .cluster()
                .state()
                .ok()
                .and_then(|s| {
                    s["frameworks"].as_array().and_then(|fs| {
                        fs.iter()
                            .find(|f| f["name"].as_str() == Some(name.as_str()))
                            .map(|f| {
                                f["tasks"].as_array().map_or(0, Vec::len)
                                    + f["completed_tasks"].as_array().map_or(0, Vec::len)
                            })
                    })
                })
                .map_or("unknown".to_string(), |n| n.to_string());
            Err(format!(
                "with default settings on agents of 1 cpu: {e}\n(tasks the framework launched: {launched})"
            ))
        }
    }
}

/// Resources that never fit: the running job fails after the offer timeout with what an
/// executor needs and the largest offer seen, instead of hanging.
pub fn resources_that_never_fit_fail_saying_why(h: &Harness) -> Result<String, String> {
    let ctx = Context::builder()
        .master(h.url())
        .app_name("mesos-test-no-fit")
        .ui(false)
        .progress(false)
        .mesos(spate::MesosOptions {
            executor_mem_mb: Some(4000.0),
            offer_timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        })
        .build()
        .map_err(|e| format!("the Mesos context: {e}"))?;
    let started = Instant::now();
    let outcome = within(&ctx, 60.0, "the job", || ctx.range(0, 100, 2).count())?;
    let took = started.elapsed();
    let err = match outcome {
        Ok(n) => {
            return Err(format!(
                "the job ran ({n} elements) on agents too small for it"
            ));
        }
        Err(e) => e.to_string(),
    };
    for want in ["4512 MB", "largest offer seen had 1 cpus and 2048 MB"] {
        if !err.contains(want) {
            return Err(format!("the error does not say {want:?}: {err}"));
        }
    }
    drop(ctx);
    Ok(format!("failed after {:.1} s: {err}", took.as_secs_f64()))
}

/// An executor that dies (here: aborts) is named by its cause in the job's error: the
/// agent's terminal update (the signal) and the last lines of its stderr, read from the
/// sandbox through the agent; after max_failures such deaths the job fails. Both modes.
pub fn executor_death_is_named_with_its_stderr(h: &Harness) -> Result<String, String> {
    let mut notes = Vec::new();
    for mode in [spate::MesosMode::Coarse, spate::MesosMode::Fine] {
        let ctx = h.mesos_in("mesos-test-abort", mode)?;
        let outcome = within(&ctx, 120.0, "the aborting job", || {
            ctx.range(0, 10, 2)
                .map(|x| {
                    if x == 3 {
                        eprintln!("about to abort on element 3");
                        std::process::abort();
                    }
                    x
                })
                .count()
        })?;
        drop(ctx);
        let err = match outcome {
            Ok(n) => {
                return Err(format!(
                    "{mode:?}: the job survived the aborts, counted {n}"
                ));
            }
            Err(e) => e.to_string(),
        };
        for want in ["died", "about to abort on element 3", "after 4 attempt"] {
            if !err.contains(want) {
                return Err(format!("{mode:?}: the error does not say {want:?}: {err}"));
            }
        }
        notes.push(format!("{mode:?}: {err}"));
    }
    Ok(notes.join("\n"))
}
