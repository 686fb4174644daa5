//! Layer 2, CBADU: the receipt binds a result to the job that was dispatched.
//!
//! The sandbox runs every job in a fresh store (clean-before-and-after-use),
//! and signs a receipt over the job id, module hash, input hash, output hash
//! and its counters. The host verifies that signature and fills
//! [`ReceiptFacts`]; this module checks the binding. A host returning a result
//! for some other job or input (a replay, a cached answer) is caught here; a
//! host that lies consistently is caught by the quorum (layer 1) and the
//! counter comparison (layer 5).

use serde::{Deserialize, Serialize};

use crate::ids::{Digest, PeerId, TaskId};
use crate::reputation::BindingField;

/// A unit of work as the customer submits it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The customer's id for it.
    pub id: TaskId,
    /// Hash of the wasm module.
    pub module_hash: Digest,
    /// Hash of the input.
    pub input_hash: Digest,
    /// Fuel budget. Also the "size" that keeps newcomers on small tasks.
    pub fuel_limit: u64,
}

/// What is sent to one peer. The job id is fresh and random per dispatch, so
/// replicas, audits and canaries all look alike to the host running them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct JobSpec {
    /// Random per dispatch; the receipt must quote it.
    pub job_id: u64,
    /// Hash of the wasm module to run.
    pub module_hash: Digest,
    /// Hash of the input.
    pub input_hash: Digest,
    /// Fuel budget.
    pub fuel_limit: u64,
}

/// Facts from a signed receipt, filled by the host after it verified the
/// receipt's signature against `host`'s key.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReceiptFacts {
    /// The job id the receipt quotes.
    pub job_id: u64,
    /// Who signed the receipt.
    pub host: PeerId,
    /// Module hash the sandbox ran.
    pub module_hash: Digest,
    /// Input hash the sandbox read.
    pub input_hash: Digest,
    /// Hash of the output.
    pub output_hash: Digest,
    /// Fuel consumed: deterministic for a module and input.
    pub fuel_used: u64,
    /// Peak linear memory in bytes: deterministic too.
    pub peak_memory_bytes: u64,
    /// Wall time the host claims, in ms.
    pub wall_ms: u64,
}

/// Checks that `receipt` answers `job` as dispatched to `host`.
pub fn check_binding(
    job: &JobSpec,
    host: &PeerId,
    receipt: &ReceiptFacts,
) -> Result<(), BindingField> {
    if receipt.job_id != job.job_id {
        return Err(BindingField::Job);
    }
    if receipt.host != *host {
        return Err(BindingField::Host);
    }
    if receipt.module_hash != job.module_hash {
        return Err(BindingField::Module);
    }
    if receipt.input_hash != job.input_hash {
        return Err(BindingField::Input);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_catches_each_field() {
        let job = JobSpec {
            job_id: 9,
            module_hash: Digest::from_u64(1),
            input_hash: Digest::from_u64(2),
            fuel_limit: 10,
        };
        let host = PeerId::from_u64(5);
        let good = ReceiptFacts {
            job_id: 9,
            host,
            module_hash: job.module_hash,
            input_hash: job.input_hash,
            output_hash: Digest::from_u64(3),
            fuel_used: 1,
            peak_memory_bytes: 1,
            wall_ms: 1,
        };
        assert_eq!(check_binding(&job, &host, &good), Ok(()));
        assert_eq!(
            check_binding(&job, &host, &ReceiptFacts { job_id: 8, ..good }),
            Err(BindingField::Job)
        );
        assert_eq!(
            check_binding(&job, &PeerId::from_u64(6), &good),
            Err(BindingField::Host)
        );
        assert_eq!(
            check_binding(
                &job,
                &host,
                &ReceiptFacts {
                    module_hash: Digest::from_u64(7),
                    ..good
                }
            ),
            Err(BindingField::Module)
        );
        assert_eq!(
            check_binding(
                &job,
                &host,
                &ReceiptFacts {
                    input_hash: Digest::from_u64(7),
                    ..good
                }
            ),
            Err(BindingField::Input)
        );
    }
}
