//! `NetworkAddress`: the design's `XXX.XXX.Y` address, read as region.cluster.tier.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::RolesError;

/// Where a node sits in the placement hierarchy: `RRR.CCC.T`.
///
/// * `region` (000–999): the Alpha node of a region summarises it; Super nodes
///   bridge regions.
/// * `cluster` (000–999, scoped to the region): the Bravo node of a cluster
///   summarises its hosts.
/// * `tier` (0–9): the node's advertised capacity class (0 weakest). Election
///   uses it as a prior and only nodes at or above `min_tier` may lead.
///
/// Routing a placement walks region → cluster → host, so a request touches one
/// node per level instead of every host. The textual form is zero-padded, so
/// `Display` then `FromStr` is the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetworkAddress {
    /// Region number, 0–999.
    pub region: u16,
    /// Cluster number within the region, 0–999.
    pub cluster: u16,
    /// Capacity tier, 0–9.
    pub tier: u8,
}

impl NetworkAddress {
    /// Builds an address, checking the ranges the textual form can carry.
    pub fn new(region: u16, cluster: u16, tier: u8) -> Result<Self, RolesError> {
        let a = Self {
            region,
            cluster,
            tier,
        };
        if region > 999 || cluster > 999 || tier > 9 {
            return Err(RolesError::BadAddress {
                input: format!("{region}.{cluster}.{tier}"),
                reason: "region and cluster must be 0-999 and tier 0-9",
            });
        }
        Ok(a)
    }
}

impl fmt::Display for NetworkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}.{:03}.{}", self.region, self.cluster, self.tier)
    }
}

impl FromStr for NetworkAddress {
    type Err = RolesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| RolesError::BadAddress {
            input: s.to_string(),
            reason,
        };
        let mut parts = s.split('.');
        let (Some(r), Some(c), Some(t), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected three dot-separated parts RRR.CCC.T"));
        };
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(r, 3) {
            return Err(bad("region must be exactly three digits"));
        }
        if !digits(c, 3) {
            return Err(bad("cluster must be exactly three digits"));
        }
        if !digits(t, 1) {
            return Err(bad("tier must be exactly one digit"));
        }
        // The digit checks above make these parses infallible and in range.
        Ok(Self {
            region: r.parse().map_err(|_| bad("region is not a number"))?,
            cluster: c.parse().map_err(|_| bad("cluster is not a number"))?,
            tier: t.parse().map_err(|_| bad("tier is not a number"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_displays() {
        let a: NetworkAddress = "012.345.6".parse().unwrap();
        assert_eq!(
            a,
            NetworkAddress {
                region: 12,
                cluster: 345,
                tier: 6
            }
        );
        assert_eq!(a.to_string(), "012.345.6");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "1.2.3",
            "012.345",
            "012.345.6.7",
            "abc.345.6",
            "012.345.67",
            "012.34x.6",
            " 012.345.6",
        ] {
            assert!(bad.parse::<NetworkAddress>().is_err(), "{bad:?} parsed");
        }
        assert!(NetworkAddress::new(1000, 0, 0).is_err());
        assert!(NetworkAddress::new(0, 0, 10).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(r in 0u16..1000, c in 0u16..1000, t in 0u8..10) {
            let a = NetworkAddress::new(r, c, t).unwrap();
            prop_assert_eq!(a.to_string().parse::<NetworkAddress>().unwrap(), a);
        }
    }
}
