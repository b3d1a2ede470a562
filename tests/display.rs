//! What a person sees on a terminal: a live deploy run in tmux (160×45),
//! its final screen checked: every machine's line once, aligned, the summary
//! table after them and nothing drawn after it.

mod common;

use std::process::Command;

use common::{Fleet, simple_network};

/// Runs `cmd` in a detached tmux session of its own and returns the screen
/// once it has ended (it prints `EXIT=<code>` last).
fn screen_of(fleet: &Fleet, cmd: &Command) -> String {
    let mut script = String::from("#!/bin/sh\n");
    for (k, v) in cmd.get_envs() {
        let k = k.to_string_lossy();
        match v {
            Some(v) => script += &format!("export {k}='{}'\n", v.to_string_lossy().replace('\'', "'\\''")),
            None => script += &format!("unset {k}\n"),
        }
    }
    script += "unset NIXOPS_PLAIN\n";
    script += &format!("'{}'", cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        script += &format!(" '{}'", a.to_string_lossy());
    }
    script += "\necho EXIT=$?\nsleep 60\n";
    let file = fleet.write("live.sh", &script);
    let socket = fleet.path().join("tmux.sock");
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(args)
            .output()
            .expect("tmux runs")
    };
    let started = tmux(&[
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "45",
        "-s",
        "live",
        "sh",
        file.to_str().unwrap(),
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let mut screen = String::new();
    common::wait_until(120, "the deploy in tmux to end", || {
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "live"]).stdout).into_owned();
        screen.contains("EXIT=")
    });
    tmux(&["kill-server"]);
    screen
}

#[test]
fn a_live_deploy_ends_with_each_machine_once_aligned_and_the_summary_last() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("NOTICE: skipped: tmux is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let names = ["a", "a-much-longer-name"];
    let fleet = Fleet::start(&names);
    fleet.create("d", &simple_network(&names, ""));
    let screen = screen_of(&fleet, &fleet.nixops(&["deploy"]));
    let lines: Vec<&str> = screen.lines().collect();
    assert!(screen.contains("EXIT=0"), "{screen}");

    // Nothing but the exit line after the summary's last line.
    let last = lines
        .iter()
        .rposition(|l| l.starts_with("deployment finished successfully"))
        .unwrap_or_else(|| panic!("no summary line:\n{screen}"));
    let after: Vec<&&str> = lines[last + 1..]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(after, [&"EXIT=0"], "{screen}");

    // Above the table: each machine's live line exactly once, the elapsed
    // time in the same column for both.
    let table = lines
        .iter()
        .position(|l| l.starts_with("+---"))
        .unwrap_or_else(|| panic!("no table:\n{screen}"));
    let mut columns = Vec::new();
    for n in names {
        let live: Vec<&&str> = lines[..table]
            .iter()
            // The spinner's place is blank once the machine is done.
            .filter(|l| l.split_whitespace().take(2).any(|w| w == n))
            .collect();
        assert_eq!(live.len(), 1, "{n}:\n{screen}");
        assert!(live[0].contains("deployed"), "{screen}");
        let after_name = live[0].find(n).unwrap() + n.len();
        let time = after_name + live[0][after_name..].find(|c: char| c != ' ').unwrap();
        columns.push(time);
    }
    assert_eq!(columns[0], columns[1], "not aligned:\n{screen}");
    // Each machine once in the table too.
    for n in names {
        let rows = lines.iter().filter(|l| l.starts_with(&format!("| {n} "))).count();
        assert_eq!(rows, 1, "{n}:\n{screen}");
    }
}

/// Each machine is reported as soon as it ends, and the summary gives each
/// its own time (the plain renderer, as in a pipe or CI).
#[test]
fn each_machine_is_reported_when_it_ends_and_timed_on_its_own() {
    let names = ["quick", "slow"];
    let fleet = Fleet::start(&names);
    let net = "{\n  quick = { ... }: { stub.activation.fail = true; };\n  slow = { ... }: { stub.activation.sleep = 4; };\n}\n";
    fleet.create("d", net);
    let r = fleet.run(&["deploy", "--no-magic-rollback"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    let quick_failed = lines
        .iter()
        .position(|l| l.starts_with("quick> activation failed"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    let slow_done = lines
        .iter()
        .position(|l| l.starts_with("slow> deployed"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(quick_failed < slow_done, "{}", r.stderr);
    let secs = |m: &str| -> f64 {
        let row = r.summary_row(m);
        let cell = row.split('|').nth(4).unwrap().trim();
        cell.trim_end_matches(" s").parse().unwrap()
    };
    assert!(secs("slow") >= 4.0, "{}", r.stderr);
    assert!(secs("quick") + 3.0 < secs("slow"), "{}", r.stderr);
}
