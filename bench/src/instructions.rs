//! Envoy's instructions per request, counted by callgrind (`make profile`,
//! `edge-bench --instructions`). CPU time per request moves by ±15% between runs on these VMs;
//! instruction counts have repeated to within 0.1% on the HTTP routes (4% once on the gRPC
//! read), so a change worth a few percent shows in one run. They count user space only: the
//! kernel's share (socket I/O, the log's writes) is not in them, and an instruction of V8's
//! compiled Wasm is not a cycle of Envoy's C++.

use crate::chains::{start_under, Chain, Route, DECOMPOSITION};
use crate::load::{self, Budget};
use crate::measure::{many_tokens, request, token};
use edge_e2e::{Edge, MOBILE_PHONE_ID};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Requests on one connection before counting starts (V8 and Envoy's caches warm).
const WARMUP: u64 = 30;

const TITLE: &str = "Envoy instructions per request (callgrind)";

/// The host calls whose cost is counted: the bench filter makes one kind `PROBE_CALLS` times
/// per request, at its end; `probe none` is the baseline.
const PROBES: [&str; 10] = [
    "probe none",
    "probe now",
    "probe request-header x-request-id",
    "probe request-headers",
    "probe response-headers",
    "probe property request.time",
    "probe property response.code",
    "probe property source.address",
    "probe property upstream.address",
    "probe log",
];

/// Calls per request in `bench/filter`'s probe mode.
const PROBE_CALLS: u64 = 10;

/// What is counted: the decomposition's chains on the gRPC read, the full chains (Wasm, the
/// native module, Envoy's filters) on the four routes the CPU targets are set on (the last, a token never seen before on every
/// request, is signature verification), the bare callouts, then the host-call probes.
fn cases() -> Vec<(Chain, Route)> {
    let mut cases: Vec<(Chain, Route)> = DECOMPOSITION
        .iter()
        .map(|chain| (*chain, Route::GrpcRead))
        .collect();
    for route in [
        Route::HotRead,
        Route::Write,
        Route::Reject,
        Route::ManyUsers,
    ] {
        for chain in [Chain::Wasm, Chain::Module, Chain::Native] {
            cases.push((chain, route));
        }
    }
    // The transcoder alone on the hot read: what our chain's floor is without auth and the
    // access log, against the native chain's whole cost.
    cases.push((Chain::TranscoderOnly, Route::HotRead));
    // The two callout mechanisms the transcoder could use, bare (a fixed call, a fixed reply):
    // what a switch from a gRPC stream to proxy_http_call could save.
    cases.extend(
        [Chain::CalloutGrpcStream, Chain::CalloutHttpCall].map(|chain| (chain, Route::HotRead)),
    );
    cases.extend(PROBES.map(|probe| (Chain::Probe(probe), Route::GrpcRead)));
    cases
}

fn callgrind_control(pid: u32, args: &[&str]) -> Result<(), String> {
    let output = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .map_err(|e| format!("callgrind_control: {e} (install valgrind)"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The instructions of every thread but Envoy's main thread in the newest dump in `dir`.
/// With `--separate-threads=yes` callgrind writes `callgrind.out.DUMP-THREAD` per thread, and
/// thread 1 is the main thread: its timers (stats flushes, the filters' root contexts' ticks)
/// run by the clock, so under callgrind's slowdown their share per request moved with how
/// busy the machine was. Requests are served by the workers.
fn last_dump_total(dir: &Path) -> Result<u64, String> {
    let dumps: Vec<(u32, u32, String)> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let (dump, thread) = name.strip_prefix("callgrind.out.")?.split_once('-')?;
            Some((dump.parse().ok()?, thread.parse().ok()?, name))
        })
        .collect();
    let last = dumps
        .iter()
        .map(|(dump, _, _)| *dump)
        .max()
        .ok_or("callgrind wrote no dump")?;
    let mut total = 0;
    for (_, _, name) in dumps
        .iter()
        .filter(|(dump, thread, _)| *dump == last && *thread != 1)
    {
        let text = std::fs::read_to_string(dir.join(name)).map_err(|e| e.to_string())?;
        total += text
            .lines()
            .find_map(|line| {
                line.strip_prefix("totals:")
                    .or_else(|| line.strip_prefix("summary:"))
            })
            .and_then(|value| value.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no totals in {name}"))?;
    }
    Ok(total)
}

/// Sends `requests` requests; on `Route::ManyUsers` each with the token of one of the users
/// numbered from `first_user`, so that no verified token is reused.
async fn send(
    edge: &Edge,
    route: Route,
    token: &str,
    requests: u64,
    first_user: usize,
) -> Result<(), String> {
    let budget = Budget::Requests(requests);
    let mut http = request(route, token);
    if route == Route::ManyUsers {
        http.headers.clear();
        http.tokens = many_tokens(edge, first_user..first_user + requests as usize);
    }
    let run = if route == Route::GrpcRead {
        load::grpc_get_item(&edge.base_url, MOBILE_PHONE_ID, Some(token), 1, budget).await
    } else {
        load::http(&edge.base_url, &http, 1, budget).await
    };
    run.check(route.name())
}

/// Instructions Envoy runs per request for `chain` on `route`, over `requests` requests.
async fn count(chain: Chain, route: Route, requests: u64) -> Result<u64, String> {
    let dir = edge_e2e::test_dir("callgrind");
    let wrapper: Vec<String> = [
        "valgrind",
        "--tool=callgrind",
        "--cache-sim=no",
        "--separate-threads=yes",
        // Counting starts after the warm-up, by callgrind_control.
        "--instr-atstart=no",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!(
        "--callgrind-out-file={}",
        dir.join("callgrind.out").display()
    )])
    .collect();
    let edge = start_under(chain, 1, &wrapper).await;
    let token = token(&edge).await;
    send(&edge, route, &token, WARMUP, 0).await?;
    let pid = edge.envoy_pid();
    callgrind_control(pid, &["--instr=on"])?;
    callgrind_control(pid, &["--zero"])?;
    send(&edge, route, &token, requests, WARMUP as usize).await?;
    callgrind_control(pid, &["--dump"])?;
    let total = last_dump_total(&dir)?;
    drop(edge);
    // EDGE_CALLGRIND_KEEP keeps the dumps, for callgrind_annotate.
    if std::env::var_os("EDGE_CALLGRIND_KEEP").is_some() {
        eprintln!("callgrind dumps kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(total / requests)
}

/// Counts every case whose configuration or route contains `only` (all if empty) and returns
/// the report's section.
pub async fn report(requests: u64, only: &str) -> Result<String, String> {
    let mut counted: Vec<(Chain, Route, u64)> = Vec::new();
    for (chain, route) in cases() {
        if !(chain.name().contains(only) || route.name().contains(only)) {
            continue;
        }
        let per_request = count(chain, route, requests).await?;
        eprintln!(
            "{:<55} {:<40} {per_request:>9} instructions/request",
            chain.name(),
            route.name()
        );
        counted.push((chain, route, per_request));
    }
    let find = |chain: Chain, route: Route| {
        counted
            .iter()
            .find(|(c, r, _)| *c == chain && *r == route)
            .map(|(_, _, n)| *n)
    };
    let mut out = format!(
        "## {TITLE}\n\nUser-space instructions Envoy runs per request (its C++, V8's code compiled from our .wasm, libc), counted by callgrind over {requests} requests on one connection after {WARMUP} uncounted ones, one Envoy worker; Envoy's main thread (stats flushes and other timers, which run by the clock) is left out. Repeated runs of one build have agreed to within 0.1% on the HTTP routes and within 4% on the gRPC read, where CPU time per request moves by ±15%, but one count of the whole chain with a token in four ran 4% high (the worker's timer work, auth's key and restriction sync, is counted with the requests): compare the chain across builds with repeats. They leave out the kernel's work and are not cycles.\n\n| configuration | route | instructions / request | over router only | / Envoy's filters |\n|---|---|---:|---:|---:|\n"
    );
    let router_only = find(Chain::RouterOnly, Route::GrpcRead);
    for (chain, route, per_request) in counted
        .iter()
        .filter(|(chain, _, _)| !matches!(chain, Chain::Probe(_)))
    {
        let over_router = match (route, router_only) {
            (Route::GrpcRead, Some(base)) => format!("{:+}", *per_request as i64 - base as i64),
            _ => String::new(),
        };
        // The whole chains against each other; on the HTTP routes also the transcoder alone
        // (on the gRPC read, the column before compares every part with the router alone).
        let compared = matches!(chain, Chain::Wasm | Chain::Module)
            || (*chain == Chain::TranscoderOnly && *route != Route::GrpcRead);
        let ratio = match find(Chain::Native, *route) {
            Some(native) if compared => {
                format!("{:.2}", *per_request as f64 / native as f64)
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {per_request} | {over_router} | {ratio} |",
            chain.name(),
            route.name()
        );
    }
    if let Some(baseline) = find(Chain::Probe(PROBES[0]), Route::GrpcRead) {
        let _ = write!(
            out,
            "\n### What one host call costs\n\nA filter that makes one kind of host call {PROBE_CALLS} times at the end of each request (`on_log`), against the same filter making none; instructions per call. Calls that return data also enter the VM once more, to allocate the copy.\n\n| host call | instructions / call |\n|---|---:|\n"
        );
        for (chain, _, per_request) in &counted {
            if let Chain::Probe(probe) = chain {
                if *probe != PROBES[0] {
                    let per_call = (*per_request as i64 - baseline as i64) / PROBE_CALLS as i64;
                    let _ = writeln!(
                        out,
                        "| {} | {per_call} |",
                        probe.trim_start_matches("probe ")
                    );
                }
            }
        }
    }
    Ok(out)
}
