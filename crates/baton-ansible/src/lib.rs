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
//!    applies it (check mode plans only, diff mode reports the unit text before and after);
//! 4. returns the core's result with `invocation: {module_args}` and the warnings added; under
//!    `no_log` every `environment` value is masked in the whole output (core's
//!    [`Redactor`](baton_core::result::Redactor)).

pub mod coerce;

use baton_core::handover::ApplyOptions;
use baton_core::result::{Failure, Redactor, RunResult};
use baton_core::spec::{self, RawSpec, MAX_SPEC_BYTES};
use serde_json::{json, Map, Value};

pub use coerce::Conversion;

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

    /// The secrets of this request: every string under `environment`.
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
        if let Some(env) = self.options.get("environment") {
            strings(env, &mut out);
        }
        out
    }

    /// The redactor of this request's secrets under `no_log` (None without `no_log`).
    fn redactor(&self) -> Option<Redactor> {
        if !self.no_log {
            return None;
        }
        let secrets = self.secrets();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        Some(Redactor::new(&refs))
    }

    /// The run options the core gets.
    pub fn apply_options(&self) -> ApplyOptions {
        ApplyOptions { check: self.check, diff: self.diff, ..ApplyOptions::default() }
    }

    /// The module's JSON output for `result`: the result, `invocation.module_args` and the
    /// conversion warnings, with every secret masked under `no_log`.
    pub fn respond(&self, mut result: RunResult) -> Value {
        let redactor = self.redactor();
        if let Some(r) = &redactor {
            r.result(&mut result);
        }
        let mut out =
            serde_json::to_value(&result).unwrap_or_else(|e| failure(&format!("cannot encode the result: {e}")));
        let mut module_args = Value::Object(self.options.clone());
        let mut warnings = self.warnings.clone();
        if let Some(r) = &redactor {
            r.value(&mut module_args);
            warnings.iter_mut().for_each(|w| r.text(w));
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
    let result = match spec::from_value(Value::Object(request.options.clone())) {
        Ok(raw) => apply(raw, &request.apply_options()),
        Err(e) => RunResult::Failed(Failure::msg(e.to_string())),
    };
    let ok = matches!(result, RunResult::Ok(_));
    (request.respond(result), ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::result::{Diff, Outcome, MASK};

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
            unit: "app-v1.service".to_owned(),
            diff: Some(Diff { before: String::new(), after: after.to_owned() }),
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
        assert_eq!(
            out["invocation"]["module_args"],
            json!({"name": "app", "version": "v1", "exec_start": ["/bin/app"]})
        );
        assert_eq!(out["changed"], true);
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
        v.as_object_mut().expect("object").remove("version");
        let (out, ok) = run(&args(v), |_, _| unreachable!("never applied"));
        assert!(!ok);
        assert_eq!(out["msg"], "version: is required");
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
        let unit_line = format!("Environment={}\n", baton_core::render::quote_env("TOKEN", secret));
        let (out, ok) = run(&input, |_, _| ok_outcome(&format!("started with {secret}"), &unit_line));
        assert!(ok);
        let text = out.to_string();
        assert!(!text.contains("s3cr3t"), "{out:#}");
        assert_eq!(out["invocation"]["module_args"]["environment"]["TOKEN"], MASK);
        assert_eq!(out["invocation"]["module_args"]["exec_start"][1], format!("--token={MASK}"));
        assert_eq!(out["msg"], format!("started with {MASK}"));
        assert_eq!(out["diff"]["after"], format!("Environment=\"TOKEN={MASK}\"\n"));
        // Environment values are secrets: a number converted to a string is masked too.
        assert_eq!(out["invocation"]["module_args"]["environment"]["PORT"], MASK);
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
