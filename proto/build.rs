//! Generates the Rust code of the API and plugin payloads from the .proto
//! files, with the vendored protoc, plus a descriptor set for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let well_known = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();

    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        // Maps (work budgets by name) keep their keys in order.
        .btree_map(".")
        .file_descriptor_set_path(out_dir.join("inferd_descriptor.bin"))
        .compile_protos(
            &[
                "inferd/v1/inference.proto",
                "inferd/v1/models.proto",
                "inferd/plugin/v1/plugin.proto",
                "inference/grpc_predict_v2.proto",
            ],
            &[".", well_known.to_str().expect("utf-8 include path")],
        )?;
    Ok(())
}
