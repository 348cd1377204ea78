//! Verified tokens shared by every worker of the proxy, so that one worker's signature check
//! serves all of them: a fixed number of slots in the proxy's shared data, each holding the
//! last verified token whose SHA-256 maps to it. Memory stays bounded by `slots` (shared data
//! never forgets a key, so keys are slot numbers, never tokens), and only verified tokens are
//! written: a flood of forged tokens can make verification work, never evict an entry.
//!
//! An entry is used only for the same token (its whole SHA-256), before its `exp` (with the
//! clock skew), under the same verification settings (issuer, audiences, lifetime, skew), and
//! while the key that verified it is still published under the same `kid`.

use crate::config::AuthConfig;
use crate::es256::PublicKey;
use crate::keys::Identity;
use edge_core::host::SharedStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

/// A token's SHA-256: what an entry is addressed and recognised by.
pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// The shared slots and what entries must agree with.
#[derive(Clone)]
pub struct SharedTokens {
    store: Rc<dyn SharedStore>,
    slots: u64,
    /// The verification settings entries were made under (a change makes them unusable).
    settings: u64,
}

/// What a shared entry says about a token.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub identity: Identity,
    pub expires_at: u64,
    pub kid: String,
}

#[derive(Deserialize)]
struct Stored {
    sub: String,
    claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct StoredRef<'a> {
    sub: &'a str,
    claims: &'a serde_json::Map<String, serde_json::Value>,
}

/// Bytes before the `kid`: digest, `exp`, settings, the key's fingerprint.
const HEAD: usize = 32 + 8 + 8 + 16;

impl SharedTokens {
    /// `None` when `config` asks for no shared slots.
    pub fn new(store: Rc<dyn SharedStore>, config: &AuthConfig) -> Option<Self> {
        let slots = u64::from(config.shared_token_slots);
        if slots == 0 {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        (
            &config.issuer,
            &config.audiences,
            config.max_lifetime_seconds,
            config.clock_skew_seconds,
        )
            .hash(&mut hasher);
        Some(Self {
            store,
            slots,
            settings: hasher.finish(),
        })
    }

    fn key(&self, digest: &TokenDigest) -> String {
        let mut index = [0; 8];
        index.copy_from_slice(&digest[..8]);
        format!("edge_auth.token.{}", u64::from_le_bytes(index) % self.slots)
    }

    /// The entry for the token with `digest`, if one is held and still good for `key_of`'s
    /// keys (`kid` → the key published under it).
    pub fn get<'k>(
        &self,
        digest: &TokenDigest,
        key_of: impl Fn(&str) -> Option<&'k PublicKey>,
    ) -> Option<Entry> {
        let (value, _) = self.store.get(&self.key(digest)).ok()??;
        let (head, rest) = value.split_at_checked(HEAD)?;
        let (kid_len, rest) = rest.split_first()?;
        let (kid, json) = rest.split_at_checked(usize::from(*kid_len))?;
        let kid = std::str::from_utf8(kid).ok()?;
        let same_token = head[..32] == digest[..];
        let settings = u64::from_le_bytes(head[40..48].try_into().ok()?);
        let same_key = key_of(kid).is_some_and(|key| key.fingerprint() == head[48..64]);
        if !same_token || settings != self.settings || !same_key {
            return None;
        }
        let stored: Stored = serde_json::from_slice(json).ok()?;
        Some(Entry {
            identity: Identity {
                subject: stored.sub,
                claims: stored.claims,
            },
            expires_at: u64::from_le_bytes(head[32..40].try_into().ok()?),
            kid: kid.to_string(),
        })
    }

    /// Shares a token verified by `key` (a failure only costs another worker a verification).
    pub fn put(&self, digest: &TokenDigest, entry: &Entry, key: &PublicKey) {
        let Ok(kid_len) = u8::try_from(entry.kid.len()) else {
            return;
        };
        let Ok(json) = serde_json::to_vec(&StoredRef {
            sub: &entry.identity.subject,
            claims: &entry.identity.claims,
        }) else {
            return;
        };
        let mut value = Vec::with_capacity(HEAD + 1 + entry.kid.len() + json.len());
        value.extend_from_slice(digest);
        value.extend_from_slice(&entry.expires_at.to_le_bytes());
        value.extend_from_slice(&self.settings.to_le_bytes());
        value.extend_from_slice(&key.fingerprint());
        value.push(kid_len);
        value.extend_from_slice(entry.kid.as_bytes());
        value.extend_from_slice(&json);
        let _ = self.store.set(&self.key(digest), &value, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es256::{InVm, SignatureCheck};
    use crate::keys::tests::jwks;
    use crate::keys::{KeySet, TokenError, VerifyOptions};
    use edge_core::host::MemoryStore;
    use jwt_simple::prelude::*;
    use std::cell::Cell;

    const NOW: u64 = 1_800_000_000;

    /// The VM's check, counted.
    #[derive(Default)]
    struct Counted(Cell<u32>);

    impl SignatureCheck for Counted {
        fn verify(
            &self,
            key: &PublicKey,
            signed: &[u8],
            signature: &[u8; 64],
        ) -> Result<bool, String> {
            self.0.set(self.0.get() + 1);
            InVm.verify(key, signed, signature)
        }
        fn name(&self) -> &'static str {
            "counted"
        }
    }

    fn config(slots: u32, issuer: &str) -> AuthConfig {
        AuthConfig::from_json(
            serde_json::json!({
                "authority": {"cluster": "authority"},
                "issuer": issuer,
                "shared_token_slots": slots,
                "rules": [{"path": "/**", "policy": "authenticated"}],
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    /// A worker's key set: `key`'s JWKS, its checks counted, sharing `store` under `config`.
    fn worker(
        key: &ES256KeyPair,
        store: &Rc<MemoryStore>,
        config: &AuthConfig,
    ) -> (KeySet, Rc<Counted>) {
        let counted = Rc::new(Counted::default());
        let shared = SharedTokens::new(store.clone(), config);
        let keys = KeySet::from_jwks(&jwks(&[key]))
            .unwrap()
            .checked_by(counted.clone())
            .sharing(shared);
        (keys, counted)
    }

    fn token(key: &ES256KeyPair, subject: &str, valid_for: u64) -> String {
        let mut claims = Claims::with_custom_claims(
            serde_json::json!({"scope": "items:write"}),
            Duration::from_secs(valid_for),
        )
        .with_issuer("authority")
        .with_subject(subject);
        claims.issued_at = Some(UnixTimeStamp::from_secs(NOW));
        claims.expires_at = Some(UnixTimeStamp::from_secs(NOW + valid_for));
        key.sign(claims).unwrap()
    }

    fn options(now: u64) -> VerifyOptions<'static> {
        VerifyOptions {
            issuer: Some("authority"),
            clock_skew_seconds: 60,
            max_token_bytes: 8192,
            now: Some(now),
            ..VerifyOptions::default()
        }
    }

    #[test]
    fn one_workers_verification_serves_the_others() {
        let key = ES256KeyPair::generate().with_key_id("k1");
        let store = Rc::new(MemoryStore::default());
        let config = config(1024, "authority");
        let (first, first_checks) = worker(&key, &store, &config);
        let (second, second_checks) = worker(&key, &store, &config);
        let ada = token(&key, "ada", 600);
        let verified = first.verify(&ada, &options(NOW)).unwrap();
        assert_eq!(first_checks.0.get(), 1);
        let shared = second.verify(&ada, &options(NOW)).unwrap();
        assert_eq!(second_checks.0.get(), 0, "no second signature check");
        assert_eq!(shared, verified);
        assert_eq!(shared.claims["scope"], "items:write");
        // Past exp (and the skew), the entry is not used, and the token is refused.
        let (third, _) = worker(&key, &store, &config);
        assert_eq!(
            third.verify(&ada, &options(NOW + 600 + 61)),
            Err(TokenError::Rejected)
        );
    }

    #[test]
    fn only_verified_tokens_enter_and_only_the_same_token_key_and_settings_hit() {
        let key = ES256KeyPair::generate().with_key_id("k1");
        let store = Rc::new(MemoryStore::default());
        let one_slot = config(1, "authority");
        let shared = SharedTokens::new(store.clone(), &one_slot).unwrap();
        let (keys, _) = worker(&key, &store, &one_slot);
        let forged = token(&ES256KeyPair::generate().with_key_id("k1"), "mallory", 600);
        assert_eq!(
            keys.verify(&forged, &options(NOW)),
            Err(TokenError::Rejected)
        );
        assert_eq!(
            store.get(&shared.key(&digest(&forged))),
            Ok(None),
            "nothing written"
        );

        let ada = token(&key, "ada", 600);
        keys.verify(&ada, &options(NOW)).unwrap();
        // Another key published under k1: the entry is not that key's.
        let impostor = ES256KeyPair::generate().with_key_id("k1");
        let (other_key, checks) = worker(&impostor, &store, &one_slot);
        assert_eq!(
            other_key.verify(&ada, &options(NOW)),
            Err(TokenError::Rejected)
        );
        assert_eq!(checks.0.get(), 1);
        // Other verification settings (another issuer required): not used either.
        let (strict, checks) = worker(&key, &store, &config(1, "someone-else"));
        assert_eq!(strict.verify(&ada, &options(NOW)).map(|_| ()), Ok(()));
        assert_eq!(checks.0.get(), 1, "verified again under its own settings");
        // One slot: the next verified token takes it, and the first is verified again.
        let bob = token(&key, "bob", 600);
        let (fresh, checks) = worker(&key, &store, &one_slot);
        fresh.verify(&bob, &options(NOW)).unwrap();
        let (later, later_checks) = worker(&key, &store, &one_slot);
        later.verify(&bob, &options(NOW)).unwrap();
        assert_eq!(later_checks.0.get(), 0, "bob's entry");
        later.verify(&ada, &options(NOW)).unwrap();
        assert_eq!(later_checks.0.get(), 1, "ada's entry was overwritten");
        assert_eq!(checks.0.get(), 1);
    }

    #[test]
    fn no_slots_no_sharing() {
        let store: Rc<dyn SharedStore> = Rc::new(MemoryStore::default());
        assert!(SharedTokens::new(store, &config(0, "authority")).is_none());
    }
}
