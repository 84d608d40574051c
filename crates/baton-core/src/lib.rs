//! The baton core library: everything the three front-ends (CLI, Ansible module, Terraform
//! provider) share.
//!
//! Data flows one way: raw front-end input → [`spec`] (validated types) → [`state`] (what is on
//! disk and running) + [`plan`] → [`handover`] (through the [`systemd`] trait) → [`result`].
//! Front-ends translate their input into a [`spec::RawSpec`], call [`run::apply`] and translate
//! the [`result::RunResult`] back; they hold no logic of their own.
//!
//! | module | owns |
//! |---|---|
//! | [`spec`] | raw JSON → validated types; every rule names its field |
//! | [`render`] | the unit file (minijinja), escaping every value for systemd |
//! | [`unit_dir`] | release unit files on disk: scan by X-Baton marks, atomic writes |
//! | [`systemd`] | the narrow systemd trait, its D-Bus implementation and a fake |
//! | [`state`] | what is on disk and running now |
//! | [`plan`] | the steps from now to the spec (pure) |
//! | [`handover`] | carrying a plan out: readiness, observation, rollback |
//! | [`probe`] | TCP/HTTP probes and the listening-socket check from /proc |
//! | [`migrate`] | `net.ipv4.tcp_migrate_req` |
//! | [`lock`] | one run per service at a time |
//! | [`secrets`] | a release's secret environment file (0600, named by `EnvironmentFile=`) |
//! | [`safe_fs`] | trusted directories, no-follow reads with a cap, exclusive temp files |
//! | [`result`] | the contract's result |
//! | [`status`] | the human/JSON view of a service's releases |

pub mod handover;
pub mod lock;
pub mod migrate;
pub mod migration;
pub mod plan;
pub mod probe;
pub mod readback;
pub mod render;
pub mod result;
pub mod run;
pub mod safe_fs;
pub mod secrets;
pub mod spec;
pub mod state;
pub mod status;
pub mod systemd;
pub mod unit_dir;

/// In a test that cannot run on this machine (no IPv6 loopback, no `sh`): fails under `CI`, where
/// every test must run, and otherwise says why it is skipped.
#[cfg(test)]
pub(crate) fn cannot_test(reason: &str) {
    assert!(std::env::var_os("CI").is_none(), "this test cannot run here, and CI runs every test: {reason}");
    eprintln!("skipped: {reason}");
}
