//! `make bench`, the fleet part: over one fleet of 20 sandboxed hosts (each its own systemd,
//! network namespace and sshd; `integration/src/fleet.rs`), the real `ansible-playbook` over
//! real SSH from the controller namespace, side by side in one run and under the same load (one
//! `baton-load` per host and per mode, new connection per request and keep-alive):
//! - the collection's rolling deploy `baton.systemd.rolling` (v1 -> v2, batches of 5, health
//!   gate) against the common `template` + `systemd_service state=restarted` playbook
//!   (`integration/ansible/fleet/restart.yml`, same batches and gate): wall time, failed
//!   requests, bytes shipped per host;
//! - the wall time of a no-op run of each;
//! - the fleet's boot time and memory per host.
//!
//! Bytes shipped per host: the files Ansible put into the host's remote temp directory during
//! the run, kept with `ANSIBLE_KEEP_REMOTE_FILES=1` and summed (module payloads, their argument
//! files, the template's rendered file); SSH framing and the shell commands are not counted.
//! Adds its section to `bench-report.md` (replacing an earlier one) and prints it.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use baton_integration::ansible::{self, Played};
use baton_integration::fleet::Fleet;
use baton_integration::fleet_ansible::{take_remote_bytes, FleetAnsible, FleetLoad, FleetReport, LoadBounds, ROLLING};
use baton_integration::{bin, LoadReport};
use baton_load::Mode;

const REPORT: &str = "bench-report.md";
const HEADING: &str =
    "## Fleet: a rolling deploy over 20 hosts, `baton.systemd.rolling` vs `template` + `systemd_service`";
const HOSTS: usize = 20;
const BATON_PORT: u16 = 8080;
const CLASSIC_PORT: u16 = 8081;
const MODES: [Mode; 2] = [Mode::NewConnection, Mode::KeepAlive];

fn main() {
    if let Err(e) = run() {
        eprintln!("fleet bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn group_vars() -> String {
    format!(
        r#"---
demo_path: {demo}
baton_name: web
baton_port: {BATON_PORT}
baton_become: false
baton_exec_start: ["{{{{ demo_path }}}}", --listen, 0.0.0.0, --port, "{BATON_PORT}", --version, "{{{{ baton_version }}}}", --work-ms, "20"]
baton_health: {{http: /health, timeout_sec: 30, interval_ms: 100}}
baton_timeout_stop_sec: 30
baton_gate_url: "http://{{{{ ansible_host }}}}:{BATON_PORT}/"
baton_gate_contains: "{{{{ baton_version }}}}"
baton_gate_delay: 0.5
classic_port: {CLASSIC_PORT}
"#,
        demo = bin("baton-demo").display()
    )
}

/// One measured run.
struct Measured {
    played: Played,
    load: Option<FleetReport>,
    /// Mean bytes shipped per host.
    bytes_per_host: u64,
}

fn measure(
    fleet: &Fleet,
    fa: &FleetAnsible,
    playbook: &OsStr,
    args: &[&str],
    load_port: Option<u16>,
) -> Result<Measured> {
    for h in fleet.hosts() {
        take_remote_bytes(&root_of(&h.sandbox))?;
    }
    let load = match load_port {
        Some(port) => Some(FleetLoad::start(fleet, &[], port, &MODES, LoadBounds::default())?),
        None => None,
    };
    if load.is_some() {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let keep = OsStr::new("1");
    let played = fa.playbook_env(fleet, playbook, args, &[("ANSIBLE_KEEP_REMOTE_FILES", keep)])?;
    let load = match load {
        Some(l) => {
            std::thread::sleep(std::time::Duration::from_millis(300));
            Some(l.finish()?)
        }
        None => None,
    };
    ensure!(
        played.code == 0,
        "ansible-playbook {playbook:?} {args:?} failed (exit {}):\n{}\n{}",
        played.code,
        played.stdout,
        played.stderr
    );
    let mut bytes = 0;
    for h in fleet.hosts() {
        bytes += take_remote_bytes(&root_of(&h.sandbox))?;
    }
    eprintln!(
        "{playbook:?} {args:?}: {:.1} s, {} bytes per host{}",
        played.took.as_secs_f64(),
        bytes / HOSTS as u64,
        load.as_ref().map(|l| format!(", load {}", l.summary())).unwrap_or_default()
    );
    Ok(Measured { played, load, bytes_per_host: bytes / HOSTS as u64 })
}

fn root_of(sb: &baton_integration::Sandbox) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/{}/root", sb.pid()))
}

fn run() -> Result<()> {
    let fleet = Fleet::boot(HOSTS).context("boot the fleet")?;
    // Memory of the hosts at rest (systemd, journald, dbus, sshd), before any service runs.
    let figures = fleet.figures().context("the fleet's figures")?;
    eprintln!("{}", figures.summary());
    let fa = FleetAnsible::new("fleet-bench", &fleet)?;
    fa.write_group_vars(&group_vars())?;
    let restart = ansible::repo_dir().join("integration/ansible/fleet/restart.yml");
    let rolling = OsStr::new(ROLLING);

    // Both services on v1 everywhere, all at once, no load.
    measure(&fleet, &fa, rolling, &["-e", "baton_version=v1", "-e", "baton_serial=100%"], None)?;
    measure(&fleet, &fa, restart.as_os_str(), &["-e", "classic_version=v1", "-e", "classic_serial=100%"], None)?;

    // v1 -> v2 under load, batches of 5, each its own service and port.
    let baton = measure(&fleet, &fa, rolling, &["-e", "baton_version=v2"], Some(BATON_PORT))?;
    let classic = measure(&fleet, &fa, restart.as_os_str(), &["-e", "classic_version=v2"], Some(CLASSIC_PORT))?;
    // The same again: nothing to do (the baseline's no-op form: state=started).
    let baton_noop = measure(&fleet, &fa, rolling, &["-e", "baton_version=v2"], None)?;
    let classic_noop =
        measure(&fleet, &fa, restart.as_os_str(), &["-e", "classic_version=v2", "-e", "classic_state=started"], None)?;
    ensure!(!baton_noop.played.stdout.contains("changed: ["), "baton's no-op run changed something");
    ensure!(!classic_noop.played.stdout.contains("changed: ["), "the baseline's no-op run changed something");

    let bl = baton.load.clone().context("baton's load")?;
    let cl = classic.load.clone().context("the baseline's load")?;
    let mut s = String::new();
    writeln!(s, "{HEADING}\n")?;
    writeln!(
        s,
        "{HOSTS} hosts, each a sandboxed systemd in its own network namespace with its own sshd, joined by a bridge; \
         `ansible-playbook` ({}) over SSH from the controller namespace, forks 10, batches of 5 (`serial: 25%`, \
         `max_fail_percentage: 0`), a health gate from the controller after each host. Load during each deploy: \
         one `baton-load` per host and per mode (new connection per request; keep-alive), 1 worker each, \
         against the demo app (`--work-ms 20`: at most 50 requests per second per connection).\n",
        fa.ansible().core_version()
    )?;
    writeln!(s, "Fleet: {}.\n", figures.summary())?;
    writeln!(s, "| v1 -> v2 over {HOSTS} hosts | wall time | requests | failed | new-connection failed | keep-alive failed | bytes shipped per host | no-op run |")?;
    writeln!(s, "|---|---|---|---|---|---|---|---|")?;
    for (label, m, l, noop) in [
        ("`baton.systemd.rolling` (handover)", &baton, &bl, &baton_noop),
        ("`template` + `systemd_service state=restarted`", &classic, &cl, &classic_noop),
    ] {
        let failed = |r: LoadReport| format!("{} of {}", r.failed, r.requests);
        writeln!(
            s,
            "| {label} | {:.1} s | {} | **{}** | {} | {} | {} | {:.1} s |",
            m.played.took.as_secs_f64(),
            l.total.requests,
            l.total.failed,
            failed(l.mode(Mode::NewConnection)),
            failed(l.mode(Mode::KeepAlive)),
            human_bytes(m.bytes_per_host),
            noop.played.took.as_secs_f64(),
        )?;
    }
    writeln!(
        s,
        "\nBytes shipped per host: the files Ansible put into the host's remote temp directory during the run \
         (kept with `ANSIBLE_KEEP_REMOTE_FILES=1`, summed, averaged over the hosts): module payloads (baton's binary \
         module, the AnsiballZ wrappers of `template`'s `stat`/`copy` and of `systemd_service`), their argument files \
         and the rendered unit; SSH framing and shell commands are not counted. No-op run: the same deploy again \
         (the baseline with `state=started`, which restarts nothing), no load; it ships {} and {} per host. \
         A refused connection fails at once, so during a restart's gap each client fails many requests in a row: \
         the baseline's count of failures scales with the request rate, baton's stays 0.\n",
        human_bytes(baton_noop.bytes_per_host),
        human_bytes(classic_noop.bytes_per_host)
    )?;
    baton_integration::write_report_section(Path::new(REPORT), HEADING, &s)?;
    print!("{s}");
    eprintln!("added to {REPORT}");
    Ok(())
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.2} MiB", b as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}
