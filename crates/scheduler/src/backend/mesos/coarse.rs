//! Coarse-grained mode: one long-running Mesos task per agent is a spate executor.
//!
//! The task holds the agent's offered cpus (up to `max_cores` in all) and runs the
//! program's own binary as a `local-cluster`-style executor that connects back to the
//! driver's control channel ([`crate::backend::control`]); from then on the DAG scheduler
//! sends it tasks directly, with no offer cycle per task and no SUPPRESS/REVIVE per job.
//! The Mesos task's status is the executor's life: a terminal update (or TASK_LOST when
//! its agent disconnects) is an executor loss, reported at once, so its map outputs are
//! recomputed elsewhere long before the master removes the agent. An agent whose
//! executor fails before registering twice (or once with a corrupt download or a
//! different build) is not used again by this application.

use super::offers::{take, total};
use crate::backend::control::ControlHooks;
use spate_core::protocol::exit;
use spate_mesos::v1::{self, AgentId, CommandInfo, Offer, TaskId as MesosTaskId, TaskInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Prefix of the Mesos task ids (and spate executor ids) of coarse executors.
pub(crate) const EXECUTOR_PREFIX: &str = "spate-executor-";

/// Fewest cpus worth starting an executor on.
pub(crate) const MIN_CPUS: f64 = 0.1;

/// Failures before registration after which an agent is not used again.
const MAX_AGENT_FAILURES: u32 = 2;

/// One executor task, launching or live.
#[derive(Clone, Debug)]
pub(crate) struct CoarseExecutor {
    pub agent: String,
    pub cpus: f64,
    pub threads: usize,
    pub registered: bool,
}

/// What coarse mode keeps.
#[derive(Default)]
pub(crate) struct Coarse {
    /// By executor id (= Mesos task id).
    pub executors: HashMap<String, CoarseExecutor>,
    /// Agent → failures before registration.
    pub failures: HashMap<String, u32>,
    /// Agents not to use again, with why.
    pub bad_agents: HashMap<String, String>,
    pub next: u64,
}

impl Coarse {
    /// Cpus all executors hold.
    pub fn held(&self) -> f64 {
        self.executors.values().map(|e| e.cpus).sum()
    }

    /// Whether `agent` runs (or is starting) an executor.
    pub fn on_agent(&self, agent: &str) -> bool {
        self.executors.values().any(|e| e.agent == agent)
    }

    /// An executor of `agent` ended before it registered, for `why`: count it, and give up
    /// on the agent after too many (at once for a bad binary).
    pub fn failed_to_start(&mut self, agent: &str, why: &str, fatal: bool) {
        let n = self.failures.entry(agent.to_string()).or_default();
        *n += 1;
        if (fatal || *n >= MAX_AGENT_FAILURES) && !self.bad_agents.contains_key(agent) {
            // The first reason is the one that says why (a crash that follows is its echo).
            tracing::warn!(agent, "not using agent {agent} again: {why}");
            self.bad_agents.insert(agent.to_string(), why.to_string());
        }
    }
}

/// An executor to start on an offer.
pub(crate) struct Planned {
    pub offer: usize,
    pub executor: String,
    pub cpus: f64,
    pub mem: f64,
    pub threads: usize,
    pub resources: Vec<v1::Resource>,
}

/// Sizes for [`plan`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    pub task_cpus: f64,
    pub task_mem: f64,
    pub executor_mem: f64,
    pub max_cores: Option<f64>,
}

/// The HTTP address (`host:port`) of the agent behind an offer, to read sandboxes.
pub(crate) fn agent_addr(o: &Offer) -> Option<String> {
    o.url.as_ref().map(|u| {
        let host = u.address.ip.as_deref().or(u.address.hostname.as_deref());
        format!("{}:{}", host.unwrap_or(&o.hostname), u.address.port)
    })
}

/// Pick the offers to start executors on: one per agent without one (and not given up
/// on), taking all its cpus (within `max_cores`) and memory for the executor plus a task
/// per thread (at least one task's worth).
pub(crate) fn plan(coarse: &mut Coarse, offers: &[Offer], sizes: Sizes) -> Vec<Planned> {
    let mut held = coarse.held();
    let mut out = Vec::new();
    let mut agents_taken: Vec<&str> = Vec::new();
    for (i, o) in offers.iter().enumerate() {
        let agent = o.agent_id.value.as_str();
        if coarse.bad_agents.contains_key(agent)
            || coarse.on_agent(agent)
            || agents_taken.contains(&agent)
        {
            continue;
        }
        let room = sizes.max_cores.map_or(f64::INFINITY, |m| m - held);
        let cpus = round3(total(&o.resources, "cpus").min(room));
        let mem = total(&o.resources, "mem");
        let min_mem = sizes.executor_mem + sizes.task_mem;
        if cpus + 1e-9 < MIN_CPUS || mem + 1e-9 < min_mem {
            continue;
        }
        let threads = ((cpus / sizes.task_cpus.max(0.001) + 1e-9).floor() as usize).max(1);
        let mem = round3(mem.min(sizes.executor_mem + sizes.task_mem * threads as f64));
        let mut pool = o.resources.clone();
        let (Some(c), Some(m)) = (take(&mut pool, "cpus", cpus), take(&mut pool, "mem", mem))
        else {
            continue;
        };
        coarse.next += 1;
        let executor = format!("{EXECUTOR_PREFIX}{}", coarse.next);
        coarse.executors.insert(
            executor.clone(),
            CoarseExecutor {
                agent: agent.to_string(),
                cpus,
                threads,
                registered: false,
            },
        );
        held += cpus;
        agents_taken.push(agent);
        out.push(Planned {
            offer: i,
            executor,
            cpus,
            mem,
            threads,
            resources: [c, m].concat(),
        });
    }
    out
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).floor() / 1000.0
}

/// The address executors on the offer's agent listen at: the agent's IP when the offer
/// carries it, else its hostname.
pub(crate) fn agent_host(o: &Offer) -> String {
    o.url
        .as_ref()
        .and_then(|u| u.address.ip.clone())
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| o.hostname.clone())
}

/// The Mesos task that is executor `p` (command task: the agent's command executor
/// starts it; `command` already fetches and checks the binary).
pub(crate) fn executor_task(
    p: &Planned,
    offer: &Offer,
    name: &str,
    mut command: CommandInfo,
    vars: &[(&str, String)],
) -> TaskInfo {
    if let Some(env) = command.environment.as_mut() {
        env.variables.extend(
            vars.iter()
                .map(|(k, v)| super::framework::env_var(k, v))
                .chain(std::iter::once(super::framework::env_var(
                    spate_core::protocol::env::BIND_HOST,
                    &agent_host(offer),
                ))),
        );
    }
    TaskInfo {
        name: format!("spate executor ({name}) {} cpus", p.cpus),
        task_id: MesosTaskId {
            value: p.executor.clone(),
        },
        agent_id: AgentId {
            value: offer.agent_id.value.clone(),
        },
        resources: p.resources.clone(),
        command: Some(command),
        ..Default::default()
    }
}

/// What the framework asks of the event loop from the control channel's threads.
pub(crate) enum Ask {
    /// Kill the Mesos task of a silent executor.
    Kill(String),
}

/// The control channel's news for coarse mode.
pub(crate) struct Hooks {
    pub coarse: Arc<Mutex<Coarse>>,
    pub asks: tokio::sync::mpsc::UnboundedSender<Ask>,
}

impl ControlHooks for Hooks {
    fn expected(&self, executor: &str) -> bool {
        self.coarse
            .lock()
            .is_ok_and(|c| c.executors.contains_key(executor))
    }

    fn registered(&self, executor: &str, _cores: usize) {
        if let Ok(mut c) = self.coarse.lock()
            && let Some(e) = c.executors.get_mut(executor)
        {
            e.registered = true;
        }
    }

    fn refused(&self, executor: &str, message: &str) {
        if let Ok(mut c) = self.coarse.lock()
            && let Some(agent) = c.executors.get(executor).map(|e| e.agent.clone())
        {
            c.failed_to_start(&agent, message, true);
        }
    }

    fn lost(&self, executor: &str, _why: &str, silent: bool) {
        if silent {
            let _ = self.asks.send(Ask::Kill(executor.to_string()));
        }
    }

    fn close_grace(&self) -> std::time::Duration {
        // The terminal update comes within a second or so of the process's end, and the
        // sandbox read after it within milliseconds.
        std::time::Duration::from_secs(3)
    }
}

/// Why an executor task ended, from its terminal status, and whether that rules its
/// agent out at once.
pub(crate) fn ended_why(status: &v1::TaskStatus, agent: &str, driver: &str) -> (String, bool) {
    // The command executor says "Command exited with status N".
    let status_code = status
        .message
        .as_deref()
        .and_then(|m| m.rsplit_once("exited with status "))
        .and_then(|(_, n)| n.trim().parse::<i32>().ok());
    let exited = |code: i32| status_code == Some(code);
    if exited(exit::CORRUPT_DOWNLOAD) {
        return (
            format!(
                "the executor binary fetched on agent {agent} is corrupt (its SHA-256 differs \
                 from the driver's binary); check the agent's fetcher cache (agents on one \
                 host need their own --fetcher_cache_dir)"
            ),
            true,
        );
    }
    if exited(exit::REFUSED) {
        return (
            format!(
                "the executor on agent {agent} runs a different build of the program; \
                 redeploy the executor with the driver's exact binary"
            ),
            true,
        );
    }
    if exited(exit::DRIVER_UNREACHABLE) {
        return (
            format!(
                "the executor on agent {agent} could not connect to the driver at {driver}; \
                 set SPATE_ADVERTISED_HOST to an address the agents can reach"
            ),
            true,
        );
    }
    (super::framework::describe(status, agent), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_mesos::v1::{FrameworkId, OfferId, value};

    fn offer(agent: &str, cpus: f64, mem: f64) -> Offer {
        let res = |name: &str, v: f64| v1::Resource {
            name: name.into(),
            r#type: value::Type::Scalar as i32,
            scalar: Some(value::Scalar { value: v }),
            ..Default::default()
        };
        Offer {
            id: OfferId {
                value: format!("o-{agent}"),
            },
            framework_id: FrameworkId { value: "f".into() },
            agent_id: AgentId {
                value: agent.into(),
            },
            hostname: "127.0.0.1".into(),
            resources: vec![res("cpus", cpus), res("mem", mem)],
            ..Default::default()
        }
    }

    const SIZES: Sizes = Sizes {
        task_cpus: 1.0,
        task_mem: 512.0,
        executor_mem: 128.0,
        max_cores: None,
    };

    #[test]
    fn one_executor_per_agent_takes_all_its_cpus_even_one() {
        let mut c = Coarse::default();
        let offers = [
            offer("a1", 1.0, 2048.0),
            offer("a2", 4.0, 4096.0),
            offer("a1", 1.0, 2048.0),
        ];
        let p = plan(&mut c, &offers, SIZES);
        assert_eq!(p.len(), 2, "one per agent");
        assert_eq!((p[0].cpus, p[0].threads, p[0].mem), (1.0, 1, 640.0));
        assert_eq!((p[1].cpus, p[1].threads, p[1].mem), (4.0, 4, 2176.0));
        // Agents with an executor get no second one.
        assert!(plan(&mut c, &offers, SIZES).is_empty());
    }

    #[test]
    fn max_cores_small_offers_and_bad_agents() {
        let mut c = Coarse::default();
        let sizes = Sizes {
            max_cores: Some(3.0),
            ..SIZES
        };
        let p = plan(
            &mut c,
            &[offer("a1", 2.0, 2048.0), offer("a2", 2.0, 2048.0)],
            sizes,
        );
        assert_eq!(p.iter().map(|p| p.cpus).sum::<f64>(), 3.0);
        let mut c = Coarse::default();
        assert!(plan(&mut c, &[offer("a1", 0.05, 2048.0)], SIZES).is_empty());
        assert!(plan(&mut c, &[offer("a1", 2.0, 256.0)], SIZES).is_empty());
        // A half cpu still runs one task thread.
        assert_eq!(
            plan(&mut c, &[offer("a1", 0.5, 1024.0)], SIZES)[0].threads,
            1
        );
        let mut c = Coarse::default();
        c.failed_to_start("a1", "crashed", false);
        assert!(!c.bad_agents.contains_key("a1"));
        c.failed_to_start("a1", "crashed", false);
        assert!(c.bad_agents.contains_key("a1"));
        assert!(plan(&mut c, &[offer("a1", 2.0, 2048.0)], SIZES).is_empty());
    }

    #[test]
    fn corrupt_downloads_and_refusals_are_named() {
        let st = |m: &str| v1::TaskStatus {
            task_id: MesosTaskId {
                value: "spate-executor-1".into(),
            },
            state: v1::TaskState::TaskFailed as i32,
            message: Some(m.into()),
            ..Default::default()
        };
        let (why, fatal) = ended_why(&st("Command exited with status 4"), "a1", "10.0.0.9:4000");
        assert!(fatal && why.contains("10.0.0.9:4000") && why.contains("SPATE_ADVERTISED_HOST"));
        let (why, fatal) = ended_why(&st("Command exited with status 86"), "a1", "d");
        assert!(fatal && why.contains("corrupt"), "{why}");
        let (why, fatal) = ended_why(&st("Command exited with status 3"), "a1", "d");
        assert!(fatal && why.contains("different build"), "{why}");
        let (why, fatal) = ended_why(&st("Command exited with status 1"), "a1", "d");
        assert!(!fatal && why.contains("TASK_FAILED"), "{why}");
        // Exactly the status: 34 is neither 3 nor 4.
        let (why, fatal) = ended_why(&st("Command exited with status 34"), "a1", "d");
        assert!(!fatal && why.contains("TASK_FAILED"), "{why}");
    }
}
