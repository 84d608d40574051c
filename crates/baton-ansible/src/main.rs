//! The Ansible binary module `baton.systemd.service`: reads the args file Ansible names in
//! `argv[1]` (or the same JSON on stdin), applies the spec through the core and prints the
//! contract's result as one JSON document on stdout. Exit status 0 on success, 1 on failure;
//! the output always parses, even on a panic.

use std::io::{Read, Write};
use std::process::ExitCode;

use baton_ansible::{failure, run, MAX_ARGS_BYTES};

fn main() -> ExitCode {
    let (json, ok) = match read_input() {
        Ok(input) => {
            let outcome =
                std::panic::catch_unwind(|| run(&input, |raw, opts| baton_core::run::apply(raw, opts, &mut |_| {})));
            outcome.unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".to_owned());
                (failure(&format!("internal error in the baton module: {what}")), false)
            })
        }
        Err(msg) => (failure(&msg), false),
    };
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &json);
    let _ = writeln!(out);
    let _ = out.flush();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The args document: the file named by the first argument, or stdin without one.
fn read_input() -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let limit = MAX_ARGS_BYTES as u64 + 1;
    match std::env::args_os().nth(1) {
        Some(path) => std::fs::File::open(&path)
            .and_then(|f| f.take(limit).read_to_end(&mut buf))
            .map_err(|e| format!("cannot read the module's args file {}: {e}", path.to_string_lossy()))?,
        None => std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the module's args from stdin: {e}"))?,
    };
    Ok(buf)
}
