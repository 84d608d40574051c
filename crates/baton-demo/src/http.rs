//! Just enough HTTP/1.1: read request heads off a (possibly kept-alive) connection, write
//! responses that say whether the connection stays open.

/// The longest request head accepted.
pub const MAX_HEAD: usize = 8192;

/// The parts of a request this service looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without any query string.
    pub path: String,
    /// Whether the client wants the connection kept open after the response: HTTP/1.1 unless
    /// it says `Connection: close`, HTTP/1.0 only when it says `Connection: keep-alive`.
    pub keep_alive: bool,
}

/// Why no request could be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Not an HTTP/1.x request line, or a head longer than [`MAX_HEAD`].
    Malformed,
}

/// Takes the first whole request head off the front of `buf` (the bytes read from a connection
/// so far) and parses it; `Ok(None)` while the head's blank line has not arrived. Bytes after
/// the head (the next request of a pipelining client) stay in `buf`; any body is not read (this
/// service only answers GET and HEAD).
pub fn take_request(buf: &mut Vec<u8>) -> Result<Option<Request>, ReadError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD { Err(ReadError::Malformed) } else { Ok(None) };
    };
    let request = parse_head(&buf[..end]).ok_or(ReadError::Malformed);
    buf.drain(..end + 4);
    request.map(Some)
}

fn parse_head(head: &[u8]) -> Option<Request> {
    if head.len() > MAX_HEAD {
        return None;
    }
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, proto) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || !proto.starts_with("HTTP/1.") {
        return None;
    }
    let mut keep_alive = proto == "HTTP/1.1";
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        if name.trim().eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && proto != "HTTP/1.1" {
                    keep_alive = true;
                }
            }
        }
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Some(Request { method: method.to_owned(), path: path.to_owned(), keep_alive })
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

    /// The bytes on the wire; `head_only` answers a HEAD request; `close` says
    /// `Connection: close` (the server closes the connection after it), else the connection
    /// stays open (HTTP/1.1's default, said as `Connection: keep-alive`).
    pub fn to_bytes(&self, version: &str, head_only: bool, close: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Unknown",
        };
        let connection = if close { "close" } else { "keep-alive" };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nX-Version: {version}\r\nConnection: {connection}\r\n\r\n",
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

    fn take(bytes: &[u8]) -> Result<Option<Request>, ReadError> {
        take_request(&mut bytes.to_vec())
    }

    #[test]
    fn reads_a_request_line() {
        let req = take(b"GET /health?full=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            matches!(req, Ok(Some(Request { ref method, ref path, keep_alive: true })) if method == "GET" && path == "/health"),
            "{req:?}"
        );
    }

    #[test]
    fn keep_alive_follows_the_protocol_version_and_connection_header() {
        let keep = |bytes: &[u8]| take(bytes).ok().flatten().map(|r| r.keep_alive);
        assert_eq!(keep(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"), Some(false));
        assert_eq!(keep(b"GET / HTTP/1.1\r\nconnection: TE, Close\r\n\r\n"), Some(false));
        assert_eq!(keep(b"GET / HTTP/1.0\r\n\r\n"), Some(false));
        assert_eq!(keep(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), Some(true));
        assert_eq!(keep(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"), Some(true));
    }

    #[test]
    fn leaves_the_next_request_in_the_buffer() {
        let mut buf = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n".to_vec();
        assert_eq!(take_request(&mut buf).ok().flatten().map(|r| r.path), Some("/a".to_owned()));
        assert_eq!(take_request(&mut buf), Ok(None), "the second head is not complete yet");
        buf.extend_from_slice(b"\r\n");
        assert_eq!(take_request(&mut buf).ok().flatten().map(|r| r.path), Some("/b".to_owned()));
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_garbage_and_long_heads() {
        assert_eq!(take(b"hello\r\n\r\n"), Err(ReadError::Malformed));
        assert_eq!(take(b"GET / HTTP/1.1\r\n"), Ok(None));
        let long = [b'a'; MAX_HEAD + 10];
        assert_eq!(take(&long), Err(ReadError::Malformed));
    }

    #[test]
    fn writes_version_header_length_and_connection() {
        let bytes = Response::new(200, "v1\n").to_bytes("v1", false, true);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nX-Version: v1\r\n"));
        assert!(text.contains("\r\nContent-Length: 3\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nv1\n"));
        assert!(Response::new(200, "v1\n").to_bytes("v1", true, true).ends_with(b"\r\n\r\n"));
        let kept = Response::new(200, "v1\n").to_bytes("v1", false, false);
        assert!(String::from_utf8_lossy(&kept).contains("\r\nConnection: keep-alive\r\n"));
    }
}
