//! A panic (a bug in baton) still ends the CLI with the contract's failure: `{"failed": true,
//! "msg": "internal error in baton: …"}` on stdout and exit status 1 (`failed`), never Rust's
//! exit status 101 and a backtrace.
//!
//! The hook records the panic's message and location and prints it as one line on stderr; the
//! main thread runs the command under `catch_unwind`, so destructors still run (the deploy lock
//! is released) before the failure is printed. The shipped `baton` keeps `panic = "unwind"`
//! (profile `dist`).

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Mutex;

/// The message of the last panic, set by the hook.
static LAST: Mutex<Option<String>> = Mutex::new(None);

/// The message of a panic: `internal error in baton: <payload> (at <file:line>)`.
pub fn message(info: &panic::PanicHookInfo<'_>) -> String {
    format!("internal error in baton: {}", baton_core::panic_report(info))
}

/// Installs the hook: record the message and print it as one line on stderr (no backtrace).
pub fn install() {
    panic::set_hook(Box::new(|info| {
        let msg = message(info);
        eprintln!("baton: {msg}");
        if let Ok(mut last) = LAST.lock() {
            *last = Some(msg);
        }
    }));
}

/// Runs `f`; a panic in it becomes `Err` with the panic's message.
pub fn catch(f: impl FnOnce() -> ExitCode) -> Result<ExitCode, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        LAST.lock().ok().and_then(|mut last| last.take()).unwrap_or_else(|| "internal error in baton".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 11, item 11.
    #[test]
    fn a_panic_becomes_a_message_with_its_location() {
        install();
        let caught = catch(|| panic!("overflow when adding durations"));
        let msg = caught.expect_err("a panic");
        assert!(msg.starts_with("internal error in baton: overflow when adding durations (at "), "{msg}");
        assert!(msg.contains("panic.rs:"), "{msg}");
        assert_eq!(catch(|| ExitCode::from(0)), Ok(ExitCode::from(0)));
    }
}
