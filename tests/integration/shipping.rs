//! Tasks encoded to bytes and decoded as an executor would (same binary, same process
//! here), then run: the codec carries lineage, closures, explicit state, partitioners and
//! aggregators.

use crate::fixtures::ctx;
use spate::prelude::*;
use spate::ship::{Secret, SerArc, ShipError, open, seal};
use spate::task::{PartitionJob, ResultJob, TaskContext, TaskKind, TaskOutput, run_task};
use spate_shuffle::MemoryShuffleStore;
use std::sync::Arc;

fn tc(partition: usize, store: &Arc<MemoryShuffleStore>) -> TaskContext {
    TaskContext {
        stage: 0,
        partition,
        attempt: 0,
        executor: Arc::from("exec-test"),
        shuffle: store.clone(),
        spill_bytes: None,
    }
}

fn ship(kind: &TaskKind, secret: &Secret) -> TaskKind {
    let bytes = seal(kind, secret).expect("seal");
    open(&bytes, secret).expect("open")
}

#[test]
fn a_result_task_with_state_round_trips_and_runs() {
    let secret = Secret::generate().expect("secret");
    let rdd = ctx()
        .range(0, 100, 4)
        .map_with(3i64, |k, x| x * k)
        .filter(|x| x % 2 == 0)
        .key_by(|x| x % 7);
    let job: SerArc<dyn ResultJob> = SerArc::new(PartitionJob::new(
        rdd.node(),
        spate::func::Fun::new(|it: PartIter<(i64, i64)>| it.map(|(k, v)| k + v).sum::<i64>()),
    ));
    let shipped = ship(&TaskKind::Result(job.clone()), &secret);
    let store = Arc::new(MemoryShuffleStore::new());
    let TaskKind::Result(decoded) = &shipped else {
        panic!("kind changed")
    };
    for p in 0..4 {
        let bytes = decoded.run_encoded(p, &tc(p, &store)).expect("runs");
        let got = *job
            .decode_result(&bytes)
            .expect("decodes")
            .downcast::<i64>()
            .expect("i64");
        let want: i64 = (p as i64 * 25..(p as i64 + 1) * 25)
            .map(|x| x * 3)
            .filter(|x| x % 2 == 0)
            .map(|x| x % 7 + x)
            .sum();
        assert_eq!(got, want, "partition {p}");
    }
}

#[test]
fn a_shuffle_map_task_round_trips_and_writes_combined_output() {
    let secret = Secret::generate().expect("secret");
    let counts = ctx()
        .parallelize(vec!["a b a".to_string(), "b c".to_string()], 1)
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key_n(|a, b| a + b, 2);
    let deps = counts.base().dependencies();
    let Some(spate::rdd::Dependency::Shuffle(dep)) = deps.first() else {
        panic!("a shuffle")
    };
    let shipped = ship(&TaskKind::ShuffleMap(dep.clone()), &secret);
    let store = Arc::new(MemoryShuffleStore::new());
    match run_task(&shipped, &tc(0, &store)) {
        Ok(TaskOutput::Map(status)) => {
            assert_eq!(status.executor, "exec-test");
            assert_eq!(
                status.records.iter().sum::<u64>(),
                3,
                "combined map side: a, b, c"
            );
        }
        _ => panic!("map task failed"),
    }
}

#[test]
fn tampered_or_foreign_task_bytes_are_refused() {
    let secret = Secret::generate().expect("secret");
    let job: SerArc<dyn ResultJob> = SerArc::new(PartitionJob::new(
        ctx().range(0, 10, 1).node(),
        spate::func::Fun::new(|it: PartIter<i64>| it.count() as u64),
    ));
    let mut bytes = seal(&TaskKind::Result(job), &secret).expect("seal");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    assert_eq!(
        open::<TaskKind>(&bytes, &secret).err(),
        Some(ShipError::BadMac)
    );
}
