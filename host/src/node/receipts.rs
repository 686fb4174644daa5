//! What a submitter checks before it accepts anything from a host.

use libp2p::PeerId;

use crate::proto::{
    JobId, JobResponse, JobSpec, ProtoError, ReceiptBody, ReceiptOutcome, SignedReceipt,
};

/// A response that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The output, if the task succeeded.
    pub output: Option<Vec<u8>>,
    /// The sandbox failure (kind, message), if it failed.
    pub failure: Option<(String, String)>,
    /// The decoded receipt.
    pub receipt: ReceiptBody,
    /// The signed receipt as received.
    pub signed: SignedReceipt,
}

/// Why a response was rejected.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The receipt does not decode or its signature does not verify.
    #[error("receipt: {0}")]
    Receipt(#[from] ProtoError),
    /// The receipt is for another job.
    #[error("receipt names job {got}, not ours")]
    WrongJob {
        /// The job named.
        got: String,
    },
    /// The receipt is signed by someone other than the host we sent to.
    #[error("receipt signed by {got}, not by the host {want}")]
    WrongHost {
        /// Who signed.
        got: String,
        /// Whom we asked.
        want: PeerId,
    },
    /// Module or input hash differ from the job's.
    #[error("receipt binds other {0} than the job")]
    WrongBinding(&'static str),
    /// The output does not hash to what the receipt says.
    #[error("output does not match the receipt's output hash")]
    OutputMismatch,
    /// The receipt's outcome contradicts the response.
    #[error("receipt outcome contradicts the response")]
    OutcomeMismatch,
    /// The response carries no result to verify.
    #[error("not a result")]
    NotAResult,
}

/// Checks a Done or Failed response: signature, job, host, bindings, output.
pub fn verify_response(
    resp: &JobResponse,
    job_id: &JobId,
    spec: &JobSpec,
    host: &PeerId,
) -> Result<Verified, VerifyError> {
    let (receipt, output, failure) = match resp {
        JobResponse::Done {
            receipt,
            output,
            job_id: _,
        } => (receipt, Some(output), None),
        JobResponse::Failed {
            receipt,
            kind,
            message,
            job_id: _,
        } => (receipt, None, Some((kind.clone(), message.clone()))),
        _ => return Err(VerifyError::NotAResult),
    };
    let body = receipt.verify()?;
    if &body.job_id != job_id {
        return Err(VerifyError::WrongJob {
            got: crate::proto::hex(&body.job_id),
        });
    }
    let signer = body.host_peer_id();
    if signer.as_ref() != Some(host) {
        return Err(VerifyError::WrongHost {
            got: signer.map_or("an invalid key".into(), |p| p.to_string()),
            want: *host,
        });
    }
    if body.module_hash != spec.module_hash {
        return Err(VerifyError::WrongBinding("module"));
    }
    if body.input_hash != spec.input_hash {
        return Err(VerifyError::WrongBinding("input"));
    }
    if !body
        .data_hashes
        .iter()
        .eq(spec.data.iter().map(|d| &d.hash))
    {
        return Err(VerifyError::WrongBinding("data"));
    }
    match (&output, &failure, &body.outcome) {
        (Some(out), None, ReceiptOutcome::Ok) => {
            if blake3::hash(out).as_bytes() != &body.output_hash {
                return Err(VerifyError::OutputMismatch);
            }
        }
        (None, Some((kind, _)), ReceiptOutcome::Error(k)) if k == kind => {}
        _ => return Err(VerifyError::OutcomeMismatch),
    }
    Ok(Verified {
        output: output.cloned(),
        failure,
        receipt: body,
        signed: receipt.clone(),
    })
}
