//! `make bench`: figures measured side by side in one run against a sandboxed real systemd,
//! written to `bench-report.md` and printed:
//! - wall time of a no-op `baton apply` against one bare `systemctl show`, and their ratio;
//! - baton's own overhead per handover: total minus the app's time to become ready minus its drain;
//! - the shipped binaries (module, CLI, provider): size per build profile, the newest glibc
//!   symbol version each needs, and the bytes Ansible ships per host per task.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use baton_integration::{ansible, bin, demo_spec, dist, Host};
use serde_json::{json, Value};

const RUNS: usize = 30;
const HANDOVERS: usize = 15;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times one command run inside the sandbox (nsenter included, as for both sides).
fn time_inside(h: &Host, program: &str, args: &[&str], stdin: Option<&str>) -> Result<Duration> {
    use std::io::Write;
    use std::process::Stdio;
    let t0 = Instant::now();
    let mut child =
        h.sb.command(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {program}"))?;
    let mut input = child.stdin.take().context("stdin")?;
    if let Some(s) = stdin {
        input.write_all(s.as_bytes())?;
    }
    drop(input);
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "{program} {args:?} failed");
    Ok(t0.elapsed())
}

/// Seconds in an action like `ready demo-v2.service after 0.3 s, listening on :8080` or
/// `stop demo-v1.service (0.2 s)`.
fn action_secs(actions: &[Value], prefix: &str) -> Option<f64> {
    let a = actions.iter().filter_map(Value::as_str).find(|a| a.starts_with(prefix))?;
    let rest = a.split(" after ").nth(1).or_else(|| a.split(" (").nth(1))?;
    rest.split(' ').next()?.parse().ok()
}

fn run() -> Result<()> {
    let h = Host::boot("bench");
    let mut report = String::new();
    writeln!(report, "# baton benchmarks\n")?;
    writeln!(
        report,
        "Measured {} against a sandboxed real systemd {} ({} build); each figure is the median of its runs.\n",
        chrono_free_now(),
        h.sh("systemctl show -p Version --value").trim(),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    )?;

    shipped_binaries(&mut report)?;

    // A service with a few releases on disk, so the no-op reads a realistic state.
    let spec = |v: &str| demo_spec("bench", v, 8090, &["--linger-ms", "0"], json!({"keep": 2}));
    for v in ["v1", "v2", "v3"] {
        h.apply(&spec(v), &[]).ok();
    }
    let noop_spec = spec("v3").to_string();
    let baton = bin("baton").display().to_string();
    let mut noop = Vec::new();
    let mut show = Vec::new();
    for _ in 0..RUNS {
        // Interleaved, so both sides see the same machine.
        noop.push(time_inside(&h, &baton, &["apply", "--progress", "never"], Some(&noop_spec))?);
        show.push(time_inside(&h, "systemctl", &["show", "bench-v3.service"], None)?);
    }
    let check = h.apply(&spec("v3"), &[]).ok();
    anyhow::ensure!(!check.changed(), "the no-op apply changed something: {:#}", check.json);
    let (noop, show) = (median(noop), median(show));
    writeln!(report, "## No-op `baton apply` vs one `systemctl show` ({RUNS} runs each, interleaved)\n")?;
    writeln!(report, "| command | median wall time |")?;
    writeln!(report, "|---|---|")?;
    writeln!(report, "| `baton apply` (no-op, 3 releases on disk) | {:.1} ms |", ms(noop))?;
    writeln!(report, "| `systemctl show bench-v3.service` | {:.1} ms |", ms(show))?;
    writeln!(report, "| **ratio** | **{:.2}×** (target ≤ 2×) |\n", noop.as_secs_f64() / show.as_secs_f64())?;

    // Handovers: total minus readiness minus drain is baton's own overhead; per-version units
    // beside instance units (a template and a drop-in per release).
    let per_version = handovers(&h, "bench", 8090, json!({"keep": 2}), |n, v| format!("{n}-{v}.service"))?;
    let instance = handovers(&h, "benchi", 8091, json!({"keep": 2, "unit_naming": "instance"}), |n, v| {
        format!("{n}@{v}.service")
    })?;
    writeln!(report, "## Handover overhead ({HANDOVERS} handovers under load, per unit naming)\n")?;
    writeln!(report, "| part | per-version (`app-v2.service`) | instance (`app@v2.service` + drop-in) |")?;
    writeln!(report, "|---|---|---|")?;
    let parts: [(&str, Part); 4] = [
        ("total wall time of `baton apply` (process start to exit)", |r| r.0),
        ("new release ready (start job → probe + listener seen)", |r| r.1),
        ("old release drained and stopped by systemd", |r| r.2),
        ("**baton's own overhead**", |r| r.3),
    ];
    for (part, f) in parts {
        writeln!(
            report,
            "| {part} | {:.0} ms | {:.0} ms |",
            per_version.median(f) * 1000.0,
            instance.median(f) * 1000.0
        )?;
    }
    for (what, h) in [("per-version", &per_version), ("instance", &instance)] {
        writeln!(
            report,
            "\nLoad during the {what} handovers: {} requests, {} failed, {:.0} requests/s.",
            h.load.requests, h.load.failed, h.load.rps
        )?;
    }
    writeln!(report)?;

    std::fs::write("bench-report.md", &report).context("write bench-report.md")?;
    print!("{report}");
    eprintln!("written to bench-report.md");
    Ok(())
}

/// One handover's wall time, readiness, drain and baton's own overhead, in seconds.
type Row = (f64, f64, f64, f64);

/// One part of a [`Row`].
type Part = fn(&Row) -> f64;

/// The figures of [`HANDOVERS`] handovers of one service under load.
struct Handovers {
    rows: Vec<Row>,
    load: baton_integration::LoadReport,
}

impl Handovers {
    fn median(&self, f: Part) -> f64 {
        let mut v: Vec<f64> = self.rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

/// [`HANDOVERS`] handovers of the demo service `name` on `port` (spec fields `extra`) under
/// load; `unit` names a release's unit.
fn handovers(h: &Host, name: &str, port: u16, extra: Value, unit: fn(&str, &str) -> String) -> Result<Handovers> {
    let spec = |v: &str| demo_spec(name, v, port, &["--linger-ms", "0"], extra.clone());
    h.apply(&spec("v0"), &[]).ok();
    let load = h.load(port, 2, 600);
    let mut rows = Vec::new();
    for i in 0..HANDOVERS {
        let v = format!("h{i}");
        let out = h.apply(&spec(&v), &[]).ok();
        let actions = out.json["actions"].as_array().cloned().unwrap_or_default();
        let ready = action_secs(&actions, &format!("ready {}", unit(name, &v))).context("ready action")?;
        let prev = out.json["previous_version"].as_str().unwrap_or("").to_owned();
        let drain = action_secs(&actions, &format!("stop {}", unit(name, &prev))).context("stop action")?;
        let total = out.took.as_secs_f64();
        rows.push((total, ready, drain, total - ready - drain));
    }
    Ok(Handovers { rows, load: load.finish()? })
}

/// Sizes of the shipped binaries per build profile and the newest glibc symbol each needs.
fn shipped_binaries(report: &mut String) -> Result<()> {
    let target = ansible::target_dir();
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map(|m| m.len()).ok();
    let show = |n: Option<u64>| n.map_or_else(|| "not built".to_owned(), |n| format!("{n} B"));
    writeln!(report, "## Shipped binaries\n")?;
    writeln!(
        report,
        "`make dist`: profile `dist` (opt-level z, fat LTO, 1 codegen unit, stripped, panic=unwind; \
         the module: `dist-module`, the same with panic=abort), cargo-zigbuild for `{}.2.17`.\n",
        dist::TRIPLE
    )?;
    writeln!(
        report,
        "| binary | debug | release | **dist** | dist / release | newest glibc symbol (dist) | host build |"
    )?;
    writeln!(report, "|---|---|---|---|---|---|---|")?;
    for name in dist::SHIPPED {
        let shipped = dist::shipped(name);
        let (debug, release, small) =
            (size(target.join("debug").join(name)), size(target.join("release").join(name)), size(shipped.clone()));
        let newest = |p: &std::path::Path| {
            dist::glibc_versions(p).ok().and_then(|v| v.last().map(|v| format!("GLIBC_{}", dist::show_version(v))))
        };
        let host = newest(&target.join("release").join(name)).unwrap_or_else(|| "-".to_owned());
        writeln!(
            report,
            "| `{name}` | {} | {} | **{}** | {} | {} | {host} |",
            show(debug),
            show(release),
            show(small),
            match (small, release) {
                (Some(s), Some(r)) => format!("{:.2}×", s as f64 / r as f64),
                _ => "-".to_owned(),
            },
            newest(&shipped).unwrap_or_else(|| "-".to_owned()),
        )?;
    }
    // A binary module is copied to the host as is, with its args file, for every task.
    let module = size(dist::shipped("service")).unwrap_or(0);
    let args =
        json!({"name": "bench", "version": "v2", "exec_start": ["/usr/local/bin/app", "--port", "8090"], "port": 8090,
        "_ansible_check_mode": false, "_ansible_diff": false, "_ansible_no_log": false})
        .to_string()
        .len() as u64;
    writeln!(
        report,
        "\nBytes Ansible ships per host per task: the module {module} B + its args file {args} B = **{} B** \
         (limit for the module: {} B).\n",
        module + args,
        dist::MODULE_MAX_BYTES
    )?;
    Ok(())
}

/// The date without a date crate: `date -u`.
fn chrono_free_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
