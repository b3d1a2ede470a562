//! Faults around the tool's own input and output: bytes that are not UTF-8,
//! closed pipes, signals, leaked temporary files, full disks and failed
//! builds, against the test fleet.

mod common;

use common::{Fleet, simple_network};

#[test]
fn nix_errors_that_are_not_utf8_are_shown_lossily() {
    let fleet = Fleet::start(&[]);
    // Nix cuts "é" (two bytes) after its first byte when it names the
    // illegal character of the toplevel's store path.
    fleet.create("accent", "{ \"é\" = { ... }: { }; }\n");
    let r = fleet.run(&["deploy", "-d", "accent"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("nixos-system-é-stub"), "{}", r.stderr);
    // A raw byte that is no UTF-8 at all, in a message of the network's own.
    let file = fleet.path().join("raw.nix");
    std::fs::write(&file, b"{ m = { ... }: throw \"bad byte: \xff here\"; }\n").unwrap();
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "raw"]);
    let r = fleet.run(&["deploy", "-d", "raw"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("bad byte: \u{FFFD} here"), "{}", r.stderr);
}

/// A pipe whose reading end is already closed: every write to it fails
/// with EPIPE, as after `| head -1` has exited.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

#[test]
fn closed_stdout_and_stderr_never_panic() {
    let fleet = Fleet::start(&["web"]);
    fleet.create("d", &simple_network(&["web"], ""));
    // --debug: tracing's output goes to the closed stderr too.
    let mut cmd = fleet.nixops(&["deploy", "--debug"]);
    let w = closed_pipe();
    cmd.stdout(w.try_clone().unwrap()).stderr(w);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let recorded = fleet.exported_toplevel("d", "web").expect("toplevel recorded");
    assert_eq!(fleet.current_system("web"), recorded);

    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["info"],
        &["export"],
        &["--help"],
    ] {
        let out = fleet
            .nixops(args)
            .stdout(closed_pipe())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
