//! Issue 12's matrix against a sandboxed real systemd: for each mode (reuseport with request
//! migration, reuseport with the knob made inert, shared-socket mode) and client (a new
//! connection per request, keep-alive), 30 handovers under load interleaved with 6 releases
//! that fail readiness and are rolled back, one sandbox per combination, one combination at a
//! time. Every combination but inert-knob reuseport fails 0 requests; inert-knob reuseport is
//! the documented control: its requests are reset, and every handover's result says
//! `migration: "unavailable"` with the warning. Every good handover ends on the new release,
//! every failing one leaves the old release alone serving, and each result's `migration` is
//! the mode's. Prints a table of the figures.

use baton_integration::modes::ListenMode;
use baton_integration::modes::{real_knob, run_cell, Cell, Client, CLIENTS, MODES};
use baton_integration::Host;

/// Good handovers per combination.
const HANDOVERS: usize = 30;

/// A failing release before every fifth handover: 6 per combination.
const FAIL_EVERY: usize = 5;

/// Load workers (each with one request in flight; the machine has two cores): 4 opening a
/// connection per request, 2 kept-alive (which alone drive two demo processes at ~40k req/s).
fn workers(client: Client) -> usize {
    match client {
        Client::NewConnection => 4,
        Client::KeepAlive => 2,
    }
}

#[test]
fn modes_and_clients_matrix_of_handovers_and_failing_releases() {
    let mut cells: Vec<Cell> = Vec::new();
    for mode in MODES {
        for client in CLIENTS {
            let h = Host::boot(&format!("matrix-{}-{}", mode.tag(), client.tag()));
            mode.prepare(&h);
            let cell = run_cell(&h, mode, client, "mx", 8090, HANDOVERS, FAIL_EVERY, workers(client));
            match mode {
                ListenMode::Migration => assert_eq!(real_knob(&h), "1", "baton turned the knob on"),
                _ => assert_eq!(real_knob(&h), "0", "{}: baton left the kernel's knob at 0", mode.label()),
            }
            eprintln!("{} / {}: {}", mode.label(), client.label(), cell.load.summary());
            for p in &cell.problems {
                eprintln!("  problem: {p}");
            }
            cells.push(cell);
        }
    }

    eprintln!(
        "\n| mode | client | handovers | failing releases rolled back | requests | failed (reset/refused/timeout/other) \
         | migration | migrated (success/failure) | handover mean / max |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|");
    for c in &cells {
        let (mean, max) = c.handover_times();
        let counters = c.counters();
        eprintln!(
            "| {} | {} | {} | {}/{} | {} | {} ({}/{}/{}/{}) | {} | {}/{} | {:.0} / {:.0} ms |",
            c.mode.label(),
            c.client.label(),
            c.handovers.len(),
            c.failing.iter().filter(|r| r["rolled_back"] == true).count(),
            c.failing.len(),
            c.load.requests,
            c.load.failed,
            c.load.reset,
            c.load.refused,
            c.load.timeout,
            c.load.wrong_status + c.load.other,
            c.migrations().join(", "),
            counters.success,
            counters.failure,
            mean.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0,
        );
    }

    let mut control_failed = 0;
    for c in &cells {
        let what = format!("{} / {}", c.mode.label(), c.client.label());
        assert!(c.problems.is_empty(), "{what}: {:#?}", c.problems);
        assert_eq!(c.handovers.len(), HANDOVERS, "{what}");
        assert_eq!(c.failing.len(), HANDOVERS / FAIL_EVERY, "{what}");
        assert!(c.load.requests > 1000, "{what}: the load must be real: {:?}", c.load);
        assert!(c.load.by_version.contains_key(&format!("v{HANDOVERS}")), "{what}: {:?}", c.load.by_version);
        assert!(
            c.load.by_version.keys().all(|v| !v.starts_with("bad")),
            "{what}: a failing release served: {:?}",
            c.load.by_version
        );
        assert_eq!(c.migrations(), [c.mode.expected_migration()], "{what}");
        if c.mode.promises_no_failure() {
            assert_eq!(c.load.failed, 0, "{what}: requests failed: {:?}", c.load);
        } else {
            control_failed += c.load.failed;
            assert_eq!(c.counters().success, 0, "{what}: nothing migrates with the knob inert");
        }
        if c.mode == ListenMode::Migration {
            assert_eq!(c.counters().failure, 0, "{what}: the kernel failed no migration");
        }
    }
    assert!(control_failed > 0, "with the knob inert, queued connections must be reset (summed over both clients)");
    let migrated: u64 = cells.iter().filter(|c| c.mode == ListenMode::Migration).map(|c| c.counters().success).sum();
    assert!(migrated > 0, "with migration working the kernel moved queued connections");
}
