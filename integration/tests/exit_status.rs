//! `baton apply`'s exit statuses against a sandboxed real systemd, each produced for real: 0 for
//! a deploy (with `-v` and `-q`), 4 for a release that crashes and is rolled back (the old one still serving), 1 for
//! a release restarted in place that does not come back, 3 for a refused handover (preflight),
//! 5 for an unwritable unit directory. (5 for a lock timeout: `apply.rs`; 2, 3 and 5 for an
//! unreachable systemd without a sandbox: `crates/baton-cli/tests/cli.rs`.)

use std::time::Duration;

use baton_integration::{demo_spec, Host};
use serde_json::json;

#[test]
fn each_outcome_has_its_exit_status() {
    let h = Host::boot("exit-status");
    let port = 18110;
    let fast = json!({"health": {"http": "/health", "timeout_sec": 4, "interval_ms": 50}});

    // With -v: the unit file's path and how long each step took.
    let out = h.apply(&demo_spec("es", "v1", port, &[], fast.clone()), &["-v"]);
    assert_eq!(out.code, 0, "{:#}", out.json);
    for needle in
        ["unit file: /etc/systemd/system/es-v1.service (state started)", "done in ", "ms: start es-v1.service"]
    {
        assert!(out.stderr.contains(needle), "{needle:?} not in:\n{}", out.stderr);
    }
    let v1_pid = h.prop("es-v1.service", "MainPID");
    // With -q: only the JSON, although --progress always.
    let out = h.apply(&demo_spec("es", "v1", port, &[], fast.clone()), &["-q"]);
    assert_eq!((out.code, out.stderr.as_str(), out.changed()), (0, "", false), "{:#}", out.json);

    // A release that crashes at once: rolled back, v1 untouched and serving.
    let out = h.apply(&demo_spec("es", "v2", port, &["--crash-on-start"], fast.clone()), &[]);
    assert_eq!(out.code, 4, "{:#}", out.json);
    assert_eq!(out.json["rolled_back"], true);
    assert_eq!(out.json["version"], "v1");
    assert!(out.msg().contains("previous release is still serving"), "{}", out.msg());
    assert_eq!(h.prop("es-v1.service", "MainPID"), v1_pid, "v1 was not restarted");
    assert_eq!(h.prop("es-v2.service", "ActiveState"), "inactive");
    h.wait_http(port, Duration::from_secs(5)).expect("v1 still answers");

    // The same user is needed to share the port: refused by the preflight, nothing touched.
    let out = h.apply(&demo_spec("es", "v3", port, &[], json!({"user": "nobody"})), &[]);
    assert_eq!(out.code, 3, "{:#}", out.json);
    assert!(out.msg().starts_with("preflight:"), "{}", out.msg());
    assert!(h.unit_file("es-v3.service").is_none());

    // A unit directory that cannot be written: the environment.
    let spec = demo_spec("es", "v3", port, &[], json!({"unit_dir": "/dev/null/units"}));
    let out = h.apply(&spec, &[]);
    assert_eq!(out.code, 5, "{:#}", out.json);
    assert_eq!(h.prop("es-v1.service", "MainPID"), v1_pid, "v1 untouched");

    // v1 restarted in place (same version, new unit text) with a fault: nothing serves any
    // more, which is no rollback to an old release: the generic failure.
    let out = h.apply(&demo_spec("es", "v1", port, &["--crash-on-start"], fast), &[]);
    assert_eq!(out.code, 1, "{:#}", out.json);
    assert_eq!(out.json["failed"], true);
    assert_ne!(h.prop("es-v1.service", "ActiveState"), "active");
}
