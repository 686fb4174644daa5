//! biop2p security: whom to trust, how many replicas a task needs, and what a
//! suspect peer is shown.
//!
//! Pure and sans-IO (events in, decisions out, explicit `now`, seeded RNG,
//! bounded tables), so the same code runs in the live host and in
//! `biop2p sim byzantine`. The trust logic borrows from the immune system:
//! newcomers are treated with caution, proven peers are still sampled, and a
//! suspect is contained (fed decoys) while evidence accumulates.
//!
//! The five layers, each switchable via [`LayerSet`] for ablation:
//! 1. randomized execution ([`placement`], [`quorum`]),
//! 2. receipt binding, CBADU ([`receipt`]),
//! 3. illusion: canaries and decoys ([`deception`]),
//! 4. behaviour monitoring ([`monitor`]),
//! 5. thermal detection ([`thermal`]).
//!
//! [`Reputation`] keeps the evidence; [`Coordinator`] composes everything
//! into one state machine; [`byzantine`] benchmarks it against attackers.

mod coordinator;
mod error;
mod ids;
mod layers;

pub mod aggregate;
pub mod byzantine;
pub mod deception;
pub mod monitor;
pub mod placement;
pub mod quorum;
pub mod receipt;
pub mod report;
pub mod reputation;
pub mod settlement;
pub mod thermal;

pub use coordinator::{
    AcceptReason, Action, Coordinator, DispatchStats, Event, GiveUpReason, SecurityConfig,
};
pub use deception::{Canary, DeceptionConfig};
pub use error::SecurityError;
pub use ids::{AssignmentId, Digest, Millis, PeerId, Region, TaskId};
pub use layers::{Layer, LayerSet};
pub use monitor::{Monitor, MonitorConfig};
pub use placement::PlacementConfig;
pub use quorum::{QuorumRule, Verdict, Vote};
pub use receipt::{JobSpec, ReceiptFacts, TaskSpec};
pub use report::{Accusation, TrustReport, TrustReportVerifier};
pub use reputation::{
    Evidence, FailureKind, PeerRecord, PeerState, Reason, Reputation, ReputationConfig,
    StateChange, Violation,
};
pub use thermal::ThermalConfig;
