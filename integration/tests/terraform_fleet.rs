//! `terraform-provider-baton` managing remote hosts over real SSH (issue 15): the real terraform
//! CLI, offline (`dev_overrides` in a CLI config file of the test's own), runs in the fleet's
//! controller network namespace (`integration/src/fleet.rs`), with one provider block whose
//! `ssh` block holds the fleet's key and known_hosts, and `baton_service` with `for_each` over
//! the hosts.
//!
//! `ten_hosts_with_for_each`, one fleet of 10 hosts, step by step:
//! 1. create on every host (the provider installs its `baton` on each: none is there), then an
//!    empty plan;
//! 2. plan and refresh change nothing on any host: unit files, unit states and systemd's count
//!    of installed jobs are the same before and after;
//! 3. a second apply installs nothing (the installed binary is the same file);
//! 4. a version bump under load on every host (new-connection and keep-alive `baton-load` per
//!    host from the controller): 10 in-place handovers, 0 failed requests;
//! 5. drift on one host: stopped by hand, then a unit edited by hand, then a second release
//!    started beside the active one (`unit` reads `... (also running: ...)`): each shows in the
//!    plan for that host only, and an apply repairs it;
//! 6. a remote import (`host:name`) after `terraform state rm`;
//! 7. destroy leaves no unit file of the service on any host.
//!
//! `unreachable_host_and_wrong_host_key`, 3 hosts: a host whose key in known_hosts is another
//! one is refused with an error naming it while the others converge; an unreachable host fails
//! only its own resource, naming it, and the others hand over.
//!
//! Nothing is skipped: without root, sshd or terraform the test fails.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use baton_integration::fleet::Fleet;
use baton_integration::fleet_ansible::{FleetLoad, LoadBounds};
use baton_integration::fleet_terraform::{
    on_host, terraform_path, write_cli_config, FleetTf, INSTALL_DIR, PORT, SERVICE,
};
use baton_load::Mode;

const MODES: [Mode; 2] = [Mode::NewConnection, Mode::KeepAlive];

/// One fleet at a time: the machine has 2 cores.
static FLEETS: Mutex<()> = Mutex::new(());

/// What a read must not change on a host, read from inside its sandbox (not over ssh, whose
/// own login is not what is measured): the unit files of the service with their content, the
/// units' states, and systemd's count of jobs installed since boot.
fn host_snapshot(fleet: &Fleet, index: usize) -> (String, String) {
    let sb = &fleet.hosts()[index].sandbox;
    let files = sb
        .sh(&format!(
            "cd /etc/systemd/system && for f in {SERVICE}-*.service; do echo \"== $f $(stat -c %Y.%i \"$f\")\"; cat \"$f\"; done; \
             systemctl list-units --all --no-legend --plain '{SERVICE}-*' | awk '{{print $1, $2, $3, $4}}'; \
             systemctl show -p MainPID {SERVICE}-*.service"
        ))
        .expect("read the host's units");
    let jobs = sb.sh("systemctl show -p NInstalledJobs -p NJobs --value").expect("read systemd's job counters");
    (files, jobs)
}

fn unit_exists(fleet: &Fleet, index: usize, unit: &str) -> bool {
    fleet.hosts()[index]
        .sandbox
        .sh(&format!("test -e /etc/systemd/system/{unit} && echo yes || true"))
        .expect("test")
        .trim()
        == "yes"
}

fn installed_inode(fleet: &Fleet, index: usize) -> String {
    let path = format!("{INSTALL_DIR}/{}/baton", env!("CARGO_PKG_VERSION"));
    fleet.hosts()[index].sandbox.sh(&format!("stat -c '%i %Y %U %a' {path}")).expect("stat the installed baton")
}

fn step(n: u32, what: &str) -> std::time::Instant {
    eprintln!("--- step {n}: {what}");
    std::time::Instant::now()
}

#[test]
fn ten_hosts_with_for_each() {
    let _one = FLEETS.lock().unwrap_or_else(|e| e.into_inner());
    const HOSTS: usize = 10;
    let fleet = Fleet::boot(HOSTS).expect("boot the fleet");
    let all: Vec<usize> = (0..HOSTS).collect();
    let tf = FleetTf::new(&fleet, "ten");

    // 1. Create everywhere; baton is not on any host yet, so the provider installs it.
    let t = step(1, "create on 10 hosts, baton installed by the provider");
    for i in &all {
        assert!(fleet.hosts()[*i]
            .sandbox
            .sh(&format!("test -e {INSTALL_DIR} && echo there || true"))
            .expect("sh")
            .trim()
            .is_empty());
    }
    tf.write("v1", &all, None);
    let out = tf.apply();
    assert!(out.contains("Apply complete! Resources: 10 added, 0 changed, 0 destroyed."), "{out}");
    for i in &all {
        assert_eq!(on_host(&fleet, *i, "systemctl is-active web-v1.service").trim(), "active");
        let st = installed_inode(&fleet, *i);
        assert!(st.contains(" root 755"), "the installed baton is root's and 0755: {st}");
    }
    let inodes: Vec<String> = all.iter().map(|i| installed_inode(&fleet, *i)).collect();
    tf.assert_no_changes("after the create");
    eprintln!("    {:.1} s", t.elapsed().as_secs_f64());

    // 2. Plan and refresh change nothing on the hosts.
    let t = step(2, "plan and refresh change nothing on the hosts");
    let before: Vec<_> = all.iter().map(|i| host_snapshot(&fleet, *i)).collect();
    tf.assert_no_changes("a read-only plan");
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let after: Vec<_> = all.iter().map(|i| host_snapshot(&fleet, *i)).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b.0, a.0, "{}: the unit files or states changed under a plan", fleet.hosts()[i].name);
        assert_eq!(b.1, a.1, "{}: systemd ran jobs under a plan (NInstalledJobs, NJobs)", fleet.hosts()[i].name);
    }
    eprintln!("    {:.1} s", t.elapsed().as_secs_f64());

    // 3. A second apply installs nothing.
    let t = step(3, "a second apply installs nothing");
    let out = tf.apply();
    assert!(out.contains("Resources: 0 added, 0 changed, 0 destroyed."), "{out}");
    let again: Vec<String> = all.iter().map(|i| installed_inode(&fleet, *i)).collect();
    assert_eq!(inodes, again, "the installed baton was replaced");
    eprintln!("    {:.1} s", t.elapsed().as_secs_f64());

    // 4. v1 -> v2 under load on every host: 10 in-place handovers, 0 failed requests.
    let t = step(4, "v1 -> v2 under load on every host");
    let bounds = LoadBounds { max_secs: 300, ..LoadBounds::default() };
    let load = FleetLoad::start(&fleet, &[], PORT, &MODES, bounds).expect("start the load");
    std::thread::sleep(Duration::from_millis(1500));
    tf.write("v2", &all, None);
    let out = tf.apply();
    std::thread::sleep(Duration::from_millis(500));
    let report = load.finish().expect("the load's report");
    eprintln!("    load: {}", report.summary());
    assert!(out.contains("Apply complete! Resources: 0 added, 10 changed, 0 destroyed."), "{out}");
    assert_eq!(report.total.failed, 0, "failed requests: {:?}", report.failures());
    for h in fleet.hosts() {
        let r = report.host(&h.name);
        assert!(r.requests >= 100, "{}: the load must be real: {r:?}", h.name);
        assert!(r.by_version.contains_key("v2"), "{}: v2 must have served: {r:?}", h.name);
    }
    for i in &all {
        assert_eq!(on_host(&fleet, *i, "systemctl is-active web-v2.service").trim(), "active");
        assert_eq!(on_host(&fleet, *i, "systemctl is-active web-v1.service || true").trim(), "inactive");
    }
    tf.assert_no_changes("after the bump");
    eprintln!("    {:.1} s", t.elapsed().as_secs_f64());

    // 5. Drift on one host at a time shows in the plan for that host only.
    let t = step(5, "drift on one host");
    on_host(&fleet, 2, "systemctl stop web-v2.service");
    let plan = tf.assert_plan_only_for(2, "stopped by hand");
    assert!(plan.contains("~ state") && plan.contains("\"stopped\" -> \"started\""), "{plan}");
    tf.apply();
    assert_eq!(on_host(&fleet, 2, "systemctl is-active web-v2.service").trim(), "active");
    on_host(&fleet, 3, "echo '# edited by hand' >> /etc/systemd/system/web-v2.service");
    let plan = tf.assert_plan_only_for(3, "unit edited by hand");
    assert!(plan.contains("unit_text") && plan.contains("# edited by hand"), "{plan}");
    tf.apply();
    assert!(!on_host(&fleet, 3, "cat /etc/systemd/system/web-v2.service").contains("edited by hand"));
    on_host(&fleet, 4, "systemctl start web-v1.service");
    let plan = tf.assert_plan_only_for(4, "a second release running beside the active one");
    // Both run; baton counts the one that became active last (v1) as the active one, so the
    // plan also brings `version` back.
    assert!(
        plan.contains("(also running: web-v2.service)") || plan.contains("(also running: web-v1.service)"),
        "{plan}"
    );
    tf.apply();
    assert_eq!(on_host(&fleet, 4, "systemctl is-active web-v1.service || true").trim(), "inactive");
    tf.assert_no_changes("after the drift was repaired");
    eprintln!("    {:.1} s", t.elapsed().as_secs_f64());

    // 6. A remote import, `host:name`.
    let t = step(6, "remote import");
    let h5 = &fleet.hosts()[5];
    let address = format!("baton_service.{SERVICE}[\"{}\"]", h5.name);
    let pid = on_host(&fleet, 5, "systemctl show -p MainPID --value web-v2.service");
    tf.ok(&["state", "rm", "-no-color", &address]);
    let out = tf.ok(&["import", "-input=false", "-no-color", &address, &format!("{}:{SERVICE}", h5.addr)]);
    assert!(out.contains("Import successful!"), "{out}");
    let shown = tf.ok(&["state", "show", "-no-color", &address]);
    assert!(
        shown.contains(&format!("host             = \"{}\"", h5.addr)) || shown.contains(&format!("\"{}\"", h5.addr)),
        "{shown}"
    );
    assert!(shown.contains("version") && shown.contains("\"v2\""), "{shown}");
    let out = tf.apply();
    assert!(out.contains("0 added") && out.contains("0 destroyed"), "an import is not replaced: {out}");
    assert_eq!(
        on_host(&fleet, 5, "systemctl show -p MainPID --value web-v2.service"),
        pid,
        "the import restarted nothing"
    );
    tf.assert_no_changes("after the import");
    eprintln!("    {:.1} s", t.elapsed().as_secs_f64());

    // 7. Destroy leaves no unit file on any host.
    let t = step(7, "destroy");
    let out = tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(out.contains("Destroy complete! Resources: 10 destroyed."), "{out}");
    for i in &all {
        let left = on_host(&fleet, *i, "ls /etc/systemd/system | grep '^web-' || true");
        assert!(left.trim().is_empty(), "{}: unit files left: {left}", fleet.hosts()[*i].name);
        assert!(!unit_exists(&fleet, *i, "web-v2.service"));
    }
    eprintln!("    {:.1} s", t.elapsed().as_secs_f64());
    drop(tf);
    fleet.teardown().expect("tear the fleet down");
}

#[test]
fn unreachable_host_and_wrong_host_key() {
    let _one = FLEETS.lock().unwrap_or_else(|e| e.into_inner());
    const HOSTS: usize = 3;
    let fleet = Fleet::boot(HOSTS).expect("boot the fleet");
    let all: Vec<usize> = (0..HOSTS).collect();
    let mut tf = FleetTf::new(&fleet, "faults");
    // What an unreachable host costs each run.
    tf.timeout_sec = 10;

    // A known_hosts where host02's key is another one (a fresh key of the same type).
    let _ = step(1, "a wrong host key is refused; the other hosts converge");
    let other = tf.dir.join("other_host_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "impostor", "-f"])
        .arg(&other)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success());
    let impostor = std::fs::read_to_string(other.with_extension("pub")).expect("read the key");
    let impostor: Vec<&str> = impostor.split_whitespace().take(2).collect();
    let victim = fleet.hosts()[1].addr.to_string();
    let known = std::fs::read_to_string(fleet.known_hosts()).expect("read known_hosts");
    let mut wrong = String::new();
    for line in known.lines() {
        if line.split_whitespace().next().is_some_and(|h| h.split(',').any(|h| h == victim)) {
            wrong.push_str(&format!("{victim} {}\n", impostor.join(" ")));
        } else {
            wrong.push_str(line);
            wrong.push('\n');
        }
    }
    let wrong_path = tf.dir.join("known_hosts_wrong");
    std::fs::write(&wrong_path, wrong).expect("write known_hosts");
    tf.write("v1", &all, Some(&wrong_path));
    let out = tf.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let text = FleetTf::text(&out);
    assert!(!out.status.success(), "the apply must fail:\n{text}");
    assert!(text.contains(&format!("cannot connect to host {victim} over SSH")), "{text}");
    assert!(text.contains("unknown or has changed"), "{text}");
    assert!(!unit_exists(&fleet, 1, "web-v1.service"), "nothing was deployed to the host with the wrong key");
    for i in [0, 2] {
        assert_eq!(on_host(&fleet, i, "systemctl is-active web-v1.service").trim(), "active");
    }

    // With the right keys, every host converges.
    tf.write("v1", &all, None);
    tf.apply();
    tf.assert_no_changes("all three hosts on v1");

    // An unreachable host fails only its own resource, and the error names it.
    let _ = step(2, "an unreachable host fails alone; the others hand over");
    fleet.make_unreachable(2).expect("cut host03 off");
    let unreachable = fleet.hosts()[2].addr.to_string();
    tf.write("v2", &all, None);
    let out = tf.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let text = FleetTf::text(&out);
    assert!(!out.status.success(), "the apply must fail:\n{text}");
    assert!(text.contains(&format!("host {unreachable}")), "the error names the host:\n{text}");
    for i in [0, 1] {
        assert_eq!(on_host(&fleet, i, "systemctl is-active web-v2.service").trim(), "active", "{text}");
    }
    fleet.make_reachable(2).expect("bring host03 back");
    tf.apply();
    assert_eq!(on_host(&fleet, 2, "systemctl is-active web-v2.service").trim(), "active");
    tf.assert_no_changes("every host on v2");
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    drop(tf);
    fleet.teardown().expect("tear the fleet down");
}

/// `plugins/terraform/examples/<rel>`.
fn example(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/terraform/examples").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documented remote examples are valid against the provider's schema, and a bad `ssh`
/// setting is refused at its attribute with the rule (no host is needed: `terraform validate`).
#[test]
fn remote_examples_validate_and_bad_ssh_settings_are_named() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tf-fleet-validate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("home")).expect("create the terraform dir");
    let rc = root.join("terraformrc");
    write_cli_config(&rc);
    let validate = |main: &str| {
        std::fs::write(root.join("main.tf"), main).expect("write main.tf");
        let out = std::process::Command::new(terraform_path())
            .arg(format!("-chdir={}", root.display()))
            .args(["validate", "-no-color"])
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("CHECKPOINT_DISABLE", "1")
            .env("HOME", root.join("home"))
            .env("TF_DATA_DIR", root.join(".terraform"))
            .env_remove("TF_LOG")
            .output()
            .expect("run terraform validate");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    // provider.tf alone (it has the `terraform` block), then the fleet and the bastion
    // examples together (each has a provider block; the bastion's is aliased).
    let (ok, text) = validate(&example("provider/provider.tf"));
    assert!(ok && text.contains("The configuration is valid"), "{text}");
    let header = "terraform {\n  required_providers {\n    baton = {\n      source = \"baton/baton\"\n    }\n  }\n}\n";
    let (ok, text) =
        validate(&[header.to_owned(), example("provider/fleet.tf"), example("provider/bastion.tf")].join("\n"));
    assert!(ok && text.contains("The configuration is valid"), "{text}");

    let bad = r#"
terraform {
  required_providers {
    baton = {
      source = "baton/baton"
    }
  }
}

provider "baton" {
  install_dir = "relative/dir"
  ssh {
    port        = 0
    bastion     = "jump host:22"
    timeout_sec = 0
    private_key = "/root/.ssh/id_ed25519"
  }
}

# terraform validates the provider's configuration only when a resource uses it.
resource "baton_service" "web" {
  name       = "web"
  version    = "v1"
  exec_start = ["/bin/true"]
}
"#;
    let (ok, text) = validate(bad);
    assert!(!ok, "{text}");
    for rule in [
        "ssh.port: must be 1–65535, got 0",
        "ssh.bastion: must be host[:port]",
        "ssh.timeout_sec: must be 1–3600, got 0",
        "ssh.private_key: must be a private key",
        "install_dir: must be an absolute path",
    ] {
        assert!(text.contains(rule), "{rule:?} not reported:\n{text}");
    }
    // A host that would be read as an ssh option is refused at `host`.
    let bad_host = format!(
        "{header}\nprovider \"baton\" {{}}\n\nresource \"baton_service\" \"web\" {{\n  host       = \"-oProxyCommand=evil\"\n  \
         name       = \"web\"\n  version    = \"v1\"\n  exec_start = [\"/bin/true\"]\n}}\n"
    );
    let (ok, text) = validate(&bad_host);
    assert!(!ok && text.contains("host: must be an SSH destination"), "{text}");
}
