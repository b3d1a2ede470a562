//! Builds the evaluation trace (src/network/eval-trace.c), a shared object
//! preloaded into the Nix processes that evaluate network files, and hands
//! its path to the crate, which embeds it.

fn main() {
    let src = "src/network/eval-trace.c";
    println!("cargo:rerun-if-changed={src}");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let so = out.join("libnixops-eval-trace.so");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        // LD_PRELOAD is Linux's: elsewhere the cache serves flakes only.
        std::fs::write(&so, b"").expect("OUT_DIR is writable");
        return;
    }
    let compiler = cc::Build::new().opt_level(2).get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&so)
        .arg(src)
        .arg("-ldl")
        .status()
        .expect("a C compiler runs");
    assert!(status.success(), "cannot build {src}");
}
