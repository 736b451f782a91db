//! The driver's side of the executor control channel: one TCP connection per executor
//! process, framed [`ToDriver`] / [`ToExecutor`] messages. Executors connect, register
//! with their binary identity (a different build is refused with a message saying what to
//! redeploy), then receive sealed tasks and send statuses and heartbeats.
//!
//! Shared by `local-cluster` (which starts the processes itself) and Mesos coarse-grained
//! mode (where each executor is a long-running Mesos task): once an executor process runs,
//! both talk to it the same way. An executor is lost when its connection drops or it is
//! silent for the heartbeat timeout; the owner hears of it through [`ControlHooks`].

use super::{TaskLaunch, launch_message, report_end};
use crate::event::EventSink;
use spate_core::error::{Error, Result};
use spate_core::protocol::{FrameDecoder, TaskState, ToDriver, ToExecutor, frame};
use spate_core::ship::{Secret, exe_id};
use spate_core::task::{TaskFailure, TaskKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a connected executor gets to send its registration. Generous: a busy
/// machine may take seconds to hash a large debug binary before the first frame.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

/// What the owner of the channel wants to hear about.
pub(crate) trait ControlHooks: Send + Sync + 'static {
    /// Whether an executor registering with this id is one the owner started.
    fn expected(&self, _executor: &str) -> bool {
        true
    }
    /// An executor registered (already announced to the scheduler).
    fn registered(&self, _executor: &str, _cores: usize) {}
    /// An executor was refused (different build) with this message.
    fn refused(&self, _executor: &str, _message: &str) {}
    /// An executor was lost (already announced to the scheduler); `silent` when it stopped
    /// answering rather than disconnecting, so its process should be killed.
    fn lost(&self, _executor: &str, _why: &str, _silent: bool) {}
    /// How long a closed connection waits before it counts as the loss, so that whoever
    /// watches the process (its exit status) or its Mesos task (the terminal update and
    /// the sandbox's stderr) can say first how the executor died.
    fn close_grace(&self) -> Duration {
        Duration::from_millis(300)
    }
}

struct Conn {
    outbox: mpsc::UnboundedSender<ToExecutor>,
    block_server: String,
}

#[derive(Default)]
struct State {
    conns: HashMap<String, Conn>,
    /// Tasks sent and not yet ended: what they run (to decode their results).
    inflight: HashMap<u64, (TaskKind, String)>,
}

/// The driver's executor connections.
pub(crate) struct Control {
    state: Mutex<State>,
    events: EventSink,
    secret: Secret,
    stopping: AtomicBool,
    heartbeat_timeout: Duration,
    hooks: Box<dyn ControlHooks>,
}

impl Control {
    /// Listen on `bind` (an IP, port chosen by the OS) on the current tokio runtime;
    /// returns the channel and the address executors connect to.
    pub(crate) async fn start(
        bind: &str,
        events: EventSink,
        secret: Secret,
        heartbeat_timeout: Duration,
        hooks: Box<dyn ControlHooks>,
    ) -> Result<(Arc<Control>, std::net::SocketAddr)> {
        let listener = TcpListener::bind((bind, 0)).await.map_err(|e| {
            Error::Other(format!("binding the driver's control port on {bind}: {e}"))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Other(format!("driver control port: {e}")))?;
        let control = Arc::new(Control {
            state: Mutex::new(State::default()),
            events,
            secret,
            stopping: AtomicBool::new(false),
            heartbeat_timeout,
            hooks,
        });
        let me = control.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(me.clone().serve(stream));
            }
        });
        Ok((control, addr))
    }

    /// Registered executors.
    pub(crate) fn connected(&self) -> usize {
        self.state.lock().map_or(0, |st| st.conns.len())
    }

    /// Send `task` to `executor`; a task that cannot be sent ends at once as a failure.
    pub(crate) fn launch(&self, executor: &str, task: TaskLaunch) {
        let fail = |message: String| Err(TaskFailure::Error { message });
        let Ok(mut st) = self.state.lock() else {
            return self
                .events
                .task_ended(task.id, fail("executor channel state poisoned".into()));
        };
        let msg = match launch_message(&task, &self.secret, |e| {
            st.conns.get(e).map(|c| c.block_server.clone())
        }) {
            Ok(m) => ToExecutor::Launch(m),
            Err(message) => {
                drop(st);
                return self.events.task_ended(task.id, fail(message));
            }
        };
        let sent = st
            .conns
            .get(executor)
            .is_some_and(|c| c.outbox.send(msg).is_ok());
        if sent {
            // Still under the state lock: the executor's status cannot overtake this.
            st.inflight
                .insert(task.id, (task.kind, executor.to_string()));
        } else {
            drop(st);
            self.events
                .task_ended(task.id, fail(format!("executor {executor} is gone")));
        }
    }

    /// Send `msg` to every connected executor.
    pub(crate) fn broadcast(&self, msg: ToExecutor) {
        if let Ok(st) = self.state.lock() {
            for c in st.conns.values() {
                let _ = c.outbox.send(msg.clone());
            }
        }
    }

    /// Stop reporting losses and ask every executor to exit.
    pub(crate) fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.broadcast(ToExecutor::Shutdown);
    }

    /// Forget `executor` and report it lost (once, whoever notices first); its running
    /// tasks end with the scheduler's executor-lost handling.
    pub(crate) fn lose(&self, executor: &str, why: &str, silent: bool) {
        let known = self.state.lock().ok().is_some_and(|mut st| {
            st.inflight.retain(|_, (_, e)| e != executor);
            st.conns.remove(executor).is_some()
        });
        if known && !self.stopping.load(Ordering::SeqCst) {
            self.events.executor_lost(executor, why);
            self.hooks.lost(executor, why, silent);
        }
    }

    /// One executor connection: registration, then statuses until it closes.
    async fn serve(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (outbox, mut rx) = mpsc::unbounded_channel::<ToExecutor>();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let Ok(bytes) = frame(&msg) else { continue };
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let mut decoder = FrameDecoder::default();
        let mut buf = vec![0u8; 64 << 10];
        let mut me: Option<String> = None;
        loop {
            // Registration has its own, generous deadline; heartbeats come every second.
            let wait = if me.is_some() {
                self.heartbeat_timeout
            } else {
                REGISTER_TIMEOUT
            };
            let n = match tokio::time::timeout(wait, reader.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => {
                    match &me {
                        Some(id) => {
                            let why = format!("no heartbeat for {wait:?}");
                            self.lose(id, &why, true);
                        }
                        None => tracing::warn!(
                            "dropping an executor connection that did not register within {wait:?}"
                        ),
                    }
                    return;
                }
            };
            decoder.push(&buf[..n]);
            loop {
                let msg = match decoder.next_frame::<ToDriver>() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("dropping executor connection: {e}");
                        if let Some(id) = &me {
                            self.lose(id, &format!("sent a malformed frame: {e}"), true);
                        }
                        return;
                    }
                };
                match msg {
                    ToDriver::Register {
                        executor,
                        exe_id: theirs,
                        cores,
                        block_server,
                        pid,
                    } => {
                        if theirs != exe_id() {
                            let msg = format!(
                                "executor {executor} (pid {pid}) runs a different build of the program \
                                 (binary {theirs:016x}, driver {:016x}); redeploy the executor with the driver's exact binary",
                                exe_id()
                            );
                            let _ = outbox.send(ToExecutor::Refused(msg.clone()));
                            self.hooks.refused(&executor, &msg);
                            return;
                        }
                        if !self.hooks.expected(&executor) {
                            let msg = format!("no executor {executor} was started by this driver");
                            let _ = outbox.send(ToExecutor::Refused(msg));
                            return;
                        }
                        tracing::info!(executor, pid, block_server, "executor registered");
                        if let Ok(mut st) = self.state.lock() {
                            st.conns.insert(
                                executor.clone(),
                                Conn {
                                    outbox: outbox.clone(),
                                    block_server: block_server.clone(),
                                },
                            );
                        }
                        let _ = outbox.send(ToExecutor::Registered);
                        self.events
                            .executor_added_at(&executor, cores, Some(&block_server));
                        self.hooks.registered(&executor, cores);
                        me = Some(executor);
                    }
                    ToDriver::Heartbeat => {}
                    ToDriver::Status(status) => {
                        let Some(executor) = me.clone() else { continue };
                        let ended = match status.state {
                            TaskState::Running => continue,
                            TaskState::Finished(r) => Ok(r),
                            TaskState::Failed(f) => Err(f),
                        };
                        let kind = self
                            .state
                            .lock()
                            .ok()
                            .and_then(|mut st| st.inflight.remove(&status.task));
                        let Some((kind, _)) = kind else { continue };
                        report_end(
                            &self.events,
                            status.task,
                            &kind,
                            &executor,
                            ended,
                            status.report,
                        );
                    }
                }
            }
        }
        if let Some(id) = &me {
            // Whoever watches the process (local-cluster) or its Mesos task usually knows
            // better how it died: give them a moment to say so first.
            tokio::time::sleep(self.hooks.close_grace()).await;
            self.lose(id, "control connection closed", false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Hooks;
    impl ControlHooks for Hooks {}

    /// Regression: the driver read an executor's first frame under the heartbeat timeout,
    /// so an executor slow to start (hashing a large debug binary on a busy machine) was
    /// dropped before it registered. Registration has its own deadline now.
    #[test]
    fn registration_may_take_longer_than_the_heartbeat_timeout() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (tx, events) = crossbeam_channel::unbounded();
        let sink = EventSink { tx };
        let secret = Secret::generate().expect("secret");
        let heartbeat = Duration::from_millis(200);
        let reply = rt.block_on(async {
            let (control, addr) =
                Control::start("127.0.0.1", sink, secret, heartbeat, Box::new(Hooks))
                    .await
                    .expect("control");
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            // Silent for three heartbeat timeouts before registering.
            tokio::time::sleep(heartbeat * 3).await;
            let register = ToDriver::Register {
                executor: "slow".into(),
                exe_id: exe_id(),
                cores: 1,
                block_server: "127.0.0.1:9".into(),
                pid: 1,
            };
            conn.write_all(&frame(&register).expect("frame"))
                .await
                .expect("send");
            let mut decoder = FrameDecoder::default();
            let mut buf = vec![0u8; 4096];
            let reply = loop {
                let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
                    .await
                    .expect("an answer")
                    .expect("read");
                assert!(n > 0, "the driver closed the connection of a slow executor");
                decoder.push(&buf[..n]);
                if let Some(m) = decoder.next_frame::<ToExecutor>().expect("frame") {
                    break m;
                }
            };
            assert_eq!(control.connected(), 1);
            reply
        });
        assert_eq!(reply, ToExecutor::Registered);
        assert!(
            events
                .try_iter()
                .any(|e| matches!(e, crate::event::Event::ExecutorAdded { ref executor, .. } if executor == "slow"))
        );
    }
}
