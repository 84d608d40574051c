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

#[test]
fn calls_do_not_stall_under_a_storm_of_other_jobs_signals() {
    let sandbox = Sandbox::boot_sharing("dbus-stress", &baton_integration::shares())
        .unwrap_or_else(|e| panic!("booting the sandbox (root needed): {e:#}"));
    let units = format!("/proc/{}/root/etc/systemd/system", sandbox.pid());
    let write = |name: &str, text: String| {
        std::fs::write(format!("{units}/{name}"), text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    };
    write("victim.service", "[Service]\nType=exec\nExecStart=/bin/sleep 300\n".to_owned());
    // Targets run no process: the noise is nothing but jobs and their signals.
    write("noise@.target", "[Unit]\nDescription=noise %i\nPartOf=noise.target\n".to_owned());
    let wants: Vec<String> = (0..NOISE_UNITS).map(|i| format!("noise@{i}.target")).collect();
    write("noise.target", format!("[Unit]\nWants={}\n", wants.join(" ")));
    let address = format!("unix:path=/proc/{}/root/run/dbus/system_bus_socket", sandbox.pid());
    let sd = DbusSystemd::connect_address(&address).unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    sd.reload().expect("reload");

    // The noise, bounded in time: one dot per round of 2 × (NOISE_UNITS + 1) jobs.
    let noise = sandbox
        .command("sh")
        .arg("-c")
        .arg(format!(
            "end=$(( $(date +%s) + {} )); while [ $(date +%s) -lt $end ]; do \
             systemctl start noise.target && systemctl stop noise.target && printf .; done",
            STRESS.as_secs() + CALL_CEILING.as_secs()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the noise loop inside the sandbox");

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
    let noise = noise.wait_with_output().expect("wait for the noise loop");
    let rounds = noise.stdout.iter().filter(|&&b| b == b'.').count();

    took.sort();
    let at = |q: usize| took.get((took.len() * q / 100).min(took.len().saturating_sub(1))).copied().unwrap_or_default();
    eprintln!(
        "{} calls of the client beside {rounds} noise rounds ({} jobs each): median {:.1?}, p99 {:.1?}, max {:.1?}",
        took.len(),
        2 * (NOISE_UNITS + 1),
        at(50),
        at(99),
        took.last().copied().unwrap_or_default()
    );
    if let Some(failure) = failure {
        panic!("{failure}");
    }
    assert!(took.len() >= 5 * CALLS.len(), "only {} calls in {STRESS:?}: the client hardly ran", took.len());
    assert!(rounds >= 2, "the noise hardly ran ({rounds} rounds): {}", String::from_utf8_lossy(&noise.stderr));
}
