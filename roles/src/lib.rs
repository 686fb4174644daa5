//! Pure decision logic of biop2p: the biological roles.
//!
//! Every type here is a sans-IO state machine: events come in with an
//! explicit `now` (virtual milliseconds), decisions and messages come out.
//! Nothing reads a clock, touches a socket or draws unseeded randomness, so
//! `biop2p host` and the simulator ([`sim`]) run the same code and a seed
//! reproduces a run exactly.
//!
//! * [`PheromoneTable`] (Thermal): ant-colony placement.
//! * [`ResponseThresholds`] (Caste): division of labour.
//! * [`young`] (Young): bootstrap from trusted elders.
//! * [`CrisisDetector`] (HAVOC): crisis mode with hand-back.
//! * [`MemorySnapshot`] (Memory) and [`TrustSource`] (Trust).
//! * [`Election`] and [`GroupSummary`] (Alpha / Bravo / Super hierarchy).
//! * [`ResourcePolicy`]: when the volunteer's host takes new work.
//! * [`HostRole`]: a live host's role (Young, then Caste; Havoc in a
//!   crisis) with a reasoned log of its switches.
//! * [`taxonomy()`]: the named node types, each a composition of the above.

// Config validation writes `!(x > 0.0)` on purpose: unlike `x <= 0.0` it
// also rejects NaN, which a TOML file or a hand-built config can carry.
#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::nonminimal_bool)]

mod address;
mod election;
mod error;
mod havoc;
mod hierarchy;
mod host_role;
mod id;
mod memory;
mod pheromone;
mod policy;
mod role;
pub mod sim;
mod taxonomy;
mod threshold;
mod trust;
pub mod young;

pub use address::NetworkAddress;
pub use election::{Candidate, Elected, Election, ElectionConfig, ElectionEvent};
pub use error::RolesError;
pub use havoc::{CrisisDetector, CrisisEvent, CrisisState, HavocAction, HavocConfig};
pub use hierarchy::{GroupSummary, Level};
pub use host_role::{HostRole, HostRoleConfig, RoleSwitch};
pub use id::{Millis, NodeId};
pub use memory::{MemorySnapshot, SNAPSHOT_VERSION};
pub use pheromone::{PheromoneTable, ThermalConfig};
pub use policy::{DAY_MS, PolicyConfig, ResourcePolicy, Stop};
pub use role::BiologicalRole;
pub use taxonomy::{NodeConfig, NodeType, taxonomy};
pub use threshold::{CasteConfig, ResponseThresholds, TaskClass};
pub use trust::{TrustScores, TrustSource};
pub use young::{Bootstrap, BootstrapAction, BootstrapEvent, ElderInfo, YoungConfig};
