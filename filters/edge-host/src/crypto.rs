//! Envoy's `verify_signature` foreign function (Envoy 1.30+): its arguments and result, as
//! declared in Envoy's `source/extensions/common/wasm/ext/verify_signature.proto`.

use crate::abi;
use edge_core::host::HostError;
use prost::Message;

#[derive(Clone, PartialEq, Message)]
struct VerifySignatureArguments {
    #[prost(string, tag = "1")]
    hash_function: String,
    /// DER SubjectPublicKeyInfo.
    #[prost(bytes = "vec", tag = "2")]
    public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    text: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    result: bool,
    #[prost(string, tag = "2")]
    error: String,
}

/// `Ok(valid)`; `Err(NOT_FOUND)` on an Envoy without the function.
pub fn verify_signature(
    hash: &str,
    public_key: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Result<bool, HostError> {
    let arguments = VerifySignatureArguments {
        hash_function: hash.to_string(),
        public_key: public_key.to_vec(),
        signature: signature.to_vec(),
        text: text.to_vec(),
    }
    .encode_to_vec();
    let answer = abi::call_foreign_function("verify_signature", &arguments)?.unwrap_or_default();
    let result = VerifySignatureResult::decode(answer.as_slice())
        .map_err(|_| HostError::INTERNAL_FAILURE)?;
    // A refused signature and a key Envoy cannot read both come back as `result: false`; the
    // `error` text tells them apart only for humans.
    Ok(result.result)
}
