//! nixops: deploy networks of NixOS machines, compatible with NixOps.

mod cli;
mod deploy;
mod network;
mod nix;
mod process;
mod ssh;
mod state;
mod ui;

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = cli::Cli::parse();
    let filter = if cli.global.debug {
        "nixops=debug"
    } else {
        "nixops=warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NIXOPS_LOG").unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    let code = match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
