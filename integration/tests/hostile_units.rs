//! Units systemd would read otherwise than baton means them, against a sandboxed real systemd
//! (issue 11, items 8, 10 and 12): the line length systemd 252 refuses is the one baton refuses,
//! a trailing backslash swallows the next line (so baton refuses it before writing anything), and
//! a custom template whose marks are not in `[Unit]` is refused before anything is written.
//! (Item 11, a huge `TimeoutStopSec` on disk: `hardening.rs`.)

use std::path::PathBuf;

use baton_core::testing::MAX_LINE_BYTES;
use baton_integration::Host;
use serde_json::json;

/// A hand-written (not baton-rendered) unit with one extra line in `[Service]`.
fn unit_with(line: &str) -> String {
    format!("[Unit]\nDescription=probe\n[Service]\nExecStart=/bin/sleep 600\n{line}\nEnvironment=AFTER=1\n")
}

/// Reloads systemd and returns `LoadState` and `LoadError` of `unit`.
fn load(h: &Host, unit: &str) -> (String, String) {
    h.sh("systemctl daemon-reload");
    (h.prop(unit, "LoadState"), h.prop(unit, "LoadError"))
}

// Issue 11, item 10: MAX_LINE_BYTES is exactly what systemd reads.
#[test]
fn systemd_refuses_a_unit_line_one_byte_longer_than_baton_allows() {
    let h = Host::boot("longline");
    let key = "Description=";
    for (unit, len) in [("longest.service", MAX_LINE_BYTES), ("toolong.service", MAX_LINE_BYTES + 1)] {
        let line = format!("{key}{}", "x".repeat(len - key.len()));
        assert_eq!(line.len(), len);
        let text = format!("[Unit]\n{line}\n[Service]\nExecStart=/bin/sleep 600\n");
        std::fs::write(h.path(&format!("/etc/systemd/system/{unit}")), text).expect("write the unit");
    }
    let (state, error) = load(&h, "longest.service");
    assert_eq!(state, "loaded", "a line of {MAX_LINE_BYTES} bytes: {error}");
    assert_eq!(h.prop("longest.service", "Description").len(), MAX_LINE_BYTES - key.len());
    let (state, error) = load(&h, "toolong.service");
    assert_ne!(state, "loaded", "a line of {} bytes loaded", MAX_LINE_BYTES + 1);
    let journal = h.sh("journalctl --no-pager -q -u toolong.service -b; journalctl --no-pager -q -b | tail -n 50");
    assert!(
        error.contains("No buffer space available") || journal.contains("No buffer space available"),
        "state {state}, error {error:?}, journal:\n{journal}"
    );
}

// Issue 11, item 8: what the old rendering wrote loses the next line; baton refuses it now.
#[test]
fn a_trailing_backslash_in_working_directory_swallows_the_next_line_and_is_refused() {
    let h = Host::boot("backslash");
    // What baton rendered before: `WorkingDirectory=/tmp\` continues into the next line.
    std::fs::write(h.path("/etc/systemd/system/cont.service"), unit_with("WorkingDirectory=/tmp\\"))
        .expect("write the unit");
    let (state, _) = load(&h, "cont.service");
    assert_eq!(state, "loaded");
    assert_eq!(h.prop("cont.service", "Environment"), "", "Environment=AFTER=1 was swallowed");
    // The same without the backslash keeps the line.
    std::fs::write(h.path("/etc/systemd/system/plain.service"), unit_with("WorkingDirectory=/tmp"))
        .expect("write the unit");
    load(&h, "plain.service");
    assert_eq!(h.prop("plain.service", "Environment"), "AFTER=1");

    let spec =
        json!({"name": "bs", "version": "v1", "exec_start": ["/bin/sleep", "600"], "working_directory": "/tmp\\"});
    let out = h.apply(&spec, &[]);
    assert_eq!(out.code, 3, "{:#}", out.json);
    assert!(out.msg().starts_with("working_directory: must not end with a backslash"), "{}", out.msg());
    assert!(h.unit_file("bs-v1.service").is_none(), "nothing written");
}

// Issue 11, item 12: marks under [Service] were written, then disowned by the next run.
#[test]
fn a_template_with_marks_under_service_is_refused_before_anything_is_written() {
    let h = Host::boot("marks");
    let template = std::fs::canonicalize(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/baton-cli/tests/hostile/templates/marks-in-service.j2"),
    )
    .expect("the corpus template");
    let spec = json!({"name": "mk", "version": "v1", "exec_start": ["/bin/sleep", "600"],
                      "template": template.display().to_string()});
    let out = h.apply(&spec, &[]);
    assert_eq!(out.code, 3, "{:#}", out.json);
    assert!(out.msg().contains("(they are in [Service]; baton and systemd read them only in [Unit])"), "{}", out.msg());
    assert!(h.unit_file("mk-v1.service").is_none(), "nothing written");
    assert_eq!(h.prop("mk-v1.service", "LoadState"), "not-found");
    // The same template with the marks in [Unit] deploys, and `absent` removes what it wrote.
    let fixed = h.path("/tmp/marks-in-unit.j2");
    let text = std::fs::read_to_string(&template)
        .expect("read")
        .replace("[Unit]\n", "[Unit]\n{{ mark_service }}={{ name }}\n{{ mark_version }}={{ version }}\n");
    let text =
        text.replacen("{{ mark_service }}={{ name }}\n{{ mark_version }}={{ version }}\nExecStart", "ExecStart", 1);
    std::fs::write(&fixed, text).expect("write");
    let spec = json!({"name": "mk", "version": "v1", "exec_start": ["/bin/sleep", "600"], "template": "/tmp/marks-in-unit.j2"});
    h.apply(&spec, &[]).ok();
    assert_eq!(h.prop("mk-v1.service", "ActiveState"), "active");
    h.apply(&json!({"name": "mk", "state": "absent"}), &[]).ok();
    assert!(h.unit_file("mk-v1.service").is_none(), "absent removed the unit it wrote");
}
