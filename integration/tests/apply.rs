//! `baton apply` against a sandboxed real systemd: first deploy, idempotence, spec changes,
//! stopped/absent, check mode, byte-exact argv and environment, a release that exits at once,
//! and the per-service lock.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_integration::{demo_spec, Host};
use serde_json::{json, Value};

fn sleeper(name: &str, version: &str, extra: Value) -> Value {
    let mut spec = json!({
        "name": name,
        "version": version,
        "exec_start": ["/bin/sh", "-c", "sleep 1000; true"],
    });
    if let (Some(obj), Value::Object(more)) = (spec.as_object_mut(), extra) {
        obj.extend(more);
    }
    spec
}

/// Everything observable about a service: unit files with their bytes, and systemd's view.
fn snapshot(h: &Host, units: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in h.unit_files() {
        out.insert(format!("file {f}"), h.unit_file(&f).unwrap_or_default());
    }
    for u in units {
        for p in ["ActiveState", "SubState", "MainPID", "NeedDaemonReload"] {
            out.insert(format!("{u} {p}"), h.prop(u, p));
        }
        out.insert(format!("{u} is-enabled"), h.enabled(u));
    }
    out
}

#[test]
fn first_apply_then_idempotent_then_changed() {
    let h = Host::boot("apply");
    let spec = sleeper("app", "v1", json!({}));
    let first = h.apply(&spec, &[]).ok();
    assert!(first.changed());
    assert_eq!(first.json["version"], "v1");
    assert_eq!(first.json["unit"], "app-v1.service");
    assert_eq!(h.prop("app-v1.service", "ActiveState"), "active");
    assert_eq!(h.enabled("app-v1.service"), "enabled");
    let pid = h.prop("app-v1.service", "MainPID");
    assert_ne!(pid, "0");
    assert!(first.stderr.contains("start app-v1.service"), "progress on stderr: {}", first.stderr);

    let again = h.apply(&spec, &[]).ok();
    assert!(!again.changed(), "re-apply must not change anything: {:#}", again.json);
    assert_eq!(again.json["actions"], json!([]));
    assert_eq!(h.prop("app-v1.service", "MainPID"), pid, "no restart on a no-op apply");

    let changed = sleeper("app", "v1", json!({"environment": {"GREETING": "hello"}}));
    let out = h.apply(&changed, &[]).ok();
    assert!(out.changed());
    let new_pid = h.prop("app-v1.service", "MainPID");
    assert_ne!(new_pid, pid, "a changed unit is applied by a restart");
    let environ = h.sh(&format!("tr '\\0' '\\n' < /proc/{new_pid}/environ"));
    assert!(environ.lines().any(|l| l == "GREETING=hello"), "{environ}");
    assert!(out.json["warnings"][0].as_str().unwrap_or("").contains("restarted in place"));
    assert!(!h.apply(&changed, &[]).ok().changed());
}

#[test]
fn stopped_and_absent() {
    let h = Host::boot("states");
    h.apply(&sleeper("svc", "v1", json!({})), &[]).ok();
    h.apply(&sleeper("svc", "v2", json!({})), &[]).ok();
    assert_eq!(h.prop("svc-v1.service", "ActiveState"), "inactive");
    assert_eq!(h.prop("svc-v2.service", "ActiveState"), "active");
    assert_eq!((h.enabled("svc-v1.service"), h.enabled("svc-v2.service")), ("disabled".into(), "enabled".into()));

    let stopped = h.apply(&sleeper("svc", "v2", json!({"state": "stopped"})), &[]).ok();
    assert!(stopped.changed());
    assert_eq!(h.prop("svc-v2.service", "ActiveState"), "inactive");
    assert_eq!(h.unit_files(), ["svc-v1.service", "svc-v2.service"], "stopped keeps the files");
    assert!(!h.apply(&sleeper("svc", "v2", json!({"state": "stopped"})), &[]).ok().changed());
    // stopped and absent need only the name.
    let name_only = |state: &str| json!({"name": "svc", "state": state});
    let again = h.apply(&name_only("stopped"), &[]).ok();
    assert!(!again.changed(), "{:#}", again.json);
    assert_eq!(again.json["unit"], Value::Null);
    assert_eq!(h.enabled("svc-v2.service"), "enabled", "stopped without a version leaves enablement as it is");

    let absent = h.apply(&name_only("absent"), &["--diff"]).ok();
    assert!(absent.changed());
    let removed: Vec<&str> =
        absent.json["diff"].as_array().expect("diff").iter().filter_map(|d| d["path"].as_str()).collect();
    assert_eq!(removed, ["/etc/systemd/system/svc-v1.service", "/etc/systemd/system/svc-v2.service"]);
    assert!(h.unit_files().is_empty(), "absent removes every release: {:?}", h.unit_files());
    assert!(h.sh("ls /etc/systemd/system/multi-user.target.wants/ 2>/dev/null || true").trim().is_empty());
    assert!(!h.apply(&sleeper("svc", "v2", json!({"state": "absent"})), &[]).ok().changed());
}

#[test]
fn check_mode_touches_nothing() {
    let h = Host::boot("check");
    h.apply(&sleeper("chk", "v1", json!({})), &[]).ok();
    let units = ["chk-v1.service", "chk-v2.service"];
    let before = snapshot(&h, &units);
    let planned = h.apply(&sleeper("chk", "v2", json!({})), &["--check", "--diff"]).ok();
    assert!(planned.changed());
    let actions: Vec<&str> =
        planned.json["actions"].as_array().expect("actions").iter().filter_map(Value::as_str).collect();
    assert_eq!(
        actions,
        [
            "write /etc/systemd/system/chk-v2.service",
            "start chk-v2.service",
            "enable chk-v2.service",
            "disable chk-v1.service",
            "stop chk-v1.service"
        ]
    );
    assert_eq!(planned.json["diff"][0]["path"], "/etc/systemd/system/chk-v2.service");
    assert_eq!(planned.json["diff"][0]["before"], "");
    assert!(planned.json["diff"][0]["after"].as_str().unwrap_or("").contains("X-Baton-Version=v2"));
    assert_eq!(snapshot(&h, &units), before, "check mode changed files or systemd state");
    let absent = h.apply(&sleeper("chk", "v1", json!({"state": "absent"})), &["--check"]).ok();
    assert!(absent.changed());
    assert_eq!(snapshot(&h, &units), before);
}

#[test]
fn the_diff_has_one_entry_per_unit_file_written_or_removed() {
    let h = Host::boot("diff");
    let keep0 = |version: &str| demo_spec("dif", version, 8190, &[], json!({"keep": 0}));
    h.apply(&keep0("v1"), &[]).ok();
    let v1 = h.unit_file("dif-v1.service").expect("v1's unit");

    // v2 with keep 0 writes v2's unit and removes v1's: two entries, planned as done.
    let planned = h.apply(&keep0("v2"), &["--check", "--diff"]).ok();
    let done = h.apply(&keep0("v2"), &["--diff"]).ok();
    assert!(done.changed());
    let v2 = h.unit_file("dif-v2.service").expect("v2's unit");
    assert_eq!(
        done.json["diff"],
        json!([
            {"path": "/etc/systemd/system/dif-v2.service", "before": "", "after": v2},
            {"path": "/etc/systemd/system/dif-v1.service", "before": v1, "after": ""},
        ]),
        "{:#}",
        done.json
    );
    assert_eq!(planned.json["diff"], done.json["diff"], "check mode plans the diff the run reports");
    assert_eq!(h.unit_files(), ["dif-v2.service"]);
    assert_eq!(h.prop("dif-v2.service", "ActiveState"), "active");

    // Nothing written or removed: an empty list.
    let again = h.apply(&keep0("v2"), &["--diff"]).ok();
    assert!(!again.changed());
    assert_eq!(again.json["diff"], json!([]));
}

#[test]
fn hostile_argv_and_environment_arrive_byte_for_byte() {
    let h = Host::boot("hostile");
    let args = [
        "a b",
        "\"q\"",
        "back\\slash",
        "$HOME",
        "${PATH}",
        "100%",
        "%n",
        ";",
        "'single'",
        "tab\there",
        "ünïcødé",
        "x\u{1}y",
        "[Service]",
        "ExecStartPre=/bin/false",
        "-",
        "",
    ];
    let mut argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), "sleep 1000; true".to_owned()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let env = json!({"EVIL": "x\" Foo=\"bar", "PCT": "%h $HOME \\", "SEMI": "a;b", "SPACE": " lead and trail "});
    let spec = json!({"name": "hostile", "version": "v1", "exec_start": argv, "environment": env});
    h.apply(&spec, &[]).ok();
    let pid = h.prop("hostile-v1.service", "MainPID");
    let cmdline = h.sb.command("cat").arg(format!("/proc/{pid}/cmdline")).output().expect("cat").stdout;
    let got: Vec<String> =
        cmdline.split(|b| *b == 0).map(|a| String::from_utf8(a.to_vec()).expect("utf-8")).collect::<Vec<_>>();
    // cmdline ends with a NUL, so the split yields one trailing empty item.
    assert_eq!(&got[..got.len() - 1], &argv[..]);
    let environ = h.sb.command("cat").arg(format!("/proc/{pid}/environ")).output().expect("cat").stdout;
    let environ: Vec<String> =
        environ.split(|b| *b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    for (k, v) in env.as_object().expect("object") {
        let want = format!("{k}={}", v.as_str().expect("string"));
        assert!(environ.contains(&want), "{want:?} not in {environ:?}");
    }
    assert!(!environ.iter().any(|e| e.starts_with("Foo=")), "an injected variable appeared: {environ:?}");
}

#[test]
fn release_that_exits_at_once_is_reported_with_its_journal() {
    let h = Host::boot("crash");
    let spec = json!({
        "name": "crash", "version": "v1",
        "exec_start": ["/bin/sh", "-c", "echo boom-marker-123 >&2; exit 3"],
        "health": {"timeout_sec": 5}
    });
    let out = h.apply(&spec, &[]);
    assert_eq!(out.code, 4, "rolled back: {:#}", out.json);
    assert!(out.failed());
    assert!(out.msg().contains("crash-v1.service"), "{}", out.msg());
    assert!(out.msg().contains("boom-marker-123"), "the journal lines belong in msg: {}", out.msg());
    assert_eq!(out.json["rolled_back"], true);
    assert_ne!(h.prop("crash-v1.service", "ActiveState"), "active");
}

#[test]
fn lock_refuses_a_second_concurrent_run() {
    let h = Host::boot("lock");
    // The first run waits ~6 s for a release that never becomes ready.
    let slow = demo_spec("locked", "v1", 18080, &["--never-ready"], json!({"health": {"tcp": true, "timeout_sec": 6}}));
    let first = std::thread::scope(|s| {
        let first = s.spawn(|| h.apply(&slow, &[]));
        std::thread::sleep(Duration::from_millis(1500));
        let second = h.baton(&["apply", "--lock-timeout", "1"], &sleeper("locked", "v2", json!({})).to_string());
        assert_eq!(second.code, 5, "a lock timeout is an environment error: {:#}", second.json);
        assert!(
            second.msg().contains("service locked is locked by another baton run (pid="),
            "second run must name the holder: {}",
            second.msg()
        );
        assert!(h.unit_file("locked-v2.service").is_none(), "the refused run wrote nothing");
        first.join().expect("first run")
    });
    assert!(first.failed() && first.msg().contains("was not ready within health.timeout_sec=6s"), "{:#}", first.json);
    // Once the first run is over, the lock is free again.
    h.apply(&sleeper("locked", "v2", json!({})), &[]).ok();
}

#[test]
fn status_shows_the_releases() {
    let h = Host::boot("status");
    h.apply(&sleeper("st", "v1", json!({})), &[]).ok();
    h.apply(&sleeper("st", "v2", json!({})), &[]).ok();
    let out = h.baton(&["status", "st", "--json"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json["active_version"], "v2");
    assert_eq!(out.json["releases"].as_array().map(Vec::len), Some(2));
    assert_eq!(out.json["releases"][1]["enabled"], true);
    let table = h.sb.command(baton_integration::bin("baton")).args(["status", "st"]).output().expect("status");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("* v2") && table.contains("active/running"), "{table}");
}

#[test]
fn preflight_refuses_a_handover_that_cannot_share_the_port() {
    let h = Host::boot("preflight");
    h.apply(&demo_spec("pf", "v1", 18090, &[], json!({})), &[]).ok();
    let before = snapshot(&h, &["pf-v1.service", "pf-v2.service"]);
    // SO_REUSEPORT needs the same effective user: root's v1 and nobody's v2 cannot share :18090.
    let out = h.apply(&demo_spec("pf", "v2", 18090, &[], json!({"user": "nobody"})), &[]);
    assert_eq!(out.code, 3, "refused: {:#}", out.json);
    assert!(out.msg().starts_with("preflight: pf-v1.service runs as User=root"), "{}", out.msg());
    assert!(out.msg().contains("User=nobody") && out.msg().contains("Nothing was changed"), "{}", out.msg());
    assert_eq!(snapshot(&h, &["pf-v1.service", "pf-v2.service"]), before, "nothing touched");
}
