//! Shell completion, answered by nixops itself (clap_complete's dynamic
//! completion): the shell calls `COMPLETE=SHELL nixops -- WORDS...` at each
//! TAB, so deployment names, machine names and `@tags` come from the state
//! as it is now. Only the state is read, never Nix; anything that goes wrong
//! gives no candidates, and nothing is printed on the terminal.

use std::ffi::{OsStr, OsString};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, CommandFactory, FromArgMatches};
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Shells, Zsh};

use super::{Cli, Global};
use crate::state::Deployment;

/// The variable that asks for completions, as the scripts set it.
const VAR: &str = "COMPLETE";

/// How long the state may take to answer (a PostgreSQL server that does
/// not answer must not hang the shell).
const STATE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct CompletionOpts {
    /// The shell
    pub shell: clap_complete::Shell,
}

/// Prints the script that makes the shell ask nixops for completions.
pub fn completions(o: CompletionOpts) -> Result<i32> {
    let shell = SHELLS
        .completer(&o.shell.to_string())
        .expect("clap_complete completes every shell it names");
    let mut script = Vec::new();
    shell.write_registration(VAR, "nixops", "nixops", &completer(), &mut script)?;
    crate::ui::write_stdout_bytes(&script);
    Ok(0)
}

/// The program the script calls, as clap_complete's own registration names
/// it: as invoked (`nixops` is looked up on $PATH at each TAB, so an
/// upgrade is used at once), made absolute when invoked by a relative path.
fn completer() -> String {
    let arg0 = std::path::PathBuf::from(std::env::args_os().next().unwrap_or_else(|| "nixops".into()));
    let path = match std::env::current_dir() {
        Ok(dir) if arg0.components().count() > 1 => dir.join(arg0),
        _ => arg0,
    };
    path.to_string_lossy().into_owned()
}

/// Answers a completion request (`COMPLETE=SHELL nixops -- WORDS`) or
/// prints the registration script (`COMPLETE=SHELL nixops`), and exits;
/// returns at once when no completion is asked for.
pub fn answer_if_asked() {
    if requested() {
        quiet_stderr();
    }
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .shells(SHELLS)
        .complete();
}

/// clap_complete's shells, each offering only values where there are any.
const SHELLS: Shells<'static> = Shells(&[
    &ValuesFirst(&Bash),
    &ValuesFirst(&Elvish),
    &ValuesFirst(&Fish),
    &ValuesFirst(&Powershell),
    &ValuesFirst(&Zsh),
]);

/// A shell's completion, but where nothing is typed yet and there are
/// values to offer (machines, deployments, commands), options are left out
/// (as git does): they come once a `-` is typed. clap would list all ~25
/// global options after the three machine names of `nixops ssh -d d <TAB>`.
struct ValuesFirst(&'static dyn EnvCompleter);

impl EnvCompleter for ValuesFirst {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn is(&self, name: &str) -> bool {
        self.0.is(name)
    }

    fn write_registration(
        &self,
        var: &str,
        name: &str,
        bin: &str,
        completer: &str,
        buf: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        self.0.write_registration(var, name, bin, completer, buf)
    }

    fn write_complete(
        &self,
        cmd: &mut clap::Command,
        args: Vec<OsString>,
        current_dir: Option<&std::path::Path>,
        buf: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        let nothing_typed = args.get(cursor(args.len())).is_none_or(|w| w.is_empty());
        let mut out = Vec::new();
        self.0.write_complete(cmd, args, current_dir, &mut out)?;
        if nothing_typed {
            // Every shell's answer is its candidates, each starting with
            // its value, joined by $_CLAP_IFS or a newline.
            let sep = std::env::var("_CLAP_IFS").unwrap_or_else(|_| "\n".into());
            out = values_only(&String::from_utf8_lossy(&out), &sep).into_bytes();
        }
        buf.write_all(&out)
    }
}

/// The candidates that are no options, if there are any.
fn values_only(answer: &str, sep: &str) -> String {
    let entries: Vec<&str> = answer.split(sep).collect();
    if !entries.iter().any(|e| !e.is_empty() && !e.starts_with('-')) {
        return answer.to_owned();
    }
    entries
        .into_iter()
        .filter(|e| !e.starts_with('-'))
        .collect::<Vec<_>>()
        .join(sep)
}

/// Whether this run is a shell asking for candidates (words after `--`).
fn requested() -> bool {
    std::env::var_os(VAR).is_some_and(|v| !v.is_empty() && v != "0")
        && std::env::args_os()
            .skip(1)
            .skip_while(|a| a != "--")
            .nth(1)
            .is_some()
}

/// Sends stderr to /dev/null: while the shell draws the command line, a
/// message (a state that cannot be read, clap's own "no completion") would
/// land in the middle of it.
fn quiet_stderr() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 on two open descriptors; fd 2 is replaced atomically.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDERR_FILENO) };
    }
}

/// For `-d`: the deployments' names (a UUID for one without a name).
pub fn deployment() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let current = current.to_string_lossy();
        state().map(|s| deployments(&s.all, &current)).unwrap_or_default()
    })
}

/// For an argument that names a machine of the deployment the command line
/// selects.
pub fn machine() -> ArgValueCompleter {
    machines_of_selected(false)
}

/// For `--include`, `--exclude`, `--on`: machine names and `@tags`.
pub fn selector() -> ArgValueCompleter {
    machines_of_selected(true)
}

fn machines_of_selected(tags: bool) -> ArgValueCompleter {
    ArgValueCompleter::new(move |current: &OsStr| {
        let current = current.to_string_lossy();
        // `--on a,b,<TAB>`: clap hands us what follows the last comma; the
        // ones before it are named already.
        let words = request_words();
        let named = already_listed(words.get(cursor(words.len())).map(String::as_str));
        selected()
            .map(|d| machines(d, &current, tags))
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !named.iter().any(|n| *n == c.get_value().to_string_lossy()))
            .collect()
    })
}

/// The items of a comma-separated word before its last comma (`--on=a,b,c`
/// or `a,b,c`: `a` and `b`).
fn already_listed(word: Option<&str>) -> Vec<String> {
    let Some(word) = word else { return Vec::new() };
    let list = word.rsplit_once('=').map_or(word, |(_, v)| v);
    match list.rsplit_once(',') {
        Some((before, _)) => before.split(',').map(str::to_owned).collect(),
        None => Vec::new(),
    }
}

/// For an argument that names any resource of the deployment
/// (`delete-resources`).
pub fn resource() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let current = current.to_string_lossy();
        let Some(d) = selected() else {
            return Vec::new();
        };
        d.resources
            .keys()
            .filter(|n| n.starts_with(&*current))
            .map(CompletionCandidate::new)
            .collect()
    })
}

fn deployments(all: &[Deployment], current: &str) -> Vec<CompletionCandidate> {
    let mut out: Vec<CompletionCandidate> = all
        .iter()
        .filter_map(|d| {
            // A UUID (prefix) typed is completed as one.
            let value = match d.name() {
                Some(name) if name.starts_with(current) => name,
                _ if d.uuid.starts_with(current) => d.uuid.as_str(),
                _ => return None,
            };
            Some(CompletionCandidate::new(value).help(Some(d.description().to_owned().into())))
        })
        .collect();
    out.sort_by(|a, b| a.get_value().cmp(b.get_value()));
    out
}

/// The machines' names, then (with `tags`) `@tag` for every tag, each
/// helped by the machines that have it. Obsolete machines (gone from the
/// network) are left out: no command that names a machine acts on them.
fn machines(d: &Deployment, current: &str, tags: bool) -> Vec<CompletionCandidate> {
    let mut out: Vec<CompletionCandidate> = d
        .machines()
        .filter(|m| !m.obsolete() && m.name.starts_with(current))
        .map(|m| {
            // The host it is reached at, when that is not its name.
            let host = m.get("targetHost").filter(|h| *h != m.name);
            CompletionCandidate::new(&m.name).help(host.map(|h| h.to_owned().into()))
        })
        .collect();
    if tags {
        let mut by_tag = std::collections::BTreeMap::<String, Vec<&str>>::new();
        for m in d.machines().filter(|m| !m.obsolete()) {
            let tags: Vec<String> = m
                .get("tags")
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            for t in tags {
                by_tag.entry(format!("@{t}")).or_default().push(&m.name);
            }
        }
        out.extend(
            by_tag
                .into_iter()
                .filter(|(t, _)| t.starts_with(current))
                .map(|(t, names)| CompletionCandidate::new(t).help(Some(names.join(", ").into()))),
        );
    }
    out
}

/// What the state holds, read once per completion request.
struct Known {
    all: Vec<Deployment>,
    /// The one the command line selects (-d, $NIXOPS_DEPLOYMENT, the only
    /// one, or the one bound to the hive here), if it selects one.
    selected: Option<usize>,
}

fn state() -> Option<&'static Known> {
    static KNOWN: OnceLock<Option<Known>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            let words = request_words();
            let given = given(&words, cursor(words.len()));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(read_state(&given));
            });
            rx.recv_timeout(STATE_TIMEOUT).ok().flatten()
        })
        .as_ref()
}

fn selected() -> Option<&'static Deployment> {
    let s = state()?;
    s.all.get(s.selected?)
}

fn read_state(given: &Given) -> Option<Known> {
    let g = given.global()?;
    let all = g.read_store().ok()?.deployments().ok()?;
    let selected = g
        .resolve(&all)
        .ok()
        .and_then(|d| all.iter().position(|x| x.uuid == d.uuid));
    Some(Known { all, selected })
}

/// The words being completed: what follows the first `--` of
/// `nixops -- nixops ssh -d staging ""`.
fn request_words() -> Vec<String> {
    std::env::args_os()
        .skip(1)
        .skip_while(|a| a != "--")
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The index of the word under the cursor: bash and zsh say which, the
/// other shells pass the words up to the cursor.
fn cursor(words: usize) -> usize {
    std::env::var("_CLAP_COMPLETE_INDEX")
        .ok()
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| words.saturating_sub(1))
}

/// The options of the command line that decide which state and which
/// deployment: `-d`, `-s`, `-f`, wherever they are (they are global).
#[derive(Debug, Default, PartialEq)]
struct Given {
    deployment: Option<String>,
    state: Option<String>,
    config: Option<String>,
}

/// Reads `-d`/`-s`/`-f` from the words, leaving out the one under the
/// cursor (being typed) and everything after `--` (a remote command).
fn given(words: &[String], cursor: usize) -> Given {
    let mut out = Given::default();
    let mut i = 1;
    while i < words.len() {
        let word = &words[i];
        if word == "--" {
            break;
        }
        if i != cursor {
            for (short, long, slot) in [
                ("-d", "--deployment", &mut out.deployment),
                ("-s", "--state", &mut out.state),
                ("-f", "--config", &mut out.config),
            ] {
                let inline = word
                    .strip_prefix(&format!("{long}="))
                    .or_else(|| {
                        word.strip_prefix(short)
                            .filter(|v| !v.is_empty() && !word.starts_with("--"))
                    })
                    .map(|v| v.strip_prefix('=').unwrap_or(v));
                if let Some(v) = inline {
                    *slot = Some(v.to_owned());
                } else if (word == short || word == long) && i + 1 < words.len() && i + 1 != cursor {
                    *slot = Some(words[i + 1].clone());
                    i += 1;
                }
            }
        }
        i += 1;
    }
    out
}

impl Given {
    /// The global options as nixops would take them, with $NIXOPS_STATE and
    /// $NIXOPS_DEPLOYMENT where the words give none.
    fn global(&self) -> Option<Global> {
        let mut argv: Vec<OsString> = vec!["nixops".into()];
        // The shell passes words unexpanded: `-s ~/x` is the user's file.
        let home = |v: &str| match (v.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(h)) => std::path::Path::new(&h).join(rest).into_os_string(),
            _ => v.into(),
        };
        for (long, value) in [
            ("--deployment", &self.deployment),
            ("--state", &self.state),
            ("--config", &self.config),
        ] {
            if let Some(v) = value {
                let mut arg = OsString::from(format!("{long}="));
                arg.push(home(v));
                argv.push(arg);
            }
        }
        let cmd = Global::augment_args(clap::Command::new("nixops"));
        Global::from_arg_matches(&cmd.try_get_matches_from(argv).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Resource;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn options_are_read_wherever_they_are_but_not_under_the_cursor() {
        let w = words("nixops -s /tmp/x ssh -d staging web");
        let g = given(&w, 6);
        assert_eq!(g.deployment.as_deref(), Some("staging"));
        assert_eq!(g.state.as_deref(), Some("/tmp/x"));
        let w = words("nixops ssh --deployment=prod -f hive.nix web");
        let g = given(&w, 5);
        assert_eq!(g.deployment.as_deref(), Some("prod"));
        assert_eq!(g.config.as_deref(), Some("hive.nix"));
        assert_eq!(
            given(&words("nixops ssh -dprod x"), 3).deployment.as_deref(),
            Some("prod")
        );
        // The word being typed is no choice yet, nor is a value it stands for.
        assert_eq!(given(&words("nixops ssh -d stag"), 3), Given::default());
        assert_eq!(given(&words("nixops ssh -d"), 2), Given::default());
        assert_eq!(given(&words("nixops ssh -d a"), 3).deployment, None);
        // After `--`: the remote command's words.
        assert_eq!(given(&words("nixops ssh a -- -d x"), 2), Given::default());
        // A long option that merely starts like a short one.
        assert_eq!(given(&words("nixops deploy --dry-run a"), 3), Given::default());
    }

    fn deployment(name: Option<&str>, uuid: &str, machines: &[(&str, &str)]) -> Deployment {
        let mut d = Deployment {
            uuid: uuid.into(),
            ..Default::default()
        };
        if let Some(n) = name {
            d.attrs.insert("name".into(), n.into());
        }
        for (i, (m, tags)) in machines.iter().enumerate() {
            let mut attrs = crate::state::Attrs::new();
            attrs.insert("tags".into(), (*tags).into());
            d.resources.insert(
                (*m).into(),
                Resource {
                    id: i as i64,
                    name: (*m).into(),
                    kind: "none".into(),
                    attrs,
                },
            );
        }
        d
    }

    fn values(c: &[CompletionCandidate]) -> Vec<String> {
        c.iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn options_only_where_there_is_nothing_else() {
        assert_eq!(values_only("a\x0bb\x0b--now\x0b-d", "\x0b"), "a\x0bb");
        assert_eq!(values_only("--now\x0b-d", "\x0b"), "--now\x0b-d");
        // fish: one candidate a line, with its help after a tab.
        assert_eq!(values_only("a\tweb\n--now\thelp\n", "\n"), "a\tweb\n");
        assert_eq!(values_only("", "\n"), "");
    }

    #[test]
    fn deployments_by_name_or_uuid() {
        let all = [
            deployment(Some("staging"), "1111-a", &[]),
            deployment(Some("prod"), "2222-b", &[]),
            deployment(None, "3333-c", &[]),
        ];
        assert_eq!(values(&deployments(&all, "")), ["3333-c", "prod", "staging"]);
        assert_eq!(values(&deployments(&all, "st")), ["staging"]);
        assert_eq!(values(&deployments(&all, "22")), ["2222-b"]);
    }

    #[test]
    fn names_before_the_last_comma_are_listed_already() {
        assert_eq!(already_listed(Some("web1,@eu,w")), ["web1", "@eu"]);
        assert_eq!(already_listed(Some("--on=web1,")), ["web1"]);
        assert!(already_listed(Some("web1")).is_empty());
        assert!(already_listed(None).is_empty());
    }

    #[test]
    fn machines_and_their_tags() {
        let d = deployment(
            Some("d"),
            "u",
            &[
                ("web1", r#"["web","eu"]"#),
                ("web2", r#"["web"]"#),
                ("db", "not json"),
            ],
        );
        assert_eq!(values(&machines(&d, "", false)), ["db", "web1", "web2"]);
        assert_eq!(
            values(&machines(&d, "", true)),
            ["db", "web1", "web2", "@eu", "@web"]
        );
        assert_eq!(values(&machines(&d, "@w", true)), ["@web"]);
        let web = machines(&d, "@web", true);
        assert_eq!(
            web[0].get_help().map(ToString::to_string).as_deref(),
            Some("web1, web2")
        );
        assert_eq!(values(&machines(&d, "w", true)), ["web1", "web2"]);
        let mut gone = d.clone();
        gone.resources
            .get_mut("web2")
            .unwrap()
            .attrs
            .insert("obsolete".into(), "1".into());
        assert_eq!(values(&machines(&gone, "", true)), ["db", "web1", "@eu", "@web"]);
        assert_eq!(
            machines(&gone, "@web", true)[0]
                .get_help()
                .map(ToString::to_string)
                .as_deref(),
            Some("web1")
        );
    }
}
