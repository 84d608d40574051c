//! `net.ipv4.tcp_migrate_req`: with it on, the kernel moves the accept queue of a closing
//! `SO_REUSEPORT` listener to another listener of the group instead of resetting the queued
//! connections, which is what makes stopping the old release lossless.
//!
//! The sysctl exists since Linux 5.14 and is per network namespace. A missing file means the
//! kernel lacks it ([`Migrate::Unsupported`]); the handover still works there, only
//! connections queued at the very moment the old listener closes may be reset.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Where the sysctl lives in procfs.
pub(crate) const SYSCTL_PATH: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// The sysctl's name, as operators know it.
pub(crate) const SYSCTL_NAME: &str = "net.ipv4.tcp_migrate_req";

/// The sysctl as a run finds it: the one shape of the migrate setting, from the reading to the
/// plan to the step that turns it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Migrate {
    /// `net.ipv4.tcp_migrate_req` is 1.
    On,
    /// It is 0.
    Off,
    /// The kernel lacks it (older than 5.14), or it cannot be read.
    Unsupported,
}

/// The warning of a run that hands over on a kernel without the sysctl.
pub(crate) const UNSUPPORTED_WARNING: &str =
    "this kernel lacks net.ipv4.tcp_migrate_req (Linux >= 5.14): connections still \
     queued on the old release's listener when it closes may be reset";

/// Why the sysctl could not be read or turned on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MigrateError {
    /// The sysctl file exists but could not be read.
    #[error("cannot read {SYSCTL_NAME} from {path}")]
    Read {
        /// The sysctl file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The sysctl holds something other than 0 or 1.
    #[error("{SYSCTL_NAME} in {path} holds {value:?}, expected 0 or 1")]
    Unexpected {
        /// The sysctl file.
        path: PathBuf,
        /// What it holds.
        value: String,
    },
    /// Writing 1 failed (typically: not root, or a read-only /proc/sys in a container).
    #[error("cannot turn on {SYSCTL_NAME} (writing 1 to {path})")]
    Write {
        /// The sysctl file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// 1 was written but the sysctl still reads 0.
    #[error("cannot turn on {SYSCTL_NAME}: wrote 1 to {path} but it still reads 0")]
    NotApplied {
        /// The sysctl file.
        path: PathBuf,
    },
}

/// Makes sure `net.ipv4.tcp_migrate_req` is 1, writing it when it is 0. Ok(what it found):
/// [`Migrate::Off`] means it was turned on, [`Migrate::On`] and [`Migrate::Unsupported`] that
/// nothing was written.
pub(crate) fn ensure_on() -> Result<Migrate, MigrateError> {
    ensure_on_at(Path::new(SYSCTL_PATH))
}

/// The sysctl's current value ([`Migrate::Unsupported`] when the kernel lacks it or it cannot
/// be read).
pub(crate) fn read() -> Migrate {
    match read_at(Path::new(SYSCTL_PATH)) {
        Ok(Some(true)) => Migrate::On,
        Ok(Some(false)) => Migrate::Off,
        Ok(None) | Err(_) => Migrate::Unsupported,
    }
}

/// Reads the sysctl at `path`: `Ok(None)` when the file does not exist.
fn read_at(path: &Path) -> Result<Option<bool>, MigrateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MigrateError::Read { path: path.to_path_buf(), source }),
    };
    match text.trim() {
        "0" => Ok(Some(false)),
        "1" => Ok(Some(true)),
        other => Err(MigrateError::Unexpected { path: path.to_path_buf(), value: other.to_string() }),
    }
}

/// [`ensure_on`] against the sysctl file at `path` (a temp file in tests).
fn ensure_on_at(path: &Path) -> Result<Migrate, MigrateError> {
    match read_at(path)? {
        None => Ok(Migrate::Unsupported),
        Some(true) => Ok(Migrate::On),
        Some(false) => {
            // No `create`: a file that vanished must not be created, and no `truncate`: procfs
            // takes the write as a whole, and a regular file of "0\n" is overwritten in place.
            let write = OpenOptions::new().write(true).open(path).and_then(|mut file| file.write_all(b"1\n"));
            if let Err(source) = write {
                return Err(MigrateError::Write { path: path.to_path_buf(), source });
            }
            match read_at(path)? {
                Some(true) => Ok(Migrate::Off),
                _ => Err(MigrateError::NotApplied { path: path.to_path_buf() }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Only temp files: these tests never touch the host's real sysctl.

    use super::*;

    fn sysctl_file(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tcp_migrate_req");
        std::fs::write(&path, content).expect("write fixture");
        (dir, path)
    }

    #[test]
    fn already_on_is_left_alone() {
        let (_dir, path) = sysctl_file("1\n");
        assert_eq!(ensure_on_at(&path).expect("ensure"), Migrate::On);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "1\n");
    }

    #[test]
    fn off_is_turned_on() {
        let (_dir, path) = sysctl_file("0\n");
        assert_eq!(ensure_on_at(&path).expect("ensure"), Migrate::Off);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "1\n");
        assert_eq!(read_at(&path).expect("read"), Some(true));
        assert_eq!(ensure_on_at(&path).expect("ensure again"), Migrate::On);
    }

    #[test]
    fn missing_file_is_unsupported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tcp_migrate_req");
        assert_eq!(ensure_on_at(&path).expect("ensure"), Migrate::Unsupported);
        assert!(!path.exists(), "a missing sysctl must not be created");
        assert_eq!(read_at(&path).expect("read"), None);
    }

    #[test]
    fn garbage_is_an_error_naming_the_sysctl() {
        let (_dir, path) = sysctl_file("yes\n");
        let err = ensure_on_at(&path).expect_err("garbage");
        assert!(matches!(err, MigrateError::Unexpected { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(SYSCTL_NAME), "{msg}");
        assert!(msg.contains("\"yes\""), "{msg}");
    }

    #[test]
    fn unwritable_file_is_a_write_error() {
        let (_dir, path) = sysctl_file("0\n");
        let mut perms = std::fs::metadata(&path).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
        std::fs::set_permissions(&path, perms).expect("chmod");
        match ensure_on_at(&path) {
            // root ignores file modes: the write goes through.
            Ok(status) => assert_eq!(status, Migrate::Off),
            Err(err) => {
                assert!(matches!(err, MigrateError::Write { .. }), "{err:?}");
                assert!(err.to_string().starts_with("cannot turn on"), "{err}");
            }
        }
    }

    #[test]
    fn read_of_the_real_sysctl_never_fails() {
        // Reading only; whatever the host has is fine.
        let _: Migrate = read();
    }
}
