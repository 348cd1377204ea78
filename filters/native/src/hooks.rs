//! The C entry points Envoy 1.40 resolves in an HTTP-filter module, handed to the filter
//! configuration or the stream filter they are for. Envoy owns nothing here: a configuration
//! lives from `config_new` to `config_destroy`, a filter from `filter_new` to
//! `filter_destroy`, each a boxed trait object behind the pointer Envoy keeps.
// Every hook is called by Envoy with the pointers its ABI documents; that is their safety
// contract, not a doc comment's.
#![allow(unsafe_code, clippy::missing_safety_doc)]

use crate::{configure, FilterConfig, StreamFilter};
use edge_core::host::Level;
use edge_native_host::abi::{header_pairs, Buffer, EnvoyConfig, EnvoyFilter, Header};
use edge_native_host::{log, CallPart};
use std::ffi::c_void;

type Config = Box<dyn FilterConfig>;
type Filter = Box<dyn StreamFilter>;

static ABI_VERSION: &[u8] = b"v0.2.0\0";

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

/// # Safety
/// `pointer` is a configuration this module made and Envoy has not destroyed.
unsafe fn config<'a>(pointer: *const c_void) -> &'a Config {
    unsafe { &*(pointer as *const Config) }
}

/// # Safety
/// `pointer` is a filter this module made and Envoy has not destroyed; Envoy calls one hook
/// of a filter at a time, on its worker.
unsafe fn filter<'a>(pointer: *mut c_void) -> &'a mut Filter {
    unsafe { &mut *(pointer as *mut Filter) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: EnvoyConfig,
    name: Buffer,
    config: Buffer,
) -> *const c_void {
    let name = String::from_utf8_lossy(unsafe { name.bytes() }).into_owned();
    match configure(envoy, &name, unsafe { config.bytes() }) {
        Ok(config) => Box::into_raw(Box::new(config)) as *const c_void,
        Err(error) => {
            log(Level::Error, &error);
            std::ptr::null()
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *mut c_void) {
    drop(unsafe { Box::from_raw(config as *mut Config) });
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: Buffer,
    _config: Buffer,
) -> *const c_void {
    // No filter here takes a per-route configuration: refuse one rather than ignore it.
    log(
        Level::Error,
        "the edge filters take no per-route configuration",
    );
    std::ptr::null()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *mut c_void,
) {
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_pointer: *const c_void,
    envoy: EnvoyFilter,
) -> *mut c_void {
    let filter = unsafe { config(config_pointer) }.new_filter(envoy);
    Box::into_raw(Box::new(filter)) as *mut c_void
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: *mut c_void) {
    drop(unsafe { Box::from_raw(module as *mut Filter) });
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _envoy: EnvoyFilter,
    module: *mut c_void,
    end_of_stream: bool,
) -> u32 {
    unsafe { filter(module) }.request_headers(end_of_stream)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: EnvoyFilter,
    module: *mut c_void,
    end_of_stream: bool,
) -> u32 {
    unsafe { filter(module) }.request_body(end_of_stream)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: EnvoyFilter,
    _module: *mut c_void,
) -> u32 {
    0
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _envoy: EnvoyFilter,
    module: *mut c_void,
    end_of_stream: bool,
) -> u32 {
    unsafe { filter(module) }.response_headers(end_of_stream)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: EnvoyFilter,
    module: *mut c_void,
    end_of_stream: bool,
) -> u32 {
    unsafe { filter(module) }.response_body(end_of_stream)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: EnvoyFilter,
    module: *mut c_void,
) -> u32 {
    unsafe { filter(module) }.response_trailers()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: EnvoyFilter,
    module: *mut c_void,
) {
    unsafe { filter(module) }.complete();
}

/// # Safety
/// `data` points at `count` buffers valid during the hook (or is null).
unsafe fn chunks<'a>(data: *const Buffer, count: usize) -> Vec<&'a [u8]> {
    if data.is_null() {
        return Vec::new();
    }
    unsafe { std::slice::from_raw_parts(data, count) }
        .iter()
        .map(|chunk| unsafe { chunk.bytes() })
        .collect()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: EnvoyFilter,
    module: *mut c_void,
    stream: u64,
    headers: *const Header,
    headers_size: usize,
    end_stream: bool,
) {
    let headers = unsafe { header_pairs(headers, headers_size) };
    unsafe { filter(module) }.call(stream, CallPart::Headers(headers, end_stream));
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: EnvoyFilter,
    module: *mut c_void,
    stream: u64,
    data: *const Buffer,
    data_count: usize,
    _end_stream: bool,
) {
    let chunks = unsafe { chunks(data, data_count) };
    unsafe { filter(module) }.call(stream, CallPart::Data(chunks));
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: EnvoyFilter,
    module: *mut c_void,
    stream: u64,
    trailers: *const Header,
    trailers_size: usize,
) {
    let trailers = unsafe { header_pairs(trailers, trailers_size) };
    unsafe { filter(module) }.call(stream, CallPart::Trailers(trailers));
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: EnvoyFilter,
    module: *mut c_void,
    stream: u64,
) {
    unsafe { filter(module) }.call(stream, CallPart::Complete);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: EnvoyFilter,
    module: *mut c_void,
    stream: u64,
    _reason: u32,
) {
    unsafe { filter(module) }.call(stream, CallPart::Reset);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _envoy: EnvoyConfig,
    config_pointer: *const c_void,
    event: u64,
) {
    unsafe { config(config_pointer) }.scheduled(event);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _envoy: EnvoyConfig,
    config_pointer: *const c_void,
    stream: u64,
    headers: *const Header,
    headers_size: usize,
    end_stream: bool,
) {
    let headers = unsafe { header_pairs(headers, headers_size) };
    unsafe { config(config_pointer) }.call(stream, CallPart::Headers(headers, end_stream));
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _envoy: EnvoyConfig,
    config_pointer: *const c_void,
    stream: u64,
    data: *const Buffer,
    data_count: usize,
    _end_stream: bool,
) {
    let chunks = unsafe { chunks(data, data_count) };
    unsafe { config(config_pointer) }.call(stream, CallPart::Data(chunks));
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _envoy: EnvoyConfig,
    config_pointer: *const c_void,
    stream: u64,
    trailers: *const Header,
    trailers_size: usize,
) {
    let trailers = unsafe { header_pairs(trailers, trailers_size) };
    unsafe { config(config_pointer) }.call(stream, CallPart::Trailers(trailers));
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _envoy: EnvoyConfig,
    config_pointer: *const c_void,
    stream: u64,
) {
    unsafe { config(config_pointer) }.call(stream, CallPart::Complete);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _envoy: EnvoyConfig,
    config_pointer: *const c_void,
    stream: u64,
    _reason: u32,
) {
    unsafe { config(config_pointer) }.call(stream, CallPart::Reset);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: EnvoyFilter,
    module: *mut c_void,
) {
    unsafe { filter(module) }.client_slow();
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: EnvoyFilter,
    module: *mut c_void,
) {
    unsafe { filter(module) }.client_ready();
}

// Hooks Envoy resolves that no filter here needs: one-shot callouts (calls go out as streams,
// to read gRPC trailers), per-stream scheduling, and one-shot config callouts.

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: EnvoyFilter,
    _module: *mut c_void,
    _callout: u64,
    _result: u32,
    _headers: *const Header,
    _headers_size: usize,
    _body: *const Buffer,
    _body_size: usize,
) {
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _envoy: EnvoyConfig,
    _config: *const c_void,
    _callout: u64,
    _result: u32,
    _headers: *const Header,
    _headers_size: usize,
    _body: *const Buffer,
    _body_size: usize,
) {
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: EnvoyFilter,
    _module: *mut c_void,
    _event: u64,
) {
}
