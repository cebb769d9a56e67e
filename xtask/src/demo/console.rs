//! How the demo talks to its reader: numbered steps, commands shown as an operator would type
//! them with their output, and retries that give up with a reason.

use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Numbered steps; an error names the step it happened in.
pub struct Steps {
    n: usize,
    total: usize,
    started: Instant,
}

impl Steps {
    pub fn new(total: usize) -> Self {
        Self {
            n: 0,
            total,
            started: Instant::now(),
        }
    }

    pub fn run<T>(
        &mut self,
        title: &str,
        f: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.n += 1;
        println!(
            "\n\x1b[1m── [{}/{}] {title}\x1b[0m  (+{:.1}s)",
            self.n,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
        f().with_context(|| format!("demo step {}/{} ({title}) failed", self.n, self.total))
    }
}

/// Prints a command the way an operator would type it, and its output, indented.
pub fn show(cmd: &str, output: &str) {
    println!("  $ {cmd}");
    for line in output.trim_end().lines() {
        println!("    {line}");
    }
}

/// Calls `f` until it succeeds, for at most `secs`; then fails with its last error.
pub fn retry<T>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > Duration::from_secs(secs) => {
                return Err(e).with_context(|| format!("{what} (gave up after {secs} s)"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
