//! Request migration during a run: the migration probe just before the first old listener
//! closes (cached per boot in the lock directory), its warning, the wake-up connection for
//! kernels whose migration does not wake the new listener, and the result's `migration` and
//! `migration_counters`.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use super::{Progress, Run};
use crate::migration::{self, Migration, MigrationCounters, ProbeReport};
use crate::spec::{ListenMode, ServiceSpec};

/// How long the wake-up connection may take to connect.
const WAKE_TIMEOUT: Duration = Duration::from_millis(200);

/// What a run knows about request migration.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// The plan closes another release's listener with `migrate_requests` on: probe first.
    planned: bool,
    /// Where the probe's answer is cached (the lock directory).
    cache_dir: PathBuf,
    /// The probe's answer, once it ran.
    report: Option<ProbeReport>,
    /// The migration counters right after the probe.
    before: Option<MigrationCounters>,
}

impl Watch {
    /// Armed for a run whose plan says whether an old listener closes.
    pub(super) fn new(planned: bool, cache_dir: PathBuf) -> Self {
        Watch { planned, cache_dir, report: None, before: None }
    }

    /// The result's `migration`: the probe's answer, or what the spec makes of it.
    pub(super) fn migration(&self, spec: &ServiceSpec) -> Option<Migration> {
        if spec.listen_mode == ListenMode::Socket {
            return Some(Migration::SharedSocket);
        }
        if !spec.migrate_requests {
            return Some(Migration::Off);
        }
        self.report.as_ref().map(|r| r.migration)
    }

    /// The result's `migration_counters`: their change since the probe.
    pub(super) fn counters(&self) -> Option<MigrationCounters> {
        let before = self.before?;
        let now = migration::read_counters().ok().flatten()?;
        Some(before.delta(now))
    }
}

impl Run<'_> {
    /// Before a step that closes a listener (the stop of an old release or of the socket unit):
    /// the first time in a run whose plan closes another release's listener, prove that queued
    /// connections move (or take this boot's answer from the cache) and warn when they do not.
    pub(super) fn before_listener_closes(&mut self) {
        if !self.migration.planned || self.migration.report.is_some() {
            return;
        }
        let report = match migration::probe_cached(&self.migration.cache_dir) {
            Ok((report, cache_problem)) => {
                self.warnings.extend(cache_problem.map(|p| p.to_string()));
                report
            }
            Err(e) => ProbeReport {
                migration: Migration::Unavailable,
                reason: Some(e.to_string()),
                knob: migration::knob(),
                wakes_waiters: None,
                probe_us: 0,
                cached: false,
            },
        };
        self.warnings.extend(report.warning());
        let how = if report.cached {
            "the probe's answer cached this boot".to_owned()
        } else {
            format!("probed in {:.1} ms", report.probe_us as f64 / 1000.0)
        };
        // Shown once known (the probe takes milliseconds), as the step before the stop.
        (self.progress)(Progress::Step(format!("request migration {} ({how})", report.migration)));
        self.migration.before = migration::read_counters().ok().flatten();
        self.migration.report = Some(report);
    }

    /// After an old release stopped: on a kernel whose migration does not wake the new
    /// listener's waiters (the probe saw it), one connection to the port wakes them, so the
    /// connections that moved are accepted now rather than when the next client arrives.
    pub(super) fn after_listener_closed(&mut self) {
        let asleep = self.migration.report.as_ref().is_some_and(|r| r.wakes_waiters == Some(false));
        let Some(port) = self.spec.port.filter(|_| asleep) else {
            return;
        };
        if wake(port) {
            self.actions.push(format!("wake-up connection to :{port} (this kernel's migration wakes no listener)"));
        }
    }
}

/// Opens and closes one connection to `port` on IPv4 loopback; whether it connected.
fn wake(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), WAKE_TIMEOUT).is_ok()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::spec::parse;

    fn spec(extra: &str) -> ServiceSpec {
        let json = format!(r#"{{"name":"app","version":"v1","exec_start":["/bin/app"],"port":8080{extra}}}"#);
        parse(json.as_bytes()).expect("valid")
    }

    #[test]
    fn the_result_says_off_or_shared_socket_from_the_spec_and_null_when_nothing_was_probed() {
        let watch = Watch::new(true, PathBuf::from("/nonexistent"));
        assert_eq!(watch.migration(&spec(r#","migrate_requests":false"#)), Some(Migration::Off));
        assert_eq!(watch.migration(&spec(r#","listen_mode":"socket""#)), Some(Migration::SharedSocket));
        assert_eq!(watch.migration(&spec("")), None, "no listener closed: nothing proven");
        assert_eq!(watch.counters(), None);
    }

    #[test]
    fn the_probe_answer_is_the_result() {
        let report = ProbeReport {
            migration: Migration::Unavailable,
            reason: Some("r".to_owned()),
            knob: "1".to_owned(),
            wakes_waiters: None,
            probe_us: 1,
            cached: false,
        };
        let watch = Watch { report: Some(report), before: Some(MigrationCounters::default()), ..Watch::default() };
        assert_eq!(watch.migration(&spec("")), Some(Migration::Unavailable));
        assert!(watch.counters().is_some(), "this kernel counts migrations");
    }

    #[test]
    fn the_wake_up_connection_reaches_a_listener_on_the_port() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(wake(port));
        listener.set_nonblocking(true).expect("nonblocking");
        assert!(listener.accept().is_ok(), "the wake-up connection is queued on the listener");
        drop(listener);
        assert!(!wake(port), "nothing listens any more");
    }
}
