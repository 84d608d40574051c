//! `baton-demo --notify` tells systemd it is ready through `$NOTIFY_SOCKET`.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use common::{free_port, get, Demo, PATIENCE};

/// Receives one notification; panics after [`PATIENCE`].
fn recv(socket: &UnixDatagram) -> String {
    socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn sends_ready_to_a_path_socket_once_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    let port = free_port();
    let mut demo = Demo::start_with(port, "v9", &["--notify"], |cmd| {
        cmd.env("NOTIFY_SOCKET", &path);
    });
    let message = recv(&socket);
    assert!(message.lines().any(|l| l == "READY=1"), "{message:?}");
    assert!(message.contains("STATUS="), "{message:?}");
    // READY=1 comes after bind: the port answers at once.
    assert_eq!(get(port, "/").body, "v9\n");

    demo.signal("TERM");
    assert!(recv(&socket).contains("STOPPING=1"));
    assert_eq!(demo.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn sends_ready_to_an_abstract_socket() {
    let name = format!("baton-demo-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let socket = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
    let port = free_port();
    let _demo = Demo::start_with(port, "v1", &["--notify"], |cmd| {
        cmd.env("NOTIFY_SOCKET", format!("@{name}"));
    });
    assert!(recv(&socket).contains("READY=1"));
}

#[test]
fn never_ready_sends_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(700))).expect("timeout");
    let mut demo = Demo::start_with(free_port(), "v1", &["--notify", "--never-ready"], |cmd| {
        cmd.env("NOTIFY_SOCKET", &path);
    });
    demo.wait_for_line("never ready");
    let mut buf = [0u8; 256];
    assert!(socket.recv(&mut buf).is_err(), "no notification from a never-ready instance");
}
