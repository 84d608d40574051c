//! A hand-written, in-memory fake of [`Systemd`] for fast unit tests of the planning logic.
//! It keeps unit states in a map and records every call; it never replaces the real-systemd
//! integration tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{JobResult, Systemd, SystemdError, UnitStatus};

/// One unit as the fake sees it.
#[derive(Debug, Clone, Default)]
struct FakeUnit {
    active: bool,
    /// Started, but not active yet (see [`FakeSystemd::start_times_out`]).
    activating: bool,
    failed: bool,
    enabled: bool,
    main_pid: u32,
    /// What the next start returns (Done by default).
    start_result: Option<JobResult>,
}

#[derive(Debug, Default)]
struct Inner {
    units: BTreeMap<String, FakeUnit>,
    calls: Vec<String>,
    next_pid: u32,
    /// Unit files systemd knows elsewhere, as [`FakeSystemd::set_unit_file`] set them.
    files: BTreeMap<String, std::path::PathBuf>,
    /// Calls systemd will not answer, by D-Bus method: how many more times, and the wait each
    /// reports (as [`FakeSystemd::no_answer`] set them).
    unanswered: BTreeMap<&'static str, (usize, Duration)>,
    /// A [`FakeSystemd::no_answer`] that takes effect once the unit named first has started.
    armed: Option<(String, &'static str, usize, Duration)>,
    /// Units whose next start job's end never arrives, and whether they are active meanwhile.
    start_times_out: BTreeMap<String, bool>,
}

/// An in-memory systemd: units start, stop, enable and disable; every call is recorded.
#[derive(Debug, Default)]
pub struct FakeSystemd {
    inner: Mutex<Inner>,
}

impl FakeSystemd {
    /// An empty fake.
    pub fn new() -> Self {
        FakeSystemd { inner: Mutex::new(Inner { next_pid: 1000, ..Inner::default() }) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Makes the next start of `unit` end with `result` (e.g. [`JobResult::Failed`]).
    pub fn fail_next_start(&self, unit: &str, result: JobResult) {
        self.with(|i| i.units.entry(unit.to_owned()).or_default().start_result = Some(result));
    }

    /// Makes the next `times` calls of the D-Bus method `method` (`GetUnit` for
    /// [`Systemd::unit_status`], `GetUnitProcesses`, `StartUnit`, `StopUnit`, `Reload`,
    /// `EnableUnitFiles`, `DisableUnitFiles`, `ResetFailedUnit`, `ListUnitFilesByPatterns`) fail
    /// at once with [`SystemdError::NoAnswer`] reporting a wait of `waited`, as a stalled bus would
    /// after that long; the call has no effect. Each is recorded as `no answer METHOD ARG`.
    pub fn no_answer(&self, method: &'static str, times: usize, waited: Duration) {
        self.with(|i| i.unanswered.insert(method, (times, waited)));
    }

    /// [`FakeSystemd::no_answer`], taking effect once `unit` has started (as a bus that stalls
    /// while baton waits for the release to become ready).
    pub fn no_answer_once_started(&self, unit: &str, method: &'static str, times: usize, waited: Duration) {
        self.with(|i| i.armed = Some((unit.to_owned(), method, times, waited)));
    }

    /// Makes the next start of `unit` fail with [`SystemdError::JobTimeout`] (its `JobRemoved`
    /// never arrived), the unit active (`active`) or still activating meanwhile.
    pub fn start_times_out(&self, unit: &str, active: bool) {
        self.with(|i| i.start_times_out.insert(unit.to_owned(), active));
    }

    /// Fails the call when [`FakeSystemd::no_answer`] said so.
    fn answer(&self, method: &'static str, arg: &str) -> Result<(), SystemdError> {
        self.with(|i| match i.unanswered.get_mut(method) {
            Some((times, waited)) if *times > 0 => {
                *times -= 1;
                i.calls.push(format!("no answer {method} {arg}"));
                Err(SystemdError::NoAnswer { method, arg: arg.to_owned(), waited: *waited })
            }
            _ => Ok(()),
        })
    }

    /// Marks `unit` running (as if started before the test).
    pub fn set_running(&self, unit: &str, enabled: bool) {
        self.with(|i| {
            i.next_pid += 1;
            let pid = i.next_pid;
            let u = i.units.entry(unit.to_owned()).or_default();
            u.active = true;
            u.enabled = enabled;
            u.main_pid = pid;
        });
    }

    /// Makes systemd know `unit` from the file `path` (e.g. another package's unit).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // for the front-ends' tests
    pub fn set_unit_file(&self, unit: &str, path: &str) {
        self.with(|i| i.files.insert(unit.to_owned(), path.into()));
    }

    /// Every call so far, e.g. `start app-v2.service`.
    pub fn calls(&self) -> Vec<String> {
        self.with(|i| i.calls.clone())
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.with(|i| i.calls.clear());
    }

    /// Whether `unit` is active.
    pub fn is_active(&self, unit: &str) -> bool {
        self.with(|i| i.units.get(unit).is_some_and(|u| u.active))
    }

    /// Whether `unit` is enabled.
    pub fn is_enabled(&self, unit: &str) -> bool {
        self.with(|i| i.units.get(unit).is_some_and(|u| u.enabled))
    }
}

impl Systemd for FakeSystemd {
    fn reload(&self) -> Result<(), SystemdError> {
        self.answer("Reload", "")?;
        self.with(|i| i.calls.push("reload".to_owned()));
        Ok(())
    }

    fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        self.answer("GetUnit", unit)?;
        Ok(self.with(|i| {
            let known = i.units.get(unit).cloned();
            let load_state = if known.is_some() { "loaded" } else { super::NOT_LOADED };
            let u = known.unwrap_or_default();
            UnitStatus {
                load_state: load_state.to_owned(),
                active_state: if u.active {
                    "active"
                } else if u.activating {
                    "activating"
                } else if u.failed {
                    "failed"
                } else {
                    "inactive"
                }
                .to_owned(),
                sub_state: if u.active { "running" } else { "dead" }.to_owned(),
                unit_file_state: if u.enabled { "enabled" } else { "disabled" }.to_owned(),
                main_pid: if u.active { u.main_pid } else { 0 },
                ..UnitStatus::default()
            }
        }))
    }

    fn unit_file_path(&self, unit: &str) -> Result<Option<std::path::PathBuf>, SystemdError> {
        self.answer("ListUnitFilesByPatterns", unit)?;
        Ok(self.with(|i| i.files.get(unit).cloned()))
    }

    fn start(&self, unit: &str, timeout: Duration) -> Result<JobResult, SystemdError> {
        self.answer("StartUnit", unit)?;
        let times_out = self.with(|i| i.start_times_out.remove(unit));
        let result = self.with(|i| {
            i.calls.push(format!("start {unit}"));
            i.next_pid += 1;
            let pid = i.next_pid;
            let u = i.units.entry(unit.to_owned()).or_default();
            if u.active {
                return JobResult::Done;
            }
            let result = u.start_result.take().unwrap_or(JobResult::Done);
            if result == JobResult::Done {
                u.active = true;
                u.failed = false;
                u.main_pid = pid;
            } else {
                u.failed = true;
            }
            if i.armed.as_ref().is_some_and(|(armed, ..)| armed == unit) {
                if let Some((_, method, times, waited)) = i.armed.take() {
                    i.unanswered.insert(method, (times, waited));
                }
            }
            result
        });
        match times_out {
            None => Ok(result),
            Some(active) => {
                self.with(|i| {
                    if let Some(u) = i.units.get_mut(unit).filter(|_| !active) {
                        (u.active, u.activating) = (false, true);
                    }
                });
                Err(SystemdError::JobTimeout { method: "StartUnit", unit: unit.to_owned(), waited: timeout })
            }
        }
    }

    fn stop(&self, unit: &str, _timeout: Duration) -> Result<JobResult, SystemdError> {
        self.answer("StopUnit", unit)?;
        Ok(self.with(|i| {
            i.calls.push(format!("stop {unit}"));
            let u = i.units.entry(unit.to_owned()).or_default();
            (u.active, u.activating) = (false, false);
            u.main_pid = 0;
            JobResult::Done
        }))
    }

    fn enable(&self, units: &[String]) -> Result<bool, SystemdError> {
        self.answer("EnableUnitFiles", &units.join(" "))?;
        Ok(self.with(|i| {
            i.calls.push(format!("enable {}", units.join(" ")));
            let mut changed = false;
            for unit in units {
                let u = i.units.entry(unit.clone()).or_default();
                changed |= !u.enabled;
                u.enabled = true;
            }
            changed
        }))
    }

    fn disable(&self, units: &[String]) -> Result<bool, SystemdError> {
        self.answer("DisableUnitFiles", &units.join(" "))?;
        Ok(self.with(|i| {
            i.calls.push(format!("disable {}", units.join(" ")));
            let mut changed = false;
            for unit in units {
                let u = i.units.entry(unit.clone()).or_default();
                changed |= u.enabled;
                u.enabled = false;
            }
            changed
        }))
    }

    fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
        self.answer("ResetFailedUnit", unit)?;
        self.with(|i| {
            if let Some(u) = i.units.get_mut(unit) {
                u.failed = false;
            }
        });
        Ok(())
    }

    fn unit_pids(&self, unit: &str) -> Result<Vec<u32>, SystemdError> {
        self.answer("GetUnitProcesses", unit)?;
        Ok(self.with(|i| i.units.get(unit).filter(|u| u.active).map(|u| vec![u.main_pid]).unwrap_or_default()))
    }

    fn journal(&self, unit: &str, _lines: usize) -> Vec<String> {
        vec![format!("{unit}: fake journal line")]
    }
}
