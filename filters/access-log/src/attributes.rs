//! What the access log asks Envoy at the end of a request: one CEL expression, compiled by
//! Envoy once (`expr_create`) and evaluated per request (`expr_evaluate`), in one host call
//! where reading each attribute, each note and the response headers took one call each, at
//! ~13,000 instructions per call (bench/INSTRUCTIONS.md).

use edge_core::notes::{self, AuthNote, TranscodeNote};

/// A list, which Envoy returns in proxy-wasm's map encoding, each element a name (integers as
/// 8 little-endian bytes, strings and bytes as they are). A missing attribute would fail the
/// whole evaluation, so whatever can be missing has a default: `response.code` (no response
/// was sent) and the notes (a filter that did not run or had nothing to say). The gRPC status
/// and the route's cluster are asked for only when the transcoder left no note: for a request
/// it answered, its note has both. Envoy keeps a property a filter sets under `wasm.` + its
/// name in the filter state.
pub const EXPRESSION: &str = concat!(
    "[has(response.code) ? response.code : 0, ",
    "request.total_size, ",
    "response.total_size, ",
    "source.address, ",
    "'wasm.edge_auth' in filter_state ? filter_state['wasm.edge_auth'] : b'', ",
    "'wasm.edge_transcode' in filter_state ? filter_state['wasm.edge_transcode'] : b'', ",
    "'wasm.edge_transcode' in filter_state ? '' : ",
    "'grpc-status' in response.trailers ? response.trailers['grpc-status'] : ",
    "'grpc-status' in response.headers ? response.headers['grpc-status'] : '', ",
    // The route's cluster only when the router really sent the request there: a route names
    // one even for requests a filter answered itself.
    "'wasm.edge_transcode' in filter_state ? '' : ",
    "has(upstream.address) && has(xds.cluster_name) ? xds.cluster_name : '']",
);

/// What [`EXPRESSION`] yields; a value missing or unreadable is left at its default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    /// The HTTP status sent to the client (0 when none was).
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The peer's address, `host:port`.
    pub peer: Option<String>,
    pub auth: AuthNote,
    pub transcode: TranscodeNote,
    /// The gRPC status the transcoder noted, else `grpc-status` from the response trailers or
    /// the headers of a trailers-only reply.
    pub grpc_status: Option<u32>,
    /// The transcoder's backend, else the cluster the router sent the request to.
    pub upstream_cluster: Option<String>,
}

impl Attributes {
    /// Reads Envoy's answer to [`EXPRESSION`], a list of `elements` (integers as 8
    /// little-endian bytes, strings and bytes as they are).
    pub fn from_elements(elements: &[&[u8]]) -> Self {
        let bytes = |index: usize| elements.get(index).copied().unwrap_or_default();
        let number = |index: usize| {
            <[u8; 8]>::try_from(bytes(index))
                .map(i64::from_le_bytes)
                .ok()
                .and_then(|number| u64::try_from(number).ok())
                .unwrap_or_default()
        };
        let text = |index: usize| {
            Some(bytes(index))
                .filter(|text| !text.is_empty())
                .map(|text| String::from_utf8_lossy(text).into_owned())
        };
        Self::read(
            Read {
                status: number(0),
                bytes_in: number(1),
                bytes_out: number(2),
                peer: text(3),
                grpc_status: text(6).and_then(|status| status.trim().parse().ok()),
                routed_cluster: text(7),
            },
            bytes(4),
            bytes(5),
        )
    }

    /// From Envoy's attributes as a host reads them one by one (a native module), and the
    /// filters' notes as they were left in the filter state (empty when absent).
    pub fn read(read: Read, auth_note: &[u8], transcode_note: &[u8]) -> Self {
        let transcode: TranscodeNote = notes::decode(Some(transcode_note));
        Self {
            status: u16::try_from(read.status).unwrap_or_default(),
            bytes_in: read.bytes_in,
            bytes_out: read.bytes_out,
            peer: read.peer,
            auth: notes::decode(Some(auth_note)),
            grpc_status: transcode.grpc_status.or(read.grpc_status),
            upstream_cluster: notes::non_empty(&transcode.upstream_cluster).or(read.routed_cluster),
            transcode,
        }
    }
}

/// Envoy's own attributes of a request, as read; whatever could not be read is left at its
/// default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Read {
    /// `response.code` (0: no response was sent).
    pub status: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `source.address`.
    pub peer: Option<String>,
    /// `grpc-status` of the response's trailers, or headers of a trailers-only answer.
    pub grpc_status: Option<u32>,
    /// The cluster the router really sent the request to (none when a filter answered).
    pub routed_cluster: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    enum Element<'a> {
        Int(i64),
        Text(&'a str),
        Bytes(Vec<u8>),
    }

    /// The elements as Envoy hands them over.
    fn list(elements: &[Element]) -> Vec<Vec<u8>> {
        elements
            .iter()
            .map(|element| match element {
                Element::Int(n) => n.to_le_bytes().to_vec(),
                Element::Text(text) => text.as_bytes().to_vec(),
                Element::Bytes(bytes) => bytes.clone(),
            })
            .collect()
    }

    fn decode(list: &[Vec<u8>]) -> Attributes {
        let elements: Vec<&[u8]> = list.iter().map(Vec::as_slice).collect();
        Attributes::from_elements(&elements)
    }

    use Element::{Bytes, Int, Text};

    #[test]
    fn a_passed_on_grpc_call_reads_envoys_status_and_cluster() {
        let auth = AuthNote {
            subject: "user-1".into(),
            reason: String::new(),
        };
        let bytes = list(&[
            Int(200),
            Int(512),
            Int(1234),
            Text("127.0.0.1:50000"),
            Bytes(auth.encode_to_vec()),
            Bytes(Vec::new()),
            Text("5"),
            Text("catalog"),
        ]);
        let attributes = decode(&bytes);
        assert_eq!(
            attributes,
            Attributes {
                status: 200,
                bytes_in: 512,
                bytes_out: 1234,
                peer: Some("127.0.0.1:50000".into()),
                auth,
                transcode: TranscodeNote::default(),
                grpc_status: Some(5),
                upstream_cluster: Some("catalog".into()),
            }
        );
    }

    #[test]
    fn a_transcoded_request_takes_status_and_cluster_from_the_note() {
        let transcode = TranscodeNote {
            route: "/catalog/items/{id}".into(),
            grpc_status: Some(0),
            upstream_ms: Some(1.5),
            upstream_cluster: "catalog".into(),
            ..TranscodeNote::default()
        };
        let bytes = list(&[
            Int(200),
            Int(90),
            Int(300),
            Text("[::1]:4000"),
            Bytes(Vec::new()),
            Bytes(transcode.encode_to_vec()),
            Text(""),
            Text(""),
        ]);
        let attributes = decode(&bytes);
        assert_eq!(attributes.grpc_status, Some(0));
        assert_eq!(attributes.upstream_cluster.as_deref(), Some("catalog"));
        assert_eq!(attributes.transcode, transcode);
        assert_eq!(attributes.auth, AuthNote::default());
    }

    #[test]
    fn the_expression_reads_the_notes_where_the_filters_leave_them() {
        for key in [notes::AUTH, notes::TRANSCODE] {
            assert!(EXPRESSION.contains(&format!("filter_state['wasm.{key}']")));
        }
    }

    #[test]
    fn empty_values_are_absent() {
        let bytes = list(&[
            Int(401),
            Int(0),
            Int(77),
            Text(""),
            Bytes(Vec::new()),
            Bytes(Vec::new()),
            Text(""),
            Text(""),
        ]);
        let attributes = decode(&bytes);
        assert_eq!((attributes.status, attributes.bytes_out), (401, 77));
        assert_eq!(attributes.peer, None);
        assert_eq!(attributes.grpc_status, None);
        assert_eq!(attributes.upstream_cluster, None);
    }

    #[test]
    fn short_lists_and_odd_values_give_defaults_not_panics() {
        assert_eq!(decode(&[]), Attributes::default());
        assert_eq!(decode(&list(&[Int(503)])).status, 503);
        let odd = decode(&list(&[
            Int(-1),
            Text("not a number"),
            Int(1 << 40),
            Text(""),
            Bytes(vec![0xff; 9]),
            Bytes(vec![0xff; 9]),
            Text("x"),
        ]));
        assert_eq!(odd.status, 0);
        assert_eq!(odd.bytes_in, 0);
        assert_eq!(odd.bytes_out, 1 << 40);
        assert_eq!(odd.grpc_status, None);
        assert_eq!(odd.auth, AuthNote::default());
    }
}
