//! Envoy's memory at two workers, per chain: a section of its own, after the per-run tables
//! (`--only` runs it when its title matches).

use crate::chains::{start_with_workers, Chain};
use crate::load;
use crate::measure::token;
use edge_e2e::{Edge, MOBILE_PHONE_ID};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration as StdDuration;

/// The section's heading, also what `--only` matches to run it.
pub(crate) const MEMORY_TITLE: &str = "Memory at two workers";

/// Envoy's RSS with two workers (the issue's memory target is set there: each Wasm filter has
/// a VM per worker besides the main thread's), after load on 16 connections has reached both
/// workers, for each of `chains`. The load's answers are checked like every case's. Envoy's
/// `/memory` splits the heap: what is in use, and what tcmalloc holds free (its page heap and
/// thread caches); the rest of the RSS is outside tcmalloc (V8's code space, the Wasm linear
/// memories, stacks).
pub(crate) async fn memory_at_two_workers(
    load: StdDuration,
    chains: &[Chain],
) -> Result<String, String> {
    let mut rows = Vec::new();
    for &chain in chains {
        let edge = start_with_workers(chain, 2).await;
        let token = token(&edge).await;
        let run =
            load::grpc_get_item(&edge.base_url, MOBILE_PHONE_ID, Some(&token), 16, load).await;
        run.check(&format!("{} at 2 workers", chain.name()))?;
        // Envoy counts each worker's connections: both must have served some.
        let per_worker = edge
            .stats(r"^listener\..*\.worker_[0-9]+\.downstream_cx_total$")
            .await;
        let served = per_worker.iter().filter(|(_, count)| *count > 0).count();
        if served < 2 {
            return Err(format!(
                "{} at 2 workers: only {served} worker(s) got connections: {per_worker:?}",
                chain.name()
            ));
        }
        let mib = edge_e2e::process_rss_kib(edge.envoy_pid()) as f64 / 1024.0;
        let heap = tcmalloc_heap(&edge).await?;
        eprintln!(
            "2 workers: {:<45} RSS {mib:.0} MB after {} requests (heap in use {:.0} MB, held free {:.0} MB)",
            chain.name(),
            run.requests,
            heap.in_use,
            heap.held_free
        );
        rows.push((chain, mib, heap));
    }
    let native = rows
        .iter()
        .find(|(c, ..)| *c == Chain::Native)
        .map_or(0.0, |(_, mib, _)| *mib);
    let mut out = format!(
        "\n### {MEMORY_TITLE}\n\nEnvoy RSS with `--concurrency 2` after a gRPC client's `GetItem` with a token on 16 connections (the decomposition's route, which every configuration serves) has reached both workers. The target: the wasm chain at most 50 MB over the native one (issue #26). Our three filters are one module, so each configuration with any of them runs one VM per thread holding all three: the rows of one filter alone differ only in which plugins are configured. From Envoy's `/memory`: the heap tcmalloc has handed out and still counts in use, and the free memory it holds (page heap and thread caches) without returning it to the system; the rest of the RSS is outside tcmalloc (V8's code space, the Wasm linear memories, stacks).\n\n| configuration | Envoy RSS MB | over native | heap in use MB | heap held free MB |\n|---|---:|---:|---:|---:|\n",
    );
    for (chain, mib, heap) in &rows {
        let _ = writeln!(
            out,
            "| {} | {mib:.0} | {:+.0} | {:.0} | {:.0} |",
            chain.name(),
            mib - native,
            heap.in_use,
            heap.held_free
        );
    }
    Ok(out)
}

/// tcmalloc's split of Envoy's heap, in MB.
struct Heap {
    in_use: f64,
    held_free: f64,
}

async fn tcmalloc_heap(edge: &Edge) -> Result<Heap, String> {
    let memory: Value = edge
        .http
        .get(format!("{}/memory", edge.admin_url))
        .send()
        .await
        .map_err(|e| format!("/memory: {e}"))?
        .json()
        .await
        .map_err(|e| format!("/memory: {e}"))?;
    // Envoy prints the counts as JSON strings.
    let mb = |field: &str| -> Result<f64, String> {
        memory[field]
            .as_str()
            .and_then(|n| n.parse::<f64>().ok())
            .map(|bytes| bytes / (1024.0 * 1024.0))
            .ok_or_else(|| format!("/memory has no {field}: {memory}"))
    };
    Ok(Heap {
        in_use: mb("allocated")?,
        held_free: mb("pageheap_free")? + mb("total_thread_cache")?,
    })
}
