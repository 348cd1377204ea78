//! What a service does with the status of a call it made to another service.

use tonic::{Code, Status};

/// A call that failed below gRPC — the connection to the service broke, e.g. it crashed
/// mid-call — is UNAVAILABLE (retryable; 503 at the edge), as it is for a client that cannot
/// connect at all. Tonic reports such a failure as UNKNOWN, or as CANCELLED when hyper drops a
/// request queued on a connection that closed, in both cases with the transport error as the
/// status's source. A status the other service answered with has no source and is kept, so a
/// missing item stays NOT_FOUND all the way to the client.
pub fn unreachable_is_unavailable(status: Status) -> Status {
    let transport_failure = matches!(status.code(), Code::Unknown | Code::Cancelled)
        && std::error::Error::source(&status).is_some();
    if transport_failure {
        Status::unavailable(format!("a backend is unavailable: {}", status.message()))
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::Arc;

    fn broken_connection() -> Arc<io::Error> {
        Arc::new(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
    }

    #[test]
    fn transport_failures_become_unavailable() {
        let unknown = Status::from_error(Box::new(io::Error::other("connection closed")));
        assert_eq!(unknown.code(), Code::Unknown);
        assert_eq!(
            unreachable_is_unavailable(unknown).code(),
            Code::Unavailable
        );

        let mut cancelled = Status::cancelled("operation was canceled");
        cancelled.set_source(broken_connection());
        let mapped = unreachable_is_unavailable(cancelled);
        assert_eq!(mapped.code(), Code::Unavailable);
        assert!(mapped.message().contains("operation was canceled"));
    }

    #[test]
    fn answers_from_the_other_service_keep_their_code() {
        for status in [
            Status::not_found("no such item"),
            Status::cancelled("the other service cancelled"),
            Status::unknown("the other service did not say"),
            Status::failed_precondition("sold"),
        ] {
            let code = status.code();
            assert_eq!(unreachable_is_unavailable(status).code(), code);
        }
        let mut internal = Status::internal("h2 protocol error");
        internal.set_source(broken_connection());
        assert_eq!(unreachable_is_unavailable(internal).code(), Code::Internal);
    }
}
