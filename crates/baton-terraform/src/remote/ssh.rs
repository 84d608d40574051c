//! The provider's `ssh` settings and the connection to one host.
//!
//! The transport is the system OpenSSH client, driven by the `openssh` crate as a multiplexed
//! ControlMaster: one SSH connection per host, opened by the first resource that needs it and
//! reused (one `ssh -S` per command) by every other resource of the run. Being the operator's own
//! `ssh`, it honours `~/.ssh/config`, the agent, ProxyJump and known_hosts exactly as Ansible or
//! a shell does. Host keys are checked strictly (`StrictHostKeyChecking=yes`): an unknown or
//! changed key is an error naming the host. `private_key` and `known_hosts` given as text are
//! written to files in a private 0700 directory (0600) for `ssh -i` / `UserKnownHostsFile`.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use serde::{Deserialize, Serialize};
use tf_provider::value::Value;
use tf_provider::AttributePath;
use tokio::io::AsyncWriteExt as _;

use super::RemoteOutput;
use crate::model::{AttrError, AttrErrors};

/// `ssh.timeout_sec` when unset.
pub const DEFAULT_TIMEOUT_SEC: u64 = 15;
/// Where the provider installs `baton` on a host when `install_dir` is unset.
pub const DEFAULT_INSTALL_DIR: &str = "/usr/local/lib/baton";

/// The provider's connection settings, checked.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `ssh.user` (ssh's own default when None: `~/.ssh/config`, else the local user).
    pub user: Option<String>,
    /// `ssh.port`.
    pub port: Option<u16>,
    /// `ssh.private_key`, PEM text.
    pub private_key: Option<String>,
    /// `ssh.agent`: false hides the agent from ssh.
    pub agent: Option<bool>,
    /// `ssh.known_hosts`, known_hosts text (None: the user's `~/.ssh/known_hosts`).
    pub known_hosts: Option<String>,
    /// `ssh.bastion`, `host[:port]`: a ProxyJump.
    pub bastion: Option<String>,
    /// `ssh.timeout_sec`: the connect timeout.
    pub timeout_sec: Option<u64>,
    /// `baton_path`: a preinstalled `baton` on every host (nothing is installed then).
    pub baton_path: Option<String>,
    /// `baton_binary`: the local `baton` to install (default: the one beside the provider).
    pub baton_binary: Option<PathBuf>,
    /// `install_dir`: where `baton` is installed on a host, per version.
    pub install_dir: Option<String>,
}

impl Settings {
    /// The install directory on hosts.
    pub fn install_dir(&self) -> &str {
        self.install_dir.as_deref().unwrap_or(DEFAULT_INSTALL_DIR)
    }
}

/// The provider block's `ssh` nested block, as Terraform sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SshBlock {
    /// `user`.
    pub user: Value<String>,
    /// `port`.
    pub port: Value<i64>,
    /// `private_key`.
    pub private_key: Value<String>,
    /// `agent`.
    pub agent: Value<bool>,
    /// `known_hosts`.
    pub known_hosts: Value<String>,
    /// `bastion`.
    pub bastion: Value<String>,
    /// `timeout_sec`.
    pub timeout_sec: Value<i64>,
}

/// The provider block, as Terraform sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderConfig {
    /// The `ssh` block (null when left out).
    pub ssh: Value<SshBlock>,
    /// `baton_path`.
    pub baton_path: Value<String>,
    /// `baton_binary`.
    pub baton_binary: Value<String>,
    /// `install_dir`.
    pub install_dir: Value<String>,
}

fn known<T: Clone>(v: &Value<T>) -> Option<T> {
    match v {
        Value::Value(x) => Some(x.clone()),
        _ => None,
    }
}

impl ProviderConfig {
    /// The settings, with every value that breaks a rule reported at its path (a value still
    /// unknown at validation is left out).
    pub fn settings(&self) -> Result<Settings, AttrErrors> {
        let mut errors = AttrErrors::new();
        let ssh = known(&self.ssh).unwrap_or_default();
        let at = |a: &str| AttributePath::new("ssh").attribute(a.to_owned());
        let mut s = Settings::default();
        if let Some(user) = known(&ssh.user) {
            if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@') {
                errors.push(AttrError::new(
                    at("user"),
                    format!("ssh.user: must be a login name without spaces or '@', got {user:?}"),
                ));
            }
            s.user = Some(user);
        }
        if let Some(port) = known(&ssh.port) {
            match u16::try_from(port) {
                Ok(p) if p > 0 => s.port = Some(p),
                _ => errors.push(AttrError::new(at("port"), format!("ssh.port: must be 1–65535, got {port}"))),
            }
        }
        if let Some(key) = known(&ssh.private_key) {
            if !key.contains("PRIVATE KEY-----") {
                errors.push(AttrError::new(
                    at("private_key"),
                    "ssh.private_key: must be a private key in PEM/OpenSSH text form (-----BEGIN ... PRIVATE KEY-----),                      e.g. file(\"~/.ssh/id_ed25519\"); a path is not accepted",
                ));
            }
            s.private_key = Some(key);
        }
        s.agent = known(&ssh.agent);
        if let Some(text) = known(&ssh.known_hosts) {
            let bad = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .find(|l| l.split_whitespace().count() < 3);
            if let Some(line) = bad {
                errors.push(AttrError::new(
                    at("known_hosts"),
                    format!("ssh.known_hosts: must be known_hosts lines (`host keytype key`), got {line:?}"),
                ));
            }
            s.known_hosts = Some(text);
        }
        if let Some(b) = known(&ssh.bastion) {
            let (host, port) = match b.rsplit_once(':') {
                Some((h, _)) if !h.ends_with(']') && h.contains(':') => (b.as_str(), None),
                Some((h, p)) => (h, Some(p)),
                None => (b.as_str(), None),
            };
            let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
            if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == ',') || !port_ok {
                errors.push(AttrError::new(
                    at("bastion"),
                    format!(
                        "ssh.bastion: must be host[:port] (a ProxyJump), e.g. \"bastion.example.com:2222\", got {b:?}"
                    ),
                ));
            }
            s.bastion = Some(b);
        }
        if let Some(t) = known(&ssh.timeout_sec) {
            match u64::try_from(t) {
                Ok(t) if (1..=3600).contains(&t) => s.timeout_sec = Some(t),
                _ => {
                    errors.push(AttrError::new(at("timeout_sec"), format!("ssh.timeout_sec: must be 1–3600, got {t}")))
                }
            }
        }
        for (name, value) in [("baton_path", &self.baton_path), ("install_dir", &self.install_dir)] {
            if let Some(p) = known(value) {
                if !p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    errors.push(AttrError::new(
                        AttributePath::new(name),
                        format!("{name}: must be an absolute path on the hosts without spaces, got {p:?}"),
                    ));
                }
            }
        }
        s.baton_path = known(&self.baton_path);
        s.install_dir = known(&self.install_dir);
        s.baton_binary = known(&self.baton_binary).map(PathBuf::from);
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(errors)
        }
    }
}

/// A private 0700 directory holding the key, the known_hosts file and the control sockets;
/// removed with the connection.
#[derive(Debug)]
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Result<Files, String> {
        // Short prefix: the control socket's path must fit a unix socket's 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("baton-ssh.")
            .tempdir()
            .map_err(|e| format!("cannot create the provider's private ssh directory: {e}"))?;
        Ok(Files { dir })
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.dir.path().join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut text = text.to_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        f.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// One host's multiplexed connection and the `baton` to run there.
#[derive(Debug)]
pub struct Connected {
    /// The host as configured (`host` of the resource).
    pub host: String,
    session: Session,
    /// The remote path of `baton` (set once it is known to be there).
    pub baton: String,
    /// Whether `baton` was there at the provider's version when the connection was made.
    pub present: bool,
    /// The install of `baton` by the first change that needed it (once per run).
    pub installed: tokio::sync::OnceCell<Result<(), String>>,
    _files: Files,
}

/// The ssh_config of a connection through a bastion: the provider's key, known_hosts, user and
/// timeout for every hop (ssh gives the hop to the bastion nothing but this file, `-l` and
/// `-p`), strict host key checking and no prompt, then the user's and the system's
/// configuration, as ssh reads them without `-F` (the first value of an option wins).
fn jump_config(settings: &Settings, dir: &Path) -> String {
    let mut c = String::from(
        "# terraform-provider-baton: its ssh settings for every hop, the bastion too\nHost *\n  \
         StrictHostKeyChecking yes\n  BatchMode yes\n",
    );
    c.push_str(&format!("  ConnectTimeout {}\n", settings.timeout_sec.unwrap_or(DEFAULT_TIMEOUT_SEC)));
    if settings.private_key.is_some() {
        c.push_str(&format!("  IdentityFile \"{}\"\n  IdentitiesOnly yes\n", dir.join("id").display()));
    }
    if settings.known_hosts.is_some() {
        c.push_str(&format!("  UserKnownHostsFile \"{}\"\n", dir.join("known_hosts").display()));
    }
    if let Some(user) = &settings.user {
        c.push_str(&format!("  User {user}\n"));
    }
    c.push_str("Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n");
    c
}

/// Hints for ssh's own words about a host key.
fn host_key_hint(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    if t.contains("remote host identification has changed")
        || t.contains("host key verification failed")
        || t.contains("host key is known")
        || t.contains("no matching host key")
    {
        Some(
            "the host's SSH key is unknown or has changed; the provider checks host keys strictly: verify the \
             key out of band and add it to the provider's ssh.known_hosts (or ~/.ssh/known_hosts)",
        )
    } else {
        None
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    baton_core::error_chain(e)
}

impl Connected {
    /// Opens the ControlMaster to `host` (the SSH destination: a name from `~/.ssh/config`, an
    /// address, or `user@host`).
    pub async fn connect(settings: &Settings, host: &str) -> Result<Connected, String> {
        let files = Files::new()?;
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .connect_timeout(Duration::from_secs(settings.timeout_sec.unwrap_or(DEFAULT_TIMEOUT_SEC)))
            .server_alive_interval(Duration::from_secs(15))
            .control_directory(files.path())
            // A provider killed before it could close the master: the master exits when idle.
            .control_persist(ControlPersist::IdleFor(NonZeroUsize::new(120).unwrap_or(NonZeroUsize::MIN)));
        if let Some(user) = &settings.user {
            b.user(user.clone());
        }
        if let Some(port) = settings.port {
            b.port(port);
        }
        if let Some(key) = &settings.private_key {
            b.keyfile(files.write("id", key)?);
        }
        if let Some(known) = &settings.known_hosts {
            b.user_known_hosts_file(files.write("known_hosts", known)?);
        }
        if let Some(bastion) = &settings.bastion {
            // ssh starts the hop to the bastion as `ssh -l -p -F <config> -W`: of the options
            // above only a config file reaches it, so the provider's settings go there too.
            b.jump_hosts([bastion.as_str()]);
            b.config_file(files.write("config", &jump_config(settings, files.path()))?);
        }
        if settings.agent == Some(false) {
            // No agent socket: ssh uses only the key files.
            b.ssh_auth_sock(files.path().join("no-agent"));
        }
        let session = b.connect(host).await.map_err(|e| {
            let mut text = chain(&e);
            if settings.agent == Some(true) && std::env::var_os("SSH_AUTH_SOCK").is_none() {
                text.push_str(
                    " (ssh.agent = true, but SSH_AUTH_SOCK is not set in terraform's environment: there is no agent \
                     to ask for a key)",
                );
            }
            if let Some(bastion) = &settings.bastion {
                text.push_str(&format!(" (through the bastion {bastion})"));
            }
            match host_key_hint(&text) {
                Some(hint) => format!("cannot connect to host {host} over SSH: {hint} ({text})"),
                None => format!("cannot connect to host {host} over SSH: {text}"),
            }
        })?;
        Ok(Connected {
            host: host.to_owned(),
            session,
            baton: String::new(),
            present: false,
            installed: tokio::sync::OnceCell::new(),
            _files: files,
        })
    }

    /// Runs `program args` on the host over the shared connection, with `stdin` (if any) as
    /// its standard input; every argument is shell-quoted for the remote shell.
    pub async fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<RemoteOutput, String> {
        let mut cmd = self.session.command(program);
        cmd.args(args);
        cmd.stdin(if stdin.is_some() { openssh::Stdio::piped() } else { openssh::Stdio::null() });
        cmd.stdout(openssh::Stdio::piped()).stderr(openssh::Stdio::piped());
        let host = &self.host;
        let mut child = cmd.spawn().await.map_err(|e| format!("cannot run {program} on host {host}: {}", chain(&e)))?;
        if let Some(input) = stdin {
            if let Some(mut w) = child.stdin().take() {
                w.write_all(input)
                    .await
                    .map_err(|e| format!("cannot send the input of {program} to host {host}: {e}"))?;
                w.shutdown().await.map_err(|e| format!("cannot send the input of {program} to host {host}: {e}"))?;
            }
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("{program} on host {host}: the connection failed: {}", chain(&e)))?;
        Ok(RemoteOutput {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs the host's `baton` with `args`.
    pub async fn baton(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<RemoteOutput, String> {
        self.run(&self.baton, args, stdin).await
    }

    /// The connection with `baton` at `path`.
    pub fn with_baton(mut self, path: String, present: bool) -> Connected {
        self.baton = path;
        self.present = present;
        self
    }

    /// Closes the master connection (`ssh -O exit`); the private directory goes with the
    /// last holder of this value.
    pub async fn close(&self) {
        let _ = tokio::process::Command::new("ssh")
            .arg("-S")
            .arg(self.session.control_socket())
            .args(["-O", "exit", "baton-host"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bastion_hop_gets_the_providers_key_known_hosts_and_user() {
        let s = Settings {
            user: Some("ops".into()),
            private_key: Some("k".into()),
            known_hosts: Some("h".into()),
            bastion: Some("jump:2222".into()),
            timeout_sec: Some(7),
            ..Settings::default()
        };
        let c = jump_config(&s, Path::new("/tmp/baton-ssh.x"));
        for line in [
            "Host *",
            "  IdentityFile \"/tmp/baton-ssh.x/id\"",
            "  IdentitiesOnly yes",
            "  UserKnownHostsFile \"/tmp/baton-ssh.x/known_hosts\"",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  ConnectTimeout 7",
            "  User ops",
            "Include ~/.ssh/config",
        ] {
            assert!(c.lines().any(|l| l == line), "{line:?} missing in\n{c}");
        }
        // Without a key or known_hosts text, ssh's own (the agent, ~/.ssh) apply to the hop.
        let c = jump_config(&Settings::default(), Path::new("/d"));
        assert!(!c.contains("IdentityFile") && !c.contains("UserKnownHostsFile") && !c.contains("User "), "{c}");
    }

    #[test]
    fn host_key_errors_get_a_hint() {
        assert!(host_key_hint("Host key verification failed.").is_some());
        assert!(host_key_hint("No ED25519 host key is known for 10.213.0.2 and you have requested strict checking.")
            .is_some());
        assert!(host_key_hint("Connection timed out").is_none());
    }
}
