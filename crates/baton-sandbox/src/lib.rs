//! A throwaway real systemd in private namespaces, for tests and the demo.
//!
//! [`Sandbox::boot`] starts a fresh `/lib/systemd/systemd` as PID 1 of new cgroup, PID, mount
//! and network namespaces and returns once it is up (D-Bus socket present and
//! `systemctl is-system-running` saying `running` or `degraded`). Commands run inside with
//! [`Sandbox::command`] / [`Sandbox::sh`] (`nsenter -t PID -m -p -n`). Dropping the sandbox
//! SIGKILLs its PID 1 (every process inside dies with it) and removes its cgroup directories.
//!
//! # The recipe
//!
//! 1. The launcher moves itself into a fresh `<id>` directory of the host's cgroup hierarchies,
//!    then runs `unshare --cgroup --pid --fork --mount --net --uts --propagation private`.
//! 2. Inside, before systemd starts, a tmpfs is mounted over each path of [`PRIVATE_TMPFS`]
//!    (`/tmp`, `/run`, `/var/tmp`, `/var/log/journal`, `/etc/systemd/system`, ...): the root
//!    filesystem is shared with the host, and a booting systemd would otherwise run
//!    systemd-tmpfiles over the host's `/tmp`. A fresh `proc` is mounted on `/proc` and a fresh
//!    `cgroup2` on `/sys/fs/cgroup`; `lo` is brought up.
//! 3. A minimal default target, `sandbox.target` (`DefaultDependencies=no`,
//!    `Wants=dbus.socket systemd-journald.socket` plus the units given to
//!    [`SandboxBuilder::unit`]), is written into the private `/etc/systemd/system`, and the
//!    script execs `/lib/systemd/systemd --system --unit=sandbox.target` as PID 1.
//! 4. The sandbox is up when `/run/dbus/system_bus_socket` exists inside and
//!    `systemctl is-system-running` settles. Commands run inside with
//!    `nsenter -t PID -m -p -n -u`; teardown SIGKILLs PID 1 and removes the cgroup directories.
//!
//! On top of that recipe, each of these is needed to keep the sandbox from touching the host:
//!
//! * **A private cgroup tree.** The launcher is moved into a fresh `<id>` directory of the
//!   host's cgroup v2 hierarchy (and, on a hybrid host, of the v1 `name=systemd` one) before
//!   the cgroup namespace is unshared, and a *fresh* `cgroup2` is then mounted on
//!   `/sys/fs/cgroup` inside. Without that remount systemd sees the host's already-mounted
//!   hierarchies, whose roots are the host's roots, and creates `system.slice` and
//!   `init.scope` at the root of every host hierarchy (memory, pids, ...) — shared between
//!   parallel sandboxes and moving sandboxed processes out of the caller's cgroups (observed).
//!   Inside, systemd therefore runs in pure cgroup v2 ("unified") mode, without controllers.
//! * **Units that would write host state are masked** (see [`MASKED_UNITS`]): the root
//!   filesystem, `/dev`, the kernel log and non-network sysctls are shared with the host, and
//!   units such as `systemd-sysctl`, `systemd-tmpfiles-setup`, `systemd-update-utmp` or
//!   `systemd-udevd` would write there.
//! * `/dev/kmsg` is `/dev/null` inside and `/dev/console` is a log file of the host, so
//!   journald neither writes to nor reads the host's kernel log and systemd's console output is
//!   kept for diagnosis.
//! * `/var/lib/systemd` is also a tmpfs inside.
//!
//! # What is shared with the host
//!
//! Everything except the private mounts listed in [`PRIVATE_TMPFS`] (plus `/proc`,
//! `/sys/fs/cgroup`, `/dev/kmsg` and `/dev/console`): the host's binaries, `/etc` (except
//! `/etc/systemd/system`), the checkout, `/var/lib` (except `/var/lib/systemd`). Files a test
//! must share with the sandbox must therefore live **outside** those tmpfs paths — for example
//! under the cargo target directory, not under `/tmp` — or be named to
//! [`Sandbox::boot_sharing`], which binds them back over the tmpfs (a checkout cloned under
//! `/tmp`, say). The network namespace is private: only
//! `lo` exists inside (up), ports and `net.*` sysctls (e.g. `net.ipv4.tcp_migrate_req`) are the
//! sandbox's own. So is the UTS namespace: [`SandboxBuilder::hostname`] names the sandbox
//! without renaming the host (by default it keeps the host's name).
//!
//! # Logs
//!
//! The launcher's output (mount errors, `unshare` messages) and systemd's console output go to
//! `<id>.log` and `<id>.console` in `$BATON_SANDBOX_LOG_DIR` (default: `<temp dir>/baton-sandbox`,
//! on the host side). They are quoted in boot errors, kept after a failed boot, and removed at
//! teardown unless `BATON_SANDBOX_KEEP_LOGS` is set. `BATON_SANDBOX_BOOT_TIMEOUT_SECS` overrides
//! the default boot timeout of 20 s.
//!
//! # Requirements
//!
//! Root, `unshare`, `nsenter`, `mount`, `ip` and `sh` on `PATH`, `/lib/systemd/systemd`, and a
//! cgroup v2 hierarchy (pure v2 or hybrid). Boot fails with a clear error otherwise.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The systemd binary booted as PID 1.
pub const SYSTEMD: &str = "/lib/systemd/systemd";

/// Directories that get a private tmpfs inside, in mount order. The first five are required by
/// the recipe (a booting systemd runs tmpfiles, which would otherwise empty the host's `/tmp`);
/// the ones that do not exist on the host are skipped only if marked optional here.
pub const PRIVATE_TMPFS: &[(&str, &str, bool)] = &[
    // (path, mode, optional)
    ("/tmp", "1777", false),
    ("/run", "0755", false),
    ("/var/tmp", "1777", false),
    ("/var/log/journal", "2755", true),
    ("/etc/systemd/system", "0755", false),
    ("/var/lib/systemd", "0755", true),
];

/// Units masked inside because they would write host state through the shared root
/// filesystem, `/dev`, the console or global sysctls, or are of no use in a sandbox.
pub const MASKED_UNITS: &[&str] = &[
    "systemd-sysctl.service",
    "systemd-sysusers.service",
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.service",
    "systemd-tmpfiles-clean.timer",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "systemd-update-done.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    "modprobe@.service",
    "systemd-random-seed.service",
    "systemd-remount-fs.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-hwdb-update.service",
    "ldconfig.service",
    "systemd-journal-catalog-update.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-repart.service",
    "systemd-sysext.service",
    "systemd-pstore.service",
    "systemd-vconsole-setup.service",
    "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path",
    "systemd-timesyncd.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "getty.target",
    "console-getty.service",
];

const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(10);
const CGROUP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const LAUNCHER_EXIT_TIMEOUT: Duration = Duration::from_secs(5);
const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Run by the launcher on the host: joins the sandbox's cgroups (one `cgroup.procs` file per
/// argument after the first three), then creates the namespaces. `$$` survives the `exec`, so
/// the `unshare` process is the one moved; its forked child inherits the cgroups.
const OUTER_SCRIPT: &str = r#"inner=$1; id=$2; console=$3; shift 3
for procs in "$@"; do
    echo $$ > "$procs" || { echo "baton-sandbox: cannot join cgroup $procs" >&2; exit 125; }
done
exec unshare --cgroup --pid --fork --mount --net --uts --propagation private --kill-child -- sh -c "$inner" sh "$id" "$console"
"#;

/// What a sandbox gets before its systemd starts; see [`Sandbox::builder`].
#[derive(Debug, Clone, Default)]
pub struct SandboxBuilder {
    label: String,
    shares: Vec<PathBuf>,
    hostname: Option<String>,
    files: Vec<(PathBuf, String, u32)>,
    units: Vec<String>,
    tmpfs: Vec<(PathBuf, u32)>,
    boot_timeout: Option<Duration>,
}

impl SandboxBuilder {
    /// Host directories that stay visible inside at the same paths even where they lie under
    /// a private tmpfs (see [`Sandbox::boot_sharing`]).
    pub fn shares(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.shares.extend(dirs);
        self
    }

    /// The sandbox's host name (its own UTS namespace; `/etc/hostname` inside shows it too).
    /// Letters, digits, `-` and `.`, at most 63 characters.
    pub fn hostname(mut self, name: &str) -> Self {
        self.hostname = Some(name.to_owned());
        self
    }

    /// How long the boot may take (default 20 s; `BATON_SANDBOX_BOOT_TIMEOUT_SECS` overrides
    /// both), e.g. longer for many sandboxes booting at once on a busy machine.
    pub fn boot_timeout(mut self, timeout: Duration) -> Self {
        self.boot_timeout = Some(timeout);
        self
    }

    /// One more private tmpfs inside, over the existing host directory `dir` (e.g. `/root`, so
    /// that what a remote login writes to its home stays in the sandbox; `/var/log`), with
    /// `mode` (e.g. `0o700`). Mounted after [`PRIVATE_TMPFS`]; shared directories under it are
    /// bound back as for those.
    pub fn tmpfs(mut self, dir: impl Into<PathBuf>, mode: u32) -> Self {
        self.tmpfs.push((dir.into(), mode));
        self
    }

    /// A file written inside before systemd starts, with `mode` (e.g. `0o644`). `path` must lie
    /// in one of the private tmpfs ([`PRIVATE_TMPFS`] or [`SandboxBuilder::tmpfs`]), outside any
    /// shared directory, so it
    /// never reaches the host; parent directories are created.
    pub fn file(mut self, path: impl Into<PathBuf>, contents: impl Into<String>, mode: u32) -> Self {
        self.files.push((path.into(), contents.into(), mode));
        self
    }

    /// A unit file written into the private `/etc/systemd/system` and wanted by
    /// `sandbox.target`, so it starts with the sandbox: the boot waits for its start job (for
    /// `Type=notify`, until it is ready), and a unit that fails leaves the sandbox `degraded`.
    pub fn unit(mut self, name: &str, text: impl Into<String>) -> Self {
        self.files.push((Path::new("/etc/systemd/system").join(name), text.into(), 0o644));
        self.units.push(name.to_owned());
        self
    }

    /// Refuses a bad host name, file path or unit name, naming it and the rule.
    fn validate(&self) -> Result<()> {
        if let Some(name) = &self.hostname {
            let ok = !name.is_empty()
                && name.len() <= 63
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !name.starts_with(['-', '.']);
            if !ok {
                bail!(
                    "sandbox hostname {name:?}: must be 1-63 letters, digits, '-' or '.', not starting with '-' or '.'"
                );
            }
        }
        for unit in &self.units {
            let suffix_ok = [".service", ".socket", ".target", ".timer", ".path", ".mount"]
                .iter()
                .any(|suffix| unit.len() > suffix.len() && unit.ends_with(suffix));
            let chars_ok = unit.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c));
            if !suffix_ok || !chars_ok || unit.len() > 255 {
                bail!(
                    "sandbox unit name {unit:?}: must be letters, digits and '-_.@:' ending in .service, .socket, \
                     .target, .timer, .path or .mount"
                );
            }
        }
        let clean = |path: &Path| {
            path.is_absolute()
                && path
                    .components()
                    .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)))
        };
        for (dir, mode) in &self.tmpfs {
            if !clean(dir) || dir == Path::new("/") || !dir.is_dir() || *mode > 0o7777 {
                bail!(
                    "sandbox tmpfs {} (mode {mode:o}): must be an existing directory other than /, as an absolute path \
                     without '..', with a mode of at most 7777 octal",
                    dir.display()
                );
            }
        }
        let private_dirs = self.private_dirs();
        for (path, contents, mode) in &self.files {
            let private = private_dirs.iter().any(|dir| path.starts_with(dir) && path != dir);
            let shared = self.shares.iter().any(|d| path.starts_with(d));
            if !clean(path) || !private || shared {
                bail!(
                    "sandbox file {}: must be an absolute path without '..' inside one of the private tmpfs ({}) and \
                     outside the shared directories, so that it never reaches the host",
                    path.display(),
                    private_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                );
            }
            if contents.contains('\0') {
                bail!("sandbox file {}: contents must not contain NUL bytes", path.display());
            }
            if *mode > 0o7777 {
                bail!("sandbox file {}: mode {mode:o} is not a file mode (at most 7777 octal)", path.display());
            }
        }
        Ok(())
    }

    /// Every directory that is a private tmpfs inside.
    fn private_dirs(&self) -> Vec<PathBuf> {
        PRIVATE_TMPFS
            .iter()
            .map(|(d, _, _)| PathBuf::from(d))
            .chain(self.tmpfs.iter().map(|(d, _)| d.clone()))
            .collect()
    }

    /// Boots the sandbox; see [`Sandbox::boot`] for when it returns and how it fails.
    pub fn boot(self) -> Result<Sandbox> {
        self.validate()?;
        let started = Instant::now();
        check_prerequisites()?;
        static REAP: Once = Once::new();
        REAP.call_once(|| {
            if let Err(err) = reap_stale() {
                eprintln!("baton-sandbox: cleaning up stale sandboxes failed: {err:#}");
            }
        });

        let id = next_id(&self.label);
        let layout = CgroupLayout::detect()?;
        let log_dir = log_dir();
        fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating the sandbox log directory {}", log_dir.display()))?;
        let log_path = log_dir.join(format!("{id}.log"));
        let console_path = log_dir.join(format!("{id}.console"));
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        File::create(&console_path).with_context(|| format!("creating {}", console_path.display()))?;

        let mut sandbox = Sandbox {
            id: id.clone(),
            pid: 0,
            launcher: None,
            cgroup_dirs: Vec::new(),
            log_path,
            console_path,
            state: BootState::Running,
            boot_duration: Duration::ZERO,
            keep_logs: true,
            torn_down: false,
        };
        // From here on, failures tear down what exists (through Drop) but keep the logs.
        for parent in layout.parents() {
            let dir = parent.join(&id);
            fs::create_dir(&dir).with_context(|| format!("creating the cgroup directory {}", dir.display()))?;
            sandbox.cgroup_dirs.push(dir);
        }

        let log_err = log.try_clone().context("duplicating the log file handle")?;
        let mut launcher = Command::new("sh");
        launcher
            .arg("-c")
            .arg(OUTER_SCRIPT)
            .arg("sh")
            .arg(inner_script(&self))
            .arg(&id)
            .arg(&sandbox.console_path)
            .args(sandbox.cgroup_dirs.iter().map(|d| d.join("cgroup.procs")))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let launcher = launcher.spawn().context("spawning the sandbox launcher (sh -c ... unshare ...)")?;
        let launcher_pid = launcher.id();
        sandbox.launcher = Some(launcher);

        let timeout = boot_timeout(self.boot_timeout);
        let deadline = started + timeout;
        sandbox.pid = sandbox.wait_for_pid1(launcher_pid, deadline)?;
        sandbox.state = sandbox.wait_until_up(deadline, timeout)?;
        sandbox.boot_duration = started.elapsed();
        sandbox.keep_logs = std::env::var_os("BATON_SANDBOX_KEEP_LOGS").is_some();
        Ok(sandbox)
    }
}

/// How the sandbox's systemd came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootState {
    /// `systemctl is-system-running` said `running`.
    Running,
    /// It said `degraded`: some unit failed (see [`Sandbox::failed_units`]).
    Degraded,
}

impl fmt::Display for BootState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootState::Running => "running",
            BootState::Degraded => "degraded",
        })
    }
}

/// A real systemd running as PID 1 of private cgroup/pid/mount/net namespaces.
///
/// Torn down (SIGKILL of its PID 1, removal of its cgroup directories) on drop, including when
/// a test panics; [`Sandbox::kill`] does the same and reports failures.
#[derive(Debug)]
pub struct Sandbox {
    id: String,
    pid: u32,
    launcher: Option<Child>,
    cgroup_dirs: Vec<PathBuf>,
    log_path: PathBuf,
    console_path: PathBuf,
    state: BootState,
    boot_duration: Duration,
    keep_logs: bool,
    torn_down: bool,
}

impl Sandbox {
    /// Boots a fresh real systemd as PID 1 of new cgroup/pid/mount/net namespaces.
    ///
    /// Returns once `/run/dbus/system_bus_socket` exists inside and
    /// `systemctl is-system-running` says `running` or `degraded` (see [`Sandbox::boot_state`]).
    /// Fails with an explanation (including the launcher's and systemd's output) when not run
    /// as root, a tool is missing, systemd exits, or it does not come up within the timeout
    /// (20 s, or `BATON_SANDBOX_BOOT_TIMEOUT_SECS`).
    ///
    /// `label` only serves to name the sandbox (`baton-<label>-<pid>-<n>`).
    pub fn boot(label: &str) -> Result<Sandbox> {
        Self::boot_sharing(label, &[])
    }

    /// Like [`Sandbox::boot`], and the host directories `shares` stay visible inside at the same
    /// paths even where they lie under a private tmpfs (e.g. a checkout under `/tmp`): each is
    /// bound back over the tmpfs, read-write, before systemd starts.
    pub fn boot_sharing(label: &str, shares: &[PathBuf]) -> Result<Sandbox> {
        Self::builder(label).shares(shares.iter().cloned()).boot()
    }

    /// A sandbox with more set up before systemd starts: a host name, files in its private
    /// tmpfs, units started with `sandbox.target`. [`SandboxBuilder::boot`] boots it.
    pub fn builder(label: &str) -> SandboxBuilder {
        SandboxBuilder { label: label.to_owned(), ..SandboxBuilder::default() }
    }

    /// Host PID of the namespace's PID 1 (systemd).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The sandbox's unique name, `baton-<label>-<pid>-<n>`; also the `container=` value and
    /// the name of its cgroup directories.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether systemd reported `running` or `degraded` at the end of the boot.
    pub fn boot_state(&self) -> BootState {
        self.state
    }

    /// Time from the call of [`Sandbox::boot`] until the sandbox was ready.
    pub fn boot_duration(&self) -> Duration {
        self.boot_duration
    }

    /// The sandbox's cgroup directories on the host (removed at teardown).
    pub fn cgroup_dirs(&self) -> &[PathBuf] {
        &self.cgroup_dirs
    }

    /// The launcher's output (stdout and stderr of the namespace setup) on the host.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// What systemd wrote to its console (`/dev/console` inside), on the host.
    pub fn console_path(&self) -> &Path {
        &self.console_path
    }

    /// A [`Command`] that runs `program` inside: `nsenter -t PID -m -p -n -u -- program`.
    ///
    /// The program sees the sandbox's mounts, PIDs, network and host name; it inherits the caller's
    /// environment, starts in `/` (entering a mount namespace resets the working directory) and
    /// stays in the caller's cgroup (it is not a unit). Use `systemd-run` for units.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.pid.to_string()).args(["-m", "-p", "-n", "-u", "--"]).arg(program);
        cmd
    }

    /// Runs `sh -c script` inside and returns its stdout; fails (quoting the exit status,
    /// stdout and stderr) when it exits non-zero.
    pub fn sh(&self, script: &str) -> Result<String> {
        let out = self.sh_output(script)?;
        if !out.status.success() {
            bail!(
                "sandbox {}: `sh -c {script:?}` failed ({})\n--- stdout ---\n{}--- stderr ---\n{}",
                self.id,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).with_context(|| format!("sandbox {}: output of {script:?} is not UTF-8", self.id))
    }

    /// Runs `sh -c script` inside and returns its full output, whatever its exit status.
    pub fn sh_output(&self, script: &str) -> Result<Output> {
        self.command("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("sandbox {}: running nsenter ... sh -c {script:?}", self.id))
    }

    /// Names of the units systemd inside considers failed.
    pub fn failed_units(&self) -> Result<Vec<String>> {
        let out = self.sh("systemctl list-units --failed --plain --no-legend --no-pager")?;
        Ok(out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
    }

    /// Host PIDs of all processes in the sandbox's cgroup tree (systemd, its units and the
    /// launcher; not the processes started with [`Sandbox::command`], which stay in the
    /// caller's cgroup).
    pub fn host_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for root in &self.cgroup_dirs {
            for dir in cgroup_tree(root) {
                if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
                }
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Tears the sandbox down now, reporting what could not be cleaned up.
    pub fn kill(mut self) -> Result<()> {
        self.teardown()
    }

    /// Waits for `unshare` to fork the namespace's PID 1 and returns its host PID.
    fn wait_for_pid1(&mut self, launcher_pid: u32, deadline: Instant) -> Result<u32> {
        let children = format!("/proc/{launcher_pid}/task/{launcher_pid}/children");
        loop {
            if let Some(status) = self.launcher_exit()? {
                return Err(self.boot_error(&format!("the launcher exited ({status})")));
            }
            // Before the exec the launcher is `sh`, which forks nothing; afterwards `unshare`
            // forks exactly one child: the namespace's PID 1.
            let is_unshare = fs::read_to_string(format!("/proc/{launcher_pid}/comm"))
                .map(|c| c.trim() == "unshare")
                .unwrap_or(false);
            if is_unshare {
                if let Some(pid) = fs::read_to_string(&children)
                    .ok()
                    .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
                {
                    return Ok(pid);
                }
            }
            if Instant::now() > deadline {
                return Err(self.boot_error("timed out waiting for unshare to fork PID 1"));
            }
            sleep(POLL);
        }
    }

    /// Waits for the D-Bus socket and a settled `systemctl is-system-running`.
    fn wait_until_up(&mut self, deadline: Instant, timeout: Duration) -> Result<BootState> {
        let socket = format!("/proc/{}/root/run/dbus/system_bus_socket", self.pid);
        let mut last = String::from("(D-Bus socket not there yet)");
        loop {
            if let Some(status) = self.launcher_exit()? {
                return Err(self.boot_error(&format!("systemd (PID 1) exited ({status})")));
            }
            if Path::new(&socket).exists() {
                let out = self
                    .command("systemctl")
                    .arg("is-system-running")
                    .stdin(Stdio::null())
                    .output()
                    .context("running nsenter ... systemctl is-system-running")?;
                let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                match state.as_str() {
                    "running" => return Ok(BootState::Running),
                    "degraded" => return Ok(BootState::Degraded),
                    _ => last = format!("is-system-running: {state:?} {}", String::from_utf8_lossy(&out.stderr).trim()),
                }
            }
            if Instant::now() > deadline {
                let mut what = format!("systemd did not come up within {timeout:?}; last seen: {last}");
                if let Ok(out) = self.sh_output("systemctl list-jobs --no-pager; systemctl --failed --no-pager") {
                    what.push_str("\n--- jobs and failed units ---\n");
                    what.push_str(&String::from_utf8_lossy(&out.stdout));
                }
                return Err(self.boot_error(&what));
            }
            sleep(POLL);
        }
    }

    fn launcher_exit(&mut self) -> Result<Option<ExitStatus>> {
        match self.launcher.as_mut() {
            Some(child) => child.try_wait().context("polling the sandbox launcher"),
            None => Ok(None),
        }
    }

    /// Builds a boot error quoting the logs (which are kept on disk).
    fn boot_error(&self, what: &str) -> anyhow::Error {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let console = fs::read_to_string(&self.console_path).unwrap_or_default();
        anyhow!(
            "booting sandbox {} failed: {what}\n--- launcher output ({}) ---\n{}\n--- systemd console ({}) ---\n{}",
            self.id,
            self.log_path.display(),
            tail(&log, 4000),
            self.console_path.display(),
            tail(&console, 4000),
        )
    }

    fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();

        // SIGKILL PID 1 from the host; the kernel then kills every other process of the PID
        // namespace, and the launcher (`unshare`, its parent) reaps it and exits. Prefer
        // `cgroup.kill` of systemd's own `init.scope` (race-free); otherwise signal the PID
        // while the launcher is still running, so PID 1 cannot have been reaped and its PID
        // reused.
        let init_scope_kill = self.cgroup_dirs.iter().map(|d| d.join("init.scope/cgroup.kill")).find(|p| p.exists());
        let launcher_running = matches!(self.launcher_exit(), Ok(None)) && self.launcher.is_some();
        if launcher_running && self.pid != 0 {
            let killed = init_scope_kill.is_some_and(|p| fs::write(p, "1").is_ok());
            if !killed {
                if let Err(err) =
                    Command::new("kill").args(["-s", "KILL", &self.pid.to_string()]).stderr(Stdio::null()).status()
                {
                    problems.push(format!("running kill -s KILL {}: {err}", self.pid));
                }
            }
        }
        if let Some(mut launcher) = self.launcher.take() {
            let deadline = Instant::now() + LAUNCHER_EXIT_TIMEOUT;
            let mut exited = self.pid == 0;
            while !exited && Instant::now() < deadline {
                exited = !matches!(launcher.try_wait(), Ok(None));
                if !exited {
                    sleep(POLL);
                }
            }
            if !exited {
                problems.push(format!("the launcher did not exit within {LAUNCHER_EXIT_TIMEOUT:?} of killing PID 1"));
            }
            // Whatever is left: the launcher (`--kill-child` then SIGKILLs PID 1 too) and,
            // through `cgroup.kill`, anything still in the sandbox's cgroup tree.
            let _ = launcher.kill();
            for dir in &self.cgroup_dirs {
                let _ = fs::write(dir.join("cgroup.kill"), "1");
            }
            if let Err(err) = launcher.wait() {
                problems.push(format!("reaping the launcher: {err}"));
            }
        }

        // Remove the cgroup directories, deepest first, while their processes finish dying.
        let deadline = Instant::now() + CGROUP_DRAIN_TIMEOUT;
        for root in &self.cgroup_dirs {
            loop {
                for dir in cgroup_tree(root).into_iter().rev() {
                    let _ = fs::remove_dir(&dir);
                }
                if !root.exists() {
                    break;
                }
                if Instant::now() > deadline {
                    problems
                        .push(format!("cgroup directory {} still busy after {CGROUP_DRAIN_TIMEOUT:?}", root.display()));
                    break;
                }
                sleep(POLL);
            }
        }

        if problems.is_empty() && !self.keep_logs {
            let _ = fs::remove_file(&self.log_path);
            let _ = fs::remove_file(&self.console_path);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("tearing down sandbox {} (PID 1 = {}): {}", self.id, self.pid, problems.join("; "))
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            eprintln!("baton-sandbox: {err:#}");
        }
    }
}

/// Tears down sandboxes left behind by processes that died without dropping them (their
/// cgroup directory names carry the owner's PID): kills what runs in them and removes the
/// directories. Called once per process by [`Sandbox::boot`].
pub fn reap_stale() -> Result<()> {
    let layout = CgroupLayout::detect()?;
    // The v2 directories first: killing through them empties the v1 ones too.
    let mut parents = layout.parents();
    parents.reverse();
    for parent in parents {
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = stale_owner(&name) else {
                continue;
            };
            if process_alive(owner) {
                continue;
            }
            let dir = entry.path();
            let _ = fs::write(dir.join("cgroup.kill"), "1");
            let deadline = Instant::now() + Duration::from_secs(5);
            while dir.exists() && Instant::now() < deadline {
                for d in cgroup_tree(&dir).into_iter().rev() {
                    let _ = fs::remove_dir(&d);
                }
                sleep(POLL);
            }
        }
    }
    Ok(())
}

/// Whether a host process exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself contain ") ".
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_none_or(|state| state != "Z" && state != "X")
}

/// The owner PID of a sandbox cgroup directory name `baton-<label>-<pid>-<n>`.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("baton-")?;
    let mut fields = rest.rsplitn(3, '-');
    let counter = fields.next()?;
    let pid = fields.next()?;
    fields.next()?; // the label
    counter.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// The directory and all its subdirectories, parents before children.
fn cgroup_tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(entry.path());
                }
            }
            out.push(dir);
        }
    }
    // Sort by depth so that reversing yields children before parents.
    out.sort_by_key(|p| p.components().count());
    out
}

/// The script run by `unshare` as the namespace's PID 1 until it execs systemd.
/// `$1` is the sandbox id, `$2` the host file to bind over `/dev/console`.
fn inner_script(builder: &SandboxBuilder) -> String {
    let shares = &builder.shares;
    let mut s = String::from("set -e\n");
    // First, while the host's /tmp (where the console log usually is) is still visible.
    s.push_str("mount --bind \"$2\" /dev/console\n");
    // Shared directories that a tmpfs is about to cover: hold each open (fds 3-9) so it can be
    // bound back over the tmpfs from the same mount namespace.
    let private_dirs = builder.private_dirs();
    let covered: Vec<&PathBuf> =
        shares.iter().filter(|d| private_dirs.iter().any(|path| d.starts_with(path))).take(7).collect();
    for (fd, share) in (3..).zip(&covered) {
        s.push_str(&format!("exec {fd}<{}\n", shell_quote(&share.to_string_lossy())));
    }
    let extra =
        builder.tmpfs.iter().map(|(dir, mode)| (dir.to_string_lossy().into_owned(), format!("{mode:o}"), false));
    let all: Vec<(String, String, bool)> =
        PRIVATE_TMPFS.iter().map(|(d, m, o)| (d.to_string(), m.to_string(), *o)).chain(extra).collect();
    // Each covered share is bound back after the last tmpfs that covers it.
    let last_cover = |share: &Path| all.iter().rposition(|(dir, _, _)| share.starts_with(dir));
    for (index, (dir, mode, optional)) in all.iter().enumerate() {
        let path = &shell_word(dir);
        let mount = format!("mount -t tmpfs -o mode={mode},nosuid,nodev tmpfs {path}");
        if *optional {
            s.push_str(&format!("if [ -d {path} ]; then {mount}; fi\n"));
        } else {
            s.push_str(&format!("{mount}\n"));
        }
        for (fd, share) in (3..).zip(&covered).filter(|(_, d)| last_cover(d) == Some(index)) {
            let inside = shell_quote(&share.to_string_lossy());
            s.push_str(&format!(
                "mkdir -p {inside}\nmount --no-canonicalize --rbind /proc/self/fd/{fd} {inside}\nexec {fd}<&-\n"
            ));
        }
    }
    s.push_str(
        "mount -t proc proc /proc\n\
         mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
         if [ -e /dev/kmsg ]; then mount --bind /dev/null /dev/kmsg; fi\n\
         ip link set lo up\n",
    );
    if let Some(name) = &builder.hostname {
        // The UTS namespace is the sandbox's own; systemd sets the host name from /etc/hostname
        // at boot, so that file shows the sandbox's name too (a file in the private /run).
        s.push_str(&format!(
            "echo {name} > /proc/sys/kernel/hostname\n\
             echo {name} > /run/baton-sandbox-hostname\n\
             if [ -e /etc/hostname ]; then mount --bind /run/baton-sandbox-hostname /etc/hostname; fi\n"
        ));
    }
    let mut wants = String::from("dbus.socket systemd-journald.socket");
    for unit in &builder.units {
        wants.push(' ');
        wants.push_str(unit);
    }
    s.push_str(&format!(
        "cat > /etc/systemd/system/sandbox.target <<'EOF'\n\
         [Unit]\n\
         Description=baton sandbox\n\
         DefaultDependencies=no\n\
         Wants={wants}\n\
         EOF\n"
    ));
    for (path, contents, mode) in &builder.files {
        let quoted = shell_quote(&path.to_string_lossy());
        if let Some(parent) = path.parent() {
            s.push_str(&format!("mkdir -p {}\n", shell_quote(&parent.to_string_lossy())));
        }
        s.push_str(&format!("printf '%s' {} > {quoted}\nchmod {mode:o} {quoted}\n", shell_quote(contents)));
    }
    for unit in MASKED_UNITS {
        s.push_str(&format!("ln -s /dev/null /etc/systemd/system/{unit}\n"));
    }
    s.push_str(&format!("exec env -i container=\"$1\" PATH={SANDBOX_PATH} {SYSTEMD} --system --unit=sandbox.target\n"));
    s
}

fn next_id(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut clean: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(40)
        .collect();
    if clean.is_empty() {
        clean.push_str("sandbox");
    }
    format!("baton-{clean}-{}-{n}", std::process::id())
}

fn log_dir() -> PathBuf {
    std::env::var_os("BATON_SANDBOX_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("baton-sandbox"))
}

/// A word for `sh`: as is when it is made of safe characters only, else single-quoted.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/_.-".contains(c)) {
        s.to_owned()
    } else {
        shell_quote(s)
    }
}

/// Quotes a string for `sh` with single quotes.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn boot_timeout(default: Option<Duration>) -> Duration {
    std::env::var("BATON_SANDBOX_BOOT_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .or(default)
        .unwrap_or(DEFAULT_BOOT_TIMEOUT)
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Fails unless running as root with the needed tools available.
fn check_prerequisites() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or_else(|| anyhow!("no Uid line in /proc/self/status"))?;
    if euid != "0" {
        bail!(
            "baton-sandbox needs root (effective uid is {euid}): it creates namespaces, \
             cgroups and mounts to boot a real systemd"
        );
    }
    let missing: Vec<&str> = ["unshare", "nsenter", "mount", "ip", "sh", "kill"]
        .into_iter()
        .filter(|tool| find_in_path(tool).is_none())
        .collect();
    if !missing.is_empty() {
        bail!("baton-sandbox needs {} on PATH (util-linux, iproute2)", missing.join(", "));
    }
    if !Path::new(SYSTEMD).exists() {
        bail!("baton-sandbox needs systemd at {SYSTEMD}");
    }
    Ok(())
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// Where the host's cgroup hierarchies are and which cgroup this process is in.
#[derive(Debug)]
struct CgroupLayout {
    /// Mount point of the cgroup v2 hierarchy joined with our own v2 cgroup.
    unified: PathBuf,
    /// Same for the v1 `name=systemd` hierarchy, on a hybrid host.
    systemd_v1: Option<PathBuf>,
}

impl CgroupLayout {
    fn detect() -> Result<CgroupLayout> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
        let own = fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let mut v2_mount = None;
        let mut named_mount = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split_whitespace().nth(4) else {
                continue;
            };
            let mut right = right.split_whitespace();
            let fstype = right.next().unwrap_or_default();
            let super_opts = right.nth(1).unwrap_or_default();
            if fstype == "cgroup2" && v2_mount.is_none() {
                v2_mount = Some(PathBuf::from(mount_point));
            } else if fstype == "cgroup" && super_opts.split(',').any(|o| o == "name=systemd") && named_mount.is_none()
            {
                named_mount = Some(PathBuf::from(mount_point));
            }
        }
        let mut v2_path = None;
        let mut named_path = None;
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if controllers.is_empty() {
                v2_path = Some(path.to_owned());
            } else if controllers.split(',').any(|c| c == "name=systemd") {
                named_path = Some(path.to_owned());
            }
        }
        let (Some(v2_mount), Some(v2_path)) = (v2_mount, v2_path) else {
            bail!(
                "baton-sandbox needs a cgroup v2 hierarchy (pure v2 or hybrid), found none in \
                 /proc/self/mountinfo"
            );
        };
        let join = |mount: PathBuf, path: &str| mount.join(path.trim_start_matches('/'));
        Ok(CgroupLayout {
            unified: join(v2_mount, &v2_path),
            systemd_v1: match (named_mount, named_path) {
                (Some(m), Some(p)) => Some(join(m, &p)),
                _ => None,
            },
        })
    }

    /// The parents of the sandbox's cgroup directories: v1 `name=systemd` first, then v2.
    fn parents(&self) -> Vec<PathBuf> {
        self.systemd_v1.iter().cloned().chain(std::iter::once(self.unified.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_parse_back() {
        let a = next_id("my test/with spaces");
        let b = next_id("my test/with spaces");
        assert_ne!(a, b);
        assert!(a.starts_with("baton-my_test_with_spaces-"), "{a}");
        assert_eq!(stale_owner(&a), Some(std::process::id()));
        assert_eq!(stale_owner("baton-a-b-c-12-3"), Some(12));
        assert_eq!(stale_owner("baton-12-3"), None);
        assert_eq!(stale_owner("system.slice"), None);
    }

    #[test]
    fn inner_script_mounts_the_tmpfs_set_before_exec() {
        let builder = Sandbox::builder("t").shares([PathBuf::from("/tmp/it's here"), PathBuf::from("/srv/elsewhere")]);
        let s = inner_script(&builder);
        let exec = s.find("exec env").expect("exec line");
        let open = s.find("exec 3<'/tmp/it'\\''s here'").expect("share held open");
        let bind = s.find("mount --no-canonicalize --rbind /proc/self/fd/3 '/tmp/it'\\''s here'").expect("share bound");
        let tmpfs = s.find("tmpfs /tmp").expect("tmpfs");
        assert!(open < tmpfs && tmpfs < bind && bind < s.find("mount -t proc").expect("proc"));
        assert!(!s.contains("/srv/elsewhere"), "shares outside the tmpfs set are visible anyway");
        for path in ["/tmp", "/run", "/var/tmp", "/var/log/journal", "/etc/systemd/system"] {
            let at = s.find(&format!("tmpfs {path}")).unwrap_or_else(|| panic!("no tmpfs on {path}"));
            assert!(at < exec);
        }
    }
}
