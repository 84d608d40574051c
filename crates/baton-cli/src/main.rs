//! The `baton` command-line front-end: reads a JSON spec, calls the core, prints the contract's
//! result as JSON on stdout (and, on a terminal, progress on stderr). No logic of its own.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use baton_core::handover::{ApplyOptions, Progress};
use baton_core::result::{Failure, RunResult};
use baton_core::spec::{self, RawSpec, MAX_SPEC_BYTES};
use baton_core::systemd::dbus::DbusSystemd;
use clap::{Parser, Subcommand};

/// Zero-downtime version handovers of SO_REUSEPORT services under systemd.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring a service to its spec: write its unit, hand over to the new release, stop the old.
    Apply {
        /// The JSON spec file, or `-` for stdin (the default).
        #[arg(default_value = "-")]
        file: String,
        /// Plan only: report the actions that would run and touch nothing.
        #[arg(long)]
        check: bool,
        /// Report the unit text before and after.
        #[arg(long)]
        diff: bool,
        /// Seconds to wait for another run of the same service to finish.
        #[arg(long, default_value_t = 60)]
        lock_timeout: u64,
        /// Directory of the per-service lock files.
        #[arg(long, default_value = baton_core::lock::DEFAULT_DIR)]
        lock_dir: PathBuf,
        /// Progress on stderr: auto (when stderr is a terminal), always or never.
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
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            let msg = e.render().to_string();
            let first = msg.lines().next().unwrap_or("bad arguments").trim_start_matches("error: ");
            return fail(&Failure::msg(format!("usage: {first}")));
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => fail(&Failure::msg(format!("{e:#}"))),
    }
}

/// Prints a failure as the contract's JSON and returns exit status 1.
fn fail(f: &Failure) -> ExitCode {
    print_json(&f);
    ExitCode::FAILURE
}

fn print_json<T: serde::Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Apply { file, check, diff, lock_timeout, lock_dir, progress } => {
            let raw = match read_spec(&file)? {
                Ok(raw) => raw,
                Err(e) => return Ok(fail(&Failure::msg(e.to_string()))),
            };
            let show = match progress.as_str() {
                "always" => true,
                "never" => false,
                _ => std::io::stderr().is_terminal(),
            };
            let opts = ApplyOptions { check, diff, lock_dir, lock_timeout: Duration::from_secs(lock_timeout) };
            let mut reporter = Reporter::new(show);
            let result = baton_core::run::apply(raw, &opts, &mut |p| reporter.report(p));
            reporter.finish();
            print_json(&result);
            Ok(match result {
                RunResult::Ok(_) => ExitCode::SUCCESS,
                RunResult::Failed(_) => ExitCode::FAILURE,
            })
        }
        Command::Render { file } => {
            let spec = match read_spec(&file)?.and_then(|raw| raw.validate()) {
                Ok(s) => s,
                Err(e) => return Ok(fail(&Failure::msg(e.to_string()))),
            };
            match baton_core::render::render(&spec) {
                Ok(text) => {
                    print!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(fail(&Failure::msg(e.to_string()))),
            }
        }
        Command::Schema { result } => {
            let schema = if result { schemars::schema_for!(RunResult) } else { schemars::schema_for!(RawSpec) };
            print_json(&schema);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { name, json, unit_dir } => {
            let name = match spec::Ident::parse("name", &name) {
                Ok(n) => n,
                Err(e) => return Ok(fail(&Failure::msg(e.to_string()))),
            };
            let sd = DbusSystemd::connect()?;
            let status = baton_core::status::read(&sd, &unit_dir, name.as_str())?;
            if json {
                print_json(&status);
            } else {
                print!("{}", baton_core::status::table(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads a spec from a file or stdin; an I/O error is the outer error, a bad spec the inner.
fn read_spec(file: &str) -> anyhow::Result<Result<RawSpec, spec::SpecError>> {
    let mut buf = Vec::new();
    let limit = MAX_SPEC_BYTES as u64 + 1;
    if file == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut buf).context("cannot read the spec from stdin")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut buf))
            .with_context(|| format!("cannot read the spec file {file}"))?;
    }
    Ok(spec::parse_raw(&buf))
}

/// Prints progress lines to stderr with the elapsed time.
#[derive(Debug)]
struct Reporter {
    enabled: bool,
    started: std::time::Instant,
    waiting: bool,
    tty: bool,
    last_wait_line: Option<std::time::Instant>,
}

impl Reporter {
    fn new(enabled: bool) -> Self {
        Reporter {
            enabled,
            started: std::time::Instant::now(),
            waiting: false,
            tty: std::io::stderr().is_terminal(),
            last_wait_line: None,
        }
    }

    fn report(&mut self, p: Progress) {
        if !self.enabled {
            return;
        }
        let t = self.started.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        match p {
            Progress::Step(s) => {
                self.clear_wait(&mut err);
                let _ = writeln!(err, "[{t:6.1}s] {s}");
            }
            Progress::Done(_) => {}
            Progress::Waiting { what, elapsed, limit } => {
                let line = format!(
                    "[{t:6.1}s]   waiting: {what} ({:.1} s / {:.0} s)",
                    elapsed.as_secs_f64(),
                    limit.as_secs_f64()
                );
                if self.tty {
                    let _ = write!(err, "\r\x1b[2K{line}");
                    self.waiting = true;
                } else if self.last_wait_line.is_none_or(|l| l.elapsed() >= Duration::from_secs(1)) {
                    // Not a terminal: one line a second at most.
                    let _ = writeln!(err, "{line}");
                    self.last_wait_line = Some(std::time::Instant::now());
                }
            }
        }
    }

    fn clear_wait(&mut self, err: &mut impl Write) {
        if self.waiting {
            let _ = writeln!(err);
            self.waiting = false;
        }
    }

    fn finish(&mut self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            self.clear_wait(&mut err);
            let _ = writeln!(err, "[{:6.1}s] done", self.started.elapsed().as_secs_f64());
        }
    }
}
