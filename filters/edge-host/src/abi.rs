//! Raw proxy-wasm ABI 0.2.1 imports for the calls made on request paths, returning every host
//! status to the caller instead of panicking as the SDK's `hostcalls` do. Memory the host hands
//! back was allocated through the SDK's exported `proxy_on_memory_allocate`, exactly as the SDK
//! itself reclaims it.
#![allow(unsafe_code)]

pub use edge_core::host::HostError;
use edge_core::Headers;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::ptr::null_mut;

const OK: u32 = 0;
pub(crate) const NOT_FOUND: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: LogLevel, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: MetricType,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_grpc_send(
        token: u32,
        message_data: *const u8,
        message_size: usize,
        end_stream: u32,
    ) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_get_status(
        return_code: *mut u32,
        return_message_data: *mut *mut u8,
        return_message_size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
}

/// `proxy_close_stream` stream type of the HTTP request.
const STREAM_HTTP_REQUEST: u32 = 0;
const STREAM_HTTP_RESPONSE: u32 = 1;

fn check(status: u32) -> Result<(), HostError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// Takes ownership of a host-allocated buffer.
fn take_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host allocated `size` bytes through `proxy_on_memory_allocate` (a boxed slice
    // of exactly that length) and gave up ownership by returning the pointer.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Calls a host function that returns an owned buffer through out-pointers; `NotFound` is `None`.
fn fetch(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        OK => Ok(Some(take_buffer(data, size))),
        NOT_FOUND => Ok(None),
        status => Err(HostError(status)),
    }
}

pub fn log(level: LogLevel, message: &str) -> Result<(), HostError> {
    // SAFETY: pointer and length describe a live &str for the duration of the call.
    check(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

pub fn get_header(map: MapType, key: &str) -> Result<Option<String>, HostError> {
    let value = fetch(|data, size| {
        // SAFETY: key is live for the call; out-pointers point to locals owned by `fetch`.
        unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), data, size) }
    })?;
    Ok(value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn get_header_map(map: MapType) -> Result<Headers, HostError> {
    let bytes = fetch(|data, size| {
        // SAFETY: out-pointers point to locals owned by `fetch`.
        unsafe { proxy_get_header_map_pairs(map, data, size) }
    })?
    .unwrap_or_default();
    crate::map::headers(bytes).ok_or(HostError(3))
}

pub fn replace_header(map: MapType, key: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: key and value are live for the call.
    check(unsafe {
        proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
}

pub fn add_header(map: MapType, key: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: key and value are live for the call.
    check(unsafe {
        proxy_add_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_header(map: MapType, key: &str) -> Result<(), HostError> {
    // SAFETY: key is live for the call.
    check(unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) })
}

pub fn get_buffer(
    buffer: BufferType,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, HostError> {
    fetch(|data, size| {
        // SAFETY: out-pointers point to locals owned by `fetch`.
        unsafe { proxy_get_buffer_bytes(buffer, start, max_size, data, size) }
    })
}

pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let path = path.join("\0");
    fetch(|data, size| {
        // SAFETY: path is live for the call; out-pointers point to locals owned by `fetch`.
        unsafe { proxy_get_property(path.as_ptr(), path.len(), data, size) }
    })
}

/// A shared-data value and its CAS token; `None` when the key was never set.
pub fn get_shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    let mut cas: u32 = 0;
    let value = fetch(|data, size| {
        // SAFETY: key is live for the call; out-pointers point to locals.
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), data, size, &mut cas) }
    })?;
    Ok(value.map(|value| (value, cas)))
}

/// Sets a shared-data value if its CAS token is still `cas` (0: unconditionally); a
/// concurrent writer makes it fail with `CasMismatch` (8).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
    // SAFETY: key and value are live for the call.
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), HostError> {
    let path = path.join("\0");
    // SAFETY: path and value are live for the call.
    check(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// `details` becomes the stream's response-code details (ours have no whitespace, as Envoy's
/// own never do).
pub fn send_local_response(
    status_code: u32,
    details: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    grpc_status: Option<u32>,
) -> Result<(), HostError> {
    let headers = serialize_pairs(headers);
    // SAFETY: details, body and the serialized headers are live for the call.
    check(unsafe {
        proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status.map_or(-1, |code| code as i32),
        )
    })
}

pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    fetch(|data, size| {
        // SAFETY: name and arguments are live for the call; out-pointers owned by `fetch`.
        unsafe {
            proxy_call_foreign_function(
                name.as_ptr(),
                name.len(),
                arguments.as_ptr(),
                arguments.len(),
                data,
                size,
            )
        }
    })
}

pub fn define_metric(metric_type: MetricType, name: &str) -> Result<u32, HostError> {
    let mut id = 0;
    // SAFETY: name is live for the call; id is a local the host writes to.
    check(unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), HostError> {
    // SAFETY: no pointers involved.
    check(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    // SAFETY: no pointers involved.
    check(unsafe { proxy_record_metric(id, value) })
}

pub fn grpc_send(token: u32, message: &[u8], end_stream: bool) -> Result<(), HostError> {
    // SAFETY: message is live for the call.
    check(unsafe {
        proxy_grpc_send(
            token,
            message.as_ptr(),
            message.len(),
            u32::from(end_stream),
        )
    })
}

pub fn grpc_close(token: u32) -> Result<(), HostError> {
    // SAFETY: no pointers involved.
    check(unsafe { proxy_grpc_close(token) })
}

pub fn grpc_cancel(token: u32) -> Result<(), HostError> {
    // SAFETY: no pointers involved.
    check(unsafe { proxy_grpc_cancel(token) })
}

/// The status code and message of the gRPC call or stream being closed.
pub fn grpc_status() -> Result<(u32, String), HostError> {
    let mut code = 0;
    let message = fetch(|data, size| {
        // SAFETY: out-pointers point to locals owned by `fetch` and this frame.
        unsafe { proxy_get_status(&mut code, data, size) }
    })?
    .unwrap_or_default();
    Ok((code, String::from_utf8_lossy(&message).into_owned()))
}

/// Envoy's clock (wall time since the Unix epoch, in nanoseconds).
pub fn current_time_nanos() -> Result<u64, HostError> {
    let mut nanos = 0;
    // SAFETY: the out-pointer points to a local of this frame.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(nanos)
}

pub fn set_tick_period_millis(period: u32) -> Result<(), HostError> {
    // SAFETY: no pointers involved.
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

/// Replaces `size` bytes from `start` of a body buffer with `data`; a `start` past its end
/// appends (Envoy's `Buffer::copyFrom`).
pub fn set_buffer(
    buffer: BufferType,
    start: usize,
    size: usize,
    data: &[u8],
) -> Result<(), HostError> {
    // SAFETY: data is live for the call.
    check(unsafe { proxy_set_buffer_bytes(buffer, start, size, data.as_ptr(), data.len()) })
}

/// Makes `context_id` the context the next calls act for (from a root context's timer).
pub fn set_effective_context(context_id: u32) -> Result<(), HostError> {
    // SAFETY: no pointers involved.
    check(unsafe { proxy_set_effective_context(context_id) })
}

pub fn continue_http_response() -> Result<(), HostError> {
    // SAFETY: no pointers involved.
    check(unsafe { proxy_continue_stream(STREAM_HTTP_RESPONSE) })
}

pub fn reset_http_request() -> Result<(), HostError> {
    // SAFETY: no pointers involved.
    check(unsafe { proxy_close_stream(STREAM_HTTP_REQUEST) })
}

/// The proxy-wasm map encoding: count, then (key length, value length) pairs, then each key
/// and value followed by a NUL.
fn serialize_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 10)
            .sum::<usize>(),
    );
    bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        bytes.extend_from_slice(key.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// The SDK's callout functions take the `upstream` as a `&str` but only pass its pointer and
/// length to the host, and a serialized `GrpcService` is not UTF-8 once a length needs two
/// varint bytes. The SDK's dispatcher must record the callout's token, so the call has to go
/// through it rather than through a raw import.
pub(crate) fn upstream_str(bytes: &[u8]) -> &str {
    // SAFETY: a non-UTF-8 `str` is not immediate undefined behaviour (std's `str` docs); it only
    // reaches `hostcalls::dispatch_grpc_call` / `open_grpc_stream` (proxy-wasm 0.2.5), which read
    // nothing but `as_ptr()` and `len()`, and is dropped when the call returns.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_through_the_map_encoding() {
        let pairs = [("content-type", "application/json"), ("x-empty", "")];
        let headers = crate::map::headers(serialize_pairs(&pairs)).unwrap();
        assert_eq!(headers.get("content-type"), Some("application/json"));
        assert_eq!(headers.get("x-empty"), Some(""));
    }
}
