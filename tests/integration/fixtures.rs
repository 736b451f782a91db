//! Shared fixtures: one local context for the whole binary, temp dirs that clean up.

use spate::Context;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A `local[2]` context shared by tests (jobs from several tests may run at once; the
/// scheduler handles that).
pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        Context::builder()
            .master("local[2]")
            .build()
            .expect("local context starts")
    })
}

/// A fresh temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "spate-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn str(&self, name: &str) -> String {
        self.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic English-like text: `lines` lines of words from a skewed vocabulary.
pub fn corpus(lines: usize, seed: u64) -> String {
    let vocab: Vec<String> = (0..500)
        .map(|i| format!("w{i}"))
        .chain(["the", "of", "and"].map(String::from))
        .collect();
    let mut x = seed;
    let mut out = String::new();
    for _ in 0..lines {
        let n = 1 + (next(&mut x) % 12) as usize;
        for j in 0..n {
            if j > 0 {
                out.push(if next(&mut x).is_multiple_of(7) {
                    '\t'
                } else {
                    ' '
                });
            }
            // Skew towards low indices: min of two draws.
            let a = next(&mut x) as usize % vocab.len();
            let b = next(&mut x) as usize % vocab.len();
            out.push_str(&vocab[a.min(b)]);
        }
        out.push('\n');
    }
    out
}

fn next(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Path of an example binary; `cargo test` builds examples next to the test binaries.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/integration-<hash> → target/<profile>/examples/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "example {name} not built at {}",
        bin.display()
    );
    bin
}
