//! The watchdog: no case may hang. Each case runs under a time limit; when it passes,
//! the watchdog prints which case hung and the diagnostics, kills the driver children,
//! stops the cluster and exits non-zero.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

struct Watch {
    /// The running case: name, start, limit.
    case: Option<(String, Instant, SystemTime, Duration)>,
    kit: Option<PathBuf>,
    run: Option<PathBuf>,
    /// Driver child processes alive.
    children: Vec<u32>,
}

static WATCH: Mutex<Watch> = Mutex::new(Watch {
    case: None,
    kit: None,
    run: None,
    children: Vec::new(),
});

fn with<R>(f: impl FnOnce(&mut Watch) -> R) -> R {
    let mut w = WATCH.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut w)
}

pub fn set_kit(kit: PathBuf) {
    with(|w| w.kit = Some(kit));
}

pub fn set_run(run: Option<PathBuf>) {
    with(|w| w.run = run);
}

pub fn begin(case: &str, limit: Duration) {
    with(|w| w.case = Some((case.to_string(), Instant::now(), SystemTime::now(), limit)));
}

pub fn end() {
    with(|w| w.case = None);
}

pub fn child_started(pid: u32) {
    with(|w| w.children.push(pid));
}

pub fn child_gone(pid: u32) {
    with(|w| w.children.retain(|p| *p != pid));
}

/// Start the watchdog thread.
pub fn spawn() {
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let hung = with(|w| match &w.case {
                Some((name, start, since, limit)) if start.elapsed() > *limit => Some((
                    name.clone(),
                    *since,
                    *limit,
                    w.kit.clone(),
                    w.run.clone(),
                    w.children.clone(),
                )),
                _ => None,
            });
            let Some((name, since, limit, kit, run, children)) = hung else {
                continue;
            };
            println!(
                "test {name} ... FAILED: hung (still running after {} s); stopping everything",
                limit.as_secs()
            );
            if let Some(run) = &run {
                crate::cluster::print_diagnostics(run, since);
            }
            for pid in children {
                crate::child::signal(pid, "KILL");
            }
            if let (Some(kit), Some(run)) = (kit, run) {
                let _ = crate::cluster::script(&kit, &run, &["stop"]);
            }
            std::process::exit(1);
        }
    });
}
