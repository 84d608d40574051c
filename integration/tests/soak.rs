//! The soak: 200 handovers under load with faults injected at random (releases that crash,
//! never become ready, never notify, fail ExecStartPre, turn unhealthy while observed, and baton
//! itself killed mid-handover). It must end with 0 failed requests and nothing leaked: one
//! release running, at most `keep` + 1 unit files, no failed units, no stray processes.

use std::time::{Duration, Instant};

use baton_integration::{demo_spec, Host};
use serde_json::{json, Value};

const HANDOVERS: usize = 200;
const PORT: u16 = 8280;
const KEEP: usize = 2;

/// A small deterministic generator (xorshift), seeded so a failure can be replayed with
/// `BATON_SOAK_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn good(version: &str) -> Value {
    demo_spec("soak", version, PORT, &["--linger-ms", "50"], json!({"keep": KEEP}))
}

fn bad(kind: u64, version: &str) -> (Value, &'static str) {
    let fast = json!({"keep": KEEP, "health": {"http": "/health", "timeout_sec": 2, "interval_ms": 50}});
    match kind {
        0 => (demo_spec("soak", version, PORT, &["--crash-on-start"], fast), "crash"),
        1 => (demo_spec("soak", version, PORT, &["--never-ready"], fast), "never-ready"),
        2 => (
            demo_spec(
                "soak",
                version,
                PORT,
                &["--never-ready"],
                json!({"keep": KEEP, "service_type": "notify", "health": {"tcp": true, "timeout_sec": 2}}),
            ),
            "notify-never-ready",
        ),
        3 => (
            demo_spec(
                "soak",
                version,
                PORT,
                &[],
                json!({"keep": KEEP, "directives": {"Service": {"ExecStartPre": "/bin/false"}}}),
            ),
            "execstartpre-fails",
        ),
        _ => (
            demo_spec(
                "soak",
                version,
                PORT,
                &["--unhealthy-after", "0.5"],
                json!({"keep": KEEP, "health": {"http": "/health", "timeout_sec": 5, "interval_ms": 50, "observe_sec": 2}}),
            ),
            "unhealthy-while-observed",
        ),
    }
}

#[test]
fn two_hundred_handovers_with_random_faults() {
    let seed: u64 = std::env::var("BATON_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_ba70);
    eprintln!("soak seed {seed} (replay with BATON_SOAK_SEED={seed})");
    let mut rng = Rng(seed.max(1));
    let h = Host::boot("soak");
    let t0 = Instant::now();
    h.apply(&good("r0"), &[]).ok();
    h.wait_http(PORT, Duration::from_secs(5)).expect("serves");
    let load = h.load(PORT, 4, 1800);
    let mut faults: std::collections::BTreeMap<&str, usize> = Default::default();
    for i in 1..=HANDOVERS {
        let version = format!("r{i}");
        match rng.below(10) {
            // 20 %: a broken release first, which must be rolled back.
            0 | 1 => {
                let (spec, kind) = bad(rng.below(5), &format!("bad{i}"));
                let out = h.apply(&spec, &[]);
                assert!(out.failed() && out.json["rolled_back"] == true, "{kind} at {i}: {:#}", out.json);
                *faults.entry(kind).or_default() += 1;
            }
            // 10 %: baton itself killed at a random step of this handover.
            2 => {
                let kind = ["write", "start", "enable", "disable", "stop"][rng.below(5) as usize];
                let mut child = h.apply_until_paused(&good(&version), kind);
                h.kill_baton(&mut child);
                *faults.entry("baton-killed").or_default() += 1;
            }
            _ => {}
        }
        let out = h.apply(&good(&version), &[]).ok();
        assert_eq!(out.json["version"], version.as_str());
    }
    std::thread::sleep(Duration::from_millis(300));
    let r = load.finish().expect("load report");
    let elapsed = t0.elapsed();

    // What is left behind.
    let files: Vec<String> = h.unit_files().into_iter().filter(|f| f.starts_with("soak-")).collect();
    let active =
        h.sh("systemctl list-units --no-legend --state=active,activating,deactivating 'soak-*' | awk '{print $1}'");
    let failed = h.sh("systemctl list-units --no-legend --state=failed | awk '{print $1}'");
    let demos = h.sh("pgrep -c -x baton-demo || true");
    let batons = h.sh("pgrep -c -x baton || true");
    eprintln!(
        "soak: {HANDOVERS} handovers + faults {faults:?} in {:.0} s; {} requests ({:.0}/s), {} failed; \
         left: {} unit files, active {:?}, failed units {:?}, {} demo processes, {} baton processes",
        elapsed.as_secs_f64(),
        r.requests,
        r.rps,
        r.failed,
        files.len(),
        active.trim(),
        failed.trim(),
        demos.trim(),
        batons.trim()
    );
    assert!(faults.values().sum::<usize>() >= 40, "the seed must inject faults: {faults:?}");
    assert!(r.requests > 10_000, "{r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(active.trim(), format!("soak-r{HANDOVERS}.service"));
    assert!(failed.trim().is_empty(), "failed units left: {failed}");
    assert!(files.len() <= KEEP + 1, "unit files beyond keep: {files:?}");
    assert_eq!(demos.trim(), "1", "exactly the active release's process");
    assert_eq!(batons.trim(), "0");
}
