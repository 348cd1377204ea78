//! Shipping a worker's buffered lines to the collector (`telemetry.LogCollector/Ship`), for
//! any host: at most one batch in flight; a failed batch is dropped and counted, not retried,
//! so that memory stays bounded while the collector is down.

use crate::metrics::{DROPPED_LINES, SHIPPED_LINES};
use crate::{CollectorConfig, LineBuffer, LogBatch};
use edge_core::host::{GrpcRequest, Host, Level};
use prost::Message;
use std::time::Duration;

/// The batch in flight, if any.
#[derive(Debug, Default)]
pub struct Shipping {
    /// The call's token and how many lines it carries.
    in_flight: Option<(u32, usize)>,
}

impl Shipping {
    /// Sends the oldest lines as one batch, unless a batch is still in flight.
    pub fn flush<H: Host>(
        &mut self,
        host: &H,
        collector: &CollectorConfig,
        buffer: &mut LineBuffer,
    ) {
        if self.in_flight.is_some() || buffer.is_empty() {
            return;
        }
        let lines = buffer.take(collector.batch_lines);
        let count = lines.len();
        let message = LogBatch { lines }.encode_to_vec();
        let sent = host.grpc_call(
            GrpcRequest {
                cluster: &collector.cluster,
                service: "telemetry.LogCollector",
                method: "Ship",
                metadata: Vec::new(),
                messages: &[&message],
            },
            Duration::from_millis(collector.timeout_ms),
        );
        match sent {
            Ok(token) => self.in_flight = Some((token, count)),
            Err(error) => {
                host.log(Level::Warn, &format!("cannot ship access log: {error}"));
                count_lines(host, DROPPED_LINES, count);
            }
        }
    }

    /// The collector answered the call `token` with `status_code`.
    pub fn on_answer<H: Host>(&mut self, host: &H, token: u32, status_code: u32) {
        let Some((_, count)) = self.in_flight.take_if(|(sent, _)| *sent == token) else {
            return;
        };
        let name = if status_code == 0 {
            SHIPPED_LINES
        } else {
            DROPPED_LINES
        };
        count_lines(host, name, count);
    }
}

fn count_lines<H: Host>(host: &H, name: &str, lines: usize) {
    host.add_to_counter(name, lines as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::host::{Call, HostError, RecordingHost};

    fn collector() -> CollectorConfig {
        serde_json::from_value(serde_json::json!({"cluster": "collector", "batch_lines": 2}))
            .unwrap()
    }

    fn buffer(lines: &[&str]) -> LineBuffer {
        let mut buffer = LineBuffer::new(10);
        for line in lines {
            buffer.push(line.to_string());
        }
        buffer
    }

    fn counted(host: &RecordingHost, wanted: &str) -> usize {
        host.calls()
            .iter()
            .filter(|call| matches!(call, Call::Counter(name) if name == wanted))
            .count()
    }

    #[test]
    fn one_batch_at_a_time_counted_when_the_collector_answers() {
        let host = RecordingHost::default();
        let mut lines = buffer(&["a", "b", "c"]);
        let mut shipping = Shipping::default();
        shipping.flush(&host, &collector(), &mut lines);
        shipping.flush(&host, &collector(), &mut lines);
        let calls = host.grpc_calls();
        assert_eq!(calls.len(), 1, "one batch in flight");
        let Call::Grpc {
            token,
            cluster,
            path,
            messages,
            ..
        } = &calls[0]
        else {
            panic!("{calls:?}");
        };
        assert_eq!(
            (cluster.as_str(), path.as_str()),
            ("collector", "/telemetry.LogCollector/Ship")
        );
        assert_eq!(
            LogBatch::decode(messages[0].as_slice()).unwrap().lines,
            ["a", "b"]
        );
        shipping.on_answer(&host, token + 1, 0);
        assert_eq!(counted(&host, SHIPPED_LINES), 0, "another call's answer");
        shipping.on_answer(&host, *token, 0);
        assert_eq!(counted(&host, SHIPPED_LINES), 2);

        shipping.flush(&host, &collector(), &mut lines);
        let Call::Grpc {
            token, messages, ..
        } = &host.grpc_calls()[1]
        else {
            panic!("a second batch");
        };
        assert_eq!(
            LogBatch::decode(messages[0].as_slice()).unwrap().lines,
            ["c"]
        );
        shipping.on_answer(&host, *token, 14);
        assert_eq!(
            counted(&host, DROPPED_LINES),
            1,
            "a failed batch is dropped"
        );
        assert!(lines.is_empty());
    }

    #[test]
    fn a_batch_that_cannot_be_sent_is_dropped_and_counted() {
        let host = RecordingHost::default();
        host.failing_grpc.set(Some(HostError::INTERNAL_FAILURE));
        let mut lines = buffer(&["a"]);
        let mut shipping = Shipping::default();
        shipping.flush(&host, &collector(), &mut lines);
        assert_eq!(counted(&host, DROPPED_LINES), 1);
        assert!(
            matches!(&host.calls()[0], Call::Log(Level::Warn, line) if line.contains("InternalFailure"))
        );
        host.failing_grpc.set(None);
        lines.push("b".into());
        shipping.flush(&host, &collector(), &mut lines);
        assert_eq!(host.grpc_calls().len(), 1, "nothing left in flight");
    }
}
