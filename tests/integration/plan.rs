//! Golden stage plans: lineage → stages is a pure function.

use crate::fixtures::ctx;
use spate::plan::plan_stages;
use spate::prelude::*;

fn render<T: Data>(rdd: &Rdd<T>) -> String {
    plan_stages(&rdd.base()).render()
}

#[test]
fn narrow_only_is_one_stage() {
    let r = ctx().range(0, 10, 2).map(|x| x + 1).filter(|x| x % 2 == 0);
    assert_eq!(render(&r), "stage 0 result: range > map > filter\n");
}

#[test]
fn word_count_is_two_stages() {
    let lines = ctx().parallelize(vec!["a b".to_string()], 2);
    let counts = lines
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b);
    let plan = render(&counts);
    let ids: Vec<&str> = plan.lines().collect();
    assert_eq!(ids.len(), 2, "{plan}");
    assert!(ids[0].starts_with("stage 0 shuffle-map("), "{plan}");
    assert!(ids[0].ends_with(": parallelize > flat_map > map"), "{plan}");
    assert!(ids[1].starts_with("stage 1 result reads ["), "{plan}");
    assert!(ids[1].ends_with(": reduce_by_key"), "{plan}");
}

fn shuffle_ids_normalized(plan: &str) -> String {
    // Shuffle ids come from a context-wide counter; replace them with their order of
    // appearance so goldens do not depend on other tests.
    let mut seen: Vec<String> = Vec::new();
    let mut out = String::new();
    let mut rest = plan;
    while let Some(i) = rest.find(|c: char| c.is_ascii_digit()) {
        let (head, tail) = rest.split_at(i);
        let end = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        let num = &tail[..end];
        out.push_str(head);
        if head.ends_with('(') || head.ends_with('[') || head.ends_with(", ") {
            let pos = seen.iter().position(|s| s == num).unwrap_or_else(|| {
                seen.push(num.to_string());
                seen.len() - 1
            });
            out.push_str(&format!("s{pos}"));
        } else {
            out.push_str(num);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn join_of_two_shuffled_inputs_is_three_stages() {
    let a = ctx()
        .range(0, 100, 4)
        .map(|x| (x % 10, x))
        .reduce_by_key(|a, b| a + b);
    let b = ctx()
        .range(0, 100, 4)
        .map(|x| (x % 10, -x))
        .reduce_by_key(|a, b| a + b);
    let joined = a.join(&b);
    assert_eq!(
        shuffle_ids_normalized(&render(&joined)),
        "stage 0 shuffle-map(s0): range > map\n\
         stage 1 shuffle-map(s1): range > map\n\
         stage 2 result reads [s0, s1]: reduce_by_key > reduce_by_key > cogroup > flat_map_values\n"
    );
}

#[test]
fn join_of_unpartitioned_inputs_shuffles_both_sides() {
    let a = ctx().parallelize(vec![(1, 'a')], 2);
    let b = ctx().parallelize(vec![(1, 2)], 3);
    assert_eq!(
        shuffle_ids_normalized(&render(&a.join(&b))),
        "stage 0 shuffle-map(s0): parallelize\n\
         stage 1 shuffle-map(s1): parallelize\n\
         stage 2 result reads [s0, s1]: cogroup > flat_map_values\n"
    );
}

#[test]
fn chained_shuffles_and_a_diamond_share_stages() {
    let base = ctx()
        .range(0, 100, 4)
        .map(|x| (x % 7, 1u64))
        .reduce_by_key(|a, b| a + b);
    let swapped = base.map(|(k, c)| (c, k)).group_by_key();
    // diamond: both sides read `base`'s shuffle; it is planned once
    let diamond = base.union(&base.map_values(|c| c * 2));
    assert_eq!(
        shuffle_ids_normalized(&render(&swapped)),
        "stage 0 shuffle-map(s0): range > map\n\
         stage 1 shuffle-map(s1) reads [s0]: reduce_by_key > map\n\
         stage 2 result reads [s1]: group_by_key\n"
    );
    assert_eq!(
        shuffle_ids_normalized(&render(&diamond)),
        "stage 0 shuffle-map(s0): range > map\n\
         stage 1 result reads [s0]: reduce_by_key > map_values > union\n"
    );
}

#[test]
fn debug_string_names_the_call_site() {
    let r = ctx().range(0, 4, 2).map(|x| x * 2);
    let s = r.debug_string();
    assert!(s.contains("map["), "{s}");
    assert!(s.contains("plan.rs:"), "call site recorded: {s}");
}
