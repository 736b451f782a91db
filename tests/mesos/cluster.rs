//! The real Mesos cluster of this test: `cluster.sh` of the shared kit run with a state
//! directory and ports of its own, a guard that stops it, the masters' HTTP API, the
//! executor sandboxes, and what to print when a case fails.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Where the kit is: `SPATE_MESOS_KIT`, else `../shared/mesos` next to this repository.
pub fn kit_dir() -> PathBuf {
    std::env::var_os("SPATE_MESOS_KIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/mesos"))
}

/// What a case needs from the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One master, two agents of 1 cpu each.
    Single,
    /// ZooKeeper, two masters, two agents of 1 cpu each.
    Zk,
}

impl Topology {
    pub fn masters(self) -> usize {
        match self {
            Topology::Single => 1,
            Topology::Zk => 2,
        }
    }
}

pub const AGENTS: usize = 2;

/// A running cluster; stopped (every process `cluster.sh` started, and their
/// executors) when dropped.
pub struct Cluster {
    kit: PathBuf,
    /// `SPATE_MESOS_RUN`: work dirs, logs, pids, sandboxes.
    pub run: PathBuf,
    /// Masters listen on base, base + 1; agents on base + 10, base + 11; ZooKeeper on
    /// base + 100.
    pub base: u16,
    pub topology: Topology,
    /// What `cluster.sh start` printed: `mesos://127.0.0.1:PORT` or
    /// `mesos://zk://127.0.0.1:PORT/mesos`.
    pub url: String,
    running: bool,
}

/// Run `cluster.sh ARGS` for the state directory `run`; its stdout, or why it failed.
pub fn script(kit: &Path, run: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(kit.join("cluster.sh"))
        .args(args)
        .env("SPATE_MESOS_RUN", run)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {}/cluster.sh: {e}", kit.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "cluster.sh {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `install.sh --zk`: runtime libraries, ZooKeeper and the unpacked Mesos (quick when
/// already done).
pub fn install(kit: &Path) -> Result<(), String> {
    let out = std::process::Command::new(kit.join("install.sh"))
        .arg("--zk")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {}/install.sh: {e}", kit.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}/install.sh --zk failed ({}): {}",
            kit.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A base port whose master, agent and ZooKeeper ports are all free, from `preferred`
/// on in steps of 200 (another run of this suite, or a developer's cluster, keeps its
/// own).
pub fn free_base_port(preferred: u16) -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    (0..20u16)
        .map(|k| preferred.saturating_add(k * 200))
        .find(|&b| (0..12).all(|i| free(b + i)) && free(b + 100))
        .unwrap_or(preferred)
}

/// Stop clusters left by earlier runs of this test that were killed before they could
/// stop theirs (their state directories carry the dead run's pid).
pub fn sweep_stale_runs(kit: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("spate-mesos-test-") else {
            continue;
        };
        let Ok(pid) = pid.split('-').next().unwrap_or("").parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let run = e.path().join("run");
        if run.exists() {
            let _ = script(kit, &run, &["stop"]);
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}

impl Cluster {
    /// `cluster.sh start` with this topology: 2 agents of 1 cpu, the default 1 s
    /// allocation interval.
    pub fn start(kit: &Path, run: &Path, base: u16, topology: Topology) -> Result<Cluster, String> {
        let base_s = base.to_string();
        let masters = topology.masters().to_string();
        let agents = AGENTS.to_string();
        let mut args = vec![
            "start",
            "--agents",
            agents.as_str(),
            "--cpus",
            "1",
            "--base-port",
            base_s.as_str(),
        ];
        if topology == Topology::Zk {
            args.extend(["--masters", masters.as_str()]);
        }
        let mut cluster = Cluster {
            kit: kit.to_path_buf(),
            run: run.to_path_buf(),
            base,
            topology,
            url: String::new(),
            running: true,
        };
        crate::watch::set_run(Some(run.to_path_buf()));
        let out = script(kit, run, &args)?;
        cluster.url = out
            .lines()
            .rev()
            .find(|l| l.starts_with("mesos://"))
            .ok_or_else(|| format!("cluster.sh start printed no mesos:// URL: {out}"))?
            .trim()
            .to_string();
        Ok(cluster)
    }

    pub fn stop(&mut self) {
        if self.running {
            self.running = false;
            if let Err(e) = script(&self.kit, &self.run, &["stop"]) {
                eprintln!("stopping the Mesos cluster: {e}");
            }
        }
    }

    /// `kill -9` agent `i` (1-based) and the executors it started.
    pub fn kill_agent(&self, i: usize) -> Result<(), String> {
        script(&self.kit, &self.run, &["kill-agent", &i.to_string()]).map(drop)
    }

    /// `kill -9` master `i` (1-based).
    pub fn kill_master(&self, i: usize) -> Result<(), String> {
        script(&self.kit, &self.run, &["kill-master", &i.to_string()]).map(drop)
    }

    /// `127.0.0.1:PORT` of master `i` (1-based).
    pub fn master_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.base as usize + i - 1)
    }

    /// `host:port` of the leading master, as any live master sees it.
    pub fn leader(&self) -> Result<String, String> {
        let mut why = Vec::new();
        for i in 1..=self.topology.masters() {
            match get_json(&self.master_addr(i), "/state") {
                Ok(state) => match state["leader"].as_str() {
                    Some(l) if !l.is_empty() => {
                        return Ok(l.rsplit('@').next().unwrap_or(l).to_string());
                    }
                    _ => why.push(format!("master {i}: no leader yet")),
                },
                Err(e) => why.push(format!("master {i}: {e}")),
            }
        }
        Err(format!("no leading master: {}", why.join("; ")))
    }

    /// 1-based index of the leading master.
    pub fn leader_index(&self) -> Result<usize, String> {
        let leader = self.leader()?;
        (1..=self.topology.masters())
            .find(|&i| self.master_addr(i) == leader)
            .ok_or_else(|| format!("leader {leader} is none of this cluster's masters"))
    }

    /// The leading master's `/state`.
    pub fn state(&self) -> Result<serde_json::Value, String> {
        get_json(&self.leader()?, "/state")
    }

    /// Every agent registered and active, no framework registered (active or not) and
    /// no resources in use: the next case starts from scratch.
    pub fn clean(&self) -> Result<(), String> {
        let state = self.state()?;
        let active = state["activated_slaves"].as_f64().unwrap_or(0.0) as usize;
        if active != AGENTS {
            return Err(format!("{active} of {AGENTS} agents active"));
        }
        let names: Vec<&str> = state["frameworks"]
            .as_array()
            .map(|fs| fs.iter().filter_map(|f| f["name"].as_str()).collect())
            .unwrap_or_default();
        if !names.is_empty() {
            return Err(format!("frameworks still registered: {names:?}"));
        }
        let used = used_cpus(&state);
        if used > 0.0 {
            return Err(format!("{used} cpus still in use on the agents"));
        }
        Ok(())
    }

    /// Agent `i` (1-based) whose executor sandboxes hold a file called `name`.
    pub fn agent_with_sandbox_file(&self, name: &str) -> Option<usize> {
        (1..=AGENTS).find(|i| {
            sandboxes(&self.run.join(format!("agent-{i}")))
                .iter()
                .any(|s| s.join(name).exists())
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPUs in use on all agents.
pub fn used_cpus(state: &serde_json::Value) -> f64 {
    state["slaves"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|a| a["used_resources"]["cpus"].as_f64().unwrap_or(0.0))
                .sum()
        })
        .unwrap_or(0.0)
}

/// The framework called `name` in a master's state: `(id, active?)` if registered,
/// and whether it is among the completed ones.
pub fn framework_named(state: &serde_json::Value, name: &str) -> (Option<String>, bool) {
    let find = |key: &str| {
        state[key].as_array().and_then(|fs| {
            fs.iter()
                .find(|f| f["name"].as_str() == Some(name))
                .and_then(|f| f["id"].as_str().map(str::to_string))
        })
    };
    (find("frameworks"), find("completed_frameworks").is_some())
}

/// The id of the framework called `name`, registered or completed.
pub fn framework_id(state: &serde_json::Value, name: &str) -> Option<String> {
    ["frameworks", "completed_frameworks"]
        .iter()
        .find_map(|key| {
            state[*key].as_array().and_then(|fs| {
                fs.iter()
                    .find(|f| f["name"].as_str() == Some(name))
                    .and_then(|f| f["id"].as_str().map(str::to_string))
            })
        })
}

/// Pids of live processes whose working directory is an executor sandbox of framework
/// `framework_id` under `run` (executors run in their sandbox).
pub fn executor_pids(run: &Path, framework_id: &str) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let run = run.to_string_lossy().into_owned();
    let needle = format!("/frameworks/{framework_id}/executors/");
    procs
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cwd = std::fs::read_link(p.path().join("cwd")).ok()?;
            let cwd = cwd.to_string_lossy();
            (cwd.starts_with(&run) && cwd.contains(&needle)).then_some(pid)
        })
        .collect()
}

/// GET `http://addr{path}` (HTTP/1.0, so the body ends with the connection).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("GET {addr}{path}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("GET {addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {addr}{path}: no HTTP header in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("GET {addr}{path}: bad status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// GET a JSON document from a master.
pub fn get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    let (status, body) = http_get(addr, path)?;
    if status != 200 {
        return Err(format!("GET {addr}{path}: HTTP {status}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {addr}{path}: bad JSON ({e})"))
}

/// Executor sandboxes (`.../executors/E/runs/C`, not the `latest` link) under `dir`.
pub fn sandboxes(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(dir, 0, &mut found);
    found
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > 9 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if !t.is_dir() {
            continue; // also skips the `latest` symlinks
        }
        let p = e.path();
        let in_runs = dir.file_name().is_some_and(|n| n == "runs")
            && dir
                .parent()
                .and_then(|x| x.parent())
                .and_then(|x| x.file_name())
                .is_some_and(|n| n == "executors");
        if in_runs {
            found.push(p);
        } else if e.file_name() != "fetch-cache" && e.file_name() != "meta" {
            walk(&p, depth + 1, found);
        }
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    tail_without(path, n, "\0")
}

/// The last `n` lines of a file that do not contain `noise` (this test's own polling).
fn tail_without(path: &Path, n: usize, noise: &str) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains(noise)).collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// What helps to debug a failed case: the stderr of every executor sandbox written to
/// since `since`, and the tails of the master and agent logs.
pub fn print_diagnostics(run: &Path, since: SystemTime) {
    println!("---- diagnostics (state directory {}) ----", run.display());
    let mut boxes: Vec<PathBuf> = (1..=AGENTS)
        .flat_map(|i| sandboxes(&run.join(format!("agent-{i}"))))
        .filter(|s| {
            std::fs::metadata(s.join("stderr"))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .collect();
    boxes.sort();
    if boxes.is_empty() {
        println!("(no executor sandbox written to during this case)");
    } else {
        println!(
            "(executors log to their stderr with RUST_LOG set for the test, e.g. RUST_LOG=info)"
        );
    }
    for s in boxes.iter().take(8) {
        println!("-- {}/stderr (tail) --", s.display());
        println!("{}", tail(&s.join("stderr"), 15));
    }
    let mut logs: Vec<PathBuf> = std::fs::read_dir(run)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    for log in logs {
        let name = log.file_name().map(|n| n.to_string_lossy().into_owned());
        let n = match name.as_deref() {
            Some(n) if n.starts_with("master") => 25,
            Some(n) if n.starts_with("agent") => 10,
            _ => 5,
        };
        println!("-- {} (tail, without HTTP GET lines) --", log.display());
        println!("{}", tail_without(&log, n, "HTTP GET for"));
    }
    println!("---- end of diagnostics ----");
}

/// Poll `cond` every 200 ms until it holds or `secs` pass; the last reason it did not.
pub fn wait_until(
    what: &str,
    secs: f64,
    mut cond: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut last = String::new();
    loop {
        match cond() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(if last.is_empty() {
                format!("timed out after {secs} s waiting for {what}")
            } else {
                format!("timed out after {secs} s waiting for {what} ({last})")
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
