//! deployment.keys against the test fleet: delivery, owners and modes,
//! removal, send-keys, reboots, failures, and that secrets leak nowhere.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Fleet, ProcWatch, grep, random, store_paths_since, watched};

/// Owner, group and octal mode of a file on a host.
fn stat(fleet: &Fleet, host: &str, path: &str) -> String {
    fleet
        .exec(host, &format!("stat -c '%U %G %a' {path}"))
        .trim()
        .to_owned()
}

/// A file's bytes on a host, as hex.
fn hex_of(fleet: &Fleet, host: &str, path: &str) -> String {
    fleet
        .exec(host, &format!("od -An -v -tx1 {path} | tr -d ' \\n'"))
        .trim()
        .to_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn exists(fleet: &Fleet, host: &str, path: &str) -> bool {
    fleet
        .exec(host, &format!("test -e {path} && echo yes || echo no"))
        .trim()
        == "yes"
}

/// Appends lines to a host's private /etc/passwd or /etc/group.
fn add_to_etc(fleet: &Fleet, host: &str, file: &str, line: &str) {
    let p = fleet.path().join("hosts").join(host).join("etc-users").join(file);
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    writeln!(f, "{line}").unwrap();
}

fn config_json(fleet: &Fleet, host: &str) -> serde_json::Value {
    serde_json::from_str(&fleet.exec(host, "cat /run/current-system/config.json")).unwrap()
}

fn names(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

fn mtime(fleet: &Fleet, host: &str, path: &str) -> f64 {
    fleet
        .exec(host, &format!("stat -c %.9Y {path}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn keys_arrive_with_their_bytes_owner_group_and_mode() {
    let fleet = Fleet::start(&["m", "u"]);
    add_to_etc(
        &fleet,
        "m",
        "passwd",
        "keyuser:x:1601:1602::/nonexistent:/bin/false",
    );
    add_to_etc(&fleet, "m", "group", "keygrp:x:1602:");
    add_to_etc(&fleet, "m", "group", "keys:x:1696:");
    let binary: Vec<u8> = (0..=255u8).chain(b"\n".iter().copied()).collect();
    let key_file = fleet.path().join("binary.key");
    std::fs::write(&key_file, &binary).unwrap();
    let net = format!(
        r#"{{
      m = {{ config, ... }}: {{
        environment.etc.keypath.text = config.deployment.keys.cmd.path;
        deployment.keys.text = {{ text = "line1\nquote\" back\\ dollar\${{x}} é"; }};
        deployment.keys.file = {{ keyFile = {file}; user = "keyuser"; group = "keygrp"; permissions = "0440"; }};
        deployment.keys.cmd = {{ keyCommand = [ "sh" "-c" "printf 'from a command'" ]; destDir = "/run/custom/dir"; name = "cmd.pem"; permissions = "0644"; }};
        NOBODY
        deployment.keys.old = "a plain string";
      }};
      u = {{ ... }}: {{
        deployment.targetUser = "deployer";
        deployment.keys.viasudo.text = "sent through sudo";
      }};
    }}"#,
        file = key_file.display()
    );
    fleet.create("d", &net.replace("NOBODY", ""));
    let r = fleet.ok(&["deploy"]);
    assert!(
        r.stderr
            .contains("deployment.keys.old is a plain string, which is deprecated"),
        "{}",
        r.stderr
    );

    assert_eq!(
        fleet.exec("m", "cat /run/keys/text"),
        "line1\nquote\" back\\ dollar${x} é"
    );
    assert_eq!(stat(&fleet, "m", "/run/keys/text"), "root root 600");
    assert_eq!(hex_of(&fleet, "m", "/run/keys/file"), hex(&binary));
    assert_eq!(stat(&fleet, "m", "/run/keys/file"), "keyuser keygrp 440");
    assert_eq!(fleet.exec("m", "cat /run/custom/dir/cmd.pem"), "from a command");
    assert_eq!(stat(&fleet, "m", "/run/custom/dir/cmd.pem"), "root root 644");
    assert_eq!(fleet.exec("m", "cat /run/keys/old"), "a plain string");
    // Directories we create: 0750, root:keys where that group exists.
    assert_eq!(stat(&fleet, "m", "/run/keys"), "root keys 750");
    assert_eq!(stat(&fleet, "m", "/run/custom/dir"), "root keys 750");
    assert!(exists(&fleet, "m", "/run/keys/done"));
    // No temporary files left behind.
    assert_eq!(
        fleet
            .exec("m", "ls -A /run/keys /run/custom/dir | grep -c nixops || true")
            .trim(),
        "0"
    );
    // Through sudo for a non-root SSH user: still root's file.
    assert_eq!(fleet.exec("u", "cat /run/keys/viasudo"), "sent through sudo");
    assert_eq!(stat(&fleet, "u", "/run/keys/viasudo"), "root root 600");

    // The machine's units, NixOps': one service per key, plus nixops-keys
    // (tests/nixops_systems.rs compares them with NixOps 2.0's own).
    let cfg = config_json(&fleet, "m");
    let services = names(&cfg["systemdServices"]);
    for k in ["text", "file", "cmd", "old"] {
        assert!(services.contains(&format!("{k}-key")), "{services:?}");
    }
    assert!(services.contains("nixops-keys"), "{services:?}");
    assert!(names(&cfg["systemdPaths"]).is_empty(), "{cfg}");
    // NixOps' read-only `path` option, for services to refer to.
    assert_eq!(cfg["etc"]["keypath"], "/run/custom/dir/cmd.pem");
    // State keeps where keys went and a hash, never the secret.
    let export = fleet.ok(&["export"]).stdout;
    assert!(export.contains("\\\"hash\\\":\\\"sha256:"), "{export}");
    assert!(!export.contains("line1"), "{export}");
    assert!(!export.contains("from a command"), "{export}");

    // A key whose user exists nowhere, not even after activation: it arrives
    // root's, and NixOps' key snippet (as Colmena's) fails the activation,
    // naming the user; the guard takes the machine back.
    fleet.write(
        "d.nix",
        &net.replace(
            "NOBODY",
            r#"deployment.keys.nobody = { text = "x"; user = "nosuchuser"; };"#,
        ),
    );
    let r = fleet.run(&["deploy", "--include", "m"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("key ‘nobody’: user ‘nosuchuser’ or group ‘root’ does not exist"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("chown: unknown user/group nosuchuser:root"),
        "{}",
        r.stderr
    );
    assert!(r.summary_row("m").contains("rolled back"), "{}", r.stderr);
    assert_eq!(stat(&fleet, "m", "/run/keys/nobody"), "root root 600");
}

#[test]
fn pre_and_post_activation_keys_come_before_and_after_activation() {
    let fleet = Fleet::start(&["m"]);
    fleet.create(
        "d",
        r#"{ m = { ... }: {
          stub.activation.sleep = 1;
          deployment.keys.early.text = "pre";
          deployment.keys.late = { text = "post"; uploadAt = "post-activation"; };
          deployment.keys.svc = { text = "for a service user"; user = "svcuser"; group = "svcuser"; };
        }; }"#,
    );
    // The service user appears during activation, as NixOS creates users
    // then: the key sent before it is sent again after activation.
    let log = fleet.path().join("hosts/m/run/stub-os/activations.log");
    let adder = {
        let passwd = fleet.path().join("hosts/m/etc-users/passwd");
        let group = fleet.path().join("hosts/m/etc-users/group");
        std::thread::spawn(move || {
            for _ in 0..600 {
                if log.exists() {
                    for (f, line) in [
                        (&passwd, "svcuser:x:1701:1701::/:/bin/false"),
                        (&group, "svcuser:x:1701:"),
                    ] {
                        let mut f = std::fs::OpenOptions::new().append(true).open(f).unwrap();
                        writeln!(f, "{line}").unwrap();
                    }
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })
    };
    let r = fleet.ok(&["deploy"]);
    assert!(adder.join().unwrap(), "activation never started");
    assert!(
        r.stderr
            .contains("user ‘svcuser’ or group ‘svcuser’ does not exist yet"),
        "{}",
        r.stderr
    );
    assert_eq!(stat(&fleet, "m", "/run/keys/svc"), "svcuser svcuser 600");

    let activated = mtime(&fleet, "m", "/run/stub-os/activations.log");
    let early = mtime(&fleet, "m", "/run/keys/early");
    let late = mtime(&fleet, "m", "/run/keys/late");
    assert!(early < activated, "early {early} activated {activated}");
    // Activation sleeps 1 s after logging; the late key comes after it ends.
    assert!(late > activated + 1.0, "late {late} activated {activated}");
    assert_eq!(fleet.exec("m", "cat /run/keys/late"), "post");
}

#[test]
fn removed_keys_disappear_and_send_keys_sends_without_deploying() {
    let fleet = Fleet::start(&["a", "b"]);
    let net = |keys: &str| format!("{{ a = {{ ... }}: {{ {keys} }}; b = {{ ... }}: {{ {keys} }}; }}");
    let file = fleet.write(
        "net.nix",
        &net(r#"deployment.keys = { k1.text = "one"; k2.text = "two"; k3.text = "3"; k4.text = "4"; k5 = { text = "5"; destDir = "/run/other"; }; };"#),
    );
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let r = fleet.ok(&["deploy", "--debug"]);
    // All of a machine's keys in one SSH session, over its one connection.
    assert_eq!(r.stderr.matches("mkd() {").count(), 2, "{}", r.stderr);
    // One private temporary directory per destDir and session: upload.sh
    // makes one for each `dir` line of its manifest.
    assert_eq!(r.stderr.matches("\ndir /run/").count(), 2 * 2, "{}", r.stderr);
    for host in ["a", "b"] {
        // One connection (a first deploy has no rollback to confirm).
        assert_eq!(fleet.ssh_count(host), 1);
        assert_eq!(fleet.exec(host, "cat /run/keys/k2"), "two");
        assert_eq!(fleet.exec(host, "cat /run/other/k5"), "5");
    }

    // k2 and k5 go away, k1 changes: send-keys, no activation.
    fleet.write(
        "net.nix",
        &net(r#"deployment.keys = { k1.text = "uno"; k3.text = "3"; k4.text = "4"; };"#),
    );
    let r = fleet.ok(&["send-keys", "--include", "a"]);
    assert!(r.stderr.contains("a> 3 keys sent"), "{}", r.stderr);
    assert!(r.stderr.contains("removed key file /run/keys/k2"), "{}", r.stderr);
    assert_eq!(fleet.exec("a", "cat /run/keys/k1"), "uno");
    assert!(!exists(&fleet, "a", "/run/keys/k2"));
    assert!(!exists(&fleet, "a", "/run/other/k5"));
    assert_eq!(fleet.activations("a").len(), 1);
    // b was not included.
    assert_eq!(fleet.exec("b", "cat /run/keys/k1"), "one");
    assert!(exists(&fleet, "b", "/run/keys/k2"));
    let r = fleet.ok(&["send-keys", "--exclude", "a"]);
    assert!(r.stderr.contains("b> 3 keys sent"), "{}", r.stderr);
    assert!(!exists(&fleet, "b", "/run/keys/k2"));

    // Keys gone from the network altogether: a deploy removes them too.
    fleet.write("net.nix", &net(""));
    fleet.ok(&["deploy"]);
    for host in ["a", "b"] {
        assert!(!exists(&fleet, host, "/run/keys/k1"), "{host}");
        assert_eq!(fleet.activations(host).len(), 2);
    }
    assert!(!fleet.ok(&["export"]).stdout.contains("\"keys\""));
    // Nothing left to do: no session at all.
    let r = fleet.ok(&["send-keys", "--debug"]);
    assert!(!r.stderr.contains("touch /run/keys/done"), "{}", r.stderr);
}

#[test]
fn keys_are_sent_again_after_a_reboot() {
    let fleet = Fleet::start(&["m"]);
    fleet.create(
        "d",
        r#"{ m = { ... }: {
          stub.activation.requestReboot = true;
          deployment.keys.k.text = "survives reboots";
          deployment.keys.p = { text = "post"; uploadAt = "post-activation"; };
        }; }"#,
    );
    let before = fleet.boot_id("m");
    fleet.ok(&["deploy", "--allow-reboot"]);
    let after = fleet.boot_id("m");
    assert_ne!(before, after);
    // The fake reboot emptied /run; the keys are back.
    assert_eq!(fleet.exec("m", "cat /run/keys/k"), "survives reboots");
    assert_eq!(fleet.exec("m", "cat /run/keys/p"), "post");
    assert!(exists(&fleet, "m", "/run/keys/done"));
    assert!(!exists(&fleet, "m", "/run/stub-os/activations.log"));

    fleet.ok(&["deploy", "--force-reboot"]);
    assert_ne!(fleet.boot_id("m"), after);
    assert_eq!(fleet.exec("m", "cat /run/keys/k"), "survives reboots");
    assert_eq!(fleet.exec("m", "cat /run/keys/p"), "post");
}

#[test]
fn a_failing_key_command_fails_only_its_machine() {
    let fleet = Fleet::start(&["bad", "good"]);
    fleet.create(
        "d",
        r#"{
          bad = { ... }: { deployment.keys.k.keyCommand = [ "sh" "-c" "echo 'vault says no' >&2; exit 3" ]; };
          good = { ... }: { deployment.keys.k.keyCommand = [ "echo" "fine" ]; };
        }"#,
    );
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("namely on ‘bad’)"), "{}", r.stderr);
    assert!(r.stderr.contains("vault says no"), "{}", r.stderr);
    assert!(r.stderr.contains("exited with code 3"), "{}", r.stderr);
    assert!(fleet.activations("bad").is_empty());
    assert!(!exists(&fleet, "bad", "/run/keys/k"));
    assert_eq!(fleet.exec("good", "cat /run/keys/k"), "fine\n");
    assert_eq!(fleet.activations("good").len(), 1);
}

#[test]
fn a_missing_key_file_names_machine_key_and_path() {
    let fleet = Fleet::start(&["m", "other"]);
    fleet.create(
        "d",
        r#"{
          m = { ... }: { deployment.keys.dbpass.keyFile = "/nonexistent/secret/db.pass"; };
          other = { ... }: { };
        }"#,
    );
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "machine ‘m’: deployment.keys.dbpass: cannot read keyFile ‘/nonexistent/secret/db.pass’"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("namely on ‘m’)"), "{}", r.stderr);
    // Nothing was activated: the keys are where it failed.
    let row = r.summary_row("m");
    assert!(row.contains("| keys ") && row.contains("| failed "), "{row}");
    assert!(fleet.activations("m").is_empty());
    assert!(fleet.current_system("m").is_empty());
    assert_eq!(fleet.activations("other").len(), 1);
    // A machine without keys gets no key units, and nixops-keys masked (as
    // NixOps has it).
    let cfg = config_json(&fleet, "other");
    assert!(!names(&cfg["systemdServices"]).contains("nixops-keys"), "{cfg}");
    assert!(names(&cfg["systemdPaths"]).is_empty(), "{cfg}");
    assert_eq!(
        fleet.exec(
            "other",
            "readlink /run/current-system/etc/systemd/system/nixops-keys.service"
        ),
        "/dev/null\n"
    );
    let r = fleet.run(&["send-keys"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/nonexistent/secret/db.pass"), "{}", r.stderr);
}

#[test]
fn keys_need_exactly_one_source() {
    let fleet = Fleet::start(&["m"]);
    let file = fleet.write(
        "net.nix",
        r#"{ m = { ... }: { deployment.keys.both = { text = "a"; keyFile = "/etc/hostname"; }; }; }"#,
    );
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "machine ‘m’: deployment.keys.both must set exactly one of text, keyFile and keyCommand (it sets text and keyFile)"
        ),
        "{}",
        r.stderr
    );
    fleet.write(
        "net.nix",
        r#"{ m = { ... }: { deployment.keys.none = { user = "x"; }; }; }"#,
    );
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("deployment.keys.none must set exactly one"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("(it sets none)"), "{}", r.stderr);
    fleet.write(
        "net.nix",
        r#"{ m = { ... }: { deployment.keys.k = { text = "a"; name = "../x"; }; }; }"#,
    );
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not a file name"), "{}", r.stderr);
    assert_eq!(fleet.ssh_count("m"), 0);
}

// ------------------------------------------------------------------ leaks

#[test]
fn secrets_never_reach_the_store_argv_environment_logs_or_state() {
    let fleet = Fleet::start(&["m"]);
    let text = random("text-secret");
    let plain = random("plain-secret");
    let file = random("file-secret");
    let cmd = random("cmd-secret");
    let secrets = vec![text.clone(), plain.clone(), file.clone(), cmd.clone()];
    let secret_dir = fleet.path().join("secrets");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("file"), &file).unwrap();
    std::fs::write(secret_dir.join("cmd"), &cmd).unwrap();
    let marker = fleet.path().join("store-marker");
    std::fs::write(&marker, "").unwrap();
    std::thread::sleep(Duration::from_millis(20));

    // The watcher itself works: it sees a canary in argv and environment.
    let canary = random("canary");
    let w = ProcWatch::start(vec![canary.clone()]);
    let mut child = Command::new("sleep")
        .arg("1")
        .arg0(&canary)
        .env("CANARY", &canary)
        .spawn()
        .unwrap();
    let _ = child.wait();
    let (hits, _) = w.finish();
    assert!(hits.iter().any(|h| h.contains("environ")), "{hits:?}");
    assert!(hits.iter().any(|h| h.contains("cmdline")), "{hits:?}");

    let net = fleet.write(
        "net.nix",
        &format!(
            r#"{{ m = {{ ... }}: {{
              stub.activation.sleep = 1;
              deployment.keys.t.text = "{text}";
              deployment.keys.p = "{plain}";
              deployment.keys.f.keyFile = {dir}/file;
              deployment.keys.c = {{ keyCommand = [ "cat" "{dir}/cmd" ]; uploadAt = "post-activation"; }};
            }}; }}"#,
            dir = secret_dir.display()
        ),
    );
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "d"]);
    let mut logs = String::new();
    let mut all_hits = Vec::new();
    for args in [
        &["deploy", "--debug"][..],
        &["send-keys", "--debug"][..],
        &["deploy", "--debug", "--force-reboot"][..],
    ] {
        let (r, hits) = watched(&fleet, args, &secrets);
        logs += &r.stdout;
        logs += &r.stderr;
        all_hits.extend(hits);
    }
    assert!(all_hits.is_empty(), "secrets seen in /proc: {all_hits:?}");
    // The keys did arrive (so the checks above are meaningful).
    assert_eq!(fleet.exec("m", "cat /run/keys/t"), text);
    assert_eq!(fleet.exec("m", "cat /run/keys/c"), cmd);
    assert!(logs.contains("running: ssh"), "--debug shows commands: {logs}");
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "{s} in the output:\n{logs}");
    }

    // The deployer's store: everything added since the test began, and the
    // toplevel's closure with its derivations.
    let toplevel = fleet.exported_toplevel("d", "m").unwrap();
    let store_paths = store_paths_since(&marker, &toplevel);
    let store_paths: Vec<&Path> = store_paths.iter().map(Path::new).collect();
    for s in &secrets {
        let found = grep(&store_paths, s, &[]);
        assert!(found.is_empty(), "{s} in the deployer's store: {found:?}");
    }

    // The host's private store, and the whole fleet directory (state file,
    // its journal, ~/.nixops, host logs) but for the secrets' own files, the
    // network file and the host's /run, where the keys belong.
    let host = fleet.path().join("hosts/m");
    for s in &secrets {
        let found = grep(&[fleet.path()], s, &[&secret_dir, &net, &host.join("run")]);
        assert!(found.is_empty(), "{s} found in {found:?}");
    }
    let state = std::fs::read(fleet.state_file()).unwrap();
    assert!(state.len() > 1000);
    let export = fleet.ok(&["export"]).stdout;
    assert!(export.contains("hash"), "{export}");
}
