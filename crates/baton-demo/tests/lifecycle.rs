//! `baton-demo` start and stop: SIGTERM drain, linger, and the start/stop fault switches.

mod common;

use std::io::Read as _;
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, get, read_reply, send_get, Demo, PATIENCE};

#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    let port = free_port();
    let mut demo = Demo::start_listening(port, "v1", &["--work-ms", "800"]);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let stream = send_get(port, "/");
            thread::spawn(move || read_reply(stream))
        })
        .collect();
    // Let the demo accept all three; they are now sleeping in their handlers.
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    demo.signal("TERM");
    demo.wait_for_line("stopped accepting");
    let status = demo.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(signalled.elapsed() >= Duration::from_millis(300), "exited before the work was done");
    for client in clients {
        let reply = client.join().expect("client thread").expect("a full response");
        assert_eq!((reply.status, reply.body.as_str()), (200, "v1\n"), "{reply:?}");
    }
    assert!(demo.log_contains("waiting for 3 connections"));
    assert!(demo.log_contains("drained"));
    assert!(TcpStream::connect(common::addr(port)).is_err(), "port closed after exit");
}

#[test]
fn linger_keeps_the_stopped_listener_open_then_closes_it() {
    let port = free_port();
    let mut demo = Demo::start_listening(port, "v1", &["--linger-ms", "1000"]);
    let signalled = Instant::now();
    demo.signal("TERM");
    demo.wait_for_line("stopped accepting");
    // The listener still exists: the kernel completes the handshake and queues the
    // connection, but nobody accepts it any more.
    let queued = send_get(port, "/");
    let status = demo.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(signalled.elapsed() >= Duration::from_millis(900), "{:?}", signalled.elapsed());
    // No other listener to migrate to: closing the listener resets the queued connection.
    let reply = read_reply(queued);
    assert!(reply.is_err(), "queued connection got no answer: {reply:?}");
}

#[test]
fn crash_on_start_exits_1_with_an_error() {
    let port = free_port();
    let mut demo = Demo::start(port, "v1", &["--crash-on-start"]);
    let line = demo.wait_for_line("error");
    assert!(line.contains("crash"), "{line}");
    assert_eq!(demo.wait_exit(PATIENCE).code(), Some(1));
    assert!(TcpStream::connect(common::addr(port)).is_err());
}

#[test]
fn ignore_sigterm_keeps_serving_until_sigkill() {
    let port = free_port();
    let mut demo = Demo::start_listening(port, "v1", &["--ignore-sigterm"]);
    demo.signal("TERM");
    demo.wait_for_line("SIGTERM received and ignored");
    thread::sleep(Duration::from_millis(300));
    assert!(demo.exited().is_none(), "still running after SIGTERM");
    assert_eq!(get(port, "/").status, 200);
    demo.signal("KILL");
    let status = demo.wait_exit(PATIENCE);
    assert_eq!(status.signal(), Some(9), "{status:?}");
}

#[test]
fn never_ready_stays_up_without_listening() {
    let port = free_port();
    let mut demo = Demo::start(port, "v1", &["--never-ready"]);
    demo.wait_for_line("never ready");
    thread::sleep(Duration::from_millis(300));
    assert!(demo.exited().is_none());
    assert!(TcpStream::connect(common::addr(port)).is_err(), "never binds");
    demo.signal("TERM");
    assert_eq!(demo.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn never_accept_listens_but_leaves_connections_queued() {
    let port = free_port();
    let mut demo = Demo::start_listening(port, "v1", &["--never-accept"]);
    demo.wait_for_line("never accepting");
    // The kernel completes the handshake (the connection is queued) but nothing answers.
    let stream = send_get(port, "/health");
    stream.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut buf = [0u8; 64];
    let read = (&stream).read(&mut buf);
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "no answer from an instance that never accepts: {read:?}"
    );
    demo.signal("TERM");
    assert_eq!(demo.wait_exit(PATIENCE).code(), Some(0));
}
