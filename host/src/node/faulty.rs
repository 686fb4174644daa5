//! Test and demonstration only: hosts that lie, so the submitter's checks
//! have something to catch.
//!
//! Every lying host corrupts an output the same way (it appends one byte),
//! so faulty hosts collude by construction: their wrong outputs agree with
//! each other, which is the attack a plain majority vote falls for.

use std::str::FromStr;

/// How a host lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Faulty {
    /// It does not.
    #[default]
    Honest,
    /// Every output is wrong, the same wrong output as every other faulty
    /// host's (`--faulty`, `--faulty colluding`).
    Colluding,
    /// Honest for this many jobs, then `Colluding` (`--faulty sleeper=N`):
    /// a host that earns trust before it cheats.
    Sleeper {
        /// Jobs answered honestly first.
        honest_jobs: u64,
    },
    /// A federated-learning poisoner (`--faulty poison`): every trained
    /// digits model it returns is well-formed but harmful (its parameters
    /// sign-flipped and scaled, see [`crate::ai::digits::poison`]); other
    /// outputs are honest. Unlike a host that fails, its answers decode,
    /// verify and look plausible: only replication or a robust aggregator
    /// stops it.
    Poison,
    /// Honest outputs, but every receipt claims twice the fuel used (plus
    /// a thousand) and prices the claim (`--faulty overbilling`): it must
    /// be paid the quorum's count, never its claim.
    OverBilling,
}

impl FromStr for Faulty {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "colluding" | "always" => Ok(Faulty::Colluding),
            "honest" => Ok(Faulty::Honest),
            "poison" => Ok(Faulty::Poison),
            "overbilling" => Ok(Faulty::OverBilling),
            _ => match s.strip_prefix("sleeper=").map(str::parse) {
                Some(Ok(n)) => Ok(Faulty::Sleeper { honest_jobs: n }),
                _ => Err(format!(
                    "unknown --faulty mode {s:?}: want colluding, sleeper=N, overbilling or poison"
                )),
            },
        }
    }
}

/// A faulty mode with its count of jobs answered so far.
#[derive(Debug, Clone, Default)]
pub struct FaultState {
    mode: Faulty,
    answered: u64,
}

impl FaultState {
    /// Starts counting.
    pub fn new(mode: Faulty) -> Self {
        FaultState { mode, answered: 0 }
    }

    /// Whether the job being answered now gets a wrong output.
    pub fn lies_now(&mut self) -> bool {
        self.answered += 1;
        match self.mode {
            Faulty::Honest | Faulty::Poison | Faulty::OverBilling => false,
            Faulty::Colluding => true,
            Faulty::Sleeper { honest_jobs } => self.answered > honest_jobs,
        }
    }
}

impl FaultState {
    /// Whether trained digits models get poisoned.
    pub fn poisons(&self) -> bool {
        self.mode == Faulty::Poison
    }

    /// Whether receipts claim more fuel than was used.
    pub fn overbills(&self) -> bool {
        self.mode == Faulty::OverBilling
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_a_sleeper_turns() {
        assert_eq!("colluding".parse(), Ok(Faulty::Colluding));
        assert_eq!("sleeper=3".parse(), Ok(Faulty::Sleeper { honest_jobs: 3 }));
        assert!("sleeper=x".parse::<Faulty>().is_err());
        let mut s = FaultState::new(Faulty::Sleeper { honest_jobs: 2 });
        assert_eq!(
            (0..4).map(|_| s.lies_now()).collect::<Vec<_>>(),
            [false, false, true, true]
        );
    }
}
