//! Renderers of a run's events: a live display (one line per machine) on a
//! terminal, plain lines prefixed with the machine name otherwise.

mod live;
mod plain;

use std::io::IsTerminal;

use tokio::sync::mpsc;

use super::events::{Event, Events};

/// Starts a renderer for the run (`machines`: the ones known already, more
/// may come with [`Events::machines`]); returns the sender and a handle that
/// finishes once every sender is dropped and everything is shown.
pub fn start(machines: &[String]) -> (Events, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let live = std::io::stderr().is_terminal()
        && std::env::var_os("NIXOPS_PLAIN").is_none()
        && !PLAIN.load(std::sync::atomic::Ordering::Relaxed);
    let machines = machines.to_vec();
    crate::ui::timings::init();
    let handle = tokio::spawn(async move {
        if live {
            live::render(rx, machines).await
        } else {
            plain::render(rx).await
        }
        let report = crate::ui::timings::report();
        if !report.is_empty() {
            err!("{report}");
        }
    });
    (Events { tx }, handle)
}

static PLAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Every line as plain output, never the live display (Colmena's
/// `--verbose`; `NIXOPS_PLAIN` does the same from the environment).
pub fn force_plain() {
    PLAIN.store(true, std::sync::atomic::Ordering::Relaxed);
}

type Receiver = mpsc::UnboundedReceiver<Event>;

/// Asks on the terminal from the renderer's task, which blocks meanwhile
/// (nothing is drawn while a person answers).
fn answer(question: &str) -> bool {
    tokio::task::block_in_place(|| crate::ui::ask(question)).unwrap_or(false)
}
