//! The state file and the commands that manage deployments.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{Backend, Fleet, simple_network};

on_both_backends!(
    deployment_lifecycle_commands,
    delete_refuses_deployments_with_machines_unless_forced,
    set_args_and_network_functions,
    deploy_killed_mid_copy_then_redeploy,
    description_is_recorded_at_create_and_modify,
);

fn deployment_lifecycle_commands(backend: Backend) {
    let fleet = Fleet::start_on(backend, &[]);
    let file = fleet.write("net.nix", &simple_network(&["m"], ""));
    let f = file.to_str().unwrap();
    let out = fleet.ok(&["create", f, "-d", "one"]);
    let uuid = out.stdout.trim().to_owned();
    assert!(
        out.stderr.contains(&format!("created deployment ‘{uuid}’")),
        "{}",
        out.stderr
    );
    assert_eq!(uuid.len(), 36);

    // With exactly one deployment, -d may be left out.
    let info = fleet.ok(&["info", "--no-eval"]);
    assert!(
        info.stdout.contains(&format!("Network UUID: {uuid}")),
        "{}",
        info.stdout
    );

    // Names must be valid and unique.
    assert_ne!(fleet.run(&["create", f, "-d", "one"]).code, 0);
    assert_ne!(fleet.run(&["create", f, "-d", "9bad"]).code, 0);

    fleet.ok(&["clone", "-d", "one", "-n", "two"]);
    let list = fleet.ok(&["list"]);
    assert!(
        list.stdout.contains("one") && list.stdout.contains("two"),
        "{}",
        list.stdout
    );
    // Now -d is needed...
    let r = fleet.run(&["info", "--no-eval"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("-d"), "{}", r.stderr);
    // ...and takes a UUID prefix, or $NIXOPS_DEPLOYMENT.
    fleet.ok(&["info", "--no-eval", "-d", &uuid[..8]]);
    let out = fleet
        .nixops(&["info", "--no-eval"])
        .env("NIXOPS_DEPLOYMENT", "two")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Network name: two"));

    fleet.ok(&["modify", "-d", "two", "-n", "three"]);
    assert!(fleet.ok(&["list"]).stdout.contains("three"));
    let other = fleet.write("other.nix", &simple_network(&["x", "y"], ""));
    fleet.ok(&["modify", "-d", "three", other.to_str().unwrap(), "-n", "four"]);
    let info = fleet.ok(&["info", "-d", "four", "--plain"]);
    assert_eq!(info.stdout.lines().count(), 2, "{}", info.stdout);
    assert!(info.stdout.starts_with("x\tmissing"), "{}", info.stdout);

    // export | import into another state file.
    let exported = fleet.ok(&["export", "--all"]).stdout;
    let other_state = fleet.new_state("other");
    let other = other_state.as_str();
    let r = fleet.run_with_stdin(&["import", "-s", other], &exported);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let again = fleet.ok(&["export", "--all", "-s", other]).stdout;
    let a: serde_json::Value = serde_json::from_str(&exported).unwrap();
    let b: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(a, b);
    // Importing the same UUIDs again is refused and changes nothing.
    let r = fleet.run_with_stdin(&["import", "-s", other], &exported);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("already contains"), "{}", r.stderr);
    assert_eq!(fleet.ok(&["export", "--all", "-s", other]).stdout, again);

    fleet.ok(&["delete", "-d", "four"]);
    fleet.ok(&["delete", "--all"]);
    assert_eq!(fleet.ok(&["list", "--json"]).stdout.trim(), "[]");
}

fn delete_refuses_deployments_with_machines_unless_forced(backend: Backend) {
    let fleet = Fleet::start_on(backend, &["m"]);
    fleet.create("d", &simple_network(&["m"], ""));
    fleet.ok(&["deploy"]);
    let r = fleet.run(&["delete"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("still has 1 resource"), "{}", r.stderr);
    fleet.ok(&["delete", "--force"]);
    assert_eq!(fleet.ok(&["list", "--json"]).stdout.trim(), "[]");
}

fn set_args_and_network_functions(backend: Backend) {
    let fleet = Fleet::start_on(backend, &["m"]);
    let net = r#"{ greeting, count ? 1, ... }: {
      m = { ... }: { environment.etc.greeting.text = "${greeting} x${toString count}"; };
    }"#;
    fleet.create("d", net);
    let r = fleet.run(&["deploy"]);
    assert_ne!(r.code, 0, "missing argument must fail");
    assert!(r.stderr.contains("greeting"), "{}", r.stderr);
    fleet.ok(&[
        "set-args",
        "--argstr",
        "greeting",
        "hello \"world\"",
        "--arg",
        "count",
        "1 + 2",
    ]);
    let shown = fleet.ok(&["show-arguments"]).stdout;
    assert!(
        shown.contains("greeting") && shown.contains("1 + 2") && shown.contains("required"),
        "{shown}"
    );
    fleet.ok(&["deploy"]);
    let text = fleet.exec("m", "cat /run/current-system/etc/greeting");
    assert_eq!(text, "hello \"world\" x3");
    fleet.ok(&["set-args", "--unset", "count"]);
    fleet.ok(&["deploy"]);
    assert_eq!(
        fleet.exec("m", "cat /run/current-system/etc/greeting"),
        "hello \"world\" x1"
    );
    let exported = fleet.ok(&["export"]).stdout;
    assert!(
        exported.contains(r#""args": "{\"greeting\":\"\\\"hello"#),
        "{exported}"
    );
}

/// A state file made by the sqlite3 CLI in NixOps' own schema, as NixOps
/// would have left it, lists, deploys and exports.
#[test]
fn nixops_state_file_from_sqlite3() {
    let fleet = Fleet::start(&["web"]);
    let net = fleet.write("net.nix", &simple_network(&["web"], ""));
    let state = fleet.state_file();
    let sql = format!(
        r#"{schema}
        insert into Deployments values ('0a6c5f5e-7d8e-11ee-9a1b-0242ac120002');
        insert into DeploymentAttrs values ('0a6c5f5e-7d8e-11ee-9a1b-0242ac120002', 'name', 'legacy');
        insert into DeploymentAttrs values ('0a6c5f5e-7d8e-11ee-9a1b-0242ac120002', 'nixExprs', '["{net}"]');
        insert into DeploymentAttrs values ('0a6c5f5e-7d8e-11ee-9a1b-0242ac120002', 'description', 'old network');
        insert into Resources(deployment, name, type) values ('0a6c5f5e-7d8e-11ee-9a1b-0242ac120002', 'web', 'none');
        insert into ResourceAttrs values (1, 'state', '3');
        insert into ResourceAttrs values (1, 'index', '0');
        insert into ResourceAttrs values (1, 'targetHost', 'web');
        insert into ResourceAttrs values (1, 'toplevel', '/nix/store/00000000000000000000000000000000-nixos-system-web-old');
        "#,
        net = net.display(),
        schema = common::NIXOPS_SCHEMA_SQL
    );
    let st = Command::new("sqlite3").arg(&state).arg(sql).status().unwrap();
    assert!(st.success());
    let list = fleet.ok(&["list"]);
    assert!(
        list.stdout.contains("legacy") && list.stdout.contains("old network"),
        "{}",
        list.stdout
    );
    let info = fleet.ok(&["info", "--plain"]);
    assert!(info.stdout.starts_with("web\tup / outdated"), "{}", info.stdout);
    fleet.ok(&["deploy", "-d", "legacy"]);
    let t = fleet.exported_toplevel("legacy", "web").unwrap();
    assert_eq!(fleet.current_system("web"), t);
    let info = fleet.ok(&["info", "--plain"]);
    assert!(info.stdout.starts_with("web\tup / up-to-date"), "{}", info.stdout);
    // Still NixOps' schema: one row per resource, version 3 (NixOps refuses
    // any other); our history beside it, in a table NixOps ignores.
    let out = Command::new("sqlite3")
        .arg(&state)
        .arg(
            "select version from SchemaVersion; select count(*) from Resources;
             select count(*) from History; select part || ' ' || version from ExtraSchemaVersion;",
        )
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n1\n1\nhistory 1\n");
}

#[test]
fn corrupt_state_file_is_named_and_left_alone() {
    let fleet = Fleet::start(&[]);
    let garbage = b"SQLite format 3\0 this is not really a database at all, sorry.......".repeat(100);
    std::fs::write(fleet.state_file(), &garbage).unwrap();
    let r = fleet.run(&["list"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("state.nixops"), "{}", r.stderr);
    assert_eq!(std::fs::read(fleet.state_file()).unwrap(), garbage);
}

/// A deploy killed with SIGKILL in the middle of copying leaves state
/// readable and consistent, and the next deploy completes.
fn deploy_killed_mid_copy_then_redeploy(backend: Backend) {
    let fleet = Fleet::start_on(backend, &["m", "n"]);
    let net = r#"let big = { pkgs, ... }: {
        environment.systemPackages = [ (pkgs.runCommand "big" { } "dd if=/dev/zero of=$out bs=1M count=400") ];
      }; in { m = big; n = big; }"#;
    fleet.create("d", net);
    let mut child = fleet
        .nixops(&["deploy", "--max-concurrent-copy", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let copying = line.ends_with("> copying");
        seen.push(line);
        if copying {
            std::thread::sleep(std::time::Duration::from_millis(150));
            // fleet.sh execs into nixops, so the child's pid is nixops'.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "deploy should have been killed: {seen:?}");
    assert!(seen.iter().any(|l| l.ends_with("> copying")), "{seen:?}");

    // State is intact: nothing claims to run a system it does not.
    let out = fleet.ok(&["export"]);
    assert!(!out.stdout.contains("\"toplevel\""), "{}", out.stdout);
    fleet.ok(&["deploy"]);
    for h in ["m", "n"] {
        assert_eq!(fleet.current_system(h), fleet.exported_toplevel("d", h).unwrap());
    }
}

/// `network.description` shows right after `create` (as in NixOps) and
/// follows `modify` and `set-args`; a network that cannot be evaluated yet
/// (it needs `set-args`) is still created, with a warning.
fn description_is_recorded_at_create_and_modify(backend: Backend) {
    let fleet = Fleet::start_on(backend, &[]);
    let file = fleet.write("net.nix", &simple_network(&["m"], ""));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "one"]);
    let info = fleet.ok(&["info", "--no-eval"]);
    assert!(
        info.stdout.contains("Network description: test network"),
        "{}",
        info.stdout
    );
    assert!(fleet.ok(&["list"]).stdout.contains("test network"));

    let other = fleet.write(
        "other.nix",
        "{ network.description = \"the other one\"; m = { ... }: { }; }",
    );
    fleet.ok(&["modify", other.to_str().unwrap()]);
    let info = fleet.ok(&["info", "--no-eval"]);
    assert!(
        info.stdout.contains("Network description: the other one"),
        "{}",
        info.stdout
    );

    let needs_args = fleet.write(
        "args.nix",
        "{ size }: { network.description = \"sized ${size}\"; m = { ... }: { }; }",
    );
    let r = fleet.ok(&["create", needs_args.to_str().unwrap(), "-d", "two"]);
    assert!(
        r.stderr.contains("warning: network.description not recorded yet"),
        "{}",
        r.stderr
    );
    let info = fleet.ok(&["info", "--no-eval", "-d", "two"]);
    assert!(
        info.stdout
            .contains("Network description: Unnamed NixOps network"),
        "{}",
        info.stdout
    );
    fleet.ok(&["set-args", "-d", "two", "--argstr", "size", "big"]);
    let info = fleet.ok(&["info", "--no-eval", "-d", "two"]);
    assert!(
        info.stdout.contains("Network description: sized big"),
        "{}",
        info.stdout
    );
}
