//! spate-mesos: the Mesos v1 HTTP API wire layer shared by the scheduler backend and the
//! executor.
//!
//! - [`v1`]: prost types generated from spate's own `.proto` subset of `mesos.v1`,
//!   `mesos.v1.scheduler` and `mesos.v1.executor` (`proto/`), with Mesos's field numbers;
//!   embedded messages spate does not use are `bytes` with the same number, so offered
//!   resources echo back intact. Built with protox: no `protoc` needed.
//! - [`recordio`]: the RecordIO framing of the SUBSCRIBE event streams, as a streaming
//!   decoder over arbitrary chunk boundaries with a size cap.
//!
//! - [`http`]: calls with the exact headers, stream id, leader redirects and 503 retries;
//!   SUBSCRIBE as a live event stream with an idle watchdog.
//! - [`zk`]: the leading master of a `zk://` master URL, followed through ZooKeeper.
//!
//! Content type for both directions: [`PROTOBUF`].

pub mod http;
pub mod recordio;
pub mod zk;

/// Generated wire types.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/mesos.v1.rs"));

    /// `mesos.v1.scheduler`.
    pub mod scheduler {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.rs"));
    }

    /// `mesos.v1.executor`.
    pub mod executor {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.executor.rs"));
    }
}

/// The media type spate sends and asks for (`Content-Type` and `Accept`), exactly.
pub const PROTOBUF: &str = "application/x-protobuf";

/// `TaskStatus.reason` is a raw number (Mesos keeps adding reasons); the name of the ones
/// a batch framework meets, for messages.
pub fn reason_name(reason: i32) -> Option<&'static str> {
    Some(match reason {
        0 => "REASON_COMMAND_EXECUTOR_FAILED",
        1 => "REASON_EXECUTOR_TERMINATED",
        2 => "REASON_EXECUTOR_UNREGISTERED",
        3 => "REASON_FRAMEWORK_REMOVED",
        5 => "REASON_INVALID_FRAMEWORKID",
        6 => "REASON_INVALID_OFFERS",
        7 => "REASON_MASTER_DISCONNECTED",
        8 => "REASON_CONTAINER_LIMITATION_MEMORY",
        9 => "REASON_RECONCILIATION",
        10 => "REASON_AGENT_DISCONNECTED",
        11 => "REASON_AGENT_REMOVED",
        12 => "REASON_AGENT_RESTARTED",
        13 => "REASON_AGENT_UNKNOWN",
        14 => "REASON_TASK_INVALID",
        15 => "REASON_TASK_UNAUTHORIZED",
        16 => "REASON_TASK_UNKNOWN",
        17 => "REASON_CONTAINER_PREEMPTED",
        19 => "REASON_CONTAINER_LIMITATION",
        20 => "REASON_CONTAINER_LIMITATION_DISK",
        21 => "REASON_CONTAINER_LAUNCH_FAILED",
        23 => "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
        24 => "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
        30 => "REASON_TASK_KILLED_DURING_LAUNCH",
        31 => "REASON_AGENT_REMOVED_BY_OPERATOR",
        33 => "REASON_MAX_COMPLETION_TIME_REACHED",
        34 => "REASON_AGENT_DRAINING",
        _ => return None,
    })
}

/// Reason code of reconciliation answers (no uuid, no data).
pub const REASON_RECONCILIATION: i32 = 9;
/// `TaskStatus.reason`: the task's executor ended (crashed, killed) under it.
pub const REASON_EXECUTOR_TERMINATED: i32 = 1;
/// `TaskStatus.reason`: the agent lost its connection to the master (it may come back;
/// its executors are usually gone with it).
pub const REASON_AGENT_DISCONNECTED: i32 = 10;
/// `TaskStatus.reason`: the master removed the agent.
pub const REASON_AGENT_REMOVED: i32 = 11;

#[cfg(test)]
mod tests {
    use super::v1;
    use prost::Message as _;

    fn resource_with_opaque_fields() -> v1::Resource {
        v1::Resource {
            name: "cpus".into(),
            r#type: v1::value::Type::Scalar as i32,
            scalar: Some(v1::value::Scalar { value: 2.0 }),
            role: Some("batch".into()),
            reservation: Some(vec![0x0a, 0x03, b'b', b'o', b'b']),
            disk: Some(vec![0x12, 0x00]),
            shared: Some(Vec::new()),
            ..Default::default()
        }
    }

    #[test]
    fn opaque_fields_survive_a_round_trip_byte_for_byte() {
        let offer = v1::Offer {
            id: v1::OfferId { value: "o1".into() },
            framework_id: v1::FrameworkId { value: "f1".into() },
            agent_id: v1::AgentId { value: "a1".into() },
            hostname: "h".into(),
            resources: vec![resource_with_opaque_fields()],
            domain: Some(vec![0x0a, 0x01, 0x00]),
            ..Default::default()
        };
        let bytes = offer.encode_to_vec();
        let back = v1::Offer::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(back.encode_to_vec(), bytes);
        assert_eq!(
            back.resources[0].reservation.as_deref(),
            Some(&[0x0a, 0x03, b'b', b'o', b'b'][..])
        );
    }

    #[test]
    fn required_zero_enums_are_on_the_wire() {
        // TASK_STARTING = 0 and Value.Type SCALAR = 0 must be encoded (proto2 required).
        let st = v1::TaskStatus {
            task_id: v1::TaskId { value: "t".into() },
            state: v1::TaskState::TaskStarting as i32,
            ..Default::default()
        };
        let bytes = st.encode_to_vec();
        assert!(
            bytes.windows(2).any(|w| w == [0x10, 0x00]),
            "field 2 = 0 present: {bytes:?}"
        );
    }

    #[test]
    fn field_numbers_match_the_brief() {
        // Executor Call.Message.data is field 2; scheduler Event.error is field 8.
        let m = v1::executor::call::Message { data: vec![7] };
        assert_eq!(m.encode_to_vec(), vec![0x12, 0x01, 7]);
        let e = v1::scheduler::Event {
            error: Some(v1::scheduler::event::Error {
                message: "x".into(),
            }),
            ..Default::default()
        };
        assert_eq!(e.encode_to_vec(), vec![0x42, 0x03, 0x0a, 0x01, b'x']);
    }
}
