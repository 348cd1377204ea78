//! A test-only Envoy dynamic module: what the native target (issue #31) will rely on in
//! Envoy 1.40's dynamic-module ABI (v0.2.0), checked against the real Envoy and catalog by
//! `tests/e2e/tests/native_probe.rs`, with `edge-native-host`'s bindings of the ABI:
//!
//! - `GET /probe/items/{id}`: a request without a body is given one in place (the gRPC
//!   `GetItem` message) and sent through Envoy's router as the gRPC call, which proxy-wasm
//!   cannot do (the transcoder collects GETs through a callout for that reason);
//! - `GET /probe/refuse`: a local reply with its own status, headers and body;
//! - `GET /probe/list`: a streaming callout (`ListItems`) whose request the module ends itself,
//!   in two pieces, answering with what came back: how a WebSocket bridge would end a client
//!   stream, which a Wasm filter cannot.
//!
//! Every hook Envoy 1.40 resolves is exported; those this probe needs nothing from do nothing.
// The ABI is C: every call into Envoy and every hook is unsafe by nature, and the hooks' safety
// contract is the ABI's (Envoy calls them with the pointers it documents), not a doc comment's.
#![allow(unsafe_code, clippy::missing_safety_doc)]

use edge_native_host::abi::{
    self, body_type, header_pairs, header_type, status, Buffer, EnvoyFilter, Header,
};
use platform_proto::catalog::{GetItemRequest, ListItemsRequest};
use prost::Message;
use std::ffi::c_void;

type ModulePointer = *const c_void;

static ABI_VERSION: &[u8] = b"v0.2.0\0";

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

/// The filter's configuration: the cluster its callout goes to (the `filter_config` text).
struct Config {
    cluster: String,
}

/// One request: what the streaming callout has brought back so far.
#[derive(Default)]
struct Stream {
    received: Vec<u8>,
    grpc_status: Option<String>,
}

fn request_header(filter: EnvoyFilter, name: &str) -> Option<String> {
    let mut value = Buffer::NULL;
    let found = unsafe {
        abi::envoy_dynamic_module_callback_http_get_header(
            filter,
            header_type::REQUEST,
            Buffer::of(name.as_bytes()),
            &mut value,
            0,
            std::ptr::null_mut(),
        )
    };
    (found && !value.ptr.is_null())
        .then(|| String::from_utf8_lossy(unsafe { value.bytes() }).into_owned())
}

fn set_request_header(filter: EnvoyFilter, name: &str, value: &str) {
    unsafe {
        abi::envoy_dynamic_module_callback_http_set_header(
            filter,
            header_type::REQUEST,
            Buffer::of(name.as_bytes()),
            Buffer::of(value.as_bytes()),
        );
    }
}

fn reply(filter: EnvoyFilter, status: u32, mut headers: Vec<Header>, body: &[u8]) {
    unsafe {
        abi::envoy_dynamic_module_callback_http_send_response(
            filter,
            status,
            headers.as_mut_ptr(),
            headers.len(),
            Buffer::of(body),
            Buffer::of(b"native_probe"),
        );
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config: EnvoyFilter,
    _name: Buffer,
    config: Buffer,
) -> ModulePointer {
    let cluster = String::from_utf8_lossy(unsafe { config.bytes() }).into_owned();
    Box::into_raw(Box::new(Config { cluster })) as ModulePointer
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ModulePointer) {
    drop(unsafe { Box::from_raw(config as *mut Config) });
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: Buffer,
    _config: Buffer,
) -> ModulePointer {
    std::ptr::null()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: ModulePointer,
) {
}

/// The per-stream pointer: the configuration (read only) and this request's stream state.
struct Filter {
    config: *const Config,
    stream: Stream,
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ModulePointer,
    _filter: EnvoyFilter,
) -> ModulePointer {
    Box::into_raw(Box::new(Filter {
        config: config as *const Config,
        stream: Stream::default(),
    })) as ModulePointer
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: ModulePointer) {
    drop(unsafe { Box::from_raw(filter as *mut Filter) });
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: EnvoyFilter,
    module: ModulePointer,
    end_of_stream: bool,
) -> u32 {
    let filter = unsafe { &mut *(module as *mut Filter) };
    let path = request_header(envoy, ":path").unwrap_or_default();
    if let Some(id) = path.strip_prefix("/probe/items/") {
        if !end_of_stream {
            return status::CONTINUE;
        }
        let frame = edge_core::grpc::frame(&[GetItemRequest { id: id.into() }.encode_to_vec()]);
        unsafe {
            abi::envoy_dynamic_module_callback_http_append_body(
                envoy,
                body_type::BUFFERED_REQUEST,
                Buffer::of(&frame),
            );
        }
        set_request_header(envoy, ":method", "POST");
        set_request_header(envoy, ":path", "/catalog.CatalogService/GetItem");
        set_request_header(envoy, "content-type", "application/grpc");
        set_request_header(envoy, "te", "trailers");
        set_request_header(envoy, "content-length", &frame.len().to_string());
        return status::CONTINUE;
    }
    if path == "/probe/refuse" {
        let body = br#"{"code":7,"message":"refused natively"}"#;
        let headers = vec![
            Header::of("content-type", "application/json"),
            Header::of("x-native-probe", "refused"),
        ];
        reply(envoy, 403, headers, body);
        return status::STOP;
    }
    if path == "/probe/list" {
        let cluster = unsafe { &(*filter.config).cluster };
        let frame = edge_core::grpc::frame(&[ListItemsRequest::default().encode_to_vec()]);
        // The message in two pieces: the first opens the stream, the second ends it.
        let (first, rest) = frame.split_at(3);
        let mut headers = vec![
            Header::of(":method", "POST"),
            Header::of(":path", "/catalog.CatalogService/ListItems"),
            Header::of("host", cluster),
            Header::of("content-type", "application/grpc"),
            Header::of("te", "trailers"),
        ];
        let mut stream = 0;
        let started = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_start_http_stream(
                envoy,
                &mut stream,
                Buffer::of(cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                Buffer::of(first),
                false,
                5000,
            )
        };
        let ended = started == 0
            && unsafe {
                abi::envoy_dynamic_module_callback_http_stream_send_data(
                    envoy,
                    stream,
                    Buffer::of(rest),
                    true,
                )
            };
        if !ended {
            let body = format!("the callout did not start or end (init result {started})");
            reply(envoy, 502, Vec::new(), body.as_bytes());
        }
        return status::STOP;
    }
    status::CONTINUE
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: EnvoyFilter,
    module: ModulePointer,
    _stream: u64,
    data: *const Buffer,
    data_count: usize,
    _end_stream: bool,
) {
    let filter = unsafe { &mut *(module as *mut Filter) };
    let chunks = unsafe { std::slice::from_raw_parts(data, data_count) };
    for chunk in chunks {
        filter
            .stream
            .received
            .extend_from_slice(unsafe { chunk.bytes() });
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: EnvoyFilter,
    module: ModulePointer,
    _stream: u64,
    trailers: *const Header,
    trailers_size: usize,
) {
    let filter = unsafe { &mut *(module as *mut Filter) };
    for (key, value) in unsafe { header_pairs(trailers, trailers_size) } {
        if key == "grpc-status" {
            filter.stream.grpc_status = Some(value);
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    envoy: EnvoyFilter,
    module: ModulePointer,
    _stream: u64,
) {
    let filter = unsafe { &*(module as *const Filter) };
    let status = filter.stream.grpc_status.clone().unwrap_or_default();
    let headers = vec![
        Header::of("content-type", "application/grpc"),
        Header::of("x-grpc-status", &status),
    ];
    reply(envoy, 200, headers, &filter.stream.received);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    envoy: EnvoyFilter,
    _module: ModulePointer,
    _stream: u64,
    reason: u32,
) {
    let body = format!("the callout was reset (reason {reason})");
    reply(envoy, 502, Vec::new(), body.as_bytes());
}

// The hooks this probe needs nothing from.

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
    _end_of_stream: bool,
) -> u32 {
    status::CONTINUE
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
) -> u32 {
    status::CONTINUE
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
    _end_of_stream: bool,
) -> u32 {
    status::CONTINUE
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
    _end_of_stream: bool,
) -> u32 {
    status::CONTINUE
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
) -> u32 {
    status::CONTINUE
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
) {
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
    _callout: u64,
    _result: u32,
    _headers: *const Header,
    _headers_size: usize,
    _body: *const Buffer,
    _body_size: usize,
) {
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
    _stream: u64,
    _headers: *const Header,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
    _event: u64,
) {
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
) {
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: EnvoyFilter,
    _module: ModulePointer,
) {
}
