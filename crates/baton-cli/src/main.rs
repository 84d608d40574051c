//! The `baton` command-line front-end: reads a JSON spec, calls the core, prints the contract's
//! result as JSON on stdout (and progress on stderr), and exits with a status that tells the
//! kind of failure apart (see `cli::exit_statuses`). No logic of its own. A panic is a failure
//! too: JSON on stdout and exit status 1 (see `panic`).

mod cli;
mod panic;
mod progress;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use baton_core::spec::{self, RawSpec, MAX_SPEC_BYTES};
use baton_core::{ApplyOptions, Baton, Failure, FailureKind, RunResult};
use clap::error::ErrorKind;
use clap::Parser as _;

use cli::{Cli, Command};
use progress::Reporter;

fn main() -> ExitCode {
    panic::install();
    match panic::catch(main_inner) {
        Ok(code) => code,
        Err(msg) => fail(&Failure::msg(msg)),
    }
}

fn main_inner() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::from(cli::EXIT_OK);
        }
        Err(e) => {
            // clap's message and usage on stderr, exit status 2 (clap's convention); the JSON
            // failure on stdout too, so that a caller that always parses stdout gets one.
            let _ = e.print();
            let msg = match e.kind() {
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
                    format!("usage: baton needs a command: {}; see baton --help", command_list())
                }
                _ => {
                    // clap's message without the usage and the hint that follow it, in one line.
                    let text = e.render().to_string();
                    let lines: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
                    format!("usage: {}", lines.join(" ").trim_start_matches("error: "))
                }
            };
            print_json(&Failure::msg(msg));
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    run(cli)
}

fn command_list() -> String {
    let cmd = cli::command();
    let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
    names.join(", ")
}

/// Prints a failure as the contract's JSON and returns the exit status of its kind.
fn fail(f: &Failure) -> ExitCode {
    print_json(f);
    ExitCode::from(cli::exit_status(f.kind))
}

fn print_json<T: serde::Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

fn run(cli: Cli) -> ExitCode {
    let Cli { quiet, verbose, command } = cli;
    match command {
        Command::Apply { file, check, diff, lock_timeout, lock_dir, progress } => {
            let raw = match read_spec(&file) {
                Ok(raw) => raw,
                Err(e) => return fail(&refused(e)),
            };
            let show = !quiet
                && match progress.as_str() {
                    "always" => true,
                    "never" => false,
                    _ => verbose || std::io::stderr().is_terminal(),
                };
            let mut reporter = Reporter::new(show, verbose);
            if verbose {
                describe(&mut reporter, &raw, &lock_dir, check);
            }
            let opts = ApplyOptions {
                check,
                diff,
                lock_dir,
                lock_timeout: Duration::from_secs(lock_timeout),
                after_step: pause_hook(),
            };
            let result = Baton::system().apply(raw, &opts, &mut |p| reporter.report(p));
            reporter.finish();
            match result {
                RunResult::Ok(outcome) => {
                    print_json(&outcome);
                    ExitCode::from(cli::EXIT_OK)
                }
                RunResult::Failed(failure) => fail(&failure),
            }
        }
        Command::Render { file } => {
            let spec = match read_spec(&file).and_then(|raw| baton_core::validate(raw).map_err(|e| e.to_string())) {
                Ok(s) => s,
                Err(e) => return fail(&refused(e)),
            };
            match baton_core::render_unit(&spec) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::from(cli::EXIT_OK)
                }
                Err(e) => fail(&refused(e)),
            }
        }
        Command::Schema { result } => {
            let schema = if result { schemars::schema_for!(RunResult) } else { schemars::schema_for!(RawSpec) };
            print_json(&schema);
            ExitCode::from(cli::EXIT_OK)
        }
        Command::Status { name, json, unit_dir } => {
            let name = match spec::Ident::parse("name", &name) {
                Ok(n) => n,
                Err(e) => return fail(&refused(e)),
            };
            if verbose {
                eprintln!("baton: unit directory {}; system bus {}", unit_dir.display(), bus_address());
            }
            match Baton::system().status(name.as_str(), &unit_dir) {
                Ok(status) if json => print_json(&status),
                Ok(status) => print!("{}", status.table()),
                Err(e) => return fail(&Failure::msg(baton_core::error_chain(&e)).with_kind(FailureKind::Environment)),
            }
            ExitCode::from(cli::EXIT_OK)
        }
        Command::Observe { names, all, unit_dir } => observe(&names, all, &unit_dir),
        Command::Adopt { name, unit_dir } => match Baton::system().adopt(&name, &unit_dir) {
            Ok(a) => {
                print_json(&serde_json::json!({
                    "spec": a.spec,
                    "exact": a.exact,
                    "active": a.active,
                    "enabled": a.enabled,
                    "unit_path": a.unit_path,
                    "unit_text": a.unit_text,
                    "secret_file": a.secret_file,
                }));
                ExitCode::from(cli::EXIT_OK)
            }
            Err(baton_core::AdoptError::Name(e)) => fail(&refused(e)),
            Err(e) => fail(&Failure::msg(baton_core::error_chain(&e))),
        },
        Command::Completions { shell } => {
            cli::completions(shell, &mut std::io::stdout().lock());
            ExitCode::from(cli::EXIT_OK)
        }
        Command::Man { command, dir } => man(command.as_deref(), dir.as_deref()),
    }
}

/// `baton observe NAME...`: one name prints its JSON (or its failure) as before; several print
/// one compact JSON object per name and line, a failure naming its service, all read over one
/// D-Bus connection. With `--all`, every other service with a release in `unit_dir` follows.
/// The exit status is the first failure's (0 when every name was read).
fn observe(names: &[String], all: bool, unit_dir: &std::path::Path) -> ExitCode {
    let baton = Baton::system();
    let mut status = cli::EXIT_OK;
    let mut names = names.to_vec();
    if all {
        match baton.services(unit_dir) {
            Ok(found) => {
                let others: Vec<String> = found.into_iter().filter(|f| !names.contains(f)).collect();
                names.extend(others);
            }
            Err(e) => return fail(&Failure::msg(baton_core::error_chain(&e)).with_kind(FailureKind::Environment)),
        }
    }
    let one = names.len() == 1 && !all;
    let mut out = std::io::stdout().lock();
    for name in &names {
        let (value, failed) = match observe_one(&baton, name, unit_dir) {
            Ok(seen) => (observed_json(&seen), None),
            Err(mut f) => {
                f.name = Some(name.clone());
                let f = *f;
                (serde_json::to_value(&f).unwrap_or_default(), Some(f.kind))
            }
        };
        if let (Some(kind), cli::EXIT_OK) = (failed, status) {
            status = cli::exit_status(kind);
        }
        let written =
            if one { serde_json::to_writer_pretty(&mut out, &value) } else { serde_json::to_writer(&mut out, &value) };
        if written.is_err() || writeln!(out).is_err() {
            // stdout closed: nobody reads the rest.
            return ExitCode::from(cli::exit_status(FailureKind::Environment));
        }
    }
    ExitCode::from(status)
}

fn observe_one(baton: &Baton, name: &str, unit_dir: &std::path::Path) -> Result<baton_core::Observed, Box<Failure>> {
    let name = spec::Ident::parse("name", name).map_err(|e| Box::new(refused(e)))?;
    baton
        .observe(name.as_str(), unit_dir)
        .map_err(|e| Box::new(Failure::msg(baton_core::error_chain(&e)).with_kind(FailureKind::Environment)))
}

/// `baton observe`'s JSON: `baton status --json` with each release's unit file text and, when
/// the secret files could be read (`secrets_read`), the SHA-256 of its secret environment file
/// (`secret_sha256`, null when it has none): a file changed by hand shows, its values never.
fn observed_json(seen: &baton_core::Observed) -> serde_json::Value {
    let mut releases = Vec::new();
    for r in &seen.status.releases {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("unit_text".to_owned(), seen.unit_text(&r.version).into());
            if seen.secrets_readable() {
                m.insert("secret_sha256".to_owned(), seen.secret_digest(&r.version).into());
            }
        }
        releases.push(v);
    }
    serde_json::json!({
        "name": seen.status.name,
        "active_version": seen.status.active_version,
        "releases": releases,
        "secrets_read": seen.secrets_readable(),
    })
}

/// `baton man`: one page on stdout, or every page into a directory.
fn man(command: Option<&str>, dir: Option<&std::path::Path>) -> ExitCode {
    let Some(dir) = dir else {
        return match cli::man_page_of(command) {
            Ok(page) => {
                let _ = std::io::stdout().lock().write_all(&page);
                ExitCode::from(cli::EXIT_OK)
            }
            Err(e) => fail(&Failure::msg(format!("cannot render the man page: {e}"))),
        };
    };
    let written = cli::man_pages().and_then(|pages| {
        std::fs::create_dir_all(dir)?;
        pages.into_iter().map(|(name, text)| std::fs::write(dir.join(&name), text).map(|()| name)).collect()
    });
    match written {
        Ok(names) => {
            let names: Vec<String> = names;
            eprintln!("baton: wrote {} to {}", names.join(", "), dir.display());
            ExitCode::from(cli::EXIT_OK)
        }
        Err(e) => fail(
            &Failure::msg(format!("cannot write the man pages to {}: {e}", dir.display()))
                .with_kind(FailureKind::Environment),
        ),
    }
}

/// With `-v`: what the run is about to touch.
fn describe(reporter: &mut Reporter, raw: &RawSpec, lock_dir: &std::path::Path, check: bool) {
    // Validated again by the core; here only to name the paths (an invalid spec is reported
    // by the core's own refusal).
    let Ok(spec) = baton_core::validate(raw.clone()) else { return };
    let unit = match spec.release_path() {
        Some(path) => path.display().to_string(),
        None => format!("every release of {} in {}", spec.name, spec.unit_dir.display()),
    };
    reporter.detail(&format!("unit file: {unit} (state {})", spec.state.as_str()));
    if let Some(template) = spec.template_path() {
        reporter.detail(&format!("template: {}", template.display()));
    }
    if !check {
        reporter.detail(&format!("lock file: {}", lock_dir.join(format!("{}.lock", spec.name)).display()));
    }
    reporter.detail(&format!("system bus: {}", bus_address()));
}

fn bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| "the default system bus".to_owned())
}

/// A refusal: bad input, nothing touched.
fn refused(e: impl std::fmt::Display) -> Failure {
    Failure::refused(e.to_string())
}

/// Reads a spec from a file or stdin; the error (a spec that cannot be read or parsed) is
/// refused input.
fn read_spec(file: &str) -> Result<RawSpec, String> {
    let mut buf = Vec::new();
    let limit = MAX_SPEC_BYTES as u64 + 1;
    if file == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the spec from stdin: {e}"))?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut buf))
            .map_err(|e| format!("cannot read the spec file {file}: {e}"))?;
    }
    spec::parse_raw(&buf).map_err(|e| e.to_string())
}

/// The reliability tests' fault injection: with `BATON_PAUSE_AFTER=<step kind>`, a run stops
/// after the first step of that kind and waits there (at most 10 minutes) so that a test can
/// `kill -9` it at exactly that point; nobody killing it, it exits with
/// [`baton_core::PAUSE_EXIT_STATUS`].
fn pause_hook() -> Option<baton_core::AfterStep> {
    use baton_core::{AfterStep, StepDone, PAUSE_AFTER_ENV, PAUSE_EXIT_STATUS};
    let kind = std::env::var(PAUSE_AFTER_ENV).ok()?;
    Some(AfterStep::new(move |step: &StepDone<'_>| {
        if step.kind == kind {
            eprintln!("baton: paused after {} ({PAUSE_AFTER_ENV})", step.action);
            std::thread::sleep(Duration::from_secs(600));
            std::process::exit(PAUSE_EXIT_STATUS);
        }
    }))
}
