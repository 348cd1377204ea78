//! The `upstream` argument of proxy-wasm's gRPC callouts (`dispatch_grpc_call` for auth's key
//! fetch, `open_grpc_stream` for the transcoder's backend calls).
//!
//! Envoy first tries to parse that argument as a serialized `envoy.config.core.v3.GrpcService`
//! and only treats it as a cluster name when parsing fails. Some plain names parse: the bytes
//! of `authority` read as field 12 (fixed64) plus eight bytes, leaving a `GrpcService` with no
//! target, and Envoy aborts. So the filters always pass an explicit
//! `GrpcService { envoy_grpc { cluster_name, authority } }`.
//!
//! `authority` matters in Istio: without it Envoy sends the cluster name as `:authority`, and
//! Istio's names (`outbound|50051||authority.authority.svc.cluster.local`) are not valid
//! authorities, so the backend's HTTP/2 server refuses the call.

/// The serialized `GrpcService` naming `cluster`. Not always UTF-8: a length of 128 or more is a
/// multi-byte varint (Istio's names reach 161 bytes with 63-character Kubernetes names), so the
/// glue hands these bytes to the SDK through [`crate::abi::upstream_str`].
pub fn grpc_upstream(cluster: &str) -> Result<Vec<u8>, String> {
    if cluster.is_empty() || !cluster.is_ascii() {
        return Err(format!("cluster name {cluster:?} is empty or not ASCII"));
    }
    let authority = edge_core::cluster_authority(cluster);
    // GrpcService field 1 (LEN) = EnvoyGrpc { field 1 (LEN) cluster_name, field 2 (LEN)
    // authority }.
    let mut envoy_grpc = Vec::with_capacity(cluster.len() + authority.len() + 6);
    length_delimited(&mut envoy_grpc, 0x0a, cluster.as_bytes());
    length_delimited(&mut envoy_grpc, 0x12, authority.as_bytes());
    let mut encoded = Vec::with_capacity(envoy_grpc.len() + 3);
    length_delimited(&mut encoded, 0x0a, &envoy_grpc);
    Ok(encoded)
}

fn length_delimited(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    let mut length = bytes.len();
    while length >= 0x80 {
        out.push((length as u8 & 0x7f) | 0x80);
        length >>= 7;
    }
    out.push(length as u8);
    out.extend_from_slice(bytes);
}

/// Checks at configuration time that every cluster a filter will call can be encoded.
pub fn check_clusters<'a>(clusters: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    clusters
        .into_iter()
        .try_for_each(|cluster| grpc_upstream(cluster).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_envoy_grpc_cluster_name_and_authority() {
        let encoded = grpc_upstream("authority").unwrap();
        assert_eq!(encoded, b"\x0a\x16\x0a\x09authority\x12\x09authority");
        let istio = "outbound|50051||authority.authority.svc.cluster.local";
        let encoded = grpc_upstream(istio).unwrap();
        let authority = "authority.authority.svc.cluster.local:50051";
        assert_eq!(edge_core::cluster_authority(istio), authority);
        let mut expected = vec![0x0a, (istio.len() + authority.len() + 4) as u8, 0x0a];
        expected.push(istio.len() as u8);
        expected.extend_from_slice(istio.as_bytes());
        expected.extend_from_slice(&[0x12, authority.len() as u8]);
        expected.extend_from_slice(authority.as_bytes());
        assert_eq!(encoded, expected);
    }

    /// Kubernetes allows 63-character service and namespace names; Istio's cluster for one is
    /// 161 bytes, its authority 151: both lengths and the outer one are two-byte varints.
    #[test]
    fn encodes_the_longest_kubernetes_names() {
        let name = "s".repeat(63);
        let istio = format!("outbound|65535||{name}.{name}.svc.cluster.local");
        let authority = format!("{name}.{name}.svc.cluster.local:65535");
        let encoded = grpc_upstream(&istio).unwrap();
        let inner = 3 + istio.len() + 3 + authority.len();
        let varint = |n: usize| [(n as u8 & 0x7f) | 0x80, (n >> 7) as u8];
        let mut expected = vec![0x0a];
        expected.extend(varint(inner));
        expected.push(0x0a);
        expected.extend(varint(istio.len()));
        expected.extend_from_slice(istio.as_bytes());
        expected.push(0x12);
        expected.extend(varint(authority.len()));
        expected.extend_from_slice(authority.as_bytes());
        assert_eq!(encoded, expected);
    }

    #[test]
    fn refuses_names_it_cannot_encode() {
        assert!(grpc_upstream("").is_err());
        assert!(grpc_upstream("caf\u{e9}").is_err());
        assert!(check_clusters(["a", "b"]).is_ok());
        assert!(check_clusters(["a", ""]).is_err());
    }
}
