//! The unit directory on disk: finds a service's release unit files by their X-Baton marks,
//! writes a unit atomically (temp file, fsync, rename, fsync the directory) and removes one.
//!
//! The directory must be root's alone (see [`crate::safe_fs::open_trusted_dir`]): systemd runs
//! what it holds as root. Inside it, nothing is followed or trusted blindly: existing files are
//! opened without following symbolic links or blocking on FIFOs, must be regular files and are
//! read up to [`MAX_READ`]; temp files get random names and are created exclusively.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::safe_fs::{self, DirProblem, ReadProblem, MAX_READ};
use crate::unit::parse::read_marks;

/// A unit-directory operation that failed, naming the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    /// Reading the directory or a file failed.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing a unit failed; nothing was left half-written.
    #[error("cannot write {path} (the unit file was left as it was)")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Removing a unit failed.
    #[error("cannot remove {path}")]
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
    /// The unit directory is not root's alone: another user could plant or swap units.
    #[error(
        "refusing the unit directory {dir}: {problem}; it must be a directory owned by root that no group or \
         other user can write, since systemd runs its units as root"
    )]
    UnsafeDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Something at a unit's path is not a file baton can have written: a symbolic link, a
    /// FIFO, a device, or a file larger than [`MAX_READ`].
    #[error("refusing to read {path}: {problem}; baton only reads regular unit files of at most 1 MiB")]
    NotAUnit {
        /// The path.
        path: PathBuf,
        /// What it is.
        problem: String,
    },
}

/// One release unit file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitFile {
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

/// The prefix of temp files baton writes beside a unit (a random suffix follows).
fn temp_prefix(unit: &str) -> String {
    format!(".{unit}.baton-tmp-")
}

/// Opens `dir` if it is a directory baton may trust; `Ok(None)` when it does not exist.
fn open_dir(dir: &Path) -> Result<Option<OwnedFd>, DiskError> {
    match safe_fs::open_trusted_dir(dir) {
        Ok(fd) => Ok(Some(fd)),
        Err(DirProblem::Missing) => Ok(None),
        Err(DirProblem::Untrusted(problem)) => Err(DiskError::UnsafeDir { dir: dir.to_owned(), problem }),
        Err(DirProblem::Io(source)) => Err(DiskError::Read { path: dir.to_owned(), source }),
    }
}

/// Lists the release unit files of `service` in `dir`: every `*.service` file whose
/// `X-Baton-Service` mark names it. A missing directory holds no releases. Anything that is
/// not a regular file of at most [`MAX_READ`] bytes is no release.
pub(crate) fn releases(dir: &Path, service: &str) -> Result<Vec<UnitFile>, DiskError> {
    let prefix = format!("{service}-");
    let instance_prefix = format!("{service}@");
    let mut out: Vec<UnitFile> = scan(dir, &|name| name.starts_with(&prefix) || name.starts_with(&instance_prefix))?
        .into_iter()
        .filter(|(svc, _)| svc == service)
        .map(|(_, file)| file)
        .collect();
    out.sort_by(|a, b| a.unit.cmp(&b.unit));
    Ok(out)
}

/// The services with a release in `dir`, sorted, each once: what [`releases`] finds, for every
/// service at once. A missing directory holds none.
pub(crate) fn services(dir: &Path) -> Result<Vec<String>, DiskError> {
    let services: std::collections::BTreeSet<String> = scan(dir, &|_| true)?.into_iter().map(|(svc, _)| svc).collect();
    Ok(services.into_iter().collect())
}

/// Every release in `dir` among the entries whose name `wanted` accepts, with its service: a
/// `*.service` file named as the release its `X-Baton-Service`/`X-Baton-Version` marks make,
/// and an instance release's drop-in (`<service>@<version>.service.d/baton.conf`). Only the
/// files of wanted entries are read.
fn scan(dir: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, UnitFile)>, DiskError> {
    let Some(dir_fd) = open_dir(dir)? else {
        return Ok(Vec::new());
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(DiskError::Read { path: dir.to_owned(), source }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DiskError::Read { path: dir.to_owned(), source })?;
        let file_name = entry.file_name();
        let Some(unit) = file_name.to_str().filter(|name| wanted(name)) else {
            continue;
        };
        // Instance releases: the drop-in `<service>@<version>.service.d/baton.conf`.
        if let Some(instance) = unit.strip_suffix(".d").filter(|u| u.ends_with(".service")) {
            if let Some((service, _)) = instance.split_once('@') {
                if let Some(file) = instance_release(dir, instance, service)? {
                    out.push((service.to_owned(), file));
                }
            }
            continue;
        }
        if !unit.ends_with(".service") {
            continue;
        }
        let path = dir.join(unit);
        let (bytes, meta) = match safe_fs::read_regular_at(&dir_fd, unit, MAX_READ) {
            Ok(Some(read)) => read,
            Ok(None) | Err(ReadProblem::NotRegular(_) | ReadProblem::TooLarge(_)) => continue,
            Err(ReadProblem::Io(source)) => return Err(DiskError::Read { path, source }),
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let Some((service, version)) = read_marks(&text) else {
            continue;
        };
        if crate::spec::unit_name(&service, &version) != unit {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        out.push((service, UnitFile { unit: unit.to_owned(), version, path, text, modified }));
    }
    Ok(out)
}

/// The release `unit` of `service` from its drop-in in `dir` (see [`crate::unit::instance`]), if
/// there is one: a trusted `<unit>.d` directory holding a regular `baton.conf` marked as that
/// release. Anything else (a symbolic link, a directory others may write, no marks) is no release.
fn instance_release(dir: &Path, unit: &str, service: &str) -> Result<Option<UnitFile>, DiskError> {
    let path = crate::unit::instance::drop_in_path(dir, unit);
    let Some(drop_dir) = path.parent() else {
        return Ok(None);
    };
    let dir_fd = match safe_fs::open_trusted_dir(drop_dir) {
        Ok(fd) => fd,
        Err(DirProblem::Missing | DirProblem::Untrusted(_)) => return Ok(None),
        Err(DirProblem::Io(source)) => return Err(DiskError::Read { path: drop_dir.to_owned(), source }),
    };
    let (bytes, meta) = match safe_fs::read_regular_at(&dir_fd, crate::unit::instance::DROP_IN, MAX_READ) {
        Ok(Some(read)) => read,
        Ok(None) | Err(ReadProblem::NotRegular(_) | ReadProblem::TooLarge(_)) => return Ok(None),
        Err(ReadProblem::Io(source)) => return Err(DiskError::Read { path, source }),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(None);
    };
    match read_marks(&text) {
        Some((svc, version)) if svc == service && crate::spec::instance_unit_name(service, &version) == unit => {
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            Ok(Some(UnitFile { unit: unit.to_owned(), version, path, text, modified }))
        }
        _ => Ok(None),
    }
}

/// The file that holds release `unit` in `dir`: the unit file itself (`<dir>/<unit>`), or for an
/// instance unit its drop-in (`<dir>/<unit>.d/baton.conf`).
pub(crate) fn release_path(dir: &Path, unit: &str) -> PathBuf {
    if crate::unit::instance::is_instance(unit) {
        crate::unit::instance::drop_in_path(dir, unit)
    } else {
        dir.join(unit)
    }
}

/// Reads the file at `path` if it exists; `Ok(None)` when it does not. Its directory must be
/// trusted, and the file a regular file of at most [`MAX_READ`] bytes (a symbolic link, a FIFO
/// or a device is refused at once, never followed, waited on or read).
pub(crate) fn read_existing(path: &Path) -> Result<Option<String>, DiskError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(DiskError::NotAUnit { path: path.to_owned(), problem: "it names no file".to_owned() });
    };
    let Some(dir_fd) = open_dir(dir)? else {
        return Ok(None);
    };
    match safe_fs::read_regular_at(&dir_fd, name, MAX_READ) {
        Ok(Some((bytes, _))) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Ok(None) => Ok(None),
        Err(ReadProblem::Io(source)) => Err(DiskError::Read { path: path.to_owned(), source }),
        Err(problem) => Err(DiskError::NotAUnit { path: path.to_owned(), problem: problem.to_string() }),
    }
}

/// Checks that an existing file at `path` is baton's release `version` of `service`.
pub(crate) fn check_owned(path: &Path, text: &str, service: &str, version: &str) -> Result<(), DiskError> {
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

/// Writes `text` to `dir/unit` atomically with mode 0644: a temp file with a random name
/// created exclusively (`O_EXCL|O_NOFOLLOW`) in the same directory, fsync, rename over the
/// target, fsync the directory. Creates `dir` (0755) if missing; refuses a directory that is
/// not root's alone.
pub(crate) fn write_atomic(dir: &Path, unit: &str, text: &str) -> Result<PathBuf, DiskError> {
    let path = dir.join(unit);
    let werr = |source| DiskError::Write { path: path.clone(), source };
    let dir_fd = match open_dir(dir)? {
        Some(fd) => fd,
        None => {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(werr)?;
            open_dir(dir)?.ok_or_else(|| werr(io::ErrorKind::NotFound.into()))?
        }
    };
    let (mut file, tmp) = safe_fs::create_exclusive(&dir_fd, &temp_prefix(unit), 0o644).map_err(werr)?;
    let result = (|| {
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        rustix::fs::renameat(&dir_fd, tmp.as_str(), &dir_fd, unit)?;
        rustix::fs::fsync(&dir_fd)?;
        Ok::<(), io::Error>(())
    })();
    if let Err(source) = result {
        let _ = rustix::fs::unlinkat(&dir_fd, tmp.as_str(), rustix::fs::AtFlags::empty());
        return Err(DiskError::Write { path, source });
    }
    Ok(path)
}

/// Removes a unit file and syncs the directory; a file already gone is fine. A drop-in's
/// `<unit>.d` directory goes too once it is empty (one holding other files stays).
pub(crate) fn remove(path: &Path) -> Result<(), DiskError> {
    let gone = match fs::remove_file(path) {
        Ok(()) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(source) => return Err(DiskError::Remove { path: path.to_owned(), source }),
    };
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let drop_in_dir = dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".service.d"));
    if drop_in_dir {
        match fs::remove_dir(dir) {
            Ok(()) => {
                let parent = dir.parent().unwrap_or(dir);
                return sync_dir(parent).map_err(|source| DiskError::Remove { path: dir.to_owned(), source });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Not empty: another drop-in (the operator's) stays with its directory.
            Err(_) => {}
        }
    }
    if gone {
        return Ok(());
    }
    sync_dir(dir).map_err(|source| DiskError::Remove { path: path.to_owned(), source })
}

/// The file a temp name of baton's is for: `file` for `.<file>.baton-tmp-<16 hex digits>` (the
/// name [`write_atomic`] gives its temp file), None for any other name.
fn temp_file_of(name: &str) -> Option<&str> {
    let (file, suffix) = name.strip_prefix('.')?.rsplit_once(".baton-tmp-")?;
    let random = suffix.len() == 16 && suffix.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (random && !file.is_empty()).then_some(file)
}

/// Whether the entry `name` of `dir` is a regular file last modified before `before` (a
/// symbolic link or anything else is never touched).
fn regular_and_older(dir: &OwnedFd, name: &str, before: SystemTime) -> bool {
    let Ok(st) = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) else {
        return false;
    };
    let regular = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile;
    let modified = SystemTime::UNIX_EPOCH
        + std::time::Duration::new(
            u64::try_from(st.st_mtime).unwrap_or(0),
            u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        );
    regular && st.st_mtime >= 0 && modified < before
}

/// Removes the temp files a killed run of `service` left in `dir` (best effort): baton's own
/// temp names only (`.<file>.baton-tmp-<16 hex digits>`), regular files only, and only those last
/// modified before `locked_at`, when this run took the service's lock (no run of the service
/// can be writing them since). The files of the service are: the release `target`, the
/// template `<service>@.service`, the socket `<service>.socket`, a per-version release unit
/// whose temp file is marked as the service's (a name alone could be another service's:
/// `app-api-v1.service`), and the drop-in in each `<service>@*.service.d` directory.
pub(crate) fn clean_temp_files(dir: &Path, service: &str, target: &str, locked_at: SystemTime) {
    let Ok(Some(dir_fd)) = open_dir(dir) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let (template, socket) = (crate::spec::template_unit_name(service), crate::spec::socket_unit_name(service));
    let release_prefix = format!("{service}-");
    let drop_in_prefix = format!("{service}@");
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with(&drop_in_prefix) && name.ends_with(".service.d") {
            clean_drop_in_temp_files(&dir.join(&name), locked_at);
            continue;
        }
        let Some(file) = temp_file_of(&name) else {
            continue;
        };
        let ours = file == target
            || file == template
            || file == socket
            || (file.starts_with(&release_prefix)
                && file.ends_with(".service")
                && matches!(safe_fs::read_regular_at(&dir_fd, &name, MAX_READ),
                    Ok(Some((bytes, _))) if read_marks(&String::from_utf8_lossy(&bytes)).is_some_and(|(s, _)| s == service)));
        if ours && regular_and_older(&dir_fd, &name, locked_at) {
            let _ = rustix::fs::unlinkat(&dir_fd, name.as_str(), rustix::fs::AtFlags::empty());
        }
    }
}

/// [`clean_temp_files`] in an instance's drop-in directory (trusted, not a symbolic link): the
/// temp files of its `baton.conf`.
fn clean_drop_in_temp_files(drop_dir: &Path, locked_at: SystemTime) {
    let Ok(dir_fd) = safe_fs::open_trusted_dir(drop_dir) else {
        return;
    };
    let Ok(entries) = fs::read_dir(drop_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if temp_file_of(&name) == Some(crate::unit::instance::DROP_IN) && regular_and_older(&dir_fd, &name, locked_at) {
            let _ = rustix::fs::unlinkat(&dir_fd, name.as_str(), rustix::fs::AtFlags::empty());
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

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
    fn lists_every_service_with_a_release_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_atomic(dir.path(), "app-v1.service", &unit("app", "v1")).expect("write");
        write_atomic(dir.path(), "app-v2.service", &unit("app", "v2")).expect("write");
        write_atomic(dir.path(), "db-v1.service", &unit("db", "v1")).expect("write");
        write_atomic(dir.path(), "app-x.service", &unit("other", "x")).expect("write");
        write_atomic(dir.path(), "cron.service", "[Unit]\nDescription=hand made\n").expect("write");
        write_atomic(dir.path(), "app.socket", "[Socket]\nListenStream=80\n").expect("write");
        assert_eq!(services(dir.path()).expect("scan"), ["app", "db"]);
        assert!(services(&dir.path().join("missing")).expect("missing dir").is_empty());
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

    /// A temp file `name` in `dir` holding `text`, last modified `age` ago.
    fn temp(dir: &Path, name: &str, text: &str, age: std::time::Duration) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).expect("write temp");
        let file = fs::File::options().write(true).open(&path).expect("open temp");
        file.set_modified(SystemTime::now() - age).expect("set mtime");
        path
    }

    #[test]
    fn a_killed_runs_temp_files_of_the_service_go_and_nothing_else_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let old = std::time::Duration::from_secs(60);
        let hex = "0123456789abcdef";
        fs::create_dir(d.join("app@v1.service.d")).expect("mkdir");
        fs::create_dir(d.join("other@v1.service.d")).expect("mkdir");
        let gone = [
            temp(d, &format!(".app@.service.baton-tmp-{hex}"), "partial template", old),
            temp(d, &format!("app@v1.service.d/.baton.conf.baton-tmp-{hex}"), "", old),
            temp(d, &format!(".app-v2.service.baton-tmp-{hex}"), "", old),
            temp(d, &format!(".app-v3.service.baton-tmp-{hex}"), &unit("app", "v3"), old),
            temp(d, &format!(".app.socket.baton-tmp-{hex}"), "", old),
        ];
        let kept = [
            // Not baton's temp name: no random suffix, or another file's name.
            temp(d, ".app@.service.baton-tmp-notrandom", "", old),
            temp(d, &format!(".app@.service.baton-tmp-{}", hex.to_uppercase()), "", old),
            temp(d, &format!("app@v1.service.d/.other.conf.baton-tmp-{hex}"), "", old),
            temp(d, "app@v1.service.d/mine.conf", "", old),
            // Another service's: its template, its drop-in, a release of service app-api.
            temp(d, &format!(".other@.service.baton-tmp-{hex}"), "", old),
            temp(d, &format!("other@v1.service.d/.baton.conf.baton-tmp-{hex}"), "", old),
            temp(d, &format!(".app-api-v1.service.baton-tmp-{hex}"), &unit("app-api", "v1"), old),
            temp(d, &format!(".app-api-v2.service.baton-tmp-{hex}"), "", old),
            // Newer than the lock: not left by a killed run of the service.
            temp(d, &format!(".app@.service.baton-tmp-{}", "f".repeat(16)), "", std::time::Duration::ZERO),
        ];
        let link = d.join(format!(".app@.service.baton-tmp-{}", "e".repeat(16)));
        std::os::unix::fs::symlink(victim(d), &link).expect("symlink");

        clean_temp_files(d, "app", "app-v2.service", SystemTime::now() - std::time::Duration::from_secs(30));
        for p in &gone {
            assert!(fs::symlink_metadata(p).is_err(), "{} is a stale temp file of app", p.display());
        }
        for p in kept.iter().chain([&link]) {
            assert!(fs::symlink_metadata(p).is_ok(), "{} is not app's stale temp file", p.display());
        }
        assert_eq!(fs::read_to_string(d.join("shadow")).expect("victim"), "root's secret\n");
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
    /// A 0600 file outside the unit directory, as an attacker's target.
    fn victim(dir: &Path) -> PathBuf {
        let victim = dir.join("shadow");
        fs::write(&victim, "root's secret\n").expect("write victim");
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).expect("chmod");
        victim
    }

    #[test]
    fn a_symlink_planted_at_the_temp_name_cannot_redirect_a_write() {
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let victim = victim(elsewhere.path());
        let dir = tempfile::tempdir().expect("tempdir");
        // The name the temp file used to have (predictable: the unit and our pid), and a few
        // more guesses: none of them is ever opened.
        for suffix in [std::process::id().to_string(), "0".to_owned(), "tmp".to_owned()] {
            let planted = dir.path().join(format!(".app-v1.service.baton-tmp-{suffix}"));
            std::os::unix::fs::symlink(&victim, planted).expect("symlink");
        }
        let path = write_atomic(dir.path(), "app-v1.service", &unit("app", "v1")).expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("read victim"), "root's secret\n");
        assert_eq!(fs::metadata(&victim).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).expect("read unit"), unit("app", "v1"));
        assert!(!fs::symlink_metadata(&path).expect("lstat").file_type().is_symlink());
    }

    /// `read_existing` of `path` in a thread: its error, or a panic if it takes longer than 5 s.
    fn read_error_fast(path: &Path) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(read_existing(&p).map(|t| t.map(|t| t.len())));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("read_existing did not return within 5 s");
        let err = got.expect_err("refused").to_string();
        assert!(err.contains(&path.display().to_string()), "names the file: {err}");
        err
    }

    #[test]
    fn a_fifo_in_place_of_a_unit_file_gives_a_clear_error_without_hanging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-v1.service");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        let err = read_error_fast(&path);
        assert!(err.contains("is a FIFO, not a regular file"), "{err}");
        assert!(releases(dir.path(), "app").expect("scan").is_empty());
    }

    #[test]
    fn a_symlink_to_dev_zero_in_place_of_a_unit_file_gives_a_clear_error_without_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app-v1.service");
        std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
        let err = read_error_fast(&path);
        assert!(err.contains("is a symbolic link, not a regular file"), "{err}");
        // A symbolic link to a marked unit elsewhere is no release either.
        let elsewhere = tempfile::tempdir().expect("tempdir");
        fs::write(elsewhere.path().join("u"), unit("app", "v2")).expect("write");
        std::os::unix::fs::symlink(elsewhere.path().join("u"), dir.path().join("app-v2.service")).expect("symlink");
        let err = read_error_fast(&dir.path().join("app-v2.service"));
        assert!(err.contains("symbolic link"), "{err}");
        assert!(releases(dir.path(), "app").expect("scan").is_empty());
    }

    #[test]
    fn a_unit_file_over_1_mib_is_refused_and_left_out_of_the_release_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = unit("app", "v1");
        text.push_str(&format!("# {}\n", "x".repeat(2 << 20)));
        fs::write(dir.path().join("app-v1.service"), &text).expect("write");
        fs::write(dir.path().join("app-v2.service"), unit("app", "v2")).expect("write");
        let err = read_error_fast(&dir.path().join("app-v1.service"));
        assert!(err.contains("larger than 1 MiB"), "{err}");
        let found: Vec<_> = releases(dir.path(), "app").expect("scan").into_iter().map(|u| u.version).collect();
        assert_eq!(found, ["v2"]);
    }

    #[test]
    fn a_unit_dir_writable_by_others_or_not_owned_by_root_is_refused_naming_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("units");
        fs::create_dir(&dir).expect("mkdir");
        write_atomic(&dir, "app-v1.service", &unit("app", "v1")).expect("write");
        let name = dir.display().to_string();
        for mode in [0o777, 0o1777, 0o775] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
            let e = releases(&dir, "app").expect_err("refused").to_string();
            assert!(e.contains(&name) && e.contains("writable"), "{e}");
            let e = write_atomic(&dir, "app-v2.service", &unit("app", "v2")).expect_err("refused").to_string();
            assert!(e.contains(&name) && e.contains("writable"), "{e}");
            let e = read_existing(&dir.join("app-v1.service")).expect_err("refused").to_string();
            assert!(e.contains(&name), "{e}");
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown (tests run as root)");
        let e = releases(&dir, "app").expect_err("refused").to_string();
        assert!(e.contains(&name) && e.contains("owned by uid 65534"), "{e}");
        assert!(!dir.join("app-v2.service").exists());
        // A symbolic link to a good directory is refused too.
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).expect("chown");
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let e = releases(&link, "app").expect_err("refused").to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }
}
