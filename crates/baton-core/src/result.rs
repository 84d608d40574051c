//! The result of a run, as the contract defines it: what the CLI prints, what Ansible gets back
//! and what the Terraform provider reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::migration::{Migration, MigrationCounters};

/// One unit file a run wrote or removed (in check mode: would), before and after; the result
/// carries one per file (with diff requested). Ansible's module adds `before_header` and
/// `after_header` (the path) for its diff callback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileDiff {
    /// The unit file's path.
    pub path: String,
    /// Its text before the run (empty when it did not exist).
    pub before: String,
    /// Its text after the run (empty when the run removed it).
    pub after: String,
}

/// The outcome of a successful run (`failed` is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "baton result")]
pub struct Outcome {
    /// Whether anything on disk or in systemd changed (in check mode: would change).
    pub changed: bool,
    /// One readable sentence on what happened.
    pub msg: String,
    /// The service.
    pub name: String,
    /// The active release after the run (null when none is active).
    pub version: Option<String>,
    /// The release that was active before the run.
    pub previous_version: Option<String>,
    /// The unit of the release the spec names (null when a `stopped` or `absent` spec names
    /// none).
    pub unit: Option<String>,
    /// The steps taken, in order (in check mode: planned).
    pub actions: Vec<String>,
    /// Whether a new release failed and was stopped, leaving the old one serving.
    pub rolled_back: bool,
    /// Wall time of the run, in milliseconds.
    pub elapsed_ms: u64,
    /// Things an operator should know that did not stop the run.
    pub warnings: Vec<String>,
    /// Whether connections queued on the old release's listener are proven to move to the new
    /// release when it closes: `verified` (baton's migration probe passed just before the old
    /// listener closed), `unavailable` (it failed: they are reset, and a warning says so), `off`
    /// (`migrate_requests: false`), `shared-socket` (`listen_mode: "socket"`: one listening
    /// socket across releases, nothing to migrate). Null when no old listener closed in this run
    /// (and in check mode, which probes nothing).
    #[serde(default)]
    pub migration: Option<Migration>,
    /// With `migration` probed: the change of the kernel's migration counters (TcpExt
    /// `TCPMigrateReqSuccess`, `TCPMigrateReqFailure`) in baton's network namespace from the
    /// probe to the end of the run, which the old release's stop falls in. Null otherwise, or
    /// when the kernel does not count migrations.
    #[serde(default)]
    pub migration_counters: Option<MigrationCounters>,
    /// With diff requested: one entry per unit file written or removed, in the order of the
    /// steps (empty when no file changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<Vec<FileDiff>>,
}

/// A failed run: `{"failed": true, "msg": ...}` plus whatever is known of the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Failure {
    /// Always true.
    pub failed: bool,
    /// The cause in one readable sentence (for a release that failed to start: with the last
    /// lines of its journal).
    pub msg: String,
    /// The service, when the spec was valid enough to name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The release still active after the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether anything changed before the failure.
    #[serde(default)]
    pub changed: bool,
    /// Whether a new release was stopped, leaving the old one serving.
    #[serde(default)]
    pub rolled_back: bool,
    /// The steps taken before the failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// The last journal lines of the release that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<String>,
    /// Wall time of the run, in milliseconds.
    #[serde(default)]
    pub elapsed_ms: u64,
    /// What kind of failure this is: the CLI's exit status tells it. Not part of the JSON (the
    /// contract's failure shape is the same in all front-ends); it is [`FailureKind::Failed`]
    /// when read back from JSON.
    #[serde(skip)]
    pub kind: FailureKind,
}

impl Failure {
    /// A failure with just a message, of the catch-all kind [`FailureKind::Failed`].
    pub fn msg(msg: impl Into<String>) -> Self {
        Failure { failed: true, msg: msg.into(), ..Failure::default() }
    }

    /// Input refused before anything was touched (a bad spec, a template that does not render).
    pub fn refused(msg: impl Into<String>) -> Self {
        Failure::msg(msg).with_kind(FailureKind::Refused)
    }

    /// The same failure, of `kind`.
    #[must_use]
    pub fn with_kind(self, kind: FailureKind) -> Self {
        Failure { kind, ..self }
    }
}

/// The message of a panic's payload (what `panic!` was given), for the front-ends that turn a
/// panic, a bug in baton, into a failure.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".to_owned())
}

/// A panic as a panic hook sees it: its message and, when known, `(at file:line)`.
pub fn panic_report(info: &std::panic::PanicHookInfo<'_>) -> String {
    let what = panic_text(info.payload());
    match info.location() {
        Some(at) => format!("{what} (at {}:{})", at.file(), at.line()),
        None => what,
    }
}

/// What kind of failure a run ended in, for a caller that must tell them apart without reading
/// the message (the CLI maps each to its own exit status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Anything the other kinds do not cover, e.g. systemd could not stop the old release, or a
    /// release restarted in place (same version, new unit text) did not come back.
    #[default]
    Failed,
    /// The input was refused and nothing was touched: a spec that breaks a rule, a template
    /// that does not render, a unit file in the way that baton did not write, a preflight check
    /// (old and new release cannot share the port).
    Refused,
    /// The new release never became ready (or turned unhealthy while observed) and was stopped;
    /// the release that served before, if any, still serves.
    RolledBack,
    /// The machine stood in the way: systemd unreachable, refusing or not answering a call, the
    /// service's lock held by another run past the timeout, the unit or lock directory unreadable
    /// or unwritable.
    /// Running again later, or after fixing the host, may succeed with the same input.
    Environment,
}

impl FailureKind {
    /// Every kind, in the order of their exit statuses.
    pub const ALL: [FailureKind; 4] =
        [FailureKind::Failed, FailureKind::Refused, FailureKind::RolledBack, FailureKind::Environment];

    /// A short lowercase name, e.g. `rolled-back`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Failed => "failed",
            FailureKind::Refused => "refused",
            FailureKind::RolledBack => "rolled-back",
            FailureKind::Environment => "environment",
        }
    }
}

/// Either result; serialises to exactly one of the two JSON shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RunResult {
    /// A failed run.
    Failed(Failure),
    /// A successful run.
    Ok(Outcome),
}

/// What a [`Redactor`] puts in place of a secret (Ansible's own mask).
pub const MASK: &str = "********";

/// Masks secrets (e.g. the `environment` values of a run under Ansible's `no_log`, and the
/// `secret_environment` values always) in text.
///
/// Each secret is masked in every form baton or a reader may render it in ([`Redactor::forms`]):
/// as given; quoted as an `Environment=` value (`\"`, `\\`, `%%`, control characters as C
/// escapes); quoted as an `ExecStart=` argument (the same, and `$$`); escaped as a plain
/// directive value (`%%`, and `$$` in `Exec*` lines); escaped as in a secret file (`\$`, `\"`,
/// `\\`, `` \` ``); and each of these as a JSON string holds it. Longest first, so a secret
/// that contains another is masked whole. Empty secrets are ignored.
#[derive(Clone, Default)]
pub struct Redactor {
    forms: Vec<String>,
    /// Whether [`Redactor::result`] masks every `Environment=` value of the diff too.
    environment_lines: bool,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms, values hidden)", self.forms.len())
    }
}

impl Redactor {
    /// A redactor of `secrets` that also masks the value of every `Environment=` line of a
    /// diff (for Ansible's `no_log`, where the unit on disk may hold earlier secrets).
    pub fn new(secrets: &[&str]) -> Self {
        Redactor { environment_lines: true, ..Self::values_only(secrets) }
    }

    /// A redactor of `secrets` only (the `secret_environment` values of a run without
    /// `no_log`): the rest of the text, `Environment=` lines included, stays as it is.
    pub fn values_only(secrets: &[&str]) -> Self {
        let mut forms: Vec<String> = secrets.iter().filter(|s| !s.is_empty()).flat_map(|s| Self::forms(s)).collect();
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        Redactor { forms, environment_lines: false }
    }

    /// Every rendered form of `secret` this redactor masks.
    pub fn forms(secret: &str) -> Vec<String> {
        let inner = |quoted: String| quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).map(str::to_owned);
        let mut rendered = vec![secret.to_owned()];
        // As `Environment="K=value"` holds it.
        rendered.push(crate::unit::escape::escape_env_value(secret));
        rendered.extend(inner(crate::unit::escape::quote_exec_arg(secret)));
        rendered.push(crate::unit::escape::escape_directive("ExecStartPre", secret));
        rendered.push(crate::unit::escape::escape_directive("Description", secret));
        let mut file_form = String::with_capacity(secret.len());
        for c in secret.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                file_form.push('\\');
            }
            file_form.push(c);
        }
        rendered.push(file_form);
        let json: Vec<String> =
            rendered.iter().filter_map(|f| serde_json::to_string(f).ok()).filter_map(inner).collect();
        rendered.extend(json);
        rendered.retain(|f| !f.is_empty());
        rendered.sort();
        rendered.dedup();
        rendered
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// Masks every secret in `text`.
    pub fn text(&self, text: &mut String) {
        for form in &self.forms {
            if text.contains(form.as_str()) {
                *text = text.replace(form.as_str(), MASK);
            }
        }
    }

    /// Masks every secret in every string of a JSON value (object keys are left alone).
    pub fn value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => self.text(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.value(v)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Masks every secret in the text a result carries: `msg`, `actions`, `warnings`,
    /// `journal` and the unit text of every diff entry, where the value of every `Environment=` line is
    /// masked too (the unit on disk may hold earlier secrets that the request does not name).
    /// Identifiers (`name`, `version`, `unit`) are left alone: the spec allows no
    /// secret-bearing characters there.
    pub fn result(&self, result: &mut RunResult) {
        let mask = |text: &mut String| self.text(text);
        match result {
            RunResult::Ok(o) => {
                mask(&mut o.msg);
                o.actions.iter_mut().for_each(mask);
                o.warnings.iter_mut().for_each(mask);
                for d in o.diff.iter_mut().flatten() {
                    for text in [&mut d.before, &mut d.after] {
                        mask(text);
                        if self.environment_lines {
                            mask_environment_lines(text);
                        }
                    }
                }
            }
            RunResult::Failed(f) => {
                mask(&mut f.msg);
                f.actions.iter_mut().for_each(mask);
                f.journal.iter_mut().for_each(mask);
            }
        }
    }
}

/// Masks the value of every `Environment=` line of a unit's text: `Environment="KEY=value"` (as
/// baton renders it) becomes `Environment="KEY=********"`, any other form `Environment=********`.
fn mask_environment_lines(text: &mut String) {
    use crate::unit::{escape, parse};
    if !text.contains("Environment") {
        return;
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        match parse::line(body) {
            parse::Line::Directive { key: "Environment", value } => {
                match escape::single_env_key(value) {
                    Some(k) => out.push_str(&format!("Environment={}", escape::quote_env(&k, MASK))),
                    None => out.push_str(&format!("Environment={MASK}")),
                }
                out.push_str(end);
            }
            _ => out.push_str(line),
        }
    }
    *text = out;
}

/// An error with its causes, each once: `message: cause: cause…` (the `{e:#}` of an error
/// chain). baton's error messages leave their source out, so this is how a result's `msg`
/// carries it.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Masks `secrets` in a result as Ansible's `no_log` does: see [`Redactor::new`].
    fn redact(result: &mut RunResult, secrets: &[&str]) {
        Redactor::new(secrets).result(result);
    }

    #[test]
    fn the_chain_names_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read /x")]
        struct Outer {
            source: std::io::Error,
        }
        let e = Outer { source: std::io::Error::from(std::io::ErrorKind::NotFound) };
        assert_eq!(error_chain(&e), "cannot read /x: entity not found");
        assert_eq!(error_chain(&std::io::Error::from(std::io::ErrorKind::NotFound)), "entity not found");
    }

    fn outcome(msg: &str, before: &str, after: &str) -> RunResult {
        RunResult::Ok(Outcome {
            changed: true,
            msg: msg.to_owned(),
            name: "app".to_owned(),
            version: Some("v2".to_owned()),
            actions: vec![format!("write app-v2.service ({msg})")],
            warnings: vec![format!("warning: {msg}")],
            // The unit written, and an old release removed (it held the `before` text too).
            diff: Some(vec![
                FileDiff { path: "/u/app-v2.service".to_owned(), before: before.to_owned(), after: after.to_owned() },
                FileDiff { path: "/u/app-v0.service".to_owned(), before: before.to_owned(), after: String::new() },
            ]),
            ..Outcome::default()
        })
    }

    #[test]
    fn masks_secrets_everywhere_in_an_outcome() {
        let mut r = outcome("token hunter2 seen", "Environment=\"TOKEN=hunter1\"\n", "Environment=\"TOKEN=hunter2\"\n");
        redact(&mut r, &["hunter2", "hunter1"]);
        let RunResult::Ok(o) = r else { panic!("still an outcome") };
        assert_eq!(o.msg, "token ******** seen");
        assert_eq!(o.actions, ["write app-v2.service (token ******** seen)"]);
        assert_eq!(o.warnings, ["warning: token ******** seen"]);
        let d = o.diff.expect("diff");
        assert_eq!(d[0].before, "Environment=\"TOKEN=********\"\n");
        assert_eq!(d[0].after, "Environment=\"TOKEN=********\"\n");
        assert_eq!(d[1].before, "Environment=\"TOKEN=********\"\n", "every entry is masked");
        assert_eq!((d[0].path.as_str(), d[1].path.as_str()), ("/u/app-v2.service", "/u/app-v0.service"));
        assert_eq!(o.name, "app");
        assert_eq!(o.version.as_deref(), Some("v2"));
    }

    #[test]
    fn masks_the_quoted_form_the_unit_file_holds() {
        let secret = "p\"a%s\\s";
        let line = format!("Environment={}\n", crate::unit::escape::quote_env("PASSWORD", secret));
        assert!(!line.contains(secret), "the unit holds the escaped form: {line}");
        let mut r = outcome("ok", "", &line);
        redact(&mut r, &[secret]);
        let RunResult::Ok(o) = r else { panic!("still an outcome") };
        assert_eq!(o.diff.expect("diff")[0].after, "Environment=\"PASSWORD=********\"\n");
    }

    #[test]
    fn masks_longest_first_and_ignores_empty_secrets() {
        let mut r = outcome("abc and abcdef", "", "");
        redact(&mut r, &["", "abc", "abcdef"]);
        let RunResult::Ok(o) = r else { panic!("still an outcome") };
        assert_eq!(o.msg, "******** and ********");
    }

    #[test]
    fn masks_a_failure_and_its_journal() {
        let mut r = RunResult::Failed(Failure {
            journal: vec!["app[1]: connecting with s3cret".to_owned()],
            actions: vec!["start app-v2.service".to_owned()],
            ..Failure::msg("app-v2.service failed. Last journal lines:\napp[1]: connecting with s3cret")
        });
        redact(&mut r, &["s3cret"]);
        let text = serde_json::to_string(&r).expect("serialise");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("connecting with ********"), "{text}");
    }

    #[test]
    fn masks_strings_in_json_values_but_not_keys() {
        let mut v = serde_json::json!({"environment": {"TOKEN": "hunter2"}, "exec_start": ["/bin/app", "--token=hunter2"], "port": 1});
        Redactor::new(&["hunter2"]).value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"environment": {"TOKEN": MASK}, "exec_start": ["/bin/app", "--token=********"], "port": 1})
        );
    }

    #[test]
    fn no_secrets_change_nothing_but_environment_lines() {
        let before = outcome("a message", "x\n", "y");
        let mut r = before.clone();
        redact(&mut r, &[]);
        assert_eq!(r, before);
    }

    /// Issue 11 item 7: `Pa$$w0rd%"x` in `exec_start` renders as `Pa$$$$w0rd%%\"x`, in an
    /// `ExecStartPre` directive as `Pa$$$$w0rd%%"x`; neither (nor any other form) may show.
    #[test]
    fn no_log_masks_every_escaped_form_of_a_secret() {
        let secret = r#"Pa$$w0rd%"x"#;
        let forms = Redactor::forms(secret);
        for expected in [
            secret,
            r#"Pa$$$$w0rd%%\"x"#,   // ExecStart= argument
            r#"Pa$$$$w0rd%%"x"#,    // Exec* directive
            r#"Pa$$w0rd%%"x"#,      // other directive
            r#"Pa$$w0rd%%\"x"#,     // Environment= value
            r#"Pa\$\$w0rd%\"x"#,    // secret file
            r#"Pa$$w0rd%\"x"#,      // JSON string
            r#"Pa$$$$w0rd%%\\\"x"#, // ExecStart= argument in a JSON string
        ] {
            assert!(forms.iter().any(|f| f == expected), "{expected} not in {forms:?}");
        }
        let spec = crate::spec::parse(
            serde_json::json!({"name": "a", "version": "v1", "exec_start": ["/bin/app", format!("--pw={secret}")],
                "environment": {"PW": secret},
                "directives": {"Service": {"ExecStartPre": format!("/bin/check {secret}"), "SyslogIdentifier": secret}}})
            .to_string()
            .as_bytes(),
        )
        .expect("valid");
        let unit = crate::unit::render::render(&spec).expect("renders");
        let mut r = outcome(&format!("journal: {secret}"), "", &unit);
        Redactor::values_only(&[secret]).result(&mut r);
        let text = serde_json::to_string(&r).expect("json");
        for bit in ["w0rd", "Pa$", "Pa\\$"] {
            assert!(!text.contains(bit), "{bit} in {text}");
        }
        assert!(format!("{:?}", Redactor::new(&[secret])).contains("values hidden"));
    }

    #[test]
    fn values_only_leaves_environment_lines_alone() {
        let mut r = outcome("ok", "", "Environment=\"A=visible\"\nExecStart=/x hunter2\n");
        Redactor::values_only(&["hunter2"]).result(&mut r);
        let RunResult::Ok(o) = r else { panic!("still an outcome") };
        assert_eq!(o.diff.expect("diff")[0].after, "Environment=\"A=visible\"\nExecStart=/x ********\n");
    }

    #[test]
    fn every_environment_line_of_the_diff_is_masked() {
        let unit = "[Service]\nEnvironment=\"OLD=earlier secret\"\nEnvironment=A=1 B=2\nEnvironmentFile=/etc/app.env\nExecStart=/bin/app\nEnvironment=\"X=\\\"q\\\"\"";
        let mut r = outcome("ok", unit, "");
        redact(&mut r, &[]);
        let RunResult::Ok(o) = r else { panic!("still an outcome") };
        let masked = "[Service]\nEnvironment=\"OLD=********\"\nEnvironment=********\nEnvironmentFile=/etc/app.env\nExecStart=/bin/app\nEnvironment=\"X=********\"";
        for d in o.diff.expect("diff") {
            assert_eq!(d.before, masked, "{}", d.path);
        }
    }
}
