//! The facade's systemd: [`Resilient`], a connection made on first use that is dropped and made
//! again after a call systemd did not answer. A read systemd did not answer (in its time, see
//! `CallTimeouts`, or because the connection broke) is asked once more on a fresh connection; a
//! change (a job, enable, disable, daemon-reload) never is, since it may have been carried out,
//! but the next call gets a fresh connection. The reads of a process (status, observation,
//! adoption) share one; a change (`apply`) makes its own, as a CLI run always did.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::systemd::dbus::{self, DbusSystemd};
use crate::systemd::{JobResult, Systemd, SystemdError, UnitStatus};

/// A systemd the facade may share between threads.
pub(crate) type SharedSystemd = Arc<dyn Systemd + Send + Sync>;

/// Where the facade's systemd comes from.
#[derive(Clone)]
pub(crate) enum Source {
    /// The system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the default one).
    System,
    /// One given systemd, used for everything (the fake in tests).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Fixed(SharedSystemd),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::System => f.write_str("System"),
            Source::Fixed(_) => f.write_str("Fixed"),
        }
    }
}

/// Makes a connection.
type Connector = Box<dyn Fn() -> Result<SharedSystemd, SystemdError> + Send + Sync>;

/// A systemd whose connection is made again after a call went unanswered, and whose reads are
/// asked once more on the fresh connection.
pub(crate) struct Resilient {
    connect: Connector,
    current: Mutex<Option<SharedSystemd>>,
    /// What the run should hear about: reads that only a fresh connection got an answer to.
    notes: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Resilient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let connected = self.current.lock().map(|c| c.is_some()).unwrap_or(false);
        f.debug_struct("Resilient").field("connected", &connected).finish()
    }
}

impl Resilient {
    /// Over connections that `connect` makes.
    pub(crate) fn new(connect: impl Fn() -> Result<SharedSystemd, SystemdError> + Send + Sync + 'static) -> Self {
        Resilient { connect: Box::new(connect), current: Mutex::new(None), notes: Mutex::new(Vec::new()) }
    }

    /// Over `source`: the system bus, with the call limits of the environment, or the one
    /// systemd given.
    pub(crate) fn over(source: &Source) -> Self {
        match source {
            Source::System => Resilient::new(|| Ok(Arc::new(DbusSystemd::connect()?) as SharedSystemd)),
            Source::Fixed(sd) => {
                let sd = sd.clone();
                Resilient::new(move || Ok(sd.clone()))
            }
        }
    }

    /// Makes the connection now, unless there is one: a run learns at once that there is no bus.
    pub(crate) fn connected(self) -> Result<Self, SystemdError> {
        self.connection()?;
        Ok(self)
    }

    /// The connection, made now when there is none.
    fn connection(&self) -> Result<SharedSystemd, SystemdError> {
        let mut guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = (self.connect)()?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection: the next call makes a fresh one.
    fn drop_connection(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn note(&self, note: String) {
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).push(note);
    }

    /// A read: asked once more, on a fresh connection, when it went unanswered.
    fn read<T>(&self, f: impl Fn(&dyn Systemd) -> Result<T, SystemdError>) -> Result<T, SystemdError> {
        let first = match self.connection().and_then(|sd| f(&*sd)) {
            Err(e) if e.is_unanswered() => e,
            answered => return answered,
        };
        self.drop_connection();
        match self.connection().and_then(|sd| f(&*sd)) {
            Ok(v) => {
                self.note(format!("{}; a fresh connection got the answer", crate::result::error_chain(&first)));
                Ok(v)
            }
            Err(again) => {
                if again.is_unanswered() {
                    self.drop_connection();
                }
                // The first failure names the call and its wait; the second is the same call.
                Err(if again.is_unanswered() { first } else { again })
            }
        }
    }

    /// A change: never asked twice (it may have been carried out); after one that went
    /// unanswered, the next call makes a fresh connection.
    fn change<T>(&self, f: impl FnOnce(&dyn Systemd) -> Result<T, SystemdError>) -> Result<T, SystemdError> {
        let result = self.connection().and_then(|sd| f(&*sd));
        if matches!(&result, Err(e) if e.is_unanswered()) {
            self.drop_connection();
        }
        result
    }
}

impl Systemd for Resilient {
    fn reload(&self) -> Result<(), SystemdError> {
        self.change(|sd| sd.reload())
    }

    fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        self.read(|sd| sd.unit_status(unit))
    }

    fn unit_file_path(&self, unit: &str) -> Result<Option<std::path::PathBuf>, SystemdError> {
        self.read(|sd| sd.unit_file_path(unit))
    }

    fn start(&self, unit: &str, timeout: Duration) -> Result<JobResult, SystemdError> {
        self.change(|sd| sd.start(unit, timeout))
    }

    fn stop(&self, unit: &str, timeout: Duration) -> Result<JobResult, SystemdError> {
        self.change(|sd| sd.stop(unit, timeout))
    }

    fn enable(&self, units: &[String]) -> Result<bool, SystemdError> {
        self.change(|sd| sd.enable(units))
    }

    fn disable(&self, units: &[String]) -> Result<bool, SystemdError> {
        self.change(|sd| sd.disable(units))
    }

    fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
        self.change(|sd| sd.reset_failed(unit))
    }

    fn unit_pids(&self, unit: &str) -> Result<Vec<u32>, SystemdError> {
        self.read(|sd| sd.unit_pids(unit))
    }

    fn journal(&self, unit: &str, lines: usize) -> Vec<String> {
        // The journal needs no bus: read it even when no connection can be made now.
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match current {
            Some(sd) => sd.journal(unit, lines),
            None => dbus::journal(None, unit, lines),
        }
    }

    fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The connection the facade keeps for its reads.
pub(crate) struct Bus {
    source: Source,
    shared: Resilient,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("source", &self.source).field("shared", &self.shared).finish()
    }
}

impl Bus {
    pub(crate) fn new(source: Source) -> Self {
        Bus { shared: Resilient::over(&source), source }
    }

    pub(crate) fn source(&self) -> &Source {
        &self.source
    }

    /// Runs the read `f` on the shared connection; each of its calls that systemd does not
    /// answer is asked once more on a fresh connection (systemd may have been re-executed, or
    /// the bus restarted, since the last call).
    pub(crate) fn read<T, E>(&self, f: impl Fn(&dyn Systemd) -> Result<T, E>) -> Result<T, E> {
        let result = f(&self.shared);
        // Notes are for runs; a read reports only its result.
        let _ = self.shared.take_notes();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::fake::FakeSystemd;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A [`Resilient`] over `fake`, counting the connections it makes.
    fn over(fake: &Arc<FakeSystemd>) -> (Resilient, Arc<AtomicUsize>) {
        let connects = Arc::new(AtomicUsize::new(0));
        let (sd, n) = (fake.clone(), connects.clone());
        let r = Resilient::new(move || {
            n.fetch_add(1, Ordering::SeqCst);
            Ok(sd.clone() as SharedSystemd)
        });
        (r, connects)
    }

    const WAIT: Duration = Duration::from_secs(15);

    #[test]
    fn an_unanswered_read_is_asked_once_more_on_a_fresh_connection() {
        let fake = Arc::new(FakeSystemd::new());
        fake.set_running("app-v2.service", false);
        let (sd, connects) = over(&fake);
        fake.no_answer("GetUnitProcesses", 1, WAIT);
        let pids = sd.unit_pids("app-v2.service").expect("the second ask is answered");
        assert_eq!(pids.len(), 1);
        assert_eq!(connects.load(Ordering::SeqCst), 2, "the retry made a fresh connection");
        assert_eq!(fake.calls(), ["no answer GetUnitProcesses app-v2.service"]);
        let notes = sd.take_notes();
        assert_eq!(
            notes,
            ["systemd did not answer GetUnitProcesses for app-v2.service within 15 s; a fresh connection got the answer"]
        );
        assert!(sd.take_notes().is_empty(), "notes are handed out once");
        // The fresh connection is kept.
        sd.unit_status("app-v2.service").expect("status");
        assert_eq!(connects.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_read_unanswered_twice_fails_naming_the_call_and_the_wait() {
        let fake = Arc::new(FakeSystemd::new());
        let (sd, connects) = over(&fake);
        fake.no_answer("GetUnitProcesses", 2, WAIT);
        let err = sd.unit_pids("app-v2.service").expect_err("no answer twice");
        assert_eq!(err.to_string(), "systemd did not answer GetUnitProcesses for app-v2.service within 15 s");
        assert!(matches!(err, SystemdError::NoAnswer { method: "GetUnitProcesses", waited, .. } if waited == WAIT));
        assert_eq!(fake.calls().len(), 2, "asked twice, never more: {:?}", fake.calls());
        // The next call makes a fresh connection again.
        sd.unit_status("app-v2.service").expect("answered now");
        assert_eq!(connects.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn an_answered_error_is_not_asked_again() {
        let fake = Arc::new(FakeSystemd::new());
        let (sd, connects) = over(&fake);
        let asked = AtomicUsize::new(0);
        let err = sd
            .read(|_| -> Result<(), SystemdError> {
                asked.fetch_add(1, Ordering::SeqCst);
                Err(SystemdError::Call { method: "GetUnit", arg: "x".into(), detail: "Access denied".into() })
            })
            .expect_err("systemd said no");
        assert!(matches!(err, SystemdError::Call { .. }));
        assert_eq!((asked.load(Ordering::SeqCst), connects.load(Ordering::SeqCst)), (1, 1));
    }

    #[test]
    fn a_change_is_never_asked_twice_and_the_next_call_gets_a_fresh_connection() {
        for (method, call) in [
            ("StartUnit", &(|sd: &Resilient| sd.start("app-v2.service", WAIT).map(drop)) as &dyn Fn(&Resilient) -> _),
            ("StopUnit", &|sd: &Resilient| sd.stop("app-v2.service", WAIT).map(drop)),
            ("EnableUnitFiles", &|sd: &Resilient| sd.enable(&["app-v2.service".to_owned()]).map(drop)),
            ("DisableUnitFiles", &|sd: &Resilient| sd.disable(&["app-v2.service".to_owned()]).map(drop)),
            ("Reload", &|sd: &Resilient| sd.reload()),
            ("ResetFailedUnit", &|sd: &Resilient| sd.reset_failed("app-v2.service")),
        ] {
            let fake = Arc::new(FakeSystemd::new());
            let (sd, connects) = over(&fake);
            fake.no_answer(method, 1, WAIT);
            let err = call(&sd).expect_err("unanswered");
            assert!(err.to_string().starts_with(&format!("systemd did not answer {method}")), "{err}");
            assert_eq!(fake.calls().len(), 1, "{method} asked once: {:?}", fake.calls());
            assert!(!fake.is_active("app-v2.service"));
            assert_eq!(connects.load(Ordering::SeqCst), 1);
            sd.unit_status("app-v2.service").expect("next call");
            assert_eq!(connects.load(Ordering::SeqCst), 2, "{method}: the next call connects afresh");
        }
    }

    #[test]
    fn a_connection_that_cannot_be_made_is_tried_once_more_for_a_read() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let n = attempts.clone();
        let sd = Resilient::new(move || {
            n.fetch_add(1, Ordering::SeqCst);
            Err(SystemdError::Connect { address: "test".into(), detail: "down".into() })
        });
        assert!(matches!(sd.unit_status("x.service"), Err(SystemdError::Connect { .. })));
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert!(sd.start("x.service", WAIT).is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 3, "a change connects once");
        // The journal needs no connection.
        let _ = sd.journal("x.service", 0);
    }

    #[test]
    fn the_facade_reads_through_the_resilient_connection() {
        let fake = Arc::new(FakeSystemd::new());
        fake.set_running("app-v1.service", true);
        let bus = Bus::new(Source::Fixed(fake.clone()));
        fake.no_answer("GetUnit", 1, WAIT);
        let status = bus.read(|sd| sd.unit_status("app-v1.service")).expect("second ask answered");
        assert_eq!(status.active_state, "active");
        fake.no_answer("GetUnit", 2, WAIT);
        let err = bus.read(|sd| sd.unit_status("app-v1.service")).expect_err("unanswered twice");
        assert!(err.to_string().contains("did not answer GetUnit for app-v1.service within 15 s"), "{err}");
    }
}
