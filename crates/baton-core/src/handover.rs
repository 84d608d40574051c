//! Carries out a plan: writes units, starts the new release, waits until it is really ready,
//! lets both run for `observe_sec`, then enables it and has systemd stop the old one. When the
//! new release is not ready in time or turns unhealthy, it is stopped and the old one keeps
//! serving, untouched (a rollback).

use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::lock::{self, LockError};
use crate::migrate::{self, MigrateStatus};
use crate::plan::{self, Migrate, Plan, PlanError, Step};
use crate::probe;
use crate::render::{self, RenderError};
use crate::result::{Failure, FailureKind, FileDiff, Outcome};
use crate::secrets;
use crate::spec::{Ident, ServiceSpec, State};
use crate::state::{self, StateError};
use crate::systemd::{JobResult, Systemd, SystemdError};
use crate::unit_dir::{self, DiskError};

/// How many journal lines a failure report carries.
pub const JOURNAL_LINES: usize = 15;

/// Fault injection for the reliability tests: `BATON_PAUSE_AFTER=<step kind>` (`write`,
/// `reload`, `start`, `restart`, `migrate`, `enable`, `disable`, `stop`, `remove`) makes a run
/// stop after the first step of that kind and wait there (at most 10 minutes), so that a test
/// can `kill -9` it at exactly that point.
pub const PAUSE_AFTER_ENV: &str = "BATON_PAUSE_AFTER";

/// The exit status of a run paused by [`PAUSE_AFTER_ENV`] that nobody killed: outside the
/// CLI's documented statuses (0 to 5), so a test cannot mistake it for a real outcome.
pub const PAUSE_EXIT_STATUS: i32 = 99;

fn pause_if(kind: &str, step: &Step) {
    if step.kind() == kind {
        eprintln!("baton: paused after {} ({PAUSE_AFTER_ENV})", step.describe());
        sleep(Duration::from_secs(600));
        std::process::exit(PAUSE_EXIT_STATUS);
    }
}

/// Without a port to probe, how long a new release must stay up to count as ready.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Options of a run that are not part of the spec.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Plan only; touch nothing.
    pub check: bool,
    /// Report the text before and after of every unit file written or removed.
    pub diff: bool,
    /// Where the per-service locks live.
    pub lock_dir: PathBuf,
    /// How long to wait for another run of the same service.
    pub lock_timeout: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            check: false,
            diff: false,
            lock_dir: PathBuf::from(lock::DEFAULT_DIR),
            lock_timeout: Duration::from_secs(60),
        }
    }
}

/// What a run reports while it works, for people watching a terminal.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A step begins.
    Step(String),
    /// A wait goes on: what for, how long so far, the limit.
    Waiting {
        /// e.g. `app-v2.service to listen on :8080`.
        what: String,
        /// Time waited so far.
        elapsed: Duration,
        /// The limit.
        limit: Duration,
    },
    /// A step ended.
    Done(String),
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
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
    /// The new release never became ready or turned unhealthy; it was stopped.
    #[error("{unit} {reason}; {aftermath}")]
    NotReady {
        /// The new release's unit.
        unit: String,
        /// Why it is not ready.
        reason: String,
        /// What baton did about it.
        aftermath: String,
        /// The release was restarted in place (same version, new unit text): the one that
        /// served before is the one that failed, so nothing serves now.
        in_place: bool,
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
            ApplyError::Systemd(SystemdError::Connect { .. } | SystemdError::Call { .. }) => FailureKind::Environment,
            ApplyError::Systemd(SystemdError::JobTimeout { .. }) => FailureKind::Failed,
            ApplyError::NotReady { in_place: false, .. } => FailureKind::RolledBack,
            ApplyError::NotReady { in_place: true, .. } | ApplyError::StopFailed { .. } => FailureKind::Failed,
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
    /// The failed release's last journal lines.
    pub journal: Vec<String>,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl From<ApplyFailure> for Failure {
    fn from(f: ApplyFailure) -> Self {
        let kind = f.error.kind();
        let mut msg = f.error.to_string();
        if !f.journal.is_empty() {
            msg.push_str(". Last journal lines:\n");
            msg.push_str(&f.journal.join("\n"));
        }
        Failure {
            failed: true,
            msg,
            name: Some(f.name),
            version: f.version,
            changed: f.changed,
            rolled_back: f.rolled_back,
            actions: f.actions,
            journal: f.journal,
            elapsed_ms: f.elapsed_ms,
            kind,
        }
    }
}

/// The run in progress: what it has done so far.
struct Run<'a> {
    spec: &'a ServiceSpec,
    sd: &'a dyn Systemd,
    progress: &'a mut dyn FnMut(Progress),
    started: Instant,
    actions: Vec<String>,
    warnings: Vec<String>,
    changed: bool,
    /// The unit files written or removed so far, before and after.
    diff: Vec<FileDiff>,
}

/// Brings the service to the spec: validate (done by the caller), lock, read state, plan, then
/// carry the plan out (or, in check mode, report it).
pub fn apply(
    spec: &ServiceSpec,
    sd: &dyn Systemd,
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome, Box<ApplyFailure>> {
    let started = Instant::now();
    let mut run = Run {
        spec,
        sd,
        progress,
        started,
        actions: Vec::new(),
        warnings: Vec::new(),
        changed: false,
        diff: Vec::new(),
    };
    let mut version_now = None;
    let result = run.apply(opts, &mut version_now);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(mut outcome) => {
            outcome.elapsed_ms = elapsed_ms;
            Ok(outcome)
        }
        Err((error, rolled_back, journal)) => Err(Box::new(ApplyFailure {
            error,
            name: spec.name.to_string(),
            version: version_now,
            changed: run.changed,
            rolled_back,
            actions: run.actions,
            journal,
            elapsed_ms,
        })),
    }
}

type RunError = (ApplyError, bool, Vec<String>);

fn plain(e: impl Into<ApplyError>) -> RunError {
    (e.into(), false, Vec::new())
}

impl Run<'_> {
    fn apply(&mut self, opts: &ApplyOptions, version_now: &mut Option<String>) -> Result<Outcome, RunError> {
        let spec = self.spec;
        let _lock = if opts.check {
            None
        } else {
            (self.progress)(Progress::Step(format!("lock service {}", spec.name)));
            Some(lock::acquire(&opts.lock_dir, spec.name.as_str(), opts.lock_timeout).map_err(plain)?)
        };
        // A spec without a release (`stopped`/`absent` with only `name`) reads the state with a
        // unit name no release can have (versions are never empty), as `status` does.
        let target = spec.unit().unwrap_or_else(|| format!("{}-.service", spec.name));
        let state = state::read(self.sd, &spec.unit_dir, spec.name.as_str(), &target).map_err(plain)?;
        *version_now = state.active_version();
        let rendered = match (spec.state, &spec.version) {
            (State::Absent, _) | (_, None) => None,
            _ => Some(render::render(spec).map_err(plain)?),
        };
        let migrate = match migrate::read() {
            Some(true) => Migrate::On,
            Some(false) => Migrate::Off,
            None => Migrate::Unsupported,
        };
        let plan = plan::plan(spec, &state, rendered.as_deref(), migrate).map_err(plain)?;
        self.warnings.extend(plan.warnings.iter().cloned());
        if !opts.check {
            unit_dir::clean_temp_files(&spec.unit_dir, &target);
            secrets::clean_temp_files(&spec.unit_dir, &target);
        }

        if opts.check {
            self.actions = plan.steps.iter().map(Step::describe).collect();
            self.diff = plan.steps.iter().filter_map(|step| file_diff(step, &state)).collect();
            self.changed = plan.changes();
            let msg = if self.changed {
                format!("check mode: {} step(s) would run", plan.steps.len())
            } else {
                format!("{} is already as the spec asks; nothing would change", spec.name)
            };
            return Ok(self.outcome(&plan, opts, msg, target_version(spec)));
        }

        let pause_after = std::env::var(PAUSE_AFTER_ENV).ok();
        for step in &plan.steps {
            self.execute(step, &state, version_now)?;
            if let Some(kind) = &pause_after {
                pause_if(kind, step);
            }
        }
        let active = target_version(spec);
        *version_now = active.clone();
        let msg = self.summary(&plan);
        Ok(self.outcome(&plan, opts, msg, active))
    }

    fn outcome(&self, plan: &Plan, opts: &ApplyOptions, msg: String, version: Option<String>) -> Outcome {
        Outcome {
            changed: self.changed,
            msg,
            name: self.spec.name.to_string(),
            version,
            previous_version: plan.previous_version.clone(),
            unit: self.spec.unit(),
            actions: self.actions.clone(),
            rolled_back: false,
            elapsed_ms: 0,
            warnings: self.warnings.clone(),
            diff: opts.diff.then(|| self.diff.clone()),
        }
    }

    fn summary(&self, plan: &Plan) -> String {
        let spec = self.spec;
        let version = spec.version.as_ref().map(Ident::as_str).unwrap_or_default();
        if !self.changed {
            return match spec.state {
                State::Started => {
                    format!("{} {version} is active; nothing changed", spec.name)
                }
                State::Stopped => format!("{} is stopped; nothing changed", spec.name),
                State::Absent => format!("{} is absent; nothing changed", spec.name),
            };
        }
        let secs = self.started.elapsed().as_secs_f64();
        match (spec.state, plan.previous_version.as_deref()) {
            (State::Started, Some(prev)) if prev != version => {
                format!("{} handed over from {prev} to {version} in {secs:.1} s", spec.name)
            }
            (State::Started, _) => {
                format!("{} {version} is active ({secs:.1} s)", spec.name)
            }
            (State::Stopped, _) => format!("{} stopped ({secs:.1} s)", spec.name),
            (State::Absent, _) => format!("{} removed ({secs:.1} s)", spec.name),
        }
    }

    fn record(&mut self, action: String) {
        (self.progress)(Progress::Done(action.clone()));
        self.actions.push(action);
        self.changed = true;
    }

    fn execute(
        &mut self,
        step: &Step,
        state: &state::ServiceState,
        version_now: &mut Option<String>,
    ) -> Result<(), RunError> {
        (self.progress)(Progress::Step(step.describe()));
        match step {
            Step::WriteUnit { unit, text, .. } => {
                unit_dir::write_atomic(&self.spec.unit_dir, unit, text).map_err(plain)?;
                self.diff.extend(file_diff(step, state));
                self.record(step.describe());
            }
            Step::WriteSecrets { unit, text, .. } => {
                secrets::write(&self.spec.unit_dir, unit, text).map_err(plain)?;
                self.diff.extend(file_diff(step, state));
                self.record(step.describe());
            }
            Step::RemoveSecrets { unit, .. } => {
                secrets::remove(&self.spec.unit_dir, unit).map_err(plain)?;
                self.diff.extend(file_diff(step, state));
                self.record(step.describe());
            }
            Step::Reload => {
                self.sd.reload().map_err(plain)?;
                self.record(step.describe());
            }
            Step::StartAndWait { unit, start } => {
                let had_old = state.running().any(|r| r.unit() != unit);
                if *start {
                    self.changed = true;
                }
                match self.start_and_wait(unit, *start) {
                    Ok(ready) => {
                        if *start {
                            self.record(format!("start {unit}"));
                        }
                        self.actions.push(ready);
                    }
                    Err(reason) => return Err(self.roll_back(unit, reason, had_old, false)),
                }
            }
            Step::Restart { unit } => {
                self.stop_unit(unit, self.spec.timeout_stop_sec)?;
                self.record(format!("stop {unit}"));
                *version_now = None;
                match self.start_and_wait(unit, true) {
                    Ok(ready) => {
                        self.record(format!("start {unit}"));
                        self.actions.push(ready);
                    }
                    Err(reason) => return Err(self.roll_back(unit, reason, false, true)),
                }
            }
            Step::MigrateRequests => match migrate::ensure_on(false) {
                Ok(MigrateStatus::TurnedOn) => self.record(step.describe()),
                Ok(MigrateStatus::AlreadyOn) => {}
                Ok(MigrateStatus::Unsupported) => self.warnings.push(
                    "this kernel lacks net.ipv4.tcp_migrate_req: queued connections of the old release may be reset"
                        .to_owned(),
                ),
                Err(e) => self.warnings.push(format!("could not set net.ipv4.tcp_migrate_req=1: {e}")),
            },
            Step::Enable { units } => {
                self.sd.enable(units).map_err(plain)?;
                self.record(step.describe());
            }
            Step::Disable { units } => {
                self.sd.disable(units).map_err(plain)?;
                self.record(step.describe());
            }
            Step::Stop { unit, version, timeout_stop_sec } => {
                let t0 = Instant::now();
                self.stop_unit(unit, *timeout_stop_sec)?;
                let took = t0.elapsed();
                if took >= Duration::from_secs(*timeout_stop_sec) {
                    self.warnings.push(format!(
                        "{unit} ({version}) did not exit within TimeoutStopSec={timeout_stop_sec}s after SIGTERM; \
                         systemd killed it with SIGKILL after {:.1} s",
                        took.as_secs_f64()
                    ));
                }
                self.record(format!("stop {unit} ({:.3} s)", took.as_secs_f64()));
            }
            Step::RemoveUnit { path, .. } => {
                unit_dir::remove(path).map_err(plain)?;
                self.diff.extend(file_diff(step, state));
                self.record(step.describe());
            }
        }
        Ok(())
    }

    fn stop_unit(&mut self, unit: &str, timeout_stop_sec: u64) -> Result<(), RunError> {
        // systemd escalates to SIGKILL after TimeoutStopSec; allow it that long plus a margin.
        let limit = Duration::from_secs(timeout_stop_sec).saturating_add(Duration::from_secs(15));
        let result = self.sd.stop(unit, limit).map_err(plain)?;
        let _ = self.sd.reset_failed(unit);
        match result {
            JobResult::Done | JobResult::Skipped => Ok(()),
            other => Err(plain(ApplyError::StopFailed { unit: unit.to_owned(), result: other.as_str().to_owned() })),
        }
    }

    /// Stops a release that failed to become ready; the old one keeps serving.
    /// `in_place`: the release was restarted in place, so nothing serves once it is stopped.
    fn roll_back(&mut self, unit: &str, reason: String, had_old: bool, in_place: bool) -> RunError {
        (self.progress)(Progress::Step(format!("roll back: stop {unit}")));
        let journal = self.sd.journal(unit, JOURNAL_LINES);
        let stopped = self.sd.stop(unit, Duration::from_secs(self.spec.timeout_stop_sec.saturating_add(15)));
        let _ = self.sd.reset_failed(unit);
        let aftermath = match (&stopped, had_old) {
            (Ok(_), true) => format!("baton stopped {unit}; the previous release is still serving"),
            (Ok(_), false) => format!("baton stopped {unit}"),
            (Err(e), _) => format!("stopping {unit} failed too: {e}"),
        };
        self.actions.push(format!("stop {unit} (rolled back)"));
        (ApplyError::NotReady { unit: unit.to_owned(), reason, aftermath, in_place }, true, journal)
    }

    /// Starts `unit` (unless `start` is false) and waits until it is ready: job done, active,
    /// probe passing, listening on the port; then observes it for `observe_sec`.
    fn start_and_wait(&mut self, unit: &str, start: bool) -> Result<String, String> {
        let spec = self.spec;
        let limit = Duration::from_secs(spec.health.timeout_sec);
        let t0 = Instant::now();
        if start {
            match self.sd.start(unit, limit) {
                Ok(JobResult::Done) => {}
                Ok(other) => {
                    let st = self.sd.unit_status(unit).unwrap_or_default();
                    return Err(format!(
                        "failed to start: job result '{}' (state {}/{}, exit status {})",
                        other.as_str(),
                        st.active_state,
                        st.sub_state,
                        st.exec_main_status
                    ));
                }
                Err(SystemdError::JobTimeout { .. }) => {
                    let why = if spec.service_type == crate::spec::ServiceType::Notify {
                        " (Type=notify: READY=1 never arrived)"
                    } else {
                        ""
                    };
                    return Err(format!("was not started within health.timeout_sec={}s{why}", spec.health.timeout_sec));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let interval = Duration::from_millis(spec.health.interval_ms);
        let first_pid;
        let mut last_problem;
        loop {
            match self.check_ready(unit, interval) {
                Ok(pid) => {
                    first_pid = pid;
                    break;
                }
                Err(Fatal(problem)) => return Err(problem),
                Err(Retry(problem)) => last_problem = problem,
            }
            let elapsed = t0.elapsed();
            if elapsed >= limit {
                return Err(format!(
                    "was not ready within health.timeout_sec={}s: {last_problem}",
                    spec.health.timeout_sec
                ));
            }
            (self.progress)(Progress::Waiting { what: format!("{unit} {last_problem}"), elapsed, limit });
            sleep(interval.min(limit.saturating_sub(elapsed)));
        }
        if spec.port.is_none() {
            // No probe to ask: the release must at least stay up, with the same main process,
            // for a moment (a binary that exits at once is not ready).
            let settle = SETTLE.min(limit.saturating_sub(t0.elapsed()));
            sleep(settle);
            match self.check_ready(unit, interval) {
                Ok(pid) if pid == first_pid => {}
                Ok(pid) => return Err(format!("restarted right after starting (main PID {first_pid} became {pid})")),
                Err(Fatal(p) | Retry(p)) => return Err(p),
            }
        }
        let ready_after = t0.elapsed();

        if spec.health.observe_sec > 0 {
            let observe = Duration::from_secs(spec.health.observe_sec);
            let o0 = Instant::now();
            while o0.elapsed() < observe {
                (self.progress)(Progress::Waiting {
                    what: format!("observing {unit} while both releases serve"),
                    elapsed: o0.elapsed(),
                    limit: observe,
                });
                sleep(interval.min(observe.saturating_sub(o0.elapsed())));
                for _ in 0..3 {
                    match self.check_ready(unit, interval) {
                        Ok(pid) if pid == first_pid => {}
                        Ok(pid) => {
                            return Err(format!(
                                "restarted during health.observe_sec={}s (main PID {first_pid} became {pid})",
                                spec.health.observe_sec
                            ))
                        }
                        Err(Fatal(p) | Retry(p)) => {
                            return Err(format!(
                                "turned unhealthy during health.observe_sec={}s after {:.1} s: {p}",
                                spec.health.observe_sec,
                                o0.elapsed().as_secs_f64()
                            ))
                        }
                    }
                }
            }
        }
        let port = spec.port.map(|p| format!(", listening on :{p}")).unwrap_or_default();
        Ok(format!("ready {unit} after {:.3} s{port}", ready_after.as_secs_f64()))
    }

    /// One readiness check; Ok(main PID) when ready. Its probe counts only when answered by
    /// this unit's own processes (see [`probe::http`]), during readiness and `observe_sec` alike.
    fn check_ready(&self, unit: &str, interval: Duration) -> Result<u32, Check> {
        let spec = self.spec;
        let st = self.sd.unit_status(unit).map_err(|e| Retry(e.to_string()))?;
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
        let probe_timeout = interval.max(Duration::from_millis(500)).min(Duration::from_secs(5));
        if let Some(port) = spec.port {
            // A probe counts only when a process of this unit served it: with SO_REUSEPORT the
            // old release may be the one the kernel hands the connection to.
            let owners = || self.sd.unit_pids(unit).map_err(|e| e.to_string());
            if let Some(path) = &spec.health.http {
                probe::http(port, path, probe_timeout, &owners)
                    .map_err(|e| Retry(format!("fails its HTTP probe GET {path}: {e}")))?;
            } else if spec.health.tcp {
                probe::tcp(port, probe_timeout, &owners)
                    .map_err(|e| Retry(format!("fails its TCP probe on :{port}: {e}")))?;
            }
            let pids = self.sd.unit_pids(unit).map_err(|e| Retry(e.to_string()))?;
            let listening = probe::listening_pids(&pids, port).map_err(|e| Retry(e.to_string()))?;
            if listening.is_empty() {
                return Err(Retry(format!("does not listen on :{port} yet")));
            }
        }
        Ok(st.main_pid)
    }
}

/// A readiness check that failed: worth retrying, or final (the release exited).
enum Check {
    Retry(String),
    Fatal(String),
}
use Check::{Fatal, Retry};

/// The release active once the spec is applied: `version` when started, none otherwise.
fn target_version(spec: &ServiceSpec) -> Option<String> {
    spec.version.as_ref().filter(|_| spec.state == State::Started).map(Ident::to_string)
}

/// The diff entry of a step that writes or removes a unit file: its text before (as read when
/// the run began; empty for a new file) and after (empty once removed); for a secret file, only
/// [`secrets::DIFF_PRESENT`] and [`secrets::DIFF_CHANGED`]. None for other steps.
fn file_diff(step: &Step, state: &state::ServiceState) -> Option<FileDiff> {
    let text_on_disk = |path: &std::path::Path| {
        if path == state.target_path {
            return state.target_text.clone().unwrap_or_default();
        }
        state.releases.iter().find(|r| r.file.path == path).map(|r| r.file.text.clone()).unwrap_or_default()
    };
    match step {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;
    use crate::systemd::fake::FakeSystemd;

    fn spec(dir: &std::path::Path, version: &str, extra: &str) -> ServiceSpec {
        let json = format!(
            r#"{{"name":"app","version":"{version}","exec_start":["/bin/app"],"unit_dir":"{}"{extra}}}"#,
            dir.display()
        );
        parse(json.as_bytes()).expect("valid")
    }

    fn opts(dir: &std::path::Path) -> ApplyOptions {
        ApplyOptions { lock_dir: dir.join("locks"), ..ApplyOptions::default() }
    }

    #[test]
    fn deploy_then_noop_then_handover() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        let mut events = Vec::new();
        let s1 = spec(dir.path(), "v1", "");
        let out = apply(&s1, &sd, &opts(dir.path()), &mut |e| events.push(e)).expect("deploy");
        assert!(out.changed);
        assert_eq!(out.version.as_deref(), Some("v1"));
        assert!(sd.is_active("app-v1.service") && sd.is_enabled("app-v1.service"));
        assert!(!events.is_empty());

        sd.clear_calls();
        let out = apply(&s1, &sd, &opts(dir.path()), &mut |_| {}).expect("noop");
        assert!(!out.changed, "{out:?}");
        assert!(sd.calls().is_empty(), "{:?}", sd.calls());

        let s2 = spec(dir.path(), "v2", "");
        let out = apply(&s2, &sd, &opts(dir.path()), &mut |_| {}).expect("handover");
        assert_eq!(out.previous_version.as_deref(), Some("v1"));
        assert_eq!(
            sd.calls(),
            ["start app-v2.service", "enable app-v2.service", "disable app-v1.service", "stop app-v1.service"]
        );
        assert!(sd.is_active("app-v2.service") && !sd.is_active("app-v1.service"));
        assert!(out.msg.contains("handed over from v1 to v2"), "{}", out.msg);
    }

    #[test]
    fn failed_start_rolls_back_and_keeps_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("deploy");
        sd.fail_next_start("app-v2.service", JobResult::Failed);
        let err = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect_err("fails");
        assert!(err.rolled_back);
        assert_eq!(err.version.as_deref(), Some("v1"));
        assert!(sd.is_active("app-v1.service") && sd.is_enabled("app-v1.service"));
        assert!(!sd.is_active("app-v2.service"));
        let failure = Failure::from(*err);
        assert_eq!(failure.kind, FailureKind::RolledBack);
        assert!(
            failure.msg.contains("job result 'failed'") && failure.msg.contains("previous release is still serving")
        );
        assert!(failure.msg.contains("fake journal line"));
    }

    #[test]
    fn failures_are_classified() {
        let kind = |r: Result<Outcome, Box<ApplyFailure>>| Failure::from(*r.expect_err("fails")).kind;

        // A release restarted in place that does not come back: nothing serves, not a rollback.
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("deploy");
        sd.fail_next_start("app-v1.service", JobResult::Failed);
        let changed = spec(dir.path(), "v1", r#","environment":{"A":"1"}"#);
        assert_eq!(kind(apply(&changed, &sd, &opts(dir.path()), &mut |_| {})), FailureKind::Failed);

        // The first release failing is rolled back (nothing served before, nothing serves now).
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        sd.fail_next_start("app-v1.service", JobResult::Failed);
        assert_eq!(
            kind(apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {})),
            FailureKind::RolledBack
        );

        // A unit file in the way that baton did not write: refused, left alone.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("app-v1.service"), "[Service]\nExecStart=/bin/true\n").expect("write");
        let sd = FakeSystemd::new();
        assert_eq!(kind(apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {})), FailureKind::Refused);
        assert!(sd.calls().is_empty(), "{:?}", sd.calls());

        // The lock held by another run past the timeout: the environment.
        let dir = tempfile::tempdir().expect("tempdir");
        let held = lock::acquire(&dir.path().join("locks"), "app", Duration::ZERO).expect("lock");
        let o = ApplyOptions { lock_timeout: Duration::from_millis(100), ..opts(dir.path()) };
        assert_eq!(
            kind(apply(&spec(dir.path(), "v1", ""), &FakeSystemd::new(), &o, &mut |_| {})),
            FailureKind::Environment
        );
        drop(held);

        // A unit directory that cannot be written (a file stands where it should be).
        let dir = tempfile::tempdir().expect("tempdir");
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, "").expect("write");
        let s = spec(&not_a_dir, "v1", "");
        assert_eq!(kind(apply(&s, &FakeSystemd::new(), &opts(dir.path()), &mut |_| {})), FailureKind::Environment);
    }

    #[test]
    fn check_mode_touches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        let o = ApplyOptions { check: true, diff: true, ..opts(dir.path()) };
        let out = apply(&spec(dir.path(), "v1", ""), &sd, &o, &mut |_| {}).expect("check");
        assert!(out.changed);
        assert_eq!(out.actions[0], format!("write {}/app-v1.service", dir.path().display()));
        assert!(sd.calls().is_empty());
        assert!(std::fs::read_dir(dir.path()).expect("ls").next().is_none());
        let diff = out.diff.expect("diff");
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert_eq!(diff[0].path, dir.path().join("app-v1.service").display().to_string());
        assert!(diff[0].before.is_empty() && diff[0].after.contains("X-Baton-Version=v1"));
    }

    /// A spec with only `name` (and `unit_dir`) and the given state.
    fn name_only(dir: &std::path::Path, state: &str) -> ServiceSpec {
        let json = format!(r#"{{"name":"app","state":"{state}","unit_dir":"{}"}}"#, dir.display());
        parse(json.as_bytes()).expect("valid")
    }

    fn read(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    #[test]
    fn the_diff_has_one_entry_per_unit_file_written_or_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        let (v1, v2) = (dir.path().join("app-v1.service"), dir.path().join("app-v2.service"));
        apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
        let v1_text = read(&v1);

        // v2 with keep 0: writes v2's unit and removes v1's. Check mode plans the same diff as the
        // real run reports.
        let s2 = spec(dir.path(), "v2", r#","keep":0"#);
        let check = ApplyOptions { check: true, diff: true, ..opts(dir.path()) };
        let mut planned = apply(&s2, &sd, &check, &mut |_| {}).expect("check");
        let done = apply(&s2, &sd, &ApplyOptions { diff: true, ..opts(dir.path()) }, &mut |_| {}).expect("v2");
        let diff = done.diff.clone().expect("diff");
        assert_eq!(
            diff,
            [
                FileDiff { path: v2.display().to_string(), before: String::new(), after: read(&v2) },
                FileDiff { path: v1.display().to_string(), before: v1_text, after: String::new() },
            ]
        );
        assert!(!v1.exists());
        assert_eq!(planned.diff.as_ref(), Some(&diff), "check mode plans the diff the run reports");

        // The result as the front-ends print it.
        planned.elapsed_ms = 0;
        let json = serde_json::to_string_pretty(&crate::result::RunResult::Ok(planned)).expect("json");
        insta::assert_snapshot!(json.replace(&dir.path().display().to_string(), "/u"));

        // Nothing to write or remove: an empty diff; without diff requested, none.
        let again = apply(&s2, &sd, &ApplyOptions { diff: true, ..opts(dir.path()) }, &mut |_| {}).expect("again");
        assert_eq!(again.diff, Some(Vec::new()));
        assert_eq!(apply(&s2, &sd, &opts(dir.path()), &mut |_| {}).expect("again").diff, None);
    }

    #[test]
    fn stopped_and_absent_need_only_the_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
        apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v2");
        let diff = ApplyOptions { diff: true, ..opts(dir.path()) };

        // stopped: every release stopped, the files kept, enablement left as it was.
        let out = apply(&name_only(dir.path(), "stopped"), &sd, &diff, &mut |_| {}).expect("stopped");
        assert!(out.changed, "{out:?}");
        assert_eq!((out.version, out.unit, out.previous_version.as_deref()), (None, None, Some("v2")));
        assert!(!sd.is_active("app-v1.service") && !sd.is_active("app-v2.service"));
        assert!(sd.is_enabled("app-v2.service"));
        assert_eq!(unit_dir::releases(dir.path(), "app").expect("scan").len(), 2);
        assert_eq!(out.diff, Some(Vec::new()), "no file written or removed");
        let again = apply(&name_only(dir.path(), "stopped"), &sd, &diff, &mut |_| {}).expect("again");
        assert!(!again.changed && again.msg == "app is stopped; nothing changed", "{again:?}");

        // absent: every release disabled and removed, one diff entry per removed file.
        let (v1, v2) = (dir.path().join("app-v1.service"), dir.path().join("app-v2.service"));
        let texts = (read(&v1), read(&v2));
        let out = apply(&name_only(dir.path(), "absent"), &sd, &diff, &mut |_| {}).expect("absent");
        assert!(out.changed && out.version.is_none(), "{out:?}");
        assert!(unit_dir::releases(dir.path(), "app").expect("scan").is_empty());
        assert!(!sd.is_enabled("app-v2.service"));
        assert_eq!(
            out.diff.expect("diff"),
            [
                FileDiff { path: v1.display().to_string(), before: texts.0, after: String::new() },
                FileDiff { path: v2.display().to_string(), before: texts.1, after: String::new() },
            ]
        );
        let again = apply(&name_only(dir.path(), "absent"), &sd, &diff, &mut |_| {}).expect("again");
        assert!(!again.changed, "{again:?}");
    }

    #[test]
    fn a_changed_secret_is_a_change_diffed_without_its_value_and_removed_with_its_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        let diff = ApplyOptions { diff: true, ..opts(dir.path()) };
        let with = |v: &str, secret: &str, extra: &str| {
            spec(dir.path(), v, &format!(r#","secret_environment":{{"DB_PASSWORD":"{secret}"}}{extra}"#))
        };
        let file = crate::secrets::path(dir.path(), "app-v1.service");
        let out = apply(&with("v1", "hunter2", ""), &sd, &diff, &mut |_| {}).expect("v1");
        let json = serde_json::to_string(&out).expect("json");
        assert!(!json.contains("hunter2"), "{json}");
        assert!(std::fs::read_to_string(&file).expect("secret file").contains("DB_PASSWORD=\"hunter2\""));
        assert!(read(&dir.path().join("app-v1.service")).contains(&format!("EnvironmentFile={}", file.display())));

        // The same spec again: nothing to do.
        let again = apply(&with("v1", "hunter2", ""), &sd, &diff, &mut |_| {}).expect("again");
        assert!(!again.changed, "{again:?}");

        // Only the secret changed: planned (check mode) and done alike, a restart in place, the
        // diff says so without the value.
        let changed = with("v1", "hunter3", "");
        let check = ApplyOptions { check: true, ..diff.clone() };
        let planned = apply(&changed, &sd, &check, &mut |_| {}).expect("check");
        assert!(planned.changed);
        sd.clear_calls();
        let out = apply(&changed, &sd, &diff, &mut |_| {}).expect("changed secret");
        assert!(out.changed && out.warnings[0].contains("secret_environment"), "{out:?}");
        assert_eq!(sd.calls(), ["stop app-v1.service", "start app-v1.service"]);
        let entries = out.diff.clone().expect("diff");
        assert_eq!(planned.diff.as_ref(), Some(&entries));
        assert_eq!(
            entries,
            [FileDiff {
                path: file.display().to_string(),
                before: crate::secrets::DIFF_PRESENT.to_owned(),
                after: "secret_environment: changed (values hidden)\n".to_owned(),
            }]
        );
        let json = serde_json::to_string(&out).expect("json") + &serde_json::to_string(&planned).expect("json");
        assert!(!json.contains("hunter"), "{json}");
        assert!(std::fs::read_to_string(&file).expect("secret file").contains("hunter3"));

        // v2 with keep 0 removes v1's unit and secret file.
        apply(&with("v2", "hunter3", r#","keep":0"#), &sd, &diff, &mut |_| {}).expect("v2");
        assert!(!file.exists() && !dir.path().join("app-v1.service").exists());
        let v2 = crate::secrets::path(dir.path(), "app-v2.service");
        assert!(v2.exists());

        // Dropping secret_environment removes the file; absent removes every one.
        apply(&spec(dir.path(), "v2", ""), &sd, &diff, &mut |_| {}).expect("no secrets");
        assert!(!v2.exists() && !read(&dir.path().join("app-v2.service")).contains("EnvironmentFile"));
        apply(&with("v2", "x", ""), &sd, &diff, &mut |_| {}).expect("secrets again");
        let out = apply(&name_only(dir.path(), "absent"), &sd, &diff, &mut |_| {}).expect("absent");
        assert!(!v2.exists(), "{out:?}");
        assert!(out.actions.contains(&format!("remove {}", v2.display())), "{:?}", out.actions);
    }

    #[test]
    fn absent_removes_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
        apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v2");
        let out = apply(&spec(dir.path(), "v2", r#","state":"absent""#), &sd, &opts(dir.path()), &mut |_| {})
            .expect("absent");
        assert!(out.changed && out.version.is_none());
        assert!(unit_dir::releases(dir.path(), "app").expect("scan").is_empty());
        assert!(!sd.is_active("app-v2.service") && !sd.is_enabled("app-v2.service"));
    }
}
