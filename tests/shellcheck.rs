//! Every shell script in the repository passes `shellcheck` (Debian's
//! package, installed by scripts/install-deps.sh), with no finding at any
//! level.
//!
//! The scripts are found by walking the repository: every file whose name
//! ends in `.sh` (not under target/ or hidden directories, symlinks not
//! followed). How each is linted depends on where it is:
//! - Under src/: a remote script. nixops sends it to machines and runs it
//!   with `sh -c`, so it is linted as POSIX sh (`-s sh`), whatever its first
//!   line says. A remote script sent with a library in front of it (a file
//!   of its directory named `*-lib.sh`; in Rust `concat!(include_str!(LIB),
//!   include_str!(SCRIPT))`) says so in its leading comment: "after
//!   activation-lib.sh" (line breaks and `#`s do not count). It is linted
//!   as sent, library + script, without SC2317 (the library's functions
//!   that this script does not call); the library is linted on its own too.
//! - Anywhere else: a local script, linted as its shebang says (a file that
//!   is only sourced says `# shellcheck shell=bash` instead), following the
//!   files it sources (`-x`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scripts(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let kind = e.file_type().unwrap();
        if kind.is_dir() && !name.starts_with('.') && !(dir == repo() && name == "target") {
            scripts(&e.path(), out);
        } else if kind.is_file() && name.ends_with(".sh") {
            out.push(e.path());
        }
    }
}

/// shellcheck's findings (gcc format), run in the repository with `args`
/// and `stdin`; empty when clean.
fn shellcheck(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("shellcheck")
        .args(["-f", "gcc"])
        .args(args)
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shellcheck is needed (Debian's package; scripts/install-deps.sh installs it)");
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // 0: clean, 1: findings; anything else is shellcheck failing.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "shellcheck {args:?}: {said}"
    );
    assert_eq!(
        out.status.success(),
        said.is_empty(),
        "shellcheck {args:?}: {said}"
    );
    said
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap().display().to_string()
}

/// A script's first comment lines as one line of words.
fn leading_comment(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap();
    let words: Vec<&str> = text
        .lines()
        .map_while(|l| l.strip_prefix('#'))
        .flat_map(str::split_whitespace)
        .collect();
    words.join(" ")
}

#[test]
fn every_shell_script_passes_shellcheck() {
    // The check itself works: it sees an unquoted expansion.
    assert!(shellcheck(&["-s", "sh", "-"], Some("echo $1\n")).contains("SC2086"));

    let mut all = Vec::new();
    scripts(&repo(), &mut all);
    let src = repo().join("src");
    let (remote, local): (Vec<PathBuf>, Vec<PathBuf>) = all.into_iter().partition(|p| p.starts_with(&src));
    for must in ["src/keys/upload.sh", "scripts/test.sh", "tests/fleet/fleet.sh"] {
        assert!(
            remote.iter().chain(&local).any(|p| rel(p) == must),
            "{must} not found"
        );
    }

    let mut findings = Vec::new();
    let names = |ps: &[&PathBuf]| ps.iter().map(|p| rel(p)).collect::<Vec<_>>();
    let mut args = vec!["-x".to_string()];
    args.extend(names(&local.iter().collect::<Vec<_>>()));
    findings.push(shellcheck(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    ));

    let file_name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let mut plain = Vec::new();
    for script in &remote {
        let dir = script.parent().unwrap();
        let says = leading_comment(script);
        let libs: Vec<&PathBuf> = remote
            .iter()
            .filter(|l| l.parent() == Some(dir) && file_name(l).ends_with("-lib.sh"))
            .filter(|l| says.contains(&format!("after {}", file_name(l))))
            .collect();
        if libs.is_empty() {
            plain.push(script);
            continue;
        }
        // Linted as sent: the libraries' text, then the script's.
        let mut text = String::new();
        let mut parts = Vec::new();
        for p in libs.iter().copied().chain([script]) {
            let t = std::fs::read_to_string(p).unwrap();
            assert!(t.ends_with('\n'), "{} must end with a newline", rel(p));
            parts.push((rel(p), t.lines().count()));
            text += &t;
        }
        let said = shellcheck(&["-s", "sh", "-e", "SC2317", "-"], Some(&text));
        // "-:LINE:COL: ..." back to the file and line it came from.
        for l in said.lines() {
            let mut f = l.splitn(3, ':');
            let (_, line, rest) = (f.next(), f.next().and_then(|n| n.parse::<usize>().ok()), f.next());
            let (Some(mut line), Some(rest)) = (line, rest) else {
                findings.push(format!("{l}\n"));
                continue;
            };
            let mut at = String::from("?");
            for (name, n) in &parts {
                if line <= *n {
                    at = format!("{name}:{line}");
                    break;
                }
                line -= n;
            }
            findings.push(format!("{at}:{rest} (sent after {})\n", parts[0].0));
        }
    }
    let mut args = vec!["-s".to_string(), "sh".into()];
    args.extend(names(&plain));
    findings.push(shellcheck(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    ));

    let findings: String = findings.concat();
    assert!(findings.is_empty(), "shellcheck:\n{findings}");
}
