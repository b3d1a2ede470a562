//! Printing that never panics. `println!` panics when its stream is closed
//! (`nixops deploy 2>&1 | head -1`), which would stop a deploy half-way; so
//! would restoring SIGPIPE's default. A closed pipe is ignored instead: the
//! command goes on and ends with its own exit code. Any other failure to
//! write stdout (a full disk) makes the command fail at its end.

use std::fmt;
use std::io::{self, Write};
use std::sync::Mutex;

/// `println!` to stdout, never panicking.
macro_rules! outln {
    () => {
        $crate::ui::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::ui::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to stdout, never panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::ui::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!`, never panicking.
macro_rules! errln {
    () => {
        $crate::ui::write_stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::ui::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!`, never panicking.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::ui::write_stderr(format_args!($($arg)*))
    };
}

/// The first failure to write stdout that was not a closed pipe.
static STDOUT_ERROR: Mutex<Option<io::Error>> = Mutex::new(None);

fn note_stdout(r: io::Result<()>) {
    if let Err(e) = r
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        STDOUT_ERROR
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }
}

pub fn write_stdout(args: fmt::Arguments<'_>) {
    note_stdout(io::stdout().lock().write_fmt(args));
}

pub fn write_stdout_bytes(bytes: &[u8]) {
    note_stdout(io::stdout().lock().write_all(bytes));
}

/// Errors writing stderr have nowhere to be told.
pub fn write_stderr(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Flushes stdout; returns the first failure to write it, if any (a closed
/// pipe does not count: whoever closed it wanted no more).
pub fn stdout_error() -> Option<io::Error> {
    note_stdout(io::stdout().lock().flush());
    STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// A command's output line as `ssh-for-each` shows it: `name> line`, on
/// stdout or stderr as the command wrote it.
pub fn prefixed(name: &str, line: &str, stderr: bool) {
    if stderr {
        errln!("{name}> {line}");
    } else {
        outln!("{name}> {line}");
    }
}
