//! The readiness and observe loop: start the release, wait until it is ready as the spec's
//! [`Readiness`] asks (job done, active, probe answered by the release itself, listening), let
//! it settle when there is no port, then observe it for `health.observe_sec`.
//!
//! A verdict needs systemd's answers: a check whose D-Bus read systemd did not answer (in the
//! read's own time, asked twice: see `connection::Resilient`) ends the wait with that error,
//! [`Unready::Systemd`], never with "not ready". A check slowed down by systemd still ends by
//! `health.timeout_sec` (counted from the start), as every call has its own bounded wait.

use std::cell::{Cell, RefCell};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{NotReady, Progress, Run};
use crate::probe;
use crate::result::error_chain;
use crate::spec::{Readiness, ServiceType};
use crate::systemd::{JobResult, SystemdError};

/// A readiness check that failed: worth retrying, or final (the release exited), or without a
/// verdict (systemd did not answer), or failed only as systemd answered too late for the probe
/// (retried; without a verdict if that is still so at the deadline).
#[derive(Debug)]
enum Check {
    Retry(String),
    Fatal(String),
    Systemd(SystemdError),
    Slow(String, SystemdError),
}
use Check::{Fatal, Retry};

/// Why a release did not pass readiness: a verdict on the release, or none because systemd did
/// not answer.
#[derive(Debug)]
pub(super) enum Unready {
    /// The release is not ready (or exited, or turned unhealthy).
    NotReady(NotReady),
    /// systemd did not answer a call the verdict needed (after asking twice for a read).
    Systemd(SystemdError),
}

impl From<NotReady> for Unready {
    fn from(n: NotReady) -> Self {
        Unready::NotReady(n)
    }
}

/// How often the observation checks the release between two sleeps.
const OBSERVE_CHECKS: usize = 3;

impl Run<'_> {
    /// Starts `unit` (unless `start` is false) and waits until it is ready, then observes it
    /// for `observe_sec`. Ok(the time it took to be ready).
    pub(super) fn start_and_wait(&mut self, unit: &str, start: bool) -> Result<Duration, Unready> {
        let t0 = Instant::now();
        if start {
            self.start(unit)?;
        }
        let first_pid = self.wait_until_ready(unit, t0)?;
        if self.spec.health.readiness == Readiness::Settle {
            self.settle(unit, t0, first_pid)?;
        }
        let ready_after = t0.elapsed();
        self.observe(unit, first_pid)?;
        Ok(ready_after)
    }

    /// The action line of a release found ready after `after`.
    pub(super) fn ready_action(&self, unit: &str, after: Duration) -> String {
        let port = self.spec.health.readiness.port().map(|p| format!(", listening on :{p}")).unwrap_or_default();
        format!("ready {unit} after {:.3} s{port}", after.as_secs_f64())
    }

    fn limit(&self) -> Duration {
        Duration::from_secs(self.spec.health.timeout_sec)
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.spec.health.interval_ms)
    }

    /// Starts the unit and waits for its start job, at most `health.timeout_sec`.
    fn start(&mut self, unit: &str) -> Result<(), Unready> {
        let result = self.sd.start(unit, self.limit());
        self.relay_notes();
        match result {
            Ok(JobResult::Done) => Ok(()),
            Ok(other) => {
                let st = self.sd.unit_status(unit).unwrap_or_default();
                Err(NotReady::StartFailed {
                    result: other.as_str().to_owned(),
                    active_state: st.active_state,
                    sub_state: st.sub_state,
                    exit_status: st.exec_main_status,
                }
                .into())
            }
            Err(SystemdError::JobTimeout { .. }) => {
                // The job's end is a signal: a bus that stopped passing messages loses it too.
                // Only a systemd that answers can say the release is still starting.
                match self.sd.unit_status(unit) {
                    Err(e) if e.is_unanswered() => Err(Unready::Systemd(e)),
                    Ok(st) if st.active_state == "active" => Ok(()),
                    _ => Err(NotReady::StartTimeout {
                        timeout_sec: self.spec.health.timeout_sec,
                        notify: self.spec.service_type == ServiceType::Notify,
                    }
                    .into()),
                }
            }
            Err(e) if e.is_unanswered() => Err(Unready::Systemd(e)),
            Err(e) => Err(NotReady::Start(error_chain(&e)).into()),
        }
    }

    /// Hands what the systemd connection noted (a read only a fresh connection got an answer to)
    /// to the progress and the result's warnings.
    pub(super) fn relay_notes(&mut self) {
        for note in self.sd.take_notes() {
            (self.progress)(Progress::Step(format!("note: {note}")));
            self.warnings.push(note);
        }
    }

    /// Checks every `interval_ms` until the release is ready or `timeout_sec` (counted from
    /// `t0`) has passed. Ok(its main PID).
    fn wait_until_ready(&mut self, unit: &str, t0: Instant) -> Result<u32, Unready> {
        let (limit, interval) = (self.limit(), self.interval());
        loop {
            let checked = self.check_ready(unit);
            self.relay_notes();
            let (last_problem, slow) = match checked {
                Ok(pid) => return Ok(pid),
                Err(Fatal(problem)) => return Err(NotReady::Exited(problem).into()),
                Err(Check::Systemd(e)) => return Err(Unready::Systemd(e)),
                Err(Retry(problem)) => (problem, None),
                Err(Check::Slow(problem, e)) => (problem, Some(e)),
            };
            let elapsed = t0.elapsed();
            if elapsed >= limit {
                // The last check failed only because systemd answered too late: no verdict.
                return Err(match slow {
                    Some(e) => Unready::Systemd(e),
                    None => NotReady::Timeout { timeout_sec: self.spec.health.timeout_sec, last_problem }.into(),
                });
            }
            (self.progress)(Progress::Waiting { what: format!("{unit} {last_problem}"), elapsed, limit });
            sleep(interval.min(limit.saturating_sub(elapsed)));
        }
    }

    /// No probe to ask: the release must at least stay up, with the same main process, for a
    /// moment (a binary that exits at once is not ready).
    fn settle(&mut self, unit: &str, t0: Instant, first_pid: u32) -> Result<(), Unready> {
        sleep(Readiness::SETTLE.min(self.limit().saturating_sub(t0.elapsed())));
        let checked = self.check_ready(unit);
        self.relay_notes();
        match checked {
            Ok(pid) if pid == first_pid => Ok(()),
            Ok(pid) => Err(NotReady::RestartedWhileSettling { first_pid, pid }.into()),
            Err(Fatal(p) | Retry(p)) => Err(NotReady::Exited(p).into()),
            Err(Check::Systemd(e) | Check::Slow(_, e)) => Err(Unready::Systemd(e)),
        }
    }

    /// Both releases serve for `observe_sec`; the new one must stay ready with the same main
    /// process all along.
    fn observe(&mut self, unit: &str, first_pid: u32) -> Result<(), Unready> {
        let observe_sec = self.spec.health.observe_sec;
        if observe_sec == 0 {
            return Ok(());
        }
        let (observe, interval) = (Duration::from_secs(observe_sec), self.interval());
        let o0 = Instant::now();
        while o0.elapsed() < observe {
            (self.progress)(Progress::Waiting {
                what: format!("observing {unit} while both releases serve"),
                elapsed: o0.elapsed(),
                limit: observe,
            });
            sleep(interval.min(observe.saturating_sub(o0.elapsed())));
            for _ in 0..OBSERVE_CHECKS {
                let checked = self.check_ready(unit);
                self.relay_notes();
                match checked {
                    Ok(pid) if pid == first_pid => {}
                    Ok(pid) => return Err(NotReady::RestartedWhileObserved { observe_sec, first_pid, pid }.into()),
                    Err(Fatal(problem) | Retry(problem)) => {
                        return Err(NotReady::Unhealthy { observe_sec, after: o0.elapsed(), problem }.into())
                    }
                    Err(Check::Systemd(e) | Check::Slow(_, e)) => return Err(Unready::Systemd(e)),
                }
            }
        }
        Ok(())
    }

    /// One readiness check; Ok(main PID) when ready. Its probe counts only when answered by
    /// this unit's own processes (see [`probe::http`]), during readiness and `observe_sec` alike.
    fn check_ready(&self, unit: &str) -> Result<u32, Check> {
        let st = self.sd.unit_status(unit).map_err(unanswered_or_retry)?;
        match st.active_state.as_str() {
            "active" | "reloading" => {}
            "activating" if st.sub_state == "auto-restart" => {
                return Err(Fatal(format!("exited with status {} and systemd is restarting it", st.exec_main_status)))
            }
            "activating" => return Err(Retry("is still activating".to_owned())),
            "failed" | "inactive" | "deactivating" => {
                return Err(Fatal(format!(
                    "exited (state {}/{}, exit status {})",
                    st.active_state, st.sub_state, st.exec_main_status
                )))
            }
            other => return Err(Retry(format!("is {other}"))),
        }
        let probe_timeout = self.interval().max(Duration::from_millis(500)).min(Duration::from_secs(5));
        // A probe counts only when a process of this unit served it: with SO_REUSEPORT the old
        // release may be the one the kernel hands the connection to. The unit's processes are
        // asked for before the probe starts, so a slow systemd does not eat the probe's time;
        // the probe's later rounds ask again (a process may have been forked meanwhile). A probe
        // that failed because systemd did not say which processes are the unit's, or said it
        // too late, has no verdict.
        let probing = matches!(self.spec.health.readiness, Readiness::Http { .. } | Readiness::Tcp { .. });
        let first =
            RefCell::new(if probing { Some(self.sd.unit_pids(unit).map_err(unanswered_or_retry)?) } else { None });
        let unanswered: RefCell<Option<SystemdError>> = RefCell::new(None);
        let asking = Cell::new(Duration::ZERO);
        let owners = || {
            if let Some(pids) = first.borrow_mut().take() {
                return Ok(pids);
            }
            let t = Instant::now();
            let answer = self.sd.unit_pids(unit);
            asking.set(asking.get().max(t.elapsed()));
            answer.map_err(|e| {
                let text = error_chain(&e);
                if e.is_unanswered() {
                    *unanswered.borrow_mut() = Some(e);
                }
                text
            })
        };
        let probe_failed =
            |problem: String| probe_verdict(problem, unanswered.borrow_mut().take(), asking.get(), probe_timeout, unit);
        // Socket mode may listen on one address only (`bind_address`): probed there.
        let at = self.spec.bind_address;
        match &self.spec.health.readiness {
            Readiness::Http { port, path } => probe::http_at(at, *port, path, probe_timeout, &owners)
                .map(drop)
                .map_err(|e| probe_failed(format!("fails its HTTP probe GET {path}: {}", error_chain(&e))))?,
            Readiness::Tcp { port } => probe::tcp_at(at, *port, probe_timeout, &owners)
                .map_err(|e| probe_failed(format!("fails its TCP probe on :{port}: {}", error_chain(&e))))?,
            Readiness::Listen { .. } | Readiness::Settle => {}
        }
        if let Some(port) = self.spec.health.readiness.port() {
            let pids = self.sd.unit_pids(unit).map_err(unanswered_or_retry)?;
            let listening = probe::listening_pids(&pids, port).map_err(|e| Retry(error_chain(&e)))?;
            if listening.is_empty() {
                return Err(Retry(format!("does not listen on :{port} yet")));
            }
        }
        Ok(st.main_pid)
    }
}

/// A failed systemd read in a check: no verdict when systemd did not answer, else a problem to
/// check again.
fn unanswered_or_retry(e: SystemdError) -> Check {
    if e.is_unanswered() {
        Check::Systemd(e)
    } else {
        Retry(error_chain(&e))
    }
}

/// What a failed probe says: nothing about the release when systemd did not answer which
/// processes are the unit's, or when one such question (`asking`: the longest) took the whole
/// probe's time or more (the probe then had no time left to attribute its connection); else the
/// probe's problem. Many quick questions are the probe's normal work, and a slow one that left
/// time (a busy machine answers in a few hundred milliseconds) is no reason to doubt the verdict.
fn probe_verdict(
    problem: String,
    unanswered: Option<SystemdError>,
    asking: Duration,
    probe_timeout: Duration,
    unit: &str,
) -> Check {
    match unanswered {
        Some(e) => Check::Systemd(e),
        None if asking >= probe_timeout => {
            let slow = SystemdError::Slow {
                method: "GetUnitProcesses",
                arg: unit.to_owned(),
                took: asking,
                limit: probe_timeout,
                step: "a readiness probe",
            };
            Check::Slow(format!("{problem} ({slow})"), slow)
        }
        None => Retry(problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: Duration = Duration::from_millis(500);

    #[test]
    fn a_probe_that_failed_for_systemd_has_no_verdict_on_the_release() {
        let problem = || "fails its HTTP probe GET /health: not served".to_owned();
        let unit = "app-v2.service";
        assert!(
            matches!(probe_verdict(problem(), None, Duration::from_millis(20), PROBE, unit), Retry(p) if p == problem())
        );
        let silent = SystemdError::NoAnswer { method: "GetUnitProcesses", arg: unit.into(), waited: PROBE };
        assert!(matches!(
            probe_verdict(problem(), Some(silent), Duration::ZERO, PROBE, unit),
            Check::Systemd(SystemdError::NoAnswer { .. })
        ));
        let Check::Slow(p, e) = probe_verdict(problem(), None, Duration::from_millis(2400), PROBE, unit) else {
            panic!("a probe that spent its time waiting for systemd is not the release's fault")
        };
        assert_eq!(
            e.to_string(),
            "systemd answered GetUnitProcesses for app-v2.service only after 2.4 s, later than the 0.5 s a readiness \
             probe may take"
        );
        assert!(p.starts_with(&problem()) && p.ends_with(&format!("({e})")), "{p}");
        assert!(!e.is_unanswered(), "an answer came: nothing to ask again");
        assert!(matches!(probe_verdict(problem(), None, PROBE, PROBE, unit), Check::Slow(..)));
        let busy = Duration::from_millis(300);
        assert!(matches!(probe_verdict(problem(), None, busy, PROBE, unit), Retry(_)), "a busy machine still judges");
    }
}
