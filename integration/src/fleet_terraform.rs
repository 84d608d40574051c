//! The real `terraform` CLI against a fleet (`fleet.rs`) over real SSH, for the remote
//! provider's tests (`terraform_fleet.rs`, `terraform_ssh.rs`): a working directory of its own
//! with a CLI config whose `dev_overrides` point at this build's `terraform-provider-baton`
//! (offline), every command run in the fleet's controller network namespace, the provider block
//! and `for_each` resources written from a few parameters, and the assertions those tests share
//! on terraform's output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::bin;
use crate::fleet::Fleet;
pub use crate::terraform::{terraform_path, write_cli_config};

/// Where the provider installs `baton` on the hosts in these tests: each host's private `/run`.
pub const INSTALL_DIR: &str = "/run/baton-tf";
/// The demo's port on every host.
pub const PORT: u16 = 8080;
/// The service the tests deploy.
pub const SERVICE: &str = "web";

/// The `baton` the provider uploads: the test build, stripped of debug info (the debug build
/// is ~100 MB).
fn small_baton(root: &Path) -> PathBuf {
    let out = root.join("baton");
    let st = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(bin("baton"))
        .status()
        .expect("run strip (binutils)");
    assert!(st.success(), "strip of {} failed", bin("baton").display());
    out
}

/// A Terraform working directory whose commands run in the fleet's controller namespace.
#[derive(Debug)]
pub struct FleetTf<'a> {
    /// The fleet.
    pub fleet: &'a Fleet,
    /// The working directory (removed on drop).
    pub dir: PathBuf,
    rc: PathBuf,
    terraform: PathBuf,
    /// The `baton` the provider installs (`baton_binary`).
    pub baton: PathBuf,
    /// `ssh.timeout_sec`: generous, the machine may be busy (2 cores, other suites running).
    pub timeout_sec: u32,
    /// `SSH_AUTH_SOCK` for terraform (and so the provider and its ssh); None: unset.
    pub ssh_auth_sock: Option<PathBuf>,
    /// `TF_LOG=DEBUG` into `<dir>/terraform.log` (also with `BATON_TF_DEBUG` set).
    pub debug_log: bool,
}

impl<'a> FleetTf<'a> {
    /// A fresh working directory under `<target>/tmp`, `label` in its name.
    pub fn new(fleet: &'a Fleet, label: &str) -> FleetTf<'a> {
        let root = crate::ansible::target_dir().join("tmp").join(format!("tf-fleet-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("home")).expect("create the terraform dir");
        let rc = root.join("terraformrc");
        write_cli_config(&rc);
        let baton = small_baton(&root);
        FleetTf {
            fleet,
            dir: root,
            rc,
            terraform: terraform_path(),
            baton,
            timeout_sec: 30,
            ssh_auth_sock: None,
            debug_log: false,
        }
    }

    /// The `terraform` block and the provider block with `ssh_lines` inside its `ssh` block
    /// (`timeout_sec` is added).
    pub fn provider_with(&self, ssh_lines: &str) -> String {
        format!(
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
{ssh_lines}    timeout_sec = {timeout}
  }}
}}
"#,
            baton = self.baton.display(),
            timeout = self.timeout_sec,
        )
    }

    /// The provider block: the fleet's key and known_hosts (`known_hosts` text overrides it),
    /// no agent.
    pub fn provider(&self, known_hosts: Option<&Path>) -> String {
        let known = known_hosts.map_or_else(|| self.fleet.known_hosts(), Path::to_path_buf);
        self.provider_with(&format!(
            "    user        = \"root\"\n    private_key = file(\"{key}\")\n    known_hosts = file(\"{known}\")\n    \
             agent       = false\n",
            key = self.fleet.ssh_key().display(),
            known = known.display(),
        ))
    }

    /// `baton_service.web` with `for_each` over the hosts of `hosts` (by index): the demo app
    /// at `version`, with `extra` attribute lines.
    pub fn resources(&self, version: &str, hosts: &[usize], extra: &str) -> String {
        let mut map = String::new();
        for &i in hosts {
            let h = &self.fleet.hosts()[i];
            map.push_str(&format!("    {} = \"{}\"\n", h.name, h.addr));
        }
        format!(
            r#"
locals {{
  hosts = {{
{map}  }}
}}

resource "baton_service" "{SERVICE}" {{
  for_each         = local.hosts
  host             = each.value
  name             = "{SERVICE}"
  version          = "{version}"
  exec_start       = ["{demo}", "--listen", "0.0.0.0", "--port", "{PORT}", "--version", "{version}", "--work-ms", "5"]
  port             = {PORT}
  timeout_stop_sec = 10
  health = {{
    http        = "/health"
    timeout_sec = 30
    interval_ms = 100
  }}
{extra}}}
"#,
            demo = bin("baton-demo").display(),
        )
    }

    /// Writes `main.tf`.
    pub fn write_main(&self, text: &str) {
        std::fs::write(self.dir.join("main.tf"), text).expect("write main.tf");
    }

    /// The configuration: the demo app at `version` on every host of `hosts` (by index).
    pub fn write(&self, version: &str, hosts: &[usize], known_hosts: Option<&Path>) {
        self.write_main(&format!("{}{}", self.provider(known_hosts), self.resources(version, hosts, "")));
    }

    /// Runs `terraform args` in the controller namespace.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.fleet.controller_command(&self.terraform);
        if self.debug_log || std::env::var_os("BATON_TF_DEBUG").is_some() {
            cmd.env("TF_LOG", "DEBUG").env("TF_LOG_PATH", self.dir.join("terraform.log"));
        } else {
            cmd.env_remove("TF_LOG");
        }
        match &self.ssh_auth_sock {
            Some(sock) => cmd.env("SSH_AUTH_SOCK", sock),
            None => cmd.env_remove("SSH_AUTH_SOCK"),
        };
        cmd.arg(format!("-chdir={}", self.dir.display()))
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &self.rc)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("HOME", self.dir.join("home"))
            .env("TF_DATA_DIR", self.dir.join(".terraform"))
            .output()
            .expect("run terraform in the controller namespace")
    }

    /// stdout and stderr, with terraform's line wrapping undone (every run of white space one
    /// space), so that messages can be searched.
    pub fn text(out: &Output) -> String {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// `terraform args`, which must succeed: its output.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = Self::text(&out);
        assert!(out.status.success(), "terraform {args:?} failed ({}):\n{text}", out.status);
        text
    }

    /// `terraform apply -auto-approve`, which must succeed.
    #[track_caller]
    pub fn apply(&self) -> String {
        self.ok(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform plan -detailed-exitcode`: (exit code, output).
    #[track_caller]
    pub fn plan(&self) -> (i32, String) {
        let out = self.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
        let text = Self::text(&out);
        let code = out.status.code().unwrap_or(-1);
        assert!(code == 0 || code == 2, "terraform plan failed ({code}):\n{text}");
        (code, text)
    }

    /// The plan is empty.
    #[track_caller]
    pub fn assert_no_changes(&self, when: &str) {
        let (code, text) = self.plan();
        assert_eq!(code, 0, "{when}: the plan must be empty:\n{text}");
        assert!(text.contains("No changes."), "{when}:\n{text}");
    }

    /// Asserts the plan changes exactly the resource of host `index`, and returns the plan.
    #[track_caller]
    pub fn assert_plan_only_for(&self, index: usize, when: &str) -> String {
        let (code, text) = self.plan();
        assert_eq!(code, 2, "{when}: the plan must show the drift:\n{text}");
        let name = &self.fleet.hosts()[index].name;
        assert!(
            text.contains(&format!("baton_service.{SERVICE}[\"{name}\"] will be updated in-place")),
            "{when}:\n{text}"
        );
        assert!(text.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{when}: only {name} changes:\n{text}");
        text
    }
}

impl Drop for FleetTf<'_> {
    fn drop(&mut self) {
        // The disk is small: the uploaded baton always goes; the rest stays after a failure
        // (or with BATON_TF_DEBUG) for a look at terraform.log.
        let _ = std::fs::remove_file(&self.baton);
        if !std::thread::panicking() && std::env::var_os("BATON_TF_DEBUG").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `script` on host `index` over ssh from the controller; panics with ssh's output (and a
/// verbose second try) on failure.
#[track_caller]
pub fn on_host(fleet: &Fleet, index: usize, script: &str) -> String {
    let out = fleet.ssh(index, script).output().expect("run ssh");
    if !out.status.success() {
        let again = fleet
            .controller_command("ssh")
            .args(fleet.ssh_options())
            .args(["-v", "-o", "LogLevel=DEBUG"])
            .arg(format!("root@{}", fleet.hosts()[index].addr))
            .arg("--")
            .arg(script)
            .output()
            .expect("run ssh");
        panic!(
            "on {}: {script:?} failed ({}): {}{}\nagain, verbose ({}):\n{}{}",
            fleet.hosts()[index].name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            again.status,
            String::from_utf8_lossy(&again.stdout),
            String::from_utf8_lossy(&again.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
