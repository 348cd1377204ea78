//! The signing key: generated on first start, kept in `KEY_DIR` (never in the repository),
//! and published as a JWKS for the edge.

use jwt_simple::prelude::*;
use service_kit::StartupError;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const KEY_FILE: &str = "signing-key.pem";

pub struct Signer {
    key: ES256KeyPair,
    issuer: String,
    ttl: Duration,
}

impl Signer {
    pub fn load_or_create(
        dir: &Path,
        issuer: String,
        ttl_seconds: u64,
    ) -> Result<Self, StartupError> {
        let path = dir.join(KEY_FILE);
        let key = if path.exists() {
            let pem = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            ES256KeyPair::from_pem(&pem)
                .map_err(|e| format!("{} is not an ES256 key: {e}", path.display()))?
        } else {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let key = ES256KeyPair::generate();
            let pem = key
                .to_pem()
                .map_err(|e| format!("cannot encode key: {e}"))?;
            // Readable by this user only; create_new so two starts never overwrite each other.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            file.write_all(pem.as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new signing key");
            key
        };
        // The kid is the key's JWK thumbprint (RFC 7638): stable across restarts.
        let kid = key.public_key().jwk_thumbprint();
        Ok(Self {
            key: key.with_key_id(&kid),
            issuer,
            ttl: Duration::from_secs(ttl_seconds),
        })
    }

    /// A token naming `subject`, valid for the configured lifetime.
    pub fn issue(&self, subject: &str) -> Result<String, jwt_simple::Error> {
        let claims = Claims::create(self.ttl)
            .with_issuer(&self.issuer)
            .with_subject(subject);
        self.key.sign(claims)
    }

    /// The JWKS with the public half of every key a live token may be signed with.
    pub fn jwks(&self) -> String {
        let key: serde_json::Value =
            serde_json::from_str(&self.key.public_key().with_key_id(self.kid()).to_jwk())
                .unwrap_or_default();
        serde_json::json!({ "keys": [key] }).to_string()
    }

    fn kid(&self) -> &str {
        self.key.key_id().as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_persists_and_tokens_verify_against_the_jwks() {
        let dir = std::env::temp_dir().join(format!("authority-keys-{}", std::process::id()));
        let first = Signer::load_or_create(&dir, "authority".into(), 60).unwrap();
        let again = Signer::load_or_create(&dir, "authority".into(), 60).unwrap();
        assert_eq!(first.jwks(), again.jwks(), "the key must survive a restart");

        let jwks: serde_json::Value = serde_json::from_str(&first.jwks()).unwrap();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kid"], first.kid());
        let public = ES256PublicKey::from_jwk(&jwk.to_string()).unwrap();
        let token = again.issue("customer-1").unwrap();
        let claims = public.verify_token::<NoCustomClaims>(&token, None).unwrap();
        assert_eq!(claims.subject.as_deref(), Some("customer-1"));
        assert_eq!(claims.issuer.as_deref(), Some("authority"));
        assert!(claims.expires_at.is_some());
        assert_eq!(
            Token::decode_metadata(&token).unwrap().key_id(),
            Some(first.kid())
        );
        let _ = fs::remove_dir_all(dir);
    }
}
