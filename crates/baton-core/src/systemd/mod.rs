//! The narrow interface baton needs from systemd, behind a trait: the D-Bus implementation
//! ([`dbus::DbusSystemd`]) drives the real one, and [`fake::FakeSystemd`] serves the fast unit
//! tests of the planning logic.
//!
//! Every D-Bus call has a bounded wait of its own ([`CallTimeouts`]): a read, a change and a
//! daemon-reload each get the limit chosen for them, and a call systemd does not answer in time
//! fails with [`SystemdError::NoAnswer`], naming the call and the wait.

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
    /// systemd (or the bus between us) did not answer a call within its limit.
    #[error("systemd did not answer {method}{} within {}", for_arg(arg), seconds(*waited))]
    NoAnswer {
        /// The method, e.g. `GetUnitProcesses`.
        method: &'static str,
        /// Its main argument, e.g. the unit (empty when none).
        arg: String,
        /// How long baton waited for the answer.
        waited: Duration,
    },
    /// systemd answered, but too late for the step that asked (e.g. a readiness probe that must
    /// know the unit's processes within its own time): the answer came, no verdict did.
    #[error("systemd answered {method}{} only after {}, later than the {} {step} may take", for_arg(arg), seconds(*took), seconds(*limit))]
    Slow {
        /// The method.
        method: &'static str,
        /// Its main argument.
        arg: String,
        /// How long systemd took.
        took: Duration,
        /// How long the step may take.
        limit: Duration,
        /// The step, e.g. `a readiness probe`.
        step: &'static str,
    },
    /// The bus connection broke during a call (closed, reset, unreadable): the call may be
    /// asked again on a fresh connection.
    #[error("systemd {method}({arg}) failed: the bus connection broke: {detail}")]
    Transport {
        /// The method.
        method: &'static str,
        /// Its main argument.
        arg: String,
        /// What broke.
        detail: String,
    },
    /// A setting of the D-Bus client (an environment variable) is invalid.
    #[error("{name}: {detail}")]
    Setting {
        /// The environment variable.
        name: &'static str,
        /// The rule it breaks, and what it holds.
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

impl SystemdError {
    /// Whether the call never got systemd's answer (no answer in time, or the connection broke,
    /// or none could be made): worth asking again on a fresh connection when it was a read.
    pub fn is_unanswered(&self) -> bool {
        matches!(self, SystemdError::NoAnswer { .. } | SystemdError::Transport { .. } | SystemdError::Connect { .. })
    }
}

/// ` for ARG`, or nothing for a call without an argument.
fn for_arg(arg: &str) -> String {
    if arg.is_empty() {
        String::new()
    } else {
        format!(" for {arg}")
    }
}

/// `15 s`, `2.5 s`: a wait as an operator reads it.
pub(crate) fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The limit of each kind of D-Bus call: how long baton waits for systemd's answer before it
/// gives up on the call (a read is then asked once more on a fresh connection; a change never
/// is). A job's own wait (the start job until `health.timeout_sec`, a stop job until
/// `TimeoutStopSec`) is separate: this bounds only the call that enqueues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimeouts {
    /// Reads: unit properties, processes, unit files; also making a connection.
    pub read: Duration,
    /// Changes: enqueueing a start or stop job, enable, disable, reset-failed, subscribing.
    pub change: Duration,
    /// `Manager.Reload` (daemon-reload), which answers only once every unit file is re-read.
    pub reload: Duration,
}

impl Default for CallTimeouts {
    fn default() -> Self {
        CallTimeouts { read: Duration::from_secs(15), change: Duration::from_secs(30), reload: Duration::from_secs(90) }
    }
}

/// The environment variables that override [`CallTimeouts`], in whole seconds (1 to 3600).
pub(crate) const READ_TIMEOUT_ENV: &str = "BATON_DBUS_READ_TIMEOUT_SEC";
/// See [`READ_TIMEOUT_ENV`].
pub(crate) const CHANGE_TIMEOUT_ENV: &str = "BATON_DBUS_CHANGE_TIMEOUT_SEC";
/// See [`READ_TIMEOUT_ENV`].
pub(crate) const RELOAD_TIMEOUT_ENV: &str = "BATON_DBUS_RELOAD_TIMEOUT_SEC";

/// The variables that override the limits of systemd calls (`CallTimeouts`), each with what it
/// bounds and its default, for front-ends' help and manual pages.
pub const TIMEOUT_VARIABLES: [(&str, &str); 3] = [
    (READ_TIMEOUT_ENV, "seconds baton waits for systemd to answer a read or to connect (default 15)"),
    (CHANGE_TIMEOUT_ENV, "seconds baton waits for systemd to take a change: a job, enable, disable (default 30)"),
    (RELOAD_TIMEOUT_ENV, "seconds baton waits for systemd's daemon-reload (default 90)"),
];

impl CallTimeouts {
    /// The defaults, with what [`READ_TIMEOUT_ENV`], [`CHANGE_TIMEOUT_ENV`] and
    /// [`RELOAD_TIMEOUT_ENV`] set.
    pub fn from_env() -> Result<Self, SystemdError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`CallTimeouts::from_env`] over any lookup (the tests').
    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SystemdError> {
        let mut t = CallTimeouts::default();
        for (name, slot) in
            [(READ_TIMEOUT_ENV, &mut t.read), (CHANGE_TIMEOUT_ENV, &mut t.change), (RELOAD_TIMEOUT_ENV, &mut t.reload)]
        {
            let Some(value) = get(name) else { continue };
            match value.trim().parse::<u64>() {
                Ok(secs @ 1..=3600) => *slot = Duration::from_secs(secs),
                _ => {
                    return Err(SystemdError::Setting {
                        name,
                        detail: format!("must be a whole number of seconds from 1 to 3600, not {value:?}"),
                    })
                }
            }
        }
        Ok(t)
    }
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

    /// What happened on the way since the last call of this method, for the run's warnings and
    /// progress: e.g. a read systemd did not answer in time that a fresh connection then got an
    /// answer to. Empty by default.
    fn take_notes(&self) -> Vec<String> {
        Vec::new()
    }
}
