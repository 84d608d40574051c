//! Boots a sandbox, reports its boot time and memory, runs a shell script inside, tears down.
//!
//! `cargo run -p baton-sandbox --example sandbox_sh -- [SCRIPT] [BOOTS]` (as root): boots
//! `BOOTS` sandboxes one after another (default 1), runs `SCRIPT` (default
//! `systemctl is-system-running`) in the last one and prints its output.

use std::fs;

use anyhow::{Context, Result};
use baton_sandbox::Sandbox;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let script = args.next().unwrap_or_else(|| "systemctl is-system-running".to_owned());
    let boots: usize = match args.next() {
        Some(n) => n.parse().context("BOOTS must be a number")?,
        None => 1,
    };
    let mut times = Vec::new();
    for i in 0..boots.max(1) {
        let sandbox = Sandbox::boot("example")?;
        times.push(sandbox.boot_duration().as_millis());
        if i + 1 < boots {
            continue;
        }
        let pids = sandbox.host_pids();
        let pss_kib: u64 = pids
            .iter()
            .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
            .filter_map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Pss:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .sum();
        eprintln!("sandbox {} ({}), {} processes, PSS {pss_kib} KiB", sandbox.id(), sandbox.boot_state(), pids.len());
        let out = sandbox.sh_output(&script)?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("exit: {}", out.status);
        sandbox.kill()?;
    }
    times.sort_unstable();
    eprintln!(
        "boot times (ms): min {} median {} max {} over {} boots",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
    Ok(())
}
