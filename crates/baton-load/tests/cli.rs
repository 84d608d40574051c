//! The `baton-load` binary: JSON report on stdout, early stop on stdin EOF and on SIGTERM.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use baton_load::LoadReport;

/// A server that answers every request with 200 and `X-Version: bin`.
fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer(stream));
        }
    });
    addr
}

fn answer(mut stream: TcpStream) {
    use std::io::Write;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Version: bin\r\nContent-Length: 4\r\n\r\nbin\n");
}

fn spawn(args: &[&str], stdin: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_baton-load"))
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton-load")
}

/// Waits at most `limit` for `child` to exit, then reads its report.
fn finish(mut child: Child, limit: Duration) -> (LoadReport, String) {
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("baton-load did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    let report = serde_json::from_str(stdout.trim()).expect("a LoadReport");
    (report, stderr)
}

#[test]
fn prints_the_report_as_one_json_line() {
    let addr = server().to_string();
    let child = spawn(&["--addr", &addr, "--max-requests", "50", "--workers", "2"], Stdio::null());
    let (report, stderr) = finish(child, Duration::from_secs(20));
    assert_eq!((report.requests, report.ok), (50, 50), "{report:?}");
    assert_eq!(report.by_version.get("bin"), Some(&50));
    assert!(stderr.contains("50 requests"), "{stderr}");
}

#[test]
fn stops_when_stdin_closes() {
    let addr = server().to_string();
    let mut child = spawn(&["--addr", &addr, "--duration-secs", "60", "--stop-on-stdin-eof"], Stdio::piped());
    thread::sleep(Duration::from_millis(300));
    drop(child.stdin.take());
    let (report, _) = finish(child, Duration::from_secs(10));
    assert!(report.ok > 0 && report.elapsed_ms < 30_000, "{report:?}");
}

#[test]
fn stops_on_sigterm_and_still_reports() {
    let addr = server().to_string();
    let child = spawn(&["--addr", &addr, "--duration-secs", "60"], Stdio::null());
    thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let (report, _) = finish(child, Duration::from_secs(10));
    assert!(report.ok > 0 && report.elapsed_ms < 30_000, "{report:?}");
}

#[test]
fn rejects_a_duration_over_an_hour() {
    let output = Command::new(env!("CARGO_BIN_EXE_baton-load"))
        .args(["--addr", "127.0.0.1:1", "--duration-secs", "3601"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
}
