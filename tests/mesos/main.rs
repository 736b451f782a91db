//! Tests against a REAL Apache Mesos (1 master + 2 agents of 1 cpu on loopback, or 2
//! masters with ZooKeeper), started with the shared kit's `cluster.sh`: jobs equal local
//! mode, an agent or the leading master dies mid-job, the driver is signalled or killed,
//! many small jobs, default settings on small agents.
//!
//! The kit is `../shared/mesos` next to this repository (or `SPATE_MESOS_KIT`). Without
//! it the suite is skipped with a notice, unless `SPATE_REQUIRE_MESOS=1` (as in CI),
//! which makes it fail. The cluster gets its own state directory (under the temp dir)
//! and base port (25050, or the next free one 200 further), is restarted between cases
//! that break it, and is stopped at the end, on panic and when the watchdog fires.
//!
//! A `harness = false` test: executors (Mesos's and local-cluster's) and driver children
//! re-run this binary's `main`, whose first statement creates a context and so turns an
//! executor into one before any test code runs. Argument: a case-name filter.

mod cases;
mod child;
mod cluster;
mod jobs;
mod watch;

use cases::Harness;
use cluster::{Cluster, Topology};
use spate::prelude::*;
use std::time::{Duration, Instant, SystemTime};

type CaseFn = fn(&Harness) -> Result<String, String>;

struct Case {
    name: &'static str,
    topology: Topology,
    /// It leaves the cluster broken (a dead agent or master): restart after it.
    breaks: bool,
    /// The watchdog's limit.
    limit: Duration,
    run: CaseFn,
}

const fn case(name: &'static str, run: CaseFn) -> Case {
    Case {
        name,
        topology: Topology::Single,
        breaks: false,
        limit: Duration::from_secs(180),
        run,
    }
}

fn main() {
    let local = Context::builder()
        .master("local[2]")
        .ui(false)
        .progress(false)
        .build()
        .unwrap_or_else(|e| panic!("local[2] context: {e}"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(child::FLAG) {
        drop(local);
        std::process::exit(child::run(&args[1..]));
    }

    let cases = vec![
        case("jobs_equal_local", cases::jobs_equal_local),
        case(
            "fine_grained_jobs_equal_local",
            cases::fine_grained_jobs_equal_local,
        ),
        case("many_small_jobs", cases::many_small_jobs).limit(600),
        case(
            "dropped_shuffles_leave_executor_disks",
            cases::dropped_shuffles_leave_executor_disks,
        ),
        case(
            "executor_death_is_named_with_its_stderr",
            cases::executor_death_is_named_with_its_stderr,
        ),
        case(
            "default_settings_run_on_one_cpu_agents",
            cases::default_settings_run_on_one_cpu_agents,
        ),
        case(
            "resources_that_never_fit_fail_saying_why",
            cases::resources_that_never_fit_fail_saying_why,
        ),
        case(
            "sigint_tears_the_framework_down",
            cases::sigint_tears_the_framework_down,
        ),
        case(
            "sigterm_tears_the_framework_down",
            cases::sigterm_tears_the_framework_down,
        ),
        case(
            "driver_killed_executors_exit",
            cases::driver_killed_executors_exit,
        )
        .breaks(),
        case("agent_killed_mid_job", cases::agent_killed_mid_job).breaks(),
        case(
            "leading_master_killed_mid_job",
            cases::leading_master_killed_mid_job,
        )
        .zk()
        .breaks(),
    ];

    let kit = cluster::kit_dir();
    let required = std::env::var("SPATE_REQUIRE_MESOS").is_ok_and(|v| v == "1");
    if !kit.join("cluster.sh").exists() {
        if required {
            eprintln!(
                "SPATE_REQUIRE_MESOS=1 but there is no Mesos kit at {} (cluster.sh, install.sh and the Mesos tarball; set SPATE_MESOS_KIT to its directory)",
                kit.display()
            );
            std::process::exit(1);
        }
        println!(
            "mesos tests skipped: {} not found (a real Mesos kit is needed; see README)",
            kit.display()
        );
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let selected: Vec<Case> = cases
        .into_iter()
        .filter(|c| filter.as_deref().is_none_or(|f| c.name.contains(f)))
        .collect();
    if selected.is_empty() {
        println!("0 passed, 0 failed (no case matches)");
        return;
    }

    if let Err(e) = cluster::install(&kit) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    cluster::sweep_stale_runs(&kit);
    watch::set_kit(kit.clone());
    watch::spawn();
    let work = std::env::temp_dir().join(format!("spate-mesos-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("creating {}: {e}", work.display()));
    let run = work.join("run");
    let base = std::env::var("SPATE_MESOS_BASE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| cluster::free_base_port(25050));
    let mut h = Harness {
        local,
        cluster: None,
        work: work.clone(),
    };
    let suite = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    // Why the cluster must be restarted before the next case.
    let mut dirty: Option<String> = None;
    for case in selected {
        let reason = match (&h.cluster, &dirty) {
            (None, _) => None,
            (Some(c), _) if c.topology != case.topology => Some("another topology".to_string()),
            (Some(_), Some(why)) => Some(why.clone()),
            // a framework just torn down may hold its resources for a moment
            (Some(c), None) => {
                cluster::wait_until("a clean cluster", 3.0, || c.clean().map(|()| true)).err()
            }
        };
        if h.cluster.is_none() || reason.is_some() {
            if let Some(why) = &reason {
                println!("(restarting the Mesos cluster: {why})");
            }
            h.cluster = None; // stops the old one
            let t = Instant::now();
            match Cluster::start(&kit, &run, base, case.topology) {
                Ok(c) => {
                    println!(
                        "(Mesos cluster {} up in {:.1} s, state in {})",
                        c.url,
                        t.elapsed().as_secs_f64(),
                        run.display()
                    );
                    h.cluster = Some(c);
                    dirty = None;
                }
                Err(e) => {
                    failed += 1;
                    println!("test {} ... FAILED: starting the cluster: {e}", case.name);
                    cluster::print_diagnostics(&run, SystemTime::UNIX_EPOCH);
                    continue;
                }
            }
        }
        let since = SystemTime::now();
        let start = Instant::now();
        watch::begin(case.name, case.limit);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&h)))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(format!("panicked: {msg}"))
            });
        watch::end();
        let secs = start.elapsed().as_secs_f64();
        match outcome {
            Ok(note) => {
                passed += 1;
                println!("test {} ... ok ({secs:.1} s) {note}", case.name);
            }
            Err(msg) => {
                failed += 1;
                println!("test {} ... FAILED ({secs:.1} s): {msg}", case.name);
                cluster::print_diagnostics(&run, since);
                dirty = Some(format!("{} failed", case.name));
            }
        }
        if case.breaks {
            dirty = Some(format!("{} breaks it", case.name));
        }
    }
    drop(h); // stops the cluster
    watch::set_run(None);
    println!(
        "{passed} passed, {failed} failed ({:.1} s)",
        suite.elapsed().as_secs_f64()
    );
    if failed > 0 {
        println!("(scratch files and Mesos logs kept in {})", work.display());
        std::process::exit(1);
    }
    let _ = std::fs::remove_dir_all(&work);
}

impl Case {
    fn limit(mut self, secs: u64) -> Case {
        self.limit = Duration::from_secs(secs);
        self
    }

    fn breaks(mut self) -> Case {
        self.breaks = true;
        self
    }

    fn zk(mut self) -> Case {
        self.topology = Topology::Zk;
        self
    }
}
