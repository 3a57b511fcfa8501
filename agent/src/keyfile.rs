//! Key files: one ed25519 key per JSON file, in The Update Framework's key
//! format with the secret seed added next to the public key:
//! `{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"<hex>","private":"<hex>"}}`.
//!
//! A file without `private` holds only a public key; commands that only need a
//! public key (`root init`, for example) accept either kind. A file holding a
//! secret is written with mode 0600, never over an existing file, and is
//! refused on read when group or others may read it (as ssh does), so a leaked
//! permission is noticed before the key is used.

use crate::fsio::{self, ReadError, WriteError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;
use waveguard_protocol::keys::{KeyError, KeyVal};
use waveguard_protocol::{PublicKey, SigningKey};

/// Largest key file read, in bytes. A key file is about 200 bytes; the bound
/// only stops a wrong path (a disk image, say) from being read whole.
pub const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Mode of a file holding a secret key: owner read and write only.
pub const SECRET_KEY_MODE: u32 = 0o600;

/// A key file could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// No file at the path.
    #[error("key file {} does not exist", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The file is not a key file (wrong size, not JSON, or missing fields).
    #[error("key file {} is malformed: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The fields are there but the key itself is unusable.
    #[error("key file {} holds an unusable key: {source}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What the key check said.
        #[source]
        source: KeyError,
    },
    /// The private key does not belong to the public key next to it.
    #[error("key file {}: the private key does not match the public key {public}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The public key written in the file.
        public: String,
    },
    /// A secret key was needed but the file holds only a public key.
    #[error("key file {} holds only a public key; this command needs the private key", path.display())]
    NoSecret {
        /// The file.
        path: PathBuf,
    },
    /// Group or others may read a file holding a secret key.
    #[error(
        "key file {} holds a private key but has mode {mode:04o}, readable by group or others; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file could not be read.
    #[error(transparent)]
    Read(ReadError),
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// The JSON shape of a key file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    keytype: String,
    scheme: String,
    keyval: KeyValJson,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyValJson {
    public: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private: Option<String>,
}

/// What a key file holds.
#[derive(Clone, Debug)]
pub enum KeyMaterial {
    /// A secret key (and so also its public key).
    Secret(SigningKey),
    /// Only a public key.
    Public(PublicKey),
}

impl KeyMaterial {
    /// The public key, whichever kind of file it came from.
    pub fn public(&self) -> PublicKey {
        match self {
            KeyMaterial::Secret(k) => k.public(),
            KeyMaterial::Public(p) => p.clone(),
        }
    }
}

/// The bytes of a key file holding `key` (secret and public).
pub fn encode_secret(key: &SigningKey) -> Vec<u8> {
    let public = key.public();
    let json = KeyFileJson {
        keytype: public.keytype,
        scheme: public.scheme,
        keyval: KeyValJson {
            public: public.keyval.public,
            private: Some(hex::encode(key.to_seed())),
        },
    };
    let mut out = serde_json::to_vec_pretty(&json).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Writes a new key file for `key` with mode 0600; refuses to replace an existing file.
pub fn write_secret(path: &Path, key: &SigningKey) -> Result<(), KeyFileError> {
    fsio::write_new(path, &encode_secret(key), SECRET_KEY_MODE).map_err(KeyFileError::from)
}

/// Reads a key file of either kind.
pub fn read(path: &Path) -> Result<KeyMaterial, KeyFileError> {
    let bytes = fsio::read_bounded(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
        ReadError::NotFound { path } => KeyFileError::Missing { path },
        ReadError::TooLarge { path, limit } => KeyFileError::Malformed {
            path,
            reason: format!("it is larger than {limit} bytes"),
        },
        other => KeyFileError::Read(other),
    })?;
    let material = decode(path, &bytes)?;
    if matches!(material, KeyMaterial::Secret(_)) {
        check_private_mode(path)?;
    }
    Ok(material)
}

/// Reads a key file that must hold a secret key.
pub fn read_secret(path: &Path) -> Result<SigningKey, KeyFileError> {
    match read(path)? {
        KeyMaterial::Secret(k) => Ok(k),
        KeyMaterial::Public(_) => Err(KeyFileError::NoSecret {
            path: path.to_owned(),
        }),
    }
}

/// Reads the public key of a key file of either kind.
pub fn read_public(path: &Path) -> Result<PublicKey, KeyFileError> {
    read(path).map(|m| m.public())
}

/// Parses key file bytes; `path` only names the file in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<KeyMaterial, KeyFileError> {
    let json: KeyFileJson = serde_json::from_slice(bytes).map_err(|e| KeyFileError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let public = PublicKey {
        keytype: json.keytype,
        scheme: json.scheme,
        keyval: KeyVal {
            public: json.keyval.public,
        },
    };
    let bad_key = |source| KeyFileError::BadKey {
        path: path.to_owned(),
        source,
    };
    public.to_bytes().map_err(bad_key)?;
    let Some(private) = json.keyval.private else {
        return Ok(KeyMaterial::Public(public));
    };
    let secret = SigningKey::from_hex(&private).map_err(bad_key)?;
    if secret.public() != public {
        return Err(KeyFileError::Mismatch {
            path: path.to_owned(),
            public: public.keyval.public,
        });
    }
    Ok(KeyMaterial::Secret(secret))
}

#[cfg(unix)]
fn check_private_mode(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| {
        KeyFileError::Read(ReadError::Io {
            path: path.to_owned(),
            source,
        })
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn key() -> SigningKey {
        SigningKey::from_seed([9u8; 32])
    }

    #[test]
    fn round_trips_a_secret_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        write_secret(&p, &key()).unwrap();
        assert_eq!(read_secret(&p).unwrap().to_seed(), [9u8; 32]);
        assert_eq!(read_public(&p).unwrap(), key().public());
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        write_secret(&p, &key()).unwrap();
        let err = write_secret(&p, &SigningKey::from_seed([1u8; 32])).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(read_secret(&p).unwrap().to_seed(), [9u8; 32]);
    }

    #[test]
    fn public_only_files_give_a_public_key_but_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pub.json");
        fs::write(&p, serde_json::to_vec(&key().public()).unwrap()).unwrap();
        assert_eq!(read_public(&p).unwrap(), key().public());
        let err = read_secret(&p).unwrap_err();
        assert!(matches!(err, KeyFileError::NoSecret { .. }), "{err}");
    }

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.json");
        let err = read(&p).unwrap_err();
        assert!(matches!(err, KeyFileError::Missing { .. }));
        assert!(err.to_string().contains("nope.json"), "{err}");
        fs::write(&p, b"{\"keytype\":\"ed25519\"}").unwrap();
        let err = read(&p).unwrap_err();
        assert!(matches!(err, KeyFileError::Malformed { .. }), "{err}");
        fs::write(&p, vec![b' '; MAX_KEY_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(read(&p), Err(KeyFileError::Malformed { .. })));
    }

    #[test]
    fn a_private_key_of_another_public_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        let text = String::from_utf8(encode_secret(&key())).unwrap();
        let other = hex::encode(SigningKey::from_seed([1u8; 32]).to_seed());
        let text = text.replace(&hex::encode([9u8; 32]), &other);
        fsio::write_new(&p, text.as_bytes(), SECRET_KEY_MODE).unwrap();
        assert!(matches!(read(&p), Err(KeyFileError::Mismatch { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_secret_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        write_secret(&p, &key()).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&p).unwrap_err();
        assert!(
            matches!(err, KeyFileError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
