//! ES256 signature checks (ECDSA over P-256 with SHA-256), by whichever crypto the host has.
//!
//! Envoy (1.30 and later; Istio 1.22 and later) offers its own BoringSSL to Wasm filters as the
//! `verify_signature` foreign function. It costs the worker ~740k instructions per token where
//! pure-Rust `p256` inside the VM costs ~6.6M (`../shared` measurements on Envoy 1.40). Which one
//! a worker uses is decided once, at configuration time, by checking a known signature
//! ([`choose`]); a host without the function gets the in-VM check.

use edge_core::host::Host;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use std::fmt;
use std::rc::Rc;

/// A P-256 public key, in the two forms the checks take.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// For the in-VM check.
    key: VerifyingKey,
    /// DER SubjectPublicKeyInfo, for the host's.
    der: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").finish_non_exhaustive()
    }
}

/// The fixed DER prefix of a P-256 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { id-ecPublicKey,
/// prime256v1 }, BIT STRING (65 bytes: 0x04 ‖ X ‖ Y) }.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl PublicKey {
    /// From the uncompressed SEC1 point (`0x04 ‖ X ‖ Y`), as a JWK's `x` and `y` make it.
    pub fn from_uncompressed(point: &[u8]) -> Result<Self, String> {
        let key =
            VerifyingKey::from_sec1_bytes(point).map_err(|_| "not a point on P-256".to_string())?;
        if point.len() != 65 {
            return Err("not an uncompressed P-256 point".into());
        }
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(point);
        Ok(Self { key, der })
    }
}

impl PublicKey {
    /// The first 16 bytes of X: tells a key from another published under the same `kid`.
    pub fn fingerprint(&self) -> [u8; 16] {
        let mut fingerprint = [0; 16];
        // SPKI prefix, then 0x04, then X.
        fingerprint.copy_from_slice(&self.der[SPKI_PREFIX.len() + 1..SPKI_PREFIX.len() + 17]);
        fingerprint
    }
}

/// Checks ES256 signatures: `Ok(valid)`, or an error when the check could not be made.
pub trait SignatureCheck {
    /// `signature` is the JWS form (R ‖ S, 64 bytes) over `signed`.
    fn verify(&self, key: &PublicKey, signed: &[u8], signature: &[u8; 64]) -> Result<bool, String>;
    /// For logs: which crypto this is.
    fn name(&self) -> &'static str;
}

/// Pure-Rust P-256 (`p256`), inside the VM: works on every host.
#[derive(Debug, Default, Clone, Copy)]
pub struct InVm;

impl SignatureCheck for InVm {
    fn verify(&self, key: &PublicKey, signed: &[u8], signature: &[u8; 64]) -> Result<bool, String> {
        let Ok(signature) = Signature::from_slice(signature) else {
            // R or S zero or not below the group order: no valid signature has that.
            return Ok(false);
        };
        Ok(key.key.verify(signed, &signature).is_ok())
    }

    fn name(&self) -> &'static str {
        "p256 in the filter"
    }
}

/// The host's crypto (Envoy's `verify_signature`, BoringSSL).
pub struct HostCrypto<H: Host>(pub Rc<H>);

impl<H: Host> SignatureCheck for HostCrypto<H> {
    fn verify(&self, key: &PublicKey, signed: &[u8], signature: &[u8; 64]) -> Result<bool, String> {
        self.0
            .verify_signature("sha256", &key.der, &der_signature(signature), signed)
            .map_err(|error| format!("the host could not verify a signature: {error}"))
    }

    fn name(&self) -> &'static str {
        "the host's verify_signature"
    }
}

/// The host's crypto if it verifies a known ES256 signature and refuses a tampered one, else
/// the in-VM check.
pub fn choose<H: Host + 'static>(host: &Rc<H>) -> Rc<dyn SignatureCheck> {
    let candidate = HostCrypto(host.clone());
    let Ok(key) = PublicKey::from_uncompressed(&KNOWN_POINT) else {
        return Rc::new(InVm);
    };
    let mut tampered = KNOWN_SIGNATURE;
    tampered[63] ^= 1;
    let works = candidate.verify(&key, KNOWN_TEXT, &KNOWN_SIGNATURE) == Ok(true)
        && candidate.verify(&key, KNOWN_TEXT, &tampered) == Ok(false);
    if works {
        Rc::new(candidate)
    } else {
        Rc::new(InVm)
    }
}

/// R ‖ S as the ECDSA-Sig-Value DER that `EVP_DigestVerify` takes: SEQUENCE of two INTEGERs,
/// each minimal (no leading zero bytes, one 0x00 before a set top bit). BoringSSL refuses any
/// other encoding, and JWS never carries DER.
pub fn der_signature(signature: &[u8; 64]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, bytes: &[u8]) {
        let start = bytes
            .iter()
            .position(|byte| *byte != 0)
            .unwrap_or(bytes.len() - 1);
        let value = &bytes[start..];
        let pad = value[0] & 0x80 != 0;
        out.push(0x02);
        out.push((value.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(value);
    }
    let mut body = Vec::with_capacity(70);
    integer(&mut body, &signature[..32]);
    integer(&mut body, &signature[32..]);
    let mut der = Vec::with_capacity(body.len() + 2);
    der.push(0x30);
    der.push(body.len() as u8);
    der.extend_from_slice(&body);
    der
}

/// A fixed key and its signature over [`KNOWN_TEXT`] (made once with Python's `cryptography`;
/// the unit tests check it with `p256`), to find out whether the host's crypto works. R and S
/// both have their top bit clear: a DER encoder that always pads them fails the check.
const KNOWN_TEXT: &[u8] = b"edge-auth: does the host verify ES256?";
const KNOWN_POINT: [u8; 65] = [
    0x04, 0xf7, 0xc4, 0x0f, 0x89, 0x5c, 0xe7, 0x2c, 0x78, 0x58, 0x9a, 0x97, 0x41, 0x3f, 0x8f, 0xe1,
    0x9a, 0x62, 0x90, 0xe7, 0x73, 0x15, 0x92, 0xde, 0x23, 0x16, 0x2c, 0x7b, 0x3f, 0x75, 0xb7, 0x22,
    0x61, 0x24, 0x63, 0x00, 0x68, 0x62, 0x4f, 0x78, 0xd3, 0xb9, 0x7c, 0x8e, 0x2a, 0xd8, 0x97, 0x0a,
    0xa9, 0x0b, 0x17, 0xdf, 0xaf, 0x54, 0xd0, 0x92, 0x39, 0x85, 0x2d, 0x30, 0x75, 0x1c, 0x00, 0x37,
    0xad,
];
const KNOWN_SIGNATURE: [u8; 64] = [
    0x61, 0x0c, 0x85, 0x15, 0x41, 0x4a, 0xfe, 0xf1, 0x10, 0xb3, 0x7a, 0x41, 0xb9, 0xb7, 0xfc, 0xb8,
    0xad, 0x50, 0x86, 0x1d, 0x42, 0x24, 0xeb, 0xcd, 0x46, 0xfe, 0x1c, 0x53, 0x13, 0xe6, 0xbd, 0xc5,
    0x32, 0x0b, 0x6c, 0xb4, 0xfe, 0x31, 0x3e, 0xf0, 0x5b, 0xb0, 0xbb, 0x34, 0x68, 0x3d, 0x45, 0x3b,
    0x49, 0x6a, 0x03, 0x91, 0x43, 0x61, 0xf4, 0xd3, 0xcf, 0xaf, 0xe3, 0xfe, 0xe9, 0x4d, 0xa1, 0x09,
];

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::host::RecordingHost;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::DecodePublicKey;

    /// A host whose crypto is `p256` reading DER, as BoringSSL does: strict DER only.
    fn der_crypto(hash: &str, key: &[u8], signature: &[u8], text: &[u8]) -> bool {
        let Ok(key) = p256::PublicKey::from_public_key_der(key) else {
            return false;
        };
        let Ok(signature) = Signature::from_der(signature) else {
            return false;
        };
        hash == "sha256" && VerifyingKey::from(key).verify(text, &signature).is_ok()
    }

    fn host(crypto: Option<edge_core::host::Crypto>) -> Rc<RecordingHost> {
        Rc::new(RecordingHost {
            crypto,
            ..RecordingHost::default()
        })
    }

    #[test]
    fn the_known_signature_verifies_and_a_tampered_one_does_not() {
        let key = PublicKey::from_uncompressed(&KNOWN_POINT).unwrap();
        assert_eq!(InVm.verify(&key, KNOWN_TEXT, &KNOWN_SIGNATURE), Ok(true));
        let mut tampered = KNOWN_SIGNATURE;
        tampered[63] ^= 1;
        assert_eq!(InVm.verify(&key, KNOWN_TEXT, &tampered), Ok(false));
        assert_eq!(InVm.verify(&key, KNOWN_TEXT, &[0; 64]), Ok(false));
        assert!(KNOWN_SIGNATURE[0] & 0x80 == 0 && KNOWN_SIGNATURE[32] & 0x80 == 0);
    }

    #[test]
    fn der_signatures_are_minimal_as_p256_writes_them() {
        let mut raw = [0u8; 64];
        // Leading zero bytes, a set top bit, both at once, the smallest values.
        for (r, s) in [
            ([0x00, 0x00, 0x7f], [0x80, 0x01, 0x02]),
            ([0x80, 0x00, 0x00], [0x00, 0x80, 0x00]),
            ([0x00, 0x00, 0x01], [0x00, 0x00, 0x01]),
        ] {
            raw[..32].fill(0x11);
            raw[32..].fill(0x22);
            raw[..3].copy_from_slice(&r);
            raw[32..35].copy_from_slice(&s);
            if r == [0, 0, 1] {
                raw[..32].fill(0);
                raw[31] = 1;
                raw[32..].fill(0);
                raw[63] = 1;
            }
            let expected = Signature::from_slice(&raw).unwrap().to_der();
            assert_eq!(der_signature(&raw), expected.as_bytes(), "{raw:02x?}");
        }
        for message in 0u32..200 {
            let key = SigningKey::from_slice(&[message as u8 | 1; 32]).unwrap();
            let signature: Signature = key.sign(&message.to_be_bytes());
            let raw: [u8; 64] = signature.to_bytes().into();
            assert_eq!(der_signature(&raw), signature.to_der().as_bytes());
        }
    }

    #[test]
    fn the_hosts_crypto_is_chosen_only_when_it_checks_signatures_right() {
        assert_eq!(
            choose(&host(Some(der_crypto))).name(),
            HostCrypto(host(None)).name()
        );
        assert_eq!(
            choose(&host(None)).name(),
            InVm.name(),
            "no verify_signature"
        );
        assert_eq!(
            choose(&host(Some(|_, _, _, _| true))).name(),
            InVm.name(),
            "a host that passes a tampered signature is not trusted"
        );
    }

    #[test]
    fn the_hosts_crypto_gets_the_key_and_signature_in_der() {
        let check = HostCrypto(host(Some(der_crypto)));
        let signing = SigningKey::from_slice(&[7; 32]).unwrap();
        let point = signing.verifying_key().to_sec1_point(false);
        let key = PublicKey::from_uncompressed(point.as_bytes()).unwrap();
        let signature: Signature = signing.sign(b"header.payload");
        let raw: [u8; 64] = signature.to_bytes().into();
        assert_eq!(check.verify(&key, b"header.payload", &raw), Ok(true));
        assert_eq!(check.verify(&key, b"header.payloaD", &raw), Ok(false));
        let failing = HostCrypto(host(None));
        assert!(failing.verify(&key, b"header.payload", &raw).is_err());
    }
}
