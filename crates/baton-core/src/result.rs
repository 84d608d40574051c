//! The result of a run, as the contract defines it: what the CLI prints, what Ansible gets back
//! and what the Terraform provider reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The unit text before and after a run (with diff requested).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Diff {
    /// The unit file of the target release before the run (empty when there was none).
    pub before: String,
    /// The unit file after the run (empty when removed).
    pub after: String,
}

/// The outcome of a successful run (`failed` is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "baton result")]
pub struct Outcome {
    /// Whether anything on disk or in systemd changed (in check mode: would change).
    pub changed: bool,
    /// One readable sentence on what happened.
    pub msg: String,
    /// The service.
    pub name: String,
    /// The active release after the run (null when none is active).
    pub version: Option<String>,
    /// The release that was active before the run.
    pub previous_version: Option<String>,
    /// The unit of the release the spec names.
    pub unit: String,
    /// The steps taken, in order (in check mode: planned).
    pub actions: Vec<String>,
    /// Whether a new release failed and was stopped, leaving the old one serving.
    pub rolled_back: bool,
    /// Wall time of the run, in milliseconds.
    pub elapsed_ms: u64,
    /// Things an operator should know that did not stop the run.
    pub warnings: Vec<String>,
    /// The unit text before and after, when diff was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<Diff>,
}

/// A failed run: `{"failed": true, "msg": ...}` plus whatever is known of the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Failure {
    /// Always true.
    pub failed: bool,
    /// The cause in one readable sentence (for a release that failed to start: with the last
    /// lines of its journal).
    pub msg: String,
    /// The service, when the spec was valid enough to name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The release still active after the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether anything changed before the failure.
    #[serde(default)]
    pub changed: bool,
    /// Whether a new release was stopped, leaving the old one serving.
    #[serde(default)]
    pub rolled_back: bool,
    /// The steps taken before the failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// The last journal lines of the release that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<String>,
    /// Wall time of the run, in milliseconds.
    #[serde(default)]
    pub elapsed_ms: u64,
}

impl Failure {
    /// A failure with just a message (bad input, nothing touched).
    pub fn msg(msg: impl Into<String>) -> Self {
        Failure { failed: true, msg: msg.into(), ..Failure::default() }
    }
}

/// Either result; serialises to exactly one of the two JSON shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RunResult {
    /// A failed run.
    Failed(Failure),
    /// A successful run.
    Ok(Outcome),
}
