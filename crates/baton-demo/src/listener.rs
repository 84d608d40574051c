//! Binds the shared listening socket: SO_REUSEADDR + SO_REUSEPORT, a large backlog, and an
//! accept timeout so the accept loop notices shutdown promptly.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Connections the kernel queues before `accept`.
pub const BACKLOG: i32 = 1024;

/// The longest one `accept` call blocks before returning `WouldBlock`.
pub const ACCEPT_POLL: Duration = Duration::from_millis(10);

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
