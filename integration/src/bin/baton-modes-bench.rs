//! `make bench`, the modes part (issue 12): for each mode (reuseport with request migration,
//! reuseport with the knob made inert, shared-socket mode) and client (a new connection per
//! request, keep-alive), side by side in one run against sandboxed real systemd (one sandbox
//! per combination): failed requests over handovers under load, the handovers' wall time (mean
//! and max), the worst request latency at a low rate (~5 req/s with `curl` during handovers one
//! second apart) and the kernel's migration counters as baton's results report them
//! (`migration_counters`: TCPMigrateReqSuccess/Failure deltas). Written to
//! `bench-report-modes.md` and printed.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use baton_integration::modes::{
    force_wake_up, low_rate, run_cell, Cell, Client, ListenMode, LowRate, CLIENTS, LOW_RATE_HANDOVERS,
    LOW_RATE_REQUESTS, MODES,
};
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

fn main() {
    if let Err(e) = run() {
        eprintln!("modes bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// The low-rate run of a cell: the service `low` on port 8091 from `v0`, then
/// [`LOW_RATE_HANDOVERS`] handovers under ~5 req/s of `curl`.
fn low_rate_of(h: &Host, mode: ListenMode, client: Client, prefix: &str) -> Result<LowRate> {
    let (name, port) = ("low", 8091);
    if prefix == "v" {
        h.apply(&mode.spec(name, "v0", port), &[]).ok();
        h.wait_http(port, Duration::from_secs(10))?;
    }
    Ok(low_rate(h, port, client, prefix, &|v| mode.spec(name, v, port)))
}

fn run() -> Result<()> {
    let mut rows: Vec<(Cell, LowRate)> = Vec::new();
    let mut woken: Vec<(Client, LowRate, LowRate)> = Vec::new();
    let mut wakes = String::new();
    for mode in MODES {
        for client in CLIENTS {
            eprintln!("{} / {} ...", mode.label(), client.label());
            let h = Host::boot(&format!("mbench-{}-{}", mode.tag(), client.tag()));
            mode.prepare(&h);
            let cell = run_cell(&h, mode, client, "bm", 8090, HANDOVERS, 0, workers(client));
            for p in &cell.problems {
                eprintln!("  problem: {p}");
            }
            let low = low_rate_of(&h, mode, client, "v")?;
            // The mitigation for kernels whose migrated connections wake no listener, forced
            // (this kernel may have the fix): the same low rate with the wake-up connection.
            if mode == ListenMode::Migration {
                wakes = probe_wakes(&h);
                force_wake_up(&h);
                woken.push((client, low.clone(), low_rate_of(&h, mode, client, "w")?));
            }
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
    writeln!(
        s,
        "### Low rate without and with the wake-up connection (reuseport, migration)\n\nOn kernels without \
         \"tcp: call sk_data_ready() after listener migration\" a migrated connection waits for the next arrival; \
         baton then makes one wake-up connection after each old listener closes. The probe on this kernel says \
         `wakes_waiters: {}`; the second run forces the mitigation through the probe's cached answer.\n",
        wakes,
    )?;
    writeln!(s, "| client | as probed: worst latency (failed / requests, wake-ups) | wake-up forced: worst latency (failed / requests, wake-ups) |")?;
    writeln!(s, "|---|---|---|")?;
    for (client, plain, forced) in &woken {
        let cell = |r: &LowRate| {
            format!("{:.1} ms ({} / {}, {})", r.worst.as_secs_f64() * 1000.0, r.failed, r.requests, r.wake_ups)
        };
        writeln!(s, "| {} | {} | {} |", client.label(), cell(plain), cell(forced))?;
    }
    writeln!(s)?;
    std::fs::write(REPORT, &s).with_context(|| format!("write {REPORT}"))?;
    print!("{s}");
    eprintln!("written to {REPORT}");
    Ok(())
}

/// What the migration probe says of this kernel's wake-ups (`baton-migration-check`, run in the
/// sandbox).
fn probe_wakes(h: &Host) -> String {
    let out =
        h.sb.command(baton_integration::bin("baton-migration-check"))
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    out.map(|v| v["wakes_waiters"].to_string()).unwrap_or_else(|| "unknown".to_owned())
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
