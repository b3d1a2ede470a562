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
mod tmp;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

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
    on_signals_exit();
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
    tmp::remove_all();
    std::process::exit(code);
}

/// On SIGINT (Ctrl-C), SIGTERM or SIGHUP: remove our temporary directories
/// and exit at once, with 128 + the signal's number as a shell reports it.
/// This runs on a runtime thread, so it also works while the main thread
/// blocks (a prompt, an editor). Children get SIGTERM as we exit (see
/// `process::command`) and stop on their own: Nix stops its builders, ssh
/// its session (magic rollback's guard on the machine decides by itself).
/// State is safe: every write is one SQLite transaction.
fn on_signals_exit() {
    let mut handlers = Vec::new();
    for (kind, name, number) in [
        (SignalKind::interrupt(), "SIGINT", libc::SIGINT),
        (SignalKind::terminate(), "SIGTERM", libc::SIGTERM),
        (SignalKind::hangup(), "SIGHUP", libc::SIGHUP),
    ] {
        match signal(kind) {
            Ok(s) => handlers.push((s, name, number)),
            Err(e) => tracing::warn!("cannot handle {name}: {e}"),
        }
    }
    tokio::spawn(async move {
        let waits = handlers.iter_mut().map(|(s, name, number)| {
            Box::pin(async move {
                s.recv().await;
                (*name, *number)
            })
        });
        let ((name, number), _, _) = futures::future::select_all(waits).await;
        tmp::remove_all();
        errln!();
        errln!("nixops: stopped by {name}");
        std::process::exit(128 + number);
    });
}
