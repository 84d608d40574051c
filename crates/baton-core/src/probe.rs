//! Readiness checks of a release: a TCP connect, a minimal HTTP/1.1 `GET`, and which processes
//! hold a listening socket on the service's port (read from `/proc`).
//!
//! Probes talk to the loopback only (`127.0.0.1`, falling back to `[::1]` when nothing listens
//! on IPv4) and never take longer than their timeout.
//!
//! A probe counts only when the release's own process served it. During a handover the old and
//! the new release both listen on the port with SO_REUSEPORT, and the kernel hands each
//! connection to either one, so a probe answered by the old release says nothing about the new
//! one. Every probe connection is therefore attributed before it counts: its server-side socket
//! (local port = the service's port, remote = the probe's own address) is looked up with
//! sock_diag (falling back to `/proc/net/tcp{,6}`), and its inode must be held by one of the
//! release's processes ([`Owners`]). See [`attributed`] for the timing.

use std::collections::BTreeSet;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The longest status line (and whatever arrives with it) read from an HTTP answer.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The TCP state `LISTEN` as `/proc/net/tcp` writes it.
const TCP_LISTEN: &str = "0A";

/// How long a probe connection may wait to be accepted before the probe opens another one
/// beside it (it may sit in the queue of a release that accepts slowly, or not at all).
const PATIENCE: Duration = Duration::from_millis(100);

/// How many probe connections may wait to be accepted at once.
const MAX_PENDING: usize = 8;

/// How long an accepted probe connection whose socket no process of the release holds is kept
/// before it is given up as served by another process. `accept()` gives the socket its inode
/// a moment before it installs the descriptor, so a connection the release has just accepted
/// can look foreign for a few microseconds.
const FOREIGN_GRACE: Duration = Duration::from_millis(20);

/// The processes that may serve a probe: those of the new release's unit (its cgroup). Called
/// afresh whenever an accepted probe connection must be attributed, so that a process the
/// release forked to handle it is among them.
pub(crate) type Owners<'a> = &'a dyn Fn() -> Result<Vec<u32>, String>;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ProbeError {
    /// Nothing accepts connections on the port: neither on IPv4 nor on IPv6 of the loopback, or
    /// not on the one address the service listens on.
    #[error("nothing accepts connections on port {port} of {at}")]
    Refused {
        /// The port.
        port: u16,
        /// Where: `127.0.0.1 or [::1]`, or the one address probed.
        at: String,
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
    #[error("cannot connect to port {port} of {at}")]
    Connect {
        /// The port.
        port: u16,
        /// Where: `127.0.0.1`, or the one address probed.
        at: String,
        /// The cause.
        source: io::Error,
    },
    /// Sending the request or reading the answer failed.
    #[error("http probe of port {port} failed")]
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
    /// Connections were made, but none was accepted by the release's own processes in time:
    /// the release does not accept them (or too slowly), and those accepted by another
    /// process (such as the old release, on the same SO_REUSEPORT port) do not count.
    #[error(
        "no {probe} probe connection to port {port} was accepted by the release's own processes within \
         {timeout:?} ({others} accepted by another process, such as the old release, did not count)"
    )]
    NotServed {
        /// `tcp` or `http`.
        probe: &'static str,
        /// The port.
        port: u16,
        /// The timeout.
        timeout: Duration,
        /// How many connections another process accepted.
        others: usize,
    },
    /// The release's processes could not be listed.
    #[error("cannot list the release's processes: {0}")]
    Owners(String),
    /// A file under `/proc` could not be read.
    #[error("cannot read {path}")]
    Proc {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// `now + timeout`, capped at a year from now: no timeout, however large, overflows the clock.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout.min(Duration::from_secs(365 * 86_400))).unwrap_or(now)
}

/// Succeeds when a TCP connection to `127.0.0.1:port` (or, when that is refused, `[::1]:port`)
/// is accepted by one of the `owners`' processes within `timeout`. Nothing is sent: an app
/// that accepts and waits for its client passes; one that accepts and closes at once may be
/// gone before the connection can be attributed, and is retried until the timeout.
#[cfg(test)]
pub(crate) fn tcp(port: u16, timeout: Duration, owners: Owners<'_>) -> Result<(), ProbeError> {
    tcp_at(None, port, timeout, owners)
}

/// [`tcp`] to `address` instead of the loopback, when the service listens on one address only
/// (socket mode's `bind_address`); None or an unspecified address (`0.0.0.0`, `::`): the
/// loopback.
pub(crate) fn tcp_at(
    address: Option<IpAddr>,
    port: u16,
    timeout: Duration,
    owners: Owners<'_>,
) -> Result<(), ProbeError> {
    let deadline = deadline_after(timeout);
    attributed("tcp", address, port, timeout, deadline, owners, None).map(drop)
}

/// Sends `GET path HTTP/1.1` to `127.0.0.1:port` (or `[::1]:port`) on a connection accepted by
/// one of the `owners`' processes and reads the status line, all within `timeout`: `Ok(status)`
/// for 2xx and 3xx, [`ProbeError::Status`] otherwise. Redirects are not followed.
#[cfg(test)]
pub(crate) fn http(port: u16, path: &str, timeout: Duration, owners: Owners<'_>) -> Result<u16, ProbeError> {
    http_at(None, port, path, timeout, owners)
}

/// [`http`] to `address` instead of the loopback (see [`tcp_at`]).
pub(crate) fn http_at(
    address: Option<IpAddr>,
    port: u16,
    path: &str,
    timeout: Duration,
    owners: Owners<'_>,
) -> Result<u16, ProbeError> {
    let address = address.filter(|a| !a.is_unspecified());
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ProbeError::InvalidPath { path: path.to_string() });
    }
    let deadline = deadline_after(timeout);
    let timed_out = || ProbeError::Timeout { probe: "http", port, timeout };
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        _ => ProbeError::Http { port, source },
    };
    // The request head without the empty line that ends it: a server cannot answer (and close
    // the connection) before it has that line, so it still holds the connection while the
    // probe attributes it.
    let host = SocketAddr::from((address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), port));
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: baton\r\nAccept: */*\r\nConnection: close\r\n");
    let (mut stream, sent) = attributed("http", address, port, timeout, deadline, owners, Some(head.as_bytes()))?;
    let rest = if sent { &b"\r\n"[..] } else { &[head.as_bytes(), b"\r\n"].concat() };
    let left = remaining(deadline).ok_or_else(timed_out)?;
    stream.set_write_timeout(Some(left)).map_err(io_error)?;
    stream.write_all(rest).map_err(io_error)?;

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

/// A probe connection waiting to be attributed.
struct Pending {
    stream: TcpStream,
    /// The probe's end: the remote address of the server-side socket.
    local: SocketAddr,
    /// The server's end: the local address of the server-side socket.
    peer: SocketAddr,
    opened: Instant,
    /// Whether the request head (less its last line end) was sent.
    nudged: bool,
    /// Since when the connection has been accepted by a process that is not an owner.
    foreign_since: Option<Instant>,
}

/// What became of a pending probe connection at one look.
enum Seen {
    /// Not accepted yet (or not found: the handshake is still being completed).
    Waiting,
    /// Accepted, by the owners.
    Ours,
    /// Accepted by another process (for [`FOREIGN_GRACE`] now): give it up.
    Foreign,
    /// Closed by the server before it could be attributed: give it up.
    Lost,
}

/// A connection to `port` whose server-side socket is held by one of the `owners`' processes,
/// and whether `nudge` was sent on it; [`ProbeError::NotServed`] when there is none before
/// `deadline`.
///
/// The timing, and why it is safe:
/// - When `connect()` returns, the handshake is complete and the kernel has put the
///   server-side socket in the accept queue of the one listener SO_REUSEPORT picked (old or
///   new release). It is listed (sock_diag, `/proc/net/tcp`) with inode 0: a socket gets its
///   inode and a descriptor in a process only when that process `accept()`s it. Before that,
///   nothing tells whose queue it is in, so a connection is never counted before it is
///   accepted.
/// - Once accepted, the inode is looked for among the descriptors of the owners' processes.
///   `accept()` assigns the inode a moment before it installs the descriptor, so a connection
///   not (yet) found there is only given up after [`FOREIGN_GRACE`].
/// - It must be looked at while the server still holds it: once the server closes its
///   descriptor, the socket is orphaned (inode 0 again) and nothing links it to a process.
///   An HTTP server closes only after answering, and cannot answer before the request head is
///   complete, so the HTTP probe withholds the head's final line end until the connection is
///   attributed. A server that accepts only once data arrives (`TCP_DEFER_ACCEPT`) gets the
///   head less that line end (`nudge`) after [`PATIENCE`]. A TCP probe sends nothing: an app
///   that accepts and waits is attributed; one that accepts and closes at once may be missed
///   and is then retried.
/// - A connection not accepted within [`PATIENCE`] is kept, and another one is opened beside
///   it (at most [`MAX_PENDING`] in all): it may sit in the queue of a release that accepts
///   slowly or never, while the next one lands elsewhere.
fn attributed(
    probe: &'static str,
    address: Option<IpAddr>,
    port: u16,
    timeout: Duration,
    deadline: Instant,
    owners: Owners<'_>,
    nudge: Option<&[u8]>,
) -> Result<(TcpStream, bool), ProbeError> {
    let mut diag = Diag::open();
    let mut pending: Vec<Pending> = Vec::new();
    let mut others = 0;
    let mut pause = Duration::from_millis(1);
    loop {
        let waiting = pending.iter().any(|p| p.foreign_since.is_none() && p.opened.elapsed() < PATIENCE);
        if !waiting && pending.len() < MAX_PENDING {
            match connect(probe, address, port, timeout, deadline) {
                Ok(stream) => {
                    // Without both addresses (reset already) it cannot be attributed: the next
                    // round opens another.
                    if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) {
                        let opened = Instant::now();
                        pending.push(Pending { stream, local, peer, opened, nudged: false, foreign_since: None });
                        pause = Duration::from_millis(1);
                    }
                }
                // Nothing listens any more, or the time is up.
                Err(e) if pending.is_empty() => return Err(e),
                Err(_) => {}
            }
        }

        // The socket inodes the owners hold, read once per round and only when needed.
        let mut owned: Option<BTreeSet<u64>> = None;
        let mut i = 0;
        while i < pending.len() {
            let p = &mut pending[i];
            let seen = match server_socket(&mut diag, p.peer, p.local) {
                Some((_, inode)) if inode != 0 => {
                    if owned.is_none() {
                        owned = Some(owned_socket_inodes(&owners().map_err(ProbeError::Owners)?));
                    }
                    if owned.as_ref().is_some_and(|o| o.contains(&inode)) {
                        Seen::Ours
                    } else if p.foreign_since.get_or_insert_with(Instant::now).elapsed() >= FOREIGN_GRACE {
                        Seen::Foreign
                    } else {
                        Seen::Waiting
                    }
                }
                // Closed by the server without ever being seen accepted.
                Some((state, _)) if !matches!(state, TCP_ESTABLISHED | TCP_SYN_RECV | TCP_NEW_SYN_RECV) => Seen::Lost,
                // A queued connection is always listed: one missing for that long was reset
                // (e.g. its listener closed).
                None if p.opened.elapsed() >= PATIENCE => Seen::Lost,
                _ => match nudge.filter(|_| !p.nudged && p.opened.elapsed() >= PATIENCE) {
                    Some(nudge) => {
                        p.nudged = true;
                        // A fresh connection's send buffer takes a request head without blocking.
                        let sent = p.stream.set_write_timeout(Some(Duration::from_millis(100)));
                        match sent.and_then(|()| p.stream.write_all(nudge)) {
                            Ok(()) => Seen::Waiting,
                            Err(_) => Seen::Lost,
                        }
                    }
                    None => Seen::Waiting,
                },
            };
            match seen {
                Seen::Ours => {
                    let p = pending.swap_remove(i);
                    return Ok((p.stream, p.nudged));
                }
                Seen::Foreign => {
                    others += 1;
                    pending.swap_remove(i);
                }
                Seen::Lost => {
                    pending.swap_remove(i);
                }
                Seen::Waiting => i += 1,
            }
        }

        let Some(left) = remaining(deadline) else {
            return Err(ProbeError::NotServed { probe, port, timeout, others });
        };
        sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Every socket inode held by one of `pids` (processes gone meanwhile are skipped).
fn owned_socket_inodes(pids: &[u32]) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    for pid in pids {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(inode) = std::fs::read_link(entry.path()).ok().as_deref().and_then(socket_inode) {
                inodes.insert(inode);
            }
        }
    }
    inodes
}

/// TCP states as the kernel numbers them.
const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_RECV: u8 = 3;
const TCP_LISTEN_STATE: u8 = 10;
const TCP_NEW_SYN_RECV: u8 = 12;

/// The state and inode of the TCP socket whose own address is `local` and whose peer is
/// `remote` (a probe connection's server side), by sock_diag, else from `/proc/net/tcp{,6}`;
/// `None` when there is none (yet).
fn server_socket(diag: &mut Option<Diag>, local: SocketAddr, remote: SocketAddr) -> Option<(u8, u64)> {
    if let Some(d) = diag {
        match d.lookup(local, remote) {
            Ok(found) => return found,
            // No sock_diag for TCP here (tcp_diag not loaded): read the tables from now on.
            Err(_) => *diag = None,
        }
    }
    proc_tables_lookup(local, remote)
}

/// [`server_socket`] from `/proc/net/tcp` and `/proc/net/tcp6`.
fn proc_tables_lookup(local: SocketAddr, remote: SocketAddr) -> Option<(u8, u64)> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .find_map(|text| find_socket(&text, local, remote))
}

/// The state and inode of the socket from `local` to `remote` in a `/proc/net/tcp{,6}` table
/// (IPv4-mapped IPv6 addresses match their IPv4 form).
pub(crate) fn find_socket(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<(u8, u64)> {
    let (local, remote) = (canonical(local), canonical(remote));
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r, state, inode) = (fields.get(1)?, fields.get(2)?, fields.get(3)?, fields.get(9)?);
        if parse_proc_addr(l)? != local || parse_proc_addr(r)? != remote {
            return None;
        }
        Some((u8::from_str_radix(state, 16).ok()?, inode.parse().ok()?))
    })
}

/// An address of a `/proc/net/tcp{,6}` line (`0100007F:1F90`): 32-bit words in host order.
fn parse_proc_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Option<Vec<[u8; 4]>> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_ne_bytes))
        .collect();
    let bytes: Vec<u8> = words?.concat();
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

/// `addr` with an IPv4-mapped IPv6 address turned into IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// A `NETLINK_SOCK_DIAG` socket for exact lookups of one TCP socket by its addresses
/// (constant time, where the `/proc` tables list every socket of the namespace).
struct Diag {
    fd: OwnedFd,
    seq: u32,
}

/// `SOCK_DIAG_BY_FAMILY`, `NLMSG_ERROR`, `NLM_F_REQUEST` and `IPPROTO_TCP`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const IPPROTO_TCP: u8 = 6;
/// `struct nlmsghdr` and `struct inet_diag_req_v2` (with its `struct inet_diag_sockid`).
const NLMSG_HDR_LEN: usize = 16;
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, sockid (48), expires, rqueue,
/// wqueue, uid, inode.
const DIAG_MSG_LEN: usize = 72;

impl Diag {
    /// The socket, or `None` when netlink is not available (then the `/proc` tables are read).
    fn open() -> Option<Diag> {
        use rustix::net::{netlink, socket_with, AddressFamily, SocketFlags, SocketType};
        let fd = socket_with(AddressFamily::NETLINK, SocketType::DGRAM, SocketFlags::CLOEXEC, Some(netlink::SOCK_DIAG))
            .ok()?;
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(1)),
        )
        .ok()?;
        Some(Diag { fd, seq: 0 })
    }

    /// The state and inode of the TCP socket from `local` to `remote`: `Ok(None)` when there is
    /// none, `Err` when sock_diag cannot answer.
    fn lookup(&mut self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<(u8, u64)>> {
        use rustix::net::{netlink::SocketAddrNetlink, recv, sendto, RecvFlags, SendFlags};
        let (local, remote) = (canonical(local), canonical(remote));
        self.seq = self.seq.wrapping_add(1);
        let request = diag_request(local, remote, self.seq);
        sendto(&self.fd, &request, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))?;
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            let answer = &buf[..n];
            let (Some(len), Some(kind), Some(seq)) = (ne_u32(answer, 0), ne_u16(answer, 4), ne_u32(answer, 8)) else {
                return Err(io::Error::other("short sock_diag answer"));
            };
            if seq != self.seq {
                // An answer to an earlier request that timed out.
                continue;
            }
            let body = answer.get(NLMSG_HDR_LEN..(len as usize).min(n)).unwrap_or_default();
            return match kind {
                NLMSG_ERROR => match body.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])) {
                    // inet_diag falls back to a listener when no connection matches, so "no
                    // such socket" means no listener either, or no TCP sock_diag at all.
                    Some(e) if -e == libc::ENOENT => Err(io::Error::from_raw_os_error(libc::ENOENT)),
                    Some(e) => Err(io::Error::from_raw_os_error(-e)),
                    None => Err(io::Error::other("short sock_diag error")),
                },
                SOCK_DIAG_BY_FAMILY if body.len() >= DIAG_MSG_LEN => Ok(parse_diag_msg(body, remote)),
                _ => Err(io::Error::other(format!("unexpected sock_diag answer type {kind}"))),
            };
        }
    }
}

/// A `SOCK_DIAG_BY_FAMILY` request for the one TCP socket from `local` to `remote`.
fn diag_request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Vec<u8> {
    let family = if local.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 } as u8;
    let mut msg = Vec::with_capacity(NLMSG_HDR_LEN + REQ_LEN);
    msg.extend_from_slice(&((NLMSG_HDR_LEN + REQ_LEN) as u32).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states (all).
    msg.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    msg.extend_from_slice(&u32::MAX.to_ne_bytes());
    // inet_diag_sockid: sport, dport (big-endian), src, dst (16 bytes each), if, cookie.
    msg.extend_from_slice(&local.port().to_be_bytes());
    msg.extend_from_slice(&remote.port().to_be_bytes());
    for addr in [local, remote] {
        let mut bytes = [0u8; 16];
        match addr.ip() {
            IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => bytes = v6.octets(),
        }
        msg.extend_from_slice(&bytes);
    }
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // INET_DIAG_NOCOOKIE.
    msg.extend_from_slice(&[0xff; 8]);
    msg
}

/// The state and inode of an `inet_diag_msg` answer, if it is the socket connected to
/// `remote` (not the listener inet_diag falls back to).
fn parse_diag_msg(body: &[u8], remote: SocketAddr) -> Option<(u8, u64)> {
    let state = *body.get(1)?;
    let dport = u16::from_be_bytes([*body.get(6)?, *body.get(7)?]);
    let inode = ne_u32(body, 68)?;
    (state != TCP_LISTEN_STATE && dport == remote.port()).then_some((state, u64::from(inode)))
}

fn ne_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn ne_u16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

/// Which of `pids` hold a TCP socket listening on `port` (IPv4 or IPv6), in the order given.
/// PIDs that no longer exist are skipped.
pub(crate) fn listening_pids(pids: &[u32], port: u16) -> Result<Vec<u32>, ProbeError> {
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
pub(crate) fn parse_listening_inodes(table: &str, port: u16) -> BTreeSet<u64> {
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

/// Where a loopback probe connects, as its errors say it.
const LOOPBACK_V4: &str = "127.0.0.1";
/// Where a loopback probe connects when IPv4 refuses too.
const LOOPBACKS: &str = "127.0.0.1 or [::1]";

/// `address` as the errors show it: IPv6 in brackets, as beside a port.
fn shown(address: IpAddr) -> String {
    match address {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// Connects to `127.0.0.1:port`, or to `[::1]:port` when IPv4 refuses, before `deadline`; to
/// `address:port` alone when a (specified) address is given.
fn connect(
    probe: &'static str,
    address: Option<IpAddr>,
    port: u16,
    timeout: Duration,
    deadline: Instant,
) -> Result<TcpStream, ProbeError> {
    let timed_out = || ProbeError::Timeout { probe, port, timeout };
    if let Some(address) = address.filter(|a| !a.is_unspecified()) {
        return match TcpStream::connect_timeout(
            &SocketAddr::from((address, port)),
            remaining(deadline).ok_or_else(timed_out)?,
        ) {
            Ok(stream) => Ok(stream),
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => Err(timed_out()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Err(ProbeError::Refused { port, at: shown(address), source: e })
            }
            Err(source) => Err(ProbeError::Connect { port, at: shown(address), source }),
        };
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v4_error = match TcpStream::connect_timeout(&v4, remaining(deadline).ok_or_else(timed_out)?) {
        Ok(stream) => return Ok(stream),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => e,
        Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => return Err(timed_out()),
        Err(source) => return Err(ProbeError::Connect { port, at: LOOPBACK_V4.to_string(), source }),
    };
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v6, remaining(deadline).ok_or_else(timed_out)?) {
        Ok(stream) => Ok(stream),
        Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => Err(timed_out()),
        // Refused on both, or no IPv6 on this host: report what IPv4 said.
        Err(_) => Err(ProbeError::Refused { port, at: LOOPBACKS.to_string(), source: v4_error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    const SHORT: Duration = Duration::from_secs(3);

    /// The owners of every socket of this test: this process.
    fn ours() -> Result<Vec<u32>, String> {
        Ok(vec![std::process::id()])
    }

    /// Owners that hold no socket of this test (another process served the probe).
    fn others() -> Result<Vec<u32>, String> {
        Ok(Vec::new())
    }

    /// Accepts connections on `listener` and holds them open, silent, until the tests end.
    fn accept_and_wait(listener: TcpListener) {
        thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
        });
    }

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
    fn tcp_passes_once_our_process_accepts() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        accept_and_wait(listener);
        tcp(port, SHORT, &ours).expect("tcp probe");
    }

    #[test]
    fn tcp_passes_for_a_dual_stack_listener_reached_over_ipv4() {
        // std binds [::] without IPV6_V6ONLY: the server side of 127.0.0.1 connections is an
        // IPv6 socket with IPv4-mapped addresses.
        let Ok(listener) = TcpListener::bind("[::]:0") else {
            crate::cannot_test("no IPv6");
            return;
        };
        let port = listener.local_addr().expect("addr").port();
        accept_and_wait(listener);
        tcp(port, SHORT, &ours).expect("tcp probe of a dual-stack listener");
    }

    #[test]
    fn tcp_to_a_listener_that_never_accepts_is_not_served() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let timeout = Duration::from_millis(400);
        let start = Instant::now();
        let err = tcp(port, timeout, &ours).expect_err("never accepted");
        assert!(start.elapsed() >= timeout && start.elapsed() < SHORT, "{:?}", start.elapsed());
        assert!(matches!(err, ProbeError::NotServed { probe: "tcp", others: 0, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "no tcp probe connection to port {port} was accepted by the release's own processes within 400ms \
                 (0 accepted by another process, such as the old release, did not count)"
            )
        );
        drop(listener);
    }

    #[test]
    fn tcp_accepted_by_another_process_does_not_count() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        accept_and_wait(listener);
        let err = tcp(port, Duration::from_millis(500), &others).expect_err("not ours");
        assert!(matches!(err, ProbeError::NotServed { others: 1.., .. }), "{err:?}");
    }

    #[test]
    fn owners_that_cannot_be_listed_fail_the_probe() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        accept_and_wait(listener);
        let err = tcp(port, SHORT, &|| Err("no D-Bus".to_owned())).expect_err("no owners");
        assert_eq!(err.to_string(), "cannot list the release's processes: no D-Bus");
    }

    #[test]
    fn tcp_falls_back_to_ipv6() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            crate::cannot_test("no IPv6 loopback");
            return;
        };
        let port = listener.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            eprintln!("skipped: port {port} is taken on IPv4");
            return;
        }
        accept_and_wait(listener);
        tcp(port, SHORT, &ours).expect("tcp probe over [::1]");
    }

    #[test]
    fn tcp_to_a_closed_port_fails() {
        let port = closed_port();
        let start = Instant::now();
        let err = tcp(port, SHORT, &ours).expect_err("closed port");
        assert!(start.elapsed() < SHORT);
        assert!(matches!(err, ProbeError::Refused { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("nothing accepts connections on port {port} ")), "{err}");
    }

    #[test]
    fn a_refusal_names_the_address_probed() {
        let port = closed_port();
        let err = tcp(port, SHORT, &ours).expect_err("closed port");
        assert_eq!(err.to_string(), format!("nothing accepts connections on port {port} of 127.0.0.1 or [::1]"));
        let one = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let err = tcp_at(Some(one), port, SHORT, &ours).expect_err("closed port");
        assert_eq!(err.to_string(), format!("nothing accepts connections on port {port} of 127.0.0.1"));
        let err = http_at(Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), port, "/", SHORT, &ours).expect_err("closed port");
        // Refused, or (no IPv6 here) cannot connect: either way it names the one address.
        assert!(err.to_string().ends_with(&format!("port {port} of [::1]")), "{err}");
    }

    // Issue 11, item 11: `Instant + Duration::MAX` panicked ("overflow when adding duration").
    #[test]
    fn a_huge_probe_timeout_is_no_panic() {
        let port = closed_port();
        let err = tcp(port, Duration::MAX, &ours).expect_err("closed port");
        assert!(matches!(err, ProbeError::Refused { .. }), "{err:?}");
        let err = http(port, "/", Duration::MAX, &ours).expect_err("closed port");
        assert!(matches!(err, ProbeError::Refused { .. }), "{err:?}");
    }

    #[test]
    fn http_200_is_ok_and_the_request_is_minimal() {
        let (port, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        assert_eq!(http(port, "/healthz?x=1", SHORT, &ours).expect("probe"), 200);
        let request = server.join().expect("server");
        assert!(request.starts_with("GET /healthz?x=1 HTTP/1.1\r\n"), "{request}");
        assert!(request.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")), "{request}");
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }

    #[test]
    fn http_answered_by_another_process_does_not_count() {
        // Answers every connection once it has a whole request head, until the tests end.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (heads_tx, heads) = mpsc::channel::<bool>();
        thread::spawn(move || {
            while let Ok((mut stream, _)) = listener.accept() {
                let heads_tx = heads_tx.clone();
                thread::spawn(move || {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 512];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let whole = request.windows(4).any(|w| w == b"\r\n\r\n");
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                    let _ = heads_tx.send(whole);
                });
            }
        });
        let err = http(port, "/", Duration::from_millis(500), &others).expect_err("not ours");
        assert!(matches!(err, ProbeError::NotServed { probe: "http", others: 1.., .. }), "{err:?}");
        // The server never got the end of a request head, so it never answered.
        thread::sleep(Duration::from_millis(100));
        let seen: Vec<bool> = heads.try_iter().collect();
        assert!(!seen.is_empty() && !seen.contains(&true), "{seen:?}");
    }

    #[test]
    fn http_waits_for_a_slow_accept_and_sends_the_head_to_servers_that_wait_for_data() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = thread::spawn(move || {
            thread::sleep(Duration::from_millis(400));
            // The oldest connection first, as the kernel queues them; it got the head (less its
            // final line end) while it waited, as a TCP_DEFER_ACCEPT server would need.
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
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
            String::from_utf8_lossy(&request).into_owned()
        });
        assert_eq!(http(port, "/slow", SHORT, &ours).expect("probe"), 204);
        assert!(server.join().expect("server").starts_with("GET /slow HTTP/1.1\r\n"));
    }

    #[test]
    fn http_302_is_ok() {
        let (port, server) = serve_once("HTTP/1.0 302 Found\r\nLocation: /elsewhere\r\n\r\n");
        assert_eq!(http(port, "/", SHORT, &ours).expect("probe"), 302);
        server.join().expect("server");
    }

    #[test]
    fn http_503_is_a_status_error() {
        let (port, server) = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = http(port, "/", SHORT, &ours).expect_err("503");
        assert!(matches!(err, ProbeError::Status(503)), "{err:?}");
        assert_eq!(err.to_string(), "http probe answered status 503, expected 2xx or 3xx");
        server.join().expect("server");
    }

    #[test]
    fn http_garbage_is_malformed() {
        let (port, server) = serve_once("SSH-2.0-OpenSSH\r\n");
        let err = http(port, "/", SHORT, &ours).expect_err("not http");
        assert!(matches!(err, ProbeError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("SSH-2.0-OpenSSH"), "{err}");
        server.join().expect("server");
    }

    #[test]
    fn http_closed_without_answer_is_malformed() {
        let (port, server) = serve_once("");
        let err = http(port, "/", SHORT, &ours).expect_err("no answer");
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
        let err = http(port, "/", timeout, &ours).expect_err("silent server");
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
            let err = http(1, path, SHORT, &ours).expect_err(path);
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
            crate::cannot_test("no IPv6 loopback");
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
    fn sockets_are_found_by_their_addresses_in_the_tables() {
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let remote: SocketAddr = "127.0.0.1:54321".parse().expect("addr");
        assert_eq!(find_socket(TCP_FIXTURE, local, remote), Some((1, 249800)));
        assert_eq!(find_socket(TCP_FIXTURE, remote, local), None);
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:54321".parse().expect("addr");
        assert_eq!(find_socket(TCP_FIXTURE, local, mapped), Some((1, 249800)));
        assert_eq!(parse_proc_addr("00000000000000000000000001000000:0050"), "[::1]:80".parse().ok());
        assert_eq!(parse_proc_addr("0000000000000000FFFF00000100007F:0050"), "127.0.0.1:80".parse().ok());
        assert_eq!(parse_proc_addr("0100007:0050"), None);
    }

    /// The inode of a descriptor of this process.
    fn inode_of(fd: &impl std::os::fd::AsRawFd) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("fd link");
        socket_inode(&link).expect("a socket")
    }

    #[test]
    fn sock_diag_and_the_tables_find_the_server_side_before_and_after_accept() {
        // IPv4, IPv6, and IPv4 to a dual-stack listener (an IPv6 socket, IPv4-mapped addresses).
        for (bind, to) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1"), ("[::]:0", "127.0.0.1")] {
            let Ok(listener) = TcpListener::bind(bind) else {
                crate::cannot_test(&format!("{bind}: no such loopback"));
                continue;
            };
            let port = listener.local_addr().expect("addr").port();
            let to: IpAddr = to.parse().expect("ip");
            let client = TcpStream::connect((to, port)).expect("connect");
            let (probe, server) = (client.local_addr().expect("local"), client.peer_addr().expect("peer"));
            let mut diag = Diag::open().expect("a NETLINK_SOCK_DIAG socket");
            // Queued, not accepted: no inode yet (a request socket for a moment, then established).
            let deadline = Instant::now() + SHORT;
            let queued = loop {
                match diag.lookup(server, probe).expect("sock_diag") {
                    Some((TCP_ESTABLISHED, inode)) => break inode,
                    _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                    other => panic!("not established: {other:?}"),
                }
            };
            assert_eq!(queued, 0);
            assert_eq!(proc_tables_lookup(server, probe), Some((TCP_ESTABLISHED, 0)));
            let (accepted, _) = listener.accept().expect("accept");
            let inode = inode_of(&accepted);
            assert_eq!(diag.lookup(server, probe).expect("sock_diag"), Some((TCP_ESTABLISHED, inode)));
            assert_eq!(proc_tables_lookup(server, probe), Some((TCP_ESTABLISHED, inode)));
            assert!(owned_socket_inodes(&[std::process::id()]).contains(&inode));
            // The client's own end, and an unknown peer, are not the server side.
            assert_eq!(diag.lookup(server, "127.0.0.1:1".parse().expect("addr")).expect("sock_diag"), None);
            drop(client);
        }
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
