//! Compiles `proto/gatehouse/v1/*.proto` into the `gatehouse.v1` Rust API.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate unless `PROTOC` is set, so a
//! fresh machine needs nothing installed beyond the Rust toolchain.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the
        // environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let include = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/gatehouse/v1/common.proto",
        "proto/gatehouse/v1/auth.proto",
        "proto/gatehouse/v1/keys.proto",
        "proto/gatehouse/v1/accounts.proto",
        "proto/gatehouse/v1/verifier.proto",
        "proto/gatehouse/v1/audit.proto",
        "proto/gatehouse/v1/scopes.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        // Malformed request messages are the caller's mistake: see `codec`.
        .codec_path("crate::codec::Codec")
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out_dir.join("gatehouse_v1_descriptor.bin"))
        .compile_protos(
            &protos.map(PathBuf::from),
            &[PathBuf::from("proto"), include],
        )?;
    Ok(())
}
