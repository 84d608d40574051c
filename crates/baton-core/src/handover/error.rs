//! Why a run failed: [`ApplyError`] (what the caller matches on), [`NotReady`] (why a new
//! release was not ready) and [`ApplyFailure`] (the error with what the run had done so far).

use std::time::Duration;

use crate::lock::LockError;
use crate::plan::PlanError;
use crate::result::{error_chain, Failure, FailureKind};
use crate::state::StateError;
use crate::systemd::SystemdError;
use crate::unit::render::RenderError;
use crate::unit_dir::DiskError;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The unit could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The unit directory.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// systemd.
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    /// Another run holds the service's lock.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The plan was refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The new release never became ready or turned unhealthy; it was stopped (a rollback).
    #[error("{unit} {reason}; {aftermath}")]
    NotReady {
        /// The new release's unit.
        unit: String,
        /// Why it is not ready.
        reason: Box<NotReady>,
        /// What baton did about it.
        aftermath: String,
        /// The release was restarted in place (same version, new unit text): the one that
        /// served before is the one that failed, so nothing serves now.
        in_place: bool,
        /// The failed release's last journal lines.
        journal: Vec<String>,
    },
    /// systemd did not answer (or the bus broke) while baton waited for the new release to
    /// become ready: there is no verdict on the release. baton stopped it if it could; the
    /// previous release was never touched.
    #[error("{error}, while baton waited for {unit} to become ready; {aftermath}")]
    NoVerdict {
        /// The new release's unit.
        unit: String,
        /// The call systemd did not answer (or answered too late).
        error: Box<SystemdError>,
        /// What baton did about the new release.
        aftermath: String,
        /// Whether the new release was stopped.
        stopped: bool,
    },
    /// systemd could not stop a release.
    #[error("stopping {unit} ended with job result '{result}'")]
    StopFailed {
        /// The unit.
        unit: String,
        /// The job result.
        result: String,
    },
}

impl ApplyError {
    /// What kind of failure this is (the CLI's exit status).
    pub fn kind(&self) -> FailureKind {
        match self {
            ApplyError::Render(_) | ApplyError::Plan(_) | ApplyError::Disk(DiskError::Foreign { .. }) => {
                FailureKind::Refused
            }
            ApplyError::Lock(LockError::InvalidName { .. }) => FailureKind::Refused,
            ApplyError::Disk(_) | ApplyError::Lock(_) => FailureKind::Environment,
            ApplyError::Systemd(
                SystemdError::Connect { .. }
                | SystemdError::Call { .. }
                | SystemdError::NoAnswer { .. }
                | SystemdError::Slow { .. }
                | SystemdError::Transport { .. },
            )
            | ApplyError::NoVerdict { .. } => FailureKind::Environment,
            ApplyError::Systemd(SystemdError::Setting { .. }) => FailureKind::Refused,
            ApplyError::Systemd(SystemdError::JobTimeout { .. }) => FailureKind::Failed,
            ApplyError::NotReady { in_place: false, .. } => FailureKind::RolledBack,
            ApplyError::NotReady { in_place: true, .. } | ApplyError::StopFailed { .. } => FailureKind::Failed,
        }
    }

    /// Whether a new release was stopped after failing (the error is [`ApplyError::NotReady`],
    /// or [`ApplyError::NoVerdict`] after baton stopped it).
    pub fn rolled_back(&self) -> bool {
        matches!(self, ApplyError::NotReady { .. } | ApplyError::NoVerdict { stopped: true, .. })
    }

    /// The failed release's last journal lines (empty unless [`ApplyError::NotReady`]).
    pub fn journal(&self) -> &[String] {
        match self {
            ApplyError::NotReady { journal, .. } => journal,
            _ => &[],
        }
    }
}

impl From<StateError> for ApplyError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Disk(d) => ApplyError::Disk(d),
            StateError::Systemd(s) => ApplyError::Systemd(s),
        }
    }
}

/// Why a new release is not ready, as the sentence after its unit name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// The start job did not end in `done`.
    #[error("failed to start: job result '{result}' (state {active_state}/{sub_state}, exit status {exit_status})")]
    StartFailed {
        /// The job result.
        result: String,
        /// `ActiveState` after the job.
        active_state: String,
        /// `SubState` after the job.
        sub_state: String,
        /// `ExecMainStatus` after the job.
        exit_status: i32,
    },
    /// The start job did not finish within `health.timeout_sec`.
    #[error("was not started within health.timeout_sec={timeout_sec}s{}", if *.notify { " (Type=notify: READY=1 never arrived)" } else { "" })]
    StartTimeout {
        /// `health.timeout_sec`.
        timeout_sec: u64,
        /// Whether the release is `Type=notify` (its READY=1 never arrived).
        notify: bool,
    },
    /// systemd refused the start.
    #[error("{0}")]
    Start(String),
    /// The release exited, or systemd is restarting it.
    #[error("{0}")]
    Exited(String),
    /// A readiness check kept failing until `health.timeout_sec` ran out.
    #[error("was not ready within health.timeout_sec={timeout_sec}s: {last_problem}")]
    Timeout {
        /// `health.timeout_sec`.
        timeout_sec: u64,
        /// The last check's problem.
        last_problem: String,
    },
    /// Without a port to probe, the main process changed while the release settled.
    #[error("restarted right after starting (main PID {first_pid} became {pid})")]
    RestartedWhileSettling {
        /// The main PID when first ready.
        first_pid: u32,
        /// The main PID after settling.
        pid: u32,
    },
    /// The main process changed during `health.observe_sec`.
    #[error("restarted during health.observe_sec={observe_sec}s (main PID {first_pid} became {pid})")]
    RestartedWhileObserved {
        /// `health.observe_sec`.
        observe_sec: u64,
        /// The main PID when ready.
        first_pid: u32,
        /// The main PID now.
        pid: u32,
    },
    /// A check failed during `health.observe_sec`.
    #[error("turned unhealthy during health.observe_sec={observe_sec}s after {:.1} s: {problem}", .after.as_secs_f64())]
    Unhealthy {
        /// `health.observe_sec`.
        observe_sec: u64,
        /// How long into the observation.
        after: Duration,
        /// The check's problem.
        problem: String,
    },
}

/// A failed run with what it had done so far.
#[derive(Debug)]
pub struct ApplyFailure {
    /// The cause.
    pub error: ApplyError,
    /// The service.
    pub name: String,
    /// The release still active.
    pub version: Option<String>,
    /// Whether anything changed.
    pub changed: bool,
    /// Whether a new release was stopped after failing.
    pub rolled_back: bool,
    /// The actions taken.
    pub actions: Vec<String>,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl From<ApplyFailure> for Failure {
    fn from(f: ApplyFailure) -> Self {
        let kind = f.error.kind();
        let journal = f.error.journal().to_vec();
        let mut msg = error_chain(&f.error);
        if !journal.is_empty() {
            msg.push_str(". Last journal lines:\n");
            msg.push_str(&journal.join("\n"));
        }
        Failure {
            failed: true,
            msg,
            name: Some(f.name),
            version: f.version,
            changed: f.changed,
            rolled_back: f.rolled_back,
            actions: f.actions,
            journal,
            elapsed_ms: f.elapsed_ms,
            kind,
        }
    }
}
