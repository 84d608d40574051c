//! Secrets that stay secret, against a sandboxed real systemd (issue 11, item 3): the values of
//! `secret_environment` reach the release's process, and nothing else: not the unit file, not
//! `systemctl show`, not the result (check mode or a real run, with the diff), not the progress
//! on stderr. They live in a root-owned 0600 file that the unit names with `EnvironmentFile=`;
//! changing one is a change (a restart, diffed with the values hidden); removing a release, or
//! the whole service, removes its file.

use baton_integration::{demo_spec, Applied, Host};
use serde_json::{json, Value};

/// A secret with every character systemd's escaping treats specially (`$`, `%`, `"`, `\`, a
/// backtick, spaces); `w0rd` marks it in any form.
const SECRET: &str = r#"Pa$$w0rd%"x \`y` z"#;
/// What marks the secret in any rendered form.
const MARK: &str = "w0rd";

fn spec(name: &str, version: &str, port: u16, secret: &str, extra: Value) -> Value {
    let mut s = demo_spec(
        name,
        version,
        port,
        &[],
        json!({"secret_environment": {"DB_PASSWORD": secret}, "environment": {"PLAIN": "visible"}}),
    );
    if let (Some(obj), Value::Object(more)) = (s.as_object_mut(), extra) {
        obj.extend(more);
    }
    s
}

/// Asserts that neither the result nor stderr holds the secret in any form.
#[track_caller]
fn assert_no_secret(what: &str, run: &Applied) {
    let out = run.json.to_string();
    assert!(!out.contains(MARK), "{what}: the result holds the secret:\n{:#}", run.json);
    assert!(!run.stderr.contains(MARK), "{what}: stderr holds the secret:\n{}", run.stderr);
}

/// The environment of the unit's main process, as the kernel has it.
fn process_env(h: &Host, unit: &str) -> Vec<String> {
    let pid = h.prop(unit, "MainPID");
    assert_ne!(pid, "0", "{unit} has no main process");
    let raw = std::fs::read(h.path(&format!("/proc/{pid}/environ"))).expect("read the process environment");
    raw.split(|b| *b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

const SECRET_DIR: &str = "/etc/systemd/system/baton-secrets";

fn secret_file(unit: &str) -> String {
    format!("{SECRET_DIR}/{unit}.env")
}

#[test]
fn a_secret_reaches_the_process_but_not_the_unit_systemctl_show_the_result_or_progress() {
    let h = Host::boot("secrets-reach");
    let s = spec("sec", "v1", 18601, SECRET, json!({}));

    let planned = h.apply(&s, &["--check", "--diff"]).ok();
    assert!(planned.changed());
    assert_no_secret("check mode", &planned);
    assert!(!h.path(SECRET_DIR).exists(), "check mode wrote the secret file");

    let done = h.apply(&s, &["--diff"]).ok();
    assert_no_secret("the run", &done);
    let file = secret_file("sec-v1.service");
    let diff = done.json["diff"].as_array().expect("diff");
    assert_eq!(diff[0]["path"], file, "{:#}", done.json);
    assert_eq!(diff[0]["after"], "secret_environment: changed (values hidden)\n");

    // The unit names the file, never a value.
    let unit = h.unit_file("sec-v1.service").expect("unit file");
    assert!(!unit.contains(MARK), "{unit}");
    assert!(unit.contains(&format!("EnvironmentFile={file}\n")), "{unit}");
    // systemd shows the file's path, not its values.
    let show = h.sh("systemctl show -p Environment -p EnvironmentFiles sec-v1.service");
    assert!(!show.contains(MARK), "{show}");
    assert!(show.contains(&format!("EnvironmentFiles={file} (ignore_errors=no)")), "{show}");
    assert!(show.contains("PLAIN=visible"), "{show}");

    // The process gets the value exactly.
    let env = process_env(&h, "sec-v1.service");
    assert!(env.contains(&format!("DB_PASSWORD={SECRET}")), "{env:?}");
    assert!(env.contains(&"PLAIN=visible".to_owned()), "{env:?}");

    // Root's alone: the file 0600, its directory 0700, and another user cannot read it.
    assert_eq!(h.sh(&format!("stat -c '%a %U %G' {file} {SECRET_DIR}")), "600 root root\n700 root root\n");
    let out =
        h.sb.sh_output(&format!("setpriv --reuid=nobody --regid=nogroup --clear-groups cat {file} 2>&1"))
            .expect("cat as nobody");
    assert!(!out.status.success(), "nobody read the secret file");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(MARK));

    // Another user can still see the service's status (the secret directory is just not
    // theirs to open), with no secret in it.
    let status =
        h.sb.sh_output(&format!(
            "setpriv --reuid=nobody --regid=nogroup --clear-groups {} status --json sec 2>&1",
            baton_integration::bin("baton").display()
        ))
        .expect("baton status as nobody");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "baton status as nobody failed: {text}");
    assert!(text.contains("sec-v1.service") && !text.contains(MARK), "{text}");

    // The journal of the run holds nothing either (baton logs no value; the demo logs none).
    let journal = h.sh("journalctl --no-pager -o cat 2>/dev/null || true");
    assert!(!journal.contains(MARK), "the journal holds the secret");
}

#[test]
fn changing_only_a_secret_is_a_change_that_restarts_the_release_diffed_with_values_hidden() {
    let h = Host::boot("secrets-change");
    h.apply(&spec("chg", "v1", 18602, "first-w0rd", json!({})), &[]).ok();
    let pid = h.prop("chg-v1.service", "MainPID");
    let unit = h.unit_file("chg-v1.service").expect("unit");

    let changed = spec("chg", "v1", 18602, "second-w0rd", json!({}));
    let planned = h.apply(&changed, &["--check", "--diff"]).ok();
    assert!(planned.changed(), "check mode missed the changed secret: {:#}", planned.json);
    assert_no_secret("check mode", &planned);

    let done = h.apply(&changed, &["--diff"]).ok();
    assert!(done.changed(), "{:#}", done.json);
    assert_no_secret("the run", &done);
    let actions: Vec<&str> =
        done.json["actions"].as_array().expect("actions").iter().filter_map(Value::as_str).collect();
    let file = secret_file("chg-v1.service");
    assert_eq!(actions[0], format!("write {file}"), "{actions:?}");
    assert!(actions.iter().any(|a| a.starts_with("stop chg-v1.service")), "{actions:?}");
    assert!(actions.contains(&"start chg-v1.service"), "{actions:?}");
    assert_eq!(
        done.json["diff"],
        json!([{"path": file, "before": "secret_environment: (values hidden)\n",
                "after": "secret_environment: changed (values hidden)\n"}])
    );
    assert_eq!(h.unit_file("chg-v1.service").expect("unit"), unit, "the unit itself did not change");
    assert_ne!(h.prop("chg-v1.service", "MainPID"), pid, "not restarted");
    assert!(process_env(&h, "chg-v1.service").contains(&"DB_PASSWORD=second-w0rd".to_owned()));

    // The same spec again: nothing to do.
    let again = h.apply(&changed, &["--diff"]).ok();
    assert!(!again.changed(), "{:#}", again.json);

    // A new version with a new secret: a handover, each release with its own file.
    let v2 = h.apply(&spec("chg", "v2", 18602, "third-w0rd", json!({})), &[]).ok();
    assert!(v2.msg().contains("handed over from v1 to v2"), "{}", v2.msg());
    assert!(process_env(&h, "chg-v2.service").contains(&"DB_PASSWORD=third-w0rd".to_owned()));
    assert!(h.path(&file).exists(), "v1 is kept for rollback, with its secrets");
}

#[test]
fn removing_a_release_or_the_service_removes_its_secret_file() {
    let h = Host::boot("secrets-remove");
    h.apply(&spec("rm", "v1", 18603, "one-w0rd", json!({"keep": 0})), &[]).ok();
    let (f1, f2) = (secret_file("rm-v1.service"), secret_file("rm-v2.service"));
    assert!(h.path(&f1).exists());

    // keep 0: the handover removes v1's unit and its secret file.
    let done = h.apply(&spec("rm", "v2", 18603, "two-w0rd", json!({"keep": 0})), &["--diff"]).ok();
    assert_no_secret("the handover", &done);
    assert!(h.unit_file("rm-v1.service").is_none());
    assert!(!h.path(&f1).exists(), "v1's secret file is left behind");
    assert!(h.path(&f2).exists());
    let actions = done.json["actions"].to_string();
    assert!(actions.contains(&format!("remove {f1}")), "{actions}");

    // absent: every release and every secret file.
    let gone = h.apply(&json!({"name": "rm", "state": "absent"}), &["--diff"]).ok();
    assert!(gone.changed());
    assert!(!h.path(&f2).exists(), "absent left {f2}");
    assert_eq!(h.sh(&format!("ls -A {SECRET_DIR}")), "", "secret files left behind");
    assert!(h.unit_files().iter().all(|u| !u.starts_with("rm-")), "{:?}", h.unit_files());
}
