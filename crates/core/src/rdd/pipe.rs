//! `pipe`: each partition's elements through an external command, lines in, lines out.

use super::Rdd;
use crate::data::Data;
use crate::error::Error;
use crate::task::raise;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

/// Bytes of a failing command's stderr kept for the task's error.
const STDERR_TAIL: usize = 2000;

/// Run `argv` with `input` as its stdin lines; its stdout lines, or the error of a
/// command that cannot start or exits unsuccessfully (status and stderr tail).
fn run(argv: &[String], input: impl Iterator<Item = String>) -> Result<Vec<String>, Error> {
    let what = argv.join(" ");
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::InvalidArgument("pipe needs a command".into()));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Other(format!("pipe: cannot start `{what}`: {e}")))?;
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Error::Other(format!(
            "pipe: `{what}` has no standard streams"
        )));
    };
    // Feed and drain at once (a command may answer before it has read everything);
    // stderr on its own thread so a chatty command cannot block on a full pipe.
    let (lines, err_tail) = std::thread::scope(|s| {
        let err = s.spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            let start = buf.len().saturating_sub(STDERR_TAIL);
            String::from_utf8_lossy(&buf[start..]).trim().to_string()
        });
        let out = s.spawn(move || {
            BufReader::new(stdout)
                .lines()
                .collect::<std::io::Result<Vec<String>>>()
        });
        for line in input {
            // A command that stops reading early (e.g. `head`) closes the pipe: fine.
            if writeln!(stdin, "{line}").is_err() {
                break;
            }
        }
        drop(stdin);
        (out.join(), err.join())
    });
    let status = child
        .wait()
        .map_err(|e| Error::Other(format!("pipe: waiting for `{what}`: {e}")))?;
    let err_tail = err_tail.unwrap_or_default();
    if !status.success() {
        return Err(Error::Other(format!(
            "pipe: `{what}` failed ({status}){}",
            if err_tail.is_empty() {
                String::new()
            } else {
                format!(": {err_tail}")
            }
        )));
    }
    match lines {
        Ok(Ok(lines)) => Ok(lines),
        Ok(Err(e)) => Err(Error::Other(format!(
            "pipe: reading the output of `{what}`: {e}"
        ))),
        Err(_) => Err(Error::Other(format!(
            "pipe: reading the output of `{what}` failed"
        ))),
    }
}

impl<T: Data + Display> Rdd<T> {
    /// Each partition's elements, one per line (`Display`), through the external command
    /// `argv` (program and arguments, no shell), whose output lines are the new RDD's
    /// elements (Spark's `pipe`). A command that cannot start or exits unsuccessfully
    /// fails the task with its exit status and the tail of its stderr.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let up = ctx.parallelize(vec!["a".to_string(), "b".into()], 2).pipe(&["tr", "a-z", "A-Z"]);
    /// assert_eq!(up.collect()?, vec!["A".to_string(), "B".into()]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn pipe(&self, argv: &[&str]) -> Rdd<String> {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        self.map_partitions_with(argv, |argv, it| {
            match run(argv, it.map(|x| x.to_string())) {
                Ok(lines) => lines,
                Err(e) => raise(e),
            }
        })
    }
}
