//! One run per service at a time: an exclusive `flock(2)` on `<dir>/<service>.lock`.
//!
//! The kernel releases a flock when the last descriptor of its open file goes away, so a run
//! that is killed (even with `SIGKILL`) never leaves a stale lock behind. The file itself stays
//! on disk (removing a lock file races with the next locker); while held it names its holder
//! (`pid=… since=… cmd=…`) so that a waiting run can say who it is waiting for.
//!
//! No other local user can block, break or redirect the lock: the directory is root's alone
//! (created `0700`, and refused unless it is a real directory owned by root that no group or
//! other user can write), lock files are `0600` and opened without following symbolic links,
//! and a lock taken on a file that is no longer the one at the path (unlinked or replaced
//! while this run waited) is dropped and taken again on the file that is there.

use std::fmt;
use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::safe_fs::{self, DirProblem};

/// Where the lock files live unless told otherwise: a directory only root can enter (not
/// `/run/lock`, which every user can write).
pub const DEFAULT_DIR: &str = "/run/baton";

/// How often a busy lock is tried again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How often the `on_wait` callback of [`acquire_with_progress`] is called while waiting.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// A wait for another run's lock, as [`acquire_with_progress`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockWait {
    /// Time waited so far.
    pub waited: Duration,
    /// What the lock file says about its holder (`pid=… since=… cmd=…`).
    pub holder: String,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another run held the lock for the whole timeout.
    #[error("service {service} is locked by another baton run ({holder}); waited {}", Secs(*.waited))]
    Busy {
        /// The service.
        service: String,
        /// What the lock file says about its holder.
        holder: String,
        /// How long this run waited (its timeout).
        waited: Duration,
    },
    /// The service name cannot be a lock file name.
    #[error("cannot lock service {service:?}: the name is not usable as a file name")]
    InvalidName {
        /// The service.
        service: String,
    },
    /// The lock directory could not be created.
    #[error("cannot create the lock directory {dir}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The lock directory is not root's alone: another user could block or break the lock.
    #[error(
        "refusing the lock directory {dir}: {problem}; it must be a directory owned by root that no group or \
         other user can write (baton creates it 0700)"
    )]
    UnsafeDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The lock file could not be opened or created.
    #[error("cannot open the lock file {path}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Something other than baton's lock file is at its path.
    #[error("refusing the lock file {path}: {problem}")]
    UnsafeFile {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// `flock` failed for another reason than the lock being held.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The lock was taken but the holder could not be written into the file.
    #[error("cannot write the holder into the lock file {path}")]
    WriteHolder {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// An exclusive lock on one service, held until dropped.
#[derive(Debug)]
pub(crate) struct ServiceLock {
    file: File,
    path: PathBuf,
    #[cfg_attr(not(test), allow(dead_code))]
    service: String,
}

#[cfg(test)]
impl ServiceLock {
    /// The lock file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The locked service.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }
}

impl ServiceLock {
    /// When this run took the lock: the lock file's modification time (the holder was written
    /// then), on the file system's clock, so that it compares with other files' times.
    pub(crate) fn taken_at(&self) -> io::Result<SystemTime> {
        self.file.metadata()?.modified()
    }
}

impl Drop for ServiceLock {
    fn drop(&mut self) {
        // Still holding the lock here: clear the holder so the file never names a finished run,
        // then closing the file releases the flock.
        let _ = self.file.set_len(0);
    }
}

/// Takes the exclusive lock of `service` in `dir` (normally [`DEFAULT_DIR`], created `0700`
/// when missing), trying again until `timeout` has passed.
#[cfg(test)]
pub(crate) fn acquire(dir: &Path, service: &str, timeout: Duration) -> Result<ServiceLock, LockError> {
    acquire_with_progress(dir, service, timeout, |_| {})
}

/// [`acquire`], calling `on_wait` (time waited so far, and the holder) when the lock is found
/// busy and then about once a second while waiting, so that a front-end can say what it is
/// waiting for.
pub(crate) fn acquire_with_progress(
    dir: &Path,
    service: &str,
    timeout: Duration,
    mut on_wait: impl FnMut(LockWait),
) -> Result<ServiceLock, LockError> {
    if service.is_empty() || service.starts_with('.') || service.contains(['/', '\0']) || service.len() > 200 {
        return Err(LockError::InvalidName { service: service.to_string() });
    }
    let dir_fd = open_dir(dir)?;
    let name = format!("{service}.lock");
    let path = dir.join(&name);

    let start = Instant::now();
    let mut next_progress = Duration::ZERO;
    let file = 'locked: loop {
        // No truncation on open: the file names the current holder until we hold the lock.
        let file = open_file(&dir_fd, &name, &path)?;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    // The file may have been unlinked or replaced while we waited on it: then
                    // this flock guards nothing, and whoever opens the path gets another file.
                    match safe_fs::still_at(&dir_fd, &name, &file) {
                        Ok(true) => break 'locked file,
                        Ok(false) => continue 'locked,
                        Err(source) => return Err(LockError::Lock { path, source }),
                    }
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(source)) => return Err(LockError::Lock { path, source }),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(LockError::Busy {
                    service: service.to_string(),
                    holder: holder_of(&dir_fd, &name),
                    waited: timeout,
                });
            }
            if waited >= next_progress {
                on_wait(LockWait { waited, holder: holder_of(&dir_fd, &name) });
                next_progress = waited.saturating_add(PROGRESS_INTERVAL);
            }
            std::thread::sleep(POLL_INTERVAL.min(timeout.saturating_sub(waited)));
        }
    };

    let lock = ServiceLock { file, path, service: service.to_string() };
    let holder = holder_line();
    lock.file
        .set_len(0)
        .and_then(|()| lock.file.write_all_at(holder.as_bytes(), 0))
        .map_err(|source| LockError::WriteHolder { path: lock.path.clone(), source })?;
    Ok(lock)
}

/// Opens the lock directory, creating it `0700` when missing, and checks that it is root's
/// alone. The migration probe's cache shares the directory.
pub(crate) fn open_dir(dir: &Path) -> Result<OwnedFd, LockError> {
    let unsafe_dir = |problem: String| LockError::UnsafeDir { dir: dir.to_path_buf(), problem };
    let create_err = |source| LockError::CreateDir { dir: dir.to_path_buf(), source };
    match safe_fs::open_trusted_dir(dir) {
        Ok(fd) => return Ok(fd),
        Err(DirProblem::Missing) => {}
        Err(DirProblem::Untrusted(problem)) => return Err(unsafe_dir(problem)),
        Err(DirProblem::Io(source)) => return Err(create_err(source)),
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(create_err)?;
    match safe_fs::open_trusted_dir(dir) {
        Ok(fd) => Ok(fd),
        Err(DirProblem::Missing) => Err(create_err(io::ErrorKind::NotFound.into())),
        Err(DirProblem::Untrusted(problem)) => Err(unsafe_dir(problem)),
        Err(DirProblem::Io(source)) => Err(create_err(source)),
    }
}

/// Opens (or creates, `0600`) the lock file `name` in the lock directory without following a
/// symbolic link or blocking on a FIFO, and checks it is a regular file of ours.
fn open_file(dir: &OwnedFd, name: &str, path: &Path) -> Result<File, LockError> {
    let unsafe_file = |problem: String| LockError::UnsafeFile { path: path.to_path_buf(), problem };
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(unsafe_file("it is a symbolic link".to_owned())),
        Err(e) => return Err(LockError::Open { path: path.to_path_buf(), source: e.into() }),
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|source| LockError::Open { path: path.to_path_buf(), source })?;
    if !meta.is_file() {
        return Err(unsafe_file(format!("it is {}, not a regular file", safe_fs::describe(&meta.file_type()))));
    }
    if meta.uid() != 0 && meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(unsafe_file(format!("it is owned by uid {}, not by root", meta.uid())));
    }
    // A lock file an older baton left 0644: nobody else needs to read it.
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|source| LockError::Open { path: path.to_path_buf(), source })?;
    }
    Ok(file)
}

/// This run, as written into the lock file: `pid=<pid> since=<unix secs> cmd=<argv>`.
fn holder_line() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let cmd: Vec<String> = std::env::args_os().map(|arg| arg.to_string_lossy().into_owned()).collect();
    // At most 1000 characters of the command line: the holder is read back with a 4 KiB cap.
    let cmd: String = cmd.join(" ").replace(|c: char| c.is_control(), " ").chars().take(1000).collect();
    format!("pid={} since={since} cmd={cmd}\n", std::process::id())
}

/// What the lock file says about its holder, on one line.
fn holder_of(dir: &OwnedFd, name: &str) -> String {
    match safe_fs::read_regular_at(dir, name, 4096) {
        Ok(Some((bytes, _))) => {
            let text = String::from_utf8_lossy(&bytes);
            if text.trim().is_empty() {
                "holder unknown: the lock file is empty".to_string()
            } else {
                text.trim().replace(['\n', '\r'], " ")
            }
        }
        Ok(None) => "holder unknown: the lock file is gone".to_string(),
        Err(e) => format!("holder unknown: {e}"),
    }
}

/// A duration for people: `200ms`, `10s`, `1.5s`.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms < 1000 {
            write!(f, "{ms}ms")
        } else if ms % 1000 < 100 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{}.{}s", ms / 1000, (ms % 1000) / 100)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_writes_the_holder_and_drop_clears_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock_dir = dir.path().join("nested/baton");
        let lock = acquire(&lock_dir, "app", Duration::from_secs(1)).expect("acquire");
        assert_eq!(lock.path(), lock_dir.join("app.lock"));
        assert_eq!(lock.service(), "app");
        let text = std::fs::read_to_string(lock.path()).expect("read");
        assert!(text.starts_with(&format!("pid={} since=", std::process::id())), "{text}");
        assert!(text.contains(" cmd="), "{text}");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&lock_dir).expect("meta").permissions());
        assert_eq!(mode & 0o700, 0o700);
        let path = lock.path().to_path_buf();
        drop(lock);
        assert_eq!(std::fs::read_to_string(path).expect("read"), "");
    }

    #[test]
    fn second_acquire_is_busy_naming_the_holder_then_succeeds_after_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = acquire(dir.path(), "app", Duration::from_secs(1)).expect("acquire");

        let lock_dir = dir.path().to_path_buf();
        let start = Instant::now();
        let second = std::thread::spawn(move || acquire(&lock_dir, "app", Duration::from_millis(200)).map(|_| ()))
            .join()
            .expect("thread");
        let elapsed = start.elapsed();
        let err = second.expect_err("the lock is held");
        match &err {
            LockError::Busy { service, holder, waited } => {
                assert_eq!(service, "app");
                assert!(holder.starts_with(&format!("pid={} ", std::process::id())), "{holder}");
                assert_eq!(*waited, Duration::from_millis(200));
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("service app is locked by another baton run (pid={} since=", std::process::id())),
            "{msg}"
        );
        assert!(msg.ends_with("); waited 200ms"), "{msg}");

        // Another service is independent.
        let other = acquire(dir.path(), "other", Duration::ZERO).expect("other service");
        drop(other);

        drop(lock);
        let again = acquire(dir.path(), "app", Duration::ZERO).expect("free after drop");
        drop(again);
    }

    #[test]
    fn waiting_reports_progress_and_gets_the_lock_when_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = acquire(dir.path(), "app", Duration::from_secs(1)).expect("acquire");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(lock);
        });
        let mut waits = Vec::new();
        let got = acquire_with_progress(dir.path(), "app", Duration::from_secs(5), |w| waits.push(w));
        releaser.join().expect("thread");
        got.expect("acquired once released");
        assert_eq!(waits.len(), 1, "{waits:?}");
        assert!(waits[0].waited < Duration::from_millis(100), "{waits:?}");
        assert!(waits[0].holder.contains(&format!("pid={}", std::process::id())), "{waits:?}");
    }

    #[test]
    fn a_killed_holder_releases_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.lock");
        // The shell opens the file on fd 9, flock(1) locks that open file, and the shell becomes
        // `sleep`: the sleeping process is the one and only holder.
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec 9>>"$1" && flock -x 9 && exec sleep 30"#)
            .arg("sh")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                crate::cannot_test(&format!("cannot run sh: {e}"));
                return;
            }
        };

        let deadline = Instant::now() + Duration::from_secs(5);
        let mut held = false;
        while Instant::now() < deadline {
            match acquire(dir.path(), "app", Duration::ZERO) {
                Err(LockError::Busy { holder, .. }) => {
                    assert!(holder.starts_with("holder unknown"), "{holder}");
                    held = true;
                    break;
                }
                Ok(lock) => drop(lock),
                Err(e) => panic!("{e}"),
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                crate::cannot_test(&format!("the flock helper exited with {status} (no flock(1)?)"));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !held {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child never took the lock");
        }

        child.kill().expect("kill");
        child.wait().expect("wait");
        let lock = acquire(dir.path(), "app", Duration::from_secs(2)).expect("released by kill");
        drop(lock);
    }

    #[test]
    fn unusable_names_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["", "../etc/x", "a/b", ".hidden"] {
            let err = acquire(dir.path(), name, Duration::ZERO).expect_err(name);
            assert!(matches!(err, LockError::InvalidName { .. }), "{err:?}");
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(Secs(Duration::from_millis(200)).to_string(), "200ms");
        assert_eq!(Secs(Duration::from_millis(10_004)).to_string(), "10s");
        assert_eq!(Secs(Duration::from_millis(1_530)).to_string(), "1.5s");
    }
    #[test]
    fn a_lock_file_replaced_while_waiting_is_not_a_lock_held() {
        // Run A holds the lock. B waits on A's file. The file is unlinked (a user who could
        // write the directory) and C locks the new file at the path. When A ends, B's flock on
        // the unlinked file succeeds: B must notice that the path is C's file and wait for C.
        let dir = tempfile::tempdir().expect("tempdir");
        let a = acquire(dir.path(), "app", Duration::ZERO).expect("A");
        let lock_dir = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let b = std::thread::spawn(move || {
            let got = acquire(&lock_dir, "app", Duration::from_secs(10));
            let _ = tx.send(Instant::now());
            got.map(|lock| {
                drop(lock);
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        std::fs::remove_file(dir.path().join("app.lock")).expect("unlink");
        let c = acquire(dir.path(), "app", Duration::ZERO).expect("C locks the new file");
        drop(a);
        std::thread::sleep(Duration::from_millis(500));
        assert!(rx.try_recv().is_err(), "B went ahead while C held the lock at the path");
        let c_done = Instant::now();
        drop(c);
        let b_at = rx.recv_timeout(Duration::from_secs(5)).expect("B gets the lock once C is done");
        assert!(b_at >= c_done);
        b.join().expect("thread").expect("B");
    }

    #[test]
    fn a_lock_dir_that_is_not_root_only_is_refused_naming_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("locks");
        std::fs::create_dir(&dir).expect("mkdir");
        let name = dir.display().to_string();
        for mode in [0o1777, 0o777, 0o775] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let e = acquire(&dir, "app", Duration::ZERO).expect_err("refused").to_string();
            assert!(e.contains(&name) && e.contains("writable"), "{e}");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Pre-created by another user (tests run as root).
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown");
        let e = acquire(&dir, "app", Duration::ZERO).expect_err("refused").to_string();
        assert!(e.contains(&name) && e.contains("owned by uid 65534"), "{e}");
        assert!(!dir.join("app.lock").exists(), "nothing created in it");
        // A symbolic link, even to a good directory.
        let good = root.path().join("good");
        std::fs::create_dir(&good).expect("mkdir");
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&good, &link).expect("symlink");
        let e = acquire(&link, "app", Duration::ZERO).expect_err("refused").to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn a_symlink_at_the_lock_file_is_refused_and_never_followed() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().expect("tempdir");
        let victim = root.path().join("victim");
        std::fs::write(&victim, "keep\n").expect("write");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let dir = root.path().join("locks");
        std::fs::create_dir(&dir).expect("mkdir");
        std::os::unix::fs::symlink(&victim, dir.join("app.lock")).expect("symlink");
        let e = acquire(&dir, "app", Duration::ZERO).expect_err("refused").to_string();
        assert!(e.contains("app.lock") && e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep\n");
    }

    #[test]
    fn a_new_lock_dir_is_0700_and_lock_files_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("baton");
        let lock = acquire(&dir, "app", Duration::ZERO).expect("acquire");
        let mode = |p: &Path| std::fs::symlink_metadata(p).expect("lstat").permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(lock.path()), 0o600);
        drop(lock);
        // A lock file left 0644 by an older baton is narrowed to 0600.
        std::fs::set_permissions(dir.join("app.lock"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let lock = acquire(&dir, "app", Duration::ZERO).expect("acquire");
        assert_eq!(mode(lock.path()), 0o600);
        assert_eq!(DEFAULT_DIR, "/run/baton");
    }
}
