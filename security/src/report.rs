//! Signed trust reports exchanged between peers.
//!
//! The crate is pure, so it never touches keys: it defines the report and its
//! canonical bytes-to-sign, and asks the caller to verify the signature
//! through [`TrustReportVerifier`] (the host does the ed25519 work).

use serde::{Deserialize, Serialize};

use crate::ids::{Millis, PeerId};
use crate::receipt::{JobSpec, ReceiptFacts};

/// Domain separator so a report signature can never be replayed as a
/// signature over some other biop2p message.
pub const TRUST_REPORT_DOMAIN: &[u8] = b"biop2p/trust-report/v1";

/// One peer's first-hand evidence about another, to be signed by the reporter.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TrustReport {
    /// Who saw the evidence (and signs the report).
    pub reporter: PeerId,
    /// Whom it is about.
    pub subject: PeerId,
    /// Verified agreements the reporter observed.
    pub agreements: u32,
    /// Disagreements (wrong results, failed canaries, violations) observed.
    pub disagreements: u32,
    /// When the reporter issued it (its own clock; informational only).
    pub issued_at: Millis,
    /// Strictly increasing per reporter, so a replayed report is refused.
    pub sequence: u64,
}

impl TrustReport {
    /// The canonical bytes to sign and verify: the domain separator, then
    /// each field in declaration order, integers big-endian. Fixed-width so
    /// two different reports can never encode to the same bytes.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(TRUST_REPORT_DOMAIN.len() + 32 + 32 + 4 + 4 + 8 + 8);
        b.extend_from_slice(TRUST_REPORT_DOMAIN);
        b.extend_from_slice(self.reporter.as_bytes());
        b.extend_from_slice(self.subject.as_bytes());
        b.extend_from_slice(&self.agreements.to_be_bytes());
        b.extend_from_slice(&self.disagreements.to_be_bytes());
        b.extend_from_slice(&self.issued_at.to_be_bytes());
        b.extend_from_slice(&self.sequence.to_be_bytes());
        b
    }
}

/// A trust report that carries its evidence: `subject`'s own signed
/// receipt for `job`, whose output the reporter found wrong (a failed canary
/// or an outvoted replica). The receiver does not take the reporter's word:
/// the [`Coordinator`](crate::Coordinator) asks its driver to re-run the job
/// ([`Action::Verify`](crate::Action::Verify)) and only a re-run that
/// disagrees with the receipt counts against the subject; one that agrees
/// convicts the reporter of a false accusation. The driver has already
/// checked the reporter's signature over the accusation and the subject's
/// signature over the receipt, as it does for every receipt.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Accusation {
    /// Who signs the accusation.
    pub reporter: PeerId,
    /// Whom it accuses (the receipt's signer).
    pub subject: PeerId,
    /// The job as the reporter dispatched it.
    pub job: JobSpec,
    /// The subject's signed answer.
    pub receipt: ReceiptFacts,
    /// When the reporter issued it (its clock; informational only).
    pub issued_at: Millis,
}

/// Signature check supplied by the host (ed25519 over
/// [`TrustReport::signing_bytes`] with the reporter's public key).
pub trait TrustReportVerifier {
    /// Whether `signature` is `signer`'s valid signature over `message`.
    fn verify(&self, signer: &PeerId, message: &[u8], signature: &[u8]) -> bool;
}

impl<F: Fn(&PeerId, &[u8], &[u8]) -> bool> TrustReportVerifier for F {
    fn verify(&self, signer: &PeerId, message: &[u8], signature: &[u8]) -> bool {
        self(signer, message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_bytes_are_canonical_and_field_sensitive() {
        let r = TrustReport {
            reporter: PeerId::from_u64(1),
            subject: PeerId::from_u64(2),
            agreements: 3,
            disagreements: 4,
            issued_at: 5,
            sequence: 6,
        };
        assert_eq!(r.signing_bytes(), r.clone().signing_bytes());
        assert!(r.signing_bytes().starts_with(TRUST_REPORT_DOMAIN));
        let mut r2 = r.clone();
        r2.agreements = 4;
        r2.disagreements = 3;
        assert_ne!(r.signing_bytes(), r2.signing_bytes());
        assert_eq!(r.signing_bytes().len(), TRUST_REPORT_DOMAIN.len() + 88);
    }

    #[test]
    fn closures_are_verifiers() {
        let v = |_: &PeerId, m: &[u8], s: &[u8]| m.len() == s.len();
        assert!(v.verify(&PeerId::from_u64(1), b"ab", b"cd"));
    }
}
