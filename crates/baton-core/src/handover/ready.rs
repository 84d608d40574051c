//! The readiness and observe loop: start the release, wait until it is ready as the spec's
//! [`Readiness`] asks (job done, active, probe answered by the release itself, listening), let
//! it settle when there is no port, then observe it for `health.observe_sec`.

use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{NotReady, Progress, Run};
use crate::probe;
use crate::result::error_chain;
use crate::spec::{Readiness, ServiceType};
use crate::systemd::{JobResult, SystemdError};

/// A readiness check that failed: worth retrying, or final (the release exited).
enum Check {
    Retry(String),
    Fatal(String),
}
use Check::{Fatal, Retry};

/// How often the observation checks the release between two sleeps.
const OBSERVE_CHECKS: usize = 3;

impl Run<'_> {
    /// Starts `unit` (unless `start` is false) and waits until it is ready, then observes it
    /// for `observe_sec`. Ok(the time it took to be ready).
    pub(super) fn start_and_wait(&mut self, unit: &str, start: bool) -> Result<Duration, NotReady> {
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
    fn start(&mut self, unit: &str) -> Result<(), NotReady> {
        match self.sd.start(unit, self.limit()) {
            Ok(JobResult::Done) => Ok(()),
            Ok(other) => {
                let st = self.sd.unit_status(unit).unwrap_or_default();
                Err(NotReady::StartFailed {
                    result: other.as_str().to_owned(),
                    active_state: st.active_state,
                    sub_state: st.sub_state,
                    exit_status: st.exec_main_status,
                })
            }
            Err(SystemdError::JobTimeout { .. }) => Err(NotReady::StartTimeout {
                timeout_sec: self.spec.health.timeout_sec,
                notify: self.spec.service_type == ServiceType::Notify,
            }),
            Err(e) => Err(NotReady::Start(error_chain(&e))),
        }
    }

    /// Checks every `interval_ms` until the release is ready or `timeout_sec` (counted from
    /// `t0`) has passed. Ok(its main PID).
    fn wait_until_ready(&mut self, unit: &str, t0: Instant) -> Result<u32, NotReady> {
        let (limit, interval) = (self.limit(), self.interval());
        loop {
            let last_problem = match self.check_ready(unit) {
                Ok(pid) => return Ok(pid),
                Err(Fatal(problem)) => return Err(NotReady::Exited(problem)),
                Err(Retry(problem)) => problem,
            };
            let elapsed = t0.elapsed();
            if elapsed >= limit {
                return Err(NotReady::Timeout { timeout_sec: self.spec.health.timeout_sec, last_problem });
            }
            (self.progress)(Progress::Waiting { what: format!("{unit} {last_problem}"), elapsed, limit });
            sleep(interval.min(limit.saturating_sub(elapsed)));
        }
    }

    /// No probe to ask: the release must at least stay up, with the same main process, for a
    /// moment (a binary that exits at once is not ready).
    fn settle(&mut self, unit: &str, t0: Instant, first_pid: u32) -> Result<(), NotReady> {
        sleep(Readiness::SETTLE.min(self.limit().saturating_sub(t0.elapsed())));
        match self.check_ready(unit) {
            Ok(pid) if pid == first_pid => Ok(()),
            Ok(pid) => Err(NotReady::RestartedWhileSettling { first_pid, pid }),
            Err(Fatal(p) | Retry(p)) => Err(NotReady::Exited(p)),
        }
    }

    /// Both releases serve for `observe_sec`; the new one must stay ready with the same main
    /// process all along.
    fn observe(&mut self, unit: &str, first_pid: u32) -> Result<(), NotReady> {
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
                match self.check_ready(unit) {
                    Ok(pid) if pid == first_pid => {}
                    Ok(pid) => return Err(NotReady::RestartedWhileObserved { observe_sec, first_pid, pid }),
                    Err(Fatal(problem) | Retry(problem)) => {
                        return Err(NotReady::Unhealthy { observe_sec, after: o0.elapsed(), problem })
                    }
                }
            }
        }
        Ok(())
    }

    /// One readiness check; Ok(main PID) when ready. Its probe counts only when answered by
    /// this unit's own processes (see [`probe::http`]), during readiness and `observe_sec` alike.
    fn check_ready(&self, unit: &str) -> Result<u32, Check> {
        let st = self.sd.unit_status(unit).map_err(|e| Retry(error_chain(&e)))?;
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
        // release may be the one the kernel hands the connection to.
        let owners = || self.sd.unit_pids(unit).map_err(|e| error_chain(&e));
        // Socket mode may listen on one address only (`bind_address`): probed there.
        let at = self.spec.bind_address;
        match &self.spec.health.readiness {
            Readiness::Http { port, path } => probe::http_at(at, *port, path, probe_timeout, &owners)
                .map(drop)
                .map_err(|e| Retry(format!("fails its HTTP probe GET {path}: {}", error_chain(&e))))?,
            Readiness::Tcp { port } => probe::tcp_at(at, *port, probe_timeout, &owners)
                .map_err(|e| Retry(format!("fails its TCP probe on :{port}: {}", error_chain(&e))))?,
            Readiness::Listen { .. } | Readiness::Settle => {}
        }
        if let Some(port) = self.spec.health.readiness.port() {
            let pids = self.sd.unit_pids(unit).map_err(|e| Retry(error_chain(&e)))?;
            let listening = probe::listening_pids(&pids, port).map_err(|e| Retry(error_chain(&e)))?;
            if listening.is_empty() {
                return Err(Retry(format!("does not listen on :{port} yet")));
            }
        }
        Ok(st.main_pid)
    }
}
