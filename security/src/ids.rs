//! Identifiers and the time unit shared by every module.
//!
//! Ids are plain bytes so the crate never depends on a key or hash library:
//! the host converts its libp2p `PeerId` / blake3 digest into these.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Milliseconds since an epoch the caller chooses. The crate never reads a
/// clock: every event carries `now`, which keeps decisions reproducible in
/// the simulator and testable without sleeping.
pub type Millis = u64;

macro_rules! hex_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Builds an id from a small integer. The simulator and tests use
            /// this because their identities need not be real keys or hashes.
            pub fn from_u64(n: u64) -> Self {
                let mut b = [0u8; 32];
                b[..8].copy_from_slice(&n.to_be_bytes());
                // Spread the value so ids differ in their first bytes too,
                // which keeps hex output readable in logs.
                let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                b[8..16].copy_from_slice(&mix.to_be_bytes());
                Self(b)
            }

            /// The raw bytes, e.g. for the canonical encoding of a trust report.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lower-case hex, the form used in JSON so persisted state stays
            /// readable and map keys are strings.
            pub fn to_hex(&self) -> String {
                let mut s = String::with_capacity(64);
                for b in self.0 {
                    s.push_str(&format!("{b:02x}"));
                }
                s
            }

            /// Parses the 64-character hex form produced by [`Self::to_hex`].
            pub fn from_hex(s: &str) -> Option<Self> {
                if s.len() != 64 || !s.is_ascii() {
                    return None;
                }
                let mut b = [0u8; 32];
                for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
                    let hex = std::str::from_utf8(chunk).ok()?;
                    b[i] = u8::from_str_radix(hex, 16).ok()?;
                }
                Some(Self(b))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}..)", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::from_hex(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("expected 64 hex characters, got {s:?}"))
                })
            }
        }
    };
}

hex_id!(
    PeerId,
    "A peer's identity (its public key bytes). Reputation is keyed by it, so a new key is a new, untrusted peer."
);
hex_id!(
    Digest,
    "A content hash (module, input or output). Outputs are compared by digest, never by content, so the crate stays small and pure."
);

/// A coarse network address region (e.g. an IPv4 /16 or an ASN) chosen by
/// the host. Replicas of one task go to distinct regions because identities
/// are cheap but addresses are not: one operator's many identities tend to
/// share a region and so cannot all land on the same task.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, Default,
)]
pub struct Region(pub u32);

/// A unit of real work submitted by a customer. Replicas of the task share
/// this id inside the crate but are dispatched under distinct job ids so
/// hosts cannot tell who else holds the same task.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, Default,
)]
pub struct TaskId(pub u64);

/// One dispatch of a job (a replica, an audit or a canary) to one peer.
/// The receipt must quote it back, which is what binds a result to a dispatch.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, Default,
)]
pub struct AssignmentId(pub u64);
