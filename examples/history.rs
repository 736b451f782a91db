//! Serve the web UI of a finished application from its event log (like Spark's history
//! server).
//!
//! ```text
//! cargo run --release --example wordcount -- --event-log /tmp/spate-events
//! cargo run --release --example history -- /tmp/spate-events/wordcount-*.jsonl [--ui-port N]
//! ```

use anyhow::{Context as _, bail};
use spate::listener::{Listener, read_event_log};

fn main() -> anyhow::Result<()> {
    let (flags, rest) = spate::split_engine_flags(std::env::args().skip(1));
    let [path] = rest.as_slice() else {
        bail!("usage: history EVENT_LOG.jsonl [--ui-port N]");
    };
    let events = read_event_log(std::path::Path::new(path))?;
    let mut store = spate::ui::Store::default();
    for e in &events {
        store.on_event(e);
    }
    let port = flags
        .ui_port
        .map(|p| p.parse::<u16>().context("--ui-port needs a number"))
        .transpose()?;
    let server = spate::ui::UiServer::start(store, "127.0.0.1", port, spate::ui::DEFAULT_UI_PORT)?;
    println!(
        "{} events of {path} served at {} (Ctrl-C to stop)",
        events.len(),
        server.url()
    );
    loop {
        std::thread::park();
    }
}
