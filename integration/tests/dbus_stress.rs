//! `DbusSystemd` under a storm of other jobs' signals, against a sandboxed real systemd: while a
//! noise loop inside starts and stops a target that pulls in 150 others (each a transaction of
//! 151 jobs, dispatched together, each job ending in a `JobRemoved` that systemd broadcasts to
//! every subscribed client), the client starts, reads, stops and resets a unit of its own over
//! and over, and no call may stall.
//!
//! The regression: zbus's reader hands each incoming message to the streams that match it and,
//! when one stream's queue is full (64), waits for room before it reads the next message. The
//! `JobRemoved` stream was not read while `StartUnit`/`StopUnit` waited for its reply, so a burst
//! of more than 64 other jobs' signals in that window stalled the reply behind them until the
//! method timeout (120 s): before the fix this test stalled within its first dozen calls.
//!
//! The second test is the readiness check's reads (`GetUnit`, `GetAll`, `GetUnitProcesses` of a
//! unit with a score of processes) in the same storm with both cores saturated by CPU hogs, the
//! conditions under which one `GetUnitProcesses` once waited for the whole 120 s method timeout:
//! every read must be answered, well within its own limit (15 s). One that is not is asked again
//! at once on a fresh connection, and the failure says whether that one was answered: a stall of
//! one connection (the client or the bus daemon's queue for it) or of systemd itself.
//!
//! Needs root (the sandbox does); fails, never skips, when it cannot boot.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use baton_core::testing::{DbusSystemd, JobResult, Systemd};
use baton_sandbox::Sandbox;

/// How long the client calls systemd.
const STRESS: Duration = Duration::from_secs(20);

/// The longest one call of the client may take, storm included: a correctness ceiling, not a
/// speed goal. Each takes milliseconds to a few hundred on a busy machine; a stalled one waited
/// for the method timeout (120 s).
const CALL_CEILING: Duration = Duration::from_secs(10);

/// The limit given to `start`/`stop` (longer than the ceiling, so a stall shows as a slow call
/// rather than as a timeout).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// Units `noise.target` pulls in.
const NOISE_UNITS: usize = 150;

/// The client's calls, in the order of one round.
const CALLS: [&str; 4] = ["start", "status", "stop", "reset-failed"];

/// A sandbox with `victim.service` (and `extra` units), the noise units, and a client connected
/// to its bus (default call limits) that has reloaded them.
fn boot(label: &str, extra: &[(&str, &str)]) -> (Sandbox, DbusSystemd, String) {
    let sandbox = Sandbox::boot_sharing(label, &baton_integration::shares())
        .unwrap_or_else(|e| panic!("booting the sandbox (root needed): {e:#}"));
    let units = format!("/proc/{}/root/etc/systemd/system", sandbox.pid());
    let write = |name: &str, text: String| {
        std::fs::write(format!("{units}/{name}"), text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    };
    write("victim.service", "[Service]\nType=exec\nExecStart=/bin/sleep 300\n".to_owned());
    for (name, text) in extra {
        write(name, (*text).to_owned());
    }
    // Targets run no process: the noise is nothing but jobs and their signals.
    write("noise@.target", "[Unit]\nDescription=noise %i\nPartOf=noise.target\n".to_owned());
    let wants: Vec<String> = (0..NOISE_UNITS).map(|i| format!("noise@{i}.target")).collect();
    write("noise.target", format!("[Unit]\nWants={}\n", wants.join(" ")));
    let address = format!("unix:path=/proc/{}/root/run/dbus/system_bus_socket", sandbox.pid());
    let sd = DbusSystemd::connect_address(&address).unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    sd.reload().expect("reload");
    (sandbox, sd, address)
}

/// The noise inside `sandbox` for `secs`: one dot per round of 2 × (NOISE_UNITS + 1) jobs.
fn noise(sandbox: &Sandbox, secs: u64) -> std::process::Child {
    sandbox
        .command("sh")
        .arg("-c")
        .arg(format!(
            "end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do \
             systemctl start noise.target && systemctl stop noise.target && printf .; done"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the noise loop inside the sandbox")
}

/// The noise rounds a finished noise loop made.
fn rounds(noise: std::process::Child) -> (usize, String) {
    let out = noise.wait_with_output().expect("wait for the noise loop");
    (out.stdout.iter().filter(|&&b| b == b'.').count(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Median, p99 and max of `took`.
fn spread(took: &mut [Duration]) -> String {
    took.sort();
    let at = |q: usize| took.get((took.len() * q / 100).min(took.len().saturating_sub(1))).copied().unwrap_or_default();
    format!("median {:.1?}, p99 {:.1?}, max {:.1?}", at(50), at(99), took.last().copied().unwrap_or_default())
}

#[test]
fn calls_do_not_stall_under_a_storm_of_other_jobs_signals() {
    let (sandbox, sd, _) = boot("dbus-stress", &[]);
    let noise = noise(&sandbox, STRESS.as_secs() + CALL_CEILING.as_secs());

    // The client, on a thread of its own: a stalled call must not hang the test.
    let (tx, rx) = mpsc::channel::<(&'static str, Duration, Result<JobResult, String>)>();
    let done = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(Mutex::new(""));
    let client = {
        let (done, in_flight) = (done.clone(), in_flight.clone());
        thread::spawn(move || {
            let unit = "victim.service";
            let until = Instant::now() + STRESS;
            while Instant::now() < until && !done.load(Ordering::Relaxed) {
                for what in CALLS {
                    *in_flight.lock().unwrap_or_else(|e| e.into_inner()) = what;
                    let t0 = Instant::now();
                    let result = match what {
                        "start" => sd.start(unit, JOB_TIMEOUT),
                        "stop" => sd.stop(unit, JOB_TIMEOUT),
                        "status" => sd.unit_status(unit).map(|_| JobResult::Done),
                        _ => sd.reset_failed(unit).map(|()| JobResult::Done),
                    };
                    if tx.send((what, t0.elapsed(), result.map_err(|e| e.to_string()))).is_err() {
                        return;
                    }
                }
            }
        })
    };

    let mut took: Vec<Duration> = Vec::new();
    let mut failure = None;
    loop {
        match rx.recv_timeout(CALL_CEILING) {
            Ok((what, t, result)) => {
                took.push(t);
                match result {
                    Ok(JobResult::Done) if t <= CALL_CEILING => {}
                    other => {
                        failure = Some(format!("{what} victim.service: {other:?} after {t:.2?}"));
                        break;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let what = *in_flight.lock().unwrap_or_else(|e| e.into_inner());
                failure = Some(format!("{what} victim.service stalled: no answer within {CALL_CEILING:?}"));
                break;
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    // A stalled client thread is left behind (it waits for the method timeout): not joined.
    if failure.is_none() {
        client.join().expect("the client thread panicked");
    }
    // Killing the sandbox ends the noise loop.
    sandbox.kill().expect("tear the sandbox down");
    let (rounds, noise_err) = rounds(noise);
    let calls = took.len();
    eprintln!(
        "{calls} calls of the client beside {rounds} noise rounds ({} jobs each): {}",
        2 * (NOISE_UNITS + 1),
        spread(&mut took)
    );
    if let Some(failure) = failure {
        panic!("{failure}");
    }
    assert!(calls >= 5 * CALLS.len(), "only {calls} calls in {STRESS:?}: the client hardly ran");
    assert!(rounds >= 2, "the noise hardly ran ({rounds} rounds): {noise_err}");
}

/// Processes `busy.service` runs: `GetUnitProcesses` reads the command line of each.
const BUSY_PROCESSES: usize = 20;

/// CPU hogs beside the storm: one per core of this machine (2).
const HOGS: usize = 2;

#[test]
fn readiness_reads_are_answered_in_a_storm_with_both_cores_saturated() {
    let busy = format!(
        "[Service]\nType=exec\nExecStart=/bin/sh -c 'for i in $(seq {BUSY_PROCESSES}); do sleep 300 & done; wait'\n"
    );
    let (sandbox, sd, address) = boot("dbus-reads", &[("busy.service", &busy)]);
    assert_eq!(sd.start("busy.service", JOB_TIMEOUT).expect("start busy.service"), JobResult::Done);
    let secs = STRESS.as_secs() + CALL_CEILING.as_secs();
    let noise = noise(&sandbox, secs);
    let hogs: Vec<_> = (0..HOGS)
        .map(|_| {
            sandbox
                .command("timeout")
                .args([&secs.to_string(), "sh", "-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn a CPU hog inside the sandbox")
        })
        .collect();

    // The reads of one readiness check, over and over, on a thread of its own. A read not
    // answered within its limit (15 s) is asked at once on a fresh connection, for the diagnosis.
    type Read = (&'static str, Duration, Result<(), String>);
    let (tx, rx) = mpsc::channel::<Read>();
    let client = thread::spawn(move || {
        let unit = "busy.service";
        let until = Instant::now() + STRESS;
        let mut sd = sd;
        while Instant::now() < until {
            for what in ["GetUnitProcesses", "status"] {
                let read = |sd: &DbusSystemd| match what {
                    "GetUnitProcesses" => sd.unit_pids(unit).map(|pids| pids.len()),
                    _ => sd.unit_status(unit).map(|st| st.main_pid as usize),
                };
                let t0 = Instant::now();
                let result = match read(&sd) {
                    Ok(n) if n > 0 => Ok(()),
                    Ok(_) => Err("answered, but with nothing".to_owned()),
                    Err(e) => {
                        let first = e.to_string();
                        let t1 = Instant::now();
                        let again = DbusSystemd::connect_address(&address).and_then(|fresh| {
                            let answer = read(&fresh);
                            sd = fresh;
                            answer
                        });
                        Err(match again {
                            Ok(_) => format!("{first}; a fresh connection got the answer in {:.1?}", t1.elapsed()),
                            Err(e) => format!("{first}; a fresh connection did not either: {e}"),
                        })
                    }
                };
                if tx.send((what, t0.elapsed(), result)).is_err() {
                    return;
                }
            }
        }
    });

    let mut took: Vec<Duration> = Vec::new();
    let mut failure = None;
    // Each read ends by itself within its limit, twice over when asked again.
    while let Ok((what, t, result)) = rx.recv_timeout(Duration::from_secs(60)) {
        took.push(t);
        if result.is_err() || t > CALL_CEILING {
            failure = Some(format!("{what} busy.service: {result:?} after {t:.2?}"));
            break;
        }
    }
    drop(rx);
    let _ = client.join();
    sandbox.kill().expect("tear the sandbox down");
    for mut hog in hogs {
        let _ = hog.kill();
        let _ = hog.wait();
    }
    let (rounds, noise_err) = rounds(noise);
    let reads = took.len();
    eprintln!("{reads} reads beside {rounds} noise rounds and {HOGS} CPU hogs: {}", spread(&mut took));
    if let Some(failure) = failure {
        panic!("{failure}");
    }
    assert!(reads >= 10, "only {reads} reads in {STRESS:?}: the client hardly ran");
    assert!(rounds >= 1, "the noise hardly ran ({rounds} rounds): {noise_err}");
}
