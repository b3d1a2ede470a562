//! The manual pages, from the CLI definition: `nixops(1)` and one
//! `nixops-COMMAND(1)` for every command, each with the environment and the
//! files that nixops reads.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory};
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use super::Cli;

#[derive(Args, Debug)]
pub struct Opts {
    /// Write every page (nixops.1 and nixops-COMMAND.1 for each command)
    /// into this directory instead of printing one, e.g.
    /// ~/.local/share/man/man1
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
    /// The command whose page is printed (default: nixops' own)
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    pub command: Option<String>,
}

pub fn run(o: Opts) -> Result<i32> {
    let pages = pages()?;
    if let Some(dir) = o.dir {
        if !dir.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        for (name, page) in &pages {
            let file = dir.join(name);
            std::fs::write(&file, page).with_context(|| format!("cannot write {}", file.display()))?;
        }
        errln!("wrote {} pages to {}", pages.len(), dir.display());
        return Ok(0);
    }
    let name = match &o.command {
        None => "nixops.1".to_owned(),
        Some(c) => format!("nixops-{}.1", canonical(c)),
    };
    match pages.iter().find(|(n, _)| *n == name) {
        Some((_, page)) => crate::ui::write_stdout_bytes(page),
        None => bail!(
            "there is no command ‘{}’ (‘nixops --help’ lists them)",
            o.command.unwrap_or_default()
        ),
    }
    Ok(0)
}

/// A command's name, its aliases taken (`introspect` is `eval`).
fn canonical(name: &str) -> String {
    let cmd = Cli::command();
    cmd.find_subcommand(name)
        .map(|s| s.get_name().to_owned())
        .unwrap_or_else(|| name.to_owned())
}

/// Every page: its file name and its roff.
pub fn pages() -> Result<Vec<(String, Vec<u8>)>> {
    // `help` is a command for the terminal; its page would say nothing.
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = vec![page(root.clone(), true)?];
    for sub in root.get_subcommands() {
        pages.push(page(sub.clone(), false)?);
    }
    Ok(pages)
}

fn page(mut cmd: clap::Command, root: bool) -> Result<(String, Vec<u8>)> {
    // clap's own usage line, as `--help` shows it: clap_mangen's would list
    // every global option, and a value-taking short one as `[-I ]`.
    let usage = cmd.render_usage().to_string();
    let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage).to_owned();
    let cmd = cmd.override_usage(usage);
    let has_subcommands = cmd.has_subcommands();
    let man = Man::new(cmd)
        .source(concat!("nixops ", env!("CARGO_PKG_VERSION")))
        .date(env!("NIXOPS_MAN_DATE"))
        .manual("nixops manual");
    let mut ours = Roff::default();
    environment(&mut ours);
    files(&mut ours);
    if !root {
        ours.control("SH", ["SEE ALSO"]);
        ours.text([bold("nixops"), roman("(1)")]);
    }
    // Every section comes with roff's preamble (how to print an
    // apostrophe), which a page needs once.
    let preamble = Roff::new().render();
    let mut out = preamble.clone().into_bytes();
    let mut add = |section: &dyn Fn(&mut dyn Write) -> std::io::Result<()>| -> std::io::Result<()> {
        let mut text = Vec::new();
        section(&mut text)?;
        out.extend_from_slice(text.strip_prefix(preamble.as_bytes()).unwrap_or(&text));
        Ok(())
    };
    add(&|w| man.render_title(w))?;
    add(&|w| man.render_name_section(w))?;
    add(&|w| man.render_synopsis_section(w))?;
    add(&|w| man.render_description_section(w))?;
    add(&|w| man.render_options_section(w))?;
    if has_subcommands {
        add(&|w| man.render_subcommands_section(w))?;
    }
    add(&|w| ours.to_writer(w))?;
    add(&|w| man.render_version_section(w))?;
    Ok((man.get_filename(), out))
}

/// What nixops reads from its environment (`env =` of the options, and
/// every `std::env::var` of the sources).
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "NIXOPS_STATE",
        "The state, as -s: a state file, or a PostgreSQL database (postgresql://user@host:port/db, or libpq's key=value form). Default: ~/.nixops/deployments.nixops.",
    ),
    (
        "NIXOPS_DEPLOYMENT",
        "The deployment, as -d: its name, UUID or a UUID prefix.",
    ),
    (
        "NIXOPS_SSH_PERSIST",
        "Seconds an SSH master connection stays open after the command ends, as --ssh-persist (default 60).",
    ),
    (
        "NIXOPS_PLAIN",
        "When set, progress is printed line by line, never as the live display (which is shown only when stderr is a terminal).",
    ),
    (
        "NIXOPS_LOG",
        "What the diagnostic log on stderr shows, as a tracing filter (e.g. nixops=debug). Default: nixops=warn, or nixops=debug with --debug.",
    ),
    (
        "NIX_PATH",
        "Nix's search path (<nixpkgs>) for network files; -I adds to it. Flake networks do not read it unless --impure.",
    ),
    ("EDITOR", "The editor of nixops edit (default vi)."),
    (
        "HOME",
        "Where the default state file and the deployment locks are (~/.nixops).",
    ),
    (
        "XDG_CACHE_HOME",
        "For a state in PostgreSQL, the evaluation cache is in $XDG_CACHE_HOME/nixops/eval-cache (default ~/.cache/nixops/eval-cache).",
    ),
    (
        "XDG_RUNTIME_DIR",
        "The SSH master connections' sockets are in $XDG_RUNTIME_DIR/nixops-ssh-UID (else /tmp/nixops-ssh-UID).",
    ),
    (
        "PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE, PGCONNECT_TIMEOUT",
        "For a state in PostgreSQL, as libpq reads them (passwords also from ~/.pgpass).",
    ),
    (
        "COMPLETE",
        "Set by the script of nixops completions SHELL: nixops then prints the candidates for the command line after --, and nothing else happens.",
    ),
];

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, text) in ENVIRONMENT {
        roff.control("TP", []);
        roff.text([bold(*name)]);
        roff.text([roman(*text)]);
    }
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    for (name, text) in [
        (
            "~/.nixops/deployments.nixops",
            "The default state: NixOps' SQLite state file (schema version 3).",
        ),
        (
            "~/.nixops/locks/UUID",
            "A deployment's lock, held while a command changes it (shared with NixOps).",
        ),
        (
            "eval-cache/",
            "Beside the state file: the evaluation cache, each machine's last evaluation with a digest of everything it read (for a state in PostgreSQL: $XDG_CACHE_HOME/nixops/eval-cache, default ~/.cache/nixops/eval-cache). --no-eval-cache neither reads nor writes it.",
        ),
        ("~/.ssh/config", "Read by ssh for every connection to a machine."),
        (
            "~/.pgpass",
            "Passwords for a state in PostgreSQL, as libpq reads it.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([italic(name)]);
        roff.text([roman(text)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(page: &[u8]) -> String {
        String::from_utf8(page.to_vec()).unwrap()
    }

    #[test]
    fn a_page_for_every_command_that_the_top_page_names() {
        let pages = pages().unwrap();
        let top = text(&pages.iter().find(|(n, _)| n == "nixops.1").unwrap().1);
        for sub in Cli::command().get_subcommands() {
            let name = format!("nixops-{}", sub.get_name());
            // roff writes a hyphen as `\-`.
            let reference = format!("{}(1)", name.replace('-', "\\-"));
            assert!(top.contains(&reference), "nixops(1) does not name {name}");
            let (_, page) = pages
                .iter()
                .find(|(n, _)| *n == format!("{name}.1"))
                .unwrap_or_else(|| panic!("no page {name}.1"));
            let page = text(page);
            for section in ["SYNOPSIS", "ENVIRONMENT", "FILES", "NIXOPS_STATE", "SEE ALSO"] {
                assert!(page.contains(section), "{name}.1 has no {section}");
            }
            assert_eq!(
                page.matches(".ds Aq").count(),
                2,
                "{name}.1: roff's preamble once"
            );
        }
        assert!(!pages.iter().any(|(n, _)| n == "nixops-help.1"));
    }

    #[test]
    fn the_synopsis_is_clap_usage() {
        let pages = pages().unwrap();
        let synopsis = |name: &str| {
            let page = text(&pages.iter().find(|(n, _)| n == name).unwrap().1);
            let after = page.split(".SH SYNOPSIS\n").nth(1).unwrap().to_owned();
            // As read: without roff's font changes and escaped hyphens.
            let section = after.split(".SH").next().unwrap();
            section
                .replace("\\fB", "")
                .replace("\\fR", "")
                .replace("\\fI", "")
                .replace("\\-", "-")
        };
        let top = synopsis("nixops.1");
        assert!(top.contains("[OPTIONS] <COMMAND>"), "{top}");
        assert!(!top.contains("-I"), "{top}");
        let ssh = synopsis("nixops-ssh.1");
        assert!(ssh.contains("nixops ssh") && ssh.contains("<MACHINE>"), "{ssh}");
    }

    #[test]
    fn every_variable_the_options_read_is_documented() {
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            if let Some(var) = arg.get_env() {
                let var = var.to_string_lossy();
                assert!(
                    ENVIRONMENT.iter().any(|(n, _)| *n == var),
                    "{var} (of --{}) is not in ENVIRONMENT",
                    arg.get_id()
                );
            }
        }
    }
}
