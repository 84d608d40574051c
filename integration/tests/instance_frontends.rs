//! Instance units (`unit_naming: "instance"`, issue 12 item 6) through the Terraform provider and
//! the Ansible module, against a sandboxed real systemd, with the real `terraform` (offline,
//! `dev_overrides`) and the real `ansible-playbook` (the repository's `.venv`):
//! - Terraform: create, an empty second plan, a handover, drift (the release stopped by hand, its
//!   drop-in edited by hand, the template edited by hand) shown in the next plan and put back by
//!   the apply, import reading `unit_naming = "instance"` back, destroy leaving no file;
//! - Ansible: check mode reports the change and touches nothing, `--diff` shows the drop-in's and
//!   the template's differences, and a second run is not changed.
//!
//! Nothing is skipped: without terraform, ansible (`make .venv`) or root these tests fail.

use std::time::Duration;

use baton_integration::ansible::Ansible;
use baton_integration::terraform::{Tf, HEADER};
use baton_integration::{bin, demo_argv, Host};

/// A plan's text with every run of blanks made one space (Terraform aligns the `=` of a block).
fn squash(text: &str) -> String {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

/// A `baton_service` of the demo app with instance units.
fn resource(name: &str, version: &str, port: u16) -> String {
    let argv: Vec<String> =
        demo_argv(version, port, &["--linger-ms", "150"]).iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"{HEADER}
resource "baton_service" "svc" {{
  name             = "{name}"
  version          = "{version}"
  exec_start       = [{}]
  port             = {port}
  health           = {{ http = "/health", timeout_sec = 10, interval_ms = 50 }}
  timeout_stop_sec = 10
  unit_naming      = "instance"
  environment      = {{ GREETING = "hello world" }}
}}
"#,
        argv.join(", ")
    )
}

/// The service's files in /etc/systemd/system (template, drop-in directories and drop-ins), sorted.
fn files(h: &Host, name: &str) -> Vec<String> {
    let listing = h.sh(&format!("cd /etc/systemd/system && find . -path './{name}[@-]*' | sed 's|^./||' | sort"));
    listing.lines().map(str::to_owned).collect()
}

#[test]
fn terraform_creates_hands_over_imports_and_shows_drift_of_instance_units() {
    let h = Host::boot("inst-tf");
    let tf = Tf::new(&h, "instance");
    let (name, port) = ("ti", 18310);
    let (template, drop_in) = ("/etc/systemd/system/ti@.service", "/etc/systemd/system/ti@v2.service.d/baton.conf");

    // Create, then an empty plan.
    tf.write(&resource(name, "v1", port));
    let out = tf.apply();
    assert!(out.contains("Resources: 1 added, 0 changed, 0 destroyed"), "{out}");
    assert_eq!(h.prop("ti@v1.service", "ActiveState"), "active");
    assert_eq!(h.enabled("ti@v1.service"), "enabled");
    assert_eq!(files(&h, name), ["ti@.service", "ti@v1.service.d", "ti@v1.service.d/baton.conf"]);
    tf.assert_no_changes("after the first apply");
    let state = squash(&tf.state_show("baton_service.svc"));
    assert!(state.contains(r#"unit = "ti@v1.service""#), "{state}");
    assert!(state.contains(r#"unit_naming = "instance""#), "{state}");

    // A version bump is an in-place update carried out as a handover.
    tf.write(&resource(name, "v2", port));
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(
        plan.contains("Plan: 0 to add, 1 to change, 0 to destroy.") && !plan.contains("must be replaced"),
        "{plan}"
    );
    let load = h.load(port, 2, 300);
    std::thread::sleep(Duration::from_millis(300));
    let out = tf.apply();
    let report = load.finish().expect("load report");
    assert!(out.contains("Resources: 0 added, 1 changed, 0 destroyed"), "{out}");
    assert!(report.requests > 50, "the load must be real: {report:?}");
    assert_eq!(report.failed, 0, "the handover failed requests: {report:?}");
    assert_eq!(h.prop("ti@v2.service", "ActiveState"), "active");
    assert_eq!(h.prop("ti@v1.service", "ActiveState"), "inactive");
    tf.assert_no_changes("after the handover");

    // Drift: the release stopped by hand.
    h.sh("systemctl stop ti@v2.service");
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "a stopped release is drift:\n{plan}");
    assert!(squash(&plan).contains(r#"~ state = "stopped" -> "started""#), "{plan}");
    tf.apply();
    assert_eq!(h.prop("ti@v2.service", "ActiveState"), "active");
    tf.assert_no_changes("after starting the stopped release again");

    // Drift: the drop-in edited by hand shows as the unit's difference, and is put back.
    h.sh(&format!("sed -i 's/^Restart=always$/Restart=no/' {drop_in}"));
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "a hand-edited drop-in is drift:\n{plan}");
    assert!(plan.contains("- Restart=no") && plan.contains("+ Restart=always"), "{plan}");
    tf.apply();
    assert!(h.sh(&format!("cat {drop_in}")).contains("\nRestart=always\n"));
    assert_eq!(h.prop("ti@v2.service", "Restart"), "always");
    tf.assert_no_changes("after putting the drop-in back");

    // Drift: the template edited by hand shows in the plan too, and is put back.
    let original = h.sh(&format!("cat {template}"));
    h.sh(&format!("printf '[Service]\\nNice=7\\n' >> {template}"));
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "a hand-edited template is drift:\n{plan}");
    assert!(plan.contains("- Nice=7"), "the plan shows the template's difference:\n{plan}");
    assert!(plan.contains(template), "the plan names the template:\n{plan}");
    let pid = h.prop("ti@v2.service", "MainPID");
    tf.apply();
    assert_eq!(h.sh(&format!("cat {template}")), original, "the template is baton's again");
    assert_eq!(h.prop("ti@v2.service", "NeedDaemonReload"), "no");
    assert_eq!(h.prop("ti@v2.service", "MainPID"), pid, "putting the template back restarts nothing");
    tf.assert_no_changes("after putting the template back");

    // Import: the service adopted from its drop-in, with its naming.
    tf.ok(&["state", "rm", "-no-color", "baton_service.svc"]);
    let out = tf.ok(&["import", "-input=false", "-no-color", "baton_service.svc", name]);
    assert!(out.contains("Import successful!"), "{out}");
    let state = squash(&tf.state_show("baton_service.svc"));
    assert!(state.contains(r#"unit_naming = "instance""#), "{state}");
    assert!(state.contains(r#"version = "v2""#) && state.contains(r#"unit = "ti@v2.service""#), "{state}");
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "only the handover settings, which no unit holds, are to be recorded:\n{plan}");
    for unread in ["unit_text", "unit_naming", "exec_start", "must be replaced"] {
        assert!(!plan.contains(unread), "{unread} reads back exactly:\n{plan}");
    }
    tf.apply();
    assert_eq!(h.prop("ti@v2.service", "MainPID"), pid, "recording the settings restarts nothing");
    tf.assert_no_changes("after the import");

    // Destroy: the template, every drop-in and its directory go.
    let out = tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(out.contains("Resources: 1 destroyed"), "{out}");
    assert!(files(&h, name).is_empty(), "{:?}", files(&h, name));
}

/// A play deploying the demo app with instance units (version, port, demo path as variables).
const PLAY: &str = r#"- name: Instance units
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Deploy the release
      baton.systemd.service:
        name: "{{ svc }}"
        version: "{{ version }}"
        exec_start: ["{{ demo }}", "--port", "{{ port }}", "--version", "{{ version }}"]
        port: "{{ port }}"
        health: {http: /health, timeout_sec: 10, interval_ms: 50}
        timeout_stop_sec: 10
        unit_naming: instance
"#;

/// Every file of the service in the unit directory with its text (what check mode must leave).
fn snapshot(h: &Host, name: &str) -> String {
    h.sh(&format!("cd /etc/systemd/system && find . -path './{name}[@-]*' -type f | sort | xargs -r head -c 100000"))
}

#[test]
fn ansible_check_mode_diff_and_idempotence_of_instance_units() {
    let h = Host::boot("inst-ansible");
    let a = Ansible::new("instance");
    let play = a.dir().join("instance.yml");
    std::fs::write(&play, PLAY).expect("write the play");
    let (name, port) = ("ia", 18311);
    let run = |version: &str, extra: &[&str]| {
        let mut args: Vec<String> = [
            format!("svc={name}"),
            format!("version={version}"),
            format!("port={port}"),
            format!("demo={}", bin("baton-demo").display()),
        ]
        .into_iter()
        .flat_map(|kv| ["-e".to_owned(), kv])
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        a.playbook(&h, &play, args).ok()
    };
    let template = "/etc/systemd/system/ia@.service";

    // Deploy, then the same task again: not changed.
    let first = run("v1", &[]);
    assert_eq!(first.recap("localhost", "changed"), Some(1), "{}", first.stdout);
    assert_eq!(h.prop("ia@v1.service", "ActiveState"), "active");
    let again = run("v1", &["--diff"]);
    assert_eq!(again.recap("localhost", "changed"), Some(0), "a second run changes nothing: {}", again.stdout);
    assert!(!again.stdout.contains("+++ after"), "no diff when nothing changes: {}", again.stdout);

    // Check mode with diff, for v2 with the template edited by hand: changed, both files' diffs
    // shown, nothing touched.
    h.sh(&format!("printf '[Service]\\nNice=7\\n' >> {template}"));
    let (before, pid) = (snapshot(&h, name), h.prop("ia@v1.service", "MainPID"));
    let check = run("v2", &["--check", "--diff"]);
    let out = &check.stdout;
    assert_eq!(check.recap("localhost", "changed"), Some(1), "{out}");
    assert!(out.contains("+++ after: /etc/systemd/system/ia@v2.service.d/baton.conf"), "the drop-in's diff: {out}");
    assert!(out.contains("+X-Baton-Version=v2"), "a new drop-in is all added lines: {out}");
    assert!(out.contains(&format!("--- before: {template}")), "the template's diff: {out}");
    assert!(out.contains("-Nice=7"), "the hand edit goes: {out}");
    assert_eq!(snapshot(&h, name), before, "check mode wrote or removed a file");
    assert!(!h.path("/etc/systemd/system/ia@v2.service.d").exists());
    assert_eq!(h.prop("ia@v1.service", "MainPID"), pid, "check mode restarted v1");
    assert_eq!(h.prop("ia@v2.service", "ActiveState"), "inactive", "check mode started v2");

    // The real run, then the same again: not changed.
    let bump = run("v2", &["--diff"]);
    assert_eq!(bump.recap("localhost", "changed"), Some(1), "{}", bump.stdout);
    assert_eq!(h.prop("ia@v2.service", "ActiveState"), "active");
    assert_eq!(h.prop("ia@v1.service", "ActiveState"), "inactive");
    assert!(!h.sh(&format!("cat {template}")).contains("Nice=7"), "the template is baton's again");
    let again = run("v2", &["--diff"]);
    assert_eq!(again.recap("localhost", "changed"), Some(0), "{}", again.stdout);
    let check = run("v2", &["--check", "--diff"]);
    assert_eq!(check.recap("localhost", "changed"), Some(0), "{}", check.stdout);
}
