//! Carries out a plan: writes units, starts the new release, waits until it is really ready,
//! lets both run for `observe_sec`, then enables it and has systemd stop the old one. When the
//! new release is not ready in time or turns unhealthy, it is stopped and the old one keeps
//! serving, untouched (a rollback).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the options, the progress events and the orchestrator: lock, read, plan, execute |
//! | [`error`](self::error) | [`ApplyError`], [`NotReady`], [`ApplyFailure`] |
//! | `steps.rs` | carrying out one step, stopping and rolling back a release, the diff of a step |
//! | `ready.rs` | the readiness and observe loop, following the spec's [`Readiness`](crate::spec::Readiness) |
//! | `summary.rs` | the result's one-sentence messages |

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lock::{self, LockWait};
use crate::migrate;
use crate::plan::{self, Plan, Step};
use crate::result::{FileDiff, Outcome};
use crate::secrets;
use crate::spec::{Ident, ServiceSpec, State};
use crate::state::{self, ServiceState};
use crate::systemd::Systemd;
use crate::unit::render::{self, RenderError};
use crate::unit_dir;

pub(crate) mod error;
#[cfg(test)]
mod instance_tests;
mod migration;
mod ready;
#[cfg(test)]
mod socket_tests;
#[cfg(test)]
mod stall_tests;
mod steps;
mod summary;

pub(crate) use error::{ApplyError, ApplyFailure, NotReady};

/// How many journal lines a failure report carries.
pub(crate) const JOURNAL_LINES: usize = 15;

/// The CLI's fault injection for the reliability tests: `BATON_PAUSE_AFTER=<step kind>`
/// (`write`, `reload`, `start`, `restart`, `migrate`, `enable`, `disable`, `stop`, `remove`,
/// `write-socket`, `stop-socket`, `remove-socket`)
/// makes a run stop after the first step of that kind and wait there, so that a test can
/// `kill -9` it at exactly that point. The library only calls [`ApplyOptions::after_step`]; the
/// CLI builds that hook from this variable.
pub const PAUSE_AFTER_ENV: &str = "BATON_PAUSE_AFTER";

/// The exit status of a run paused by [`PAUSE_AFTER_ENV`] that nobody killed: outside the
/// CLI's documented statuses (0 to 5), so a test cannot mistake it for a real outcome.
pub const PAUSE_EXIT_STATUS: i32 = 99;

/// A step a run has just carried out, as [`ApplyOptions::after_step`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDone<'a> {
    /// The step's kind, one word (see `Step::kind`).
    pub kind: &'static str,
    /// The step as an action line, e.g. `start app-v2.service`.
    pub action: &'a str,
}

/// A hook called after each step a run carries out (not in check mode): the reliability tests'
/// fault injection. It may block, or end the process; the library itself never does.
#[derive(Clone)]
pub struct AfterStep(Arc<dyn Fn(&StepDone<'_>) + Send + Sync>);

impl AfterStep {
    /// A hook calling `f`.
    pub fn new(f: impl Fn(&StepDone<'_>) + Send + Sync + 'static) -> Self {
        AfterStep(Arc::new(f))
    }
}

impl fmt::Debug for AfterStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AfterStep(..)")
    }
}

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
    /// Called after each step carried out (see [`AfterStep`]); none by default.
    pub after_step: Option<AfterStep>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            check: false,
            diff: false,
            lock_dir: PathBuf::from(lock::DEFAULT_DIR),
            lock_timeout: Duration::from_secs(60),
            after_step: None,
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
    /// Another run holds the service's lock: reported when found busy, then about once a
    /// second while waiting.
    WaitingForLock {
        /// The service.
        service: String,
        /// What the lock file says about its holder (`pid=… since=… cmd=…`).
        holder: String,
        /// Time waited so far.
        elapsed: Duration,
        /// The limit (`lock_timeout`).
        limit: Duration,
    },
    /// A step ended.
    Done(String),
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
    /// The release active now, as far as the run knows.
    version_now: Option<String>,
    /// Request migration: probed before the first old listener closes.
    migration: migration::Watch,
}

/// The target release's unit text: None for `absent`, and for a `stopped` spec that names no
/// release (nothing to render).
pub(crate) fn render_target(spec: &ServiceSpec) -> Result<Option<String>, RenderError> {
    match (spec.state, &spec.version) {
        (State::Absent, _) | (_, None) => Ok(None),
        _ => render::render(spec).map(Some),
    }
}

/// Brings the service to the spec: validate (done by the caller), render, lock, read state,
/// plan, then carry the plan out (or, in check mode, report it).
pub(crate) fn apply(
    spec: &ServiceSpec,
    sd: &dyn Systemd,
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome, Box<ApplyFailure>> {
    let started = Instant::now();
    match render_target(spec) {
        Ok(rendered) => apply_rendered(spec, rendered.as_deref(), sd, opts, progress),
        Err(e) => Err(Box::new(ApplyFailure {
            error: e.into(),
            name: spec.name.to_string(),
            version: None,
            changed: false,
            rolled_back: false,
            actions: Vec::new(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        })),
    }
}

/// [`apply`] with the target's unit already rendered by [`render_target`] (the unit is rendered
/// once per run).
pub(crate) fn apply_rendered(
    spec: &ServiceSpec,
    rendered: Option<&str>,
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
        version_now: None,
        migration: migration::Watch::default(),
    };
    let result = run.apply(rendered, opts);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(mut outcome) => {
            outcome.elapsed_ms = elapsed_ms;
            Ok(outcome)
        }
        Err(error) => Err(Box::new(ApplyFailure {
            rolled_back: error.rolled_back(),
            error,
            name: spec.name.to_string(),
            version: run.version_now,
            changed: run.changed,
            actions: run.actions,
            elapsed_ms,
        })),
    }
}

impl Run<'_> {
    /// The run's named steps: lock, read, plan, then report (check mode) or execute.
    fn apply(&mut self, rendered: Option<&str>, opts: &ApplyOptions) -> Result<Outcome, ApplyError> {
        let lock = if opts.check { None } else { Some(self.lock(opts)?) };
        // A spec without a release (`stopped`/`absent` with only `name`) reads the state with a
        // unit name no release can have (versions are never empty), as `status` does.
        let target = self.spec.unit().unwrap_or_else(|| format!("{}-.service", self.spec.name));
        let state = self.read_state(&target)?;
        let plan = plan::plan(self.spec, &state, rendered, migrate::read())?;
        self.warnings.extend(plan.warnings.iter().cloned());
        self.migration = migration::Watch::new(plan.probe_migration, opts.lock_dir.clone());
        if opts.check {
            return Ok(self.report_check(&plan, &state, opts));
        }
        // Only what a killed run left: files older than the lock this run holds.
        if let Some(locked_at) = lock.as_ref().and_then(|l| l.taken_at().ok()) {
            unit_dir::clean_temp_files(&self.spec.unit_dir, self.spec.name.as_str(), &target, locked_at);
        }
        secrets::clean_temp_files(&self.spec.unit_dir, &target);
        self.execute_all(&plan, &state, opts)?;
        let active = target_version(self.spec);
        self.version_now.clone_from(&active);
        let msg = self.summary(&plan);
        Ok(self.outcome(&plan, opts, msg, active))
    }

    /// Takes the service's lock, reporting a wait for another run as progress.
    fn lock(&mut self, opts: &ApplyOptions) -> Result<lock::ServiceLock, ApplyError> {
        let service = self.spec.name.as_str();
        (self.progress)(Progress::Step(format!("lock service {service}")));
        let limit = opts.lock_timeout;
        let progress = &mut *self.progress;
        Ok(lock::acquire_with_progress(&opts.lock_dir, service, limit, |w: LockWait| {
            progress(Progress::WaitingForLock {
                service: service.to_owned(),
                holder: w.holder,
                elapsed: w.waited,
                limit,
            })
        })?)
    }

    /// What is on disk and running now; the release active now.
    fn read_state(&mut self, target: &str) -> Result<ServiceState, ApplyError> {
        let spec = self.spec;
        let state = state::read(self.sd, &spec.unit_dir, spec.name.as_str(), target)?;
        self.version_now = state.active_version();
        Ok(state)
    }

    /// Check mode: the plan as actions and diff, nothing touched.
    fn report_check(&mut self, plan: &Plan, state: &ServiceState, opts: &ApplyOptions) -> Outcome {
        self.actions = plan.steps.iter().map(Step::describe).collect();
        self.diff = plan.steps.iter().filter_map(|step| steps::file_diff(step, state)).collect();
        self.changed = plan.changes();
        let msg = self.check_summary(plan);
        self.outcome(plan, opts, msg, target_version(self.spec))
    }

    /// Carries out every step, calling the after-step hook after each.
    fn execute_all(&mut self, plan: &Plan, state: &ServiceState, opts: &ApplyOptions) -> Result<(), ApplyError> {
        for step in &plan.steps {
            self.execute(step, state)?;
            if let Some(AfterStep(hook)) = &opts.after_step {
                hook(&StepDone { kind: step.kind(), action: &step.describe() });
            }
        }
        Ok(())
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
            // Reads only a fresh connection got an answer to, outside readiness.
            warnings: self.warnings.iter().cloned().chain(self.sd.take_notes()).collect(),
            migration: self.migration.migration(self.spec),
            migration_counters: self.migration.counters(),
            diff: opts.diff.then(|| self.diff.clone()),
        }
    }
}

/// The release active once the spec is applied: `version` when started, none otherwise.
fn target_version(spec: &ServiceSpec) -> Option<String> {
    spec.version.as_ref().filter(|_| spec.state == State::Started).map(Ident::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Failure, FailureKind};
    use crate::spec::parse;
    use crate::systemd::fake::FakeSystemd;
    use crate::systemd::JobResult;
    use std::sync::Mutex;

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
    fn the_after_step_hook_sees_each_step_carried_out_and_never_a_checked_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let hook =
            AfterStep::new(move |s: &StepDone<'_>| log.lock().expect("log").push(format!("{} {}", s.kind, s.action)));
        let o = ApplyOptions { after_step: Some(hook), ..opts(dir.path()) };
        apply(&spec(dir.path(), "v1", ""), &sd, &ApplyOptions { check: true, ..o.clone() }, &mut |_| {})
            .expect("check");
        assert!(seen.lock().expect("log").is_empty(), "check mode carries out no step");
        let out = apply(&spec(dir.path(), "v1", ""), &sd, &o, &mut |_| {}).expect("deploy");
        let seen = seen.lock().expect("log").clone();
        assert_eq!(
            seen,
            [
                format!("write write {}/app-v1.service", dir.path().display()),
                "start start app-v1.service".to_owned(),
                "enable enable app-v1.service".to_owned()
            ]
        );
        assert!(out.changed && format!("{o:?}").contains("AfterStep(..)"));
    }

    #[test]
    fn a_run_waiting_for_the_lock_reports_who_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = lock::acquire(&dir.path().join("locks"), "app", Duration::ZERO).expect("lock");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let mut events = Vec::new();
        apply(&spec(dir.path(), "v1", ""), &FakeSystemd::new(), &opts(dir.path()), &mut |e| events.push(e))
            .expect("deploys once the lock is free");
        releaser.join().expect("thread");
        let waits: Vec<_> = events.iter().filter(|e| matches!(e, Progress::WaitingForLock { .. })).collect();
        let Some(Progress::WaitingForLock { service, holder, limit, .. }) = waits.first() else {
            panic!("no lock wait reported: {events:?}")
        };
        assert_eq!((service.as_str(), *limit), ("app", Duration::from_secs(60)));
        assert!(holder.contains(&format!("pid={}", std::process::id())), "{holder}");
    }

    #[test]
    fn a_release_that_fails_to_start_is_a_typed_not_ready_with_its_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        sd.fail_next_start("app-v1.service", JobResult::Failed);
        let err = apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect_err("fails");
        let ApplyError::NotReady { unit, reason, in_place: false, journal, .. } = &err.error else {
            panic!("not a NotReady: {:?}", err.error)
        };
        assert_eq!(unit, "app-v1.service");
        assert!(matches!(reason.as_ref(), NotReady::StartFailed { result, .. } if result == "failed"), "{reason:?}");
        assert!(!journal.is_empty() && err.error.journal() == journal.as_slice());
        assert!(err.rolled_back && err.error.rolled_back());
        // A render error is no rollback and carries no journal.
        let bad = ApplyError::from(crate::unit_dir::DiskError::Foreign {
            path: dir.path().join("x"),
            service: "app".to_owned(),
            found: "no marks".to_owned(),
        });
        assert!(!bad.rolled_back() && bad.journal().is_empty());
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
