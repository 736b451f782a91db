//! The executor runtime.
//!
//! Threads: a small tokio runtime for the control connection, the block server and
//! shuffle fetches (network only), and `cores` task threads for CPU work. Tasks arrive as
//! sealed envelopes, are verified (binary identity, MAC) and run at the task boundary that
//! catches panics; statuses go back on the control connection.

use crate::core::{Core, CoreSettings};
use spate_core::protocol::{FrameDecoder, TaskStatus, ToDriver, ToExecutor, env, frame};
use spate_core::ship::{Secret, exe_id};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Why an executor could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A required environment variable is missing or invalid.
    #[error("executor environment: {0}")]
    Env(String),
    /// I/O with the driver or the local disk failed.
    #[error("executor I/O: {0}")]
    Io(String),
    /// The driver refused this executor.
    #[error("the driver refused this executor: {0}")]
    Refused(String),
    /// The driver's control address could not be reached.
    #[error("cannot reach the driver at {0}: {1}")]
    DriverUnreachable(String, String),
}

/// How an executor was asked to run.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Driver control address.
    pub driver: String,
    /// This executor's id.
    pub executor: String,
    /// Application secret.
    pub secret: Secret,
    /// Work directory.
    pub work_dir: PathBuf,
    /// Task slots.
    pub cores: usize,
    /// Map-side memory budget per task, bytes.
    pub spill_bytes: usize,
    /// Bytes of map outputs kept in memory (`SPATE_SHUFFLE_MEMORY`, default
    /// [`DEFAULT_EXECUTOR_MEMORY_BUDGET`]).
    pub shuffle_memory: usize,
    /// Address the block server listens on (other executors and the driver fetch from
    /// it): `SPATE_BIND_HOST`, default loopback.
    pub bind: String,
}

/// Default map-side memory budget per task.
pub const DEFAULT_SPILL_BYTES: usize = 128 << 20;

pub use spate_shuffle::store::DEFAULT_EXECUTOR_MEMORY_BUDGET;

impl ExecutorConfig {
    /// Read the configuration a driver put in the environment.
    pub fn from_env() -> Result<Self, ExecutorError> {
        let var =
            |k: &str| std::env::var(k).map_err(|_| ExecutorError::Env(format!("{k} is not set")));
        Ok(ExecutorConfig {
            driver: var(env::DRIVER)?,
            executor: var(env::EXECUTOR_ID)?,
            secret: Secret::from_hex(&var(env::SECRET)?)
                .map_err(|e| ExecutorError::Env(format!("{}: {e}", env::SECRET)))?,
            // Relative to where the executor starts (a Mesos sandbox), which may not stay
            // the current directory.
            work_dir: {
                let dir = PathBuf::from(var(env::WORK_DIR)?);
                if dir.is_relative() {
                    std::env::current_dir()
                        .map_err(|e| ExecutorError::Env(format!("current directory: {e}")))?
                        .join(dir)
                } else {
                    dir
                }
            },
            cores: var(env::CORES)?
                .parse()
                .map_err(|_| ExecutorError::Env(format!("{} is not a number", env::CORES)))?,
            spill_bytes: match std::env::var(env::SPILL_BYTES) {
                Ok(v) => v.parse().map_err(|_| {
                    ExecutorError::Env(format!("{} is not a number", env::SPILL_BYTES))
                })?,
                Err(_) => DEFAULT_SPILL_BYTES,
            },
            shuffle_memory: match std::env::var(env::SHUFFLE_MEMORY) {
                Ok(v) => v.parse().map_err(|_| {
                    ExecutorError::Env(format!("{} is not a number", env::SHUFFLE_MEMORY))
                })?,
                Err(_) => DEFAULT_EXECUTOR_MEMORY_BUDGET,
            },
            bind: std::env::var(env::BIND_HOST)
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "127.0.0.1".into()),
        })
    }
}

/// Run the executor until the driver says stop or goes away. Returns the process exit
/// code; the caller exits with it.
pub fn run(config: ExecutorConfig) -> i32 {
    // An executor process never reaches user code that could install a subscriber, so it
    // logs to stderr itself when asked to with RUST_LOG.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let span = tracing::info_span!("executor", id = %config.executor);
    let _entered = span.enter();
    match run_inner(config) {
        Ok(()) => 0,
        Err(ExecutorError::Refused(msg)) => {
            eprintln!("spate executor: {msg}");
            spate_core::protocol::exit::REFUSED
        }
        Err(e @ ExecutorError::DriverUnreachable(..)) => {
            eprintln!("spate executor: {e}");
            spate_core::protocol::exit::DRIVER_UNREACHABLE
        }
        Err(e) => {
            eprintln!("spate executor: {e}");
            2
        }
    }
}

fn run_inner(config: ExecutorConfig) -> Result<(), ExecutorError> {
    let (statuses, mut outbox) = mpsc::unbounded_channel::<ToDriver>();
    let sink_tx = statuses.clone();
    let core = Core::start(
        CoreSettings {
            executor: config.executor.clone(),
            secret: config.secret.clone(),
            work_dir: config.work_dir.clone(),
            cores: config.cores,
            spill_bytes: config.spill_bytes,
            shuffle_memory: config.shuffle_memory,
            bind: config.bind.clone(),
        },
        Arc::new(move |task, state, report| {
            let _ = sink_tx.send(ToDriver::Status(TaskStatus {
                task,
                state,
                report,
            }));
        }),
    )?;
    let rt = core.runtime();
    // Bounded: an unroutable driver address must not hang a Mesos executor for minutes.
    let unreachable = |e: String| ExecutorError::DriverUnreachable(config.driver.clone(), e);
    let stream = rt
        .block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(30),
                TcpStream::connect(&config.driver),
            )
            .await
        })
        .map_err(|_| unreachable("no answer within 30 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    rt.spawn(async move {
        while let Some(msg) = outbox.recv().await {
            let Ok(bytes) = frame(&msg) else { continue };
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let _ = statuses.send(ToDriver::Register {
        executor: config.executor.clone(),
        exe_id: exe_id(),
        cores: config.cores,
        block_server: core.block_addr().to_string(),
        pid: std::process::id(),
    });
    // Heartbeats come from the I/O runtime, so a task thread stuck in user code does not
    // stop them; a hung or stopped process does.
    let beats = statuses.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(spate_core::protocol::HEARTBEAT_INTERVAL);
        loop {
            tick.tick().await;
            if beats.send(ToDriver::Heartbeat).is_err() {
                break;
            }
        }
    });

    // Control loop: until Shutdown, a refusal, or the driver disappearing (EOF).
    let outcome = rt.block_on(async {
        let mut decoder = FrameDecoder::default();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return Ok(()), // the driver went away
                Ok(n) => n,
            };
            decoder.push(&buf[..n]);
            loop {
                match decoder.next_frame::<ToExecutor>() {
                    Ok(Some(ToExecutor::Registered)) => {}
                    Ok(Some(ToExecutor::Refused(msg))) => return Err(ExecutorError::Refused(msg)),
                    Ok(Some(ToExecutor::Launch(t))) => core.launch(t),
                    Ok(Some(ToExecutor::Shutdown)) => return Ok(()),
                    Ok(Some(m @ (ToExecutor::Unpersist(_) | ToExecutor::RemoveShuffle(_)))) => {
                        core.drop_data(&m)
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(ExecutorError::Io(format!("bad frame from the driver: {e}")));
                    }
                }
            }
        }
    });
    core.shutdown();
    outcome
}
