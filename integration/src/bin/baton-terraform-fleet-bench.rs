//! `make bench`, the remote Terraform part (issue 15): `terraform-provider-baton` managing a
//! fleet of 20 sandboxed hosts over real SSH from the fleet's controller namespace, one provider
//! block, `for_each` over 100 services (5 per host). Adds its section to `bench-report.md`
//! (replacing an earlier one) and prints it:
//! - the create of the 100 services (the provider installs `baton` on every host first);
//! - the no-op plan of the 100 services over 20 hosts (goal: at most 3 s), beside the same plan
//!   without refresh (terraform, the provider's start and the 100 plan calls, no read: what is
//!   left of the plan that reads cannot make faster) and the remote commands one plan ran (the
//!   provider's first command to a host reads all its services, and reads of a host queued at
//!   the same time share one command);
//! - a version bump of 20 services, one per host (20 handovers);
//! - the read cost of one resource: `baton observe` over the multiplexed SSH connection against
//!   the same read run on the host itself, and per resource when one command reads a host's 5;
//! - the destroy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use baton_integration::bin;
use baton_integration::fleet::Fleet;

const REPORT: &str = "bench-report.md";
const HEADING: &str = "## Terraform over SSH: one provider block, a 20-host fleet";
const HOSTS: usize = 20;
const PER_HOST: usize = 5;
const BASE_PORT: u16 = 8080;
const INSTALL_DIR: &str = "/run/baton-tf";
/// Reads per kind for the per-resource cost.
const READS: usize = 40;
/// No-op plans timed (the median is reported).
const PLANS: usize = 3;

fn main() {
    if let Err(e) = run() {
        eprintln!("terraform fleet bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn terraform_path() -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("terraform"))
        .find(|p| p.is_file())
        .context("terraform is not installed (not on PATH)")
}

struct Tf<'a> {
    fleet: &'a Fleet,
    dir: PathBuf,
    rc: PathBuf,
    terraform: PathBuf,
    baton: PathBuf,
}

impl Tf<'_> {
    fn run(&self, args: &[&str]) -> Result<(Output, Duration)> {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Result<(Output, Duration)> {
        let t = Instant::now();
        let out = self
            .fleet
            .controller_command(&self.terraform)
            .arg(format!("-chdir={}", self.dir.display()))
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &self.rc)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("HOME", self.dir.join("home"))
            .env("TF_DATA_DIR", self.dir.join(".terraform"))
            .env_remove("TF_LOG")
            .env_remove("SSH_AUTH_SOCK")
            .envs(env.iter().copied())
            .output()
            .context("run terraform")?;
        Ok((out, t.elapsed()))
    }

    fn ok(&self, args: &[&str]) -> Result<(String, Duration)> {
        let (out, took) = self.run(args)?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("terraform {args:?} failed ({}):\n{text}", out.status);
        }
        Ok((text, took))
    }

    /// The configuration: `version` for the services of index 0 (one per host), v1 for the others.
    fn write(&self, bumped: &str) -> Result<()> {
        let mut services = String::new();
        for h in self.fleet.hosts() {
            for k in 0..PER_HOST {
                let version = if k == 0 { bumped } else { "v1" };
                let _ = writeln!(
                    services,
                    "    \"{name}-svc{k}\" = {{ host = \"{addr}\", port = {port}, version = \"{version}\" }}",
                    name = h.name,
                    addr = h.addr,
                    port = BASE_PORT + k as u16,
                );
            }
        }
        let main = format!(
            r#"terraform {{
  required_providers {{
    baton = {{
      source = "baton/baton"
    }}
  }}
}}

provider "baton" {{
  install_dir  = "{INSTALL_DIR}"
  baton_binary = "{baton}"
  ssh {{
    user        = "root"
    private_key = file("{key}")
    known_hosts = file("{known}")
    agent       = false
    timeout_sec = 5
  }}
}}

locals {{
  services = {{
{services}  }}
}}

resource "baton_service" "svc" {{
  for_each         = local.services
  host             = each.value.host
  name             = "svc${{each.value.port}}"
  version          = each.value.version
  exec_start       = ["{demo}", "--listen", "0.0.0.0", "--port", tostring(each.value.port), "--version", each.value.version]
  port             = each.value.port
  timeout_stop_sec = 10
  health = {{
    http        = "/health"
    timeout_sec = 60
    interval_ms = 100
  }}
}}
"#,
            baton = self.baton.display(),
            key = self.fleet.ssh_key().display(),
            known = self.fleet.known_hosts().display(),
            demo = bin("baton-demo").display(),
        );
        std::fs::write(self.dir.join("main.tf"), main).context("write main.tf")
    }
}

/// The read costs of one resource (medians of `READS`).
struct ReadCosts {
    /// `baton observe` of one service over one multiplexed SSH connection (a read alone).
    remote: Duration,
    /// The same run on the host itself.
    local: Duration,
    /// `baton observe` of the host's `PER_HOST` services in one command over SSH, per service
    /// (the reads of a host batched).
    batched: Duration,
}

/// Times `READS` runs of `baton observe` of one service: over one multiplexed SSH connection
/// (as the provider reads) and on the host itself; and of the host's services in one command.
fn read_costs(fleet: &Fleet, dir: &Path) -> Result<ReadCosts> {
    let host = &fleet.hosts()[0];
    let baton = format!("{INSTALL_DIR}/{}/baton", env!("CARGO_PKG_VERSION"));
    let ctl = dir.join("ctl");
    let mut opts = fleet.ssh_options();
    opts.extend(["-o".into(), format!("ControlPath={}", ctl.display())]);
    let st = fleet
        .controller_command("ssh")
        .args(&opts)
        .args(["-M", "-N", "-f", "-o", "ControlPersist=60"])
        .arg(format!("root@{}", host.addr))
        .stdin(Stdio::null())
        .status()
        .context("start the ssh master")?;
    if !st.success() {
        bail!("the ssh master to {} did not start", host.name);
    }
    let observe = format!("{baton} observe --unit-dir /etc/systemd/system svc{BASE_PORT}");
    let all: Vec<String> = (0..PER_HOST).map(|k| format!("svc{}", BASE_PORT + k as u16)).collect();
    let observe_all = format!("{baton} observe --unit-dir /etc/systemd/system {}", all.join(" "));
    let mut remote = Vec::new();
    let mut local = Vec::new();
    let mut batched = Vec::new();
    for _ in 0..READS {
        let t = Instant::now();
        let out = fleet
            .controller_command("ssh")
            .args(&opts)
            .arg(format!("root@{}", host.addr))
            .arg(&observe_all)
            .stdin(Stdio::null())
            .output()?;
        batched.push(t.elapsed() / PER_HOST as u32);
        let objects = serde_json::Deserializer::from_slice(&out.stdout).into_iter::<serde_json::Value>().count();
        if !out.status.success() || objects != PER_HOST {
            bail!("remote observe of {PER_HOST} services failed: {}", String::from_utf8_lossy(&out.stdout));
        }
        let t = Instant::now();
        let out = fleet
            .controller_command("ssh")
            .args(&opts)
            .arg(format!("root@{}", host.addr))
            .arg(&observe)
            .stdin(Stdio::null())
            .output()?;
        remote.push(t.elapsed());
        if !out.status.success() {
            bail!("remote observe failed: {}", String::from_utf8_lossy(&out.stdout));
        }
        let t = Instant::now();
        let out = host.sandbox.command(&baton).args(["observe", &format!("svc{BASE_PORT}")]).output()?;
        local.push(t.elapsed());
        if !out.status.success() {
            bail!("local observe failed: {}", String::from_utf8_lossy(&out.stdout));
        }
    }
    let _ = fleet
        .controller_command("ssh")
        .args(&opts)
        .args(["-O", "exit"])
        .arg(format!("root@{}", host.addr))
        .stderr(Stdio::null())
        .status();
    Ok(ReadCosts { remote: median(remote), local: median(local), batched: median(batched) })
}

/// The remote reads one plan made, from the provider's debug log: commands, services asked by
/// name, and services read ahead (the other services of the host, read by a host's first command
/// for the reads to come).
fn batching(log: &str) -> (usize, usize, usize) {
    let mut commands = 0;
    let mut asked = 0;
    let mut ahead = 0;
    for rest in log.lines().filter_map(|l| l.split("baton: read ").nth(1)) {
        commands += 1;
        asked += rest.split_whitespace().next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        ahead += rest
            .split_once("command (")
            .and_then(|(_, tail)| tail.split_whitespace().next()?.parse::<usize>().ok())
            .unwrap_or(0);
    }
    (commands, asked, ahead)
}

fn count(text: &str, what: &str) -> String {
    text.lines().find(|l| l.contains(what)).unwrap_or("").trim().to_owned()
}

fn run() -> Result<()> {
    let terraform = terraform_path()?;
    eprintln!("booting {HOSTS} hosts ...");
    let fleet = Fleet::boot(HOSTS)?;
    let dir = PathBuf::from("target/terraform-fleet-bench").canonicalize().unwrap_or_else(|_| {
        let _ = std::fs::create_dir_all("target/terraform-fleet-bench");
        PathBuf::from("target/terraform-fleet-bench").canonicalize().unwrap_or_default()
    });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("home"))?;
    let rc = dir.join("terraformrc");
    let provider_dir = bin("terraform-provider-baton").parent().map(Path::to_path_buf).context("provider dir")?;
    std::fs::write(
        &rc,
        format!(
            "provider_installation {{\n  dev_overrides {{\n    \"baton/baton\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
            provider_dir.display()
        ),
    )?;
    let baton = dir.join("baton");
    let st = Command::new("strip").arg("--strip-debug").arg("-o").arg(&baton).arg(bin("baton")).status()?;
    if !st.success() {
        bail!("strip failed");
    }
    let size = std::fs::metadata(&baton)?.len();
    let tf = Tf { fleet: &fleet, dir: dir.clone(), rc, terraform, baton };

    tf.write("v1")?;
    eprintln!("create ...");
    let (out, create) = tf.ok(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    let created = count(&out, "Apply complete!");
    eprintln!("no-op plans ...");
    let mut plans = Vec::new();
    for _ in 0..PLANS {
        let (out, took) = tf.ok(&["plan", "-input=false", "-no-color"])?;
        if !out.contains("No changes.") {
            bail!("the no-op plan is not empty:\n{out}");
        }
        plans.push(took);
    }
    let plan = median(plans.clone());
    let mut bare = Vec::new();
    for _ in 0..PLANS {
        let (out, took) = tf.ok(&["plan", "-refresh=false", "-input=false", "-no-color"])?;
        if !out.contains("No changes.") {
            bail!("the no-op plan without refresh is not empty:\n{out}");
        }
        bare.push(took);
    }
    let bare = median(bare);
    let log = dir.join("provider.log");
    let (out, _) = tf.run_env(
        &["plan", "-input=false", "-no-color"],
        &[("TF_LOG_PROVIDER", Path::new("DEBUG")), ("TF_LOG_PATH", &log)],
    )?;
    if !out.status.success() {
        bail!("the logged plan failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (commands, asked, ahead) = batching(&std::fs::read_to_string(&log).context("read the provider log")?);
    eprintln!("bump ...");
    tf.write("v2")?;
    let (out, bump) = tf.ok(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    let bumped = count(&out, "Apply complete!");
    eprintln!("read costs ...");
    let costs = read_costs(&fleet, &dir)?;
    eprintln!("destroy ...");
    let (out, destroy) = tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    let destroyed = count(&out, "Destroy complete!");
    fleet.teardown()?;

    let mut s = String::new();
    writeln!(s, "{HEADING}\n")?;
    writeln!(
        s,
        "{HOSTS} sandboxed hosts (`integration/src/fleet.rs`), the real terraform in the controller namespace, one \
         provider block (`ssh` with the fleet's key and known_hosts), {} services (`for_each`, {PER_HOST} per host, \
         the demo app), terraform's default parallelism (10). The provider keeps one multiplexed SSH connection \
         per host for a run; its first command to a host reads every service there (`baton observe --all`) for the \
         reads to come, and reads of a host queued at the same time share one command.\n",
        HOSTS * PER_HOST
    )?;
    writeln!(s, "| what | wall time | result |\n|---|---|---|")?;
    writeln!(
        s,
        "| create {} services (baton, {:.1} MB, installed on {HOSTS} hosts first) | {:.1} s | {created} |",
        HOSTS * PER_HOST,
        size as f64 / 1e6,
        secs(create)
    )?;
    writeln!(
        s,
        "| no-op plan of {} services over {HOSTS} hosts (median of {PLANS}; goal ≤ 3 s) | {:.2} s | No changes; runs: {} |",
        HOSTS * PER_HOST,
        secs(plan),
        plans.iter().map(|d| format!("{:.2} s", secs(*d))).collect::<Vec<_>>().join(", ")
    )?;
    writeln!(
        s,
        "| the same plan without refresh (`-refresh=false`: terraform, the provider's start, 100 plan calls; no \
         read) | {:.2} s | the reads' share of the plan: {:.2} s |",
        secs(bare),
        secs(plan) - secs(bare)
    )?;
    writeln!(
        s,
        "| remote reads of one plan (provider log) | | {commands} `baton observe` commands over {HOSTS} hosts: \
         {asked} services asked by name, {ahead} read ahead |"
    )?;
    writeln!(
        s,
        "| version bump of {HOSTS} services on {HOSTS} hosts (one handover per host) | {:.1} s | {bumped} |",
        secs(bump)
    )?;
    writeln!(s, "| destroy | {:.1} s | {destroyed} |", secs(destroy))?;
    writeln!(
        s,
        "\nRead cost of one resource (`baton observe`, median of {READS}): {:.1} ms over the multiplexed SSH \
         connection (a new session on the open connection), {:.1} ms run on the host itself; the SSH overhead is \
         {:.1} ms per resource. Read with the host's other {} services in one command (as the provider batches \
         the reads of a host): {:.1} ms per resource.\n",
        secs(costs.remote) * 1000.0,
        secs(costs.local) * 1000.0,
        (secs(costs.remote) - secs(costs.local)) * 1000.0,
        PER_HOST - 1,
        secs(costs.batched) * 1000.0,
    )?;
    print!("{s}");
    baton_integration::write_report_section(Path::new(REPORT), HEADING, &s)?;
    eprintln!("added to {REPORT}");
    Ok(())
}
