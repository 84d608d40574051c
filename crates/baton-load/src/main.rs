//! The `baton-load` command: runs a bounded load against one address and prints the report.
//!
//! The report goes to stdout as one JSON line, a human summary to stderr. SIGTERM or SIGINT
//! (and, with `--stop-on-stdin-eof`, the end of stdin) end the run early; the report is
//! printed all the same.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton_load::{LoadConfig, Mode, MAX_WORKERS};
use clap::Parser;

/// Bounded HTTP load: a new connection per request (or kept-alive connections with
/// --keep-alive), failures counted by kind.
#[derive(Debug, Parser)]
#[command(name = "baton-load", version)]
struct Args {
    /// The service to load, e.g. 127.0.0.1:8080.
    #[arg(long)]
    addr: SocketAddr,
    /// The request path.
    #[arg(long, default_value = "/", value_parser = parse_path)]
    path: String,
    /// Worker threads, each with one request in flight.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=MAX_WORKERS as i64))]
    workers: u16,
    /// Stop after this many seconds (at most 3600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    duration_secs: u64,
    /// Stop after this many requests in total.
    #[arg(long)]
    max_requests: Option<u64>,
    /// The longest one request may take, connect to last byte, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    timeout_ms: u64,
    /// Also stop when stdin reaches end of file (a parent closes the pipe).
    #[arg(long)]
    stop_on_stdin_eof: bool,
    /// Keep one HTTP/1.1 connection per worker open for request after request. A request on a
    /// connection the server closed counts as failed (no retry); a `Connection: close`
    /// response is honoured (the next request opens a new connection).
    #[arg(long)]
    keep_alive: bool,
}

fn parse_path(path: &str) -> Result<String, String> {
    if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(path.to_owned())
    } else {
        Err("must start with '/' and hold no spaces or control characters".to_owned())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("baton-load: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    if args.stop_on_stdin_eof {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let cfg = LoadConfig {
        addr: args.addr,
        path: args.path.clone(),
        workers: usize::from(args.workers),
        duration: Duration::from_secs(args.duration_secs),
        max_requests: args.max_requests.unwrap_or(0),
        timeout: Duration::from_millis(args.timeout_ms),
        mode: if args.keep_alive { Mode::KeepAlive } else { Mode::NewConnection },
    };
    let report = baton_load::run(&cfg, &stop);
    let json = serde_json::to_string(&report).context("encoding the report")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}").and_then(|()| out.flush()).context("writing the report")?;
    eprintln!("baton-load: {}", report.summary());
    Ok(())
}
