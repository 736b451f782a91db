//! Closures that capture variables through `f!`, in every kind of operation.

use crate::common::{captured_closures, captured_closures_oracle};
use spate::prelude::*;

#[test]
fn captured_values_reach_every_operation_in_local_modes() -> anyhow::Result<()> {
    for master in ["local", "local[2]"] {
        let ctx = Context::builder().master(master).progress(false).build()?;
        assert_eq!(
            captured_closures(&ctx)?,
            captured_closures_oracle(),
            "{master}"
        );
        ctx.stop();
    }
    Ok(())
}
