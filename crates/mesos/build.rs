//! Generates the wire types from spate's own `.proto` subset with a pure-Rust protobuf
//! compiler (protox), so building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mesos.proto",
        "proto/scheduler.proto",
        "proto/executor.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
