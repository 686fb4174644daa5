//! Node identity and virtual time.

use serde::{Deserialize, Serialize};

/// Milliseconds of virtual time since an arbitrary epoch chosen by the driver.
///
/// The state machines never read a clock: the host passes real elapsed time,
/// the simulator passes virtual time, and both get the same decisions.
pub type Millis = u64;

/// A compact node identifier. The host maps libp2p `PeerId`s onto these (a
/// table index), which keeps the roles tables small and lets the simulator
/// address 100,000 nodes cheaply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u32);
