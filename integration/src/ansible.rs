//! Running the real `ansible-playbook` (from the repository's venvs: `.venv` holds the newest
//! ansible-core the collection claims, `.venv-oldest` the oldest; `make .venv .venv-oldest`)
//! inside a sandbox, so the `baton.systemd.service` module talks to the sandbox's systemd: the
//! collection comes from `plugins/` (`ANSIBLE_COLLECTIONS_PATH`), or from the tarball
//! `ansible-galaxy collection build` makes, installed with `ansible-galaxy collection install`
//! as a user would ([`Ansible::install_collection`]). Ansible's home and temp directories live
//! in a private directory under the cargo target directory (outside the sandbox's private tmpfs
//! mounts, so the host and the sandbox see the same files). The module binary is the one
//! `make collection` put into the collection, used as is.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Host;

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

/// An ansible-core the collection claims (`requires_ansible` in `meta/runtime.yml`), each in its
/// own venv of the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Core {
    /// The newest claimed version, in `.venv` (`make .venv`).
    Newest,
    /// The oldest claimed version, in `.venv-oldest` (`make .venv-oldest`).
    Oldest,
}

impl Core {
    /// The venv's directory name.
    pub fn venv(self) -> &'static str {
        match self {
            Core::Newest => ".venv",
            Core::Oldest => ".venv-oldest",
        }
    }

    /// A tool of this venv; fails loudly when it is not installed.
    pub fn tool(self, name: &str) -> PathBuf {
        let path = repo_dir().join(self.venv()).join("bin").join(name);
        assert!(
            path.is_file(),
            "{} is missing: install ansible-core with `make {}` (`make test` does)",
            path.display(),
            self.venv()
        );
        path
    }
}

/// A tool of the repository's newest venv (`.venv`); fails loudly when it is not installed.
pub fn venv_tool(name: &str) -> PathBuf {
    Core::Newest.tool(name)
}

/// The module binary `make collection` built into the collection (`plugins/modules/service`),
/// used as is; fails loudly when it is missing.
pub fn module_binary() -> PathBuf {
    let path = collection_dir().join("plugins/modules/service");
    assert!(
        path.is_file(),
        "{} is missing: build the shipped module binary with `make collection` (`make test` does)",
        path.display()
    );
    path
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
    core: Core,
    collections: PathBuf,
}

impl Ansible {
    /// Creates the directories, for the newest claimed ansible-core and the collection in
    /// `plugins/`; fails loudly when ansible or the module binary is missing.
    pub fn new(label: &str) -> Ansible {
        Ansible::with_core(label, Core::Newest)
    }

    /// As [`Ansible::new`], with the given ansible-core.
    pub fn with_core(label: &str, core: Core) -> Ansible {
        core.tool("ansible-playbook");
        module_binary();
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
        Ansible { dir, core, collections: collections_path() }
    }

    /// Adds a line (`key = value`) to the `[defaults]` of this environment's `ansible.cfg`.
    pub fn set_default(&self, line: &str) {
        use std::io::Write as _;
        let mut cfg = std::fs::OpenOptions::new().append(true).open(self.dir.join("ansible.cfg")).expect("ansible.cfg");
        writeln!(cfg, "{line}").expect("write ansible.cfg");
    }

    /// The ansible-core this environment runs.
    pub fn core(&self) -> Core {
        self.core
    }

    /// Builds the collection's tarball with `ansible-galaxy collection build` and installs it
    /// with `ansible-galaxy collection install` into a private collections path, which this
    /// environment then uses instead of `plugins/`; returns the installed collection's root.
    pub fn install_collection(&mut self) -> PathBuf {
        let build = self.dir.join("build");
        let installed = self.dir.join("collections");
        let built = self
            .tool(
                "ansible-galaxy",
                &[
                    "collection",
                    "build",
                    &collection_dir().to_string_lossy(),
                    "--output-path",
                    &build.to_string_lossy(),
                    "--force",
                ],
            )
            .ok();
        let tarball = std::fs::read_dir(&build)
            .expect("the build directory")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "gz"))
            .unwrap_or_else(|| panic!("no tarball in {}: {}", build.display(), built.stdout));
        self.tool(
            "ansible-galaxy",
            &["collection", "install", &tarball.to_string_lossy(), "-p", &installed.to_string_lossy(), "--force"],
        )
        .ok();
        self.collections = installed;
        self.collections.join("ansible_collections/baton/systemd")
    }

    /// The private directory (for playbooks and files a test writes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets Ansible's environment on `cmd`.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("HOME", self.dir.join("home"))
            .env("ANSIBLE_CONFIG", self.dir.join("ansible.cfg"))
            .env("ANSIBLE_COLLECTIONS_PATH", &self.collections)
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
        self.playbook_with(host, &[], playbook, args)
    }

    /// As [`Ansible::playbook`], run by `wrapper` (for example `["setarch", "i686"]`).
    pub fn playbook_with<I, S>(&self, host: &Host, wrapper: &[&str], playbook: &Path, args: I) -> Played
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let playbook_bin = self.core.tool("ansible-playbook");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut cmd = host.sb.command(first);
                cmd.args(rest).arg(playbook_bin);
                cmd
            }
            None => host.sb.command(playbook_bin),
        };
        cmd.args(["-i", "localhost,", "-c", "local"]).arg(playbook).args(args);
        self.env(&mut cmd);
        run(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The ansible-core version, e.g. `ansible-core 2.19.4` (`ansible-core` when unreadable).
    pub fn core_version(&self) -> String {
        let out = self.tool("ansible-playbook", &["--version"]);
        out.stdout
            .lines()
            .next()
            .and_then(|l| l.split("[core ").nth(1))
            .map(|v| format!("ansible-core {}", v.trim_end_matches(']')))
            .unwrap_or_else(|| "ansible-core".to_owned())
    }

    /// Runs a venv tool (e.g. `ansible-doc`) on the host, with this environment.
    pub fn tool(&self, name: &str, args: &[&str]) -> Played {
        let mut cmd = Command::new(self.core.tool(name));
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
    target_playbook_in(&collection_dir())
}

/// The integration playbook of the collection installed at `root`.
pub fn target_playbook_in(root: &Path) -> PathBuf {
    root.join("tests/integration/service.yml")
}
