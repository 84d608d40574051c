//! Ansible's binary-module protocol for `baton.systemd.service`, and nothing else: the args
//! document in, the contract's result out.
//!
//! Ansible writes the task's options plus its own `_ansible_*` keys (`_ansible_check_mode`,
//! `_ansible_diff`, `_ansible_no_log`, …) as one JSON object to a file and runs the module with
//! its path as `argv[1]`. Ansible neither validates the options nor fills in defaults, and it
//! ignores the exit status whenever the output parses. So this crate:
//!
//! 1. reads and removes the `_ansible_*` keys ([`Request::parse`]);
//! 2. converts Ansible's loosely typed values the way `AnsibleModule` would ([`coerce`]: `"8080"`
//!    for an integer, `"yes"` for a boolean, `2` for a string), with Ansible's warnings;
//! 3. hands the options to the core as a raw spec (`baton_core::spec::from_value`: unknown
//!    options and wrong types fail naming the option), which validates, fills in the defaults and
//!    applies it (check mode plans only, diff mode reports every unit file written or removed);
//! 4. returns the core's result with `invocation: {module_args}` (every option, defaults filled
//!    in from the validated spec, as `AnsibleModule` reports them) and the warnings added, and
//!    each diff entry with `before_header`/`after_header` (its path) for Ansible's diff callback;
//!    every `secret_environment` value is masked in the whole output, and under `no_log` every
//!    `environment` value too (core's [`Redactor`], which knows
//!    every escaped form a value takes in a unit file).

pub mod coerce;
pub mod panic;

use baton_core::spec::{self, RawSpec, ServiceSpec, MAX_SPEC_BYTES};
use baton_core::{ApplyOptions, Failure, Redactor, RunResult};
use serde_json::{json, Map, Value};

pub use coerce::Conversion;

/// The option whose values are always secret (`no_log` in the action plugin's argument spec).
pub const SECRET_OPTION: &str = "secret_environment";

/// What `invocation.module_args` shows for a `no_log` option, as `AnsibleModule` does.
pub const NO_LOG_VALUE: &str = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER";

/// The largest args document accepted: a maximal spec plus room for Ansible's own keys.
pub const MAX_ARGS_BYTES: usize = MAX_SPEC_BYTES + 64 * 1024;

/// One invocation of the module, as Ansible asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The task's options, without the `_ansible_*` keys, after Ansible-style type conversion.
    pub options: Map<String, Value>,
    /// `_ansible_check_mode`: plan only.
    pub check: bool,
    /// `_ansible_diff`: report the unit text before and after.
    pub diff: bool,
    /// `_ansible_no_log`: mask secrets in everything returned.
    pub no_log: bool,
    /// Warnings of the type conversion, returned with the result.
    pub warnings: Vec<String>,
}

impl Request {
    /// Parses Ansible's args document. An error is a readable sentence for `msg`.
    pub fn parse(input: &[u8]) -> Result<Request, String> {
        if input.len() > MAX_ARGS_BYTES {
            return Err(format!("the module's args are more than {MAX_ARGS_BYTES} bytes"));
        }
        let value: Value = serde_json::from_slice(input)
            .map_err(|e| format!("the module's args are not a JSON object ({e}); is this Ansible calling?"))?;
        let Value::Object(all) = value else {
            return Err("the module's args must be a JSON object of options".to_owned());
        };
        let mut options = Map::new();
        let mut internal = Map::new();
        for (k, v) in all {
            if k.starts_with("_ansible_") {
                internal.insert(k, v);
            } else {
                options.insert(k, v);
            }
        }
        let flag = |key: &str| internal.get(key).is_some_and(|v| coerce::ansible_bool(v) == Some(true));
        let conversion = Conversion::from_ansible(internal.get("_ansible_string_conversion_action"));
        let mut request = Request {
            options,
            check: flag("_ansible_check_mode"),
            diff: flag("_ansible_diff"),
            no_log: flag("_ansible_no_log"),
            warnings: Vec::new(),
        };
        match coerce::coerce(&mut request.options, conversion) {
            Ok(warnings) => request.warnings = warnings,
            Err(mut msg) => {
                // A refused conversion may quote a value: masked under no_log.
                if let Some(r) = request.redactor() {
                    r.text(&mut msg);
                }
                return Err(msg);
            }
        }
        Ok(request)
    }

    /// The secrets of this request: every string under `secret_environment`, and under
    /// `no_log` every string under `environment` too.
    pub fn secrets(&self) -> Vec<String> {
        fn strings(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
                Value::Object(map) => map.values().for_each(|i| strings(i, out)),
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        let mut out = Vec::new();
        if let Some(secret) = self.options.get(SECRET_OPTION) {
            strings(secret, &mut out);
        }
        if self.no_log {
            if let Some(env) = self.options.get("environment") {
                strings(env, &mut out);
            }
        }
        out
    }

    /// The redactor of this request's secrets: under `no_log` every `environment` and
    /// `secret_environment` value (and every `Environment=` line of a diff); without it, the
    /// `secret_environment` values alone. None when there is nothing to mask.
    fn redactor(&self) -> Option<Redactor> {
        let secrets = self.secrets();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        if self.no_log {
            Some(Redactor::new(&refs))
        } else if refs.iter().any(|s| !s.is_empty()) {
            Some(Redactor::values_only(&refs))
        } else {
            None
        }
    }

    /// The run options the core gets.
    pub fn apply_options(&self) -> ApplyOptions {
        ApplyOptions { check: self.check, diff: self.diff, ..ApplyOptions::default() }
    }

    /// The module's JSON output for `result`: the result with Ansible's diff headers,
    /// `invocation.module_args` (every option of `applied`, the validated spec, with its
    /// defaults; the options as given when they did not validate) and the conversion warnings,
    /// with every secret masked under `no_log`.
    pub fn respond(&self, mut result: RunResult, applied: Option<&ServiceSpec>) -> Value {
        let redactor = self.redactor();
        if let Some(r) = &redactor {
            r.result(&mut result);
        }
        let mut out =
            serde_json::to_value(&result).unwrap_or_else(|e| failure(&format!("cannot encode the result: {e}")));
        add_diff_headers(&mut out);
        let mut module_args = match applied {
            Some(spec) => module_args(spec),
            None => Value::Object(self.options.clone()),
        };
        let mut warnings = self.warnings.clone();
        if let Some(r) = &redactor {
            r.value(&mut module_args);
            warnings.iter_mut().for_each(|w| r.text(w));
        }
        // As Ansible reports an option declared `no_log`: its whole value is hidden.
        if let Some(v) = module_args.get_mut(SECRET_OPTION).filter(|v| !v.is_null()) {
            *v = json!(NO_LOG_VALUE);
        }
        if let Value::Object(obj) = &mut out {
            obj.insert("invocation".to_owned(), json!({ "module_args": module_args }));
            if !warnings.is_empty() {
                if let Some(Value::Array(core)) = obj.get("warnings") {
                    warnings.extend(core.iter().cloned().filter_map(|w| w.as_str().map(str::to_owned)));
                }
                obj.insert("warnings".to_owned(), json!(warnings));
            }
        }
        out
    }
}

/// Every option of the module with the value `spec` gives it, as `AnsibleModule` reports
/// `invocation.module_args`: defaults filled in, null for an option that is not set (also for
/// `health`'s suboptions).
pub fn module_args(spec: &ServiceSpec) -> Value {
    let mut args = match serde_json::to_value(spec.to_raw()) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for (name, _) in coerce::OPTIONS {
        args.entry(*name).or_insert(Value::Null);
    }
    if let Some(Value::Object(health)) = args.get_mut("health") {
        for (name, _) in coerce::HEALTH {
            health.entry(*name).or_insert(Value::Null);
        }
    }
    Value::Object(args)
}

/// Gives each diff entry the `before_header`/`after_header` Ansible's diff callback shows above
/// it: the unit file's path (the core's `path` is kept).
fn add_diff_headers(out: &mut Value) {
    let Some(Value::Array(entries)) = out.get_mut("diff") else { return };
    for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
        let path = entry.get("path").cloned().unwrap_or(Value::Null);
        entry.insert("before_header".to_owned(), path.clone());
        entry.insert("after_header".to_owned(), path);
    }
}

/// A failure as Ansible expects it: `{"failed": true, "msg": ..., "changed": false}`.
pub fn failure(msg: &str) -> Value {
    serde_json::to_value(Failure::msg(msg)).unwrap_or_else(|_| json!({"failed": true, "msg": msg}))
}

/// Runs the module on an args document: parse, convert, hand to `apply` (the core, or a fake in
/// tests), respond. Returns the JSON to print and whether the run succeeded.
pub fn run(input: &[u8], apply: impl FnOnce(RawSpec, &ApplyOptions) -> RunResult) -> (Value, bool) {
    let request = match Request::parse(input) {
        Ok(r) => r,
        Err(msg) => return (failure(&msg), false),
    };
    let raw = spec::from_value(Value::Object(request.options.clone()));
    // The validated spec, for `invocation.module_args` (the core validates again, and refuses).
    let applied = raw.as_ref().ok().and_then(|raw| baton_core::validate(raw.clone()).ok());
    let result = match raw {
        Ok(raw) => apply(raw, &request.apply_options()),
        Err(e) => RunResult::Failed(Failure::msg(e.to_string())),
    };
    let ok = matches!(result, RunResult::Ok(_));
    (request.respond(result, applied.as_ref()), ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::{FileDiff, Outcome, MASK};

    fn args(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    fn base() -> Value {
        json!({
            "name": "app", "version": "v1", "exec_start": ["/bin/app"],
            "_ansible_check_mode": false, "_ansible_diff": false, "_ansible_no_log": false,
            "_ansible_verbosity": 0, "_ansible_version": "2.18.0", "_ansible_module_name": "baton.systemd.service",
            "_ansible_string_conversion_action": "warn", "_ansible_tmpdir": "/root/.ansible/tmp/x",
        })
    }

    fn with(mut v: Value, extra: Value) -> Value {
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    }

    fn ok_outcome(msg: &str, after: &str) -> RunResult {
        RunResult::Ok(Outcome {
            changed: true,
            msg: msg.to_owned(),
            name: "app".to_owned(),
            version: Some("v1".to_owned()),
            unit: Some("app-v1.service".to_owned()),
            diff: Some(vec![FileDiff {
                path: "/etc/systemd/system/app-v1.service".to_owned(),
                before: String::new(),
                after: after.to_owned(),
            }]),
            ..Outcome::default()
        })
    }

    #[test]
    fn ansible_keys_are_read_and_removed_before_the_spec() {
        let input = args(with(base(), json!({"_ansible_check_mode": true, "_ansible_diff": true})));
        let mut seen = None;
        let (out, ok) = run(&input, |raw, opts| {
            seen = Some((raw.clone(), opts.check, opts.diff));
            ok_outcome("done", "")
        });
        assert!(ok, "{out:#}");
        let (raw, check, diff) = seen.expect("apply called");
        assert_eq!((raw.name.as_str(), raw.version.as_str(), check, diff), ("app", "v1", true, true));
        assert_eq!(out["changed"], true);
    }

    #[test]
    fn module_args_hold_every_option_with_its_default() {
        let input = args(with(base(), json!({"port": "8080", "environment": {"A": "1"}})));
        let (out, ok) = run(&input, |_, _| ok_outcome("done", ""));
        assert!(ok, "{out:#}");
        assert_eq!(
            out["invocation"]["module_args"],
            json!({
                "name": "app", "version": "v1", "exec_start": ["/bin/app"], "port": 8080,
                "health": {"http": null, "tcp": true, "timeout_sec": 30, "interval_ms": 200, "observe_sec": 0},
                "service_type": "exec", "user": null, "group": null, "working_directory": null,
                "environment": {"A": "1"}, "timeout_stop_sec": 30, "restart": "always", "directives": {},
                "template": null, "state": "started", "enabled": true, "keep": 2, "migrate_requests": true,
                "unit_dir": "/etc/systemd/system", "secret_environment": null,
                "listen_mode": "reuseport", "bind_address": null, "unit_naming": "per-version",
            })
        );
        let names: Vec<&str> = coerce::OPTIONS.iter().map(|(n, _)| *n).collect();
        let reported = out["invocation"]["module_args"].as_object().expect("object");
        assert_eq!(reported.len(), names.len(), "every option, nothing else");
        assert!(names.iter().all(|n| reported.contains_key(*n)));
    }

    #[test]
    fn options_that_do_not_validate_are_reported_as_given() {
        let input = args(with(base(), json!({"keep": 500})));
        let (out, ok) =
            run(&input, |raw, _| RunResult::Failed(Failure::msg(raw.validate().expect_err("bad").to_string())));
        assert!(!ok);
        assert_eq!(out["msg"], "keep: must be between 0 and 100, got 500");
        assert_eq!(
            out["invocation"]["module_args"],
            json!({"name": "app", "version": "v1", "exec_start": ["/bin/app"], "keep": 500})
        );
    }

    #[test]
    fn stopped_and_absent_need_only_the_name() {
        for state in ["stopped", "absent"] {
            let input = args(json!({"name": "app", "state": state, "_ansible_check_mode": true}));
            let mut seen = None;
            let (out, ok) = run(&input, |raw, _| {
                seen = Some(raw.clone());
                let spec = raw.validate().expect("valid without version and exec_start");
                RunResult::Ok(Outcome { name: spec.name.to_string(), unit: spec.unit(), ..Outcome::default() })
            });
            assert!(ok, "{state}: {out:#}");
            assert_eq!(seen.expect("applied").version, "");
            let module_args = &out["invocation"]["module_args"];
            assert_eq!((&module_args["state"], &module_args["version"]), (&json!(state), &Value::Null));
            assert_eq!((&module_args["exec_start"], &module_args["keep"]), (&Value::Null, &json!(2)));
            assert_eq!(out["unit"], Value::Null);
        }
    }

    #[test]
    fn every_diff_entry_gets_ansibles_headers() {
        let input = args(with(base(), json!({"_ansible_diff": true})));
        let (out, ok) = run(&input, |_, _| {
            RunResult::Ok(Outcome {
                changed: true,
                diff: Some(vec![
                    FileDiff { path: "/u/app-v2.service".to_owned(), before: String::new(), after: "new\n".to_owned() },
                    FileDiff { path: "/u/app-v0.service".to_owned(), before: "old\n".to_owned(), after: String::new() },
                ]),
                ..Outcome::default()
            })
        });
        assert!(ok);
        assert_eq!(
            out["diff"],
            json!([
                {"path": "/u/app-v2.service", "before_header": "/u/app-v2.service", "after_header": "/u/app-v2.service",
                 "before": "", "after": "new\n"},
                {"path": "/u/app-v0.service", "before_header": "/u/app-v0.service", "after_header": "/u/app-v0.service",
                 "before": "old\n", "after": ""},
            ])
        );
        // Without diff, none; nothing written, an empty list (Ansible shows nothing).
        let (out, _) = run(&args(base()), |_, _| RunResult::Ok(Outcome::default()));
        assert!(out.get("diff").is_none(), "{out:#}");
        let (out, _) =
            run(&args(base()), |_, _| RunResult::Ok(Outcome { diff: Some(Vec::new()), ..Outcome::default() }));
        assert_eq!(out["diff"], json!([]));
    }

    #[test]
    fn unknown_options_fail_naming_the_option() {
        let (out, ok) = run(&args(with(base(), json!({"prot": 8080}))), |_, _| unreachable!("never applied"));
        assert!(!ok);
        assert_eq!(out["failed"], true);
        assert!(out["msg"].as_str().expect("msg").contains("unknown field `prot`"), "{out:#}");
        assert_eq!(out["invocation"]["module_args"]["prot"], 8080);
    }

    #[test]
    fn wrong_types_fail_naming_the_option() {
        for (extra, field) in [
            (json!({"port": "eighty"}), "port"),
            (json!({"exec_start": "/bin/app --flag"}), "exec_start"),
            (json!({"health": {"timeout_sec": "soon"}}), "health.timeout_sec"),
            (json!({"enabled": "maybe"}), "enabled"),
            (json!({"environment": {"A": {"nested": 1}}}), "environment.A"),
        ] {
            let (out, ok) = run(&args(with(base(), extra.clone())), |_, _| unreachable!("never applied"));
            assert!(!ok, "{extra}");
            let msg = out["msg"].as_str().expect("msg");
            assert!(msg.starts_with(&format!("{field}: ")), "{extra}: {msg}");
        }
    }

    #[test]
    fn missing_required_options_fail_naming_them() {
        let mut v = base();
        v.as_object_mut().expect("object").remove("name");
        let (out, ok) = run(&args(v), |_, _| unreachable!("never applied"));
        assert!(!ok);
        assert_eq!(out["msg"], "name: is required");
        // `version` is the core's rule, for state started only.
        let mut v = base();
        v.as_object_mut().expect("object").remove("version");
        let (out, ok) =
            run(&args(v), |raw, _| RunResult::Failed(Failure::msg(raw.validate().expect_err("refused").to_string())));
        assert!(!ok);
        assert!(out["msg"].as_str().expect("msg").starts_with("version: is required when state is started"), "{out:#}");
    }

    #[test]
    fn input_that_is_not_an_args_object_fails_readably() {
        for input in [&b""[..], b"not json", b"[1,2]", b"\"name=app\""] {
            let (out, ok) = run(input, |_, _| unreachable!("never applied"));
            assert!(!ok);
            assert_eq!(out["failed"], true);
            assert!(out["msg"].as_str().expect("msg").contains("args"), "{out:#}");
        }
    }

    #[test]
    fn no_log_masks_environment_values_everywhere() {
        let secret = "s3cr3t \"quoted\" 100%";
        let input = args(with(
            base(),
            json!({"_ansible_no_log": true, "environment": {"TOKEN": secret, "PORT": 8080},
                   "exec_start": ["/bin/app", format!("--token={secret}")]}),
        ));
        let unit_line = format!("Environment={}\n", baton_core::testing::quote_env("TOKEN", secret));
        let (out, ok) = run(&input, |_, _| {
            let mut r = ok_outcome(&format!("started with {secret}"), &unit_line);
            if let RunResult::Ok(o) = &mut r {
                // An old release removed by the run held the secret too.
                o.diff.get_or_insert_with(Vec::new).push(FileDiff {
                    path: "/etc/systemd/system/app-v0.service".to_owned(),
                    before: unit_line.clone(),
                    after: String::new(),
                });
            }
            r
        });
        assert!(ok);
        let text = out.to_string();
        assert!(!text.contains("s3cr3t"), "{out:#}");
        assert_eq!(out["invocation"]["module_args"]["environment"]["TOKEN"], MASK);
        assert_eq!(out["invocation"]["module_args"]["exec_start"][1], format!("--token={MASK}"));
        assert_eq!(out["msg"], format!("started with {MASK}"));
        assert_eq!(out["diff"][0]["after"], format!("Environment=\"TOKEN={MASK}\"\n"));
        assert_eq!(out["diff"][1]["before"], format!("Environment=\"TOKEN={MASK}\"\n"));
        // Environment values are secrets: a number converted to a string is masked too.
        assert_eq!(out["invocation"]["module_args"]["environment"]["PORT"], MASK);
    }

    /// Runs the module on `extra` over the real core (a fake systemd, a temp unit directory)
    /// with diff on, twice: check mode, then a real run.
    fn run_core(extra: Value) -> Vec<Value> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outs = Vec::new();
        let baton = baton_core::Baton::with_systemd(std::sync::Arc::new(baton_core::testing::FakeSystemd::new()));
        for check in [true, false] {
            let input = args(with(
                base(),
                with(
                    json!({"_ansible_diff": true, "_ansible_check_mode": check,
                           "unit_dir": dir.path().join("units").display().to_string()}),
                    extra.clone(),
                ),
            ));
            let (out, ok) = run(&input, |raw, opts| {
                let opts = ApplyOptions { lock_dir: dir.path().join("locks"), ..opts.clone() };
                baton.apply(raw, &opts, &mut |_| {})
            });
            assert!(ok, "{out:#}");
            outs.push(out);
        }
        outs
    }

    #[test]
    fn secret_environment_is_masked_without_no_log() {
        let secret = "hunter2-Pa$$w0rd";
        for out in run_core(json!({"secret_environment": {"DB_PASSWORD": secret},
                                   "exec_start": ["/bin/app", format!("--password={secret}")]}))
        {
            let text = out.to_string();
            assert!(!text.contains("hunter2"), "{out:#}");
            assert_eq!(out["invocation"]["module_args"]["secret_environment"], NO_LOG_VALUE);
            assert_eq!(out["changed"], true);
            let diff = out["diff"].as_array().expect("diff");
            assert_eq!(diff[0]["after"], "secret_environment: changed (values hidden)\n", "{out:#}");
            assert!(diff[1]["after"].as_str().expect("unit").contains("EnvironmentFile="), "{out:#}");
        }
    }

    /// Issue 11 item 7: a value in `exec_start` and an `ExecStartPre` directive renders as
    /// `Pa$$$$w0rd%%\"x` and `Pa$$$$w0rd%%"x`; under no_log no form of it may show.
    #[test]
    fn no_log_masks_every_escaped_form_of_a_secret_in_the_unit() {
        let secret = r#"Pa$$w0rd%"x"#;
        for out in run_core(json!({"_ansible_no_log": true, "environment": {"PW": secret},
                                   "exec_start": ["/bin/app", format!("--pw={secret}")],
                                   "directives": {"Service": {"ExecStartPre": format!("/bin/check {secret}")}}}))
        {
            let text = out.to_string();
            assert!(!text.contains("w0rd"), "{out:#}");
            let unit = out["diff"][0]["after"].as_str().expect("unit");
            assert!(unit.contains(&format!("ExecStartPre=/bin/check {MASK}")), "{unit}");
            assert!(unit.contains(&format!("ExecStart=\"/bin/app\" \"--pw={MASK}\"")), "{unit}");
        }
    }

    #[test]
    fn without_no_log_values_are_shown() {
        let input = args(with(base(), json!({"environment": {"TOKEN": "visible"}})));
        let (out, _) = run(&input, |_, _| ok_outcome("with visible", ""));
        assert_eq!(out["invocation"]["module_args"]["environment"]["TOKEN"], "visible");
        assert_eq!(out["msg"], "with visible");
    }

    #[test]
    fn no_log_masks_a_failure_too() {
        let input = args(with(base(), json!({"_ansible_no_log": true, "environment": {"K": "topsecret"}})));
        let (out, ok) = run(&input, |_, _| {
            RunResult::Failed(Failure {
                journal: vec!["app: bad topsecret".to_owned()],
                ..Failure::msg("failed: topsecret")
            })
        });
        assert!(!ok);
        assert!(!out.to_string().contains("topsecret"), "{out:#}");
        assert_eq!(out["failed"], true);
    }

    #[test]
    fn conversion_warnings_join_the_core_warnings() {
        let input = args(with(base(), json!({"version": 2})));
        let (out, _) = run(&input, |raw, _| {
            assert_eq!(raw.version, "2");
            RunResult::Ok(Outcome { warnings: vec!["from the core".to_owned()], ..Outcome::default() })
        });
        let warnings = out["warnings"].as_array().expect("warnings");
        assert_eq!(warnings.len(), 2, "{out:#}");
        assert!(warnings[0].as_str().expect("str").starts_with("version: "), "{out:#}");
        assert_eq!(warnings[1], "from the core");
    }

    #[test]
    fn string_conversion_action_error_refuses_the_conversion() {
        let input = args(with(
            base(),
            json!({"version": 2, "_ansible_string_conversion_action": "error", "_ansible_no_log": true}),
        ));
        let (out, ok) = run(&input, |_, _| unreachable!("never applied"));
        assert!(!ok);
        assert!(out["msg"].as_str().expect("msg").starts_with("version: "), "{out:#}");
    }
}
