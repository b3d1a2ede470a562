//! An interrupted deploy never undoes a later one: the magic-rollback guard
//! of a deploy that was killed, interrupted or cut off by a frozen machine
//! must not roll back a later, successful deploy, nor reset its boot
//! default. After every scenario, once every deadline has passed, the
//! machine runs and boots the last successful deploy and the state says so.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Fleet, signal, wait_until};

fn setup() -> (Fleet, std::path::PathBuf) {
    common::deployed(&["m"], "")
}

/// `extra`: config of the first system, the one a rollback goes back to.
fn setup_with(extra: &str) -> (Fleet, std::path::PathBuf) {
    common::deployed(&["m"], extra)
}

fn write(file: &Path, rev: &str, extra: &str) {
    std::fs::write(file, common::rev_network(&["m"], rev, extra)).unwrap();
}

/// Waits until the machine has started one more activation than `before`.
fn wait_for_activation(fleet: &Fleet, before: usize) {
    wait_until(60, "the activation to start", || {
        fleet.activations("m").len() > before
    });
}

/// The machine runs `rev`'s system, boots it, and the state records it;
/// every guard on it has ended.
fn assert_settled(fleet: &Fleet, rev: &str) {
    let current = fleet.current_system("m");
    assert_eq!(
        fleet.exec("m", "cat /run/current-system/etc/rev"),
        rev,
        "the machine runs the last successful deploy"
    );
    assert_eq!(fleet.profile("m"), current, "the system profile");
    assert_eq!(fleet.boot_default("m"), current, "the boot default");
    assert_eq!(
        fleet.exported_toplevel("d", "m").as_deref(),
        Some(current.as_str()),
        "the state records what the machine runs"
    );
    let pending = fleet.exec(
        "m",
        "for g in /run/nixops-guard/*/; do [ -e \"$g/outcome\" ] || echo \"$g\"; done",
    );
    assert_eq!(pending.trim(), "", "guards still waiting");
    let r = fleet.run(&["check"]);
    assert_eq!(r.code, 0, "check: {}{}", r.stdout, r.stderr);
}

/// The guard of an interrupted deploy (`sig` while it activates, or while
/// its health check runs before the confirmation) must leave the next
/// deploy alone.
fn interrupted_then_redeployed(sig: i32, during_health_check: bool) {
    let (fleet, file) = setup();
    let before = fleet.activations("m").len();
    let extra = if during_health_check {
        // Activation is quick; the health check keeps the deployer from
        // confirming for 3 s.
        r#"deployment.confirmTimeout = 2; deployment.healthChecks.cmd = [ { cmd = [ "sleep" "3" ]; timeout = 5; } ];"#
    } else {
        // Long enough that the next deploy meets it still running.
        "stub.activation.sleep = 5; deployment.confirmTimeout = 2;"
    };
    write(&file, "second", extra);
    let mut child = fleet.spawn(&["deploy"]);
    wait_for_activation(&fleet, before);
    std::thread::sleep(Duration::from_millis(if during_health_check {
        1500
    } else {
        500
    }));
    signal(&child, sig);
    child.wait().unwrap();

    write(&file, "third", "deployment.confirmTimeout = 2;");
    let r = fleet.ok(&["deploy"]);
    if !during_health_check {
        // The killed deploy's activation goes on there; this one says it waits.
        assert!(
            r.stderr.contains("waiting for the machine's activation lock"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(fleet.exec("m", "cat /run/current-system/etc/rev"), "third");
    // Past every deadline of the interrupted deploy's guard.
    std::thread::sleep(Duration::from_secs(9));
    assert_settled(&fleet, "third");
}

#[test]
fn deploy_killed_while_activating_never_undoes_the_next() {
    interrupted_then_redeployed(libc::SIGKILL, false);
}

#[test]
fn deploy_interrupted_before_confirming_never_undoes_the_next() {
    interrupted_then_redeployed(libc::SIGINT, true);
}

/// A deploy waiting for the deployment lock takes over when the holder is
/// killed in the middle of its activation.
#[test]
fn lock_waiter_taking_over_from_a_killed_deploy_is_not_undone() {
    let (fleet, file) = setup();
    let before = fleet.activations("m").len();
    write(
        &file,
        "second",
        "stub.activation.sleep = 3; deployment.confirmTimeout = 2;",
    );
    let mut holder = fleet.spawn(&["deploy"]);
    wait_for_activation(&fleet, before);
    write(&file, "third", "deployment.confirmTimeout = 2;");
    let waiter = fleet
        .nixops(&["deploy"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    signal(&holder, libc::SIGKILL);
    holder.wait().unwrap();
    let out = common::Run::from(waiter.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("waiting for exclusive deployment lock"),
        "{}",
        out.stderr
    );
    std::thread::sleep(Duration::from_secs(9));
    assert_settled(&fleet, "third");
}

/// A machine frozen in the middle of an activation whose deployer gives up:
/// when it comes back, its guard of that activation must neither undo the
/// next deploy nor reset the boot default under it.
#[test]
fn frozen_machine_resumed_under_a_newer_deploy() {
    let (fleet, file) = setup();
    let before = fleet.activations("m").len();
    write(
        &file,
        "second",
        "stub.activation.sleep = 2; deployment.confirmTimeout = 2;",
    );
    let mut child = fleet.spawn(&["deploy"]);
    wait_for_activation(&fleet, before);
    fleet.freeze("m", true);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    // Its clock goes on while it is frozen.
    std::thread::sleep(Duration::from_secs(4));
    fleet.freeze("m", false);
    write(&file, "third", "deployment.confirmTimeout = 2;");
    fleet.ok(&["deploy"]);
    std::thread::sleep(Duration::from_secs(8));
    assert_settled(&fleet, "third");
}

/// Frozen after activation, while the guard waits for the confirmation: its
/// deadline passes while it cannot run, so it rolls back the moment the
/// machine resumes, just as the next deploy arrives (going back to the first
/// system takes a while: its activation sleeps).
#[test]
fn frozen_guard_whose_deadline_passed_meets_the_next_deploy() {
    let (fleet, file) = setup_with("stub.activation.sleep = 2;");
    let before = fleet.activations("m").len();
    write(
        &file,
        "second",
        r#"deployment.confirmTimeout = 1; deployment.healthChecks.cmd = [ { cmd = [ "sleep" "2" ]; timeout = 3; } ];"#,
    );
    let mut child = fleet.spawn(&["deploy"]);
    wait_for_activation(&fleet, before);
    std::thread::sleep(Duration::from_millis(700));
    fleet.freeze("m", true);
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(6));
    fleet.freeze("m", false);
    write(&file, "third", "deployment.confirmTimeout = 2;");
    fleet.ok(&["deploy"]);
    std::thread::sleep(Duration::from_secs(6));
    assert_settled(&fleet, "third");
}

/// Interrupts at pseudo-random moments of deploys (SIGKILL or SIGINT), each
/// followed by nothing or by more interrupted deploys, then one good deploy:
/// once every deadline has passed, the machine runs and boots that one.
/// `NIXOPS_SOAK_ITERATIONS` (default 3) rounds; `NIXOPS_SOAK_SEED` picks the
/// moments (printed, to replay a failure). bench/soak-interrupts.sh runs
/// many more.
#[test]
fn interrupts_at_random_moments_then_a_good_deploy() {
    let rounds: u64 = std::env::var("NIXOPS_SOAK_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut seed: u64 = std::env::var("NIXOPS_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("NIXOPS_SOAK_SEED={seed}");
    // A small LCG: the point is moments spread over the whole deploy, not
    // statistical quality.
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let (fleet, file) = setup();
    for round in 0..rounds {
        let interrupted = 1 + next(2);
        for i in 0..interrupted {
            let sleep = next(3);
            let confirm = 1 + next(2);
            write(
                &file,
                &format!("round {round} interrupted {i}"),
                &format!("stub.activation.sleep = {sleep}; deployment.confirmTimeout = {confirm};"),
            );
            let mut child = fleet.spawn(&["deploy"]);
            // Anywhere from evaluation to the wait for the confirmation.
            std::thread::sleep(Duration::from_millis(next(4000)));
            let sig = if next(2) == 0 { libc::SIGKILL } else { libc::SIGINT };
            eprintln!("round {round}.{i}: activation sleeps {sleep} s, signal {sig}");
            signal(&child, sig);
            child.wait().unwrap();
        }
        let rev = format!("round {round} good");
        write(&file, &rev, "deployment.confirmTimeout = 2;");
        fleet.ok(&["deploy"]);
        // The longest deadline of an interrupted guard: activation (2 s) +
        // confirmation (2 s), counted from the activation's end.
        std::thread::sleep(Duration::from_secs(6));
        assert_settled(&fleet, &rev);
    }
}

/// The deployer's confirmation reached the machine, then the deployer died
/// before it could record the new system: the next contact (`check`, or any
/// deploy's first probe) records what the machine runs.
#[test]
fn confirmed_but_unrecorded_system_is_recorded_at_next_contact() {
    for via_check in [true, false] {
        let (fleet, file) = setup();
        let first = fleet.current_system("m");
        let before = fleet.activations("m").len();
        write(
            &file,
            &format!("second {via_check}"),
            r#"deployment.confirmTimeout = 20; deployment.healthChecks.cmd = [ { cmd = [ "sleep" "3" ]; timeout = 5; } ];"#,
        );
        let mut child = fleet.spawn(&["deploy"]);
        wait_for_activation(&fleet, before);
        std::thread::sleep(Duration::from_millis(1000));
        // The deployer, stopped in its health check, "confirms" (as it would
        // a moment later) and dies before it writes state.
        signal(&child, libc::SIGSTOP);
        fleet.exec(
            "m",
            r#"ln -s confirmed "/run/nixops-guard/$(cat /run/nixops-guard/newest)/decision""#,
        );
        signal(&child, libc::SIGKILL);
        child.wait().unwrap();
        wait_until(20, "the guard to keep the system", || {
            fleet
                .exec(
                    "m",
                    r#"cat "/run/nixops-guard/$(cat /run/nixops-guard/newest)/outcome" 2>/dev/null || true"#,
                )
                .trim()
                == "kept"
        });
        let second = fleet.current_system("m");
        assert_ne!(second, first);
        assert_eq!(fleet.exported_toplevel("d", "m").as_deref(), Some(first.as_str()));
        if via_check {
            let r = fleet.run(&["check"]);
            assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
            assert!(
                r.stdout.contains("which an interrupted deploy left running"),
                "{}",
                r.stdout
            );
        } else {
            // A deploy that only copies still meets the machine first.
            let r = fleet.ok(&["deploy", "--copy-only"]);
            assert!(
                r.stderr.contains("which an interrupted deploy left running"),
                "{}",
                r.stderr
            );
        }
        assert_eq!(
            fleet.exported_toplevel("d", "m").as_deref(),
            Some(second.as_str())
        );
        assert_settled(&fleet, &format!("second {via_check}"));
    }
}
