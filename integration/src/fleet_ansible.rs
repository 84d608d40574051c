//! Ansible over a [`Fleet`]: the collection installed as a user installs it (`ansible-galaxy
//! collection build`, exactly as `make ansible-build`, then `ansible-galaxy collection install`
//! of that tarball into a test-owned `ANSIBLE_COLLECTIONS_PATH`), `ansible-playbook` run in the
//! fleet's controller network namespace over real SSH to every host, and a fleet-wide load
//! driver: one `baton-load` process per host address (and per connection mode), started in the
//! controller namespace, bounded in time and requests, with a summed report.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use baton_load::{LoadReport, Mode};

use crate::ansible::{Ansible, Played};
use crate::fleet::Fleet;

/// The remote temp directory Ansible uses on every host: under the host's private `/tmp`, so
/// nothing lands on the machine's shared root filesystem (root's `~/.ansible` would) and each
/// host's files stay its own.
pub const REMOTE_TMP: &str = "/tmp/baton-ansible";

/// The installed collection's FQCN of the rolling-deploy playbook.
pub const ROLLING: &str = "baton.systemd.rolling";

/// A private Ansible environment for a fleet: the collection installed from its built tarball,
/// an inventory directory (`inventory/hosts` from the fleet, plus `group_vars`/`host_vars` a
/// test writes) and `ansible-playbook` run in the controller's network namespace.
#[derive(Debug)]
pub struct FleetAnsible {
    ansible: Ansible,
    collection: PathBuf,
    inventory: PathBuf,
}

impl FleetAnsible {
    /// Installs the collection from its tarball into a private collections path and writes the
    /// fleet's inventory; fails loudly when ansible (`make .venv`) or the module binary (`make
    /// collection`) is missing.
    pub fn new(label: &str, fleet: &Fleet) -> Result<FleetAnsible> {
        let mut ansible = Ansible::new(label);
        let collection = ansible.install_collection();
        ensure!(
            collection.join("playbooks/rolling.yml").is_file(),
            "the installed collection has no playbooks/rolling.yml: {}",
            collection.display()
        );
        let inventory = ansible.dir().join("inventory");
        for sub in ["group_vars", "host_vars"] {
            std::fs::create_dir_all(inventory.join(sub)).with_context(|| format!("create {}", inventory.display()))?;
        }
        fleet.write_inventory(inventory.join("hosts")).context("write the fleet's inventory")?;
        // The controller's connection settings: more forks than a batch, ssh multiplexing (Ansible's
        // default ControlPersist), no retry files, remote temp files in each host's private /tmp.
        ansible.set_default("forks = 10");
        ansible.set_default("timeout = 20");
        ansible.set_default("interpreter_python = auto_silent");
        Ok(FleetAnsible { ansible, collection, inventory })
    }

    /// The underlying environment (its private directory, `ansible.cfg`, tools).
    pub fn ansible(&self) -> &Ansible {
        &self.ansible
    }

    /// The installed collection's root.
    pub fn collection(&self) -> &Path {
        &self.collection
    }

    /// The inventory directory given to `-i`.
    pub fn inventory(&self) -> &Path {
        &self.inventory
    }

    /// Writes `inventory/group_vars/all.yml`.
    pub fn write_group_vars(&self, yaml: &str) -> Result<()> {
        let path = self.inventory.join("group_vars/all.yml");
        std::fs::write(&path, yaml).with_context(|| format!("write {}", path.display()))
    }

    /// Writes `inventory/host_vars/<host>.yml` (an empty `yaml` removes it).
    pub fn write_host_vars(&self, host: &str, yaml: &str) -> Result<()> {
        let path = self.inventory.join("host_vars").join(format!("{host}.yml"));
        if yaml.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).context(format!("remove {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        std::fs::write(&path, yaml).with_context(|| format!("write {}", path.display()))
    }

    /// Runs `ansible-playbook -i <inventory> <playbook> <args>` in the controller's network
    /// namespace (`playbook` is a path or a collection playbook's FQCN such as [`ROLLING`]).
    pub fn playbook<I, S>(&self, fleet: &Fleet, playbook: impl AsRef<OsStr>, args: I) -> Result<Played>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.playbook_env(fleet, playbook, args, &[])
    }

    /// As [`FleetAnsible::playbook`], with extra environment variables.
    pub fn playbook_env<I, S>(
        &self,
        fleet: &Fleet,
        playbook: impl AsRef<OsStr>,
        args: I,
        env: &[(&str, &OsStr)],
    ) -> Result<Played>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = fleet.controller_command(self.ansible.core().tool("ansible-playbook"));
        cmd.arg("-i").arg(&self.inventory).arg(playbook).args(args);
        self.ansible.env(&mut cmd);
        cmd.env("ANSIBLE_REMOTE_TEMP", REMOTE_TMP)
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_SSH_RETRIES", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Run from the private directory: no ansible.cfg or inventory of the checkout applies.
        cmd.current_dir(self.ansible.dir());
        let t0 = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("run {cmd:?}"))?;
        let Some(code) = out.status.code() else { bail!("ansible-playbook was killed ({})", out.status) };
        Ok(Played {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: t0.elapsed(),
        })
    }
}

/// The lines of Ansible's output about `host` (task results, the recap).
pub fn host_lines<'a>(played: &'a Played, host: &str) -> Vec<&'a str> {
    let tag = format!("[{host}]");
    played.stdout.lines().filter(|l| l.contains(&tag) || l.starts_with(&format!("{host} "))).collect()
}

/// Bounds of a fleet-wide load: each process stops at the first of these (or when finished).
#[derive(Debug, Clone, Copy)]
pub struct LoadBounds {
    /// Worker threads per process.
    pub workers: u16,
    /// Longest run of one process, in seconds.
    pub max_secs: u64,
    /// Most requests of one process.
    pub max_requests: u64,
    /// Longest single request, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for LoadBounds {
    fn default() -> Self {
        LoadBounds { workers: 1, max_secs: 600, max_requests: 2_000_000, timeout_ms: 5000 }
    }
}

/// One `baton-load` process per (host, mode), all running in the controller's network namespace.
#[derive(Debug)]
pub struct FleetLoad {
    procs: Vec<(String, Mode, Child)>,
}

/// What a fleet-wide load saw: each process's report and their sum.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// Per host name and mode.
    pub per_host: BTreeMap<(String, &'static str), LoadReport>,
    /// Every report merged.
    pub total: LoadReport,
}

impl FleetReport {
    /// The sum of one host's reports (every mode).
    pub fn host(&self, name: &str) -> LoadReport {
        let mut sum = LoadReport::default();
        for ((host, _), r) in &self.per_host {
            if host == name {
                sum.merge(r.clone());
            }
        }
        sum
    }

    /// The sum over one mode.
    pub fn mode(&self, mode: Mode) -> LoadReport {
        let mut sum = LoadReport::default();
        for ((_, m), r) in &self.per_host {
            if *m == mode.as_str() {
                sum.merge(r.clone());
            }
        }
        sum
    }

    /// One line: requests, failed by kind, per mode.
    pub fn summary(&self) -> String {
        let line = |r: &LoadReport| {
            format!(
                "{} requests, {} failed (refused {}, reset {}, timeout {}, wrong status {}, other {})",
                r.requests, r.failed, r.refused, r.reset, r.timeout, r.wrong_status, r.other
            )
        };
        let mut modes = Vec::new();
        for mode in [Mode::NewConnection, Mode::KeepAlive] {
            let r = self.mode(mode);
            if r.requests > 0 {
                modes.push(format!("{}: {}", mode.as_str(), line(&r)));
            }
        }
        format!("{} [{}]", line(&self.total), modes.join("; "))
    }

    /// Hosts (with mode) whose load saw a failure, with their first errors.
    pub fn failures(&self) -> Vec<String> {
        self.per_host
            .iter()
            .filter(|(_, r)| r.failed > 0)
            .map(|((h, m), r)| format!("{h} ({m}): {} failed {:?}", r.failed, r.first_errors))
            .collect()
    }
}

impl FleetLoad {
    /// Starts the load on `port` of each host named in `hosts` (every host of the fleet when
    /// empty), one process per mode.
    pub fn start(fleet: &Fleet, hosts: &[&str], port: u16, modes: &[Mode], bounds: LoadBounds) -> Result<FleetLoad> {
        let mut load = FleetLoad { procs: Vec::new() };
        for h in fleet.hosts() {
            if !hosts.is_empty() && !hosts.contains(&h.name.as_str()) {
                continue;
            }
            for &mode in modes {
                let mut cmd = fleet.controller_command(crate::bin("baton-load"));
                cmd.args(["--addr", &format!("{}:{port}", h.addr)])
                    .args(["--workers", &bounds.workers.to_string()])
                    .args(["--duration-secs", &bounds.max_secs.to_string()])
                    .args(["--max-requests", &bounds.max_requests.to_string()])
                    .args(["--timeout-ms", &bounds.timeout_ms.to_string()])
                    .arg("--stop-on-stdin-eof");
                if mode == Mode::KeepAlive {
                    cmd.arg("--keep-alive");
                }
                let child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("start baton-load against {}", h.name))?;
                load.procs.push((h.name.clone(), mode, child));
            }
        }
        ensure!(!load.procs.is_empty(), "no host to load among {hosts:?}");
        Ok(load)
    }

    /// Stops every process (closing its stdin) and sums their reports.
    pub fn finish(mut self) -> Result<FleetReport> {
        for (_, _, child) in &mut self.procs {
            drop(child.stdin.take());
        }
        let mut per_host = BTreeMap::new();
        let mut total = LoadReport::default();
        let mut longest = Duration::ZERO;
        for (host, mode, child) in std::mem::take(&mut self.procs) {
            let out = child.wait_with_output().with_context(|| format!("wait for baton-load of {host}"))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let report: LoadReport = serde_json::from_str(stdout.lines().last().unwrap_or("")).with_context(|| {
                format!(
                    "baton-load of {host} printed no report (exit {:?}): {stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
            longest = longest.max(Duration::from_millis(report.elapsed_ms));
            total.merge(report.clone());
            per_host.insert((host, mode.as_str()), report);
        }
        total.finish(longest);
        Ok(FleetReport { per_host, total })
    }
}

impl Drop for FleetLoad {
    fn drop(&mut self) {
        for (_, _, child) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Bytes of the files Ansible left in `host`'s remote temp directory ([`REMOTE_TMP`], with
/// `ANSIBLE_KEEP_REMOTE_FILES=1`): module payloads (the binary module or AnsiballZ wrappers),
/// their argument files and files a module copies (a template's rendered file). Then empties it.
pub fn take_remote_bytes(sandbox_root: &Path) -> Result<u64> {
    let dir = sandbox_root.join(REMOTE_TMP.trim_start_matches('/'));
    let mut total = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let meta = e.metadata().with_context(|| format!("stat {}", e.path().display()))?;
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("empty {}", dir.display()))?;
    }
    Ok(total)
}
