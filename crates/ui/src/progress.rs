//! Progress on the terminal: one line per running stage with tasks done/total, failed
//! attempts, elapsed time and an ETA, redrawn in place (indicatif). Only drawn when
//! stderr is a terminal; the facade leaves it out otherwise or with `--quiet`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use spate_scheduler::listener::{Listener, SchedulerEvent, TaskEndStatus};
use std::collections::BTreeMap;

/// The progress listener.
pub struct Progress {
    multi: MultiProgress,
    /// Running stages: their bar and failed attempts.
    bars: BTreeMap<usize, (ProgressBar, usize)>,
}

impl Progress {
    /// Progress drawn on stderr.
    pub fn stderr() -> Progress {
        Self::with_target(ProgressDrawTarget::stderr())
    }

    /// Progress drawn to `target` (hidden in tests).
    pub fn with_target(target: ProgressDrawTarget) -> Progress {
        Progress {
            multi: MultiProgress::with_draw_target(target),
            bars: BTreeMap::new(),
        }
    }

    /// Stages shown now: `(stage, done, total, failed)`.
    pub fn lines(&self) -> Vec<(usize, u64, u64, usize)> {
        self.bars
            .iter()
            .map(|(s, (b, f))| (*s, b.position(), b.length().unwrap_or(0), *f))
            .collect()
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template(
            "[stage {prefix}] {bar:30} {pos}/{len} tasks{msg} · {elapsed} · ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
    }
}

impl Listener for Progress {
    fn on_event(&mut self, e: &SchedulerEvent) {
        match e {
            SchedulerEvent::StageSubmitted { stage, tasks, .. } => {
                if let Some((old, _)) = self.bars.remove(stage) {
                    old.finish_and_clear();
                    self.multi.remove(&old);
                }
                let bar = self.multi.add(ProgressBar::new(*tasks as u64));
                bar.set_style(Self::style());
                bar.set_prefix(stage.to_string());
                self.bars.insert(*stage, (bar, 0));
            }
            SchedulerEvent::TaskEnd { stage, status, .. } => {
                if let Some((bar, failed)) = self.bars.get_mut(stage) {
                    if *status == TaskEndStatus::Success {
                        bar.inc(1);
                    } else if *status != TaskEndStatus::Cancelled {
                        *failed += 1;
                        bar.set_message(format!(", {failed} failed"));
                    }
                }
            }
            SchedulerEvent::StageCompleted { stage, .. } => {
                if let Some((bar, _)) = self.bars.remove(stage) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            // A failed job leaves stages that will not complete: drop their lines.
            SchedulerEvent::JobEnd {
                succeeded: false, ..
            } => self.on_stop(),
            _ => {}
        }
    }

    fn on_stop(&mut self) {
        for (_, (bar, _)) in std::mem::take(&mut self.bars) {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_core::metrics::TaskMetrics;

    fn end(stage: usize, status: TaskEndStatus) -> SchedulerEvent {
        SchedulerEvent::TaskEnd {
            time: 0,
            task: 0,
            stage,
            stage_attempt: 1,
            partition: 0,
            attempt: 0,
            executor: "e".into(),
            status,
            error: None,
            metrics: TaskMetrics::default(),
        }
    }

    #[test]
    fn one_line_per_running_stage_with_done_total_and_failed() {
        let mut p = Progress::with_target(ProgressDrawTarget::hidden());
        p.on_event(&SchedulerEvent::StageSubmitted {
            time: 0,
            stage: 3,
            attempt: 1,
            tasks: 4,
        });
        p.on_event(&SchedulerEvent::StageSubmitted {
            time: 0,
            stage: 4,
            attempt: 1,
            tasks: 2,
        });
        p.on_event(&end(3, TaskEndStatus::Success));
        p.on_event(&end(3, TaskEndStatus::Failed));
        p.on_event(&end(3, TaskEndStatus::Success));
        assert_eq!(p.lines(), vec![(3, 2, 4, 1), (4, 0, 2, 0)]);
        p.on_event(&SchedulerEvent::StageCompleted {
            time: 0,
            stage: 3,
            attempt: 1,
            failure: None,
        });
        assert_eq!(p.lines(), vec![(4, 0, 2, 0)]);
        p.on_stop();
        assert!(p.lines().is_empty());
    }
}
