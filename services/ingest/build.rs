//! Compiles `proto/trygg/v1/*.proto` with protox (a protobuf compiler in Rust), so building
//! trygg needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../../proto";
    let file = "../../proto/trygg/v1/ingest.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], [root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
