//! The `service` binary speaks Ansible's binary-module protocol: the args file named by
//! `argv[1]` or, without an argument, the same JSON on stdin; one parseable JSON document on
//! stdout whatever happens, exit status 1 with `failed: true` and `msg` on failure. These cases
//! fail before systemd is needed (end-to-end runs are in integration/tests/ansible.rs).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn module() -> Command {
    Command::new(env!("CARGO_BIN_EXE_service"))
}

fn parse(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one JSON document on one line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("unparseable output ({e}): {stdout}"))
}

fn with_file(args: &Value) -> (Value, i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("args");
    std::fs::write(&path, args.to_string()).expect("write args");
    let out = module().arg(&path).output().expect("run the module");
    (parse(&out), out.status.code().unwrap_or(-1))
}

fn with_stdin(input: &[u8]) -> (Value, i32) {
    let mut child =
        module().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (parse(&out), out.status.code().unwrap_or(-1))
}

fn ansible_args(options: Value) -> Value {
    let mut v = json!({
        "_ansible_check_mode": false, "_ansible_no_log": false, "_ansible_debug": false, "_ansible_diff": false,
        "_ansible_verbosity": 0, "_ansible_version": "2.18.0", "_ansible_module_name": "baton.systemd.service",
        "_ansible_syslog_facility": "LOG_USER", "_ansible_selinux_special_fs": ["fuse", "nfs"],
        "_ansible_string_conversion_action": "warn", "_ansible_socket": null, "_ansible_shell_executable": "/bin/sh",
        "_ansible_keep_remote_files": false, "_ansible_tmpdir": "/root/.ansible/tmp/ansible-tmp-1/",
        "_ansible_remote_tmp": "~/.ansible/tmp", "_ansible_ignore_unknown_opts": false,
    });
    if let (Some(o), Value::Object(extra)) = (v.as_object_mut(), options) {
        o.extend(extra);
    }
    v
}

#[test]
fn a_bad_option_in_the_args_file_fails_naming_it() {
    let (out, code) = with_file(&ansible_args(json!({"name": "app", "version": "v1", "exec_start": ["bin/app"]})));
    assert_eq!(code, 1);
    assert_eq!(out["failed"], true);
    assert_eq!(out["changed"], false);
    assert!(out["msg"].as_str().expect("msg").starts_with("exec_start[0]: must be an absolute path"), "{out:#}");
    assert_eq!(out["invocation"]["module_args"], json!({"name": "app", "version": "v1", "exec_start": ["bin/app"]}));
}

#[test]
fn stdin_is_read_without_an_argument() {
    let args = ansible_args(json!({"name": "app", "exec_start": ["/bin/app"]}));
    let (out, code) = with_stdin(args.to_string().as_bytes());
    assert_eq!(code, 1);
    assert!(out["msg"].as_str().expect("msg").starts_with("version: is required when state is started"), "{out:#}");
}

#[test]
fn unreadable_or_malformed_args_still_give_parseable_failures() {
    let out = module().arg("/nonexistent/args").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let v = parse(&out);
    assert_eq!(v["failed"], true);
    assert!(v["msg"].as_str().expect("msg").contains("/nonexistent/args"), "{v:#}");

    for input in [&b""[..], b"{", b"name=app version=v1", b"[]", &[0xff, 0xfe][..]] {
        let (v, code) = with_stdin(input);
        assert_eq!((code, &v["failed"]), (1, &json!(true)), "{input:?}: {v:#}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }

    let huge = vec![b' '; baton_ansible::MAX_ARGS_BYTES + 10];
    let (v, code) = with_stdin(&huge);
    assert_eq!(code, 1);
    assert!(v["msg"].as_str().expect("msg").contains("more than"), "{v:#}");
}

#[test]
fn no_log_masks_secrets_in_the_failure_and_invocation() {
    let (out, code) = with_file(&ansible_args(json!({
        "_ansible_no_log": true,
        "name": "app", "version": "v1", "exec_start": ["/bin/app", "--token", "tok-123"], "port": 0,
        "environment": {"TOKEN": "tok-123"},
    })));
    assert_eq!(code, 1);
    let text = out.to_string();
    assert!(!text.contains("tok-123"), "{out:#}");
    assert_eq!(out["invocation"]["module_args"]["environment"]["TOKEN"], "********");
    assert_eq!(out["invocation"]["module_args"]["exec_start"][2], "********");
    assert!(out["msg"].as_str().expect("msg").starts_with("port: "), "{out:#}");
}
