//! Jobs over `mesos://` against the Mesos test double: results equal local mode, in
//! fine-grained and in coarse-grained mode, also when an agent is lost mid-job (acting on
//! TASK_LOST long before the master removes the agent) or the subscription drops; the
//! double catches a framework that does not acknowledge; TEARDOWN leaves no executor
//! behind.

use crate::fake_mesos::{AgentSpec, FakeMesos, Options};
use crate::{check, first_time, temp_dir};
use spate::MesosOptions;
use spate::prelude::*;
use std::time::{Duration, Instant};

/// Two agents; each fits its executor and two 1-cpu tasks.
const AGENTS: [AgentSpec; 2] = [
    AgentSpec {
        cpus: 2.5,
        mem: 2048.0,
    },
    AgentSpec {
        cpus: 2.5,
        mem: 2048.0,
    },
];

fn mesos_context(fake: &FakeMesos) -> Result<Context, String> {
    mesos_context_with(fake, Context::builder())
}

/// A fine-grained context on the double, from `builder` (for extra settings).
fn mesos_context_with(fake: &FakeMesos, builder: spate::ContextBuilder) -> Result<Context, String> {
    builder
        .master(format!("mesos://{}", fake.master))
        .mesos(MesosOptions {
            // Fine-grained: custom executors, one Mesos task per spate task (the
            // `mesos_coarse_*` cases run the default, coarse-grained mode).
            mode: Some(spate::MesosMode::Fine),
            task_mem_mb: Some(256.0),
            executor_mem_mb: Some(64.0),
            failover_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        })
        .build()
        .map_err(|e| format!("mesos context: {e}"))
}

fn wait_for(what: &str, secs: u64, cond: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn no_violations(fake: &FakeMesos) -> Result<(), String> {
    let v = fake.log(|l| l.violations.clone());
    if v.is_empty() {
        Ok(())
    } else {
        Err(format!("Mesos protocol violations: {v:?}"))
    }
}

/// Drop the context and check TEARDOWN shut every executor down.
fn teardown(fake: &FakeMesos, ctx: Context) -> Result<(), String> {
    drop(ctx);
    if !fake.torn_down() {
        return Err("the framework was not torn down when the context was dropped".into());
    }
    wait_for("executors to exit after TEARDOWN", 15, || {
        fake.live_executors() == 0
    })
}

/// wordcount, join and pagerank over `mesos://` equal local mode; one executor per agent
/// serves every job.
pub fn jobs_equal_local(_cluster: &Context, local: &Context) -> Result<(), String> {
    let fake = FakeMesos::start(&AGENTS, temp_dir("mesos-jobs"));
    let ctx = mesos_context(&fake)?;
    check("default parallelism", ctx.default_parallelism(), 4)?;
    crate::word_count_equals_local(&ctx, local)?;
    crate::join_equals_local(&ctx, local)?;
    crate::pagerank_equals_local(&ctx, local)?;
    crate::sort_by_key_equals_local(&ctx, local)?;
    crate::large_results_travel_by_url(&ctx, local)?;
    no_violations(&fake)?;
    let (started, fetched, launched) =
        fake.log(|l| (l.executors_started, l.fetches, l.tasks_launched));
    check("executors started (one per agent, reused)", started, 2)?;
    check("executor binaries fetched", fetched, 2)?;
    if launched < 50 {
        return Err(format!("only {launched} tasks launched"));
    }
    let calls = fake.log(|l| l.calls.clone());
    for c in ["SUPPRESS", "REVIVE", "ACKNOWLEDGE", "ACCEPT"] {
        if !calls.iter().any(|x| x == c) {
            return Err(format!("no {c} call: {calls:?}"));
        }
    }
    teardown(&fake, ctx)?;
    no_violations(&fake)
}

/// A shuffle job whose first reduce task to run writes `spate-ready` into its sandbox
/// and then stalls `stall` (so the test can break something while it runs).
fn stalled_counts(ctx: &Context, marker: Option<(String, u64)>) -> spate::Result<Vec<(i64, u64)>> {
    let counts = ctx
        .range(0, 100_000, 8)
        .map(|x| ((x * 7) % 1000, 1u64))
        .reduce_by_key_n(|a, b| a + b, 4);
    let checked = match marker {
        Some(m) => counts.map_partitions_with(m, |(m, stall), it| {
            if first_time(m) {
                let _ = std::fs::write("spate-ready", b"");
                std::thread::sleep(Duration::from_millis(*stall));
            }
            it
        }),
        None => counts,
    };
    let mut v = checked.collect()?;
    v.sort();
    Ok(v)
}

/// Run [`stalled_counts`] on `ctx` while `disturb` runs once a task stalls.
fn disturbed_job(
    fake: &FakeMesos,
    ctx: &Context,
    tag: &str,
    stall: u64,
    disturb: impl FnOnce(usize) + Send,
) -> Result<Vec<(i64, u64)>, String> {
    let marker = temp_dir(tag).join("stalled");
    std::thread::scope(|s| {
        let job =
            s.spawn(|| stalled_counts(ctx, Some((marker.to_string_lossy().into_owned(), stall))));
        let agent = wait_for("a stalled task", 60, || {
            fake.agent_of_sandbox_file("spate-ready").is_some()
        })
        .map(|()| fake.agent_of_sandbox_file("spate-ready").unwrap_or(0));
        if let Ok(a) = agent {
            disturb(a);
        }
        let got = job.join().map_err(|_| "job thread panicked".to_string())?;
        agent?;
        got.map_err(|e| e.to_string())
    })
}

/// The agent running a reduce task (and holding map outputs) disappears mid-job: its
/// tasks are lost, its outputs recomputed on the other agent, the result is exact, and
/// the job is done well before the master removes the agent (it reports TASK_LOST with
/// REASON_AGENT_DISCONNECTED at once, FAILURE only after the removal delay).
fn lose_agent_mid_job(
    fake: &FakeMesos,
    ctx: &Context,
    local: &Context,
    tag: &str,
    removal: Duration,
) -> Result<usize, String> {
    let killed = std::sync::Mutex::new(None);
    let got = disturbed_job(fake, ctx, tag, 60_000, |agent| {
        fake.kill_agent(agent);
        if let Ok(mut k) = killed.lock() {
            *k = Some((agent, Instant::now()));
        }
    })?;
    let (agent, at) = killed
        .into_inner()
        .map_err(|e| e.to_string())?
        .ok_or("no agent was killed")?;
    let took = at.elapsed();
    println!("  job done {:.1}s after the agent died", took.as_secs_f64());
    if fake.agent_removed(agent) || took > removal / 2 {
        return Err(format!(
            "the job took {took:?} after the agent died: it waited for the agent's removal \
             ({removal:?}) instead of acting on TASK_LOST"
        ));
    }
    check(
        "result after losing an agent",
        got,
        stalled_counts(local, None).map_err(|e| e.to_string())?,
    )?;
    Ok(agent)
}

/// [`lose_agent_mid_job`] in fine-grained mode, with the real master's 75 s removal
/// delay.
pub fn agent_lost_mid_job(_cluster: &Context, local: &Context) -> Result<(), String> {
    let fake = FakeMesos::start(&AGENTS, temp_dir("mesos-agent-lost"));
    let ctx = mesos_context(&fake)?;
    lose_agent_mid_job(
        &fake,
        &ctx,
        local,
        "agent-lost",
        Options::default().agent_removal_delay,
    )?;
    no_violations(&fake)?;
    teardown(&fake, ctx)?;
    no_violations(&fake)
}

/// The subscription connection breaks while a task runs: the framework re-subscribes
/// with its id, reconciles, gets the update that waited, and the result is exact.
pub fn dropped_subscription(_cluster: &Context, local: &Context) -> Result<(), String> {
    let fake = FakeMesos::start(&AGENTS, temp_dir("mesos-resubscribe"));
    let ctx = mesos_context(&fake)?;
    let got = disturbed_job(&fake, &ctx, "resubscribe", 1500, |_| {
        fake.drop_subscription()
    })?;
    check(
        "result across a re-subscription",
        got,
        stalled_counts(local, None).map_err(|e| e.to_string())?,
    )?;
    let subs = fake.log(|l| l.subscribes.clone());
    check("subscriptions", subs.len(), 2)?;
    let first_id = subs[0].framework_id.clone();
    let again = subs[1].framework_id.clone();
    check("first SUBSCRIBE has no framework id", first_id, None)?;
    if again.is_none() {
        return Err("re-SUBSCRIBE without the framework id".into());
    }
    if !fake.log(|l| l.calls.iter().any(|c| c == "RECONCILE")) {
        return Err("no RECONCILE after re-subscribing".into());
    }
    no_violations(&fake)?;
    teardown(&fake, ctx)?;
    no_violations(&fake)
}

/// A hand-written framework that launches a real task but never acknowledges: the
/// double must report it.
pub fn non_acknowledging_framework_is_caught(
    _cluster: &Context,
    local: &Context,
) -> Result<(), String> {
    use bytes::Bytes;
    use prost::Message as _;
    use spate_mesos::http::{Retry, post};
    use spate_mesos::v1;
    use spate_mesos::v1::scheduler::{Call, Event, call, event};

    let fake = FakeMesos::start(&AGENTS[..1], temp_dir("mesos-noack"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let secret = spate::ship::Secret::generate().map_err(|e| e.to_string())?;
    let (data, _) = crate::sealed_sum_task(local, &secret, 1)?;
    let caught = rt.block_on(async {
        let (mut ep, mut stream) = raw_subscribe(&fake, "no-ack").await?;
        let sid = stream.stream_id.clone();
        let mut fid = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut launched = false;
        while Instant::now() < deadline {
            let Ok(Ok(Some(rec))) =
                tokio::time::timeout(Duration::from_millis(200), stream.next_record()).await
            else {
                if fake.log(|l| l.violations.iter().any(|v| v.contains("not acknowledged"))) {
                    return Ok::<_, String>(true);
                }
                continue;
            };
            let e = Event::decode(rec).map_err(|e| e.to_string())?;
            if let Some(s) = e.subscribed {
                fid = Some(s.framework_id.clone());
            }
            let Some(offers) = e.offers.filter(|_| !launched) else {
                continue;
            };
            let o = &offers.offers[0];
            let carve = |name: &str, v: f64| {
                let mut r = o
                    .resources
                    .iter()
                    .find(|r| r.name == name)
                    .cloned()
                    .unwrap_or_default();
                r.scalar = Some(v1::value::Scalar { value: v });
                r
            };
            let executor = v1::ExecutorInfo {
                r#type: Some(v1::executor_info::Type::Custom as i32),
                executor_id: v1::ExecutorId { value: "e1".into() },
                framework_id: fid.clone(),
                command: Some(v1::CommandInfo {
                    shell: Some(false),
                    value: Some("/proc/self/exe".into()),
                    arguments: vec!["executor".into()],
                    environment: Some(v1::Environment {
                        variables: vec![v1::environment::Variable {
                            name: "SPATE_SECRET".into(),
                            value: Some(secret.to_hex()),
                            ..Default::default()
                        }],
                    }),
                    ..Default::default()
                }),
                resources: vec![carve("cpus", 0.1), carve("mem", 32.0)],
                ..Default::default()
            };
            let task = v1::TaskInfo {
                name: "t".into(),
                task_id: v1::TaskId { value: "t1".into() },
                agent_id: o.agent_id.clone(),
                resources: vec![carve("cpus", 1.0), carve("mem", 128.0)],
                executor: Some(executor),
                data: Some(data.clone()),
                ..Default::default()
            };
            let accept = Call {
                framework_id: fid.clone(),
                r#type: Some(call::Type::Accept as i32),
                accept: Some(call::Accept {
                    offer_ids: vec![o.id.clone()],
                    operations: vec![v1::offer::Operation {
                        r#type: Some(v1::offer::operation::Type::Launch as i32),
                        launch: Some(v1::offer::operation::Launch {
                            task_infos: vec![task],
                        }),
                        ..Default::default()
                    }],
                    filters: None,
                }),
                ..Default::default()
            };
            post(
                &mut ep,
                Bytes::from(accept.encode_to_vec()),
                sid.as_deref(),
                None,
                Retry::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
            launched = true;
            let _ = event::Type::Update; // updates arrive and are never acknowledged
        }
        let teardown = Call {
            framework_id: fid,
            r#type: Some(call::Type::Teardown as i32),
            ..Default::default()
        };
        let _ = post(
            &mut ep,
            Bytes::from(teardown.encode_to_vec()),
            sid.as_deref(),
            None,
            Retry::default(),
        )
        .await;
        Ok(false)
    })?;
    if !caught {
        return Err(format!(
            "the double did not catch the missing acknowledgements: {:?}",
            fake.log(|l| l.violations.clone())
        ));
    }
    Ok(())
}

/// An ERROR event (here "Framework failed over") fails the running job with its message
/// at once, and later jobs too, instead of hanging.
pub fn error_event_fails_jobs(_cluster: &Context, _local: &Context) -> Result<(), String> {
    // Offer cycles are not what this case is about, and its time bound should not depend
    // on them.
    let fake = FakeMesos::start_with(
        &AGENTS,
        temp_dir("mesos-error"),
        Options {
            allocation_interval: Duration::from_millis(200),
            ..Options::default()
        },
    );
    let ctx = mesos_context(&fake)?;
    let started = Instant::now();
    let err = match disturbed_job(&fake, &ctx, "error", 60_000, |_| {
        fake.send_error("Framework failed over")
    }) {
        Ok(_) => return Err("the job succeeded after ERROR".into()),
        Err(e) => e,
    };
    if !err.contains("Framework failed over") {
        return Err(format!(
            "job error does not carry the master's message: {err}"
        ));
    }
    if started.elapsed() > Duration::from_secs(30) {
        return Err("the job waited for the stalled task instead of failing".into());
    }
    let later = ctx.range(0, 10, 2).count();
    match later {
        Err(e) if e.to_string().contains("Framework failed over") => {}
        other => return Err(format!("a later job: {other:?}")),
    }
    drop(ctx);
    no_violations(&fake)
}

/// Ctrl-C on a driver running on Mesos tears the framework down: the process exits with
/// 130 and no executor is left behind.
pub fn ctrl_c_tears_the_framework_down(_cluster: &Context, _local: &Context) -> Result<(), String> {
    let bin = wordcount_example()?;
    let fake = FakeMesos::start(&AGENTS[..1], temp_dir("mesos-ctrl-c"));
    let child = std::process::Command::new(bin)
        .args(["--master", &format!("mesos://{}", fake.master)])
        .env("SPATE_TASK_MEM_MB", "256")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let running = wait_for("the example's tasks to run", 60, || {
        fake.live_executors() > 0
    });
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let child = std::sync::Mutex::new(child);
    let exited = wait_for("the driver to exit", 20, || {
        matches!(child.lock().map(|mut c| c.try_wait()), Ok(Ok(Some(_))))
    });
    let mut child = child.into_inner().map_err(|e| e.to_string())?;
    if exited.is_err() {
        let _ = child.kill();
    }
    running?;
    sent.map_err(|e| e.to_string())?;
    exited?;
    let code = child.wait().map_err(|e| e.to_string())?.code();
    check("exit code after Ctrl-C", code, Some(130))?;
    if !fake.torn_down() {
        return Err("no TEARDOWN after Ctrl-C".into());
    }
    wait_for("executors to exit", 15, || fake.live_executors() == 0)?;
    no_violations(&fake)
}

/// A pre-deployed executor (an absolute path on every agent) is started in place: the
/// agents fetch nothing.
pub fn pre_deployed_executor(_cluster: &Context, local: &Context) -> Result<(), String> {
    let fake = FakeMesos::start(&AGENTS, temp_dir("mesos-predeployed"));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let ctx = Context::builder()
        .master(format!("mesos://{}", fake.master))
        .mesos(MesosOptions {
            mode: Some(spate::MesosMode::Fine),
            task_mem_mb: Some(256.0),
            executor_uri: Some(exe.to_string_lossy().into_owned()),
            ..Default::default()
        })
        .build()
        .map_err(|e| e.to_string())?;
    crate::join_equals_local(&ctx, local)?;
    check("binaries fetched", fake.log(|l| l.fetches), 0)?;
    if fake.log(|l| l.executors_started) == 0 {
        return Err("no executor started".into());
    }
    teardown(&fake, ctx)?;
    no_violations(&fake)
}

/// The built `wordcount` example next to this test binary (`cargo test` builds examples).
fn wordcount_example() -> Result<std::path::PathBuf, String> {
    // target/<profile>/deps/cluster-<hash> → target/<profile>/examples/wordcount
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    exe.parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("examples").join("wordcount"))
        .filter(|b| b.exists())
        .ok_or_else(|| "the wordcount example is not built (cargo test builds it)".into())
}

/// Fine-grained executors of a different build (another program pre-deployed as the
/// executor) refuse every task: each is shut down after its first refusal and its agent
/// ruled out, so no agent gets a second executor, and the job fails saying to redeploy.
pub fn fine_different_build_is_removed_not_retried(
    _cluster: &Context,
    _local: &Context,
) -> Result<(), String> {
    let fake = FakeMesos::start(&AGENTS, temp_dir("mesos-other-build"));
    let other = wordcount_example()?;
    let ctx = Context::builder()
        .master(format!("mesos://{}", fake.master))
        .mesos(MesosOptions {
            mode: Some(spate::MesosMode::Fine),
            task_mem_mb: Some(256.0),
            executor_uri: Some(other.to_string_lossy().into_owned()),
            offer_timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        })
        .build()
        .map_err(|e| e.to_string())?;
    let err = match ctx.range(0, 100, 4).map(|x| x + 1).count() {
        Ok(n) => return Err(format!("a different build ran the job ({n})")),
        Err(e) => e.to_string(),
    };
    if !err.contains("different build") || !err.contains("redeploy") {
        return Err(format!("the error does not say to redeploy: {err}"));
    }
    let started = fake.log(|l| l.executors_started);
    if started > AGENTS.len() {
        return Err(format!(
            "{started} executors started on {} agents: a refusing agent was tried again",
            AGENTS.len()
        ));
    }
    teardown(&fake, ctx)?;
    no_violations(&fake)
}

/// A fine-grained driver killed outright (no TEARDOWN): its executors notice the
/// driver's liveness connection closing and exit on their own, well before the
/// framework's failover timeout.
pub fn fine_killed_driver_executors_exit(
    _cluster: &Context,
    _local: &Context,
) -> Result<(), String> {
    let bin = wordcount_example()?;
    let root = temp_dir("mesos-driver-killed");
    let fake = FakeMesos::start(&AGENTS[..1], root.clone());
    let mut child = std::process::Command::new(bin)
        .args(["--master", &format!("mesos://{}", fake.master)])
        .env("SPATE_TASK_MEM_MB", "256")
        .env("SPATE_MESOS_MODE", "fine")
        .env("SPATE_MESOS_FAILOVER_TIMEOUT", "600")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let running = wait_for("the example's executor to run", 60, || {
        fake.live_executors() > 0
    });
    let _ = child.kill();
    let _ = child.wait();
    running?;
    wait_for("executors to exit without TEARDOWN", 20, || {
        fake.live_executors() == 0
    })
    .map_err(|e| format!("{e}; executor stderr: {}", sandbox_stderr(&root)))?;
    if fake.torn_down() {
        return Err("a SIGKILLed driver sent TEARDOWN?".into());
    }
    // (The dead driver cannot acknowledge its last updates: the double reports that, as
    // it should; nothing else may be wrong.)
    let v = fake.log(|l| l.violations.clone());
    match v.iter().find(|v| !v.contains("not acknowledged")) {
        Some(other) => Err(format!("Mesos protocol violation: {other}")),
        None => Ok(()),
    }
}

/// Figures, not a check: with `SPATE_BENCH_CORPUS=FILE` (e.g. a corpus from
/// `../shared/bench`), word count of FILE in local-cluster[2] and over `mesos://` with two
/// one-task agents of the double, three rounds each; prints the times. Skipped otherwise.
pub fn bench_wordcount(cluster: &Context, _local: &Context) -> Result<(), String> {
    let Ok(path) = std::env::var("SPATE_BENCH_CORPUS") else {
        println!("(SPATE_BENCH_CORPUS not set: nothing measured)");
        return Ok(());
    };
    let one_task = AgentSpec {
        cpus: 1.1,
        mem: 2048.0,
    };
    let fake = FakeMesos::start(&[one_task, one_task], temp_dir("mesos-bench"));
    let mesos = mesos_context(&fake)?;
    let path = std::path::PathBuf::from(path);
    let mut want = None;
    for (name, ctx) in [
        ("local-cluster[2]", cluster),
        ("mesos (2 agents x 1 task)", &mesos),
    ] {
        for round in 0..3 {
            let t = Instant::now();
            let got = crate::word_counts(ctx, &path).map_err(|e| e.to_string())?;
            println!("{name} round {round}: {:.2} s", t.elapsed().as_secs_f64());
            match &want {
                None => want = Some(got),
                Some(w) => check("same counts", &got, w)?,
            }
        }
    }
    let (tasks, started) = fake.log(|l| (l.tasks_launched, l.executors_started));
    println!("mesos: {tasks} tasks launched on {started} executors");
    teardown(&fake, mesos)?;
    no_violations(&fake)
}

/// A job that fails while most of its tasks still wait for offers: those tasks are taken
/// back, never launched (and a later job runs normally).
pub fn aborted_jobs_do_not_launch_queued_tasks(
    _cluster: &Context,
    _local: &Context,
) -> Result<(), String> {
    let one_slot = AgentSpec {
        cpus: 1.1,
        mem: 2048.0,
    };
    let fake = FakeMesos::start(&[one_slot], temp_dir("mesos-cancel"));
    let ctx = mesos_context_with(&fake, Context::builder().max_failures(1))?;
    let err = ctx
        .range(0, 40, 40)
        .map(|x| {
            if x == 0 {
                panic!("the first partition fails");
            }
            x
        })
        .count();
    if !err
        .as_ref()
        .is_err_and(|e| e.to_string().contains("the first partition fails"))
    {
        return Err(format!("expected the job to fail: {err:?}"));
    }
    // give the double time to offer again: nothing of the failed job may launch
    std::thread::sleep(Duration::from_millis(1500));
    let launched = fake.log(|l| l.tasks_launched);
    if launched > 3 {
        return Err(format!(
            "{launched} of 40 tasks launched after the job had failed"
        ));
    }
    check(
        "later job",
        ctx.range(0, 10, 2).count().map_err(|e| e.to_string())?,
        10,
    )?;
    teardown(&fake, ctx)?;
    no_violations(&fake)
}

/// A context on the double in the default mode (coarse-grained: one long-running
/// executor command task per agent).
fn coarse_context(fake: &FakeMesos) -> Result<Context, String> {
    Context::builder()
        .master(format!("mesos://{}", fake.master))
        .mesos(MesosOptions {
            task_mem_mb: Some(256.0),
            executor_mem_mb: Some(64.0),
            failover_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        })
        .build()
        .map_err(|e| format!("mesos context: {e}"))
}

/// The executor command tasks launched so far, as (agent, task id), and a check that
/// there is exactly one per agent.
fn one_command_task_per_agent(fake: &FakeMesos) -> Result<Vec<(usize, String)>, String> {
    let mut tasks = fake.log(|l| l.command_tasks.clone());
    tasks.sort();
    let agents: Vec<usize> = tasks.iter().map(|t| t.0).collect();
    check("agents of the executor command tasks", agents, vec![0, 1])?;
    Ok(tasks)
}

/// Coarse-grained mode (the default) on the double: wordcount, join, pagerank, sort and a
/// large collect equal local mode; each agent runs one executor command task, started
/// once (fetching the binary once) and reused by every job; dropping the context tears
/// the framework down and ends the command tasks.
pub fn coarse_jobs_equal_local(_cluster: &Context, local: &Context) -> Result<(), String> {
    let fake = FakeMesos::start(&AGENTS, temp_dir("mesos-coarse-jobs"));
    let ctx = coarse_context(&fake)?;
    crate::word_count_equals_local(&ctx, local)?;
    let first = one_command_task_per_agent(&fake)?;
    crate::join_equals_local(&ctx, local)?;
    crate::pagerank_equals_local(&ctx, local)?;
    crate::sort_by_key_equals_local(&ctx, local)?;
    crate::large_results_travel_by_url(&ctx, local)?;
    no_violations(&fake)?;
    check(
        "executor command tasks after every job (reused)",
        one_command_task_per_agent(&fake)?,
        first,
    )?;
    let (custom, commands, fetched) =
        fake.log(|l| (l.executors_started, l.commands_started, l.fetches));
    check("custom executors started", custom, 0)?;
    check("command task processes started", commands, 2)?;
    check("executor binaries fetched", fetched, 2)?;
    check("live executor processes", fake.live_executors(), 2)?;
    let calls = fake.log(|l| l.calls.clone());
    for c in ["ACCEPT", "ACKNOWLEDGE"] {
        if !calls.iter().any(|x| x == c) {
            return Err(format!("no {c} call: {calls:?}"));
        }
    }
    teardown(&fake, ctx)?;
    no_violations(&fake)
}

/// [`lose_agent_mid_job`] in coarse-grained mode, with a removal delay shortened to 20 s:
/// the job finishes long before it; the agent's later removal (FAILURE) does not disturb
/// the next job, which runs on the remaining agent.
pub fn coarse_agent_lost_mid_job(_cluster: &Context, local: &Context) -> Result<(), String> {
    let removal = Duration::from_secs(20);
    let fake = FakeMesos::start_with(
        &AGENTS,
        temp_dir("mesos-coarse-agent-lost"),
        Options {
            agent_removal_delay: removal,
            ..Options::default()
        },
    );
    let ctx = coarse_context(&fake)?;
    let agent = lose_agent_mid_job(&fake, &ctx, local, "coarse-agent-lost", removal)?;
    no_violations(&fake)?;
    wait_for("the master to remove the lost agent", 30, || {
        fake.agent_removed(agent)
    })?;
    check(
        "a job after the agent's removal",
        ctx.range(0, 1000, 4).count().map_err(|e| e.to_string())?,
        1000,
    )?;
    let lost = fake.log(|l| l.command_tasks.iter().filter(|t| t.0 == agent).count());
    check("executor command tasks on the lost agent", lost, 1)?;
    teardown(&fake, ctx)?;
    no_violations(&fake)
}

/// An agent whose fetcher hands out a truncated binary: the launch command's SHA-256
/// check stops it before it runs ("corrupt download", exit 86), the agent is not tried
/// again for this application, and jobs run exactly on the other agent.
pub fn coarse_corrupt_download_rules_the_agent_out(
    _cluster: &Context,
    local: &Context,
) -> Result<(), String> {
    let root = temp_dir("mesos-corrupt");
    let fake = FakeMesos::start_with(
        &AGENTS,
        root.clone(),
        Options {
            corrupt_downloads_on: Some(1),
            ..Options::default()
        },
    );
    let ctx = coarse_context(&fake)?;
    crate::word_count_equals_local(&ctx, local)?;
    crate::join_equals_local(&ctx, local)?;
    // Offers from the bad agent keep coming; none may start another executor there.
    std::thread::sleep(Duration::from_secs(3));
    crate::sort_by_key_equals_local(&ctx, local)?;
    let on = |agent: usize| fake.log(|l| l.command_tasks.iter().filter(|t| t.0 == agent).count());
    check("executor attempts on the corrupting agent", on(1), 1)?;
    check("executors on the good agent", on(0), 1)?;
    let said = std::fs::read_dir(root.join("agent-1"))
        .map_err(|e| e.to_string())?
        .filter_map(|d| std::fs::read_to_string(d.ok()?.path().join("stderr")).ok())
        .any(|e| e.contains("corrupt download"));
    if !said {
        return Err("the corrupting agent's sandbox does not say \"corrupt download\"".into());
    }
    no_violations(&fake)?;
    teardown(&fake, ctx)?;
    no_violations(&fake)
}

/// What a hand-written framework saw of one task: state, message, source, reason.
type Seen = (i32, Option<String>, Option<i32>, Option<i32>);

/// The double's command tasks, driven by a hand-written framework: a command that exits
/// non-zero is TASK_FAILED "Command exited with status 3" from the command executor, one
/// that exits 0 (and sees the Mesos environment of a command task) TASK_FINISHED, a KILL
/// ends a running one with TASK_KILLED, and a task with both `command` and `executor` is
/// refused with TASK_ERROR, all as Mesos 1.12 does.
pub fn command_tasks_behave_like_mesos(_cluster: &Context, _local: &Context) -> Result<(), String> {
    use bytes::Bytes;
    use prost::Message as _;
    use spate_mesos::http::{Retry, post};
    use spate_mesos::v1;
    use spate_mesos::v1::scheduler::{Call, Event, call};
    use std::collections::HashMap;

    let fake = FakeMesos::start_with(
        &AGENTS[..1],
        temp_dir("mesos-command-tasks"),
        Options {
            allocation_interval: Duration::from_millis(200),
            ..Options::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let seen: HashMap<String, Vec<Seen>> = rt.block_on(async {
        let (mut ep, mut stream) = raw_subscribe(&fake, "command-tasks").await?;
        let sid = stream.stream_id.clone();
        let mut fid = None;
        let mut seen: HashMap<String, Vec<Seen>> = HashMap::new();
        let (mut launched, mut killed) = (false, false);
        let deadline = Instant::now() + Duration::from_secs(30);
        let done = |seen: &HashMap<String, Vec<Seen>>| {
            ["t-fail", "t-ok", "t-sleep", "t-both"].iter().all(|t| {
                seen.get(*t)
                    .is_some_and(|v| v.iter().any(|s| s.0 != 0 && s.0 != 1))
            })
        };
        while Instant::now() < deadline && !done(&seen) {
            let Ok(Ok(Some(rec))) =
                tokio::time::timeout(Duration::from_millis(200), stream.next_record()).await
            else {
                continue;
            };
            let e = Event::decode(rec).map_err(|e| e.to_string())?;
            let mut calls = Vec::new();
            if let Some(s) = e.subscribed {
                fid = Some(s.framework_id.clone());
            }
            if let Some(u) = e.update {
                let st = u.status;
                let id = st.task_id.value.clone();
                seen.entry(id.clone()).or_default().push((
                    st.state,
                    st.message.clone(),
                    st.source,
                    st.reason,
                ));
                if let Some(uuid) = st.uuid.clone() {
                    calls.push(Call {
                        r#type: Some(call::Type::Acknowledge as i32),
                        acknowledge: Some(call::Acknowledge {
                            agent_id: st.agent_id.clone().unwrap_or_default(),
                            task_id: st.task_id.clone(),
                            uuid,
                        }),
                        ..Default::default()
                    });
                }
                if id == "t-sleep" && st.state == v1::TaskState::TaskRunning as i32 && !killed {
                    killed = true;
                    calls.push(Call {
                        r#type: Some(call::Type::Kill as i32),
                        kill: Some(call::Kill {
                            task_id: st.task_id.clone(),
                            agent_id: st.agent_id.clone(),
                            kill_policy: None,
                        }),
                        ..Default::default()
                    });
                }
            }
            if let Some(offers) = e.offers {
                let o = &offers.offers[0];
                let carve = |name: &str, v: f64| {
                    let mut r = o
                        .resources
                        .iter()
                        .find(|r| r.name == name)
                        .cloned()
                        .unwrap_or_default();
                    r.scalar = Some(v1::value::Scalar { value: v });
                    r
                };
                let task = |id: &str, script: &str| v1::TaskInfo {
                    name: id.into(),
                    task_id: v1::TaskId { value: id.into() },
                    agent_id: o.agent_id.clone(),
                    resources: vec![carve("cpus", 0.5), carve("mem", 64.0)],
                    command: Some(v1::CommandInfo {
                        shell: Some(true),
                        value: Some(script.into()),
                        environment: Some(v1::Environment {
                            variables: vec![v1::environment::Variable {
                                name: "WANT".into(),
                                value: Some("t-ok".into()),
                                ..Default::default()
                            }],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let mut both = task("t-both", "true");
                both.executor = Some(v1::ExecutorInfo {
                    executor_id: v1::ExecutorId { value: "e".into() },
                    command: both.command.clone(),
                    ..Default::default()
                });
                let launch = |tasks: Vec<v1::TaskInfo>| v1::offer::Operation {
                    r#type: Some(v1::offer::operation::Type::Launch as i32),
                    launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
                    ..Default::default()
                };
                let operations = if launched {
                    Vec::new() // declined
                } else {
                    vec![
                        launch(vec![
                            task("t-fail", "exit 3"),
                            task(
                                "t-ok",
                                "test \"$MESOS_EXECUTOR_ID\" = \"$WANT\" && \
                                 test \"$MESOS_SANDBOX\" = \"$PWD\" && test -n \"$MESOS_FRAMEWORK_ID\"",
                            ),
                            task("t-sleep", "sleep 60"),
                        ]),
                        launch(vec![both]),
                    ]
                };
                launched = true;
                calls.push(Call {
                    r#type: Some(call::Type::Accept as i32),
                    accept: Some(call::Accept {
                        offer_ids: vec![o.id.clone()],
                        operations,
                        filters: Some(v1::Filters {
                            refuse_seconds: Some(60.0),
                        }),
                    }),
                    ..Default::default()
                });
            }
            for mut c in calls {
                c.framework_id = fid.clone();
                post(
                    &mut ep,
                    Bytes::from(c.encode_to_vec()),
                    sid.as_deref(),
                    None,
                    Retry::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            }
        }
        let teardown = Call {
            framework_id: fid,
            r#type: Some(call::Type::Teardown as i32),
            ..Default::default()
        };
        let _ = post(
            &mut ep,
            Bytes::from(teardown.encode_to_vec()),
            sid.as_deref(),
            None,
            Retry::default(),
        )
        .await;
        Ok::<_, String>(seen)
    })?;
    let states = |id: &str| -> Vec<Seen> { seen.get(id).cloned().unwrap_or_default() };
    let executor = Some(v1::task_status::Source::Executor as i32);
    let s = |st: v1::TaskState| st as i32;
    check(
        "t-fail",
        states("t-fail"),
        vec![
            (s(v1::TaskState::TaskStarting), None, executor, None),
            (s(v1::TaskState::TaskRunning), None, executor, None),
            (
                s(v1::TaskState::TaskFailed),
                Some("Command exited with status 3".into()),
                executor,
                None,
            ),
        ],
    )?;
    check(
        "t-ok",
        states("t-ok").last().cloned(),
        Some((
            s(v1::TaskState::TaskFinished),
            Some("Command exited with status 0".into()),
            executor,
            None,
        )),
    )?;
    check(
        "t-sleep",
        states("t-sleep").last().cloned(),
        Some((
            s(v1::TaskState::TaskKilled),
            Some("Command terminated with signal Terminated".into()),
            executor,
            None,
        )),
    )?;
    let both = states("t-both");
    let master = Some(v1::task_status::Source::Master as i32);
    if !(both.len() == 1
        && both[0].0 == s(v1::TaskState::TaskError)
        && both[0].2 == master
        && both[0].3 == Some(14)
        && both[0].1.as_deref().is_some_and(|m| m.contains("not both")))
    {
        return Err(format!("t-both: {both:?}"));
    }
    wait_for("command tasks to end after TEARDOWN", 15, || {
        fake.live_executors() == 0
    })?;
    // Exactly the invalid task broke a rule.
    let v = fake.log(|l| l.violations.clone());
    if v.len() != 1 || !v[0].contains("t-both") {
        return Err(format!("violations: {v:?}"));
    }
    Ok(())
}

/// A hand-written framework's subscription to the double (for cases that must make calls
/// spate's framework never makes).
async fn raw_subscribe(
    fake: &FakeMesos,
    name: &str,
) -> Result<(spate_mesos::http::Endpoint, spate_mesos::http::EventStream), String> {
    use bytes::Bytes;
    use prost::Message as _;
    use spate_mesos::http::{Endpoint, EventStream, Retry};
    use spate_mesos::v1;
    use spate_mesos::v1::scheduler::{Call, call};
    let mut ep = Endpoint {
        addr: fake.master.clone(),
        path: "/api/v1/scheduler".into(),
    };
    let sub = Call {
        r#type: Some(call::Type::Subscribe as i32),
        subscribe: Some(call::Subscribe {
            framework_info: v1::FrameworkInfo {
                user: "nobody".into(),
                name: name.into(),
                failover_timeout: Some(10.0),
                roles: vec!["*".into()],
                capabilities: vec![v1::framework_info::Capability {
                    r#type: Some(v1::framework_info::capability::Type::MultiRole as i32),
                }],
                ..Default::default()
            },
            suppressed_roles: Vec::new(),
        }),
        ..Default::default()
    };
    let stream = EventStream::subscribe(
        &mut ep,
        Bytes::from(sub.encode_to_vec()),
        None,
        Retry::default(),
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((ep, stream))
}

/// Every sandbox's stderr under a double's `root` (for failure messages).
fn sandbox_stderr(root: &std::path::Path) -> String {
    let mut out = String::new();
    for agent in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for sandbox in std::fs::read_dir(agent.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(e) = std::fs::read_to_string(sandbox.path().join("stderr")) {
                out.push_str(&format!("\n[{}]\n{e}", sandbox.path().display()));
            }
        }
    }
    out
}
