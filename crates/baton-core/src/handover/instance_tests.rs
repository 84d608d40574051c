//! Instance units (`unit_naming: "instance"`) on the fake systemd: the plan and its execution
//! write the template and one drop-in per release, hand over, roll back, keep, stop, remove and
//! diff them like per-version units.

use std::path::{Path, PathBuf};

use super::*;
use crate::result::FileDiff;
use crate::spec::parse;
use crate::systemd::fake::FakeSystemd;
use crate::systemd::JobResult;

fn spec(dir: &Path, version: &str, extra: &str) -> ServiceSpec {
    let json = format!(
        r#"{{"name":"app","version":"{version}","exec_start":["/bin/app","{version}"],"unit_naming":"instance","unit_dir":"{}"{extra}}}"#,
        dir.display()
    );
    parse(json.as_bytes()).expect("valid")
}

fn opts(dir: &Path) -> ApplyOptions {
    ApplyOptions { lock_dir: dir.join("locks"), ..ApplyOptions::default() }
}

fn drop_in(dir: &Path, version: &str) -> PathBuf {
    dir.join(format!("app@{version}.service.d/baton.conf"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn versions(dir: &Path) -> Vec<String> {
    unit_dir::releases(dir, "app").expect("scan").into_iter().map(|u| u.version).collect()
}

#[test]
fn deploy_writes_the_template_then_the_drop_in_and_hands_over_by_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = FakeSystemd::new();
    let out = apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
    let template = dir.path().join("app@.service");
    assert_eq!(
        out.actions[..3],
        [
            format!("write {}", template.display()),
            format!("write {}", drop_in(dir.path(), "v1").display()),
            "start app@v1.service".to_owned()
        ]
    );
    assert_eq!(out.unit.as_deref(), Some("app@v1.service"));
    assert!(sd.is_active("app@v1.service") && sd.is_enabled("app@v1.service"));
    assert_eq!(crate::unit::instance::template_owner(&read(&template)), Some("app"));
    assert!(read(&drop_in(dir.path(), "v1")).contains("ExecStart=\"/bin/app\" \"v1\"\n"));
    assert_eq!(versions(dir.path()), ["v1"]);

    // The same spec again: nothing changes.
    sd.clear_calls();
    let out = apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("again");
    assert!(!out.changed && sd.calls().is_empty(), "{out:?} {:?}", sd.calls());

    // v2: the template is the same, so only v2's drop-in is written; no daemon-reload.
    let out = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v2");
    assert_eq!(out.previous_version.as_deref(), Some("v1"));
    assert_eq!(
        sd.calls(),
        ["start app@v2.service", "enable app@v2.service", "disable app@v1.service", "stop app@v1.service"]
    );
    assert_eq!(out.actions[0], format!("write {}", drop_in(dir.path(), "v2").display()));
    assert_eq!(versions(dir.path()), ["v1", "v2"]);
}

#[test]
fn a_failing_instance_is_rolled_back_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = FakeSystemd::new();
    apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
    sd.fail_next_start("app@v2.service", JobResult::Failed);
    let err = apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect_err("fails");
    assert!(err.rolled_back);
    assert_eq!(err.version.as_deref(), Some("v1"));
    assert!(sd.is_active("app@v1.service") && sd.is_enabled("app@v1.service") && !sd.is_active("app@v2.service"));
}

#[test]
fn keep_prunes_drop_ins_with_their_directories_and_the_diff_has_an_entry_per_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = FakeSystemd::new();
    let diff = ApplyOptions { diff: true, ..opts(dir.path()) };
    let v1 = apply(&spec(dir.path(), "v1", ""), &sd, &diff, &mut |_| {}).expect("v1");
    let template = dir.path().join("app@.service");
    assert_eq!(
        v1.diff.expect("diff"),
        [
            FileDiff { path: template.display().to_string(), before: String::new(), after: read(&template) },
            FileDiff {
                path: drop_in(dir.path(), "v1").display().to_string(),
                before: String::new(),
                after: read(&drop_in(dir.path(), "v1")),
            },
        ]
    );
    let v1_text = read(&drop_in(dir.path(), "v1"));
    // v2 with keep 0: check mode plans the diff the run reports; v1's drop-in and directory go.
    let s2 = spec(dir.path(), "v2", r#","keep":0"#);
    let planned = apply(&s2, &sd, &ApplyOptions { check: true, ..diff.clone() }, &mut |_| {}).expect("check");
    let out = apply(&s2, &sd, &diff, &mut |_| {}).expect("v2");
    let expected = [
        FileDiff {
            path: drop_in(dir.path(), "v2").display().to_string(),
            before: String::new(),
            after: read(&drop_in(dir.path(), "v2")),
        },
        FileDiff { path: drop_in(dir.path(), "v1").display().to_string(), before: v1_text, after: String::new() },
    ];
    assert_eq!(out.diff.as_deref(), Some(&expected[..]));
    assert_eq!(planned.diff, out.diff);
    assert!(!dir.path().join("app@v1.service.d").exists(), "the empty .d directory is removed");
    assert!(template.exists());
    assert_eq!(versions(dir.path()), ["v2"]);
}

#[test]
fn stopped_and_absent_handle_the_template_and_every_drop_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = FakeSystemd::new();
    apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
    apply(&spec(dir.path(), "v2", r#","secret_environment":{"TOKEN":"x"}"#), &sd, &opts(dir.path()), &mut |_| {})
        .expect("v2");
    assert!(crate::secrets::path(dir.path(), "app@v2.service").exists());
    // An operator's own drop-in beside baton's stays, with its directory.
    std::fs::write(dir.path().join("app@v1.service.d/local.conf"), "[Service]\nNice=5\n").expect("write");

    let name_only = |state: &str| {
        let json = format!(r#"{{"name":"app","state":"{state}","unit_dir":"{}"}}"#, dir.path().display());
        parse(json.as_bytes()).expect("valid")
    };
    let out = apply(&name_only("stopped"), &sd, &opts(dir.path()), &mut |_| {}).expect("stopped");
    assert!(out.changed && !sd.is_active("app@v2.service"));
    assert_eq!(versions(dir.path()), ["v1", "v2"]);

    let diff = ApplyOptions { diff: true, ..opts(dir.path()) };
    let out = apply(&name_only("absent"), &sd, &diff, &mut |_| {}).expect("absent");
    let removed: Vec<_> = out.diff.expect("diff").into_iter().filter(|d| d.after.is_empty()).map(|d| d.path).collect();
    let template = dir.path().join("app@.service");
    for path in [drop_in(dir.path(), "v1"), drop_in(dir.path(), "v2"), template.clone()] {
        assert!(removed.contains(&path.display().to_string()), "{path:?} not in {removed:?}");
        assert!(!path.exists());
    }
    assert!(!sd.is_enabled("app@v2.service"));
    assert!(!dir.path().join("app@v2.service.d").exists());
    assert!(dir.path().join("app@v1.service.d/local.conf").exists(), "not baton's: kept");
    assert!(!crate::secrets::path(dir.path(), "app@v2.service").exists());
    let again = apply(&name_only("absent"), &sd, &opts(dir.path()), &mut |_| {}).expect("again");
    assert!(!again.changed, "{again:?}");
}

#[test]
fn a_template_edited_by_hand_is_rewritten_with_a_reload_and_a_foreign_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = FakeSystemd::new();
    apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
    let template = dir.path().join("app@.service");
    let good = read(&template);
    std::fs::write(&template, good.replace("[Unit]\n", "[Unit]\nAfter=x.service\n")).expect("edit");
    sd.clear_calls();
    let out = apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("again");
    assert!(out.changed);
    assert_eq!(read(&template), good);
    assert_eq!(sd.calls(), ["reload"], "the running instance is loaded from the template");

    // A template baton did not write is never overwritten.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(other.path().join("app@.service"), "[Service]\nExecStart=/bin/true\n").expect("write");
    let err = apply(&spec(other.path(), "v1", ""), &sd, &opts(other.path()), &mut |_| {}).expect_err("refused");
    let msg = crate::result::Failure::from(*err).msg;
    assert!(msg.contains("app@.service") && msg.contains("no X-Baton-Service"), "{msg}");
    assert!(!drop_in(other.path(), "v1").exists());
}

#[test]
fn switching_naming_hands_over_and_the_template_goes_with_the_last_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = FakeSystemd::new();
    let per_version = |v: &str, extra: &str| {
        let json = format!(
            r#"{{"name":"app","version":"{v}","exec_start":["/bin/app"],"unit_dir":"{}"{extra}}}"#,
            dir.path().display()
        );
        parse(json.as_bytes()).expect("valid")
    };
    apply(&per_version("v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
    apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v2");
    assert!(sd.is_active("app@v2.service") && !sd.is_active("app-v1.service"));
    assert_eq!(versions(dir.path()), ["v1", "v2"]);
    apply(&per_version("v3", r#","keep":0"#), &sd, &opts(dir.path()), &mut |_| {}).expect("v3");
    assert!(sd.is_active("app-v3.service") && !sd.is_active("app@v2.service"));
    assert_eq!(versions(dir.path()), ["v3"]);
    assert!(!dir.path().join("app@.service").exists(), "no instance left: the template is removed");
}

#[test]
fn adopt_reads_an_instance_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = FakeSystemd::new();
    let s = spec(dir.path(), "v1", r#","environment":{"A":"b c"},"user":"app""#);
    apply(&s, &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
    let adopted = crate::adopt::adopt(&sd, &dir.path().display().to_string(), "app").expect("adopt");
    assert!(adopted.exact && adopted.active && adopted.enabled, "{adopted:?}");
    assert_eq!(adopted.spec.unit_naming, Some(crate::spec::UnitNaming::Instance));
    assert_eq!(adopted.unit_path, drop_in(dir.path(), "v1"));
    assert_eq!(adopted.spec.clone().validate().expect("valid").to_raw(), s.to_raw());
}

#[test]
fn the_next_run_removes_the_temp_files_a_killed_run_left_and_check_mode_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = FakeSystemd::new();
    apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
    // A run killed while writing the template and v2's drop-in (before the rename).
    let stale = [
        dir.path().join(".app@.service.baton-tmp-00112233445566ff"),
        dir.path().join("app@v1.service.d/.baton.conf.baton-tmp-a0b1c2d3e4f50617"),
    ];
    for path in &stale {
        std::fs::write(path, "[Unit]\nDescri").expect("plant a temp file");
        let file = std::fs::File::options().write(true).open(path).expect("open");
        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(5)).expect("mtime");
    }
    let check = ApplyOptions { check: true, ..opts(dir.path()) };
    apply(&spec(dir.path(), "v2", ""), &sd, &check, &mut |_| {}).expect("check");
    assert!(stale.iter().all(|p| p.exists()), "check mode touches nothing");

    apply(&spec(dir.path(), "v2", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v2");
    for path in &stale {
        assert!(!path.exists(), "{} is left", path.display());
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_read_shows_a_template_edited_by_hand_until_the_next_run_writes_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sd = FakeSystemd::new();
    apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("v1");
    let observed = |what: &str| {
        let seen = crate::status::observe(&sd, dir.path(), "app").expect("observe");
        seen.unit_text("v1").unwrap_or_else(|| panic!("{what}: no text")).to_owned()
    };
    assert_eq!(observed("deployed"), read(&drop_in(dir.path(), "v1")), "baton's template: the drop-in alone");

    let template = dir.path().join("app@.service");
    std::fs::write(&template, format!("{}[Service]\nNice=7\n", read(&template))).expect("edit the template");
    let seen = observed("edited");
    assert!(seen.starts_with(&read(&drop_in(dir.path(), "v1"))), "{seen}");
    assert!(seen.contains(&format!("# {} differs", template.display())) && seen.ends_with("Nice=7\n"), "{seen}");

    let out = apply(&spec(dir.path(), "v1", ""), &sd, &opts(dir.path()), &mut |_| {}).expect("again");
    assert!(out.changed, "the template is written back");
    assert_eq!(observed("written back"), read(&drop_in(dir.path(), "v1")));

    std::fs::remove_file(&template).expect("remove the template");
    assert!(observed("missing").contains("is missing"));
}
