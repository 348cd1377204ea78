//! The signing keys: a ring of ES256 keys in `KEY_DIR` (never in the repository), one
//! `<kid>.pem` file each, and a `current` file naming the one that signs. Every key in the ring
//! is published in the JWKS, so rotation keeps old tokens valid until their key is retired.

use jwt_simple::prelude::*;
use service_kit::StartupError;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

const CURRENT_FILE: &str = "current";

#[derive(Debug)]
pub enum KeyError {
    UnknownKey,
    RetiringCurrent,
    Io(String),
}

struct Ring {
    keys: BTreeMap<String, ES256KeyPair>,
    current: String,
}

pub struct Signer {
    dir: PathBuf,
    ring: RwLock<Ring>,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// The kid is the key's JWK thumbprint (RFC 7638): derived from the key, stable across restarts.
fn kid_of(key: &ES256KeyPair) -> String {
    key.public_key().jwk_thumbprint()
}

/// Writes `contents` to `path` readable by this user only, durably, replacing it atomically.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn generate(dir: &Path) -> Result<(String, ES256KeyPair), String> {
    let key = ES256KeyPair::generate();
    let kid = kid_of(&key);
    let pem = key
        .to_pem()
        .map_err(|e| format!("cannot encode key: {e}"))?;
    let path = dir.join(format!("{kid}.pem"));
    write_private(&path, pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((kid.clone(), key.with_key_id(&kid)))
}

impl Signer {
    /// Loads the ring, generating the first key on first start.
    pub fn load_or_create(
        dir: &Path,
        issuer: String,
        audience: String,
        ttl_seconds: u64,
    ) -> Result<Self, StartupError> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut keys = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            let pem = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let key = ES256KeyPair::from_pem(&pem)
                .map_err(|e| format!("{} is not an ES256 key: {e}", path.display()))?;
            let kid = kid_of(&key);
            keys.insert(kid.clone(), key.with_key_id(&kid));
        }
        let named = fs::read_to_string(dir.join(CURRENT_FILE))
            .ok()
            .map(|s| s.trim().to_string());
        let current = match named.filter(|kid| keys.contains_key(kid)) {
            Some(kid) => kid,
            None => {
                if keys.is_empty() {
                    let (kid, key) = generate(dir)?;
                    tracing::info!(%kid, "generated the first signing key");
                    keys.insert(kid, key);
                }
                let kid = keys.keys().next().cloned().ok_or("no signing key")?;
                write_private(&dir.join(CURRENT_FILE), kid.as_bytes())?;
                kid
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            ring: RwLock::new(Ring { keys, current }),
            issuer,
            audience,
            ttl: Duration::from_secs(ttl_seconds),
        })
    }

    /// A token naming `subject`, signed with the current key, valid for the configured lifetime.
    /// A token for `subject`; `scope` (OAuth's space-separated scopes) is added when not empty.
    pub fn issue(&self, subject: &str, scope: &str) -> Result<String, String> {
        let extra = if scope.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({ "scope": scope })
        };
        let claims = Claims::with_custom_claims(extra, self.ttl)
            .with_issuer(&self.issuer)
            .with_audience(&self.audience)
            .with_subject(subject);
        let ring = self.ring.read().map_err(|_| "key ring poisoned")?;
        let key = ring.keys.get(&ring.current).ok_or("no current key")?;
        key.sign(claims).map_err(|e| e.to_string())
    }

    /// The JWKS: the public half of every key in the ring.
    pub fn jwks(&self) -> String {
        let keys: Vec<serde_json::Value> = match self.ring.read() {
            Ok(ring) => ring
                .keys
                .values()
                .filter_map(|key| serde_json::from_str(&key.public_key().to_jwk()).ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        serde_json::json!({ "keys": keys }).to_string()
    }

    /// Makes a new key the signing key; the old ones keep verifying.
    pub fn rotate(&self) -> Result<String, KeyError> {
        let mut ring = self
            .ring
            .write()
            .map_err(|_| KeyError::Io("key ring poisoned".into()))?;
        let (kid, key) = generate(&self.dir).map_err(KeyError::Io)?;
        write_private(&self.dir.join(CURRENT_FILE), kid.as_bytes())
            .map_err(|e| KeyError::Io(e.to_string()))?;
        ring.keys.insert(kid.clone(), key);
        ring.current = kid.clone();
        tracing::info!(%kid, "rotated the signing key");
        Ok(kid)
    }

    /// Removes a key that no longer signs.
    pub fn retire(&self, kid: &str) -> Result<(), KeyError> {
        let mut ring = self
            .ring
            .write()
            .map_err(|_| KeyError::Io("key ring poisoned".into()))?;
        if ring.current == kid {
            return Err(KeyError::RetiringCurrent);
        }
        if !ring.keys.contains_key(kid) {
            return Err(KeyError::UnknownKey);
        }
        fs::remove_file(self.dir.join(format!("{kid}.pem")))
            .map_err(|e| KeyError::Io(e.to_string()))?;
        ring.keys.remove(kid);
        tracing::info!(%kid, "retired a key");
        Ok(())
    }

    #[cfg(test)]
    fn current_kid(&self) -> String {
        self.ring
            .read()
            .map(|r| r.current.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kids(signer: &Signer) -> Vec<String> {
        let jwks: serde_json::Value = serde_json::from_str(&signer.jwks()).unwrap();
        let mut kids: Vec<String> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect();
        kids.sort();
        kids
    }

    fn verifies(signer: &Signer, token: &str) -> bool {
        let jwks: serde_json::Value = serde_json::from_str(&signer.jwks()).unwrap();
        let kid = Token::decode_metadata(token)
            .unwrap()
            .key_id()
            .unwrap()
            .to_string();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kid"] == kid.as_str())
            .any(|k| {
                ES256PublicKey::from_jwk(&k.to_string())
                    .unwrap()
                    .verify_token::<NoCustomClaims>(token, None)
                    .is_ok()
            })
    }

    #[test]
    fn ring_persists_rotates_and_retires() {
        let dir = std::env::temp_dir().join(format!("authority-keys-{}", std::process::id()));
        let first = Signer::load_or_create(&dir, "authority".into(), "edge".into(), 60).unwrap();
        let again = Signer::load_or_create(&dir, "authority".into(), "edge".into(), 60).unwrap();
        assert_eq!(first.jwks(), again.jwks(), "the key must survive a restart");
        let old_kid = first.current_kid();
        let old_token = first.issue("customer-1", "").unwrap();
        assert!(verifies(&first, &old_token));

        let new_kid = first.rotate().unwrap();
        assert_ne!(new_kid, old_kid);
        let new_token = first.issue("customer-1", "").unwrap();
        assert_eq!(
            Token::decode_metadata(&new_token).unwrap().key_id(),
            Some(new_kid.as_str())
        );
        assert!(verifies(&first, &old_token) && verifies(&first, &new_token));
        assert!(matches!(
            first.retire(&new_kid),
            Err(KeyError::RetiringCurrent)
        ));

        first.retire(&old_kid).unwrap();
        assert_eq!(kids(&first), vec![new_kid.clone()]);
        let reloaded = Signer::load_or_create(&dir, "authority".into(), "edge".into(), 60).unwrap();
        assert_eq!(
            reloaded.current_kid(),
            new_kid,
            "rotation survives a restart"
        );
        assert!(matches!(
            reloaded.retire(&old_kid),
            Err(KeyError::UnknownKey)
        ));
        let _ = fs::remove_dir_all(dir);
    }
}
