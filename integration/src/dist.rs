//! The shipped binaries (`make dist`: the Ansible module, the CLI and the Terraform provider,
//! size-tuned and built against glibc 2.17): where they are, their sizes, the newest glibc
//! symbol version each needs (`objdump -T`), and an older-glibc Debian userland to run them in.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The target triple of the shipped binaries (built for `<triple>.2.17` by cargo-zigbuild).
pub const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The shipped binaries: the Ansible module, the CLI, the Terraform provider.
pub const SHIPPED: [&str; 3] = ["service", "baton", "terraform-provider-baton"];

/// The Cargo profile a shipped binary is built with (Cargo.toml): the module aborts on panic.
pub fn profile(name: &str) -> &'static str {
    if name == "service" {
        "dist-module"
    } else {
        "dist"
    }
}

/// The oldest glibc the shipped binaries must run on.
pub const GLIBC_FLOOR: [u32; 2] = [2, 17];

/// The largest module Ansible may copy to every host for every task: 2.5 MB.
pub const MODULE_MAX_BYTES: u64 = 2_500_000;

/// The Debian release whose userland the shipped binaries are run in: the oldest one the
/// machine's package mirror still serves (glibc 2.31, as on Ubuntu 20.04; older than the 2.34
/// every host-built binary needs). No glibc-2.17 userland can be had from the package registries
/// this project reaches.
pub const OLD_USERLAND: &str = "bullseye";

/// The path of a shipped binary (`target/x86_64-unknown-linux-gnu/<profile>/<name>`); fails
/// loudly when `make dist` has not built it.
pub fn shipped(name: &str) -> PathBuf {
    let path = crate::ansible::target_dir().join(TRIPLE).join(profile(name)).join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the shipped binaries with `make dist` (`make test` does)",
        path.display()
    );
    path
}

/// A glibc symbol version such as `[2, 17]` or `[2, 3, 4]`.
pub type GlibcVersion = Vec<u32>;

/// Every `GLIBC_x.y[.z]` version the binary's dynamic symbols need, sorted, from `objdump -T`.
pub fn glibc_versions(binary: &Path) -> Result<Vec<GlibcVersion>> {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(binary)
        .output()
        .context("run objdump -T (Debian package binutils; `make deps` installs it)")?;
    if !out.status.success() {
        bail!("objdump -T {} failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(parse_glibc_versions(&String::from_utf8_lossy(&out.stdout)))
}

/// The `GLIBC_` versions named in `objdump -T` output, sorted and deduplicated.
pub fn parse_glibc_versions(objdump: &str) -> Vec<GlibcVersion> {
    let mut versions: Vec<GlibcVersion> = objdump
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|v| v.split('.').map(|n| n.parse().ok()).collect::<Option<Vec<u32>>>())
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

/// `2.17` for `[2, 17]`.
pub fn show_version(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// A root directory holding Debian [`OLD_USERLAND`]'s essential packages (libc6 among them),
/// unpacked by `debootstrap --foreign` once per target directory; run a binary in it with
/// [`in_userland`]. The mirror is the one the machine's apt uses.
pub fn old_userland() -> Result<PathBuf> {
    let root = crate::ansible::target_dir().join("userland").join(OLD_USERLAND);
    let root = std::path::absolute(&root).unwrap_or(root);
    if root.join(".complete").is_file() {
        return Ok(root);
    }
    let partial = root.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(partial.parent().context("userland dir")?)?;
    let mut cmd = Command::new("unshare");
    // A private mount namespace: nothing debootstrap might mount stays on the host.
    cmd.args(["--mount", "--propagation", "private", "debootstrap", "--foreign", "--variant=minbase", OLD_USERLAND])
        .arg(&partial);
    if let Some(mirror) = apt_mirror() {
        cmd.arg(mirror);
    }
    let out = cmd.output().context("run debootstrap (Debian package debootstrap; `make deps` installs it)")?;
    if !out.status.success() {
        bail!(
            "debootstrap of Debian {OLD_USERLAND} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&partial, &root).with_context(|| format!("rename {} to {}", partial.display(), root.display()))?;
    std::fs::write(root.join(".complete"), b"")?;
    Ok(root)
}

/// The Debian mirror of the machine's apt sources (deb822 `URIs:` or a one-line `deb` entry).
fn apt_mirror() -> Option<String> {
    let deb822 = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let one_line = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    let from_deb822 = deb822.lines().filter_map(|l| l.trim().strip_prefix("URIs:")).flat_map(str::split_whitespace);
    let from_one_line = one_line
        .lines()
        .filter_map(|l| l.trim().strip_prefix("deb "))
        .flat_map(|rest| rest.split_whitespace().find(|w| w.contains("://")));
    from_deb822.chain(from_one_line).find(|uri| uri.trim_end_matches('/').ends_with("/debian")).map(str::to_owned)
}

/// Runs `binary args…` inside the userland `root` (chroot), the binary and `files` (name,
/// contents) copied to `/opt/baton-test/` there. Returns (exit status, stdout, stderr).
pub fn in_userland(root: &Path, binary: &Path, args: &[&str], files: &[(&str, &str)]) -> Result<(i32, String, String)> {
    let dir = root.join("opt/baton-test");
    std::fs::create_dir_all(&dir)?;
    let name = binary.file_name().context("binary name")?;
    std::fs::copy(binary, dir.join(name)).with_context(|| format!("copy {} into the userland", binary.display()))?;
    for (file, text) in files {
        std::fs::write(dir.join(file), text)?;
    }
    let inside = Path::new("/opt/baton-test").join(name);
    let out = Command::new("/usr/sbin/chroot")
        .arg(root)
        .arg(&inside)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .context("chroot")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_are_read_from_objdump_output() {
        let out = "0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.2.5) write\n\
                   0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.34) __libc_start_main\n\
                   0000000000000000      DF *UND*  0000000000000000  GLIBC_2.17  clock_gettime\n\
                   0000000000000000  w   D  *UND*  0000000000000000  Base        __gmon_start__\n";
        assert_eq!(parse_glibc_versions(out), vec![vec![2, 2, 5], vec![2, 17], vec![2, 34]]);
        assert_eq!(show_version(&[2, 2, 5]), "2.2.5");
    }
}
