//! Compiles `proto/opptak/v1/*.proto` with protox (pure Rust, no system protoc).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary reused from a cache built in
    // another checkout would otherwise carry that checkout's path.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        root.join("opptak/v1/telephony.proto"),
        root.join("opptak/v1/events.proto"),
        root.join("opptak/v1/messages.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
