//! Just enough HTTP/1.1: read one request head, write one `Connection: close` response.

use std::io::{self, Read};

/// The longest request head accepted.
pub const MAX_HEAD: usize = 8192;

/// The parts of a request this service looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without any query string.
    pub path: String,
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection before sending a whole head.
    Closed,
    /// Not an HTTP/1.x request line, or a head longer than [`MAX_HEAD`].
    Malformed,
    /// Reading failed (timeout, reset).
    Io,
}

/// Reads bytes until the blank line ending the request head, and parses its request line.
/// Any body is left unread (this service only answers GET and HEAD).
pub fn read_request(stream: &mut impl Read) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let end = loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => {
                let scan_from = buf.len().saturating_sub(3);
                buf.extend_from_slice(&chunk[..n]);
                if let Some(pos) = buf[scan_from..].windows(4).position(|w| w == b"\r\n\r\n") {
                    break scan_from + pos;
                }
                if buf.len() > MAX_HEAD {
                    return Err(ReadError::Malformed);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Io),
        }
    };
    parse_request_line(&buf[..end]).ok_or(ReadError::Malformed)
}

fn parse_request_line(head: &[u8]) -> Option<Request> {
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, proto) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || !proto.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Some(Request { method: method.to_owned(), path: path.to_owned() })
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self { status, body: body.into() }
    }

    /// The bytes on the wire; `head_only` answers a HEAD request.
    pub fn to_bytes(&self, version: &str, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Unknown",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nX-Version: {version}\r\nConnection: close\r\n\r\n",
            self.status,
            self.body.len(),
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, ReadError> {
        read_request(&mut &bytes[..])
    }

    #[test]
    fn reads_a_request_line() {
        let req = read(b"GET /health?full=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(req, Ok(Request { ref method, ref path }) if method == "GET" && path == "/health"));
    }

    #[test]
    fn rejects_garbage_and_short_heads() {
        assert!(matches!(read(b"hello\r\n\r\n"), Err(ReadError::Malformed)));
        assert!(matches!(read(b"GET / HTTP/1.1\r\n"), Err(ReadError::Closed)));
        let long = [b'a'; MAX_HEAD + 10];
        assert!(matches!(read(&long), Err(ReadError::Malformed)));
    }

    #[test]
    fn writes_version_header_and_length() {
        let bytes = Response::new(200, "v1\n").to_bytes("v1", false);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nX-Version: v1\r\n"));
        assert!(text.contains("\r\nContent-Length: 3\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nv1\n"));
        assert!(Response::new(200, "v1\n").to_bytes("v1", true).ends_with(b"\r\n\r\n"));
    }
}
