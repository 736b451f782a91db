//! Local mode with a small shuffle memory budget: map outputs over it go to disk and the
//! results are the same as with every output in memory.

use crate::common::{
    captured_closures, captured_closures_oracle, corpus_file, join_pairs, pagerank, sorted_pairs,
    word_counts,
};
use crate::fixtures::TempDir;
use spate::prelude::*;

#[test]
fn shuffles_over_the_memory_budget_go_to_disk_with_the_same_results() -> anyhow::Result<()> {
    let dir = TempDir::new("shuffle-memory");
    let corpus = corpus_file(&dir.0, 3000);
    let results = |ctx: &Context| -> spate::Result<_> {
        Ok((
            word_counts(ctx, &corpus)?,
            join_pairs(ctx)?,
            pagerank(ctx)?,
            sorted_pairs(ctx)?,
        ))
    };
    let all_in_memory = Context::builder()
        .master("local[2]")
        .progress(false)
        .build()?;
    let want = results(&all_in_memory)?;
    all_in_memory.stop();
    // 0: every output to disk; 64 KiB: some outputs in memory, the rest on disk.
    for budget in [0, 64 << 10] {
        let ctx = Context::builder()
            .master("local[2]")
            .progress(false)
            .shuffle_memory_bytes(budget)
            .build()?;
        let got = results(&ctx)?;
        assert!(got == want, "results differ with a {budget}-byte budget");
        assert_eq!(
            captured_closures(&ctx)?,
            captured_closures_oracle(),
            "{budget}"
        );
        ctx.stop();
    }
    Ok(())
}
