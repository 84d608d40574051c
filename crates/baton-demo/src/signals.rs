//! Turns SIGTERM and SIGINT into flags the accept loop polls.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::log;

/// Flags set from signal handlers.
#[derive(Debug)]
pub struct Flags {
    /// Set by SIGINT, and by SIGTERM unless it is ignored: time to drain and exit.
    pub shutdown: Arc<AtomicBool>,
    /// Set by SIGTERM when `--ignore-sigterm` is given, so the ignoring can be logged.
    pub ignored: Arc<AtomicBool>,
}

impl Flags {
    /// Logs a SIGTERM that arrived (and was ignored) since the last call.
    pub fn log_ignored(&self, version: &str) {
        if self.ignored.swap(false, Ordering::Relaxed) {
            log!(version, "SIGTERM received and ignored (--ignore-sigterm); still serving");
        }
    }
}

/// Installs the handlers. With `ignore_sigterm`, SIGTERM only sets [`Flags::ignored`].
pub fn install(ignore_sigterm: bool) -> io::Result<Flags> {
    let flags = Flags { shutdown: Arc::new(AtomicBool::new(false)), ignored: Arc::new(AtomicBool::new(false)) };
    let on_term = if ignore_sigterm { &flags.ignored } else { &flags.shutdown };
    signal_hook::flag::register(SIGTERM, Arc::clone(on_term))?;
    signal_hook::flag::register(SIGINT, Arc::clone(&flags.shutdown))?;
    Ok(flags)
}
