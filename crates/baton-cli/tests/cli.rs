//! The command line's conventions, on the built binary: usage errors exit 2 with clap's usage on
//! stderr, refused input exits 3, an unreachable systemd exits 5, `-q`/`-v`, `--help`, and the
//! committed completions and man pages are what the binary prints. (Rolled-back handovers and
//! lock timeouts need a real systemd: `integration/tests/exit_status.rs`.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A bus address nothing listens on.
const NO_BUS: &str = "unix:path=/nonexistent/baton-test-bus";

struct Run {
    code: i32,
    json: Value,
    stdout: String,
    stderr: String,
}

fn baton(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton");
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let out: Output = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn spec(dir: &Path) -> String {
    format!(r#"{{"name":"app","version":"v1","exec_start":["/bin/true"],"unit_dir":"{}"}}"#, dir.display())
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_bare_baton_prints_usage_and_exits_2() {
    let r = baton(&[], "");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Usage: baton [OPTIONS] <COMMAND>"), "{}", r.stderr);
    assert!(r.stderr.contains("Zero-downtime version handovers"), "{}", r.stderr);
    assert_eq!(r.json["failed"], true, "{}", r.stdout);
    let msg = r.json["msg"].as_str().unwrap_or_default();
    assert!(msg.starts_with("usage: baton needs a command: apply, render"), "{msg}");
    assert!(!msg.contains("front-end"), "{msg}");
}

#[test]
fn usage_errors_exit_2_with_the_usage_on_stderr() {
    // (arguments, in the message, clap prints the usage line: it does for structural errors,
    // and for a bad value only the error and the `--help` hint)
    for (args, needle, usage) in [
        (&["apply", "--no-such-flag"][..], "--no-such-flag", "Usage: baton apply"),
        (&["no-such-command"][..], "no-such-command", "Usage: baton [OPTIONS] <COMMAND>"),
        (&["status"][..], "<NAME>", "Usage: baton status <NAME>"),
        (&["-q", "-v", "apply"][..], "--verbose", "Usage: baton"),
        (&["apply", "--lock-timeout", "soon"][..], "soon", "try '--help'"),
        (&["completions", "tcsh"][..], "tcsh", "try '--help'"),
    ] {
        let r = baton(args, "");
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(usage), "{args:?}: no {usage:?} on stderr: {}", r.stderr);
        assert_eq!(r.json["failed"], true, "{args:?}: {}", r.stdout);
        let msg = r.json["msg"].as_str().unwrap_or_default();
        assert!(msg.starts_with("usage: ") && msg.contains(needle), "{args:?}: {msg}");
        assert!(!msg.contains("Usage:") && !msg.contains('\n'), "{args:?}: one line: {msg}");
    }
}

#[test]
fn help_and_version_exit_0() {
    let r = baton(&["--help"], "");
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("Zero-downtime version handovers of network services under systemd"), "{}", r.stdout);
    for needle in ["Exit status:", "  4  rolled-back:", "  5  environment:", "-q, --quiet", "-v, --verbose"] {
        assert!(r.stdout.contains(needle), "{needle:?} not in --help:\n{}", r.stdout);
    }
    let r = baton(&["--version"], "");
    assert_eq!((r.code, r.stdout.trim()), (0, concat!("baton ", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn refused_input_exits_3_and_touches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let units = dir.path().join("units");
    for (args, stdin, needle) in [
        (vec!["apply"], r#"{"name":"app","version":"v1","exec_start":["bin/true"]}"#.to_owned(), "exec_start[0]"),
        (vec!["apply"], "not json".to_owned(), "spec"),
        (vec!["apply", "/nonexistent/spec.json"], String::new(), "cannot read the spec file"),
        (vec!["render"], r#"{"name":"a b"}"#.to_owned(), "name"),
        (vec!["status", "../etc"], String::new(), "name"),
    ] {
        let r = baton(&args, &stdin);
        assert_eq!(r.code, 3, "{args:?} {stdin}: {}", r.stdout);
        assert_eq!(r.json["failed"], true);
        assert!(r.json["msg"].as_str().unwrap_or_default().contains(needle), "{args:?}: {}", r.json);
    }
    // A custom template that does not render: refused before systemd is asked anything.
    let template = dir.path().join("bad.j2");
    std::fs::write(&template, "[Unit]\n{% if %}\n").expect("write");
    let bad = format!(
        r#"{{"name":"app","version":"v1","exec_start":["/bin/true"],"unit_dir":"{}","template":"{}"}}"#,
        units.display(),
        template.display()
    );
    let r = baton(&["apply"], &bad);
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(!units.exists(), "a refused spec touched the unit directory");
}

#[test]
fn an_unreachable_systemd_exits_5() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = baton(&["apply", "--lock-dir", &dir.path().join("locks").display().to_string()], &spec(dir.path()));
    assert_eq!(r.code, 5, "{}", r.stdout);
    let msg = r.json["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("cannot connect to systemd") && msg.contains(NO_BUS), "{msg}");
    assert!(!dir.path().join("app-v1.service").exists());

    // A service with nothing on disk is answered from the disk alone; one with a release there
    // needs systemd's word on it.
    let unit_dir = dir.path().display().to_string();
    let r = baton(&["status", "app", "--unit-dir", &unit_dir], "");
    assert_eq!((r.code, r.stdout.trim()), (0, "app: no releases on disk"), "{}", r.stderr);
    let unit = baton(&["render"], &spec(dir.path()));
    assert_eq!(unit.code, 0, "{}", unit.stderr);
    std::fs::write(dir.path().join("app-v1.service"), &unit.stdout).expect("write the unit");
    let r = baton(&["status", "app", "--unit-dir", &unit_dir], "");
    assert_eq!(r.code, 5, "{}", r.stdout);
    assert!(r.json["msg"].as_str().unwrap_or_default().contains("cannot connect to systemd"), "{}", r.json);
}

/// The lines of `baton observe NAME...`, each one JSON object.
fn json_lines(r: &Run) -> Vec<Value> {
    r.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect()
}

#[test]
fn observe_answers_each_name_on_its_own_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit_dir = dir.path().display().to_string();
    // Nothing on disk: answered from the disk alone. A bad name fails only its own line, named.
    let r = baton(&["observe", "--unit-dir", &unit_dir, "app", "bad name", "db"], "");
    let lines = json_lines(&r);
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert_eq!((&lines[0]["name"], &lines[0]["releases"]), (&Value::from("app"), &serde_json::json!([])));
    assert_eq!((&lines[1]["failed"], &lines[1]["name"]), (&Value::from(true), &Value::from("bad name")));
    assert!(lines[1]["msg"].as_str().unwrap_or_default().contains("name"), "{}", lines[1]);
    assert_eq!(lines[2]["name"], "db");
    assert_eq!(r.code, 3, "the first failure's exit status (refused)");

    // One name: one object, as before.
    let r = baton(&["observe", "--unit-dir", &unit_dir, "app"], "");
    assert_eq!((r.code, &r.json["name"]), (0, &Value::from("app")), "{}", r.stdout);

    // --all: the named services, then every other one with a release in the directory (whose
    // read needs systemd here: its failure is its own line).
    let unit = baton(&["render"], &spec(dir.path()));
    assert_eq!(unit.code, 0, "{}", unit.stderr);
    std::fs::write(dir.path().join("app-v1.service"), &unit.stdout).expect("write the unit");
    let r = baton(&["observe", "--all", "--unit-dir", &unit_dir, "db"], "");
    let lines = json_lines(&r);
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert_eq!((&lines[0]["name"], &lines[0]["releases"]), (&Value::from("db"), &serde_json::json!([])));
    assert_eq!((&lines[1]["failed"], &lines[1]["name"]), (&Value::from(true), &Value::from("app")));
    assert!(lines[1]["msg"].as_str().unwrap_or_default().contains("cannot connect to systemd"), "{}", lines[1]);
    assert_eq!(r.code, 5);
    // A name is required without --all.
    assert_eq!(baton(&["observe", "--unit-dir", &unit_dir], "").code, 2);
}

#[test]
fn quiet_prints_only_the_json_and_verbose_says_what_it_touches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locks = dir.path().join("locks").display().to_string();
    let r = baton(&["apply", "-q", "--progress", "always", "--lock-dir", &locks], &spec(dir.path()));
    assert_eq!(r.code, 5);
    assert_eq!(r.stderr, "", "-q prints nothing on stderr");
    assert_eq!(r.json["failed"], true);

    // -v before or after the command; progress although stderr is a pipe.
    for args in [["-v", "apply", "--lock-dir", &locks], ["apply", "--verbose", "--lock-dir", &locks]] {
        let r = baton(&args, &spec(dir.path()));
        assert_eq!(r.code, 5);
        let unit = dir.path().join("app-v1.service");
        for needle in [
            format!("unit file: {} (state started)", unit.display()),
            format!("lock file: {locks}/app.lock"),
            format!("system bus: {NO_BUS}"),
            "done".to_owned(),
        ] {
            assert!(r.stderr.contains(&needle), "{needle:?} not in -v's stderr:\n{}", r.stderr);
        }
    }

    // Without either, stderr being a pipe: no progress.
    let r = baton(&["apply", "--lock-dir", &locks], &spec(dir.path()));
    assert_eq!((r.code, r.stderr.as_str()), (5, ""));

    // Instance units: the release's file is its drop-in, written beside the template.
    let instance = spec(dir.path()).replacen('{', r#"{"unit_naming":"instance","#, 1);
    let r = baton(&["-v", "apply", "--lock-dir", &locks], &instance);
    assert_eq!(r.code, 5, "{}", r.stdout);
    let (drop_in, template) = (dir.path().join("app@v1.service.d/baton.conf"), dir.path().join("app@.service"));
    for needle in
        [format!("unit file: {} (state started)", drop_in.display()), format!("template: {}", template.display())]
    {
        assert!(r.stderr.contains(&needle), "{needle:?} not in -v's stderr:\n{}", r.stderr);
    }
}

#[test]
fn the_committed_completions_and_man_pages_are_what_the_binary_prints() {
    for (shell, file) in [
        ("bash", "baton.bash"),
        ("zsh", "_baton"),
        ("fish", "baton.fish"),
        ("elvish", "baton.elv"),
        ("powershell", "_baton.ps1"),
    ] {
        let r = baton(&["completions", shell], "");
        assert_eq!(r.code, 0, "{shell}");
        let committed = std::fs::read_to_string(crate_dir().join("complete").join(file)).expect("committed script");
        assert_eq!(r.stdout, committed, "{shell}: run BATON_UPDATE_GENERATED=1 cargo test -p baton-cli");
        assert!(r.stdout.contains("completions") && r.stdout.contains("lock-timeout"), "{shell}");
    }

    let r = baton(&["man", "apply"], "");
    assert_eq!(r.code, 0);
    let committed = std::fs::read_to_string(crate_dir().join("doc/baton-apply.1")).expect("committed page");
    assert_eq!(r.stdout, committed);

    let out = tempfile::tempdir().expect("tempdir");
    let r = baton(&["man", "--dir", &out.path().display().to_string()], "");
    assert_eq!(r.code, 0, "{}", r.stdout);
    let mut written: Vec<String> = std::fs::read_dir(out.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into())
        .collect();
    written.sort();
    let mut committed: Vec<String> = std::fs::read_dir(crate_dir().join("doc"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into())
        .collect();
    committed.sort();
    assert_eq!(written, committed);
    for name in &written {
        assert_eq!(
            std::fs::read(out.path().join(name)).expect("written"),
            std::fs::read(crate_dir().join("doc").join(name)).expect("committed"),
            "{name}"
        );
    }
}
