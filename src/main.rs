//! nixops: deploy networks of NixOS machines, compatible with NixOps.

// First, so that its printing macros serve every module.
#[macro_use]
mod ui;

mod cli;
mod deploy;
mod network;
mod nix;
mod process;
mod ssh;
mod state;

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
        // Its own report of a failed write would panic on a closed stderr.
        .log_internal_errors(false)
        .init();
    let mut code = match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            1
        }
    };
    if let Some(e) = ui::stdout_error() {
        errln!("error: cannot write the output: {e}");
        if code == 0 {
            code = 1;
        }
    }
    std::process::exit(code);
}
