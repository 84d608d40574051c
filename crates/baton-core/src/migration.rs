//! The migration probe: proves by behaviour, in the current network namespace, that the kernel
//! moves a connection queued on a closing `SO_REUSEPORT` listener to another listener of its
//! group (`net.ipv4.tcp_migrate_req`), caches the answer once per boot and namespace, and reads
//! the kernel's own migration counters (TcpExt `TCPMigrateReqSuccess`/`TCPMigrateReqFailure`).
//!
//! Why a probe and not the sysctl: the knob can exist and do nothing (Linux 5.10.188 took the
//! sysctl but not the migration code), and a container may show a `/proc/sys` file that is not
//! the namespace's real value. The kernel reads the real per-namespace value when the listener
//! closes, so the only proof is a listener closing with a connection queued:
//!
//! 1. listener A (`SO_REUSEPORT`, 127.0.0.1, ephemeral port, backlog 4) gets a connection that
//!    is never accepted;
//! 2. listener B joins the same group (same address, port and user);
//! 3. A closes: with migration the kernel moves the connection to B, without it resets it;
//! 4. B must accept that very connection (its peer is the client's address, and a byte sent by
//!    the client arrives) within [`DEADLINE`].
//!
//! Meanwhile a thread blocked in `poll(2)` on B tells whether the migration woke B's waiters:
//! kernels without "tcp: call sk_data_ready() after listener migration" move the connection but
//! leave an event loop asleep until the next connection arrives ([`ProbeReport::wakes_waiters`]).

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use crate::migrate::{SYSCTL_NAME, SYSCTL_PATH};
use crate::safe_fs;

/// How long listener B may take to accept the migrated connection.
pub const DEADLINE: Duration = Duration::from_millis(200);

/// How long a waiter blocked on listener B may sleep after the migration before it counts as
/// never woken (a woken waiter returns within microseconds).
const WAKE_DEADLINE: Duration = Duration::from_millis(100);

/// The cache file's name in the cache directory (normally `/run/baton`, root's alone).
pub const CACHE_FILE: &str = "migration-probe";

/// Where the kernel names this boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// This thread's network namespace (`/proc/self` would be the thread-group leader's).
const NETNS_PATH: &str = "/proc/thread-self/ns/net";

/// The TCP counters of this thread's network namespace.
const NETSTAT_PATH: &str = "/proc/thread-self/net/netstat";

/// Whether connections queued on the old release's listener move to the new release: the
/// result's `migration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Migration {
    /// The probe passed: a queued connection moved to the other listener.
    Verified,
    /// The probe failed (or could not run): queued connections of a closing listener are reset.
    Unavailable,
    /// `migrate_requests: false`: baton neither turns the sysctl on nor probes.
    Off,
    /// Socket mode: one listening socket lives in systemd across releases; nothing to migrate.
    SharedSocket,
}

impl Migration {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Migration::Verified => "verified",
            Migration::Unavailable => "unavailable",
            Migration::Off => "off",
            Migration::SharedSocket => "shared-socket",
        }
    }
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kernel's count of migrations in a network namespace (TcpExt `TCPMigrateReqSuccess`,
/// `TCPMigrateReqFailure`), or the change of that count across a handover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationCounters {
    /// Connections (and connection requests) moved to another listener.
    pub success: u64,
    /// Migrations the kernel tried and could not do (the connection was reset).
    pub failure: u64,
}

impl MigrationCounters {
    /// The change from `self` (earlier) to `later` (a counter never goes back; saturating).
    pub fn delta(self, later: MigrationCounters) -> MigrationCounters {
        MigrationCounters {
            success: later.success.saturating_sub(self.success),
            failure: later.failure.saturating_sub(self.failure),
        }
    }
}

/// Reads the migration counters of the current thread's network namespace: `Ok(None)` when the
/// kernel does not count migrations (older than 5.14).
pub fn read_counters() -> io::Result<Option<MigrationCounters>> {
    let text = std::fs::read_to_string(NETSTAT_PATH)?;
    Ok(parse_netstat(&text))
}

/// The migration counters in the text of `/proc/net/netstat` (pairs of a header line and a
/// value line per group): `None` when `TcpExt` lacks either counter.
pub fn parse_netstat(text: &str) -> Option<MigrationCounters> {
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let values = lines.next()?;
        let (Some(("TcpExt:", names)), Some(("TcpExt:", values))) = (header.split_once(' '), values.split_once(' '))
        else {
            continue;
        };
        let mut success = None;
        let mut failure = None;
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            match name {
                "TCPMigrateReqSuccess" => success = value.parse().ok(),
                "TCPMigrateReqFailure" => failure = value.parse().ok(),
                _ => {}
            }
        }
        return Some(MigrationCounters { success: success?, failure: failure? });
    }
    None
}

/// What the sysctl file reads: `"0"`, `"1"`, or `"missing"` when the kernel has none. This is
/// what the file *shows*, which may not be what the kernel uses (see the module's doc).
pub fn knob() -> String {
    knob_at(Path::new(SYSCTL_PATH))
}

fn knob_at(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().chars().take(32).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => "missing".to_owned(),
        Err(e) => format!("unreadable ({e})"),
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// [`Migration::Verified`] or [`Migration::Unavailable`].
    pub migration: Migration,
    /// Why migration is unavailable, in words (`None` when verified).
    pub reason: Option<String>,
    /// What `net.ipv4.tcp_migrate_req` read when the probe ran (see [`knob`]).
    pub knob: String,
    /// Whether a thread blocked in `poll(2)` on the new listener woke up when the connection
    /// arrived by migration (`None` when nothing migrated). `false`: the kernel lacks the
    /// wake-up fix, and an event loop sleeps until the next connection arrives.
    pub wakes_waiters: Option<bool>,
    /// How long the probe took, in microseconds.
    pub probe_us: u64,
    /// Whether this report came from the cache (the probe ran earlier in this boot).
    #[serde(default)]
    pub cached: bool,
}

impl ProbeReport {
    /// The warning a handover adds when migration is unavailable (`None` when verified).
    pub fn warning(&self) -> Option<String> {
        let reason = self.reason.as_deref().unwrap_or("the probe failed");
        match self.migration {
            Migration::Verified => None,
            _ => Some(format!(
                "request migration is unavailable here ({reason}; {SYSCTL_NAME} reads {}): connections queued on \
                 the old release's listener when it closes will be reset; listen_mode \"socket\" keeps them (the \
                 listening socket stays in systemd across releases)",
                self.knob
            )),
        }
    }
}

/// Why the probe could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No usable IPv4 loopback in this network namespace.
    #[error(
        "cannot probe request migration: IPv4 loopback (127.0.0.1) is not usable in this network namespace \
         ({step}: {source}); bring it up (`ip link set lo up`)"
    )]
    NoLoopback {
        /// What failed (`bind`, `connect`).
        step: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// A socket call failed for another reason.
    #[error("cannot probe request migration: {step}: {source}")]
    Socket {
        /// What failed.
        step: &'static str,
        /// The cause.
        source: io::Error,
    },
}

fn sock_err(step: &'static str) -> impl FnOnce(io::Error) -> ProbeError {
    move |source| ProbeError::Socket { step, source }
}

/// Whether `e` says there is no usable IPv4 loopback.
fn no_loopback(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::ADDRNOTAVAIL | Errno::NETUNREACH | Errno::HOSTUNREACH | Errno::NETDOWN)
    )
}

/// A `SO_REUSEPORT` TCP listener on `addr` (port 0: ephemeral).
fn listener(addr: SocketAddrV4) -> Result<Socket, ProbeError> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(sock_err("socket"))?;
    sock.set_reuse_port(true).map_err(sock_err("setsockopt SO_REUSEPORT"))?;
    sock.bind(&addr.into()).map_err(|source| {
        if no_loopback(&source) {
            ProbeError::NoLoopback { step: "bind", source }
        } else {
            ProbeError::Socket { step: "bind", source }
        }
    })?;
    sock.listen(4).map_err(sock_err("listen"))?;
    Ok(sock)
}

/// Polls `fd` for `events` for at most `timeout`; true when ready.
fn wait_ready(fd: &Socket, events: PollFlags, timeout: Duration) -> Result<bool, ProbeError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let spec = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: 0, tv_nsec: 0 });
        let mut fds = [PollFd::new(fd, events)];
        match rustix::event::poll(&mut fds, Some(&spec)) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::INTR) if !left.is_zero() => continue,
            Err(Errno::INTR) => return Ok(false),
            Err(e) => return Err(ProbeError::Socket { step: "poll", source: e.into() }),
        }
    }
}

/// Runs the probe once in the current thread's network namespace (no cache). `Err` only when it
/// cannot run (no loopback, no sockets); a failed migration is an `Ok` report saying
/// [`Migration::Unavailable`] and why.
pub fn probe() -> Result<ProbeReport, ProbeError> {
    let t0 = Instant::now();
    let knob = knob();
    let loopback = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);

    // 1. A listens; a client's connection is queued on it, never accepted.
    let a = listener(loopback)?;
    let addr = a
        .local_addr()
        .map_err(sock_err("getsockname"))?
        .as_socket_ipv4()
        .ok_or_else(|| ProbeError::Socket { step: "getsockname", source: io::ErrorKind::InvalidData.into() })?;
    let client = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(sock_err("socket"))?;
    client.connect_timeout(&SocketAddr::V4(addr).into(), DEADLINE).map_err(|source| {
        if no_loopback(&source) {
            ProbeError::NoLoopback { step: "connect", source }
        } else {
            ProbeError::Socket { step: "connect", source }
        }
    })?;
    let client_addr = client.local_addr().map_err(sock_err("getsockname"))?.as_socket();
    // The handshake's last ACK may still be in flight: wait until A really holds the connection
    // in its accept queue (not a half-open request, which migrates differently).
    if !wait_ready(&a, PollFlags::IN, DEADLINE)? {
        return Err(ProbeError::Socket {
            step: "queue a connection on listener A",
            source: io::Error::new(io::ErrorKind::TimedOut, "the connection never reached the accept queue"),
        });
    }
    // The client's byte travels with the connection: B reading it proves it is the same one.
    (&client).write_all(b"m").map_err(sock_err("send"))?;

    // 2. B joins the group.
    let b = listener(addr)?;
    b.set_nonblocking(true).map_err(sock_err("set O_NONBLOCK"))?;

    // A waiter asleep on B, as an event loop would be.
    let waiter_fd = b.try_clone().map_err(sock_err("dup"))?;
    let waiter = std::thread::spawn(move || wait_ready(&waiter_fd, PollFlags::IN, WAKE_DEADLINE).unwrap_or(false));
    std::thread::sleep(Duration::from_millis(10));

    // 3. A closes: the kernel reads tcp_migrate_req of this namespace now.
    drop(a);

    // 4. B must hold the same connection before the deadline. Looked at without accepting
    // until the waiter has answered: an accept first would empty the queue under a late waiter.
    // A reset shows on the client at once: no need to wait out the deadline then.
    client.set_nonblocking(true).map_err(sock_err("set O_NONBLOCK"))?;
    let deadline = Instant::now() + DEADLINE;
    let mut queued = false;
    let mut fate = None;
    while !queued && Instant::now() < deadline {
        queued = wait_ready(&b, PollFlags::IN, Duration::ZERO)?;
        if !queued {
            let mut byte = [0u8; 1];
            match (&client).read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => fate = Some("was reset"),
                Ok(0) => fate = Some("was closed"),
                _ => {}
            }
            if fate.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Only a migration needs the waiter's answer; otherwise it ends on its own within
    // WAKE_DEADLINE, holding a duplicate of B's descriptor until then.
    let woke = queued && waiter.join().unwrap_or(false);
    let accepted = if queued {
        match b.accept() {
            Ok(accepted) => Some(accepted),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => return Err(ProbeError::Socket { step: "accept on listener B", source: e }),
        }
    } else {
        None
    };

    let (migration, reason, wakes_waiters) = match accepted {
        Some((conn, peer)) if peer.as_socket() == client_addr => {
            let mut byte = [0u8; 1];
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(DEADLINE));
            match (&conn).read(&mut byte) {
                Ok(1) if byte == *b"m" => (Migration::Verified, None, Some(woke)),
                other => (
                    Migration::Unavailable,
                    Some(format!("the connection listener B accepted lost the byte its client sent ({other:?})")),
                    None,
                ),
            }
        }
        Some((_, peer)) => (
            Migration::Unavailable,
            Some(format!(
                "listener B accepted a stranger's connection ({:?}) instead of the queued one",
                peer.as_socket()
            )),
            None,
        ),
        None => {
            let why = if knob == "missing" {
                format!("this kernel has no {SYSCTL_NAME}")
            } else if let Some(fate) = fate {
                format!("the connection queued on the closing listener {fate} instead of moving to another listener")
            } else {
                format!(
                    "the connection queued on the closing listener did not reach another listener within {} ms",
                    DEADLINE.as_millis()
                )
            };
            (Migration::Unavailable, Some(why), None)
        }
    };
    Ok(ProbeReport {
        migration,
        reason,
        knob,
        wakes_waiters,
        probe_us: u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
        cached: false,
    })
}

/// What identifies a probe's answer: this boot, this network namespace and what the sysctl
/// reads. A cached answer is used only when all three match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// The inode of the network namespace (`/proc/thread-self/ns/net`).
    pub netns: u64,
    /// What `net.ipv4.tcp_migrate_req` reads (see [`knob`]).
    pub knob: String,
}

impl CacheKey {
    /// The key of the current thread, now.
    pub fn current() -> io::Result<CacheKey> {
        let boot_id = std::fs::read_to_string(BOOT_ID_PATH)?.trim().to_owned();
        let netns = std::fs::metadata(NETNS_PATH)?.ino();
        Ok(CacheKey { boot_id, netns, knob: knob() })
    }
}

/// The cache file: the key and the report.
#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    key: CacheKey,
    report: ProbeReport,
}

/// Why the cache could not be used (the probe still runs; the handover says this as a warning).
#[derive(Debug, thiserror::Error)]
#[error("the migration probe's cache {path}: {problem}")]
pub struct CacheError {
    /// The cache file (or its directory).
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

/// The probe's answer for this boot and network namespace: from `cache_dir`/[`CACHE_FILE`] when
/// it holds one for the [`CacheKey`] of now, else from a fresh [`probe`], then written there.
/// `cache_dir` (normally `/run/baton`) is created `0700` and must be root's alone, as the lock
/// directory. A cache that cannot be read or written does not stop the probe: its problem comes
/// back beside the report.
pub fn probe_cached(cache_dir: &Path) -> Result<(ProbeReport, Option<CacheError>), ProbeError> {
    let path = cache_dir.join(CACHE_FILE);
    let cache_err = |problem: String| CacheError { path: path.display().to_string(), problem };
    let key = match CacheKey::current() {
        Ok(key) => key,
        Err(e) => return Ok((probe()?, Some(cache_err(format!("cannot tell this boot and namespace: {e}"))))),
    };
    let dir = match crate::lock::open_dir(cache_dir) {
        Ok(dir) => dir,
        Err(e) => return Ok((probe()?, Some(cache_err(e.to_string())))),
    };
    match read_cache(&dir, &key) {
        Ok(Some(mut report)) => {
            report.cached = true;
            return Ok((report, None));
        }
        Ok(None) => {}
        // Not a regular file: left alone, and this run goes without a cache.
        Err(problem) => return Ok((probe()?, Some(cache_err(problem)))),
    }
    let report = probe()?;
    let problem = write_cache(&dir, &key, &report).err().map(|e| cache_err(format!("cannot write it: {e}")));
    Ok((report, problem))
}

/// The cached report for `key`: `Ok(None)` when there is none or it is for another key (or
/// unreadable as JSON: it is replaced); `Err` when something other than a regular file is there.
fn read_cache(dir: &OwnedFd, key: &CacheKey) -> Result<Option<ProbeReport>, String> {
    match safe_fs::read_regular_at(dir, CACHE_FILE, 4096) {
        Ok(None) => Ok(None),
        Ok(Some((bytes, _))) => Ok(serde_json::from_slice::<CacheEntry>(&bytes)
            .ok()
            .filter(|entry| entry.key == *key)
            .map(|entry| entry.report)),
        Err(problem) => Err(format!("refusing it: {problem}")),
    }
}

/// Writes the cache atomically: an exclusive 0600 temp file, fsync, rename over the cache file.
fn write_cache(dir: &OwnedFd, key: &CacheKey, report: &ProbeReport) -> io::Result<()> {
    let entry = CacheEntry { key: key.clone(), report: ProbeReport { cached: false, ..report.clone() } };
    let text = serde_json::to_vec(&entry).map_err(io::Error::other)?;
    let (mut file, tmp) = safe_fs::create_exclusive(dir, ".migration-probe.", 0o600)?;
    let result = (|| {
        file.write_all(&text)?;
        file.sync_all()?;
        drop(file);
        rustix::fs::renameat(dir.as_fd(), tmp.as_str(), dir.as_fd(), CACHE_FILE)?;
        Ok::<(), io::Error>(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir.as_fd(), tmp.as_str(), rustix::fs::AtFlags::empty());
    }
    result
}

#[cfg(test)]
mod tests {
    //! The probe runs for real in the test's own network namespace, whatever its sysctl says
    //! (never written here); the sysctl's values are tried in private namespaces by
    //! `integration/tests/migration.rs`.

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const NETSTAT: &str =
        "TcpExt: SyncookiesSent SyncookiesRecv TCPMigrateReqSuccess TCPMigrateReqFailure TCPPLBRehash\n\
                           TcpExt: 0 0 7 2 0\n\
                           IpExt: InNoRoutes InTruncatedPkts\n\
                           IpExt: 0 0\n";

    #[test]
    fn counters_are_parsed_from_tcpext() {
        assert_eq!(parse_netstat(NETSTAT), Some(MigrationCounters { success: 7, failure: 2 }));
        // The group order does not matter.
        let swapped = "IpExt: InNoRoutes\nIpExt: 0\nTcpExt: TCPMigrateReqFailure TCPMigrateReqSuccess\nTcpExt: 5 9\n";
        assert_eq!(parse_netstat(swapped), Some(MigrationCounters { success: 9, failure: 5 }));
    }

    #[test]
    fn a_kernel_without_the_counters_has_none() {
        assert_eq!(parse_netstat("TcpExt: SyncookiesSent\nTcpExt: 0\n"), None);
        assert_eq!(parse_netstat("TcpExt: TCPMigrateReqSuccess\nTcpExt: x\n"), None);
        assert_eq!(parse_netstat(""), None);
        assert_eq!(parse_netstat("TcpExt: TCPMigrateReqSuccess TCPMigrateReqFailure\n"), None);
    }

    #[test]
    fn the_real_counters_are_readable() {
        // Linux 5.14+ (this machine runs 6.18) counts migrations per network namespace.
        let counters = read_counters().expect("read /proc/thread-self/net/netstat");
        assert!(counters.is_some(), "TcpExt lacks the migration counters");
    }

    #[test]
    fn delta_is_the_change() {
        let before = MigrationCounters { success: 3, failure: 1 };
        let after = MigrationCounters { success: 10, failure: 1 };
        assert_eq!(before.delta(after), MigrationCounters { success: 7, failure: 0 });
        assert_eq!(after.delta(before), MigrationCounters::default(), "saturating");
    }

    #[test]
    fn migration_spells_as_the_contract() {
        for (m, s) in [
            (Migration::Verified, "verified"),
            (Migration::Unavailable, "unavailable"),
            (Migration::Off, "off"),
            (Migration::SharedSocket, "shared-socket"),
        ] {
            assert_eq!(serde_json::to_value(m).expect("json"), serde_json::json!(s));
            assert_eq!(m.to_string(), s);
        }
    }

    #[test]
    fn knob_reads_what_the_file_shows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("knob");
        assert_eq!(knob_at(&path), "missing");
        std::fs::write(&path, "1\n").expect("write");
        assert_eq!(knob_at(&path), "1");
    }

    /// The probe in this namespace agrees with the knob: 1 → verified (this kernel migrates),
    /// anything else → unavailable with the reset named. The counters move with it.
    #[test]
    fn probe_in_this_namespace_matches_its_knob() {
        let before = read_counters().expect("counters").expect("kernel counts");
        let report = probe().expect("probe runs (IPv4 loopback is up here)");
        let after = read_counters().expect("counters").expect("kernel counts");
        eprintln!("{report:?}, counters {:?}", before.delta(after));
        assert!(report.probe_us < 2_000_000, "{report:?}");
        assert!(!report.cached);
        if report.knob == "1" {
            assert_eq!(report.migration, Migration::Verified, "{report:?}");
            assert_eq!(report.reason, None);
            assert!(report.wakes_waiters.is_some());
            assert!(before.delta(after).success >= 1, "the kernel counted the migration");
            assert_eq!(report.warning(), None);
        } else {
            assert_eq!(report.migration, Migration::Unavailable, "{report:?}");
            let reason = report.reason.clone().expect("a reason");
            assert!(reason.contains("was reset instead of moving to another listener"), "{reason}");
            let warning = report.warning().expect("a warning");
            assert!(warning.contains("will be reset") && warning.contains("listen_mode \"socket\""), "{warning}");
            assert!(warning.contains(&format!("{SYSCTL_NAME} reads {}", report.knob)), "{warning}");
        }
    }

    #[test]
    fn cache_key_names_this_boot_and_namespace() {
        let key = CacheKey::current().expect("key");
        assert_eq!(key.boot_id.len(), 36, "{key:?}");
        let link = std::fs::read_link("/proc/thread-self/ns/net").expect("readlink");
        assert_eq!(link.to_string_lossy(), format!("net:[{}]", key.netns));
        assert_eq!(key.knob, knob());
    }

    #[test]
    fn second_probe_comes_from_the_cache_until_the_key_changes() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("run/baton");
        let (first, problem) = probe_cached(&dir).expect("probe");
        assert!(problem.is_none(), "{problem:?}");
        assert!(!first.cached);
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "created root's alone");
        let file = std::fs::symlink_metadata(dir.join(CACHE_FILE)).expect("cache file");
        assert!(file.is_file());
        assert_eq!(file.permissions().mode() & 0o777, 0o600);

        let (second, problem) = probe_cached(&dir).expect("probe");
        assert!(problem.is_none(), "{problem:?}");
        assert!(second.cached, "{second:?}");
        assert_eq!(ProbeReport { cached: false, ..second.clone() }, first);

        // Another boot (or namespace, or knob value) is probed again.
        let mut entry: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(CACHE_FILE)).expect("read")).expect("json");
        entry["key"]["boot_id"] = "00000000-0000-0000-0000-000000000000".into();
        std::fs::write(dir.join(CACHE_FILE), entry.to_string()).expect("write");
        let (third, _) = probe_cached(&dir).expect("probe");
        assert!(!third.cached, "{third:?}");
        let entry: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(CACHE_FILE)).expect("read")).expect("json");
        assert_eq!(entry["key"]["boot_id"], CacheKey::current().expect("key").boot_id.as_str(), "rewritten");

        // Garbage is replaced.
        std::fs::write(dir.join(CACHE_FILE), "{not json").expect("write");
        assert!(!probe_cached(&dir).expect("probe").0.cached);
        assert!(probe_cached(&dir).expect("probe").0.cached);
    }

    #[test]
    fn a_cache_that_is_not_root_alone_is_refused_and_the_probe_still_answers() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("baton");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let (report, problem) = probe_cached(&dir).expect("probe");
        assert!(!report.cached);
        let problem = problem.expect("the unsafe directory is named").to_string();
        assert!(problem.contains("writable"), "{problem}");
        assert!(!dir.join(CACHE_FILE).exists(), "nothing written into a world-writable directory");

        // A symbolic link at the cache file's path is never followed.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let target = root.path().join("elsewhere");
        std::fs::write(&target, "keep").expect("write");
        std::os::unix::fs::symlink(&target, dir.join(CACHE_FILE)).expect("symlink");
        let (report, problem) = probe_cached(&dir).expect("probe");
        assert!(!report.cached);
        let problem = problem.expect("the link is named").to_string();
        assert!(problem.contains("symbolic link"), "{problem}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep", "the link's target is untouched");
    }
}
