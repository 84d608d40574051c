//! Runs baton's migration probe once in the current network namespace and prints what it found
//! as one JSON object, for the tests that run it inside sandboxes with the sysctl on, off or
//! made inert (`integration/tests/migration.rs`).
//!
//! `baton-migration-check [--cache-dir DIR]`: without `--cache-dir` the probe always runs. The
//! object is the probe's report plus `counters` (the change of the kernel's migration counters
//! across the probe) and `cache_problem`; a probe that cannot run prints
//! `{"failed": true, "msg": ...}` and exits 1.

use std::path::PathBuf;
use std::process::ExitCode;

use baton_core::migration::{self, MigrationCounters};
use serde_json::{json, Value};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cache_dir = match args.as_slice() {
        [] => None,
        [flag, dir] if flag == "--cache-dir" => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("usage: baton-migration-check [--cache-dir DIR]");
            return ExitCode::from(2);
        }
    };
    let counters = || migration::read_counters().ok().flatten();
    let before = counters();
    let probed = match &cache_dir {
        Some(dir) => migration::probe_cached(dir).map(|(report, problem)| (report, problem.map(|p| p.to_string()))),
        None => migration::probe().map(|report| (report, None)),
    };
    let after = counters();
    match probed {
        Ok((report, cache_problem)) => {
            let mut out = serde_json::to_value(&report).unwrap_or(Value::Null);
            let delta = before.zip(after).map(|(b, a)| b.delta(a));
            out["counters"] = serde_json::to_value(delta).unwrap_or(Value::Null);
            out["counters_after"] =
                serde_json::to_value(after.unwrap_or(MigrationCounters::default())).unwrap_or(Value::Null);
            out["cache_problem"] = json!(cache_problem);
            out["warning"] = json!(report.warning());
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", json!({"failed": true, "msg": e.to_string()}));
            ExitCode::FAILURE
        }
    }
}
