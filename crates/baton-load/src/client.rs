//! One HTTP/1.1 request, over a fresh TCP connection ([`get`]) or a kept-alive one
//! ([`KeepAlive`]), and what became of it.
//!
//! A fresh connection is closed with `SO_LINGER` 0 once the whole response has been read (or the
//! request has failed): the client sends a reset instead of a FIN, so neither side keeps the
//! connection in TIME_WAIT and loopback runs at full speed never run out of ephemeral ports.
//!
//! A kept-alive connection carries request after request, like a browser's, a load balancer's
//! or a service client's. It is given up when a request on it fails (the failure counts: this
//! client does not retry, so a request sent on a connection the server has closed is lost) or
//! when a response says `Connection: close` (honoured: the next request opens a new connection,
//! which is no failure).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The largest response accepted; anything longer is an `other` failure.
pub const MAX_RESPONSE: usize = 1 << 20;

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Status 200; the `X-Version` header value, if the response had one.
    Ok(Option<String>),
    /// The connection was refused.
    Refused(String),
    /// The connection was reset or closed before a full response arrived.
    Reset(String),
    /// Connecting or reading took longer than the timeout.
    Timeout(String),
    /// A full response with a status other than 200.
    WrongStatus(u16),
    /// Anything else (local resource errors, malformed responses).
    Other(String),
}

impl Outcome {
    /// Files an I/O error of the given request phase under the kind of failure it means.
    pub fn from_io(phase: &str, err: &io::Error) -> Self {
        use io::ErrorKind as K;
        let message = format!("{phase}: {err}");
        match err.kind() {
            K::ConnectionRefused => Self::Refused(message),
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => Self::Reset(message),
            K::TimedOut | K::WouldBlock => Self::Timeout(message),
            _ => Self::Other(message),
        }
    }
}

/// The bytes of a `GET path` request to `addr` that asks the server to close the connection.
///
/// Bytes that may not appear in a request target (controls, spaces, non-ASCII) are
/// percent-encoded, and a path without a leading `/` gets one.
pub fn request_bytes(addr: SocketAddr, path: &str) -> Vec<u8> {
    request_bytes_for(addr, path, false)
}

/// The bytes of a `GET path` request to `addr`: with `keep_alive`, an HTTP/1.1 request that
/// leaves the connection open (HTTP/1.1's default), else one with `Connection: close`.
pub fn request_bytes_for(addr: SocketAddr, path: &str, keep_alive: bool) -> Vec<u8> {
    let mut target = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        target.push('/');
    }
    for byte in path.bytes() {
        if byte.is_ascii_graphic() {
            target.push(char::from(byte));
        } else {
            target.push_str(&format!("%{byte:02X}"));
        }
    }
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: baton-load\r\nConnection: {connection}\r\n\r\n")
        .into_bytes()
}

/// Sends `request` to `target` over a new connection (from `source`, when given) and reads the
/// response, all within `timeout`.
pub fn get(target: SocketAddr, source: Option<SocketAddr>, request: &[u8], timeout: Duration) -> Outcome {
    get_counted(target, source, request, timeout).0
}

/// [`get`], also saying whether a connection was made.
pub(crate) fn get_counted(
    target: SocketAddr,
    source: Option<SocketAddr>,
    request: &[u8],
    timeout: Duration,
) -> (Outcome, bool) {
    let deadline = Instant::now() + timeout;
    let stream = match connect(target, source, timeout) {
        Ok(stream) => stream,
        Err(outcome) => return (outcome, false),
    };
    let (outcome, _) = exchange(&stream, request, deadline);
    abort(stream);
    (outcome, true)
}

/// Closes `stream` with a reset rather than a FIN: no TIME_WAIT on either side. Only for a
/// connection whose last response is complete (or whose request has failed): nothing is lost.
fn abort(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// One client's kept-alive connection to `target`, opened when needed.
#[derive(Debug)]
pub struct KeepAlive {
    target: SocketAddr,
    source: Option<SocketAddr>,
    stream: Option<TcpStream>,
    /// Connections opened so far.
    pub connections: u64,
    /// Connections given up because a response said `Connection: close`.
    pub closed_by_server: u64,
}

impl KeepAlive {
    /// A client that connects to `target` (from `source`, when given) on its first request.
    pub fn new(target: SocketAddr, source: Option<SocketAddr>) -> Self {
        Self { target, source, stream: None, connections: 0, closed_by_server: 0 }
    }

    /// Sends `request` on the open connection (a new one if there is none) and reads the
    /// response, all within `timeout`. A failed request gives the connection up; so does a
    /// response with `Connection: close` (not a failure).
    pub fn get(&mut self, request: &[u8], timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let stream = match self.stream.take() {
            Some(stream) => stream,
            None => match connect(self.target, self.source, timeout) {
                Ok(stream) => {
                    self.connections += 1;
                    stream
                }
                Err(outcome) => return outcome,
            },
        };
        let (outcome, reuse) = exchange(&stream, request, deadline);
        if reuse {
            self.stream = Some(stream);
        } else {
            if matches!(outcome, Outcome::Ok(_) | Outcome::WrongStatus(_)) {
                self.closed_by_server += 1;
            }
            abort(stream);
        }
        outcome
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            abort(stream);
        }
    }
}

fn connect(target: SocketAddr, source: Option<SocketAddr>, timeout: Duration) -> Result<TcpStream, Outcome> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))
        .map_err(|err| Outcome::from_io("socket", &err))?;
    if let Some(source) = source {
        socket.bind(&SockAddr::from(source)).map_err(|err| Outcome::Other(format!("bind {source}: {err}")))?;
    }
    socket.connect_timeout(&SockAddr::from(target), timeout).map_err(|err| Outcome::from_io("connect", &err))?;
    Ok(socket.into())
}

/// Sends `request` and reads one response. Also says whether the connection may carry another
/// request: a complete response the server did not mark `Connection: close`.
fn exchange(mut stream: &TcpStream, request: &[u8], deadline: Instant) -> (Outcome, bool) {
    let Some(left) = remaining(deadline) else {
        return (Outcome::Timeout("connect used up the timeout".to_owned()), false);
    };
    if let Err(err) = stream.set_write_timeout(Some(left)).and_then(|()| stream.write_all(request)) {
        return (Outcome::from_io("send", &err), false);
    }
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let Some(left) = remaining(deadline) else {
            return (Outcome::Timeout(format!("read: no full response in time ({} bytes)", buf.len())), false);
        };
        if let Err(err) = stream.set_read_timeout(Some(left)) {
            return (Outcome::from_io("read", &err), false);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return (parse(&buf, true), false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_RESPONSE {
                    return (Outcome::Other(format!("response longer than {MAX_RESPONSE} bytes")), false);
                }
                if let Some(done) = complete(&buf) {
                    return done;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return (Outcome::from_io("read", &err), false),
        }
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

/// The outcome of `buf` if it already holds a whole response with a `Content-Length`, and
/// whether the server keeps the connection open after it.
fn complete(buf: &[u8]) -> Option<(Outcome, bool)> {
    let head = Head::parse(buf)?;
    let length = head.content_length.ok()??;
    (buf.len() >= head.len + length).then(|| (parse(buf, false), head.keep_alive))
}

/// Classifies the response in `buf`; `eof` says the server has closed the connection.
pub fn parse(buf: &[u8], eof: bool) -> Outcome {
    if buf.is_empty() {
        return Outcome::Reset("connection closed before any response".to_owned());
    }
    let Some(head) = Head::parse(buf) else {
        return if eof {
            Outcome::Reset(format!("connection closed inside the response head ({} bytes)", buf.len()))
        } else {
            Outcome::Other("incomplete response head".to_owned())
        };
    };
    let body = buf.len() - head.len;
    match head.content_length {
        Err(()) => return Outcome::Other("malformed Content-Length".to_owned()),
        Ok(Some(length)) if body < length => {
            return Outcome::Reset(format!("connection closed after {body} of {length} body bytes"));
        }
        Ok(_) => {}
    }
    match head.status {
        Some(200) => Outcome::Ok(head.version),
        Some(status) => Outcome::WrongStatus(status),
        None => {
            Outcome::Other(format!("malformed status line {:?}", String::from_utf8_lossy(&buf[..buf.len().min(64)])))
        }
    }
}

/// The parts of a response head that matter here.
struct Head {
    /// Bytes up to and including the blank line.
    len: usize,
    status: Option<u16>,
    version: Option<String>,
    /// `Ok(None)` when absent, `Err` when present but not a number.
    content_length: Result<Option<usize>, ()>,
    /// Whether the server keeps the connection open: HTTP/1.1 without `Connection: close`, or
    /// HTTP/1.0 with `Connection: keep-alive`.
    keep_alive: bool,
}

impl Head {
    /// Parses the head of `buf`, or `None` while its blank line has not arrived.
    fn parse(buf: &[u8]) -> Option<Self> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let text = String::from_utf8_lossy(&buf[..end]);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = {
            let mut parts = status_line.splitn(3, ' ');
            let proto = parts.next().unwrap_or("");
            let code = parts.next().unwrap_or("");
            (proto.starts_with("HTTP/1.") && code.len() == 3).then(|| code.parse().ok()).flatten()
        };
        let http11 = status_line.starts_with("HTTP/1.1 ");
        let mut head = Self { len: end + 4, status, version: None, content_length: Ok(None), keep_alive: http11 };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("x-version") {
                head.version = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.parse().map(Some).map_err(|_| ());
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                        head.keep_alive = true;
                    }
                }
            }
        }
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_with_version() {
        let resp = b"HTTP/1.1 200 OK\r\nX-Version: v7\r\nContent-Length: 3\r\n\r\nv7\n";
        assert_eq!(parse(resp, true), Outcome::Ok(Some("v7".to_owned())));
        assert_eq!(complete(resp), Some((Outcome::Ok(Some("v7".to_owned())), true)));
    }

    #[test]
    fn incomplete_body_is_not_complete_and_a_reset_at_eof() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nv7\n";
        assert_eq!(complete(resp), None);
        assert!(matches!(parse(resp, true), Outcome::Reset(_)));
    }

    #[test]
    fn wrong_status_and_garbage() {
        let resp = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(resp, true), Outcome::WrongStatus(503));
        assert!(matches!(parse(b"SSH-2.0\r\n\r\n", true), Outcome::Other(_)));
        assert!(matches!(parse(b"HTTP/1.1 200", true), Outcome::Reset(_)));
        assert!(matches!(parse(b"", true), Outcome::Reset(_)));
    }

    #[test]
    fn connection_close_and_http10_end_the_connection() {
        let ok = Outcome::Ok(None);
        let close = b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(complete(close), Some((ok.clone(), false)));
        let tokens = b"HTTP/1.1 200 OK\r\nconnection: upgrade, close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(complete(tokens), Some((ok.clone(), false)));
        let http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(complete(http10), Some((ok.clone(), false)));
        let http10_kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(complete(http10_kept), Some((ok, true)));
    }

    #[test]
    fn keep_alive_requests_leave_the_connection_open() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 80));
        let req = String::from_utf8(request_bytes_for(addr, "/", true)).unwrap_or_default();
        assert!(req.contains("\r\nConnection: keep-alive\r\n\r\n"), "{req}");
        assert!(!req.contains("close"), "{req}");
    }

    #[test]
    fn request_encodes_odd_paths() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 80));
        let req = String::from_utf8(request_bytes(addr, "health check")).unwrap_or_default();
        assert!(req.starts_with("GET /health%20check HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn io_errors_are_classified() {
        use io::ErrorKind as K;
        let kind = |k: K| Outcome::from_io("x", &io::Error::from(k));
        assert!(matches!(kind(K::ConnectionRefused), Outcome::Refused(_)));
        assert!(matches!(kind(K::ConnectionReset), Outcome::Reset(_)));
        assert!(matches!(kind(K::BrokenPipe), Outcome::Reset(_)));
        assert!(matches!(kind(K::WouldBlock), Outcome::Timeout(_)));
        assert!(matches!(kind(K::TimedOut), Outcome::Timeout(_)));
        assert!(matches!(kind(K::AddrNotAvailable), Outcome::Other(_)));
    }
}
