//! Coalesces the reads of one host into one remote command.
//!
//! Terraform reads every resource on its own (`ReadResource`, up to `-parallelism` at once).
//! Over SSH each read is a new session on the host's connection, a remote shell and a `baton`
//! process with its own D-Bus connection: most of a read's cost, paid per resource. The
//! [`Batcher`] keeps one queue per key (a host and a unit directory): the first read of a key
//! starts a command for its name; every read that arrives while that command is in flight waits
//! and goes, with all the others queued by then, into the next command (`baton observe NAME1
//! NAME2 ...`). A command only ever answers reads queued before it started, so no read sees a
//! host older than itself: batching changes the cost, not what a read returns.
//!
//! Errors stay with their resource: a command that fails as a whole (the host cannot be
//! reached, the connection broke) fails every read it carried, with that error; a name the
//! command answers with a failure fails that read only; a name it does not answer at all is an
//! error for that read.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Most names in one command (a long command line is no problem for `sh`, but a bound keeps
/// one slow command from holding every read of a large host).
pub const MAX_BATCH: usize = 128;

/// What one command answered: per name, its result (a name missing is an error for it), or
/// one error for the whole command.
pub type Answers<R> = Result<HashMap<String, Result<R, String>>, String>;

/// The command of one batch: the names, distinct, in the order they were queued.
type Runner<R> = Arc<dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = Answers<R>> + Send>> + Send + Sync>;

type Waiter<R> = oneshot::Sender<Result<R, String>>;

struct Queue<R> {
    /// Reads not yet sent, in arrival order.
    pending: Vec<(String, Waiter<R>)>,
    /// Whether a command of this key is in flight (its driver sends the pending reads next).
    running: bool,
}

impl<R> Default for Queue<R> {
    fn default() -> Self {
        Queue { pending: Vec::new(), running: false }
    }
}

/// One queue of reads per key; see the module doc.
pub struct Batcher<K, R> {
    queues: Arc<Mutex<HashMap<K, Queue<R>>>>,
}

impl<K, R> Default for Batcher<K, R> {
    fn default() -> Self {
        Batcher { queues: Arc::default() }
    }
}

impl<K, R> std::fmt::Debug for Batcher<K, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<K, R> Batcher<K, R>
where
    K: Clone + Eq + Hash + Send + 'static,
    R: Clone + Send + 'static,
{
    /// The read of `name` under `key`: sent now when no command of `key` is in flight, else with
    /// the next one. `run` runs one command of names; the read that finds no command in flight
    /// gives the `run` of every command until its key's queue is empty (every read of a key
    /// gives an equivalent one: the same host connection and unit directory).
    pub async fn read<F, Fut>(&self, key: K, name: String, run: F) -> Result<R, String>
    where
        F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Answers<R>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            let q = queues.entry(key.clone()).or_default();
            q.pending.push((name, tx));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let runner: Runner<R> = Arc::new(move |names| Box::pin(run(names)));
            // The driver is a task of its own: a read whose caller gives up (a cancelled gRPC
            // call) must not strand the reads queued behind it.
            tokio::spawn(drive(self.queues.clone(), runner, key));
        }
        rx.await.map_err(|_| "the read was dropped before it was answered (the provider is stopping)".to_owned())?
    }
}

/// Sends the queued reads of `key`, one command at a time, until none is left.
async fn drive<K, R>(queues: Arc<Mutex<HashMap<K, Queue<R>>>>, runner: Runner<R>, key: K)
where
    K: Clone + Eq + Hash + Send + 'static,
    R: Clone + Send + 'static,
{
    // The reads Terraform starts together arrive a few microseconds apart: let them queue.
    tokio::task::yield_now().await;
    loop {
        let batch: Vec<(String, Waiter<R>)> = {
            let mut queues = queues.lock().unwrap_or_else(|e| e.into_inner());
            let Some(q) = queues.get_mut(&key) else { return };
            if q.pending.is_empty() {
                q.running = false;
                queues.remove(&key);
                return;
            }
            let n = distinct_prefix(&q.pending, MAX_BATCH);
            q.pending.drain(..n).collect()
        };
        let mut names: Vec<String> = Vec::new();
        for (name, _) in &batch {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let answers = runner(names).await;
        for (name, waiter) in batch {
            let answer = match &answers {
                Err(e) => Err(e.clone()),
                Ok(map) => map.get(&name).cloned().unwrap_or_else(|| Err(format!("no answer for {name}"))),
            };
            // A caller that gave up no longer listens: nothing to do.
            let _ = waiter.send(answer);
        }
    }
}

/// How many of the first pending reads go into one command: as many as hold at most `max`
/// distinct names.
fn distinct_prefix<T>(pending: &[(String, T)], max: usize) -> usize {
    let mut seen: Vec<&str> = Vec::new();
    for (i, (name, _)) in pending.iter().enumerate() {
        if !seen.contains(&name.as_str()) {
            if seen.len() == max {
                return i;
            }
            seen.push(name);
        }
    }
    pending.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    /// Every command's key and names, and a gate each command waits at.
    #[derive(Default)]
    struct Log {
        calls: Mutex<Vec<(String, Vec<String>)>>,
        started: AtomicUsize,
    }

    /// A command of `names` on `key`, logged, held at `gate`: host "down" fails as a whole,
    /// name "bad" fails alone, name "silent" gets no answer.
    async fn command(log: Arc<Log>, gate: Arc<Semaphore>, key: String, names: Vec<String>) -> Answers<String> {
        log.calls.lock().expect("log").push((key.clone(), names.clone()));
        log.started.fetch_add(1, Ordering::SeqCst);
        let _permit = gate.acquire().await.expect("gate");
        if key == "down" {
            return Err(format!("cannot connect to host {key}"));
        }
        Ok(names
            .into_iter()
            .filter(|n| n != "silent")
            .map(|n| {
                let answer = if n == "bad" { Err(format!("{n} failed on {key}")) } else { Ok(format!("{key}/{n}")) };
                (n, answer)
            })
            .collect())
    }

    struct Harness {
        batcher: Batcher<String, String>,
        log: Arc<Log>,
        gate: Arc<Semaphore>,
    }

    impl Harness {
        fn new(permits: usize) -> Arc<Harness> {
            Arc::new(Harness {
                batcher: Batcher::default(),
                log: Arc::default(),
                gate: Arc::new(Semaphore::new(permits)),
            })
        }

        async fn read(&self, key: &str, name: &str) -> Result<String, String> {
            let (log, gate, k) = (self.log.clone(), self.gate.clone(), key.to_owned());
            self.batcher
                .read(key.to_owned(), name.to_owned(), move |names| {
                    command(log.clone(), gate.clone(), k.clone(), names)
                })
                .await
        }
    }

    async fn until_started(log: &Log, n: usize) {
        for _ in 0..1000 {
            if log.started.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("{n} commands never started");
    }

    /// Reads queued while a command is in flight go together into the next one (a name queued
    /// twice is asked once); another key's reads do not wait for it.
    #[tokio::test]
    async fn reads_queued_during_a_command_share_the_next_one() {
        let h = Harness::new(0);
        let first = tokio::spawn({
            let h = h.clone();
            async move { h.read("h1", "a").await }
        });
        until_started(&h.log, 1).await;
        let later = all(&h, &[("h1", "b"), ("h1", "c"), ("h1", "b"), ("h1", "d")]);
        let other = tokio::spawn({
            let h = h.clone();
            async move { h.read("h2", "a").await }
        });
        // h2's command starts while h1's first one is still held at the gate.
        until_started(&h.log, 2).await;
        assert_eq!(h.log.calls.lock().expect("log").len(), 2, "h1's queued reads wait for its command");
        h.gate.add_permits(10);
        assert_eq!(first.await.expect("join"), Ok("h1/a".to_owned()));
        assert_eq!(later.await, ["h1/b", "h1/c", "h1/b", "h1/d"].map(|s| Ok(s.to_owned())));
        assert_eq!(other.await.expect("join"), Ok("h2/a".to_owned()));
        let mut calls = h.log.calls.lock().expect("log").clone();
        calls.sort();
        let call = |k: &str, names: &[&str]| (k.to_owned(), names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>());
        assert_eq!(calls, vec![call("h1", &["a"]), call("h1", &["b", "c", "d"]), call("h2", &["a"])]);
    }

    /// Reads started together go out in one command.
    #[tokio::test]
    async fn reads_started_together_go_in_one_command() {
        let h = Harness::new(100);
        let names: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
        let answers = all(&h, &names.iter().map(|n| ("h1", n.as_str())).collect::<Vec<_>>()).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(h.log.calls.lock().expect("log").len(), 1, "{:?}", h.log.calls.lock().expect("log"));
    }

    /// A failed name fails its own read; a name the command does not answer fails its own read;
    /// a command that fails as a whole fails every read it carried, and only those.
    #[tokio::test]
    async fn errors_stay_with_their_reads() {
        let h = Harness::new(100);
        let answers =
            all(&h, &[("h1", "ok"), ("h1", "bad"), ("h1", "silent"), ("down", "ok"), ("down", "other")]).await;
        assert_eq!(answers[0], Ok("h1/ok".to_owned()));
        assert_eq!(answers[1], Err("bad failed on h1".to_owned()));
        assert_eq!(answers[2], Err("no answer for silent".to_owned()));
        assert_eq!(answers[3], Err("cannot connect to host down".to_owned()));
        assert_eq!(answers[4], Err("cannot connect to host down".to_owned()));
        // The batcher forgets a key once its queue is empty: the next read starts a command.
        assert!(h.batcher.queues.lock().expect("queues").is_empty());
        assert_eq!(h.read("h1", "again").await, Ok("h1/again".to_owned()));
    }

    /// More distinct names than one command holds: the rest go in the next command.
    #[tokio::test]
    async fn a_long_queue_is_split() {
        let h = Harness::new(0);
        let names: Vec<String> = (0..MAX_BATCH + 5).map(|i| format!("s{i}")).collect();
        let reads = all(&h, &names.iter().map(|n| ("h1", n.as_str())).collect::<Vec<_>>());
        h.gate.add_permits(10);
        assert!(reads.await.iter().all(Result::is_ok));
        let sizes: Vec<usize> = h.log.calls.lock().expect("log").iter().map(|(_, n)| n.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), MAX_BATCH + 5, "{sizes:?}");
        assert!(sizes.iter().all(|n| *n <= MAX_BATCH), "{sizes:?}");
    }

    #[test]
    fn a_batch_holds_at_most_max_distinct_names() {
        let pending: Vec<(String, ())> = ["a", "b", "a", "c", "d"].iter().map(|s| ((*s).to_owned(), ())).collect();
        assert_eq!(distinct_prefix(&pending, 2), 3);
        assert_eq!(distinct_prefix(&pending, 3), 4);
        assert_eq!(distinct_prefix(&pending, 10), 5);
    }

    /// The reads `(key, name)`, started now, each in a task of its own; their answers in order.
    fn all(h: &Arc<Harness>, reads: &[(&str, &str)]) -> impl Future<Output = Vec<Result<String, String>>> {
        let handles: Vec<_> = reads
            .iter()
            .map(|(k, n)| {
                let (h, k, n) = (h.clone(), (*k).to_owned(), (*n).to_owned());
                tokio::spawn(async move { h.read(&k, &n).await })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for handle in handles {
                out.push(handle.await.expect("join"));
            }
            out
        }
    }
}
