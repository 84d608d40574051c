//! Faults never cost a service or a request: baton `kill -9`ed at every step of a handover,
//! two concurrent applies, a read-only or full unit directory, systemd job failures and
//! timeouts — each under load where a service is serving, against a sandboxed real systemd.

use std::time::Duration;

use baton_integration::{demo_spec, Applied, Host};
use serde_json::{json, Value};

fn spec(name: &str, version: &str, port: u16, extra: Value) -> Value {
    demo_spec(name, version, port, &["--linger-ms", "100"], extra)
}

fn actions(out: &Applied) -> Vec<String> {
    out.json["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn killed_at_every_step_the_next_run_converges_and_no_request_fails() {
    let h = Host::boot("kill9");
    let port = 8180;
    h.apply(&spec("k", "v0", port, json!({"keep": 1})), &[]).ok();
    let mut version = 0;
    // Each handover is killed after one step; the next run must finish the job.
    for kind in ["write", "start", "enable", "disable", "stop", "remove"] {
        version += 1;
        let v = format!("v{version}");
        let s = spec("k", &v, port, json!({"keep": 1}));
        let mut child = h.apply_until_paused(&s, kind);
        h.kill_baton(&mut child);
        let next = h.apply(&s, &[]).ok();
        let acts = actions(&next);
        eprintln!("killed after {kind}: next run {acts:?}");
        assert_eq!(next.json["version"], v.as_str());
        let left_to_do = kind != "remove";
        assert_eq!(next.changed(), left_to_do, "after {kind}: changed must be honest: {acts:?}");
        if kind == "write" {
            assert!(!acts.iter().any(|a| a.starts_with("write")), "the unit on disk is reused: {acts:?}");
        }
        let again = h.apply(&s, &[]).ok();
        assert!(!again.changed(), "after {kind}: converged: {:?}", actions(&again));
        let running: Vec<_> = h
            .sh("systemctl list-units --no-legend --state=active 'k-*.service' | awk '{print $1}'")
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(running, [format!("k-{v}.service")], "after {kind}: exactly the new release runs");
    }
    // In-place restart of a changed unit, killed after the daemon-reload: the next run still
    // restarts it, because the running release is older than its unit file.
    let s = spec("k", &format!("v{version}"), port, json!({"keep": 1, "environment": {"CHANGED": "1"}}));
    let mut child = h.apply_until_paused(&s, "reload");
    h.kill_baton(&mut child);
    let next = h.apply(&s, &[]).ok();
    assert!(actions(&next).iter().any(|a| a.starts_with("restart") || a.starts_with("stop")), "{:?}", actions(&next));
    let pid = h.prop(&format!("k-v{version}.service"), "MainPID");
    assert!(h.sh(&format!("tr '\\0' '\\n' < /proc/{pid}/environ")).lines().any(|l| l == "CHANGED=1"));
}

#[test]
fn killed_handovers_fail_no_request() {
    // The same kills as above without the in-place restart: strictly zero failed requests.
    let h = Host::boot("kill9-load");
    let port = 8181;
    h.apply(&spec("z", "v0", port, json!({})), &[]).ok();
    h.wait_http(port, Duration::from_secs(5)).expect("serves");
    let load = h.load(port, 4, 600);
    for (i, kind) in ["write", "start", "enable", "disable", "stop", "remove"].iter().enumerate() {
        let s = spec("z", &format!("v{}", i + 1), port, json!({}));
        let mut child = h.apply_until_paused(&s, kind);
        std::thread::sleep(Duration::from_millis(300));
        h.kill_baton(&mut child);
        std::thread::sleep(Duration::from_millis(300));
        h.apply(&s, &[]).ok();
    }
    let r = load.finish().expect("load");
    eprintln!("killed handovers: {} requests, {} failed", r.requests, r.failed);
    assert!(r.requests > 1000);
    assert_eq!(r.failed, 0, "{r:?}");
}

#[test]
fn concurrent_applies_never_both_act() {
    let h = Host::boot("concurrent");
    let port = 8182;
    h.apply(&spec("c", "v1", port, json!({})), &[]).ok();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| h.apply(&spec("c", "v2", port, json!({})), &[]));
        let b = s.spawn(|| h.apply(&spec("c", "v3", port, json!({})), &[]));
        (a.join().expect("a"), b.join().expect("b"))
    });
    let (a, b) = (a.ok(), b.ok());
    // One ran after the other: the second saw the first's release as the previous one.
    let (first, second) = if b.json["previous_version"] == a.json["version"] { (&a, &b) } else { (&b, &a) };
    assert_eq!(second.json["previous_version"], first.json["version"], "{:#} {:#}", a.json, b.json);
    assert_eq!(first.json["previous_version"], "v1");
    let running = h.sh("systemctl list-units --no-legend --state=active 'c-*.service' | awk '{print $1}'");
    let want = format!("c-{}.service", second.json["version"].as_str().unwrap_or(""));
    assert_eq!(running.trim(), want);
}

#[test]
fn read_only_and_full_unit_directories_fail_cleanly() {
    let h = Host::boot("diskfull");
    let port = 8183;
    h.apply(&spec("d", "v1", port, json!({})), &[]).ok();
    h.wait_http(port, Duration::from_secs(5)).expect("serves");
    let load = h.load(port, 2, 120);

    h.sh("mount -o remount,ro /etc/systemd/system");
    let ro = h.apply(&spec("d", "v2", port, json!({})), &[]);
    h.sh("mount -o remount,rw /etc/systemd/system");
    assert!(ro.failed(), "{:#}", ro.json);
    assert!(
        ro.msg().contains("cannot write /etc/systemd/system/d-v2.service") && ro.msg().contains("Read-only"),
        "{}",
        ro.msg()
    );
    assert!(h.unit_file("d-v2.service").is_none());

    // Fill the unit directory's filesystem to the last byte.
    h.sh("mount -o remount,size=2m /etc/systemd/system && (dd if=/dev/zero of=/etc/systemd/system/filler bs=4k 2>/dev/null || true)");
    let full = h.apply(&spec("d", "v2", port, json!({})), &[]);
    h.sh("rm -f /etc/systemd/system/filler");
    assert!(full.failed(), "{:#}", full.json);
    assert!(full.msg().contains("No space left on device"), "{}", full.msg());
    assert!(h.unit_file("d-v2.service").is_none(), "no partial unit file");
    let leftovers = h.sh("ls -A /etc/systemd/system | grep baton-tmp || true");
    assert!(leftovers.trim().is_empty(), "temp files left: {leftovers}");

    assert_eq!(h.prop("d-v1.service", "ActiveState"), "active");
    let r = load.finish().expect("load");
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(r.by_version.keys().collect::<Vec<_>>(), ["v1"]);
    // And with room again, the handover goes through.
    h.apply(&spec("d", "v2", port, json!({})), &[]).ok();
}

#[test]
fn systemd_job_failures_and_timeouts_leave_the_old_release_serving() {
    let h = Host::boot("jobfail");
    let port = 8184;
    h.apply(&spec("j", "v1", port, json!({})), &[]).ok();
    h.wait_http(port, Duration::from_secs(5)).expect("serves");
    let load = h.load(port, 2, 120);

    let pre = spec(
        "j",
        "v2",
        port,
        json!({"directives": {"Service": {"ExecStartPre": "/bin/sh -c 'echo pre-failed-marker; exit 7'"}}}),
    );
    let out = h.apply(&pre, &[]);
    assert!(out.failed() && out.json["rolled_back"] == true, "{:#}", out.json);
    assert!(out.msg().contains("j-v2.service failed to start: job result 'failed'"), "{}", out.msg());
    assert!(out.msg().contains("pre-failed-marker"), "the journal explains it: {}", out.msg());

    let slow = demo_spec(
        "j",
        "v3",
        port,
        &["--never-ready"],
        json!({"service_type": "notify", "health": {"tcp": true, "timeout_sec": 20}, "directives": {"Service": {"TimeoutStartSec": "1"}}}),
    );
    let out = h.apply(&slow, &[]);
    assert!(out.failed() && out.json["rolled_back"] == true, "{:#}", out.json);
    // systemd's own TimeoutStartSec fired (its journal line is in the message).
    assert!(out.msg().contains("start operation timed out"), "{}", out.msg());

    assert_eq!(h.prop("j-v1.service", "ActiveState"), "active");
    assert_eq!(h.enabled("j-v1.service"), "enabled");
    let r = load.finish().expect("load");
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(r.by_version.keys().collect::<Vec<_>>(), ["v1"]);
}
