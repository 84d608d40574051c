//! What is there now: a service's release unit files on disk (found by their X-Baton marks)
//! and what systemd reports about each. Nothing is stored anywhere else, so a run that was
//! killed at any step is picked up from here by the next one.

use std::path::{Path, PathBuf};

use crate::secrets::{self, SecretFile};
use crate::systemd::{Systemd, SystemdError, UnitStatus, NOT_LOADED};
use crate::unit_dir::{self, DiskError, UnitFile};

/// One release on disk, with its systemd status.
#[derive(Debug, Clone)]
pub(crate) struct Release {
    /// The unit file.
    pub(crate) file: UnitFile,
    /// What systemd says about the unit.
    pub(crate) status: UnitStatus,
}

impl Release {
    /// The release's version.
    pub(crate) fn version(&self) -> &str {
        &self.file.version
    }

    /// The unit name.
    pub(crate) fn unit(&self) -> &str {
        &self.file.unit
    }
}

/// Everything baton knows about one service before acting.
#[derive(Debug, Clone)]
pub(crate) struct ServiceState {
    /// The service's releases on disk, sorted by unit name.
    pub(crate) releases: Vec<Release>,
    /// The path of the target release's unit file.
    pub(crate) target_path: PathBuf,
    /// The bytes at the target path, whoever wrote them (None when there is no file).
    pub(crate) target_text: Option<String>,
    /// The target unit's status (also when its file is not a baton release).
    pub(crate) target_status: UnitStatus,
    /// The file systemd loads the target unit from, when it knows one: equal to `target_path`
    /// when that is the file (however the unit directory was spelled), anything else when
    /// another file owns the unit name (another package's unit that baton's would shadow).
    pub(crate) target_owner: Option<PathBuf>,
    /// The service's secret files (see [`crate::secrets`]), also those whose unit is gone.
    pub(crate) secrets: Vec<SecretFile>,
    /// The service's shared socket unit (socket mode), whether or not there is one.
    pub(crate) socket: SocketState,
    /// The template of the service's instance units (`<name>@.service`), whether or not there
    /// is one.
    pub(crate) template: TemplateState,
}

/// The template of a service's instance units, `<name>@.service` (see
/// [`crate::unit::instance`]): its file in the unit directory.
#[derive(Debug, Clone, Default)]
pub(crate) struct TemplateState {
    /// The unit name.
    pub(crate) unit: String,
    /// Where its file is (or would be).
    pub(crate) path: PathBuf,
    /// The bytes at that path, whoever wrote them (None when there is no file).
    pub(crate) text: Option<String>,
}

impl TemplateState {
    /// Whether the file there is baton's template of `service`.
    pub(crate) fn owned_by(&self, service: &str) -> bool {
        self.text.as_deref().and_then(crate::unit::instance::template_owner) == Some(service)
    }
}

/// The service's shared socket unit, `<name>.socket` (see [`crate::unit::socket`]): its file
/// and what systemd says about it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketState {
    /// The unit name.
    pub(crate) unit: String,
    /// Where its file is (or would be).
    pub(crate) path: PathBuf,
    /// The bytes at that path, whoever wrote them (None when there is no file).
    pub(crate) text: Option<String>,
    /// What systemd says about the unit.
    pub(crate) status: UnitStatus,
}

impl SocketState {
    /// Whether the file there is baton's socket of `service`.
    pub(crate) fn owned_by(&self, service: &str) -> bool {
        self.text.as_deref().and_then(crate::unit::socket::owner) == Some(service)
    }
}

/// Reading the state failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The unit directory.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// systemd.
    #[error(transparent)]
    Systemd(#[from] SystemdError),
}

impl ServiceState {
    /// Releases systemd counts as running (active, activating or reloading).
    pub(crate) fn running(&self) -> impl Iterator<Item = &Release> {
        self.releases.iter().filter(|r| r.status.is_running())
    }

    /// The release of `version`, if on disk.
    pub(crate) fn release(&self, version: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.version() == version)
    }

    /// The secret file of `unit`, if on disk.
    pub(crate) fn secret_file(&self, unit: &str) -> Option<&SecretFile> {
        self.secrets.iter().find(|f| f.unit == unit)
    }

    /// The release that counts as active: the running one entered most recently.
    pub(crate) fn active_version(&self) -> Option<String> {
        active_release(&self.releases).map(|r| r.version().to_owned())
    }
}

/// A service's releases in `unit_dir` (sorted by unit name), each with its status from systemd:
/// what status, observation and adoption read. No target release is involved.
pub(crate) fn read_releases(sd: &dyn Systemd, unit_dir: &Path, service: &str) -> Result<Vec<Release>, StateError> {
    let files = unit_dir::releases(unit_dir, service)?;
    let mut releases = Vec::with_capacity(files.len());
    for file in files {
        let status = sd.unit_status(&file.unit)?;
        releases.push(Release { file, status });
    }
    Ok(releases)
}

/// The release that counts as active among `releases`: the running one entered most recently.
pub(crate) fn active_release(releases: &[Release]) -> Option<&Release> {
    releases
        .iter()
        .filter(|r| r.status.is_running())
        .max_by_key(|r| (r.status.active_enter_timestamp_us, r.file.modified))
}

/// Reads a service's releases from `unit_dir` and their status from systemd, with what is at
/// the path of `target_unit`, the release a run acts on.
pub(crate) fn read(
    sd: &dyn Systemd,
    unit_dir: &Path,
    service: &str,
    target_unit: &str,
) -> Result<ServiceState, StateError> {
    let releases = read_releases(sd, unit_dir, service)?;
    let target_path = unit_dir::release_path(unit_dir, target_unit);
    let target_text = unit_dir::read_existing(&target_path)?;
    let target_status = match releases.iter().find(|r| r.unit() == target_unit) {
        Some(r) => r.status.clone(),
        None => sd.unit_status(target_unit)?,
    };
    let template = read_template(unit_dir, service)?;
    // An instance is loaded from its template: the file that must be baton's is the template's.
    let (owner, fragment) = if crate::unit::instance::is_instance(target_unit) {
        (sd.unit_file_path(&template.unit)?, template.path.clone())
    } else {
        // A unit systemd does not hold and for which it found no unit file (no UnitFileState)
        // has no owner: skip asking where its file is (a scan of every unit directory, a few ms).
        let unknown = !target_status.in_memory() && target_status.unit_file_state.is_empty();
        (if unknown { None } else { sd.unit_file_path(target_unit)? }, target_path.clone())
    };
    let target_owner = owner.map(|owner| if same_place(&owner, &fragment) { target_path.clone() } else { owner });
    let secrets = secrets::list(unit_dir, service)?;
    let socket = read_socket(sd, unit_dir, service)?;
    Ok(ServiceState { releases, target_path, target_text, target_status, target_owner, secrets, socket, template })
}

/// The service's instance template: its file in `unit_dir`.
pub(crate) fn read_template(unit_dir: &Path, service: &str) -> Result<TemplateState, StateError> {
    let unit = crate::spec::template_unit_name(service);
    let path = unit_dir.join(&unit);
    let text = unit_dir::read_existing(&path)?;
    Ok(TemplateState { unit, path, text })
}

/// The service's socket unit: its file in `unit_dir` and its status.
pub(crate) fn read_socket(sd: &dyn Systemd, unit_dir: &Path, service: &str) -> Result<SocketState, StateError> {
    let unit = crate::spec::socket_unit_name(service);
    let path = unit_dir.join(&unit);
    let text = unit_dir::read_existing(&path)?;
    // No file, no question to systemd: a service in reuseport mode (the default) has none, and
    // its no-op run must cost no more D-Bus calls than before socket mode existed.
    let status = match text {
        Some(_) => sd.unit_status(&unit)?,
        None => UnitStatus {
            load_state: NOT_LOADED.to_owned(),
            active_state: "inactive".to_owned(),
            ..UnitStatus::default()
        },
    };
    Ok(SocketState { unit, path, text, status })
}

/// Whether two paths name the same directory entry: the same file name in the same directory,
/// once symbolic links in the directories are resolved.
fn same_place(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.parent(), a.file_name(), b.parent(), b.file_name()) {
        (Some(da), Some(na), Some(db), Some(nb)) if na == nb => {
            matches!((std::fs::canonicalize(da), std::fs::canonicalize(db)), (Ok(x), Ok(y)) if x == y)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_unit_file_is_recognised_however_its_directory_is_spelled() {
        let root = tempfile::tempdir().expect("tempdir");
        let real = root.path().join("system");
        std::fs::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, root.path().join("link")).expect("symlink");
        let target = root.path().join("link/app-v1.service");
        assert!(same_place(&real.join("app-v1.service"), &target));
        assert!(same_place(&target, &target));
        assert!(!same_place(&real.join("app-v2.service"), &target));
        assert!(!same_place(Path::new("/lib/systemd/system/app-v1.service"), &target));
    }
}
