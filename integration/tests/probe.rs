//! The readiness probe counts only answers from the new release's own process (issue 11, item 1),
//! against a sandboxed real systemd. Both releases listen on the same port with SO_REUSEPORT,
//! so the kernel hands each probe connection to either one: the old release must never be able
//! to pass (or fail) the new release's HTTP or TCP probe, during readiness or `observe_sec`,
//! with or without load.

use std::time::Duration;

use baton_integration::{demo_spec, Applied, Host};
use serde_json::{json, Value};

/// How many times the rollback is tried: the bug let one probe in two through.
const RUNS: usize = 20;

/// A release of `name` on `port` with demo `flags` and the given `health`.
fn release(name: &str, version: &str, port: u16, flags: &[&str], health: Value) -> Value {
    let mut all = vec!["--linger-ms", "150"];
    all.extend_from_slice(flags);
    demo_spec(name, version, port, &all, json!({"health": health, "keep": 1}))
}

/// `health.http: "/health"`, `observe_sec` 0 (the default), a short timeout.
fn http_health() -> Value {
    json!({"http": "/health", "timeout_sec": 2, "interval_ms": 50})
}

/// A TCP probe only.
fn tcp_health() -> Value {
    json!({"tcp": true, "timeout_sec": 2, "interval_ms": 50})
}

/// Whether `out` is a rollback that left `active` serving; otherwise a description.
fn rolled_back_to(h: &Host, name: &str, out: &Applied, active: &str) -> Result<(), String> {
    if !out.failed() || out.json["rolled_back"] != true || out.json["version"] != active {
        return Err(format!("not rolled back (exit {}): {}", out.code, out.msg()));
    }
    let state = h.prop(&format!("{name}-{active}.service"), "ActiveState");
    if state != "active" {
        return Err(format!("{name}-{active}.service is {state} after the rollback"));
    }
    Ok(())
}

/// Tries `RUNS` times to hand over from a healthy release to `bad`; every try must be rolled
/// back. A try that wrongly hands over is counted, then a healthy release is deployed again.
fn every_try_is_rolled_back(h: &Host, name: &str, port: u16, bad: impl Fn(usize) -> Value) {
    let mut active = "ok0".to_owned();
    h.apply(&release(name, &active, port, &[], http_health()), &[]).ok();
    let mut wrong = Vec::new();
    for i in 1..=RUNS {
        let out = h.apply(&bad(i), &[]);
        if let Err(why) = rolled_back_to(h, name, &out, &active) {
            wrong.push(format!("run {i}: {why}"));
            active = format!("ok{i}");
            h.apply(&release(name, &active, port, &[], http_health()), &[]).ok();
        } else {
            assert_eq!(out.code, 4, "a rollback exits 4: {:#}", out.json);
        }
    }
    eprintln!("{name}: {} of {RUNS} runs rolled back", RUNS - wrong.len());
    assert!(wrong.is_empty(), "{} of {RUNS} runs went wrong:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn the_old_release_cannot_answer_the_new_releases_probe() {
    let h = Host::boot("probe-http");
    every_try_is_rolled_back(&h, "ph", 8090, |i| {
        release("ph", &format!("sick{i}"), 8090, &["--unhealthy-after", "0"], http_health())
    });
    let journal = h.sh("journalctl -u ph-sick1.service --no-pager -o cat");
    assert!(journal.contains("/health answers 503"), "the new release was the one probed: {journal}");
}

#[test]
fn the_old_release_cannot_accept_the_new_releases_tcp_probe() {
    let h = Host::boot("probe-tcp");
    every_try_is_rolled_back(&h, "pt", 8091, |i| {
        release("pt", &format!("deaf{i}"), 8091, &["--never-accept"], tcp_health())
    });
}

#[test]
fn an_unhealthy_old_release_cannot_fail_the_new_releases_probe() {
    let h = Host::boot("probe-old-sick");
    let (name, port) = ("po", 8092);
    // Each release is healthy for 2 s, then answers 503: every handover starts from a sick one.
    let flags = ["--unhealthy-after", "2"];
    h.apply(&release(name, "v0", port, &flags, http_health()), &[]).ok();
    for i in 1..=5 {
        std::thread::sleep(Duration::from_millis(2200));
        let out = h.apply(&release(name, &format!("v{i}"), port, &flags, http_health()), &[]).ok();
        assert_eq!(out.json["previous_version"], format!("v{}", i - 1), "{:#}", out.json);
        assert_eq!(h.prop(&format!("{name}-v{i}.service"), "ActiveState"), "active");
        assert_eq!(h.prop(&format!("{name}-v{}.service", i - 1), "ActiveState"), "inactive");
    }
}

#[test]
fn an_unhealthy_old_release_cannot_fail_the_new_releases_observation() {
    let h = Host::boot("probe-observe");
    let (name, port) = ("pv", 8093);
    let health = json!({"http": "/health", "timeout_sec": 5, "interval_ms": 50, "observe_sec": 2});
    h.apply(&release(name, "v0", port, &["--unhealthy-after", "0.5"], http_health()), &[]).ok();
    std::thread::sleep(Duration::from_millis(700));
    // Both serve for observe_sec; the old one answers 503 all along, the new one 200.
    let out = h.apply(&release(name, "v1", port, &[], health.clone()), &[]).ok();
    assert_eq!(out.json["previous_version"], "v0", "{:#}", out.json);
    // And the other way round: the old one healthy, the new one turning sick while observed.
    let out = h.apply(&release(name, "v2", port, &["--unhealthy-after", "0.5"], health), &[]);
    assert!(rolled_back_to(&h, name, &out, "v1").is_ok(), "{:#}", out.json);
    assert!(out.msg().contains("turned unhealthy during health.observe_sec=2s"), "{}", out.msg());
}

#[test]
fn a_new_release_that_accepts_takes_over_from_one_that_does_not() {
    let h = Host::boot("probe-tcp-old");
    let (name, port) = ("pa", 8094);
    // Deployed with the listener check only: it holds the port but never accepts.
    h.apply(&release(name, "deaf", port, &["--never-accept"], json!({"tcp": false, "timeout_sec": 2})), &[]).ok();
    let out = h.apply(&release(name, "v1", port, &[], tcp_health()), &[]).ok();
    assert_eq!(out.json["previous_version"], "deaf", "{:#}", out.json);
    assert_eq!(h.prop(&format!("{name}-deaf.service"), "ActiveState"), "inactive");
}

#[test]
fn the_old_release_cannot_answer_the_new_releases_probe_under_load() {
    let h = Host::boot("probe-load");
    let (name, port) = ("pl", 8095);
    h.apply(&release(name, "v0", port, &[], http_health()), &[]).ok();
    h.wait_http(port, Duration::from_secs(5)).expect("v0 serves");
    let load = h.load(port, 4, 600);
    std::thread::sleep(Duration::from_millis(300));
    let mut active = "v0".to_owned();
    for i in 1..=6 {
        // A healthy release takes over from the healthy one (the first handover also turns
        // net.ipv4.tcp_migrate_req on, which every rollback below needs as much as a handover:
        // connections queued on a stopped release's listener move to the other one).
        let next = format!("v{i}");
        let out = h.apply(&release(name, &next, port, &[], http_health()), &[]).ok();
        assert_eq!(out.json["previous_version"], active.as_str(), "{:#}", out.json);
        active = next;
        // A release whose /health answers 503 (it still serves /), then one that never accepts:
        // both rolled back while the load runs.
        let sick = h.apply(&release(name, &format!("sick{i}"), port, &["--unhealthy-after", "0"], http_health()), &[]);
        rolled_back_to(&h, name, &sick, &active).unwrap_or_else(|e| panic!("sick{i}: {e}: {:#}", sick.json));
        let deaf = h.apply(&release(name, &format!("deaf{i}"), port, &["--never-accept"], http_health()), &[]);
        rolled_back_to(&h, name, &deaf, &active).unwrap_or_else(|e| panic!("deaf{i}: {e}: {:#}", deaf.json));
    }
    std::thread::sleep(Duration::from_millis(300));
    let r = load.finish().expect("load report");
    eprintln!("under load: {} requests, {} failed; by version {:?}", r.requests, r.failed, r.by_version);
    assert!(r.requests > 500, "the load must be real: {r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
    assert!(!r.by_version.keys().any(|v| v.starts_with("deaf")), "{:?}", r.by_version);
}
