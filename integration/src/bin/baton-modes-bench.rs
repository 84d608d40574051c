//! `make bench`, the modes part (issue 12): for each mode (reuseport with request migration,
//! reuseport with the knob made inert, shared-socket mode) and client (a new connection per
//! request, keep-alive), side by side in one run against sandboxed real systemd (one sandbox
//! per combination): failed requests over handovers under load, the handovers' wall time (mean
//! and max), the worst request latency at a low rate (~5 req/s with `curl` during handovers one
//! second apart) and the kernel's migration counters as baton's results report them
//! (`migration_counters`: TCPMigrateReqSuccess/Failure deltas). Written to
//! `bench-report-modes.md` and printed.

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use baton_integration::modes::{run_cell, Cell, Client, ListenMode, CLIENTS, MODES};
use baton_integration::Host;

const REPORT: &str = "bench-report-modes.md";

/// Handovers under full load per combination.
const HANDOVERS: usize = 10;

/// Load workers (as integration/tests/matrix.rs): 4 opening a connection per request, 2
/// kept-alive (which alone drive two demo processes at tens of thousands of requests/s).
fn workers(client: Client) -> usize {
    match client {
        Client::NewConnection => 4,
        Client::KeepAlive => 2,
    }
}

/// Requests of the low-rate client (0.2 s apart) and the handovers during them.
const LOW_RATE_REQUESTS: usize = 60;
const LOW_RATE_HANDOVERS: usize = 6;

fn main() {
    if let Err(e) = run() {
        eprintln!("modes bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// The low-rate run: requests made, failed, the worst latency of the good ones.
struct LowRate {
    requests: usize,
    failed: usize,
    worst: Duration,
    migration: Vec<String>,
}

/// `curl` at ~5 req/s inside the sandbox (a new process and connection per request, or one
/// process reusing its connection with `--rate 5/s`) while [`LOW_RATE_HANDOVERS`] handovers
/// run one second apart.
fn low_rate(h: &Host, mode: ListenMode, client: Client) -> Result<LowRate> {
    let (name, port) = ("low", 8091);
    h.apply(&mode.spec(name, "v0", port), &[]).ok();
    h.wait_http(port, Duration::from_secs(10))?;
    let url = format!("http://127.0.0.1:{port}/");
    let script = match client {
        Client::NewConnection => format!(
            "for i in $(seq 1 {LOW_RATE_REQUESTS}); do curl -s -o /dev/null --max-time 5 \
             -w '%{{http_code}} %{{time_total}}\\n' {url}; sleep 0.2; done"
        ),
        Client::KeepAlive => {
            let urls = format!(" -o /dev/null {url}").repeat(LOW_RATE_REQUESTS);
            format!("curl -s --max-time 60 --rate 5/s -w '%{{http_code}} %{{time_total}}\\n'{urls} || true")
        }
    };
    let client =
        h.sb.command("timeout")
            .args(["120", "bash", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn the curl client")?;
    std::thread::sleep(Duration::from_millis(800));
    let mut migration = Vec::new();
    for i in 1..=LOW_RATE_HANDOVERS {
        let out = h.apply(&mode.spec(name, &format!("v{i}"), port), &[]).ok();
        migration.push(out.json["migration"].as_str().unwrap_or("null").to_owned());
        std::thread::sleep(Duration::from_millis(1000));
    }
    let out = client.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut requests = 0;
    let mut failed = 0;
    let mut worst = 0.0f64;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(code), Some(took)) = (parts.next(), parts.next()) else { continue };
        requests += 1;
        match (code, took.parse::<f64>()) {
            ("200", Ok(t)) => worst = worst.max(t),
            _ => failed += 1,
        }
    }
    // curl prints its -w line for a failed request too (status 000); a request it never
    // reported (the client cut off by `timeout`) counts as failed.
    failed += LOW_RATE_REQUESTS.saturating_sub(requests);
    let requests = requests.max(LOW_RATE_REQUESTS);
    migration.dedup();
    Ok(LowRate { requests, failed, worst: Duration::from_secs_f64(worst), migration })
}

fn run() -> Result<()> {
    let mut rows: Vec<(Cell, LowRate)> = Vec::new();
    for mode in MODES {
        for client in CLIENTS {
            eprintln!("{} / {} ...", mode.label(), client.label());
            let h = Host::boot(&format!("mbench-{}-{}", mode.tag(), client.tag()));
            mode.prepare(&h);
            let cell = run_cell(&h, mode, client, "bm", 8090, HANDOVERS, 0, workers(client));
            for p in &cell.problems {
                eprintln!("  problem: {p}");
            }
            let low = low_rate(&h, mode, client)?;
            rows.push((cell, low));
        }
    }

    let mut s = String::new();
    writeln!(s, "# baton benchmarks: listen modes × clients\n")?;
    writeln!(
        s,
        "## Handovers per listen mode and client kind (issue 12)\n\nMeasured {} against sandboxed real systemd {} \
         ({} build of baton and the demo app; one sandbox per combination, on a 2-core machine shared with other \
         work). Full load: {HANDOVERS} handovers under `baton-load` (4 workers opening a connection per request, 2 kept-alive; niced). Low rate: \
         {LOW_RATE_REQUESTS} `curl` requests 0.2 s apart (~5 req/s; keep-alive: one `curl --rate 5/s` reusing its \
         connection, which retries a request once on a reused connection that died) while {LOW_RATE_HANDOVERS} \
         handovers run 1 s apart; the latency is curl's `time_total`. Migration counters: the sum of the results' \
         `migration_counters` (TcpExt TCPMigrateReqSuccess/Failure deltas) over the full-load handovers. The \
         inert knob is the control: `net.ipv4.tcp_migrate_req` reads 1 (a file bind-mounted over it) while the \
         kernel's value stays 0, as on a 5.10.y kernel that took only the sysctl.\n",
        now(),
        rows.first().map(|_| systemd_version()).unwrap_or_default(),
        if cfg!(debug_assertions) { "debug" } else { "release" },
    )?;
    writeln!(
        s,
        "| mode | client | `migration` | failed / requests (full load) | problems (listed below) | handover mean / max | worst latency at ~5 \
         req/s (failed / requests) | TCPMigrateReq Success / Failure |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|")?;
    for (c, low) in &rows {
        let (mean, max) = c.handover_times();
        let counters = c.counters();
        let mut migration = c.migrations();
        for m in &low.migration {
            if !migration.contains(m) {
                migration.push(m.clone());
            }
        }
        writeln!(
            s,
            "| {} | {} | {} | **{}** / {} | {} | {:.0} / {:.0} ms | {:.1} ms ({} / {}) | {} / {} |",
            c.mode.label(),
            c.client.label(),
            migration.join(", "),
            c.load.failed,
            c.load.requests,
            c.problems.len(),
            mean.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0,
            low.worst.as_secs_f64() * 1000.0,
            low.failed,
            low.requests,
            counters.success,
            counters.failure,
        )?;
    }
    writeln!(s)?;
    // A broken promise (a handover that failed, a wrong version serving) is a figure too.
    for (c, _) in &rows {
        for p in &c.problems {
            let first = p.lines().next().unwrap_or("");
            writeln!(s, "- {} / {}: {first}", c.mode.label(), c.client.label())?;
        }
    }
    if rows.iter().any(|(c, _)| !c.problems.is_empty()) {
        writeln!(s)?;
    }
    std::fs::write(REPORT, &s).with_context(|| format!("write {REPORT}"))?;
    print!("{s}");
    eprintln!("written to {REPORT}");
    Ok(())
}

fn systemd_version() -> String {
    std::process::Command::new("systemctl")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
        .unwrap_or_default()
}

/// The date without a date crate: `date -u`.
fn now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
