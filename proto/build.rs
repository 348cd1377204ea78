//! Compiles `platform/*.proto` with protox (no system `protoc` needed) into tonic/prost code and
//! one descriptor set, which the services serve through reflection and the edge transcodes with.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "platform/acl.proto",
    "platform/authority.proto",
    "platform/catalog.proto",
    "platform/customer.proto",
    "platform/item.proto",
    "platform/telemetry.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-changed=google");

    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_imports(true);
    compiler.open_files(PROTOS)?;
    // Encoded by protox itself: going through prost-types would drop the `google.api.http`
    // method options (extensions), which the transcoder needs.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("platform_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    // The same with the comments (source info), for the API description (`edgectl openapi`):
    // 2.5 times the size, which the filters need not parse.
    let mut documented = protox::Compiler::new(["."])?;
    documented.include_imports(true).include_source_info(true);
    documented.open_files(PROTOS)?;
    fs::write(
        out_dir.join("platform_descriptor_documented.bin"),
        documented.encode_file_descriptor_set(),
    )?;

    // Messages only for the filters (wasm32): they call out through the proxy, not tonic.
    let grpc = env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
