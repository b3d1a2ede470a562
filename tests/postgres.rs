//! The state in PostgreSQL: shared by deployers on different machines (here:
//! different HOMEs), locked through the database, moved from SQLite, and
//! clear errors for servers that cannot be used.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::{Backend, Fleet, PG_PASSWORD, pg_server, simple_network};

/// A network whose deploy holds the deployment lock until `gate` exists: a
/// key's command (run by the deployer, under the lock) waits for it.
fn gated_network(machines: &[&str], gate: &Path) -> String {
    let extra = format!(
        "deployment.keys.k.keyCommand = [ \"sh\" \"-c\" \"while [ ! -e {} ]; do sleep 0.05; done; echo k\" ];",
        gate.display()
    );
    simple_network(machines, &extra)
}

/// Waits for a child to end (it must within two minutes: a command stuck
/// on a lock never would).
fn finish(mut child: Child, what: &str) -> (i32, String) {
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            let _ = tx.send(s);
        });
        stderr = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{what} did not finish"));
    }
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), stderr)
}

/// Reads a child's stderr until a line containing `needle`; returns the
/// lines so far and the rest of stderr's reader.
fn read_until(child: &mut Child, needle: &str) -> (Vec<String>, BufReader<std::process::ChildStderr>) {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "stderr ended before ‘{needle}’: {seen:?}");
        let hit = line.contains(needle);
        seen.push(line.trim_end().to_owned());
        if hit {
            return (seen, reader);
        }
    }
}

/// A second deployer: another HOME (its own ~/.nixops, no shared lock file),
/// the same database.
fn other_home(fleet: &Fleet) -> PathBuf {
    let home = fleet.path().join("home2");
    std::fs::create_dir_all(&home).unwrap();
    common::write_pgpass(&home, pg_server().port);
    home
}

#[test]
fn deployers_with_different_homes_exclude_each_other_through_the_database() {
    let fleet = Fleet::start_on(Backend::Postgres, &["m"]);
    let gate = fleet.path().join("go");
    let uuid = fleet.create("d", &gated_network(&["m"], &gate));
    let first = fleet.nixops(&["deploy"]).stderr(Stdio::piped()).spawn().unwrap();
    fleet.wait_for_lock(&uuid);
    let mut second = fleet
        .nixops(&["deploy"])
        .env("HOME", other_home(&fleet))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (seen, rest) = read_until(&mut second, "waiting for exclusive deployment lock...");
    let waiting = seen.last().unwrap();
    // It says who holds the lock: user@host, pid, since when.
    let who = format!("held by {}@", common::whoami());
    assert!(waiting.contains(&who), "{waiting}");
    assert!(waiting.contains(&format!("pid {}", first.id())), "{waiting}");
    assert!(
        waiting.contains(" since ") && waiting.ends_with("UTC)"),
        "{waiting}"
    );
    // The first deployer runs on; the second waits for it.
    std::fs::write(&gate, "").unwrap();
    let (code, err) = finish(first, "the first deploy");
    assert_eq!(code, 0, "{err}");
    second.stderr = Some(rest.into_inner());
    let (code, err) = finish(second, "the second deploy");
    assert_eq!(code, 0, "{err}");
    assert_eq!(fleet.activations("m").len(), 2);
}

#[test]
fn a_killed_lock_holder_leaves_no_lock_behind() {
    let fleet = Fleet::start_on(Backend::Postgres, &["m"]);
    let gate = fleet.path().join("go");
    let uuid = fleet.create("d", &gated_network(&["m"], &gate));
    let mut holder = fleet.nixops(&["deploy"]).stderr(Stdio::null()).spawn().unwrap();
    fleet.wait_for_lock(&uuid);
    // The lock is held: unlock refuses and names the holder.
    let r = fleet.run(&["unlock"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains(&format!("pid {}", holder.id())), "{}", r.stderr);
    common::signal(&holder, libc::SIGKILL);
    holder.wait().unwrap();
    // A command that needs the lock gets it (from another HOME too) and
    // never waits for the dead holder.
    let child = fleet
        .nixops(&["set-args", "--argstr", "x", "y"])
        .env("HOME", other_home(&fleet))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, err) = finish(child, "set-args after the holder was killed");
    assert_eq!(code, 0, "{err}");
    let r = fleet.ok(&["unlock"]);
    assert!(r.stderr.contains("is not locked"), "{}", r.stderr);
}

#[test]
fn deploys_of_different_deployments_do_not_wait_for_each_other() {
    let fleet = Fleet::start_on(Backend::Postgres, &["a", "b"]);
    let gate = fleet.path().join("go");
    let ua = fleet.create("one", &gated_network(&["a"], &gate));
    fleet.create("two", &simple_network(&["b"], ""));
    let first = fleet
        .nixops(&["deploy", "-d", "one"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fleet.wait_for_lock(&ua);
    // "one" is held (and waits for the gate) while "two" deploys through.
    let r = fleet.run(&["deploy", "-d", "two"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("waiting"), "{}", r.stderr);
    std::fs::write(&gate, "").unwrap();
    let (code, err) = finish(first, "the deploy of ‘one’");
    assert_eq!(code, 0, "{err}");
}

/// An export's history: one string of JSON (so NixOps keeps it as an
/// attribute).
fn history_of(deployment: &serde_json::Value) -> Vec<serde_json::Value> {
    serde_json::from_str(deployment["history"].as_str().expect("the history is a string")).unwrap()
}

#[test]
fn export_from_sqlite_import_into_postgres_and_deploy_from_there() {
    let fleet = Fleet::start(&["m"]);
    let uuid = fleet.create("d", &simple_network(&["m"], ""));
    fleet.ok(&["deploy"]);
    let exported = fleet.ok(&["export", "--all"]).stdout;
    let (db, url) = pg_server().new_database();
    common::write_pgpass(&fleet.path().join("home"), pg_server().port);
    let r = fleet.run_with_stdin(&["import", "-s", &url], &exported);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Unchanged, UUID and history included.
    let moved = fleet.ok(&["export", "--all", "-s", &url]).stdout;
    let a: serde_json::Value = serde_json::from_str(&exported).unwrap();
    let b: serde_json::Value = serde_json::from_str(&moved).unwrap();
    assert_eq!(a, b);
    assert_eq!(history_of(&b[&uuid]).len(), 1, "{moved}");
    // The same UUID again: refused, unless --force.
    let r = fleet.run_with_stdin(&["import", "-s", &url], &exported);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("already contains a deployment with UUID") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    let r = fleet.run_with_stdin(&["import", "--force", "-s", &url], &exported);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("replaced deployment ‘{uuid}’")),
        "{}",
        r.stderr
    );
    assert_eq!(pg_server().psql(&db, "select count(*) from Deployments"), "1");
    // Deploy from PostgreSQL: the pinned host key came along.
    let r = fleet.ok(&["deploy", "-s", &url]);
    assert!(!r.stderr.contains("host key"), "{}", r.stderr);
    let t = fleet.current_system("m");
    let again = fleet.ok(&["export", "-s", &url]).stdout;
    let v: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(v[&uuid]["resources"]["m"]["toplevel"], t.as_str());
    assert_eq!(history_of(&v[&uuid]).len(), 2, "{again}");
}

#[test]
fn unusable_databases_are_named_without_the_password_and_nothing_is_written() {
    let fleet = Fleet::start_on(Backend::Postgres, &[]);
    let port = pg_server().port;

    // Nobody listens there.
    let url = "postgresql://nixops:hunter2@127.0.0.1:1/x";
    let r = fleet.run(&["list", "-s", url]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("cannot connect to PostgreSQL state postgresql://nixops@127.0.0.1:1/x"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Connection refused"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);

    // Wrong credentials ($PGPASSWORD goes before ~/.pgpass, as in libpq).
    let out = fleet
        .nixops(&["list"])
        .env("PGPASSWORD", "wrong-password")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&fleet.state), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-password"), "{err}");

    // An empty database: only create and import make the tables.
    let r = fleet.run(&["list"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("holds no NixOps state yet"), "{}", r.stderr);
    let tables = "select count(*) from information_schema.tables where table_schema = 'public'";
    assert_eq!(fleet.psql(tables), "0");

    // libpq's key=value form, with $PGPASSWORD.
    let db = fleet.database.clone().unwrap();
    let kv = format!("host=127.0.0.1 port={port} dbname={db} user=nixops");
    let file = fleet.write("net.nix", &simple_network(&["m"], ""));
    let out = fleet
        .nixops(&["create", "-s", &kv, file.to_str().unwrap(), "-d", "d"])
        .env("PGPASSWORD", PG_PASSWORD)
        .env("HOME", fleet.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fleet.psql("select version from SchemaVersion"), "3");

    // A schema from a newer nixops: refused, by name, and left alone.
    fleet.psql("update SchemaVersion set version = 4");
    for args in [&["list"][..], &["create", file.to_str().unwrap(), "-d", "e"][..]] {
        let r = fleet.run(args);
        assert_ne!(r.code, 0);
        assert!(
            r.stderr.contains(&fleet.state) && r.stderr.contains("schema version 4 is newer"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(fleet.psql("select count(*) from Deployments"), "1");
    fleet.psql("update SchemaVersion set version = 3");
    fleet.psql("update ExtraSchemaVersion set version = 7 where part = 'history'");
    let r = fleet.run(&["list"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("‘history’ tables are of version 7"),
        "{}",
        r.stderr
    );
    fleet.psql("update ExtraSchemaVersion set version = 1 where part = 'history'");
    assert!(fleet.ok(&["list"]).stdout.contains("| d "));

    // A password file others can read is ignored, as libpq does.
    use std::os::unix::fs::PermissionsExt;
    let pgpass = fleet.path().join("home/.pgpass");
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = fleet.run(&["list"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("has group or world access"), "{}", r.stderr);
    assert!(r.stderr.contains("asks for a password"), "{}", r.stderr);
}
