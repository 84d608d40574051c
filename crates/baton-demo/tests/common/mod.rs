//! Helpers shared by the `baton-demo` tests: start the binary, talk HTTP, send signals.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for anything the demo should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1 (free when this returns; tests bind it right away).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A running `baton-demo`; killed with SIGKILL when dropped.
pub struct Demo {
    child: Child,
    pub port: u16,
    lines: Receiver<String>,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    /// Starts `baton-demo --port PORT --version VERSION ARGS...` with stderr captured.
    pub fn start(port: u16, version: &str, args: &[&str]) -> Demo {
        Self::start_with(port, version, args, |_| {})
    }

    /// Like [`Demo::start`], letting `setup` adjust the command (e.g. its environment).
    pub fn start_with(port: u16, version: &str, args: &[&str], setup: impl FnOnce(&mut Command)) -> Demo {
        let mut command = Command::new(env!("CARGO_BIN_EXE_baton-demo"));
        command
            .args(["--port", &port.to_string(), "--version", version])
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        setup(&mut command);
        Self::spawn_on(command, port)
    }

    /// Spawns `command` (a `baton-demo`, or a launcher that execs one) with stderr piped.
    pub fn spawn(command: Command) -> Demo {
        Self::spawn_on(command, 0)
    }

    fn spawn_on(mut command: Command, port: u16) -> Demo {
        let mut child = command.spawn().expect("spawn baton-demo");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_writer = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                log_writer.lock().expect("log").push(line.clone());
                let _ = tx.send(line);
            }
        });
        Demo { child, port, lines, log }
    }

    /// Starts an instance and waits until it logs that it listens.
    pub fn start_listening(port: u16, version: &str, args: &[&str]) -> Demo {
        let mut demo = Self::start(port, version, args);
        demo.wait_for_line("listening on");
        demo
    }

    /// Waits until a stderr line contains `needle`; panics after [`PATIENCE`].
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {needle:?} within {PATIENCE:?}"),
            }
        }
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().expect("log").iter().any(|l| l.contains(needle))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The exit status if the process has exited by now.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit; panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(Instant::now() < deadline, "baton-demo still running after {limit:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `GET path` on an open connection.
pub fn send_get(port: u16, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&addr(port), PATIENCE).expect("connect to baton-demo");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").expect("send");
    stream
}

/// Reads a whole `Connection: close` response.
pub fn read_reply(mut stream: TcpStream) -> std::io::Result<Reply> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other(format!("no response head in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    Ok(Reply { status, head: head.to_owned(), body: body.to_owned() })
}

/// `GET path` and its response.
pub fn get(port: u16, path: &str) -> Reply {
    read_reply(send_get(port, path)).expect("a response")
}
