//! `terraform-provider-baton` driven by the real terraform CLI, offline, inside the sandbox (so
//! the provider talks to the sandbox's real systemd): apply then an empty plan; a version bump
//! that is "1 changed" under load with 0 failed requests; drift after a manual stop and after a
//! hand-edited unit; a failed handover that fails the apply with the journal and keeps the old
//! release in the state; a service removed outside Terraform; import, by command and by an
//! `import {}` block; every invalid attribute reported in one plan, each at its line; the
//! `baton_service` data source read after an apply and a handover, and a missing service;
//! `terraform validate` of the documented examples; destroy leaving no unit files.
//!
//! Terraform runs with its own `TF_CLI_CONFIG_FILE` (`dev_overrides` to the built provider),
//! `CHECKPOINT_DISABLE=1`, and `HOME`/`TF_DATA_DIR` in a directory under the cargo target
//! directory (outside the sandbox's private tmpfs paths). A missing `terraform` fails the test.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use baton_integration::terraform::{Tf, HEADER};
use baton_integration::{bin, demo_argv, demo_spec, Host};
use serde_json::json;

/// A `baton_service` of the demo app: `version` on `port`, with extra demo flags.
fn demo_resource(label: &str, name: &str, version: &str, port: u16, flags: &[&str], extra: &str) -> String {
    let argv = demo_argv(version, port, &[&["--linger-ms", "150"], flags].concat());
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"
resource "baton_service" "{label}" {{
  name             = "{name}"
  version          = "{version}"
  exec_start       = [{}]
  port             = {port}
  health           = {{ http = "/health", timeout_sec = 10, interval_ms = 50 }}
  timeout_stop_sec = 10
  environment      = {{ GREETING = "hello world", RUST_LOG = "info" }}
  directives       = {{ Service = {{ LimitNOFILE = "65536" }} }}
{extra}}}
"#,
        argv.join(", ")
    )
}

fn web(version: &str) -> String {
    format!("{HEADER}{}", demo_resource("web", "web", version, 18080, &[], ""))
}

#[test]
fn apply_bump_under_load_drift_and_destroy() {
    let h = Host::boot("tf-lifecycle");
    let tf = Tf::new(&h, "lifecycle");

    // Create: a first deploy, then an empty plan.
    tf.write(&web("v1"));
    let out = tf.apply();
    assert!(out.contains("Resources: 1 added, 0 changed, 0 destroyed"), "{out}");
    assert_eq!(h.prop("web-v1.service", "ActiveState"), "active");
    assert_eq!(h.enabled("web-v1.service"), "enabled");
    h.wait_http(18080, Duration::from_secs(5)).expect("v1 serves");
    tf.assert_no_changes("after the first apply");
    let state = tf.state_show("baton_service.web");
    assert!(state.contains(r#"unit             = "web-v1.service""#), "{state}");
    assert!(state.contains(r#"id               = "web""#), "{state}");

    // A version bump is an in-place update, carried out as a handover under load.
    tf.write(&web("v2"));
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("will be updated in-place"), "{plan}");
    assert!(plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{plan}");
    assert!(!plan.contains("must be replaced"), "{plan}");
    let load = h.load(18080, 4, 300);
    std::thread::sleep(Duration::from_millis(300));
    let out = tf.apply();
    std::thread::sleep(Duration::from_millis(300));
    let report = load.finish().expect("load report");
    eprintln!("terraform handover v1 -> v2 under load: {} requests, {} failed", report.requests, report.failed);
    assert!(out.contains("Resources: 0 added, 1 changed, 0 destroyed"), "{out}");
    assert!(report.requests > 100, "the load must be real: {report:?}");
    assert_eq!(report.failed, 0, "the handover failed requests: {report:?}");
    assert!(report.by_version.contains_key("v1") && report.by_version.contains_key("v2"), "{report:?}");
    assert_eq!(h.prop("web-v2.service", "ActiveState"), "active");
    assert_eq!(h.prop("web-v1.service", "ActiveState"), "inactive");
    tf.assert_no_changes("after the handover");

    // Drift: a release stopped by hand shows in the next plan, and the apply starts it again.
    h.sh("systemctl stop web-v2.service");
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "a stopped release is drift:\n{plan}");
    assert!(plan.contains(r#"~ state            = "stopped" -> "started""#), "{plan}");
    assert!(plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{plan}");
    let out = tf.apply();
    assert!(out.contains("Resources: 0 added, 1 changed, 0 destroyed"), "{out}");
    assert_eq!(h.prop("web-v2.service", "ActiveState"), "active");
    tf.assert_no_changes("after starting the stopped release again");

    // Drift: a unit file edited by hand shows as the unit's difference, and is put back.
    h.sh("sed -i 's/^Restart=always$/Restart=no/' /etc/systemd/system/web-v2.service");
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "a hand-edited unit is drift:\n{plan}");
    assert!(plan.contains("- Restart=no") && plan.contains("+ Restart=always"), "{plan}");
    tf.apply();
    let unit = h.unit_file("web-v2.service").expect("unit file");
    assert!(unit.contains("\nRestart=always\n"), "{unit}");
    tf.assert_no_changes("after putting the unit back");

    // Destroy: every release stopped and removed, no unit file left.
    let out = tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(out.contains("Resources: 1 destroyed"), "{out}");
    let left: Vec<String> = h.unit_files().into_iter().filter(|f| f.starts_with("web-")).collect();
    assert!(left.is_empty(), "destroy leaves no unit files: {left:?}");
    assert_eq!(h.prop("web-v2.service", "ActiveState"), "inactive");
}

#[test]
fn import_failed_handover_and_removal_outside_terraform() {
    let h = Host::boot("tf-import");
    let tf = Tf::new(&h, "import");

    // A service deployed with the CLI, then adopted by Terraform.
    let spec = demo_spec(
        "api",
        "v1",
        18081,
        &["--linger-ms", "150"],
        json!({"health": {"http": "/health", "timeout_sec": 10, "interval_ms": 50}, "timeout_stop_sec": 10,
               "environment": {"GREETING": "hello world", "RUST_LOG": "info"},
               "directives": {"Service": {"LimitNOFILE": "65536"}}}),
    );
    h.apply(&spec, &[]).ok();
    let pid = h.prop("api-v1.service", "MainPID");
    tf.write(&format!("{HEADER}{}", demo_resource("api", "api", "v1", 18081, &[], "")));
    let out = tf.ok(&["import", "-input=false", "-no-color", "baton_service.api", "api"]);
    assert!(out.contains("Import successful!"), "{out}");
    let state = tf.state_show("baton_service.api");
    assert!(state.contains(r#"version          = "v1""#), "{state}");
    assert!(state.contains(r#""GREETING" = "hello world""#), "the environment reads back: {state}");
    assert!(state.contains("--port"), "exec_start reads back: {state}");

    // The unit matches the configuration; only the handover settings, which no unit holds,
    // are still to be recorded. Applying that changes nothing on the host.
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("+ port") && plan.contains("+ health"), "{plan}");
    assert!(!plan.contains("unit_text") && !plan.contains("exec_start"), "the unit reads back exactly:\n{plan}");
    let out = tf.apply();
    assert!(out.contains("Resources: 0 added, 1 changed, 0 destroyed"), "{out}");
    assert_eq!(h.prop("api-v1.service", "MainPID"), pid, "recording the settings restarts nothing");
    tf.assert_no_changes("after the import");

    // A failed handover fails the apply with the reason and the journal; the state keeps the
    // release that really runs.
    tf.write(&format!("{HEADER}{}", demo_resource("api", "api", "bad", 18081, &["--crash-on-start"], "")));
    let out = tf.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a failed handover fails the apply:\n{text}");
    assert!(text.contains("baton could not apply api bad"), "{text}");
    assert!(text.contains("api-bad.service"), "the reason names the release: {text}");
    assert!(text.contains("crashing on start as asked"), "the journal lines are shown: {text}");
    assert!(text.contains("Release v1 is still active"), "{text}");
    assert_eq!(h.prop("api-v1.service", "ActiveState"), "active");
    let state = tf.state_show("baton_service.api");
    assert!(state.contains(r#"version          = "v1""#), "the state describes what runs: {state}");
    assert!(state.contains(r#"unit             = "api-v1.service""#), "{state}");
    let (code, plan) = tf.plan();
    assert_eq!(code, 2);
    assert!(plan.contains(r#"~ version          = "v1" -> "bad""#), "{plan}");

    // A service removed outside Terraform leaves the state: the plan creates it, nothing is
    // replaced.
    tf.write(&format!("{HEADER}{}", demo_resource("api", "api", "v1", 18081, &[], "")));
    h.apply(&json!({"name": "api", "version": "v1", "exec_start": ["/bin/true"], "state": "absent"}), &[]).ok();
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{plan}");
    assert!(!plan.contains("must be replaced"), "{plan}");
    let out = tf.apply();
    assert!(out.contains("Resources: 1 added, 0 changed, 0 destroyed"), "{out}");
    tf.assert_no_changes("after creating it again");
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(h.unit_files().iter().all(|f| !f.starts_with("api-")), "{:?}", h.unit_files());
}

/// The error diagnostics of a failed terraform run: (summary, the configuration line it points
/// at, the detail's first line).
fn diagnostics(tf: &Tf, text: &str) -> Vec<(String, String, String)> {
    let main_tf = std::fs::read_to_string(tf.dir().join("main.tf")).expect("main.tf");
    let lines: Vec<&str> = text.lines().map(|l| l.trim_start_matches(['│', '╷', '╵', ' ']).trim_end()).collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(summary) = l.strip_prefix("Error: ") else { continue };
        let rest = &lines[i + 1..];
        let end = rest.iter().position(|l| l.starts_with("Error: ")).unwrap_or(rest.len());
        let rest = &rest[..end];
        let at = rest
            .iter()
            .find_map(|l| l.split("on main.tf line ").nth(1))
            .and_then(|r| r.split([',', ':']).next())
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| main_tf.lines().nth(n - 1))
            .unwrap_or("")
            .trim()
            .to_owned();
        // The detail follows the source excerpt (`NN: ...`) and a blank line.
        let detail = rest
            .iter()
            .skip_while(|l| !l.starts_with("on main.tf"))
            .skip(1)
            .skip_while(|l| !l.is_empty())
            .find(|l| !l.is_empty())
            .unwrap_or(&"")
            .to_string();
        out.push((summary.to_owned(), at, detail));
    }
    out
}

#[test]
fn every_invalid_attribute_fails_one_plan_each_at_its_line() {
    let h = Host::boot("tf-invalid");
    let tf = Tf::new(&h, "invalid");
    // Three broken attributes of the resource, two of the data source: one plan shows all five,
    // each pointing at its own line.
    let resource =
        demo_resource("bad", "bad", "v1", 18082, &[], "  keep             = 500\n  restart          = \"sometimes\"\n")
            .replace(r#"GREETING = "hello world""#, r#""BAD KEY" = "x""#);
    tf.write(&format!(
        "{HEADER}{resource}\ndata \"baton_service\" \"bad\" {{\n  name     = \"bad name\"\n  unit_dir = \"relative/dir\"\n}}\n"
    ));
    let out = tf.run(&["plan", "-input=false", "-no-color"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    let mut found = diagnostics(&tf, &text);
    found.sort();
    let summary = |s: &str| s.to_owned();
    let got: Vec<(String, String, String)> = found
        .iter()
        .map(|(s, at, detail)| {
            (
                s.clone(),
                at.split_whitespace().next().unwrap_or("").to_owned(),
                detail.split(':').next().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (summary("Invalid baton_service"), "environment".into(), "environment.BAD KEY".into()),
            (summary("Invalid baton_service"), "keep".into(), "keep".into()),
            (summary("Invalid baton_service"), "restart".into(), "restart".into()),
            (summary("Invalid baton_service data source"), "name".into(), "name".into()),
            (summary("Invalid baton_service data source"), "unit_dir".into(), "unit_dir".into()),
        ],
        "one plan reports every invalid attribute at its line:\n{text}"
    );
    assert!(text.contains("environment.BAD KEY: key must match"), "the spec's rule names the key: {text}");
    assert!(text.contains("keep: must be between 0 and 100, got 500"), "{text}");

    tf.write(&format!("{HEADER}{}", demo_resource("bad", "bad", "v1", 18082, &[], "  state = \"absent\"\n")));
    let out = tf.run(&["plan", "-input=false", "-no-color"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("is what destroying the resource does"), "{text}");
    assert!(h.unit_files().iter().all(|f| !f.starts_with("bad-")), "nothing was touched");
}

/// `plugins/terraform/examples/<rel>`.
fn example(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/terraform/examples").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `terraform output -json`'s values.
fn outputs(tf: &Tf) -> serde_json::Value {
    let json: serde_json::Value =
        serde_json::from_str(&tf.ok(&["output", "-json", "-no-color"])).expect("terraform output -json");
    let mut values = serde_json::Map::new();
    for (k, v) in json.as_object().expect("outputs") {
        values.insert(k.clone(), v["value"].clone());
    }
    values.into()
}

#[test]
fn import_block_data_source_and_examples() {
    let h = Host::boot("tf-data");
    let tf = Tf::new(&h, "data");

    // The documented examples are valid against the provider's schema.
    tf.write(
        &[
            example("provider/provider.tf"),
            example("resources/baton_service/resource.tf"),
            example("resources/baton_service/import-by-string-id.tf"),
            example("data-sources/baton_service/data-source.tf"),
        ]
        .join("\n"),
    );
    let out = tf.ok(&["validate", "-no-color"]);
    assert!(out.contains("The configuration is valid"), "{out}");

    // A service deployed with the CLI, adopted with the documented `import {}` block (Terraform
    // 1.5+) in an ordinary plan and apply, and read by the data source.
    let spec = demo_spec(
        "web",
        "v1",
        18083,
        &["--linger-ms", "150"],
        json!({"health": {"http": "/health", "timeout_sec": 10, "interval_ms": 50}, "timeout_stop_sec": 10,
               "environment": {"GREETING": "hello world", "RUST_LOG": "info"},
               "directives": {"Service": {"LimitNOFILE": "65536"}}}),
    );
    h.apply(&spec, &[]).ok();
    let pid = h.prop("web-v1.service", "MainPID");
    let data = r#"
data "baton_service" "web" {
  name     = baton_service.web.name
  unit_dir = baton_service.web.unit_dir
}

output "version" { value = data.baton_service.web.version }
output "releases" { value = data.baton_service.web.releases }
output "enabled" { value = data.baton_service.web.enabled }
output "main_pid" { value = data.baton_service.web.main_pid }
output "state" { value = data.baton_service.web.state }
output "unit" { value = data.baton_service.web.unit }
"#;
    let config = |version: &str| {
        format!(
            "{HEADER}{}\n{}{data}",
            demo_resource("web", "web", version, 18083, &[], ""),
            example("resources/baton_service/import-by-string-id.tf")
        )
    };
    tf.write(&config("v1"));
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("baton_service.web: Preparing import... [id=web]"), "{plan}");
    assert!(plan.contains("Plan: 1 to import, 0 to add, 1 to change, 0 to destroy."), "{plan}");
    assert!(plan.contains("+ port             = 18083"), "only the handover settings are to be set:\n{plan}");
    assert!(!plan.contains("~ unit_text") && !plan.contains("~ exec_start"), "the unit reads back exactly:\n{plan}");
    let out = tf.apply();
    assert!(out.contains("Resources: 1 imported, 0 added, 1 changed, 0 destroyed"), "{out}");
    assert_eq!(h.prop("web-v1.service", "MainPID"), pid, "importing restarts nothing");
    let o = outputs(&tf);
    assert_eq!(o["version"], "v1", "{o}");
    assert_eq!(o["releases"], json!(["v1"]), "{o}");
    assert_eq!(o["enabled"], true, "{o}");
    assert_eq!(o["state"], "started", "{o}");
    assert_eq!(o["unit"], "web-v1.service", "{o}");
    assert_eq!(o["main_pid"].to_string(), pid, "the data source reads systemd's MainPID: {o}");
    tf.assert_no_changes("after the import (the import block stays in the configuration)");

    // A handover: the data source is read after the resource was applied, so it shows the new
    // release, its main PID, and the old one kept on disk for rollback.
    tf.write(&config("v2"));
    let out = tf.apply();
    assert!(out.contains("Resources: 0 added, 1 changed, 0 destroyed"), "{out}");
    let o = outputs(&tf);
    assert_eq!(o["version"], "v2", "{o}");
    assert_eq!(o["releases"], json!(["v1", "v2"]), "{o}");
    assert_eq!(o["unit"], "web-v2.service", "{o}");
    assert_eq!(o["main_pid"].to_string(), h.prop("web-v2.service", "MainPID"), "{o}");
    tf.assert_no_changes("after the handover");

    // A release stopped by hand: a refresh of the data source says so.
    h.sh("systemctl stop web-v2.service");
    let out = tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    assert!(out.contains("Apply complete!"), "{out}");
    let o = outputs(&tf);
    assert_eq!(o["state"], "stopped", "{o}");
    assert_eq!(o["version"], serde_json::Value::Null, "{o}");
    assert_eq!(o["main_pid"], serde_json::Value::Null, "{o}");
    assert_eq!(o["releases"], json!(["v1", "v2"]), "{o}");

    // A service that is not there: a clear error naming it and the directory, at `name`.
    tf.write(&format!("{}\ndata \"baton_service\" \"ghost\" {{\n  name = \"ghost\"\n}}\n", config("v2")));
    let out = tf.run(&["plan", "-input=false", "-no-color"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a missing service fails the plan:\n{text}");
    let errors = diagnostics(&tf, &text);
    assert_eq!(errors.len(), 1, "{text}");
    assert_eq!(errors[0].0, r#"baton service "ghost" not found"#, "{text}");
    assert!(errors[0].1.starts_with("name"), "the error points at `name`: {text}");
    assert!(text.contains(r#"there is no release of service "ghost" in /etc/systemd/system"#), "{text}");

    tf.write(&config("v2"));
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(h.unit_files().iter().all(|f| !f.starts_with("web-")), "{:?}", h.unit_files());
}

#[test]
fn provider_run_by_hand_says_it_is_a_plugin() {
    let out = std::process::Command::new(bin("terraform-provider-baton"))
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .output()
        .expect("run the provider");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("This binary is a plugin"));
}

/// The provider's private socket directories (`terraform-provider-baton-*`) in `tmp`: path,
/// mode, owner, and whether it holds the socket `plugin.sock`.
fn socket_dirs(tmp: &Path) -> Vec<(PathBuf, u32, u32, bool)> {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let Ok(entries) = std::fs::read_dir(tmp) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("terraform-provider-baton-"))
        .filter_map(|e| {
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            let socket =
                std::fs::symlink_metadata(e.path().join("plugin.sock")).is_ok_and(|m| m.file_type().is_socket());
            Some((e.path(), meta.mode() & 0o7777, meta.uid(), socket))
        })
        .collect()
}

/// Runs terraform with `TMPDIR=tmp` and `env`, and watches `tmp` while it runs: its output and
/// every provider socket directory seen.
fn run_watching(tf: &Tf, tmp: &Path, env: &[(&str, &str)], args: &[&str]) -> (Output, Vec<(PathBuf, u32, u32, bool)>) {
    let mut cmd = tf.command();
    cmd.args(args).env("TMPDIR", tmp).env_remove("TF_DISABLE_PLUGIN_TLS").env_remove("PLUGIN_UNIX_SOCKET_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run terraform inside the sandbox");
    let done = std::thread::spawn(move || child.wait_with_output().expect("terraform output"));
    let mut seen: Vec<(PathBuf, u32, u32, bool)> = Vec::new();
    while !done.is_finished() {
        for d in socket_dirs(tmp) {
            match seen.iter_mut().find(|s| s.0 == d.0) {
                Some(s) => s.3 |= d.3,
                None => seen.push(d),
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (done.join().expect("terraform thread"), seen)
}

/// Terraform with `TF_DISABLE_PLUGIN_TLS=1` (as terraform-plugin-testing runs it, and users
/// working around antivirus) gives the provider no client certificate: the provider then serves
/// plaintext only on a unix socket in a fresh 0700 directory of `TMPDIR`, never on TCP, and
/// removes the directory when it exits. With AutoMTLS (the default) it makes no such directory.
/// Both drive the sandbox's systemd through plan, apply (a handover) and destroy.
#[test]
fn terraform_without_plugin_tls_uses_a_private_unix_socket() {
    let h = Host::boot("tf-notls");
    let tf = Tf::new(&h, "notls");
    let tmp = tf.dir().join("tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir tmp");
    let config = |version: &str| format!("{HEADER}{}", demo_resource("notls", "notls", version, 18084, &[], ""));
    let no_tls = [("TF_DISABLE_PLUGIN_TLS", "1")];
    let text =
        |out: &Output| format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let apply = ["apply", "-auto-approve", "-input=false", "-no-color"];

    // AutoMTLS: TCP behind mutual TLS, no socket directory.
    tf.write(&config("v1"));
    let (out, seen) = run_watching(&tf, &tmp, &[], &apply);
    assert!(out.status.success() && text(&out).contains("Resources: 1 added"), "{}", text(&out));
    assert!(seen.is_empty(), "with AutoMTLS the provider makes no unix socket: {seen:?}");
    assert_eq!(h.prop("notls-v1.service", "ActiveState"), "active");

    // Without TLS: a plan, a handover and an empty plan, each provider on its own private socket.
    tf.write(&config("v2"));
    let (out, seen_plan) =
        run_watching(&tf, &tmp, &no_tls, &["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{}", text(&out));
    let (out, seen_apply) = run_watching(&tf, &tmp, &no_tls, &apply);
    assert!(out.status.success() && text(&out).contains("Resources: 0 added, 1 changed"), "{}", text(&out));
    assert_eq!(h.prop("notls-v2.service", "ActiveState"), "active");
    assert_eq!(h.prop("notls-v1.service", "ActiveState"), "inactive");
    let (out, _) = run_watching(&tf, &tmp, &no_tls, &["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
    assert_eq!(out.status.code(), Some(0), "the plan after the handover is empty:\n{}", text(&out));
    let seen: Vec<_> = seen_plan.into_iter().chain(seen_apply).collect();
    assert!(!seen.is_empty(), "without TLS the provider serves on a unix socket in TMPDIR");
    for (dir, mode, uid, socket) in &seen {
        assert_eq!((*mode, *uid), (0o700, 0), "{} is private to root", dir.display());
        assert!(*socket, "{} held the socket plugin.sock", dir.display());
    }
    assert_eq!(socket_dirs(&tmp), Vec::new(), "every provider removed its socket directory");

    let (out, _) = run_watching(&tf, &tmp, &no_tls, &["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(out.status.success() && text(&out).contains("Resources: 1 destroyed"), "{}", text(&out));
    assert!(h.unit_files().iter().all(|f| !f.starts_with("notls-")), "{:?}", h.unit_files());
    assert_eq!(socket_dirs(&tmp), Vec::new());
}

/// Issue 11 item 3: `secret_environment` is sensitive. Plans and `state show` print
/// `(sensitive value)`, the value appears nowhere in a plan's or an apply's output, and no state
/// attribute but `secret_environment` itself holds it (above all not the computed `unit_text`).
/// The release's process gets it; a changed value is an in-place change; destroy removes the
/// secret file.
#[test]
fn secret_environment_is_sensitive_and_never_in_unit_text_or_plan_output() {
    const MARK: &str = "w0rd";
    let h = Host::boot("tf-secrets");
    let tf = Tf::new(&h, "secrets");
    let config = |secret: &str| {
        format!(
            "{HEADER}{}",
            demo_resource(
                "sec",
                "tfsec",
                "v1",
                18095,
                &[],
                &format!("  secret_environment = {{ DB_PASSWORD = {secret:?} }}\n"),
            )
        )
    };
    tf.write(&config(r#"tf-Pa$$w0rd%"x"#));
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("+ secret_environment = (sensitive value)"), "{plan}");
    assert!(!plan.contains(MARK), "the plan shows the secret:\n{plan}");
    let out = tf.apply();
    assert!(!out.contains(MARK), "the apply shows the secret:\n{out}");

    let file = "/etc/systemd/system/baton-secrets/tfsec-v1.service.env";
    let pid = h.prop("tfsec-v1.service", "MainPID");
    let env = std::fs::read(h.path(&format!("/proc/{pid}/environ"))).expect("environ");
    assert!(String::from_utf8_lossy(&env).contains("DB_PASSWORD=tf-Pa$$w0rd%\"x\0"), "the process lacks the secret");
    assert_eq!(h.sh(&format!("stat -c '%a %U' {file}")), "600 root\n");

    let state = tf.state_show("baton_service.sec");
    assert!(state.contains("secret_environment = (sensitive value)"), "{state}");
    assert!(!state.contains(MARK), "{state}");
    let shown: serde_json::Value = serde_json::from_str(&tf.ok(&["show", "-json"])).expect("show -json");
    let resource = &shown["values"]["root_module"]["resources"][0];
    assert_eq!(resource["sensitive_values"]["secret_environment"], true, "{resource:#}");
    let values = resource["values"].as_object().expect("values");
    let unit_text = values["unit_text"].as_str().expect("unit_text");
    assert!(unit_text.contains(&format!("EnvironmentFile={file}\n")), "{unit_text}");
    for (name, value) in values.iter().filter(|(name, _)| *name != "secret_environment") {
        assert!(!value.to_string().contains(MARK), "state attribute {name} holds the secret: {value}");
    }
    tf.assert_no_changes("after the apply");

    // A changed secret: an in-place change, hidden in the plan, applied with a restart.
    tf.write(&config("tf-other-w0rd"));
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("~ secret_environment = (sensitive value)"), "{plan}");
    assert!(plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{plan}");
    assert!(!plan.contains(MARK), "{plan}");
    let out = tf.apply();
    assert!(!out.contains(MARK), "{out}");
    assert_ne!(h.prop("tfsec-v1.service", "MainPID"), pid, "a changed secret restarts the release");
    tf.assert_no_changes("after changing the secret");

    // The secret file edited by hand: drift in the next plan (compared by digest), values hidden;
    // an apply writes it again.
    h.sh(&format!("sed -i 's/tf-other-w0rd/typed-by-hand/' {file}"));
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("~ secret_environment = (sensitive value)"), "{plan}");
    assert!(plan.split_whitespace().collect::<Vec<_>>().join(" ").contains("was changed outside Terraform"), "{plan}");
    assert!(!plan.contains(MARK) && !plan.contains("typed-by-hand"), "{plan}");
    tf.apply();
    assert!(h.sh(&format!("cat {file}")).contains("DB_PASSWORD=\"tf-other-w0rd\""), "the file was not written again");
    tf.assert_no_changes("after the secret file was repaired");

    // Import: the unit reads back exactly, but secret values never come back (a warning says so);
    // the configuration's values are then applied without rewriting or restarting anything.
    let pid = h.prop("tfsec-v1.service", "MainPID");
    tf.ok(&["state", "rm", "-no-color", "baton_service.sec"]);
    let out = tf.run(&["import", "-no-color", "-input=false", "baton_service.sec", "tfsec"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Terraform wraps warnings: compare with single spaces.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("secret values are never read back"), "{text}");
    assert!(!text.contains("does not read back exactly"), "{text}");
    assert!(!text.contains(MARK), "{text}");
    let (code, plan) = tf.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("+ secret_environment = (sensitive value)"), "{plan}");
    assert!(!plan.contains(MARK), "{plan}");
    tf.apply();
    assert_eq!(h.prop("tfsec-v1.service", "MainPID"), pid, "the same secret restarted the release");
    tf.assert_no_changes("after the import");

    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(!h.path(file).exists(), "destroy left the secret file");
}
