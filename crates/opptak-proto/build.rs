//! Compiles `proto/opptak/v1/*.proto` with protox (pure Rust, no system protoc).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("opptak/v1/telephony.proto"),
        root.join("opptak/v1/events.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
