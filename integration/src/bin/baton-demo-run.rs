//! `make demo`: boots a throwaway real systemd, deploys the demo service v1 and puts it under
//! load, hands over to v2, tries a broken v3 (rolled back), then — for comparison — restarts the
//! active release the conventional way under the same load, and prints a short report.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use baton_integration::{demo_spec, Applied, Host, LoadReport};
use serde_json::json;

const PORT: u16 = 8080;

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

fn say(s: &str) {
    println!("{s}");
}

fn show(out: &Applied) {
    for line in out.stderr.lines() {
        println!("      {line}");
    }
}

fn load_line(r: &LoadReport) -> String {
    let versions: Vec<String> = r.by_version.iter().map(|(v, n)| format!("{v}: {n}")).collect();
    format!(
        "{} requests, {} failed (refused {}, reset {}, timeout {}, wrong status {}, other {}); served by {}",
        r.requests,
        r.failed,
        r.refused,
        r.reset,
        r.timeout,
        r.wrong_status,
        r.other,
        versions.join(", ")
    )
}

fn run() -> Result<()> {
    let t0 = Instant::now();
    say("baton demo: zero-downtime handovers under load, against a real systemd in a sandbox\n");
    say("1. booting a throwaway systemd as PID 1 of private namespaces");
    let h = Host::boot("demo");
    say(&format!("   booted in {} ms ({})\n", h.sb.boot_duration().as_millis(), h.sb.boot_state()));

    let spec = |version: &str, flags: &[&str]| {
        demo_spec(
            "demo",
            version,
            PORT,
            &[&["--notify", "--linger-ms", "100"], flags].concat(),
            json!({"service_type": "notify", "health": {"http": "/health", "timeout_sec": 5, "interval_ms": 50}}),
        )
    };

    say("2. deploying demo v1 (Type=notify, SO_REUSEPORT on :8080)");
    let v1 = h.apply(&spec("v1", &[]), &[]).ok();
    show(&v1);
    h.wait_http(PORT, Duration::from_secs(5))?;
    say("   putting it under load: 4 workers, a new connection per request\n");
    let load = h.load(PORT, 4, 300);
    std::thread::sleep(Duration::from_secs(2));

    say("3. handing over to v2");
    let v2 = h.apply(&spec("v2", &[]), &[]).ok();
    show(&v2);
    say(&format!("   {}\n", v2.msg()));
    std::thread::sleep(Duration::from_secs(2));

    say("4. trying a broken v3 (it crashes on start)");
    let v3 = h.apply(&spec("v3", &["--crash-on-start"]), &[]);
    show(&v3);
    if !v3.failed() || v3.json["rolled_back"] != true {
        bail!("v3 should have been rolled back: {:#}", v3.json);
    }
    let first_line = v3.msg().lines().next().unwrap_or("");
    say(&format!("   refused and rolled back: {first_line}"));
    for line in v3.msg().lines().skip(1) {
        say(&format!("     | {line}"));
    }
    say("");
    std::thread::sleep(Duration::from_secs(2));
    let baton_load = load.finish().context("load report")?;

    say("5. for comparison: `systemctl restart` of the active release under the same load");
    let load = h.load(PORT, 4, 300);
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    h.sh("systemctl restart demo-v2.service");
    let restart_took = t.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let restart_load = load.finish().context("load report")?;
    say(&format!("   restarted in {:.2} s\n", restart_took.as_secs_f64()));

    say("report");
    say("------");
    say(&format!("baton, 1 handover + 1 rollback: {}", load_line(&baton_load)));
    say(&format!(
        "  handover v1 -> v2: {:.2} s wall (baton run included); broken v3 refused in {:.2} s",
        v2.took.as_secs_f64(),
        v3.took.as_secs_f64()
    ));
    say(&format!("systemctl restart:              {}", load_line(&restart_load)));
    say(&format!("demo finished in {:.1} s; the sandbox is torn down now.", t0.elapsed().as_secs_f64()));
    if baton_load.failed != 0 {
        bail!("baton's handover failed {} requests", baton_load.failed);
    }
    Ok(())
}
