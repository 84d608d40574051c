//! `baton status`: a service's releases on disk, which one is active and enabled, its main PID
//! and since when — as a table for people or JSON for tools.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Serialize;

use crate::state::{self, StateError};
use crate::systemd::Systemd;
use crate::unit::{instance, socket};

/// One release of a service.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct ReleaseStatus {
    /// The release.
    pub version: String,
    /// Its unit.
    pub unit: String,
    /// systemd's `ActiveState`.
    pub active_state: String,
    /// systemd's `SubState`.
    pub sub_state: String,
    /// Whether it is enabled for boot.
    pub enabled: bool,
    /// Its main PID (0 when not running).
    pub main_pid: u32,
    /// When it became active, in seconds since the epoch (null when not running).
    pub active_since_unix: Option<u64>,
}

/// A service's releases.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The service.
    pub name: String,
    /// The active release, if any.
    pub active_version: Option<String>,
    /// Every release on disk, by unit name.
    pub releases: Vec<ReleaseStatus>,
    /// Socket mode: the shared socket unit baton manages for the service (absent in reuseport
    /// mode, where there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<SocketStatus>,
}

/// The shared socket unit of a service in socket mode, `<name>.socket`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct SocketStatus {
    /// The unit.
    pub unit: String,
    /// Where it listens, as its `ListenStream=` says: a port (every address) or `address:port`.
    pub listen: String,
    /// systemd's `ActiveState` (`active` while it holds the listening socket).
    pub active_state: String,
    /// systemd's `SubState` (`listening`, or `running` while a release it started runs).
    pub sub_state: String,
    /// The release unit that traffic starts when no release runs (its `Service=`).
    pub service: String,
}

/// A service as it is now: the status of each release on disk and the text of its unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The releases and which one is active (what `baton status` shows).
    pub status: ServiceStatus,
    /// The text of each release's unit file, in the order of `status.releases`.
    unit_texts: Vec<String>,
    /// The digest of each secret environment file, by unit; None when they may not be read.
    secret_digests: Option<std::collections::BTreeMap<String, String>>,
}

impl Observed {
    /// Whether any release of the service is on disk.
    pub fn exists(&self) -> bool {
        !self.status.releases.is_empty()
    }

    /// The release of `version`, if on disk.
    pub fn release(&self, version: &str) -> Option<&ReleaseStatus> {
        self.status.releases.iter().find(|r| r.version == version)
    }

    /// Whether the secret environment files could be read (as root): only then does
    /// [`Observed::secret_digest`] tell a missing file.
    pub fn secrets_readable(&self) -> bool {
        self.secret_digests.is_some()
    }

    /// The SHA-256 (hex) of the secret environment file of the release of `version`, if there
    /// is one (and it could be read): compare with [`crate::secret_file_digest`] of the
    /// expected values. The values themselves are never read out.
    pub fn secret_digest(&self, version: &str) -> Option<&str> {
        let unit = &self.release(version)?.unit;
        self.secret_digests.as_ref()?.get(unit).map(String::as_str)
    }

    /// The unit file text of the release of `version`, if on disk.
    pub fn unit_text(&self, version: &str) -> Option<&str> {
        let i = self.status.releases.iter().position(|r| r.version == version)?;
        self.unit_texts.get(i).map(String::as_str)
    }
}

/// Reads a service's releases from `unit_dir` and systemd: one status query per release.
pub(crate) fn observe(sd: &dyn Systemd, unit_dir: &Path, name: &str) -> Result<Observed, StateError> {
    let releases = state::read_releases(sd, unit_dir, name)?;
    // No socket file (reuseport mode): no D-Bus question, as before socket mode.
    let socket = state::read_socket(sd, unit_dir, name)?;
    let socket = socket.owned_by(name).then(|| {
        let text = socket.text.as_deref().unwrap_or_default();
        SocketStatus {
            unit: socket.unit.clone(),
            listen: socket::listen(text).unwrap_or_default().to_owned(),
            active_state: socket.status.active_state.clone(),
            sub_state: socket.status.sub_state.clone(),
            service: socket::service(text).unwrap_or_default().to_owned(),
        }
    });
    let active_version = state::active_release(&releases).map(|r| r.version().to_owned());
    // Instance units: a template that is not baton's shows in each instance's text.
    let template = match releases.iter().any(|r| instance::is_instance(r.unit())) {
        true => Some(state::read_template(unit_dir, name)?),
        false => None,
    };
    let unit_texts = releases
        .iter()
        .map(|r| match &template {
            Some(t) if instance::is_instance(r.unit()) => {
                instance::observed_text(name, &r.file.text, &t.path, t.text.as_deref())
            }
            _ => r.file.text.clone(),
        })
        .collect();
    let releases = releases
        .iter()
        .map(|r| ReleaseStatus {
            version: r.version().to_owned(),
            unit: r.unit().to_owned(),
            active_state: r.status.active_state.clone(),
            sub_state: r.status.sub_state.clone(),
            enabled: r.status.is_enabled(),
            main_pid: r.status.main_pid,
            active_since_unix: (r.status.is_running() && r.status.active_enter_timestamp_us > 0)
                .then_some(r.status.active_enter_timestamp_us / 1_000_000),
        })
        .collect();
    let secret_digests = crate::secrets::digests(unit_dir, name)?;
    Ok(Observed {
        status: ServiceStatus { name: name.to_owned(), active_version, releases, socket },
        unit_texts,
        secret_digests,
    })
}

impl ServiceStatus {
    /// The status as a table for a terminal.
    pub fn table(&self) -> String {
        table(self)
    }
}

/// Renders the status as a table for a terminal.
fn table(s: &ServiceStatus) -> String {
    let mut out = String::new();
    if s.releases.is_empty() {
        let _ = writeln!(out, "{}: no releases on disk", s.name);
        return out;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let _ =
        writeln!(out, "{:<2}{:<16} {:<28} {:<20} {:<8} {:>8}  SINCE", "", "VERSION", "UNIT", "STATE", "ENABLED", "PID");
    for r in &s.releases {
        let mark = if s.active_version.as_deref() == Some(r.version.as_str()) { "*" } else { "" };
        let since = r.active_since_unix.map(|t| ago(now.saturating_sub(t))).unwrap_or_else(|| "-".to_owned());
        let pid = if r.main_pid > 0 { r.main_pid.to_string() } else { "-".to_owned() };
        let _ = writeln!(
            out,
            "{:<2}{:<16} {:<28} {:<20} {:<8} {:>8}  {since}",
            mark,
            r.version,
            r.unit,
            format!("{}/{}", r.active_state, r.sub_state),
            if r.enabled { "yes" } else { "no" },
            pid
        );
    }
    if let Some(socket) = &s.socket {
        let _ = writeln!(
            out,
            "socket {} on {}: {}/{}, starts {} when no release runs",
            socket.unit, socket.listen, socket.active_state, socket.sub_state, socket.service
        );
    }
    out
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m{:02}s ago", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m ago", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h ago", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::{apply, ApplyOptions};
    use crate::spec::parse;
    use crate::systemd::fake::FakeSystemd;

    #[test]
    fn a_secret_file_shows_as_its_digest_and_one_changed_by_hand_differs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        let json = format!(
            r#"{{"name":"app","version":"v1","exec_start":["/x"],"unit_dir":"{}","secret_environment":{{"K":"hunter2"}}}}"#,
            dir.path().display()
        );
        let opts = ApplyOptions { lock_dir: dir.path().join("l"), ..ApplyOptions::default() };
        apply(&parse(json.as_bytes()).expect("valid"), &sd, &opts, &mut |_| {}).expect("apply");
        let expected = crate::secrets::expected_digest("app", "v1", &[("K".to_owned(), "hunter2".to_owned())].into());
        let o = observe(&sd, dir.path(), "app").expect("observe");
        assert!(o.secrets_readable());
        assert_eq!(o.secret_digest("v1"), Some(expected.as_str()));
        assert!(!format!("{o:?}").contains("hunter2"));
        let file = crate::secrets::path(dir.path(), "app-v1.service");
        let text = std::fs::read_to_string(&file).expect("read").replace("hunter2", "by-hand");
        std::fs::write(&file, text).expect("edit");
        let o = observe(&sd, dir.path(), "app").expect("observe");
        assert!(o.secret_digest("v1").is_some_and(|d| d != expected));
        std::fs::remove_file(&file).expect("remove");
        assert_eq!(observe(&sd, dir.path(), "app").expect("observe").secret_digest("v1"), None);
    }

    #[test]
    fn shows_active_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        for v in ["v1", "v2"] {
            let json = format!(
                r#"{{"name":"app","version":"{v}","exec_start":["/x"],"unit_dir":"{}"}}"#,
                dir.path().display()
            );
            let spec = parse(json.as_bytes()).expect("valid");
            let opts = ApplyOptions { lock_dir: dir.path().join("l"), ..ApplyOptions::default() };
            apply(&spec, &sd, &opts, &mut |_| {}).expect("apply");
        }
        let o = observe(&sd, dir.path(), "app").expect("status");
        assert!(o.exists() && o.unit_text("v1").is_some_and(|t| t.contains("X-Baton-Version=v1")));
        assert!(o.release("v2").is_some_and(|r| r.enabled) && o.unit_text("v3").is_none());
        let s = o.status;
        assert_eq!(s.active_version.as_deref(), Some("v2"));
        assert_eq!(s.releases.len(), 2);
        assert!(s.releases[1].enabled && !s.releases[0].enabled);
        let t = table(&s);
        assert!(t.contains("* v2") && t.contains("app-v1.service"), "{t}");
        assert!(s.socket.is_none() && !t.contains("socket"), "reuseport mode has no socket: {t}");
    }

    #[test]
    fn shows_the_socket_in_socket_mode_and_adopt_reads_its_address_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = FakeSystemd::new();
        // As a socket-mode handover leaves it: two releases, v2 running, the socket naming it.
        for v in ["v1", "v2"] {
            let json = format!(
                r#"{{"name":"app","version":"{v}","exec_start":["/x"],"port":8080,"listen_mode":"socket","bind_address":"::1","unit_dir":"{}"}}"#,
                dir.path().display()
            );
            let spec = parse(json.as_bytes()).expect("valid");
            let unit = spec.unit().expect("a release");
            std::fs::write(dir.path().join(&unit), crate::unit::render::render(&spec).expect("renders")).expect("unit");
            let socket_text = socket::render(&spec, "app-v2.service").expect("port");
            std::fs::write(dir.path().join("app.socket"), socket_text).expect("socket");
        }
        sd.set_running("app-v2.service", true);
        sd.set_running("app.socket", false);
        let s = observe(&sd, dir.path(), "app").expect("status").status;
        let socket = s.socket.clone().expect("socket mode shows its socket");
        assert_eq!((socket.unit.as_str(), socket.listen.as_str()), ("app.socket", "[::1]:8080"));
        assert_eq!(socket.service, "app-v2.service", "Service= names the current release");
        let t = table(&s);
        assert!(t.contains("socket app.socket on [::1]:8080: ") && t.contains("starts app-v2.service"), "{t}");
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["socket"]["listen"], "[::1]:8080");

        let unit_dir = dir.path().to_str().expect("utf-8");
        let a = crate::adopt::adopt(&sd, unit_dir, "app").expect("adopted");
        assert_eq!(a.spec.listen_mode, Some(crate::spec::ListenMode::Socket));
        assert_eq!((a.spec.port, a.spec.bind_address.as_deref()), (Some(8080), Some("::1")));
    }
}
