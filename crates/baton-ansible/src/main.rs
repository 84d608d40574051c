//! The Ansible binary module `baton.systemd.service`: reads the args file Ansible names in
//! `argv[1]` (or the same JSON on stdin), applies the spec through the core and prints the
//! contract's result as one JSON document on stdout. Exit status 0 on success, 1 on failure;
//! the output always parses, even on a panic (see [`baton_ansible::panic`]).

use std::io::{Read, Write};
use std::process::ExitCode;

use baton_ansible::{failure, run, MAX_ARGS_BYTES};

fn main() -> ExitCode {
    baton_ansible::panic::exit_with_json_on_panic();
    let (json, ok) = match read_input() {
        Ok(input) => run(&input, |raw, opts| baton_core::Baton::system().apply(raw, opts, &mut |_| {})),
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
