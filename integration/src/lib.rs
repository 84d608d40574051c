//! Shared helpers of the end-to-end tests, the demo and the benchmarks: a booted sandbox with a
//! real systemd ([`Host`]), running `baton` inside it, reading unit files and systemd state, and
//! putting a service under load with `baton-load` inside the sandbox's network namespace.
//!
//! The binaries come from the workspace's target directory (`make test` builds them first with
//! `cargo build --workspace --bins`); `BATON_BIN_DIR` points elsewhere.

pub mod ansible;
pub mod dist;
pub mod fleet;
pub mod fleet_ansible;
pub mod fleet_terraform;
pub mod modes;
pub mod terraform;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
pub use baton_load::LoadReport;
pub use baton_sandbox::Sandbox;
use serde_json::{json, Value};

/// The directory holding the workspace's binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BATON_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    target.join(profile)
}

/// The path of a workspace binary; fails loudly when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`; `make test` does)",
        path.display()
    );
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// Host directories every sandbox must see at the same path: the checkout and the binaries
/// (a CI clone may live under /tmp, which is a private tmpfs inside).
pub fn shares() -> Vec<PathBuf> {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bins = bin_dir();
    // The whole target directory: tests keep their scratch files there (CARGO_TARGET_TMPDIR).
    let mut dirs = vec![checkout, bins.parent().map(Path::to_owned).unwrap_or_else(|| bins.clone()), bins];
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.parent().map(Path::to_owned));
    }
    let mut dirs: Vec<PathBuf> = dirs.into_iter().filter_map(|d| std::fs::canonicalize(d).ok()).collect();
    dirs.sort();
    // Nested directories come with their parent.
    dirs.dedup_by(|b, a| b.starts_with(a));
    dirs
}

/// The outcome of one `baton` run inside the sandbox.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The JSON printed on stdout.
    pub json: Value,
    /// The exit status.
    pub code: i32,
    /// What was printed on stderr.
    pub stderr: String,
    /// Wall time of the run.
    pub took: Duration,
}

impl Applied {
    /// `changed` of the result.
    pub fn changed(&self) -> bool {
        self.json["changed"].as_bool().unwrap_or(false)
    }

    /// Whether the run failed.
    pub fn failed(&self) -> bool {
        self.json["failed"].as_bool().unwrap_or(false)
    }

    /// `msg` of the result.
    pub fn msg(&self) -> &str {
        self.json["msg"].as_str().unwrap_or("")
    }

    /// Asserts success and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.code == 0 && !self.failed(),
            "baton failed (exit {}):\n{:#}\n{}",
            self.code,
            self.json,
            self.stderr
        );
        self
    }
}

/// A sandboxed real systemd to run baton against.
#[derive(Debug)]
pub struct Host {
    /// The sandbox.
    pub sb: Sandbox,
}

impl Host {
    /// Boots a sandbox; fails loudly when it cannot (not root, tools missing).
    pub fn boot(label: &str) -> Host {
        let sb = Sandbox::boot_sharing(label, &shares())
            .unwrap_or_else(|e| panic!("cannot boot a sandboxed systemd: {e:#}"));
        Host { sb }
    }

    /// A path inside the sandbox, as seen from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{inside}", self.sb.pid()))
    }

    /// Runs `baton <args>` inside with `stdin` as its standard input.
    pub fn baton(&self, args: &[&str], stdin: &str) -> Applied {
        let t0 = Instant::now();
        let mut child = self
            .sb
            .command(bin("baton"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn baton inside the sandbox");
        let mut input = child.stdin.take().expect("stdin");
        let _ = input.write_all(stdin.as_bytes());
        drop(input);
        let out = child.wait_with_output().expect("wait for baton");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or_else(|_| json!({ "unparsed_stdout": stdout }));
        Applied {
            json,
            code: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: t0.elapsed(),
        }
    }

    /// `baton apply` of `spec` with extra flags (`--check`, `--diff`).
    pub fn apply(&self, spec: &Value, flags: &[&str]) -> Applied {
        let mut args = vec!["apply", "--progress", "always"];
        args.extend_from_slice(flags);
        self.baton(&args, &spec.to_string())
    }

    /// Starts `baton apply` of `spec` with `BATON_PAUSE_AFTER=kind` and returns once it has
    /// paused after the first step of that kind (to be killed there).
    pub fn apply_until_paused(&self, spec: &Value, kind: &str) -> Child {
        use std::io::BufRead;
        let mut child = self
            .sb
            .command(bin("baton"))
            .args(["apply", "--progress", "never"])
            .env("BATON_PAUSE_AFTER", kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn baton");
        child.stdin.take().expect("stdin").write_all(spec.to_string().as_bytes()).expect("write spec");
        let stderr = child.stderr.take().expect("stderr");
        for line in std::io::BufReader::new(stderr).lines() {
            if line.expect("read baton's stderr").contains("baton: paused after") {
                return child;
            }
        }
        let out = child.wait_with_output().expect("wait");
        panic!("baton ended before pausing after {kind}: {}", String::from_utf8_lossy(&out.stdout));
    }

    /// `kill -9` of every baton process inside (the child we hold is `nsenter`, which forked
    /// baton into the sandbox's PID namespace), as an operator or the OOM killer would.
    pub fn kill_baton(&self, child: &mut Child) {
        self.sh("pkill -9 -x baton || true");
        let _ = child.wait();
        assert!(self.sh("pgrep -x baton || true").trim().is_empty(), "baton still runs");
    }

    /// Runs a shell script inside and returns its stdout (panics on failure).
    #[track_caller]
    pub fn sh(&self, script: &str) -> String {
        self.sb.sh(script).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// One property of a unit, from `systemctl show` inside.
    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.sh(&format!("systemctl show -p {prop} --value {unit}")).trim().to_owned()
    }

    /// `systemctl is-enabled` inside (computed from disk; the `UnitFileState` property that
    /// `systemctl show` prints is cached by systemd for loaded units).
    pub fn enabled(&self, unit: &str) -> String {
        let out = self.sb.sh_output(&format!("systemctl is-enabled {unit}")).expect("systemctl is-enabled");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The unit file's text in /etc/systemd/system, if any.
    pub fn unit_file(&self, unit: &str) -> Option<String> {
        std::fs::read_to_string(self.path(&format!("/etc/systemd/system/{unit}"))).ok()
    }

    /// Unit files in /etc/systemd/system (names only, sorted).
    pub fn unit_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("/etc/systemd/system"))
            .map(|rd| rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        // Only regular files: the sandbox masks some units with symlinks to /dev/null.
        names.retain(|n| {
            n.ends_with(".service")
                && std::fs::symlink_metadata(self.path(&format!("/etc/systemd/system/{n}"))).is_ok_and(|m| m.is_file())
        });
        names.sort();
        names
    }

    /// Starts `baton-load` against 127.0.0.1:`port` inside the sandbox; it runs until
    /// [`Load::finish`] (or `max_secs`).
    pub fn load(&self, port: u16, workers: usize, max_secs: u64) -> Load {
        let child = self
            .sb
            .command(bin("baton-load"))
            .args(["--addr", &format!("127.0.0.1:{port}"), "--workers", &workers.to_string()])
            .args(["--duration-secs", &max_secs.to_string(), "--timeout-ms", "5000", "--stop-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn baton-load inside the sandbox");
        Load { child: Some(child) }
    }

    /// Waits until something answers HTTP on `port` inside (bounded).
    pub fn wait_http(&self, port: u16, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let script = format!(
                "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3"
            );
            let out = self.sb.command("bash").args(["-c", &script]).output();
            if out.map(|o| o.status.success() && o.stdout.starts_with(b"HTTP/1.1 200")).unwrap_or(false) {
                return Ok(());
            }
            if t0.elapsed() > timeout {
                bail!("nothing answered HTTP on :{port} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A running load generator.
#[derive(Debug)]
pub struct Load {
    child: Option<Child>,
}

impl Load {
    /// Stops the load and returns its report.
    pub fn finish(mut self) -> Result<LoadReport> {
        let mut child = self.child.take().context("load already finished")?;
        drop(child.stdin.take());
        let out = child.wait_with_output().context("wait for baton-load")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or("");
        serde_json::from_str(line).with_context(|| {
            format!(
                "baton-load printed no report (exit {:?}): {stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The argv of the demo app serving `version` on `port`, with extra demo flags.
pub fn demo_argv(version: &str, port: u16, demo_flags: &[&str]) -> Vec<String> {
    let mut argv = vec![
        bin("baton-demo").display().to_string(),
        "--port".to_owned(),
        port.to_string(),
        "--version".to_owned(),
        version.to_owned(),
    ];
    argv.extend(demo_flags.iter().map(|s| s.to_string()));
    argv
}

/// `terraform -chdir=DIR` inside the sandbox, offline, with its own CLI config `rc` (never the
/// user's), and its home and data directory under `dir`.
pub fn terraform_command(host: &Host, terraform: &Path, dir: &Path, rc: &Path) -> Command {
    let mut cmd = host.sb.command(terraform);
    cmd.arg(format!("-chdir={}", dir.display()))
        .env("TF_CLI_CONFIG_FILE", rc)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env("HOME", dir.join("home"))
        .env("TF_DATA_DIR", dir.join(".terraform"))
        .env_remove("TF_LOG");
    cmd
}

/// A spec for the demo app: `name`, `version` on `port`, with extra demo flags and spec fields.
pub fn demo_spec(name: &str, version: &str, port: u16, demo_flags: &[&str], extra: Value) -> Value {
    let argv = demo_argv(version, port, demo_flags);
    let mut spec = json!({
        "name": name,
        "version": version,
        "exec_start": argv,
        "port": port,
        "health": {"http": "/health", "timeout_sec": 10, "interval_ms": 50},
        "timeout_stop_sec": 10,
    });
    if let (Some(obj), Value::Object(more)) = (spec.as_object_mut(), extra) {
        for (k, v) in more {
            obj.insert(k, v);
        }
    }
    spec
}

/// Runs a command on the host and returns its stdout (for tools like `systemd-analyze`).
pub fn host(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd).args(args).output().with_context(|| format!("run {cmd}"))?;
    if !out.status.success() {
        bail!("{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Appends `section` to the bench report at `path`, replacing an earlier section that starts
/// with `heading` (up to the next `## `): each bench binary owns one section of the report.
pub fn write_report_section(path: &Path, heading: &str, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut new = match old.find(heading) {
        Some(start) => {
            let rest = &old[start + heading.len()..];
            let end = rest.find("\n## ").map(|i| start + heading.len() + i + 1).unwrap_or(old.len());
            format!("{}{}", &old[..start], &old[end..])
        }
        None => old,
    };
    if !new.is_empty() && !new.ends_with("\n\n") {
        new.push('\n');
    }
    new.push_str(section);
    std::fs::write(path, new).with_context(|| format!("write {}", path.display()))
}
