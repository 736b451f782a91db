//! `checkpoint()` in `local` and `local[2]` (dpark's checkpoint tests; `tests/cluster`
//! runs them in `local-cluster`).

use crate::common::{
    checkpoint_cuts_the_lineage, checkpoint_long_lineage, checkpoint_partial,
    damaged_checkpoint_is_named, files_named,
};
use crate::fixtures::TempDir;
use spate::prelude::*;

fn context(master: &str, dir: &TempDir) -> Context {
    let ctx = Context::builder().master(master).build().expect("context");
    ctx.set_checkpoint_dir(&dir.0).expect("checkpoint dir");
    ctx
}

#[test]
fn checkpoints_in_local_and_local_2() {
    for master in ["local", "local[2]"] {
        let dir = TempDir::new("ckpt");
        let ctx = context(master, &dir);
        let run = |what: &str, r: Result<(), String>| {
            r.unwrap_or_else(|e| panic!("{master}: {what}: {e}"));
        };
        run(
            "cuts the lineage",
            checkpoint_cuts_the_lineage(&ctx, &dir.0),
        );
        run("partial", checkpoint_partial(&ctx));
        run("long lineage", checkpoint_long_lineage(&ctx));
        run("damaged file", damaged_checkpoint_is_named(&ctx, &dir.0));
        drop(ctx);
        assert!(
            files_named(&dir.0, "part-00000").is_empty(),
            "{master}: the application's checkpoints are removed when the context stops"
        );
    }
}

#[test]
fn checkpoint_without_a_directory_says_what_to_do() {
    let ctx = Context::builder().master("local").build().expect("context");
    let e = ctx
        .range(0, 4, 2)
        .checkpoint()
        .expect_err("no directory")
        .to_string();
    assert!(e.contains("ctx.set_checkpoint_dir"), "{e}");
}
