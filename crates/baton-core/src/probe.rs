//! Readiness checks of a release: a TCP connect, a minimal HTTP/1.1 `GET`, and which processes
//! hold a listening socket on the service's port (read from `/proc`).
//!
//! Probes talk to the loopback only (`127.0.0.1`, falling back to `[::1]` when nothing listens
//! on IPv4) and never take longer than their timeout.

use std::collections::BTreeSet;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest status line (and whatever arrives with it) read from an HTTP answer.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The TCP state `LISTEN` as `/proc/net/tcp` writes it.
const TCP_LISTEN: &str = "0A";

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing accepts connections on the port, neither on IPv4 nor on IPv6.
    #[error("nothing accepts connections on port {port} of 127.0.0.1 or [::1]: {source}")]
    Refused {
        /// The port.
        port: u16,
        /// The IPv4 error.
        source: io::Error,
    },
    /// The probe did not complete within its timeout.
    #[error("{probe} probe of port {port} got no answer within {timeout:?}")]
    Timeout {
        /// `tcp` or `http`.
        probe: &'static str,
        /// The port.
        port: u16,
        /// The timeout.
        timeout: Duration,
    },
    /// Connecting failed for another reason than a refusal or a timeout.
    #[error("cannot connect to port {port} of 127.0.0.1: {source}")]
    Connect {
        /// The port.
        port: u16,
        /// The cause.
        source: io::Error,
    },
    /// Sending the request or reading the answer failed.
    #[error("http probe of port {port} failed: {source}")]
    Http {
        /// The port.
        port: u16,
        /// The cause.
        source: io::Error,
    },
    /// The answer did not start with an HTTP status line.
    #[error("http probe of port {port} got no HTTP status line: {got:?}")]
    Malformed {
        /// The port.
        port: u16,
        /// What came back instead (at most its first line).
        got: String,
    },
    /// The server answered with a status other than 2xx or 3xx.
    #[error("http probe answered status {0}, expected 2xx or 3xx")]
    Status(u16),
    /// The HTTP path cannot be put in a request line.
    #[error("http probe path {path:?} must start with / and hold only visible ASCII characters")]
    InvalidPath {
        /// The path.
        path: String,
    },
    /// A file under `/proc` could not be read.
    #[error("cannot read {path}: {source}")]
    Proc {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Succeeds when a TCP connection to `127.0.0.1:port` (or, when that is refused, `[::1]:port`)
/// is established within `timeout`.
pub fn tcp(port: u16, timeout: Duration) -> Result<(), ProbeError> {
    let deadline = Instant::now() + timeout;
    connect("tcp", port, timeout, deadline).map(drop)
}

/// Sends `GET path HTTP/1.1` to `127.0.0.1:port` (or `[::1]:port`) and reads the status line,
/// all within `timeout`: `Ok(status)` for 2xx and 3xx, [`ProbeError::Status`] otherwise.
/// Redirects are not followed.
pub fn http(port: u16, path: &str, timeout: Duration) -> Result<u16, ProbeError> {
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ProbeError::InvalidPath { path: path.to_string() });
    }
    let deadline = Instant::now() + timeout;
    let timed_out = || ProbeError::Timeout { probe: "http", port, timeout };
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        _ => ProbeError::Http { port, source },
    };
    let mut stream = connect("http", port, timeout, deadline)?;

    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: baton\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let left = remaining(deadline).ok_or_else(timed_out)?;
    stream.set_write_timeout(Some(left)).map_err(io_error)?;
    stream.write_all(request.as_bytes()).map_err(io_error)?;

    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.contains(&b'\n') && head.len() < MAX_HEAD_BYTES {
        let left = remaining(deadline).ok_or_else(timed_out)?;
        stream.set_read_timeout(Some(left)).map_err(io_error)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    let status = parse_status_line(&head).ok_or_else(|| {
        let text = String::from_utf8_lossy(&head);
        let first = text.lines().next().unwrap_or_default();
        ProbeError::Malformed { port, got: first.chars().take(200).collect() }
    })?;
    if (200..400).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}

/// Which of `pids` hold a TCP socket listening on `port` (IPv4 or IPv6), in the order given.
/// PIDs that no longer exist are skipped.
pub fn listening_pids(pids: &[u32], port: u16) -> Result<Vec<u32>, ProbeError> {
    let mut inodes = BTreeSet::new();
    for (table, required) in [("/proc/net/tcp", true), ("/proc/net/tcp6", false)] {
        match std::fs::read_to_string(table) {
            Ok(text) => inodes.extend(parse_listening_inodes(&text, port)),
            // Without IPv6 there is no tcp6 table.
            Err(e) if !required && e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ProbeError::Proc { path: PathBuf::from(table), source }),
        }
    }
    let mut found = Vec::new();
    if inodes.is_empty() {
        return Ok(found);
    }
    for &pid in pids {
        if !found.contains(&pid) && holds_any_socket(pid, &inodes)? {
            found.push(pid);
        }
    }
    Ok(found)
}

/// The socket inodes of the sockets listening on `port` in a `/proc/net/tcp` or
/// `/proc/net/tcp6` table. Lines that do not parse (the header among them) are skipped.
pub fn parse_listening_inodes(table: &str, port: u16) -> BTreeSet<u64> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if !state.eq_ignore_ascii_case(TCP_LISTEN) {
                return None;
            }
            let (_, local_port) = local.rsplit_once(':')?;
            if u16::from_str_radix(local_port, 16).ok()? != port {
                return None;
            }
            inode.parse::<u64>().ok().filter(|&inode| inode != 0)
        })
        .collect()
}

/// Whether process `pid` has a descriptor on one of the socket `inodes`; `false` when the
/// process is gone.
fn holds_any_socket(pid: u32, inodes: &BTreeSet<u64>) -> Result<bool, ProbeError> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if is_gone(&e) => return Ok(false),
        Err(source) => return Err(ProbeError::Proc { path: dir, source }),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if is_gone(&e) => return Ok(false),
            Err(source) => return Err(ProbeError::Proc { path: dir, source }),
        };
        // A descriptor closed meanwhile is simply not a match.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if socket_inode(&target).is_some_and(|inode| inodes.contains(&inode)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The inode of a `socket:[INODE]` descriptor link.
fn socket_inode(target: &Path) -> Option<u64> {
    target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Whether an error reading `/proc/PID` means the process no longer exists.
fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// The status code of an HTTP/1.x status line at the start of `head`.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..end]).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok().filter(|code| (100..600).contains(code))
}

/// The time left before `deadline`, `None` when it has passed.
fn remaining(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

/// Connects to `127.0.0.1:port`, or to `[::1]:port` when IPv4 refuses, before `deadline`.
fn connect(probe: &'static str, port: u16, timeout: Duration, deadline: Instant) -> Result<TcpStream, ProbeError> {
    let timed_out = || ProbeError::Timeout { probe, port, timeout };
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v4_error = match TcpStream::connect_timeout(&v4, remaining(deadline).ok_or_else(timed_out)?) {
        Ok(stream) => return Ok(stream),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => e,
        Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => return Err(timed_out()),
        Err(source) => return Err(ProbeError::Connect { port, source }),
    };
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v6, remaining(deadline).ok_or_else(timed_out)?) {
        Ok(stream) => Ok(stream),
        Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => Err(timed_out()),
        // Refused on both, or no IPv6 on this host: report what IPv4 said.
        Err(_) => Err(ProbeError::Refused { port, source: v4_error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    const SHORT: Duration = Duration::from_secs(3);

    /// A port on 127.0.0.1 that nothing listens on (bound once, then released).
    fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    /// Serves one connection: reads the request head, answers `answer`, and hands the request
    /// back.
    fn serve_once(answer: &'static str) -> (u16, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            stream.set_read_timeout(Some(SHORT)).expect("timeout");
            let mut request = Vec::new();
            let mut chunk = [0u8; 512];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = stream.write_all(answer.as_bytes());
            String::from_utf8_lossy(&request).into_owned()
        });
        (port, server)
    }

    #[test]
    fn tcp_connects_to_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tcp(port, SHORT).expect("tcp probe");
    }

    #[test]
    fn tcp_falls_back_to_ipv6() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback");
            return;
        };
        let port = listener.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            eprintln!("skipped: port {port} is taken on IPv4");
            return;
        }
        tcp(port, SHORT).expect("tcp probe over [::1]");
    }

    #[test]
    fn tcp_to_a_closed_port_fails() {
        let port = closed_port();
        let start = Instant::now();
        let err = tcp(port, SHORT).expect_err("closed port");
        assert!(start.elapsed() < SHORT);
        assert!(matches!(err, ProbeError::Refused { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("nothing accepts connections on port {port} ")), "{err}");
    }

    #[test]
    fn http_200_is_ok_and_the_request_is_minimal() {
        let (port, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        assert_eq!(http(port, "/healthz?x=1", SHORT).expect("probe"), 200);
        let request = server.join().expect("server");
        assert!(request.starts_with("GET /healthz?x=1 HTTP/1.1\r\n"), "{request}");
        assert!(request.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")), "{request}");
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }

    #[test]
    fn http_302_is_ok() {
        let (port, server) = serve_once("HTTP/1.0 302 Found\r\nLocation: /elsewhere\r\n\r\n");
        assert_eq!(http(port, "/", SHORT).expect("probe"), 302);
        server.join().expect("server");
    }

    #[test]
    fn http_503_is_a_status_error() {
        let (port, server) = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = http(port, "/", SHORT).expect_err("503");
        assert!(matches!(err, ProbeError::Status(503)), "{err:?}");
        assert_eq!(err.to_string(), "http probe answered status 503, expected 2xx or 3xx");
        server.join().expect("server");
    }

    #[test]
    fn http_garbage_is_malformed() {
        let (port, server) = serve_once("SSH-2.0-OpenSSH\r\n");
        let err = http(port, "/", SHORT).expect_err("not http");
        assert!(matches!(err, ProbeError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("SSH-2.0-OpenSSH"), "{err}");
        server.join().expect("server");
    }

    #[test]
    fn http_closed_without_answer_is_malformed() {
        let (port, server) = serve_once("");
        let err = http(port, "/", SHORT).expect_err("no answer");
        assert!(matches!(err, ProbeError::Malformed { .. }), "{err:?}");
        server.join().expect("server");
    }

    #[test]
    fn http_silent_server_times_out_within_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            // Hold the connection open, silent, until the probe is done (or 5 s).
            let _ = done_rx.recv_timeout(Duration::from_secs(5));
            drop(stream);
        });
        let timeout = Duration::from_millis(300);
        let start = Instant::now();
        let err = http(port, "/", timeout).expect_err("silent server");
        let elapsed = start.elapsed();
        let _ = done_tx.send(());
        server.join().expect("server");
        assert!(matches!(err, ProbeError::Timeout { probe: "http", .. }), "{err:?}");
        assert!(elapsed >= timeout, "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        assert_eq!(err.to_string(), format!("http probe of port {port} got no answer within 300ms"));
    }

    #[test]
    fn http_refuses_paths_that_could_inject() {
        for path in ["", "healthz", "/a b", "/a\r\nX: y", "/é"] {
            let err = http(1, path, SHORT).expect_err(path);
            assert!(matches!(err, ProbeError::InvalidPath { .. }), "{err:?}");
        }
    }

    #[test]
    fn listening_pids_finds_our_own_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = std::process::id();
        // A connected (not listening) socket on the same port must not matter.
        let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        assert_eq!(listening_pids(&[4_000_000_000, me, me], port).expect("probe"), vec![me]);
        assert_eq!(listening_pids(&[me], closed_port()).expect("probe"), Vec::<u32>::new());
        assert_eq!(listening_pids(&[], port).expect("probe"), Vec::<u32>::new());
    }

    #[test]
    fn listening_pids_sees_ipv6_listeners() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback");
            return;
        };
        let port = listener.local_addr().expect("addr").port();
        let me = std::process::id();
        assert_eq!(listening_pids(&[me], port).expect("probe"), vec![me]);
    }

    const TCP_FIXTURE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1151 1 00000000c6127317 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 249736 1 0000000061771421 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 249800 1 0000000061771421 20 4 30 10 -1
   3: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 00000000c6127317 100 0 0 10 0
   4: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 00000000c6127317 100 0 0 10 0
   5: garbage
";

    const TCP6_FIXTURE: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 888 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn parser_reads_listeners_of_the_port() {
        assert_eq!(parse_listening_inodes(TCP_FIXTURE, 8080), BTreeSet::from([1151, 249736]));
        assert_eq!(parse_listening_inodes(TCP_FIXTURE, 8081), BTreeSet::from([5555]));
        assert!(parse_listening_inodes(TCP_FIXTURE, 80).is_empty());
        assert_eq!(parse_listening_inodes(TCP6_FIXTURE, 8080), BTreeSet::from([777]));
        assert_eq!(parse_listening_inodes(TCP6_FIXTURE, 80), BTreeSet::from([888]));
        assert!(parse_listening_inodes("", 8080).is_empty());
    }

    #[test]
    fn socket_links_are_parsed() {
        assert_eq!(socket_inode(Path::new("socket:[249736]")), Some(249736));
        assert_eq!(socket_inode(Path::new("pipe:[249736]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
    }

    #[test]
    fn status_lines_are_parsed() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 404\n"), Some(404));
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 999 Nope\r\n"), None);
        assert_eq!(parse_status_line(b"ICY 200 OK\r\n"), None);
    }
}
