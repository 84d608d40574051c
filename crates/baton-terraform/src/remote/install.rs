//! `baton` on a remote host, at the provider's own version.
//!
//! With `baton_path` set, that preinstalled binary is used as it is (its `--version` must be the
//! provider's). Otherwise the provider runs `<install_dir>/<version>/baton` (default
//! `/usr/local/lib/baton/<version>/baton`); when it is missing or answers another version, the
//! first change (apply) on that host uploads its own `baton` (`baton_binary`, else the `baton` next to the provider's
//! executable: what `make dist` ships, built for glibc ≥ 2.17) over the same SSH connection:
//! into a temporary file of the same directory, checked there with `sha256sum` against the
//! checksum computed before the upload, made executable, run once (`--version`) and renamed
//! over the final name, so a host never sees a partial or foreign binary at that path. The
//! directories are created with umask 022 by the login (root): root-owned, not writable by others.

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::ssh::{Connected, Settings};

/// The version of `baton` this provider speaks to (the workspace's version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `$1 --version`, or exit status 3 when there is no executable at `$1` (ssh itself reports
/// a remote exit status 127 as an error of its own, without the output).
const PROBE_SCRIPT: &str = r#"if test -x "$1"; then exec "$1" --version; fi
echo "no executable at $1" >&2
exit 3
"#;

/// The script that installs the binary read from stdin as `$1/baton`, checked against `$2`.
const INSTALL_SCRIPT: &str = r#"set -eu
umask 022
d=$1
sum=$2
mkdir -p "$d"
t=$(mktemp "$d/.baton.XXXXXX")
trap 'rm -f "$t"' EXIT
cat > "$t"
if ! printf '%s  %s\n' "$sum" "$t" | sha256sum -c --status; then
  echo "the uploaded file's sha256 is not $sum: the upload was damaged" >&2
  exit 1
fi
chmod 0755 "$t"
"$t" --version > /dev/null
mv -f "$t" "$d/baton"
trap - EXIT
"#;

/// The local `baton` to upload.
fn local_binary(settings: &Settings) -> Result<PathBuf, String> {
    if let Some(p) = &settings.baton_binary {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the provider's own executable: {e}"))?;
    let beside = exe.with_file_name("baton");
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!(
            "no baton binary to install: none beside the provider ({}); set the provider's baton_binary (e.g. \
             target/x86_64-unknown-linux-gnu/dist/baton from `make dist`) or baton_path (a preinstalled baton)",
            beside.display()
        ))
    }
}

/// The sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `baton --version`'s output is this provider's version.
fn is_our_version(stdout: &[u8]) -> bool {
    String::from_utf8_lossy(stdout).split_whitespace().nth(1) == Some(VERSION)
}

/// Where `baton` is on the host and whether it is there at the provider's version (see the
/// module doc). Reads only; an unusable `baton_path` is an error.
pub async fn probe(conn: Connected, settings: &Settings) -> Result<Connected, String> {
    let host = conn.host.clone();
    if let Some(path) = &settings.baton_path {
        let out = conn.run("sh", &["-c", PROBE_SCRIPT, "sh", path], None).await?;
        if out.status != Some(0) {
            return Err(format!(
                "baton_path {path} does not run on host {host} (exit status {}): {}",
                out.status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
                out.stderr.trim()
            ));
        }
        if !is_our_version(&out.stdout) {
            return Err(format!(
                "baton_path {path} on host {host} is {:?}, but the provider speaks to baton {VERSION}: install \
                 the matching baton there, or unset baton_path to let the provider install it",
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
        return Ok(conn.with_baton(path.clone(), true));
    }
    let path = format!("{}/{VERSION}/baton", settings.install_dir().trim_end_matches('/'));
    let out = conn.run("sh", &["-c", PROBE_SCRIPT, "sh", &path], None).await?;
    let present = out.status == Some(0) && is_our_version(&out.stdout);
    Ok(conn.with_baton(path, present))
}

/// Installs the provider's `baton` at `conn.baton` (see the module doc). Only a change (an
/// apply) installs: plan and refresh never write to a host.
pub async fn install(conn: &Connected, settings: &Settings) -> Result<(), String> {
    let host = &conn.host;
    let path = &conn.baton;
    let dir = path.rsplit_once('/').map_or("/", |(d, _)| d);
    let local = local_binary(settings)?;
    let bytes =
        std::fs::read(&local).map_err(|e| format!("cannot read the baton to install ({}): {e}", local.display()))?;
    let sum = sha256_hex(&bytes);
    let out = conn.run("sh", &["-c", INSTALL_SCRIPT, "sh", dir, &sum], Some(&bytes)).await?;
    if out.status != Some(0) {
        return Err(format!(
            "cannot install baton {VERSION} on host {host} at {path} (exit status {}): {}",
            out.status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
            out.stderr.trim()
        ));
    }
    eprintln!("baton: installed baton {VERSION} on host {host} at {path} (sha256 {sum}, from {})", local.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_checksums() {
        assert!(is_our_version(format!("baton {VERSION}\n").as_bytes()));
        assert!(!is_our_version(b"baton 0.0.0-other\n"));
        assert!(!is_our_version(b""));
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    /// The install script against a local `sh`: a good upload lands atomically; a damaged one
    /// leaves nothing at the final path and no temporary file.
    #[test]
    fn install_script_checks_the_checksum() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("v");
        let body = b"#!/bin/sh\necho baton test\n";
        let run = |sum: &str| {
            let mut child = Command::new("sh")
                .args(["-c", INSTALL_SCRIPT, "sh"])
                .arg(&target)
                .arg(sum)
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("sh");
            child.stdin.take().expect("stdin").write_all(body).expect("write");
            child.wait_with_output().expect("wait")
        };
        let bad = run(&sha256_hex(b"something else"));
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("damaged"));
        assert!(!target.join("baton").exists());
        assert_eq!(std::fs::read_dir(&target).expect("dir").count(), 0, "no temporary file left");
        let good = run(&sha256_hex(body));
        assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
        assert_eq!(std::fs::read(target.join("baton")).expect("installed"), body);
        assert_eq!(std::fs::read_dir(&target).expect("dir").count(), 1);
    }
}
