//! The plan: the ordered steps that take a service from what is there ([`ServiceState`]) to
//! what the spec asks for. Pure: no I/O, so every case is unit-tested; check mode prints it,
//! [`crate::handover`] carries it out.

use std::path::PathBuf;

use crate::secrets::{self, SecretText};
use crate::spec::{ListenMode, ServiceSpec, State, UnitNaming};
use crate::state::{Release, ServiceState};
use crate::unit::parse::{self as unit_parse, read_service_key};
use crate::unit::{instance, socket};
use crate::unit_dir::{self, DiskError};

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write the target release's unit file (its bytes differ or it is missing).
    WriteUnit {
        /// The unit.
        unit: String,
        /// The file.
        path: PathBuf,
        /// The new text.
        text: String,
    },
    /// Write a release's secret file (see [`crate::secrets`]): its content differs, it is
    /// missing, or others could read it.
    WriteSecrets {
        /// The unit it belongs to.
        unit: String,
        /// The file.
        path: PathBuf,
        /// The new text (never shown).
        text: SecretText,
        /// Whether a file was there before.
        existed: bool,
    },
    /// Remove a release's secret file.
    RemoveSecrets {
        /// The unit it belongs to.
        unit: String,
        /// The file.
        path: PathBuf,
    },
    /// One `daemon-reload`.
    Reload,
    /// Start the release (unless it is already running) and wait until it is ready.
    StartAndWait {
        /// The unit.
        unit: String,
        /// Whether it must be started (false: already running, only verify readiness).
        start: bool,
    },
    /// Stop and start the release in place (its unit changed but its version did not).
    Restart {
        /// The unit.
        unit: String,
    },
    /// Make sure `net.ipv4.tcp_migrate_req=1` before a listener closes.
    MigrateRequests,
    /// Enable units for boot.
    Enable {
        /// The units.
        units: Vec<String>,
    },
    /// Disable units.
    Disable {
        /// The units.
        units: Vec<String>,
    },
    /// Stop a release; systemd applies its `TimeoutStopSec`.
    Stop {
        /// The unit.
        unit: String,
        /// Its version.
        version: String,
        /// Its `TimeoutStopSec`, to know how long systemd may take.
        timeout_stop_sec: u64,
    },
    /// Remove a release's unit file.
    RemoveUnit {
        /// The unit.
        unit: String,
        /// The file.
        path: PathBuf,
    },
    /// Write the service's shared socket unit (socket mode): missing, changed, or naming
    /// another release in `Service=` than the one now current.
    WriteSocket {
        /// The socket unit.
        unit: String,
        /// The file.
        path: PathBuf,
        /// The new text.
        text: String,
    },
    /// Stop the shared socket: systemd closes its copy of the listener (a release still running
    /// keeps serving from its own copy until it stops) and no traffic can start a release.
    StopSocket {
        /// The socket unit.
        unit: String,
    },
    /// Remove the shared socket's unit file.
    RemoveSocket {
        /// The socket unit.
        unit: String,
        /// The file.
        path: PathBuf,
    },
}

impl Step {
    /// The step as an action line of the result.
    pub(crate) fn describe(&self) -> String {
        match self {
            Step::WriteUnit { path, .. } | Step::WriteSecrets { path, .. } | Step::WriteSocket { path, .. } => {
                format!("write {}", path.display())
            }
            Step::Reload => "daemon-reload".to_owned(),
            Step::StartAndWait { unit, start: true } => format!("start {unit}"),
            Step::StartAndWait { unit, start: false } => format!("verify {unit} is ready"),
            Step::Restart { unit } => format!("restart {unit}"),
            Step::MigrateRequests => "set net.ipv4.tcp_migrate_req=1".to_owned(),
            Step::Enable { units } => format!("enable {}", units.join(" ")),
            Step::Disable { units } => format!("disable {}", units.join(" ")),
            Step::Stop { unit, .. } | Step::StopSocket { unit } => format!("stop {unit}"),
            Step::RemoveUnit { path, .. } | Step::RemoveSecrets { path, .. } | Step::RemoveSocket { path, .. } => {
                format!("remove {}", path.display())
            }
        }
    }

    /// The step's kind, one word: `write`, `reload`, `start`, `verify`, `restart`, `migrate`,
    /// `enable`, `disable`, `stop`, `remove`; for the shared socket of socket mode
    /// `write-socket`, `stop-socket`, `remove-socket`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Step::WriteUnit { .. } | Step::WriteSecrets { .. } => "write",
            Step::WriteSocket { .. } => "write-socket",
            Step::StopSocket { .. } => "stop-socket",
            Step::RemoveSocket { .. } => "remove-socket",
            Step::Reload => "reload",
            Step::StartAndWait { start: true, .. } => "start",
            Step::StartAndWait { start: false, .. } => "verify",
            Step::Restart { .. } => "restart",
            Step::MigrateRequests => "migrate",
            Step::Enable { .. } => "enable",
            Step::Disable { .. } => "disable",
            Step::Stop { .. } => "stop",
            Step::RemoveUnit { .. } | Step::RemoveSecrets { .. } => "remove",
        }
    }

    /// Whether carrying the step out changes something (verifying readiness does not).
    pub(crate) fn changes(&self) -> bool {
        !matches!(self, Step::StartAndWait { start: false, .. })
    }
}

/// What the plan found and will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The release active before the run.
    pub previous_version: Option<String>,
    /// Things the operator should know.
    pub warnings: Vec<String>,
    /// Whether another release's `SO_REUSEPORT` listener closes while the target serves, with
    /// `migrate_requests` on: the run probes request migration before it closes
    /// ([`crate::migration`]).
    pub probe_migration: bool,
}

impl Plan {
    /// Whether the plan changes anything.
    pub(crate) fn changes(&self) -> bool {
        self.steps.iter().any(Step::changes)
    }
}

/// A handover that cannot work, refused before anything is touched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A unit file in the way is not baton's.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// systemd already knows the unit baton would write, from a file baton did not write.
    #[error(
        "{unit} is already known to systemd from {owner}, which baton did not write; writing {path} would \
         shadow it (and reload and restart it). Choose another name or version. Nothing was changed"
    )]
    Shadows {
        /// The unit.
        unit: String,
        /// The file systemd loads it from.
        owner: PathBuf,
        /// The file baton would have written.
        path: PathBuf,
    },
    /// The old and new releases cannot share the port.
    #[error("preflight: {0}")]
    Preflight(String),
}

pub(crate) use crate::migrate::Migrate;

/// Plans the run. `rendered` is the target unit's text (None for `absent`, and for a `stopped`
/// spec that names no release).
pub(crate) fn plan(
    spec: &ServiceSpec,
    state: &ServiceState,
    rendered: Option<&str>,
    migrate: Migrate,
) -> Result<Plan, PlanError> {
    let mut plan = Plan {
        steps: Vec::new(),
        previous_version: state.active_version(),
        warnings: Vec::new(),
        probe_migration: false,
    };
    match (spec.state, &spec.version, spec.unit()) {
        (State::Absent, _, _) => plan.remove_everything(spec, state),
        (_, Some(version), Some(target_unit)) => {
            let target = Target::new(spec, state, version.as_str(), target_unit, rendered.unwrap_or_default())?;
            plan.release(spec, state, &target, migrate)?;
        }
        // `stopped` without a release.
        _ => plan.stop_everything(spec, state),
    }
    Ok(plan)
}

/// What the plan knows of the release the spec names, worked out once.
struct Target<'a> {
    version: &'a str,
    unit: String,
    /// The unit text the spec renders to.
    text: String,
    /// Whether the unit file must be written.
    write: bool,
    /// The secret file the spec asks for (None without `secret_environment`).
    wanted_secrets: Option<SecretText>,
    /// The secret file on disk.
    secret_file: Option<&'a secrets::SecretFile>,
    /// Whether the secret file must be written.
    write_secrets: bool,
    running: bool,
    /// The other releases that run.
    others_running: Vec<&'a crate::state::Release>,
}

impl<'a> Target<'a> {
    /// Works out the target, refusing a file baton did not write and a unit it would shadow.
    fn new(
        spec: &ServiceSpec,
        state: &'a ServiceState,
        version: &'a str,
        unit: String,
        text: &str,
    ) -> Result<Self, PlanError> {
        // Never overwrite a unit baton did not write.
        if let Some(existing) = &state.target_text {
            unit_dir::check_owned(&state.target_path, existing, spec.name.as_str(), version)?;
        }
        // Nor shadow a unit systemd loads from another file (another package's unit).
        if let Some(owner) = state.target_owner.as_ref().filter(|owner| **owner != state.target_path) {
            return Err(PlanError::Shadows { unit, owner: owner.clone(), path: state.target_path.clone() });
        }
        // The secret file: compared by content (the unit names only its path, so a changed secret
        // changes no byte of the unit); one others could read is written again.
        let wanted_secrets = (!spec.secret_environment.is_empty())
            .then(|| secrets::render(spec.name.as_str(), version, &spec.secret_environment));
        let secret_file = state.secret_file(&unit);
        let write_secrets = match (&wanted_secrets, secret_file) {
            (Some(wanted), Some(file)) => *wanted != file.text || !file.private,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let others_running = state.running().filter(|r| r.unit() != unit).collect();
        Ok(Target {
            version,
            write: state.target_text.as_deref() != Some(text),
            text: text.to_owned(),
            wanted_secrets,
            secret_file,
            write_secrets,
            running: state.target_status.is_running(),
            others_running,
            unit,
        })
    }
}

impl Plan {
    /// `absent`: stop, disable and remove every release, and every secret file of the service
    /// (also one whose unit an earlier run already removed).
    fn remove_everything(&mut self, spec: &ServiceSpec, state: &ServiceState) {
        self.stop_socket(spec, state);
        for r in state.running() {
            self.steps.push(stop_step(r.unit(), r.version(), &r.file.text));
        }
        let enabled = enabled_units(state);
        if !enabled.is_empty() {
            self.steps.push(Step::Disable { units: enabled });
        }
        for r in &state.releases {
            self.steps.push(Step::RemoveUnit { unit: r.unit().to_owned(), path: r.file.path.clone() });
        }
        for f in &state.secrets {
            self.steps.push(Step::RemoveSecrets { unit: f.unit.clone(), path: f.path.clone() });
        }
        if state.socket.owned_by(spec.name.as_str()) {
            self.steps.push(Step::RemoveSocket { unit: state.socket.unit.clone(), path: state.socket.path.clone() });
        }
        if state.template.owned_by(spec.name.as_str()) {
            self.steps.push(Step::RemoveUnit { unit: state.template.unit.clone(), path: state.template.path.clone() });
        }
    }

    /// Stops the service's shared socket if it runs (before any release stops, so that no
    /// traffic can start a release again): `stopped` means nothing listens.
    fn stop_socket(&mut self, spec: &ServiceSpec, state: &ServiceState) {
        if state.socket.status.is_running() && state.socket.owned_by(spec.name.as_str()) {
            self.steps.push(Step::StopSocket { unit: state.socket.unit.clone() });
        }
    }

    /// `stopped` without a release: stop every release, keep the files; enablement is left as
    /// it is unless `enabled: false` asks to disable them all.
    fn stop_everything(&mut self, spec: &ServiceSpec, state: &ServiceState) {
        self.stop_socket(spec, state);
        for r in state.running() {
            self.steps.push(stop_step(r.unit(), r.version(), &r.file.text));
        }
        let enabled = enabled_units(state);
        if !spec.enabled && !enabled.is_empty() {
            self.steps.push(Step::Disable { units: enabled });
        }
    }

    /// A spec naming a release: its files, its start (or stop), enablement, the other releases
    /// stopped and pruned.
    fn release(
        &mut self,
        spec: &ServiceSpec,
        state: &ServiceState,
        target: &Target<'_>,
        migrate: Migrate,
    ) -> Result<(), PlanError> {
        let sock = SocketSteps::new(spec, state, target)?;
        if spec.state == State::Started && spec.port.is_some() {
            preflight_same_user(spec, state, &target.unit, &target.others_running)?;
        }
        let template = template_write(spec, state, &target.text)?;
        let template_reload = template.is_some() && templated_unit_loaded(state);
        self.steps.extend(template);
        self.write_files(spec, state, target, &sock);
        if template_reload && !self.steps.contains(&Step::Reload) {
            self.steps.push(Step::Reload);
        }
        match spec.state {
            State::Started => self.start(spec, state, target, migrate),
            State::Stopped => {
                self.stop_socket(spec, state);
                if target.running {
                    self.steps.push(stop_step(&target.unit, target.version, &target.text));
                }
            }
            State::Absent => {}
        }
        if spec.state == State::Started {
            self.steps.extend(sock.after_ready);
        }
        self.enablement(spec, state, target);
        for r in &target.others_running {
            self.steps.push(stop_step(r.unit(), r.version(), &r.file.text));
        }
        if spec.state == State::Started {
            self.steps.extend(sock.after_stops);
            self.prune(spec, state, target);
        }
        // The target's secret file once the spec no longer has secrets (its unit no longer names it).
        if !wanted_secrets_present(spec) {
            if let Some(f) = target.secret_file {
                self.steps.push(Step::RemoveSecrets { unit: f.unit.clone(), path: f.path.clone() });
            }
        }
        Ok(())
    }

    /// The secret file first (the unit never names a file that is not there yet), the unit
    /// file, and a daemon-reload when systemd must see it.
    fn write_files(&mut self, spec: &ServiceSpec, state: &ServiceState, target: &Target<'_>, sock: &SocketSteps) {
        if let Some(text) = target.wanted_secrets.clone().filter(|_| target.write_secrets) {
            self.steps.push(Step::WriteSecrets {
                unit: target.unit.clone(),
                path: secrets::path(&spec.unit_dir, &target.unit),
                text,
                existed: target.secret_file.is_some(),
            });
        }
        if target.write {
            self.steps.push(Step::WriteUnit {
                unit: target.unit.clone(),
                path: state.target_path.clone(),
                text: target.text.clone(),
            });
        }
        self.steps.extend(sock.before_start.iter().cloned());
        // systemd reads a unit it does not hold in memory from disk on first use: only a unit it
        // has loaded needs a daemon-reload to see its new file (or one edited behind its back).
        if (target.write && state.target_status.in_memory())
            || state.target_status.need_daemon_reload
            || sock.reload_before_start
        {
            self.steps.push(Step::Reload);
        }
    }

    /// `started`: start the release (or restart it in place, or verify it), and have the kernel
    /// migrate the old listener's queue.
    fn start(&mut self, spec: &ServiceSpec, state: &ServiceState, target: &Target<'_>, migrate: Migrate) {
        let unit = &target.unit;
        if target.running && (target.write || target.write_secrets || runs_a_stale_unit(spec, state, target)) {
            let what = if target.write { "unit" } else { "secret_environment" };
            self.warnings.push(format!(
                "{unit} is restarted in place to apply its changed {what}: a restart drops connections; \
                 give a changed release a new version for a zero-downtime handover"
            ));
            self.steps.push(Step::Restart { unit: unit.clone() });
        } else if !target.running {
            self.steps.push(Step::StartAndWait { unit: unit.clone(), start: true });
        } else if !target.others_running.is_empty() {
            // A run was interrupted after starting the new release: verify it before the old one goes.
            self.steps.push(Step::StartAndWait { unit: unit.clone(), start: false });
        }
        if listener_closes(spec, state, target) && spec.port.is_some() && spec.migrate_requests {
            self.probe_migration = true;
            match migrate {
                Migrate::On => {}
                Migrate::Off => self.steps.push(Step::MigrateRequests),
                Migrate::Unsupported => self.warnings.push(crate::migrate::UNSUPPORTED_WARNING.to_owned()),
            }
        }
    }

    /// Only the target may be enabled, and only when asked.
    fn enablement(&mut self, spec: &ServiceSpec, state: &ServiceState, target: &Target<'_>) {
        let target_enabled = state.target_status.is_enabled();
        if spec.enabled && !target_enabled {
            self.steps.push(Step::Enable { units: vec![target.unit.clone()] });
        }
        let mut disable: Vec<String> = enabled_units(state).into_iter().filter(|unit| *unit != target.unit).collect();
        if !spec.enabled && target_enabled {
            disable.insert(0, target.unit.clone());
        }
        if !disable.is_empty() {
            self.steps.push(Step::Disable { units: disable });
        }
    }

    /// Keeps the `keep` most recently active inactive releases and removes the rest, with their
    /// secret files, and secret files whose unit is gone (a run killed between the two removals).
    fn prune(&mut self, spec: &ServiceSpec, state: &ServiceState, target: &Target<'_>) {
        let mut inactive: Vec<_> = state.releases.iter().filter(|r| r.unit() != target.unit).collect();
        inactive.sort_by(|a, b| b.file.modified.cmp(&a.file.modified).then_with(|| b.unit().cmp(a.unit())));
        let mut instances_left = instance::is_instance(&target.unit);
        for (i, r) in inactive.into_iter().enumerate() {
            if i < spec.keep as usize {
                instances_left |= instance::is_instance(r.unit());
                continue;
            }
            self.steps.push(Step::RemoveUnit { unit: r.unit().to_owned(), path: r.file.path.clone() });
            if let Some(f) = state.secret_file(r.unit()) {
                self.steps.push(Step::RemoveSecrets { unit: f.unit.clone(), path: f.path.clone() });
            }
        }
        // Back to per-version units: the instance template goes with the last instance.
        if !instances_left && state.template.owned_by(spec.name.as_str()) {
            self.steps.push(Step::RemoveUnit { unit: state.template.unit.clone(), path: state.template.path.clone() });
        }
        for f in &state.secrets {
            if f.unit != target.unit && state.releases.iter().all(|r| r.unit() != f.unit) {
                self.steps.push(Step::RemoveSecrets { unit: f.unit.clone(), path: f.path.clone() });
            }
        }
    }
}

/// With `unit_naming: "instance"`, the template the target's drop-in `drop_in` needs, when it
/// is missing or differs (see [`crate::unit::instance`]); a file there that is not baton's
/// template of the service is never overwritten.
fn template_write(spec: &ServiceSpec, state: &ServiceState, drop_in: &str) -> Result<Option<Step>, PlanError> {
    if spec.unit_naming != UnitNaming::Instance {
        return Ok(None);
    }
    let t = &state.template;
    if let (Some(text), false) = (&t.text, t.owned_by(spec.name.as_str())) {
        let found = match unit_parse::read_marks(text) {
            Some((s, v)) => format!("it is marked as release {v} of service {s}, not as a template"),
            None => match instance::template_owner(text) {
                Some(other) => format!("it is marked as the template of service {other}"),
                None => "it has no X-Baton-Service mark".to_owned(),
            },
        };
        return Err(DiskError::Foreign { path: t.path.clone(), service: spec.name.to_string(), found }.into());
    }
    let wanted = instance::template(spec.name.as_str(), drop_in);
    Ok((t.text.as_deref() != Some(wanted.as_str())).then(|| Step::WriteUnit {
        unit: t.unit.clone(),
        path: t.path.clone(),
        text: wanted,
    }))
}

/// Whether systemd may hold an instance loaded from the template (so a changed template needs
/// a daemon-reload, lest systemd report NeedDaemonReload).
fn templated_unit_loaded(state: &ServiceState) -> bool {
    state.template.text.is_some()
        && state.releases.iter().any(|r| instance::is_instance(r.unit()) && r.status.in_memory())
}

/// The enabled releases' units.
fn enabled_units(state: &ServiceState) -> Vec<String> {
    state.releases.iter().filter(|r| r.status.is_enabled()).map(|r| r.unit().to_owned()).collect()
}

/// A running release whose unit file is newer than its start runs an old version of the unit (a
/// run was killed between writing it and restarting): it is restarted too. The same holds for
/// its secret file (written, then the run was killed).
fn runs_a_stale_unit(spec: &ServiceSpec, state: &ServiceState, target: &Target<'_>) -> bool {
    let since_us = state.target_status.active_enter_timestamp_us;
    let active_since = std::time::UNIX_EPOCH + std::time::Duration::from_micros(since_us);
    let newer = |modified: std::time::SystemTime| since_us > 0 && modified > active_since;
    target.running
        && (state.release(target.version).is_some_and(|r| newer(r.file.modified))
            || target.secret_file.is_some_and(|f| wanted_secrets_present(spec) && newer(f.modified)))
}

fn wanted_secrets_present(spec: &ServiceSpec) -> bool {
    !spec.secret_environment.is_empty()
}

fn stop_step(unit: &str, version: &str, text: &str) -> Step {
    let timeout_stop_sec = read_service_key(text, "TimeoutStopSec").and_then(|v| v.parse().ok()).unwrap_or(90);
    Step::Stop { unit: unit.to_owned(), version: version.to_owned(), timeout_stop_sec }
}

/// SO_REUSEPORT only lets sockets of the same effective UID share a port. The new listener is
/// the new release's own (reuseport mode, running as `User=`) or the shared socket systemd
/// binds as root (socket mode, when it is not listening yet); a socket-mode release listens
/// through that socket, so it counts as root. Nothing new binds when the shared socket
/// listens already.
fn preflight_same_user(
    spec: &ServiceSpec,
    state: &ServiceState,
    target_unit: &str,
    others: &[&Release],
) -> Result<(), PlanError> {
    let socket_running = state.socket.status.is_running() && state.socket.owned_by(spec.name.as_str());
    let (new_user, new_what) = match spec.listen_mode {
        ListenMode::Socket if socket_running => return Ok(()),
        ListenMode::Socket => {
            ("root".to_owned(), format!("the shared socket {} (bound by systemd as root)", spec.socket_unit()))
        }
        ListenMode::Reuseport => {
            let user = spec.user.clone().unwrap_or_else(|| "root".to_owned());
            (user.clone(), format!("{target_unit} would run as User={user}"))
        }
    };
    let mut existing: Vec<(String, String)> = others
        .iter()
        .map(|r| {
            if uses_socket(spec, r) {
                (format!("{} listens through the shared socket (root)", r.unit()), "root".to_owned())
            } else {
                let user = read_service_key(&r.file.text, "User").unwrap_or_else(|| "root".to_owned());
                (format!("{} runs as User={user}", r.unit()), user)
            }
        })
        .collect();
    if socket_running {
        existing
            .push((format!("the shared socket {} is bound by systemd as root", spec.socket_unit()), "root".to_owned()));
    }
    for (what, old_user) in existing {
        if old_user != new_user {
            return Err(PlanError::Preflight(format!(
                "{what} but {new_what}; SO_REUSEPORT only lets sockets of the same user share port {}, so the new \
                 listener could not bind beside the old one. Nothing was changed",
                spec.port.unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// Whether release `r`'s unit takes its listener from the service's shared socket (`Sockets=`).
fn uses_socket(spec: &ServiceSpec, r: &Release) -> bool {
    let sock = spec.socket_unit();
    unit_parse::values(&r.file.text, "Service", "Sockets").any(|v| v.split_whitespace().any(|s| s == sock))
}

/// Whether a listening socket closes in this handover (so its queue must migrate): an old
/// release listening on its own (reuseport), or, when the spec leaves socket mode, the shared
/// socket (once systemd and every old release holding it have let go). Old and new releases of
/// socket mode share one socket that stays open.
fn listener_closes(spec: &ServiceSpec, state: &ServiceState, target: &Target<'_>) -> bool {
    match spec.listen_mode {
        ListenMode::Socket => target.others_running.iter().any(|r| !uses_socket(spec, r)),
        ListenMode::Reuseport => {
            !target.others_running.is_empty()
                || (state.socket.status.is_running() && state.socket.owned_by(spec.name.as_str()))
        }
    }
}

/// The socket unit's steps of a spec naming a release (see [`crate::unit::socket`] for why):
/// - socket mode, socket not listening: written (naming the target in `Service=`) before the
///   target starts, which pulls it in (`Sockets=` implies `Wants=`);
/// - socket mode, socket listening: rewritten to name the target once it is ready, before any
///   old release stops; its `ListenStream=` cannot change under running releases;
/// - reuseport mode: stopped once the target is ready (before the old releases stop), and its
///   file removed once they have.
#[derive(Debug, Default)]
struct SocketSteps {
    before_start: Vec<Step>,
    reload_before_start: bool,
    after_ready: Vec<Step>,
    after_stops: Vec<Step>,
}

impl SocketSteps {
    fn new(spec: &ServiceSpec, state: &ServiceState, target: &Target<'_>) -> Result<Self, PlanError> {
        let mut steps = SocketSteps::default();
        let sock = &state.socket;
        let ours = sock.owned_by(spec.name.as_str());
        let running = sock.status.is_running();
        if spec.listen_mode == ListenMode::Reuseport {
            if ours && spec.state == State::Started {
                if running {
                    steps.after_ready.push(Step::StopSocket { unit: sock.unit.clone() });
                }
                steps.after_stops.push(Step::RemoveSocket { unit: sock.unit.clone(), path: sock.path.clone() });
            }
            return Ok(steps);
        }
        // Never overwrite a socket unit baton did not write.
        if let (Some(text), false) = (&sock.text, ours) {
            let found = match socket::owner(text) {
                Some(other) => format!("it is marked as the socket of service {other}"),
                None => "it has no X-Baton-Service mark".to_owned(),
            };
            return Err(DiskError::Foreign { path: sock.path.clone(), service: spec.name.to_string(), found }.into());
        }
        let Some(wanted) = socket::render(spec, &target.unit) else {
            return Ok(steps);
        };
        let write = Step::WriteSocket { unit: sock.unit.clone(), path: sock.path.clone(), text: wanted.clone() };
        let same_listener = sock.text.as_deref().is_some_and(|t| socket::with_service(t, &target.unit) == wanted);
        if !running || spec.state == State::Stopped {
            if sock.text.as_deref() != Some(wanted.as_str()) {
                steps.before_start.push(write);
                steps.reload_before_start = sock.status.in_memory();
            }
            steps.reload_before_start |= sock.status.need_daemon_reload;
            return Ok(steps);
        }
        if !same_listener {
            if target.running || !target.others_running.is_empty() {
                return Err(PlanError::Preflight(format!(
                    "the shared socket {} listens on other terms than the spec asks (ListenStream={}: port or \
                     bind_address changed, or its file was edited); its releases hold that socket, so it cannot \
                     change under them. Stop the service first (state: stopped), then apply. Nothing was changed",
                    sock.unit,
                    spec.port.map(|p| socket::listen_value(spec.bind_address, p)).unwrap_or_default(),
                )));
            }
            // Listening with no release: stopped, rewritten, and pulled in again by the target.
            steps.before_start.push(Step::StopSocket { unit: sock.unit.clone() });
            steps.before_start.push(write);
            steps.reload_before_start = true;
            return Ok(steps);
        }
        if sock.text.as_deref() != Some(wanted.as_str()) {
            steps.after_ready.push(write);
            steps.after_ready.push(Step::Reload);
        } else if sock.status.need_daemon_reload {
            steps.after_ready.push(Step::Reload);
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;
    use crate::state::Release;
    use crate::systemd::UnitStatus;
    use crate::unit::render::render;
    use crate::unit_dir::UnitFile;
    use std::time::{Duration, SystemTime};

    fn spec(version: &str, extra: &str) -> ServiceSpec {
        let json = format!(
            r#"{{"name":"app","version":"{version}","exec_start":["/bin/app"],"port":8080,"unit_dir":"/u"{extra}}}"#
        );
        parse(json.as_bytes()).expect("valid")
    }

    fn release(version: &str, running: bool, enabled: bool, age_s: u64) -> Release {
        let s = spec(version, "");
        Release {
            file: UnitFile {
                unit: target(&s),
                version: version.to_owned(),
                path: PathBuf::from(format!("/u/{}", target(&s))),
                text: render(&s).expect("renders"),
                modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - age_s),
            },
            status: UnitStatus {
                load_state: if running { "loaded" } else { crate::systemd::NOT_LOADED }.to_owned(),
                active_state: if running { "active" } else { "inactive" }.to_owned(),
                unit_file_state: if enabled { "enabled" } else { "disabled" }.to_owned(),
                ..UnitStatus::default()
            },
        }
    }

    /// The target unit, or for a spec naming no release a name no release has (as the
    /// handover reads the state).
    fn target(spec: &ServiceSpec) -> String {
        spec.unit().unwrap_or_else(|| format!("{}-.service", spec.name))
    }

    fn state(spec: &ServiceSpec, releases: Vec<Release>) -> ServiceState {
        let target = releases.iter().find(|r| r.unit() == self::target(spec)).cloned();
        ServiceState {
            target_path: PathBuf::from(format!("/u/{}", self::target(spec))),
            target_text: target.as_ref().map(|r| r.file.text.clone()),
            target_status: target.map(|r| r.status).unwrap_or_else(|| UnitStatus {
                load_state: crate::systemd::NOT_LOADED.to_owned(),
                ..UnitStatus::default()
            }),
            releases,
            target_owner: None,
            secrets: Vec::new(),
            socket: crate::state::SocketState {
                unit: "app.socket".to_owned(),
                path: PathBuf::from("/u/app.socket"),
                text: None,
                status: UnitStatus { load_state: crate::systemd::NOT_LOADED.to_owned(), ..UnitStatus::default() },
            },
            template: crate::state::TemplateState {
                unit: "app@.service".to_owned(),
                path: PathBuf::from("/u/app@.service"),
                text: None,
            },
        }
    }

    fn actions(spec: &ServiceSpec, st: &ServiceState) -> Vec<String> {
        let text = spec.version.as_ref().map(|_| render(spec).expect("renders"));
        let rendered = text.as_deref().filter(|_| spec.state != State::Absent);
        plan(spec, st, rendered, Migrate::Off).expect("plan").steps.iter().map(Step::describe).collect()
    }

    #[test]
    fn first_deploy() {
        let s = spec("v1", "");
        assert_eq!(
            actions(&s, &state(&s, vec![])),
            ["write /u/app-v1.service", "start app-v1.service", "enable app-v1.service"]
        );
    }

    #[test]
    fn converged_is_empty() {
        let s = spec("v1", "");
        let st = state(&s, vec![release("v1", true, true, 0)]);
        assert!(actions(&s, &st).is_empty());
    }

    #[test]
    fn handover_order_and_prune() {
        let s = spec("v4", r#","keep":1"#);
        let st = state(
            &s,
            vec![release("v1", false, false, 300), release("v2", false, false, 200), release("v3", true, true, 100)],
        );
        assert_eq!(
            actions(&s, &st),
            [
                "write /u/app-v4.service",
                "start app-v4.service",
                "set net.ipv4.tcp_migrate_req=1",
                "enable app-v4.service",
                "disable app-v3.service",
                "stop app-v3.service",
                "remove /u/app-v2.service",
                "remove /u/app-v1.service",
            ]
        );
    }

    #[test]
    fn interrupted_handover_verifies_then_stops_old() {
        let s = spec("v2", "");
        let st = state(&s, vec![release("v1", true, true, 100), release("v2", true, false, 0)]);
        assert_eq!(
            actions(&s, &st),
            [
                "verify app-v2.service is ready",
                "set net.ipv4.tcp_migrate_req=1",
                "enable app-v2.service",
                "disable app-v1.service",
                "stop app-v1.service"
            ]
        );
    }

    #[test]
    fn changed_unit_of_running_release_restarts_with_warning() {
        let s = spec("v1", r#","environment":{"A":"b"}"#);
        let st = state(&s, vec![release("v1", true, true, 0)]);
        let p = plan(&s, &st, Some(&render(&s).expect("r")), Migrate::On).expect("plan");
        let acts: Vec<_> = p.steps.iter().map(Step::describe).collect();
        assert_eq!(acts, ["write /u/app-v1.service", "daemon-reload", "restart app-v1.service"]);
        assert!(p.warnings[0].contains("restarted in place"));
    }

    #[test]
    fn written_unit_in_memory_needs_a_reload() {
        let s = spec("v2", "");
        let mut st = state(&s, vec![release("v1", true, true, 0)]);
        st.target_status.load_state = "not-found".to_owned();
        assert_eq!(actions(&s, &st)[..2], ["write /u/app-v2.service", "daemon-reload"]);
        // A file edited behind systemd's back is reloaded even when its bytes are right.
        let s = spec("v1", "");
        let mut st = state(&s, vec![release("v1", true, true, 0)]);
        st.target_status.need_daemon_reload = true;
        assert_eq!(actions(&s, &st), ["daemon-reload"]);
    }

    #[test]
    fn running_release_older_than_its_unit_file_is_restarted() {
        let s = spec("v1", "");
        let mut st = state(&s, vec![release("v1", true, true, 0)]);
        // Active since 10 s before the file was written (a run killed after writing it).
        let written = st.releases[0].file.modified.duration_since(std::time::UNIX_EPOCH).expect("time");
        st.target_status.active_enter_timestamp_us = (written - Duration::from_secs(10)).as_micros() as u64;
        assert_eq!(actions(&s, &st), ["restart app-v1.service"]);
        st.target_status.active_enter_timestamp_us = (written + Duration::from_secs(10)).as_micros() as u64;
        assert!(actions(&s, &st).is_empty());
    }

    #[test]
    fn stopped_and_absent() {
        let s = spec("v1", r#","state":"stopped""#);
        let st = state(&s, vec![release("v1", true, true, 0)]);
        assert_eq!(actions(&s, &st), ["stop app-v1.service"]);
        let s = spec("v1", r#","state":"absent""#);
        let st = state(&s, vec![release("v0", false, false, 9), release("v1", true, true, 0)]);
        assert_eq!(
            actions(&s, &st),
            ["stop app-v1.service", "disable app-v1.service", "remove /u/app-v0.service", "remove /u/app-v1.service"]
        );
        assert!(actions(&s, &state(&s, vec![])).is_empty());
    }

    /// A spec with only `name` (and `unit_dir`) and the given `state`.
    fn name_only(state: &str, extra: &str) -> ServiceSpec {
        let json = format!(r#"{{"name":"app","unit_dir":"/u","state":"{state}"{extra}}}"#);
        parse(json.as_bytes()).expect("valid")
    }

    #[test]
    fn stopped_without_a_release_stops_every_release_and_keeps_enablement() {
        let releases =
            || vec![release("v1", true, false, 9), release("v2", true, true, 0), release("v0", false, false, 20)];
        let s = name_only("stopped", "");
        assert_eq!(actions(&s, &state(&s, releases())), ["stop app-v1.service", "stop app-v2.service"]);
        // `enabled: false` disables them too; nothing is written or removed either way.
        let s = name_only("stopped", r#","enabled":false"#);
        assert_eq!(
            actions(&s, &state(&s, releases())),
            ["stop app-v1.service", "stop app-v2.service", "disable app-v2.service"]
        );
        // Already stopped: nothing to do.
        let s = name_only("stopped", "");
        assert!(actions(&s, &state(&s, vec![release("v1", false, true, 0)])).is_empty());
    }

    #[test]
    fn absent_without_a_release_removes_every_release() {
        let s = name_only("absent", "");
        let st = state(&s, vec![release("v0", false, false, 9), release("v1", true, true, 0)]);
        assert_eq!(
            actions(&s, &st),
            ["stop app-v1.service", "disable app-v1.service", "remove /u/app-v0.service", "remove /u/app-v1.service"]
        );
    }

    #[test]
    fn preflight_refuses_a_different_user() {
        let s = spec("v2", r#","user":"web""#);
        let st = state(&s, vec![release("v1", true, true, 0)]);
        let e = plan(&s, &st, Some("x"), Migrate::On).expect_err("refused").to_string();
        assert!(e.contains("User=root") && e.contains("User=web") && e.contains("8080"), "{e}");
    }

    #[test]
    fn foreign_file_is_never_overwritten() {
        let s = spec("v1", "");
        let mut st = state(&s, vec![]);
        st.target_text = Some("[Service]\nExecStart=/bin/other\n".to_owned());
        let e = plan(&s, &st, Some("x"), Migrate::On).expect_err("refused").to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
    }

    #[test]
    fn a_release_named_like_another_packages_unit_is_refused_naming_its_file() {
        for state_ in ["started", "stopped"] {
            let json = format!(
                r#"{{"name":"systemd","version":"logind","exec_start":["/bin/app"],"unit_dir":"/u","state":"{state_}"}}"#
            );
            let s = parse(json.as_bytes()).expect("valid");
            let mut st = state(&s, vec![]);
            st.target_status.active_state = "active".to_owned();
            st.target_owner = Some(PathBuf::from("/lib/systemd/system/systemd-logind.service"));
            let e = plan(&s, &st, Some("x"), Migrate::On).expect_err("refused");
            assert!(matches!(e, PlanError::Shadows { .. }), "{e:?}");
            let e = e.to_string();
            assert!(
                e.contains("/lib/systemd/system/systemd-logind.service") && e.contains("/u/systemd-logind.service"),
                "{e}"
            );
        }
        // systemd loading baton's own file is no conflict.
        let s = spec("v1", "");
        let mut st = state(&s, vec![release("v1", true, true, 0)]);
        st.target_owner = Some(st.target_path.clone());
        assert!(actions(&s, &st).is_empty());
    }

    fn secret_file(s: &ServiceSpec, version: &str, modified: SystemTime) -> crate::secrets::SecretFile {
        let unit = format!("app-{version}.service");
        crate::secrets::SecretFile {
            path: crate::secrets::path(&s.unit_dir, &unit),
            text: crate::secrets::render("app", version, &s.secret_environment),
            unit,
            version: version.to_owned(),
            modified,
            private: true,
        }
    }

    #[test]
    fn secret_files_converge_after_an_interrupted_run() {
        let s = spec("v1", r#","secret_environment":{"PW":"x"}"#);
        let mut st = state(&s, vec![release("v1", true, true, 0)]);
        // The unit is the one this spec renders; its secret file is what the spec holds.
        st.releases[0].file.text = render(&s).expect("renders");
        st.target_text = Some(st.releases[0].file.text.clone());
        let written = st.releases[0].file.modified;
        st.target_status.active_enter_timestamp_us =
            (written.duration_since(std::time::UNIX_EPOCH).expect("time") + Duration::from_secs(10)).as_micros() as u64;
        st.secrets = vec![secret_file(&s, "v1", written)];
        assert!(actions(&s, &st).is_empty(), "converged");
        // Killed after writing a new secret file, before the restart: the release runs old
        // secrets, so it is restarted.
        st.secrets[0].modified = written + Duration::from_secs(60);
        assert_eq!(actions(&s, &st), ["restart app-v1.service"]);
        // A secret file others could read is written again (and the release restarted).
        st.secrets[0].modified = written;
        st.secrets[0].private = false;
        assert_eq!(actions(&s, &st), ["write /u/baton-secrets/app-v1.service.env", "restart app-v1.service"]);
        // A secret file whose unit is gone (killed between the two removals) is removed.
        st.secrets[0].private = true;
        st.secrets.push(secret_file(&s, "v0", written));
        assert_eq!(actions(&s, &st), ["remove /u/baton-secrets/app-v0.service.env"]);
    }

    #[test]
    fn disabled_and_unsupported_migrate_warns() {
        let s = spec("v2", r#","enabled":false"#);
        let st = state(&s, vec![release("v1", true, true, 0)]);
        let p = plan(&s, &st, Some(&render(&s).expect("r")), Migrate::Unsupported).expect("plan");
        let acts: Vec<_> = p.steps.iter().map(Step::describe).collect();
        assert_eq!(
            acts,
            ["write /u/app-v2.service", "start app-v2.service", "disable app-v1.service", "stop app-v1.service"]
        );
        assert!(p.warnings[0].contains("tcp_migrate_req"));
    }
}
