//! Shared-socket mode (`listen_mode: "socket"`, issue 12 item 2) against a sandboxed real
//! systemd, under load with both kinds of client (a new connection per request, and kept-alive
//! connections): handovers and failing releases lose no request, nothing ever starts an old or
//! stopped release again (traffic while no release runs, a daemon-reload, `stopped`, a
//! "reboot"), `stopped`/`absent` handle the socket, switching modes is a handover, and baton
//! `kill -9`ed after any step converges on the next run.
//!
//! The first test pins down the systemd behaviour the design rests on (see
//! `baton_core::unit::socket`): the socket's `Service=` is what traffic starts when no release
//! runs, so it must name the current release.

use std::process::{Child, Stdio};
use std::time::Duration;

use baton_integration::{bin, demo_spec, Applied, Host, LoadReport};
use serde_json::{json, Value};

/// How long a load may run at most (it is stopped once the test's handovers are done).
const MAX_LOAD_SECS: u64 = 600;

fn spec(name: &str, version: &str, port: u16, extra: Value) -> Value {
    let mut s = demo_spec(name, version, port, &["--linger-ms", "100", "--drain-ms", "2000"], extra);
    if s.get("listen_mode").is_none() {
        s["listen_mode"] = json!("socket");
    }
    s
}

fn crashing(name: &str, version: &str, port: u16) -> Value {
    let mut s = demo_spec(name, version, port, &["--crash-on-start"], json!({"listen_mode": "socket"}));
    s["health"]["timeout_sec"] = json!(3);
    s
}

fn actions(out: &Applied) -> Vec<String> {
    out.json["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The service's releases systemd counts as active (or on their way).
fn active(h: &Host, name: &str) -> Vec<String> {
    h.sh(&format!("systemctl list-units --no-legend --state=active,activating '{name}-*.service' | awk '{{print $1}}'"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `Service=` line of the socket unit file, if any.
fn socket_service(h: &Host, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(h.path(&format!("/etc/systemd/system/{name}.socket"))).ok()?;
    text.lines().find_map(|l| l.strip_prefix("Service=")).map(str::to_owned)
}

/// Exactly `version` runs, and the socket listens and names it.
#[track_caller]
fn only(h: &Host, name: &str, version: &str) {
    let unit = format!("{name}-{version}.service");
    assert_eq!(active(h, name), std::slice::from_ref(&unit), "exactly {unit} runs");
    assert_eq!(socket_service(h, name).as_deref(), Some(unit.as_str()), "the socket names the current release");
    assert_eq!(h.prop(&format!("{name}.socket"), "ActiveState"), "active");
}

/// One HTTP request with curl inside; its body (the serving version) or None.
fn get(h: &Host, port: u16) -> Option<String> {
    let out = h.sb.sh_output(&format!("curl -s -m 2 http://127.0.0.1:{port}/")).expect("curl");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `baton-load` inside the sandbox, a new connection per request or kept-alive, until
/// [`finish`].
fn load(h: &Host, port: u16, workers: usize, keep_alive: bool) -> Child {
    let mut cmd = h.sb.command(bin("baton-load"));
    cmd.args(["--addr", &format!("127.0.0.1:{port}"), "--workers", &workers.to_string()]).args([
        "--duration-secs",
        &MAX_LOAD_SECS.to_string(),
        "--timeout-ms",
        "5000",
        "--stop-on-stdin-eof",
    ]);
    if keep_alive {
        cmd.arg("--keep-alive");
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn baton-load")
}

fn finish(mut child: Child) -> LoadReport {
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait for baton-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!("baton-load printed no report ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    })
}

/// Both clients at once: 3 workers opening a connection per request, 2 kept-alive ones.
struct Loads {
    fresh: Child,
    kept: Child,
}

impl Loads {
    fn start(h: &Host, port: u16) -> Loads {
        let loads = Loads { fresh: load(h, port, 3, false), kept: load(h, port, 2, true) };
        std::thread::sleep(Duration::from_millis(300));
        loads
    }

    #[track_caller]
    fn finish_without_failures(self, what: &str) -> (LoadReport, LoadReport) {
        let (fresh, kept) = (finish(self.fresh), finish(self.kept));
        eprintln!("{what}: new connection per request: {}", fresh.summary());
        eprintln!("{what}: keep-alive: {}", kept.summary());
        assert!(fresh.requests > 100 && kept.requests > 100, "the load must be real: {fresh:?} {kept:?}");
        assert_eq!(fresh.failed, 0, "{what}: requests failed (new connection per request): {fresh:?}");
        assert_eq!(kept.failed, 0, "{what}: requests failed (keep-alive): {kept:?}");
        (fresh, kept)
    }
}

fn write_unit(h: &Host, name: &str, text: &str) {
    std::fs::write(h.path(&format!("/etc/systemd/system/{name}")), text).expect("write unit");
}

#[test]
fn systemd_semantics_the_design_rests_on() {
    let h = Host::boot("socket-semantics");
    let demo = bin("baton-demo").display().to_string();
    let socket = |service: &str| format!("[Socket]\nListenStream=127.0.0.1:9300\nReusePort=yes\nService={service}\n");
    let release = |v: &str| {
        format!("[Service]\nSockets=e.socket\nExecStart={demo} --port 9300 --version {v}\nTimeoutStopSec=10\n")
    };
    write_unit(&h, "e.socket", &socket("e-v1.service"));
    write_unit(&h, "e-v1.service", &release("v1"));
    write_unit(&h, "e-v2.service", &release("v2"));
    h.sh("systemctl daemon-reload");

    // Starting a release pulls the socket in (Sockets= implies Wants=/After=), and makes the
    // release triggered by it.
    h.sh("systemctl start e-v1.service");
    assert_eq!(h.prop("e.socket", "ActiveState"), "active");
    assert!(h.prop("e-v1.service", "TriggeredBy").contains("e.socket"));
    h.sb.sh("systemctl start e-v2.service").expect("v2 starts beside v1 on the same socket");

    // v1 (the socket's Service=) stops while v2 runs: the socket listens again, but traffic
    // starts nothing while a release it triggers runs; v2 serves.
    h.sh("systemctl stop e-v1.service");
    for _ in 0..5 {
        assert_eq!(get(&h, 9300).as_deref(), Some("v2"));
    }
    assert_eq!(h.prop("e-v1.service", "ActiveState"), "inactive", "v1 was not started again");

    // No release runs: traffic starts the Service= unit, whatever it is. This is why the
    // socket must name the current release, never an old one.
    h.sh("systemctl stop e-v2.service");
    assert_eq!(get(&h, 9300).as_deref(), Some("v1"), "traffic started the socket's Service= unit");
    assert_eq!(h.prop("e-v1.service", "ActiveState"), "active");

    // systemd refuses to start a socket whose Service= unit runs already.
    h.sh("systemctl stop e.socket");
    let refused = h.sb.sh_output("systemctl start e.socket").expect("systemctl");
    assert!(!refused.status.success(), "the socket started while its Service= ran");
    assert!(h.sh("journalctl --no-pager -o cat -u e.socket").contains("already active, refusing"));
    // Stopping the socket does not stop a release: it keeps serving from its own copy.
    assert_eq!(get(&h, 9300).as_deref(), Some("v1"));
}

#[test]
fn handovers_and_failing_releases_under_load_fail_no_request() {
    let h = Host::boot("socket-handovers");
    let (name, port) = ("s", 8400);
    let first = h.apply(&spec(name, "v0", port, json!({})), &[]).ok();
    assert!(actions(&first).iter().any(|a| a == "write /etc/systemd/system/s.socket"), "{:?}", actions(&first));
    only(&h, name, "v0");
    // The app took the socket from systemd (LISTEN_FDS): the release holds the listener
    // systemd holds, and it is the only listener on the port.
    let journal = h.sh("journalctl -u s-v0.service --no-pager -o cat");
    assert!(journal.contains("socket from systemd, LISTEN_FDS"), "{journal}");

    let loads = Loads::start(&h, port);
    let mut current = 0;
    for i in 1..=9 {
        if i % 3 == 0 {
            let out = h.apply(&crashing(name, &format!("bad{i}"), port), &[]);
            assert!(out.failed() && out.json["rolled_back"] == true, "{:#}", out.json);
            only(&h, name, &format!("v{current}"));
        }
        let out = h.apply(&spec(name, &format!("v{i}"), port, json!({})), &[]).ok();
        assert_eq!(out.json["previous_version"], format!("v{current}"), "{:#}", out.json);
        let acts = actions(&out);
        assert!(acts.iter().any(|a| a == "write /etc/systemd/system/s.socket"), "Service= rewritten: {acts:?}");
        assert!(!acts.iter().any(|a| a.contains("tcp_migrate_req")), "nothing to migrate: {acts:?}");
        assert_eq!(out.json["migration"], "shared-socket", "{:#}", out.json);
        current = i;
        only(&h, name, &format!("v{current}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (fresh, kept) = loads.finish_without_failures("9 socket-mode handovers, 3 failing releases");
    for i in 0..=9 {
        let v = format!("v{i}");
        assert!(fresh.by_version.contains_key(&v) || kept.by_version.contains_key(&v), "{v} served");
    }
    // The same spec again: converged.
    assert!(!h.apply(&spec(name, "v9", port, json!({})), &[]).ok().changed());
}

#[test]
fn nothing_starts_an_old_or_stopped_release_again() {
    let h = Host::boot("socket-reactivation");
    let (name, port) = ("r", 8410);
    for v in ["v1", "v2", "v3"] {
        h.apply(&spec(name, v, port, json!({"keep": 5})), &[]).ok();
    }
    only(&h, name, "v3");

    // A daemon-reload changes nothing.
    h.sh("systemctl daemon-reload");
    only(&h, name, "v3");

    // Traffic arriving while no release runs (the current one stopped behind baton's back)
    // starts the current release, never an old one.
    h.sh("systemctl stop r-v3.service");
    assert_eq!(get(&h, port).as_deref(), Some("v3"));
    only(&h, name, "v3");

    // stopped: the socket stops first, then the release; nothing listens and no traffic starts
    // anything.
    let out = h.apply(&json!({"name": name, "state": "stopped"}), &[]).ok();
    let acts = actions(&out);
    assert_eq!(acts.first().map(String::as_str), Some("stop r.socket"), "{acts:?}");
    assert!(active(&h, name).is_empty());
    assert_eq!(h.prop("r.socket", "ActiveState"), "inactive");
    for _ in 0..3 {
        assert_eq!(get(&h, port), None, "nothing may answer once stopped");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(active(&h, name).is_empty(), "traffic started a stopped release");

    // A "reboot": every unit down, then the boot target started again. The enabled release
    // pulls its socket in; no old release starts.
    assert_eq!(h.enabled("r-v3.service"), "enabled");
    assert_eq!(h.enabled("r-v1.service"), "disabled");
    h.sh("systemctl daemon-reload && systemctl start multi-user.target");
    only(&h, name, "v3");
    assert_eq!(get(&h, port).as_deref(), Some("v3"));

    // absent: everything removed, the socket too.
    let out = h.apply(&json!({"name": name, "state": "absent"}), &[]).ok();
    assert!(actions(&out).contains(&"remove /etc/systemd/system/r.socket".to_owned()), "{:?}", actions(&out));
    assert!(active(&h, name).is_empty() && socket_service(&h, name).is_none());
    assert_eq!(h.prop("r.socket", "ActiveState"), "inactive");
    assert_eq!(get(&h, port), None);
    assert!(!h.apply(&json!({"name": name, "state": "absent"}), &[]).ok().changed());
}

#[test]
fn switching_modes_under_load_fails_no_request() {
    let h = Host::boot("socket-switch");
    let (name, port) = ("m", 8420);
    let reuseport = json!({"listen_mode": "reuseport"});
    // The socket joins the old release's SO_REUSEPORT group only on the address the app binds
    // (the demo: 127.0.0.1); on another one (the default, every address) the kernel keeps
    // handing the connections to the old release's more specific listener, and the new release
    // fails its probe (rolled back, see below).
    let socket = json!({"bind_address": "127.0.0.1"});
    h.apply(&spec(name, "v1", port, reuseport.clone()), &[]).ok();
    assert!(socket_service(&h, name).is_none());

    // reuseport → socket on another address than the app's: refused by the probe, rolled back
    // (socket stopped first), v1 keeps serving.
    let loads = Loads::start(&h, port);
    let out = h.apply(&spec(name, "v2", port, json!({})), &[]);
    assert!(out.failed() && out.json["rolled_back"] == true, "{:#}", out.json);
    let acts = actions(&out);
    let rolled = |a: &str| acts.iter().position(|x| x == a).unwrap_or_else(|| panic!("{a}: {acts:?}"));
    assert!(rolled("stop m.socket (rolled back)") < rolled("stop m-v2.service (rolled back)"), "{acts:?}");
    assert_eq!(active(&h, name), ["m-v1.service"]);
    assert_eq!(h.prop("m.socket", "ActiveState"), "inactive");
    std::thread::sleep(Duration::from_millis(300));
    loads.finish_without_failures("reuseport → socket on another address, rolled back");

    // reuseport → socket: the socket binds beside v1 (ReusePort=yes), v2 takes it, v1 goes.
    let loads = Loads::start(&h, port);
    h.apply(&spec(name, "v2", port, socket.clone()), &[]).ok();
    only(&h, name, "v2");
    std::thread::sleep(Duration::from_millis(300));
    loads.finish_without_failures("reuseport → socket");
    // socket → socket.
    let loads = Loads::start(&h, port);
    h.apply(&spec(name, "v3", port, socket.clone()), &[]).ok();
    only(&h, name, "v3");
    std::thread::sleep(Duration::from_millis(300));
    loads.finish_without_failures("socket → socket");
    // socket → reuseport: v4 binds beside the socket, the socket stops (v3 keeps serving from
    // its copy), v3 goes, the socket file is removed.
    let loads = Loads::start(&h, port);
    let out = h.apply(&spec(name, "v4", port, reuseport.clone()), &[]).ok();
    let acts = actions(&out);
    let at = |a: &str| acts.iter().position(|x| x.starts_with(a)).unwrap_or_else(|| panic!("{a}: {acts:?}"));
    assert!(at("stop m.socket") < at("stop m-v3.service"), "{acts:?}");
    assert!(at("remove /etc/systemd/system/m.socket") > at("stop m-v3.service"), "{acts:?}");
    assert_eq!(active(&h, name), ["m-v4.service"]);
    assert!(socket_service(&h, name).is_none());
    std::thread::sleep(Duration::from_millis(300));
    loads.finish_without_failures("socket → reuseport");
    // And back to socket.
    let loads = Loads::start(&h, port);
    h.apply(&spec(name, "v5", port, socket.clone()), &[]).ok();
    only(&h, name, "v5");
    std::thread::sleep(Duration::from_millis(300));
    loads.finish_without_failures("reuseport → socket again");
}

#[test]
fn killed_at_every_step_in_socket_mode_the_next_run_converges_and_no_request_fails() {
    let h = Host::boot("socket-kill9");
    let (name, port) = ("k", 8430);
    // Bound where the demo binds in reuseport mode, for the switches (see the test above).
    let with_keep = |v: &str, extra: Value| {
        let mut s = spec(name, v, port, json!({"keep": 1}));
        if extra.get("listen_mode").is_none() {
            s["bind_address"] = json!("127.0.0.1");
        }
        if let (Some(o), Value::Object(more)) = (s.as_object_mut(), extra) {
            o.extend(more);
        }
        s
    };
    h.apply(&with_keep("v0", json!({})), &[]).ok();
    let loads = Loads::start(&h, port);
    let mut version = 0;
    // A socket-mode handover's steps, each killed once; the next run finishes the job.
    let socket_steps = ["write", "start", "write-socket", "reload", "enable", "disable", "stop", "remove"];
    // Then switches to reuseport (the socket stopped, later removed) and back (the socket
    // written before the new release starts).
    let switch_steps = [
        ("stop-socket", json!({"listen_mode": "reuseport"})),
        ("write-socket", json!({})),
        ("remove-socket", json!({"listen_mode": "reuseport"})),
        ("write-socket", json!({})),
    ];
    let steps = socket_steps.iter().map(|k| (*k, json!({}))).chain(switch_steps);
    for (kind, extra) in steps {
        version += 1;
        let v = format!("v{version}");
        let s = with_keep(&v, extra.clone());
        let mut child = h.apply_until_paused(&s, kind);
        h.kill_baton(&mut child);
        let next = h.apply(&s, &[]).ok();
        eprintln!("killed after {kind}: next run {:?}", actions(&next));
        assert_eq!(next.json["version"], v.as_str());
        let again = h.apply(&s, &[]).ok();
        assert!(!again.changed(), "after {kind}: converged: {:?}", actions(&again));
        assert_eq!(active(&h, name), [format!("k-{v}.service")], "after {kind}: exactly the new release runs");
        if extra.get("listen_mode").is_some() {
            assert!(socket_service(&h, name).is_none(), "after {kind}: the socket is gone in reuseport mode");
        } else {
            only(&h, name, &v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    loads.finish_without_failures("socket-mode handovers and switches, each killed after one step");
    // stopped, killed after the socket stopped: the next run stops the release.
    let stopped = json!({"name": name, "state": "stopped"});
    let mut child = h.apply_until_paused(&stopped, "stop-socket");
    h.kill_baton(&mut child);
    h.apply(&stopped, &[]).ok();
    assert!(active(&h, name).is_empty() && h.prop("k.socket", "ActiveState") == "inactive");
    // Started again; only now is the load's service back, so the load ends before stopping.
    let last = with_keep(&format!("v{version}"), json!({}));
    h.apply(&last, &[]).ok();
    only(&h, name, &format!("v{version}"));
}
