//! Command-line options of `baton-demo`, fault switches included.

use std::net::{IpAddr, Ipv4Addr};

use clap::Parser;

/// The default of `--drain-ms`: well under baton's default `TimeoutStopSec=30` (and the 10 s
/// the tests use), so a drained process exits before systemd would SIGKILL it.
pub const DEFAULT_DRAIN_MS: u64 = 5000;

/// A demo SO_REUSEPORT HTTP service with fault switches, for handover demos and tests.
///
/// When systemd passes a listening socket (socket activation: `LISTEN_FDS`/`LISTEN_PID`, the
/// socket at fd 3), it serves that one and binds nothing; otherwise it binds `--listen:--port`
/// itself with SO_REUSEPORT.
#[derive(Debug, Parser)]
#[command(name = "baton-demo", disable_version_flag = true)]
pub struct Args {
    /// The TCP port to listen on (shared with other instances through SO_REUSEPORT); unused
    /// when systemd passes the listener.
    #[arg(long)]
    pub port: u16,
    /// The address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub listen: IpAddr,
    /// The version this instance reports in `GET /` bodies and `X-Version` headers.
    #[arg(long, value_parser = parse_version)]
    pub version: String,
    /// Send READY=1 to $NOTIFY_SOCKET once listening (systemd Type=notify).
    #[arg(long)]
    pub notify: bool,
    /// Fault: print an error and exit 1 at once.
    #[arg(long)]
    pub crash_on_start: bool,
    /// Fault: stay alive but never bind and never send READY=1.
    #[arg(long)]
    pub never_ready: bool,
    /// Fault: bind and listen (the kernel still completes handshakes and queues connections,
    /// and READY=1 is sent with `--notify`) but never accept a connection.
    #[arg(long)]
    pub never_accept: bool,
    /// Fault: ignore SIGTERM and keep serving; only SIGKILL (or SIGINT) ends it.
    #[arg(long)]
    pub ignore_sigterm: bool,
    /// Fault: answer `GET /health` with 503 once this many seconds have passed since start.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub unhealthy_after: Option<f64>,
    /// On SIGTERM, keep the stopped listener open this long before closing it (queued
    /// connections are then migrated or reset, per net.ipv4.tcp_migrate_req).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub linger_ms: u64,
    /// Simulated work: sleep this long before answering each `GET /`.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub work_ms: u64,
    /// On SIGTERM, once the listener is closed: how long a kept-alive connection may stay idle
    /// before it is closed (its next request before then is answered with `Connection: close`).
    /// Keep it shorter than the unit's TimeoutStopSec.
    #[arg(long, value_name = "MS", env = "BATON_DEMO_DRAIN_MS", default_value_t = DEFAULT_DRAIN_MS,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub drain_ms: u64,
    /// Fault: on SIGTERM, close kept-alive connections without `Connection: close` (idle ones at
    /// once, busy ones right after their response), as a server that does not drain.
    #[arg(long)]
    pub no_drain: bool,
}

/// A version fits in a header value: printable ASCII, no spaces.
fn parse_version(version: &str) -> Result<String, String> {
    if !version.is_empty() && version.len() <= 128 && version.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(version.to_owned())
    } else {
        Err("must be 1 to 128 printable ASCII characters without spaces".to_owned())
    }
}

fn parse_secs(secs: &str) -> Result<f64, String> {
    match secs.parse::<f64>() {
        Ok(value) if value.is_finite() && (0.0..=1e9).contains(&value) => Ok(value),
        _ => Err("must be a number of seconds, 0 or more".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_switches() {
        let args = Args::try_parse_from([
            "baton-demo",
            "--port",
            "8080",
            "--version",
            "v2",
            "--notify",
            "--unhealthy-after",
            "1.5",
            "--linger-ms",
            "300",
            "--never-accept",
        ]);
        let args = args.map_err(|e| e.to_string());
        assert!(args.is_ok(), "{args:?}");
        if let Ok(args) = args {
            assert_eq!(args.listen, IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert_eq!(args.unhealthy_after, Some(1.5));
            assert!(args.notify && !args.ignore_sigterm && args.never_accept);
            assert!(!args.no_drain);
        }
    }

    #[test]
    fn drain_time_from_the_flag_or_the_environment() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["baton-demo", "--port", "1", "--version", "v1"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).map(|a| a.drain_ms).ok()
        };
        // The environment variable is not set in tests; clap reads it only when it is.
        if std::env::var_os("BATON_DEMO_DRAIN_MS").is_none() {
            assert_eq!(parse(&[]), Some(DEFAULT_DRAIN_MS));
        }
        assert_eq!(parse(&["--drain-ms", "250"]), Some(250));
        assert_eq!(parse(&["--drain-ms", "250", "--no-drain"]), Some(250));
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            &["baton-demo", "--port", "1", "--version", "v 1"][..],
            &["baton-demo", "--port", "1", "--version", "v1", "--unhealthy-after", "-1"],
            &["baton-demo", "--version", "v1"],
            &["baton-demo", "--port", "1", "--version", "v1", "--drain-ms", "-5"],
            &["baton-demo", "--port", "1", "--version", "v1", "--drain-ms", "3600001"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
