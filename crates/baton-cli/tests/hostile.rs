//! The hostile-spec corpus (`tests/hostile/`, listed in `cases.tsv` with a part of the message
//! each must produce; `@CORPUS@` in a spec stands for the corpus directory, whose `templates/`
//! hold hostile custom templates): every spec is refused with exit status 3 (refused, nothing
//! touched), `{"failed": true}` and a message naming the field, within seconds, before baton
//! connects to systemd or takes a lock. A `secret_environment` value is never quoted back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

struct Refusal {
    code: i32,
    json: Value,
}

/// Runs `baton apply` with `input` on stdin; systemd and the lock directory point nowhere
/// usable, so getting past validation would show up as a different message.
fn apply(input: &[u8], lock_dir: &Path) -> Refusal {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["apply", "--progress", "never", "--lock-dir"])
        .arg(lock_dir)
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/baton-test-bus")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton");
    let mut stdin = child.stdin.take().expect("stdin");
    // baton stops reading past its size limit; a broken pipe then is expected.
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout));
    });
    Refusal { code: out.status.code().unwrap_or(-1), json }
}

fn assert_refused(case: &str, input: &[u8], expected: &str) {
    let lock_dir = tempfile::tempdir().expect("tempdir");
    let locks = lock_dir.path().join("locks");
    let r = apply(input, &locks);
    let msg = r.json["msg"].as_str().unwrap_or_default();
    assert_eq!(r.code, 3, "{case}: exit status of a refusal");
    assert_eq!(r.json["failed"], true, "{case}: {}", r.json);
    assert!(msg.contains(expected), "{case}: expected {expected:?} in {msg:?}");
    assert!(!msg.contains("cannot connect to systemd"), "{case}: got past validation: {msg}");
    assert!(!locks.exists(), "{case}: a refused spec must not take a lock");
    // The corpus's secret_environment values: never quoted back, whatever is wrong.
    for secret in ["hunter2", "123456789"] {
        assert!(!r.json.to_string().contains(secret), "{case}: the refusal shows a secret: {}", r.json);
    }
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

#[test]
fn every_corpus_spec_is_refused_naming_its_field() {
    let cases = std::fs::read_to_string(corpus_dir().join("cases.tsv")).expect("cases.tsv");
    let mut n = 0;
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let (file, expected) = line.split_once('\t').expect("file<TAB>expected");
        let input = std::fs::read_to_string(corpus_dir().join(file)).expect("case file");
        let input = input.replace("@CORPUS@", &corpus_dir().display().to_string());
        let t0 = std::time::Instant::now();
        assert_refused(file, input.as_bytes(), expected);
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{file}: took {:?}", t0.elapsed());
        n += 1;
    }
    assert!(n >= 50, "the corpus shrank to {n} cases");
}

#[test]
fn five_megabyte_values_are_refused() {
    let big = "a".repeat(5 * 1024 * 1024);
    for (case, json) in [
        ("argument", format!(r#"{{"name":"app","version":"v1","exec_start":["/bin/true","{big}"]}}"#)),
        (
            "env value",
            format!(r#"{{"name":"app","version":"v1","exec_start":["/bin/true"],"environment":{{"A":"{big}"}}}}"#),
        ),
        ("name", format!(r#"{{"name":"{big}","version":"v1","exec_start":["/bin/true"]}}"#)),
    ] {
        assert_refused(case, json.as_bytes(), "spec: is 1048577 bytes; the limit is 1048576 bytes");
    }
    // Under the document limit, the value limit names the field.
    let big = "a".repeat(100 * 1024);
    let json = format!(r#"{{"name":"app","version":"v1","exec_start":["/bin/true"],"environment":{{"A":"{big}"}}}}"#);
    assert_refused("100 KiB env value", json.as_bytes(), "environment.A: is 102400 bytes long; the limit is 65536");
}

#[test]
fn templates_that_cannot_render_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let undefined = write("undefined.j2", "[Unit]\n{{ no_such_variable }}\n");
    let syntax = write("syntax.j2", "[Unit]\n{% if %}\n");
    let unmarked = write("unmarked.j2", "[Service]\nExecStart={{ exec_start }}\n");
    let directory = dir.path().display().to_string();
    for (path, expected) in [
        (undefined.as_str(), "does not render"),
        (syntax.as_str(), "does not render"),
        (unmarked.as_str(), "without the `X-Baton-Service=app`"),
        (directory.as_str(), "template: cannot read"),
    ] {
        let json = format!(r#"{{"name":"app","version":"v1","exec_start":["/bin/true"],"template":"{path}"}}"#);
        assert_refused(path, json.as_bytes(), expected);
    }
}

#[test]
fn bad_command_lines_are_failures_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_baton")).args(["apply", "--no-such-flag"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["failed"], true);
    assert!(json["msg"].as_str().unwrap_or_default().contains("--no-such-flag"));
    let out =
        Command::new(env!("CARGO_BIN_EXE_baton")).args(["apply", "/nonexistent/spec.json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(3), "an unreadable spec is refused input");
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(json["msg"].as_str().unwrap_or_default().contains("cannot read the spec file /nonexistent/spec.json"));
}

// Issue 11, item 9: a FIFO (which cannot live in the corpus) as the template is refused at
// once, never waited on.
#[test]
fn a_fifo_as_template_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("unit.j2");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let json = format!(r#"{{"name":"app","version":"v1","exec_start":["/bin/true"],"template":"{}"}}"#, fifo.display());
    let t0 = std::time::Instant::now();
    assert_refused("fifo", json.as_bytes(), "it is a FIFO, not a regular file");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "took {:?}", t0.elapsed());
}

// Issue 11, item 10: a 540 KB spec of `%` arguments renders an ExecStart= line of more than 1 MiB
// (each `%` doubled), which systemd refuses to load ("No buffer space available").
#[test]
fn a_unit_line_longer_than_systemd_reads_is_refused_naming_the_field() {
    let pct = "%".repeat(60_000);
    let args: Vec<&str> = std::iter::once("/bin/true").chain(std::iter::repeat_n(pct.as_str(), 9)).collect();
    let json = serde_json::json!({"name": "app", "version": "v1", "exec_start": args}).to_string();
    assert!(json.len() < 600_000, "{}", json.len());
    assert_refused(
        "long ExecStart",
        json.as_bytes(),
        "exec_start: renders a line `ExecStart=…` of 1080048 bytes; systemd refuses unit file lines of more than 1048575 bytes",
    );
}

// Issue 11, item 11: a panic (here: printing the unit to a full disk) is exit status 1 with one
// line on stderr, not Rust's 101 and a backtrace.
#[test]
fn a_panic_exits_with_status_1_and_one_line_not_101_and_a_backtrace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, r#"{"name":"app","version":"v1","exec_start":["/bin/true"]}"#).expect("write");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("render")
        .arg(&spec)
        .env("RUST_BACKTRACE", "1")
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("run baton");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("baton: internal error in baton: failed printing to stdout"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, no backtrace: {stderr}");
}
