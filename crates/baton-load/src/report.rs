//! The tally of a load run: every request counted once, failures by kind.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::Outcome;

/// How many error messages a report keeps as samples.
pub const ERROR_SAMPLES: usize = 8;

/// How the clients of a run use connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A new TCP connection per request, closed after its response (`Connection: close`).
    #[default]
    NewConnection,
    /// One persistent HTTP/1.1 connection per worker carrying many requests; a new one only
    /// after a failure or a `Connection: close` response.
    KeepAlive,
}

impl Mode {
    /// The name used in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewConnection => "new-connection",
            Self::KeepAlive => "keep-alive",
        }
    }
}

/// What a load run saw. `requests == ok + failed` and
/// `failed == refused + reset + timeout + wrong_status + other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// How the clients used connections (absent in reports of older versions: new-connection).
    #[serde(default)]
    pub mode: Mode,
    /// Requests made.
    pub requests: u64,
    /// Requests answered with status 200.
    pub ok: u64,
    /// Requests that failed, of any kind below.
    pub failed: u64,
    /// Connection refused.
    pub refused: u64,
    /// Connection reset, broken pipe, or closed before a full response.
    pub reset: u64,
    /// Connect or response took longer than the timeout.
    pub timeout: u64,
    /// A full response with a status other than 200.
    pub wrong_status: u64,
    /// Any other failure; see `first_errors`.
    pub other: u64,
    /// Successful responses by their `X-Version` header (`"-"` when absent).
    pub by_version: BTreeMap<String, u64>,
    /// Wall-clock length of the run.
    pub elapsed_ms: u64,
    /// Requests per second over the run.
    pub rps: f64,
    /// The first few distinct error messages, each prefixed with its kind.
    pub first_errors: Vec<String>,
    /// TCP connections opened (in new-connection mode, one per request that got connected).
    #[serde(default)]
    pub connections: u64,
    /// Keep-alive mode: connections given up because a response said `Connection: close`
    /// (honoured, not failures).
    #[serde(default)]
    pub closed_by_server: u64,
}

impl LoadReport {
    /// Counts one request.
    pub fn record(&mut self, outcome: Outcome) {
        self.requests += 1;
        let (counter, message) = match outcome {
            Outcome::Ok(version) => {
                self.ok += 1;
                let version = version.unwrap_or_else(|| "-".to_owned());
                *self.by_version.entry(version).or_default() += 1;
                return;
            }
            Outcome::Refused(m) => (&mut self.refused, format!("refused: {m}")),
            Outcome::Reset(m) => (&mut self.reset, format!("reset: {m}")),
            Outcome::Timeout(m) => (&mut self.timeout, format!("timeout: {m}")),
            Outcome::WrongStatus(s) => (&mut self.wrong_status, format!("wrong_status: {s}")),
            Outcome::Other(m) => (&mut self.other, format!("other: {m}")),
        };
        *counter += 1;
        self.failed += 1;
        self.note_error(message);
    }

    /// Keeps `message` as a sample unless there are enough or it is already kept.
    pub fn note_error(&mut self, message: String) {
        if self.first_errors.len() < ERROR_SAMPLES && !self.first_errors.contains(&message) {
            self.first_errors.push(message);
        }
    }

    /// Adds the counts of `other` (one worker's share) to these.
    pub fn merge(&mut self, other: LoadReport) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.failed += other.failed;
        self.refused += other.refused;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.wrong_status += other.wrong_status;
        self.other += other.other;
        self.connections += other.connections;
        self.closed_by_server += other.closed_by_server;
        for (version, count) in other.by_version {
            *self.by_version.entry(version).or_default() += count;
        }
        for message in other.first_errors {
            self.note_error(message);
        }
    }

    /// Sets the run's length and rate.
    pub fn finish(&mut self, elapsed: Duration) {
        self.elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let secs = elapsed.as_secs_f64();
        self.rps = if secs > 0.0 { (self.requests as f64 / secs * 10.0).round() / 10.0 } else { 0.0 };
    }

    /// One line for people: rate, counts by kind and versions seen.
    pub fn summary(&self) -> String {
        let versions: Vec<String> =
            self.by_version.iter().map(|(version, count)| format!("{version}={count}")).collect();
        let closed = if self.mode == Mode::KeepAlive {
            format!(", {} closed by the server", self.closed_by_server)
        } else {
            String::new()
        };
        format!(
            "{} requests in {:.1} s ({} req/s, {}, {} connections{closed}): ok {} failed {} (refused {} reset {} \
             timeout {} wrong_status {} other {}); versions: {}",
            self.requests,
            self.elapsed_ms as f64 / 1000.0,
            self.rps,
            self.mode.as_str(),
            self.connections,
            self.ok,
            self.failed,
            self.refused,
            self.reset,
            self.timeout,
            self.wrong_status,
            self.other,
            if versions.is_empty() { "none".to_owned() } else { versions.join(" ") },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_merge() {
        let mut a = LoadReport::default();
        a.record(Outcome::Ok(Some("v1".to_owned())));
        a.record(Outcome::Ok(None));
        a.record(Outcome::WrongStatus(500));
        let mut b = LoadReport::default();
        b.record(Outcome::Ok(Some("v1".to_owned())));
        b.record(Outcome::Refused("x".to_owned()));
        b.record(Outcome::Refused("x".to_owned()));
        a.merge(b);
        assert_eq!((a.requests, a.ok, a.failed), (6, 3, 3));
        assert_eq!((a.refused, a.wrong_status), (2, 1));
        assert_eq!(a.by_version.get("v1"), Some(&2));
        assert_eq!(a.by_version.get("-"), Some(&1));
        assert_eq!(a.first_errors, ["wrong_status: 500", "refused: x"]);
        a.finish(Duration::from_secs(2));
        assert_eq!((a.elapsed_ms, a.rps), (2000, 3.0));
    }

    #[test]
    fn serde_round_trip() {
        let mut r = LoadReport::default();
        r.record(Outcome::Ok(Some("v2".to_owned())));
        r.record(Outcome::Timeout("slow".to_owned()));
        r.finish(Duration::from_millis(500));
        let json = serde_json::to_string(&r).unwrap_or_default();
        let back: LoadReport = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, r);
        assert!(json.contains("\"by_version\":{\"v2\":1}"), "{json}");
        assert!(json.contains("\"mode\":\"new-connection\""), "{json}");
        r.mode = Mode::KeepAlive;
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert!(json.contains("\"mode\":\"keep-alive\""), "{json}");
    }

    #[test]
    fn reports_without_the_newer_fields_still_read() {
        let old = r#"{"requests":1,"ok":1,"failed":0,"refused":0,"reset":0,"timeout":0,"wrong_status":0,
            "other":0,"by_version":{"v1":1},"elapsed_ms":5,"rps":200.0,"first_errors":[]}"#;
        let report: Result<LoadReport, _> = serde_json::from_str(old);
        assert!(report.as_ref().is_ok_and(|r| r.mode == Mode::NewConnection && r.ok == 1), "{report:?}");
    }
}
