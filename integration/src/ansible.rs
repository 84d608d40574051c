//! Running the real `ansible-playbook` (from the repository's `.venv`, which `make .venv`
//! installs) inside a sandbox, so the `baton.systemd.service` module talks to the sandbox's
//! systemd: the collection comes from `plugins/` (`ANSIBLE_COLLECTIONS_PATH`), and Ansible's
//! home and temp directories live in a private directory under the cargo target directory
//! (outside the sandbox's private tmpfs mounts, so the host and the sandbox see the same files).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{bin, Host};

/// The repository's root (derived from this crate's manifest directory).
pub fn repo_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// `plugins/`, the `ANSIBLE_COLLECTIONS_PATH` entry holding `ansible_collections/baton/systemd`.
pub fn collections_path() -> PathBuf {
    repo_dir().join("plugins")
}

/// The collection's root.
pub fn collection_dir() -> PathBuf {
    collections_path().join("ansible_collections/baton/systemd")
}

/// A tool of the repository's Python venv; fails loudly when it is not installed.
pub fn venv_tool(name: &str) -> PathBuf {
    let path = repo_dir().join(".venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: install ansible-core into the repository's venv with `make .venv` (`make test` does)",
        path.display()
    );
    path
}

/// Puts the freshly built module binary (`service` of the workspace) into the collection at
/// `plugins/modules/service`, as `make collection` does, when it is missing or differs; once
/// per process, atomically (a rename), so a playbook running meanwhile never sees half a file.
pub fn install_module() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let built = bin("service");
        let dest = collection_dir().join("plugins/modules/service");
        let new = std::fs::read(&built).unwrap_or_else(|e| panic!("read {}: {e}", built.display()));
        if std::fs::read(&dest).ok().as_deref() != Some(&new[..]) {
            let tmp = dest.with_file_name(format!(".service.{}.tmp", std::process::id()));
            std::fs::write(&tmp, &new).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
            set_executable(&tmp);
            std::fs::rename(&tmp, &dest).unwrap_or_else(|e| panic!("install {}: {e}", dest.display()));
        }
        dest
    })
    .clone()
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The output of one `ansible-playbook` (or `ansible-doc`) run.
#[derive(Debug, Clone)]
pub struct Played {
    /// Exit status.
    pub code: i32,
    /// Standard output (Ansible's task log and recap).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time.
    pub took: Duration,
}

impl Played {
    /// Asserts exit status 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.code == 0,
            "ansible failed (exit {}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The numbers of the play recap's line for `host`, e.g. `failed` or `ignored`.
    pub fn recap(&self, host: &str, key: &str) -> Option<u64> {
        let line = self.stdout.lines().rev().find(|l| l.starts_with(host) && l.contains(" : "))?;
        line.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    }
}

/// A private Ansible environment: home, local and remote temp directories and an empty
/// `ansible.cfg`, under `<target>/ansible-tests/<label>-<pid>`; removed on drop unless the
/// thread is panicking (kept for diagnosis).
#[derive(Debug)]
pub struct Ansible {
    dir: PathBuf,
}

impl Ansible {
    /// Creates the directories; fails loudly when ansible is not installed.
    pub fn new(label: &str) -> Ansible {
        venv_tool("ansible-playbook");
        install_module();
        let dir = target_dir().join("ansible-tests").join(format!("{label}-{}", std::process::id()));
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        // The sandbox must see this directory: under a private tmpfs only if a share covers it.
        let dir = std::fs::create_dir_all(&dir).and_then(|()| std::fs::canonicalize(&dir)).unwrap_or(dir);
        for private in baton_sandbox::PRIVATE_TMPFS.iter().map(|(p, _, _)| *p) {
            assert!(
                !dir.starts_with(private) || crate::shares().iter().any(|s| dir.starts_with(s)),
                "{} is under {private}, a private tmpfs inside the sandbox, and no share covers it",
                dir.display()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["home", "local", "remote"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        std::fs::write(dir.join("ansible.cfg"), "[defaults]\n").expect("write ansible.cfg");
        Ansible { dir }
    }

    /// The private directory (for playbooks and files a test writes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets Ansible's environment on `cmd`.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("HOME", self.dir.join("home"))
            .env("ANSIBLE_CONFIG", self.dir.join("ansible.cfg"))
            .env("ANSIBLE_COLLECTIONS_PATH", collections_path())
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join("local"))
            .env("ANSIBLE_REMOTE_TEMP", self.dir.join("remote"))
            .env("ANSIBLE_ASYNC_DIR", self.dir.join("async"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_LOCALHOST_WARNING", "0")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("LC_ALL", "C.UTF-8")
            .env("LANG", "C.UTF-8")
            .env("PYTHONUNBUFFERED", "1")
    }

    /// Runs `ansible-playbook -i localhost, -c local <playbook> <args>` inside the sandbox.
    pub fn playbook<I, S>(&self, host: &Host, playbook: &Path, args: I) -> Played
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = host.sb.command(venv_tool("ansible-playbook"));
        cmd.args(["-i", "localhost,", "-c", "local"]).arg(playbook).args(args);
        self.env(&mut cmd);
        run(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs a venv tool (e.g. `ansible-doc`) on the host, with this environment.
    pub fn tool(&self, name: &str, args: &[&str]) -> Played {
        let mut cmd = Command::new(venv_tool(name));
        cmd.args(args);
        self.env(&mut cmd);
        run(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    }
}

impl Drop for Ansible {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn run(mut cmd: Command) -> Result<Played> {
    let t0 = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if out.status.code().is_none() {
        bail!("{cmd:?} was killed ({})", out.status);
    }
    Ok(Played {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    })
}

/// The collection's integration playbook (`tests/integration/service.yml`, running the
/// `service` target).
pub fn target_playbook() -> PathBuf {
    collection_dir().join("tests/integration/service.yml")
}
