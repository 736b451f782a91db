//! Multi-process tests: jobs in `local-cluster[2]` (executor processes of this very test
//! binary, on loopback) must give exactly the results of local mode, also when an
//! executor dies mid-job or a shuffle block is corrupted on disk.
//!
//! A `harness = false` test: executors re-run this binary's `main`, whose first statement
//! creates the context and so turns them into executors before any test code runs.

use common::{check, corpus_file, first_time, join_pairs, pagerank, sorted_pairs, word_counts};
use spate::prelude::*;
use std::path::PathBuf;

type Case = (&'static str, fn(&Context, &Context) -> Result<(), String>);

fn main() {
    let cluster = Context::builder()
        .master("local-cluster[2,2,512]")
        .heartbeat_timeout(std::time::Duration::from_secs(3))
        .build()
        .unwrap_or_else(|e| panic!("local cluster starts: {e}"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .init();
    let local = Context::builder()
        .master("local[2]")
        .build()
        .unwrap_or_else(|e| panic!("local: {e}"));
    let cases: Vec<Case> = vec![
        ("word_count_equals_local", word_count_equals_local),
        ("join_equals_local", join_equals_local),
        ("sort_by_key_equals_local", sort_by_key_equals_local),
        ("pagerank_equals_local", pagerank_equals_local),
        ("numeric_actions_equal_local", numeric_actions_equal_local),
        (
            "numbering_and_keys_equal_local",
            numbering_and_keys_equal_local,
        ),
        (
            "files_zips_and_cogroups_equal_local",
            files_zips_and_cogroups_equal_local,
        ),
        (
            "partitioned_operations_equal_local",
            partitioned_operations_equal_local,
        ),
        ("captured_values_ship_to_executors", |c, _| {
            let got = common::captured_closures(c).map_err(|e| e.to_string())?;
            check("f! closures", got, common::captured_closures_oracle())
        }),
        ("large_results_travel_by_url", large_results_travel_by_url),
        (
            "dropped_shuffles_leave_executor_disks",
            dropped_shuffles_leave_executor_disks,
        ),
        (
            "map_outputs_stay_in_executor_memory",
            map_outputs_stay_in_executor_memory,
        ),
        ("deepest_pipeline_runs_in_executors", |c, _| {
            common::deep_lineage_limit(c)
        }),
        ("checkpoints_in_executors", checkpoints_in_executors),
        (
            "lost_map_outputs_are_recomputed_from_the_checkpoint",
            lost_map_outputs_are_recomputed_from_the_checkpoint,
        ),
        (
            "killed_executor_mid_shuffle_gives_exact_result",
            killed_executor_mid_shuffle,
        ),
        ("corrupt_shuffle_block_is_recomputed", corrupt_shuffle_block),
        ("hung_executor_is_detected_by_heartbeat", hung_executor),
        ("map_outputs_spill_under_a_small_budget", spilling),
        (
            "always_panicking_closure_fails_after_max_failures",
            always_panicking,
        ),
        ("mismatched_binary_is_refused", mismatched_binary),
        (
            "executor_death_is_named_by_its_cause",
            executor_death_is_named_by_its_cause,
        ),
        (
            "a_second_local_cluster_leaves_the_first_alone",
            second_local_cluster,
        ),
        (
            "mesos_executor_runs_a_launched_task",
            mesos_executor_runs_a_launched_task,
        ),
        (
            "cached_partitions_are_read_where_they_live",
            cached_partitions_are_read_where_they_live,
        ),
        (
            "broadcasts_reach_each_executor_once",
            broadcasts_reach_each_executor_once,
        ),
        ("broadcast_figures", broadcast_figures),
        (
            "accumulators_count_once_across_executor_loss",
            accumulators_count_once_across_executor_loss,
        ),
        (
            "event_log_carries_executor_metrics",
            event_log_carries_executor_metrics,
        ),
        ("mesos_jobs_equal_local", mesos_cases::jobs_equal_local),
        ("mesos_agent_lost_mid_job", mesos_cases::agent_lost_mid_job),
        (
            "mesos_coarse_jobs_equal_local",
            mesos_cases::coarse_jobs_equal_local,
        ),
        (
            "mesos_coarse_agent_lost_mid_job",
            mesos_cases::coarse_agent_lost_mid_job,
        ),
        (
            "mesos_fine_different_build_is_removed_not_retried",
            mesos_cases::fine_different_build_is_removed_not_retried,
        ),
        (
            "mesos_fine_killed_driver_executors_exit",
            mesos_cases::fine_killed_driver_executors_exit,
        ),
        (
            "mesos_coarse_corrupt_download_rules_the_agent_out",
            mesos_cases::coarse_corrupt_download_rules_the_agent_out,
        ),
        (
            "mesos_double_command_tasks_behave_like_mesos",
            mesos_cases::command_tasks_behave_like_mesos,
        ),
        (
            "mesos_dropped_subscription_is_survived",
            mesos_cases::dropped_subscription,
        ),
        (
            "mesos_error_event_fails_jobs",
            mesos_cases::error_event_fails_jobs,
        ),
        (
            "mesos_pre_deployed_executor_is_not_fetched",
            mesos_cases::pre_deployed_executor,
        ),
        ("mesos_bench_wordcount", mesos_cases::bench_wordcount),
        (
            "mesos_ctrl_c_tears_the_framework_down",
            mesos_cases::ctrl_c_tears_the_framework_down,
        ),
        (
            "mesos_aborted_jobs_do_not_launch_queued_tasks",
            mesos_cases::aborted_jobs_do_not_launch_queued_tasks,
        ),
        (
            "mesos_non_acknowledging_framework_is_caught",
            mesos_cases::non_acknowledging_framework_is_caught,
        ),
    ];
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let start = std::time::Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&cluster, &local))) {
            Ok(Ok(())) => {
                passed += 1;
                println!("test {name} ... ok ({:.1}s)", start.elapsed().as_secs_f64());
            }
            Ok(Err(msg)) => {
                failed += 1;
                println!("test {name} ... FAILED: {msg}");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED (panicked)");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    drop(cluster);
    if failed > 0 {
        // This run's scratch directories stay for inspection.
        std::process::exit(1);
    }
    let left = remove_temp_dirs();
    if !left.is_empty() {
        println!("scratch directories left behind: {left:?}");
        std::process::exit(1);
    }
}

/// Remove this run's scratch directories ([`temp_dir`]); those that could not be removed.
/// (They used to stay: ~9 MB per run piled up in the temp dir.)
fn remove_temp_dirs() -> Vec<PathBuf> {
    let suffix = format!("-{}", std::process::id());
    let ours = || {
        std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("spate-cluster-") && name.ends_with(&suffix)
            })
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    for dir in ours() {
        let _ = std::fs::remove_dir_all(dir);
    }
    ours()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spate-cluster-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Map output index files under the work roots of this process's local clusters.
fn shuffle_index_files(roots: &[PathBuf]) -> usize {
    roots
        .iter()
        .flat_map(|r| common::files_under(r))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("shuffle_")
                    && n.to_string_lossy().ends_with(".index")
            })
        })
        .count()
}

fn cluster_roots() -> Vec<PathBuf> {
    let prefix = format!("spate-{}-", std::process::id());
    let mut roots: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    roots.sort();
    roots
}

/// A new local cluster of `executors`, with `builder`'s settings, and its work directories.
fn fresh_cluster(
    executors: usize,
    builder: impl FnOnce(spate::ContextBuilder) -> spate::ContextBuilder,
) -> Result<(Context, Vec<PathBuf>), String> {
    let before = cluster_roots();
    let ctx = builder(Context::builder())
        .master(format!("local-cluster[{executors}]"))
        .progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let roots: Vec<PathBuf> = cluster_roots()
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    if roots.is_empty() {
        return Err("the new local cluster's work directory was not found".into());
    }
    Ok((ctx, roots))
}

/// Executors delete a shuffle's map output files once no RDD on the driver reads it.
fn dropped_shuffles_leave_executor_disks(_: &Context, _: &Context) -> Result<(), String> {
    // No memory for map outputs: they all go to disk.
    let (ctx, roots) = fresh_cluster(1, |b| b.shuffle_memory_bytes(0))?;
    let sums = ctx
        .range(0, 1000, 4)
        .map(|x| (x % 7, 1u64))
        .reduce_by_key_n(|a, b| a + b, 3);
    check("keys", sums.count().map_err(|e| e.to_string())?, 7)?;
    check("map output files", shuffle_index_files(&roots), 4)?;
    drop(sums);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while shuffle_index_files(&roots) > 0 {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{} map output files left 10 s after the shuffle's RDD was dropped",
                shuffle_index_files(&roots)
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ctx.stop();
    Ok(())
}

/// By default executors keep small map outputs in memory: reduce tasks read them there or
/// from the other executor's block server, and no file is written.
fn map_outputs_stay_in_executor_memory(_: &Context, local: &Context) -> Result<(), String> {
    let (ctx, roots) = fresh_cluster(2, |b| b)?;
    type Pairs = Vec<(i64, i64)>;
    let jobs = |ctx: &Context| -> spate::Result<(Pairs, Pairs)> {
        let data = ctx.range(0, 50_000, 4).map(|x| ((x * 7919) % 1009, x));
        let mut sums = data.reduce_by_key_n(|a, b| a + b, 3).collect()?;
        sums.sort();
        let sorted = data
            .map(|(k, v)| (v, k))
            .sort_by_key_n(false, 3)?
            .collect()?;
        Ok((sums, sorted))
    };
    let got = jobs(&ctx).map_err(|e| e.to_string())?;
    check("map output files", shuffle_index_files(&roots), 0)?;
    let want = jobs(local).map_err(|e| e.to_string())?;
    check("sums", got.0, want.0)?;
    check("sorted", got.1, want.1)?;
    ctx.stop();
    Ok(())
}

fn word_count_equals_local(cluster: &Context, local: &Context) -> Result<(), String> {
    let path = corpus_file(&temp_dir("corpus"), 20_000);
    let got = word_counts(cluster, &path).map_err(|e| e.to_string())?;
    let want = word_counts(local, &path).map_err(|e| e.to_string())?;
    check("distinct words", got.len(), want.len())?;
    check("counts", got, want)
}

fn join_equals_local(cluster: &Context, local: &Context) -> Result<(), String> {
    let got = join_pairs(cluster).map_err(|e| e.to_string())?;
    if got.is_empty() {
        return Err("empty join".into());
    }
    check("join", got, join_pairs(local).map_err(|e| e.to_string())?)
}

fn sort_by_key_equals_local(cluster: &Context, local: &Context) -> Result<(), String> {
    let got = sorted_pairs(cluster).map_err(|e| e.to_string())?;
    if !got.windows(2).all(|w| w[0].0 <= w[1].0) {
        return Err("not sorted".into());
    }
    check(
        "sort_by_key",
        got,
        sorted_pairs(local).map_err(|e| e.to_string())?,
    )
}

fn pagerank_equals_local(cluster: &Context, local: &Context) -> Result<(), String> {
    check(
        "pagerank",
        pagerank(cluster).map_err(|e| e.to_string())?,
        pagerank(local).map_err(|e| e.to_string())?,
    )
}

fn large_results_travel_by_url(cluster: &Context, local: &Context) -> Result<(), String> {
    // one partition's result is ~1 MB, well over the 256 KiB inline limit
    let big = |ctx: &Context| {
        ctx.range(0, 200_000, 2)
            .map(|x| format!("{x:08}"))
            .collect()
    };
    let got = big(cluster).map_err(|e| e.to_string())?;
    check("large collect", got, big(local).map_err(|e| e.to_string())?)
}

/// True exactly once per marker path, across processes: the caller that creates the file.
fn crash_once_counts(ctx: &Context, marker: Option<String>) -> spate::Result<Vec<(i64, u64)>> {
    let counts = ctx
        .range(0, 100_000, 8)
        .map(|x| ((x * 7) % 1000, 1u64))
        .reduce_by_key_n(|a, b| a + b, 4);
    let checked = match marker {
        // In the reduce stage, after map outputs exist on both executors: the first task
        // to get here kills its executor process (and loses its map outputs).
        Some(m) => counts.map_with(m, |m, kv| {
            if first_time(m) {
                std::process::exit(9);
            }
            kv
        }),
        None => counts,
    };
    let mut v = checked.collect()?;
    v.sort();
    Ok(v)
}

fn killed_executor_mid_shuffle(cluster: &Context, local: &Context) -> Result<(), String> {
    let marker = temp_dir("kill").join("killed");
    let got = crash_once_counts(cluster, Some(marker.to_string_lossy().into_owned()))
        .map_err(|e| e.to_string())?;
    if !marker.exists() {
        return Err("no executor was killed".into());
    }
    check(
        "result after executor loss",
        got,
        crash_once_counts(local, None).map_err(|e| e.to_string())?,
    )
}

/// Sums, group sizes and sorted pairs of the spilling job.
type SpillResults = (Vec<(i64, i64)>, Vec<(i64, usize)>, Vec<(i64, i64)>);

fn spilling(_cluster: &Context, local: &Context) -> Result<(), String> {
    // A 64 KiB budget: every map task spills many times, in both the combining and the
    // plain path; results must not change.
    let small = Context::builder()
        .master("local-cluster[2]")
        .shuffle_spill_bytes(64 << 10)
        .build()
        .map_err(|e| e.to_string())?;
    let jobs = |ctx: &Context| -> spate::Result<SpillResults> {
        let data = ctx.range(0, 200_000, 4).map(|x| ((x * 7919) % 5003, x));
        let mut sums = data.reduce_by_key_n(|a, b| a + b, 3).collect()?;
        sums.sort();
        let mut groups: Vec<(i64, usize)> =
            data.group_by_key_n(3).map_values(|v| v.len()).collect()?;
        groups.sort();
        let sorted = data.sort_by_key_n(true, 3)?.collect()?;
        Ok((sums, groups, sorted))
    };
    let got = jobs(&small).map_err(|e| e.to_string())?;
    let want = jobs(local).map_err(|e| e.to_string())?;
    check("sums", &got.0, &want.0)?;
    check("groups", &got.1, &want.1)?;
    check(
        "sorted keys",
        got.2.iter().map(|p| p.0).collect::<Vec<_>>(),
        want.2.iter().map(|p| p.0).collect::<Vec<_>>(),
    )?;
    let mut a = got.2.clone();
    let mut b = want.2.clone();
    a.sort();
    b.sort();
    check("sorted pairs", a, b)
}

fn hung_executor(cluster: &Context, local: &Context) -> Result<(), String> {
    let marker = temp_dir("hang").join("stopped");
    let build = |ctx: &Context, marker: Option<String>| -> spate::Result<Vec<(i64, i64)>> {
        let pairs = ctx
            .range(0, 20_000, 4)
            .map(|x| (x % 101, x))
            .reduce_by_key_n(|a, b| a + b, 4);
        let pairs = match marker {
            // The first task here freezes its whole executor (SIGSTOP): it neither exits
            // nor closes its connection; only the missing heartbeats tell.
            Some(m) => pairs.map_with(m, |m, kv| {
                if first_time(m) {
                    let _ = std::process::Command::new("kill")
                        .args(["-STOP", &std::process::id().to_string()])
                        .status();
                }
                kv
            }),
            None => pairs,
        };
        let mut v = pairs.collect()?;
        v.sort();
        Ok(v)
    };
    let started = std::time::Instant::now();
    let got =
        build(cluster, Some(marker.to_string_lossy().into_owned())).map_err(|e| e.to_string())?;
    if !marker.exists() {
        return Err("no executor was stopped".into());
    }
    if started.elapsed() > std::time::Duration::from_secs(30) {
        return Err(format!(
            "took {:?}: loss not detected by heartbeat",
            started.elapsed()
        ));
    }
    check(
        "result after a hung executor",
        got,
        build(local, None).map_err(|e| e.to_string())?,
    )
}

fn corrupt_shuffle_block(_cluster: &Context, local: &Context) -> Result<(), String> {
    // Map outputs on disk (none kept in memory), where they can be damaged.
    let (cluster, _) = fresh_cluster(2, |b| b.shuffle_memory_bytes(0))?;
    let build = |ctx: &Context| {
        ctx.range(0, 30_000, 4)
            .map(|x| (x % 313, x))
            .reduce_by_key_n(|a, b| a + b, 3)
    };
    let counts = build(&cluster);
    counts.count().map_err(|e| e.to_string())?; // map outputs now on the executors' disks
    let root = std::env::temp_dir();
    let mut corrupted = 0;
    for entry in std::fs::read_dir(&root)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("spate-{}-", std::process::id())) {
            continue;
        }
        for exec in std::fs::read_dir(entry.path())
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let Ok(files) = std::fs::read_dir(exec.path().join("shuffle")) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "data")
                    && std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0) > 16
                {
                    let mut bytes = std::fs::read(&p).map_err(|e| e.to_string())?;
                    let n = bytes.len();
                    bytes[n / 2] ^= 0xff;
                    std::fs::write(&p, bytes).map_err(|e| e.to_string())?;
                    corrupted += 1;
                }
            }
        }
    }
    if corrupted == 0 {
        return Err("found no shuffle files to corrupt".into());
    }
    let mut got = counts.collect().map_err(|e| e.to_string())?;
    got.sort();
    let mut want = build(local).collect().map_err(|e| e.to_string())?;
    want.sort();
    check("result after corruption", got, want)
}

fn always_panicking(cluster: &Context, _local: &Context) -> Result<(), String> {
    let r = cluster
        .range(0, 100, 4)
        .map(|x| -> i64 {
            if x == 42 {
                panic!("cannot handle {x}");
            }
            x
        })
        .count();
    match r {
        Err(spate::Error::JobFailed {
            attempts,
            message,
            partition,
            ..
        }) => {
            check("attempts", attempts, 4)?;
            check("partition", partition, 1)?;
            if !message.contains("cannot handle 42") {
                return Err(format!("message lost: {message}"));
            }
            // still usable
            check(
                "next job",
                cluster.range(0, 10, 2).count().map_err(|e| e.to_string())?,
                10,
            )
        }
        other => Err(format!("expected JobFailed, got {other:?}")),
    }
}

fn mismatched_binary(_cluster: &Context, _local: &Context) -> Result<(), String> {
    let me = std::fs::read("/proc/self/exe").map_err(|e| e.to_string())?;
    let dir = temp_dir("other-build");
    let other = dir.join("other-build");
    let mut bytes = me;
    bytes.extend_from_slice(b"a different build");
    // A copy of the test binary (hundreds of MB in a debug build): removed whatever
    // happens (regression: every run left one behind in the temp dir).
    let r = std::fs::write(&other, bytes)
        .and_then(|()| {
            std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        })
        .map_err(|e| e.to_string())
        .map(|()| {
            Context::builder()
                .master("local-cluster[1]")
                .executor_exe(&other)
                .build()
        });
    let _ = std::fs::remove_dir_all(&dir);
    if dir.exists() {
        return Err(format!("{} left behind", dir.display()));
    }
    match r? {
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("different build") && msg.contains("redeploy") {
                Ok(())
            } else {
                Err(format!("unclear refusal: {msg}"))
            }
        }
        Ok(_) => Err("a different build was accepted".into()),
    }
}

/// Regression: two local-cluster contexts in one process shared a work directory, and
/// stopping one (or failing to start one) deleted the other's shuffle files.
fn second_local_cluster(cluster: &Context, local: &Context) -> Result<(), String> {
    let other = Context::builder()
        .master("local-cluster[1]")
        .build()
        .map_err(|e| e.to_string())?;
    check(
        "other cluster",
        other.range(0, 10, 2).count().map_err(|e| e.to_string())?,
        10,
    )?;
    drop(other);
    word_count_equals_local(cluster, local)
}

/// An executor that dies (here: a task aborts the process) is named with its cause in
/// the job's error: the exit status and its last words on stderr, not only "control
/// connection closed".
fn executor_death_is_named_by_its_cause(
    _cluster: &Context,
    _local: &Context,
) -> Result<(), String> {
    let ctx = Context::builder()
        .master("local-cluster[1]")
        .build()
        .map_err(|e| e.to_string())?;
    let err = match ctx
        .range(0, 10, 2)
        .map(|x| {
            if x == 3 {
                eprintln!("about to abort on element 3");
                std::process::abort();
            }
            x
        })
        .count()
    {
        Ok(n) => return Err(format!("the job survived {n} aborts")),
        Err(e) => e.to_string(),
    };
    println!("(the job's error: {err})");
    for want in [
        "executor exec-0 died (signal 6 (SIGABRT))",
        "about to abort on element 3",
    ] {
        if !err.contains(want) {
            return Err(format!("the error does not say {want:?}: {err}"));
        }
    }
    Ok(())
}

/// Numeric actions (stats, sum, histograms) on executors equal local mode.
fn numeric_actions_equal_local(cluster: &Context, local: &Context) -> Result<(), String> {
    let numbers = |ctx: &Context| {
        ctx.range(0, 100_000, 7)
            .map(|x| ((x * 7919) % 1000) as f64 / 8.0)
    };
    let e = |e: spate::Error| e.to_string();
    let (got, want) = (
        numbers(cluster).stats().map_err(e)?,
        numbers(local).stats().map_err(e)?,
    );
    check("count", got.count(), want.count())?;
    check("min/max", (got.min(), got.max()), (want.min(), want.max()))?;
    if (got.mean() - want.mean()).abs() > 1e-9 || (got.stdev() - want.stdev()).abs() > 1e-9 {
        return Err(format!("stats differ: {got:?} vs {want:?}"));
    }
    check(
        "histogram",
        numbers(cluster).histogram_even(7).map_err(e)?,
        numbers(local).histogram_even(7).map_err(e)?,
    )?;
    check(
        "integer sum",
        cluster.range(0, 1001, 3).sum().map_err(e)?,
        500_500.0,
    )
}

/// zip_with_index, zip_with_unique_id, top_by, subtract_by_key, ctx.union / empty,
/// to_local_iterator, take_sample, sample_by_key, pipe and reduce_by_key_locally on
/// executors equal local mode.
/// Object files, whole text files and bzip2 text written and read by executors,
/// zip_partitions and three- and four-way cogroups: exactly local mode's results.
fn files_zips_and_cogroups_equal_local(cluster: &Context, local: &Context) -> Result<(), String> {
    let e = |e: spate::Error| e.to_string();
    let dir = temp_dir("files-zips");
    let pairs =
        |ctx: &Context, m: i64| ctx.range(0, 3000, 6).map_with(m, |m, x| ((x * m) % 101, x));
    // executors write the object files, executors and local mode read them
    let objects = dir.join("objects");
    pairs(cluster, 7).save_as_object_file(&objects).map_err(e)?;
    let want = pairs(local, 7).glom().collect().map_err(e)?;
    let back = cluster.object_file::<(i64, i64)>(&objects).map_err(e)?;
    check(
        "object_file in executors",
        back.glom().collect().map_err(e)?,
        want.clone(),
    )?;
    let back = local.object_file::<(i64, i64)>(&objects).map_err(e)?;
    check(
        "object_file read locally",
        back.glom().collect().map_err(e)?,
        want,
    )?;
    // bzip2 text written by executors, read back whole and by lines
    let text = dir.join("text");
    cluster
        .range(0, 2000, 4)
        .map(|x| format!("line {x}"))
        .save_as_text_file_with(&text, spate::rdd::Codec::Bzip2)
        .map_err(e)?;
    let path = text.to_string_lossy().into_owned();
    let mut lines = cluster.text_file(&path).map_err(e)?.collect().map_err(e)?;
    lines.sort();
    let mut want: Vec<String> = (0..2000).map(|x| format!("line {x}")).collect();
    want.sort();
    check("bz2 text", lines, want)?;
    let whole = |ctx: &Context| -> Result<Vec<(String, usize)>, String> {
        let mut v = ctx
            .whole_text_files(&format!("{path}/part-*"))
            .map_err(e)?
            .map(|(p, c)| (p, c.lines().count()))
            .collect()
            .map_err(e)?;
        v.sort();
        Ok(v)
    };
    check("whole_text_files", whole(cluster)?, whole(local)?)?;
    let zipped = |ctx: &Context| {
        ctx.range(0, 1000, 4).zip_partitions(
            &pairs(ctx, 3).values().filter(|x| x % 3 == 0).repartition(4),
            |a, b| vec![(a.sum::<i64>(), b.count())],
        )
    };
    let got = zipped(cluster).map_err(e)?.collect().map_err(e)?;
    check("zip_partitions partitions", got.len(), 4)?;
    check(
        "zip_partitions totals",
        (
            got.iter().map(|(s, _)| s).sum::<i64>(),
            got.iter().map(|(_, n)| n).sum::<usize>(),
        ),
        (
            (0..1000).sum::<i64>(),
            (0..3000).filter(|x| x % 3 == 0).count(),
        ),
    )?;
    let norm = |v: Vec<spate::rdd::CoGrouped4<i64, i64, i64, i64, i64>>| {
        let mut v: Vec<_> = v
            .into_iter()
            .map(|(k, (mut a, mut b, mut c, mut d))| {
                a.sort();
                b.sort();
                c.sort();
                d.sort();
                (k, (a, b, c, d))
            })
            .collect();
        v.sort();
        v
    };
    let four = |ctx: &Context| {
        pairs(ctx, 7)
            .cogroup4(
                &pairs(ctx, 11),
                &pairs(ctx, 13).reduce_by_key(|a, b| a + b),
                &pairs(ctx, 17),
            )
            .collect()
    };
    check(
        "cogroup4",
        norm(four(cluster).map_err(e)?),
        norm(four(local).map_err(e)?),
    )
}

/// Keys by remainder: a custom partitioner shipped to executors.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Modulo(usize);

impl spate::partitioner::Partitioner<i64> for Modulo {
    fn num_partitions(&self) -> usize {
        self.0
    }
    fn partition(&self, key: &i64) -> usize {
        key.rem_euclid(self.0 as i64) as usize
    }
    fn same_as(&self, other: &dyn std::any::Any) -> bool {
        other
            .downcast_ref::<Modulo>()
            .is_some_and(|o| o.0 == self.0)
    }
}

/// `_n` operations with counts and a custom partitioner, and a join of two RDDs
/// partitioned alike (no shuffle of either side), in executors: local mode's results.
fn partitioned_operations_equal_local(cluster: &Context, local: &Context) -> Result<(), String> {
    use spate::partitioner::Partitioning;
    let e = |e: spate::Error| e.to_string();
    let run = |ctx: &Context| -> Result<_, String> {
        let a = ctx
            .range(0, 5000, 5)
            .map(|x| (x % 97, x))
            .partition_by(Partitioning::by(Modulo(6)));
        let b = ctx
            .range(0, 3000, 3)
            .map(|x| (x % 89, -x))
            .reduce_by_key_n(|x, y| x + y, Partitioning::by(Modulo(6)));
        let joined = a.join(&b);
        let stages = spate::plan::plan_stages(&joined.base()).stages.len();
        let placed = a
            .glom()
            .collect()
            .map_err(e)?
            .iter()
            .enumerate()
            .all(|(i, part)| part.iter().all(|(k, _)| k.rem_euclid(6) as usize == i));
        let mut j = joined.collect().map_err(e)?;
        j.sort();
        let mut d = ctx
            .range(0, 1000, 4)
            .map(|x| x % 37)
            .distinct_n(5)
            .collect()
            .map_err(e)?;
        d.sort();
        let mut f = a.fold_by_key_n(0, |x, y| x + y, 7).collect().map_err(e)?;
        f.sort();
        let mut o = a
            .full_outer_join_n(&b, Partitioning::by(Modulo(3)))
            .collect()
            .map_err(e)?;
        o.sort();
        Ok((stages, placed, j, d, f, o))
    };
    let got = run(cluster)?;
    check("stages of the co-partitioned join", got.0, 3)?;
    check("keys where the partitioner says", got.1, true)?;
    check("results", got, run(local)?)
}

fn numbering_and_keys_equal_local(cluster: &Context, local: &Context) -> Result<(), String> {
    let e = |e: spate::Error| e.to_string();
    let words = |ctx: &Context| {
        ctx.range(0, 5000, 7)
            .map(|x| format!("w{}", (x * 31) % 977))
    };
    check(
        "zip_with_index",
        words(cluster)
            .zip_with_index()
            .map_err(e)?
            .collect()
            .map_err(e)?,
        words(local)
            .zip_with_index()
            .map_err(e)?
            .collect()
            .map_err(e)?,
    )?;
    check(
        "zip_with_unique_id",
        words(cluster).zip_with_unique_id().collect().map_err(e)?,
        words(local).zip_with_unique_id().collect().map_err(e)?,
    )?;
    check(
        "top_by",
        words(cluster)
            .top_by(5, |w| (w.len(), w.clone()))
            .map_err(e)?,
        words(local)
            .top_by(5, |w| (w.len(), w.clone()))
            .map_err(e)?,
    )?;
    let left = |ctx: &Context| {
        let pairs = ctx.range(0, 2000, 5).map(|x| (x % 100, x));
        let drop = ctx.range(0, 50, 2).map(|x| (x * 2, ()));
        pairs.subtract_by_key(&drop).collect().map(|mut v| {
            v.sort();
            v
        })
    };
    check(
        "subtract_by_key",
        left(cluster).map_err(e)?,
        left(local).map_err(e)?,
    )?;
    let parts = |ctx: &Context| {
        [
            words(ctx),
            ctx.empty(),
            words(ctx).filter(|w| w.ends_with('7')),
        ]
    };
    check(
        "union",
        cluster.union(&parts(cluster)).collect().map_err(e)?,
        local.union(&parts(local)).collect().map_err(e)?,
    )?;
    check(
        "to_local_iterator",
        words(cluster)
            .to_local_iterator()
            .collect::<spate::Result<Vec<_>>>()
            .map_err(e)?,
        words(local).collect().map_err(e)?,
    )?;
    let strata = |ctx: &Context| {
        let fractions = [(0, 0.5), (1, 0.1)].into_iter().collect();
        ctx.range(0, 5000, 7)
            .map(|x| (x % 3, x))
            .sample_by_key(false, fractions, 11)
            .collect()
    };
    check(
        "sample_by_key",
        strata(cluster).map_err(e)?,
        strata(local).map_err(e)?,
    )?;
    check(
        "pipe",
        words(cluster)
            .pipe(&["tr", "w", "W"])
            .collect()
            .map_err(e)?,
        words(local).pipe(&["tr", "w", "W"]).collect().map_err(e)?,
    )?;
    check(
        "take_sample (same seed, same sample)",
        words(cluster).take_sample(false, 20, 3).map_err(e)?,
        words(local).take_sample(false, 20, 3).map_err(e)?,
    )?;
    let counts = |ctx: &Context| {
        words(ctx)
            .map(|w| (w, 1u64))
            .reduce_by_key_locally(|a, b| a + b)
    };
    check(
        "reduce_by_key_locally",
        counts(cluster).map_err(e)?,
        counts(local).map_err(e)?,
    )
}

/// Lines in `path` (one per execution of a partition, see `counted`).
fn runs(path: &str) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// Cached partitions live on executors: later jobs run where they are and do not
/// recompute them; a killed executor's partitions are recomputed (exact results);
/// unpersist drops the executors' disk copies.
fn cached_partitions_are_read_where_they_live(
    cluster: &Context,
    local: &Context,
) -> Result<(), String> {
    let dir = temp_dir("cache");
    let log = dir.join("runs").to_string_lossy().into_owned();
    let marker = dir.join("killed").to_string_lossy().into_owned();
    let data = |ctx: &Context, log: String| {
        ctx.range(0, 40_000, 8).map_partitions_with(log, |log, it| {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(log)
            {
                let _ = writeln!(f, "run");
            }
            it.map(|x| (x % 100, x)).collect::<Vec<_>>()
        })
    };
    let want: i64 = (0..40_000).sum();
    let kept = data(cluster, log.clone()).persist(spate::rdd::StorageLevel::Disk);
    check(
        "first job",
        kept.count().map_err(|e| e.to_string())?,
        40_000,
    )?;
    check("partitions computed", runs(&log), 8)?;
    let sum = kept
        .values()
        .reduce(|a, b| a + b)
        .map_err(|e| e.to_string())?;
    check("second job", sum, Some(want))?;
    let groups = kept.group_by_key_n(4).count().map_err(|e| e.to_string())?;
    check("third job", groups, 100)?;
    check(
        "no partition recomputed (tasks ran where they were cached)",
        runs(&log),
        8,
    )?;

    // Kill the executor running the first task of the next job: its cached partitions
    // are gone, recomputed, and the result is still exact.
    let total = kept
        .map_with(marker.clone(), |m, kv| {
            if first_time(m) {
                std::process::exit(9);
            }
            kv.1
        })
        .reduce(|a, b| a + b)
        .map_err(|e| e.to_string())?;
    check("after losing an executor", total, Some(want))?;
    let recomputed = runs(&log) - 8;
    if recomputed == 0 || recomputed > 8 {
        return Err(format!("{recomputed} partitions recomputed after the loss"));
    }
    let mut pairs = kept.collect().map_err(|e| e.to_string())?;
    pairs.sort();
    let mut expect = data(local, dir.join("local-runs").to_string_lossy().into_owned())
        .collect()
        .map_err(|e| e.to_string())?;
    expect.sort();
    check("cached data equals local", pairs, expect)?;

    let cached_files = || -> usize {
        let pattern = format!(
            "{}/spate-{}-*/exec-*/cache/rdd-*",
            std::env::temp_dir().display(),
            std::process::id()
        );
        glob_count(&pattern)
    };
    if cached_files() < 8 {
        return Err(format!(
            "expected the disk-level partitions on the executors, found {}",
            cached_files()
        ));
    }
    kept.unpersist();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cached_files() > 0 {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{} cached files left after unpersist",
                cached_files()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

fn glob_count(pattern: &str) -> usize {
    // tiny glob for `<root>/spate-PID-*/exec-*/cache/rdd-*`
    let parts: Vec<&str> = pattern.split('/').collect();
    let mut paths = vec![std::path::PathBuf::from("/")];
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for p in &paths {
            if let Some(prefix) = part.strip_suffix('*') {
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        if e.file_name().to_string_lossy().starts_with(prefix) {
                            next.push(e.path());
                        }
                    }
                }
            } else {
                let q = p.join(part);
                if q.exists() {
                    next.push(q);
                }
            }
        }
        paths = next;
    }
    paths.len()
}

/// A broadcast is fetched by each executor once, however many tasks read it; a broadcast
/// the driver no longer serves fails the job with a message naming it.
fn broadcasts_reach_each_executor_once(cluster: &Context, _local: &Context) -> Result<(), String> {
    let table: Vec<u64> = (0..100_000).map(|i| i * 3).collect();
    let encoded = spate::ship::codec::to_vec(&table)
        .map_err(|e| e.to_string())?
        .len() as u64;
    let before = cluster.broadcast_stats();
    let bc = cluster.broadcast(table).map_err(|e| e.to_string())?;
    let got = cluster
        .range(0, 100, 100)
        .map_with(bc.clone(), |t, i| {
            let executor = std::env::var("SPATE_EXECUTOR_ID").unwrap_or_default();
            (t[i as usize * 1000] + t.len() as u64, executor)
        })
        .collect()
        .map_err(|e| e.to_string())?;
    let executors: std::collections::BTreeSet<&String> = got.iter().map(|g| &g.1).collect();
    check(
        "values read through the broadcast",
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        (0..100).map(|i| i * 3000 + 100_000).collect(),
    )?;
    let after = cluster.broadcast_stats();
    let fetches = after.fetches - before.fetches;
    check(
        "fetches (one per executor that ran tasks)",
        fetches,
        executors.len() as u64,
    )?;
    check("bytes sent", after.bytes - before.bytes, fetches * encoded)?;
    // the driver reads its own value without any fetch
    check("driver value", bc.len(), 100_000)?;

    let gone = cluster.broadcast(7u32).map_err(|e| e.to_string())?;
    gone.unpersist();
    let err = cluster
        .range(0, 4, 2)
        .map_with(gone, |g, x| x + i64::from(**g))
        .collect()
        .err()
        .ok_or("a job reading an unpersisted broadcast succeeded")?;
    let msg = err.to_string();
    if !msg.contains("broadcast") || !msg.contains("127.0.0.1") {
        return Err(format!(
            "the error does not name the broadcast and the driver: {msg}"
        ));
    }
    Ok(())
}

/// Figures, not a check: with `SPATE_BENCH_BROADCAST=MB`, a broadcast of that many MB read
/// by 100 tasks on the 2 executors; prints the bytes the driver sent.
fn broadcast_figures(cluster: &Context, _local: &Context) -> Result<(), String> {
    let Some(mb) = std::env::var("SPATE_BENCH_BROADCAST")
        .ok()
        .and_then(|m| m.parse::<usize>().ok())
    else {
        println!("(SPATE_BENCH_BROADCAST not set: nothing measured)");
        return Ok(());
    };
    let value = vec![7u8; mb << 20];
    let before = cluster.broadcast_stats();
    let t = std::time::Instant::now();
    let bc = cluster.broadcast(value).map_err(|e| e.to_string())?;
    let n = cluster
        .range(0, 100, 100)
        .map_with(bc, |v, _| v.len())
        .collect()
        .map_err(|e| e.to_string())?;
    check("tasks", n.len(), 100)?;
    let after = cluster.broadcast_stats();
    println!(
        "broadcast of {mb} MiB read by 100 tasks on 2 executors: {} fetches, {} bytes sent ({:.1} MiB), {:.2} s",
        after.fetches - before.fetches,
        after.bytes - before.bytes,
        (after.bytes - before.bytes) as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Accumulator updates come back from executors and count once per partition: when an
/// executor dies mid-shuffle its map outputs are recomputed, but the map-side counter is
/// still exact.
/// dpark's checkpoint tests with executors writing and reading the files.
fn checkpoints_in_executors(cluster: &Context, _: &Context) -> Result<(), String> {
    let dir = temp_dir("checkpoints");
    cluster
        .set_checkpoint_dir(&dir)
        .map_err(|e| e.to_string())?;
    common::checkpoint_cuts_the_lineage(cluster, &dir)?;
    common::checkpoint_partial(cluster)?;
    common::checkpoint_long_lineage(cluster)?;
    common::damaged_checkpoint_is_named(cluster, &dir)
}

/// After the cut, an executor dying mid-shuffle loses map outputs computed from the
/// checkpoint: they are recomputed from its files, never from the lineage.
fn lost_map_outputs_are_recomputed_from_the_checkpoint(
    cluster: &Context,
    local: &Context,
) -> Result<(), String> {
    let dir = temp_dir("checkpoint-loss");
    cluster
        .set_checkpoint_dir(&dir)
        .map_err(|e| e.to_string())?;
    let marker = dir.join("killed").to_string_lossy().into_owned();
    // one line per computation of a parent partition (accumulators would not show
    // recomputations: they count a partition's first success only)
    let runs = dir.join("parent-runs");
    let runs_path = runs.to_string_lossy().into_owned();
    let pairs = cluster
        .range(0, 20_000, 8)
        .map_partitions_with(runs_path, |runs, it| {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(runs)
            {
                let _ = writeln!(f, "run");
            }
            it.map(|x| (x % 97, x))
        })
        .checkpoint()
        .map_err(|e| e.to_string())?;
    check(
        "first job",
        pairs.count().map_err(|e| e.to_string())?,
        20_000,
    )?;
    check("checkpointed", pairs.is_checkpointed(), true)?;
    let sums = pairs
        .reduce_by_key_n(|a, b| a + b, 4)
        .map_with(marker, |m, kv| {
            if first_time(m) {
                std::process::exit(9);
            }
            kv
        });
    let mut got = sums.collect().map_err(|e| e.to_string())?;
    got.sort();
    let mut want = local
        .range(0, 20_000, 8)
        .map(|x| (x % 97, x))
        .reduce_by_key(|a, b| a + b)
        .collect()
        .map_err(|e| e.to_string())?;
    want.sort();
    check("sums after the executor loss", got, want)?;
    check(
        "parent partitions computed (the lineage was never used again)",
        std::fs::read_to_string(&runs)
            .map_err(|e| e.to_string())?
            .lines()
            .count(),
        8,
    )?;
    check("an executor was killed", dir.join("killed").exists(), true)
}

fn accumulators_count_once_across_executor_loss(
    cluster: &Context,
    local: &Context,
) -> Result<(), String> {
    let dir = temp_dir("acc-kill");
    let marker = dir.join("killed").to_string_lossy().into_owned();
    let runs = dir.join("map-runs").to_string_lossy().into_owned();
    let seen = cluster.accumulator(0u64);
    let sums = cluster.accumulator(0i64);
    let counts = cluster
        .range(0, 100_000, 8)
        .map_partitions_with(
            (seen.clone(), sums.clone(), runs.clone()),
            |(seen, sums, runs), it| {
                // one line per execution of a map task, to see the recomputation
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(runs)
                {
                    let _ = writeln!(f, "run");
                }
                it.map(|x| {
                    seen.add(1);
                    sums.add(x);
                    ((x * 7) % 1000, 1u64)
                })
                .collect::<Vec<_>>()
            },
        )
        .reduce_by_key_n(|a, b| a + b, 4)
        .map_with(marker.clone(), |m, kv| {
            if first_time(m) {
                std::process::exit(9);
            }
            kv
        });
    let mut got = counts.collect().map_err(|e| e.to_string())?;
    got.sort();
    check(
        "counts",
        got,
        crash_once_counts(local, None).map_err(|e| e.to_string())?,
    )?;
    let map_runs = std::fs::read_to_string(&runs)
        .map_err(|e| e.to_string())?
        .lines()
        .count();
    if map_runs <= 8 {
        return Err(format!(
            "no map task was recomputed ({map_runs} runs): the test did not exercise the loss"
        ));
    }
    check("records seen", seen.value(), 100_000)?;
    check("sum", sums.value(), (0..100_000i64).sum())
}

/// Executors measure what their tasks did: the event log of a local-cluster job has the
/// records and the (compressed, on-disk) shuffle bytes, and the real executor names.
fn event_log_carries_executor_metrics(_cluster: &Context, _local: &Context) -> Result<(), String> {
    use spate::listener::{SchedulerEvent, TaskEndStatus, read_event_log};
    let dir = temp_dir("eventlog");
    let ctx = Context::builder()
        .master("local-cluster[2]")
        .event_log(&dir)
        .build()
        .map_err(|e| e.to_string())?;
    let n = ctx
        .range(0, 20_000, 4)
        .map(|x| (x % 500, x))
        .group_by_key_n(2)
        .count()
        .map_err(|e| e.to_string())?;
    check("groups", n, 500)?;
    drop(ctx);
    let file = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no event log")?
        .map_err(|e| e.to_string())?
        .path();
    let events = read_event_log(&file).map_err(|e| e.to_string())?;
    let mut total = spate::metrics::TaskMetrics::default();
    let mut executors = std::collections::BTreeSet::new();
    for e in &events {
        if let SchedulerEvent::TaskEnd {
            status: TaskEndStatus::Success,
            metrics,
            executor,
            ..
        } = e
        {
            total.add(metrics);
            executors.insert(executor.clone());
        }
    }
    check("input records", total.input_records, 20_000)?;
    // group_by_key combines on the map side: one record per key per map task
    check(
        "shuffle records written",
        total.shuffle_write_records,
        2_000,
    )?;
    check("shuffle records read", total.shuffle_read_records, 2_000)?;
    if total.shuffle_write_bytes == 0 || total.shuffle_read_bytes == 0 || total.result_bytes == 0 {
        return Err(format!("byte counters missing: {total:?}"));
    }
    check(
        "executors",
        executors.into_iter().collect::<Vec<_>>(),
        vec!["exec-0".to_string(), "exec-1".to_string()],
    )?;
    let added = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                SchedulerEvent::ExecutorAdded {
                    address: Some(_),
                    ..
                }
            )
        })
        .count();
    check("executors added with an address", added, 2)
}

#[path = "../common/jobs.rs"]
mod common;
mod fake_agent;
mod fake_mesos;
mod mesos_cases;

/// A real task, sealed as the driver would: the sum of partition 1 of `range(0, 100, 4)`
/// times 3 (= 3 × (25 + … + 49)). Returns the encoded `LaunchTask` (what
/// `TaskInfo.data` carries) and the job, to decode the result with.
fn sealed_sum_task(
    local: &Context,
    secret: &spate::ship::Secret,
    task: u64,
) -> Result<(Vec<u8>, spate::SerArc<dyn spate::task::ResultJob>), String> {
    use spate::task::{PartitionJob, ResultJob, TaskKind};
    let rdd = local.range(0, 100, 4).map_with(3i64, |k, x| x * k);
    let job: spate::SerArc<dyn ResultJob> = spate::SerArc::new(PartitionJob::new(
        rdd.node(),
        spate::func::Fun::new(|it: PartIter<i64>| it.sum::<i64>()),
    ));
    let envelope =
        spate::ship::seal(&TaskKind::Result(job.clone()), secret).map_err(|e| e.to_string())?;
    let launch = spate::protocol::LaunchTask {
        task,
        stage: 0,
        partition: 1,
        attempt: 0,
        envelope,
        shuffle_locations: Vec::new(),
    };
    let data = spate::ship::codec::to_vec(&launch).map_err(|e| e.to_string())?;
    Ok((data, job))
}

/// The custom Mesos executor against a fake agent: subscribe, LAUNCH a real sealed task,
/// RUNNING then FINISHED updates (uuid v4, SOURCE_EXECUTOR, result in `data`), each
/// acknowledged; then SHUTDOWN and a clean exit.
fn mesos_executor_runs_a_launched_task(_cluster: &Context, local: &Context) -> Result<(), String> {
    use spate::ship::Secret;
    use spate_mesos::v1;
    use spate_mesos::v1::executor::{Event, event};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let agent = rt.block_on(fake_agent::FakeAgent::start());
    let secret = Secret::generate().map_err(|e| e.to_string())?;
    let sandbox = temp_dir("mesos-sandbox");
    let mut child = std::process::Command::new("/proc/self/exe")
        .env("MESOS_AGENT_ENDPOINT", &agent.addr)
        .env("MESOS_FRAMEWORK_ID", "fw-1")
        .env("MESOS_EXECUTOR_ID", "spate-exec-1")
        .env("MESOS_SANDBOX", &sandbox)
        .env("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "3secs")
        .env("SPATE_SECRET", secret.to_hex())
        .env("SPATE_BIND_HOST", "127.0.0.1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let wait = |what: &str, cond: &dyn Fn() -> bool| -> Result<(), String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !cond() {
            if std::time::Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    };
    wait("SUBSCRIBE", &|| agent.subscribed())?;

    let (data, job) = sealed_sum_task(local, &secret, 7)?;
    let task = v1::TaskInfo {
        name: "spate task 7".into(),
        task_id: v1::TaskId {
            value: "spate-7".into(),
        },
        agent_id: v1::AgentId {
            value: "agent-1".into(),
        },
        data: Some(data),
        ..Default::default()
    };
    agent.send(Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(event::Launch { task }),
        ..Default::default()
    });
    let updates = || -> Vec<v1::TaskStatus> {
        agent
            .recorded
            .lock()
            .expect("lock")
            .calls
            .iter()
            .filter_map(|c| c.update.clone())
            .map(|u| u.status)
            .collect()
    };
    wait("a terminal update", &|| {
        updates()
            .iter()
            .any(|s| s.state == v1::TaskState::TaskFinished as i32)
    })?;
    let ups = updates();
    check(
        "states",
        ups.iter().map(|s| s.state).collect::<Vec<_>>(),
        vec![
            v1::TaskState::TaskRunning as i32,
            v1::TaskState::TaskFinished as i32,
        ],
    )?;
    let data: spate::protocol::StatusData =
        spate::ship::codec::from_slice(ups[1].data.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
    let spate::protocol::TaskState::Finished(spate::protocol::TaskResult::Inline(bytes)) =
        &data.state
    else {
        return Err(format!("unexpected state {:?}", data.state));
    };
    let got = *job
        .decode_result(bytes)
        .map_err(|e| e.to_string())?
        .downcast::<i64>()
        .map_err(|_| "type")?;
    check("task result", got, (25..50).map(|x| x * 3).sum::<i64>())?;
    check("exe id in the status", data.exe_id, spate::ship::exe_id())?;

    agent.send(Event {
        r#type: Some(event::Type::Shutdown as i32),
        ..Default::default()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err("executor did not exit after SHUTDOWN".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    check("exit status", status.code(), Some(0))?;
    let rec = agent.recorded.lock().expect("lock");
    if !rec.violations.is_empty() {
        return Err(format!("protocol violations: {:?}", rec.violations));
    }
    let subscribe = rec
        .calls
        .iter()
        .find(|c| c.subscribe.is_some())
        .ok_or("no SUBSCRIBE")?;
    check(
        "framework id",
        subscribe.framework_id.value.clone(),
        "fw-1".to_string(),
    )?;
    check(
        "executor id",
        subscribe.executor_id.value.clone(),
        "spate-exec-1".to_string(),
    )?;
    let _ = std::fs::remove_dir_all(&sandbox);
    drop(rec);
    drop(rt);
    Ok(())
}
