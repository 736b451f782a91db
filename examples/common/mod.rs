//! Shared by the examples: logging setup (libraries emit, binaries install the subscriber).

/// Logs to stderr; `RUST_LOG` selects the level (default `warn`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
}
