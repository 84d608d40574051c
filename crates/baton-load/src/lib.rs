//! The bounded load generator library.
//!
//! `baton-load` measures what a version handover costs the clients of a service: every worker
//! thread sends `GET <path> HTTP/1.1` requests one after the other, as fast as it can, reads
//! each whole response and files the outcome in a [`LoadReport`]: a success (counted per
//! `X-Version` header value) or a failure of one kind — refused, reset, timeout, wrong status or
//! other.
//!
//! Two [`Mode`]s: by default each request goes over a NEW TCP connection with
//! `Connection: close`; in [`Mode::KeepAlive`] each worker keeps one HTTP/1.1 connection open
//! for request after request. A kept-alive request on a connection the server has closed is a
//! failure (this client does not retry); a response with `Connection: close` is honoured: the
//! next request opens a new connection, which is no failure.
//!
//! A run is always bounded: it stops at the first of [`LoadConfig::duration`] (itself capped at
//! [`MAX_DURATION`]), [`LoadConfig::max_requests`] requests in total, or the caller's stop flag;
//! a request in flight then ends within [`LoadConfig::timeout`].
//!
//! Modules: [`client`] makes and classifies one request, [`report`] holds the tally, `source`
//! picks the client address of each worker and `worker` is one worker's loop.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! let cfg = baton_load::LoadConfig { max_requests: 1000, ..Default::default() };
//! let report = baton_load::run(&cfg, &AtomicBool::new(false));
//! println!("{}", report.summary());
//! ```

pub mod client;
pub mod report;
mod source;
mod worker;

use std::borrow::Borrow;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

pub use report::{LoadReport, Mode};

/// The longest a run may last, whatever [`LoadConfig::duration`] asks for.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// The most worker threads a run starts, whatever [`LoadConfig::workers`] asks for.
pub const MAX_WORKERS: usize = 1024;

/// What to load and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfig {
    /// The service to connect to.
    pub addr: SocketAddr,
    /// The request path, e.g. `/` or `/health`.
    pub path: String,
    /// Worker threads, each with one request in flight at a time (clamped to 1..=[`MAX_WORKERS`]).
    pub workers: usize,
    /// Stop after this long (capped at [`MAX_DURATION`]).
    pub duration: Duration,
    /// Stop after this many requests in total; `0` means no limit.
    pub max_requests: u64,
    /// The longest one request may take, connect through the last byte of the response.
    pub timeout: Duration,
    /// A new connection per request, or kept-alive connections (one per worker).
    pub mode: Mode,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            path: "/".to_owned(),
            workers: 4,
            duration: Duration::from_secs(10),
            max_requests: 0,
            timeout: Duration::from_secs(2),
            mode: Mode::NewConnection,
        }
    }
}

/// Runs the load described by `cfg` until its duration or request budget is spent or `stop`
/// becomes true, and returns the tally of every request made.
///
/// Takes the config by value or by reference.
pub fn run(cfg: impl Borrow<LoadConfig>, stop: &AtomicBool) -> LoadReport {
    let cfg = cfg.borrow();
    let started = Instant::now();
    let deadline = started + cfg.duration.min(MAX_DURATION);
    let request = client::request_bytes_for(cfg.addr, &cfg.path, cfg.mode == Mode::KeepAlive);
    let issued = AtomicU64::new(0);
    let workers = cfg.workers.clamp(1, MAX_WORKERS);

    let shared = worker::Shared {
        target: cfg.addr,
        request: &request,
        mode: cfg.mode,
        timeout: cfg.timeout,
        deadline,
        max_requests: cfg.max_requests,
        issued: &issued,
        stop,
    };
    let mut total = LoadReport { mode: cfg.mode, ..LoadReport::default() };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|index| {
                let shared = &shared;
                let source = source::for_worker(cfg.addr, index);
                scope.spawn(move || worker::run(shared, source))
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(part) => total.merge(part),
                Err(_) => total.note_error("other: a worker thread panicked".to_owned()),
            }
        }
    });
    total.finish(started.elapsed());
    total
}
