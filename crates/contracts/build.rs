//! Compiles `shared/proto/*.proto` with protox (pure Rust, so no `protoc` binary is needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../../shared/proto";
    println!("cargo:rerun-if-changed={proto_dir}");
    let files = protox::compile([format!("{proto_dir}/inventory.proto")], [proto_dir])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(files)?;
    Ok(())
}
