//! A bus that stops answering during a handover, against a sandboxed real systemd: the
//! sandbox's dbus-daemon is stopped (SIGSTOP) while baton waits for the new release to become
//! ready. baton must end within a bound derived from its configured call limits (not after a
//! 120 s method timeout), with an error naming the call systemd did not answer and the wait,
//! never "not ready"; the old release keeps serving all along; once the bus is back, a later
//! apply succeeds.
//!
//! Before the fix, the readiness check's D-Bus call waited for zbus's 120 s method timeout, and
//! the run then reported the release as not ready.
//!
//! Needs root (the sandbox does); fails, never skips, when it cannot boot.

use std::io::Write;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use baton_integration::{demo_argv, demo_spec, Host};
use serde_json::{json, Value};

const PORT: u16 = 18473;

/// The call limits baton runs with in this test (`BATON_DBUS_*_TIMEOUT_SEC`).
const READ_TIMEOUT: u64 = 3;
const CHANGE_TIMEOUT: u64 = 3;

/// `health.timeout_sec` of the new release.
const READY_TIMEOUT: u64 = 10;

/// Time that is not a D-Bus wait: process start-up, the journal's settle reads (at most 0.6 s),
/// the readiness interval, a busy machine. A margin, not a speed goal.
const SLACK: Duration = Duration::from_secs(10);

/// How long the test lets baton run before it gives up on it (the old code: 120 s and more).
const GIVE_UP: Duration = Duration::from_secs(150);

/// The reads a readiness check makes; one of them is the call systemd did not answer.
const READS: [&str; 4] = ["GetUnit", "GetAll", "GetUnitFileState", "GetUnitProcesses"];

fn spec(version: &str, argv: Vec<String>) -> Value {
    let mut spec = demo_spec("stall", version, PORT, &[], json!({}));
    spec["exec_start"] = json!(argv);
    spec["health"] = json!({"http": "/health", "timeout_sec": READY_TIMEOUT, "interval_ms": 100});
    spec["timeout_stop_sec"] = json!(5);
    spec
}

/// The host PID of the sandbox's dbus-daemon.
fn dbus_daemon(host: &Host) -> u32 {
    host.sb
        .host_pids()
        .into_iter()
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "dbus-daemon"))
        .expect("the sandbox runs a dbus-daemon")
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// `GET /` inside the sandbox, without D-Bus: the version that answered.
fn served_by(host: &Host) -> String {
    let script =
        format!("exec 3<>/dev/tcp/127.0.0.1/{PORT} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && tail -n 1 <&3");
    let out = host.sb.command("timeout").args(["5", "bash", "-c", &script]).output().expect("run bash inside");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether `unit` has a process (read from its cgroup, without D-Bus).
fn has_process(host: &Host, unit: &str) -> bool {
    std::fs::read_to_string(host.path(&format!("/sys/fs/cgroup/system.slice/{unit}/cgroup.procs")))
        .is_ok_and(|p| !p.trim().is_empty())
}

#[test]
fn a_bus_that_stops_answering_during_readiness_ends_the_run_in_bounded_time_naming_the_call() {
    let host = Host::boot("dbus-stall");
    host.apply(&spec("v1", demo_argv("v1", PORT, &[])), &[]).ok();
    assert_eq!(served_by(&host), "v1");

    // v2 comes up (its process runs) but does not listen for a minute: baton keeps checking
    // its readiness, over D-Bus, all the while.
    let demo = demo_argv("v2", PORT, &[]).join(" ");
    let v2 = spec("v2", vec!["/bin/sh".into(), "-c".into(), format!("sleep 60; exec {demo}")]);
    let t0 = Instant::now();
    let mut baton = host
        .sb
        .command(baton_integration::bin("baton"))
        .args(["apply", "--progress", "always"])
        .env("BATON_DBUS_READ_TIMEOUT_SEC", READ_TIMEOUT.to_string())
        .env("BATON_DBUS_CHANGE_TIMEOUT_SEC", CHANGE_TIMEOUT.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton inside the sandbox");
    baton.stdin.take().expect("stdin").write_all(v2.to_string().as_bytes()).expect("write the spec");

    while !has_process(&host, "stall-v2.service") {
        assert!(t0.elapsed() < Duration::from_secs(30), "stall-v2.service never started");
        thread::sleep(Duration::from_millis(20));
    }
    // Let the readiness checks run, then stop the bus.
    thread::sleep(Duration::from_secs(1));
    let dbus = dbus_daemon(&host);
    signal(dbus, "-STOP");
    let stalled = Instant::now();
    let old_serves = served_by(&host);

    // baton must give up by itself; the test gives up on it much later.
    let status = loop {
        if let Some(status) = baton.try_wait().expect("wait for baton") {
            break status;
        }
        if t0.elapsed() > GIVE_UP {
            let _ = host.sb.sh("pkill -9 -x baton || true");
            signal(dbus, "-CONT");
            panic!("baton still waited {GIVE_UP:?} after it started, {:?} after the bus stopped", stalled.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (took, after_stall) = (t0.elapsed(), stalled.elapsed());
    let old_serves_still = served_by(&host);
    signal(dbus, "-CONT");
    let out = baton.wait_with_output().expect("baton's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| json!({ "unparsed_stdout": stdout }));
    let msg = result["msg"].as_str().unwrap_or_default();
    eprintln!("baton took {took:?}, {after_stall:?} after the bus stopped: {msg}\n{stderr}");

    // The old release served while the bus was stopped, and after baton gave up.
    assert_eq!((old_serves.as_str(), old_serves_still.as_str()), ("v1", "v1"));

    // A clear failure naming the call and its wait, never "not ready".
    // Exit 5: the environment (systemd), not 4 (a release rolled back for not being ready).
    assert_eq!((status.code(), &result["failed"]), (Some(5), &json!(true)), "{result:#}");
    let named = READS.iter().find(|call| {
        msg.starts_with(&format!("systemd did not answer {call} for stall-v2.service within {READ_TIMEOUT} s"))
    });
    assert!(named.is_some(), "the error names no read and its wait: {msg}");
    assert!(!msg.contains("not ready") && !msg.contains("was not"), "{msg}");
    assert!(msg.contains("the previous release is still serving"), "{msg}");
    assert!(stderr.contains("roll back: stop stall-v2.service"), "{stderr}");

    // Bounded by the configured limits: the read (READ_TIMEOUT), its second ask on a fresh
    // connection (connecting, then the call: 2 × READ_TIMEOUT), then stopping the new release
    // (connecting, READ_TIMEOUT, and the StopUnit call, CHANGE_TIMEOUT).
    let dbus_waits = Duration::from_secs(4 * READ_TIMEOUT + CHANGE_TIMEOUT);
    assert!(after_stall <= dbus_waits + SLACK, "{after_stall:?} after the bus stopped; bound {:?}", dbus_waits + SLACK);
    let bound = Duration::from_secs(READY_TIMEOUT) + dbus_waits + SLACK;
    assert!(took <= bound, "the run took {took:?}; bound {bound:?}");

    // The bus is back: the old release is still the enabled, active one, and a later apply
    // (a good v3; v2 may still run, stopped by it) succeeds.
    assert_eq!(host.prop("stall-v1.service", "ActiveState"), "active");
    assert_eq!(host.enabled("stall-v1.service"), "enabled");
    let v3 = host.apply(&spec("v3", demo_argv("v3", PORT, &[])), &[]).ok();
    assert_eq!(v3.json["version"], json!("v3"), "{:#}", v3.json);
    assert_eq!(served_by(&host), "v3");
    assert_eq!(host.prop("stall-v2.service", "ActiveState"), "inactive");
    assert_eq!(host.prop("stall-v1.service", "ActiveState"), "inactive");
}
