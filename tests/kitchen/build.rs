//! Compiles the test-only kitchen API (importing google/api from proto/) into
//! tonic/prost code and a descriptor set that keeps the `google.api.http` options.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto", "../../proto"])?;
    compiler.include_imports(true);
    compiler.open_files(["kitchen/v1/kitchen.proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("kitchen_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure().compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
