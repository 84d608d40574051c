//! A fleet of hosts on one machine (issue 14): N sandboxed real systemds, each in its own
//! network namespace running Debian's `sshd` as a unit of its own systemd, joined by a bridge in
//! a controller network namespace from which `ssh`, `ansible-playbook` and load generators run.
//!
//! # Layout
//!
//! * **Controller**: a network namespace held by one `sh` process of ours (`unshare --net`),
//!   reached as `/proc/<pid>/ns/net` ([`Fleet::controller_command`] runs a program in it with
//!   `nsenter --net=...`). It holds the bridge `br0` with [`CONTROLLER_ADDR`]. Its holder reads
//!   a pipe from this process, so it exits when the fleet is dropped *or* this process dies in
//!   any way: no named namespace (`ip netns`) is left behind by a crash.
//! * **Hosts**: host `i` is a [`Sandbox`] (own cgroup, PID, mount, UTS and network namespaces)
//!   named `hostNN` (its host name too), with `eth0` = [`host_addr`]`(i)`/16, the peer of the
//!   veth `vhI` on the controller's bridge. Both veth ends are created directly in those
//!   namespaces: nothing is added to, or changed in, the caller's own namespaces (no link,
//!   address, route or sysctl), and everything disappears with the namespaces.
//! * **sshd**: the unit `baton-fleet-sshd.service` of each host's systemd (`Type=notify`), with
//!   the host's own `sshd_config` and ed25519 host key generated per fleet with `ssh-keygen` in
//!   the fleet directory; root login by key only, no PAM; `authorized_keys`, the PID file and a
//!   per-host `identity` file live in the host's private `/run/baton-fleet`. `/root` and
//!   `/var/log` are private tmpfs too, so what a login writes (Ansible's remote temp files,
//!   login records) stays in the host. Debian's own `ssh.service`/`ssh.socket` are not wanted
//!   by `sandbox.target` and never start inside.
//! * **Fleet directory**: `<temp dir>/baton-fleet-<pid>-<n>` (or under `$BATON_FLEET_DIR`),
//!   0700, holding the controller's key ([`Fleet::ssh_key`]), [`Fleet::known_hosts`] (every
//!   host key, by address), the hosts' keys and configs, and Ansible's control sockets. It is
//!   shared into every sandbox; directories of dead processes are removed at the next boot.
//!
//! Addresses come from [`NETWORK`] (10.213.0.0/16), which exists only inside these namespaces.
//!
//! # Figures
//!
//! [`Fleet::boot_time`] is the wall time from the call of [`Fleet::boot`] until every host's
//! sshd answered `ssh root@<addr> true` from the controller. [`Fleet::figures`] measures memory
//! per host: the proportional set size (PSS, shared pages divided among their users; from
//! `/proc/<pid>/smaps_rollup`) and the RSS of every process in the host's cgroup tree, and the
//! bytes used in its private tmpfs (journal, runtime files).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use baton_sandbox::{BootState, Sandbox, PRIVATE_TMPFS};

/// The fleet's private network; it exists only inside the fleet's namespaces.
pub const NETWORK: &str = "10.213.0.0/16";
/// The controller's address on the bridge.
pub const CONTROLLER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// Hosts of `make fleet` and of [`FleetConfig::default`].
pub const DEFAULT_HOSTS: usize = 20;
/// The largest fleet [`Fleet::boot`] accepts.
pub const MAX_HOSTS: usize = 250;
/// The sshd unit of every host.
pub const SSHD_UNIT: &str = "baton-fleet-sshd.service";
/// The host's private directory (in its `/run` tmpfs) with `authorized_keys`, `sshd.pid` and
/// `identity` (`<name> <addr> <fleet id>`).
pub const HOST_RUN_DIR: &str = "/run/baton-fleet";

const SSHD: &str = "/usr/sbin/sshd";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
const SSH_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to boot a fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Number of hosts, 1..=[`MAX_HOSTS`].
    pub hosts: usize,
    /// Hosts booted at the same time (threads); at least 1.
    pub parallel: usize,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig { hosts: DEFAULT_HOSTS, parallel: 4 }
    }
}

/// One host of the fleet.
#[derive(Debug)]
pub struct Host {
    /// `hostNN`: the inventory name, the host name inside and the first word of `identity`.
    pub name: String,
    /// Its address on the fleet network (eth0).
    pub addr: Ipv4Addr,
    /// The sandboxed systemd: `host.sandbox.command(..)` runs a program inside (all namespaces).
    pub sandbox: Sandbox,
    /// The controller's end of its veth pair (on the bridge).
    link: String,
}

/// Memory of one host, measured by [`Fleet::figures`].
#[derive(Debug, Clone)]
pub struct HostMemory {
    /// The host's name.
    pub name: String,
    /// Processes in its cgroup tree (systemd, journald, dbus, sshd, ...).
    pub processes: usize,
    /// Their proportional set size, in bytes.
    pub pss_bytes: u64,
    /// Their resident set size, in bytes (pages shared with other hosts counted in full).
    pub rss_bytes: u64,
    /// Bytes used in the host's private tmpfs.
    pub tmpfs_bytes: u64,
}

/// The fleet's figures: boot time and memory per host.
#[derive(Debug, Clone)]
pub struct FleetFigures {
    /// Number of hosts.
    pub hosts: usize,
    /// See [`Fleet::boot_time`].
    pub boot_time: Duration,
    /// Per host, in the fleet's order.
    pub memory: Vec<HostMemory>,
}

impl FleetFigures {
    /// Mean PSS per host, in bytes.
    pub fn mean_pss_bytes(&self) -> u64 {
        mean(self.memory.iter().map(|m| m.pss_bytes))
    }

    /// Mean RSS per host, in bytes.
    pub fn mean_rss_bytes(&self) -> u64 {
        mean(self.memory.iter().map(|m| m.rss_bytes))
    }

    /// Mean private tmpfs use per host, in bytes.
    pub fn mean_tmpfs_bytes(&self) -> u64 {
        mean(self.memory.iter().map(|m| m.tmpfs_bytes))
    }

    /// Sum of every host's PSS and tmpfs use, in bytes: what the fleet costs the machine.
    pub fn total_bytes(&self) -> u64 {
        self.memory.iter().map(|m| m.pss_bytes + m.tmpfs_bytes).sum()
    }

    /// One paragraph for a report.
    pub fn summary(&self) -> String {
        format!(
            "{} hosts booted in {:.2} s (until every sshd answered ssh from the controller); memory per host: \
             {:.1} MiB PSS (RSS {:.1} MiB, shared pages counted in full) + {:.1} MiB in its private tmpfs; \
             whole fleet {:.0} MiB",
            self.hosts,
            self.boot_time.as_secs_f64(),
            mib(self.mean_pss_bytes()),
            mib(self.mean_rss_bytes()),
            mib(self.mean_tmpfs_bytes()),
            mib(self.total_bytes()),
        )
    }
}

fn mean(values: impl Iterator<Item = u64>) -> u64 {
    let (sum, n) = values.fold((0u64, 0u64), |(s, n), v| (s + v, n + 1));
    sum.checked_div(n).unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The address of host `index` (0-based): 10.213.1.1, 10.213.1.2, ...
pub fn host_addr(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 213, 1, 0)) + index as u32 + 1)
}

/// The name of host `index` (0-based) in a fleet of `hosts`: `host01` ... `host20`.
pub fn host_name(index: usize, hosts: usize) -> String {
    let width = hosts.to_string().len().max(2);
    format!("host{:0width$}", index + 1)
}

/// A booted fleet; dropping it tears everything down (see [`Fleet::teardown`]).
#[derive(Debug)]
pub struct Fleet {
    id: String,
    dir: PathBuf,
    hosts: Vec<Host>,
    controller: Option<Child>,
    controller_stdin: Option<ChildStdin>,
    controller_pid: u32,
    boot_time: Duration,
    torn_down: bool,
}

impl Fleet {
    /// Boots `hosts` hosts (see [`Fleet::boot_with`]).
    pub fn boot(hosts: usize) -> Result<Fleet> {
        Self::boot_with(&FleetConfig { hosts, ..FleetConfig::default() })
    }

    /// Boots the fleet and returns once every host's sshd answers `ssh root@<addr> true` from
    /// the controller. Fails (tearing down what was built) with a clear error: bad config,
    /// not root, a missing tool (`make deps` installs them), a host whose systemd or sshd did not
    /// come up (with its journal), a host that does not answer ssh (with ssh's error).
    pub fn boot_with(config: &FleetConfig) -> Result<Fleet> {
        let started = Instant::now();
        if config.hosts == 0 || config.hosts > MAX_HOSTS {
            bail!("fleet hosts = {}: must be between 1 and {MAX_HOSTS}", config.hosts);
        }
        if config.parallel == 0 {
            bail!("fleet parallel = 0: must be at least 1");
        }
        check_tools()?;
        // What a crashed earlier run left: its sandboxes (sshd and all), then its directories.
        // (Its controller died with it: its holder reads a pipe from the dead process.)
        baton_sandbox::reap_stale().context("reaping the sandboxes of dead processes")?;
        reap_stale_dirs();

        let id = next_fleet_id();
        let dir = fleet_base_dir().join(&id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating the fleet directory {}", dir.display()))?;
        let mut fleet = Fleet {
            id,
            dir,
            hosts: Vec::new(),
            controller: None,
            controller_stdin: None,
            controller_pid: 0,
            boot_time: Duration::ZERO,
            torn_down: false,
        };
        fs::create_dir(fleet.dir.join("hosts"))?;
        fs::create_dir(fleet.dir.join("cp"))?;
        keygen(&fleet.ssh_key(), "baton-fleet-controller")?;
        let client_pub = fs::read_to_string(fleet.dir.join("id_ed25519.pub")).context("reading the controller key")?;

        fleet.start_controller()?;
        fleet.hosts = fleet.boot_hosts(config, &client_pub)?;
        fleet.wire()?;
        fleet.write_known_hosts()?;
        fleet.write_inventory(fleet.dir.join("inventory.ini"))?;
        fleet.wait_for_ssh(SSH_READY_TIMEOUT)?;
        fleet.boot_time = started.elapsed();
        Ok(fleet)
    }

    /// The fleet's unique id, `baton-fleet-<pid>-<n>` (the fleet directory's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The hosts, in order (`host01` first).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The fleet directory (keys, configs, `inventory.ini`, Ansible's control sockets under `cp`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wall time from the call of [`Fleet::boot`] until every sshd answered.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The controller's private key (ed25519, 0600), authorized for root on every host.
    pub fn ssh_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// A known_hosts file with every host's key, by address.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// PID of the process holding the controller's network namespace.
    pub fn controller_pid(&self) -> u32 {
        self.controller_pid
    }

    /// The controller's network namespace, for `nsenter --net=<this>`.
    pub fn controller_netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.controller_pid))
    }

    /// A [`Command`] that runs `program` in the controller's network namespace
    /// (`nsenter --net=/proc/<pid>/ns/net -- program`); everything else (mounts, files, the
    /// environment, the working directory) is the caller's.
    pub fn controller_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.controller_netns().display())).arg("--").arg(program);
        cmd
    }

    /// The ssh options every connection to the fleet uses: the controller's key only, the
    /// fleet's known_hosts with strict checking, no prompt, a 5 s connect timeout, no user or
    /// system ssh_config.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.ssh_key().display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=5".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// `ssh root@<host i> -- remote` from the controller, with [`Fleet::ssh_options`].
    pub fn ssh(&self, index: usize, remote: &str) -> Command {
        let mut cmd = self.controller_command("ssh");
        cmd.args(self.ssh_options()).arg(format!("root@{}", self.hosts[index].addr)).arg("--").arg(remote);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// An Ansible inventory (INI) of the fleet: group `fleet`, each host with `ansible_host`,
    /// and for the group `ansible_user=root`, the controller's key, ssh args naming the fleet's
    /// known_hosts with strict checking, a control-socket directory private to the fleet, and
    /// `/usr/bin/python3` as the remote interpreter.
    pub fn inventory_text(&self) -> String {
        let mut s = format!("# baton fleet {} ({} hosts); run Ansible with: nsenter --net={} -- ansible-playbook -i <this file> ...\n[fleet]\n", self.id, self.hosts.len(), self.controller_netns().display());
        for host in &self.hosts {
            let _ = writeln!(s, "{} ansible_host={}", host.name, host.addr);
        }
        let _ = write!(
            s,
            "\n[fleet:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n\
             ansible_ssh_common_args='-o IdentitiesOnly=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10'\n\
             ansible_control_path_dir={}\nansible_python_interpreter=/usr/bin/python3\n",
            self.ssh_key().display(),
            self.known_hosts().display(),
            self.dir.join("cp").display(),
        );
        s
    }

    /// Writes [`Fleet::inventory_text`] to `path`.
    pub fn write_inventory(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        fs::write(path, self.inventory_text()).with_context(|| format!("writing the inventory {}", path.display()))
    }

    /// Cuts host `index` off the network (its veth on the bridge goes down): connections to it
    /// time out; the host itself keeps running.
    pub fn make_unreachable(&self, index: usize) -> Result<()> {
        self.set_link(index, "down")
    }

    /// Undoes [`Fleet::make_unreachable`].
    pub fn make_reachable(&self, index: usize) -> Result<()> {
        self.set_link(index, "up")
    }

    fn set_link(&self, index: usize, state: &str) -> Result<()> {
        let host = self.hosts.get(index).ok_or_else(|| {
            anyhow!("fleet host index {index}: must be below the number of hosts ({})", self.hosts.len())
        })?;
        run(self.controller_command("ip").args(["link", "set", &host.link, state]))
            .with_context(|| format!("setting {}'s link {} {state}", host.name, host.link))?;
        Ok(())
    }

    /// Boot time and memory per host (see the module doc for what is measured).
    pub fn figures(&self) -> Result<FleetFigures> {
        let memory = self.hosts.iter().map(host_memory).collect::<Result<Vec<_>>>()?;
        Ok(FleetFigures { hosts: self.hosts.len(), boot_time: self.boot_time, memory })
    }

    /// Runs `ssh root@<addr> true` against every host (in parallel) until each succeeds;
    /// fails naming the hosts that did not answer within `timeout`, with ssh's last error.
    pub fn wait_for_ssh(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for (index, host) in self.hosts.iter().enumerate() {
                let failures = &failures;
                scope.spawn(move || {
                    let mut last;
                    loop {
                        match self.ssh(index, "true").output() {
                            Ok(out) if out.status.success() => return,
                            Ok(out) => {
                                last = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())
                            }
                            Err(err) => last = format!("running ssh: {err}"),
                        }
                        if Instant::now() > deadline {
                            failures
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("{} ({}): {last}", host.name, host.addr));
                            return;
                        }
                        sleep(Duration::from_millis(50));
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
        if !failures.is_empty() {
            let journals: String = self
                .hosts
                .iter()
                .filter(|h| failures.iter().any(|f| f.starts_with(&format!("{} ", h.name))))
                .take(3)
                .map(|h| {
                    format!("\n--- {} journal of {SSHD_UNIT} ---\n{}", h.name, unit_journal(&h.sandbox, SSHD_UNIT))
                })
                .collect();
            bail!(
                "fleet {}: {} host(s) did not answer ssh within {timeout:?}:\n{}{journals}",
                self.id,
                failures.len(),
                failures.join("\n")
            );
        }
        Ok(())
    }

    /// Tears the fleet down and reports any problem (dropping does the same and prints them):
    /// every sandbox (and with it its network namespace and veth pair), every process in the
    /// controller's namespace (ssh control masters, load generators) and its holder (and with
    /// it the bridge), then the fleet directory.
    pub fn teardown(mut self) -> Result<()> {
        self.teardown_inner()
    }

    fn teardown_inner(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        let hosts = std::mem::take(&mut self.hosts);
        std::thread::scope(|scope| {
            let handles: Vec<_> = hosts
                .into_iter()
                .map(|host| scope.spawn(move || host.sandbox.kill().with_context(|| format!("host {}", host.name))))
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => problems.push(format!("{err:#}")),
                    Err(_) => problems.push("a sandbox teardown panicked".to_owned()),
                }
            }
        });
        if let Some(mut holder) = self.controller.take() {
            kill_netns_members(self.controller_pid);
            drop(self.controller_stdin.take());
            let _ = holder.kill();
            if let Err(err) = holder.wait() {
                problems.push(format!("reaping the controller: {err}"));
            }
        }
        if self.dir.exists() {
            if let Err(err) = fs::remove_dir_all(&self.dir) {
                problems.push(format!("removing {}: {err}", self.dir.display()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("tearing down fleet {}: {}", self.id, problems.join("; "))
        }
    }

    /// Starts the process holding the controller's network namespace and puts the bridge in it.
    fn start_controller(&mut self) -> Result<()> {
        let mut holder = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", "read _"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the controller (unshare --net sh)")?;
        self.controller_pid = holder.id();
        self.controller_stdin = holder.stdin.take();
        self.controller = Some(holder);
        // unshare execs sh once the namespace exists.
        let own = fs::read_link("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let theirs = fs::read_link(self.controller_netns());
            let comm = fs::read_to_string(format!("/proc/{}/comm", self.controller_pid)).unwrap_or_default();
            if comm.trim() == "sh" && theirs.as_ref().is_ok_and(|ns| *ns != own) {
                break;
            }
            if let Some(status) = self.controller.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the controller (unshare --net sh) exited ({status})");
            }
            ensure!(Instant::now() < deadline, "the controller's network namespace did not appear within 10 s");
            sleep(Duration::from_millis(5));
        }
        ip_batch(
            self.controller_command("ip"),
            &format!(
                "link set lo up\nlink add br0 type bridge\naddr add {CONTROLLER_ADDR}/16 dev br0\nlink set br0 up\n"
            ),
        )
        .context("creating the controller's bridge")
    }

    /// Boots every host's sandbox, `config.parallel` at a time.
    fn boot_hosts(&self, config: &FleetConfig, client_pub: &str) -> Result<Vec<Host>> {
        let next = AtomicU64::new(0);
        let results: Mutex<Vec<(usize, Result<Host>)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..config.parallel.min(config.hosts) {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if index >= config.hosts {
                        return;
                    }
                    let host = self.boot_host(index, config.hosts, client_pub);
                    let failed = host.is_err();
                    results.lock().unwrap_or_else(|e| e.into_inner()).push((index, host));
                    if failed {
                        // Stop the other threads early: one failure fails the fleet.
                        next.store(config.hosts as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        results.sort_by_key(|(index, _)| *index);
        let mut hosts = Vec::with_capacity(config.hosts);
        let mut first_error = None;
        for (_, result) in results {
            match result {
                Ok(host) => hosts.push(host),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            // The hosts booted so far are dropped (torn down) here.
            Some(err) => Err(err),
            None => Ok(hosts),
        }
    }

    fn boot_host(&self, index: usize, hosts: usize, client_pub: &str) -> Result<Host> {
        let name = host_name(index, hosts);
        let addr = host_addr(index);
        let host_dir = self.dir.join("hosts").join(&name);
        fs::create_dir(&host_dir).with_context(|| format!("creating {}", host_dir.display()))?;
        let key = host_dir.join("ssh_host_ed25519_key");
        keygen(&key, &format!("{name}@{}", self.id))?;
        let config = host_dir.join("sshd_config");
        fs::write(&config, sshd_config(&name, &key)).with_context(|| format!("writing {}", config.display()))?;

        let mut shares = crate::shares();
        shares.push(self.dir.clone());
        let sandbox = Sandbox::builder(&format!("fleet-{name}"))
            .shares(shares)
            .hostname(&name)
            .tmpfs("/root", 0o700)
            .tmpfs("/var/log", 0o755)
            .file(format!("{HOST_RUN_DIR}/authorized_keys"), client_pub, 0o600)
            .file(format!("{HOST_RUN_DIR}/identity"), format!("{name} {addr} {}\n", self.id), 0o644)
            .unit(SSHD_UNIT, sshd_unit(&config))
            // Twenty hosts booting at once on a busy 2-core machine take longer than one.
            .boot_timeout(Duration::from_secs(90))
            .boot()
            .with_context(|| format!("booting fleet host {name}"))?;
        if sandbox.boot_state() != BootState::Running {
            let failed = sandbox.failed_units().unwrap_or_default();
            bail!(
                "fleet host {name}: systemd came up degraded (failed units: {failed:?})\n--- journal of {SSHD_UNIT} ---\n{}",
                unit_journal(&sandbox, SSHD_UNIT)
            );
        }
        Ok(Host { name, addr, sandbox, link: format!("vh{index}") })
    }

    /// The veth pairs: `vhI` on the controller's bridge, `eth0` in host I with its address.
    fn wire(&self) -> Result<()> {
        let mut batch = String::new();
        for host in &self.hosts {
            let _ = write!(
                batch,
                "link add {link} type veth peer name eth0 netns {pid}\nlink set {link} master br0\nlink set {link} up\n",
                link = host.link,
                pid = host.sandbox.pid()
            );
        }
        ip_batch(self.controller_command("ip"), &batch).context("adding the hosts' veth pairs")?;
        for host in &self.hosts {
            let mut ip = Command::new("nsenter");
            ip.args(["-t", &host.sandbox.pid().to_string(), "-n", "--", "ip"]);
            ip_batch(
                ip,
                &format!(
                    "addr add {}/16 dev eth0\nlink set eth0 up\nroute add default via {CONTROLLER_ADDR}\n",
                    host.addr
                ),
            )
            .with_context(|| format!("configuring eth0 of {}", host.name))?;
        }
        Ok(())
    }

    fn write_known_hosts(&self) -> Result<()> {
        let mut text = String::new();
        for host in &self.hosts {
            let key_path = self.dir.join("hosts").join(&host.name).join("ssh_host_ed25519_key.pub");
            let public = fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
            let mut words = public.split_whitespace();
            let (Some(kind), Some(key)) = (words.next(), words.next()) else {
                bail!("{}: not an ssh public key", key_path.display());
            };
            let _ = writeln!(text, "{} {kind} {key}", host.addr);
        }
        fs::write(self.known_hosts(), text).context("writing the fleet's known_hosts")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Err(err) = self.teardown_inner() {
            eprintln!("baton fleet: {err:#}");
        }
    }
}

/// The sshd_config of one host: its own host key; root by key only from the private
/// `authorized_keys`; no PAM, no DNS, no login records or messages.
fn sshd_config(name: &str, host_key: &Path) -> String {
    format!(
        "# sshd of fleet host {name} (baton integration/src/fleet.rs); every path is the test's own\n\
         Port 22\n\
         ListenAddress 0.0.0.0\n\
         AddressFamily inet\n\
         HostKey {key}\n\
         AuthorizedKeysFile {HOST_RUN_DIR}/authorized_keys\n\
         PidFile {HOST_RUN_DIR}/sshd.pid\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes yes\n\
         UseDNS no\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         MaxStartups 100:30:200\n\
         MaxSessions 100\n\
         AcceptEnv LANG LC_*\n\
         Subsystem sftp {SFTP_SERVER}\n",
        key = host_key.display()
    )
}

fn sshd_unit(config: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=sshd of a baton fleet host\n\
         [Service]\n\
         Type=notify\n\
         ExecStartPre={SSHD} -t -f {config}\n\
         ExecStart={SSHD} -D -e -f {config}\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         KillMode=process\n\
         Restart=on-failure\n\
         RuntimeDirectory=sshd\n\
         RuntimeDirectoryMode=0755\n",
        config = config.display()
    )
}

/// Fails naming every missing tool and how to get it.
fn check_tools() -> Result<()> {
    let mut missing: Vec<String> = ["ssh", "ssh-keygen", "nsenter", "unshare", "ip"]
        .into_iter()
        .filter(|tool| find_in_path(tool).is_none())
        .map(str::to_owned)
        .collect();
    missing.extend([SSHD, SFTP_SERVER].into_iter().filter(|p| !Path::new(p).exists()).map(str::to_owned));
    if !missing.is_empty() {
        bail!(
            "the fleet needs {} (Debian openssh-server, openssh-client, util-linux, iproute2): run `make deps`",
            missing.join(", ")
        );
    }
    Ok(())
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

fn keygen(path: &Path, comment: &str) -> Result<()> {
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]).arg(path))
        .with_context(|| format!("generating the ssh key {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Runs a command to completion; fails quoting its status and stderr.
fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// Runs `ip -batch -` with `commands` on stdin.
fn ip_batch(mut ip: Command, commands: &str) -> Result<()> {
    let mut child = ip
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning ip -batch")?;
    child.stdin.take().context("ip's stdin")?.write_all(commands.as_bytes()).context("writing to ip -batch")?;
    let out = child.wait_with_output().context("waiting for ip -batch")?;
    if !out.status.success() {
        bail!(
            "ip -batch failed ({}): {}\n--- commands ---\n{commands}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The last journal lines of a unit inside a sandbox, or why they could not be read.
fn unit_journal(sandbox: &Sandbox, unit: &str) -> String {
    match sandbox
        .sh_output(&format!("journalctl -u {unit} --no-pager -n 30 -o cat; systemctl status {unit} --no-pager -n 0"))
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(err) => format!("(journal unavailable: {err:#})"),
    }
}

/// Memory of one host: PSS and RSS of the processes in its cgroup tree, private tmpfs use.
fn host_memory(host: &Host) -> Result<HostMemory> {
    let mut pids = BTreeSet::new();
    for root in host.sandbox.cgroup_dirs() {
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(procs.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
            if let Ok(entries) = fs::read_dir(&dir) {
                stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
            }
        }
    }
    ensure!(!pids.is_empty(), "fleet host {}: no process found in its cgroups", host.name);
    let (mut pss, mut rss) = (0u64, 0u64);
    for pid in &pids {
        let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue; // exited meanwhile
        };
        let field = |name: &str| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        pss += field("Pss:");
        rss += field("Rss:");
    }
    let df = host.sandbox.sh("df -B1 --output=used,target -t tmpfs")?;
    let private: Vec<&str> = PRIVATE_TMPFS.iter().map(|(d, _, _)| *d).chain(["/root", "/var/log"]).collect();
    let tmpfs_bytes = df
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let used = words.next()?.parse::<u64>().ok()?;
            let target = words.next()?;
            private.contains(&target).then_some(used)
        })
        .sum();
    Ok(HostMemory { name: host.name.clone(), processes: pids.len(), pss_bytes: pss, rss_bytes: rss, tmpfs_bytes })
}

/// SIGKILLs every process whose network namespace is the controller's, except its holder.
fn kill_netns_members(holder: u32) {
    let Ok(target) = fs::read_link(format!("/proc/{holder}/ns/net")) else {
        return;
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == holder || pid == std::process::id() {
            continue;
        }
        if fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns == target) {
            let _ = Command::new("kill").args(["-s", "KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
    }
}

fn next_fleet_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("baton-fleet-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn fleet_base_dir() -> PathBuf {
    std::env::var_os("BATON_FLEET_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

/// Removes fleet directories left by processes that died without tearing their fleet down
/// (their sandboxes are reaped by baton-sandbox, their controller died with them).
fn reap_stale_dirs() {
    let Ok(entries) = fs::read_dir(fleet_base_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) =
            name.strip_prefix("baton-fleet-").and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{owner}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_can_be_shared_between_tests() {
        // e.g. one fleet per suite in a `static OnceLock<Fleet>`.
        fn shareable<T: Send + Sync>() {}
        shareable::<Fleet>();
    }

    #[test]
    fn addresses_and_names() {
        assert_eq!(host_addr(0), Ipv4Addr::new(10, 213, 1, 1));
        assert_eq!(host_addr(19), Ipv4Addr::new(10, 213, 1, 20));
        assert_eq!(host_addr(MAX_HOSTS - 1), Ipv4Addr::new(10, 213, 1, 250));
        assert_eq!(host_name(0, 20), "host01");
        assert_eq!(host_name(19, 20), "host20");
        assert_eq!(host_name(99, 100), "host100");
        assert_eq!(host_name(4, 100), "host005");
    }

    #[test]
    fn sshd_config_is_key_only_with_private_paths() {
        let c = sshd_config("host01", Path::new("/x/hosts/host01/ssh_host_ed25519_key"));
        for line in [
            "HostKey /x/hosts/host01/ssh_host_ed25519_key",
            "AuthorizedKeysFile /run/baton-fleet/authorized_keys",
            "PidFile /run/baton-fleet/sshd.pid",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "UsePAM no",
        ] {
            assert!(c.lines().any(|l| l == line), "missing {line:?} in\n{c}");
        }
    }

    #[test]
    fn bad_configs_are_refused_naming_the_field() {
        let err = Fleet::boot_with(&FleetConfig { hosts: 0, parallel: 1 }).expect_err("refused").to_string();
        assert!(err.contains("fleet hosts = 0") && err.contains("between 1 and"), "{err}");
        let err =
            Fleet::boot_with(&FleetConfig { hosts: MAX_HOSTS + 1, parallel: 1 }).expect_err("refused").to_string();
        assert!(err.contains("fleet hosts = 251"), "{err}");
        let err = Fleet::boot_with(&FleetConfig { hosts: 2, parallel: 0 }).expect_err("refused").to_string();
        assert!(err.contains("fleet parallel = 0"), "{err}");
    }
}
