//! Questions on the terminal: asked on stderr, answered on stdin.

use std::io::{self, BufRead, IsTerminal, Write};

/// Whether there is a terminal to ask on (stdin is one).
pub fn can_ask() -> bool {
    io::stdin().is_terminal()
}

/// Asks `question` (y/N); only "y" or "yes" is yes.
pub fn ask(question: &str) -> io::Result<bool> {
    err!("{question} (y/N) ");
    io::stderr().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
