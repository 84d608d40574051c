//! The real [`Systemd`]: systemd's manager driven over the system bus with zbus (blocking API).
//!
//! One [`DbusSystemd`] holds one bus connection and serves a whole run. It calls
//! `Manager.Subscribe()` lazily, once, before its first job (a read-only run never pays for it),
//! so that systemd emits job signals, and waits for jobs by subscribing to `JobRemoved`
//! *before* enqueueing them, so a job that finishes before the `StartUnit` reply arrives is
//! never missed; that stream is read all along, also while the enqueueing call waits for its
//! reply (an unread stream stalls the whole connection; see `run_job`).
//!
//! `Manager.Reload()` needs no waiting of its own: systemd keeps the call's message and sends the
//! reply only once the reload is complete (`bus_send_pending_reload_message`), so when
//! [`Systemd::reload`] returns every unit file has been re-read.
//!
//! Every call, making the connection included, waits for its answer at most as long as
//! [`CallTimeouts`] allows its kind (there is no connection-wide method timeout): a call systemd
//! does not answer in time fails with [`SystemdError::NoAnswer`], and a broken connection with
//! [`SystemdError::Transport`]. Asking again, on a fresh connection, is the caller's choice
//! (`connection::Resilient` does it for reads).

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;
use zbus::Connection;
use zbus::{export::futures_core::Stream, proxy};

use super::{CallTimeouts, JobResult, Systemd, SystemdError, UnitStatus};

/// How long [`Systemd::journal`] waits between reads for journald to catch up, and how often.
const JOURNAL_SETTLE: Duration = Duration::from_millis(100);
const JOURNAL_SETTLE_TRIES: usize = 5;

/// The D-Bus interface of every unit object.
const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";

/// The D-Bus interface of service unit objects.
const SERVICE_INTERFACE: &str = "org.freedesktop.systemd1.Service";

/// systemd's error name for a unit that is not loaded.
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// The address zbus uses for the system bus when `DBUS_SYSTEM_BUS_ADDRESS` is unset.
const DEFAULT_SYSTEM_BUS: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// One change `EnableUnitFiles`/`DisableUnitFiles` made: (type: `symlink` or `unlink`, file,
/// destination).
pub(crate) type UnitFileChange = (String, String, String);

/// `org.freedesktop.systemd1.Manager`, the methods and signal baton uses.
#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    /// Asks systemd to emit job and unit signals to this client.
    fn subscribe(&self) -> zbus::Result<()>;

    /// daemon-reload; replies once the reload is complete.
    fn reload(&self) -> zbus::Result<()>;

    /// The object path of a unit systemd has in memory; `NoSuchUnit` when it has not (which,
    /// unlike LoadUnit, does not read the unit from disk).
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// Enqueues a start job and returns its object path.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Enqueues a stop job and returns its object path.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Creates the `[Install]` symlinks: (carries install info, changes as (type, file, dest)).
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<UnitFileChange>)>;

    /// Removes the `[Install]` symlinks: changes as (type, file, dest).
    fn disable_unit_files(&self, files: &[&str], runtime: bool) -> zbus::Result<Vec<UnitFileChange>>;

    /// The enablement of a unit file, computed from disk now (the `UnitFileState` property of a
    /// loaded unit is cached and goes stale after EnableUnitFiles/DisableUnitFiles).
    fn get_unit_file_state(&self, file: &str) -> zbus::Result<String>;

    /// Unit files in systemd's search path whose names match `patterns` (and whose state is in
    /// `states`; empty: any), as (path, state). Reads the unit directories, loads nothing.
    fn list_unit_files_by_patterns(&self, states: &[&str], patterns: &[&str]) -> zbus::Result<Vec<(String, String)>>;

    /// Every unit file in systemd's search path, as (path, state): the fallback for systemd
    /// older than 230, which lacks `ListUnitFilesByPatterns`.
    fn list_unit_files(&self) -> zbus::Result<Vec<(String, String)>>;

    /// Forgets a unit's failed state.
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    /// The processes of a unit's cgroup as (cgroup path, PID, command line).
    fn get_unit_processes(&self, name: &str) -> zbus::Result<Vec<(String, u32, String)>>;

    /// A job finished: its id, object path, unit and result (`done`, `failed`, …).
    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: OwnedObjectPath, unit: String, result: String) -> zbus::Result<()>;
}

/// The `org.freedesktop.systemd1.Unit` properties baton reads: one `a{sv}` from
/// `Properties.GetAll`, every other property ignored.
#[derive(Debug, Default, zbus::zvariant::DeserializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", rename_all = "PascalCase")]
pub(crate) struct UnitProperties {
    /// loaded, not-found, bad-setting, error, masked.
    pub load_state: Option<String>,
    /// active, reloading, inactive, failed, activating, deactivating.
    pub active_state: Option<String>,
    /// The unit type's own state: running, exited, dead, …
    pub sub_state: Option<String>,
    /// enabled, disabled, static, … (empty when unknown).
    pub unit_file_state: Option<String>,
    /// The unit file changed on disk since systemd loaded it.
    pub need_daemon_reload: Option<bool>,
    /// When the unit last entered the active state, µs since the epoch (0 when never).
    pub active_enter_timestamp: Option<u64>,
    /// The unit file systemd loaded the unit from (empty when none).
    pub fragment_path: Option<String>,
}

/// The `org.freedesktop.systemd1.Service` properties baton reads: one `a{sv}` from
/// `Properties.GetAll`, every other property ignored.
#[derive(Debug, Default, zbus::zvariant::DeserializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", rename_all = "PascalCase")]
pub(crate) struct ServiceProperties {
    /// The main process (0 when none).
    #[zvariant(rename = "MainPID")]
    pub main_pid: Option<u32>,
    /// How often systemd restarted the service.
    pub n_restarts: Option<u32>,
    /// Exit status (or signal) of the main process.
    pub exec_main_status: Option<i32>,
}

/// `org.freedesktop.DBus.Properties` of a unit object: `GetAll` per interface, typed.
///
/// One `GetAll` per interface is the fewest round trips; zbus's property-caching proxies
/// (`#[zbus(property)]` getters with `CacheProperties::Yes`) also subscribe to
/// `PropertiesChanged` per proxy, which measured about 4× slower per status read.
#[proxy(interface = "org.freedesktop.DBus.Properties", default_service = "org.freedesktop.systemd1")]
trait UnitObject {
    /// All properties of `org.freedesktop.systemd1.Unit` (pass that interface name).
    #[zbus(name = "GetAll")]
    fn unit_properties(&self, interface: &str) -> zbus::Result<UnitProperties>;

    /// All properties of `org.freedesktop.systemd1.Service` (pass that interface name).
    #[zbus(name = "GetAll")]
    fn service_properties(&self, interface: &str) -> zbus::Result<ServiceProperties>;
}

/// systemd over D-Bus: one system-bus connection, reused for every call of a run.
#[derive(Debug)]
pub struct DbusSystemd {
    /// The manager, async: every call and signal stream is polled with a deadline.
    manager: ManagerProxy<'static>,
    /// How long each kind of call may wait for its answer.
    timeouts: CallTimeouts,
    /// `journalctl --root`: where the journal of this systemd lives, when not at `/`.
    journal_root: Option<PathBuf>,
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // for the tests against a sandboxed systemd
    address: String,
    /// Whether `Manager.Subscribe()` was called (once, before the first job).
    subscribed: std::sync::OnceLock<()>,
}

impl DbusSystemd {
    /// Waits for the answer to `call` (the method `method` about `arg`) at most `limit`.
    fn ask<T>(
        &self,
        method: &'static str,
        arg: &str,
        limit: Duration,
        call: impl Future<Output = zbus::Result<T>>,
    ) -> Result<zbus::Result<T>, SystemdError> {
        block_on_until(call, deadline_after(limit)).ok_or_else(|| SystemdError::NoAnswer {
            method,
            arg: arg.to_owned(),
            waited: limit,
        })
    }

    /// [`DbusSystemd::ask`] of a read, any error of which is the call's failure.
    fn read<T>(
        &self,
        method: &'static str,
        arg: &str,
        call: impl Future<Output = zbus::Result<T>>,
    ) -> Result<T, SystemdError> {
        self.ask(method, arg, self.timeouts.read, call)?.map_err(|e| call_err(method, arg, e))
    }

    /// The `org.freedesktop.systemd1.Unit` properties of `unit`, whose object is at `path`
    /// (from GetUnit), read fresh.
    fn unit_properties(&self, unit: &str, path: &OwnedObjectPath) -> Result<UnitProperties, SystemdError> {
        let object = self.unit_object(unit, path)?;
        self.read("GetAll", unit, object.unit_properties(UNIT_INTERFACE))
    }

    /// A proxy of the unit object at `path` (from GetUnit), reading its properties fresh.
    fn unit_object(&self, unit: &str, path: &OwnedObjectPath) -> Result<UnitObjectProxy<'static>, SystemdError> {
        let builder = UnitObjectProxy::builder(self.manager.inner().connection())
            .path(path.clone())
            .map_err(|e| call_err("GetAll", unit, e))?
            .cache_properties(CacheProperties::No);
        self.read("GetAll", unit, builder.build())
    }

    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else
    /// `unix:path=/var/run/dbus/system_bus_socket`), with the call limits of
    /// [`CallTimeouts::from_env`]. systemd's signals are subscribed to before the first job, so
    /// a read-only run costs no extra round trip.
    pub fn connect() -> Result<Self, SystemdError> {
        Self::connect_with(CallTimeouts::from_env()?)
    }

    /// [`DbusSystemd::connect`] with the given call limits.
    pub fn connect_with(timeouts: CallTimeouts) -> Result<Self, SystemdError> {
        let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| DEFAULT_SYSTEM_BUS.to_owned());
        let builder = zbus::connection::Builder::system()
            .map_err(|e| SystemdError::Connect { address: address.clone(), detail: e.to_string() })?;
        Self::finish(builder, address, timeouts)
    }

    /// Connects to the bus at `addr` (e.g. `unix:path=/proc/1234/root/run/dbus/system_bus_socket`
    /// for a sandboxed systemd), with the default call limits.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // for the tests against a sandboxed systemd
    pub fn connect_address(addr: &str) -> Result<Self, SystemdError> {
        Self::connect_address_with(addr, CallTimeouts::default())
    }

    /// [`DbusSystemd::connect_address`] with the given call limits.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // for the tests against a sandboxed systemd
    pub fn connect_address_with(addr: &str, timeouts: CallTimeouts) -> Result<Self, SystemdError> {
        let builder = zbus::connection::Builder::address(addr)
            .map_err(|e| SystemdError::Connect { address: addr.to_owned(), detail: e.to_string() })?;
        Self::finish(builder, addr.to_owned(), timeouts)
    }

    /// Makes the connection (authentication and `Hello` included) within `timeouts.read`.
    fn finish(
        builder: zbus::connection::Builder<'_>,
        address: String,
        timeouts: CallTimeouts,
    ) -> Result<Self, SystemdError> {
        let connect_err = |e: zbus::Error| SystemdError::Connect { address: address.clone(), detail: e.to_string() };
        let deadline = deadline_after(timeouts.read);
        let no_answer = || SystemdError::Connect {
            address: address.clone(),
            detail: format!("the bus did not answer within {}", super::seconds(timeouts.read)),
        };
        let conn: Connection = block_on_until(builder.build(), deadline).ok_or_else(no_answer)?.map_err(connect_err)?;
        let manager =
            block_on_until(ManagerProxy::builder(&conn).cache_properties(CacheProperties::No).build(), deadline)
                .ok_or_else(no_answer)?
                .map_err(connect_err)?;
        Ok(DbusSystemd { manager, timeouts, journal_root: None, address, subscribed: std::sync::OnceLock::new() })
    }

    /// The call limits of this connection.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub fn timeouts(&self) -> CallTimeouts {
        self.timeouts
    }

    /// Reads the journal below `root` (`journalctl --root`) instead of the host's: for a systemd
    /// whose filesystem is seen from outside, e.g. `/proc/<pid>/root` of a container.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // for the tests against a sandboxed systemd
    pub fn with_journal_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.journal_root = Some(root.into());
        self
    }

    /// The bus address this instance is connected to.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // for the tests against a sandboxed systemd
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Enqueues a job with `enqueue` and waits for its `JobRemoved`, at most `timeout` in all
    /// (the enqueueing call included). The calls before the job is enqueued (`Subscribe`, the
    /// match rule, the enqueueing call itself) must be answered within `timeouts.change` (or
    /// `timeout`, when shorter), else [`SystemdError::NoAnswer`] names the one not answered; a
    /// job enqueued that does not end in time is [`SystemdError::JobTimeout`].
    ///
    /// The `JobRemoved` stream is read all the time it exists, also while the enqueueing call
    /// waits for its reply: zbus's reader hands every incoming message to the streams that match
    /// it and, when the queue of one is full (64 messages), waits for room before it reads the
    /// next message off the socket. An unread stream during a burst of other jobs' signals (one
    /// transaction of a hundred jobs is enough) therefore stalled the reply of our own call behind
    /// them until the method timeout, and the job with it.
    fn run_job<'s, F>(
        &'s self,
        method: &'static str,
        unit: &str,
        timeout: Duration,
        enqueue: impl FnOnce(&'s ManagerProxy<'static>) -> F,
    ) -> Result<Option<JobResult>, SystemdError>
    where
        F: Future<Output = zbus::Result<OwnedObjectPath>>,
    {
        let started = Instant::now();
        // A timeout read from a unit on disk can be absurd (TimeoutStopSec=18446744073709551610):
        // wait at most a year rather than overflow.
        let deadline = deadline_after(timeout);
        let call_limit = self.timeouts.change.min(timeout);
        let call_deadline = deadline_after(call_limit);
        let no_answer =
            |m: &'static str| SystemdError::NoAnswer { method: m, arg: unit.to_owned(), waited: call_limit };
        let timed_out = || SystemdError::JobTimeout { method, unit: unit.to_owned(), waited: started.elapsed() };
        if self.subscribed.get().is_none() {
            block_on_until(self.manager.subscribe(), call_deadline)
                .ok_or_else(|| no_answer("Subscribe"))?
                .map_err(|e| call_err("Subscribe", unit, e))?;
            let _ = self.subscribed.set(());
        }
        // Subscribe first: the match rule is in place when this returns. Not filtered on the unit
        // name, since systemd names the unit by its id (`foo` → `foo.service`, aliases resolved);
        // the job path identifies the job.
        let mut removed = block_on_until(self.manager.receive_job_removed(), call_deadline)
            .ok_or_else(|| no_answer("AddMatch"))?
            .map_err(|e| call_err("AddMatch", unit, e))?;
        let mut enqueued = std::pin::pin!(enqueue(&self.manager));
        // The job's path once the enqueueing call answered; until then, the jobs that ended
        // meanwhile (ours may be among them: a job can end before the reply is read).
        let job: std::cell::Cell<Option<OwnedObjectPath>> = std::cell::Cell::new(None);
        let answered = std::cell::Cell::new(false);
        let mut ended: Vec<(OwnedObjectPath, JobResult)> = Vec::new();
        let wait = std::future::poll_fn(|cx| {
            let ours = job.take();
            let outcome = loop {
                match std::pin::Pin::new(&mut removed).poll_next(cx) {
                    Poll::Pending => break None,
                    Poll::Ready(None) => break Some(Poll::Ready(Err(None))),
                    Poll::Ready(Some(signal)) => {
                        let Ok(args) = signal.args() else { continue };
                        let result = JobResult::from_str_result(&args.result);
                        match &ours {
                            Some(ours) if *ours == args.job => break Some(Poll::Ready(Ok(Some(result)))),
                            Some(_) => {}
                            None => ended.push((args.job.clone(), result)),
                        }
                    }
                }
            };
            job.set(ours);
            if let Some(outcome) = outcome {
                return outcome;
            }
            if !answered.get() {
                match enqueued.as_mut().poll(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Err(e)) if is_no_such_unit(&e) => return Poll::Ready(Ok(None)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Some(e))),
                    Poll::Ready(Ok(path)) => {
                        answered.set(true);
                        if let Some((_, result)) = ended.iter().find(|(ended, _)| *ended == path) {
                            return Poll::Ready(Ok(Some(result.clone())));
                        }
                        ended = Vec::new();
                        job.set(Some(path));
                    }
                }
            }
            Poll::Pending
        });
        let mut wait = std::pin::pin!(wait);
        // First until the enqueueing call must have answered, then until the job must have ended.
        let outcome = match block_on_until(wait.as_mut(), call_deadline) {
            Some(outcome) => Some(outcome),
            None if !answered.get() => return Err(no_answer(method)),
            None => block_on_until(wait.as_mut(), deadline),
        };
        match outcome {
            Some(Ok(result)) => Ok(result),
            Some(Err(Some(e))) => Err(call_err(method, unit, e)),
            Some(Err(None)) => Err(SystemdError::Transport {
                method,
                arg: unit.to_owned(),
                detail: "the bus connection closed while waiting for the job".to_owned(),
            }),
            None => Err(timed_out()),
        }
    }
}

impl Systemd for DbusSystemd {
    fn reload(&self) -> Result<(), SystemdError> {
        self.ask("Reload", "", self.timeouts.reload, self.manager.reload())?.map_err(|e| call_err("Reload", "", e))
    }

    fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        // GetUnit, not LoadUnit: a unit systemd does not hold in memory is inactive, and loading
        // it would read it from disk (milliseconds per unit) only to learn that.
        let path = match self.ask("GetUnit", unit, self.timeouts.read, self.manager.get_unit(unit))? {
            Ok(path) => path,
            Err(e) if is_no_such_unit(&e) => {
                let unit_file_state = self.file_state(unit)?.unwrap_or_default();
                return Ok(UnitStatus {
                    load_state: super::NOT_LOADED.to_owned(),
                    active_state: "inactive".to_owned(),
                    sub_state: "dead".to_owned(),
                    unit_file_state,
                    ..UnitStatus::default()
                });
            }
            Err(e) => return Err(call_err("GetUnit", unit, e)),
        };
        let object = self.unit_object(unit, &path)?;
        let u = self.read("GetAll", unit, object.unit_properties(UNIT_INTERFACE))?;
        let mut status = UnitStatus {
            load_state: u.load_state.unwrap_or_default(),
            active_state: u.active_state.unwrap_or_default(),
            sub_state: u.sub_state.unwrap_or_default(),
            unit_file_state: u.unit_file_state.unwrap_or_default(),
            need_daemon_reload: u.need_daemon_reload.unwrap_or_default(),
            active_enter_timestamp_us: u.active_enter_timestamp.unwrap_or_default(),
            ..UnitStatus::default()
        };
        // Other unit types have no Service interface: their service fields stay zero. A
        // not-found service still has one (all zeros), and a running service whose file was
        // removed still reports its MainPID.
        if unit.ends_with(".service") {
            let s = self.read("GetAll", unit, object.service_properties(SERVICE_INTERFACE))?;
            status.main_pid = s.main_pid.unwrap_or_default();
            status.n_restarts = s.n_restarts.unwrap_or_default();
            status.exec_main_status = s.exec_main_status.unwrap_or_default();
        }
        // A loaded unit's UnitFileState property is cached by systemd and stale after an
        // enable/disable without a reload; ask for the state on disk instead.
        if status.load_state == "loaded" {
            if let Some(state) = self.file_state(unit)? {
                status.unit_file_state = state;
            }
        }
        Ok(status)
    }

    fn unit_file_path(&self, unit: &str) -> Result<Option<PathBuf>, SystemdError> {
        match self.ask("GetUnit", unit, self.timeouts.read, self.manager.get_unit(unit))? {
            Ok(path) => {
                let u = self.unit_properties(unit, &path)?;
                if let Some(fragment) = u.fragment_path.filter(|p| !p.is_empty()) {
                    return Ok(Some(PathBuf::from(fragment)));
                }
                // Loaded without a file (e.g. not-found): a file added since may still be there.
            }
            Err(e) if is_no_such_unit(&e) => {}
            Err(e) => return Err(call_err("GetUnit", unit, e)),
        }
        let read = self.timeouts.read;
        let files = match self.ask(
            "ListUnitFilesByPatterns",
            unit,
            read,
            self.manager.list_unit_files_by_patterns(&[], &[unit]),
        )? {
            Ok(files) => files,
            Err(zbus::Error::MethodError(name, _, _)) if name.as_str() == UNKNOWN_METHOD => {
                self.read("ListUnitFiles", unit, self.manager.list_unit_files())?
            }
            Err(e) => return Err(call_err("ListUnitFilesByPatterns", unit, e)),
        };
        let by_name =
            files.into_iter().map(|(path, _)| PathBuf::from(path)).find(|p| p.file_name().is_some_and(|n| n == unit));
        Ok(by_name)
    }

    fn start(&self, unit: &str, timeout: Duration) -> Result<JobResult, SystemdError> {
        match self.run_job("StartUnit", unit, timeout, |m| m.start_unit(unit, "replace"))? {
            Some(result) => Ok(result),
            // StartUnit loads the unit itself; NoSuchUnit only comes for names it cannot load.
            None => Err(SystemdError::Call {
                method: "StartUnit",
                arg: unit.to_owned(),
                detail: format!("Unit {unit} not loaded."),
            }),
        }
    }

    fn stop(&self, unit: &str, timeout: Duration) -> Result<JobResult, SystemdError> {
        // A unit systemd does not know is as stopped as it gets: Done, like a stop job of an
        // inactive unit.
        Ok(self.run_job("StopUnit", unit, timeout, |m| m.stop_unit(unit, "replace"))?.unwrap_or(JobResult::Done))
    }

    fn enable(&self, units: &[String]) -> Result<bool, SystemdError> {
        let files: Vec<&str> = units.iter().map(String::as_str).collect();
        let arg = units.join(" ");
        let (_, changes) = self
            .ask("EnableUnitFiles", &arg, self.timeouts.change, self.manager.enable_unit_files(&files, false, true))?
            .map_err(|e| call_err("EnableUnitFiles", &arg, e))?;
        Ok(!changes.is_empty())
    }

    fn disable(&self, units: &[String]) -> Result<bool, SystemdError> {
        let files: Vec<&str> = units.iter().map(String::as_str).collect();
        let arg = units.join(" ");
        let changes = self
            .ask("DisableUnitFiles", &arg, self.timeouts.change, self.manager.disable_unit_files(&files, false))?
            .map_err(|e| call_err("DisableUnitFiles", &arg, e))?;
        Ok(!changes.is_empty())
    }

    fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
        match self.ask("ResetFailedUnit", unit, self.timeouts.change, self.manager.reset_failed_unit(unit))? {
            Ok(()) => Ok(()),
            Err(e) if is_no_such_unit(&e) => Ok(()),
            Err(e) => Err(call_err("ResetFailedUnit", unit, e)),
        }
    }

    fn unit_pids(&self, unit: &str) -> Result<Vec<u32>, SystemdError> {
        match self.ask("GetUnitProcesses", unit, self.timeouts.read, self.manager.get_unit_processes(unit))? {
            Ok(procs) => {
                let mut pids: Vec<u32> = procs.into_iter().map(|(_, pid, _)| pid).collect();
                pids.sort_unstable();
                pids.dedup();
                Ok(pids)
            }
            Err(e) if is_no_such_unit(&e) => Ok(Vec::new()),
            Err(e) => Err(call_err("GetUnitProcesses", unit, e)),
        }
    }

    fn journal(&self, unit: &str, lines: usize) -> Vec<String> {
        journal(self.journal_root.as_deref(), unit, lines)
    }
}

impl DbusSystemd {
    /// `GetUnitFileState`: the enablement on disk; None when systemd answered with an error
    /// (e.g. no such unit file).
    fn file_state(&self, unit: &str) -> Result<Option<String>, SystemdError> {
        Ok(self.ask("GetUnitFileState", unit, self.timeouts.read, self.manager.get_unit_file_state(unit))?.ok())
    }
}

/// The last `lines` lines of `unit`'s journal (below `root`, `journalctl --root`, when given),
/// oldest first; empty when journalctl cannot be run. Needs no bus connection.
pub(crate) fn journal(root: Option<&std::path::Path>, unit: &str, lines: usize) -> Vec<String> {
    if lines == 0 {
        return Vec::new();
    }
    // journald reads a service's output asynchronously, so what a unit printed just before
    // it failed can land a moment after systemd reported the failure: re-read until two
    // reads agree (this only runs on failure paths).
    let mut last = read_journal(root, unit, lines);
    for _ in 0..JOURNAL_SETTLE_TRIES {
        thread::sleep(JOURNAL_SETTLE);
        let next = read_journal(root, unit, lines);
        if next == last {
            break;
        }
        last = next;
    }
    last
}

/// `journalctl -u UNIT -n LINES -o cat`; empty when journalctl cannot be run.
fn read_journal(root: Option<&std::path::Path>, unit: &str, lines: usize) -> Vec<String> {
    let mut journalctl = Command::new("journalctl");
    if let Some(root) = root {
        journalctl.arg("--root").arg(root);
    }
    let output = journalctl
        .args(["--quiet", "--no-pager", "-o", "cat", "-n", &lines.to_string(), "-u", unit])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(out) => String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}

/// `limit` from now; a limit too large to add (a timeout read from a unit on disk can be
/// absurd: TimeoutStopSec=18446744073709551610) is cut to a year.
fn deadline_after(limit: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(limit.min(Duration::from_secs(365 * 86_400))).unwrap_or(now)
}

/// Whether systemd answered `NoSuchUnit` (the unit is not loaded).
/// The D-Bus error of a method the service does not have.
const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";

fn is_no_such_unit(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _) if name.as_str() == NO_SUCH_UNIT)
}

/// A failed call, carrying systemd's own message when systemd sent one; a failure of the
/// connection itself (no answer from systemd at all) is [`SystemdError::Transport`].
fn call_err(method: &'static str, arg: &str, e: zbus::Error) -> SystemdError {
    let arg = arg.to_owned();
    let detail = match e {
        zbus::Error::MethodError(_, Some(msg), _) if !msg.is_empty() => msg,
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        e @ (zbus::Error::InputOutput(_) | zbus::Error::Handshake(_) | zbus::Error::InvalidReply) => {
            return SystemdError::Transport { method, arg, detail: e.to_string() }
        }
        other => other.to_string(),
    };
    SystemdError::Call { method, arg, detail }
}

/// Wakes the thread blocked in [`block_on_until`].
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` on this thread until it completes (`Some`) or `deadline` passes (`None`): what
/// gives signal waits a deadline without a timer runtime.
fn block_on_until<F: Future>(fut: F, deadline: Instant) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}
