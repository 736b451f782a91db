//! Per-task metrics: what a task read, wrote and how long it ran.
//!
//! A task runs on one thread from start to end, so its counters live in a thread-local
//! that the task boundary ([`crate::task::run_task`]) resets before and collects after;
//! sources, the shuffle reader and map writers add to it where the data passes (per block
//! or per split, never per record), and nobody threads a context through iterators.

use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// What one task did. Travels with the task's status to the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// Wall time of the task's own work, milliseconds.
    pub run_ms: u64,
    /// Records read from sources (file lines, collection elements, range numbers).
    pub input_records: u64,
    /// Bytes read from input files (decompressed text for compressed files).
    pub input_bytes: u64,
    /// Records read from shuffles.
    pub shuffle_read_records: u64,
    /// Encoded bytes of shuffle blocks read (0 for local mode's in-memory blocks).
    pub shuffle_read_bytes: u64,
    /// Records written to a shuffle by a map task.
    pub shuffle_write_records: u64,
    /// Bytes a map task wrote to disk (compressed; 0 for local mode's in-memory shuffle).
    pub shuffle_write_bytes: u64,
    /// Encoded size of a result task's result (0 in local mode, where results stay objects).
    pub result_bytes: u64,
}

impl TaskMetrics {
    /// Field-wise sum (for stage and job totals).
    pub fn add(&mut self, o: &TaskMetrics) {
        self.run_ms += o.run_ms;
        self.input_records += o.input_records;
        self.input_bytes += o.input_bytes;
        self.shuffle_read_records += o.shuffle_read_records;
        self.shuffle_read_bytes += o.shuffle_read_bytes;
        self.shuffle_write_records += o.shuffle_write_records;
        self.shuffle_write_bytes += o.shuffle_write_bytes;
        self.result_bytes += o.result_bytes;
    }
}

thread_local! {
    static CURRENT: Cell<TaskMetrics> = const { Cell::new(TaskMetrics {
        run_ms: 0,
        input_records: 0,
        input_bytes: 0,
        shuffle_read_records: 0,
        shuffle_read_bytes: 0,
        shuffle_write_records: 0,
        shuffle_write_bytes: 0,
        result_bytes: 0,
    }) };
}

/// Add to the running task's metrics (a no-op outside tasks that nobody reads).
pub fn record(f: impl FnOnce(&mut TaskMetrics)) {
    CURRENT.with(|c| {
        let mut m = c.get();
        f(&mut m);
        c.set(m);
    });
}

/// Start counting for a task on this thread.
pub(crate) fn reset() {
    CURRENT.with(|c| c.set(TaskMetrics::default()));
}

/// What the task on this thread has counted so far.
pub fn current() -> TaskMetrics {
    CURRENT.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_thread() {
        reset();
        record(|m| m.input_records += 3);
        record(|m| m.input_records += 4);
        std::thread::spawn(|| {
            record(|m| m.input_records += 100);
        })
        .join()
        .expect("thread");
        assert_eq!(current().input_records, 7);
        let mut total = current();
        total.add(&current());
        assert_eq!(total.input_records, 14);
        reset();
        assert_eq!(current(), TaskMetrics::default());
    }
}
