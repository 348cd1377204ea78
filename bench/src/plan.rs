//! What one run of the bench measures: the cases of each round, how long each is loaded, and
//! whose memory is read, for the full bench and for its smoke.

use crate::chains::{Chain, Route, DECOMPOSITION, SLOPE_ITEMS};
use std::time::Duration as StdDuration;

pub(crate) struct Plan {
    pub(crate) rounds: usize,
    /// Distinct users (a token each) of `Route::ManyUsers`.
    pub(crate) users: usize,
    pub(crate) warmup: StdDuration,
    pub(crate) measure: StdDuration,
    /// (chain, route, connections) to run, per round.
    pub(crate) cases: Vec<(Chain, Route, usize)>,
    /// How long to load each chain before reading its RSS at two workers, and which chains;
    /// `None`: not measured.
    pub(crate) memory: Option<(StdDuration, &'static [Chain])>,
}

/// The whole configurations, whose RSS the target compares.
const MEMORY_WHOLE: &[Chain] = &[Chain::RouterOnly, Chain::Native, Chain::Wasm, Chain::Module];

/// The whole configurations and their parts, to see where the wasm chain's memory goes.
const MEMORY_PARTS: &[Chain] = &[
    Chain::RouterOnly,
    Chain::Native,
    Chain::Wasm,
    Chain::Module,
    Chain::OneEmpty,
    Chain::ThreeEmpty,
    Chain::AuthOnly,
    Chain::TranscoderOnly,
    Chain::AccessLogOnly,
];

pub(crate) fn full_plan() -> Plan {
    let mut cases = Vec::new();
    for connections in [1, 16, 64] {
        for chain in [
            Chain::Direct,
            Chain::Native,
            Chain::Wasm,
            Chain::Module,
            Chain::GrpcGateway,
        ] {
            cases.push((chain, Route::HotRead, connections));
        }
    }
    for chain in [Chain::AuthOnly, Chain::TranscoderOnly, Chain::AccessLogOnly] {
        cases.push((chain, Route::HotRead, 16));
    }
    // The decomposition: every chain on the same gRPC route and backend, and the bare
    // callout mechanisms on the JSON read (they answer locally, as the transcoder does).
    for chain in DECOMPOSITION {
        cases.push((chain, Route::GrpcRead, 16));
    }
    for chain in [Chain::CalloutGrpcStream, Chain::CalloutHttpCall] {
        cases.push((chain, Route::HotRead, 16));
    }
    // Cost as work grows: response size, and policy size.
    for items in SLOPE_ITEMS {
        for chain in [
            Chain::Wasm,
            Chain::Native,
            Chain::Module,
            Chain::GrpcGateway,
        ] {
            cases.push((chain, Route::List(items), 16));
        }
    }
    for chain in [
        Chain::WasmLargePolicy,
        Chain::NativeLargePolicy,
        Chain::WasmManyRoutes,
        Chain::NativeManyRoutes,
    ] {
        cases.push((chain, Route::HotRead, 16));
    }
    for chain in [Chain::Wasm, Chain::Native, Chain::Module] {
        cases.push((chain, Route::ManyUsers, 16));
    }
    // What tracing adds: latency at one connection, Envoy CPU at 16.
    for connections in [1, 16] {
        for chain in [Chain::WasmTraced, Chain::NativeTraced] {
            cases.push((chain, Route::HotRead, connections));
        }
    }
    for route in [Route::Write, Route::Reject] {
        for connections in [1, 16, 64] {
            for chain in [
                Chain::Native,
                Chain::Wasm,
                Chain::Module,
                Chain::GrpcGateway,
            ] {
                cases.push((chain, route, connections));
            }
        }
    }
    // 3 rounds × 2.5 s per case, plus a fresh edge per chain and round: about 9 minutes, so
    // that `make bench` with its builds (cached) stays near 11 minutes here.
    Plan {
        rounds: 3,
        users: 100_000,
        warmup: StdDuration::from_millis(500),
        measure: StdDuration::from_millis(2000),
        cases,
        memory: Some((StdDuration::from_secs(2), MEMORY_PARTS)),
    }
}

pub(crate) fn smoke_plan() -> Plan {
    let mut plan = full_plan();
    // The grpc-gateway peer is built by `make bench` alone (Go, protoc and its plugins):
    // the smoke, part of `make test`, checks Envoy's chains.
    plan.cases.retain(|(chain, _, connections)| {
        *connections != 1 && *connections != 64 && *chain != Chain::GrpcGateway
    });
    plan.cases.iter_mut().for_each(|case| case.2 = 2);
    Plan {
        rounds: 1,
        // Signing 100k tokens in a debug build would take minutes; the smoke checks answers.
        users: 200,
        warmup: StdDuration::from_millis(200),
        measure: StdDuration::from_millis(800),
        cases: plan.cases,
        memory: Some((StdDuration::from_secs(1), MEMORY_WHOLE)),
    }
}
