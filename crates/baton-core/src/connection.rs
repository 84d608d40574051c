//! The facade's system-bus connection: made on first use, shared by the reads of a process
//! (status, observation, adoption), dropped and made again after a failure. A change (`apply`)
//! connects on its own, as a CLI run always did.

use std::sync::{Arc, Mutex};

use crate::systemd::dbus::DbusSystemd;
use crate::systemd::{Systemd, SystemdError};

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

/// The connection the facade keeps.
pub(crate) struct Bus {
    source: Source,
    shared: Mutex<Option<SharedSystemd>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let connected = self.shared.lock().map(|c| c.is_some()).unwrap_or(false);
        f.debug_struct("Bus").field("source", &self.source).field("connected", &connected).finish()
    }
}

impl Bus {
    pub(crate) fn new(source: Source) -> Self {
        Bus { source, shared: Mutex::new(None) }
    }

    pub(crate) fn source(&self) -> &Source {
        &self.source
    }

    /// A connection of its own (a fixed systemd is always the same one).
    pub(crate) fn connect(&self) -> Result<SharedSystemd, SystemdError> {
        match &self.source {
            Source::System => Ok(Arc::new(DbusSystemd::connect()?)),
            Source::Fixed(sd) => Ok(sd.clone()),
        }
    }

    /// The shared connection, made now when there is none.
    fn shared(&self) -> Result<SharedSystemd, SystemdError> {
        let mut guard = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = self.connect()?;
        *guard = Some(c.clone());
        Ok(c)
    }

    fn reset(&self) {
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Runs the read `f` on the shared connection; after a failure, once more on a fresh one
    /// (systemd may have been re-executed, or the bus restarted, since the last call).
    pub(crate) fn read<T, E: From<SystemdError>>(&self, f: impl Fn(&dyn Systemd) -> Result<T, E>) -> Result<T, E> {
        let first = self.shared().map_err(E::from).and_then(|sd| f(&*sd));
        match first {
            Ok(v) => Ok(v),
            Err(_) => {
                self.reset();
                let sd = self.shared()?;
                f(&*sd)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::fake::FakeSystemd;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_failed_read_is_tried_once_more_and_then_reported() {
        let bus = Bus::new(Source::Fixed(Arc::new(FakeSystemd::new())));
        let calls = AtomicUsize::new(0);
        let failing = bus.read(|_| -> Result<(), SystemdError> {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(SystemdError::Connect { address: "test".into(), detail: "down".into() })
        });
        assert!(failing.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let calls = AtomicUsize::new(0);
        let flaky = bus.read(|_| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(SystemdError::Connect { address: "test".into(), detail: "down".into() })
            } else {
                Ok(7)
            }
        });
        assert_eq!(flaky.expect("second try"), 7);
    }
}
