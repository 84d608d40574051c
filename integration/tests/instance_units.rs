//! Instance units (`unit_naming: "instance"`, issue 12 item 6) against a sandboxed real
//! systemd: `app@v2.service` runs from the template `app@.service` and its drop-in
//! `app@v2.service.d/baton.conf`, which pins everything of the release.
//!
//! The first test pins down the systemd behaviour the design rests on (see
//! `baton_core::unit::instance`): `systemctl cat` shows the drop-in after the template, the
//! drop-in wins, an edit of the template (by hand, with a daemon-reload and a restart) changes
//! nothing of a release, and an instance without a drop-in does not start. The second runs
//! handovers, a failing release, `keep`, a rollback to a kept release, `status`, `stopped` and
//! `absent` under load (a new connection per request and kept-alive connections), with 0 failed
//! requests. The first also checks that a run removes the temp files a killed run left.

use std::process::{Child, Stdio};
use std::time::Duration;

use baton_integration::{bin, demo_spec, Applied, Host, LoadReport};
use serde_json::{json, Value};

/// How long a load may run at most (it is stopped once the test's handovers are done).
const MAX_LOAD_SECS: u64 = 600;

fn spec(name: &str, version: &str, port: u16) -> Value {
    demo_spec(name, version, port, &["--linger-ms", "100", "--drain-ms", "2000"], json!({"unit_naming": "instance"}))
}

fn crashing(name: &str, version: &str, port: u16) -> Value {
    let mut s = demo_spec(name, version, port, &["--crash-on-start"], json!({"unit_naming": "instance"}));
    s["health"]["timeout_sec"] = json!(3);
    s
}

/// The service's units systemd counts as active (or on their way).
fn active(h: &Host, name: &str) -> Vec<String> {
    h.sh(&format!("systemctl list-units --no-legend --state=active,activating '{name}*.service' | awk '{{print $1}}'"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What is in /etc/systemd/system for `name`: files and drop-in directories (sorted).
fn files(h: &Host, name: &str) -> Vec<String> {
    let listing =
        h.sh(&format!("cd /etc/systemd/system && find . -path './{name}*' -not -name '.*' | sed 's|^./||' | sort"));
    listing.lines().map(str::to_owned).collect()
}

/// The ExecStart= systemd holds for `unit` (`systemctl show`).
fn exec_start(h: &Host, unit: &str) -> String {
    h.prop(unit, "ExecStart")
}

/// One HTTP request with curl inside; its body (the serving version) or None.
fn get(h: &Host, port: u16) -> Option<String> {
    let out = h.sb.sh_output(&format!("curl -s -m 2 http://127.0.0.1:{port}/")).expect("curl");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn systemd_takes_every_release_setting_from_the_drop_in_and_none_from_the_template() {
    let h = Host::boot("inst-systemd");
    let out = h.apply(&spec("ia", "v1", 18301), &[]).ok();
    assert_eq!(out.json["unit"], "ia@v1.service");
    assert!(get(&h, 18301).is_some_and(|b| b.contains("v1")), "v1 serves");
    assert_eq!(files(&h, "ia"), ["ia@.service", "ia@v1.service.d", "ia@v1.service.d/baton.conf"]);

    // `systemctl cat` shows the template first, then the drop-in, which systemd applies last.
    let cat = h.sh("systemctl cat ia@v1.service");
    let (template_at, drop_in_at) = (
        cat.find("# /etc/systemd/system/ia@.service").expect("template shown"),
        cat.find("# /etc/systemd/system/ia@v1.service.d/baton.conf").expect("drop-in shown"),
    );
    assert!(template_at < drop_in_at, "{cat}");
    assert_eq!(h.prop("ia@v1.service", "FragmentPath"), "/etc/systemd/system/ia@.service");
    assert_eq!(h.prop("ia@v1.service", "DropInPaths"), "/etc/systemd/system/ia@v1.service.d/baton.conf");
    assert_eq!(h.prop("ia@v1.service", "Description"), "ia v1 (managed by baton)");
    let pinned = exec_start(&h, "ia@v1.service");
    assert!(pinned.contains("--version v1"), "{pinned}");
    assert!(h.enabled("ia@v1.service") == "enabled", "systemctl enable of the instance");
    let link = h.sh("readlink /etc/systemd/system/multi-user.target.wants/ia@v1.service");
    assert_eq!(link.trim(), "/etc/systemd/system/ia@.service", "the instance's link points at the template");

    // v2 beside it; v1 is now a kept release (stopped, its drop-in on disk).
    h.apply(&spec("ia", "v2", 18301), &[]).ok();
    assert_eq!(active(&h, "ia"), ["ia@v2.service"]);

    // An edit of the template by hand, everything a template could add to a release: another
    // ExecStart=, an environment, a user, a start hook. daemon-reload, then restart both.
    let template = h.path("/etc/systemd/system/ia@.service");
    let text = std::fs::read_to_string(&template).expect("template");
    let edited = format!(
        "{text}\n[Service]\nExecStart=/bin/false\nExecStartPre=/bin/false\nEnvironment=INJECTED=1\n\
         EnvironmentFile=/nonexistent\nUser=nobody\nType=oneshot\n"
    );
    std::fs::write(&template, edited).expect("edit the template");
    h.sh("systemctl daemon-reload");
    for (unit, version) in [("ia@v1.service", "v1"), ("ia@v2.service", "v2")] {
        let exec = exec_start(&h, unit);
        assert!(exec.contains(&format!("--version {version}")) && !exec.contains("/bin/false"), "{unit}: {exec}");
        assert_eq!(h.prop(unit, "ExecStartPre"), "", "{unit}");
        assert!(!h.prop(unit, "Environment").contains("INJECTED"), "{unit}");
        assert_eq!(h.prop(unit, "EnvironmentFiles"), "", "{unit}");
        assert_eq!(h.prop(unit, "User"), "", "{unit} runs as root, as its drop-in says");
        assert_eq!(h.prop(unit, "Type"), "exec", "{unit}");
    }
    // The kept release v1 still starts as v1 (restarting the running v2 would drop requests).
    h.sh("systemctl stop ia@v2.service && systemctl start ia@v1.service");
    assert!(get(&h, 18301).is_some_and(|b| b.contains("v1")), "kept v1 starts as v1 after the template edit");
    h.sh("systemctl stop ia@v1.service && systemctl start ia@v2.service");

    // baton puts its template back (and reloads, since instances are loaded from it).
    let out = h.apply(&spec("ia", "v2", 18301), &[]).ok();
    assert!(out.changed());
    assert_eq!(std::fs::read_to_string(&template).expect("template"), text);
    assert_eq!(h.prop("ia@v2.service", "NeedDaemonReload"), "no");

    // An instance without a drop-in has no ExecStart= and does not start.
    let typo = h.sb.sh_output("systemctl start ia@typo.service").expect("systemctl");
    assert!(!typo.status.success(), "an instance without a drop-in must not start");
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(said.contains("bad unit file setting"), "{said}");
    assert_eq!(h.prop("ia@typo.service", "LoadState"), "bad-setting");
    assert_eq!(h.prop("ia@typo.service", "ActiveState"), "inactive");

    // A run killed while writing the template and a drop-in left temp files: the next run
    // removes its service's (baton's names, older than its lock) and nothing else.
    h.sh("cd /etc/systemd/system && touch -d '1 minute ago' .ia@.service.baton-tmp-0123456789abcdef \
         ia@v2.service.d/.baton.conf.baton-tmp-0123456789abcdef .ix@.service.baton-tmp-0123456789abcdef \
         .ia@.service.baton-tmp-by-hand");
    let out = h.apply(&spec("ia", "v2", 18301), &[]).ok();
    assert!(!out.changed(), "{:#}", out.json);
    let left = h.sh("cd /etc/systemd/system && find . -name '*baton-tmp*' | sort");
    assert_eq!(
        left.lines().collect::<Vec<_>>(),
        ["./.ia@.service.baton-tmp-by-hand", "./.ix@.service.baton-tmp-0123456789abcdef"]
    );
}

fn load(h: &Host, port: u16, workers: usize, keep_alive: bool) -> Child {
    let mut cmd = h.sb.command(bin("baton-load"));
    cmd.args(["--addr", &format!("127.0.0.1:{port}"), "--workers", &workers.to_string()]).args([
        "--duration-secs",
        &MAX_LOAD_SECS.to_string(),
        "--timeout-ms",
        "5000",
        "--stop-on-stdin-eof",
    ]);
    if keep_alive {
        cmd.arg("--keep-alive");
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn baton-load")
}

fn finish(mut child: Child) -> LoadReport {
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait for baton-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!("baton-load printed no report ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    })
}

#[track_caller]
fn handover(h: &Host, s: &Value) -> Applied {
    let out = h.apply(s, &[]).ok();
    eprintln!("handover to {}: {:.2} s", s["version"], out.took.as_secs_f64());
    if out.took > Duration::from_secs(5) {
        eprintln!("a slow handover; its steps: {:#}\n{}", out.json["actions"], out.stderr);
    }
    out
}

#[test]
fn handovers_rollback_keep_status_stopped_and_absent_under_load_fail_no_request() {
    let h = Host::boot("inst-load");
    let (name, port) = ("ib", 18302);
    h.apply(&spec(name, "v1", port), &[]).ok();
    let (fresh, kept) = (load(&h, port, 3, false), load(&h, port, 2, true));
    std::thread::sleep(Duration::from_millis(300));

    // v1 -> v2 -> v3.
    for v in ["v2", "v3"] {
        let out = handover(&h, &spec(name, v, port));
        assert_eq!(out.json["unit"], format!("{name}@{v}.service"));
        assert_eq!(active(&h, name), [format!("{name}@{v}.service")]);
    }
    // keep 2 (the default): v1 and v2 kept, each as its drop-in.
    assert_eq!(
        files(&h, name),
        [
            "ib@.service",
            "ib@v1.service.d",
            "ib@v1.service.d/baton.conf",
            "ib@v2.service.d",
            "ib@v2.service.d/baton.conf",
            "ib@v3.service.d",
            "ib@v3.service.d/baton.conf"
        ]
    );

    // A failing release is rolled back: v3 keeps serving, enabled.
    let out = h.apply(&crashing(name, "v4", port), &[]);
    assert_eq!(out.code, 4, "rolled back: {:#}", out.json);
    assert!(out.msg().contains("ib@v4.service"), "{}", out.msg());
    assert_eq!(active(&h, name), ["ib@v3.service"]);
    assert_eq!(h.enabled("ib@v3.service"), "enabled");

    // A hand edit of the template does not touch the kept v2; rolling back to it under load runs v2.
    let template = h.path("/etc/systemd/system/ib@.service");
    let text = std::fs::read_to_string(&template).expect("template");
    std::fs::write(&template, format!("{text}\n[Service]\nExecStart=/bin/false\nEnvironment=INJECTED=1\n"))
        .expect("edit");
    h.sh("systemctl daemon-reload");
    let out = handover(&h, &spec(name, "v2", port));
    assert_eq!(out.json["previous_version"], "v3");
    assert_eq!(active(&h, name), ["ib@v2.service"]);
    assert!(exec_start(&h, "ib@v2.service").contains("--version v2"));
    assert_eq!(std::fs::read_to_string(&template).expect("template"), text, "baton restored its template");
    assert!(get(&h, port).is_some_and(|b| b.contains("v2")));
    // Then forward again to v5. `keep` counts by write time: the drop-ins of v3 and the failed
    // v4 are the newest inactive ones and stay; v1 (pruned by the rollback) and v2 go.
    handover(&h, &spec(name, "v5", port));
    assert_eq!(active(&h, name), ["ib@v5.service"]);

    let (fresh, kept) = (finish(fresh), finish(kept));
    eprintln!("new connection per request: {}", fresh.summary());
    eprintln!("keep-alive: {}", kept.summary());
    assert!(fresh.requests > 100 && kept.requests > 100, "the load must be real: {fresh:?} {kept:?}");
    assert_eq!(fresh.failed, 0, "requests failed (new connection per request): {fresh:?}");
    assert_eq!(kept.failed, 0, "requests failed (keep-alive): {kept:?}");
    let kept_files = files(&h, name);
    assert!(!kept_files.iter().any(|f| f.starts_with("ib@v1.") || f.starts_with("ib@v2.")), "{kept_files:?}");

    // status: the releases by version, v5 active and enabled.
    let st = h.baton(&["status", name, "--json"], "");
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert_eq!(st.json["active_version"], "v5");
    let releases = st.json["releases"].as_array().expect("releases");
    let versions: Vec<_> = releases.iter().filter_map(|r| r["version"].as_str()).collect();
    assert_eq!(versions, ["v3", "v4", "v5"], "{:#}", st.json);
    let table = h.sb.command(bin("baton")).args(["status", name]).output().expect("status");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("* v5") && table.contains("active/running"), "{table}");

    // check mode + diff: one entry per file (here only the new drop-in), nothing touched.
    let check = h.apply(&spec(name, "v6", port), &["--check", "--diff"]).ok();
    let paths: Vec<_> =
        check.json["diff"].as_array().expect("diff").iter().filter_map(|d| d["path"].as_str()).collect();
    assert_eq!(
        paths,
        ["/etc/systemd/system/ib@v6.service.d/baton.conf", "/etc/systemd/system/ib@v3.service.d/baton.conf"]
    );
    assert!(!h.path("/etc/systemd/system/ib@v6.service.d").exists());

    // stopped: nothing runs, the files stay.
    let stopped = h.apply(&json!({"name": name, "state": "stopped"}), &[]).ok();
    assert!(stopped.changed());
    assert!(active(&h, name).is_empty());
    assert!(get(&h, port).is_none(), "nothing serves");
    assert_eq!(files(&h, name).len(), 7);

    // absent: the template, every drop-in and its directory, and the enablement go.
    let absent = h.apply(&json!({"name": name, "state": "absent"}), &["--diff"]).ok();
    assert!(absent.changed());
    assert!(files(&h, name).is_empty(), "{:?}", files(&h, name));
    assert!(std::fs::symlink_metadata(h.path("/etc/systemd/system/multi-user.target.wants/ib@v5.service")).is_err());
    let removed = absent.json["diff"].as_array().expect("diff").len();
    assert_eq!(removed, 4, "three drop-ins and the template: {:#}", absent.json["diff"]);
}
