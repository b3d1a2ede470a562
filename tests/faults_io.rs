//! Faults around the tool's own input and output: bytes that are not UTF-8,
//! closed pipes, signals, leaked temporary files, full disks and failed
//! builds, against the test fleet.

mod common;

use common::Fleet;

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
