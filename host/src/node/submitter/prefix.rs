//! The network prefix a connection was observed from: /24 for IPv4, /48 for
//! IPv6. Verification diversity is judged on it, never on the region a
//! host declares: identities are free, address blocks are not.

use std::net::IpAddr;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use security::Region;

/// An observed prefix: the region id the coordinator compares, and a label
/// for people (`127.0.0.0/24`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    /// What the coordinator compares.
    pub region: Region,
    /// For display.
    pub label: String,
    /// Loopback (every local host shares it).
    pub loopback: bool,
}

/// The prefix of the first IP in `addr`, or `None` (a relayed or memory
/// address names no network).
pub fn observed_prefix(addr: &Multiaddr) -> Option<Prefix> {
    let ip = addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })?;
    let (bytes, label): (Vec<u8>, String) = match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            let mut b = vec![4];
            b.extend_from_slice(&o[..3]);
            (b, format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
        }
        IpAddr::V6(a) => {
            // An IPv4-mapped address is judged as the IPv4 it carries.
            if let Some(v4) = a.to_ipv4_mapped() {
                return observed_prefix(&Multiaddr::empty().with(Protocol::Ip4(v4)));
            }
            let s = a.segments();
            let mut b = vec![6];
            for seg in &s[..3] {
                b.extend_from_slice(&seg.to_be_bytes());
            }
            (b, format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
    };
    let h = blake3::hash(&bytes);
    let region = Region(u32::from_be_bytes(
        h.as_bytes()[..4].try_into().expect("4 bytes"),
    ));
    Some(Prefix {
        region,
        label,
        loopback: ip.is_loopback(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        observed_prefix(&s.parse().unwrap()).unwrap()
    }

    #[test]
    fn v4_groups_by_24_and_v6_by_48() {
        assert_eq!(
            p("/ip4/10.1.2.3/tcp/1").region,
            p("/ip4/10.1.2.200/tcp/9").region
        );
        assert_ne!(
            p("/ip4/10.1.2.3/tcp/1").region,
            p("/ip4/10.1.3.3/tcp/1").region
        );
        assert_eq!(p("/ip4/10.1.2.3/tcp/1").label, "10.1.2.0/24");
        assert_eq!(
            p("/ip6/2001:db8:1:2::1/tcp/1").region,
            p("/ip6/2001:db8:1:ffff::9/udp/1/quic-v1").region
        );
        assert_ne!(
            p("/ip6/2001:db8:1::1/tcp/1").region,
            p("/ip6/2001:db8:2::1/tcp/1").region
        );
        assert!(p("/ip4/127.0.0.1/tcp/1").loopback);
        assert_eq!(
            p("/ip6/::ffff:10.1.2.3/tcp/1").region,
            p("/ip4/10.1.2.9/tcp/1").region
        );
        assert!(observed_prefix(&"/memory/5".parse().unwrap()).is_none());
    }
}
