//! A rolling deploy over a fleet of 20 hosts with the collection's playbook
//! `baton.systemd.rolling`, run by the real `ansible-playbook` over real SSH from the fleet's
//! controller namespace, the collection installed from its built tarball as a user installs it.
//! Every host is a sandboxed real systemd with its own network namespace and sshd
//! (`integration/src/fleet.rs`); the service is the demo app on port 8080 of every host, under
//! load from the controller during every play (one `baton-load` per host and per mode: a new
//! connection per request, and kept-alive connections).
//!
//! One fleet, booted once, goes through these steps in order (each names itself on stderr):
//! 1. v1 deployed everywhere (no load yet);
//! 2. v1 -> v2 in batches of 5 (the playbook's default `serial: 25%`): 0 failed requests, every
//!    host on v2;
//! 3. the documented one-liner back to v1: 0 failed requests, every host on v1;
//! 4. v3, which fails on one host of the second batch: that host rolls back and keeps serving
//!    v1 with 0 failed requests, the play stops, the first batch is on v3, later batches are
//!    untouched on v1, and the failure names the host and carries the unit's journal lines;
//! 5. the one-liner again brings the whole fleet back to v1, 0 failed requests;
//! 6. `--check --diff` of a new v4 changes nothing and shows every host's plan and unit file;
//! 7. an unreachable host fails clearly, and the other 19 hand over to v2 unharmed.
//!
//! `BATON_FLEET_VERBOSE=1` prints each loaded play's output (run with `-v`).
//!
//! Nothing is skipped: without root, sshd, ansible (`make .venv`) or the module binary (`make
//! collection`) this test fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_integration::ansible::Played;
use baton_integration::fleet::Fleet;
use baton_integration::fleet_ansible::{host_lines, FleetAnsible, FleetLoad, FleetReport, LoadBounds, ROLLING};
use baton_integration::{bin, LoadReport};
use baton_load::Mode;

const HOSTS: usize = 20;
const BATCH: usize = 5;
const PORT: u16 = 8080;
const SERVICE: &str = "web";
/// The host whose v3 fails: the second of the second batch.
const FAULTY: usize = BATCH + 1;
/// The host made unreachable in the last step: the last one.
const UNREACHABLE: usize = HOSTS - 1;
const MODES: [Mode; 2] = [Mode::NewConnection, Mode::KeepAlive];

/// The inventory's group_vars: the service as an operator would describe it. `exec_start` adds a
/// host's `demo_fault_flags` only for the version named by its `demo_fault_version`.
fn group_vars() -> String {
    format!(
        r#"---
baton_name: {SERVICE}
baton_port: {PORT}
baton_become: false
demo_path: {demo}
baton_exec_start: >-
  {{{{ [demo_path, '--listen', '0.0.0.0', '--port', '{PORT}', '--version', baton_version, '--work-ms', '20']
     + ((demo_fault_flags | default([])) if baton_version == (demo_fault_version | default('')) else []) }}}}
baton_health:
  http: /health
  timeout_sec: 30
  interval_ms: 100
baton_timeout_stop_sec: 30
baton_gate_url: "http://{{{{ ansible_host }}}}:{PORT}/"
baton_gate_contains: "{{{{ baton_version }}}}"
baton_gate_delay: 0.5
"#,
        demo = bin("baton-demo").display()
    )
}

fn step(n: u32, what: &str) -> Instant {
    eprintln!("\n=== step {n}: {what}");
    Instant::now()
}

/// The versions whose unit is active on host `i` (systemd's view, inside the host).
fn active_versions(fleet: &Fleet, i: usize) -> Vec<String> {
    let out = fleet.hosts()[i]
        .sandbox
        .sh(&format!("systemctl list-units --no-legend --plain --state=active '{SERVICE}-*.service' || true"))
        .unwrap_or_else(|e| panic!("systemctl on {}: {e:#}", fleet.hosts()[i].name));
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|u| u.strip_prefix(&format!("{SERVICE}-"))?.strip_suffix(".service").map(String::from))
        .collect();
    v.sort();
    v
}

/// What shows host `i` was not touched: its active unit's main PID and its unit files.
fn fingerprint(fleet: &Fleet, i: usize) -> String {
    fleet.hosts()[i]
        .sandbox
        .sh(&format!(
            "systemctl show -p MainPID -p ActiveEnterTimestampMonotonic {SERVICE}-v1.service; \
             ls /etc/systemd/system | grep '^{SERVICE}-' || true"
        ))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

#[track_caller]
fn assert_all_on(fleet: &Fleet, hosts: impl IntoIterator<Item = usize>, version: &str) {
    for i in hosts {
        assert_eq!(active_versions(fleet, i), [version], "{} serves {version} only", fleet.hosts()[i].name);
    }
}

#[track_caller]
fn assert_no_failed_request(report: &FleetReport, what: &str) {
    eprintln!("{what}: load {}", report.summary());
    assert!(report.failures().is_empty(), "{what}: failed requests: {:#?}", report.failures());
    assert_eq!(report.total.failed, 0, "{what}");
    for mode in MODES {
        let r = report.mode(mode);
        assert!(r.requests >= 200, "{what}: the {} load must be real: {r:?}", mode.as_str());
    }
}

/// Runs the rolling playbook with `args`, under load on `loaded` hosts (all when empty).
fn rolling_under_load(fleet: &Fleet, fa: &FleetAnsible, loaded: &[&str], args: &[&str]) -> (Played, FleetReport) {
    let load = FleetLoad::start(fleet, loaded, PORT, &MODES, LoadBounds::default()).expect("start the fleet load");
    // Let every load process connect before the play starts.
    std::thread::sleep(Duration::from_millis(500));
    let mut args = args.to_vec();
    if std::env::var_os("BATON_FLEET_VERBOSE").is_some() {
        args.push("-v");
    }
    let played = fa.playbook(fleet, ROLLING, &args).expect("run ansible-playbook");
    std::thread::sleep(Duration::from_millis(300));
    let report = load.finish().expect("the fleet load's report");
    eprintln!("ansible-playbook {args:?}: exit {} in {:.1} s", played.code, played.took.as_secs_f64());
    if std::env::var_os("BATON_FLEET_VERBOSE").is_some() {
        eprintln!("{}\n{}", played.stdout, played.stderr);
    }
    (played, report)
}

fn versions(r: &LoadReport) -> Vec<&str> {
    r.by_version.keys().map(String::as_str).collect()
}

#[test]
fn a_rolling_deploy_over_20_hosts_over_ssh_fails_no_request() {
    let t0 = Instant::now();
    let fleet = Fleet::boot(HOSTS).unwrap_or_else(|e| panic!("cannot boot a fleet of {HOSTS}: {e:#}"));
    eprintln!("fleet of {HOSTS} booted in {:.1} s", t0.elapsed().as_secs_f64());
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();
    let fa = FleetAnsible::new("fleet", &fleet).expect("an Ansible environment for the fleet");
    fa.write_group_vars(&group_vars()).expect("group_vars");

    // 1. v1 everywhere, all at once.
    let t = step(1, "deploy v1 to every host");
    let played = fa.playbook(&fleet, ROLLING, ["-e", "baton_version=v1", "-e", "baton_serial=100%"]).expect("run");
    let played = played.ok();
    assert_all_on(&fleet, 0..HOSTS, "v1");
    for n in &names {
        assert_eq!(played.recap(n, "changed"), Some(1), "{n} changed once: {}", played.stdout);
    }
    eprintln!("step 1 took {:.1} s", t.elapsed().as_secs_f64());

    // 2. v1 -> v2 in batches of 5, under load on every host.
    let t = step(2, "v1 -> v2 in batches of 5 under load");
    let (played, report) = rolling_under_load(&fleet, &fa, &[], &["-e", "baton_version=v2"]);
    let played = played.ok();
    assert_no_failed_request(&report, "v1 -> v2");
    assert_all_on(&fleet, 0..HOSTS, "v2");
    assert_eq!(
        played.stdout.matches("TASK [Hand over to the release]").count(),
        HOSTS / BATCH,
        "one handover task per batch of {BATCH}: {}",
        played.stdout
    );
    for n in &names {
        assert_eq!(played.recap(n, "failed"), Some(0), "{}", played.stdout);
        let r = report.host(n);
        assert_eq!(versions(&r), ["v1", "v2"], "{n} served v1 then v2");
        assert!(host_lines(&played, n).iter().any(|l| l.starts_with(&format!("changed: [{n}]"))), "{n} changed");
    }
    eprintln!("step 2 took {:.1} s", t.elapsed().as_secs_f64());

    // 3. The documented one-liner back to v1.
    let t = step(3, "the one-liner back to v1 under load");
    let (played, report) = rolling_under_load(&fleet, &fa, &[], &["-e", "baton_version=v1"]);
    played.ok();
    assert_no_failed_request(&report, "v2 -> v1");
    assert_all_on(&fleet, 0..HOSTS, "v1");
    eprintln!("step 3 took {:.1} s", t.elapsed().as_secs_f64());

    // 4. v3 fails on one host of the second batch.
    let t = step(4, "v3, which fails on one host of the second batch, under load");
    let faulty = names[FAULTY].clone();
    fa.write_host_vars(&faulty, "---\ndemo_fault_version: v3\ndemo_fault_flags: [--crash-on-start]\n")
        .expect("host_vars");
    let later: BTreeMap<usize, String> = (2 * BATCH..HOSTS).map(|i| (i, fingerprint(&fleet, i))).collect();
    let (played, report) = rolling_under_load(&fleet, &fa, &[], &["-e", "baton_version=v3"]);
    let out = format!("{}\n{}", played.stdout, played.stderr);
    assert_ne!(played.code, 0, "the play fails: {out}");
    assert_no_failed_request(&report, "v3 with a failing host");
    // The faulty host rolled back and kept serving v1, without a failed request.
    assert_eq!(active_versions(&fleet, FAULTY), ["v1"], "{faulty} keeps serving v1");
    assert_eq!(versions(&report.host(&faulty)), ["v1"], "{faulty} served v1 only");
    assert_eq!(played.recap(&faulty, "failed"), Some(1), "{out}");
    // The failure names the host and carries the journal of the release that crashed.
    let fatal = host_lines(&played, &faulty).into_iter().filter(|l| l.starts_with("fatal:")).collect::<Vec<_>>();
    assert!(!fatal.is_empty(), "a fatal line for {faulty}: {out}");
    assert!(
        fatal.iter().any(|l| l.contains(&format!("{SERVICE}-v3.service")) && l.contains("crashing on start as asked")),
        "the failure carries the unit's journal lines: {fatal:#?}"
    );
    assert!(
        out.contains(&format!("{faulty}: Hand over to the release failed ({SERVICE} v3); the rollout stops here.")),
        "the rescue names the host: {out}"
    );
    // The first batch is on v3; the rest of the second batch finished its handover.
    assert_all_on(&fleet, 0..BATCH, "v3");
    assert_all_on(&fleet, (BATCH..2 * BATCH).filter(|&i| i != FAULTY), "v3");
    // The play stopped: later batches are untouched, still on v1 (same process, same files).
    assert_eq!(played.stdout.matches("TASK [Hand over to the release]").count(), 2, "two batches ran: {out}");
    for (i, before) in &later {
        assert_eq!(&fingerprint(&fleet, *i), before, "{} untouched", names[*i]);
        assert_eq!(played.recap(&names[*i], "ok"), None, "{} was not in the play: {out}", names[*i]);
        assert_eq!(versions(&report.host(&names[*i])), ["v1"]);
    }
    eprintln!("step 4 took {:.1} s", t.elapsed().as_secs_f64());

    // 5. The one-liner brings the fleet back to one version.
    let t = step(5, "the one-liner brings the fleet back to v1 under load");
    let on_v1: Vec<usize> = std::iter::once(FAULTY).chain(2 * BATCH..HOSTS).collect();
    let before: Vec<String> = on_v1.iter().map(|&i| fingerprint(&fleet, i)).collect();
    let (played, report) = rolling_under_load(&fleet, &fa, &[], &["-e", "baton_version=v1"]);
    let played = played.ok();
    assert_no_failed_request(&report, "back to v1");
    assert_all_on(&fleet, 0..HOSTS, "v1");
    // Hosts already on v1 were left alone: not changed, same process, same files.
    for (&i, before) in on_v1.iter().zip(&before) {
        assert_eq!(played.recap(&names[i], "changed"), Some(0), "{}: {}", names[i], played.stdout);
        assert_eq!(&fingerprint(&fleet, i), before, "{} untouched", names[i]);
    }
    for i in (0..2 * BATCH).filter(|&i| i != FAULTY) {
        assert_eq!(played.recap(&names[i], "changed"), Some(1), "{} handed over: {}", names[i], played.stdout);
    }
    eprintln!("step 5 took {:.1} s", t.elapsed().as_secs_f64());

    // 6. --check --diff of a new release (no unit of it on disk yet) changes nothing and shows
    // every host's plan and the unit file it would write.
    let t = step(6, "--check --diff of v4");
    let before: Vec<String> = (0..HOSTS).map(|i| fingerprint(&fleet, i)).collect();
    let played = fa.playbook(&fleet, ROLLING, ["-e", "baton_version=v4", "--check", "--diff"]).expect("run").ok();
    let after: Vec<String> = (0..HOSTS).map(|i| fingerprint(&fleet, i)).collect();
    assert_eq!(before, after, "check mode changed nothing");
    assert_all_on(&fleet, 0..HOSTS, "v1");
    let out = &played.stdout;
    assert_eq!(
        out.matches(&format!("+++ after: /etc/systemd/system/{SERVICE}-v4.service")).count(),
        HOSTS,
        "one diff per host: {out}"
    );
    assert_eq!(out.matches("+X-Baton-Version=v4").count(), HOSTS, "{out}");
    let plan = format!("\"msg\": \"{SERVICE}: v1 -> v4: write /etc/systemd/system/{SERVICE}-v4.service; ");
    let start = format!("; start {SERVICE}-v4.service; ");
    for n in &names {
        let shown = out.split(&format!("ok: [{n}] => {{")).nth(1).and_then(|rest| rest.lines().nth(1));
        assert!(
            shown.is_some_and(|l| l.trim_start().starts_with(&plan) && l.contains(&start)),
            "{n}'s plan is shown ({plan}...{start}...): {out}"
        );
        assert_eq!(played.recap(n, "changed"), Some(1), "{n} would change: {out}");
    }
    eprintln!("step 6 took {:.1} s", t.elapsed().as_secs_f64());

    // 7. An unreachable host fails clearly; the others hand over unharmed.
    let t = step(7, "v2 with one host unreachable, under load on the others");
    let gone = names[UNREACHABLE].clone();
    fleet.make_unreachable(UNREACHABLE).expect("make a host unreachable");
    let reachable: Vec<&str> = names.iter().filter(|n| **n != gone).map(String::as_str).collect();
    // New ssh connections, as after ControlPersist ran out: a control master kept from an
    // earlier step would hold a TCP connection to the cut-off host that no packet ends.
    let cp = format!("ansible_control_path_dir={}", fa.ansible().dir().join("cp-7").display());
    let (played, report) = rolling_under_load(&fleet, &fa, &reachable, &["-e", "baton_version=v2", "-e", &cp]);
    let out = format!("{}\n{}", played.stdout, played.stderr);
    assert_ne!(played.code, 0, "the play reports the unreachable host: {out}");
    assert!(
        out.contains(&format!("fatal: [{gone}]: UNREACHABLE!"))
            && out.contains("Failed to connect to the host via ssh"),
        "the unreachable host is named with the cause: {out}"
    );
    assert_eq!(played.recap(&gone, "unreachable"), Some(1), "{out}");
    assert_no_failed_request(&report, "v2 with an unreachable host");
    assert_all_on(&fleet, (0..HOSTS).filter(|&i| i != UNREACHABLE), "v2");
    // The unreachable host itself was not touched: still v1.
    assert_all_on(&fleet, [UNREACHABLE], "v1");
    eprintln!("step 7 took {:.1} s", t.elapsed().as_secs_f64());
    eprintln!("\nthe fleet test took {:.1} s in all", t0.elapsed().as_secs_f64());
}
