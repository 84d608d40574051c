//! `make bench`, the Ansible part: runs `integration/ansible/bench.yml` with the real
//! `ansible-playbook` inside a sandboxed systemd and adds its figures to `bench-report.md` (after
//! the section `baton-bench` writes, replacing an earlier Ansible section), side by side from
//! one playbook run:
//! - per-task wall time of a no-op `baton.systemd.service` against the conventional no-op pair
//!   `ansible.builtin.template` + `ansible.builtin.systemd_service` (median of the rounds, as
//!   the `baton_task_times` callback measures it);
//! - failed requests under the same load: version bumps with `baton.systemd.service` against
//!   `template` + `systemd_service state=restarted`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use baton_integration::ansible::{self, Ansible};
use baton_integration::{bin, Host, LoadReport};
use serde_json::Value;

const REPORT: &str = "bench-report.md";
const HEADING: &str = "## Ansible: `baton.systemd.service` vs `template` + `systemd_service`";

fn main() {
    if let Err(e) = run() {
        eprintln!("ansible bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn run() -> Result<()> {
    let h = Host::boot("ansible-bench");
    let a = Ansible::new("bench");
    let dir = ansible::repo_dir().join("integration/ansible");
    let times = a.dir().join("task-times.jsonl");
    let results = a.dir().join("load-reports.json");
    let vars = [
        format!("baton_demo={}", bin("baton-demo").display()),
        format!("baton_load={}", bin("baton-load").display()),
        format!("results_file={}", results.display()),
    ];
    let mut cmd = h.sb.command(ansible::venv_tool("ansible-playbook"));
    cmd.args(["-i", "localhost,", "-c", "local"]).arg(dir.join("bench.yml"));
    for v in &vars {
        cmd.arg("-e").arg(v);
    }
    a.env(&mut cmd)
        .env("BATON_TASK_TIMES", &times)
        .env("ANSIBLE_CALLBACK_PLUGINS", dir.join("callback_plugins"))
        .env("ANSIBLE_CALLBACKS_ENABLED", "baton_task_times");
    eprintln!("running {} (a few minutes)", dir.join("bench.yml").display());
    let out = cmd.output().context("run ansible-playbook")?;
    if !out.status.success() {
        bail!(
            "the bench playbook failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Per-task times of the no-op rounds.
    let mut per_task: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let text = std::fs::read_to_string(&times).with_context(|| format!("read {}", times.display()))?;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).context("a task-times line")?;
        let task = v["task"].as_str().unwrap_or("").to_owned();
        if task.starts_with("noop | ") {
            ensure!(v["status"] == "ok", "a no-op task failed: {v}");
            ensure!(v["changed"] == false, "a no-op task changed something: {v}");
        }
        per_task.entry(task).or_default().push(v["seconds"].as_f64().unwrap_or(f64::NAN) * 1000.0);
    }
    let get = |name: &str| per_task.get(name).cloned().with_context(|| format!("no times for task {name:?}"));
    let baton = get("noop | baton.systemd.service")?;
    let template = get("noop | ansible.builtin.template")?;
    let systemd = get("noop | ansible.builtin.systemd_service")?;
    ensure!(baton.len() == template.len() && baton.len() == systemd.len() && !baton.is_empty(), "uneven rounds");
    let rounds = baton.len();
    let pair: Vec<f64> = template.iter().zip(&systemd).map(|(t, s)| t + s).collect();
    let handovers = per_task.get("deploy | baton.systemd.service").cloned().unwrap_or_default();

    // Load reports.
    let reports: BTreeMap<String, LoadReport> =
        serde_json::from_str(&std::fs::read_to_string(&results).context("read the load reports")?)
            .context("parse the load reports")?;
    let baton_load = reports.get("baton").context("baton's load report")?;
    let restart_load = reports.get("restart").context("the restart load report")?;

    let (b, p) = (median(baton.clone()), median(pair.clone()));
    let mut section = String::new();
    writeln!(section, "{HEADING}\n")?;
    writeln!(
        section,
        "One `ansible-playbook` run ({}, `-c local`) against the same sandboxed systemd; per-task wall time \
         from the task's start to its result, as a callback sees it (module transfer and Python start-up included).\n",
        a.core_version()
    )?;
    writeln!(section, "### No-op run, per task ({rounds} rounds, interleaved)\n")?;
    writeln!(section, "| task | median | min |")?;
    writeln!(section, "|---|---|---|")?;
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    writeln!(
        section,
        "| `baton.systemd.service` (unit + every release + systemd state) | {b:.0} ms | {:.0} ms |",
        min(&baton)
    )?;
    writeln!(
        section,
        "| `ansible.builtin.template` | {:.0} ms | {:.0} ms |",
        median(template.clone()),
        min(&template)
    )?;
    writeln!(
        section,
        "| `ansible.builtin.systemd_service` | {:.0} ms | {:.0} ms |",
        median(systemd.clone()),
        min(&systemd)
    )?;
    writeln!(section, "| `template` + `systemd_service` (per round) | {p:.0} ms | {:.0} ms |", min(&pair))?;
    writeln!(section, "| **ratio baton / pair** | **{:.2}×** | |\n", b / p)?;
    writeln!(section, "### Version bumps under load ({} each, {} workers)\n", handovers.len().max(1), 4)?;
    writeln!(section, "| deploy | requests | failed | refused | reset | timeout | wrong status | other |")?;
    writeln!(section, "|---|---|---|---|---|---|---|---|")?;
    for (label, r) in [
        ("`baton.systemd.service` (handover)", baton_load),
        ("`template` + `systemd_service state=restarted`", restart_load),
    ] {
        writeln!(
            section,
            "| {label} | {} | **{}** | {} | {} | {} | {} | {} |",
            r.requests, r.failed, r.refused, r.reset, r.timeout, r.wrong_status, r.other
        )?;
    }
    if !handovers.is_empty() {
        writeln!(section, "\nMedian task time of a handover: {:.0} ms.", median(handovers))?;
    }
    writeln!(section)?;

    baton_integration::write_report_section(Path::new(REPORT), HEADING, &section)?;
    print!("{section}");
    eprintln!("added to {REPORT}");
    Ok(())
}
