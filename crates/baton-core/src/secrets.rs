//! The secret environment file of a release: the values of the spec's `secret_environment`,
//! kept out of the unit file (which is world-readable, and whose `Environment=` any local user
//! can read over D-Bus) in a file only root can read, which the unit names with
//! `EnvironmentFile=`.
//!
//! Where: `<unit_dir>/baton-secrets/<unit>.env`, e.g.
//! `/etc/systemd/system/baton-secrets/app-v1.service.env`. The directory is created 0700 and
//! must be trusted like the unit directory (owned by root, writable by nobody else, not a
//! symbolic link); each file is 0600, owned by root, written atomically (a random temp name
//! created `O_EXCL|O_NOFOLLOW`, fsync, rename, fsync the directory) and read back without
//! following links, as a regular file of at most 1 MiB. systemd ignores the directory when it
//! looks for units (its name has no unit suffix). Each file starts with comment lines naming its
//! service and release, so that files of releases whose unit is gone are still found and
//! removed.
//!
//! Values are written double-quoted, with `\`, `"`, `$` and `` ` `` escaped, as systemd's
//! environment-file parser reads them back exactly (it expands no variables and no specifiers).

use std::fs;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::safe_fs::{self, DirProblem, ReadProblem, MAX_READ};
use crate::spec::Secrets;
use crate::unit::{MARK_SERVICE, MARK_VERSION};
use crate::unit_dir::DiskError;

/// The directory in the unit directory that holds the secret files.
pub(crate) const DIR_NAME: &str = "baton-secrets";

/// What a diff shows for a secret file that is written: never its values.
pub(crate) const DIFF_CHANGED: &str = "secret_environment: changed (values hidden)\n";
/// What a diff shows for a secret file that exists (before a change, or before its removal).
pub(crate) const DIFF_PRESENT: &str = "secret_environment: (values hidden)\n";

/// The text of a secret file: baton's secret, with a [`fmt::Debug`](std::fmt::Debug) that never
/// shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(values hidden)")
    }
}

/// One secret file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretFile {
    /// The unit it belongs to, from its file name.
    pub unit: String,
    /// The release, from its mark.
    pub version: String,
    /// The file's path.
    pub path: PathBuf,
    /// Its text.
    pub text: SecretText,
    /// When it was written.
    pub modified: SystemTime,
    /// Whether only its owner, root (or the user baton runs as), can read it (mode 0600): one
    /// that is not is rewritten.
    pub private: bool,
}

/// The directory of the secret files of units in `unit_dir`.
pub(crate) fn dir(unit_dir: &Path) -> PathBuf {
    unit_dir.join(DIR_NAME)
}

/// The secret file of `unit` in `unit_dir`.
pub(crate) fn path(unit_dir: &Path, unit: &str) -> PathBuf {
    dir(unit_dir).join(file_name(unit))
}

fn file_name(unit: &str) -> String {
    format!("{unit}.env")
}

/// The text of the secret file of release `version` of `service`.
pub(crate) fn render(service: &str, version: &str, secrets: &Secrets) -> SecretText {
    let mut out = format!(
        "# Managed by baton: the secret environment of release {version} of service {service}.\n\
         # {MARK_SERVICE}={service}\n# {MARK_VERSION}={version}\n"
    );
    for (key, value) in secrets.expose() {
        out.push_str(key);
        out.push_str("=\"");
        for c in value.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\"\n");
    }
    SecretText(out)
}

/// The SHA-256 of a secret file's text, in hex: what a read reports of the file, so that a file
/// changed by hand shows as drift without its values (the text never leaves the host).
pub(crate) fn digest(text: &SecretText) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.0.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest (see [`Observed::secret_digest`](crate::Observed::secret_digest)) of the secret
/// file that release `version` of `service` has with `secrets`, as baton writes it.
pub fn expected_digest(service: &str, version: &str, secrets: &std::collections::BTreeMap<String, String>) -> String {
    digest(&render(service, version, &Secrets::from(secrets.clone())))
}

/// The digest of each secret file of `service` in `unit_dir`, by unit; None when the secret
/// directory may not be read (anyone but root), so that nothing can be told about the files.
pub(crate) fn digests(
    unit_dir: &Path,
    service: &str,
) -> Result<Option<std::collections::BTreeMap<String, String>>, DiskError> {
    match open_dir(unit_dir) {
        Err(DiskError::Read { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    Ok(Some(list(unit_dir, service)?.into_iter().map(|f| (f.unit, digest(&f.text))).collect()))
}

/// The service and release a secret file's marks name.
fn read_marks(text: &str) -> Option<(String, String)> {
    let (mut service, mut version) = (None, None);
    for line in text.lines().take(3) {
        let Some(rest) = line.strip_prefix("# ") else { continue };
        if let Some(v) = rest.strip_prefix(&format!("{MARK_SERVICE}=")) {
            service = Some(v.to_owned());
        } else if let Some(v) = rest.strip_prefix(&format!("{MARK_VERSION}=")) {
            version = Some(v.to_owned());
        }
    }
    Some((service?, version?))
}

/// Opens the secret directory if it exists and is trusted.
fn open_dir(unit_dir: &Path) -> Result<Option<OwnedFd>, DiskError> {
    let d = dir(unit_dir);
    match safe_fs::open_trusted_dir(&d) {
        Ok(fd) => Ok(Some(fd)),
        Err(DirProblem::Missing) => Ok(None),
        Err(DirProblem::Untrusted(problem)) => Err(DiskError::UnsafeDir { dir: d, problem }),
        Err(DirProblem::Io(source)) => Err(DiskError::Read { path: d, source }),
    }
}

/// The secret files of `service` in `unit_dir` (found by their marks), sorted by unit. A user
/// who may not open the directory (anyone but root: `baton status` run by an operator) sees
/// none; a run that must write one then fails writing it, naming the file.
pub(crate) fn list(unit_dir: &Path, service: &str) -> Result<Vec<SecretFile>, DiskError> {
    let dir_fd = match open_dir(unit_dir) {
        Ok(Some(fd)) => fd,
        Ok(None) => return Ok(Vec::new()),
        Err(DiskError::Read { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let d = dir(unit_dir);
    let entries = fs::read_dir(&d).map_err(|source| DiskError::Read { path: d.clone(), source })?;
    let prefix = format!("{service}-");
    let instance_prefix = format!("{service}@");
    let euid = rustix::process::geteuid().as_raw();
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DiskError::Read { path: d.clone(), source })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(unit) = name
            .strip_suffix(".env")
            .filter(|u| (u.starts_with(&prefix) || u.starts_with(&instance_prefix)) && u.ends_with(".service"))
        else {
            continue;
        };
        let (bytes, meta) = match safe_fs::read_regular_at(&dir_fd, name, MAX_READ) {
            Ok(Some(read)) => read,
            Ok(None) | Err(ReadProblem::NotRegular(_) | ReadProblem::TooLarge(_)) => continue,
            Err(ReadProblem::Io(source)) => return Err(DiskError::Read { path: d.join(name), source }),
        };
        let Ok(text) = String::from_utf8(bytes) else { continue };
        let Some((svc, version)) = read_marks(&text) else { continue };
        if svc != service || !crate::spec::is_release_unit(service, &version, unit) {
            continue;
        }
        out.push(SecretFile {
            unit: unit.to_owned(),
            version,
            path: d.join(name),
            text: SecretText(text),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            private: meta.permissions().mode() & 0o7777 == 0o600 && meta.uid() == euid,
        });
    }
    out.sort_by(|a, b| a.unit.cmp(&b.unit));
    Ok(out)
}

/// Writes the secret file of `unit` atomically, mode 0600; creates the secret directory (0700)
/// if missing. Both directories must be trusted.
pub(crate) fn write(unit_dir: &Path, unit: &str, text: &SecretText) -> Result<PathBuf, DiskError> {
    let path = path(unit_dir, unit);
    let werr = |source| DiskError::Write { path: path.clone(), source };
    // The unit directory itself must be trusted before anything is created in it.
    match safe_fs::open_trusted_dir(unit_dir) {
        Ok(_) => {}
        Err(DirProblem::Missing) => fs::DirBuilder::new().recursive(true).mode(0o755).create(unit_dir).map_err(werr)?,
        Err(DirProblem::Untrusted(problem)) => return Err(DiskError::UnsafeDir { dir: unit_dir.to_owned(), problem }),
        Err(DirProblem::Io(source)) => return Err(DiskError::Read { path: unit_dir.to_owned(), source }),
    }
    let dir_fd = match open_dir(unit_dir)? {
        Some(fd) => fd,
        None => {
            match fs::DirBuilder::new().mode(0o700).create(dir(unit_dir)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(werr(e)),
            }
            open_dir(unit_dir)?.ok_or_else(|| werr(io::ErrorKind::NotFound.into()))?
        }
    };
    // Nobody but root lists or opens the secret files, whatever the directory's mode was.
    rustix::fs::fchmod(&dir_fd, rustix::fs::Mode::from_raw_mode(0o700)).map_err(|e| werr(e.into()))?;
    let name = file_name(unit);
    let (mut file, tmp) = safe_fs::create_exclusive(&dir_fd, &format!(".{name}.baton-tmp-"), 0o600).map_err(werr)?;
    let result = (|| {
        file.write_all(text.0.as_bytes())?;
        file.sync_all()?;
        drop(file);
        rustix::fs::renameat(&dir_fd, tmp.as_str(), &dir_fd, name.as_str())?;
        rustix::fs::fsync(&dir_fd)?;
        Ok::<(), io::Error>(())
    })();
    if let Err(source) = result {
        let _ = rustix::fs::unlinkat(&dir_fd, tmp.as_str(), rustix::fs::AtFlags::empty());
        return Err(DiskError::Write { path, source });
    }
    Ok(path)
}

/// Removes the secret file of `unit` (already gone is fine) and syncs the directory.
pub(crate) fn remove(unit_dir: &Path, unit: &str) -> Result<(), DiskError> {
    let path = path(unit_dir, unit);
    let Some(dir_fd) = open_dir(unit_dir)? else {
        return Ok(());
    };
    match rustix::fs::unlinkat(&dir_fd, file_name(unit).as_str(), rustix::fs::AtFlags::empty()) {
        Ok(()) => {}
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(DiskError::Remove { path, source: e.into() }),
    }
    rustix::fs::fsync(&dir_fd).map_err(|e| DiskError::Remove { path, source: e.into() })
}

/// Removes temp files a killed run left beside the secret file of `unit` (best effort).
pub(crate) fn clean_temp_files(unit_dir: &Path, unit: &str) {
    let prefix = format!(".{}.baton-tmp-", file_name(unit));
    let Ok(Some(dir_fd)) = open_dir(unit_dir) else {
        return;
    };
    if let Ok(entries) = fs::read_dir(dir(unit_dir)) {
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str().filter(|n| n.starts_with(&prefix)) {
                let _ = rustix::fs::unlinkat(&dir_fd, name, rustix::fs::AtFlags::empty());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        Secrets::from(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn values_are_quoted_as_systemd_reads_them_back() {
        let text = render("app", "v1", &secrets(&[("A", r#"Pa$$w0rd%"x\`y"#), ("B", " lead\ttab ")]));
        assert_eq!(text.0.lines().skip(3).collect::<Vec<_>>(), [r#"A="Pa\$\$w0rd%\"x\\\`y""#, "B=\" lead\ttab \""]);
        assert_eq!(read_marks(&text.0), Some(("app".to_owned(), "v1".to_owned())));
        assert!(!format!("{text:?}").contains("Pa$$"));
    }

    #[test]
    fn secret_files_are_private_and_found_by_their_marks() {
        let root = tempfile::tempdir().expect("tempdir");
        let units = root.path().join("units");
        let text = render("app", "v1", &secrets(&[("K", "s3cr3t")]));
        let p = write(&units, "app-v1.service", &text).expect("write");
        assert_eq!(p, units.join("baton-secrets/app-v1.service.env"));
        assert_eq!(fs::metadata(&p).expect("meta").permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::metadata(dir(&units)).expect("meta").permissions().mode() & 0o7777, 0o700);
        // Another service's file and a file whose marks disagree with its name are not app's.
        write(&units, "app-x-v1.service", &render("app-x", "v1", &secrets(&[("K", "v")]))).expect("write");
        write(&units, "app-v2.service", &render("app", "v3", &secrets(&[("K", "v")]))).expect("write");
        let found = list(&units, "app").expect("list");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].unit.as_str(), found[0].version.as_str()), ("app-v1.service", "v1"));
        assert!(found[0].private && found[0].text == text);
        // A file made readable by others is no longer private (the next run rewrites it).
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(!list(&units, "app").expect("list")[0].private);
        remove(&units, "app-v1.service").expect("remove");
        remove(&units, "app-v1.service").expect("already gone");
        assert!(!p.exists());
    }

    #[test]
    fn digests_tell_a_file_changed_by_hand_without_its_values() {
        let root = tempfile::tempdir().expect("tempdir");
        let units = root.path().join("units");
        let map: BTreeMap<String, String> = [("K".to_owned(), "s3cr3t".to_owned())].into();
        assert_eq!(digests(&units, "app").expect("no directory"), Some(BTreeMap::new()));
        let p = write(&units, "app-v1.service", &render("app", "v1", &Secrets::from(map.clone()))).expect("write");
        let expected = expected_digest("app", "v1", &map);
        assert_eq!(expected.len(), 64);
        assert!(!expected.contains("s3cr3t"));
        let found = digests(&units, "app").expect("read").expect("readable");
        assert_eq!(found.get("app-v1.service"), Some(&expected));
        let edited = fs::read_to_string(&p).expect("read").replace("s3cr3t", "by-hand");
        fs::write(&p, edited).expect("edit");
        let found = digests(&units, "app").expect("read").expect("readable");
        assert_ne!(found.get("app-v1.service"), Some(&expected));
        assert_ne!(expected_digest("app", "v2", &map), expected, "the release is part of the file");
    }

    #[test]
    fn an_untrusted_secret_directory_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir(root.path())).expect("mkdir");
        fs::set_permissions(dir(root.path()), fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = write(root.path(), "app-v1.service", &SecretText("x".to_owned())).expect_err("refused");
        assert!(matches!(e, DiskError::UnsafeDir { .. }), "{e}");
        assert!(list(root.path(), "app").is_err());
    }
}
