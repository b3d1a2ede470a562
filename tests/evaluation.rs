//! Evaluation at fleet scale: machines evaluated by a pool of Nix
//! processes, each machine's failure its own, and the evaluation cache,
//! which evaluates a machine again exactly when a file it read changed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Fleet, Run};

/// The machines a run evaluated (not taken from the cache), by the plain
/// display's "NAME> evaluated (i/n...)" lines.
fn evaluated(r: &Run) -> Vec<String> {
    let mut v: Vec<String> = r
        .stderr
        .lines()
        .filter_map(|l| Some(l.split_once("> evaluated (")?.0.to_owned()))
        .collect();
    v.sort();
    v
}

/// Machine → toplevel, from `deploy --dry-run`'s output.
fn toplevels(r: &Run) -> BTreeMap<String, String> {
    r.stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect()
}

fn append(path: &Path, text: &str) {
    let mut s = std::fs::read_to_string(path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

/// Three machines with files only some of them read: each machine's own
/// module, a module all import, a file one of them copies to the store, a
/// file one reads with builtins.readFile (which Nix does not report), and
/// `c` reading `b`'s configuration through `nodes`.
fn cache_network(fleet: &Fleet) -> std::path::PathBuf {
    fleet.write(
        "net/machines/a.nix",
        r#"{ ... }: {
          imports = [ ../shared.nix ];
          environment.etc.who.text = "a";
          environment.etc.data.text = "${../files/a.txt}";
        }
"#,
    );
    fleet.write(
        "net/machines/b.nix",
        r#"{ ... }: {
          imports = [ ../shared.nix ];
          environment.etc.who.text = "b";
          environment.etc.motd.text = builtins.readFile ../files/motd.txt;
        }
"#,
    );
    fleet.write(
        "net/shared.nix",
        "{ ... }: { environment.etc.shared.text = \"1\"; }\n",
    );
    fleet.write("net/files/a.txt", "a's data\n");
    fleet.write("net/files/motd.txt", "hello\n");
    fleet.write(
        "net/network.nix",
        r#"{
          network.description = "cache test";
          a = import ./machines/a.nix;
          b = import ./machines/b.nix;
          c = { nodes, ... }: {
            imports = [ ./shared.nix ];
            environment.etc.peer.text = nodes.b.config.environment.etc.who.text;
          };
        }
"#,
    )
}

#[test]
fn the_cache_evaluates_again_exactly_the_machines_that_read_a_changed_file() {
    let fleet = Fleet::start(&[]);
    let net = cache_network(&fleet);
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "d"]);
    let dir = fleet.path().join("net");
    let cached = || fleet.run(&["deploy", "--dry-run"]);
    let fresh = || fleet.ok(&["deploy", "--dry-run", "--no-eval-cache"]);

    let first = cached();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(evaluated(&first), ["a", "b", "c"], "{}", first.stderr);
    let noop = cached();
    assert_eq!(evaluated(&noop), Vec::<String>::new(), "{}", noop.stderr);
    assert!(
        noop.stderr
            .contains("3 of 3 machines unchanged since they were last evaluated"),
        "{}",
        noop.stderr
    );
    assert_eq!(toplevels(&noop), toplevels(&first));
    assert_eq!(toplevels(&fresh()), toplevels(&first));

    let rounds: [(&str, &str, &[&str]); 8] = [
        // A machine's own module.
        ("machines/a.nix", "# edited\n", &["a"]),
        // A file it copies to the store.
        ("files/a.txt", "more data\n", &["a"]),
        // Read by b, and by c through nodes.b.
        ("machines/b.nix", "# edited\n", &["b", "c"]),
        // Imported by every machine.
        ("shared.nix", "# edited\n", &["a", "b", "c"]),
        // Read with builtins.readFile, which Nix does not report: every
        // machine (see docs/decisions.md).
        ("files/motd.txt", "changed\n", &["a", "b", "c"]),
        // The network file itself.
        ("network.nix", "# edited\n", &["a", "b", "c"]),
        // A new file in the network's directory (builtins.readDir could see it).
        ("files/new.txt", "new\n", &["a", "b", "c"]),
        // An unchanged network.
        ("", "", &[]),
    ];
    for (file, text, readers) in rounds {
        if !file.is_empty() {
            let p = dir.join(file);
            if p.exists() {
                append(&p, text);
            } else {
                std::fs::write(&p, text).unwrap();
            }
        }
        let r = cached();
        assert_eq!(r.code, 0, "{file}: {}", r.stderr);
        assert_eq!(evaluated(&r), readers, "{file}: {}", r.stderr);
        // What the cache gave is what evaluating everything gives.
        assert_eq!(toplevels(&r), toplevels(&fresh()), "{file}");
    }
    // The machines' changes did change their systems.
    let last = toplevels(&cached());
    assert_ne!(last["a"], toplevels(&first)["a"]);

    // A damaged cache is never trusted: a target host changed in it, the
    // machine is evaluated anew; a file that does not parse, all are.
    let cache = fleet.path().join("eval-cache");
    let file = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"targetHost\":\"b\""), "{text}");
    std::fs::write(
        &file,
        text.replace("\"targetHost\":\"b\"", "\"targetHost\":\"x\""),
    )
    .unwrap();
    let r = cached();
    assert_eq!(evaluated(&r), ["b"], "{}", r.stderr);
    assert_eq!(toplevels(&r), last);
    std::fs::write(&file, "{ not json").unwrap();
    let r = cached();
    assert_eq!(evaluated(&r), ["a", "b", "c"], "{}", r.stderr);
    assert_eq!(toplevels(&r), last);
    assert!(!fleet.ok(&["export"]).stdout.contains("\"x\""));
}

#[test]
fn a_machine_that_fails_to_evaluate_fails_alone_and_nodes_work_across_workers() {
    let fleet = Fleet::start(&["a", "d"]);
    let net = fleet.write(
        "net/network.nix",
        r#"{
          a = { nodes, ... }: { environment.etc.peer.text = nodes.d.config.networking.hostName; };
          b = { ... }: { environment.etc.x.text = throw "b is broken"; };
          # Reads what breaks in b: fails with it.
          c = { nodes, ... }: { environment.etc.x.text = nodes.b.config.environment.etc.x.text; };
          # Reads what does not break in b: deploys.
          d = { nodes, ... }: {
            environment.etc.peer.text = nodes.a.config.networking.hostName + nodes.b.config.networking.hostName;
          };
        }
"#,
    );
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "d"]);
    for args in [
        &["deploy", "--eval-jobs", "2"][..],
        // Chunks of several machines per Nix process, a worker started
        // anew whenever it is past 1 MiB.
        &[
            "deploy",
            "--no-eval-cache",
            "--eval-jobs",
            "1",
            "--eval-max-memory",
            "1",
            "--debug",
        ][..],
    ] {
        let r = fleet.run(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("b is broken"), "{}", r.stderr);
        let row = |m: &str| r.summary_row(m);
        for m in ["b", "c"] {
            assert!(
                row(m).contains("evaluation") && row(m).contains("failed"),
                "{}",
                r.stderr
            );
        }
        for m in ["a", "d"] {
            assert!(row(m).contains("deployed"), "{}", r.stderr);
        }
        assert_eq!(fleet.config_json("a")["etc"]["peer"], "d");
        assert_eq!(fleet.config_json("d")["etc"]["peer"], "ab");
        if args.contains(&"--debug") {
            assert!(r.stderr.contains("past its memory limit"), "{}", r.stderr);
        }
    }
}

#[test]
fn info_tells_up_to_date_from_the_cache_without_evaluating() {
    let fleet = Fleet::start(&["web", "db"]);
    let net = fleet.write(
        "net/network.nix",
        "{ web = import ./web.nix; db = { ... }: { environment.etc.x.text = \"db\"; }; }\n",
    );
    fleet.write("net/web.nix", "{ ... }: { environment.etc.x.text = \"web\"; }\n");
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy"]);
    let r = fleet.ok(&["info", "--plain", "--debug"]);
    assert!(r.stdout.contains("db\tUp-to-date"), "{}", r.stdout);
    assert!(r.stdout.contains("web\tUp-to-date"), "{}", r.stdout);
    assert!(!r.stderr.contains("-A machines"), "{}", r.stderr);
    assert!(!r.stderr.contains("-A meta"), "{}", r.stderr);

    // web changed: its system is not evaluated without --check-outdated.
    fleet.write(
        "net/web.nix",
        "{ ... }: { environment.etc.x.text = \"web 2\"; }\n",
    );
    let r = fleet.ok(&["info", "--plain"]);
    assert!(r.stdout.contains("db\tUp-to-date"), "{}", r.stdout);
    assert!(r.stdout.contains("web\tDeployed"), "{}", r.stdout);
    let r = fleet.ok(&["info", "--plain", "--check-outdated"]);
    assert!(r.stdout.contains("web\tOutdated"), "{}", r.stdout);
    // Now cached as well.
    let r = fleet.ok(&["info", "--plain"]);
    assert!(r.stdout.contains("web\tOutdated"), "{}", r.stdout);
    assert!(r.stdout.contains("db\tUp-to-date"), "{}", r.stdout);
}
