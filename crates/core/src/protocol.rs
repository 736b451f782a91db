//! Messages between a driver and its executor processes, and their framing.
//!
//! Pure data: the same task bytes and status payloads travel over the local-cluster
//! control connection and, later, inside Mesos `TaskInfo.data` / `TaskStatus.data`, so the
//! executor core is shared. Frames are a little-endian `u32` length and a bincode body;
//! [`FrameDecoder`] reassembles them from arbitrary chunks and refuses absurd lengths.

use crate::ship::ShipError;
use serde::{Deserialize, Serialize};

/// Largest frame accepted (tasks and inline results are far smaller).
pub const MAX_FRAME: usize = 64 << 20;

/// Environment variables a driver sets for the executor processes it starts.
pub mod env {
    /// `host:port` of the driver's control listener; its presence makes a process an executor.
    pub const DRIVER: &str = "SPATE_EXECUTOR";
    /// This executor's id.
    pub const EXECUTOR_ID: &str = "SPATE_EXECUTOR_ID";
    /// Hex of the application secret for envelope MACs.
    pub const SECRET: &str = "SPATE_SECRET";
    /// Work directory (shuffle files, large results).
    pub const WORK_DIR: &str = "SPATE_WORK_DIR";
    /// Task slots.
    pub const CORES: &str = "SPATE_EXECUTOR_CORES";
    /// Map-side memory budget per task, bytes.
    pub const SPILL_BYTES: &str = "SPATE_SPILL_BYTES";
    /// Bytes of map outputs an executor keeps in memory (the rest go to disk).
    pub const SHUFFLE_MEMORY: &str = "SPATE_SHUFFLE_MEMORY";
    /// Address the block server listens on (an agent's IP under Mesos).
    pub const BIND_HOST: &str = "SPATE_BIND_HOST";
    /// `host:port` a fine-grained Mesos executor stays connected to; it exits when the
    /// connection closes (the driver process is gone, however it died).
    pub const DRIVER_ALIVE: &str = "SPATE_DRIVER_ALIVE";
}

/// Exit statuses of executor processes that say why they stopped (a Mesos agent reports
/// them as "Command exited with status N").
pub mod exit {
    /// The driver refused the executor: a different build of the program.
    pub const REFUSED: i32 = 3;
    /// The executor could not reach the driver's control address.
    pub const DRIVER_UNREACHABLE: i32 = 4;
    /// The launch command found the fetched binary's SHA-256 is not the driver's.
    pub const CORRUPT_DOWNLOAD: i32 = 86;
}

/// Executor → driver.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum ToDriver {
    /// First message on a connection.
    Register {
        /// Executor id given at spawn.
        executor: String,
        /// [`crate::ship::exe_id`] of the executor's binary.
        exe_id: u64,
        /// Task slots.
        cores: usize,
        /// `host:port` of its block server (shuffle blocks, large results).
        block_server: String,
        /// Process id, for logs.
        pid: u32,
    },
    /// A task changed state.
    Status(TaskStatus),
    /// Still alive (sent every [`HEARTBEAT_INTERVAL`]).
    Heartbeat,
}

/// How often executors send [`ToDriver::Heartbeat`].
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Driver → executor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum ToExecutor {
    /// Registration accepted.
    Registered,
    /// Registration refused; the executor prints the reason and exits.
    Refused(String),
    /// Run a task.
    Launch(LaunchTask),
    /// Stop: finish nothing more, exit.
    Shutdown,
    /// Drop every cached partition of this persisted RDD (also the payload of a Mesos
    /// framework message).
    Unpersist(u64),
    /// Delete every map output of this shuffle (no RDD reads it any more).
    RemoveShuffle(crate::rdd::ShuffleId),
}

/// A task as it travels to an executor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LaunchTask {
    /// Scheduler task id.
    pub task: u64,
    /// Stage id.
    pub stage: usize,
    /// Partition.
    pub partition: usize,
    /// Attempt number.
    pub attempt: u32,
    /// Sealed [`crate::task::TaskKind`] envelope.
    #[serde(with = "as_bytes")]
    pub envelope: Vec<u8>,
    /// For every shuffle the task reads: the block server of each map output, by map index.
    pub shuffle_locations: Vec<(usize, Vec<String>)>,
}

/// Task states reported by executors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum TaskState {
    /// Started.
    Running,
    /// Done with a result.
    Finished(TaskResult),
    /// Failed: classified like [`crate::task::TaskFailure`].
    Failed(RemoteFailure),
}

/// A finished task's result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum TaskResult {
    /// A map task's output: records per reduce partition.
    Map {
        /// Records per reduce partition.
        records: Vec<u64>,
    },
    /// A result task's encoded value, inline.
    Inline(Vec<u8>),
    /// A result task's encoded value, too large to inline: fetch it from this URL.
    Url(String),
}

/// A failure as reported over the wire.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum RemoteFailure {
    /// A shuffle block could not be read.
    FetchFailed {
        /// Shuffle id.
        shuffle: usize,
        /// Lost map partition.
        map: usize,
        /// Where it was.
        executor: String,
        /// Details.
        message: String,
    },
    /// User code panicked.
    Panicked(String),
    /// An engine error (I/O, bad input, refused envelope, …).
    Error(String),
}

/// A status update.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskStatus {
    /// Scheduler task id.
    pub task: u64,
    /// New state.
    pub state: TaskState,
    /// What the task did (with terminal states).
    pub report: Report,
}

/// What an ended task did, besides its outcome: its metrics and (when it succeeded) its
/// accumulator updates, encoded.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// The task's counters.
    pub metrics: crate::metrics::TaskMetrics,
    /// `(accumulator id, encoded partial value)`.
    pub accumulators: Vec<(u64, Vec<u8>)>,
    /// Partitions of persisted RDDs it stored on its executor: `(cache key, partition)`.
    pub cached: Vec<(u64, usize)>,
}

/// What a spate executor under Mesos puts in `TaskStatus.data`: the task's state (as in
/// local-cluster mode) plus what the driver needs to know about the executor, since Mesos
/// has no registration message of spate's own.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatusData {
    /// The executor's binary identity (checked by the driver like a registration).
    pub exe_id: u64,
    /// `host:port` of the executor's block server.
    pub block_server: String,
    /// The task's state.
    pub state: TaskState,
    /// What the task did (with terminal states).
    pub report: Report,
}

/// `Vec<u8>` as one byte string (serde's default goes element by element: slow for the
/// megabytes of a deep lineage).
mod as_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<Vec<u8>, E> {
                Ok(b.to_vec())
            }
            fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(b)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Encode one frame.
pub fn frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, ShipError> {
    let encode = |e: bincode::Error| ShipError::Encode(e.to_string());
    let len = bincode::serialized_size(msg).map_err(encode)?;
    let len = u32::try_from(len)
        .map_err(|_| ShipError::Encode(format!("a {len}-byte message does not fit a frame")))?;
    // Written in place: a launch can carry megabytes of lineage.
    let mut out = Vec::with_capacity(len as usize + 4);
    out.extend_from_slice(&len.to_le_bytes());
    bincode::serialize_into(&mut out, msg).map_err(encode)?;
    Ok(out)
}

/// Reassembles frames from a byte stream cut at arbitrary points.
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Add received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if any. A length over [`MAX_FRAME`] or a body that does
    /// not decode is an error (the connection should be dropped).
    pub fn next_frame<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, ShipError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(ShipError::Malformed(format!(
                "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"
            )));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = bincode::deserialize(&self.buf[4..4 + len])
            .map_err(|e| ShipError::Malformed(e.to_string()));
        self.buf.drain(..4 + len);
        msg.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(task: u64) -> ToDriver {
        ToDriver::Status(TaskStatus {
            task,
            state: TaskState::Finished(TaskResult::Inline(vec![task as u8; task as usize])),
            report: Report::default(),
        })
    }

    #[test]
    fn frames_survive_any_chunking() {
        let mut stream = Vec::new();
        for t in 0..20 {
            stream.extend(frame(&status(t)).expect("frame"));
        }
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let mut d = FrameDecoder::default();
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                d.push(c);
                while let Some(m) = d.next_frame::<ToDriver>().expect("decodes") {
                    got.push(m);
                }
            }
            assert_eq!(
                got,
                (0..20).map(status).collect::<Vec<_>>(),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn garbage_lengths_and_bodies_are_errors() {
        let mut d = FrameDecoder::default();
        d.push(&u32::MAX.to_le_bytes());
        assert!(d.next_frame::<ToDriver>().is_err());
        let mut d = FrameDecoder::default();
        d.push(&3u32.to_le_bytes());
        d.push(&[0xff, 0xff, 0xff]);
        assert!(d.next_frame::<ToDriver>().is_err());
        let mut d = FrameDecoder::default();
        d.push(&0u32.to_le_bytes()[..2]);
        assert!(
            matches!(d.next_frame::<ToDriver>(), Ok(None)),
            "incomplete is not an error"
        );
    }
}
