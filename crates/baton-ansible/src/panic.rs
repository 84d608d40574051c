//! A panic, in any thread, still ends the module with the contract's JSON failure on stdout and
//! exit status 1, so Ansible shows one readable message instead of "MODULE FAILURE".
//!
//! The shipped module is built with `panic = "abort"` (profile `dist-module`: no unwinding
//! tables, a smaller binary for Ansible to copy to every host for every task), so this is a
//! panic hook that writes the failure and exits, rather than `catch_unwind`.

use std::io::Write;

use crate::failure;

/// The message of a panic: `internal error in the baton module: <payload> (at <file:line>)`.
pub fn message(info: &std::panic::PanicHookInfo<'_>) -> String {
    format!("internal error in the baton module: {}", baton_core::panic_report(info))
}

/// Installs the hook: on a panic, print `{"failed": true, "msg": …}` as one line on stdout and
/// exit with status 1 (before any unwinding or abort).
pub fn exit_with_json_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let json = failure(&message(info));
        // Stdout's lock is reentrant: a panic while main held it still gets here.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out);
        let _ = serde_json::to_writer(&mut out, &json);
        let _ = writeln!(out);
        let _ = out.flush();
        std::process::exit(1);
    }));
}
