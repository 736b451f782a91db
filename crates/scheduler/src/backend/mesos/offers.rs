//! Fitting tasks into offers.
//!
//! One offer is one agent and one allocation role. A task needs `cpus` and `mem`; the first
//! task on an agent without a spate executor also pays for the executor (afterwards the
//! offer lists the executor in `executor_ids`, and it is reused). Tasks that prefer the
//! offer's agent go first. Resources handed to a task are copies of offered `Resource`s
//! with only the scalar changed, so reservations and allocation info survive.

use spate_mesos::v1::{Offer, Resource, value};

/// A task waiting for resources.
#[derive(Clone, Debug, PartialEq)]
pub struct Ask {
    /// Scheduler task id.
    pub task: u64,
    /// CPUs per task.
    pub cpus: f64,
    /// Memory per task, MB.
    pub mem: f64,
    /// Agents (ids or hostnames) where the task would rather run.
    pub preferred: Vec<String>,
    /// Agents where it failed before: used only when no other offer fits it.
    pub avoid: Vec<String>,
}

/// What an executor needs when it is first started on an agent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExecutorNeeds {
    /// CPUs.
    pub cpus: f64,
    /// Memory, MB.
    pub mem: f64,
}

/// Tasks placed on one offer, with the resources carved for them.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// Index of the offer.
    pub offer: usize,
    /// Resources for the executor, when this placement starts it.
    pub executor: Option<Vec<Resource>>,
    /// `(task id, its resources)`.
    pub tasks: Vec<(u64, Vec<Resource>)>,
}

/// Mesos rounds scalars to three decimals; compare with that slack.
const EPS: f64 = 0.0005;

fn scalar(r: &Resource) -> f64 {
    r.scalar.as_ref().map_or(0.0, |s| s.value)
}

/// Total of a scalar resource in an offer.
pub fn total(resources: &[Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name && r.r#type == value::Type::Scalar as i32)
        .map(scalar)
        .sum()
}

/// Take `amount` of scalar resource `name` out of `pool`, as copies of the pooled
/// resources (same role, reservations, allocation info) with the taken scalar. `None`
/// (and `pool` unchanged) if there is not enough.
pub fn take(pool: &mut [Resource], name: &str, amount: f64) -> Option<Vec<Resource>> {
    if amount <= 0.0 {
        return Some(Vec::new());
    }
    if total(pool, name) + EPS < amount {
        return None;
    }
    let mut left = amount;
    let mut out = Vec::new();
    for r in pool
        .iter_mut()
        .filter(|r| r.name == name && r.r#type == value::Type::Scalar as i32)
    {
        if left <= EPS {
            break;
        }
        let have = scalar(r);
        if have <= EPS {
            continue;
        }
        let used = have.min(left);
        let mut piece = r.clone();
        piece.scalar = Some(value::Scalar {
            value: round3(used),
        });
        out.push(piece);
        r.scalar = Some(value::Scalar {
            value: round3(have - used),
        });
        left -= used;
    }
    Some(out)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Place `asks` into `offers`. Each ask is placed at most once; offers that get nothing
/// are absent from the result (decline them). `has_executor(offer)` says whether a spate
/// executor already runs on the offer's agent. Three passes: first every task onto an
/// offer of an agent it prefers, then the rest anywhere it did not fail before, then
/// anywhere, so an early offer cannot take a task that a later offer's agent holds the
/// data for, and a retry moves to another agent when there is one.
pub fn fit(
    asks: &[Ask],
    offers: &[Offer],
    executor: ExecutorNeeds,
    has_executor: impl Fn(&Offer) -> bool,
) -> Vec<Placement> {
    struct Slot {
        pool: Vec<Resource>,
        running: bool,
        executor: Option<Vec<Resource>>,
        tasks: Vec<(u64, Vec<Resource>)>,
    }
    let mut slots: Vec<Slot> = offers
        .iter()
        .map(|o| Slot {
            pool: o.resources.clone(),
            running: has_executor(o),
            executor: None,
            tasks: Vec::new(),
        })
        .collect();
    let prefers = |a: &Ask, o: &Offer| {
        a.preferred
            .iter()
            .any(|p| p == &o.agent_id.value || p == &o.hostname)
    };
    let avoids = |a: &Ask, o: &Offer| {
        a.avoid
            .iter()
            .any(|p| p == &o.agent_id.value || p == &o.hostname)
    };
    let mut placed = vec![false; asks.len()];
    for pass in 0..3 {
        for (i, offer) in offers.iter().enumerate() {
            let slot = &mut slots[i];
            for (j, a) in asks.iter().enumerate() {
                let allowed = match pass {
                    0 => prefers(a, offer) && !avoids(a, offer),
                    1 => !avoids(a, offer),
                    _ => true,
                };
                if placed[j] || !allowed {
                    continue;
                }
                let mut trial = slot.pool.clone();
                let mut exec_now = None;
                if !slot.running {
                    let (Some(c), Some(m)) = (
                        take(&mut trial, "cpus", executor.cpus),
                        take(&mut trial, "mem", executor.mem),
                    ) else {
                        break; // not even the executor fits on this offer
                    };
                    exec_now = Some([c, m].concat());
                }
                let (Some(c), Some(m)) = (
                    take(&mut trial, "cpus", a.cpus),
                    take(&mut trial, "mem", a.mem),
                ) else {
                    continue;
                };
                slot.pool = trial;
                if let Some(e) = exec_now {
                    slot.executor = Some(e);
                    slot.running = true;
                }
                placed[j] = true;
                slot.tasks.push((a.task, [c, m].concat()));
            }
        }
    }
    slots
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !s.tasks.is_empty())
        .map(|(offer, s)| Placement {
            offer,
            executor: s.executor,
            tasks: s.tasks,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_mesos::v1::{AgentId, FrameworkId, OfferId, resource};

    fn res(name: &str, v: f64, role: &str) -> Resource {
        Resource {
            name: name.into(),
            r#type: value::Type::Scalar as i32,
            scalar: Some(value::Scalar { value: v }),
            allocation_info: Some(resource::AllocationInfo {
                role: Some(role.into()),
            }),
            reservation: Some(vec![1, 2, 3]),
            ..Default::default()
        }
    }

    fn offer(id: &str, agent: &str, cpus: f64, mem: f64) -> Offer {
        Offer {
            id: OfferId { value: id.into() },
            framework_id: FrameworkId { value: "f".into() },
            agent_id: AgentId {
                value: agent.into(),
            },
            hostname: format!("host-{agent}"),
            resources: vec![res("cpus", cpus, "batch"), res("mem", mem, "batch")],
            ..Default::default()
        }
    }

    fn ask(task: u64, preferred: &[&str]) -> Ask {
        Ask {
            task,
            cpus: 1.0,
            mem: 128.0,
            preferred: preferred.iter().map(|s| s.to_string()).collect(),
            avoid: Vec::new(),
        }
    }

    #[test]
    fn a_retry_avoids_the_agent_it_failed_on_unless_nothing_else_fits() {
        let offers = vec![
            offer("o1", "a1", 4.0, 1024.0),
            offer("o2", "a2", 4.0, 1024.0),
        ];
        let mut retry = ask(7, &[]);
        retry.avoid = vec!["a1".into()];
        let p = fit(&[retry.clone()], &offers, EXEC, |_| true);
        assert_eq!(p[0].offer, 1, "placed on a2");
        let p = fit(&[retry], &offers[..1], EXEC, |_| true);
        assert_eq!(p.len(), 1, "still placed when a1 is all there is");
    }

    const EXEC: ExecutorNeeds = ExecutorNeeds {
        cpus: 0.1,
        mem: 64.0,
    };

    #[test]
    fn the_first_task_on_an_agent_pays_for_the_executor() {
        let offers = vec![offer("o1", "a1", 2.1, 512.0)];
        let p = fit(
            &[ask(1, &[]), ask(2, &[]), ask(3, &[])],
            &offers,
            EXEC,
            |_| false,
        );
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].tasks.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![1, 2],
            "2.1 cpus: executor + 2 tasks"
        );
        let exec = p[0].executor.as_ref().expect("executor resources");
        assert_eq!(total(exec, "cpus"), 0.1);
        assert_eq!(total(exec, "mem"), 64.0);
        // with an executor already there, three tasks would need 3 cpus: only 2 fit
        let p = fit(
            &[ask(1, &[]), ask(2, &[]), ask(3, &[])],
            &offers,
            EXEC,
            |_| true,
        );
        assert_eq!(p[0].tasks.len(), 2);
        assert!(p[0].executor.is_none());
    }

    #[test]
    fn carved_resources_keep_every_offered_field() {
        let offers = vec![offer("o1", "a1", 4.0, 1024.0)];
        let p = fit(&[ask(9, &[])], &offers, EXEC, |_| true);
        let r = &p[0].tasks[0].1;
        assert_eq!(r.len(), 2);
        for piece in r {
            assert_eq!(piece.reservation.as_deref(), Some(&[1u8, 2, 3][..]));
            assert_eq!(
                piece
                    .allocation_info
                    .as_ref()
                    .and_then(|a| a.role.as_deref()),
                Some("batch")
            );
        }
        assert_eq!(total(r, "cpus"), 1.0);
        assert_eq!(total(r, "mem"), 128.0);
    }

    #[test]
    fn tasks_go_where_they_prefer_and_nothing_is_placed_twice() {
        let offers = vec![
            offer("o1", "a1", 1.0, 1024.0),
            offer("o2", "a2", 1.0, 1024.0),
        ];
        let p = fit(&[ask(1, &[]), ask(2, &["a2"])], &offers, EXEC, |_| true);
        let on = |o: usize| {
            p.iter()
                .find(|pl| pl.offer == o)
                .map(|pl| pl.tasks.iter().map(|t| t.0).collect::<Vec<_>>())
        };
        assert_eq!(on(0), Some(vec![1]));
        assert_eq!(on(1), Some(vec![2]));
        let by_host = fit(&[ask(5, &["host-a2"])], &offers, EXEC, |_| true);
        assert_eq!(
            by_host[0].offer, 1,
            "hostnames count as preferred locations too"
        );
    }

    #[test]
    fn too_small_offers_get_nothing() {
        let offers = vec![
            offer("o1", "a1", 0.5, 1024.0),
            offer("o2", "a2", 1.05, 100.0),
        ];
        assert!(fit(&[ask(1, &[])], &offers, EXEC, |_| false).is_empty());
        let mut pool = offers[0].resources.clone();
        assert!(take(&mut pool, "cpus", 0.6).is_none());
        assert_eq!(
            total(&pool, "cpus"),
            0.5,
            "a failed take leaves the pool alone"
        );
    }
}
