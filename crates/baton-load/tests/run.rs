//! `baton_load::run` against small in-process servers, one per kind of outcome.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use baton_load::{LoadConfig, LoadReport};

/// Serves every connection on 127.0.0.1:0 with `answer` in its own thread, for the rest of the
/// test process; returns the address.
fn server(answer: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer(stream));
        }
    });
    addr
}

/// Reads up to the end of the request head.
fn read_head(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn respond(mut stream: TcpStream, status: &str, version: &str) {
    read_head(&mut stream);
    let body = format!("{version}\n");
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nX-Version: {version}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn cfg(addr: SocketAddr, max_requests: u64) -> LoadConfig {
    LoadConfig {
        addr,
        workers: 4,
        duration: Duration::from_secs(20),
        max_requests,
        timeout: Duration::from_secs(5),
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
    report
}

#[test]
fn every_ok_response_is_counted_with_its_version() {
    let addr = server(|s| respond(s, "200 OK", "t1"));
    let report = run(&cfg(addr, 300));
    assert_eq!((report.requests, report.ok, report.failed), (300, 300, 0), "{report:?}");
    assert_eq!(report.by_version.get("t1"), Some(&300));
    assert!(report.first_errors.is_empty());
    assert!(report.rps > 0.0);
}

#[test]
fn status_500_is_a_wrong_status() {
    let addr = server(|s| respond(s, "500 Internal Server Error", "t1"));
    let report = run(&cfg(addr, 40));
    assert_eq!((report.requests, report.wrong_status), (40, 40), "{report:?}");
    assert_eq!(report.ok, 0);
    assert!(report.by_version.is_empty());
    assert_eq!(report.first_errors, ["wrong_status: 500"]);
}

#[test]
fn a_closed_port_is_refused() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local_addr")
    };
    let report = run(&cfg(addr, 25));
    assert_eq!((report.requests, report.refused), (25, 25), "{report:?}");
}

#[test]
fn a_server_that_never_answers_is_a_timeout() {
    let addr = server(|mut s| {
        read_head(&mut s);
        thread::sleep(Duration::from_secs(5));
    });
    let mut cfg = cfg(addr, 4);
    cfg.timeout = Duration::from_millis(200);
    cfg.workers = 2;
    let started = Instant::now();
    let report = run(&cfg);
    assert_eq!((report.requests, report.timeout), (4, 4), "{report:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[test]
fn closing_without_a_full_response_is_a_reset() {
    let addr = server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
    });
    let report = run(&cfg(addr, 10));
    assert_eq!((report.requests, report.reset), (10, 10), "{report:?}");

    let addr = server(|mut s| read_head(&mut s));
    let report = run(&cfg(addr, 10));
    assert_eq!((report.requests, report.reset), (10, 10), "{report:?}");
}

#[test]
fn duration_bounds_an_unlimited_run() {
    let addr = server(|s| respond(s, "200 OK", "t2"));
    let mut cfg = cfg(addr, 0);
    cfg.duration = Duration::from_millis(300);
    let started = Instant::now();
    let report = run(&cfg);
    let took = started.elapsed();
    assert!(report.ok > 0, "{report:?}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    assert!(report.elapsed_ms >= 300, "{report:?}");
}

#[test]
fn the_stop_flag_ends_a_run() {
    let addr = server(|s| respond(s, "200 OK", "t3"));
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let report = thread::scope(|scope| {
        let run = scope.spawn(|| baton_load::run(cfg(addr, 0), &stop));
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        run.join().expect("run")
    });
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(report.ok > 0, "{report:?}");

    let stopped = AtomicBool::new(true);
    assert_eq!(baton_load::run(cfg(addr, 0), &stopped).requests, 0);
}
