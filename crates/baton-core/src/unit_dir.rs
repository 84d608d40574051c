//! The unit directory on disk: finds a service's release unit files by their X-Baton marks,
//! writes a unit atomically (temp file, fsync, rename, fsync the directory) and removes one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::render::read_marks;

/// A unit-directory operation that failed, naming the path.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Reading the directory or a file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing a unit failed; nothing was left half-written.
    #[error("cannot write {path}: {source}; the unit file was left as it was")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Removing a unit failed.
    #[error("cannot remove {path}: {source}")]
    Remove {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file baton would write is not one of its own.
    #[error("{path} exists and is not a baton release of service {service} ({found}); refusing to overwrite a unit baton did not write")]
    Foreign {
        /// The path.
        path: PathBuf,
        /// The service baton meant to write.
        service: String,
        /// What the file says instead.
        found: String,
    },
}

/// One release unit file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    /// The unit name, e.g. `app-v1.service`.
    pub unit: String,
    /// The release, from `X-Baton-Version`.
    pub version: String,
    /// The file's path.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    /// The file's modification time: when baton wrote the release, which orders releases for
    /// `keep` (touching it would make systemd report NeedDaemonReload).
    pub modified: SystemTime,
}

/// The prefix of temp files baton writes beside a unit.
fn temp_prefix(unit: &str) -> String {
    format!(".{unit}.baton-tmp-")
}

/// Lists the release unit files of `service` in `dir`: every `*.service` file whose
/// `X-Baton-Service` mark names it. A missing directory holds no releases.
pub fn releases(dir: &Path, service: &str) -> Result<Vec<UnitFile>, DiskError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(DiskError::Read { path: dir.to_owned(), source }),
    };
    let prefix = format!("{service}-");
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DiskError::Read { path: dir.to_owned(), source })?;
        let file_name = entry.file_name();
        let Some(unit) = file_name.to_str() else {
            continue;
        };
        if !unit.starts_with(&prefix) || !unit.ends_with(".service") {
            continue;
        }
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(DiskError::Read { path, source }),
        };
        if !meta.is_file() {
            continue;
        }
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(source) => return Err(DiskError::Read { path, source }),
        };
        let Some((svc, version)) = read_marks(&text) else {
            continue;
        };
        if svc != service || format!("{service}-{version}.service") != unit {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        out.push(UnitFile { unit: unit.to_owned(), version, path, text, modified });
    }
    out.sort_by(|a, b| a.unit.cmp(&b.unit));
    Ok(out)
}

/// Reads the file at `path` if it exists; `Ok(None)` when it does not.
pub fn read_existing(path: &Path) -> Result<Option<String>, DiskError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DiskError::Read { path: path.to_owned(), source }),
    }
}

/// Checks that an existing file at `path` is baton's release `version` of `service`.
pub fn check_owned(path: &Path, text: &str, service: &str, version: &str) -> Result<(), DiskError> {
    match read_marks(text) {
        Some((s, v)) if s == service && v == version => Ok(()),
        Some((s, v)) => Err(DiskError::Foreign {
            path: path.to_owned(),
            service: service.to_owned(),
            found: format!("it is marked as release {v} of service {s}"),
        }),
        None => Err(DiskError::Foreign {
            path: path.to_owned(),
            service: service.to_owned(),
            found: "it has no X-Baton-Service/X-Baton-Version marks".to_owned(),
        }),
    }
}

/// Writes `text` to `dir/unit` atomically with mode 0644: a temp file in the same directory,
/// fsync, rename over the target, fsync the directory. Creates `dir` if missing.
pub fn write_atomic(dir: &Path, unit: &str, text: &str) -> Result<PathBuf, DiskError> {
    let path = dir.join(unit);
    let werr = |source| DiskError::Write { path: path.clone(), source };
    fs::create_dir_all(dir).map_err(werr)?;
    let tmp = dir.join(format!("{}{}", temp_prefix(unit), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path)?;
        sync_dir(dir)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(DiskError::Write { path, source });
    }
    Ok(path)
}

/// Removes a unit file and syncs the directory; a file already gone is fine.
pub fn remove(path: &Path) -> Result<(), DiskError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(DiskError::Remove { path: path.to_owned(), source }),
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(|source| DiskError::Remove { path: path.to_owned(), source })?;
    }
    Ok(())
}

/// Removes temp files a killed run left beside `unit` (best effort).
pub fn clean_temp_files(dir: &Path, unit: &str) {
    let prefix = temp_prefix(unit);
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(service: &str, version: &str) -> String {
        format!("[Unit]\nX-Baton-Service={service}\nX-Baton-Version={version}\n[Service]\nExecStart=/x\n")
    }

    #[test]
    fn finds_only_marked_releases_of_the_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_atomic(dir.path(), "app-v1.service", &unit("app", "v1")).expect("write");
        write_atomic(dir.path(), "app-v2.service", &unit("app", "v2")).expect("write");
        write_atomic(dir.path(), "app-x.service", &unit("other", "x")).expect("write");
        write_atomic(dir.path(), "app-y.service", "[Unit]\nDescription=hand made\n").expect("write");
        write_atomic(dir.path(), "app-v3.service", &unit("app", "v9")).expect("write");
        let found = releases(dir.path(), "app").expect("scan");
        let versions: Vec<_> = found.iter().map(|u| u.version.as_str()).collect();
        assert_eq!(versions, ["v1", "v2"]);
        assert!(releases(&dir.path().join("missing"), "app").expect("missing dir").is_empty());
    }

    #[test]
    fn atomic_write_mode_and_no_temp_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_atomic(dir.path(), "a-v1.service", "x").expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "x");
        assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path()).expect("ls").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn ownership_is_checked() {
        let p = Path::new("/x/app-v1.service");
        assert!(check_owned(p, &unit("app", "v1"), "app", "v1").is_ok());
        let e = check_owned(p, "[Unit]\n", "app", "v1").expect_err("foreign").to_string();
        assert!(e.contains("no X-Baton-Service"), "{e}");
        let e = check_owned(p, &unit("app-v1", ""), "app", "v1").expect_err("foreign");
        assert!(matches!(e, DiskError::Foreign { .. }));
    }
}
