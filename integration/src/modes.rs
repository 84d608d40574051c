//! The modes × clients matrix of issue 12 (integration/tests/matrix.rs, the bench
//! `baton-modes-bench`): reuseport with request migration, reuseport with the knob made inert
//! (a regular file holding `1` bind-mounted over `net.ipv4.tcp_migrate_req` in the sandbox's
//! mount namespace while the namespace's real value stays 0), and shared-socket mode; clients
//! opening a new connection per request or keeping connections alive. One cell: handovers
//! under a niced `baton-load`, interleaved with releases that fail readiness and are rolled
//! back, every outcome checked and its figures kept.

use std::process::{Command, Stdio};
use std::time::Duration;

use baton_core::migration::MigrationCounters;
use serde_json::{json, Value};

use crate::{bin, demo_spec, Applied, Host, Load, LoadReport};

const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// How a service listens across a handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenMode {
    /// `listen_mode: "reuseport"`, `migrate_requests: true`, on a kernel whose migration works.
    Migration,
    /// The same with the knob made inert: it reads 1 and migrates nothing (the control).
    InertKnob,
    /// `listen_mode: "socket"`: one listening socket in PID 1 across releases.
    Socket,
}

/// All modes, in the order of the tables.
pub const MODES: [ListenMode; 3] = [ListenMode::Migration, ListenMode::InertKnob, ListenMode::Socket];

impl ListenMode {
    /// A label for tables and sandbox names.
    pub fn label(self) -> &'static str {
        match self {
            ListenMode::Migration => "reuseport, migration",
            ListenMode::InertKnob => "reuseport, inert knob",
            ListenMode::Socket => "socket",
        }
    }

    /// A short tag (sandbox labels).
    pub fn tag(self) -> &'static str {
        match self {
            ListenMode::Migration => "mig",
            ListenMode::InertKnob => "inert",
            ListenMode::Socket => "sock",
        }
    }

    /// The `migration` a handover's result must show.
    pub fn expected_migration(self) -> &'static str {
        match self {
            ListenMode::Migration => "verified",
            ListenMode::InertKnob => "unavailable",
            ListenMode::Socket => "shared-socket",
        }
    }

    /// Whether the design promises no failed request in this mode.
    pub fn promises_no_failure(self) -> bool {
        self != ListenMode::InertKnob
    }

    /// Prepares a freshly booted sandbox: the knob's real value 0 (baton turns it on when it
    /// migrates), or made inert.
    pub fn prepare(self, h: &Host) {
        set_knob(h, 0);
        if self == ListenMode::InertKnob {
            make_knob_inert(h);
        }
    }

    fn extra(self) -> Value {
        let mut extra = json!({"migrate_requests": true, "keep": 2});
        if self == ListenMode::Socket {
            extra["listen_mode"] = json!("socket");
        }
        extra
    }

    /// A good release of the demo app: its stopped listener lingers 150 ms on SIGTERM (so
    /// connections queue on it), kept-alive connections are drained within 3 s.
    pub fn spec(self, name: &str, version: &str, port: u16) -> Value {
        demo_spec(name, version, port, &["--linger-ms", "150", "--drain-ms", "3000"], self.extra())
    }

    /// A release that never becomes ready (binds nothing, never answers), given 1 s.
    pub fn failing(self, name: &str, version: &str, port: u16) -> Value {
        let mut s = demo_spec(name, version, port, &["--never-ready"], self.extra());
        s["health"]["timeout_sec"] = json!(1);
        s
    }
}

/// How the load's clients use connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// A new connection per request.
    NewConnection,
    /// Kept-alive connections, many requests each.
    KeepAlive,
}

/// Both clients, in the order of the tables.
pub const CLIENTS: [Client; 2] = [Client::NewConnection, Client::KeepAlive];

impl Client {
    /// A label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Client::NewConnection => "new connection per request",
            Client::KeepAlive => "keep-alive",
        }
    }

    /// A short tag (sandbox labels).
    pub fn tag(self) -> &'static str {
        match self {
            Client::NewConnection => "new",
            Client::KeepAlive => "ka",
        }
    }
}

/// Makes the knob inert: the real value 0, and a regular file holding 1 mounted over the sysctl
/// in the sandbox's mount namespace (what baton, the probe and the services read there), as on
/// a 5.10.y kernel that took only the sysctl.
pub fn make_knob_inert(h: &Host) {
    set_knob(h, 0);
    h.sh(&format!("echo 1 > /run/inert-knob && mount --bind /run/inert-knob {SYSCTL}"));
    assert_eq!(h.sh(&format!("cat {SYSCTL}")).trim(), "1", "the knob reads 1 inside");
    assert_eq!(real_knob(h), "0", "the kernel's value for the namespace stays 0");
}

/// Where baton caches the migration probe's answer for this boot (the default lock directory).
pub const PROBE_CACHE: &str = "/run/baton/migration-probe";

/// Makes the next runs in the sandbox take this kernel for one whose migrated connections do
/// not wake the new listener (before "tcp: call sk_data_ready() after listener migration"), so
/// that they make the wake-up connection after each old listener closes: the cached probe
/// answer (written by an earlier handover) is rewritten with `wakes_waiters: false`. Lets the
/// mitigation run, and be measured, on a kernel that has the fix.
pub fn force_wake_up(h: &Host) {
    let cache = h.sh(&format!("cat {PROBE_CACHE}"));
    let mut entry: Value = serde_json::from_str(cache.trim()).expect("the probe cache is JSON");
    assert!(entry["report"]["wakes_waiters"].is_boolean(), "a probe ran before: {entry}");
    entry["report"]["wakes_waiters"] = json!(false);
    let mut write = h
        .sb
        .command("sh")
        .args([
            "-c",
            &format!("cat > {PROBE_CACHE}.new && chmod 600 {PROBE_CACHE}.new && mv {PROBE_CACHE}.new {PROBE_CACHE}"),
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let mut stdin = write.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, entry.to_string().as_bytes()).expect("write the cache");
    drop(stdin);
    assert!(write.wait().expect("sh").success(), "rewrite {PROBE_CACHE}");
}

/// What a low-rate run measured.
#[derive(Debug, Clone, Default)]
pub struct LowRate {
    /// Requests made.
    pub requests: usize,
    /// Requests that failed (or that the client never reported).
    pub failed: usize,
    /// The worst latency of the good requests.
    pub worst: Duration,
    /// Each handover's `migration`, deduplicated in order.
    pub migration: Vec<String>,
    /// The handovers whose actions include the wake-up connection.
    pub wake_ups: usize,
}

/// Requests of the low-rate client (0.2 s apart: ~5 req/s).
pub const LOW_RATE_REQUESTS: usize = 60;
/// Handovers during them, one second apart.
pub const LOW_RATE_HANDOVERS: usize = 6;

/// `curl` at ~5 req/s inside the sandbox (a client nobody here wrote: a new process and
/// connection per request, or one process reusing its connection with `--rate 5/s`) while
/// [`LOW_RATE_HANDOVERS`] handovers to `spec(version)` (versions `{prefix}1`…) run one second
/// apart. The service must be running already; bounded by count and by `timeout 120`.
pub fn low_rate(h: &Host, port: u16, client: Client, prefix: &str, spec: &dyn Fn(&str) -> Value) -> LowRate {
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
    let curl =
        h.sb.command("timeout")
            .args(["120", "bash", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the curl client");
    std::thread::sleep(Duration::from_millis(800));
    let mut run = LowRate::default();
    for i in 1..=LOW_RATE_HANDOVERS {
        let out = h.apply(&spec(&format!("{prefix}{i}")), &[]).ok();
        let migration = out.json["migration"].as_str().unwrap_or("null").to_owned();
        if run.migration.last() != Some(&migration) {
            run.migration.push(migration);
        }
        run.wake_ups += usize::from(out.json["actions"].to_string().contains("wake-up connection"));
        std::thread::sleep(Duration::from_millis(1000));
    }
    let out = curl.wait_with_output().expect("the curl client");
    let mut worst = 0.0f64;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split_whitespace();
        let (Some(code), Some(took)) = (parts.next(), parts.next()) else { continue };
        run.requests += 1;
        match (code, took.parse::<f64>()) {
            ("200", Ok(t)) => worst = worst.max(t),
            _ => run.failed += 1,
        }
    }
    // curl prints its -w line for a failed request too (status 000); a request it never
    // reported (the client cut off by `timeout`) counts as failed.
    run.failed += LOW_RATE_REQUESTS.saturating_sub(run.requests);
    run.requests = run.requests.max(LOW_RATE_REQUESTS);
    run.worst = Duration::from_secs_f64(worst);
    run
}

/// Sets the sandbox's own (per network namespace) `tcp_migrate_req`.
pub fn set_knob(h: &Host, value: u8) {
    h.sh(&format!("echo {value} > {SYSCTL}"));
    assert_eq!(real_knob(h), value.to_string());
}

/// The namespace's real `tcp_migrate_req`: read through the host's /proc (no bind mount
/// there) from inside the sandbox's network namespace.
pub fn real_knob(h: &Host) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &h.sb.pid().to_string(), "-n", "cat", SYSCTL])
        .output()
        .expect("nsenter -n cat");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `baton-load` inside the sandbox, niced (a client at full speed on two cores must not starve
/// the sandbox's systemd and baton), until [`Load::finish`] or `max_secs`.
pub fn niced_load(h: &Host, port: u16, workers: usize, client: Client, max_secs: u64) -> Load {
    let mut cmd = h.sb.command("nice");
    cmd.args(["-n", "10"])
        .arg(bin("baton-load"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--workers", &workers.to_string()])
        .args(["--duration-secs", &max_secs.to_string(), "--timeout-ms", "5000", "--stop-on-stdin-eof"]);
    if client == Client::KeepAlive {
        cmd.arg("--keep-alive");
    }
    let child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn baton-load");
    Load { child: Some(child) }
}

/// The body of one `GET /` with curl inside (the demo answers its version), if it succeeded.
pub fn serving(h: &Host, port: u16) -> Option<String> {
    let out = h.sb.sh_output(&format!("curl -s -m 2 http://127.0.0.1:{port}/")).expect("curl");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The service's releases systemd counts as active (or on their way).
pub fn active(h: &Host, name: &str) -> Vec<String> {
    h.sh(&format!("systemctl list-units --no-legend --state=active,activating '{name}-*.service' | awk '{{print $1}}'"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What one cell measured.
#[derive(Debug)]
pub struct Cell {
    /// The mode.
    pub mode: ListenMode,
    /// The client.
    pub client: Client,
    /// The load's report over all the handovers.
    pub load: LoadReport,
    /// Each good handover's result and wall time.
    pub handovers: Vec<(Value, Duration)>,
    /// Each failing release's result.
    pub failing: Vec<Value>,
    /// Broken promises other than failed requests (wrong version, no rollback, wrong
    /// `migration`, ...), one sentence each.
    pub problems: Vec<String>,
}

impl Cell {
    /// The `migration` values the good handovers reported, distinct, in order of appearance.
    pub fn migrations(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for (r, _) in &self.handovers {
            let m = r["migration"].as_str().unwrap_or("null").to_owned();
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
        seen
    }

    /// The migration counters of the good handovers' results, summed.
    pub fn counters(&self) -> MigrationCounters {
        let mut sum = MigrationCounters::default();
        for (r, _) in &self.handovers {
            sum.success += r["migration_counters"]["success"].as_u64().unwrap_or(0);
            sum.failure += r["migration_counters"]["failure"].as_u64().unwrap_or(0);
        }
        sum
    }

    /// Mean and longest wall time of the good handovers.
    pub fn handover_times(&self) -> (Duration, Duration) {
        let times: Vec<Duration> = self.handovers.iter().map(|(_, t)| *t).collect();
        let n = u32::try_from(times.len().max(1)).unwrap_or(1);
        (times.iter().sum::<Duration>() / n, times.iter().max().copied().unwrap_or_default())
    }
}

/// One cell: `handovers` handovers v0→v1→… of the demo service `name` on `port` under load
/// (`workers` clients), a release that fails readiness before every `fail_every`-th one (none
/// with 0). The sandbox must be prepared ([`ListenMode::prepare`]).
#[allow(clippy::too_many_arguments)]
pub fn run_cell(
    h: &Host,
    mode: ListenMode,
    client: Client,
    name: &str,
    port: u16,
    handovers: usize,
    fail_every: usize,
    workers: usize,
) -> Cell {
    let unit = |v: &str| format!("{name}-{v}.service");
    let mut problems = Vec::new();
    let first = h.apply(&mode.spec(name, "v0", port), &[]).ok();
    if first.json["migration"] != Value::Null && mode != ListenMode::Socket {
        problems.push(format!("the first release closed no listener yet says migration {}", first.json["migration"]));
    }
    h.wait_http(port, Duration::from_secs(10)).expect("v0 serves");
    let load = niced_load(h, port, workers, client, 600);
    std::thread::sleep(Duration::from_millis(300));
    let mut current = "v0".to_owned();
    let mut good = Vec::new();
    let mut failing = Vec::new();
    for i in 1..=handovers {
        if fail_every > 0 && i % fail_every == 0 {
            let bad = format!("bad{i}");
            let out = h.apply(&mode.failing(name, &bad, port), &[]);
            if !(out.failed() && out.json["rolled_back"] == true) {
                problems.push(format!("{bad} was not rolled back: {}", out.json));
            }
            check_serving(h, name, port, &current, &unit, &format!("after {bad} rolled back"), &mut problems);
            failing.push(out.json);
        }
        let v = format!("v{i}");
        let out: Applied = h.apply(&mode.spec(name, &v, port), &[]);
        if out.code != 0 || out.failed() {
            problems.push(format!("handover to {v} failed (exit {}): {}\n{}", out.code, out.json, out.stderr));
        } else {
            if out.json["version"] != v.as_str() || out.json["previous_version"] != current.as_str() {
                problems.push(format!("handover {current}→{v} reported {}", out.json));
            }
            if out.json["migration"] != mode.expected_migration() {
                problems.push(format!(
                    "handover to {v}: migration {} (expected {})",
                    out.json["migration"],
                    mode.expected_migration()
                ));
            }
            if mode == ListenMode::InertKnob {
                let warnings = out.json["warnings"].to_string();
                if !(warnings.contains("will be reset") && warnings.contains("listen_mode")) {
                    problems.push(format!("handover to {v}: no reset warning in {warnings}"));
                }
            }
            current = v.clone();
            check_serving(h, name, port, &current, &unit, &format!("after the handover to {v}"), &mut problems);
        }
        good.push((out.json, out.took));
        // Let the clients settle on the new release (and the old one finish its drain).
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = load.finish().expect("load report");
    Cell { mode, client, load: report, handovers: good, failing, problems }
}

fn check_serving(
    h: &Host,
    name: &str,
    port: u16,
    version: &str,
    unit: &dyn Fn(&str) -> String,
    when: &str,
    problems: &mut Vec<String>,
) {
    let body = serving(h, port);
    if body.as_deref() != Some(version) {
        problems.push(format!("{when}: {version} should serve, curl got {body:?}"));
    }
    let running = active(h, name);
    if running != [unit(version)] {
        problems.push(format!("{when}: only {} should run, systemd has {running:?}", unit(version)));
    }
}
