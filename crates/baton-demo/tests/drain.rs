//! `baton-demo` keeps HTTP/1.1 connections alive and drains them on SIGTERM: the next request on
//! a kept-alive connection gets `Connection: close`, idle connections are closed after
//! `--drain-ms`, and a handover between two instances under keep-alive load loses nothing
//! (while `--no-drain`, the control, does). It also serves a listener passed by systemd's
//! socket-activation protocol (`LISTEN_FDS`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use baton_load::{LoadConfig, LoadReport, Mode};
use common::{free_port, Demo, PATIENCE};

/// One response read off a kept-alive connection.
#[derive(Debug)]
struct Reply {
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect_timeout(&common::addr(port), PATIENCE).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// Sends a keep-alive `GET path` on `stream` and reads exactly one response (by its
/// `Content-Length`); an error when the connection is closed first.
fn request(stream: &mut TcpStream, path: &str) -> std::io::Result<Reply> {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.parse().ok()).unwrap_or(0);
            if raw.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned();
                return Ok(Reply { head, body });
            }
        }
        match stream.read(&mut chunk)? {
            0 => return Err(std::io::Error::other(format!("closed after {} bytes", raw.len()))),
            n => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the server has closed `stream` (EOF or reset within PATIENCE).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_)) && stream.read(&mut byte).map_or(true, |n| n == 0)
}

#[test]
fn a_connection_carries_many_requests() {
    let port = free_port();
    let _demo = Demo::start_listening(port, "v1", &[]);
    let mut stream = connect(port);
    for _ in 0..5 {
        let reply = request(&mut stream, "/").expect("a response on the same connection");
        assert_eq!(reply.body, "v1\n");
        assert_eq!(reply.header("Connection"), Some("keep-alive"), "{reply:?}");
    }
    assert_eq!(request(&mut stream, "/health").expect("health").body, "ok\n");
}

#[test]
fn on_sigterm_the_next_request_gets_connection_close_and_the_demo_exits_0() {
    let port = free_port();
    let mut demo = Demo::start_listening(port, "v1", &["--drain-ms", "5000"]);
    let mut stream = connect(port);
    assert_eq!(request(&mut stream, "/").expect("first").header("Connection"), Some("keep-alive"));
    demo.signal("TERM");
    demo.wait_for_line("draining");
    let signalled = Instant::now();
    let reply = request(&mut stream, "/").expect("the next request is still answered");
    assert_eq!((reply.body.as_str(), reply.header("Connection")), ("v1\n", Some("close")), "{reply:?}");
    assert!(closed_by_server(&mut stream), "closed after the Connection: close response");
    assert_eq!(demo.wait_exit(PATIENCE).code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(4), "no idle connection left, no wait for the drain time");
    assert!(demo.log_contains("drained"));
}

#[test]
fn idle_kept_alive_connections_are_closed_after_the_drain_time() {
    let port = free_port();
    let mut demo = Demo::start_listening(port, "v1", &["--drain-ms", "700"]);
    let mut idle = connect(port);
    assert_eq!(request(&mut idle, "/").expect("first").body, "v1\n");
    let signalled = Instant::now();
    demo.signal("TERM");
    assert!(closed_by_server(&mut idle), "the idle connection is closed");
    let after = signalled.elapsed();
    assert!(after >= Duration::from_millis(650), "not before the drain time: {after:?}");
    assert_eq!(demo.wait_exit(PATIENCE).code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(5), "{:?}", signalled.elapsed());
}

#[test]
fn drain_time_comes_from_the_environment_too() {
    let port = free_port();
    let mut demo = Demo::start_with(port, "v1", &[], |cmd| {
        cmd.env("BATON_DEMO_DRAIN_MS", "600");
    });
    demo.wait_for_line("listening on");
    let mut idle = connect(port);
    request(&mut idle, "/").expect("first");
    demo.signal("TERM");
    let line = demo.wait_for_line("draining");
    assert!(line.contains("idle ones closed after 600 ms"), "{line}");
    assert_eq!(demo.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn no_drain_closes_kept_alive_connections_without_a_word() {
    let port = free_port();
    let mut demo = Demo::start_listening(port, "v1", &["--no-drain", "--drain-ms", "5000"]);
    let mut stream = connect(port);
    request(&mut stream, "/").expect("first");
    demo.signal("TERM");
    demo.wait_for_line("no drain as asked");
    // The client does not know, sends its next request on the closed connection, and loses it.
    thread::sleep(Duration::from_millis(100));
    let lost = request(&mut stream, "/");
    assert!(lost.is_err(), "a request on a connection closed without Connection: close is lost: {lost:?}");
    assert_eq!(demo.wait_exit(PATIENCE).code(), Some(0));
}

/// Two instances share a port; v1 gets SIGTERM in the middle of a keep-alive load.
fn handover_under_keep_alive_load(v1_flags: &[&str]) -> LoadReport {
    let port = free_port();
    let mut v1 = Demo::start_listening(port, "v1", v1_flags);
    let _v2 = Demo::start_listening(port, "v2", &[]);
    let cfg = LoadConfig {
        addr: common::addr(port),
        // Many connections, so that SO_REUSEPORT hands some of them to v1 for sure.
        workers: 16,
        duration: Duration::from_millis(1500),
        timeout: Duration::from_secs(5),
        mode: Mode::KeepAlive,
        ..LoadConfig::default()
    };
    let report = thread::scope(|scope| {
        let load = scope.spawn(|| baton_load::run(&cfg, &AtomicBool::new(false)));
        thread::sleep(Duration::from_millis(500));
        v1.signal("TERM");
        load.join().expect("load")
    });
    assert_eq!(v1.wait_exit(PATIENCE).code(), Some(0));
    assert!(report.by_version.get("v1").is_some_and(|&n| n > 0), "v1 served before: {report:?}");
    report
}

#[test]
fn a_handover_under_keep_alive_load_loses_no_request() {
    let report = handover_under_keep_alive_load(&[]);
    eprintln!("{}", report.summary());
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.closed_by_server > 0, "v1's clients were told to reconnect: {report:?}");
    assert!(report.connections > 16, "and did, to v2: {report:?}");
}

#[test]
fn control_a_handover_without_drain_loses_kept_alive_requests() {
    let report = handover_under_keep_alive_load(&["--no-drain"]);
    eprintln!("{}", report.summary());
    assert!(report.failed > 0, "closing kept-alive connections without a word loses requests: {report:?}");
    assert_eq!(report.failed, report.reset, "lost as resets: {report:?}");
}

#[test]
fn serves_the_listener_systemd_passes_in_listen_fds() {
    let port = free_port();
    let unused = free_port();
    // systemd-socket-activate (from the systemd package) binds the socket, and on the first
    // connection starts the demo with it as fd 3, LISTEN_FDS=1 and LISTEN_PID set, as a
    // socket unit's service gets it.
    let mut command = Command::new("systemd-socket-activate");
    command
        .args(["--listen", &format!("127.0.0.1:{port}"), env!("CARGO_BIN_EXE_baton-demo")])
        .args(["--port", &unused.to_string(), "--version", "sock"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut demo = Demo::spawn(command);
    demo.wait_for_line("Listening on");
    let mut stream = connect(port);
    let reply = request(&mut stream, "/").expect("the demo answers on the passed socket");
    assert_eq!(reply.body, "sock\n");
    let line = demo.wait_for_line("listening on");
    assert!(line.contains(&format!("127.0.0.1:{port}")) && line.contains("LISTEN_FDS"), "{line}");
    assert!(TcpStream::connect(common::addr(unused)).is_err(), "--port is not bound when systemd passes the socket");
    demo.signal("TERM");
    demo.wait_for_line("draining");
    let reply = request(&mut stream, "/").expect("drained: answered");
    assert_eq!(reply.header("Connection"), Some("close"), "{reply:?}");
    assert_eq!(demo.wait_exit(PATIENCE).code(), Some(0));
    assert!(demo.log_contains("the socket stays with systemd"));
}
