use anyhow::Result;
use clap::{Args, CommandFactory};

use super::Cli;

#[derive(Args, Debug)]
pub struct CompletionOpts {
    /// The shell
    pub shell: clap_complete::Shell,
}

/// Prints a completion script for the shell, from the CLI definition.
pub fn completions(o: CompletionOpts) -> Result<i32> {
    let mut cmd = Cli::command();
    // clap_complete panics when its writer fails (a closed pipe): it writes
    // to memory, and the output goes out without panicking.
    let mut script = Vec::new();
    clap_complete::generate(o.shell, &mut cmd, "nixops", &mut script);
    crate::ui::write_stdout_bytes(&script);
    Ok(0)
}
