//! `edgectl render [EDGE_JSON]`: writes envoy/envoy.yaml, the Istio manifests in istio/base and
//! the Envoy Gateway one in istio/envoy-gateway from envoy/edge.json (run from the repository
//! root).
//! `edgectl check [EDGE_JSON]`: validates the configuration without writing anything.
//! `edgectl digests`: writes istio/base/wasm-digests.json from the built target/filters/*.wasm.
//! `edgectl services`: lists `name binary port` of each service, in an order they can start in.
//! `edgectl service-env [NAME]`: the environment every local service gets (`NAME=value`
//! lines): where to export spans, when edge.json traces; with NAME, what that service gets
//! alone (the reflection answerer: what to describe).
//! `edgectl mesh [DIR]`: writes what `make mesh` starts istiod and the gateway's Envoy from
//! (default `.run/mesh`): istiod's files (`istio/base` with the local overlay), its mesh
//! configuration, and Envoy's bootstrap.
//! `edgectl istiod PILOT_DISCOVERY DIR`: runs istiod on what `edgectl mesh` wrote to DIR.
//! `edgectl openapi [EDGE_JSON]`: prints the OpenAPI 3.1 document the edge serves at
//! `transcoder.openapi.path`.
//! `edgectl policy apply [EDGE_JSON]`: pushes the filters' configuration (policy included) to
//! the running local Envoy, through the ECDS files it watches in .run/xds, and waits until
//! Envoy has taken it (or says it refused it); nothing restarts.

use edgectl::{load_digests, EdgeConfig};
use std::path::Path;
use std::process::ExitCode;

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    let command = args.first().map(String::as_str).unwrap_or("render");
    if command == "digests" {
        let digests = edgectl::wasm_digests(Path::new("target/filters"))?;
        let text = serde_json::to_string_pretty(&digests).map_err(|e| e.to_string())?;
        return write(
            Path::new("istio/base/wasm-digests.json"),
            &format!("{text}\n"),
        );
    }
    if command == "services" {
        // For envoy/run-local.sh: `name binary port`, in start order.
        let config = EdgeConfig::load(Path::new("envoy/edge.json"))?;
        for name in config.start_order()? {
            let service = &config.services[name];
            println!("{name} {} {}", service.binary(name), service.port);
        }
        return Ok(());
    }
    if command == "service-env" {
        let config = EdgeConfig::load(Path::new("envoy/edge.json"))?;
        match args.get(1) {
            Some(name) => {
                for (variable, value) in config.own_env(name)? {
                    println!("{variable}={value}");
                }
            }
            None => {
                if let Some(tracing) = &config.tracing {
                    println!("OTEL_EXPORTER_OTLP_ENDPOINT=http://{}", tracing.collector);
                }
            }
        }
        return Ok(());
    }
    if command == "openapi" {
        let source = args.get(1).map_or("envoy/edge.json", String::as_str);
        let config = EdgeConfig::load(Path::new(source))?;
        let document = config.openapi().map_err(|e| format!("{source}: {e}"))?;
        println!(
            "{}",
            serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    if command == "envoy" {
        // `EDGE_TARGET=native make run`: the local bootstrap for that build (envoy/envoy.yaml,
        // committed, is the Wasm one).
        let config = EdgeConfig::load(Path::new("envoy/edge.json"))?;
        print!(
            "{}",
            edgectl::render_local_envoy(&config, edgectl::Target::from_env()?)?
        );
        return Ok(());
    }
    if command == "policy" {
        if args.get(1).map(String::as_str) != Some("apply") {
            return Err("use: edgectl policy apply [EDGE_JSON]".into());
        }
        let source = args.get(2).map_or("envoy/edge.json", String::as_str);
        let config = EdgeConfig::load(Path::new(source))?;
        // `EDGE_TARGET=native make policy`: the files name the build the running Envoy loads.
        let topology = edgectl::Topology::local(&config, edgectl::Target::from_env()?);
        let outcome = edgectl::apply_policy(
            &config,
            &topology.module,
            Path::new(edgectl::LOCAL_XDS_DIR),
            &format!("127.0.0.1:{}", topology.admin_port),
            std::time::Duration::from_secs(10),
        )?;
        println!("{source}: {outcome}");
        return Ok(());
    }
    if command == "mesh" {
        // For `make mesh`: the gateway as `make run`'s, served by a local istiod.
        let dir = args.get(1).map_or(".run/mesh", String::as_str);
        let config = EdgeConfig::load(Path::new("envoy/edge.json"))?;
        let local = edgectl::Topology::local(&config, edgectl::Target::Wasm);
        let wasm_dir = std::fs::canonicalize(&local.module.dir)
            .map_err(|e| format!("{}: {e} (run make wasm)", local.module.dir))?;
        let topology = edgectl::MeshTopology {
            istiod: edgectl::IstiodPorts::MESH.xds_addr(),
            gateway_port: local.listen_port,
            admin_port: local.admin_port,
            wasm_dir: wasm_dir.display().to_string(),
            service_addrs: local.service_addrs,
            variant: edgectl::MeshVariant::WasmPlugin,
        };
        let digests = load_digests(Path::new("istio/base/wasm-digests.json"))?;
        // istiod reads its files from an fs:// URL: the directory must be absolute.
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
        let absolute = std::fs::canonicalize(dir).map_err(|e| format!("{dir}: {e}"))?;
        edgectl::write_mesh(&config, &digests, &topology, &absolute)?;
        println!("wrote {dir}/istio (istiod's files), {dir}/mesh.yaml, {dir}/envoy.yaml and {dir}/envoy.flags");
        return Ok(());
    }
    if command == "istiod" {
        // For `make mesh`: becomes istiod, on the files `edgectl mesh` wrote.
        use std::os::unix::process::CommandExt;
        let (Some(binary), Some(dir)) = (args.get(1), args.get(2)) else {
            return Err("use: edgectl istiod PILOT_DISCOVERY DIR".into());
        };
        // istiod runs in DIR, so both paths are made absolute first.
        let absolute = |path: &str| std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"));
        let (binary, dir) = (absolute(binary)?, absolute(dir)?);
        let error = edgectl::istiod_command(&binary, &dir, edgectl::IstiodPorts::MESH).exec();
        return Err(format!("cannot run {}: {error}", binary.display()));
    }
    let source = args.get(1).map_or("envoy/edge.json", String::as_str);
    let config = EdgeConfig::load(Path::new(source))?;
    // Errors name the file they are about, whichever it is.
    let in_source = |e: String| format!("{source}: {e}");
    let local = config.local_files().map_err(in_source)?;
    let render_istio = || -> Result<_, String> {
        let digests = load_digests(Path::new("istio/base/wasm-digests.json"))?;
        config.render_istio(&digests).map_err(in_source)
    };
    match command {
        "check" => {
            // A configuration for a local Envoy alone has no "istio" section to check.
            if config.istio.is_some() {
                render_istio()?;
                config.render_envoy_gateway().map_err(in_source)?;
            }
            println!("{source}: ok");
            Ok(())
        }
        "render" => {
            let istio = render_istio()?;
            let envoy_gateway = (
                edgectl::ENVOY_GATEWAY_FILE,
                config.render_envoy_gateway().map_err(in_source)?,
            );
            for (file, text) in local.into_iter().chain([envoy_gateway]) {
                let path = Path::new(file);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                write(path, &text)?;
            }
            for (file, text) in &istio {
                write(&Path::new("istio/base").join(file), text)?;
            }
            Ok(())
        }
        other => Err(format!(
            "unknown command {other:?}; use render, check, digests, mesh, istiod or policy apply"
        )),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("edgectl: {error}");
            ExitCode::FAILURE
        }
    }
}
