//! The systemd notification protocol: one datagram to `$NOTIFY_SOCKET`.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `READY=1\nSTATUS=...`) to `$NOTIFY_SOCKET`. Returns `false` without
/// sending when the variable is unset or empty.
pub fn send(state: &str) -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) if !path.is_empty() => send_to(&path, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to the socket at `path`; a leading `@` names an abstract socket.
fn send_to(path: &OsStr, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let addr = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    let sent = socket.send_to_addr(state.as_bytes(), &addr)?;
    if sent == state.len() {
        Ok(())
    } else {
        Err(io::Error::other("short write to NOTIFY_SOCKET"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("baton-demo-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixDatagram::bind(&dir);
        assert!(listener.is_ok(), "{listener:?}");
        let Ok(listener) = listener else { return };
        assert!(send_to(dir.as_os_str(), "READY=1\n").is_ok());
        let mut buf = [0u8; 64];
        let got = listener.recv(&mut buf).unwrap_or(0);
        assert_eq!(&buf[..got], b"READY=1\n");
        let _ = std::fs::remove_file(&dir);

        let name = format!("baton-demo-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes());
        let abstract_listener = addr.and_then(|addr| UnixDatagram::bind_addr(&addr));
        assert!(abstract_listener.is_ok(), "{abstract_listener:?}");
        let Ok(abstract_listener) = abstract_listener else {
            return;
        };
        assert!(send_to(OsStr::new(&format!("@{name}")), "READY=1\n").is_ok());
        let got = abstract_listener.recv(&mut buf).unwrap_or(0);
        assert_eq!(&buf[..got], b"READY=1\n");
    }
}
