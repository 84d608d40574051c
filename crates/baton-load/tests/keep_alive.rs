//! `baton_load::run` in keep-alive mode against small in-process HTTP/1.1 servers: persistent
//! connections, an honoured `Connection: close`, and a request lost on a connection the server
//! closed without saying so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

use baton_load::{LoadConfig, LoadReport, Mode};

/// What the server does after the `n`th response (from 1) on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Keep the connection open for the next request.
    Keep,
    /// Say `Connection: close` in this response, then close.
    SayCloseAndClose,
    /// Say nothing (the response looks kept-alive), then close: the next request is lost.
    CloseSilently,
}

/// Serves every connection on 127.0.0.1:0 in its own thread, request after request, with
/// `policy(n)` deciding after each response; returns the address.
fn server(policy: fn(u64) -> After) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream, policy));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, policy: fn(u64) -> After) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    for n in 1.. {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(read) => buf.extend_from_slice(&chunk[..read]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        assert!(head.contains("\r\nConnection: keep-alive\r\n"), "a keep-alive request: {head}");
        let after = policy(n);
        let connection = if after == After::SayCloseAndClose { "Connection: close\r\n" } else { "" };
        let response = format!("HTTP/1.1 200 OK\r\nX-Version: ka\r\nContent-Length: 3\r\n{connection}\r\nka\n");
        if stream.write_all(response.as_bytes()).is_err() || after != After::Keep {
            return;
        }
    }
}

fn cfg(addr: SocketAddr, workers: usize, max_requests: u64) -> LoadConfig {
    LoadConfig {
        addr,
        workers,
        duration: Duration::from_secs(20),
        max_requests,
        timeout: Duration::from_secs(5),
        mode: Mode::KeepAlive,
        ..LoadConfig::default()
    }
}

fn run(cfg: &LoadConfig) -> LoadReport {
    let report = baton_load::run(cfg, &AtomicBool::new(false));
    assert_eq!(report.requests, report.ok + report.failed, "{report:?}");
    assert_eq!(
        report.failed,
        report.refused + report.reset + report.timeout + report.wrong_status + report.other,
        "{report:?}"
    );
    assert_eq!(report.mode, Mode::KeepAlive);
    report
}

#[test]
fn each_worker_keeps_one_connection_for_all_its_requests() {
    let addr = server(|_| After::Keep);
    let report = run(&cfg(addr, 4, 400));
    assert_eq!((report.requests, report.ok, report.failed), (400, 400, 0), "{report:?}");
    assert_eq!(report.by_version.get("ka"), Some(&400));
    assert_eq!(report.connections, 4, "one connection per worker: {report:?}");
    assert_eq!(report.closed_by_server, 0);
}

#[test]
fn connection_close_is_honoured_and_is_no_failure() {
    // Every third response on a connection says `Connection: close`.
    let addr = server(|n| if n % 3 == 0 { After::SayCloseAndClose } else { After::Keep });
    let report = run(&cfg(addr, 1, 30));
    assert_eq!((report.requests, report.ok, report.failed), (30, 30, 0), "{report:?}");
    assert_eq!((report.connections, report.closed_by_server), (10, 10), "{report:?}");
}

#[test]
fn a_request_on_a_connection_the_server_closed_silently_fails() {
    // Two responses per connection, then the server closes without `Connection: close`: the
    // third request goes out on a closed connection and is lost; the next one reconnects.
    let addr = server(|n| if n == 2 { After::CloseSilently } else { After::Keep });
    let report = run(&cfg(addr, 1, 30));
    assert_eq!((report.requests, report.ok, report.reset), (30, 20, 10), "{report:?}");
    assert_eq!(report.connections, 10, "{report:?}");
    assert!(report.first_errors.iter().all(|e| e.starts_with("reset: ")), "{:?}", report.first_errors);
}

#[test]
fn the_cli_says_keep_alive_in_its_report_and_new_connection_by_default() {
    let addr = server(|_| After::Keep).to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_baton-load"))
        .args(["--addr", &addr, "--max-requests", "60", "--workers", "3", "--keep-alive"])
        .output()
        .expect("run baton-load");
    assert!(out.status.success(), "{out:?}");
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"mode\":\"keep-alive\""), "{json}");
    let report: LoadReport = serde_json::from_str(json.trim()).expect("a LoadReport");
    assert_eq!((report.ok, report.connections), (60, 3), "{report:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("keep-alive, 3 connections"), "{out:?}");

    // Without --keep-alive: a connection per request (this server keeps none open for it,
    // but the client closes each one after its response).
    let out = Command::new(env!("CARGO_BIN_EXE_baton-load"))
        .args(["--addr", &addr, "--max-requests", "20", "--workers", "2"])
        .output()
        .expect("run baton-load");
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"mode\":\"new-connection\""), "{json}");
}
