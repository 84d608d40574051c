//! A systemd that does not answer during a handover, on the fake systemd: the run ends with an
//! error naming the call and its wait (never "not ready"), the previous release keeps serving,
//! reads are asked once more on a fresh connection and changes never twice, and a later run
//! converges.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::connection::{Resilient, SharedSystemd};
use crate::result::{Failure, FailureKind};
use crate::spec::parse;
use crate::systemd::fake::FakeSystemd;
use crate::systemd::{CallTimeouts, SystemdError};

const WAIT: Duration = Duration::from_secs(15);

fn spec(dir: &Path, version: &str, extra: &str) -> ServiceSpec {
    let json = format!(
        r#"{{"name":"app","version":"{version}","exec_start":["/bin/app"],"unit_dir":"{}","health":{{"timeout_sec":10}}{extra}}}"#,
        dir.display()
    );
    parse(json.as_bytes()).expect("valid")
}

fn opts(dir: &Path) -> ApplyOptions {
    ApplyOptions { lock_dir: dir.join("locks"), ..ApplyOptions::default() }
}

/// The fake behind a [`Resilient`] connection, as a run on the system bus has it; counts the
/// connections made.
fn resilient(fake: &Arc<FakeSystemd>) -> (Resilient, Arc<AtomicUsize>) {
    let connects = Arc::new(AtomicUsize::new(0));
    let (sd, n) = (fake.clone(), connects.clone());
    let r = Resilient::new(move || {
        n.fetch_add(1, Ordering::SeqCst);
        Ok(sd.clone() as SharedSystemd)
    });
    (r, connects)
}

/// v1 deployed and serving.
fn with_v1(dir: &Path) -> (Arc<FakeSystemd>, Resilient, Arc<AtomicUsize>) {
    let fake = Arc::new(FakeSystemd::new());
    let (sd, connects) = resilient(&fake);
    apply(&spec(dir, "v1", ""), &sd, &opts(dir), &mut |_| {}).expect("v1");
    fake.clear_calls();
    (fake, sd, connects)
}

#[test]
fn systemd_silent_during_readiness_is_named_never_not_ready_and_the_old_release_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, sd, _) = with_v1(dir.path());
    fake.no_answer_once_started("app-v2.service", "GetUnit", 2, WAIT);
    let mut events = Vec::new();
    let err =
        apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |e| events.push(e)).expect_err("no answer");
    let ApplyError::NoVerdict { unit, error, stopped: true, .. } = &err.error else {
        panic!("not a NoVerdict: {:?}", err.error)
    };
    assert_eq!(unit, "app-v2.service");
    assert!(matches!(**error, SystemdError::NoAnswer { method: "GetUnit", waited, .. } if waited == WAIT));
    let failure = Failure::from(*err);
    assert_eq!(
        failure.msg,
        "systemd did not answer GetUnit for app-v2.service within 15 s, while baton waited for app-v2.service to \
         become ready; baton stopped app-v2.service; the previous release is still serving"
    );
    assert!(!failure.msg.contains("not ready") && !failure.msg.contains("was not"), "{}", failure.msg);
    assert_eq!(failure.kind, FailureKind::Environment);
    assert!(failure.rolled_back && failure.version.as_deref() == Some("v1"), "{failure:?}");
    // Asked twice (the second time on a fresh connection), then the new release stopped; the
    // old one never touched.
    assert_eq!(
        fake.calls(),
        [
            "start app-v2.service",
            "no answer GetUnit app-v2.service",
            "no answer GetUnit app-v2.service",
            "stop app-v2.service"
        ]
    );
    assert!(fake.is_active("app-v1.service") && fake.is_enabled("app-v1.service"));
    assert!(!fake.is_active("app-v2.service") && !fake.is_enabled("app-v2.service"));
    assert!(events.iter().any(|e| matches!(e, Progress::Step(s) if s.starts_with("roll back: stop app-v2.service"))));

    // systemd answers again: the same spec goes through.
    let out = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("later run");
    assert_eq!(out.version.as_deref(), Some("v2"));
    assert!(fake.is_active("app-v2.service") && !fake.is_active("app-v1.service"));
}

#[test]
fn a_read_answered_on_a_fresh_connection_lets_the_handover_go_on_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, sd, connects) = with_v1(dir.path());
    let before = connects.load(Ordering::SeqCst);
    fake.no_answer_once_started("app-v2.service", "GetUnit", 1, WAIT);
    let mut events = Vec::new();
    let out = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |e| events.push(e)).expect("handover");
    assert_eq!(out.version.as_deref(), Some("v2"));
    assert_eq!(connects.load(Ordering::SeqCst), before + 1, "one fresh connection");
    let note = "systemd did not answer GetUnit for app-v2.service within 15 s; a fresh connection got the answer";
    assert!(out.warnings.iter().any(|w| w == note), "{:?}", out.warnings);
    assert!(events.contains(&Progress::Step(format!("note: {note}"))), "{events:?}");
    assert!(fake.is_active("app-v2.service") && !fake.is_active("app-v1.service"));
}

#[test]
fn an_unanswered_start_is_not_asked_again_and_not_called_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, sd, _) = with_v1(dir.path());
    fake.no_answer("StartUnit", 1, Duration::from_secs(30));
    let err = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect_err("no answer");
    let failure = Failure::from(*err);
    assert!(
        failure.msg.starts_with("systemd did not answer StartUnit for app-v2.service within 30 s, while baton waited"),
        "{}",
        failure.msg
    );
    assert!(!failure.msg.contains("not ready"), "{}", failure.msg);
    // The start is never sent twice; the release is stopped in case systemd carried it out.
    assert_eq!(fake.calls(), ["no answer StartUnit app-v2.service", "stop app-v2.service"]);
    assert!(fake.is_active("app-v1.service") && fake.is_enabled("app-v1.service"));
}

#[test]
fn when_the_stop_is_unanswered_too_the_error_says_so_and_the_old_release_still_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, sd, _) = with_v1(dir.path());
    fake.no_answer_once_started("app-v2.service", "GetUnit", 2, WAIT);
    fake.no_answer("StopUnit", 1, Duration::from_secs(30));
    let err = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect_err("no answer");
    assert!(!err.rolled_back, "nothing was stopped");
    let failure = Failure::from(*err);
    assert_eq!(
        failure.msg,
        "systemd did not answer GetUnit for app-v2.service within 15 s, while baton waited for app-v2.service to \
         become ready; stopping app-v2.service failed too (systemd did not answer StopUnit for app-v2.service \
         within 30 s); the previous release is still serving; app-v2.service may run until systemd answers again, \
         and the next run converges"
    );
    assert!(fake.is_active("app-v1.service") && fake.is_enabled("app-v1.service"));
    // The next run converges: v2 runs beside v1, is proven ready and takes over.
    let out = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("converges");
    assert_eq!(out.version.as_deref(), Some("v2"));
    assert!(!fake.is_active("app-v1.service"));
}

#[test]
fn a_release_restarted_in_place_is_left_running_when_systemd_is_silent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, sd, _) = with_v1(dir.path());
    fake.no_answer_once_started("app-v1.service", "GetUnit", 2, WAIT);
    let changed = spec(dir.path(), "v1", r#","environment":{"A":"1"}"#);
    let err = apply(&changed, &sd, &opts(dir.path()), &mut |_| {}).expect_err("no answer");
    let failure = Failure::from(*err);
    assert!(failure.msg.contains("baton left app-v1.service running"), "{}", failure.msg);
    assert!(fake.is_active("app-v1.service"), "never stopped: nothing else serves");
    assert_eq!(fake.calls().iter().filter(|c| c.starts_with("stop")).count(), 1, "{:?}", fake.calls());
}

#[test]
fn a_start_job_whose_end_never_arrives_is_judged_by_what_systemd_answers_after() {
    // systemd answers that the release is active: its JobRemoved was lost, and readiness goes on.
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, sd, _) = with_v1(dir.path());
    fake.start_times_out("app-v2.service", true);
    let out = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("ready after all");
    assert_eq!(out.version.as_deref(), Some("v2"));

    // systemd answers that it is still activating: not started in time, a verdict.
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, sd, _) = with_v1(dir.path());
    fake.start_times_out("app-v2.service", false);
    let err = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect_err("not started");
    assert!(
        matches!(&err.error, ApplyError::NotReady { reason, .. } if matches!(**reason, NotReady::StartTimeout { .. }))
    );
    assert!(fake.is_active("app-v1.service"));

    // systemd does not answer: no verdict, named.
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, sd, _) = with_v1(dir.path());
    fake.start_times_out("app-v2.service", true);
    fake.no_answer_once_started("app-v2.service", "GetUnit", 2, WAIT);
    let err = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect_err("no answer");
    let failure = Failure::from(*err);
    assert!(
        failure.msg.starts_with("systemd did not answer GetUnit for app-v2.service within 15 s, while baton waited"),
        "{}",
        failure.msg
    );
    assert_eq!(failure.kind, FailureKind::Environment);
    assert!(fake.is_active("app-v1.service") && !fake.is_active("app-v2.service"));
}

#[test]
fn a_read_systemd_answers_with_an_error_is_still_a_problem_of_the_check() {
    // Only silence is without a verdict: an answered error keeps the old meaning.
    let e = SystemdError::Call { method: "GetUnit", arg: "a".into(), detail: "Access denied".into() };
    assert!(!e.is_unanswered());
    for e in [
        SystemdError::NoAnswer { method: "GetUnit", arg: "a".into(), waited: WAIT },
        SystemdError::Transport { method: "GetUnit", arg: "a".into(), detail: "reset".into() },
        SystemdError::Connect { address: "x".into(), detail: "refused".into() },
    ] {
        assert!(e.is_unanswered(), "{e}");
    }
}

#[test]
fn call_limits_come_from_the_environment_and_bad_values_are_named() {
    let none = CallTimeouts::from_lookup(|_| None).expect("defaults");
    assert_eq!(none, CallTimeouts::default());
    assert_eq!(
        (none.read, none.change, none.reload),
        (Duration::from_secs(15), Duration::from_secs(30), Duration::from_secs(90))
    );
    let set = CallTimeouts::from_lookup(|name| match name {
        "BATON_DBUS_READ_TIMEOUT_SEC" => Some("3".to_owned()),
        "BATON_DBUS_CHANGE_TIMEOUT_SEC" => Some(" 4 ".to_owned()),
        _ => None,
    })
    .expect("set");
    assert_eq!((set.read, set.change, set.reload), (Duration::from_secs(3), Duration::from_secs(4), none.reload));
    for bad in ["0", "3601", "1.5", "-1", "soon", ""] {
        let err = CallTimeouts::from_lookup(|name| (name == "BATON_DBUS_RELOAD_TIMEOUT_SEC").then(|| bad.to_owned()))
            .expect_err(bad);
        assert_eq!(
            err.to_string(),
            format!("BATON_DBUS_RELOAD_TIMEOUT_SEC: must be a whole number of seconds from 1 to 3600, not {bad:?}")
        );
    }
    let reload = SystemdError::NoAnswer { method: "Reload", arg: String::new(), waited: Duration::from_millis(2500) };
    assert_eq!(reload.to_string(), "systemd did not answer Reload within 2.5 s");
}
