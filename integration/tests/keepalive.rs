//! Keep-alive clients lose nothing across handovers, against a sandboxed real systemd: 10
//! handovers v0→v1→…→v10 under `baton-load --keep-alive` fail 0 requests, and so do 10 under
//! `wrk` (a keep-alive client nobody here wrote; its own error counts are parsed). The control:
//! the same handovers with a demo that closes kept-alive connections on SIGTERM without draining
//! them (`--no-drain`) lose requests in both clients, which proves these tests can fail.
//!
//! The demo drains as the README's "What your service does on SIGTERM" asks: once its
//! listener is closed, the next response on each kept-alive connection says `Connection: close`
//! and idle connections are closed after `--drain-ms` (3 s here, under the spec's
//! `timeout_stop_sec` of 10 s).

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use baton_integration::{bin, demo_spec, Host, LoadReport};
use serde_json::{json, Value};

/// Handovers per run.
const HANDOVERS: usize = 10;

/// baton-load's workers, each with one kept-alive connection (as handover.rs: the machine has
/// two cores, shared with the sandbox's systemd).
const WORKERS: usize = 4;

/// How long a load may run at most (it is stopped once the handovers are done).
const MAX_LOAD_SECS: u64 = 180;

fn release(name: &str, version: &str, port: u16, drain: bool) -> Value {
    let mut flags = vec!["--linger-ms", "150", "--drain-ms", "3000"];
    if !drain {
        flags.push("--no-drain");
    }
    demo_spec(name, version, port, &flags, json!({"keep": 2}))
}

/// `baton-load --keep-alive` inside the sandbox, until its stdin closes.
fn keep_alive_load(h: &Host, port: u16, workers: usize) -> Child {
    // Niced: a client at full speed on two cores must not starve the sandbox's systemd and
    // baton, which the handovers need (seen: 60 s stalls on a busy machine).
    h.sb.command("nice")
        .args(["-n", "10"])
        .arg(bin("baton-load"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--workers", &workers.to_string(), "--keep-alive"])
        .args(["--duration-secs", &MAX_LOAD_SECS.to_string(), "--timeout-ms", "5000", "--stop-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton-load inside the sandbox")
}

fn finish_load(mut child: Child) -> LoadReport {
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait for baton-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!(
            "baton-load printed no report ({e}; exit {:?}): {stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `wrk` inside the sandbox (niced, as baton-load), with its defaults (2 threads, 10 kept-alive
/// HTTP/1.1 connections, no pipelining) but for the time it may run (it is stopped by SIGINT,
/// after which it prints its statistics) and a 5 s request timeout (baton-load's).
struct Wrk {
    child: Child,
    pid_file: String,
}

impl Wrk {
    fn start(h: &Host, port: u16, label: &str) -> Wrk {
        let pid_file = format!("/run/wrk-{label}.pid");
        let script = format!(
            "echo $$ > {pid_file}; exec nice -n 10 wrk --duration {MAX_LOAD_SECS}s --timeout 5s \
             http://127.0.0.1:{port}/"
        );
        let child =
            h.sb.command("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn wrk inside the sandbox (Debian package wrk; .ci/deps.sh installs it)");
        let t0 = Instant::now();
        while h.sh(&format!("cat {pid_file} 2>/dev/null || true")).trim().is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(10), "wrk did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Wrk { child, pid_file }
    }

    /// Stops wrk (SIGINT to its pid, inside the sandbox) and parses what it printed.
    fn finish(mut self, h: &Host) -> WrkReport {
        h.sh(&format!("kill -INT $(cat {})", self.pid_file));
        let mut stdout = String::new();
        let _ = self.child.stdout.take().map(|mut s| s.read_to_string(&mut stdout));
        let status = self.child.wait().expect("wait for wrk");
        assert!(status.success(), "wrk failed ({status:?}): {stdout}");
        WrkReport::parse(&stdout).unwrap_or_else(|| panic!("no request count in wrk's output:\n{stdout}"))
    }
}

/// What wrk counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct WrkReport {
    requests: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
    non_2xx_3xx: u64,
}

impl WrkReport {
    /// Parses wrk's summary: `N requests in 5.00s, ...`, and when there were any,
    /// `Socket errors: connect A, read B, write C, timeout D` and `Non-2xx or 3xx responses: E`.
    fn parse(out: &str) -> Option<WrkReport> {
        let mut report = WrkReport::default();
        let mut seen_requests = false;
        for line in out.lines().map(str::trim) {
            if let Some((count, _)) = line.split_once(" requests in ") {
                report.requests = count.trim().parse().ok()?;
                seen_requests = true;
            } else if let Some(errors) = line.strip_prefix("Socket errors:") {
                for part in errors.split(',') {
                    let (kind, count) = part.trim().split_once(' ')?;
                    let count: u64 = count.trim().parse().ok()?;
                    match kind {
                        "connect" => report.connect = count,
                        "read" => report.read = count,
                        "write" => report.write = count,
                        "timeout" => report.timeout = count,
                        _ => return None,
                    }
                }
            } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
                report.non_2xx_3xx = count.trim().parse().ok()?;
            }
        }
        seen_requests.then_some(report)
    }

    fn errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.non_2xx_3xx
    }
}

/// Runs `handovers` handovers v0→v1→v2… (the load runs meanwhile) and returns their times.
fn handovers(h: &Host, name: &str, port: u16, handovers: usize, drain: bool) -> Vec<Duration> {
    let mut took = Vec::new();
    for i in 1..=handovers {
        let out = h.apply(&release(name, &format!("v{i}"), port, drain), &[]);
        if out.code != 0 {
            // What systemd was doing, for the failure message below.
            let state =
                h.sb.sh("systemctl list-jobs --no-pager; systemctl status --no-pager --all 'ka-*' 'wk-*' 'kc-*'; \
                 journalctl --no-pager -n 150 -o short-monotonic");
            eprintln!("systemd after the failed handover to v{i}:\n{}", state.unwrap_or_else(|e| format!("{e:#}")));
        }
        let out = out.ok();
        if out.took > Duration::from_secs(5) {
            eprintln!("slow handover to v{i} ({:?}):\n{}", out.took, out.stderr);
        }
        assert_eq!(out.json["previous_version"], format!("v{}", i - 1), "{:#}", out.json);
        took.push(out.took);
        // Let the clients settle on the new release (and the old one finish its drain).
        std::thread::sleep(Duration::from_millis(200));
    }
    took
}

fn start_v0(h: &Host, name: &str, port: u16, drain: bool) {
    h.apply(&release(name, "v0", port, drain), &[]).ok();
    h.wait_http(port, Duration::from_secs(5)).expect("v0 serves");
}

fn mean(took: &[Duration]) -> Duration {
    took.iter().sum::<Duration>() / u32::try_from(took.len().max(1)).unwrap_or(1)
}

#[test]
fn ten_handovers_under_keep_alive_load_fail_no_request() {
    let h = Host::boot("keepalive");
    start_v0(&h, "ka", 8090, true);
    let load = keep_alive_load(&h, 8090, WORKERS);
    std::thread::sleep(Duration::from_millis(300));
    let took = handovers(&h, "ka", 8090, HANDOVERS, true);
    let r = finish_load(load);
    eprintln!("keep-alive, {HANDOVERS} handovers (mean {:?}): {}", mean(&took), r.summary());
    assert_eq!(r.mode, baton_load::Mode::KeepAlive);
    assert!(r.requests > 1000, "the load must be real: {r:?}");
    assert_eq!(r.failed, 0, "a handover lost kept-alive requests: {r:?}");
    for i in 0..=HANDOVERS {
        assert!(r.by_version.contains_key(&format!("v{i}")), "v{i} served: {:?}", r.by_version);
    }
    // Each handover told the old release's clients to reconnect, which they did.
    assert!(r.closed_by_server >= HANDOVERS as u64, "{r:?}");
    assert!(r.connections >= r.closed_by_server, "{r:?}");
    let journal = h.sh("journalctl -u ka-v1.service --no-pager -o cat");
    assert!(journal.contains("draining: Connection: close"), "the old release drained: {journal}");
}

#[test]
fn ten_handovers_under_wrk_fail_no_request() {
    let h = Host::boot("keepalive-wrk");
    start_v0(&h, "wk", 8091, true);
    let wrk = Wrk::start(&h, 8091, "ok");
    std::thread::sleep(Duration::from_millis(300));
    let took = handovers(&h, "wk", 8091, HANDOVERS, true);
    let w = wrk.finish(&h);
    eprintln!("wrk, {HANDOVERS} handovers (mean {:?}): {w:?}", mean(&took));
    assert!(w.requests > 1000, "the load must be real: {w:?}");
    assert_eq!(w.errors(), 0, "wrk counted errors across the handovers: {w:?}");
}

#[test]
fn control_without_the_drain_keep_alive_clients_lose_requests() {
    let h = Host::boot("keepalive-ctl");
    start_v0(&h, "kc", 8092, false);
    let load = keep_alive_load(&h, 8092, WORKERS);
    let wrk = Wrk::start(&h, 8092, "ctl");
    std::thread::sleep(Duration::from_millis(300));
    handovers(&h, "kc", 8092, 3, false);
    let r = finish_load(load);
    let w = wrk.finish(&h);
    eprintln!("control (--no-drain), 3 handovers: baton-load {}; wrk {w:?}", r.summary());
    assert!(r.requests > 100 && w.requests > 100, "{r:?} {w:?}");
    assert!(r.failed > 0, "closing kept-alive connections without a word must lose requests: {r:?}");
    assert!(w.errors() > 0, "and wrk must count them: {w:?}");
}

#[test]
fn wrk_output_is_parsed_with_and_without_errors() {
    let clean = "Running 10s test @ http://127.0.0.1:8091/\n  2 threads and 16 connections\n  \
                 Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.00ms  1.00ms  9.00ms   90.00%\n  \
                 123456 requests in 10.00s, 12.34MB read\nRequests/sec:  12345.60\nTransfer/sec:      1.23MB\n";
    assert_eq!(WrkReport::parse(clean), Some(WrkReport { requests: 123_456, ..WrkReport::default() }));
    let failing = "  5000 requests in 1.00s, 1.00MB read\n  Socket errors: connect 1, read 22, write 3, timeout 4\n  \
                   Non-2xx or 3xx responses: 5\nRequests/sec:   5000.00\n";
    let parsed = WrkReport::parse(failing);
    assert_eq!(
        parsed,
        Some(WrkReport { requests: 5000, connect: 1, read: 22, write: 3, timeout: 4, non_2xx_3xx: 5 }),
        "{parsed:?}"
    );
    assert_eq!(parsed.map(|p| p.errors()), Some(35));
    assert_eq!(WrkReport::parse("unable to connect to 127.0.0.1:1 Connection refused\n"), None);
    assert_eq!(WrkReport::parse("  10 requests in 1s\n  Socket errors: connect x, read 0\n"), None);
}
