//! The one error type of the `roles` crate.

use thiserror::Error;

/// Everything that can go wrong in `roles`.
///
/// Every variant is about bad input (an address, a role name, a config value, a
/// scenario file): the pure state machines themselves never fail at run time,
/// so a caller that validated its configuration once can drive them without
/// handling errors.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RolesError {
    /// A network address was not in the `RRR.CCC.T` form (region.cluster.tier).
    /// The caller should reject the peer's advert: routing by a malformed
    /// address would send work to the wrong cluster.
    #[error("invalid network address {input:?}: {reason}")]
    BadAddress {
        /// The text that failed to parse.
        input: String,
        /// Which part was wrong.
        reason: &'static str,
    },
    /// A role name did not match any [`crate::BiologicalRole`].
    #[error(
        "unknown role {0:?} (expected one of young, caste, havoc, thermal, memory, trust, alpha, bravo, super)"
    )]
    UnknownRole(String),
    /// A configuration value is outside its valid range; the name says which.
    #[error("invalid config: {field} = {value} ({reason})")]
    InvalidConfig {
        /// The offending field.
        field: String,
        /// Its value, rendered.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A node-type parameter name is not a known behaviour parameter.
    #[error("unknown behaviour parameter {0:?}")]
    UnknownParameter(String),
    /// No built-in scenario has this name; see `sim::builtin_names()`.
    #[error("unknown scenario {0:?}")]
    UnknownScenario(String),
    /// A scenario TOML file did not parse or did not validate.
    #[error("invalid scenario: {0}")]
    Scenario(String),
}
