//! The part of Envoy's dynamic-module ABI (v0.2.0, Envoy 1.40) the edge filters call, written
//! from the ABI's C header (`source/extensions/dynamic_modules/abi/abi.h`): the upstream Rust SDK
//! is not published, so these few declarations are ours. Names keep the header's, minus the
//! `envoy_dynamic_module_callback_` prefix on the Rust side.
//!
//! Lifetimes: a buffer Envoy hands back is valid until the hook returns or a setter is called;
//! every wrapper here copies before returning.

use std::ffi::c_void;

/// Envoy's per-stream filter object (`http_filter_envoy_ptr`).
pub type EnvoyFilter = *mut c_void;
/// Envoy's filter-configuration object (`http_filter_config_envoy_ptr`).
pub type EnvoyConfig = *mut c_void;

/// `envoy_dynamic_module_type_envoy_buffer` and `module_buffer`: bytes and their length.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl Buffer {
    pub const NULL: Buffer = Buffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    pub fn of(bytes: &[u8]) -> Self {
        Buffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// # Safety
    /// `self` must point at `length` readable bytes (Envoy's, valid during the hook).
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
        }
    }
}

/// `envoy_dynamic_module_type_module_http_header` and `envoy_http_header` (same layout).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl Header {
    pub fn of(key: &str, value: &str) -> Self {
        Header {
            key_ptr: key.as_ptr(),
            key_length: key.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }
    }

    /// The name's and the value's bytes.
    ///
    /// # Safety
    /// Both halves must point at readable bytes (Envoy's, valid during the hook).
    pub unsafe fn halves<'a>(&self) -> (&'a [u8], &'a [u8]) {
        let half = |ptr, length| unsafe { Buffer { ptr, length }.bytes() };
        (
            half(self.key_ptr, self.key_length),
            half(self.value_ptr, self.value_length),
        )
    }

    /// # Safety
    /// Both halves must point at readable bytes (Envoy's, valid during the hook).
    pub unsafe fn pair(&self) -> (String, String) {
        let (key, value) = unsafe { self.halves() };
        (
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        )
    }
}

/// Copies an array of Envoy's headers.
///
/// # Safety
/// `headers` must point at `size` headers valid during the hook (or be null).
pub unsafe fn header_pairs(headers: *const Header, size: usize) -> Vec<(String, String)> {
    if headers.is_null() || size == 0 {
        return Vec::new();
    }
    unsafe { std::slice::from_raw_parts(headers, size) }
        .iter()
        .map(|header| unsafe { header.pair() })
        .collect()
}

/// `envoy_dynamic_module_type_http_header_type`.
pub mod header_type {
    pub const REQUEST: u32 = 0;
    pub const RESPONSE: u32 = 2;
    pub const RESPONSE_TRAILER: u32 = 3;
}

/// `envoy_dynamic_module_type_http_body_type`.
pub mod body_type {
    pub const RECEIVED_REQUEST: u32 = 0;
    pub const BUFFERED_REQUEST: u32 = 1;
    pub const RECEIVED_RESPONSE: u32 = 2;
    pub const BUFFERED_RESPONSE: u32 = 3;
}

/// `envoy_dynamic_module_type_log_level`.
pub mod log_level {
    pub const DEBUG: u32 = 1;
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
}

/// `envoy_dynamic_module_type_attribute_id`, the ones read here.
pub mod attribute {
    pub const REQUEST_PATH: u32 = 0;
    pub const REQUEST_HOST: u32 = 2;
    pub const REQUEST_METHOD: u32 = 4;
    pub const REQUEST_TIME: u32 = 8;
    pub const REQUEST_ID: u32 = 9;
    pub const REQUEST_PROTOCOL: u32 = 10;
    pub const REQUEST_DURATION: u32 = 12;
    pub const REQUEST_TOTAL_SIZE: u32 = 14;
    pub const RESPONSE_CODE: u32 = 15;
    pub const RESPONSE_CODE_DETAILS: u32 = 16;
    pub const RESPONSE_FLAGS: u32 = 17;
    pub const RESPONSE_GRPC_STATUS: u32 = 18;
    pub const RESPONSE_TOTAL_SIZE: u32 = 22;
    pub const SOURCE_ADDRESS: u32 = 24;
    pub const UPSTREAM_ADDRESS: u32 = 41;
    pub const XDS_CLUSTER_NAME: u32 = 57;
    pub const XDS_ROUTE_NAME: u32 = 61;
}

/// What a hook answers (`on_http_filter_*_status`): the same numbers for headers, body and
/// trailers where they mean the same.
pub mod status {
    pub const CONTINUE: u32 = 0;
    /// Headers and trailers: stop; body: stop and buffer.
    pub const STOP: u32 = 1;
    /// Body only: stop without buffering (the filter holds what it needs).
    pub const STOP_NO_BUFFER: u32 = 3;
}

unsafe extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: Buffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: EnvoyFilter,
        header_type: u32,
        key: Buffer,
        result: *mut Buffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: EnvoyFilter,
        header_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: EnvoyFilter,
        header_type: u32,
        result: *mut Header,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: EnvoyFilter,
        header_type: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    /// A null `value` removes the header.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: EnvoyFilter,
        header_type: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: EnvoyFilter,
        status_code: u32,
        headers: *mut Header,
        headers_size: usize,
        body: Buffer,
        details: Buffer,
    );

    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: EnvoyFilter,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: EnvoyFilter,
        body_type: u32,
    ) -> usize;
    /// Starts a response of the filter's own (`:status` among `headers`), to be followed by
    /// [`envoy_dynamic_module_callback_http_send_response_data`] unless `end_stream`.
    pub fn envoy_dynamic_module_callback_http_send_response_headers(
        filter: EnvoyFilter,
        headers: *mut Header,
        headers_size: usize,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_http_send_response_data(
        filter: EnvoyFilter,
        data: Buffer,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: EnvoyFilter,
        body_type: u32,
        result: *mut Buffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: EnvoyFilter,
        body_type: u32,
        data: Buffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: EnvoyFilter,
        body_type: u32,
        number_of_bytes: usize,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: EnvoyFilter,
        attribute_id: u32,
        result: *mut Buffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: EnvoyFilter,
        attribute_id: u32,
        result: *mut u64,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter: EnvoyFilter,
        namespace: Buffer,
        key: Buffer,
        value: Buffer,
    );
    /// A string (`Router::StringAccessorImpl`) in the stream's filter state; `false` without
    /// a stream.
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: EnvoyFilter,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    /// `source` 0: the stream's dynamic metadata.
    pub fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: EnvoyFilter,
        source: u32,
        namespace: Buffer,
        key: Buffer,
        result: *mut Buffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: EnvoyConfig,
        name: Buffer,
        label_names: *mut Buffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: EnvoyConfig,
        name: Buffer,
        label_names: *mut Buffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: EnvoyConfig,
        name: Buffer,
        label_names: *mut Buffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: EnvoyFilter,
        id: usize,
        label_values: *mut Buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: EnvoyFilter,
        id: usize,
        label_values: *mut Buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: EnvoyConfig,
        id: usize,
        label_values: *mut Buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: EnvoyConfig,
        id: usize,
        label_values: *mut Buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        config: EnvoyConfig,
        id: usize,
        label_values: *mut Buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_filter_start_http_stream(
        filter: EnvoyFilter,
        stream_id: *mut u64,
        cluster: Buffer,
        headers: *mut Header,
        headers_size: usize,
        body: Buffer,
        end_stream: bool,
        timeout_milliseconds: u64,
    ) -> u32;
    /// Sends more of a stream callout's request (`end_stream`: its last).
    pub fn envoy_dynamic_module_callback_http_stream_send_data(
        filter: EnvoyFilter,
        stream_id: u64,
        data: Buffer,
        end_stream: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_reset_http_stream(
        filter: EnvoyFilter,
        stream_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_start_http_stream(
        config: EnvoyConfig,
        stream_id: *mut u64,
        cluster: Buffer,
        headers: *mut Header,
        headers_size: usize,
        body: Buffer,
        end_stream: bool,
        timeout_milliseconds: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_reset_http_stream(
        config: EnvoyConfig,
        stream_id: u64,
    );

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: EnvoyConfig,
    ) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: *mut c_void,
    );

    /// `reason` 0: a local reset.
    pub fn envoy_dynamic_module_callback_http_filter_reset_stream(
        filter: EnvoyFilter,
        reason: u32,
        details: Buffer,
    );
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: EnvoyFilter);
    pub fn envoy_dynamic_module_callback_http_filter_continue_encoding(filter: EnvoyFilter);
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: EnvoyFilter);
    pub fn envoy_dynamic_module_callback_http_set_buffer_limit(filter: EnvoyFilter, limit: u64);
}
