//! Remote hosts: a `baton_service` with `host` set is managed over SSH by running the `baton`
//! CLI on that host, with the spec as JSON on stdin and the JSON result read back.
//!
//! * [`ssh`]: the provider's `ssh` settings and one multiplexed connection per host (the system
//!   `ssh` as a ControlMaster, through the `openssh` crate), shared by every resource of a run;
//! * [`install`]: `baton` made present on the host at the provider's own version (uploaded,
//!   checksum-verified and renamed into place), or the operator's preinstalled one.
//!
//! Reads (refresh, plan, import) run only `baton observe` and `baton adopt`, which read unit
//! files and systemd and change nothing: no lock, no daemon-reload, no write. The reads of one
//! host that Terraform makes at the same time share one `baton observe NAME...` ([`batch`]),
//! and the first of a run reads every service of the host for the reads to come ([`ahead`]). Changes run
//! `baton apply -`; secrets travel only inside the spec on stdin, never on a command line.
//! A host that cannot be reached fails the resources on it, each error naming the host; the
//! failure is kept for the run, so the other hosts' resources go on without waiting for it again.

pub mod ahead;
pub mod batch;
pub mod install;
pub mod ssh;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use baton_core::spec::RawSpec;
use baton_core::{Failure, Observed, RunResult};
use serde::Deserialize;
use tokio::sync::OnceCell;

pub use ssh::Settings;

/// One release as a read sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SeenRelease {
    /// The release.
    pub version: String,
    /// Its unit.
    pub unit: String,
    /// systemd's `ActiveState`.
    pub active_state: String,
    /// Whether it is enabled for boot.
    pub enabled: bool,
    /// Its unit file's text.
    #[serde(default)]
    pub unit_text: Option<String>,
    /// The SHA-256 of its secret environment file (None: it has none, or `secrets_read` is false).
    #[serde(default)]
    pub secret_sha256: Option<String>,
}

/// A service as a read sees it, locally or on a remote host (`baton observe`'s JSON).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Seen {
    /// The active release, if any.
    pub active_version: Option<String>,
    /// Every release on disk.
    pub releases: Vec<SeenRelease>,
    /// Whether the secret environment files could be read (so `secret_sha256` can be trusted).
    #[serde(default)]
    pub secrets_read: bool,
}

impl Seen {
    /// What the local facade observed.
    pub fn from_observed(o: &Observed) -> Seen {
        Seen {
            active_version: o.status.active_version.clone(),
            releases: o
                .status
                .releases
                .iter()
                .map(|r| SeenRelease {
                    version: r.version.clone(),
                    unit: r.unit.clone(),
                    active_state: r.active_state.clone(),
                    enabled: r.enabled,
                    unit_text: o.unit_text(&r.version).map(str::to_owned),
                    secret_sha256: o.secret_digest(&r.version).map(str::to_owned),
                })
                .collect(),
            secrets_read: o.secrets_readable(),
        }
    }

    /// The release of `version`, if on disk.
    pub fn release(&self, version: &str) -> Option<&SeenRelease> {
        self.releases.iter().find(|r| r.version == version)
    }

    /// The units of releases other than the active one that run (or are starting) beside it.
    pub fn others_running(&self) -> Vec<String> {
        self.releases
            .iter()
            .filter(|r| Some(&r.version) != self.active_version.as_ref())
            .filter(|r| matches!(r.active_state.as_str(), "active" | "activating" | "reloading"))
            .map(|r| r.unit.clone())
            .collect()
    }
}

/// A deployed service read back from its unit file (`baton adopt`'s JSON).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AdoptedView {
    /// The spec its unit file holds.
    pub spec: RawSpec,
    /// Whether the unit reads back exactly.
    pub exact: bool,
    /// Whether the release runs.
    pub active: bool,
    /// Whether it is enabled for boot.
    pub enabled: bool,
    /// The unit file.
    pub unit_path: String,
    /// The unit file's text.
    pub unit_text: String,
    /// The secret environment file the unit names, if any.
    #[serde(default)]
    pub secret_file: Option<String>,
}

impl AdoptedView {
    /// What the local facade adopted.
    pub fn from_adopted(a: baton_core::Adopted) -> AdoptedView {
        AdoptedView {
            spec: a.spec,
            exact: a.exact,
            active: a.active,
            enabled: a.enabled,
            unit_path: a.unit_path.display().to_string(),
            unit_text: a.unit_text,
            secret_file: a.secret_file.map(|p| p.display().to_string()),
        }
    }
}

/// One host's connection, made once per run (or the error that made it fail, kept for the run).
type HostCell = Arc<OnceCell<Result<Arc<ssh::Connected>, String>>>;

/// Every remote host of a run: the provider's settings, one connection per host, and the
/// queue of reads per host and unit directory.
#[derive(Debug, Default)]
pub struct Remotes {
    settings: Mutex<Option<Arc<Settings>>>,
    hosts: Mutex<HashMap<String, HostCell>>,
    observations: batch::Batcher<(String, String), Seen>,
    ahead: Arc<ahead::Ahead<Seen>>,
}

impl Remotes {
    /// Sets the provider's configuration (ConfigureProvider).
    pub fn configure(&self, settings: Settings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(settings));
        // A new Terraform run: what an earlier one read is not served to it.
        self.ahead.reset();
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()
    }

    /// The connection to `host`, with where `baton` is there: made by the first resource of the
    /// run that needs it, shared by the others. An error names the host.
    pub async fn host(&self, host: &str) -> Result<Arc<ssh::Connected>, String> {
        let cell = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            hosts.entry(host.to_owned()).or_default().clone()
        };
        let settings = self.settings();
        cell.get_or_init(|| async move {
            let conn = ssh::Connected::connect(&settings, host).await?;
            let conn = install::probe(conn, &settings).await?;
            Ok(Arc::new(conn))
        })
        .await
        .clone()
    }

    /// The connection to `host` for a read: `baton` must already be there (a read installs
    /// nothing). Err when the host cannot be reached or has no `baton` of this version yet.
    pub async fn for_read(&self, host: &str) -> Result<Arc<ssh::Connected>, String> {
        let conn = self.host(host).await?;
        if conn.present || matches!(conn.installed.get(), Some(Ok(()))) {
            Ok(conn)
        } else {
            Err(format!(
                "baton {} is not installed on host {host} (at {}); plan and refresh install nothing: the next \
                 apply that changes a resource there installs it",
                install::VERSION,
                conn.baton
            ))
        }
    }

    /// The connection to `host` for a change: `baton` installed first when missing (once per
    /// run and host).
    pub async fn for_change(&self, host: &str) -> Result<Arc<ssh::Connected>, String> {
        let conn = self.host(host).await?;
        if !conn.present {
            let settings = self.settings();
            conn.installed.get_or_init(|| install::install(&conn, &settings)).await.clone()?;
        }
        Ok(conn)
    }

    /// Closes every connection (the provider is stopping).
    pub async fn close(&self) {
        let cells: Vec<_> = self.hosts.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, c)| c).collect();
        for cell in cells {
            if let Some(Ok(conn)) = cell.get() {
                conn.close().await;
            }
        }
    }

    /// `baton observe` of the service `name` on `host`: in one command with the other reads of
    /// that host and unit directory queued meanwhile (see [`batch`]), or answered by the read
    /// ahead of the run's first command there (see [`ahead`]).
    pub async fn observe(&self, host: &str, name: &str, unit_dir: &str) -> Result<Seen, String> {
        let conn = self.for_read(host).await?;
        let key = (host.to_owned(), unit_dir.to_owned());
        let ahead = self.ahead.clone();
        let run = {
            let key = key.clone();
            move |names: Vec<String>| {
                let (conn, key, ahead) = (conn.clone(), key.clone(), ahead.clone());
                async move { Ok(observe_on(&conn, &key, &ahead, &names).await) }
            }
        };
        self.observations.read(key, name.to_owned(), run).await
    }

    /// `baton adopt` of the service `name` on `host`.
    pub async fn adopt(&self, host: &str, name: &str, unit_dir: &str) -> Result<AdoptedView, String> {
        let conn = self.for_read(host).await?;
        let out = conn.baton(&["adopt", "--unit-dir", unit_dir, name], None).await?;
        out.json(host, "baton adopt")
    }

    /// `baton apply -` of `raw` on `host` (the spec, secrets included, on stdin only).
    pub async fn apply(&self, host: &str, raw: &RawSpec) -> RunResult {
        // Nothing read on the host before (or during) the change is served after it.
        self.ahead.changed(host);
        let result = self.apply_now(host, raw).await;
        self.ahead.changed(host);
        result
    }

    async fn apply_now(&self, host: &str, raw: &RawSpec) -> RunResult {
        let conn = match self.for_change(host).await {
            Ok(c) => c,
            Err(e) => return RunResult::Failed(Failure::msg(e)),
        };
        let spec = match serde_json::to_vec(raw) {
            Ok(s) => s,
            Err(e) => return RunResult::Failed(Failure::msg(format!("cannot write the spec as JSON: {e}"))),
        };
        match conn.baton(&["--quiet", "apply", "-"], Some(&spec)).await {
            Ok(out) => out.run_result(host),
            Err(e) => RunResult::Failed(Failure::msg(e)),
        }
    }
}

/// One command of `baton observe` for `names` on the host of `conn`: the names the read-ahead
/// answered are not asked again; the first command to the host since its last change reads
/// every other service there too (`--all`) and keeps those answers for the reads to come.
async fn observe_on(
    conn: &ssh::Connected,
    key: &ahead::Key,
    ahead: &ahead::Ahead<Seen>,
    names: &[String],
) -> HashMap<String, Result<Seen, String>> {
    let taken = ahead.take(key, names);
    let mut answers: HashMap<String, Result<Seen, String>> =
        taken.answered.into_iter().map(|(name, seen)| (name, Ok(seen))).collect();
    if taken.rest.is_empty() {
        return answers;
    }
    let mut args = vec!["observe", "--unit-dir", key.1.as_str()];
    if taken.read_ahead {
        args.push("--all");
    }
    args.extend(taken.rest.iter().map(String::as_str));
    match conn.baton(&args, None).await {
        Ok(out) => {
            let (asked, others) = out.observations_with_others(&conn.host, &taken.rest, taken.read_ahead);
            // The Terraform log (TF_LOG_PROVIDER=DEBUG) shows how reads were batched.
            eprintln!(
                "baton: read {} services on host {} in one command ({} more read ahead)",
                taken.rest.len(),
                conn.host,
                others.len()
            );
            if taken.read_ahead {
                ahead.keep(key, taken.stamp, others);
            }
            answers.extend(asked);
        }
        Err(e) => answers.extend(taken.rest.into_iter().map(|name| (name, Err(e.clone())))),
    }
    answers
}

/// What a remote `baton` run printed.
#[derive(Debug)]
pub struct RemoteOutput {
    /// Its exit status (None: killed by a signal or the connection was lost).
    pub status: Option<i32>,
    /// Its stdout (the JSON).
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: String,
}

impl RemoteOutput {
    fn value(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.stdout).ok()
    }

    fn failure_text(&self, host: &str, what: &str) -> String {
        match self.value() {
            Some(v) if v.get("failed").and_then(serde_json::Value::as_bool) == Some(true) => {
                format!("{what} on host {host} failed: {}", v.get("msg").and_then(|m| m.as_str()).unwrap_or(""))
            }
            _ => format!(
                "{what} on host {host} failed (exit status {}): {}{}",
                self.status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
                self.stderr.trim(),
                String::from_utf8_lossy(&self.stdout).trim()
            ),
        }
    }

    /// The JSON answer of a read, or the remote failure naming the host.
    pub fn json<T: serde::de::DeserializeOwned>(&self, host: &str, what: &str) -> Result<T, String> {
        if self.status != Some(0) {
            return Err(self.failure_text(host, what));
        }
        serde_json::from_slice(&self.stdout).map_err(|e| {
            format!(
                "{what} on host {host} printed no JSON the provider understands ({e}): {}",
                String::from_utf8_lossy(&self.stdout).trim()
            )
        })
    }

    /// The answers of `baton observe NAMES...`: one JSON object per name, in order, each the
    /// service's releases or its failure; output that is not one object per name (the command
    /// failed as a whole) is that failure for every name. With `others` (`baton observe --all
    /// NAMES...`), the objects after the named ones are the other services of the host, returned
    /// apart by their `name` (one that could not be read is left out: its own read asks again).
    pub fn observations_with_others(
        &self,
        host: &str,
        names: &[String],
        others: bool,
    ) -> (HashMap<String, Result<Seen, String>>, HashMap<String, Seen>) {
        let values: Result<Vec<serde_json::Value>, _> =
            serde_json::Deserializer::from_slice(&self.stdout).into_iter().collect();
        let fits = |v: &Vec<serde_json::Value>| {
            (v.len() == names.len() || (others && v.len() > names.len())) && v.iter().all(serde_json::Value::is_object)
        };
        let mut values = match values {
            Ok(v) if fits(&v) => v,
            Ok(_) if self.status == Some(0) => {
                let e = format!(
                    "baton observe on host {host} printed no JSON object per service ({} asked): {}",
                    names.len(),
                    String::from_utf8_lossy(&self.stdout).trim()
                );
                return (names.iter().map(|n| (n.clone(), Err(e.clone()))).collect(), HashMap::new());
            }
            _ => {
                let e = self.failure_text(host, "baton observe");
                return (names.iter().map(|n| (n.clone(), Err(e.clone()))).collect(), HashMap::new());
            }
        };
        let rest = values.split_off(names.len());
        let asked = names.iter().zip(values).map(|(name, v)| (name.clone(), seen_of(host, name, v))).collect();
        let others = rest
            .into_iter()
            .filter_map(|v| {
                let name = v.get("name").and_then(serde_json::Value::as_str)?.to_owned();
                let seen = seen_of(host, &name, v).ok()?;
                Some((name, seen))
            })
            .collect();
        (asked, others)
    }

    /// The contract's result of `baton apply`; a failure's `msg` carries the host's name.
    pub fn run_result(&self, host: &str) -> RunResult {
        let Some(v) = self.value() else {
            return RunResult::Failed(Failure::msg(self.failure_text(host, "baton apply")));
        };
        if v.get("failed").and_then(serde_json::Value::as_bool) == Some(true) {
            return match serde_json::from_value::<Failure>(v) {
                Ok(mut f) => {
                    f.msg = format!("on host {host}: {}", f.msg);
                    RunResult::Failed(f)
                }
                Err(_) => RunResult::Failed(Failure::msg(self.failure_text(host, "baton apply"))),
            };
        }
        match serde_json::from_value(v) {
            Ok(outcome) if self.status == Some(0) => RunResult::Ok(outcome),
            _ => RunResult::Failed(Failure::msg(self.failure_text(host, "baton apply"))),
        }
    }
}

/// One service's answer in `baton observe`'s output.
fn seen_of(host: &str, name: &str, v: serde_json::Value) -> Result<Seen, String> {
    let answered = v.get("name").and_then(serde_json::Value::as_str);
    if answered.is_some_and(|n| n != name) {
        return Err(format!(
            "baton observe on host {host} answered for {:?} where {name:?} was asked",
            answered.unwrap_or_default()
        ));
    }
    if v.get("failed").and_then(serde_json::Value::as_bool) == Some(true) {
        let msg = v.get("msg").and_then(serde_json::Value::as_str).unwrap_or_default();
        return Err(format!("baton observe of {name} on host {host} failed: {msg}"));
    }
    serde_json::from_value(v)
        .map_err(|e| format!("baton observe of {name} on host {host} printed no JSON the provider understands ({e})"))
}

/// Splits an import id `host:name` (or `host:/unit/dir/name`; `[v6addr]:name`) into the host
/// and the local id; None for a local id (`name`, `/unit/dir/name`).
pub fn split_import_id(id: &str) -> Option<(&str, &str)> {
    if id.starts_with('/') {
        return None;
    }
    if let Some(rest) = id.strip_prefix('[') {
        let (addr, tail) = rest.split_once("]:")?;
        return Some((&id[..addr.len() + 2], tail)).filter(|_| !tail.is_empty());
    }
    let (host, rest) = id.split_once(':')?;
    (!host.is_empty() && !rest.is_empty()).then_some((host, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_ids_split_into_host_and_name() {
        assert_eq!(split_import_id("web"), None);
        assert_eq!(split_import_id("/etc/systemd/system/web"), None);
        assert_eq!(split_import_id("10.0.0.5:web"), Some(("10.0.0.5", "web")));
        assert_eq!(split_import_id("h1:/srv/units/web"), Some(("h1", "/srv/units/web")));
        assert_eq!(split_import_id("[fd00::5]:web"), Some(("[fd00::5]", "web")));
        assert_eq!(split_import_id("h1:"), None);
        assert_eq!(split_import_id(":web"), None);
    }

    #[test]
    fn remote_results_name_the_host() {
        let failed = RemoteOutput {
            status: Some(4),
            stdout: br#"{"failed": true, "msg": "web-v3.service did not become ready: journal: boom"}"#.to_vec(),
            stderr: String::new(),
        };
        match failed.run_result("host07") {
            RunResult::Failed(f) => {
                assert!(f.msg.contains("host07") && f.msg.contains("journal: boom"), "{}", f.msg)
            }
            other => panic!("{other:?}"),
        }
        let garbage = RemoteOutput { status: Some(127), stdout: Vec::new(), stderr: "sh: baton: not found".into() };
        let e = garbage.json::<Seen>("h2", "baton observe").expect_err("fails");
        assert!(e.contains("h2") && e.contains("not found") && e.contains("127"), "{e}");
        let ok = RemoteOutput {
            status: Some(0),
            stdout: br#"{"name":"web","active_version":"v2","releases":[{"version":"v1","unit":"web-v1.service","active_state":"active","sub_state":"running","enabled":false,"main_pid":5,"active_since_unix":1,"unit_text":"x"},{"version":"v2","unit":"web-v2.service","active_state":"active","sub_state":"running","enabled":true,"main_pid":6,"active_since_unix":2,"unit_text":"y"}]}"#.to_vec(),
            stderr: String::new(),
        };
        let seen: Seen = ok.json("h", "baton observe").expect("parses");
        assert_eq!(seen.others_running(), vec!["web-v1.service".to_owned()]);
        assert_eq!(seen.release("v2").and_then(|r| r.unit_text.as_deref()), Some("y"));
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    /// `baton observe a b c`: each name gets its own answer, a failed one only its failure.
    #[test]
    fn observations_are_attributed_per_name() {
        let out = RemoteOutput {
            status: Some(1),
            stdout: concat!(
                r#"{"name":"a","active_version":"v1","releases":[{"version":"v1","unit":"a-v1.service","active_state":"active","enabled":true,"unit_text":"x"}]}"#,
                "\n",
                r#"{"failed":true,"msg":"cannot read b: permission denied","name":"b","changed":false,"rolled_back":false,"elapsed_ms":0}"#,
                "\n",
                r#"{"name":"c","active_version":null,"releases":[]}"#,
                "\n"
            )
            .as_bytes()
            .to_vec(),
            stderr: String::new(),
        };
        let got = out.observations_with_others("h3", &names(&["a", "b", "c"]), false).0;
        assert_eq!(got["a"].as_ref().map(|s| s.active_version.clone()), Ok(Some("v1".to_owned())));
        let b = got["b"].as_ref().expect_err("b failed");
        assert!(b.contains("h3") && b.contains(" b ") && b.contains("permission denied"), "{b}");
        assert_eq!(got["c"].as_ref().map(|s| s.releases.len()), Ok(0));

        // One name: the pretty-printed object of a single `baton observe NAME`.
        let one = RemoteOutput {
            status: Some(0),
            stdout: b"{\n  \"name\": \"a\",\n  \"active_version\": null,\n  \"releases\": []\n}\n".to_vec(),
            stderr: String::new(),
        };
        assert!(one.observations_with_others("h", &names(&["a"]), false).0["a"].is_ok());
    }

    /// `baton observe --all a`: the services after the named one come apart, by name; one that
    /// failed is left out.
    #[test]
    fn services_read_ahead_come_apart() {
        let out = RemoteOutput {
            status: Some(1),
            stdout: concat!(
                r#"{"name":"a","active_version":null,"releases":[]}"#,
                "\n",
                r#"{"name":"b","active_version":"v1","releases":[]}"#,
                "\n",
                r#"{"failed":true,"msg":"boom","name":"c"}"#,
                "\n"
            )
            .as_bytes()
            .to_vec(),
            stderr: String::new(),
        };
        let (asked, others) = out.observations_with_others("h", &names(&["a"]), true);
        assert_eq!(asked.len(), 1);
        assert!(asked["a"].is_ok());
        assert_eq!(others.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(others["b"].active_version.as_deref(), Some("v1"));
        // Without --all, more objects than names is output the provider does not understand.
        let (asked, others) = out.observations_with_others("h", &names(&["a"]), false);
        assert!(asked["a"].is_err() && others.is_empty());
    }

    /// Output that is not one object per name fails every name, naming the host.
    #[test]
    fn a_command_that_failed_as_a_whole_fails_every_name() {
        let missing = RemoteOutput { status: Some(127), stdout: Vec::new(), stderr: "sh: baton: not found".into() };
        let got = missing.observations_with_others("h9", &names(&["a", "b"]), false).0;
        for n in ["a", "b"] {
            let e = got[n].as_ref().expect_err("fails");
            assert!(e.contains("h9") && e.contains("not found"), "{e}");
        }
        let short = RemoteOutput {
            status: Some(0),
            stdout: br#"{"name":"a","active_version":null,"releases":[]}"#.to_vec(),
            stderr: String::new(),
        };
        let got = short.observations_with_others("h9", &names(&["a", "b"]), false).0;
        assert!(got["a"].is_err() && got["b"].is_err(), "{got:?}");
        let swapped = RemoteOutput {
            status: Some(0),
            stdout:
                br#"{"name":"b","active_version":null,"releases":[]} {"name":"a","active_version":null,"releases":[]}"#
                    .to_vec(),
            stderr: String::new(),
        };
        let got = swapped.observations_with_others("h9", &names(&["a", "b"]), false).0;
        assert!(got["a"].as_ref().expect_err("mismatch").contains("where \"a\" was asked"), "{got:?}");
    }
}
