//! Driver children: this test binary started again as a separate spate driver
//! (`--driver-child URL MODE DIR NAME`), so a case can signal or kill a driver, or give
//! a driver a time limit it cannot overrun. The child builds its first context in `main`
//! like every process of this binary, then runs here.
//!
//! Modes: `long-job` runs a job whose tasks write `DIR/started-PID` and then wait (for
//! `DIR/release` or 300 s), printing `job running` once one has started; `quick-job`
//! runs a small shuffle job and prints `result ok` (or `result wrong: ...`).

use spate::prelude::*;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const FLAG: &str = "--driver-child";

/// The child's side; returns its exit code.
pub fn run(args: &[String]) -> i32 {
    let [url, mode, dir, name] = args else {
        println!("error: usage: {FLAG} URL MODE DIR NAME (got {args:?})");
        return 2;
    };
    let started = Instant::now();
    let ctx = match Context::builder()
        .master(url.as_str())
        .app_name(name.as_str())
        .ui(false)
        .progress(false)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            println!("error: the Mesos context: {e}");
            return 2;
        }
    };
    let code = match mode.as_str() {
        "long-job" => long_job(&ctx, Path::new(dir)),
        "quick-job" => {
            let want = quick_expected();
            match quick_job(&ctx) {
                Ok(got) if got == want => {
                    say(&format!(
                        "result ok after {:.1} s",
                        started.elapsed().as_secs_f64()
                    ));
                    0
                }
                Ok(got) => {
                    say(&format!("result wrong: got {got:?}, want {want:?}"));
                    1
                }
                Err(e) => {
                    say(&format!("error: the job failed: {e}"));
                    1
                }
            }
        }
        other => {
            say(&format!("error: unknown mode {other}"));
            2
        }
    };
    drop(ctx);
    code
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn long_job(ctx: &Context, dir: &Path) -> i32 {
    let d = dir.to_string_lossy().into_owned();
    std::thread::scope(|s| {
        let job = s.spawn(|| {
            ctx.range(0, 2, 2)
                .map_partitions_with(d, |dir, it| {
                    let dir = Path::new(dir);
                    let _ =
                        std::fs::write(dir.join(format!("started-{}", std::process::id())), b"");
                    let until = Instant::now() + Duration::from_secs(300);
                    while !dir.join("release").exists() && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    it
                })
                .count()
        });
        let deadline = Instant::now() + Duration::from_secs(150);
        let mut said = false;
        while !job.is_finished() && Instant::now() < deadline {
            let started = std::fs::read_dir(dir).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("started-"))
            });
            if started {
                say("job running");
                said = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !said && !job.is_finished() {
            say("error: no task started within 150 s");
        }
        match job.join() {
            Ok(Ok(n)) => {
                say(&format!("job done: {n}"));
                0
            }
            Ok(Err(e)) => {
                say(&format!("error: the job failed: {e}"));
                1
            }
            Err(_) => {
                say("error: the job thread panicked");
                1
            }
        }
    })
}

/// Sums of `x` per `x % 10` over `0..10_000`, through a shuffle.
pub fn quick_job(ctx: &Context) -> spate::Result<Vec<(i64, i64)>> {
    let mut v = ctx
        .range(0, 10_000, 4)
        .map(|x| (x % 10, x))
        .reduce_by_key_n(|a, b| a + b, 2)
        .collect()?;
    v.sort();
    Ok(v)
}

pub fn quick_expected() -> Vec<(i64, i64)> {
    (0..10)
        .map(|k| (k, (0..10_000).filter(|x| x % 10 == k).sum()))
        .collect()
}

/// `kill -SIG pid`.
pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// The parent's handle on a driver child. Dropping it interrupts the child (Ctrl-C:
/// the framework is torn down), then kills it if it is still there after a few seconds.
pub struct Driver {
    child: std::process::Child,
    pub pid: u32,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
    exited: Option<std::process::ExitStatus>,
}

impl Driver {
    /// Start `MODE` against `url`; its stderr goes to `dir/NAME.stderr`. `env_remove`
    /// names variables the child must not see.
    pub fn spawn(
        url: &str,
        mode: &str,
        dir: &Path,
        name: &str,
        env_remove: &[&str],
    ) -> Result<Driver, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| format!("creating {}: {e}", stderr_path.display()))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args([FLAG, url, mode, &dir.to_string_lossy(), name])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr);
        for k in env_remove {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting a driver child: {e}"))?;
        let pid = child.id();
        crate::watch::child_started(pid);
        let out = child.stdout.take().ok_or("no stdout of the driver child")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Driver {
            child,
            pid,
            lines,
            stderr: stderr_path,
            exited: None,
        })
    }

    /// Wait up to `secs` for a line starting with `prefix`; a line starting with
    /// `error` or the child's exit ends the wait with an error.
    pub fn wait_line(&mut self, prefix: &str, secs: f64) -> Result<String, String> {
        let secs = secs.max(0.0);
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(line) if line.starts_with("error") || line.starts_with("result wrong") => {
                    return Err(format!(
                        "the driver child said {line:?}; its stderr:\n{}",
                        self.stderr_tail()
                    ));
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no {prefix:?} from the driver child within {secs:.1} s; its stderr:\n{}",
                        self.stderr_tail()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.wait_exit(5.0);
                    return Err(format!(
                        "the driver child ended ({}) without {prefix:?}; its stderr:\n{}",
                        self.describe_exit(),
                        self.stderr_tail()
                    ));
                }
            }
        }
    }

    /// How the child ended, in words (`None`: still running).
    pub fn describe_exit(&mut self) -> String {
        use std::os::unix::process::ExitStatusExt as _;
        match self.exited() {
            None => "still running".into(),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => format!("{s}"),
            },
        }
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid, sig);
    }

    /// The exit status, if the child has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
            if self.exited.is_some() {
                crate::watch::child_gone(self.pid);
            }
        }
        self.exited
    }

    /// Wait up to `secs` for the child to exit.
    pub fn wait_exit(&mut self, secs: f64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr_tail(&self) -> String {
        let t = crate::cluster::tail(&self.stderr, 20);
        if t.trim().is_empty() {
            "(empty)".into()
        } else {
            t
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.signal("INT");
            if self.wait_exit(8.0).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        crate::watch::child_gone(self.pid);
    }
}
