//! Everything a person sees. The pipeline sends [`Event`]s over an event
//! bus (`events.rs`); a renderer (`progress/`) turns them into a live
//! display on a terminal or plain prefixed lines, and ends a run with its
//! summary (`summary.rs`). Commands print their own results through the
//! never-panicking macros of `print.rs`.

#[macro_use]
mod print;
mod events;
mod plan;
mod progress;
mod prompt;
mod summary;
mod table;
pub mod timings;

pub use events::{Events, SummaryRow};

/// "1 machine", "2 machines".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
pub use plan::render as plan_text;
pub use print::{prefixed, stdout_error, write_stderr, write_stdout, write_stdout_bytes};
pub use progress::{force_plain, start};
pub use prompt::{ask, can_ask};
pub use table::{Stream, table_on};
