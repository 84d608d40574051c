//! Read-ahead: a host read once per plan.
//!
//! Terraform reads at most `-parallelism` (10) resources at once, in no order that keeps a
//! host's resources together: with 20 hosts, the reads in flight at one time rarely share a
//! host, so [`super::batch`] alone merges few of them. So the first command of a run to a host
//! (and unit directory) reads every baton service there (`baton observe --all NAME...`), and
//! keeps the answers it was not asked for here. A later read of one of those services takes its
//! answer from here, once (a second read of it goes to the host again), instead of a command
//! of its own: a plan of 5 services on each of 20 hosts runs 20 commands, not 100.
//!
//! What such a read returns is the host as it was at the start of that plan's first command
//! there: a moment within the same plan, as with any order Terraform might have read in. It is
//! never older than a change this provider made: a change on a host ([`Ahead::changed`]) drops
//! what was read there before and stops a read-ahead in flight from being kept; a new provider
//! configuration (every Terraform run configures the provider) drops everything
//! ([`Ahead::reset`]).

use std::collections::HashMap;
use std::sync::Mutex;

/// A host and unit directory.
pub type Key = (String, String);

/// When a read-ahead started: the configuration's epoch and the host's count of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    epoch: u64,
    changes: u64,
}

#[derive(Debug)]
struct Kept<T> {
    stamp: Stamp,
    answers: HashMap<String, T>,
}

#[derive(Debug)]
struct Inner<T> {
    epoch: u64,
    changes: HashMap<String, u64>,
    kept: HashMap<Key, Kept<T>>,
}

impl<T> Default for Inner<T> {
    fn default() -> Self {
        Inner { epoch: 0, changes: HashMap::new(), kept: HashMap::new() }
    }
}

impl<T> Inner<T> {
    fn stamp(&self, host: &str) -> Stamp {
        Stamp { epoch: self.epoch, changes: self.changes.get(host).copied().unwrap_or(0) }
    }
}

/// The answers read ahead, per host and unit directory; see the module doc.
#[derive(Debug)]
pub struct Ahead<T> {
    inner: Mutex<Inner<T>>,
}

impl<T> Default for Ahead<T> {
    fn default() -> Self {
        Ahead { inner: Mutex::default() }
    }
}

/// What [`Ahead::take`] found for the names of one command.
#[derive(Debug)]
pub struct Taken<T> {
    /// When the command starts (give it to [`Ahead::keep`]).
    pub stamp: Stamp,
    /// The names answered from what was read ahead.
    pub answered: HashMap<String, T>,
    /// The names the command must still read.
    pub rest: Vec<String>,
    /// Whether the command is the first to the host since its last change: it reads ahead.
    pub read_ahead: bool,
}

impl<T> Ahead<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a command of `names` to `key`: the names answered from a read-ahead (each answer
    /// given once), the others, and whether this command is to read ahead.
    pub fn take(&self, key: &Key, names: &[String]) -> Taken<T> {
        let mut inner = self.lock();
        let stamp = inner.stamp(&key.0);
        let mut answered = HashMap::new();
        let mut rest = Vec::new();
        let kept = inner.kept.get_mut(key).filter(|k| k.stamp == stamp);
        let read_ahead = kept.is_none();
        match kept {
            Some(kept) => {
                for name in names {
                    match kept.answers.remove(name) {
                        Some(answer) => {
                            answered.insert(name.clone(), answer);
                        }
                        None => rest.push(name.clone()),
                    }
                }
            }
            None => rest = names.to_vec(),
        }
        Taken { stamp, answered, rest, read_ahead }
    }

    /// After a command that read ahead: keeps the answers it was not asked for, unless the host
    /// changed (or the provider was configured again) since it started.
    pub fn keep(&self, key: &Key, stamp: Stamp, answers: HashMap<String, T>) {
        let mut inner = self.lock();
        if inner.stamp(&key.0) == stamp {
            inner.kept.insert(key.clone(), Kept { stamp, answers });
        }
    }

    /// A change on `host` starts or ended: nothing read there before is served any more.
    pub fn changed(&self, host: &str) {
        let mut inner = self.lock();
        *inner.changes.entry(host.to_owned()).or_default() += 1;
        inner.kept.retain(|(h, _), _| h != host);
    }

    /// A new configuration (a new Terraform run): nothing read before is served any more.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.kept.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str) -> Key {
        (host.to_owned(), "/etc/systemd/system".to_owned())
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    fn answers(n: &[&str]) -> HashMap<String, String> {
        n.iter().map(|s| ((*s).to_owned(), format!("seen {s}"))).collect()
    }

    #[test]
    fn the_first_command_reads_ahead_and_later_reads_are_answered_once() {
        let ahead = Ahead::<String>::default();
        let first = ahead.take(&key("h1"), &names(&["a"]));
        assert!(first.read_ahead);
        assert_eq!(first.rest, ["a"]);
        ahead.keep(&key("h1"), first.stamp, answers(&["b", "c"]));

        let later = ahead.take(&key("h1"), &names(&["b", "d"]));
        assert!(!later.read_ahead, "one read-ahead per host");
        assert_eq!(later.answered.get("b").map(String::as_str), Some("seen b"));
        assert_eq!(later.rest, ["d"], "a service the read-ahead did not see goes to the host");
        let again = ahead.take(&key("h1"), &names(&["b", "c"]));
        assert_eq!(again.rest, ["b"], "an answer is given once");
        assert!(again.answered.contains_key("c"));

        // Another host, or another unit directory of the same host, reads ahead on its own.
        assert!(ahead.take(&key("h2"), &names(&["b"])).read_ahead);
        assert!(ahead.take(&("h1".to_owned(), "/srv/units".to_owned()), &names(&["b"])).read_ahead);
    }

    #[test]
    fn a_change_on_the_host_drops_what_was_read_there() {
        let ahead = Ahead::<String>::default();
        let t = ahead.take(&key("h1"), &names(&["a"]));
        ahead.keep(&key("h1"), t.stamp, answers(&["b"]));
        let t2 = ahead.take(&key("h2"), &names(&["a"]));
        ahead.keep(&key("h2"), t2.stamp, answers(&["b"]));
        ahead.changed("h1");
        let after = ahead.take(&key("h1"), &names(&["b"]));
        assert!(after.answered.is_empty() && after.read_ahead, "{after:?}");
        assert!(ahead.take(&key("h2"), &names(&["b"])).answered.contains_key("b"), "other hosts keep theirs");
    }

    #[test]
    fn a_read_ahead_that_started_before_a_change_is_not_kept() {
        let ahead = Ahead::<String>::default();
        let t = ahead.take(&key("h1"), &names(&["a"]));
        ahead.changed("h1");
        ahead.keep(&key("h1"), t.stamp, answers(&["b"]));
        assert!(ahead.take(&key("h1"), &names(&["b"])).answered.is_empty());

        let t = ahead.take(&key("h1"), &names(&["a"]));
        ahead.reset();
        ahead.keep(&key("h1"), t.stamp, answers(&["b"]));
        assert!(ahead.take(&key("h1"), &names(&["b"])).answered.is_empty());
    }

    #[test]
    fn a_new_configuration_drops_everything() {
        let ahead = Ahead::<String>::default();
        let t = ahead.take(&key("h1"), &names(&["a"]));
        ahead.keep(&key("h1"), t.stamp, answers(&["b"]));
        ahead.reset();
        let after = ahead.take(&key("h1"), &names(&["b"]));
        assert!(after.answered.is_empty() && after.read_ahead);
    }
}
