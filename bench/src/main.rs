//! `make bench`: the wasm edge measured against Envoy's native filters, against grpc-gateway
//! (`bench/grpc-gateway`, a Go process of its own) and against calling catalog over gRPC
//! directly, in one run on one machine, with the same release-built services.
//!
//! Envoy runs one worker pinned to CPU 0; this process (the load) and the services run on CPU 1.
//! Each round starts every configuration afresh, in rotating order; every run has a warm-up
//! that is discarded. Reported: medians over rounds with min–max, Envoy CPU µs per request
//! (the steady figure on these noisy VMs: whole-machine throughput moves by ±25% between runs,
//! Envoy's CPU per request does not), RSS before/after.
//!
//! `--smoke`: one short round, checks only that every configuration answers correctly.
//! `--only TEXT`: the full-length cases whose configuration or route contains TEXT, printed,
//! nothing written.
//! `--soak N`: N distinct users through the wasm chain, a request each, RSS and CPU every 100k;
//! fails on RSS growth > 10% or any wrong answer.

mod chains;
mod core_costs;
mod instructions;
mod load;
mod measure;
mod memory;
mod plan;
mod report;

use chains::{start, start_peer, Chain, Route};
use measure::{measure, request, token, Results};
use memory::{memory_at_two_workers, MEMORY_TITLE};
use plan::{full_plan, smoke_plan, Plan};
use report::{core_table, machine, report, wasm_sizes};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration as StdDuration;

/// Requests counted per case by `--instructions` (each runs under callgrind, ~50× slower).
const INSTRUCTION_REQUESTS: u64 = 300;

async fn bench(plan: Plan, smoke: bool) -> Result<(), String> {
    let mut chains: Vec<Chain> = plan.cases.iter().map(|c| c.0).collect();
    chains.sort();
    chains.dedup();
    let mut results: Results = BTreeMap::new();
    for round in 0..plan.rounds {
        // Rotate the order each round, so no configuration always runs on a warmer machine.
        let mut order = chains.clone();
        let shift = round % order.len().max(1);
        order.rotate_left(shift);
        for chain in order {
            let edge = start(chain).await;
            let peer = start_peer(chain, &edge);
            let token = token(&edge).await;
            if plan
                .cases
                .iter()
                .any(|(c, route, _)| *c == chain && matches!(route, Route::List(_)))
            {
                edge.seed_items(1000, "bench", |n| format!("Bench item {n}"))
                    .await;
            }
            for &(case_chain, route, connections) in &plan.cases {
                if case_chain != chain {
                    continue;
                }
                let sample = measure(
                    &edge,
                    peer.as_ref(),
                    chain,
                    route,
                    connections,
                    &plan,
                    &token,
                )
                .await;
                eprintln!(
                    "round {} {:<55} {:<38} c={connections:<3} {:>7.0} req/s p50 {:.2} ms p99 {:.2} ms{}",
                    round + 1,
                    chain.name(),
                    route.name(),
                    sample.run.rps(),
                    sample.run.ms(0.5),
                    sample.run.ms(0.99),
                    sample.envoy_cpu_us_per_request.zip(sample.envoy_system_us_per_request).map_or(String::new(), |(us, system)| format!(" proxy {us:.0} µs/req ({system:.0} system)")),
                );
                results
                    .entry((route, connections, chain))
                    .or_default()
                    .push(sample);
            }
        }
    }
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, samples)| samples.iter().any(|s| !s.run.all_correct()))
        .map(|((route, connections, chain), samples)| {
            let bad: u64 = samples.iter().map(|s| s.run.unexpected).sum();
            format!(
                "{} / {} / {connections} conns: {bad} unexpected answers",
                chain.name(),
                route.name()
            )
        })
        .collect();
    let (table, json) = report(&results, &plan);
    println!("{table}");
    if !wrong.is_empty() {
        return Err(format!(
            "some configurations answered wrongly:\n{}",
            wrong.join("\n")
        ));
    }
    let memory = match plan.memory {
        Some((load, chains)) => memory_at_two_workers(load, chains).await?,
        None => String::new(),
    };
    println!("{memory}");
    if smoke {
        println!(
            "bench smoke: {} configurations answered correctly (not the grpc-gateway peer: make bench builds and runs it)",
            results.len()
        );
        return Ok(());
    }
    let dir = edge_e2e::workspace_root().join("bench");
    let when = utc_now();
    let cores = core_costs::profile(100_000, true)?;
    // The measured before/after of each change kept (kept by hand, from `--only` runs).
    let changes = section(
        &dir.join("CHANGES.md"),
        "Changes kept, before and after (bench/CHANGES.md)",
    );
    // A million users take longer than this run: `make soak` measures them (bench/SOAK.md).
    let soak = section(
        &dir.join("SOAK.md"),
        "A million users (from `make soak`, bench/SOAK.md)",
    );
    let text = format!(
        "# Benchmark results\n\nWritten by `make bench` on {when}.\n\nMachine: {}. Envoy 1.40.0, one worker pinned to CPU 0 (the grpc-gateway peer likewise: Go, `GOMAXPROCS=1`); proxy CPU and RSS are Envoy's process's, the peer's rows its own; load generator (closed loop, HTTP/1.1 keep-alive or h2 gRPC) and release-built services on CPU 1; loopback only. Filters: {}.\n\n{table}{memory}\n## The filters' own Rust, natively\n\nThe pure cores on the same inputs as the hot read (release build, host CPU; inside V8 expect a few times more). Compare with the Envoy CPU per request above: what is not here is Envoy's (host calls, the gRPC callout, the local reply).\n\n{}",
        machine(),
        wasm_sizes(),
        core_table(&cores)
    ) + &soak
        + &changes;
    std::fs::write(dir.join("RESULTS.md"), text).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    println!("wrote bench/RESULTS.md and bench/results.json");
    Ok(())
}

/// Requests per soak segment: one RSS and CPU reading each, every one a user not seen before.
const SOAK_SEGMENT: usize = 100_000;

/// Users replayed after each segment to time the verified-token cache's hit path: the segment's
/// last, which the shared slots mostly still hold.
const SOAK_REPLAY: usize = 10_000;

/// The hot read through the wasm chain by `total` distinct users, a token each, in segments of
/// `SOAK_SEGMENT`: every request verifies a token never seen before and stores it in the shared
/// slots, which fill and then evict. Fails on a wrong answer or Envoy RSS more than 10% over
/// the first segment's. Envoy CPU per request is read per segment, on a replay of its latest
/// users (cache hits), and first on one user's token (the worker's own cache).
/// The time now, to the minute, as the results files give it.
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Another results file (e.g. bench/CHANGES.md) as a section of RESULTS.md under `heading`,
/// its own title left out; nothing when it is missing.
fn section(file: &std::path::Path, heading: &str) -> String {
    std::fs::read_to_string(file)
        .map(|text| {
            let body = text.split_once('\n').map_or("", |(_, rest)| rest).trim();
            format!("\n## {heading}\n\n{body}\n")
        })
        .unwrap_or_default()
}

async fn soak(total: u64) -> Result<(), String> {
    let edge = start(Chain::Wasm).await;
    let connections = 16;
    let started = std::time::Instant::now();
    let mut report = String::from(
        "| users so far | Envoy CPU µs / request, new users | the last 10,000 again | Envoy RSS MB | since the first segment |\n|---:|---:|---:|---:|---:|\n",
    );
    let one_user = request(Route::HotRead, &token(&edge).await);
    let (run, one_user_cpu) = soak_run(&edge, &one_user, connections, SOAK_REPLAY).await;
    if run.unexpected > 0 {
        return Err(format!("{} wrong answers for one user", run.unexpected));
    }
    let (mut sent, mut baseline) = (0usize, None::<u64>);
    let outcome = loop {
        if sent as u64 >= total {
            break Ok(());
        }
        let users = sent..(sent + SOAK_SEGMENT).min(total as usize);
        let mut request = request(Route::ManyUsers, "");
        request.headers.clear();
        request.tokens = measure::many_tokens(&edge, users.clone());
        let (run, cpu) = soak_run(&edge, &request, connections, users.len()).await;
        sent = users.end;
        if run.unexpected > 0 || run.requests < users.len() as u64 {
            break Err(format!(
                "{} wrong answers, {} of {} requests sent, by {sent} users",
                run.unexpected,
                run.requests,
                users.len()
            ));
        }
        // The replay: the segment's last users again (the same tokens: signing again would
        // make new ones), spread over the connections.
        let latest = request.tokens.len().saturating_sub(SOAK_REPLAY);
        request.tokens = std::sync::Arc::new(request.tokens[latest..].to_vec());
        let (replay, replay_cpu) =
            soak_run(&edge, &request, connections, request.tokens.len()).await;
        if replay.unexpected > 0 {
            break Err(format!("{} wrong answers replaying", replay.unexpected));
        }
        let rss = edge_e2e::process_rss_kib(edge.envoy_pid());
        let growth = baseline.map_or(0.0, |b| 100.0 * (rss as f64 - b as f64) / b as f64);
        let line = format!(
            "| {sent} | {cpu:.0} | {replay_cpu:.0} | {:.1} | {growth:+.1}% |",
            rss as f64 / 1024.0
        );
        println!("{line}");
        report.push_str(&line);
        report.push('\n');
        match baseline {
            Some(base) if rss as f64 > base as f64 * 1.10 => {
                break Err(format!(
                    "Envoy RSS grew {growth:.1}% after the first segment"
                ));
            }
            Some(_) => {}
            None => baseline = Some(rss),
        }
    };
    let verdict = match &outcome {
        Ok(()) => format!("**Passed**: {sent} users, a request each, every one answered correctly; RSS within 10% of the first segment's."),
        Err(error) => format!("**Failed**: {error}."),
    };
    let when = utc_now();
    let text = format!(
        "# Soak\n\nWritten by `make soak` on {when}: the hot read (`GET /catalog/items/{{id}}`) through the wasm chain, one Envoy worker, {connections} connections, each request by a user not seen before (a token each, signed by the bench with the authority's key): {sent} users in {:.0} s. Every request verifies its token and stores it in auth's shared slots (`shared_token_slots`, default 65,536), which fill during the first segment and evict from then on. Machine: {}.\n\n{verdict}\n\nEach segment: Envoy CPU µs per request for its new users (every token verified), then for its last {SOAK_REPLAY} users again (most still in the shared slots: the cache's hit path), and Envoy's RSS. Before the first, one user's token (cached by the worker itself): {one_user_cpu:.0} µs per request.\n\n{report}",
        started.elapsed().as_secs_f64(),
        machine()
    );
    std::fs::write(edge_e2e::workspace_root().join("bench/SOAK.md"), text)
        .map_err(|e| e.to_string())?;
    println!("wrote bench/SOAK.md");
    outcome
}

/// `requests` requests of `request` over `connections` (each token once), and Envoy's CPU µs
/// per request over them.
async fn soak_run(
    edge: &edge_e2e::Edge,
    request: &load::HttpRequest,
    connections: usize,
    requests: usize,
) -> (load::Run, f64) {
    let per_connection = (requests / connections) as u64;
    let ticks = edge_e2e::process_cpu_ticks(edge.envoy_pid());
    let run = load::http(
        &edge.base_url,
        request,
        connections,
        load::Budget::Requests(per_connection),
    )
    .await;
    let spent = edge_e2e::process_cpu_ticks(edge.envoy_pid()) - ticks;
    // CLK_TCK is 100 on Linux.
    let cpu = spent as f64 * 1e4 / run.requests.max(1) as f64;
    (run, cpu)
}

/// Where Envoy's CPU goes under the hot read, by `perf` (sampling the pinned Envoy): by
/// shared object (the Envoy binary, the V8-compiled Wasm in anonymous memory, libc, the
/// kernel) and by symbol, for the wasm chain and the native one. Writes bench/PROFILE.md.
async fn perf_profile(seconds: u64) -> Result<(), String> {
    let mut text = String::from(
        "# Where Envoy's CPU goes (perf)\n\nWritten by `make profile`: the hot read (16 connections) through each chain, `perf record -g` on the Envoy process for a fixed time. Code that V8 compiled from our .wasm has no symbols: it shows as anonymous memory (`[unknown]`/`//anon`/`[JIT]`).\n",
    );
    for chain in [Chain::Wasm, Chain::Native] {
        let edge = start(chain).await;
        let token = token(&edge).await;
        let request = request(Route::HotRead, &token);
        load::http(&edge.base_url, &request, 16, StdDuration::from_secs(1)).await;
        let data = edge_e2e::workspace_root().join(format!("target/perf-{chain:?}.data"));
        let recorder = std::process::Command::new("perf")
            .args(["record", "-F", "499", "-g", "-o"])
            .arg(&data)
            .args([
                "-p",
                &edge.envoy_pid().to_string(),
                "--",
                "sleep",
                &seconds.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("perf record: {e} (install linux-perf)"))?;
        let run = load::http(
            &edge.base_url,
            &request,
            16,
            StdDuration::from_secs(seconds),
        )
        .await;
        let recorded = recorder.wait_with_output().map_err(|e| e.to_string())?;
        if !recorded.status.success() {
            return Err(format!("perf record failed ({})", recorded.status));
        }
        let report = |sort: &str| {
            std::process::Command::new("perf")
                .args([
                    "report",
                    "--no-children",
                    "--stdio",
                    "-g",
                    "none",
                    "--percent-limit",
                    "1",
                    "--sort",
                    sort,
                    "-i",
                ])
                .arg(&data)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .map_err(|e| e.to_string())
        };
        let _ = write!(
            text,
            "\n## {}\n\n{:.0} req/s while sampled.\n\nBy shared object:\n\n```\n{}\n```\n\nBy symbol (≥ 1%):\n\n```\n{}\n```\n",
            chain.name(),
            run.rps(),
            report("dso")?,
            report("dso,symbol")?
        );
    }
    let path = edge_e2e::workspace_root().join("bench/PROFILE.md");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    println!("wrote bench/PROFILE.md");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("--smoke") => bench(smoke_plan(), true).await,
        // Only the cases whose configuration or route names contain TEXT, printed, nothing
        // written: for trying a change to one component.
        Some("--only") => match args.get(1) {
            Some(text) => {
                let mut plan = full_plan();
                plan.cases.retain(|(chain, route, _)| {
                    chain.name().contains(text.as_str()) || route.name().contains(text.as_str())
                });
                plan.memory = plan.memory.filter(|_| MEMORY_TITLE.contains(text.as_str()));
                bench(plan, true).await
            }
            None => Err("--only needs a text to match".into()),
        },
        Some("--perf") => perf_profile(8).await,
        // Without TEXT every case, written to bench/INSTRUCTIONS.md; with it, only the cases
        // whose configuration or route contains TEXT, printed.
        Some("--instructions") => {
            let only = args.get(1).map_or("", String::as_str);
            instructions::report(INSTRUCTION_REQUESTS, only)
                .await
                .and_then(|text| {
                    println!("{text}");
                    if only.is_empty() {
                        let path = edge_e2e::workspace_root().join("bench/INSTRUCTIONS.md");
                        std::fs::write(&path, format!("# Instructions per request\n\nWritten by `make profile` (`edge-bench --instructions`).\n\n{text}"))
                            .map_err(|e| e.to_string())?;
                        println!("wrote bench/INSTRUCTIONS.md");
                    }
                    Ok(())
                })
        }
        // --core-hot leaves out the uncached ES256 verification (for callgrind: per-request
        // paths only).
        Some(mode @ ("--core" | "--core-hot")) => core_costs::profile(
            args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200_000),
            mode == "--core",
        )
        .map(|timings| println!("{}", core_table(&timings))),
        Some("--soak") => {
            soak(
                args.get(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1_000_000),
            )
            .await
        }
        None => bench(full_plan(), false).await,
        Some(other) => Err(format!(
            "unknown argument {other}; use --smoke, --only TEXT, --core [N], --core-hot [N], --perf, --instructions [TEXT] or --soak N"
        )),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
