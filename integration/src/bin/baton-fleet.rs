//! `make fleet N=20`: boots a fleet of sandboxed hosts running sshd behind a bridge in a
//! controller network namespace (integration/src/fleet.rs), checks ssh to every host, prints the
//! figures, the inventory and how to use it, then waits for Ctrl-C, SIGTERM or EOF on stdin and
//! tears everything down. With `--check` (or when `CI` is set) it tears down right after the
//! check.
//!
//! Usage: `baton-fleet [--hosts N] [--parallel K] [--inventory PATH] [--check]`

use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use baton_integration::fleet::{Fleet, FleetConfig, DEFAULT_HOSTS, NETWORK};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Debug)]
struct Args {
    config: FleetConfig,
    inventory: Option<PathBuf>,
    check: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { config: FleetConfig::default(), inventory: None, check: std::env::var_os("CI").is_some() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--hosts" | "-n" => {
                let v = value("--hosts")?;
                args.config.hosts = v
                    .parse()
                    .with_context(|| format!("--hosts {v:?}: must be a number of hosts (default {DEFAULT_HOSTS})"))?;
            }
            "--parallel" => {
                let v = value("--parallel")?;
                args.config.parallel = v.parse().with_context(|| format!("--parallel {v:?}: must be a number"))?;
            }
            "--inventory" => args.inventory = Some(PathBuf::from(value("--inventory")?)),
            "--check" => args.check = true,
            "-h" | "--help" => {
                println!("usage: baton-fleet [--hosts N (default {DEFAULT_HOSTS})] [--parallel K] [--inventory PATH] [--check]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

fn main() {
    if let Err(err) = run() {
        eprintln!("fleet failed: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    // From here on Ctrl-C, SIGTERM and SIGHUP end the wait (and interrupt nothing else), so the
    // fleet is always torn down.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing signal handlers")?;
    let handle = signals.handle();

    eprintln!("booting {} hosts ({} at a time) ...", args.config.hosts, args.config.parallel.min(args.config.hosts));
    let fleet = Fleet::boot_with(&args.config)?;
    let figures = fleet.figures()?;

    // Every host, once more: a running systemd answers over ssh from the controller.
    let started = Instant::now();
    let mut states = Vec::new();
    for (index, host) in fleet.hosts().iter().enumerate() {
        let out = fleet.ssh(index, "systemctl is-system-running").output()?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || state != "running" {
            bail!(
                "{} ({}): ssh ... systemctl is-system-running said {state:?}: {}",
                host.name,
                host.addr,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        states.push(format!("{}={}", host.name, state));
    }
    println!("{}", figures.summary());
    println!(
        "ssh root@<host> systemctl is-system-running from the controller: {} hosts running ({} ms)",
        states.len(),
        started.elapsed().as_millis()
    );
    for m in &figures.memory {
        println!(
            "  {:8} {:15} {:2} processes  PSS {:5.1} MiB  RSS {:5.1} MiB  tmpfs {:4.1} MiB",
            m.name,
            fleet.hosts().iter().find(|h| h.name == m.name).map(|h| h.addr.to_string()).unwrap_or_default(),
            m.processes,
            m.pss_bytes as f64 / 1048576.0,
            m.rss_bytes as f64 / 1048576.0,
            m.tmpfs_bytes as f64 / 1048576.0
        );
    }

    let inventory = match &args.inventory {
        Some(path) => {
            fleet.write_inventory(path)?;
            path.clone()
        }
        None => fleet.dir().join("inventory.ini"),
    };
    let netns = fleet.controller_netns();
    let first = &fleet.hosts()[0];
    println!("\n--- inventory ({}) ---\n{}", inventory.display(), fleet.inventory_text());
    println!("--- how to use it (network {NETWORK}, only inside the fleet's namespaces) ---");
    println!("controller:  nsenter --net={} -- <program>", netns.display());
    println!("  nsenter --net={} -- ssh {} root@{}", netns.display(), fleet.ssh_options().join(" "), first.addr);
    println!("  nsenter --net={} -- ansible -i {} fleet -m ping", netns.display(), inventory.display());
    println!("a host's own shell:  nsenter -t {} -m -p -n -u -- bash   ({})", first.sandbox.pid(), first.name);

    if args.check {
        println!("\n--check: tearing down");
    } else {
        println!("\nthe fleet runs until Ctrl-C, SIGTERM or end of input (Ctrl-D)");
        let (tx, rx) = mpsc::channel::<String>();
        let stdin_tx = tx.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = stdin_tx.send("end of input".to_owned());
        });
        let signal_tx = tx;
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let _ = signal_tx.send(format!("signal {signal}"));
            }
        });
        let why = rx.recv().unwrap_or_else(|_| "the waiters stopped".to_owned());
        println!("{why}: tearing down");
    }
    let started = Instant::now();
    fleet.teardown()?;
    handle.close();
    println!("fleet torn down in {} ms", started.elapsed().as_millis());
    Ok(())
}
