//! The accept loop, one thread per connection, and the SIGTERM drain.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::{self, ReadError, Response};
use crate::signals::Flags;
use crate::{log, notify, routes};

/// The longest a client may take to send its request or receive the response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Whether to send STOPPING=1 to `$NOTIFY_SOCKET` on shutdown.
    pub notify: bool,
    /// Fault: never accept a connection (they stay queued in the kernel).
    pub never_accept: bool,
}

/// What the connection threads share.
#[derive(Debug)]
struct State {
    config: Config,
    started: Instant,
    in_flight: InFlight,
}

impl State {
    fn healthy(&self) -> bool {
        self.config.unhealthy_after.is_none_or(|after| self.started.elapsed() < after)
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

/// Serves `listener` until a shutdown signal, then drains; returns once nothing is in flight.
pub fn serve(listener: TcpListener, config: &Config, flags: &Flags) {
    let state = Arc::new(State { config: config.clone(), started: Instant::now(), in_flight: InFlight::default() });
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
         ({} requests in flight)",
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
    log!(version, "listener closed; waiting for {} requests in flight", state.in_flight.current());
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

/// Reads one request from `stream`, answers it and closes the connection.
fn handle(mut stream: TcpStream, state: &State) {
    let version = state.config.version.as_str();
    // Accepted sockets inherit the listener's short accept timeout; give clients longer.
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err() || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err() {
        return;
    }
    let response = match http::read_request(&mut stream) {
        Ok(req) => {
            if routes::does_work(&req) && !state.config.work.is_zero() {
                thread::sleep(state.config.work);
            }
            let response = routes::respond(&req, version, state.healthy());
            response.to_bytes(version, req.method == "HEAD")
        }
        Err(ReadError::Malformed) => Response::new(400, "bad request\n").to_bytes(version, false),
        Err(ReadError::Closed | ReadError::Io) => return,
    };
    // The client may be gone already; there is nobody to tell.
    let _ = stream.write_all(&response);
}
