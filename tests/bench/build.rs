//! Compiles the benchmark's own tiny broadcast proto with `protox` (pure
//! Rust, no system `protoc`). Payloads are `bytes::Bytes`, so the server
//! forwards one frame to many sessions without copying it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/bench/v1/bench.proto";
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".bench.v1.Frame.payload")
        .compile_fds(fds)?;
    Ok(())
}
