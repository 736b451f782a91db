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
///
/// Iterative (an explicit stack), so a lineage of any number of shuffles plans on any
/// thread.
pub fn plan_stages(rdd: &Arc<dyn RddBase>) -> StagePlan {
    /// A shuffle whose map stage is planned once the stages it reads are.
    struct Visit {
        shuffle: SerArc<dyn ShuffleDependency>,
        map_rdd: Arc<dyn RddBase>,
        parents: Vec<SerArc<dyn ShuffleDependency>>,
        next: usize,
    }
    let visit = |shuffle: &SerArc<dyn ShuffleDependency>| {
        let map_rdd = shuffle.rdd();
        let parents = shuffle_parents(&map_rdd);
        Visit {
            shuffle: shuffle.clone(),
            map_rdd,
            parents,
            next: 0,
        }
    };
    let mut stages = Vec::new();
    let mut done: HashSet<ShuffleId> = HashSet::new();
    let mut entered: HashSet<ShuffleId> = HashSet::new();
    let parents = shuffle_parents(rdd);
    for p in &parents {
        if !entered.insert(p.shuffle_id()) {
            continue;
        }
        let mut stack = vec![visit(p)];
        while let Some(top) = stack.last_mut() {
            if let Some(parent) = top.parents.get(top.next) {
                top.next += 1;
                if entered.insert(parent.shuffle_id()) {
                    let v = visit(parent);
                    stack.push(v);
                }
                continue;
            }
            let Some(v) = stack.pop() else { break };
            done.insert(v.shuffle.shuffle_id());
            stages.push(PlannedStage {
                rdd: v.map_rdd,
                shuffle: Some(v.shuffle),
                parents: v.parents.iter().map(|p| p.shuffle_id()).collect(),
            });
        }
    }
    debug_assert_eq!(done.len(), entered.len());
    stages.push(PlannedStage {
        rdd: rdd.clone(),
        shuffle: None,
        parents: parents.iter().map(|p| p.shuffle_id()).collect(),
    });
    StagePlan { stages }
}

/// The nodes of the stage ending at `rdd` (narrow dependencies only), each after its
/// parents, with the ids of its narrow parents.
fn pipeline_nodes(rdd: &Arc<dyn RddBase>) -> Vec<(Arc<dyn RddBase>, Vec<RddId>)> {
    let mut out = Vec::new();
    let mut seen: HashSet<RddId> = HashSet::new();
    seen.insert(rdd.id());
    /// A node, its narrow parents' ids, and the parents still to visit.
    type Frame = (Arc<dyn RddBase>, Vec<RddId>, Vec<Arc<dyn RddBase>>);
    let frame = |r: Arc<dyn RddBase>| -> Frame {
        let mut ps: Vec<Arc<dyn RddBase>> = r
            .dependencies()
            .into_iter()
            .filter_map(|d| match d {
                Dependency::Narrow(p) => Some(p),
                Dependency::Shuffle(_) => None,
            })
            .collect();
        let ids = ps.iter().map(|p| p.id()).collect();
        // popped first-to-last
        ps.reverse();
        (r, ids, ps)
    };
    let mut stack: Vec<Frame> = vec![frame(rdd.clone())];
    while let Some((_, _, parents)) = stack.last_mut() {
        if let Some(p) = parents.pop() {
            if seen.insert(p.id()) {
                stack.push(frame(p));
            }
            continue;
        }
        if let Some((node, ids, _)) = stack.pop() {
            out.push((node, ids));
        }
    }
    out
}

/// How many operations deep the pipeline of the stage ending at `rdd` is: the longest
/// chain of narrow dependencies, counting `rdd` and its sources. Computing a partition
/// recurses this deep (nested iterators), so it bounds a task thread's stack use.
pub fn pipeline_depth(rdd: &Arc<dyn RddBase>) -> usize {
    let mut depth: std::collections::HashMap<RddId, usize> = std::collections::HashMap::new();
    for (node, parents) in pipeline_nodes(rdd) {
        let d = 1 + parents
            .iter()
            .filter_map(|p| depth.get(p))
            .max()
            .copied()
            .unwrap_or(0);
        depth.insert(node.id(), d);
    }
    depth.get(&rdd.id()).copied().unwrap_or(1)
}

/// The operations pipelined in a stage ending at `rdd`, parents first.
fn pipeline_ops(rdd: &Arc<dyn RddBase>) -> Vec<String> {
    pipeline_nodes(rdd)
        .iter()
        .map(|(n, _)| n.meta().op.to_string())
        .collect()
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
