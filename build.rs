//! Builds the evaluation trace (src/network/eval-trace.c), a shared object
//! preloaded into the Nix processes that evaluate network files, and hands
//! its path to the crate, which embeds it.

fn main() {
    man_date();
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

/// The man pages' date (their header has a field for it): the commit's date
/// (`YYYY-MM-DD`), or $SOURCE_DATE_EPOCH's day for reproducible builds.
fn man_date() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=.git/HEAD");
    let from_epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|secs| jiff::Timestamp::from_second(secs).ok())
        .map(|t| t.strftime("%Y-%m-%d").to_string());
    let from_git = || {
        let out = std::process::Command::new("git")
            .args(["log", "-1", "--format=%cs"])
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let date = from_epoch
        .or_else(from_git)
        .unwrap_or_else(|| "1970-01-01".into());
    println!("cargo:rustc-env=NIXOPS_MAN_DATE={date}");
}
