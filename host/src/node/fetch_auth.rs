//! Who may `Fetch` a job: only its submitter.
//!
//! Each replica is its own signed job, so a job id names one submitter's
//! one dispatch. Serving its status or output to anyone else would let a
//! lazy host copy another replica's answer instead of computing it, and
//! leak outputs to whoever asks; the host refuses with `not_yours`.

use libp2p::PeerId;

use crate::proto::{self, JobId};
use crate::store::HostStore;

/// Why `peer` may not fetch `job_id`, or `None` if it may (it is the
/// submitter, or the job is unknown here and the answer reveals nothing).
pub(crate) fn fetch_refusal(store: &HostStore, peer: &PeerId, job_id: &JobId) -> Option<String> {
    let record = store.job(job_id).ok().flatten()?;
    // The signer of the job, not merely the connection that delivered it.
    let signer = record
        .job
        .verify()
        .ok()
        .and_then(|spec| submitter_peer_id(&spec.submitter));
    if signer.as_ref() == Some(peer) {
        return None;
    }
    Some(format!(
        "job {} was submitted by another peer; only its submitter may fetch it",
        &proto::hex(job_id)[..12]
    ))
}

/// The libp2p peer id of an ed25519 submitter key.
pub(crate) fn submitter_peer_id(key: &[u8; 32]) -> Option<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(PeerId::from_public_key(&pk.into()))
}
