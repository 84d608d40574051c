//! The fleet harness of issue 14: 20 sandboxed hosts with sshd behind a bridge in a controller
//! namespace. Every host answers ssh from the controller with its own identity and a running
//! systemd; the caller's network namespace is unchanged during and after the fleet's life; an
//! unreachable host fails ssh clearly while the others keep answering; teardown leaves nothing.
//!
//! Needs root, systemd, openssh-server and openssh-client (`make deps`); without them the test
//! fails with the harness's error (never skipped).

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use baton_integration::fleet::{Fleet, CONTROLLER_ADDR, HOST_RUN_DIR, SSHD_UNIT};

const HOSTS: usize = 20;

/// The caller's links, addresses and routes (IPv4 and IPv6), as `ip` prints them.
fn own_network() -> Result<String> {
    let mut all = String::new();
    for args in [&["-o", "link", "show"][..], &["-o", "addr", "show"], &["route", "show"], &["-6", "route", "show"]] {
        let out = Command::new("ip").args(args).output().context("running ip")?;
        ensure!(out.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        // Counters and timers change by themselves; links, names, flags and addresses do not.
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            let stable: Vec<&str> = line.split_whitespace().take_while(|w| *w != "valid_lft").collect();
            all.push_str(&stable.join(" "));
            all.push('\n');
        }
    }
    Ok(all)
}

#[test]
fn twenty_hosts_answer_ssh_from_the_controller_and_leave_no_trace() -> Result<()> {
    let before = own_network()?;
    let fleet = Fleet::boot(HOSTS)?;
    let figures = fleet.figures()?;
    eprintln!("fleet {}: {}", fleet.id(), figures.summary());
    assert_eq!(fleet.hosts().len(), HOSTS);
    assert_eq!(figures.memory.len(), HOSTS);
    for m in &figures.memory {
        assert!(m.processes >= 3 && m.pss_bytes > 0 && m.rss_bytes >= m.pss_bytes, "{m:?}");
    }

    // Every host, from the controller, with the fleet's known_hosts and strict checking:
    // a running systemd, its own host name and identity file, sshd as a unit of its systemd
    // and not Debian's ssh.service/ssh.socket.
    for (index, host) in fleet.hosts().iter().enumerate() {
        let out = fleet
            .controller_command("ssh")
            .args(["-i"])
            .arg(fleet.ssh_key())
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg(format!("-oUserKnownHostsFile={}", fleet.known_hosts().display()))
            .arg(format!("root@{}", host.addr))
            .arg(format!(
                "systemctl is-system-running; hostname; cat {HOST_RUN_DIR}/identity; systemctl is-active {SSHD_UNIT}; \
                 systemctl is-active ssh.service ssh.socket; true"
            ))
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ssh to {} failed: {}", host.name, String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.first(), Some(&"running"), "{}: {stdout}", host.name);
        assert_eq!(lines.get(1), Some(&host.name.as_str()), "{}: {stdout}", host.name);
        assert_eq!(lines.get(2).copied(), Some(format!("{} {} {}", host.name, host.addr, fleet.id()).as_str()));
        assert_eq!(lines.get(3), Some(&"active"), "{}: {stdout}", host.name);
        assert_eq!(&lines[4..], ["inactive", "inactive"], "Debian's ssh units run inside {}", host.name);
        // The same through the harness's own ssh command, and the identity matches its sandbox.
        let out = fleet.ssh(index, "cat /proc/sys/kernel/hostname").output()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host.name);
        assert_eq!(host.sandbox.sh("hostname")?.trim(), host.name);
    }

    // Hosts reach each other over the bridge, and route to the controller.
    let last = fleet.hosts().last().expect("hosts");
    let route = fleet.hosts()[0].sandbox.sh("ip route show default")?;
    assert!(route.contains(&format!("via {CONTROLLER_ADDR} dev eth0")), "{route}");
    let out = fleet.ssh(0, &format!("cat < /dev/null > /dev/tcp/{}/22 && echo open", last.addr)).output()?;
    // root's shell on Debian is bash, whose /dev/tcp opens a TCP connection.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "open", "{}", String::from_utf8_lossy(&out.stderr));

    // The inventory names every host with its address, root, the key and the known_hosts.
    let inventory = fleet.inventory_text();
    for host in fleet.hosts() {
        assert!(inventory.contains(&format!("\n{} ansible_host={}\n", host.name, host.addr)), "{inventory}");
    }
    assert!(inventory.contains("ansible_user=root"));
    assert!(inventory.contains(&format!("ansible_ssh_private_key_file={}", fleet.ssh_key().display())));
    assert!(inventory.contains(&format!("UserKnownHostsFile={}", fleet.known_hosts().display())));
    assert!(inventory.contains("StrictHostKeyChecking=yes"));

    // Nothing changed in the caller's network namespace while the fleet runs.
    assert_eq!(own_network()?, before, "the fleet changed the caller's network namespace");
    assert!(
        !Path::new("/run/netns").exists() || fs::read_dir("/run/netns")?.next().is_none(),
        "a named netns appeared"
    );

    // An unreachable host fails ssh clearly; the others still answer.
    fleet.make_unreachable(3)?;
    let out = fleet.ssh(3, "true").output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "ssh to an unreachable host: {stderr}");
    assert!(
        stderr.contains(&fleet.hosts()[3].addr.to_string())
            && (stderr.contains("timed out") || stderr.contains("No route to host")),
        "unclear error for an unreachable host: {stderr}"
    );
    for index in [2, 4] {
        assert!(fleet.ssh(index, "true").status()?.success(), "host {index} harmed by an unreachable neighbour");
    }
    fleet.make_reachable(3)?;
    assert!(fleet.ssh(3, "true").status()?.success(), "host 3 did not come back");

    // A host key that is not the fleet's is refused (strict checking really checks).
    let wrong = fleet.dir().join("wrong_known_hosts");
    fs::write(
        &wrong,
        format!("{} {}", fleet.hosts()[0].addr, fs::read_to_string(fleet.dir().join("id_ed25519.pub"))?),
    )?;
    let out = fleet
        .controller_command("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-i"])
        .arg(fleet.ssh_key())
        .arg(format!("-oUserKnownHostsFile={}", wrong.display()))
        .arg(format!("root@{}", fleet.hosts()[0].addr))
        .arg("true")
        .output()?;
    assert!(!out.status.success(), "ssh accepted a host key not in known_hosts");

    // Teardown leaves nothing: no sandbox, no controller, no fleet directory, same network.
    let dir = fleet.dir().to_path_buf();
    let controller = fleet.controller_pid();
    let cgroups: Vec<_> = fleet.hosts().iter().flat_map(|h| h.sandbox.cgroup_dirs().to_vec()).collect();
    fleet.teardown()?;
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!Path::new(&format!("/proc/{controller}")).exists(), "the controller's holder survived");
    for cgroup in cgroups {
        assert!(!cgroup.exists(), "{} left behind", cgroup.display());
    }
    assert_eq!(own_network()?, before, "the caller's network namespace changed after teardown");
    Ok(())
}

#[test]
fn a_host_without_the_key_is_refused_and_root_needs_a_key() -> Result<()> {
    let fleet = Fleet::boot(2)?;
    // A key the hosts do not know.
    let other = fleet.dir().join("other_key");
    let status = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).status()?;
    assert!(status.success());
    let out = fleet
        .controller_command("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&other)
        .arg(format!("-oUserKnownHostsFile={}", fleet.known_hosts().display()))
        .arg(format!("root@{}", fleet.hosts()[1].addr))
        .arg("true")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Permission denied"), "{stderr}");
    // The authorized key lives in the host's private /run, not on the machine.
    let inside = fleet.hosts()[1].sandbox.sh(&format!("cat {HOST_RUN_DIR}/authorized_keys"))?;
    assert_eq!(inside, fs::read_to_string(fleet.dir().join("id_ed25519.pub"))?);
    assert!(!Path::new(HOST_RUN_DIR).exists(), "{HOST_RUN_DIR} exists on the machine");
    Ok(())
}

#[test]
fn a_crashed_run_is_cleaned_up_by_the_next_boot() -> Result<()> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    // `make fleet`'s binary, killed with SIGKILL while its fleet runs: no teardown at all.
    let mut crashed = Command::new(env!("CARGO_BIN_EXE_baton-fleet"))
        .args(["--hosts", "2"])
        .env_remove("CI")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = crashed.id();
    let mut dir = None;
    for line in BufReader::new(crashed.stdout.take().context("stdout")?).lines() {
        let line = line?;
        if let Some(at) = line.find("/baton-fleet-") {
            let path = &line[..line[at..].find("/inventory.ini").map(|end| at + end).unwrap_or(line.len())];
            if dir.is_none() && path.starts_with("--- inventory (") {
                dir = Some(std::path::PathBuf::from(path.trim_start_matches("--- inventory (")));
            }
        }
        if line.starts_with("the fleet runs until") {
            break;
        }
    }
    let dir = dir.context("baton-fleet printed no inventory path")?;
    let sshd_pattern = dir.display().to_string();
    crashed.kill()?;
    crashed.wait()?;
    assert!(dir.exists(), "{} should outlive a SIGKILL", dir.display());
    let sshds = || -> Result<usize> {
        let out = Command::new("pgrep").args(["-f", &sshd_pattern]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().count())
    };
    assert!(sshds()? >= 2, "the crashed fleet's sshds should still run until the next boot");

    // The next boot removes all of it.
    let fleet = Fleet::boot(1)?;
    assert!(!dir.exists(), "{} left behind by the crashed run", dir.display());
    assert_eq!(sshds()?, 0, "the crashed fleet's sshds survived the next boot");
    let stale = fs::read_dir("/sys/fs/cgroup/unified")
        .or_else(|_| fs::read_dir("/sys/fs/cgroup"))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&format!("-{pid}-")))
        .count();
    assert_eq!(stale, 0, "cgroup directories of the crashed run (pid {pid}) left behind");
    assert!(fleet.ssh(0, "true").status()?.success());
    Ok(())
}
