//! One worker's loop: request after request until the run's budget is spent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{self, KeepAlive};
use crate::report::{LoadReport, Mode};

/// What all workers of a run share.
#[derive(Debug)]
pub struct Shared<'a> {
    pub target: SocketAddr,
    pub request: &'a [u8],
    pub mode: Mode,
    pub timeout: Duration,
    pub deadline: Instant,
    /// `0` means no limit.
    pub max_requests: u64,
    /// Requests started so far, across all workers.
    pub issued: &'a AtomicU64,
    pub stop: &'a AtomicBool,
}

impl Shared<'_> {
    /// Claims the next request, or says the run is over.
    fn claim(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return false;
        }
        self.max_requests == 0 || self.issued.fetch_add(1, Ordering::Relaxed) < self.max_requests
    }
}

/// Makes requests from `source` until `shared` says stop; returns this worker's tally.
pub fn run(shared: &Shared<'_>, source: Option<SocketAddr>) -> LoadReport {
    let mut report = LoadReport { mode: shared.mode, ..LoadReport::default() };
    match shared.mode {
        Mode::NewConnection => {
            while shared.claim() {
                let (outcome, connected) = client::get_counted(shared.target, source, shared.request, shared.timeout);
                report.connections += u64::from(connected);
                report.record(outcome);
            }
        }
        Mode::KeepAlive => {
            let mut client = KeepAlive::new(shared.target, source);
            while shared.claim() {
                report.record(client.get(shared.request, shared.timeout));
            }
            report.connections = client.connections;
            report.closed_by_server = client.closed_by_server;
        }
    }
    report
}
