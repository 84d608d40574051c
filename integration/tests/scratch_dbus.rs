//! scratch
use std::time::{Duration, Instant};
use baton_core::systemd::dbus::DbusSystemd;
use baton_core::systemd::Systemd;
use baton_sandbox::Sandbox;

#[test]
fn scratch() {
    let sb = Sandbox::boot("scratch").unwrap();
    let addr = format!("unix:path=/proc/{}/root/run/dbus/system_bus_socket", sb.pid());
    let sd = DbusSystemd::connect_address(&addr).unwrap();
    let p = format!("/proc/{}/root/etc/systemd/system/e.service", sb.pid());
    std::fs::write(&p, "[Service]\nExecStart=/bin/sleep 300\n").unwrap();
    sd.reload().unwrap();
    println!("{:?}", sd.unit_status("e.service").unwrap());
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(&p, "[Service]\nType=simple\nExecStart=/bin/sleep 300\n").unwrap();
    println!("{:?}", sd.unit_status("e.service").unwrap());
    println!("{}", sb.sh("ls -l --full-time /etc/systemd/system/e.service; systemctl show -P NeedDaemonReload e.service; systemctl status e.service 2>&1 | head -5").unwrap());
    for _ in 0..3 {
        let t = Instant::now();
        sd.unit_status("e.service").unwrap();
        println!("status {:?}", t.elapsed());
    }
}
