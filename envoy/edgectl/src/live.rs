//! `edgectl policy apply`: writes the ECDS files the local Envoy watches, then waits until
//! Envoy has taken — or refused — each changed filter configuration, so that the request after
//! `make policy` already meets the new policy and a refused one is reported, not missed.

use crate::{write_xds, EdgeConfig, FilterModule};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Envoy's ECDS counters for one of our filters: (reloads, failures).
type Counters = BTreeMap<String, (u64, u64)>;

pub fn apply_policy(
    config: &EdgeConfig,
    module: &FilterModule,
    xds_dir: &Path,
    admin: &str,
    patience: Duration,
) -> Result<String, String> {
    let files = config.xds_files(module)?;
    let changed: Vec<String> = files
        .iter()
        .filter(|(file, content)| {
            std::fs::read_to_string(xds_dir.join(file)).ok().as_deref() != Some(content.as_str())
        })
        .map(|(file, _)| file.trim_end_matches(".json").to_string())
        .collect();
    let before = ecds_counters(admin);
    write_xds(xds_dir, &files)?;
    if changed.is_empty() {
        return Ok("nothing changed".into());
    }
    // No answer, or an Envoy without our discovered filters: nothing to wait for.
    let Some(before) = before.filter(|counters| changed.iter().all(|n| counters.contains_key(n)))
    else {
        return Ok(format!(
            "wrote {} (no Envoy answered on {admin}; it reads them when it starts)",
            xds_dir.display()
        ));
    };
    let started = Instant::now();
    loop {
        let now = ecds_counters(admin).unwrap_or_default();
        let seen = |name: &String| {
            let (reloads, failures) = now.get(name).copied().unwrap_or_default();
            let (reloads_before, failures_before) = before.get(name).copied().unwrap_or_default();
            (reloads > reloads_before, failures > failures_before)
        };
        if let Some(refused) = changed.iter().find(|name| seen(name).1) {
            return Err(format!(
                "Envoy refused the new {refused} configuration and keeps the previous one (see its log)"
            ));
        }
        if changed.iter().all(|name| seen(name).0) {
            return Ok(format!(
                "applied ({}) in {} ms; nothing restarted",
                changed.join(", "),
                started.elapsed().as_millis()
            ));
        }
        if started.elapsed() > patience {
            return Err(format!(
                "Envoy did not pick up {} within {} s",
                changed.join(", "),
                patience.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `extension_config_discovery.http_filter.edge.<name>.config_{reload,fail}` from Envoy's
/// admin, or `None` when no Envoy answers.
fn ecds_counters(admin: &str) -> Option<Counters> {
    let mut stream = TcpStream::connect(admin).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /stats?filter=extension_config_discovery HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let mut counters = Counters::new();
    for line in response.lines() {
        let Some((stat, value)) = line.split_once(": ") else {
            continue;
        };
        let Some(rest) = stat.strip_prefix("extension_config_discovery.http_filter.edge.") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        if let Some(name) = rest.strip_suffix(".config_reload") {
            counters.entry(name.to_string()).or_default().0 = value;
        } else if let Some(name) = rest.strip_suffix(".config_fail") {
            counters.entry(name.to_string()).or_default().1 = value;
        }
    }
    Some(counters)
}
