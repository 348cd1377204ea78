//! The access log and auth as one Envoy filter (`access-log+auth`), as every chain edgectl
//! renders for this build runs them: side by side in every chain, so one filter Envoy creates
//! per stream serves both, and auth takes the headers the access log read (with the
//! `traceparent` it added) instead of copying Envoy's map again — nothing runs between them.
//! Measured on a refused request: 7k fewer instructions, 4% of Envoy's work on it.

use crate::access_log::{self, AccessLog};
use crate::auth::{self, AuthFilter};
use crate::{FilterConfig, StreamFilter};
use edge_native_host::abi::{status, EnvoyConfig, EnvoyFilter};
use edge_native_host::CallPart;
use serde_json::{Map, Value};

pub(crate) const NAME: &str = "access-log+auth";

pub(crate) struct Config {
    access_log: access_log::Config,
    auth: auth::Config,
}

/// `{"access-log": …, "auth": …}`: each filter's own configuration.
pub(crate) fn configure(envoy: EnvoyConfig, config: &[u8]) -> Result<Config, String> {
    let (access_log, auth) = parts(config)?;
    Ok(Config {
        access_log: access_log::configure(envoy, access_log.as_bytes())?,
        auth: auth::configure(envoy, auth.as_bytes())?,
    })
}

/// The access log's and auth's configurations, as JSON, from the pair's.
fn parts(config: &[u8]) -> Result<(String, String), String> {
    let parts: Map<String, Value> =
        serde_json::from_slice(config).map_err(|e| format!("invalid {NAME} configuration: {e}"))?;
    if let Some(unknown) = parts
        .keys()
        .find(|name| ![access_log::NAME, auth::NAME].contains(&name.as_str()))
    {
        return Err(format!(
            "invalid {NAME} configuration: unknown part {unknown:?}"
        ));
    }
    let part = |name: &str| {
        parts
            .get(name)
            .map(Value::to_string)
            .ok_or_else(|| format!("invalid {NAME} configuration: no {name:?} configuration"))
    };
    Ok((part(access_log::NAME)?, part(auth::NAME)?))
}

impl FilterConfig for Config {
    fn new_filter(&self, envoy: EnvoyFilter) -> Box<dyn StreamFilter> {
        // The access log first: it opens the stream's notes, which auth joins.
        let access_log = self.access_log.filter(envoy);
        let auth = self.auth.filter(envoy);
        Box::new(Pair { access_log, auth })
    }

    fn scheduled(&self, event: u64) {
        match event {
            access_log::TICK_EVENT => self.access_log.scheduled(event),
            auth::TICK_EVENT => self.auth.scheduled(event),
            _ => {}
        }
    }

    fn call(&self, stream: u64, part: CallPart<'_>) {
        self.access_log.call(stream, part.clone());
        self.auth.call(stream, part);
    }
}

/// Requests go through the access log, then auth; responses through auth, then the access
/// log, as through two Envoy filters.
struct Pair {
    access_log: AccessLog,
    auth: AuthFilter,
}

impl StreamFilter for Pair {
    fn request_headers(&mut self, end_of_stream: bool) -> u32 {
        let logged = self.access_log.request_headers(end_of_stream);
        if logged != status::CONTINUE {
            return logged;
        }
        if let Some(arrival) = &self.access_log.arrival {
            self.auth
                .host
                .lend_request_headers(arrival.forwarded_headers());
        }
        self.auth.request_headers(end_of_stream)
    }
    fn request_body(&mut self, end_of_stream: bool) -> u32 {
        match self.access_log.request_body(end_of_stream) {
            status::CONTINUE => self.auth.request_body(end_of_stream),
            stopped => stopped,
        }
    }
    fn response_headers(&mut self, end_of_stream: bool) -> u32 {
        match self.auth.response_headers(end_of_stream) {
            status::CONTINUE => self.access_log.response_headers(end_of_stream),
            stopped => stopped,
        }
    }
    fn response_body(&mut self, end_of_stream: bool) -> u32 {
        match self.auth.response_body(end_of_stream) {
            status::CONTINUE => self.access_log.response_body(end_of_stream),
            stopped => stopped,
        }
    }
    fn response_trailers(&mut self) -> u32 {
        match self.auth.response_trailers() {
            status::CONTINUE => self.access_log.response_trailers(),
            stopped => stopped,
        }
    }
    fn complete(&mut self) {
        self.auth.complete();
        self.access_log.complete();
    }
    fn call(&mut self, stream: u64, part: CallPart<'_>) {
        self.auth.call(stream, part.clone());
        self.access_log.call(stream, part);
    }
    fn client_slow(&mut self) {
        self.auth.client_slow();
        self.access_log.client_slow();
    }
    fn client_ready(&mut self) {
        self.auth.client_ready();
        self.access_log.client_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_part_goes_to_its_filter_and_anything_else_is_refused() {
        assert_eq!(
            parts(br#"{"access-log": {"include_query": true}, "auth": {"rules": []}}"#),
            Ok((
                r#"{"include_query":true}"#.to_string(),
                r#"{"rules":[]}"#.to_string()
            ))
        );
        assert_eq!(
            parts(br#"{"access-log": {}}"#),
            Err(r#"invalid access-log+auth configuration: no "auth" configuration"#.to_string())
        );
        assert_eq!(
            parts(br#"{"access-log": {}, "auth": {}, "transcoder": {}}"#),
            Err(r#"invalid access-log+auth configuration: unknown part "transcoder""#.to_string())
        );
        assert!(parts(b"[]").is_err());
    }
}
