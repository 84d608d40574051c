//! The narrow interface baton needs from systemd, behind a trait: the D-Bus implementation
//! ([`dbus::DbusSystemd`]) drives the real one, and [`fake::FakeSystemd`] serves the fast unit
//! tests of the planning logic.

use std::time::Duration;

pub(crate) mod dbus;
#[cfg(any(test, feature = "testing"))]
pub(crate) mod fake;

/// Why a call to systemd failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemdError {
    /// The system bus could not be reached.
    #[error("cannot connect to systemd on the system bus ({address}): {detail}")]
    Connect {
        /// The bus address tried.
        address: String,
        /// The cause.
        detail: String,
    },
    /// A D-Bus call failed.
    #[error("systemd {method}({arg}) failed: {detail}")]
    Call {
        /// The method, e.g. `StartUnit`.
        method: &'static str,
        /// Its main argument, e.g. the unit.
        arg: String,
        /// systemd's message.
        detail: String,
    },
    /// A job did not finish in time.
    #[error("systemd job {method}({unit}) did not finish within {waited:?}")]
    JobTimeout {
        /// `StartUnit` or `StopUnit`.
        method: &'static str,
        /// The unit.
        unit: String,
        /// How long baton waited.
        waited: Duration,
    },
}

/// How a systemd job ended (the `result` of the `JobRemoved` signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// `done`: the job succeeded.
    Done,
    /// `canceled`: another job replaced it.
    Canceled,
    /// `timeout`: systemd's own timeout (e.g. `TimeoutStartSec`) expired.
    Timeout,
    /// `failed`: the unit failed.
    Failed,
    /// `dependency`: a required unit failed.
    Dependency,
    /// `skipped`: nothing to do.
    Skipped,
    /// Any other result string.
    Other(String),
}

impl JobResult {
    /// Maps systemd's result string.
    pub fn from_str_result(s: &str) -> Self {
        match s {
            "done" => JobResult::Done,
            "canceled" => JobResult::Canceled,
            "timeout" => JobResult::Timeout,
            "failed" => JobResult::Failed,
            "dependency" => JobResult::Dependency,
            "skipped" => JobResult::Skipped,
            other => JobResult::Other(other.to_owned()),
        }
    }

    /// systemd's result string.
    pub fn as_str(&self) -> &str {
        match self {
            JobResult::Done => "done",
            JobResult::Canceled => "canceled",
            JobResult::Timeout => "timeout",
            JobResult::Failed => "failed",
            JobResult::Dependency => "dependency",
            JobResult::Skipped => "skipped",
            JobResult::Other(s) => s,
        }
    }
}

/// The `load_state` of a unit systemd does not hold in memory (it would be read from disk on
/// its next use, so writing its file needs no daemon-reload).
pub const NOT_LOADED: &str = "not-loaded";

/// What systemd reports about one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitStatus {
    /// `LoadState`: loaded, not-found, bad-setting, error, masked; [`NOT_LOADED`] when systemd
    /// does not hold the unit in memory.
    pub load_state: String,
    /// `ActiveState`: active, reloading, inactive, failed, activating, deactivating.
    pub active_state: String,
    /// `SubState`: running, exited, dead, auto-restart, …
    pub sub_state: String,
    /// `UnitFileState`: enabled, disabled, static, … (empty when unknown).
    pub unit_file_state: String,
    /// `NeedDaemonReload`: the file on disk changed since systemd loaded it.
    pub need_daemon_reload: bool,
    /// `MainPID` (0 when none).
    pub main_pid: u32,
    /// `NRestarts`.
    pub n_restarts: u32,
    /// `ExecMainStatus`: exit status or signal of the main process.
    pub exec_main_status: i32,
    /// `ActiveEnterTimestamp`, microseconds since the epoch (0 when never active).
    pub active_enter_timestamp_us: u64,
}

impl UnitStatus {
    /// Whether systemd holds the unit in memory (a changed file then needs a daemon-reload).
    pub fn in_memory(&self) -> bool {
        self.load_state != NOT_LOADED
    }

    /// Active or on its way (activating, reloading): a release that counts as running.
    pub fn is_running(&self) -> bool {
        matches!(self.active_state.as_str(), "active" | "activating" | "reloading")
    }

    /// Enabled for boot.
    pub fn is_enabled(&self) -> bool {
        matches!(self.unit_file_state.as_str(), "enabled" | "enabled-runtime")
    }
}

/// The narrow interface to systemd. Every method that starts a job waits for it.
pub trait Systemd {
    /// `Manager.Reload`: re-reads every unit file (a daemon-reload). Waits until done.
    fn reload(&self) -> Result<(), SystemdError>;

    /// The unit's and service's properties (`Manager.GetUnit`; a unit not in memory is reported
    /// as [`NOT_LOADED`], inactive, with its unit file state).
    fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError>;

    /// The file systemd loads `unit` from: the `FragmentPath` of a unit it holds in memory,
    /// else the unit file it would load from its search path (`ListUnitFilesByPatterns`, which
    /// loads nothing). `None` when systemd knows no file for the unit.
    fn unit_file_path(&self, unit: &str) -> Result<Option<std::path::PathBuf>, SystemdError>;

    /// `Manager.StartUnit(unit, "replace")`, waiting for its `JobRemoved` for at most `timeout`.
    /// On [`SystemdError::JobTimeout`] the job is still queued: stop the unit to cancel it.
    fn start(&self, unit: &str, timeout: Duration) -> Result<JobResult, SystemdError>;

    /// `Manager.StopUnit(unit, "replace")`, waiting for its `JobRemoved` for at most `timeout`.
    fn stop(&self, unit: &str, timeout: Duration) -> Result<JobResult, SystemdError>;

    /// `Manager.EnableUnitFiles(units, false, true)`; true when a symlink changed.
    fn enable(&self, units: &[String]) -> Result<bool, SystemdError>;

    /// `Manager.DisableUnitFiles(units, false)`; true when a symlink changed.
    fn disable(&self, units: &[String]) -> Result<bool, SystemdError>;

    /// `Manager.ResetFailedUnit`: forgets a failed state (ignores units that are not failed).
    fn reset_failed(&self, unit: &str) -> Result<(), SystemdError>;

    /// PIDs of every process in the unit's cgroup (`Manager.GetUnitProcesses`); empty when the
    /// unit is not running.
    fn unit_pids(&self, unit: &str) -> Result<Vec<u32>, SystemdError>;

    /// The last `lines` lines of the unit's journal, oldest first (best effort: empty when the
    /// journal cannot be read).
    fn journal(&self, unit: &str, lines: usize) -> Vec<String>;
}
