//! Progress of `baton apply` on stderr: each step with the elapsed time, waits on one line (on a
//! terminal), and with `-v` how long each step took.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use baton_core::Progress;

/// Prints progress lines to stderr with the elapsed time.
#[derive(Debug)]
pub struct Reporter {
    enabled: bool,
    verbose: bool,
    started: Instant,
    step_started: Instant,
    waiting: bool,
    tty: bool,
    last_wait_line: Option<Instant>,
}

impl Reporter {
    /// A reporter that prints nothing unless `enabled`; `verbose` adds how long each step took.
    pub fn new(enabled: bool, verbose: bool) -> Self {
        Reporter {
            enabled,
            verbose,
            started: Instant::now(),
            step_started: Instant::now(),
            waiting: false,
            tty: std::io::stderr().is_terminal(),
            last_wait_line: None,
        }
    }

    /// A detail line (with `-v`).
    pub fn detail(&mut self, line: &str) {
        if self.enabled && self.verbose {
            let mut err = std::io::stderr().lock();
            self.clear_wait(&mut err);
            let _ = writeln!(err, "[{:6.1}s]   {line}", self.started.elapsed().as_secs_f64());
        }
    }

    /// Prints one progress event.
    pub fn report(&mut self, p: Progress) {
        if !self.enabled {
            return;
        }
        let t = self.started.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        match p {
            Progress::Step(s) => {
                self.clear_wait(&mut err);
                let _ = writeln!(err, "[{t:6.1}s] {s}");
                self.step_started = Instant::now();
            }
            Progress::Done(action) => {
                if self.verbose {
                    self.clear_wait(&mut err);
                    let took = self.step_started.elapsed().as_secs_f64() * 1000.0;
                    let _ = writeln!(err, "[{t:6.1}s]   done in {took:.1} ms: {action}");
                }
            }
            Progress::WaitingForLock { service, holder, elapsed, limit } => {
                drop(err);
                let what = format!("the lock of {service}, held by another run ({holder})");
                self.report(Progress::Waiting { what, elapsed, limit });
            }
            Progress::Waiting { what, elapsed, limit } => {
                let line = format!(
                    "[{t:6.1}s]   waiting: {what} ({:.1} s / {:.0} s)",
                    elapsed.as_secs_f64(),
                    limit.as_secs_f64()
                );
                if self.tty {
                    let _ = write!(err, "\r\x1b[2K{line}");
                    self.waiting = true;
                } else if self.last_wait_line.is_none_or(|l| l.elapsed() >= Duration::from_secs(1)) {
                    // Not a terminal: one line a second at most.
                    let _ = writeln!(err, "{line}");
                    self.last_wait_line = Some(Instant::now());
                }
            }
        }
    }

    fn clear_wait(&mut self, err: &mut impl Write) {
        if self.waiting {
            let _ = writeln!(err);
            self.waiting = false;
        }
    }

    /// The last line, once the run is over.
    pub fn finish(&mut self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            self.clear_wait(&mut err);
            let _ = writeln!(err, "[{:6.1}s] done", self.started.elapsed().as_secs_f64());
        }
    }
}
