//! `DbusSystemd` against a real systemd: each test boots its own sandbox and talks to its
//! system bus from the host through `/proc/<pid>/root/run/dbus/system_bus_socket`.
//!
//! Needs root (the sandbox does); the tests fail, they never skip, when it cannot boot.
//! PIDs systemd reports are PIDs of the sandbox's PID namespace.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use baton_core::testing::{DbusSystemd, JobResult, Systemd, SystemdError, NOT_LOADED};
use baton_sandbox::Sandbox;

const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// A booted sandbox and a connection to its systemd.
struct Env {
    sandbox: Sandbox,
    systemd: DbusSystemd,
}

impl Env {
    fn boot(label: &str) -> Env {
        let sandbox = Sandbox::boot_sharing(label, &baton_integration::shares())
            .unwrap_or_else(|e| panic!("booting the sandbox (root needed): {e:#}"));
        let address = format!("unix:path=/proc/{}/root/run/dbus/system_bus_socket", sandbox.pid());
        let systemd = DbusSystemd::connect_address(&address)
            .unwrap_or_else(|e| panic!("connecting to {address}: {e}"))
            .with_journal_root(format!("/proc/{}/root", sandbox.pid()));
        Env { sandbox, systemd }
    }

    /// The host path of the sandbox's `/etc/systemd/system/<name>`.
    fn unit_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/etc/systemd/system/{name}", self.sandbox.pid()))
    }

    fn write_unit(&self, name: &str, text: &str) {
        let path = self.unit_path(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    fn write_and_reload(&self, name: &str, text: &str) {
        self.write_unit(name, text);
        self.systemd.reload().expect("reload");
    }

    /// `systemctl show -P PROP UNIT` inside, as a cross-check independent of baton.
    fn show(&self, unit: &str, prop: &str) -> String {
        self.sandbox.sh(&format!("systemctl show -P {prop} {unit}")).expect("systemctl show").trim().to_owned()
    }
}

fn sleeper(kind: &str) -> String {
    format!(
        "[Unit]\nDescription=test sleeper\n\n[Service]\nType={kind}\nExecStart=/bin/sleep 300\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

#[test]
fn dbus_systemd_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DbusSystemd>();
}

#[test]
fn connect_error_names_the_address() {
    let err = DbusSystemd::connect_address("unix:path=/nonexistent/baton/bus").expect_err("no bus there");
    match &err {
        SystemdError::Connect { address, .. } => {
            assert_eq!(address, "unix:path=/nonexistent/baton/bus")
        }
        other => panic!("expected a Connect error, got {other:?}"),
    }
    assert!(err.to_string().contains("/nonexistent/baton/bus"), "{err}");
}

#[test]
fn reload_start_status_pids_stop() {
    let env = Env::boot("dbus-lifecycle");
    let sd = &env.systemd;
    let unit = "sleeper.service";

    let before = sd.unit_status(unit).expect("status before");
    // Not in systemd's memory: reported without loading it.
    assert_eq!(before.load_state, NOT_LOADED, "{before:?}");
    assert!(!before.in_memory());

    env.write_and_reload(unit, &sleeper("exec"));
    let loaded = sd.unit_status(unit).expect("status after reload");
    // Unreferenced and inactive, systemd may have dropped it from memory again.
    assert!(matches!(loaded.load_state.as_str(), "loaded" | "not-loaded"), "{loaded:?}");
    assert_eq!(loaded.active_state, "inactive", "{loaded:?}");
    assert_eq!(loaded.sub_state, "dead", "{loaded:?}");
    assert_eq!(loaded.unit_file_state, "disabled", "{loaded:?}");
    assert!(!loaded.need_daemon_reload, "{loaded:?}");
    assert_eq!((loaded.main_pid, loaded.n_restarts, loaded.active_enter_timestamp_us), (0, 0, 0), "{loaded:?}");

    let started = Instant::now();
    assert_eq!(sd.start(unit, JOB_TIMEOUT).expect("start"), JobResult::Done);
    eprintln!("start took {:?}", started.elapsed());
    let running = sd.unit_status(unit).expect("status running");
    assert_eq!((running.active_state.as_str(), running.sub_state.as_str()), ("active", "running"), "{running:?}");
    assert!(running.is_running());
    assert!(running.main_pid > 0, "{running:?}");
    assert_eq!(running.main_pid.to_string(), env.show(unit, "MainPID"));
    assert!(running.active_enter_timestamp_us > 0, "{running:?}");
    let unix =
        env.sandbox.sh(&format!("systemctl show --timestamp=unix -P ActiveEnterTimestamp {unit}")).expect("show");
    assert_eq!(format!("@{}", running.active_enter_timestamp_us / 1_000_000), unix.trim());

    let pids = sd.unit_pids(unit).expect("unit_pids");
    assert!(pids.contains(&running.main_pid), "{pids:?} lacks MainPID {}", running.main_pid);

    // Starting an active unit is a no-op job that is done at once.
    assert_eq!(sd.start(unit, JOB_TIMEOUT).expect("start again"), JobResult::Done);

    assert_eq!(sd.stop(unit, JOB_TIMEOUT).expect("stop"), JobResult::Done);
    let stopped = sd.unit_status(unit).expect("status stopped");
    assert_eq!((stopped.active_state.as_str(), stopped.sub_state.as_str()), ("inactive", "dead"), "{stopped:?}");
    assert_eq!(stopped.main_pid, 0, "{stopped:?}");
    assert!(sd.unit_pids(unit).expect("unit_pids stopped").is_empty());

    // Stopping an inactive unit is fine too.
    assert_eq!(sd.stop(unit, JOB_TIMEOUT).expect("stop again"), JobResult::Done);

    // systemd names the unit of a job by its id, not by the alias it was started with: the job
    // is still found.
    std::os::unix::fs::symlink(unit, env.unit_path("sleeper-alias.service")).expect("alias symlink");
    sd.reload().expect("reload");
    assert_eq!(sd.start("sleeper-alias.service", JOB_TIMEOUT).expect("start by alias"), JobResult::Done);
    assert!(sd.unit_status(unit).expect("status").is_running());
    assert_eq!(sd.stop("sleeper-alias.service", JOB_TIMEOUT).expect("stop by alias"), JobResult::Done);
    assert!(!sd.unit_status(unit).expect("status").is_running());
}

#[test]
fn failing_units_give_failed() {
    let env = Env::boot("dbus-failing");
    let sd = &env.systemd;
    env.write_unit("pre-fails.service", "[Service]\nType=exec\nExecStartPre=/bin/false\nExecStart=/bin/sleep 300\n");
    env.write_unit("oneshot-fails.service", "[Service]\nType=oneshot\nExecStart=/bin/false\n");
    env.write_unit(
        "talks-and-fails.service",
        "[Service]\nType=exec\nExecStart=/bin/sh -c 'echo boom-marker-1; echo boom-marker-2 >&2; exit 3'\n",
    );
    sd.reload().expect("reload");
    let unit = "talks-and-fails.service";
    // Type=exec: the start job is done once the process runs, unless it already exited: either.
    let started = sd.start(unit, JOB_TIMEOUT).expect("start");
    assert!(matches!(started, JobResult::Done | JobResult::Failed), "{started:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st = sd.unit_status(unit).expect("status");
        if st.active_state == "failed" || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((st.active_state.as_str(), st.exec_main_status), ("failed", 3), "{st:?}");
    let journal = sd.journal(unit, 20);
    eprintln!("journal of {unit}: {journal:#?}");
    for marker in ["boom-marker-1", "boom-marker-2"] {
        assert!(journal.iter().any(|l| l == marker), "{marker} not in {journal:?}");
    }
    assert_eq!(sd.journal(unit, 1).len(), 1);
    assert!(sd.journal(unit, 0).is_empty());
    assert!(sd.journal("never-ran.service", 10).is_empty());

    for unit in ["pre-fails.service", "oneshot-fails.service"] {
        assert_eq!(sd.start(unit, JOB_TIMEOUT).expect("start"), JobResult::Failed, "{unit}");
        let st = sd.unit_status(unit).expect("status");
        assert_eq!(st.active_state, "failed", "{unit}: {st:?}");
        assert_eq!(st.exec_main_status, if unit == "oneshot-fails.service" { 1 } else { 0 }, "{unit}: {st:?}");

        sd.reset_failed(unit).expect("reset_failed");
        let st = sd.unit_status(unit).expect("status after reset");
        assert_eq!(st.active_state, "inactive", "{unit}: {st:?}");
        // Resetting a unit that is not failed is not an error.
        sd.reset_failed(unit).expect("reset_failed again");
    }
}

#[test]
fn start_times_out_on_a_notify_unit_that_never_notifies() {
    let env = Env::boot("dbus-timeout");
    let sd = &env.systemd;
    let unit = "silent.service";
    env.write_and_reload(unit, "[Service]\nType=notify\nExecStart=/bin/sleep 300\nTimeoutStartSec=120\n");

    let t = Instant::now();
    let err = sd.start(unit, Duration::from_millis(500)).expect_err("must time out");
    let waited = t.elapsed();
    match &err {
        SystemdError::JobTimeout { method, unit: u, waited } => {
            assert_eq!((*method, u.as_str()), ("StartUnit", unit));
            assert!(*waited >= Duration::from_millis(500), "{waited:?}");
        }
        other => panic!("expected JobTimeout, got {other:?}"),
    }
    assert!(waited < Duration::from_secs(5), "timed out only after {waited:?}");
    let st = sd.unit_status(unit).expect("status");
    assert_eq!(st.active_state, "activating", "{st:?}");
    assert!(st.is_running());

    // The start job is still queued; a stop cancels it.
    assert_eq!(sd.stop(unit, JOB_TIMEOUT).expect("stop"), JobResult::Done);
    let st = sd.unit_status(unit).expect("status after stop");
    assert_eq!(st.active_state, "inactive", "{st:?}");
}

#[test]
fn enable_disable_are_idempotent() {
    let env = Env::boot("dbus-enable");
    let sd = &env.systemd;
    let unit = "enabled.service";
    env.write_and_reload(unit, &sleeper("exec"));
    let units = vec![unit.to_owned()];

    assert!(sd.enable(&units).expect("enable"), "first enable changes a symlink");
    assert!(!sd.enable(&units).expect("enable again"), "second enable changes nothing");
    let link = format!("/proc/{}/root/etc/systemd/system/multi-user.target.wants/{unit}", env.sandbox.pid());
    assert!(fs::symlink_metadata(&link).is_ok(), "{link} missing");
    let st = sd.unit_status(unit).expect("status");
    assert_eq!(st.unit_file_state, "enabled", "{st:?}");
    assert!(st.is_enabled());

    assert!(sd.disable(&units).expect("disable"), "first disable removes a symlink");
    assert!(!sd.disable(&units).expect("disable again"), "second disable changes nothing");
    assert!(fs::symlink_metadata(&link).is_err(), "{link} still there");
    let st = sd.unit_status(unit).expect("status");
    assert_eq!(st.unit_file_state, "disabled", "{st:?}");

    let err = sd.enable(&["no-such-file.service".to_owned()]).expect_err("enable of a missing file");
    match &err {
        SystemdError::Call { method, detail, .. } => {
            assert_eq!(*method, "EnableUnitFiles");
            assert!(!detail.is_empty(), "{err}");
        }
        other => panic!("expected a Call error, got {other:?}"),
    }
    eprintln!("enable of a missing file: {err}");
}

#[test]
fn need_daemon_reload_after_an_edit() {
    let env = Env::boot("dbus-edit");
    let sd = &env.systemd;
    let unit = "edited.service";
    env.write_and_reload(unit, &sleeper("exec"));
    // Running, so systemd keeps it loaded (an unreferenced inactive unit is garbage-collected
    // and re-read from disk by the next LoadUnit, so it never "needs" a reload).
    assert_eq!(sd.start(unit, JOB_TIMEOUT).expect("start"), JobResult::Done);
    assert!(!sd.unit_status(unit).expect("status").need_daemon_reload);

    std::thread::sleep(Duration::from_millis(20)); // a later mtime
    env.write_unit(unit, &sleeper("simple"));
    let st = sd.unit_status(unit).expect("status after edit");
    assert!(st.need_daemon_reload, "{st:?}");
    assert_eq!(env.show(unit, "NeedDaemonReload"), "yes");

    sd.reload().expect("reload");
    // Reload's reply comes after the reload: the new file is in effect at once.
    assert!(!sd.unit_status(unit).expect("status after reload").need_daemon_reload);
    assert_eq!(env.show(unit, "Type"), "simple");
}

#[test]
fn unknown_units_are_not_errors_where_they_need_not_be() {
    let env = Env::boot("dbus-unknown");
    let sd = &env.systemd;
    let unit = "does-not-exist.service";

    let st = sd.unit_status(unit).expect("status");
    assert_eq!(st.load_state, NOT_LOADED, "{st:?}");
    assert_eq!(st.active_state, "inactive", "{st:?}");
    assert!(!st.is_running());
    assert_eq!(st.main_pid, 0);

    let t = Instant::now();
    let stop = sd.stop(unit, JOB_TIMEOUT).expect("stop of an unknown unit");
    assert!(matches!(stop, JobResult::Done | JobResult::Skipped), "{stop:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "stop took {:?}", t.elapsed());
    sd.reset_failed(unit).expect("reset_failed of an unknown unit");
    assert!(sd.unit_pids(unit).expect("unit_pids of an unknown unit").is_empty());

    let err = sd.start(unit, JOB_TIMEOUT).expect_err("start of an unknown unit");
    match &err {
        SystemdError::Call { method, arg, detail } => {
            assert_eq!((*method, arg.as_str()), ("StartUnit", unit));
            assert!(detail.contains(unit), "{err}");
        }
        other => panic!("expected a Call error, got {other:?}"),
    }
    eprintln!("start of an unknown unit: {err}");

    // A masked unit: readable, not startable, stoppable.
    std::os::unix::fs::symlink("/dev/null", env.unit_path("masked.service")).expect("mask");
    sd.reload().expect("reload");
    let st = sd.unit_status("masked.service").expect("status of a masked unit");
    // Not in memory until something loads it; its file state says masked either way.
    assert!(matches!(st.load_state.as_str(), "masked" | "not-loaded"), "{st:?}");
    assert_eq!(st.unit_file_state, "masked", "{st:?}");
    let err = sd.start("masked.service", JOB_TIMEOUT).expect_err("start of a masked unit");
    assert!(err.to_string().contains("masked"), "{err}");
    let stop = sd.stop("masked.service", JOB_TIMEOUT).expect("stop of a masked unit");
    assert!(matches!(stop, JobResult::Done | JobResult::Skipped), "{stop:?}");

    // Not a service (the running default target, so in memory): the Service properties stay zero.
    let target = sd.unit_status("sandbox.target").expect("status of a target");
    assert_eq!(target.load_state, "loaded", "{target:?}");
    assert_eq!((target.main_pid, target.n_restarts, target.exec_main_status), (0, 0, 0));
}
