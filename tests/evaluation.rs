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
            .contains("3 of 3 machines taken from the evaluation cache, not evaluated again"),
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
        // Read with builtins.readFile, which Nix does not report: the
        // evaluation trace sees it (docs/decisions.md).
        ("files/motd.txt", "changed\n", &["b"]),
        // The network file itself.
        ("network.nix", "# edited\n", &["a", "b", "c"]),
        // A new file in the network's directory that nothing lists or reads.
        ("files/new.txt", "new\n", &[]),
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
fn info_tells_up_to_date_from_the_cache_evaluating_only_what_changed() {
    let fleet = Fleet::start(&["web", "db"]);
    let net = fleet.write(
        "net/network.nix",
        "{ web = import ./web.nix; db = { ... }: { environment.etc.x.text = \"db\"; }; }\n",
    );
    fleet.write("net/web.nix", "{ ... }: { environment.etc.x.text = \"web\"; }\n");
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy"]);
    let r = fleet.ok(&["info", "--plain", "--debug"]);
    assert!(r.stdout.contains("db\tup / up-to-date"), "{}", r.stdout);
    assert!(r.stdout.contains("web\tup / up-to-date"), "{}", r.stdout);
    assert!(!r.stderr.contains("-A machines"), "{}", r.stderr);
    assert!(!r.stderr.contains("-A meta"), "{}", r.stderr);

    // web changed: info evaluates web, and only web.
    fleet.write(
        "net/web.nix",
        "{ ... }: { environment.etc.x.text = \"web 2\"; }\n",
    );
    let r = fleet.ok(&["info", "--plain", "--debug"]);
    assert!(r.stdout.contains("db\tup / up-to-date"), "{}", r.stdout);
    assert!(r.stdout.contains("web\tup / outdated"), "{}", r.stdout);
    assert_eq!(r.stderr.matches("-A machines").count(), 1, "{}", r.stderr);
    // Now cached as well.
    let r = fleet.ok(&["info", "--plain", "--debug"]);
    assert!(r.stdout.contains("web\tup / outdated"), "{}", r.stdout);
    assert!(r.stdout.contains("db\tup / up-to-date"), "{}", r.stdout);
    assert!(!r.stderr.contains("-A machines"), "{}", r.stderr);
}

/// Runs nixops with environment variables `env` set.
fn run_env(fleet: &Fleet, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = fleet.nixops(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

fn symlink(target: &str, link: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// Every kind of input an evaluation can observe, each read by one machine
/// only, inside the network's directory and outside it: a change to any of
/// them evaluates exactly that machine again, and what the cache gives is
/// what evaluating everything gives.
#[test]
fn the_cache_sees_every_input_the_evaluation_observed() {
    let fleet = Fleet::start(&[]);
    let out = fleet.path().join("outside");
    let o = out.display().to_string();
    fleet.write("outside/abs.txt", "abs 1\n");
    fleet.write("home/greeting.txt", "hello 1\n");
    fleet.write("other-repo/data.txt", "other 1\n");
    fleet.write("outside/target.txt", "target 1\n");
    fleet.write("outside/target2.txt", "target 2\n");
    fleet.write("outside/dir/one", "");
    fleet.write("outside/h.txt", "h 1\n");
    fleet.write("outside/tree/a.txt", "tree 1\n");
    fleet.write("outside/j.json", "{ \"v\": 1 }\n");
    fleet.write("outside/keys/id.pub", "ssh-ed25519 AAAA1 one\n");
    fleet.write("search/extra/data.txt", "search 1\n");
    fleet.write(
        "net/mod-a.nix",
        "{ ... }: { environment.etc.mod.text = \"a\"; }\n",
    );
    fleet.write(
        "net/mod-b.nix",
        "{ ... }: { environment.etc.mod.text = \"b\"; }\n",
    );
    symlink("mod-a.nix", &fleet.path().join("net/current.nix"));
    symlink("../outside/target.txt", &fleet.path().join("net/link.txt"));
    let machines = [
        (
            "env",
            "environment.etc.x.text = builtins.getEnv \"NIXOPS_TEST_GEN\";".to_owned(),
        ),
        (
            "abs",
            format!("environment.etc.x.text = builtins.readFile {o}/abs.txt;"),
        ),
        (
            "home",
            "environment.etc.x.text = builtins.readFile ~/greeting.txt;".to_owned(),
        ),
        (
            "other",
            "environment.etc.x.text = builtins.readFile ../other-repo/data.txt;".to_owned(),
        ),
        ("linkmod", "imports = [ ./current.nix ];".to_owned()),
        (
            "linkread",
            "environment.etc.x.text = builtins.readFile ./link.txt;".to_owned(),
        ),
        (
            "listing",
            format!("environment.etc.x.text = toString (builtins.attrNames (builtins.readDir {o}/dir));"),
        ),
        (
            "exists",
            format!("environment.etc.x.text = if builtins.pathExists {o}/flag then \"on\" else \"off\";"),
        ),
        (
            "hash",
            format!("environment.etc.x.text = builtins.hashFile \"sha256\" {o}/h.txt;"),
        ),
        (
            "copy",
            format!(
                "environment.etc.x.text = \"${{builtins.path {{ path = {o}/tree; name = \"tree\"; }}}}\";"
            ),
        ),
        (
            "filter",
            format!("environment.etc.x.text = \"${{builtins.filterSource (p: t: true) {o}/tree}}\";"),
        ),
        (
            "json",
            format!("environment.etc.x.text = toString (lib.importJSON {o}/j.json).v;"),
        ),
        (
            "authkeys",
            format!("users.users.root.openssh.authorizedKeys.keyFiles = [ {o}/keys/id.pub ];"),
        ),
        (
            "search",
            "environment.etc.x.text = builtins.readFile <extra/data.txt>;".to_owned(),
        ),
    ];
    let mut net = String::from("{\n");
    for (name, body) in &machines {
        net += &format!("  {name} = {{ lib, ... }}: {{ {body} }};\n");
    }
    net += "}\n";
    let file = fleet.write("net/network.nix", &net);
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let search = format!("extra={}", fleet.path().join("search/extra").display());
    let env = [("NIXOPS_TEST_GEN", "1")];
    let args = ["deploy", "--dry-run", "-I", &search];
    let cached = |env: &[(&str, &str)]| {
        let r = run_env(&fleet, &args, env);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    };
    let first = cached(&env);
    assert_eq!(evaluated(&first).len(), machines.len(), "{}", first.stderr);
    assert_eq!(evaluated(&cached(&env)), Vec::<String>::new());

    let write = |name: &str, text: &str| {
        fleet.write(name, text);
    };
    let net_dir = fleet.path().join("net");
    // (the machine that reads it, the change, variables set)
    type Round<'a> = (&'a str, Box<dyn Fn() + 'a>, Vec<(&'a str, &'a str)>);
    let rounds: Vec<Round> = vec![
        ("env", Box::new(|| {}), vec![("NIXOPS_TEST_GEN", "2")]),
        ("abs", Box::new(|| write("outside/abs.txt", "abs 2\n")), vec![]),
        (
            "home",
            Box::new(|| write("home/greeting.txt", "hello 2\n")),
            vec![],
        ),
        (
            "other",
            Box::new(|| write("other-repo/data.txt", "other 2\n")),
            vec![],
        ),
        (
            "linkmod",
            Box::new(|| symlink("mod-b.nix", &net_dir.join("current.nix"))),
            vec![],
        ),
        (
            "linkread",
            Box::new(|| write("outside/target.txt", "target 1b\n")),
            vec![],
        ),
        (
            "linkread",
            Box::new(|| symlink("../outside/target2.txt", &net_dir.join("link.txt"))),
            vec![],
        ),
        ("listing", Box::new(|| write("outside/dir/two", "")), vec![]),
        ("exists", Box::new(|| write("outside/flag", "")), vec![]),
        ("hash", Box::new(|| write("outside/h.txt", "h 2\n")), vec![]),
        ("copy", Box::new(|| write("outside/tree/b.txt", "new\n")), vec![]),
        (
            "json",
            Box::new(|| write("outside/j.json", "{ \"v\": 2 }\n")),
            vec![],
        ),
        (
            "authkeys",
            Box::new(|| write("outside/keys/id.pub", "ssh-ed25519 AAAA2 two\n")),
            vec![],
        ),
        (
            "search",
            Box::new(|| write("search/extra/data.txt", "search 2\n")),
            vec![],
        ),
    ];
    let mut env: Vec<(&str, &str)> = env.to_vec();
    let mut before = toplevels(&first);
    for (machine, change, set) in rounds {
        change();
        for (k, v) in set {
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        }
        let r = cached(&env);
        let mut want = vec![machine];
        // `filter` reads the same tree as `copy`.
        if machine == "copy" {
            want.push("filter");
        }
        assert_eq!(evaluated(&r), want, "{machine}: {}", r.stderr);
        let now = toplevels(&r);
        for m in &want {
            assert_ne!(now[*m], before[*m], "{m}'s system did not change: {}", r.stderr);
        }
        before = now;
    }
    let fresh = run_env(
        &fleet,
        &["deploy", "--dry-run", "--no-eval-cache", "-I", &search],
        &env,
    );
    assert_eq!(toplevels(&fresh), before);
}

/// Creates deployment `d` of `network` (net/network.nix); then each call
/// is a `deploy --dry-run` with one evaluation job and the debug log on.
fn one_job_dry_runs<'a>(fleet: &'a Fleet, network: &str) -> impl Fn() -> Run + 'a {
    let file = fleet.write("net/network.nix", network);
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    move || {
        let r = run_env(
            fleet,
            &["deploy", "--dry-run", "--eval-jobs", "1"],
            &[("NIXOPS_LOG", "nixops=debug")],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    }
}

/// Light machines whose evaluations miss together share a Nix process.
/// Nix reads a file once per process, so each is recorded with all its
/// process had read until its result: a file two machines of one process
/// import still makes both miss when it changes.
#[test]
fn machines_sharing_a_process_are_recorded_with_all_it_read() {
    let fleet = Fleet::start(&[]);
    fleet.write(
        "net/common.nix",
        "{ ... }: { environment.etc.common.text = \"1\"; }\n",
    );
    fleet.write("net/ab.nix", "{ ... }: { environment.etc.ab.text = \"1\"; }\n");
    fleet.write("net/d.txt", "d 1\n");
    let run = one_job_dry_runs(
        &fleet,
        "{\n  a = { ... }: { imports = [ ./common.nix ./ab.nix ]; };\n  b = { ... }: { imports = [ ./common.nix ./ab.nix ]; };\n  c = { ... }: { imports = [ ./common.nix ]; };\n  d = { ... }: { imports = [ ./common.nix ]; environment.etc.d.text = builtins.readFile ./d.txt; };\n}\n",
    );
    let shared = |r: &Run| r.stderr.contains("evaluating in one Nix process: ");
    // Unknown costs: each machine alone, and recorded exactly.
    let first = run();
    assert_eq!(evaluated(&first), ["a", "b", "c", "d"], "{}", first.stderr);
    assert!(!shared(&first), "{}", first.stderr);

    // All four miss, all light: two processes of two.
    fleet.write(
        "net/common.nix",
        "{ ... }: { environment.etc.common.text = \"2\"; }\n",
    );
    let r = run();
    assert_eq!(evaluated(&r), ["a", "b", "c", "d"], "{}", r.stderr);
    assert!(
        r.stderr.contains("evaluating in one Nix process: a, b"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("evaluating in one Nix process: c, d"),
        "{}",
        r.stderr
    );

    // b's record holds ab.nix, which its process read for a only.
    fleet.write("net/ab.nix", "{ ... }: { environment.etc.ab.text = \"2\"; }\n");
    let r = run();
    assert_eq!(evaluated(&r), ["a", "b"], "{}", r.stderr);
    fleet.write("net/d.txt", "d 2\n");
    let r = run();
    assert_eq!(evaluated(&r), ["d"], "{}", r.stderr);
    let cached = toplevels(&run());
    let fresh = fleet.ok(&["deploy", "--dry-run", "--no-eval-cache"]);
    assert_eq!(cached, toplevels(&fresh));
}

/// A fleet's first evaluation of many machines shares processes too: the
/// records are supersets, never wrong, and a machine's own file still
/// makes it miss.
#[test]
fn a_first_evaluation_of_many_machines_shares_processes() {
    let fleet = Fleet::start(&[]);
    let names: Vec<String> = (1..=18).map(|i| format!("m{i:02}")).collect();
    let mut net = String::from("{\n");
    for n in &names {
        fleet.write(&format!("net/{n}.txt"), &format!("{n} 1\n"));
        net += &format!("  {n} = {{ ... }}: {{ environment.etc.x.text = builtins.readFile ./{n}.txt; }};\n");
    }
    net += "}\n";
    let run = one_job_dry_runs(&fleet, &net);
    let fresh = || toplevels(&fleet.ok(&["deploy", "--dry-run", "--no-eval-cache"]));
    let first = run();
    assert_eq!(evaluated(&first), names, "{}", first.stderr);
    assert!(
        first.stderr.contains("evaluating in one Nix process: m01, m02"),
        "{}",
        first.stderr
    );
    assert_eq!(toplevels(&first), fresh());
    assert_eq!(evaluated(&run()), Vec::<String>::new());

    // The first machine of a process: it misses, and so may the machines
    // after it in that process (their records hold its file), no others.
    fleet.write("net/m01.txt", "m01 2\n");
    let r = run();
    let got = evaluated(&r);
    assert!(got.contains(&"m01".to_owned()), "{}", r.stderr);
    assert!(got.iter().all(|n| n.as_str() <= "m08"), "{}", r.stderr);
    assert_eq!(toplevels(&run()), fresh());
    // The last machine of a process misses alone: its file is its own.
    fleet.write("net/m18.txt", "m18 2\n");
    let r = run();
    assert_eq!(evaluated(&r), ["m18"], "{}", r.stderr);
    assert_eq!(toplevels(&run()), fresh());
}

/// What no digest can pin is never served from the cache: the clock, a
/// fetch without a fixed hash.
#[test]
fn what_nix_cannot_pin_is_never_cached() {
    let fleet = Fleet::start(&[]);
    fleet.write("src/hello.txt", "hello\n");
    let tarball = fleet.path().join("src.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(fleet.path())
        .arg("src")
        .status()
        .unwrap();
    assert!(st.success());
    // A git repository's branch, fetched by fetchGit (which runs git).
    let repo = fleet.path().join("repo");
    fleet.write("repo/hello.txt", "from git\n");
    for args in [
        &["init", "-q"][..],
        &["add", "hello.txt"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-q",
            "-m",
            "one",
        ],
    ] {
        let st = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    }
    fleet.write(
        "net/git.nix",
        &format!(
            "{{ ... }}: {{ environment.etc.t.text = builtins.readFile \"${{builtins.fetchGit {}}}/hello.txt\"; }}\n",
            repo.display()
        ),
    );
    fleet.write(
        "net/clock.nix",
        "{ ... }: { environment.etc.t.text = toString builtins.currentTime; }\n",
    );
    let file = fleet.write(
        "net/network.nix",
        &format!(
            "{{\n  clock = import ./clock.nix;\n  git = import ./git.nix;\n  fetch = {{ ... }}: {{ environment.etc.t.text = builtins.readFile \"${{builtins.fetchTarball \"file://{}\"}}/hello.txt\"; }};\n  plain = {{ ... }}: {{ environment.etc.t.text = \"plain\"; }};\n}}\n",
            tarball.display()
        ),
    );
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let first = fleet.ok(&["deploy", "--dry-run"]);
    assert_eq!(
        evaluated(&first),
        ["clock", "fetch", "git", "plain"],
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("currentTime"), "{}", first.stderr);
    assert!(first.stderr.contains("git"), "{}", first.stderr);
    let second = fleet.ok(&["deploy", "--dry-run"]);
    assert_eq!(evaluated(&second), ["clock", "fetch", "git"], "{}", second.stderr);
    assert!(second.stderr.contains("never cached"), "{}", second.stderr);
}

/// The issue's report, deployed for real: a system and a key that vary with
/// an environment variable are deployed as the variable says, with the
/// cache on.
#[test]
fn a_network_that_reads_the_environment_deploys_what_it_says_now() {
    let fleet = Fleet::start(&["m"]);
    let file = fleet.write(
        "net/network.nix",
        r#"{
  m = { lib, ... }: {
    environment.etc.gen.text = "gen-${builtins.getEnv "GEN"}";
    deployment.keys = lib.optionalAttrs (builtins.getEnv "WITH_KEY" == "1") {
      secret.text = "s3cret";
    };
  };
}
"#,
    );
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let deploy = |env: &[(&str, &str)]| {
        let r = run_env(&fleet, &["deploy"], env);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    };
    let key = || fleet.exec("m", "cat /run/keys/secret 2>/dev/null || echo none");
    deploy(&[("GEN", "1"), ("WITH_KEY", "1")]);
    assert_eq!(fleet.config_json("m")["etc"]["gen"], "gen-1");
    assert_eq!(key().trim(), "s3cret");
    let r = deploy(&[("GEN", "2"), ("WITH_KEY", "1")]);
    assert!(
        r.stderr.contains("environment variable GEN changed"),
        "{}",
        r.stderr
    );
    assert_eq!(fleet.config_json("m")["etc"]["gen"], "gen-2");
    deploy(&[("GEN", "2")]);
    assert_eq!(key().trim(), "none");
    // Unchanged: served from the cache.
    let r = deploy(&[("GEN", "2")]);
    assert_eq!(evaluated(&r), Vec::<String>::new(), "{}", r.stderr);
    assert_eq!(fleet.config_json("m")["etc"]["gen"], "gen-2");
}

/// Symlinks anywhere on the way count by what they reach: the network file
/// itself and a directory of modules, each re-pointed.
#[test]
fn a_repointed_network_file_or_directory_is_seen() {
    let fleet = Fleet::start(&[]);
    fleet.write(
        "net/net-a.nix",
        "{ m = import ./mods/m.nix; n = { ... }: { environment.etc.x.text = \"a\"; }; }\n",
    );
    fleet.write(
        "net/net-b.nix",
        "{ m = import ./mods/m.nix; n = { ... }: { environment.etc.x.text = \"b\"; }; }\n",
    );
    fleet.write(
        "net/mods-1/m.nix",
        "{ ... }: { environment.etc.x.text = \"1\"; }\n",
    );
    fleet.write(
        "net/mods-2/m.nix",
        "{ ... }: { environment.etc.x.text = \"2\"; }\n",
    );
    let dir = fleet.path().join("net");
    symlink("net-a.nix", &dir.join("network.nix"));
    symlink("mods-1", &dir.join("mods"));
    fleet.ok(&["create", dir.join("network.nix").to_str().unwrap(), "-d", "d"]);
    let dry = || fleet.ok(&["deploy", "--dry-run"]);
    let first = dry();
    assert_eq!(evaluated(&first), ["m", "n"]);
    assert_eq!(evaluated(&dry()), Vec::<String>::new());

    symlink("net-b.nix", &dir.join("network.nix"));
    let r = dry();
    assert!(evaluated(&r).contains(&"n".to_owned()), "{}", r.stderr);
    assert_ne!(toplevels(&r)["n"], toplevels(&first)["n"]);

    symlink("mods-2", &dir.join("mods"));
    let r2 = dry();
    assert_eq!(evaluated(&r2), ["m"], "{}", r2.stderr);
    assert_ne!(toplevels(&r2)["m"], toplevels(&r)["m"]);
    let fresh = fleet.ok(&["deploy", "--dry-run", "--no-eval-cache"]);
    assert_eq!(toplevels(&fresh), toplevels(&r2));
}
