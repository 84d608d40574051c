//! Carrying out one step of a plan, stopping a release, rolling back one that failed, and the
//! diff entry of a step that writes or removes a file.

use std::time::{Duration, Instant};

use super::ready::Unready;
use super::{ApplyError, NotReady, Progress, Run, JOURNAL_LINES};
use crate::migrate::{self, Migrate};
use crate::plan::Step;
use crate::result::{error_chain, FileDiff};
use crate::secrets;
use crate::state::ServiceState;
use crate::systemd::{JobResult, SystemdError};
use crate::unit_dir;

impl Run<'_> {
    /// Carries out `step`, recording its action.
    pub(super) fn execute(&mut self, step: &Step, state: &ServiceState) -> Result<(), ApplyError> {
        if matches!(step, Step::Stop { .. } | Step::StopSocket { .. }) {
            self.before_listener_closes();
        }
        (self.progress)(Progress::Step(step.describe()));
        match step {
            Step::WriteUnit { path, text, .. } => {
                // A unit file in the unit directory, or an instance's drop-in in its `.d` directory.
                let (dir, file) = (path.parent().unwrap_or(&self.spec.unit_dir), path.file_name().unwrap_or_default());
                unit_dir::write_atomic(dir, &file.to_string_lossy(), text)?;
            }
            Step::WriteSecrets { unit, text, .. } => {
                secrets::write(&self.spec.unit_dir, unit, text)?;
            }
            Step::RemoveSecrets { unit, .. } => {
                secrets::remove(&self.spec.unit_dir, unit)?;
            }
            Step::RemoveUnit { path, .. } | Step::RemoveSocket { path, .. } => {
                unit_dir::remove(path)?;
            }
            Step::WriteSocket { unit, text, .. } => {
                unit_dir::write_atomic(&self.spec.unit_dir, unit, text)?;
            }
            Step::StopSocket { unit } => {
                // A socket stops at once: systemd only closes its copy of the listener.
                self.stop_unit(unit, 0)?;
            }
            Step::Reload => {
                self.sd.reload()?;
            }
            Step::Enable { units } => {
                self.sd.enable(units)?;
            }
            Step::Disable { units } => {
                self.sd.disable(units)?;
            }
            Step::StartAndWait { unit, start } => {
                let had_old = state.running().any(|r| r.unit() != unit);
                // A start that pulled in the shared socket (it was not listening) stops it again
                // on rollback, first: traffic must not start the failed release again.
                let socket = (self.spec.listen_mode == crate::spec::ListenMode::Socket
                    && !state.socket.status.is_running())
                .then(|| state.socket.unit.clone());
                return self.start_step(unit, *start, had_old, socket.as_deref());
            }
            Step::Restart { unit } => return self.restart_step(unit),
            Step::MigrateRequests => {
                self.migrate_step(step);
                return Ok(());
            }
            Step::Stop { unit, version, timeout_stop_sec } => return self.stop_step(unit, version, *timeout_stop_sec),
        }
        self.diff.extend(file_diff(step, state));
        self.record(step.describe());
        Ok(())
    }

    /// Reports an action done and counts it as a change.
    fn record(&mut self, action: String) {
        (self.progress)(Progress::Done(action.clone()));
        self.actions.push(action);
        self.changed = true;
    }

    /// Starts the release (unless `start` is false: it runs already) and waits until it is
    /// ready; rolls it back when it is not.
    fn start_step(&mut self, unit: &str, start: bool, had_old: bool, socket: Option<&str>) -> Result<(), ApplyError> {
        if start {
            self.changed = true;
        }
        match self.start_and_wait(unit, start) {
            Ok(ready) => {
                if start {
                    self.record(format!("start {unit}"));
                }
                self.actions.push(self.ready_action(unit, ready));
                Ok(())
            }
            Err(unready) => {
                if let Some(socket) = socket {
                    (self.progress)(Progress::Step(format!("roll back: stop {socket}")));
                    let _ = self.sd.stop(socket, Duration::from_secs(15));
                    let _ = self.sd.reset_failed(socket);
                    self.actions.push(format!("stop {socket} (rolled back)"));
                }
                Err(match unready {
                    Unready::NotReady(reason) => self.roll_back(unit, reason, had_old, false),
                    Unready::Systemd(error) => self.no_verdict(unit, error, had_old, false),
                })
            }
        }
    }

    /// Stops the release and starts it again in place; nothing serves if it does not come back.
    fn restart_step(&mut self, unit: &str) -> Result<(), ApplyError> {
        self.stop_unit(unit, self.spec.timeout_stop_sec)?;
        self.record(format!("stop {unit}"));
        self.version_now = None;
        match self.start_and_wait(unit, true) {
            Ok(ready) => {
                self.record(format!("start {unit}"));
                self.actions.push(self.ready_action(unit, ready));
                Ok(())
            }
            Err(Unready::NotReady(reason)) => Err(self.roll_back(unit, reason, false, true)),
            Err(Unready::Systemd(error)) => Err(self.no_verdict(unit, error, false, true)),
        }
    }

    /// Turns on `net.ipv4.tcp_migrate_req`; a kernel without it or a failure to set it is a
    /// warning, never a failed run.
    fn migrate_step(&mut self, step: &Step) {
        match migrate::ensure_on() {
            Ok(Migrate::Off) => self.record(step.describe()),
            Ok(Migrate::On) => {}
            Ok(Migrate::Unsupported) => self.warnings.push(migrate::UNSUPPORTED_WARNING.to_owned()),
            Err(e) => {
                self.warnings.push(format!("could not set {}=1: {}", migrate::SYSCTL_NAME, error_chain(&e)));
            }
        }
    }

    /// Stops an old release, warning when systemd had to kill it.
    fn stop_step(&mut self, unit: &str, version: &str, timeout_stop_sec: u64) -> Result<(), ApplyError> {
        let t0 = Instant::now();
        self.stop_unit(unit, timeout_stop_sec)?;
        let took = t0.elapsed();
        if took >= Duration::from_secs(timeout_stop_sec) {
            self.warnings.push(format!(
                "{unit} ({version}) did not exit within TimeoutStopSec={timeout_stop_sec}s after SIGTERM; \
                 systemd killed it with SIGKILL after {:.1} s",
                took.as_secs_f64()
            ));
        }
        self.record(format!("stop {unit} ({:.3} s)", took.as_secs_f64()));
        self.after_listener_closed();
        Ok(())
    }

    fn stop_unit(&mut self, unit: &str, timeout_stop_sec: u64) -> Result<(), ApplyError> {
        // systemd escalates to SIGKILL after TimeoutStopSec; allow it that long plus a margin.
        let limit = Duration::from_secs(timeout_stop_sec).saturating_add(Duration::from_secs(15));
        let result = self.sd.stop(unit, limit)?;
        let _ = self.sd.reset_failed(unit);
        match result {
            JobResult::Done | JobResult::Skipped => Ok(()),
            other => Err(ApplyError::StopFailed { unit: unit.to_owned(), result: other.as_str().to_owned() }),
        }
    }

    /// Stops a release that failed to become ready; the old one keeps serving.
    /// `in_place`: the release was restarted in place, so nothing serves once it is stopped.
    fn roll_back(&mut self, unit: &str, reason: NotReady, had_old: bool, in_place: bool) -> ApplyError {
        (self.progress)(Progress::Step(format!("roll back: stop {unit}")));
        let journal = self.sd.journal(unit, JOURNAL_LINES);
        let stopped = self.sd.stop(unit, Duration::from_secs(self.spec.timeout_stop_sec.saturating_add(15)));
        let _ = self.sd.reset_failed(unit);
        let aftermath = match (&stopped, had_old) {
            (Ok(_), true) => format!("baton stopped {unit}; the previous release is still serving"),
            (Ok(_), false) => format!("baton stopped {unit}"),
            (Err(e), _) => format!("stopping {unit} failed too: {}", error_chain(e)),
        };
        self.actions.push(format!("stop {unit} (rolled back)"));
        ApplyError::NotReady { unit: unit.to_owned(), reason: Box::new(reason), aftermath, in_place, journal }
    }
}

impl Run<'_> {
    /// systemd did not answer while the new release was being proven ready: no verdict. The
    /// new release is stopped (bounded by the stop job's and the call's own limits) unless it
    /// was restarted in place, where stopping it would leave nothing serving; the previous
    /// release is never touched.
    fn no_verdict(&mut self, unit: &str, error: SystemdError, had_old: bool, in_place: bool) -> ApplyError {
        if in_place {
            let aftermath = format!(
                "baton left {unit} running (it was restarted in place: stopping it would leave nothing serving)"
            );
            return ApplyError::NoVerdict { unit: unit.to_owned(), error: Box::new(error), aftermath, stopped: false };
        }
        (self.progress)(Progress::Step(format!("roll back: stop {unit} (no verdict: {error})")));
        let stopped = self.sd.stop(unit, Duration::from_secs(self.spec.timeout_stop_sec.saturating_add(15)));
        self.relay_notes();
        let old = if had_old { "; the previous release is still serving" } else { "" };
        let aftermath = match &stopped {
            Ok(_) => {
                let _ = self.sd.reset_failed(unit);
                self.actions.push(format!("stop {unit} (rolled back)"));
                format!("baton stopped {unit}{old}")
            }
            Err(e) => format!(
                "stopping {unit} failed too ({}){old}; {unit} may run until systemd answers again, and the next \
                 run converges",
                error_chain(e)
            ),
        };
        ApplyError::NoVerdict { unit: unit.to_owned(), error: Box::new(error), aftermath, stopped: stopped.is_ok() }
    }
}

/// The diff entry of a step that writes or removes a unit file: its text before (as read when
/// the run began; empty for a new file) and after (empty once removed); for a secret file, only
/// [`secrets::DIFF_PRESENT`] and [`secrets::DIFF_CHANGED`]. None for other steps.
pub(super) fn file_diff(step: &Step, state: &ServiceState) -> Option<FileDiff> {
    let text_on_disk = |path: &std::path::Path| {
        if path == state.target_path {
            return state.target_text.clone().unwrap_or_default();
        }
        if path == state.template.path {
            return state.template.text.clone().unwrap_or_default();
        }
        state.releases.iter().find(|r| r.file.path == path).map(|r| r.file.text.clone()).unwrap_or_default()
    };
    match step {
        Step::WriteSocket { path, text, .. } => Some(FileDiff {
            path: path.display().to_string(),
            before: state.socket.text.clone().unwrap_or_default(),
            after: text.clone(),
        }),
        Step::RemoveSocket { path, .. } => Some(FileDiff {
            path: path.display().to_string(),
            before: state.socket.text.clone().unwrap_or_default(),
            after: String::new(),
        }),
        Step::WriteUnit { path, text, .. } => {
            Some(FileDiff { path: path.display().to_string(), before: text_on_disk(path), after: text.clone() })
        }
        Step::RemoveUnit { path, .. } => {
            Some(FileDiff { path: path.display().to_string(), before: text_on_disk(path), after: String::new() })
        }
        // A secret file's diff never holds its values: only that it changed.
        Step::WriteSecrets { path, existed, .. } => Some(FileDiff {
            path: path.display().to_string(),
            before: if *existed { secrets::DIFF_PRESENT.to_owned() } else { String::new() },
            after: secrets::DIFF_CHANGED.to_owned(),
        }),
        Step::RemoveSecrets { path, .. } => Some(FileDiff {
            path: path.display().to_string(),
            before: secrets::DIFF_PRESENT.to_owned(),
            after: String::new(),
        }),
        _ => None,
    }
}
