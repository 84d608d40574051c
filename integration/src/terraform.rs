//! A Terraform working directory whose `terraform` commands run inside a sandbox (so the
//! provider talks to the sandbox's real systemd): the real terraform CLI from `PATH`, offline,
//! with its own `TF_CLI_CONFIG_FILE` (`dev_overrides` to the built provider) and its home and
//! data directory under the cargo target directory (outside the sandbox's private tmpfs paths).
//! A missing `terraform` fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{bin, bin_dir, terraform_command, Host};

/// The `terraform {}` and `provider "baton" {}` blocks every configuration starts with.
pub const HEADER: &str = r#"terraform {
  required_providers {
    baton = {
      source = "baton/baton"
    }
  }
}

provider "baton" {}
"#;

/// The terraform CLI on the host's `PATH`; a missing one fails loudly.
pub fn terraform_path() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("terraform"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("terraform is not installed (not on PATH): the Terraform end-to-end tests need it"))
}

/// Writes a CLI config file (for `TF_CLI_CONFIG_FILE`) whose `dev_overrides` point
/// `baton/baton` at this build's provider: terraform runs offline, and the user's own config is
/// never read or edited.
pub fn write_cli_config(rc: &Path) {
    let provider = bin("terraform-provider-baton");
    let overrides = provider.parent().map(Path::to_path_buf).unwrap_or_else(bin_dir);
    std::fs::write(
        rc,
        format!(
            "provider_installation {{\n  dev_overrides {{\n    \"baton/baton\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
            overrides.display()
        ),
    )
    .expect("write the CLI config");
}

/// A Terraform working directory (`<target>/tmp/tf-<label>-<pid>`) run inside `host`'s sandbox.
#[derive(Debug)]
pub struct Tf<'a> {
    host: &'a Host,
    dir: PathBuf,
    rc: PathBuf,
    terraform: PathBuf,
}

impl<'a> Tf<'a> {
    /// A fresh directory with a CLI config that takes `baton/baton` from the built provider.
    pub fn new(host: &'a Host, label: &str) -> Tf<'a> {
        let root = crate::ansible::target_dir().join("tmp").join(format!("tf-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("home")).expect("create the terraform dir");
        let root = std::fs::canonicalize(&root).expect("the terraform dir");
        let rc = root.join("terraformrc");
        write_cli_config(&rc);
        Tf { host, dir: root, rc, terraform: terraform_path() }
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `main.tf`.
    pub fn write(&self, main_tf: &str) {
        std::fs::write(self.dir.join("main.tf"), main_tf).expect("write main.tf");
    }

    /// `terraform` inside the sandbox, in this directory with its CLI config, to add arguments
    /// and environment to.
    pub fn command(&self) -> Command {
        terraform_command(self.host, &self.terraform, &self.dir, &self.rc)
    }

    /// Runs `terraform <args>` inside the sandbox.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run terraform inside the sandbox")
    }

    /// Runs and returns stdout; panics with everything terraform said when it fails.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "terraform {args:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `terraform apply -auto-approve`; its stdout.
    #[track_caller]
    pub fn apply(&self) -> String {
        self.ok(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform plan -detailed-exitcode`: (exit code, output). 0: no changes, 2: changes.
    #[track_caller]
    pub fn plan(&self) -> (i32, String) {
        let out = self.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let code = out.status.code().unwrap_or(-1);
        assert!(code == 0 || code == 2, "terraform plan failed ({code}):\n{text}");
        (code, text)
    }

    /// Asserts that a plan shows no changes.
    #[track_caller]
    pub fn assert_no_changes(&self, when: &str) {
        let (code, text) = self.plan();
        assert_eq!(code, 0, "{when}: the plan must be empty:\n{text}");
        assert!(text.contains("No changes."), "{when}:\n{text}");
    }

    /// `terraform state show <address>`.
    #[track_caller]
    pub fn state_show(&self, address: &str) -> String {
        self.ok(&["state", "show", "-no-color", address])
    }
}

impl Drop for Tf<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
