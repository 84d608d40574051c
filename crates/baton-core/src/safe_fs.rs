//! File-system access that another local user cannot redirect: directories baton trusts
//! (owned by root, writable by nobody else, not a symbolic link) opened once and used through
//! their descriptor, files opened without following symbolic links or blocking on FIFOs,
//! required to be regular files and read up to a cap, and unpredictable temp-file names.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// The most baton reads of any file it did not just write: far more than any unit it renders.
pub(crate) const MAX_READ: u64 = 1 << 20;

/// Why a directory is not trusted, or could not be checked.
#[derive(Debug)]
pub(crate) enum DirProblem {
    /// Nothing is at the path.
    Missing,
    /// The check itself failed (e.g. permission denied on a parent).
    Io(io::Error),
    /// Something is there but baton must not trust it: what is wrong, in words.
    Untrusted(String),
}

/// Whether `uid` may own what baton trusts: root, or the user baton runs as.
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// Opens `dir` as a directory baton may trust, checked with `lstat` and again on the opened
/// descriptor: a real directory (not a symbolic link), owned by root (or the user baton runs
/// as), writable by no group and no other user. Later operations go through the descriptor,
/// so the directory cannot be swapped after the check.
pub(crate) fn open_trusted_dir(dir: &Path) -> Result<OwnedFd, DirProblem> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(DirProblem::Missing),
        Err(e) => return Err(DirProblem::Io(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(DirProblem::Untrusted("it is a symbolic link".to_owned()));
    }
    if !meta.is_dir() {
        return Err(DirProblem::Untrusted(format!("it is {}, not a directory", describe(&meta.file_type()))));
    }
    if !trusted_owner(meta.uid()) {
        return Err(DirProblem::Untrusted(format!("it is owned by uid {}, not by root", meta.uid())));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DirProblem::Untrusted(format!("it is group- or world-writable (mode {mode:04o})")));
    }
    let fd =
        rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => DirProblem::Untrusted("it changed while it was being checked".to_owned()),
            Errno::NOENT => DirProblem::Missing,
            e => DirProblem::Io(e.into()),
        })?;
    let opened = rustix::fs::fstat(&fd).map_err(|e| DirProblem::Io(e.into()))?;
    if opened.st_ino != meta.ino() || opened.st_dev != meta.dev() {
        return Err(DirProblem::Untrusted("it changed while it was being checked".to_owned()));
    }
    Ok(fd)
}

/// Why a file could not be read safely.
#[derive(Debug)]
pub(crate) enum ReadProblem {
    /// Not a regular file: what it is instead (`a symbolic link`, `a FIFO`, …).
    NotRegular(&'static str),
    /// Larger than the cap (in bytes).
    TooLarge(u64),
    /// Reading failed.
    Io(io::Error),
}

impl std::fmt::Display for ReadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadProblem::NotRegular(what) => write!(f, "it is {what}, not a regular file"),
            ReadProblem::TooLarge(cap) if cap % (1 << 20) == 0 => write!(f, "it is larger than {} MiB", cap >> 20),
            ReadProblem::TooLarge(cap) => write!(f, "it is larger than {cap} bytes"),
            ReadProblem::Io(e) => e.fmt(f),
        }
    }
}

/// What a file type is, in words.
pub(crate) fn describe(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_file() {
        "a regular file"
    } else {
        "of an unknown type"
    }
}

/// What a raw file type is, in words.
fn describe_raw(t: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match t {
        FileType::Symlink => "a symbolic link",
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::RegularFile => "a regular file",
        _ => "of an unknown type",
    }
}

/// Reads `name` in the directory `dir` if it exists (`Ok(None)` when it does not): opened with
/// `O_NOFOLLOW|O_NONBLOCK` (a symbolic link is refused, a FIFO never blocks), required to be a
/// regular file, and at most `cap` bytes. Returns the bytes and the file's metadata.
pub(crate) fn read_regular_at(
    dir: &OwnedFd,
    name: &str,
    cap: u64,
) -> Result<Option<(Vec<u8>, std::fs::Metadata)>, ReadProblem> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        // O_NOFOLLOW on a symbolic link.
        Err(Errno::LOOP) => return Err(ReadProblem::NotRegular("a symbolic link")),
        Err(e) => {
            // Opening failed (e.g. a device on a `nodev` mount): say what is there if it is no
            // regular file, which explains more than the error.
            return Err(match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile => {
                    ReadProblem::NotRegular(describe_raw(rustix::fs::FileType::from_raw_mode(st.st_mode)))
                }
                _ => ReadProblem::Io(e.into()),
            });
        }
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(ReadProblem::Io)?;
    if !meta.is_file() {
        return Err(ReadProblem::NotRegular(describe(&meta.file_type())));
    }
    if meta.len() > cap {
        return Err(ReadProblem::TooLarge(cap));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The size can grow between fstat and read: the cap holds either way.
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(ReadProblem::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadProblem::TooLarge(cap));
    }
    Ok(Some((bytes, meta)))
}

/// Whether `name` in `dir` is still the file `file` has open (same device and inode), not a
/// file put in its place or nothing (unlinked).
pub(crate) fn still_at(dir: &OwnedFd, name: &str, file: &File) -> io::Result<bool> {
    let open = rustix::fs::fstat(file)?;
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(at) => Ok(at.st_dev == open.st_dev && at.st_ino == open.st_ino),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates a new file with a random name starting with `prefix` in `dir`, with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` (nothing already there, symbolic link or not, is ever opened)
/// and mode `mode` (not narrowed by the umask). Returns it and its name.
pub(crate) fn create_exclusive(dir: &OwnedFd, prefix: &str, mode: u32) -> io::Result<(File, String)> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..16 {
        let name = format!("{prefix}{}", random_hex()?);
        match rustix::fs::openat(dir, name.as_str(), flags, Mode::from_raw_mode(mode)) {
            Ok(fd) => {
                let file = File::from(fd);
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
                return Ok((file, name));
            }
            Err(Errno::EXIST) => last = Errno::EXIST.into(),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last)
}

/// 16 random hex digits from the kernel's generator.
fn random_hex() -> io::Result<String> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        filled += rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::DirBuilderExt as _;

    #[test]
    fn random_names_differ() {
        let a = random_hex().expect("random");
        let b = random_hex().expect("random");
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn directories_that_others_can_write_or_that_are_links_are_not_trusted() {
        let root = tempfile::tempdir().expect("tempdir");
        let ok = root.path().join("ok");
        std::fs::DirBuilder::new().mode(0o755).create(&ok).expect("mkdir");
        assert!(open_trusted_dir(&ok).is_ok());
        for mode in [0o775, 0o757, 0o777, 0o1777] {
            std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(mode)).expect("chmod");
            match open_trusted_dir(&ok) {
                Err(DirProblem::Untrusted(why)) => assert!(why.contains("writable"), "{why}"),
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).expect("symlink");
        assert!(matches!(open_trusted_dir(&link), Err(DirProblem::Untrusted(w)) if w.contains("symbolic link")));
        assert!(matches!(open_trusted_dir(&root.path().join("missing")), Err(DirProblem::Missing)));
    }

    #[test]
    fn exclusive_creation_never_opens_what_is_there() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = open_trusted_dir(root.path()).expect("trusted");
        let (file, name) = create_exclusive(&dir, ".x.", 0o644).expect("create");
        assert!(name.starts_with(".x.") && name.len() == 3 + 16, "{name}");
        assert_eq!(file.metadata().expect("meta").permissions().mode() & 0o777, 0o644);
    }
}
