//! Word count through the engine equals a plain single-threaded count exactly (the same
//! algorithm as the `rust-wc` baseline), over files split into many partitions.

use crate::fixtures::{TempDir, corpus, ctx};
use spate::TextFileOptions;
use spate::prelude::*;
use std::collections::HashMap;

fn oracle(text: &str) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for w in text
        .split([' ', '\t', '\n', '\x0b', '\x0c', '\r'])
        .filter(|w| !w.is_empty())
    {
        *m.entry(w.to_string()).or_insert(0) += 1;
    }
    m
}

#[test]
fn word_count_equals_the_baseline_count_exactly() {
    let dir = TempDir::new("wc");
    let text = corpus(20_000, 7);
    let path = dir.join("corpus.txt");
    std::fs::write(&path, &text).expect("write");
    let want = oracle(&text);
    for parts in [1, 3, 16] {
        let opts = TextFileOptions {
            min_partitions: Some(parts),
            min_split_bytes: 1,
            ..Default::default()
        };
        let counts = ctx()
            .text_file_with(&path.to_string_lossy(), &opts)
            .expect("input")
            .flat_map(words)
            .map(|w| (w, 1u64))
            .reduce_by_key_n(|a, b| a + b, parts);
        let got: HashMap<String, u64> = counts
            .collect()
            .expect("job")
            .into_iter()
            .map(|(w, c)| (w.to_string(), c))
            .collect();
        assert_eq!(got, want, "with {parts} partitions");
        let total: u64 = counts.values().fold(0, |a, b| a + b).expect("sum");
        assert_eq!(total, want.values().sum::<u64>());
        let top = counts
            .take_ordered_by(3, |(w, c)| (std::cmp::Reverse(*c), w.clone()))
            .expect("top");
        let mut want_top: Vec<(&String, &u64)> = want.iter().collect();
        want_top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let want_top: Vec<(String, u64)> = want_top
            .into_iter()
            .take(3)
            .map(|(w, c)| (w.clone(), *c))
            .collect();
        let top: Vec<(String, u64)> = top.into_iter().map(|(w, c)| (w.to_string(), c)).collect();
        assert_eq!(top, want_top);
    }
}

#[test]
fn the_wordcount_example_prints_the_baseline_format() {
    let dir = TempDir::new("wc-example");
    let text = corpus(3_000, 11);
    std::fs::write(dir.join("in.txt"), &text).expect("write");
    let want = oracle(&text);
    let exe = crate::fixtures::example_bin("wordcount");
    let out = std::process::Command::new(exe)
        .arg(dir.join("in.txt"))
        .args(["--master", "local[2]", "--top", "5", "--partitions", "3"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("total_words\t{}", want.values().sum::<u64>()).as_str())
    );
    assert_eq!(
        lines.next(),
        Some(format!("distinct_words\t{}", want.len()).as_str())
    );
    assert_eq!(lines.next(), Some("top10:"));
    let mut sorted: Vec<(&String, &u64)> = want.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (w, c) in sorted.into_iter().take(5) {
        assert_eq!(lines.next(), Some(format!("{c}\t{w}").as_str()));
    }
    assert_eq!(lines.next(), None);
}

#[test]
fn the_wordcount_example_reports_a_missing_file_without_a_panic() {
    let exe = crate::fixtures::example_bin("wordcount");
    let out = std::process::Command::new(exe)
        .arg("/no/such/input.txt")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("input path does not exist: /no/such/input.txt"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_wordcount_example_prints_the_same_in_local_cluster_mode() {
    let dir = TempDir::new("wc-cluster");
    std::fs::write(dir.join("in.txt"), corpus(5_000, 3)).expect("write");
    let run = |master: &str| {
        let out = std::process::Command::new(crate::fixtures::example_bin("wordcount"))
            .arg(dir.join("in.txt"))
            .args(["--master", master, "--partitions", "4"])
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{master}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    let local = run("local[2]");
    assert!(local.starts_with("total_words\t"), "{local}");
    assert_eq!(run("local-cluster[2]"), local);
}
