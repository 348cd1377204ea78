//! The keys tokens are verified with, from the authority's JWKS, and token verification.

use crate::config::AuthConfig;
use crate::es256::{InVm, PublicKey, SignatureCheck};
use crate::token_cache::{self, Entry, SharedTokens};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

/// Why a token was refused. The text is what clients read in `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Ambiguous,
    NotBearer,
    Malformed,
    TooLarge,
    MissingKeyId,
    UnknownKeyId,
    /// Bad signature, wrong algorithm for the key, expired, not yet valid, wrong issuer…
    Rejected,
    MissingExpiry,
    MissingSubject,
    /// `exp` − `iat` beyond the configured maximum lifetime.
    LivesTooLong,
}

impl TokenError {
    /// Short, stable identifier for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Ambiguous => "token_ambiguous",
            TokenError::NotBearer => "token_not_bearer",
            TokenError::Malformed => "token_malformed",
            TokenError::TooLarge => "token_too_large",
            TokenError::MissingKeyId => "token_missing_kid",
            TokenError::UnknownKeyId => "token_unknown_kid",
            TokenError::Rejected => "token_rejected",
            TokenError::MissingExpiry => "token_missing_exp",
            TokenError::MissingSubject => "token_missing_sub",
            TokenError::LivesTooLong => "token_lifetime_too_long",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Missing => "a bearer token is required",
            TokenError::Ambiguous => "more than one token (Authorization headers or token cookies)",
            TokenError::NotBearer => "the Authorization scheme must be Bearer",
            TokenError::Malformed => "the token is malformed",
            TokenError::TooLarge => "the token is too large",
            TokenError::MissingKeyId => "the token has no key id",
            TokenError::UnknownKeyId => "the token is signed with an unknown key",
            TokenError::Rejected => "the token is invalid or expired",
            TokenError::MissingExpiry => "the token has no expiry",
            TokenError::MissingSubject => "the token has no subject",
            TokenError::LivesTooLong => "the token is valid for longer than allowed",
        })
    }
}

/// The verified caller: the subject and the token's other (non-registered) claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub subject: String,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// The checks applied besides the signature. Borrowed from the configuration: built for every
/// request, it must not allocate.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions<'a> {
    pub issuer: Option<&'a str>,
    pub audiences: &'a [String],
    pub max_lifetime_seconds: Option<u64>,
    pub clock_skew_seconds: u64,
    pub max_token_bytes: usize,
    /// Verify as if it were this time (seconds since the epoch); tests only.
    pub now: Option<u64>,
}

impl<'a> From<&'a AuthConfig> for VerifyOptions<'a> {
    fn from(config: &'a AuthConfig) -> Self {
        Self {
            issuer: config.issuer.as_deref(),
            audiences: &config.audiences,
            max_lifetime_seconds: config.max_lifetime_seconds,
            clock_skew_seconds: config.clock_skew_seconds,
            max_token_bytes: config.max_token_bytes,
            now: None,
        }
    }
}

/// Verification keys by `kid`. Each key carries its own algorithm (ES256): the token's `alg`
/// header must agree with the key, so `none` or HS256-with-the-public-key cannot pass.
///
/// Verified tokens are remembered (at most [`CACHE_ENTRIES`]), so a client reusing its token
/// costs a map lookup instead of an ECDSA verification; an entry is only used while the token's
/// `exp` (with the clock skew) has not passed. A refresh ([`KeySet::refreshed`]) keeps the
/// tokens of the keys it keeps unchanged, so a retired key's tokens are verified again (and
/// refused) while a refresh that changes nothing costs nothing.
pub struct KeySet {
    keys: HashMap<String, PublicKey>,
    /// The host's crypto or the VM's, chosen once per worker ([`crate::es256::choose`]).
    check: Rc<dyn SignatureCheck>,
    /// Tokens verified by any worker, if the proxy shares them.
    shared: Option<SharedTokens>,
    /// Signatures checked since the root last took the count (requests cannot reach the
    /// host's metrics from here).
    checks: Cell<u64>,
    /// Shared, so a cache hit costs a reference count rather than a copy of every claim.
    verified: RefCell<foldhash::HashMap<String, Verified>>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("check", &self.check.name())
            .finish_non_exhaustive()
    }
}

/// A verified token: who it names, its `exp`, and the `kid` of the key that verified it.
#[derive(Debug, Clone)]
struct Verified {
    identity: Rc<Identity>,
    expires_at: u64,
    kid: String,
}

/// How many verified tokens a key set remembers; when full it starts over.
pub const CACHE_ENTRIES: usize = 1024;

impl KeySet {
    /// Parses a JWKS (RFC 7517). Keys of types this filter cannot verify are skipped, so the
    /// authority may publish them for other consumers; a set with no usable key is an error.
    pub fn from_jwks(jwks: &str) -> Result<Self, String> {
        let document: serde_json::Value =
            serde_json::from_str(jwks).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let entries = document
            .get("keys")
            .and_then(|keys| keys.as_array())
            .ok_or("JWKS has no \"keys\" array")?;
        let mut keys = HashMap::new();
        for entry in entries {
            let is_es256 = entry.get("kty").and_then(|v| v.as_str()) == Some("EC")
                && entry.get("crv").and_then(|v| v.as_str()) == Some("P-256")
                && entry
                    .get("alg")
                    .and_then(|v| v.as_str())
                    .is_none_or(|alg| alg == "ES256");
            let Some(kid) = entry.get("kid").and_then(|v| v.as_str()) else {
                continue;
            };
            if !is_es256 {
                continue;
            }
            let key = ES256PublicKey::from_jwk(&entry.to_string())
                .map_err(|e| format!("JWKS key {kid:?} is invalid: {e}"))
                .and_then(|key| {
                    PublicKey::from_uncompressed(&key.public_key().to_bytes_uncompressed())
                        .map_err(|e| format!("JWKS key {kid:?} is invalid: {e}"))
                })?;
            keys.insert(kid.to_string(), key);
        }
        if keys.is_empty() {
            return Err("JWKS has no ES256 key with a kid".into());
        }
        Ok(Self {
            keys,
            check: Rc::new(InVm),
            shared: None,
            checks: Cell::new(0),
            verified: RefCell::default(),
        })
    }

    /// The same keys, their signatures checked by `check`.
    pub fn checked_by(self, check: Rc<dyn SignatureCheck>) -> Self {
        Self { check, ..self }
    }

    /// The same keys, sharing verified tokens with the proxy's other workers.
    pub fn sharing(self, shared: Option<SharedTokens>) -> Self {
        Self { shared, ..self }
    }

    /// The set a newly fetched JWKS makes, remembering the verified tokens of every key it
    /// keeps unchanged (same `kid`, same public key). Every worker rebuilds its set whenever any
    /// of them publishes a fetch, so without this each periodic refresh would send every
    /// client's next request through an ECDSA verification again.
    pub fn refreshed(&self, jwks: &str) -> Result<Self, String> {
        let next = Self::from_jwks(jwks)?
            .checked_by(self.check.clone())
            .sharing(self.shared.clone());
        let unchanged: HashSet<&str> = self
            .keys
            .iter()
            .filter(|(kid, old)| next.keys.get(*kid) == Some(old))
            .map(|(kid, _)| kid.as_str())
            .collect();
        let kept: foldhash::HashMap<String, Verified> = self
            .verified
            .borrow()
            .iter()
            .filter(|(_, verified)| unchanged.contains(verified.kid.as_str()))
            .map(|(token, verified)| (token.clone(), verified.clone()))
            .collect();
        *next.verified.borrow_mut() = kept;
        next.checks.set(self.take_checks());
        Ok(next)
    }

    /// The signatures checked since the last call.
    pub fn take_checks(&self) -> u64 {
        self.checks.take()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies the signature with the key named by `kid`, then `exp` (required), `nbf`, `iat`
    /// and `iss` with the configured clock skew.
    pub fn verify(
        &self,
        token: &str,
        options: &VerifyOptions<'_>,
    ) -> Result<Rc<Identity>, TokenError> {
        if token.len() > options.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let now = options
            .now
            .unwrap_or_else(|| Clock::now_since_epoch().as_secs());
        let current =
            |expires_at: u64| now.saturating_sub(options.clock_skew_seconds) <= expires_at;
        if let Some(verified) = self.verified.borrow().get(token) {
            if current(verified.expires_at) {
                return Ok(verified.identity.clone());
            }
        }
        let digest = self.shared.as_ref().map(|_| token_cache::digest(token));
        let from_shared = match (&self.shared, &digest) {
            (Some(shared), Some(digest)) => shared
                .get(digest, |kid| self.keys.get(kid))
                .filter(|entry| current(entry.expires_at)),
            _ => None,
        };
        let verified = match from_shared {
            Some(entry) => Verified {
                identity: Rc::new(entry.identity),
                expires_at: entry.expires_at,
                kid: entry.kid,
            },
            None => {
                let verified = self.verify_signature_and_claims(token, options)?;
                if let (Some(shared), Some(digest), Some(key)) =
                    (&self.shared, &digest, self.keys.get(&verified.kid))
                {
                    let entry = Entry {
                        identity: (*verified.identity).clone(),
                        expires_at: verified.expires_at,
                        kid: verified.kid.clone(),
                    };
                    shared.put(digest, &entry, key);
                }
                verified
            }
        };
        let identity = Rc::clone(&verified.identity);
        let mut cache = self.verified.borrow_mut();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(token.to_string(), verified);
        Ok(identity)
    }

    fn verify_signature_and_claims(
        &self,
        token: &str,
        options: &VerifyOptions<'_>,
    ) -> Result<Verified, TokenError> {
        let jws = Jws::parse(token)?;
        let kid = jws.header.kid.as_deref().ok_or(TokenError::MissingKeyId)?;
        let key = self.keys.get(kid).ok_or(TokenError::UnknownKeyId)?;
        // The key decides the algorithm: `none`, or HS256 keyed with the public key, never pass.
        if jws.header.alg != "ES256" || !jws.header.crit.is_empty() || !jws.header.typ_is_jwt() {
            return Err(TokenError::Rejected);
        }
        self.checks.set(self.checks.get() + 1);
        let valid = self
            .check
            .verify(key, jws.signed.as_bytes(), &jws.signature)
            .map_err(|_| TokenError::Rejected)?;
        if !valid {
            return Err(TokenError::Rejected);
        }
        let claims: JWTClaims<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&jws.payload).map_err(|_| TokenError::Rejected)?;
        let now = options
            .now
            .unwrap_or_else(|| Clock::now_since_epoch().as_secs());
        check_claims(&claims, options, now)?;
        let expires_at = claims.expires_at.ok_or(TokenError::MissingExpiry)?;
        if let Some(max) = options.max_lifetime_seconds {
            let start = claims.issued_at.map_or(now, |issued| issued.as_secs());
            if expires_at.as_secs().saturating_sub(start) > max {
                return Err(TokenError::LivesTooLong);
            }
        }
        let subject = claims
            .subject
            .filter(|subject| !subject.is_empty())
            .ok_or(TokenError::MissingSubject)?;
        Ok(Verified {
            identity: Rc::new(Identity {
                subject,
                claims: claims.custom,
            }),
            expires_at: expires_at.as_secs(),
            kid: kid.to_string(),
        })
    }
}

/// A compact JWS (`header.payload.signature`), decoded but not yet verified.
struct Jws<'t> {
    header: JwsHeader,
    /// `header.payload` as sent: what the signature covers.
    signed: &'t str,
    payload: Vec<u8>,
    signature: [u8; 64],
}

#[derive(Deserialize)]
struct JwsHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    /// Extensions the token says must be understood: none are.
    #[serde(default)]
    crit: Vec<serde_json::Value>,
}

impl JwsHeader {
    /// RFC 7519: `typ`, when present, names a JWT.
    fn typ_is_jwt(&self) -> bool {
        self.typ.as_deref().is_none_or(|typ| {
            let typ = typ.to_ascii_uppercase();
            typ == "JWT" || typ.ends_with("+JWT")
        })
    }
}

impl<'t> Jws<'t> {
    /// An unreadable header is malformed; anything else wrong is left to verification, which
    /// refuses it (a signature of the wrong size never verifies).
    fn parse(token: &'t str) -> Result<Self, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_part), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: JwsHeader = URL_SAFE_NO_PAD
            .decode(header_part)
            .ok()
            .and_then(|json| serde_json::from_slice::<JwsHeader>(&json).ok())
            .ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .unwrap_or([0; 64]);
        Ok(Self {
            header,
            signed: &token[..header_part.len() + 1 + payload.len()],
            payload: URL_SAFE_NO_PAD.decode(payload).unwrap_or_default(),
            signature,
        })
    }
}

/// The registered claims' checks (RFC 7519 §4.1), as jwt-simple makes them, with the
/// configured clock skew: `iat` and `nbf` not in the future, `exp` not past, `iss` and `aud`
/// among those allowed.
fn check_claims<C>(
    claims: &JWTClaims<C>,
    options: &VerifyOptions<'_>,
    now: u64,
) -> Result<(), TokenError> {
    let skew = options.clock_skew_seconds;
    let future = |time: Option<UnixTimeStamp>| time.is_some_and(|time| time.as_secs() > now + skew);
    let expired = claims
        .expires_at
        .is_some_and(|exp| now < skew || now - skew > exp.as_secs());
    let issuer_ok = options
        .issuer
        .is_none_or(|issuer| claims.issuer.as_deref() == Some(issuer));
    let audience_ok = options.audiences.is_empty()
        || claims
            .audiences
            .as_ref()
            .is_some_and(|audiences| match audiences {
                Audiences::AsString(audience) => options.audiences.contains(audience),
                Audiences::AsSet(set) => options.audiences.iter().any(|a| set.contains(a)),
            });
    if future(claims.issued_at)
        || future(claims.invalid_before)
        || expired
        || !issuer_ok
        || !audience_ok
    {
        return Err(TokenError::Rejected);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn signing_key(kid: &str) -> ES256KeyPair {
        ES256KeyPair::generate().with_key_id(kid)
    }

    /// The JWKS publishing `keys`.
    pub(crate) fn jwks(keys: &[&ES256KeyPair]) -> String {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|key| serde_json::from_str(&key.public_key().to_jwk()).unwrap())
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    fn options() -> VerifyOptions<'static> {
        VerifyOptions {
            issuer: Some("authority"),
            audiences: &[],
            max_lifetime_seconds: Some(86_400),
            clock_skew_seconds: 60,
            max_token_bytes: 8192,
            now: Some(NOW),
        }
    }

    fn claims(issued: u64, valid_for: u64) -> JWTClaims<NoCustomClaims> {
        let mut claims = Claims::create(Duration::from_secs(valid_for))
            .with_issuer("authority")
            .with_subject("customer-1");
        claims.issued_at = Some(UnixTimeStamp::from_secs(issued));
        claims.expires_at = Some(UnixTimeStamp::from_secs(issued + valid_for));
        claims
    }

    #[test]
    fn valid_token_yields_subject_and_rotation_keeps_both_keys() {
        let old = signing_key("old");
        let new = signing_key("new");
        let keys = KeySet::from_jwks(&jwks(&[&new, &old])).unwrap();
        assert_eq!(keys.len(), 2);
        for key in [&old, &new] {
            let token = key.sign(claims(NOW, 3600)).unwrap();
            assert_eq!(
                keys.verify(&token, &options()).unwrap().subject,
                "customer-1"
            );
        }
    }

    #[test]
    fn refusals() {
        let key = signing_key("k1");
        let other = signing_key("k1");
        let keys = KeySet::from_jwks(&jwks(&[&key])).unwrap();
        let verify = |token: &str| keys.verify(token, &options());

        let good = key.sign(claims(NOW, 3600)).unwrap();
        let (head, rest) = good.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();

        // Same kid, other private key: the signature does not verify.
        let forged = other.sign(claims(NOW, 3600)).unwrap();
        assert_eq!(verify(&forged), Err(TokenError::Rejected));
        // Payload swapped for another one while keeping the signature.
        let payload = Base64UrlSafeNoPadding::encode_to_string(
            br#"{"sub":"admin","iss":"authority","exp":9999999999}"#,
        )
        .unwrap();
        assert_eq!(
            verify(&format!("{head}.{payload}.{signature}")),
            Err(TokenError::Rejected)
        );
        // alg "none" with the same kid.
        let none_header =
            Base64UrlSafeNoPadding::encode_to_string(br#"{"alg":"none","kid":"k1"}"#).unwrap();
        assert_eq!(
            verify(&format!("{none_header}.{payload}.")),
            Err(TokenError::Rejected)
        );
        // Expired beyond the skew; not yet valid beyond the skew.
        assert_eq!(
            verify(&key.sign(claims(NOW - 7200, 3600)).unwrap()),
            Err(TokenError::Rejected)
        );
        let mut future = claims(NOW, 3600);
        future.invalid_before = Some(UnixTimeStamp::from_secs(NOW + 600));
        assert_eq!(
            verify(&key.sign(future).unwrap()),
            Err(TokenError::Rejected)
        );
        // Within the skew is fine.
        assert!(verify(&key.sign(claims(NOW - 3630, 3600)).unwrap()).is_ok());
        // Wrong issuer, missing exp, unknown or missing kid, garbage, oversized.
        let wrong_issuer = claims(NOW, 3600).with_issuer("someone-else");
        assert_eq!(
            verify(&key.sign(wrong_issuer).unwrap()),
            Err(TokenError::Rejected)
        );
        let mut no_exp = claims(NOW, 3600);
        no_exp.expires_at = None;
        assert_eq!(
            verify(&key.sign(no_exp).unwrap()),
            Err(TokenError::MissingExpiry)
        );
        let stranger = signing_key("k2").sign(claims(NOW, 3600)).unwrap();
        assert_eq!(verify(&stranger), Err(TokenError::UnknownKeyId));
        let unnamed = ES256KeyPair::generate().sign(claims(NOW, 3600)).unwrap();
        assert_eq!(verify(&unnamed), Err(TokenError::MissingKeyId));
        let mut eternal = claims(NOW, 3600);
        eternal.expires_at = Some(UnixTimeStamp::from_secs(NOW + 365 * 86_400));
        assert_eq!(
            verify(&key.sign(eternal).unwrap()),
            Err(TokenError::LivesTooLong)
        );
        // HS256 "signed" with the public key's bytes, carrying the ES256 key's kid.
        let public_bytes = key.public_key().public_key().to_bytes_uncompressed();
        let confused = HS256Key::from_bytes(&public_bytes).with_key_id("k1");
        assert_eq!(
            verify(&confused.authenticate(claims(NOW, 3600)).unwrap()),
            Err(TokenError::Rejected)
        );
        assert_eq!(verify("garbage"), Err(TokenError::Malformed));
        assert_eq!(verify(""), Err(TokenError::Malformed));
        assert_eq!(verify(&"a".repeat(9000)), Err(TokenError::TooLarge));
    }

    #[test]
    fn audience_and_custom_claims() {
        let key = signing_key("k1");
        let keys = KeySet::from_jwks(&jwks(&[&key])).unwrap();
        let edge = ["edge".to_string()];
        let with_audience = VerifyOptions {
            audiences: &edge,
            ..options()
        };
        let custom = serde_json::json!({"scope": "items:read items:write"});
        let mut claims = Claims::with_custom_claims(custom, Duration::from_secs(3600))
            .with_issuer("authority")
            .with_subject("customer-1")
            .with_audience("edge");
        claims.issued_at = Some(UnixTimeStamp::from_secs(NOW));
        claims.expires_at = Some(UnixTimeStamp::from_secs(NOW + 3600));
        let identity = keys
            .verify(&key.sign(claims).unwrap(), &with_audience)
            .unwrap();
        assert_eq!(identity.claims["scope"], "items:read items:write");
        let no_audience = key.sign(self::claims(NOW, 3600)).unwrap();
        assert_eq!(
            keys.verify(&no_audience, &with_audience),
            Err(TokenError::Rejected)
        );
    }

    #[test]
    fn cached_tokens_still_expire() {
        let key = signing_key("k1");
        let keys = KeySet::from_jwks(&jwks(&[&key])).unwrap();
        let token = key.sign(claims(NOW, 600)).unwrap();
        assert!(keys.verify(&token, &options()).is_ok());
        assert!(
            keys.verify(&token, &options()).is_ok(),
            "served from the cache"
        );
        let later = VerifyOptions {
            now: Some(NOW + 600 + 61),
            ..options()
        };
        assert_eq!(
            keys.verify(&token, &later),
            Err(TokenError::Rejected),
            "past exp + skew"
        );
        // A forged token never enters the cache, however often it is tried.
        let forged = signing_key("k1").sign(claims(NOW, 600)).unwrap();
        for _ in 0..2 {
            assert_eq!(keys.verify(&forged, &options()), Err(TokenError::Rejected));
        }
        assert_eq!(keys.verified.borrow().len(), 1);
    }

    #[test]
    fn a_refresh_keeps_the_tokens_of_unchanged_keys_only() {
        let (kept, retired) = (signing_key("k1"), signing_key("k2"));
        let keys = KeySet::from_jwks(&jwks(&[&kept, &retired])).unwrap();
        let kept_token = kept.sign(claims(NOW, 600)).unwrap();
        let retired_token = retired.sign(claims(NOW, 600)).unwrap();
        assert!(keys.verify(&kept_token, &options()).is_ok());
        assert!(keys.verify(&retired_token, &options()).is_ok());
        assert_eq!(keys.verified.borrow().len(), 2);

        // The same JWKS again: nothing to verify again.
        let same = keys.refreshed(&jwks(&[&kept, &retired])).unwrap();
        assert_eq!(same.verified.borrow().len(), 2);

        // k2 retired: its token is forgotten, and refused.
        let after = same.refreshed(&jwks(&[&kept])).unwrap();
        assert_eq!(after.verified.borrow().len(), 1);
        assert!(after.verify(&kept_token, &options()).is_ok());
        assert_eq!(
            after.verify(&retired_token, &options()),
            Err(TokenError::UnknownKeyId)
        );

        // A different key published under the same kid: its old tokens are refused.
        let impostor = signing_key("k1");
        let replaced = after.refreshed(&jwks(&[&impostor])).unwrap();
        assert_eq!(replaced.verified.borrow().len(), 0);
        assert_eq!(
            replaced.verify(&kept_token, &options()),
            Err(TokenError::Rejected)
        );

        // A JWKS that cannot be used leaves the caller with its old set.
        assert!(after.refreshed("{}").is_err());
    }

    #[test]
    fn jwks_problems_are_explained() {
        assert!(KeySet::from_jwks("not json")
            .unwrap_err()
            .contains("not JSON"));
        assert!(KeySet::from_jwks("{}").unwrap_err().contains("keys"));
        assert!(KeySet::from_jwks(r#"{"keys":[{"kty":"RSA","kid":"r"}]}"#)
            .unwrap_err()
            .contains("no ES256 key"));
    }
}
