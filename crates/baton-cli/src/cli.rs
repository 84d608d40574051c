//! The command line of `baton` (clap), its exit statuses, and what is generated from them: the
//! shell completions and the man pages (committed under `complete/` and `doc/`).

use std::io::Write;
use std::path::PathBuf;

use baton_core::FailureKind;
use clap::{CommandFactory as _, Parser, Subcommand};
use clap_complete::Shell;

/// Zero-downtime version handovers of network services under systemd.
#[derive(Debug, Parser)]
#[command(
    name = "baton",
    version,
    long_about = LONG_ABOUT,
    after_long_help = after_long_help(),
    max_term_width = 100
)]
pub struct Cli {
    /// No progress on stderr, whatever --progress says: only the JSON result on stdout (errors
    /// still go to stderr).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More on stderr: progress even when stderr is not a terminal (unless --progress never),
    /// the unit file's path, the lock file, the bus address, and how long each step took.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const LONG_ABOUT: &str = "Zero-downtime version handovers of network services under systemd.

baton runs each release of a service as its own systemd unit (app-v1.service, app-v2.service). \
A handover starts the new release beside the old one on the same port (both bind with \
SO_REUSEPORT), waits until it is really ready, then enables it and has systemd stop the old one. \
A release that never becomes ready is stopped and the old one keeps serving. The spec is JSON \
(baton schema prints its JSON Schema); the result is JSON on stdout.";

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring a service to its spec: write its unit, hand over to the new release, stop the old.
    Apply {
        /// The JSON spec file, or `-` for stdin (the default).
        #[arg(default_value = "-")]
        file: String,
        /// Plan only: report the actions that would run and touch nothing.
        #[arg(long)]
        check: bool,
        /// Report the text before and after of every unit file written or removed.
        #[arg(long)]
        diff: bool,
        /// Seconds to wait for another run of the same service to finish.
        #[arg(long, default_value_t = 60)]
        lock_timeout: u64,
        /// Directory of the per-service lock files.
        #[arg(long, default_value = baton_core::DEFAULT_LOCK_DIR)]
        lock_dir: PathBuf,
        /// Progress on stderr: auto (when stderr is a terminal, or with -v), always or never.
        #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
        progress: String,
    },
    /// Print the unit file a spec renders to.
    Render {
        /// The JSON spec file, or `-` for stdin (the default).
        #[arg(default_value = "-")]
        file: String,
    },
    /// Print the JSON Schema of the spec (or of the result).
    Schema {
        /// The result's schema instead of the spec's.
        #[arg(long)]
        result: bool,
    },
    /// Show a service's releases: which is active and enabled, its main PID and since when.
    Status {
        /// The service.
        name: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Where unit files live.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
    },
    /// Print a service's releases with the text of each unit file, as JSON: what the Terraform
    /// provider reads on a remote host. Reads only: no lock, no daemon-reload, no write.
    ///
    /// With several names (the provider reads every resource of a host in one command): one
    /// compact JSON object per name and line, in the order given, each the service's releases
    /// or `{"failed": true, "msg": ..., "name": ...}` for one that could not be read; the others
    /// are read all the same, and the exit status is the first failure's. With --all, every
    /// other service with a release in the unit directory follows, in the same form.
    Observe {
        /// The services.
        #[arg(required_unless_present = "all", value_name = "NAME")]
        names: Vec<String>,
        /// Also every other service with a release in the unit directory (after the named ones).
        #[arg(long)]
        all: bool,
        /// Where unit files live.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
    },
    /// Print the spec of a deployed service read back from its unit file, as JSON: what
    /// `terraform import` reads on a remote host. Reads only.
    Adopt {
        /// The service.
        name: String,
        /// Where unit files live.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: String,
    },
    /// Print a shell completion script, e.g. for bash into /etc/bash_completion.d/baton.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page of baton or of one of its commands (roff), or write them all to a directory.
    Man {
        /// The command whose page to print (apply prints baton-apply(1)); none: baton(1).
        #[arg(value_parser = command_names())]
        command: Option<String>,
        /// Write every page (baton.1, baton-apply.1, ...) into this directory instead.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

/// Exit status of a successful run (including `--check` with changes planned).
pub const EXIT_OK: u8 = 0;

/// Exit status of a bad command line (clap's convention): nothing was read or touched.
pub const EXIT_USAGE: u8 = 2;

/// The exit status of each kind of failure.
pub const fn exit_status(kind: FailureKind) -> u8 {
    match kind {
        FailureKind::Failed => 1,
        FailureKind::Refused => 3,
        FailureKind::RolledBack => 4,
        FailureKind::Environment => 5,
    }
}

/// Every exit status with its name and meaning, in order: the source of `--help`'s and the man
/// page's table (the README's repeats it; a test compares them).
pub fn exit_statuses() -> Vec<(u8, &'static str, &'static str)> {
    let mut table = vec![
        (EXIT_OK, "ok", "the service is as the spec asks (with --check: the plan was made)"),
        (EXIT_USAGE, "usage", "bad command line; nothing was read or touched"),
    ];
    for kind in FailureKind::ALL {
        let meaning = match kind {
            FailureKind::Failed => {
                "any failure the other statuses do not cover, e.g. systemd could not stop the old release, a \
                 release restarted in place (same version, new unit text) did not come back, or an internal error \
                 (a bug in baton: the message starts with \"internal error in baton\")"
            }
            FailureKind::Refused => {
                "the spec breaks a rule, its template does not render, a unit file in the way is not baton's, or the \
                 old and new release could not share the port; nothing was touched"
            }
            FailureKind::RolledBack => {
                "the new release did not become ready (or turned unhealthy) and was stopped; the release that \
                 served before still serves"
            }
            FailureKind::Environment => {
                "systemd unreachable, refusing a call or not answering one in time, the lock still held after \
                 --lock-timeout, or the unit or lock directory unreadable or unwritable; the same spec may succeed \
                 later"
            }
        };
        table.push((exit_status(kind), kind.as_str(), meaning));
    }
    table.sort_by_key(|(code, _, _)| *code);
    table
}

fn after_long_help() -> String {
    let mut text = String::from("Exit status:\n");
    for (code, name, meaning) in exit_statuses() {
        text.push_str(&format!("  {code}  {name}: {meaning}\n"));
    }
    text.push_str("\nEvery failure also prints {\"failed\": true, \"msg\": ...} on stdout.");
    text
}

/// The names of the commands that have a man page of their own.
fn command_names() -> Vec<&'static str> {
    vec!["apply", "render", "schema", "status", "observe", "adopt", "completions", "man"]
}

/// The clap command, built (subcommands know their display names, e.g. `baton-apply`), without
/// the `help` command (for the man pages).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Writes the completion script of `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "baton", out);
}

/// Every man page: its file name and roff text. `baton.1` first, then one per command.
pub fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let cmd = command();
    let mut pages = vec![("baton.1".to_owned(), man_page(&cmd, true)?)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        pages.push((man.get_filename(), man_page(sub, false)?));
    }
    Ok(pages)
}

/// The page of `name` (`None`: baton(1)).
pub fn man_page_of(name: Option<&str>) -> std::io::Result<Vec<u8>> {
    let cmd = command();
    match name {
        None => man_page(&cmd, true),
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => man_page(sub, false),
            None => Err(std::io::Error::other(format!("no command {name}"))),
        },
    }
}

fn man_page(cmd: &clap::Command, top: bool) -> std::io::Result<Vec<u8>> {
    use roff::{bold, roman, Roff};
    // The exit statuses get a section of their own below, not clap_mangen's "EXTRA".
    let man = clap_mangen::Man::new(cmd.clone().after_long_help(None::<&str>))
        .source(format!("baton {}", env!("CARGO_PKG_VERSION")))
        .manual("baton manual");
    let mut page = Vec::new();
    man.render(&mut page)?;
    let page = String::from_utf8(page).map_err(std::io::Error::other)?;

    let mut roff = Roff::new();
    if top || cmd.get_name() == "apply" {
        roff.control("SH", ["EXIT STATUS"]);
        for (code, name, meaning) in exit_statuses() {
            roff.control("TP", []);
            roff.text([bold(code.to_string())]);
            roff.text([roman(format!("{name}: {meaning}"))]);
        }
        roff.control("PP", []);
        roff.text([roman("Every failure also prints {\"failed\": true, \"msg\": ...} on stdout.")]);
        roff.control("SH", ["ENVIRONMENT"]);
        roff.control("TP", []);
        roff.text([bold("DBUS_SYSTEM_BUS_ADDRESS")]);
        roff.text([roman(
            "The system bus on which baton talks to systemd (default: unix:path=/var/run/dbus/system_bus_socket).",
        )]);
        for (name, meaning) in baton_core::DBUS_TIMEOUT_VARIABLES {
            roff.control("TP", []);
            roff.text([bold(name)]);
            roff.text([roman(format!("The {meaning}; a whole number from 1 to 3600."))]);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut see_also: Vec<String> = Vec::new();
    if top {
        see_also.extend(command_names().iter().map(|n| format!("baton-{n}(1)")));
    } else {
        see_also.push("baton(1)".to_owned());
    }
    see_also.extend(["systemctl(1)".to_owned(), "systemd.service(5)".to_owned()]);
    roff.text([roman(see_also.join(", "))]);
    // Without the preamble (apostrophe handling) the page already starts with.
    let preamble = Roff::new().render();
    let ours = roff.render();
    let ours = ours.strip_prefix(preamble.as_str()).unwrap_or(&ours);

    let at = page.find("\n.SH VERSION\n").map_or(page.len(), |i| i + 1);
    let mut out = String::with_capacity(page.len() + ours.len());
    out.push_str(&page[..at]);
    out.push_str(ours);
    out.push_str(&page[at..]);
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// Set to rewrite the generated files instead of failing on drift.
    const UPDATE_ENV: &str = "BATON_UPDATE_GENERATED";

    fn crate_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// Every shell with the file its completion script is committed as (in `complete/`).
    fn completion_files() -> Vec<(Shell, &'static str)> {
        vec![
            (Shell::Bash, "baton.bash"),
            (Shell::Zsh, "_baton"),
            (Shell::Fish, "baton.fish"),
            (Shell::Elvish, "baton.elv"),
            (Shell::PowerShell, "_baton.ps1"),
        ]
    }

    /// Compares (or, with `BATON_UPDATE_GENERATED=1`, rewrites) the files of `dir` with
    /// `expected`; returns what drifted. A file in `dir` that is not expected is drift too.
    fn check_dir(dir: &Path, expected: &[(String, Vec<u8>)]) -> Vec<String> {
        let update = std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1");
        let mut drift = Vec::new();
        if update {
            std::fs::create_dir_all(dir).expect("create the directory");
        }
        for (name, text) in expected {
            let path = dir.join(name);
            if std::fs::read(&path).ok().as_deref() != Some(text.as_slice()) {
                if update {
                    std::fs::write(&path, text).expect("write a generated file");
                } else {
                    drift.push(format!("{} differs from what the command line generates", path.display()));
                }
            }
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !expected.iter().any(|(n, _)| *n == name) {
                if update {
                    std::fs::remove_file(entry.path()).expect("remove a stale generated file");
                } else {
                    drift.push(format!("{} is not generated any more", entry.path().display()));
                }
            }
        }
        drift
    }

    #[test]
    fn committed_completions_and_man_pages_match_the_command_line() {
        let completions: Vec<(String, Vec<u8>)> = completion_files()
            .into_iter()
            .map(|(shell, file)| {
                let mut text = Vec::new();
                completions(shell, &mut text);
                (file.to_owned(), text)
            })
            .collect();
        let mut drift = check_dir(&crate_dir().join("complete"), &completions);
        drift.extend(check_dir(&crate_dir().join("doc"), &man_pages().expect("render the man pages")));
        assert!(
            drift.is_empty(),
            "generated files drifted; rewrite them with {UPDATE_ENV}=1 cargo test -p baton-cli:\n{}",
            drift.join("\n")
        );
    }

    #[test]
    fn every_shell_has_a_committed_completion_script() {
        let shells: Vec<Shell> = completion_files().into_iter().map(|(s, _)| s).collect();
        for shell in <Shell as clap::ValueEnum>::value_variants() {
            assert!(shells.contains(shell), "{shell} has no completion file");
        }
    }

    #[test]
    fn man_pages_cover_every_command() {
        let cmd = command();
        let subcommands: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
        assert_eq!(subcommands, command_names());
        let pages = man_pages().expect("pages");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        let mut want = vec!["baton.1".to_owned()];
        want.extend(command_names().iter().map(|n| format!("baton-{n}.1")));
        assert_eq!(names, want);
        let top = String::from_utf8(pages[0].1.clone()).expect("utf-8");
        for needle in
            [r#".SH "EXIT STATUS""#, r#".SH "SEE ALSO""#, "rolled\\-back:", "Zero\\-downtime version handovers"]
        {
            assert!(top.contains(needle), "{needle:?} not in baton.1:\n{top}");
        }
        assert!(!top.contains(".SH EXTRA"), "the exit statuses have their own section");
        assert_eq!(top.matches(".ie \\n(.g").count(), 1, "one preamble:\n{top}");
    }

    #[test]
    fn exit_statuses_are_distinct_and_avoid_the_test_hook() {
        let table = exit_statuses();
        let mut codes: Vec<u8> = table.iter().map(|(c, _, _)| *c).collect();
        codes.dedup();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
        let hook = u8::try_from(baton_core::PAUSE_EXIT_STATUS).expect("an exit status");
        assert!(!codes.contains(&hook));
    }

    #[test]
    fn the_readme_documents_every_exit_status() {
        let readme = std::fs::read_to_string(crate_dir().join("../../README.md")).expect("README.md");
        let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
        for (code, name, _) in exit_statuses() {
            let row = format!("| `{code}` | {name} |");
            assert!(rows.iter().any(|r| r.starts_with(&row)), "the README's exit-status table lacks {row}");
        }
    }
}
