//! Signed trust reports: evidence of a lie that any other submitter can
//! check for itself.
//!
//! A report carries the job as its reporter signed and dispatched it, and
//! the accused host's own signed receipt for that job. Tasks are
//! deterministic, so a receiver re-runs the job in its own sandbox (within a
//! fuel budget it chooses) and believes only what it reproduced: refereed
//! delegation without a referee. The module and input travel with the
//! report (bounded) so it can be re-run; a report that cannot be re-run
//! changes nothing.

use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::proto::{self, Hash, SignedJob, SignedReceipt};

/// Domain separator of a report signature.
const DOMAIN: &[u8] = b"biop2p/lie-report/v1";

/// Largest module plus input a report may carry (a receiver re-runs it).
pub const MAX_REPORT_BLOBS: usize = 8 << 20;

/// Evidence that `receipt`'s signer answered `job` wrongly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LieReport {
    /// The reporter's ed25519 key (it also signed `job`).
    pub reporter_key: [u8; 32],
    /// The job as dispatched.
    pub job: SignedJob,
    /// The accused host's signed receipt for it.
    pub receipt: SignedReceipt,
    /// The output hash the reporter holds correct.
    pub correct_output: Hash,
    /// Reporter's clock, informational.
    pub issued_at_ms: u64,
    /// The module, so a receiver can re-run the job.
    pub module: Vec<u8>,
    /// The input.
    pub input: Vec<u8>,
    /// The reporter's signature over all of the above (64 bytes).
    pub signature: Vec<u8>,
}

/// Why a report was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// A signature does not verify, or the parts do not belong together.
    #[error("forged report: {0}")]
    Forged(&'static str),
    /// It cannot be re-run here.
    #[error("unverifiable report: {0}")]
    Unverifiable(String),
}

impl LieReport {
    fn signing_bytes(
        reporter_key: &[u8; 32],
        job: &SignedJob,
        receipt: &SignedReceipt,
        correct_output: &Hash,
        issued_at_ms: u64,
        module: &[u8],
        input: &[u8],
    ) -> Vec<u8> {
        let mut b = DOMAIN.to_vec();
        b.extend_from_slice(reporter_key);
        b.extend_from_slice(&job.id());
        b.extend_from_slice(blake3::hash(&receipt.body).as_bytes());
        b.extend_from_slice(&receipt.signature);
        b.extend_from_slice(correct_output);
        b.extend_from_slice(&issued_at_ms.to_be_bytes());
        b.extend_from_slice(blake3::hash(module).as_bytes());
        b.extend_from_slice(blake3::hash(input).as_bytes());
        b
    }

    /// Signs a report with the reporter's key.
    pub fn sign(
        key: &ed25519_dalek::SigningKey,
        job: SignedJob,
        receipt: SignedReceipt,
        correct_output: Hash,
        issued_at_ms: u64,
        module: Vec<u8>,
        input: Vec<u8>,
    ) -> Self {
        let reporter_key = key.verifying_key().to_bytes();
        let msg = Self::signing_bytes(
            &reporter_key,
            &job,
            &receipt,
            &correct_output,
            issued_at_ms,
            &module,
            &input,
        );
        LieReport {
            reporter_key,
            job,
            receipt,
            correct_output,
            issued_at_ms,
            module,
            input,
            signature: key.sign(&msg).to_bytes().to_vec(),
        }
    }

    /// Checks every signature and that the parts belong together; returns
    /// the job's spec, the receipt's body and the accused host's peer id.
    /// This proves who said what, not who is right: that takes a re-run.
    pub fn check(&self) -> Result<Checked, ReportError> {
        let key = VerifyingKey::from_bytes(&self.reporter_key)
            .map_err(|_| ReportError::Forged("reporter key"))?;
        let msg = Self::signing_bytes(
            &self.reporter_key,
            &self.job,
            &self.receipt,
            &self.correct_output,
            self.issued_at_ms,
            &self.module,
            &self.input,
        );
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| ReportError::Forged("reporter signature"))?;
        key.verify(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| ReportError::Forged("reporter signature"))?;
        let spec = self
            .job
            .verify()
            .map_err(|_| ReportError::Forged("job signature"))?;
        if spec.submitter != self.reporter_key {
            return Err(ReportError::Forged(
                "the job was not signed by the reporter",
            ));
        }
        let body = self
            .receipt
            .verify()
            .map_err(|_| ReportError::Forged("receipt signature"))?;
        if body.job_id != self.job.id()
            || body.module_hash != spec.module_hash
            || body.input_hash != spec.input_hash
        {
            return Err(ReportError::Forged("the receipt is for another job"));
        }
        let subject = body
            .host_peer_id()
            .ok_or(ReportError::Forged("receipt host key"))?;
        if self.module.len() + self.input.len() > MAX_REPORT_BLOBS {
            return Err(ReportError::Unverifiable(format!(
                "carries {} blob bytes, over {MAX_REPORT_BLOBS}",
                self.module.len() + self.input.len()
            )));
        }
        if *blake3::hash(&self.module).as_bytes() != spec.module_hash
            || *blake3::hash(&self.input).as_bytes() != spec.input_hash
        {
            return Err(ReportError::Unverifiable(
                "its module or input does not match the job".into(),
            ));
        }
        let reporter = super::super::fetch_auth::submitter_peer_id(&self.reporter_key)
            .ok_or(ReportError::Forged("reporter key"))?;
        Ok(Checked {
            spec,
            body,
            subject,
            reporter,
        })
    }

    /// The portable text form: base64 of the canonical binary encoding
    /// (the signed parts are binary; JSON arrays of bytes would not
    /// round-trip their fixed-size signatures).
    pub fn to_text(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(postcard::to_stdvec(self).expect("reports encode"))
    }

    /// Parses [`LieReport::to_text`]; bounded by [`MAX_REPORT_BLOBS`].
    pub fn from_text(s: &str) -> Result<Self, ReportError> {
        use base64::Engine as _;
        if s.len() > MAX_REPORT_BLOBS * 4 / 3 + (64 << 10) {
            return Err(ReportError::Unverifiable("report too large".into()));
        }
        let b = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| ReportError::Forged("not base64"))?;
        postcard::from_bytes(&b).map_err(|_| ReportError::Forged("undecodable report"))
    }
}

/// A report whose signatures verified.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The job's spec.
    pub spec: proto::JobSpec,
    /// The accused receipt.
    pub body: proto::ReceiptBody,
    /// The accused host.
    pub subject: PeerId,
    /// The reporter.
    pub reporter: PeerId,
}
