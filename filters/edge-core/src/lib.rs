//! Pure logic shared by the edge filters. Nothing here touches proxy-wasm, so all of it is
//! unit-tested on the host.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod status;

pub use status::{GrpcCode, Status};

/// Metadata/header carrying the verified subject from the auth filter to the backends.
/// Clients can never set it: the auth filter removes any client-sent copy on every request.
pub const USER_ID_HEADER: &str = "x-user-id";
