//! `baton-demo` answers its version and health, and shares its port through SO_REUSEPORT.

mod common;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use baton_load::LoadConfig;
use common::{free_port, get, Demo};

#[test]
fn answers_its_version_health_and_404() {
    let port = free_port();
    let _demo = Demo::start_listening(port, "v1", &[]);
    let root = get(port, "/");
    assert_eq!((root.status, root.body.as_str()), (200, "v1\n"), "{root:?}");
    assert_eq!(root.header("X-Version"), Some("v1"));
    assert_eq!(root.header("Connection"), Some("close"));
    let health = get(port, "/health");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"), "{health:?}");
    assert_eq!(get(port, "/nope").status, 404);
}

#[test]
fn two_instances_share_one_port_and_both_answer() {
    let port = free_port();
    let _v1 = Demo::start_listening(port, "v1", &[]);
    let _v2 = Demo::start_listening(port, "v2", &[]);
    let cfg = LoadConfig {
        addr: common::addr(port),
        workers: 4,
        duration: Duration::from_secs(20),
        max_requests: 400,
        ..LoadConfig::default()
    };
    let report = baton_load::run(&cfg, &AtomicBool::new(false));
    assert_eq!((report.requests, report.ok), (400, 400), "{report:?}");
    let v1 = report.by_version.get("v1").copied().unwrap_or(0);
    let v2 = report.by_version.get("v2").copied().unwrap_or(0);
    assert!(v1 > 0 && v2 > 0, "both versions answer: {report:?}");
}

#[test]
fn unhealthy_after_turns_health_503_but_keeps_serving() {
    let port = free_port();
    let mut demo = Demo::start_listening(port, "v1", &["--unhealthy-after", "1"]);
    assert_eq!(get(port, "/health").status, 200);
    std::thread::sleep(Duration::from_millis(1300));
    let health = get(port, "/health");
    assert_eq!(health.status, 503, "{health:?}");
    assert_eq!(health.header("X-Version"), Some("v1"));
    assert_eq!(get(port, "/").status, 200);
    demo.wait_for_line("now unhealthy");
}
