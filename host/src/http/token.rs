//! The control token: what a request must carry to pause, resume or change
//! the policy. It lives in `DATA_DIR/http.token` (mode 0600), so only the
//! user who runs the host (and root) can read it; a page from another
//! origin cannot, and the page itself never embeds it.

use std::path::Path;

/// The token file's name in the data dir.
pub const TOKEN_FILE: &str = "http.token";

/// Reads the token, or makes one (32 random bytes, hex) on first use. It
/// is kept across restarts so a volunteer's saved token keeps working.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(t.to_string());
        }
        tracing::warn!(path = %path.display(), "malformed token file; making a new token");
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("token.tmp");
    {
        use std::io::Write;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

/// Compares in time independent of where the strings differ.
pub fn matches(expected: &str, got: &str) -> bool {
    expected.len() == got.len()
        && expected
            .bytes()
            .zip(got.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_made_once_and_private() {
        let d = tempfile::tempdir().unwrap();
        let t = load_or_create(d.path()).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(load_or_create(d.path()).unwrap(), t);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
        assert!(matches(&t, &t.clone()));
        assert!(!matches(&t, &t[1..]));
        assert!(!matches(&t, &"0".repeat(64)));
    }
}
