//! Socket mode (`listen_mode: "socket"`) through the handover with the fake systemd: the plan
//! (check mode) for every arrangement of releases and socket, what `stopped`, `absent` and a
//! failed first start do to the socket, and the validation of the new spec fields.

use std::path::Path;

use super::{apply, ApplyOptions};
use crate::result::Outcome;
use crate::spec::{parse, ServiceSpec};
use crate::systemd::fake::FakeSystemd;
use crate::systemd::{JobResult, Systemd};
use crate::unit::{render::render, socket};

/// A spec of `app` on port 8080 in `dir`; socket mode unless `extra` says otherwise.
fn spec(dir: &Path, version: &str, extra: &str) -> ServiceSpec {
    let mode = if extra.contains("listen_mode") { "" } else { r#","listen_mode":"socket""# };
    let json = format!(
        r#"{{"name":"app","version":"{version}","exec_start":["/bin/app"],"port":8080,"unit_dir":"{}"{mode}{extra}}}"#,
        dir.display()
    );
    parse(json.as_bytes()).expect("valid")
}

fn name_only(dir: &Path, state: &str) -> ServiceSpec {
    let json = format!(r#"{{"name":"app","state":"{state}","unit_dir":"{}"}}"#, dir.display());
    parse(json.as_bytes()).expect("valid")
}

/// Puts release `s` on disk (as baton renders it) and, when `running`, running and enabled.
fn deployed(dir: &Path, sd: &FakeSystemd, s: &ServiceSpec, running: bool) {
    let unit = s.unit().expect("a release");
    std::fs::write(dir.join(&unit), render(s).expect("renders")).expect("write unit");
    if running {
        sd.set_running(&unit, true);
    }
}

/// Puts the socket unit on disk, naming `service`, and when `listening`, active.
fn socket_on_disk(dir: &Path, sd: &FakeSystemd, s: &ServiceSpec, service: &str, listening: bool) {
    std::fs::write(dir.join("app.socket"), socket::render(s, service).expect("port")).expect("write socket");
    if listening {
        sd.set_running("app.socket", false);
    }
}

fn opts(dir: &Path) -> ApplyOptions {
    ApplyOptions { lock_dir: dir.join("locks"), ..ApplyOptions::default() }
}

/// The step that turns on `net.ipv4.tcp_migrate_req`.
const MIGRATE: &str = "set net.ipv4.tcp_migrate_req=1";

/// `steps` with the migrate step where a listener closes, as this machine's sysctl asks (it is
/// planned only while the knob is off).
fn with_migrate(mut steps: Vec<String>, after: &str) -> Vec<String> {
    if crate::migrate::read() == crate::migrate::Migrate::Off {
        let at = steps.iter().position(|s| s == after).expect("the step the migration follows") + 1;
        steps.insert(at, MIGRATE.to_owned());
    }
    steps
}

/// The plan of `s` (check mode: nothing touched).
fn planned(dir: &Path, sd: &FakeSystemd, s: &ServiceSpec) -> Vec<String> {
    let o = ApplyOptions { check: true, ..opts(dir) };
    apply(s, sd, &o, &mut |_| {}).unwrap_or_else(|e| panic!("{}", e.error)).actions
}

fn run(dir: &Path, sd: &FakeSystemd, s: &ServiceSpec) -> Outcome {
    apply(s, sd, &opts(dir), &mut |_| {}).unwrap_or_else(|e| panic!("{}", e.error))
}

fn refused(dir: &Path, sd: &FakeSystemd, s: &ServiceSpec) -> String {
    let o = ApplyOptions { check: true, ..opts(dir) };
    apply(s, sd, &o, &mut |_| {}).map(|o| format!("{:?}", o.actions)).expect_err("refused").error.to_string()
}

#[test]
fn first_deploy_writes_the_socket_naming_the_release_before_the_start_pulls_it_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    let s = spec(d, "v1", "");
    assert_eq!(
        planned(d, &sd, &s),
        [
            format!("write {}/app-v1.service", d.display()),
            format!("write {}/app.socket", d.display()),
            "start app-v1.service".to_owned(),
            "enable app-v1.service".to_owned(),
        ]
    );
    let unit = render(&s).expect("renders");
    assert!(unit.contains("\nSockets=app.socket\n") && unit.contains("\nStartLimitIntervalSec=0\n"), "{unit}");
    insta::assert_snapshot!("socket_mode_release_unit", unit);
    let reuseport = render(&spec(d, "v1", r#","listen_mode":"reuseport""#)).expect("renders");
    assert!(!reuseport.contains("Sockets=") && !reuseport.contains("StartLimitIntervalSec"), "{reuseport}");
}

#[test]
fn a_handover_renames_the_socket_service_once_the_new_release_is_ready_and_migrates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    let v1 = spec(d, "v1", "");
    deployed(d, &sd, &v1, true);
    socket_on_disk(d, &sd, &v1, "app-v1.service", true);
    // Converged: nothing to do.
    assert!(planned(d, &sd, &v1).is_empty());
    assert_eq!(
        planned(d, &sd, &spec(d, "v2", "")),
        [
            format!("write {}/app-v2.service", d.display()),
            "start app-v2.service".to_owned(),
            format!("write {}/app.socket", d.display()),
            "daemon-reload".to_owned(),
            "enable app-v2.service".to_owned(),
            "disable app-v1.service".to_owned(),
            "stop app-v1.service".to_owned(),
        ]
    );
    // Another user is no problem: nothing new binds the port.
    let as_web = spec(d, "v2", r#","user":"web""#);
    assert!(planned(d, &sd, &as_web).contains(&"start app-v2.service".to_owned()));
}

#[test]
fn a_run_killed_after_rewriting_the_socket_reuses_it_and_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    let (v1, v2) = (spec(d, "v1", ""), spec(d, "v2", ""));
    deployed(d, &sd, &v1, true);
    deployed(d, &sd, &v2, true);
    socket_on_disk(d, &sd, &v2, "app-v2.service", true);
    // systemd still holds the old Service= (the kill came before the daemon-reload): the fake
    // says NeedDaemonReload for nothing, so the plan only verifies and stops the old release.
    let steps = planned(d, &sd, &v2);
    assert_eq!(steps[0], "verify app-v2.service is ready", "{steps:?}");
    assert!(!steps.iter().any(|a| a.starts_with("write")), "the socket on disk is reused: {steps:?}");
    assert_eq!(steps.last().map(String::as_str), Some("stop app-v1.service"), "{steps:?}");
}

#[test]
fn stopped_stops_the_socket_before_any_release_and_absent_removes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    let v1 = spec(d, "v1", "");
    deployed(d, &sd, &v1, true);
    socket_on_disk(d, &sd, &v1, "app-v1.service", true);
    let out = run(d, &sd, &name_only(d, "stopped"));
    assert_eq!(out.actions[0], "stop app.socket", "{:?}", out.actions);
    assert_eq!(sd.calls(), ["stop app.socket", "stop app-v1.service"]);
    assert!(!sd.is_active("app.socket") && d.join("app.socket").exists());
    // A stopped spec naming the release stops the socket as well.
    sd.set_running("app.socket", false);
    sd.set_running("app-v1.service", true);
    sd.clear_calls();
    let stopped = spec(d, "v1", r#","state":"stopped""#);
    run(d, &sd, &stopped);
    assert_eq!(sd.calls(), ["stop app.socket", "stop app-v1.service"]);

    sd.set_running("app.socket", false);
    sd.clear_calls();
    let out = run(d, &sd, &name_only(d, "absent"));
    assert_eq!(out.actions[0], "stop app.socket", "{:?}", out.actions);
    assert_eq!(out.actions.last(), Some(&format!("remove {}/app.socket", d.display())), "{:?}", out.actions);
    assert!(!d.join("app.socket").exists() && !d.join("app-v1.service").exists());
    assert!(!run(d, &sd, &name_only(d, "absent")).changed);
}

#[test]
fn switching_modes_is_a_handover_and_the_socket_goes_before_the_old_release() {
    // reuseport → socket: the socket is written before the start (which binds it beside v1),
    // v1's listener closes, so its queue must migrate.
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    deployed(d, &sd, &spec(d, "v1", r#","listen_mode":"reuseport""#), true);
    let expected = vec![
        format!("write {}/app-v2.service", d.display()),
        format!("write {}/app.socket", d.display()),
        "start app-v2.service".to_owned(),
        "enable app-v2.service".to_owned(),
        "disable app-v1.service".to_owned(),
        "stop app-v1.service".to_owned(),
    ];
    assert_eq!(planned(d, &sd, &spec(d, "v2", "")), with_migrate(expected, "start app-v2.service"));
    // An old release of another user than root cannot share the port with systemd's socket.
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    deployed(d, &sd, &spec(d, "v1", r#","listen_mode":"reuseport","user":"web""#), true);
    let e = refused(d, &sd, &spec(d, "v2", ""));
    assert!(e.contains("app-v1.service runs as User=web but the shared socket app.socket"), "{e}");
    assert!(e.contains("SO_REUSEPORT only lets sockets of the same user"), "{e}");

    // socket → reuseport: the socket stops once v2 is ready (no traffic can start v1 again),
    // v1 keeps serving from its copy until it stops, then the socket file goes.
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    let v1 = spec(d, "v1", "");
    deployed(d, &sd, &v1, true);
    socket_on_disk(d, &sd, &v1, "app-v1.service", true);
    let expected = vec![
        format!("write {}/app-v2.service", d.display()),
        "start app-v2.service".to_owned(),
        "stop app.socket".to_owned(),
        "enable app-v2.service".to_owned(),
        "disable app-v1.service".to_owned(),
        "stop app-v1.service".to_owned(),
        format!("remove {}/app.socket", d.display()),
    ];
    let reuseport = spec(d, "v2", r#","listen_mode":"reuseport""#);
    assert_eq!(planned(d, &sd, &reuseport), with_migrate(expected, "start app-v2.service"));
}

#[test]
fn a_listening_socket_cannot_change_its_address_under_its_releases_and_a_foreign_one_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    let v1 = spec(d, "v1", "");
    deployed(d, &sd, &v1, true);
    socket_on_disk(d, &sd, &v1, "app-v1.service", true);
    let e = refused(d, &sd, &spec(d, "v2", r#","bind_address":"127.0.0.1""#));
    assert!(e.contains("cannot change under them") && e.contains("ListenStream=127.0.0.1:8080"), "{e}");

    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    std::fs::write(d.join("app.socket"), "[Socket]\nListenStream=8080\n").expect("write");
    let e = refused(d, &sd, &spec(d, "v1", ""));
    assert!(e.contains("app.socket exists and is not a baton release") && e.contains("no X-Baton-Service"), "{e}");
    assert!(sd.calls().is_empty());
}

#[test]
fn a_failed_first_start_stops_the_socket_it_pulled_in_before_the_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, sd) = (dir.path(), FakeSystemd::new());
    sd.fail_next_start("app-v1.service", JobResult::Failed);
    let err = apply(&spec(d, "v1", ""), &sd, &opts(d), &mut |_| {}).expect_err("fails");
    assert!(err.rolled_back);
    let calls = sd.calls();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c}: {calls:?}"));
    assert!(at("stop app.socket") < at("stop app-v1.service"), "{calls:?}");
    assert!(err.actions.contains(&"stop app.socket (rolled back)".to_owned()), "{:?}", err.actions);
    assert!(!sd.unit_status("app.socket").expect("status").is_running());
}

#[test]
fn the_new_fields_are_validated() {
    let err = |extra: &str| {
        let json = format!(r#"{{"name":"a","version":"v1","exec_start":["/x"]{extra}}}"#);
        parse(json.as_bytes()).expect_err("refused").to_string()
    };
    assert!(err(r#","listen_mode":"socket""#).starts_with("listen_mode: \"socket\" needs `port`"));
    assert!(err(r#","port":80,"bind_address":"127.0.0.1""#).starts_with("bind_address: applies only with"));
    for bad in ["localhost", "10.0.0.1:80", "fe80::1%eth0", "1.2.3.4\nListenStream=99", " 1.2.3.4"] {
        let e = err(&format!(r#","port":80,"listen_mode":"socket","bind_address":{}"#, serde_json::json!(bad)));
        assert!(e.starts_with("bind_address: "), "{bad:?}: {e}");
    }
    assert!(err(r#","port":80,"listen_mode":"sockets""#).contains("listen_mode"));
    let json =
        r#"{"name":"a","version":"v1","exec_start":["/x"],"port":80,"listen_mode":"socket","bind_address":"::1"}"#;
    let s = parse(json.as_bytes()).expect("valid");
    assert_eq!(s.to_raw().validate().expect("valid again"), s);
    assert_eq!(s.to_raw().bind_address.as_deref(), Some("::1"));
}
