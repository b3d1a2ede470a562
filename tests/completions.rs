//! Shell completion as the shells ask for it (`COMPLETE=SHELL nixops --
//! WORDS`, and bash through the script `nixops completions bash` prints),
//! and the manual pages of `nixops man --dir`. No test hosts: the machines
//! are only recorded (`deploy --create-only`).

mod common;

use common::{Fleet, simple_network};

/// Two deployments: staging (a and b, tagged web) and prod (c, tagged db).
fn two_deployments() -> Fleet {
    let fleet = Fleet::start(&[]);
    fleet.create(
        "staging",
        &simple_network(&["a", "b"], "deployment.tags = [ \"web\" ];"),
    );
    fleet.create("prod", &simple_network(&["c"], "deployment.tags = [ \"db\" ];"));
    fleet.ok(&["deploy", "--create-only", "-d", "staging"]);
    fleet.ok(&["deploy", "--create-only", "-d", "prod"]);
    fleet
}

/// What bash's completion function gets for `words`, the last one under
/// the cursor (bash's protocol: the cursor's index in $_CLAP_COMPLETE_INDEX).
fn bash(fleet: &Fleet, words: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut args = vec!["--"];
    args.extend(words);
    let mut cmd = fleet.nixops(&args);
    cmd.env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .env("_CLAP_IFS", "\n");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{words:?}: {out:?}");
    // Nothing may land on the terminal while the shell draws the line.
    assert!(
        out.stderr.is_empty(),
        "{words:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The candidates that are no options (where nothing else is offered, the
/// options are).
fn values(candidates: &[String]) -> Vec<&str> {
    candidates
        .iter()
        .map(String::as_str)
        .filter(|c| !c.starts_with('-'))
        .collect()
}

#[test]
fn deployments_machines_and_tags_come_from_the_state() {
    let fleet = two_deployments();
    let none: &[(&str, &str)] = &[];
    assert_eq!(
        bash(&fleet, &["nixops", "ssh", "-d", ""], none),
        ["prod", "staging"]
    );
    assert_eq!(bash(&fleet, &["nixops", "-d", "st"], none), ["staging"]);
    // The machines of the deployment -d names, and only they (no options
    // before a `-` is typed).
    assert_eq!(
        bash(&fleet, &["nixops", "ssh", "-d", "staging", ""], none),
        ["a", "b"]
    );
    assert_eq!(bash(&fleet, &["nixops", "ssh", "-d", "prod", ""], none), ["c"]);
    assert_eq!(
        bash(&fleet, &["nixops", "-d", "staging", "ssh", "b"], none),
        ["b"]
    );
    assert_eq!(
        bash(&fleet, &["nixops", "ssh", ""], &[("NIXOPS_DEPLOYMENT", "prod")]),
        ["c"]
    );
    // Without a deployment named, there are two to choose from: only the
    // options.
    assert_eq!(
        values(&bash(&fleet, &["nixops", "ssh", ""], none)),
        [] as [&str; 0]
    );
    // Selectors: names and @tags.
    assert_eq!(
        bash(
            &fleet,
            &["nixops", "deploy", "-d", "staging", "--include", ""],
            none
        ),
        ["a", "b", "@web"]
    );
    assert_eq!(
        bash(
            &fleet,
            &["nixops", "deploy", "-d", "prod", "--exclude", "@"],
            none
        ),
        ["@db"]
    );
    assert_eq!(
        bash(&fleet, &["nixops", "apply", "-d", "staging", "--on", "b,@"], none),
        ["b,@web"]
    );
    // A machine listed already is not offered again.
    assert_eq!(
        bash(&fleet, &["nixops", "apply", "-d", "staging", "--on", "b,"], none),
        ["b,a", "b,@web"]
    );
    // Options still come once a `-` is typed.
    assert!(bash(&fleet, &["nixops", "ssh", "-d", "staging", "--n"], none).contains(&"--now".to_owned()));

    // fish's protocol: the words up to the cursor, candidates a line each
    // with their help after a tab.
    let out = fleet
        .nixops(&["--", "nixops", "deploy", "-d", "staging", "--on", ""])
        .env("COMPLETE", "fish")
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout).unwrap();
    let values: Vec<&str> = lines.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(values, ["a", "b", "@web"], "{lines}");
    assert!(lines.contains("@web\ta, b"), "{lines}");
}

#[test]
fn the_bash_script_asks_nixops() {
    let fleet = two_deployments();
    let script = fleet.write(
        "complete.bash",
        r#"source <("$NIXOPS" completions bash)
complete -p nixops
COMP_WORDS=(nixops ssh -d staging ""); COMP_CWORD=4; COMP_TYPE=9
_clap_complete_nixops nixops "" staging
printf 'candidate %s\n' "${COMPREPLY[@]}"
"#,
    );
    let out = fleet
        .nixops_shell(&format!("bash {}", script.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-F _clap_complete_nixops nixops"), "{stdout}");
    let candidates: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("candidate "))
        .collect();
    assert_eq!(candidates, ["a", "b"], "{stdout}");
}

#[test]
fn no_state_gives_no_candidates_and_no_noise() {
    let fleet = Fleet::start(&[]);
    let none: &[(&str, &str)] = &[];
    // The fleet's state file does not exist yet.
    assert!(bash(&fleet, &["nixops", "ssh", "-d", ""], none).is_empty());
    let machines = bash(
        &fleet,
        &["nixops", "-s", "/nonexistent/x", "ssh", "-d", "d", ""],
        none,
    );
    assert_eq!(values(&machines), [] as [&str; 0]);
    // A file that is no state at all.
    let junk = fleet.write("junk.nixops", "not sqlite");
    let junk = junk.to_str().unwrap();
    let selectors = bash(&fleet, &["nixops", "-s", junk, "deploy", "--on", ""], none);
    assert_eq!(values(&selectors), [] as [&str; 0]);
}

#[test]
fn man_dir_writes_a_page_for_every_command() {
    let fleet = Fleet::start(&[]);
    let help = fleet.ok(&["--help"]).stdout;
    // `  name   about`; continuation lines are indented further.
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 40, "{help}");
    let dir = fleet.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    fleet.ok(&["man", "--dir", dir.to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    let mut expected: Vec<String> = commands.iter().map(|c| format!("nixops-{c}.1")).collect();
    expected.push("nixops.1".into());
    expected.sort();
    assert_eq!(pages, expected);
    for page in &pages {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        for what in [
            ".SH ENVIRONMENT",
            "NIXOPS_STATE",
            "NIXOPS_DEPLOYMENT",
            ".SH FILES",
            "deployments.nixops",
        ] {
            assert!(text.contains(what), "{page} has no {what}");
        }
    }
    // The one page printed is the same as the one written.
    let deploy = fleet.ok(&["man", "deploy"]).stdout;
    assert_eq!(
        deploy,
        std::fs::read_to_string(dir.join("nixops-deploy.1")).unwrap()
    );
    assert!(deploy.contains(".SH \"SAFETY AND ROLLBACK\""), "{deploy}");
}
