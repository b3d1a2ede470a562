//! Safe rollouts: magic rollback, health checks, rolling deploys.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::Fleet;

fn network(names: &[&str], rev: &str, extra: &str) -> String {
    common::rev_network(names, rev, extra)
}

fn setup(names: &[&str]) -> (Fleet, std::path::PathBuf) {
    common::deployed(names, "")
}

#[test]
fn activation_that_kills_sshd_is_rolled_back_by_the_host() {
    let (fleet, file) = setup(&["m"]);
    let first = fleet.current_system("m");
    std::fs::write(
        &file,
        network(
            &["m"],
            "second",
            "stub.activation.killSshd = true; deployment.confirmTimeout = 3;",
        ),
    )
    .unwrap();
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    // Back on the previous system, boot default included, and reachable.
    assert_eq!(fleet.current_system("m"), first);
    assert_eq!(
        fleet.exec("m", "readlink -f /nix/var/nix/profiles/system").trim(),
        first
    );
    assert_eq!(fleet.exported_toplevel("d", "m").unwrap(), first);
    fleet.ok(&["ssh", "m", "--", "true"]);
    assert_eq!(fleet.run(&["check"]).code, 0);
}

#[test]
fn machine_lost_during_activation_is_recorded_unreachable() {
    let (fleet, file) = setup(&["m"]);
    std::fs::write(
        &file,
        network(&["m"], "second", "stub.activation.killSshd = true;"),
    )
    .unwrap();
    // Without the guard nothing brings sshd back: the machine is gone.
    let r = fleet.run(&["deploy", "--no-magic-rollback"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let row = r.summary_row("m");
    assert!(
        row.contains("activation") && row.contains("unreachable"),
        "{}",
        r.stderr
    );
    let info = fleet.ok(&["info", "--plain", "--no-eval"]);
    assert!(
        info.stdout.lines().any(|l| l.starts_with("m\tunreachable")),
        "{}",
        info.stdout
    );
}

#[test]
fn failed_activation_is_rolled_back() {
    let (fleet, file) = setup(&["m"]);
    let first = fleet.current_system("m");
    std::fs::write(&file, network(&["m"], "second", "stub.activation.fail = true;")).unwrap();
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    assert!(
        r.stderr.contains("activation failed with exit code 1"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fleet.exec("m", "readlink -f /nix/var/nix/profiles/system").trim(),
        first
    );
    assert_eq!(fleet.current_system("m"), first);
    // Without magic rollback the failure stays as it is.
    let r = fleet.run(&["deploy", "--no-magic-rollback"]);
    assert_eq!(r.code, 1);
    assert!(!r.stderr.contains("rolled back"), "{}", r.stderr);
    assert_ne!(
        fleet.exec("m", "readlink -f /nix/var/nix/profiles/system").trim(),
        first
    );
}

#[test]
fn slow_good_activation_is_confirmed_and_kept() {
    let (fleet, file) = setup(&["m"]);
    std::fs::write(
        &file,
        network(
            &["m"],
            "second",
            "stub.activation.sleep = 3; deployment.confirmTimeout = 2;",
        ),
    )
    .unwrap();
    let r = fleet.ok(&["deploy"]);
    assert!(r.stderr.contains("| deployed"), "{}", r.stderr);
    let t = fleet.exported_toplevel("d", "m").unwrap();
    assert_eq!(fleet.current_system("m"), t);
    assert_eq!(fleet.exec("m", "cat /run/current-system/etc/rev"), "second");
    // Nothing rolls it back later either.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(fleet.current_system("m"), t);
}

/// A confirmation racing the guard's deadline is never lost: whatever the
/// deployer reports is what the machine runs.
#[test]
fn confirmation_racing_the_deadline_is_never_lost() {
    let (fleet, file) = setup(&["m"]);
    let (mut kept, mut rolled) = (0, 0);
    // The guard counts whole seconds: a timeout of 1 ends 0 to 1 s after
    // activation, about when the confirmation arrives; 0 ends at once.
    for i in 0..10 {
        let before = fleet.current_system("m");
        let timeout = format!("deployment.confirmTimeout = {};", i % 3 % 2);
        std::fs::write(&file, network(&["m"], &format!("race {i}"), &timeout)).unwrap();
        let r = fleet.run(&["deploy"]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = fleet.current_system("m");
        let recorded = fleet.exported_toplevel("d", "m").unwrap();
        assert_eq!(now, recorded, "state says what the machine runs: {}", r.stderr);
        if r.code == 0 {
            kept += 1;
            assert_ne!(now, before, "{}", r.stderr);
            assert_eq!(
                fleet.exec("m", "cat /run/current-system/etc/rev"),
                format!("race {i}")
            );
        } else {
            rolled += 1;
            assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
            assert_eq!(now, before, "{}", r.stderr);
        }
        assert_eq!(
            fleet.exec("m", "readlink -f /nix/var/nix/profiles/system").trim(),
            now
        );
    }
    eprintln!("kept {kept}, rolled back {rolled}");
}

/// Answers every request on a local port with `status`.
fn http_server(status: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    port
}

#[test]
fn health_checks_keep_or_roll_back() {
    let (fleet, file) = setup(&["m"]);
    let first = fleet.current_system("m");
    let good = http_server(200);
    let bad = http_server(503);

    let checks = format!(
        r#"deployment.healthChecks.http = [ {{ host = "127.0.0.1"; port = {good}; path = "/health"; period = 1; timeout = 5; }} ];
           deployment.healthChecks.cmd = [ {{ cmd = [ "test" "-e" "/run/current-system/etc/rev" ]; period = 1; timeout = 5; }} ];"#
    );
    std::fs::write(&file, network(&["m"], "second", &checks)).unwrap();
    fleet.ok(&["deploy"]);
    let second = fleet.current_system("m");
    assert_ne!(second, first);
    assert_eq!(fleet.run(&["check"]).code, 0);

    let checks = format!(
        r#"deployment.healthChecks.http = [ {{ host = "127.0.0.1"; port = {bad}; description = "web answers"; period = 1; timeout = 2; }} ];"#
    );
    std::fs::write(&file, network(&["m"], "third", &checks)).unwrap();
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("health check ‘web answers’ failed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("503"), "{}", r.stderr);
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    assert_eq!(fleet.current_system("m"), second);
    // `check` runs the network's health checks too.
    let r = fleet.run(&["check"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("health check ‘web answers’ failed"),
        "{}",
        r.stdout
    );

    let checks = r#"deployment.healthChecks.cmd = [ { cmd = [ "false" ]; description = "always fails"; period = 1; timeout = 2; } ];"#;
    std::fs::write(&file, network(&["m"], "fourth", checks)).unwrap();
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("health check ‘always fails’ failed"),
        "{}",
        r.stderr
    );
    assert_eq!(fleet.current_system("m"), second);
    assert_eq!(fleet.exported_toplevel("d", "m").unwrap(), second);
}

#[test]
fn rolling_deploy_stops_after_a_failed_wave() {
    let names = ["w1", "w2", "w3", "w4", "w5"];
    let (fleet, file) = setup(&names);
    let first: Vec<String> = names.iter().map(|n| fleet.current_system(n)).collect();
    // w2 fails its health check; waves of two: w1 w2 | w3 w4 | w5.
    let mut net = String::from("{\n");
    for n in names {
        let check = if n == "w2" {
            "[ \"false\" ]"
        } else {
            "[ \"true\" ]"
        };
        net += &format!(
            "  {n} = {{ ... }}: {{ environment.etc.rev.text = \"second\"; deployment.healthChecks.cmd = [ {{ cmd = {check}; period = 1; timeout = 2; }} ]; }};\n"
        );
    }
    net += "}\n";
    std::fs::write(&file, net).unwrap();
    let r = fleet.run(&["deploy", "--max-concurrent-activate", "2"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_ne!(fleet.current_system("w1"), first[0], "w1 was in the first wave");
    assert_eq!(fleet.current_system("w2"), first[1], "w2 rolled back");
    for (i, n) in names.iter().enumerate().skip(2) {
        assert_eq!(fleet.current_system(n), first[i], "{n} untouched");
    }
    let table_line = |n: &str| {
        r.stderr
            .lines()
            .find(|l| l.starts_with(&format!("| {n} ")))
            .unwrap_or("")
            .to_owned()
    };
    assert!(table_line("w1").contains("deployed"), "{}", r.stderr);
    assert!(table_line("w2").contains("rolled back"), "{}", r.stderr);
    assert!(table_line("w3").contains("not deployed"), "{}", r.stderr);
    assert!(table_line("w5").contains("not deployed"), "{}", r.stderr);

    // --no-stop-on-failure goes on.
    let r = fleet.run(&["deploy", "--max-concurrent-activate", "2", "--no-stop-on-failure"]);
    assert_eq!(r.code, 1);
    assert_ne!(fleet.current_system("w5"), first[4]);
    assert_eq!(fleet.current_system("w2"), first[1]);
}

#[test]
fn forced_reboots_go_wave_by_wave() {
    let (fleet, file) = setup(&["b1", "b2"]);
    std::fs::write(&file, network(&["b1", "b2"], "second", "")).unwrap();
    fleet.ok(&[
        "deploy",
        "--boot",
        "--force-reboot",
        "--max-concurrent-activate",
        "1",
    ]);
    let reboot_time = |h: &str| -> u64 {
        let log = std::fs::read_to_string(fleet.path().join(format!("hosts/{h}/reboots.log"))).unwrap();
        assert_eq!(log.lines().count(), 1, "{h} rebooted once: {log}");
        log.split_whitespace().next().unwrap().parse().unwrap()
    };
    // b2's wave started only once b1 was back from its reboot.
    assert!(reboot_time("b2") > reboot_time("b1"));
    for h in ["b1", "b2"] {
        assert_eq!(fleet.exec(h, "cat /run/current-system/etc/rev"), "second");
        assert_eq!(fleet.current_system(h), fleet.exported_toplevel("d", h).unwrap());
    }
}

/// Exit 100 (the new system takes effect only after a reboot) without
/// --allow-reboot under magic rollback: nothing was activated, and the boot
/// default goes back too, so the machine is exactly as it was.
#[test]
fn reboot_needed_without_allow_reboot_changes_nothing() {
    let (fleet, file) = setup(&["m"]);
    let first = fleet.current_system("m");
    std::fs::write(
        &file,
        network(&["m"], "second", "stub.activation.requestReboot = true;"),
    )
    .unwrap();
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("requires a reboot"), "{}", r.stderr);
    assert_eq!(fleet.current_system("m"), first);
    assert_eq!(fleet.profile("m"), first);
    assert_eq!(fleet.boot_default("m"), first);
    assert_eq!(fleet.exported_toplevel("d", "m").unwrap(), first);
    // With it: rebooted into the new system, and only then recorded.
    let before = fleet.boot_id("m");
    fleet.ok(&["deploy", "--allow-reboot"]);
    assert_ne!(fleet.boot_id("m"), before);
    let t = fleet.exported_toplevel("d", "m").unwrap();
    assert_ne!(t, first);
    assert_eq!(fleet.current_system("m"), t);
    assert_eq!(fleet.exec("m", "cat /run/current-system/etc/rev"), "second");
}

/// --no-sync reaches switch-to-configuration as NIXOS_NO_SYNC=1 (NixOS' own
/// switch flushes unless told not to); without it nothing is set.
#[test]
fn no_sync_reaches_switch_to_configuration() {
    for magic in [true, false] {
        let (fleet, file) = setup(&["m"]);
        std::fs::write(&file, network(&["m"], "second", "")).unwrap();
        let mut args = vec!["deploy", "--no-sync"];
        if !magic {
            args.push("--no-magic-rollback");
        }
        fleet.ok(&args);
        let log = fleet.exec("m", "cat /run/stub-os/environment.log");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(
            lines,
            ["switch NIXOS_NO_SYNC=", "switch NIXOS_NO_SYNC=1"],
            "{log}"
        );
    }
}

/// `--stop-on-failure` stops a rollout without health checks too (where it
/// is not the default): a failed first wave leaves the second untouched.
#[test]
fn stop_on_failure_stops_after_a_failed_wave_without_health_checks() {
    let (fleet, file) = setup(&["s1", "s2"]);
    let first = fleet.current_system("s2");
    let net = "{\n  s1 = { ... }: { environment.etc.rev.text = \"second\"; stub.activation.fail = true; };\n  s2 = { ... }: { environment.etc.rev.text = \"second\"; };\n}\n";
    std::fs::write(&file, net).unwrap();
    let r = fleet.run(&["deploy", "--max-concurrent-activate", "1", "--stop-on-failure"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.summary_row("s2").contains("not deployed"), "{}", r.stderr);
    assert_eq!(fleet.current_system("s2"), first);
    // Without it (and without health checks), the rollout goes on.
    let r = fleet.run(&["deploy", "--max-concurrent-activate", "1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_ne!(fleet.current_system("s2"), first);
}

/// A change is confirmed over a new connection; activating again the
/// system a machine runs, boots and kept needs no guard (it could only go
/// back to that same system), unless an earlier guarded activation was
/// never decided.
#[test]
fn only_a_change_or_an_undecided_guard_needs_a_confirmation() {
    let (fleet, file) = setup(&["m"]);
    std::fs::write(&file, network(&["m"], "second", "")).unwrap();
    let before = fleet.ssh_count("m");
    let r = fleet.ok(&["deploy"]);
    assert!(r.stderr.contains("| deployed"), "{}", r.stderr);
    let second = fleet.current_system("m");
    let confirmed = fleet.ssh_count("m");
    assert!(confirmed > before, "a change is confirmed over a new connection");

    let activations = fleet.activations("m").len();
    fleet.ok(&["deploy"]);
    assert_eq!(fleet.activations("m").len(), activations + 1, "activated again");
    assert_eq!(fleet.ssh_count("m"), confirmed, "no guard, no confirmation");
    assert_eq!(fleet.current_system("m"), second);

    // As if a deploy had died before its guard was decided: the same
    // system is activated under a guard again, and confirmed.
    fleet.exec(
        "m",
        &format!(
            "mkdir -p /run/nixops-guard/x && echo {second} > /run/nixops-guard/x/toplevel && echo x > /run/nixops-guard/newest"
        ),
    );
    fleet.ok(&["deploy"]);
    assert_eq!(fleet.ssh_count("m"), confirmed + 1);
    assert_eq!(fleet.current_system("m"), second);
    assert_eq!(
        fleet.exec("m", "readlink /run/nixops-guard/x/decision").trim(),
        "superseded"
    );
}
