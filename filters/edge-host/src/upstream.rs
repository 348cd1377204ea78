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

/// The encoding must stay below 128 bytes inside: every length is then one varint byte, and
/// every byte ASCII (the SDK takes the upstream as a `&str`).
const MAX_ENVOY_GRPC: usize = 127;

/// The `:authority` for a cluster: `HOST:PORT` for Istio's `outbound|PORT|SUBSET|HOST`,
/// the name itself otherwise (a plain cluster name such as `authority` is a valid host).
pub fn authority_of(cluster: &str) -> String {
    let parts: Vec<&str> = cluster.split('|').collect();
    match parts.as_slice() {
        ["outbound", port, _subset, host] if !host.is_empty() && !port.is_empty() => {
            format!("{host}:{port}")
        }
        _ => cluster.to_string(),
    }
}

/// The serialized `GrpcService` naming `cluster`, as the `&str` the SDK takes.
pub fn grpc_upstream(cluster: &str) -> Result<String, String> {
    let authority = authority_of(cluster);
    let inner = 2 + cluster.len() + 2 + authority.len();
    if cluster.is_empty() || !cluster.is_ascii() || inner > MAX_ENVOY_GRPC {
        return Err(format!(
            "cluster name {cluster:?} is empty, not ASCII, or too long to encode"
        ));
    }
    // GrpcService field 1 (LEN) = EnvoyGrpc { field 1 (LEN) cluster_name, field 2 (LEN)
    // authority }.
    let mut encoded = String::with_capacity(inner + 2);
    encoded.push('\n');
    encoded.push(char::from(inner as u8));
    encoded.push('\n');
    encoded.push(char::from(cluster.len() as u8));
    encoded.push_str(cluster);
    encoded.push('\u{12}');
    encoded.push(char::from(authority.len() as u8));
    encoded.push_str(&authority);
    Ok(encoded)
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
        assert_eq!(
            encoded.as_bytes(),
            b"\x0a\x16\x0a\x09authority\x12\x09authority"
        );
        let istio = "outbound|50051||authority.authority.svc.cluster.local";
        let encoded = grpc_upstream(istio).unwrap();
        let authority = "authority.authority.svc.cluster.local:50051";
        assert_eq!(authority_of(istio), authority);
        let mut expected = vec![0x0a, (istio.len() + authority.len() + 4) as u8, 0x0a];
        expected.push(istio.len() as u8);
        expected.extend_from_slice(istio.as_bytes());
        expected.extend_from_slice(&[0x12, authority.len() as u8]);
        expected.extend_from_slice(authority.as_bytes());
        assert_eq!(encoded.as_bytes(), expected.as_slice());
    }

    #[test]
    fn refuses_names_it_cannot_encode() {
        assert!(grpc_upstream("").is_err());
        assert!(grpc_upstream(&"c".repeat(62)).is_err());
        assert!(grpc_upstream(&"c".repeat(61)).is_ok());
        assert!(grpc_upstream("caf\u{e9}").is_err());
        assert!(check_clusters(["a", "b"]).is_ok());
        assert!(check_clusters(["a", ""]).is_err());
    }
}
