//! Boots real sandboxes and checks that they work and stay isolated from the host.
//!
//! These tests need root, `unshare`/`nsenter` and systemd; without them they fail (never skip),
//! with the error of [`Sandbox::boot`] explaining what is missing.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use baton_sandbox::{BootState, Sandbox};

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("baton-sandbox-test-{tag}-{}-{nanos}", std::process::id())
}

/// Proportional set size of the given host processes, in bytes.
fn pss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

/// Start time of a host process (field 22 of /proc/PID/stat), if it exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[test]
fn boots_a_running_systemd() -> Result<()> {
    // The checkout may lie under /tmp (a CI clone): share it explicitly.
    let checkout = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).canonicalize()?;
    let sandbox = Sandbox::boot_sharing("boots", &[checkout])?;
    eprintln!(
        "sandbox {} booted in {} ms, state {}, PID 1 = {}",
        sandbox.id(),
        sandbox.boot_duration().as_millis(),
        sandbox.boot_state(),
        sandbox.pid()
    );
    let failed = sandbox.failed_units()?;
    assert_eq!(sandbox.boot_state(), BootState::Running, "failed units: {failed:?}");
    assert!(failed.is_empty(), "failed units: {failed:?}");
    assert_eq!(sandbox.sh("systemctl is-system-running")?.trim(), "running");
    let version = sandbox.sh("systemctl show -p Version --value")?;
    assert!(!version.trim().is_empty(), "empty systemd version");

    // systemd really is PID 1 inside, and the host PID we report is that process.
    assert_eq!(sandbox.sh("cat /proc/1/comm")?.trim(), "systemd");
    let comm = fs::read_to_string(format!("/proc/{}/comm", sandbox.pid()))?;
    assert_eq!(comm.trim(), "systemd");
    // The checkout is visible inside.
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    sandbox.sh(&format!("test -f {manifest}"))?;
    // Only loopback exists in the private network namespace, and it is up.
    let links = sandbox.sh("ip -o link show")?;
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");

    let pids = sandbox.host_pids();
    assert!(pids.contains(&sandbox.pid()), "{pids:?}");
    eprintln!("sandbox {}: {} processes, PSS {} KiB", sandbox.id(), pids.len(), pss_bytes(&pids) / 1024);
    sandbox.kill()?;
    Ok(())
}

#[test]
fn host_tmp_is_untouched() -> Result<()> {
    let marker = Path::new("/tmp").join(unique("marker"));
    fs::write(&marker, b"host marker").context("creating the marker in the host's /tmp")?;
    let inside_name = unique("inside");

    let result = (|| -> Result<()> {
        let sandbox = Sandbox::boot("tmp")?;
        let out = sandbox.sh_output(&format!("test -e {}", marker.display()))?;
        ensure!(!out.status.success(), "the host's /tmp marker is visible inside");
        sandbox.sh(&format!("echo inside > /tmp/{inside_name}"))?;
        sandbox.sh(&format!("test -f /tmp/{inside_name}"))?;
        ensure!(
            !Path::new("/tmp").join(&inside_name).exists(),
            "a file created in the sandbox's /tmp appeared in the host's /tmp"
        );
        sandbox.kill()?;
        Ok(())
    })();

    let marker_survived = marker.exists();
    let _ = fs::remove_file(&marker);
    result?;
    assert!(marker_survived, "the host's /tmp marker was removed by the sandbox");
    assert!(!Path::new("/tmp").join(&inside_name).exists());
    Ok(())
}

#[test]
fn concurrent_sandboxes_do_not_interfere() -> Result<()> {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Sandbox::boot("pair-a"));
        let b = s.spawn(|| Sandbox::boot("pair-b"));
        (a.join(), b.join())
    });
    let a = a.expect("boot thread panicked")?;
    let b = b.expect("boot thread panicked")?;
    assert_ne!(a.id(), b.id());
    assert_ne!(a.pid(), b.pid());

    for sandbox in [&a, &b] {
        sandbox.sh("systemd-run --unit=same-name sleep 30")?;
    }
    let mut main_pids = Vec::new();
    for sandbox in [&a, &b] {
        assert_eq!(sandbox.sh("systemctl is-active same-name.service")?.trim(), "active");
        let cgroup = sandbox.sh("systemctl show -p ControlGroup --value same-name.service")?;
        assert_eq!(cgroup.trim(), "/system.slice/same-name.service");
        main_pids.push(sandbox.sh("systemctl show -p MainPID --value same-name.service")?);
        // Each sandbox's unit lives in that sandbox's own cgroup tree on the host.
        let unified = sandbox
            .cgroup_dirs()
            .last()
            .context("no cgroup directories")?
            .join("system.slice/same-name.service/cgroup.procs");
        let procs = fs::read_to_string(&unified).with_context(|| format!("reading {}", unified.display()))?;
        assert_eq!(procs.lines().count(), 1, "{}: {procs}", unified.display());
    }

    // Stopping the unit in one sandbox leaves the other's alone.
    a.sh("systemctl stop same-name.service")?;
    let out = a.sh_output("systemctl is-active same-name.service")?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "inactive");
    assert_eq!(b.sh("systemctl is-active same-name.service")?.trim(), "active");

    let dirs: Vec<_> = a.cgroup_dirs().iter().chain(b.cgroup_dirs()).cloned().collect();
    assert!(!dirs.is_empty());
    let pid1s = [(a.pid(), start_time(a.pid())), (b.pid(), start_time(b.pid()))];
    drop(a);
    drop(b);
    for dir in &dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    for (pid, started) in pid1s {
        // Gone, not even a zombie (a reused PID would have another start time).
        assert!(started.is_some());
        assert_ne!(start_time(pid), started, "PID 1 {pid} survived the drop");
    }
    Ok(())
}

#[test]
fn net_sysctls_are_private() -> Result<()> {
    const KEY: &str = "/proc/sys/net/ipv4/tcp_migrate_req";
    let host_before = fs::read_to_string(KEY).context("reading the host's tcp_migrate_req")?;
    let host_before = host_before.trim().to_owned();
    // Write the opposite of the host's value inside, so any leak would show.
    let inside = if host_before == "1" { "0" } else { "1" };

    let sandbox = Sandbox::boot("sysctl")?;
    sandbox.sh(&format!("sysctl -w net.ipv4.tcp_migrate_req={inside}"))?;
    assert_eq!(sandbox.sh("sysctl -n net.ipv4.tcp_migrate_req")?.trim(), inside);
    assert_eq!(fs::read_to_string(KEY)?.trim(), host_before, "the host's value changed");
    sandbox.kill()?;
    assert_eq!(fs::read_to_string(KEY)?.trim(), host_before, "the host's value changed");
    Ok(())
}

#[test]
fn units_written_inside_run_and_log_to_the_journal() -> Result<()> {
    let sandbox = Sandbox::boot("unit")?;
    let name = "baton-hello";
    sandbox.sh(&format!(
        "cat > /etc/systemd/system/{name}.service <<'EOF'\n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/bin/sh -c 'echo hello-from-{name}; echo second-line'\n\
         EOF\n\
         systemctl daemon-reload && systemctl start {name}.service"
    ))?;
    let result = sandbox.sh(&format!("systemctl show -p Result --value {name}.service"))?;
    assert_eq!(result.trim(), "success");

    let deadline = Instant::now() + Duration::from_secs(10);
    let journal = loop {
        let out = sandbox.sh(&format!("journalctl -u {name} --no-pager -o cat"))?;
        if out.contains("second-line") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(journal.contains(&format!("hello-from-{name}")), "journal: {journal}");
    assert!(journal.contains("second-line"), "journal: {journal}");

    // The unit file lives on the sandbox's tmpfs, not on the host.
    assert!(!Path::new(&format!("/etc/systemd/system/{name}.service")).exists());
    sandbox.kill()?;
    Ok(())
}
