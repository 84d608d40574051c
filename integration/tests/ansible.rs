//! The Ansible collection `baton.systemd` end to end: the real `ansible-playbook` (ansible-core
//! from the repository's `.venv`) runs the collection's integration target
//! (`plugins/ansible_collections/baton/systemd/tests/integration/targets/service`, whose tasks
//! assert `changed`/`failed` of every step) inside a sandbox with a real systemd:
//! - the whole target: deploy then the same task again not changed, check mode changing
//!   nothing, diff mode, bad options failing with the option's name, no_log masking, a version
//!   bump and a rolled-back broken release, state=stopped and state=absent;
//! - a version bump under load fails no request;
//! - `ansible-doc baton.systemd.service` renders the documentation, and it documents exactly the
//!   spec's options (types, defaults, choices) and the result's keys;
//! - the whole target again on the oldest claimed ansible-core (`.venv-oldest`), from the
//!   collection built with `ansible-galaxy collection build` and installed as a user would;
//! - the controller-side action plugin: a typo fails on the controller naming the option, and no
//!   module reaches the target; a target of another architecture (`setarch i686`) fails with
//!   one sentence naming what it has and what the collection ships; the target is probed once.
//!
//! Nothing is skipped: without ansible (`make .venv`) or root these tests fail.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_core::spec;
use baton_integration::ansible::{self, Ansible, Core, Played};
use baton_integration::{bin, demo_spec, Host};
use serde_json::Value;

const SECRET: &str = "hunter2-the-secret-token";

/// `-e` arguments of the target for a service on `port`.
fn vars(service: &str, port: u16) -> Vec<String> {
    [
        format!("baton_service={service}"),
        format!("baton_port={port}"),
        format!("baton_demo={}", bin("baton-demo").display()),
        format!("baton_secret={SECRET}"),
    ]
    .into_iter()
    .flat_map(|kv| ["-e".to_owned(), kv])
    .collect()
}

fn target(a: &Ansible, h: &Host, service: &str, port: u16, extra: &[&str]) -> Played {
    let mut args = vars(service, port);
    args.extend(extra.iter().map(|s| s.to_string()));
    a.playbook(h, &ansible::target_playbook(), args)
}

#[test]
fn the_service_target_passes_against_a_real_systemd() {
    let h = Host::boot("ansible-target");
    let a = Ansible::new("target");
    let run = target(&a, &h, "play", 8180, &["-v"]).ok();
    eprintln!("the whole target took {:.1} s", run.took.as_secs_f64());
    let out = &run.stdout;

    // Every assert of the target passed; the expected failures were the only ones.
    assert_eq!(run.recap("localhost", "failed"), Some(0), "{out}");
    // 10 bad options, 1 bad option under no_log, 1 broken release.
    assert_eq!(run.recap("localhost", "ignored"), Some(12), "{out}");
    // What Ansible printed for the diff task: the unit's new Environment= line.
    assert!(out.contains("+Environment=\"GREETING=hello from ansible\""), "the diff as Ansible shows it: {out}");
    assert!(out.contains("+X-Baton-Version=v2"), "a new release's unit is all added lines: {out}");
    // Each diff entry is headed by its unit file's path (before_header/after_header), and a
    // handover with keep 0 shows both the file written and the file removed.
    assert!(out.contains("+++ after: /etc/systemd/system/play-v1.service"), "the diff header: {out}");
    assert!(
        out.contains("--- before: /etc/systemd/system/play-if-v1.service")
            && out.contains("+++ after: /etc/systemd/system/play-if-v2.service"),
        "the handover's two files: {out}"
    );
    // no_log: Ansible censors the task, and the module returned the secret nowhere.
    assert!(out.contains("the output has been hidden due to the fact that 'no_log: true'"), "{out}");
    assert!(!out.contains(SECRET), "the secret leaked into the output:\n{out}");
    // A broken release failed the task with its journal, and was rolled back.
    assert!(out.contains("play-v3-broken.service") && out.contains("rolled_back\": true"), "{out}");
    // state=absent at the end: no unit of the service is left, in systemd or on disk.
    assert!(h.unit_files().iter().all(|f| !f.starts_with("play-")), "{:?}", h.unit_files());
    assert_eq!(h.prop("play-v2.service", "ActiveState"), "inactive");
}

#[test]
fn a_version_bump_under_load_fails_no_request() {
    let h = Host::boot("ansible-load");
    let a = Ansible::new("load");
    let deploy = target(&a, &h, "loaded", 8181, &["--tags", "deploy"]).ok();
    assert_eq!(deploy.recap("localhost", "changed"), Some(1), "only the first deploy changed: {}", deploy.stdout);
    h.wait_http(8181, Duration::from_secs(5)).expect("v1 serves");

    let load = h.load(8181, 4, 300);
    std::thread::sleep(Duration::from_millis(300));
    let bump = target(&a, &h, "loaded", 8181, &["--tags", "handover"]).ok();
    std::thread::sleep(Duration::from_millis(300));
    let report = load.finish().expect("load report");
    eprintln!(
        "ansible handover v1 -> v2 (+ a broken v3 rolled back) in a {:.1} s playbook: {} requests, {} failed",
        bump.took.as_secs_f64(),
        report.requests,
        report.failed
    );
    assert!(report.requests > 100, "the load must be real: {report:?}");
    assert_eq!(report.failed, 0, "the handover failed requests: {report:?}");
    assert!(
        report.by_version.contains_key("v1") && report.by_version.contains_key("v2"),
        "both releases served: {:?}",
        report.by_version
    );
    assert!(!report.by_version.contains_key("v3-broken"), "the broken release never served");
    assert_eq!(h.prop("loaded-v2.service", "ActiveState"), "active");
    assert_eq!(h.prop("loaded-v1.service", "ActiveState"), "inactive");
    assert_eq!(h.enabled("loaded-v2.service"), "enabled");
    assert_eq!(h.enabled("loaded-v1.service"), "disabled");
}

/// Runs the installed module the way Ansible's binary-module protocol does: `service <args file>`.
fn run_module(h: &Host, a: &Ansible, args: &Value) -> (Value, i32) {
    let path = a.dir().join("args");
    std::fs::write(&path, args.to_string()).expect("write the args file");
    let out = h.sb.command(ansible::module_binary()).arg(&path).output().expect("run the module");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("unparseable module output ({e}): {stdout}"));
    (json, out.status.code().unwrap_or(-1))
}

#[test]
fn under_no_log_the_module_masks_secrets_in_invocation_diff_and_msg() {
    let h = Host::boot("ansible-nolog");
    let a = Ansible::new("nolog");
    let spec = |env: Value, check: bool| {
        let mut s = demo_spec("sec", "v1", 8182, &[], serde_json::json!({ "environment": env }));
        let o = s.as_object_mut().expect("object");
        o.insert("_ansible_no_log".into(), true.into());
        o.insert("_ansible_diff".into(), true.into());
        o.insert("_ansible_check_mode".into(), check.into());
        o.insert("_ansible_module_name".into(), "baton.systemd.service".into());
        s
    };
    let (first, code) = run_module(&h, &a, &spec(serde_json::json!({"TOKEN": "old-secret-1"}), false));
    assert_eq!(code, 0, "{first:#}");
    assert_eq!(first["changed"], true);
    assert!(!first.to_string().contains("old-secret"), "{first:#}");
    // A new secret, in check mode with diff: the new value is masked everywhere, and so is the
    // old one the unit on disk holds (diff.before).
    let (planned, code) = run_module(&h, &a, &spec(serde_json::json!({"TOKEN": "new \"secret\" 100%"}), true));
    assert_eq!(code, 0, "{planned:#}");
    // (The option `secret_environment` is named in `invocation`; no value is.)
    assert!(!planned.to_string().replace("\"secret_environment\"", "").contains("secret"), "{planned:#}");
    assert_eq!(planned["changed"], true);
    assert_eq!(planned["invocation"]["module_args"]["environment"]["TOKEN"], "********");
    assert_eq!(planned["diff"].as_array().map(Vec::len), Some(1), "{planned:#}");
    assert_eq!(planned["diff"][0]["before_header"], "/etc/systemd/system/sec-v1.service");
    for side in ["before", "after"] {
        let text = planned["diff"][0][side].as_str().expect("diff text");
        assert!(text.contains("\nEnvironment=\"TOKEN=********\"\n"), "{side}: {text}");
    }
    assert_eq!(
        h.unit_file("sec-v1.service").map(|t| t.contains("old-secret-1")),
        Some(true),
        "check mode wrote nothing"
    );
    // The coerced options are what `invocation` reports, with every default filled in.
    assert_eq!(planned["invocation"]["module_args"]["port"], 8182);
    assert_eq!(planned["invocation"]["module_args"]["keep"], 2);
    assert_eq!(planned["invocation"]["module_args"]["timeout_stop_sec"], 10);
    assert_eq!(planned["invocation"]["module_args"]["restart"], "always");
}

/// The type ansible-doc should give a spec field, from the spec's JSON Schema.
fn schema_type(prop: &Value, defs: &Value) -> &'static str {
    let prop = match prop.get("anyOf").and_then(|a| a[0]["$ref"].as_str()) {
        Some(r) => &defs[r.trim_start_matches("#/$defs/")],
        None => prop,
    };
    let ty = match &prop["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or(""),
        _ => "string",
    };
    match ty {
        "string" => "str",
        "integer" => "int",
        "boolean" => "bool",
        "array" => "list",
        "object" => "dict",
        _ => "unknown",
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn schema(file: &str) -> Value {
    let path = ansible::repo_dir().join("schemas").join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read schema")).expect("schema JSON")
}

#[test]
fn ansible_doc_renders_the_documentation_of_every_option_and_return_key() {
    let a = Ansible::new("doc");
    let text = a.tool("ansible-doc", &["baton.systemd.service"]).ok().stdout;
    assert!(text.contains("MODULE baton.systemd.service") || text.contains("baton.systemd.service"), "{text}");
    for needle in ["OPTIONS", "ATTRIBUTES", "NOTES", "EXAMPLES", "RETURN VALUES", "no_log", "check_mode", "diff_mode"] {
        assert!(text.contains(needle), "ansible-doc shows {needle}:\n{text}");
    }

    let json: Value =
        serde_json::from_str(&a.tool("ansible-doc", &["--json", "baton.systemd.service"]).ok().stdout).expect("JSON");
    let module = &json["baton.systemd.service"];
    let doc = &module["doc"];
    let options = &doc["options"];
    assert_eq!(doc["attributes"]["check_mode"]["support"], "full");
    assert_eq!(doc["attributes"]["diff_mode"]["support"], "full");

    // Every field of the spec is an option, and nothing else.
    let spec_schema = schema("service.schema.json");
    let defs = &spec_schema["$defs"];
    let props = &spec_schema["properties"];
    assert_eq!(keys(options), keys(props), "options vs the spec's fields");
    let health_props = &defs["RawHealth"]["properties"];
    assert_eq!(keys(&options["health"]["suboptions"]), keys(health_props), "health suboptions");

    // Types, required, descriptions.
    // `version` and `exec_start` are required for state=started only (the schema's if/then).
    assert_eq!(spec_schema["if"]["properties"]["state"]["const"], "started");
    assert_eq!(spec_schema["then"]["required"], serde_json::json!(["version", "exec_start"]));
    let required_if_started: BTreeSet<String> = keys_of(&spec_schema["then"]["required"]);
    for name in &required_if_started {
        let text = options[name]["description"].to_string();
        assert!(text.contains("Required when O(state=started)"), "{name}: {text}");
    }
    let required: BTreeSet<String> = spec_schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    let check = |name: &str, opt: &Value, prop: &Value| {
        assert_eq!(opt["type"], schema_type(prop, defs), "type of {name}");
        let described = opt["description"].as_array().is_some_and(|d| !d.is_empty());
        assert!(described, "{name} has a description");
    };
    for (name, prop) in props.as_object().expect("properties") {
        check(name, &options[name], prop);
        assert_eq!(options[name]["required"] == true, required.contains(name), "required of {name}");
    }
    for (name, prop) in health_props.as_object().expect("health properties") {
        check(&format!("health.{name}"), &options["health"]["suboptions"][name], prop);
    }
    assert_eq!(options["exec_start"]["elements"], "str");

    // Defaults are the core's: a minimal spec, validated, shows them.
    let minimal = spec::parse(br#"{"name":"a","version":"v","exec_start":["/bin/true"]}"#).expect("valid");
    let defaults = serde_json::to_value(&minimal).expect("serialise");
    let mut compared = 0;
    for (name, value) in defaults.as_object().expect("object") {
        if name == "health" {
            for (sub, v) in value.as_object().expect("health") {
                let opt = &options["health"]["suboptions"][sub];
                if sub == "tcp" || v.is_null() {
                    // tcp's default depends on port and http (documented in words).
                    assert!(opt.get("default").is_none_or(Value::is_null), "health.{sub} has no fixed default");
                    continue;
                }
                assert_eq!(&opt["default"], v, "default of health.{sub}");
                compared += 1;
            }
            continue;
        }
        let empty = v_is_empty(value);
        let documented = options[name].get("default").filter(|d| !d.is_null());
        match documented {
            Some(d) => {
                assert_eq!(d, value, "default of {name}");
                compared += 1;
            }
            None => assert!(
                empty || required.contains(name) || required_if_started.contains(name),
                "{name} defaults to {value} but documents no default"
            ),
        }
    }
    assert!(compared >= 11, "defaults compared: {compared}");

    // Choices.
    let choices = |name: &str| -> Vec<String> {
        options[name]["choices"]
            .as_array()
            .expect("choices")
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect()
    };
    assert_eq!(choices("restart"), spec::RESTART_VALUES);
    assert_eq!(choices("state"), ["started", "stopped", "absent"]);
    assert_eq!(choices("service_type"), ["exec", "simple", "notify"]);

    // Every key of the result (both shapes) is a documented return value.
    let result_schema = schema("result.schema.json");
    let defs = result_schema["$defs"].as_object().expect("defs");
    let mut result_keys = BTreeSet::new();
    for (name, def) in defs {
        // A diff entry's keys are documented under `diff`, the counters' under `migration_counters`.
        if name != "FileDiff" && name != "MigrationCounters" {
            result_keys.extend(keys(&def["properties"]));
        }
    }
    assert!(result_keys.contains("previous_version") && result_keys.contains("journal"), "{result_keys:?}");
    assert_eq!(keys(&module["return"]), result_keys, "RETURN vs the result's keys");
    // A diff entry: the core's keys plus the headers the module adds for Ansible's diff callback.
    let mut entry = keys(&defs["FileDiff"]["properties"]);
    entry.extend(["before_header".to_owned(), "after_header".to_owned()]);
    assert_eq!(keys(&module["return"]["diff"]["contains"]), entry);
    assert_eq!(module["return"]["diff"]["type"], "list");
    assert_eq!(
        keys(&module["return"]["migration_counters"]["contains"]),
        keys(&defs["MigrationCounters"]["properties"])
    );
    assert!(!module["examples"].as_str().unwrap_or("").is_empty(), "EXAMPLES");
}

/// The strings of a JSON array.
fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default()
}

fn v_is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The whole target on the oldest claimed ansible-core, from the collection as a user installs
/// it: `ansible-galaxy collection build`, then `ansible-galaxy collection install` into a private
/// collections path (its tarball must hold everything the target needs, the shipped module
/// binary byte for byte included).
#[test]
fn the_service_target_passes_on_the_oldest_ansible_core_from_the_installed_collection() {
    let h = Host::boot("ansible-oldest");
    let mut a = Ansible::with_core("oldest", Core::Oldest);
    let version = a.tool("ansible-playbook", &["--version"]).ok().stdout;
    let runtime = std::fs::read_to_string(ansible::collection_dir().join("meta/runtime.yml")).expect("runtime.yml");
    let oldest = version.split("[core ").nth(1).and_then(|v| v.split('.').take(2).reduce(|_, m| m).map(String::from));
    let claimed = format!("requires_ansible: \">=2.{}.0,", oldest.clone().unwrap_or_default());
    assert!(runtime.contains(&claimed), "the oldest venv ({version}) is the oldest claimed: {runtime}");

    let root = a.install_collection();
    assert_eq!(
        std::fs::read(root.join("plugins/modules/service")).ok(),
        std::fs::read(ansible::module_binary()).ok(),
        "the installed module is the shipped binary"
    );
    let files = a.tool("ansible-doc", &["-F", "baton.systemd"]).ok().stdout;
    assert!(
        files.contains(&format!("baton.systemd.service {}", root.join("plugins/modules/service").display())),
        "{files}"
    );

    let mut args = vars("old", 8183);
    args.push("-v".to_owned());
    let run = a.playbook(&h, &ansible::target_playbook_in(&root), args).ok();
    eprintln!("the whole target on ansible-core 2.{} took {:.1} s", oldest.unwrap_or_default(), run.took.as_secs_f64());
    let out = &run.stdout;
    assert_eq!(run.recap("localhost", "failed"), Some(0), "{out}");
    assert!(run.recap("localhost", "ignored").is_some_and(|n| n >= 12), "the expected failures: {out}");
    assert!(!out.contains(SECRET), "the secret leaked into the output:\n{out}");
    assert!(h.unit_files().iter().all(|f| !f.starts_with("old-")), "{:?}", h.unit_files());
}

/// A one-task playbook (two tasks with `twice`) of `baton.systemd.service` in check mode, with
/// `options` (YAML lines) added to a valid task.
fn one_task_play(a: &Ansible, file: &str, options: &str, twice: bool) -> std::path::PathBuf {
    let task = format!(
        "    - name: A task of baton.systemd.service\n      baton.systemd.service:\n        name: probe\n        version: v1\n        exec_start: [\"{}\", --port, \"8184\"]\n{options}      check_mode: true\n",
        bin("baton-demo").display()
    );
    let play = format!(
        "- name: Controller-side checks\n  hosts: all\n  gather_facts: false\n  tasks:\n{task}{}",
        if twice { task.as_str() } else { "" }
    );
    let path = a.dir().join(file);
    std::fs::write(&path, play).expect("write the playbook");
    path
}

/// Module files Ansible copied to the target and kept (`ANSIBLE_KEEP_REMOTE_FILES=1`).
fn shipped_modules(a: &Ansible) -> usize {
    let remote = a.dir().join("remote");
    std::fs::read_dir(&remote)
        .map(|rd| {
            rd.flatten()
                .filter_map(|tmp| std::fs::read_dir(tmp.path()).ok())
                .flat_map(|files| files.flatten())
                .filter(|f| f.file_name() == "AnsiballZ_service")
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_typo_fails_on_the_controller_naming_the_option_and_nothing_is_shipped() {
    let h = Host::boot("ansible-typo");
    let a = Ansible::new("typo");
    a.set_default("keep_remote_files = True");
    let keep = ["-vvv"];

    let typo = one_task_play(&a, "typo.yml", "        prot: 8184\n", false);
    let run = a.playbook(&h, &typo, keep);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("\"msg\": \"prot: unknown option; the options are ") && run.stdout.contains(" port, "),
        "the message names the typo and the options: {}",
        run.stdout
    );
    assert!(!run.stdout.contains("baton-probe"), "nothing ran on the target, not even the probe: {}", run.stdout);
    assert_eq!(shipped_modules(&a), 0, "no module was copied to the target");

    // The control: the same task without the typo, twice, ships and runs the module each time
    // (the target is probed once: the answer is kept as the fact baton_systemd_target).
    let valid = one_task_play(&a, "valid.yml", "        port: 8184\n", true);
    let run = a.playbook(&h, &valid, keep).ok();
    assert_eq!(shipped_modules(&a), 2, "{}", run.stdout);
    assert_eq!(run.stdout.matches("echo baton-probe").count(), 1, "one probe per host: {}", run.stdout);
    assert!(run.stdout.contains("\"baton_systemd_target\""), "{}", run.stdout);
    assert!(h.unit_files().iter().all(|f| !f.starts_with("probe-")), "check mode wrote nothing: {:?}", h.unit_files());
}

#[test]
fn a_target_of_another_architecture_fails_with_one_sentence() {
    let h = Host::boot("ansible-arch");
    let a = Ansible::new("arch");
    a.set_default("keep_remote_files = True");
    let glibc = std::process::Command::new("getconf").arg("GNU_LIBC_VERSION").output().expect("getconf");
    let glibc = String::from_utf8_lossy(&glibc.stdout).trim().to_owned();
    assert!(glibc.starts_with("glibc 2."), "{glibc}");

    let play = one_task_play(&a, "arch.yml", "        port: 8184\n", false);
    // setarch i686: the play and everything it runs see the i686 personality (`uname -m`).
    let run = a.playbook_with(&h, &["setarch", "i686"], &play, ["-v"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let sentence = format!(
        "\"msg\": \"baton.systemd.service cannot run on this target: it is Linux i686 with {glibc}, and the collection \
         ships the module only for Linux x86_64 with glibc 2.17 or newer.\""
    );
    assert!(run.stdout.contains(&sentence), "expected {sentence} in:\n{}", run.stdout);
    for loader_error in ["Exec format error", "GLIBC_", "cannot execute"] {
        assert!(!run.stdout.contains(loader_error), "{loader_error}: {}", run.stdout);
    }
    assert_eq!(shipped_modules(&a), 0, "no module was copied to the target");

    // Without setarch the same play runs the module (the check can fail).
    let run = a.playbook(&h, &play, ["-v"]).ok();
    assert_eq!(shipped_modules(&a), 1, "{}", run.stdout);
}
