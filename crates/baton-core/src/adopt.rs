//! Adopting a service that is already deployed (Terraform's import): the release that stands
//! for it (the active one, else the enabled one, else the newest), its spec read back from its
//! unit file.

use std::path::{Path, PathBuf};

use crate::secrets;
use crate::spec::{Ident, ListenMode, RawSpec, SpecError};
use crate::state::{self, StateError};
use crate::systemd::Systemd;
use crate::unit::{readback, socket};

/// A deployed service, adopted.
#[derive(Debug, Clone, PartialEq)]
pub struct Adopted {
    /// The spec read back from the chosen release's unit: the unit's fields, everything else
    /// unset (the defaults).
    pub spec: RawSpec,
    /// Whether rendering `spec` gives the unit byte for byte (false for a unit edited by hand or
    /// rendered by a custom template: the fields are a best effort).
    pub exact: bool,
    /// The release's secret environment file, when its unit names one: secret values are never
    /// read back.
    pub secret_file: Option<PathBuf>,
    /// Whether the chosen release is running (else none is).
    pub active: bool,
    /// Whether the chosen release is enabled for boot.
    pub enabled: bool,
    /// The chosen release's unit file.
    pub unit_path: PathBuf,
    /// Its text.
    pub unit_text: String,
}

/// Why a service cannot be adopted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdoptError {
    /// The name breaks the spec's rule.
    #[error(transparent)]
    Name(SpecError),
    /// No release of the service is on disk.
    #[error("there is no release of service {name} in {unit_dir}")]
    NoRelease {
        /// The service.
        name: String,
        /// Where its unit files were looked for.
        unit_dir: String,
    },
    /// The chosen unit file carries no baton marks.
    #[error("{} carries no baton marks", .0.display())]
    NotMarked(PathBuf),
    /// The unit directory or systemd could not be read.
    #[error(transparent)]
    Read(#[from] StateError),
}

impl From<crate::systemd::SystemdError> for AdoptError {
    fn from(e: crate::systemd::SystemdError) -> Self {
        AdoptError::Read(e.into())
    }
}

/// Adopts the service `name` of `unit_dir`.
pub(crate) fn adopt(sd: &dyn Systemd, unit_dir: &str, name: &str) -> Result<Adopted, AdoptError> {
    Ident::parse("name", name).map_err(AdoptError::Name)?;
    let releases = state::read_releases(sd, Path::new(unit_dir), name)?;
    let active = state::active_release(&releases);
    let release = active
        .or_else(|| releases.iter().find(|r| r.status.is_enabled()))
        .or_else(|| releases.iter().max_by_key(|r| r.file.modified))
        .ok_or_else(|| AdoptError::NoRelease { name: name.to_owned(), unit_dir: unit_dir.to_owned() })?;
    let mut back = readback::read_back(&release.file.text, unit_dir)
        .ok_or_else(|| AdoptError::NotMarked(release.file.path.clone()))?;
    if back.spec.listen_mode == Some(ListenMode::Socket) {
        read_socket_back(&mut back.spec, Path::new(unit_dir), name)?;
    }
    Ok(Adopted {
        spec: back.spec,
        exact: back.exact,
        secret_file: back.secret_file.then(|| secrets::path(Path::new(unit_dir), &release.file.unit)),
        active: active.is_some(),
        enabled: release.status.is_enabled(),
        unit_path: release.file.path.clone(),
        unit_text: release.file.text.clone(),
    })
}

/// Socket mode: `port` and `bind_address` are in the service's socket unit (baton's, by its
/// mark), not in the release unit.
fn read_socket_back(spec: &mut RawSpec, unit_dir: &Path, name: &str) -> Result<(), StateError> {
    let path = unit_dir.join(crate::spec::socket_unit_name(name));
    let Some(text) = crate::unit_dir::read_existing(&path)? else {
        return Ok(());
    };
    if socket::owner(&text) != Some(name) {
        return Ok(());
    }
    if let Some((address, port)) = socket::listen(&text).and_then(socket::parse_listen) {
        spec.port = Some(u32::from(port));
        spec.bind_address = address.map(|a| a.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::{apply, ApplyOptions};
    use crate::spec::{parse, State};
    use crate::systemd::fake::FakeSystemd;

    fn deploy(sd: &FakeSystemd, dir: &Path, version: &str, state: State) {
        let json = format!(
            r#"{{"name":"app","version":"{version}","exec_start":["/bin/app","{version}"],"state":"{}","unit_dir":"{}"}}"#,
            state.as_str(),
            dir.display()
        );
        let spec = parse(json.as_bytes()).expect("valid");
        let opts = ApplyOptions { lock_dir: dir.join("l"), ..ApplyOptions::default() };
        apply(&spec, sd, &opts, &mut |_| {}).expect("apply");
    }

    #[test]
    fn adopts_the_active_release_else_the_enabled_one_else_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unit_dir = dir.path().to_str().expect("utf-8");
        let sd = FakeSystemd::new();
        let err = adopt(&sd, unit_dir, "app").expect_err("nothing deployed");
        assert_eq!(err.to_string(), format!("there is no release of service app in {unit_dir}"));
        assert!(matches!(adopt(&sd, unit_dir, "bad name"), Err(AdoptError::Name(_))));
        deploy(&sd, dir.path(), "v1", State::Started);
        deploy(&sd, dir.path(), "v2", State::Started);
        let a = adopt(&sd, unit_dir, "app").expect("adopted");
        assert_eq!((a.spec.version.as_str(), a.active, a.enabled, a.exact), ("v2", true, true, true));
        assert_eq!(a.spec.exec_start, ["/bin/app", "v2"]);
        assert!(a.unit_text.contains("X-Baton-Version=v2") && a.unit_path.ends_with("app-v2.service"));
        // Nothing running: the enabled release.
        sd.stop("app-v2.service", std::time::Duration::from_secs(1)).expect("stop");
        let a = adopt(&sd, unit_dir, "app").expect("adopted");
        assert_eq!((a.spec.version.as_str(), a.active, a.enabled), ("v2", false, true));
        // Nothing enabled either: the newest file.
        sd.disable(&["app-v2.service".to_owned()]).expect("disable");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let newer = std::fs::read_to_string(dir.path().join("app-v1.service")).expect("read");
        std::fs::write(dir.path().join("app-v1.service"), newer).expect("touch");
        let a = adopt(&sd, unit_dir, "app").expect("adopted");
        assert_eq!((a.spec.version.as_str(), a.active, a.enabled), ("v1", false, false));
    }
}
