//! The demo SO_REUSEPORT HTTP service.
//!
//! `baton-demo` is the service baton hands over in demos and tests: a tiny HTTP/1.1 server
//! that answers `GET /` with its `--version` (body and `X-Version` header) and `GET /health`
//! with `ok`, keeping connections open for further requests (HTTP/1.1 keep-alive) unless the
//! client asks to close. Several instances bind the same port with `SO_REUSEPORT`, which is
//! what lets a new release start beside the old one; or systemd passes them one shared
//! listening socket (`LISTEN_FDS`, baton's socket mode).
//!
//! Lifecycle: take the listener from systemd or bind one ([`listener`]), tell systemd
//! `READY=1` when `--notify` ([`notify`]), serve ([`server`], one thread per connection,
//! requests in [`http`]), and on SIGTERM drain: stop accepting, keep the listening socket open
//! for `--linger-ms`, close it, answer the next request on each kept-alive connection with
//! `Connection: close`, finish the requests in flight, close connections still idle after
//! `--drain-ms`, and exit 0 ([`signals`] turns signals into flags). Every phase is logged to
//! stderr.
//!
//! Fault switches ([`cli`]) make it misbehave on purpose: crash on start, never become ready,
//! ignore SIGTERM, listen but never accept, turn unhealthy after a while, answer slowly, or
//! close kept-alive connections on SIGTERM without draining them.

mod cli;
mod http;
mod listener;
mod notify;
mod routes;
mod server;
mod signals;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;

/// Writes one line to stderr, prefixed with the program and version.
macro_rules! log {
    ($version:expr, $($arg:tt)*) => {
        eprintln!("baton-demo[{}]: {}", $version, format_args!($($arg)*))
    };
}
pub(crate) use log;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let version = args.version.as_str();
    if args.crash_on_start {
        log!(version, "error: crashing on start as asked (--crash-on-start)");
        return ExitCode::FAILURE;
    }
    let flags = match signals::install(args.ignore_sigterm) {
        Ok(flags) => flags,
        Err(err) => {
            log!(version, "error: installing signal handlers: {err}");
            return ExitCode::FAILURE;
        }
    };
    if args.never_ready {
        log!(version, "never ready as asked (--never-ready): not binding, not notifying");
        while !flags.shutdown.load(Ordering::Relaxed) {
            flags.log_ignored(version);
            std::thread::sleep(Duration::from_millis(20));
        }
        log!(version, "shutdown signal received; exiting");
        return ExitCode::SUCCESS;
    }

    let (listener, inherited) = match listener::from_systemd() {
        Ok(Some(listener)) => (listener, true),
        Ok(None) => {
            let addr = SocketAddr::new(args.listen, args.port);
            match listener::bind(addr) {
                Ok(listener) => (listener, false),
                Err(err) => {
                    log!(version, "error: binding {addr}: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Err(err) => {
            log!(version, "error: the listener from systemd (LISTEN_FDS): {err}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(err) => {
            log!(version, "error: the listener's address: {err}");
            return ExitCode::FAILURE;
        }
    };
    if inherited {
        log!(version, "listening on {addr} (socket from systemd, LISTEN_FDS; pid {})", std::process::id());
    } else {
        log!(version, "listening on {addr} (SO_REUSEPORT, pid {})", std::process::id());
    }
    if args.notify {
        let status = format!("READY=1\nSTATUS=serving {version} on {addr}\n");
        match notify::send(&status) {
            Ok(true) => log!(version, "sent READY=1 to $NOTIFY_SOCKET"),
            Ok(false) => log!(version, "--notify given but NOTIFY_SOCKET is not set; not notifying"),
            Err(err) => log!(version, "warning: notifying systemd: {err}"),
        }
    }

    let config = server::Config {
        version: args.version.clone(),
        unhealthy_after: args.unhealthy_after.map(Duration::from_secs_f64),
        work: Duration::from_millis(args.work_ms),
        linger: Duration::from_millis(args.linger_ms),
        drain: Duration::from_millis(args.drain_ms),
        no_drain: args.no_drain,
        notify: args.notify,
        never_accept: args.never_accept,
        inherited,
    };
    if args.never_accept {
        log!(version, "never accepting as asked (--never-accept): connections stay queued");
    }
    server::serve(listener, &config, &flags);
    ExitCode::SUCCESS
}
