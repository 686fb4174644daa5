//! The node's ed25519 identity: one key on disk (mode 0600) that signs jobs
//! and receipts and is also the libp2p identity, so a peer id names the key
//! that signs.

use std::path::Path;

use libp2p::PeerId;
use libp2p::identity::Keypair;

/// File name of the key inside a data or state directory.
pub const KEY_FILE: &str = "identity.key";

/// A node's keys.
#[derive(Clone)]
pub struct Identity {
    /// Signs jobs and receipts.
    pub signing: ed25519_dalek::SigningKey,
    /// The same key for libp2p.
    pub keypair: Keypair,
    /// The peer id derived from it.
    pub peer_id: PeerId,
}

impl Identity {
    /// Loads the key from `dir/identity.key`, creating it on first use.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let seed = crate::fsutil::load_or_create_secret(&dir.join(KEY_FILE))?;
        Ok(Self::from_seed(seed))
    }

    /// The identity of a 32-byte ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let mut bytes = seed;
        let keypair = Keypair::ed25519_from_bytes(&mut bytes).expect("32-byte ed25519 seed");
        let peer_id = keypair.public().to_peer_id();
        Identity {
            signing,
            keypair,
            peer_id,
        }
    }

    /// The ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_names_the_signing_key_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.peer_id, b.peer_id);
        let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(&a.public_key()).unwrap();
        assert_eq!(PeerId::from_public_key(&pk.into()), a.peer_id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
