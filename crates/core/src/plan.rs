//! Lineage → stages, as a pure function.
//!
//! A stage is a maximal pipeline of narrow dependencies; it ends at the RDD whose output
//! is either shuffled (a shuffle-map stage) or returned to the job (the result stage).
//! Every shuffle dependency met while walking narrow dependencies starts a parent stage.
//! A shuffle reached twice (e.g. a diamond) is one stage.

use crate::rdd::{Dependency, RddBase, RddId, ShuffleId};
use crate::ship::SerArc;
use crate::shuffle::ShuffleDependency;
use std::collections::HashSet;
use std::fmt::Write;
use std::sync::Arc;

/// One planned stage.
#[derive(Clone)]
pub struct PlannedStage {
    /// The last RDD of the pipeline.
    pub rdd: Arc<dyn RddBase>,
    /// `Some` for a shuffle-map stage: the dependency whose map side this stage computes.
    pub shuffle: Option<SerArc<dyn ShuffleDependency>>,
    /// Shuffles this stage reads (each the output of a parent stage).
    pub parents: Vec<ShuffleId>,
}

/// Stages in dependency order: every stage comes after the stages it reads from; the
/// last one is the result stage.
#[derive(Clone)]
pub struct StagePlan {
    /// The stages.
    pub stages: Vec<PlannedStage>,
}

/// The shuffle dependencies reachable from `rdd` through narrow dependencies only.
pub fn shuffle_parents(rdd: &Arc<dyn RddBase>) -> Vec<SerArc<dyn ShuffleDependency>> {
    let mut seen: HashSet<RddId> = HashSet::new();
    let mut found = Vec::new();
    let mut found_ids = HashSet::new();
    let mut stack = vec![rdd.clone()];
    while let Some(r) = stack.pop() {
        if !seen.insert(r.id()) {
            continue;
        }
        for dep in r.dependencies() {
            match dep {
                Dependency::Narrow(p) => stack.push(p),
                Dependency::Shuffle(s) => {
                    if found_ids.insert(s.shuffle_id()) {
                        found.push(s);
                    }
                }
            }
        }
    }
    found.sort_by_key(|s| s.shuffle_id());
    found
}

/// Plan the stages of a job whose final RDD is `rdd`.
pub fn plan_stages(rdd: &Arc<dyn RddBase>) -> StagePlan {
    fn visit(
        shuffle: &SerArc<dyn ShuffleDependency>,
        done: &mut HashSet<ShuffleId>,
        stages: &mut Vec<PlannedStage>,
    ) {
        if done.contains(&shuffle.shuffle_id()) {
            return;
        }
        let map_rdd = shuffle.rdd();
        let parents = shuffle_parents(&map_rdd);
        for p in &parents {
            visit(p, done, stages);
        }
        done.insert(shuffle.shuffle_id());
        stages.push(PlannedStage {
            rdd: map_rdd,
            shuffle: Some(shuffle.clone()),
            parents: parents.iter().map(|p| p.shuffle_id()).collect(),
        });
    }
    let mut stages = Vec::new();
    let mut done = HashSet::new();
    let parents = shuffle_parents(rdd);
    for p in &parents {
        visit(p, &mut done, &mut stages);
    }
    stages.push(PlannedStage {
        rdd: rdd.clone(),
        shuffle: None,
        parents: parents.iter().map(|p| p.shuffle_id()).collect(),
    });
    StagePlan { stages }
}

/// The operations pipelined in a stage ending at `rdd`, parents first.
fn pipeline_ops(rdd: &Arc<dyn RddBase>) -> Vec<String> {
    fn walk(r: &Arc<dyn RddBase>, seen: &mut HashSet<RddId>, out: &mut Vec<String>) {
        if !seen.insert(r.id()) {
            return;
        }
        for dep in r.dependencies() {
            if let Dependency::Narrow(p) = dep {
                walk(&p, seen, out);
            }
        }
        out.push(r.meta().op.to_string());
    }
    let mut out = Vec::new();
    walk(rdd, &mut HashSet::new(), &mut out);
    out
}

impl StagePlan {
    /// A stable text rendering for golden tests and logs, one stage per line:
    /// `stage 1 shuffle-map(1) reads [0]: parallelize > map`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.stages.iter().enumerate() {
            let kind = match &s.shuffle {
                Some(d) => format!("shuffle-map({})", d.shuffle_id()),
                None => "result".to_string(),
            };
            let reads = if s.parents.is_empty() {
                String::new()
            } else {
                format!(
                    " reads [{}]",
                    s.parents
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let _ = writeln!(
                out,
                "stage {i} {kind}{reads}: {}",
                pipeline_ops(&s.rdd).join(" > ")
            );
        }
        out
    }
}
