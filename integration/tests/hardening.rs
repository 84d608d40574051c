//! Local attackers and unlucky hosts against a sandboxed real systemd (issue 11, items 4–6):
//! another user (`nobody`) cannot block, break or redirect the deploy lock; files in place of a
//! unit (a symbolic link to /dev/zero, a FIFO, a device, a huge file) fail fast and clearly; a
//! unit directory another user can write is refused; and a release whose unit name another
//! package already owns is refused before anything is touched.

use std::process::Stdio;
use std::time::{Duration, Instant};

use baton_integration::{bin, demo_spec, Applied, Host};
use serde_json::{json, Value};

fn spec(name: &str, version: &str, port: u16, extra: Value) -> Value {
    demo_spec(name, version, port, &[], extra)
}

/// A minimal spec without a port (nothing to probe).
fn plain(name: &str, version: &str, extra: Value) -> Value {
    let mut s = json!({"name": name, "version": version, "exec_start": ["/bin/sleep", "600"]});
    if let (Some(obj), Value::Object(more)) = (s.as_object_mut(), extra) {
        obj.extend(more);
    }
    s
}

/// Runs `script` inside the sandbox as user `nobody` (group `nogroup`, no supplementary groups):
/// whether it succeeded, and what it printed.
fn as_nobody(h: &Host, script: &str) -> (bool, String) {
    let quoted = format!("'{}'", script.replace('\'', r"'\''"));
    let out =
        h.sb.sh_output(&format!("setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c {quoted} 2>&1"))
            .expect("run a command as nobody");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where baton takes its locks when not told otherwise, from `baton apply --help`.
fn default_lock_dir(h: &Host) -> String {
    let help = h.baton(&["apply", "--help"], "");
    let text = help.json["unparsed_stdout"].as_str().unwrap_or_default().to_owned();
    let line = text.lines().find(|l| l.contains("--lock-dir")).unwrap_or_else(|| panic!("no --lock-dir in {text}"));
    let default = line.split("[default: ").nth(1).and_then(|r| r.split(']').next());
    default.unwrap_or_else(|| panic!("no default in {line:?}")).to_owned()
}

/// `/run/lock` as every host has it (systemd-tmpfiles makes it 1777; the sandbox runs no
/// tmpfiles): any user may create entries there.
/// Also checks that commands really run as `nobody` (an attack that cannot even start would
/// prove nothing).
fn world_writable_run_lock(h: &Host) {
    h.sh("mkdir -p /run/lock && chmod 1777 /run/lock");
    assert_eq!(as_nobody(h, "id -u && id -G"), (true, "65534\n65534\n".to_owned()));
}

/// `baton apply` of `spec` with extra flags, killed after `limit` if it has not ended by then
/// (a run that hangs is a failure, not a test that never ends).
fn apply_within(h: &Host, spec: &Value, flags: &[&str], limit: Duration) -> Applied {
    use std::io::Write as _;
    let t0 = Instant::now();
    let mut child =
        h.sb.command("timeout")
            .args(["-s", "KILL", &limit.as_secs().to_string()])
            .arg(bin("baton"))
            .args(["apply", "--progress", "never"])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn baton");
    let _ = child.stdin.take().expect("stdin").write_all(spec.to_string().as_bytes());
    let out = child.wait_with_output().expect("wait for baton");
    let stdout = String::from_utf8_lossy(&out.stdout);
    Applied {
        json: serde_json::from_str(&stdout).unwrap_or_else(|_| json!({ "unparsed_stdout": stdout })),
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

// ---- item 4: the deploy lock ----

#[test]
fn another_user_cannot_block_the_deploy_lock_with_a_read_only_flock() {
    let h = Host::boot("lockro");
    world_writable_run_lock(&h);
    let lock_dir = default_lock_dir(&h);
    h.apply(&plain("ro", "v1", json!({})), &[]).ok();
    let lock_file = format!("{lock_dir}/ro.lock");

    // nobody opens the lock file read-only and holds a shared flock on it for 30 s.
    let pid = h.sh(&format!(
        "setpriv --reuid=nobody --regid=nogroup --clear-groups flock -s {lock_file} sleep 30 >/tmp/attack.log 2>&1 & echo $!"
    ));
    std::thread::sleep(Duration::from_millis(500));
    let attack = h.sh("cat /tmp/attack.log");

    let out = h.apply(&plain("ro", "v2", json!({})), &["--lock-timeout", "3"]);
    let _ = h.sb.sh(&format!("kill {} 2>/dev/null", pid.trim()));
    assert!(!out.failed(), "another user's flock blocked the apply ({attack}): {:#}", out.json);
    assert_eq!(out.json["version"], "v2");
    assert!(attack.contains("Permission denied"), "nobody could open the lock file: {attack:?}");
    assert_eq!(h.sh(&format!("stat -c '%U %a' {lock_dir} {lock_file}")), "root 700\nroot 600\n");
}

#[test]
fn a_lock_directory_pre_created_by_another_user_is_refused() {
    let h = Host::boot("lockpre");
    world_writable_run_lock(&h);
    let lock_dir = default_lock_dir(&h);
    // Before baton ever ran, nobody tries to create the lock directory (and may fail).
    let _ = as_nobody(&h, &format!("mkdir -p {lock_dir}"));
    let out = h.apply(&plain("pre", "v1", json!({})), &["--lock-timeout", "3"]).ok();
    assert_eq!(out.json["version"], "v1");
    assert_eq!(
        h.sh(&format!("stat -c '%U %a' {lock_dir}")),
        "root 700\n",
        "the default lock directory is root's alone"
    );

    // A lock directory another user made (where any user may create one) is refused.
    let (made, why) = as_nobody(&h, "mkdir /run/lock/theirs");
    assert!(made, "{why}");
    let out = h.apply(&plain("pre", "v2", json!({})), &["--lock-dir", "/run/lock/theirs"]);
    assert_eq!(out.code, 5, "{:#}", out.json);
    assert!(
        out.msg().starts_with("refusing the lock directory /run/lock/theirs: it is owned by uid 65534, not by root"),
        "{}",
        out.msg()
    );
    assert!(h.unit_file("pre-v2.service").is_none(), "nothing touched");
    assert!(h.sh("ls -A /run/lock/theirs").trim().is_empty(), "nothing created in it");

    // And one that is group- or world-writable, even root's.
    h.sh("mkdir -m 1777 /run/lock/open && chmod 1777 /run/lock/open");
    let out = h.apply(&plain("pre", "v2", json!({})), &["--lock-dir", "/run/lock/open"]);
    assert_eq!(out.code, 5, "{:#}", out.json);
    assert!(out.msg().contains("it is group- or world-writable (mode 1777)"), "{}", out.msg());
}

#[test]
fn a_lock_file_unlinked_by_another_user_does_not_let_a_second_run_in() {
    let h = Host::boot("lockunlink");
    world_writable_run_lock(&h);
    let lock_dir = default_lock_dir(&h);
    let _ = as_nobody(&h, &format!("mkdir -p {lock_dir}"));
    let port = 8311;
    h.apply(&spec("un", "v1", port, json!({})), &[]).ok();

    // Run A pauses mid-handover, holding the lock.
    let mut a = h.apply_until_paused(&spec("un", "v2", port, json!({})), "start");
    let (unlinked, why) = as_nobody(&h, &format!("rm -f {lock_dir}/un.lock && ! test -e {lock_dir}/un.lock"));
    // Run B must wait for A (and give up after its timeout), not go ahead beside it.
    let b = h.apply(&spec("un", "v3", port, json!({})), &["--lock-timeout", "2"]);
    h.kill_baton(&mut a);
    assert_eq!(b.code, 5, "run B went ahead during run A's handover: {:#}", b.json);
    assert!(!unlinked, "nobody unlinked the lock file: {why}");
    assert!(b.msg().starts_with("service un is locked by another baton run (pid="), "{}", b.msg());
    assert!(h.unit_file("un-v3.service").is_none(), "B touched nothing");
    // A's handover is completed by the next run.
    let done = h.apply(&spec("un", "v2", port, json!({})), &[]).ok();
    assert_eq!(done.json["version"], "v2");
}

#[test]
fn a_symlink_planted_by_another_user_cannot_block_or_redirect_the_lock() {
    let h = Host::boot("locklink");
    world_writable_run_lock(&h);
    let lock_dir = default_lock_dir(&h);
    // nobody tries to plant a symbolic link where the lock file goes (or the directory itself).
    let _ = as_nobody(&h, &format!("mkdir -p {lock_dir} && ln -s /dev/null {lock_dir}/ln.lock"));
    let _ = as_nobody(&h, &format!("ln -s /tmp {lock_dir}"));
    let out = h.apply(&plain("ln", "v1", json!({})), &["--lock-timeout", "3"]);
    assert!(!out.failed(), "a planted symbolic link blocked the service: {:#}", out.json);
    assert_eq!(h.sh(&format!("stat -c '%F %U' {lock_dir}/ln.lock")), "regular empty file root\n");

    // A lock directory that is a symbolic link (here nobody's, to root's own directory) is refused.
    let (linked, why) = as_nobody(&h, &format!("ln -s {lock_dir} /run/lock/link"));
    assert!(linked, "{why}");
    let out = h.apply(&plain("ln", "v2", json!({})), &["--lock-dir", "/run/lock/link"]);
    assert_eq!(out.code, 5, "{:#}", out.json);
    assert!(
        out.msg().starts_with("refusing the lock directory /run/lock/link: it is a symbolic link"),
        "{}",
        out.msg()
    );
    assert!(h.unit_file("ln-v2.service").is_none());
}

// ---- item 5: the unit directory ----

#[test]
fn dev_zero_a_fifo_a_device_and_a_huge_file_in_place_of_a_unit_fail_fast_and_clearly() {
    let h = Host::boot("notaunit");
    h.sh(
        "cd /etc/systemd/system && ln -s /dev/zero z-v1.service && mkfifo f-v1.service && mknod c-v1.service c 1 5 \
         && { printf '[Unit]\\nX-Baton-Service=big\\nX-Baton-Version=v1\\n'; head -c 2097152 /dev/zero | tr '\\0' '#'; } > big-v1.service",
    );
    for (name, what) in [
        ("z", "it is a symbolic link, not a regular file"),
        ("f", "it is a FIFO, not a regular file"),
        ("c", "it is a character device, not a regular file"),
        ("big", "it is larger than 1 MiB"),
    ] {
        for flags in [&[][..], &["--check"][..]] {
            let out = apply_within(&h, &plain(name, "v1", json!({})), flags, Duration::from_secs(20));
            assert!(out.took < Duration::from_secs(10), "{name} {flags:?}: took {:?}", out.took);
            assert_eq!(out.code, 5, "{name} {flags:?}: {:#} {}", out.json, out.stderr);
            let want = format!("refusing to read /etc/systemd/system/{name}-v1.service: {what}");
            assert!(out.msg().starts_with(&want), "{name}: {}", out.msg());
        }
        assert_eq!(h.prop(&format!("{name}-v1.service"), "ActiveState"), "inactive");
    }
    // The lock was released: a good service deploys right after.
    h.apply(&plain("ok", "v1", json!({})), &["--lock-timeout", "1"]).ok();
    // None of them counts as a release: `absent` of each service finds nothing to remove.
    let size = || h.sh("stat -c %s /etc/systemd/system/big-v1.service");
    let before = size();
    for name in ["z", "f", "c", "big"] {
        let out = apply_within(&h, &json!({"name": name, "state": "absent"}), &[], Duration::from_secs(20));
        assert!(!out.failed() && !out.changed(), "{name}: {:#}", out.json);
    }
    assert_eq!(size(), before);
    assert_eq!(h.sh("ls /etc/systemd/system | grep -c -- '-v1.service$'"), "5\n", "all still there (and ok-v1)");
}

#[test]
fn a_unit_directory_another_user_can_write_is_refused_naming_it() {
    let h = Host::boot("unitdir");
    h.apply(&plain("wd", "v1", json!({})), &[]).ok();

    h.sh("chmod 0777 /etc/systemd/system");
    let out = h.apply(&plain("wd", "v2", json!({})), &[]);
    let check = h.apply(&plain("wd", "v2", json!({})), &["--check"]);
    h.sh("chmod 0755 /etc/systemd/system");
    for out in [&out, &check] {
        assert_eq!(out.code, 5, "{:#}", out.json);
        assert!(
            out.msg().starts_with(
                "refusing the unit directory /etc/systemd/system: it is group- or world-writable (mode 0777)"
            ),
            "{}",
            out.msg()
        );
    }
    assert!(h.unit_file("wd-v2.service").is_none(), "nothing written");
    assert_eq!(h.prop("wd-v1.service", "ActiveState"), "active", "v1 untouched");

    // A unit directory owned by another user.
    h.sh("mkdir -p /run/units && chown nobody:nogroup /run/units");
    let out = h.apply(&plain("wd", "v2", json!({"unit_dir": "/run/units"})), &[]);
    assert_eq!(out.code, 5, "{:#}", out.json);
    assert!(
        out.msg().starts_with("refusing the unit directory /run/units: it is owned by uid 65534, not by root"),
        "{}",
        out.msg()
    );
    assert!(h.sh("ls -A /run/units").trim().is_empty());
}

// ---- item 6: unit names another package owns ----

#[test]
fn a_release_named_like_another_packages_unit_is_refused_naming_its_file() {
    let h = Host::boot("shadow");
    let journald_pid = h.prop("systemd-journald.service", "MainPID");
    // Every daemon-reload moves the end of the last unit load.
    let last_load = || h.sh("systemctl show -p UnitsLoadFinishTimestampMonotonic --value").trim().to_owned();
    let reloads_before = last_load();
    assert!(reloads_before.parse::<u64>().is_ok_and(|t| t > 0), "{reloads_before:?}");
    // A unit file systemd has not loaded (it would read it on first use).
    assert!(
        h.sh("systemctl list-units --all --no-legend systemd-hostnamed.service").trim().is_empty(),
        "systemd-hostnamed.service must not be loaded for this case"
    );
    for (version, state) in [("journald", "started"), ("journald", "stopped"), ("hostnamed", "started")] {
        for flags in [&[][..], &["--check"][..]] {
            let out = h.apply(&plain("systemd", version, json!({"state": state})), flags);
            assert_eq!(out.code, 3, "{version} {state} {flags:?}: {:#}", out.json);
            let want = format!(
                "systemd-{version}.service is already known to systemd from /lib/systemd/system/systemd-{version}.service, \
                 which baton did not write; writing /etc/systemd/system/systemd-{version}.service would shadow it"
            );
            assert!(out.msg().starts_with(&want), "{}", out.msg());
            assert_eq!(out.json["actions"], Value::Null, "{:#}", out.json);
        }
    }
    assert!(h.unit_file("systemd-journald.service").is_none() && h.unit_file("systemd-hostnamed.service").is_none());
    assert_eq!(h.prop("systemd-journald.service", "MainPID"), journald_pid, "journald untouched");
    assert_eq!(h.prop("systemd-journald.service", "FragmentPath"), "/lib/systemd/system/systemd-journald.service");
    assert_eq!(last_load(), reloads_before, "no daemon-reload");
    // A unit no file owns yet is baton's to write.
    h.apply(&plain("systemd", "baton-test", json!({})), &[]).ok();
}

// ---- item 11: time arithmetic that cannot overflow ----

#[test]
fn a_huge_timeout_stop_sec_in_a_unit_on_disk_is_no_panic() {
    let h = Host::boot("hugetimeout");
    // A marked release written by hand (or by an older tool) with a TimeoutStopSec near u64::MAX.
    h.sh(
        "printf '[Unit]\\nX-Baton-Service=huge\\nX-Baton-Version=v1\\n[Service]\\nExecStart=/bin/sleep 600\\n\
         TimeoutStopSec=18446744073709551610\\n' > /etc/systemd/system/huge-v1.service && systemctl start huge-v1.service",
    );
    for spec in [json!({"name": "huge", "state": "stopped"}), json!({"name": "huge", "state": "absent"})] {
        let out = apply_within(&h, &spec, &[], Duration::from_secs(60));
        assert_eq!(out.code, 0, "{spec}: {:#} {}", out.json, out.stderr);
        assert!(out.changed(), "{:#}", out.json);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    assert!(h.unit_file("huge-v1.service").is_none());
    assert_eq!(h.prop("huge-v1.service", "ActiveState"), "inactive");
}

/// The D-Bus side of item 6: where systemd loads a unit from, for a loaded unit, a unit file it
/// has not loaded (without loading it), a unit in `/etc/systemd/system` and an unknown name.
#[test]
fn unit_file_path_names_the_file_systemd_loads_a_unit_from() {
    use baton_core::testing::{DbusSystemd, Systemd as _};
    use std::path::PathBuf;

    let h = Host::boot("fragment");
    let address = format!("unix:path=/proc/{}/root/run/dbus/system_bus_socket", h.sb.pid());
    let sd = DbusSystemd::connect_address(&address).unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    let path = |unit: &str| sd.unit_file_path(unit).unwrap_or_else(|e| panic!("{unit}: {e}"));
    assert_eq!(path("systemd-journald.service"), Some(PathBuf::from("/lib/systemd/system/systemd-journald.service")));
    assert!(h.sh("systemctl list-units --all --no-legend systemd-hostnamed.service").trim().is_empty());
    let t0 = Instant::now();
    assert_eq!(path("systemd-hostnamed.service"), Some(PathBuf::from("/lib/systemd/system/systemd-hostnamed.service")));
    eprintln!("unit_file_path of a unit not loaded took {:?}", t0.elapsed());
    assert!(
        h.sh("systemctl list-units --all --no-legend systemd-hostnamed.service").trim().is_empty(),
        "asking loaded nothing"
    );
    h.sh("printf '[Service]\\nExecStart=/bin/true\\n' > /etc/systemd/system/mine-v1.service");
    assert_eq!(path("mine-v1.service"), Some(PathBuf::from("/etc/systemd/system/mine-v1.service")));
    let t0 = Instant::now();
    assert_eq!(path("nothing-here.service"), None);
    eprintln!("unit_file_path of an unknown unit took {:?}", t0.elapsed());
}
