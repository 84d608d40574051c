//! The listening socket: the one systemd passes (socket activation), or one bound here with
//! SO_REUSEADDR + SO_REUSEPORT and a large backlog; either way with an accept timeout so the
//! accept loop notices shutdown promptly.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Connections the kernel queues before `accept`.
pub const BACKLOG: i32 = 1024;

/// The longest one `accept` call blocks before returning `WouldBlock`.
pub const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// The listening socket systemd passed by the sd_listen_fds protocol (`LISTEN_FDS` sockets from
/// fd 3, for this process when `LISTEN_PID` names it), if any: the first one, which must be a
/// TCP listener. The variables are removed from the environment either way (as
/// `sd_listen_fds(1)` does), so no child process takes them for its own.
pub fn from_systemd() -> io::Result<Option<TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let listener = fds.take_tcp_listener(0)?.ok_or_else(|| io::Error::other("LISTEN_FDS: fd 3 was already taken"))?;
    socket2::SockRef::from(&listener).set_read_timeout(Some(ACCEPT_POLL))?;
    Ok(Some(listener))
}

/// A listener on `addr` that shares the port with other SO_REUSEPORT listeners of this user.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    // On Linux SO_RCVTIMEO bounds accept(): it fails with EAGAIN once the timeout passes.
    socket.set_read_timeout(Some(ACCEPT_POLL))?;
    Ok(socket.into())
}
