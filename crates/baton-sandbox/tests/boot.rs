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

#[test]
fn builder_sets_a_private_hostname_files_and_units() -> Result<()> {
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname")?;
    let checkout = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).canonicalize()?;
    let sandbox = Sandbox::builder("builder")
        .shares([checkout])
        .hostname("fleet-host-7")
        .tmpfs("/var/log", 0o755)
        .file("/var/log/baton-test-private", "only inside\n", 0o644)
        .file("/run/baton-test/identity", "host 7's own 'quoted' $file\n", 0o600)
        .unit(
            "builder-probe.service",
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/cp /run/baton-test/identity /run/baton-test/copied\n",
        )
        .boot()?;
    assert_eq!(sandbox.boot_state(), BootState::Running, "failed units: {:?}", sandbox.failed_units()?);
    assert_eq!(sandbox.sh("hostname")?.trim(), "fleet-host-7");
    assert_eq!(sandbox.sh("cat /etc/hostname")?.trim(), "fleet-host-7");
    assert_eq!(sandbox.sh("cat /run/baton-test/copied")?, "host 7's own 'quoted' $file\n");
    assert_eq!(sandbox.sh("stat -c %a /run/baton-test/identity")?.trim(), "600");
    assert_eq!(sandbox.sh("systemctl is-active builder-probe.service")?.trim(), "active");
    assert_eq!(sandbox.sh("cat /var/log/baton-test-private")?, "only inside\n");
    assert!(!Path::new("/var/log/baton-test-private").exists(), "the extra tmpfs leaked to the host");
    assert_eq!(sandbox.sh("stat -c %a /var/log")?.trim(), "755");
    // The host keeps its name, and nothing was written outside the sandbox.
    assert_eq!(fs::read_to_string("/proc/sys/kernel/hostname")?, host_name);
    assert!(!Path::new("/run/baton-test").exists());
    drop(sandbox);
    assert_eq!(fs::read_to_string("/proc/sys/kernel/hostname")?, host_name);
    Ok(())
}

#[test]
fn builder_refuses_files_outside_the_private_tmpfs_and_bad_names() {
    let err = |b: baton_sandbox::SandboxBuilder| b.boot().expect_err("must be refused").to_string();
    let e = err(Sandbox::builder("bad").file("/etc/passwd", "x", 0o644));
    assert!(e.contains("sandbox file /etc/passwd") && e.contains("private tmpfs"), "{e}");
    let e = err(Sandbox::builder("bad").file("/run/../etc/passwd", "x", 0o644));
    assert!(e.contains("without '..'"), "{e}");
    let e = err(Sandbox::builder("bad").shares([std::path::PathBuf::from("/tmp/shared")]).file(
        "/tmp/shared/x",
        "x",
        0o644,
    ));
    assert!(e.contains("outside the shared directories"), "{e}");
    let e = err(Sandbox::builder("bad").tmpfs("/", 0o755));
    assert!(e.contains("sandbox tmpfs /"), "{e}");
    let e = err(Sandbox::builder("bad").tmpfs("/no/such/dir", 0o755));
    assert!(e.contains("existing directory"), "{e}");
    let e = err(Sandbox::builder("bad").hostname("bad name"));
    assert!(e.contains("sandbox hostname \"bad name\""), "{e}");
    let e = err(Sandbox::builder("bad").unit("../x.service", "[Service]\n"));
    assert!(e.contains("sandbox unit name"), "{e}");
}
