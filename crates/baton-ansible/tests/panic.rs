//! A panic in the module, in the main thread or another one, ends it with the contract's JSON
//! failure on stdout and exit status 1 (the hook the shipped `panic = "abort"` module relies on).
//! Each case runs this test binary again as a child that installs the hook and panics.

use std::process::Command;

use serde_json::Value;

const CHILD: &str = "BATON_PANIC_TEST_CHILD";

/// In the child: install the hook and panic (in `thread`, or the test's own thread).
fn child_panics(in_thread: bool) {
    baton_ansible::panic::exit_with_json_on_panic();
    if in_thread {
        let _ = std::thread::spawn(|| panic!("overflow when adding durations")).join();
        // Not reached: the hook exits the process.
        std::process::exit(0);
    }
    panic!("a value the module relied on is missing");
}

/// Runs the named test of this binary as the child; returns (exit status, the last stdout line).
fn run_child(test: &str) -> (Option<i32>, String) {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default().to_owned();
    (out.status.code(), last)
}

fn assert_failure_json(status: Option<i32>, line: &str, cause: &str) {
    assert_eq!(status, Some(1), "exit status of a panicking module: {line}");
    let json: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("no JSON failure ({e}): {line:?}"));
    assert_eq!(json["failed"], true, "{json}");
    let msg = json["msg"].as_str().unwrap_or_default();
    assert!(msg.starts_with("internal error in the baton module: "), "{msg}");
    assert!(msg.contains(cause) && msg.contains("panic.rs:"), "{msg}");
}

#[test]
fn a_panic_in_the_main_thread_is_a_json_failure() {
    if std::env::var_os(CHILD).is_some() {
        return child_panics(false);
    }
    let (status, line) = run_child("a_panic_in_the_main_thread_is_a_json_failure");
    assert_failure_json(status, &line, "a value the module relied on");
}

#[test]
fn a_panic_in_another_thread_is_a_json_failure() {
    if std::env::var_os(CHILD).is_some() {
        return child_panics(true);
    }
    let (status, line) = run_child("a_panic_in_another_thread_is_a_json_failure");
    assert_failure_json(status, &line, "overflow when adding durations");
}
