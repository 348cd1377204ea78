//! gRPC status codes, the HTTP status each maps to (grpc-gateway v2's table, which Envoy's
//! native transcoder also follows), the `google.rpc.Status` JSON body clients get, and the
//! `grpc-timeout` a call's deadline travels in.

use std::time::Duration;

/// The canonical gRPC status codes (`google.rpc.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code for a number received on the wire; numbers outside the canonical range are
    /// `Unknown`, as the gRPC spec asks clients to treat them.
    pub fn from_number(number: u32) -> Self {
        use GrpcCode::*;
        match number {
            0 => Ok,
            1 => Cancelled,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            _ => Unknown,
        }
    }

    pub fn number(self) -> u32 {
        self as u32
    }

    /// The code a gRPC client reads from an HTTP answer that is not gRPC (gRPC's
    /// http-grpc-status-mapping, as Envoy's `httpToGrpcStatus`), except 504: the router's own
    /// timeout, kept a deadline so that it reads back as 504.
    pub fn from_http_status(http_status: u16) -> Self {
        use GrpcCode::*;
        match http_status {
            400 => Internal,
            401 => Unauthenticated,
            403 => PermissionDenied,
            404 => Unimplemented,
            504 => DeadlineExceeded,
            429 | 502 | 503 => Unavailable,
            _ => Unknown,
        }
    }

    /// The HTTP status for this code (grpc-gateway v2 `HTTPStatusFromCode`).
    pub fn http_status(self) -> u16 {
        use GrpcCode::*;
        match self {
            Ok => 200,
            Cancelled => 499,
            Unknown | Internal | DataLoss => 500,
            InvalidArgument | FailedPrecondition | OutOfRange => 400,
            DeadlineExceeded => 504,
            NotFound => 404,
            AlreadyExists | Aborted => 409,
            PermissionDenied => 403,
            ResourceExhausted => 429,
            Unimplemented => 501,
            Unavailable => 503,
            Unauthenticated => 401,
        }
    }
}

/// An error as clients see it: `{"code": <gRPC code>, "message": "..."}`, the JSON shape of
/// `google.rpc.Status` that grpc-gateway and Envoy's transcoder return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: GrpcCode,
    pub message: String,
    /// `google.protobuf.Any` details already in their JSON form (`{"@type": …, …}`).
    pub details: Vec<serde_json::Value>,
}

impl Status {
    pub fn new(code: GrpcCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Vec<serde_json::Value>) -> Self {
        self.details = details;
        self
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// The code and the message's first 256 bytes, without details: where room is short.
    pub fn compact(&self) -> Self {
        let mut end = self.message.len().min(256);
        while !self.message.is_char_boundary(end) {
            end -= 1;
        }
        Self::new(self.code, &self.message[..end])
    }

    /// The response body. serde_json escapes the message, so nothing a backend or client put
    /// in it can break the JSON.
    pub fn to_json(&self) -> String {
        /// Borrows the status: building a `serde_json::Value` copied every detail.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            code: u32,
            message: &'a str,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            details: &'a [serde_json::Value],
        }
        let body = Body {
            code: self.code.number(),
            message: &self.message,
            details: &self.details,
        };
        // Strings, numbers and JSON values always serialize; the fallback is never taken.
        serde_json::to_string(&body).unwrap_or_else(|_| format!("{{\"code\":{}}}", body.code))
    }
}

/// `grpc-timeout` (`1..=8` digits and a unit: H, M, S, m, u, n), per the gRPC HTTP/2 spec.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let value = value.trim();
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount.checked_mul(3600)?),
        'M' => Duration::from_secs(amount.checked_mul(60)?),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_code_round_trips_through_its_number() {
        for number in 0..=16 {
            assert_eq!(GrpcCode::from_number(number).number(), number);
        }
        assert_eq!(GrpcCode::from_number(17), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_number(u32::MAX), GrpcCode::Unknown);
    }

    #[test]
    fn http_status_follows_grpc_gateway_table() {
        let table = [
            (0, 200),
            (1, 499),
            (2, 500),
            (3, 400),
            (4, 504),
            (5, 404),
            (6, 409),
            (7, 403),
            (8, 429),
            (9, 400),
            (10, 409),
            (11, 400),
            (12, 501),
            (13, 500),
            (14, 503),
            (15, 500),
            (16, 401),
        ];
        for (code, http) in table {
            assert_eq!(
                GrpcCode::from_number(code).http_status(),
                http,
                "code {code}"
            );
        }
    }

    #[test]
    fn body_is_google_rpc_status_json_with_escaping() {
        let status = Status::new(GrpcCode::NotFound, "item \"42\"\nnot found");
        let parsed: serde_json::Value = serde_json::from_str(&status.to_json()).unwrap();
        assert_eq!(
            parsed,
            json!({"code": 5, "message": "item \"42\"\nnot found"})
        );
        assert_eq!(status.http_status(), 404);
    }

    #[test]
    fn details_appear_only_when_present() {
        let detail = json!({"@type": "type.googleapis.com/x.Info", "reason": "r"});
        let status = Status::new(GrpcCode::Aborted, "m").with_details(vec![detail.clone()]);
        let parsed: serde_json::Value = serde_json::from_str(&status.to_json()).unwrap();
        assert_eq!(
            parsed,
            json!({"code": 10, "message": "m", "details": [detail]})
        );
    }
}
