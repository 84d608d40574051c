//! The systemd unit file format, known here and nowhere else: escaping values ([`escape`]),
//! rendering a release's unit from a spec ([`render`]), parsing a unit file into sections and
//! directives ([`parse`]) and reading a spec back from a unit ([`readback`]).
//!
//! | module | owns |
//! |---|---|
//! | [`escape`] | each quote function beside its unquote (`ExecStart=`, `Environment=`, `%`, `$`) |
//! | [`render`] | the unit text from a validated spec (minijinja, limits, checks) |
//! | [`parse`] | a unit's lines as sections and directives, baton's marks |
//! | [`readback`] | a spec from a unit file, by section and key (import) |
//! | [`instance`] | instance units: the template `<name>@.service` and each release's drop-in |
//! | [`socket`] | the shared socket unit of socket mode (`<name>.socket`) |

pub(crate) mod escape;
pub(crate) mod instance;
pub(crate) mod parse;
pub(crate) mod readback;
pub(crate) mod render;
pub(crate) mod socket;

/// The `[Unit]` key that marks a unit file as a release of a baton service.
pub(crate) const MARK_SERVICE: &str = "X-Baton-Service";
/// The `[Unit]` key that names the release a unit file belongs to.
pub(crate) const MARK_VERSION: &str = "X-Baton-Version";
