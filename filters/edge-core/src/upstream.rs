//! The `upstream` argument of proxy-wasm's `dispatch_grpc_call`.
//!
//! Envoy first tries to parse that argument as a serialized `envoy.config.core.v3.GrpcService`
//! and only treats it as a cluster name when parsing fails. Some plain names parse: the bytes
//! of `authority` read as field 12 (fixed64) plus eight bytes, leaving a `GrpcService` with no
//! target, and Envoy aborts. So the filters always pass an explicit
//! `GrpcService { envoy_grpc { cluster_name } }`.

/// Longest cluster name whose encoding stays single-byte-length (and so valid UTF-8).
const MAX_CLUSTER_NAME: usize = 125;

/// The serialized `GrpcService` naming `cluster`, as the `&str` the SDK takes.
pub fn grpc_upstream(cluster: &str) -> Result<String, String> {
    if cluster.is_empty() || cluster.len() > MAX_CLUSTER_NAME {
        return Err(format!(
            "cluster name {cluster:?} must have 1 to {MAX_CLUSTER_NAME} bytes"
        ));
    }
    // Field 1 (LEN) of GrpcService = EnvoyGrpc, whose field 1 (LEN) = cluster_name. Both
    // lengths are below 128, so each is one varint byte, and every byte added is ASCII.
    let mut encoded = String::with_capacity(cluster.len() + 4);
    encoded.push('\n');
    encoded.push(char::from((cluster.len() + 2) as u8));
    encoded.push('\n');
    encoded.push(char::from(cluster.len() as u8));
    encoded.push_str(cluster);
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_envoy_grpc_cluster_name() {
        let encoded = grpc_upstream("authority").unwrap();
        assert_eq!(encoded.as_bytes(), b"\x0a\x0b\x0a\x09authority");
        let istio = "outbound|50051||authority.authority.svc.cluster.local";
        let encoded = grpc_upstream(istio).unwrap();
        assert_eq!(encoded.len(), istio.len() + 4);
        assert!(encoded.ends_with(istio));
    }

    #[test]
    fn refuses_names_it_cannot_encode() {
        assert!(grpc_upstream("").is_err());
        assert!(grpc_upstream(&"c".repeat(126)).is_err());
        assert!(grpc_upstream(&"c".repeat(125)).is_ok());
    }
}
