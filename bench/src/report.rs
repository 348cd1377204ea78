//! RESULTS.md's text: the per-run table (and results.json's rows), then the sections read from
//! it (the ratios against the targets, the decomposition, cost as work grows, what tracing
//! adds), and the machine and filters it was measured on.

use crate::chains::{Chain, Route, DECOMPOSITION, SLOPE_ITEMS};
use crate::core_costs;
use crate::measure::{spread, spread_of, Results, Sample};
use crate::plan::Plan;
use edge_e2e::Edge;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The Markdown of every table and section, in order, and results.json's rows.
pub(crate) fn report(results: &Results, plan: &Plan) -> (String, Value) {
    let mut out = String::new();
    let json_rows = runs(&mut out, results);
    let medians = Medians { results };
    ratios(&mut out, &medians);
    native_module(&mut out, &medians);
    against_grpc_gateway(&mut out, &medians);
    decomposition(&mut out, &medians);
    cost_as_work_grows(&mut out, &medians);
    what_tracing_adds(&mut out, &medians);
    rounds(&mut out, plan);
    (out, json!({ "rows": json_rows }))
}

/// The lookups the sections share: one case's samples, and their medians over rounds.
struct Medians<'a> {
    results: &'a Results,
}

impl Medians<'_> {
    fn get(&self, route: Route, connections: usize, chain: Chain) -> Option<&[Sample]> {
        self.results
            .get(&(route, connections, chain))
            .map(Vec::as_slice)
    }

    fn rps(&self, route: Route, connections: usize, chain: Chain) -> Option<f64> {
        self.get(route, connections, chain)
            .map(|s| spread(s, |x| x.run.rps()).0)
    }

    fn quantile(&self, route: Route, connections: usize, chain: Chain, q: f64) -> Option<f64> {
        self.get(route, connections, chain)
            .map(|s| spread(s, |x| x.run.ms(q)).0)
    }

    /// `chain`'s Envoy CPU per request over `base`'s, round by round (each round runs both,
    /// close in time): the median ratio with min–max, steadier than a ratio of medians when
    /// the machine drifts between rounds.
    fn paired_cpu_ratio(
        &self,
        route: Route,
        connections: usize,
        chain: Chain,
        base: Chain,
    ) -> Option<(f64, f64, f64)> {
        let ours = self.get(route, connections, chain)?;
        let theirs = self.get(route, connections, base)?;
        let ratios: Vec<f64> = ours
            .iter()
            .zip(theirs)
            .filter_map(|(ours, theirs)| {
                let (ours, theirs) = (
                    ours.envoy_cpu_us_per_request?,
                    theirs.envoy_cpu_us_per_request?,
                );
                (theirs > 0.0).then(|| ours / theirs)
            })
            .collect();
        (!ratios.is_empty()).then(|| spread_of(ratios))
    }

    /// Envoy CPU µs per request.
    fn cpu(&self, route: Route, connections: usize, chain: Chain) -> Option<f64> {
        self.get(route, connections, chain)
            .map(|s| spread(s, |x| x.envoy_cpu_us_per_request.unwrap_or(0.0)).0)
    }

    /// The kernel's part of Envoy's CPU µs per request (system time).
    fn cpu_system(&self, route: Route, connections: usize, chain: Chain) -> Option<f64> {
        system_us(self.get(route, connections, chain)?)
    }

    /// Envoy CPU µs per request at 16 connections (where the sections compare components and
    /// slopes), with its min and max.
    fn cpu_spread(&self, route: Route, chain: Chain) -> Option<(f64, f64, f64)> {
        self.get(route, 16, chain)
            .map(|s| spread(s, |x| x.envoy_cpu_us_per_request.unwrap_or(0.0)))
    }

    /// Envoy CPU µs per request at 16 connections.
    fn cpu_of(&self, route: Route, chain: Chain) -> Option<f64> {
        self.cpu_spread(route, chain).map(|(median, _, _)| median)
    }
}

/// The median of Envoy's system µs per request over `samples` (none for a process of its own).
fn system_us(samples: &[Sample]) -> Option<f64> {
    samples
        .iter()
        .all(|s| s.envoy_system_us_per_request.is_some())
        .then(|| spread(samples, |s| s.envoy_system_us_per_request.unwrap_or(0.0)).0)
}

/// `numerator / denominator` to two places, or "–" when either is missing.
fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> String {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.2}", n / d),
        _ => "–".into(),
    }
}

/// One row per (route, connections, chain): medians of rounds with min–max, written to `out`
/// and returned as results.json's rows.
fn runs(out: &mut String, results: &Results) -> Vec<Value> {
    let _ = writeln!(out, "| route | conns | configuration | req/s median (min–max) | p50 ms | p90 ms | p99 ms | max ms | proxy CPU s / 10k req | proxy RSS MB before→after | steal % |");
    let _ = writeln!(
        out,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut json_rows = Vec::new();
    for ((route, connections, chain), samples) in results {
        let (rps, rps_min, rps_max) = spread(samples, |s| s.run.rps());
        let p = |q: f64| spread(samples, |s| s.run.ms(q)).0;
        let max = spread(samples, |s| s.run.max_ms()).0;
        let cpu = samples
            .iter()
            .any(|s| s.envoy_cpu_us_per_request.is_some())
            .then(|| spread(samples, |s| s.envoy_cpu_us_per_request.unwrap_or(0.0)).0);
        let rss = samples
            .first()
            .and_then(|s| s.rss_kb)
            .zip(samples.last().and_then(|s| s.rss_kb));
        let steal = spread(samples, |s| s.steal_percent).0;
        let _ = writeln!(
            out,
            "| {} | {connections} | {} | {rps:.0} ({rps_min:.0}–{rps_max:.0}) | {:.2} | {:.2} | {:.2} | {max:.1} | {} | {} | {steal:.0} |",
            route.name(),
            chain.name(),
            p(0.5),
            p(0.9),
            p(0.99),
            cpu.map_or("–".into(), |us| format!("{:.2}", us / 100.0)),
            rss.map_or("–".into(), |((before, _), (_, after))| format!("{:.0}→{:.0}", before as f64 / 1024.0, after as f64 / 1024.0)),
        );
        json_rows.push(json!({
            "route": route.name(), "connections": connections, "configuration": chain.name(),
            "rps_median": rps, "rps_min": rps_min, "rps_max": rps_max,
            "p50_ms": p(0.5), "p90_ms": p(0.9), "p99_ms": p(0.99), "max_ms": max,
            "envoy_cpu_us_per_request": cpu, "steal_percent": steal,
            "envoy_system_us_per_request": system_us(samples),
            "rounds": samples.len(),
            "unexpected_answers": samples.iter().map(|s| s.run.unexpected).sum::<u64>(),
        }));
    }
    json_rows
}

/// Our chain and Envoy's native one against the grpc-gateway peer, route by route at 16
/// connections: throughput, p99, the proxy's CPU per request (Envoy's, or the Go process's)
/// and its RSS after the load.
fn against_grpc_gateway(out: &mut String, m: &Medians) {
    let peer = Chain::GrpcGateway;
    if m.get(Route::HotRead, 16, peer).is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### Against grpc-gateway\n\nThe peer a team would pick for JSON clients: grpc-gateway v2.34.0's generated reverse proxy for catalog (the same protos and `google.api.http` bindings), behind golang-jwt v5 with keyfunc v3 reading the same keys as a JWKS, the same token rules and JSON field names (`bench/grpc-gateway`); a Go process pinned to CPU 0 with `GOMAXPROCS=1`, as Envoy runs one worker there. Its CPU and RSS are that process's. It does not consult the acl service on writes, and has no access log; our chain does both. 16 connections, medians of rounds.\n\n| route | wasm / grpc-gateway req/s | wasm / grpc-gateway p99 | wasm / grpc-gateway proxy CPU per request | native / grpc-gateway proxy CPU per request | proxy RSS MB: wasm, native, grpc-gateway |\n|---|---:|---:|---:|---:|---|"
    );
    let rss_after = |route, chain| {
        m.get(route, 16, chain)
            .and_then(|s| s.last())
            .and_then(|s| s.rss_kb)
            .map_or("–".to_string(), |(_, after)| {
                format!("{:.0}", after as f64 / 1024.0)
            })
    };
    for route in [
        Route::HotRead,
        Route::Write,
        Route::Reject,
        Route::List(10),
        Route::List(100),
        Route::List(1000),
    ] {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {}, {}, {} |",
            route.name(),
            ratio(m.rps(route, 16, Chain::Wasm), m.rps(route, 16, peer)),
            ratio(
                m.quantile(route, 16, Chain::Wasm, 0.99),
                m.quantile(route, 16, peer, 0.99)
            ),
            ratio(m.cpu(route, 16, Chain::Wasm), m.cpu(route, 16, peer)),
            ratio(m.cpu(route, 16, Chain::Native), m.cpu(route, 16, peer)),
            rss_after(route, Chain::Wasm),
            rss_after(route, Chain::Native),
            rss_after(route, peer),
        );
    }
}

/// Wasm against native (and against calling catalog directly), beside the targets.
fn ratios(out: &mut String, m: &Medians) {
    let _ = writeln!(out, "\n| ratio | value | target |\n|---|---:|---|");
    for connections in [16, 64] {
        let _ = writeln!(
            out,
            "| wasm / native throughput, hot read, {connections} conns | {} | ≥ 0.95 |",
            ratio(
                m.rps(Route::HotRead, connections, Chain::Wasm),
                m.rps(Route::HotRead, connections, Chain::Native)
            )
        );
        let _ = writeln!(
            out,
            "| wasm / native p99, hot read, {connections} conns | {} | ≤ 1.2 |",
            ratio(
                m.quantile(Route::HotRead, connections, Chain::Wasm, 0.99),
                m.quantile(Route::HotRead, connections, Chain::Native, 0.99)
            )
        );
        let _ = writeln!(
            out,
            "| wasm / native Envoy CPU per request, hot read, {connections} conns | {} | |",
            ratio(
                m.cpu(Route::HotRead, connections, Chain::Wasm),
                m.cpu(Route::HotRead, connections, Chain::Native)
            )
        );
    }
    for connections in [1, 16] {
        let _ = writeln!(
            out,
            "| edge (wasm) / direct p50, hot read, {connections} conns | {} | ≤ 2 |",
            ratio(
                m.quantile(Route::HotRead, connections, Chain::Wasm, 0.5),
                m.quantile(Route::HotRead, connections, Chain::Direct, 0.5)
            )
        );
    }
    for route in [Route::Write, Route::Reject] {
        for connections in [1, 16, 64] {
            let _ = writeln!(
                out,
                "| wasm / native throughput, {}, {connections} conns | {} | |",
                route.name(),
                ratio(
                    m.rps(route, connections, Chain::Wasm),
                    m.rps(route, connections, Chain::Native)
                )
            );
        }
        let _ = writeln!(
            out,
            "| wasm / native Envoy CPU per request, {}, 16 conns | {} | |",
            route.name(),
            ratio(
                m.cpu(route, 16, Chain::Wasm),
                m.cpu(route, 16, Chain::Native)
            )
        );
    }
}

/// The same filters as a dynamic module against Envoy's own filters (issue #31's targets:
/// ≤ 1.05× CPU on the hot read, the write, the 401 and the 100k-user read; the large response
/// faster than native), and against the Wasm build.
fn native_module(out: &mut String, m: &Medians) {
    if m.get(Route::HotRead, 16, Chain::Module).is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### The native module\n\nOur three filters built as one Envoy dynamic module (`libedge_native.so`, `EDGE_TARGET=native`) from the same cores and configuration as the Wasm module. Envoy CPU µs per request, 16 connections, medians of rounds; RSS in the memory table below. \"Round by round\": the module's CPU over Envoy's filters' in each round (the two run close in time), median and min–max.\n\n| route | module µs | Envoy's filters µs | wasm µs | module / Envoy's filters | round by round | module / wasm | target (module / Envoy's filters) |\n|---|---:|---:|---:|---:|---:|---:|---|"
    );
    let micros = |route, chain| {
        m.cpu(route, 16, chain)
            .map_or("–".to_string(), |cpu| format!("{cpu:.1}"))
    };
    for (route, target) in [
        (Route::HotRead, "≤ 1.05"),
        (Route::Write, "≤ 1.05"),
        (Route::Reject, "≤ 1.05"),
        (Route::ManyUsers, "≤ 1.05"),
        (Route::List(10), ""),
        (Route::List(100), ""),
        (Route::List(1000), "< 1"),
    ] {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {target} |",
            route.name(),
            micros(route, Chain::Module),
            micros(route, Chain::Native),
            micros(route, Chain::Wasm),
            ratio(
                m.cpu(route, 16, Chain::Module),
                m.cpu(route, 16, Chain::Native)
            ),
            m.paired_cpu_ratio(route, 16, Chain::Module, Chain::Native)
                .map_or("–".to_string(), |(median, low, high)| {
                    format!("{median:.2} ({low:.2}–{high:.2})")
                }),
            ratio(
                m.cpu(route, 16, Chain::Module),
                m.cpu(route, 16, Chain::Wasm)
            ),
        );
    }
    let _ = writeln!(
        out,
        "\nThe same CPU split into Envoy's own code (user time: the filters, the codecs, the router) and the kernel's work for it (system time: the sockets, the same traffic for both chains, though it moves from run to run as much as the whole), medians of rounds; a filter's cost shows in the user time.\n\n| route | module user µs | module system µs | Envoy's filters user µs | Envoy's filters system µs | user time, module / Envoy's filters | system time, module / Envoy's filters |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for route in [
        Route::HotRead,
        Route::Write,
        Route::Reject,
        Route::ManyUsers,
    ] {
        let user = |chain| Some(m.cpu(route, 16, chain)? - m.cpu_system(route, 16, chain)?);
        let system = |chain| m.cpu_system(route, 16, chain);
        let micros = |value: Option<f64>| value.map_or("–".to_string(), |us| format!("{us:.1}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            route.name(),
            micros(user(Chain::Module)),
            micros(system(Chain::Module)),
            micros(user(Chain::Native)),
            micros(system(Chain::Native)),
            ratio(user(Chain::Module), user(Chain::Native)),
            ratio(system(Chain::Module), system(Chain::Native)),
        );
    }
}

/// Envoy CPU per request by component, over the router alone; left out when the router alone
/// was not run.
fn decomposition(out: &mut String, m: &Medians) {
    let Some((router, _, _)) = m.cpu_spread(Route::GrpcRead, Chain::RouterOnly) else {
        return;
    };
    let _ = writeln!(
        out,
        "\n### Decomposition: Envoy CPU per request, by component\n\nOne route and one backend for all (a gRPC client's `GetItem` with a token through Envoy to catalog, 16 connections; every filter sees the request, our transcoder and the native one pass it through), then the bare callout mechanisms on the JSON read (one fixed `GetItem` call to catalog and a fixed local reply, no parsing). µs of Envoy CPU per request, median of rounds (min–max).\n\n| configuration | route | µs / request | over router only |\n|---|---|---:|---:|"
    );
    let rows = DECOMPOSITION
        .iter()
        .map(|chain| (Route::GrpcRead, *chain))
        .chain([
            (Route::HotRead, Chain::CalloutGrpcStream),
            (Route::HotRead, Chain::CalloutHttpCall),
            (Route::HotRead, Chain::Wasm),
            (Route::HotRead, Chain::Native),
        ]);
    for (route, chain) in rows {
        if let Some((median, low, high)) = m.cpu_spread(route, chain) {
            let _ = writeln!(
                out,
                "| {} | {} | {median:.0} ({low:.0}–{high:.0}) | {:+.0} |",
                chain.name(),
                route.name(),
                median - router
            );
        }
    }
}

/// Envoy CPU (and RSS) as the response, the users, the route table and the policy grow.
fn cost_as_work_grows(out: &mut String, m: &Medians) {
    let _ = writeln!(
        out,
        "\n### Cost as work grows\n\nEnvoy CPU µs per request at 16 connections (median of rounds).\n\n| work | wasm | native | wasm / native |\n|---|---:|---:|---:|"
    );
    for items in SLOPE_ITEMS {
        let (wasm, native) = (
            m.cpu_of(Route::List(items), Chain::Wasm),
            m.cpu_of(Route::List(items), Chain::Native),
        );
        let _ = writeln!(
            out,
            "| ListItems, {items} items | {} | {} | {} |",
            wasm.map_or("–".into(), |v| format!("{v:.0}")),
            native.map_or("–".into(), |v| format!("{v:.0}")),
            ratio(wasm, native)
        );
    }
    let per_item = |chain| {
        m.cpu_of(Route::List(1000), chain)
            .zip(m.cpu_of(Route::List(10), chain))
            .map(|(large, small)| (large - small) / 990.0)
    };
    let _ = writeln!(
        out,
        "| slope: µs per item | {} | {} | {} |",
        per_item(Chain::Wasm).map_or("–".into(), |v| format!("{v:.2}")),
        per_item(Chain::Native).map_or("–".into(), |v| format!("{v:.2}")),
        ratio(per_item(Chain::Wasm), per_item(Chain::Native))
    );
    // What the larger configuration adds to the hot read's Envoy CPU per request.
    let added_cpu = |small, large| {
        m.cpu_of(Route::HotRead, large)
            .zip(m.cpu_of(Route::HotRead, small))
            .map(|(l, s): (f64, f64)| l - s)
    };
    let users = |chain| {
        m.cpu_of(Route::HotRead, chain)
            .zip(m.cpu_of(Route::ManyUsers, chain))
            .map(|(one, many): (f64, f64)| format!("{one:.0} → {many:.0}"))
            .unwrap_or_else(|| "–".into())
    };
    let _ = writeln!(
        out,
        "| hot read: 1 user → 100k users, one token each (verified-token caches miss) | {} | {} | |",
        users(Chain::Wasm),
        users(Chain::Native)
    );
    let rss_after = |chain| {
        m.get(Route::HotRead, 16, chain).map(|s| {
            spread(s, |x| {
                x.rss_kb.map_or(0.0, |(_, after)| after as f64 / 1024.0)
            })
            .0
        })
    };
    let more_rss = |small, large| {
        rss_after(large)
            .zip(rss_after(small))
            .map(|(l, s): (f64, f64)| l - s)
    };
    let _ = writeln!(
        out,
        "| slope: µs per 1000 more HTTP bindings in the route table (hot read) | {} | {} | |",
        added_cpu(Chain::Wasm, Chain::WasmManyRoutes).map_or("–".into(), |v| format!("{v:+.0}")),
        added_cpu(Chain::Native, Chain::NativeManyRoutes)
            .map_or("–".into(), |v| format!("{v:+.0}")),
    );
    let _ = writeln!(
        out,
        "| Envoy RSS MB with 1000 more HTTP bindings | {} | {} | |",
        more_rss(Chain::Wasm, Chain::WasmManyRoutes).map_or("–".into(), |v| format!("{v:+.1}")),
        more_rss(Chain::Native, Chain::NativeManyRoutes)
            .map_or("–".into(), |v| format!("{v:+.1}")),
    );
    let _ = writeln!(
        out,
        "| slope: µs per 1000 more policy rules (hot read) | {} | {} | |",
        added_cpu(Chain::Wasm, Chain::WasmLargePolicy).map_or("–".into(), |v| format!("{v:+.0}")),
        added_cpu(Chain::Native, Chain::NativeLargePolicy)
            .map_or("–".into(), |v| format!("{v:+.0}")),
    );
}

/// Each full chain with tracing on against the same chain without it.
fn what_tracing_adds(out: &mut String, m: &Medians) {
    let _ = writeln!(
        out,
        "\n### What tracing adds\n\nThe hot read with edge.json's `tracing` (Envoy's OpenTelemetry tracer, every request sampled, spans exported over OTLP/gRPC to a receiver in the bench; the services do not export here) against the same chain without it. Latency: p50 at 1 connection; Envoy CPU: µs per request at 16 connections (medians of rounds).\n\n| chain | p50 ms off → on | added µs | CPU µs off → on | added µs |\n|---|---:|---:|---:|---:|"
    );
    for (off, on) in [
        (Chain::Wasm, Chain::WasmTraced),
        (Chain::Native, Chain::NativeTraced),
    ] {
        let (p50_off, p50_on) = (
            m.quantile(Route::HotRead, 1, off, 0.5),
            m.quantile(Route::HotRead, 1, on, 0.5),
        );
        let (cpu_off, cpu_on) = (m.cpu_of(Route::HotRead, off), m.cpu_of(Route::HotRead, on));
        let pair = |a: Option<f64>, b: Option<f64>, digits: usize| match (a, b) {
            (Some(a), Some(b)) => format!("{a:.digits$} → {b:.digits$}"),
            _ => "–".into(),
        };
        let added = |a: Option<f64>, b: Option<f64>, scale: f64| {
            a.zip(b)
                .map_or("–".into(), |(a, b)| format!("{:+.0}", (b - a) * scale))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            on.name(),
            pair(p50_off, p50_on, 3),
            added(p50_off, p50_on, 1000.0),
            pair(cpu_off, cpu_on, 0),
            added(cpu_off, cpu_on, 1.0),
        );
    }
}

/// How long each run was, so the tables can be read against it.
fn rounds(out: &mut String, plan: &Plan) {
    let _ = writeln!(
        out,
        "\nRounds: {}; each run {} s warm-up (discarded) + {} s measured.",
        plan.rounds,
        plan.warmup.as_secs_f64(),
        plan.measure.as_secs_f64()
    );
}

/// The host-side costs of the filters' pure cores, as a Markdown table.
pub(crate) fn core_table(timings: &[core_costs::Timing]) -> String {
    let mut table =
        String::from("| filter core, natively on the host (one call) | µs |\n|---|---|\n");
    for timing in timings {
        let _ = writeln!(
            table,
            "| {} | {:.2} |",
            timing.name,
            timing.ns_per_call / 1000.0
        );
    }
    table
}

/// The machine the figures were measured on, for RESULTS.md and SOAK.md.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    format!("{cores} vCPU ({model}), {memory}")
}

/// The size of the filters' module measured, for RESULTS.md.
pub(crate) fn wasm_sizes() -> String {
    let name = edgectl::WASM_MODULE;
    let size =
        std::fs::metadata(Edge::wasm_dir().join(format!("{name}.wasm"))).map_or(0, |m| m.len());
    format!(
        "{name}.wasm {:.0} KiB (the three filters, one module)",
        size as f64 / 1024.0
    )
}
