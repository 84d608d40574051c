//! `terraform-provider-baton`'s SSH settings end to end (issue 15), with the real terraform CLI
//! against the fleet harness (`integration/src/fleet.rs`, `integration/src/fleet_terraform.rs`):
//!
//! * `bastion_reaches_hosts_the_controller_cannot`: the controller (where terraform runs) has no
//!   route to two hosts; the provider reaches them through a third as `ssh.bastion` (ProxyJump),
//!   with the provider's key and known_hosts on both hops. The targets' sshd journals show every
//!   login of the run coming from the bastion's address. A known_hosts without the bastion's key
//!   is refused. Create, an empty plan, the data source with `host`, destroy: all through it.
//! * `agent_supplies_the_key`: the test's own `ssh-agent` (killed after) holds the key;
//!   `agent = true` with no `private_key` deploys; with the key deleted from the agent a refresh
//!   cannot connect (so the agent was what authenticated), and without `SSH_AUTH_SOCK` the error
//!   says so. The data source with `host` reads the remote service.
//! * `secret_file_changed_by_hand_is_drift`: a secret-environment file edited by hand on one
//!   host shows in the next plan for that host only, as `(sensitive value)`; neither the secret
//!   nor the edited value appears in terraform's output or its DEBUG log (provider included);
//!   an apply rewrites the file.
//!
//! Nothing is skipped: without root, sshd, ssh-agent or terraform the tests fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use baton_integration::fleet::{Fleet, CONTROLLER_ADDR, SSHD_UNIT};
use baton_integration::fleet_terraform::{on_host, FleetTf, SERVICE};

/// One fleet at a time: the machine has 2 cores.
static FLEETS: Mutex<()> = Mutex::new(());

fn step(what: &str) -> Instant {
    eprintln!("--- {what}");
    Instant::now()
}

fn done(t: Instant) {
    eprintln!("    {:.1} s", t.elapsed().as_secs_f64());
}

/// Runs `script` inside host `index`'s sandbox (not over ssh).
#[track_caller]
fn inside(fleet: &Fleet, index: usize, script: &str) -> String {
    fleet.hosts()[index].sandbox.sh(script).unwrap_or_else(|e| panic!("{script:?} in host {index}: {e:#}"))
}

/// The source addresses of the logins the sshd of host `index` accepted, in order.
fn logins_from(fleet: &Fleet, index: usize) -> Vec<String> {
    inside(
        fleet,
        index,
        &format!("journalctl -u {SSHD_UNIT} --no-pager -o cat | grep '^Accepted publickey for root from ' || true"),
    )
    .lines()
    .filter_map(|l| l.strip_prefix("Accepted publickey for root from ")?.split_whitespace().next().map(str::to_owned))
    .collect()
}

/// `data "baton_service"` with `host`, for every host of `local.hosts`, and its attributes as
/// outputs.
const DATA_SOURCE: &str = r#"
data "baton_service" "seen" {
  for_each   = local.hosts
  host       = each.value
  name       = "web"
  depends_on = [baton_service.web]
}

output "seen" {
  value = { for k, d in data.baton_service.seen : k => { version = d.version, state = d.state, unit = d.unit, main_pid = d.main_pid, releases = d.releases } }
}
"#;

/// `terraform output -json seen`: per host name, the data source's attributes.
fn seen_outputs(tf: &FleetTf<'_>) -> BTreeMap<String, serde_json::Value> {
    let out = tf.run(&["output", "-json", "seen"]);
    assert!(out.status.success(), "terraform output failed: {}", FleetTf::text(&out));
    serde_json::from_slice(&out.stdout).expect("terraform output -json prints JSON")
}

/// The data source's view of host `index` agrees with its systemd.
#[track_caller]
fn assert_data_source_reads(fleet: &Fleet, tf: &FleetTf<'_>, index: usize, version: &str) {
    let seen = seen_outputs(tf);
    let h = &fleet.hosts()[index];
    let v = seen.get(&h.name).unwrap_or_else(|| panic!("no data source output for {}: {seen:?}", h.name));
    assert_eq!(v["version"], version, "{v}");
    assert_eq!(v["state"], "started", "{v}");
    assert_eq!(v["unit"], format!("{SERVICE}-{version}.service"), "{v}");
    assert_eq!(v["releases"], serde_json::json!([version]), "{v}");
    let pid = inside(fleet, index, &format!("systemctl show -p MainPID --value {SERVICE}-{version}.service"));
    assert_eq!(v["main_pid"].as_i64().map(|p| p.to_string()), Some(pid.trim().to_owned()), "{v}");
}

#[test]
fn bastion_reaches_hosts_the_controller_cannot() {
    let _one = FLEETS.lock().unwrap_or_else(|e| e.into_inner());
    let fleet = Fleet::boot(3).expect("boot the fleet");
    let tf = FleetTf::new(&fleet, "bastion");
    let bastion = fleet.hosts()[0].addr;
    let targets = [1usize, 2];

    let t = step("the controller loses its route to host02 and host03; host01 (the bastion) still reaches them");
    for &i in &targets {
        let addr = fleet.hosts()[i].addr;
        let out = fleet
            .controller_command("ip")
            .args(["route", "add", "unreachable", &format!("{addr}/32")])
            .output()
            .expect("run ip route");
        assert!(out.status.success(), "ip route add unreachable {addr}: {}", String::from_utf8_lossy(&out.stderr));
        let direct = fleet.ssh(i, "true").output().expect("run ssh");
        assert!(!direct.status.success(), "{addr} must not be reachable from the controller any more");
        let via = on_host(&fleet, 0, &format!("timeout 5 bash -c 'exec 3<>/dev/tcp/{addr}/22 && head -c 4 <&3'"));
        assert_eq!(via, "SSH-", "the bastion reaches {addr}:22");
    }
    done(t);

    let ssh = |known: &Path| {
        format!(
            "    user        = \"root\"\n    private_key = file(\"{key}\")\n    known_hosts = file(\"{known}\")\n    \
             agent       = false\n    bastion     = \"{bastion}\"\n",
            key = fleet.ssh_key().display(),
            known = known.display(),
        )
    };

    let t = step("a known_hosts without the bastion's key is refused; nothing is deployed");
    let known = std::fs::read_to_string(fleet.known_hosts()).expect("read known_hosts");
    let without: String =
        known.lines().filter(|l| !l.starts_with(&format!("{bastion} "))).map(|l| format!("{l}\n")).collect();
    assert_ne!(without, known);
    let without_path = tf.dir.join("known_hosts_no_bastion");
    std::fs::write(&without_path, without).expect("write known_hosts");
    tf.write_main(&format!("{}{}", tf.provider_with(&ssh(&without_path)), tf.resources("v1", &targets, "")));
    let out = tf.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let text = FleetTf::text(&out);
    assert!(!out.status.success(), "the apply must fail:\n{text}");
    for &i in &targets {
        let addr = fleet.hosts()[i].addr;
        assert!(text.contains(&format!("cannot connect to host {addr} over SSH")), "{text}");
        assert!(inside(&fleet, i, "ls /etc/systemd/system | grep '^web-' || true").trim().is_empty());
    }
    done(t);

    let t = step("create through the bastion, then an empty plan; the data source reads through it too");
    let before: Vec<usize> = targets.iter().map(|&i| logins_from(&fleet, i).len()).collect();
    let main =
        format!("{}{}{DATA_SOURCE}", tf.provider_with(&ssh(&fleet.known_hosts())), tf.resources("v1", &targets, ""));
    tf.write_main(&main);
    let out = tf.apply();
    assert!(out.contains("Apply complete! Resources: 2 added, 0 changed, 0 destroyed."), "{out}");
    for &i in &targets {
        assert_eq!(inside(&fleet, i, "systemctl is-active web-v1.service").trim(), "active");
        assert_data_source_reads(&fleet, &tf, i, "v1");
    }
    tf.assert_no_changes("after the create through the bastion");
    for (k, &i) in targets.iter().enumerate() {
        let logins = logins_from(&fleet, i);
        let new = &logins[before[k]..];
        assert!(!new.is_empty(), "{}: no login during the run", fleet.hosts()[i].name);
        assert!(
            new.iter().all(|a| *a == bastion.to_string()),
            "{}: every login of the run comes from the bastion {bastion}: {new:?}",
            fleet.hosts()[i].name
        );
    }
    let at_bastion = logins_from(&fleet, 0);
    assert!(
        at_bastion.iter().any(|a| *a == CONTROLLER_ADDR.to_string()),
        "the bastion was logged into from the controller: {at_bastion:?}"
    );
    assert!(
        inside(&fleet, 0, "ls /etc/systemd/system | grep '^web-' || true").trim().is_empty(),
        "nothing on the bastion"
    );
    done(t);

    let t = step("destroy through the bastion");
    let out = tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(out.contains("Destroy complete! Resources: 2 destroyed."), "{out}");
    for &i in &targets {
        assert!(inside(&fleet, i, "ls /etc/systemd/system | grep '^web-' || true").trim().is_empty());
    }
    done(t);
    drop(tf);
    fleet.teardown().expect("tear the fleet down");
}

/// The test's own `ssh-agent` (`-D`: in the foreground, our child), killed on drop.
struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let _ = std::fs::remove_file(&sock);
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ssh-agent (openssh-client)");
        let agent = Agent { child, sock };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not create {} within 10 s", agent.sock.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// `ssh-add args` against this agent.
    fn add(&self, args: &[&str], key: Option<&Path>) -> std::process::Output {
        let mut cmd = Command::new("ssh-add");
        cmd.args(args).env("SSH_AUTH_SOCK", &self.sock).stdin(Stdio::null());
        if let Some(key) = key {
            cmd.arg(key);
        }
        cmd.output().expect("run ssh-add")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.sock);
    }
}

#[test]
fn agent_supplies_the_key() {
    let _one = FLEETS.lock().unwrap_or_else(|e| e.into_inner());
    let fleet = Fleet::boot(2).expect("boot the fleet");
    let mut tf = FleetTf::new(&fleet, "agent");
    let all = [0usize, 1];

    let t = step("an ssh-agent of the test's own holds the fleet key (for 10 minutes at most)");
    let agent = Agent::start(&tf.dir);
    let added = agent.add(&["-q", "-t", "600"], Some(&fleet.ssh_key()));
    assert!(added.status.success(), "ssh-add: {}", String::from_utf8_lossy(&added.stderr));
    let listed = agent.add(&["-l"], None);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("baton-fleet-controller"), "{listed:?}");
    done(t);

    let t = step("agent = true and no private_key: create on 2 hosts, an empty plan, the data source");
    let ssh = format!(
        "    user        = \"root\"\n    known_hosts = file(\"{}\")\n    agent       = true\n",
        fleet.known_hosts().display()
    );
    tf.ssh_auth_sock = Some(agent.sock.clone());
    tf.write_main(&format!("{}{}{DATA_SOURCE}", tf.provider_with(&ssh), tf.resources("v1", &all, "")));
    let out = tf.apply();
    assert!(out.contains("Apply complete! Resources: 2 added, 0 changed, 0 destroyed."), "{out}");
    for &i in &all {
        assert_eq!(on_host(&fleet, i, "systemctl is-active web-v1.service").trim(), "active");
        assert_data_source_reads(&fleet, &tf, i, "v1");
    }
    tf.assert_no_changes("after the create with the agent");
    done(t);

    let t = step("the key deleted from the agent: a refresh cannot connect (the agent was the way in)");
    let deleted = agent.add(&["-D"], None);
    assert!(deleted.status.success(), "ssh-add -D: {}", String::from_utf8_lossy(&deleted.stderr));
    // The resources keep their last state (a warning), the data source fails: either way the
    // error names each host.
    let text = FleetTf::text(&tf.run(&["plan", "-input=false", "-no-color"]));
    for h in fleet.hosts() {
        assert!(text.contains(&format!("cannot connect to host {} over SSH", h.addr)), "{text}");
    }
    done(t);

    let t = step("agent = true without SSH_AUTH_SOCK: the error says so");
    tf.ssh_auth_sock = None;
    let text = FleetTf::text(&tf.run(&["plan", "-input=false", "-no-color"]));
    assert!(text.contains("SSH_AUTH_SOCK is not set"), "{text}");
    done(t);

    let t = step("the key back in the agent: destroy");
    tf.ssh_auth_sock = Some(agent.sock.clone());
    let added = agent.add(&["-q", "-t", "600"], Some(&fleet.ssh_key()));
    assert!(added.status.success(), "ssh-add: {}", String::from_utf8_lossy(&added.stderr));
    let out = tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(out.contains("Destroy complete! Resources: 2 destroyed."), "{out}");
    for &i in &all {
        assert!(on_host(&fleet, i, "ls /etc/systemd/system | grep '^web-' || true").trim().is_empty());
    }
    done(t);
    drop(agent);
    drop(tf);
    fleet.teardown().expect("tear the fleet down");
}

#[test]
fn secret_file_changed_by_hand_is_drift() {
    let _one = FLEETS.lock().unwrap_or_else(|e| e.into_inner());
    let fleet = Fleet::boot(2).expect("boot the fleet");
    let mut tf = FleetTf::new(&fleet, "secrets");
    // terraform's and the provider's DEBUG log, searched for the values below.
    tf.debug_log = true;
    let all = [0usize, 1];
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let secret = format!("s3cr3t-{nonce}");
    let by_hand = format!("typed-by-hand-{nonce}");
    let file = format!("/etc/systemd/system/baton-secrets/{SERVICE}-v1.service.env");

    let t = step("create on 2 hosts with a secret_environment, then an empty plan");
    let extra = format!("  secret_environment = {{\n    DB_PASSWORD = \"{secret}\"\n  }}\n");
    tf.write_main(&format!("{}{}", tf.provider(None), tf.resources("v1", &all, &extra)));
    let out = tf.apply();
    assert!(out.contains("Apply complete! Resources: 2 added, 0 changed, 0 destroyed."), "{out}");
    for &i in &all {
        assert!(inside(&fleet, i, &format!("cat {file}")).contains(&format!("DB_PASSWORD=\"{secret}\"")));
    }
    // The digest the provider expects is the one of the file the host's baton wrote.
    tf.assert_no_changes("after the create with a secret");
    done(t);

    let t = step("the secret file edited by hand on host02: the plan shows it for host02 only, values hidden");
    inside(&fleet, 1, &format!("sed -i 's/{secret}/{by_hand}/' {file}"));
    assert!(inside(&fleet, 1, &format!("cat {file}")).contains(&by_hand));
    let plan = tf.assert_plan_only_for(1, "a secret file edited by hand");
    assert!(plan.contains("~ secret_environment = (sensitive value)"), "{plan}");
    assert!(plan.contains("was changed outside Terraform"), "the read warns: {plan}");
    for value in [&secret, &by_hand] {
        assert!(!plan.contains(value.as_str()), "a secret value in the plan output:\n{plan}");
    }
    done(t);

    let t = step("an apply writes the file again; then nothing to do");
    let out = tf.apply();
    assert!(out.contains("Apply complete! Resources: 0 added, 1 changed, 0 destroyed."), "{out}");
    let text = inside(&fleet, 1, &format!("cat {file}"));
    assert!(
        text.contains(&format!("DB_PASSWORD=\"{secret}\"")) && !text.contains(&by_hand),
        "the file was not repaired"
    );
    tf.assert_no_changes("after the repair");
    for value in [&secret, &by_hand] {
        assert!(!out.contains(value.as_str()), "a secret value in the apply output:\n{out}");
    }
    done(t);

    let t = step("destroy; neither value is in terraform's DEBUG log (the provider's included)");
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    let log = std::fs::read_to_string(tf.dir.join("terraform.log")).expect("read terraform.log");
    assert!(log.contains("terraform-provider-baton"), "the log holds the provider's lines");
    for value in [&secret, &by_hand] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(value.as_str())).take(3).collect();
        assert!(hits.is_empty(), "a secret value in terraform.log: {hits:?}");
    }
    for &i in &all {
        assert!(inside(&fleet, i, "ls /etc/systemd/system/baton-secrets 2>/dev/null | grep web- || true")
            .trim()
            .is_empty());
    }
    done(t);
    drop(tf);
    fleet.teardown().expect("tear the fleet down");
}
