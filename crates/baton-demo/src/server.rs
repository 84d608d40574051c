//! The accept loop, one thread per (kept-alive) connection, and the SIGTERM drain.
//!
//! The drain, in order (the contract the README's "What your service does on SIGTERM" asks of
//! every service):
//! 1. stop accepting; keep the stopped listener open for `--linger-ms`, then close it (a bound
//!    listener: its queued connections migrate to the new release's listener; a listener
//!    inherited from systemd: only this process's copy is closed, the socket stays with
//!    systemd and the next release);
//! 2. from then on, the next response on each kept-alive connection says `Connection: close`
//!    and the connection is closed after it, so its client opens a new connection (to the new
//!    release) for its next request;
//! 3. requests in flight are finished;
//! 4. a connection idle for the whole drain time (`--drain-ms`) is closed: a client that sends
//!    nothing for that long is not in the middle of anything;
//! 5. once no connection is left, exit 0.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::{self, Response};
use crate::signals::Flags;
use crate::{log, notify, routes};

/// The longest a client may take to send the rest of a request or receive the response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a kept-alive connection may stay idle before this server closes it, outside a
/// drain.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);

/// How often a connection waiting for its next request checks whether a drain began.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// How long a closing connection waits for its client to close too (so that no unread byte
/// turns the close into a reset that could destroy the last response).
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Stack of each connection thread: a request needs a few KiB.
const HANDLER_STACK: usize = 128 * 1024;

/// How an instance behaves once listening.
#[derive(Debug, Clone)]
pub struct Config {
    pub version: String,
    /// `/health` answers 503 once this long has passed since start.
    pub unhealthy_after: Option<Duration>,
    /// Sleep before answering `GET /`.
    pub work: Duration,
    /// How long the stopped listener stays open on shutdown.
    pub linger: Duration,
    /// How long a drain waits for an idle kept-alive connection's next request (answered with
    /// `Connection: close`) before closing it.
    pub drain: Duration,
    /// Fault: on shutdown, close kept-alive connections without `Connection: close` (idle ones
    /// at once, busy ones right after their response), as a server that does not drain.
    pub no_drain: bool,
    /// Whether to send STOPPING=1 to `$NOTIFY_SOCKET` on shutdown.
    pub notify: bool,
    /// Fault: never accept a connection (they stay queued in the kernel).
    pub never_accept: bool,
    /// The listener came from systemd (`LISTEN_FDS`): closing it only stops accepting.
    pub inherited: bool,
}

/// What the connection threads share.
#[derive(Debug)]
struct State {
    config: Config,
    started: Instant,
    in_flight: InFlight,
    /// When the drain began (the listener was closed), once it has.
    drain_started: OnceLock<Instant>,
}

impl State {
    fn healthy(&self) -> bool {
        self.config.unhealthy_after.is_none_or(|after| self.started.elapsed() < after)
    }

    fn draining(&self) -> bool {
        self.drain_started.get().is_some()
    }

    /// Whether an idle connection that has waited `idle` for its next request is closed now.
    fn close_idle(&self, idle: Duration) -> bool {
        match self.drain_started.get() {
            None => idle >= KEEP_ALIVE_IDLE,
            Some(_) if self.config.no_drain => true,
            // Every connection that sent a request since the drain began was closed after its
            // response: one still waiting has been idle for the whole drain.
            Some(at) => at.elapsed() >= self.config.drain,
        }
    }
}

/// Counts connections being handled, and lets the drain wait for none.
#[derive(Debug, Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    fn enter(state: &Arc<State>) -> InFlightGuard {
        *state.in_flight.lock() += 1;
        InFlightGuard(Arc::clone(state))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.count.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> usize {
        *self.lock()
    }

    fn wait_idle(&self) {
        let mut count = self.lock();
        while *count > 0 {
            count = self.idle.wait(count).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Marks one connection in flight until dropped (also when its thread could not start).
#[derive(Debug)]
struct InFlightGuard(Arc<State>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let in_flight = &self.0.in_flight;
        let mut count = in_flight.lock();
        *count -= 1;
        if *count == 0 {
            in_flight.idle.notify_all();
        }
    }
}

/// Serves `listener` until a shutdown signal, then drains; returns once no connection is left.
pub fn serve(listener: TcpListener, config: &Config, flags: &Flags) {
    let state = Arc::new(State {
        config: config.clone(),
        started: Instant::now(),
        in_flight: InFlight::default(),
        drain_started: OnceLock::new(),
    });
    let version = config.version.as_str();
    let mut unhealthy_logged = false;
    let mut last_error_log: Option<Instant> = None;

    while !flags.shutdown.load(Ordering::Relaxed) {
        flags.log_ignored(version);
        if !unhealthy_logged && !state.healthy() {
            unhealthy_logged = true;
            log!(version, "now unhealthy as asked (--unhealthy-after): /health answers 503");
        }
        if config.never_accept {
            thread::sleep(crate::listener::ACCEPT_POLL);
            continue;
        }
        match listener.accept() {
            Ok((stream, _peer)) => spawn_handler(stream, &state, &mut last_error_log),
            Err(err) if is_poll_timeout(&err) => {}
            Err(err) => {
                log_rate_limited(&mut last_error_log, version, &format!("accept: {err}"));
                if !matches!(err.kind(), io::ErrorKind::ConnectionAborted) {
                    // Out of descriptors or memory: give in-flight connections time to finish.
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    log!(
        version,
        "shutdown signal received: stopped accepting; listener stays open for {} ms \
         ({} connections open)",
        config.linger.as_millis(),
        state.in_flight.current()
    );
    if config.notify {
        if let Err(err) = notify::send("STOPPING=1\n") {
            log!(version, "warning: notifying systemd: {err}");
        }
    }
    thread::sleep(config.linger);
    drop(listener);
    let _ = state.drain_started.set(Instant::now());
    if config.inherited {
        log!(version, "closed this process's copy of the listener from systemd (the socket stays with systemd)");
    }
    if config.no_drain {
        log!(
            version,
            "listener closed; no drain as asked (--no-drain): closing kept-alive connections without \
             Connection: close; waiting for {} connections",
            state.in_flight.current()
        );
    } else {
        log!(
            version,
            "listener closed; draining: Connection: close on kept-alive connections, idle ones closed after \
             {} ms; waiting for {} connections",
            config.drain.as_millis(),
            state.in_flight.current()
        );
    }
    state.in_flight.wait_idle();
    log!(version, "drained; exiting");
}

/// Whether an accept error only means that no connection came within the poll interval.
fn is_poll_timeout(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

fn log_rate_limited(last: &mut Option<Instant>, version: &str, message: &str) {
    if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
        *last = Some(Instant::now());
        log!(version, "error: {message}");
    }
}

fn spawn_handler(stream: TcpStream, state: &Arc<State>, last_error_log: &mut Option<Instant>) {
    let guard = InFlight::enter(state);
    let spawned = thread::Builder::new().name("conn".to_owned()).stack_size(HANDLER_STACK).spawn(move || {
        handle(stream, &guard.0);
        drop(guard);
    });
    if let Err(err) = spawned {
        // The closure (stream and guard) is dropped: the connection closes, the count drops.
        let version = state.config.version.as_str();
        log_rate_limited(last_error_log, version, &format!("starting a thread: {err}"));
    }
}

/// What became of waiting for the next request on a connection.
enum Next {
    Request(http::Request),
    Malformed,
    /// The client closed, reading failed, or the connection was idle too long: close it.
    Done,
}

/// Answers request after request on `stream` until the client or the drain ends the connection.
fn handle(mut stream: TcpStream, state: &State) {
    let version = state.config.version.as_str();
    // Accepted sockets inherit the listener's short accept timeout; reads poll at IDLE_POLL so
    // an idle connection notices a drain.
    if stream.set_read_timeout(Some(IDLE_POLL)).is_err() || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err() {
        return;
    }
    let mut buf = Vec::with_capacity(512);
    loop {
        let (response, close) = match next_request(&mut stream, &mut buf, state) {
            Next::Request(req) => {
                if routes::does_work(&req) && !state.config.work.is_zero() {
                    thread::sleep(state.config.work);
                }
                let response = routes::respond(&req, version, state.healthy());
                // Read after the work: a drain that began meanwhile closes this connection.
                let close = !req.keep_alive || state.draining();
                if close && req.keep_alive && state.config.no_drain {
                    // The fault: the client is not told, its next request meets a closed socket.
                    let _ = stream.write_all(&response.to_bytes(version, req.method == "HEAD", false));
                    return;
                }
                (response.to_bytes(version, req.method == "HEAD", close), close)
            }
            Next::Malformed => (Response::new(400, "bad request\n").to_bytes(version, false, true), true),
            Next::Done => return,
        };
        // The client may be gone already; there is nobody to tell.
        if stream.write_all(&response).is_err() {
            return;
        }
        if close {
            close_gracefully(&mut stream);
            return;
        }
    }
}

/// Reads until `buf` holds a whole request head (bytes after it stay in `buf`).
fn next_request(stream: &mut TcpStream, buf: &mut Vec<u8>, state: &State) -> Next {
    let waiting_since = Instant::now();
    let mut chunk = [0u8; 2048];
    loop {
        match http::take_request(buf) {
            Ok(Some(req)) => return Next::Request(req),
            Ok(None) => {}
            Err(http::ReadError::Malformed) => return Next::Malformed,
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Next::Done,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                let waited = waiting_since.elapsed();
                let give_up = if buf.is_empty() { state.close_idle(waited) } else { waited >= IO_TIMEOUT };
                if give_up {
                    return Next::Done;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Done,
        }
    }
}

/// Sends FIN after the last response and waits (briefly) for the client's, reading whatever it
/// still sends, so that closing never resets the connection under the last response.
fn close_gracefully(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + CLOSE_GRACE;
    let mut sink = [0u8; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(drain: Duration, no_drain: bool) -> State {
        State {
            config: Config {
                version: "t".to_owned(),
                unhealthy_after: None,
                work: Duration::ZERO,
                linger: Duration::ZERO,
                drain,
                no_drain,
                notify: false,
                never_accept: false,
                inherited: false,
            },
            started: Instant::now(),
            in_flight: InFlight::default(),
            drain_started: OnceLock::new(),
        }
    }

    #[test]
    fn idle_connections_close_after_the_keep_alive_time_or_the_drain_time() {
        let s = state(Duration::from_millis(200), false);
        assert!(!s.close_idle(Duration::from_secs(5)));
        assert!(s.close_idle(KEEP_ALIVE_IDLE));
        let _ = s.drain_started.set(Instant::now());
        assert!(!s.close_idle(Duration::from_secs(5)), "the drain time counts from the drain's start");
        thread::sleep(Duration::from_millis(220));
        assert!(s.close_idle(Duration::from_millis(1)), "after the drain time every idle connection closes");

        let fault = state(Duration::from_secs(5), true);
        let _ = fault.drain_started.set(Instant::now());
        assert!(fault.close_idle(Duration::ZERO), "--no-drain closes idle connections at once");
    }
}
