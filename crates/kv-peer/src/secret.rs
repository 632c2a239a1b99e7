//! [`ClusterSecret`]: the key every server and gate of a cluster holds, and proves it holds
//! when it opens a connection to a cluster port.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the cluster secret file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "the cluster secret in {path} is {len} bytes; at least {min} are needed (e.g. `openssl rand -hex 32 > {path}`)"
    )]
    TooShort { path: String, len: usize, min: usize },
}

/// The shared key. Its bytes never leave the process: peers exchange only HMACs over fresh
/// nonces ([`crate::handshake`]).
#[derive(Clone)]
pub struct ClusterSecret {
    key: Vec<u8>,
    configured: bool,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSecret")
            .field("configured", &self.configured)
            .finish_non_exhaustive()
    }
}

/// Which side of a handshake a proof is for: the two proofs differ, so one side's answer
/// can never be replayed as the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

impl ClusterSecret {
    /// Shortest secret accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// Reads the secret from `path` (its bytes, trailing whitespace removed). A file that
    /// others may read is accepted with a warning, as ssh does for keys it can still use.
    pub fn from_file(path: &Path) -> Result<ClusterSecret, SecretError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: shown.clone(),
            source,
        })?;
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        if end < Self::MIN_LEN {
            return Err(SecretError::TooShort {
                path: shown,
                len: end,
                min: Self::MIN_LEN,
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = shown,
                    "the cluster secret file can be read by other users; `chmod 600` it"
                );
            }
        }
        Ok(ClusterSecret {
            key: bytes[..end].to_vec(),
            configured: true,
        })
    }

    /// The secret in `path`, or [`ClusterSecret::none`] with a loud warning naming what is
    /// exposed (`what`, e.g. "the cluster port 127.0.0.1:17001") when there is no file.
    pub fn load(path: Option<&Path>, what: &str) -> Result<ClusterSecret, SecretError> {
        match path {
            Some(p) => ClusterSecret::from_file(p),
            None => {
                tracing::warn!(
                    "no --cluster-secret-file: {what} accepts any peer, so anyone who can reach \
                     it can read and change every key and disrupt replication; give every server \
                     and gate of the cluster the same secret file"
                );
                Ok(ClusterSecret::none())
            }
        }
    }

    /// A fresh random secret (the embedded local cluster makes its own).
    pub fn generate() -> ClusterSecret {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source");
        ClusterSecret { key, configured: true }
    }

    /// No secret configured: peers still run the handshake (with an empty key), so a mixed
    /// configuration fails loudly, but anyone who can reach the cluster port can pass it.
    pub fn none() -> ClusterSecret {
        ClusterSecret {
            key: Vec::new(),
            configured: false,
        }
    }

    /// False for [`ClusterSecret::none`].
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    fn mac(&self, side: Side, client_nonce: &[u8], server_nonce: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(match side {
            Side::Client => b"kvstore cluster client proof\0",
            Side::Server => b"kvstore cluster server proof\0",
        });
        mac.update(client_nonce);
        mac.update(b"\0");
        mac.update(server_nonce);
        mac
    }

    /// The proof `side` sends for these nonces, hex-encoded.
    pub(crate) fn proof(&self, side: Side, client_nonce: &[u8], server_nonce: &[u8]) -> String {
        hex(&self.mac(side, client_nonce, server_nonce).finalize().into_bytes())
    }

    /// Checks a hex proof in constant time.
    pub(crate) fn verify(&self, side: Side, client_nonce: &[u8], server_nonce: &[u8], proof: &[u8]) -> bool {
        let Some(bytes) = unhex(proof) else {
            return false;
        };
        self.mac(side, client_nonce, server_nonce).verify_slice(&bytes).is_ok()
    }
}

/// A fresh nonce: 32 random bytes, hex-encoded.
pub(crate) fn nonce() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source");
    hex(&b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_key_side_and_nonces() {
        let a = ClusterSecret::generate();
        let b = ClusterSecret::generate();
        let p = a.proof(Side::Client, b"c1", b"s1");
        assert!(a.verify(Side::Client, b"c1", b"s1", p.as_bytes()));
        assert!(!b.verify(Side::Client, b"c1", b"s1", p.as_bytes()), "another key");
        assert!(
            !a.verify(Side::Server, b"c1", b"s1", p.as_bytes()),
            "the other side's proof"
        );
        assert!(!a.verify(Side::Client, b"c1", b"s2", p.as_bytes()), "other nonces");
        assert!(!a.verify(Side::Client, b"c1", b"s1", b"zz"), "not hex");
    }

    #[test]
    fn files_are_trimmed_and_must_be_long_enough() {
        let dir = std::env::temp_dir().join(format!("kv-peer-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let s = ClusterSecret::from_file(&path).unwrap();
        assert_eq!(s.key, b"0123456789abcdef0123");
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            ClusterSecret::from_file(&path),
            Err(SecretError::TooShort { len: 5, .. })
        ));
        assert!(ClusterSecret::from_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
