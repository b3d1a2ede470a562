//! nixops: deploy networks of NixOS machines, compatible with NixOps.

// First, so that its printing macros serve every module.
#[macro_use]
mod ui;

mod backend;
mod cli;
mod deploy;
mod host;
mod keys;
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
    // Before anything is printed: a shell asking for completions.
    cli::complete_if_asked();
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
        // Colour only for a person at a terminal, and never with NO_COLOR.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
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
/// and die of that signal at once (so a shell reports 128 + its number and
/// a script's loop stops, as for any program Ctrl-C ends). This runs on a
/// runtime thread, so it also works while the main thread blocks (a prompt,
/// an editor). Children get SIGTERM as we die (see `process::command`) and
/// stop on their own: Nix stops its builders, ssh its session (magic
/// rollback's guard on the machine decides by itself). State is safe:
/// every write is one SQLite transaction. A signal that we were started
/// with ignored (`nohup`, `cmd &` in a script) stays ignored.
fn on_signals_exit() {
    let mut handlers = Vec::new();
    for (kind, name, number) in [
        (SignalKind::interrupt(), "SIGINT", libc::SIGINT),
        (SignalKind::terminate(), "SIGTERM", libc::SIGTERM),
        (SignalKind::hangup(), "SIGHUP", libc::SIGHUP),
    ] {
        if ignored(number) {
            continue;
        }
        match signal(kind) {
            Ok(s) => handlers.push((s, name, number)),
            Err(e) => tracing::warn!("cannot handle {name}: {e}"),
        }
    }
    if handlers.is_empty() {
        return;
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
        // SAFETY: plain system calls; the default action ends the process.
        unsafe {
            libc::signal(number, libc::SIG_DFL);
            libc::raise(number);
        }
        std::process::exit(128 + number);
    });
}

/// Whether `signal` is ignored (as inherited from whoever started us).
fn ignored(signal: libc::c_int) -> bool {
    // SAFETY: only reads the current action into a zeroed struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}
