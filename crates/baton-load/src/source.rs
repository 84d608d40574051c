//! Picks the client address each worker connects from.
//!
//! Against an IPv4 loopback target, worker `i` binds to its own `127.0.0.x` address, so each
//! worker has a whole ephemeral port range to itself; elsewhere the kernel chooses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address (with port 0) worker `index` binds to before connecting to `target`, if any.
pub fn for_worker(target: SocketAddr, index: usize) -> Option<SocketAddr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            // 127.0.0.1 ..= 127.0.0.254, round robin.
            let host = u8::try_from(index % 254 + 1).unwrap_or(1);
            Some(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_workers_get_their_own_address() {
        let target = SocketAddr::from(([127, 0, 0, 1], 80));
        assert_eq!(for_worker(target, 0), Some(SocketAddr::from(([127, 0, 0, 1], 0))));
        assert_eq!(for_worker(target, 3), Some(SocketAddr::from(([127, 0, 0, 4], 0))));
        assert_eq!(for_worker(target, 254), Some(SocketAddr::from(([127, 0, 0, 1], 0))));
        assert_eq!(for_worker(SocketAddr::from(([10, 0, 0, 1], 80)), 0), None);
        assert_eq!(for_worker("[::1]:80".parse().unwrap_or(target), 0), None);
    }
}
