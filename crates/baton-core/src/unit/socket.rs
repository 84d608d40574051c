//! The shared socket unit of socket mode (`listen_mode: "socket"`), `<name>.socket`: rendered
//! from the spec, recognised as baton's by its `X-Baton-Service=` mark, and read back for the
//! release it activates (`Service=`).
//!
//! systemd holds the listening socket across releases; every release unit names it with
//! `Sockets=` and inherits it (`LISTEN_FDS`). Why the unit looks the way it does, as checked
//! against systemd 252 (`integration/tests/socket_mode.rs`):
//! - `Service=` must name a unit that is loaded, or systemd refuses to start the socket (the
//!   default, `<name>.service`, does not exist). It names the current release, and a handover
//!   rewrites it once the new release is ready, before the old one stops. Traffic arriving while
//!   no release runs starts the `Service=` unit, so it must never name an old release.
//! - `Sockets=` makes each release triggered by the socket: while any release runs, traffic
//!   starts nothing.
//! - No `[Install]`: the socket is never enabled on its own. The enabled release pulls it in at
//!   boot (`Sockets=` implies `Wants=` and `After=`), so a reboot brings up the current release
//!   and its socket, and nothing else.
//! - A release that crash-loops into its start limit takes the socket down with it: systemd
//!   passes a triggered unit's "start-limit-hit" on to its socket, which fails, and cannot be
//!   started again while the current release runs. So every socket-mode release unit carries
//!   `StartLimitIntervalSec=0` in `[Unit]` (a failing new release is stopped by the rollback
//!   instead).
//! - `ReusePort=yes`, so that a switch from reuseport mode (the old release still bound to the
//!   port) can bind the socket beside it.

use std::net::{IpAddr, SocketAddr};

use super::parse;
use super::MARK_SERVICE;
use crate::spec::ServiceSpec;

/// The `ListenStream=` value: `port` alone (every address, IPv4 and IPv6) or `address:port`
/// (`[address]:port` for IPv6).
pub(crate) fn listen_value(bind_address: Option<IpAddr>, port: u16) -> String {
    match bind_address {
        None => port.to_string(),
        Some(IpAddr::V4(a)) => format!("{a}:{port}"),
        Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
    }
}

/// The text of `<name>.socket` for `spec`, activating `service_unit` (see the module doc). None
/// when the spec has no port (validation refuses socket mode without one).
pub(crate) fn render(spec: &ServiceSpec, service_unit: &str) -> Option<String> {
    let port = spec.port?;
    let name = spec.name.as_str();
    // Every value is a validated name, a unit name made from names, or a formatted IP address
    // and port: nothing a systemd unit file would read as more than one value.
    Some(format!(
        "# Managed by baton: the listening socket of service {name}, shared by its releases.\n\
         # Changes made by hand are replaced on the next `baton apply`.\n\
         # Service= names the current release (traffic while no release runs starts it).\n\
         [Unit]\n\
         Description={name} listening socket (managed by baton)\n\
         {MARK_SERVICE}={name}\n\
         \n\
         [Socket]\n\
         ListenStream={listen}\n\
         ReusePort=yes\n\
         Service={service_unit}\n",
        listen = listen_value(spec.bind_address, port),
    ))
}

/// The service a socket unit file is marked as baton's for (`X-Baton-Service=` in `[Unit]`).
pub(crate) fn owner(text: &str) -> Option<&str> {
    parse::values(text, "Unit", MARK_SERVICE).last()
}

/// The unit a socket unit file activates (`Service=` in `[Socket]`).
pub(crate) fn service(text: &str) -> Option<&str> {
    parse::values(text, "Socket", "Service").last()
}

/// The `ListenStream=` value of a socket unit file, as written.
pub(crate) fn listen(text: &str) -> Option<&str> {
    parse::values(text, "Socket", "ListenStream").last()
}

/// The inverse of [`listen_value`]: the address (None for every address) and the port of a
/// `ListenStream=` value; None for anything baton does not write (a path, a host name, …).
pub(crate) fn parse_listen(value: &str) -> Option<(Option<IpAddr>, u16)> {
    if let Ok(port) = value.parse::<u16>() {
        return Some((None, port));
    }
    let at: SocketAddr = value.parse().ok()?;
    Some((Some(at.ip()), at.port()))
}

/// `text` with its `Service=` value replaced by `service_unit` (to compare two socket units
/// but for the release they activate).
pub(crate) fn with_service(text: &str, service_unit: &str) -> String {
    let mut section = "";
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match parse::line(line.trim_end_matches('\n')) {
            parse::Line::Section(name) => section = name,
            parse::Line::Directive { key: "Service", .. } if section == "Socket" => {
                out.push_str(&format!("Service={service_unit}\n"));
                continue;
            }
            _ => {}
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse as parse_spec;

    fn spec(extra: &str) -> ServiceSpec {
        let json = format!(
            r#"{{"name":"app","version":"v1","exec_start":["/bin/app"],"port":8080,"listen_mode":"socket"{extra}}}"#
        );
        parse_spec(json.as_bytes()).expect("valid")
    }

    #[test]
    fn the_socket_unit_snapshot() {
        let text = render(&spec(""), "app-v1.service").expect("port");
        insta::assert_snapshot!(text);
        assert_eq!(owner(&text), Some("app"));
        assert_eq!(service(&text), Some("app-v1.service"));
        assert!(!text.contains("[Install]"), "never enabled on its own");
    }

    #[test]
    fn bind_addresses_are_written_as_systemd_reads_them() {
        let v4 = render(&spec(r#","bind_address":"127.0.0.1""#), "app-v1.service").expect("port");
        assert!(v4.contains("\nListenStream=127.0.0.1:8080\n"), "{v4}");
        let v6 = render(&spec(r#","bind_address":"::1""#), "app-v1.service").expect("port");
        assert!(v6.contains("\nListenStream=[::1]:8080\n"), "{v6}");
        assert_eq!(listen_value(None, 80), "80");
        // And back.
        for (text, address) in [(&v4, Some("127.0.0.1")), (&v6, Some("::1"))] {
            let value = listen(text).expect("ListenStream=");
            let want = address.map(|a| a.parse().expect("address"));
            assert_eq!(parse_listen(value), Some((want, 8080)), "{value}");
        }
        assert_eq!(parse_listen("80"), Some((None, 80)));
        assert_eq!(parse_listen("/run/app.sock"), None);
        assert_eq!(parse_listen("localhost:80"), None);
    }

    #[test]
    fn only_the_service_line_is_replaced() {
        let text = render(&spec(""), "app-v1.service").expect("port");
        let v2 = with_service(&text, "app-v2.service");
        assert_eq!(v2, render(&spec(""), "app-v2.service").expect("port"));
        assert_eq!(with_service(&v2, "app-v1.service"), text);
        // A Service= line of another section is left alone.
        assert_eq!(with_service("[Unit]\nService=x\n", "y"), "[Unit]\nService=x\n");
    }
}
