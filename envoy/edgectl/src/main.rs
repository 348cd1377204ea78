//! `edgectl render [EDGE_JSON]`: writes envoy/envoy.yaml from envoy/edge.json.
//! `edgectl check [EDGE_JSON]`: validates the configuration without writing anything.

use edgectl::{render_local_envoy, EdgeConfig};
use std::path::Path;
use std::process::ExitCode;

fn run(args: &[String]) -> Result<(), String> {
    let command = args.first().map(String::as_str).unwrap_or("render");
    let source = args.get(1).map_or("envoy/edge.json", String::as_str);
    let config = EdgeConfig::load(Path::new(source))?;
    let rendered = render_local_envoy(&config)?;
    match command {
        "check" => {
            println!("{source}: ok");
            Ok(())
        }
        "render" => {
            let target = Path::new(source).with_file_name("envoy.yaml");
            std::fs::write(&target, rendered)
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            println!("wrote {}", target.display());
            Ok(())
        }
        other => Err(format!("unknown command {other:?}; use render or check")),
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
