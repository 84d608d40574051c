//! Every default and every numeric bound of the spec, in one place: validation applies them, and
//! every other reader (the read-back of a unit, the front-ends' schema descriptions and models)
//! takes them from here instead of writing the value out again.

use std::ops::RangeInclusive;

use super::{ListenMode, ServiceType, State, UnitNaming};

/// `state` when not given.
pub const STATE: State = State::Started;
/// `service_type` when not given.
pub const SERVICE_TYPE: ServiceType = ServiceType::Exec;
/// `timeout_stop_sec` when not given, in seconds.
pub const TIMEOUT_STOP_SEC: u64 = 30;
/// The values `timeout_stop_sec` may take.
pub const TIMEOUT_STOP_SEC_RANGE: RangeInclusive<u64> = 1..=86_400;
/// `restart` when not given.
pub const RESTART: &str = "always";
/// `enabled` when not given.
pub const ENABLED: bool = true;
/// `keep` when not given.
pub const KEEP: u32 = 2;
/// The values `keep` may take.
pub const KEEP_RANGE: RangeInclusive<u32> = 0..=100;
/// `migrate_requests` when not given.
pub const MIGRATE_REQUESTS: bool = true;
/// `listen_mode` when not given.
pub const LISTEN_MODE: ListenMode = ListenMode::Reuseport;
/// `unit_naming` when not given.
pub const UNIT_NAMING: UnitNaming = UnitNaming::PerVersion;
/// `unit_dir` when not given.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// `health.timeout_sec` when not given, in seconds.
pub const HEALTH_TIMEOUT_SEC: u64 = 30;
/// The values `health.timeout_sec` may take.
pub const HEALTH_TIMEOUT_SEC_RANGE: RangeInclusive<u64> = 1..=3600;
/// `health.interval_ms` when not given, in milliseconds.
pub const HEALTH_INTERVAL_MS: u64 = 200;
/// The values `health.interval_ms` may take.
pub const HEALTH_INTERVAL_MS_RANGE: RangeInclusive<u64> = 10..=60_000;
/// `health.observe_sec` when not given, in seconds.
pub const HEALTH_OBSERVE_SEC: u64 = 0;
/// The values `health.observe_sec` may take.
pub const HEALTH_OBSERVE_SEC_RANGE: RangeInclusive<u64> = 0..=3600;
/// The values `port` may take.
pub const PORT_RANGE: RangeInclusive<u32> = 1..=65_535;

/// `health.tcp` when not given: a TCP probe when there is a port to probe and no HTTP probe.
pub const fn health_tcp(has_port: bool, has_http: bool) -> bool {
    has_port && !has_http
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_lies_within_its_bounds() {
        assert!(TIMEOUT_STOP_SEC_RANGE.contains(&TIMEOUT_STOP_SEC));
        assert!(KEEP_RANGE.contains(&KEEP));
        assert!(HEALTH_TIMEOUT_SEC_RANGE.contains(&HEALTH_TIMEOUT_SEC));
        assert!(HEALTH_INTERVAL_MS_RANGE.contains(&HEALTH_INTERVAL_MS));
        assert!(HEALTH_OBSERVE_SEC_RANGE.contains(&HEALTH_OBSERVE_SEC));
        assert!(super::super::RESTART_VALUES.contains(&RESTART));
    }

    #[test]
    fn a_spec_without_optional_fields_gets_exactly_these_defaults() {
        let s = crate::spec::parse(br#"{"name":"a","version":"v1","exec_start":["/x"]}"#).expect("valid");
        assert_eq!((s.state, s.service_type, s.timeout_stop_sec), (STATE, SERVICE_TYPE, TIMEOUT_STOP_SEC));
        assert_eq!((s.restart.as_str(), s.enabled, s.keep), (RESTART, ENABLED, KEEP));
        assert_eq!((s.migrate_requests, s.unit_dir.to_str()), (MIGRATE_REQUESTS, Some(UNIT_DIR)));
        let h = &s.health;
        assert_eq!(
            (h.timeout_sec, h.interval_ms, h.observe_sec),
            (HEALTH_TIMEOUT_SEC, HEALTH_INTERVAL_MS, HEALTH_OBSERVE_SEC)
        );
        assert_eq!(h.tcp, health_tcp(false, false));
    }
}
