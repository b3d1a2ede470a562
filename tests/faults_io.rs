//! Faults around the tool's own input and output: bytes that are not UTF-8,
//! closed pipes, signals, leaked temporary files, full disks and failed
//! builds, against the test fleet.

mod common;

use common::{Fleet, simple_network};

#[test]
fn nix_errors_that_are_not_utf8_are_shown_lossily() {
    let fleet = Fleet::start(&[]);
    // Nix 2.8 cuts "é" (two bytes) after its first byte when it names the
    // illegal character of a store path. (A machine named "é" no longer
    // gets that far: its host name is refused first.)
    let accent = "{ m = { pkgs, ... }: { environment.systemPackages = [ (pkgs.writeText \"é\" \"\") ]; }; }";
    fleet.create("accent", accent);
    let r = fleet.run(&["deploy", "-d", "accent"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    // (The machine's evaluation failed: the error is its own.)
    let said = |l: &str| l.contains("evaluation failed: error: ") && l.contains("-é'");
    assert!(r.stderr.lines().any(said), "{}", r.stderr);
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

/// `(ppid, state, start time)` of a process, from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s[s.rfind(')')? + 2..].split(' ').collect();
    Some((
        rest[1].parse().ok()?,
        rest[0].chars().next()?,
        rest[19].parse().ok()?,
    ))
}

fn argv0(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let name = String::from_utf8_lossy(first);
    name.rsplit('/').next().unwrap_or_default().to_owned()
}

fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).into_owned()
}

/// Waits for a process that `test` accepts; returns its pid and start
/// time (which tells it from a later process with the same pid).
fn wait_for_process(what: &str, test: impl Fn(u32, u32) -> bool) -> (u32, u64) {
    for _ in 0..2400 {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some((ppid, _, start)) = stat(pid)
                && test(pid, ppid)
            {
                return (pid, start);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what} never started");
}

/// Waits for a child of `parent` running `program`.
fn wait_for_child(parent: u32, program: &str) -> (u32, u64) {
    wait_for_process(program, |pid, ppid| ppid == parent && argv0(pid) == program)
}

/// Whether that process still runs (a zombie has ended).
fn running(pid: u32, start: u64) -> bool {
    matches!(stat(pid), Some((_, state, s)) if s == start && state != 'Z')
}

/// Waits a while for the process to end; false if it keeps running.
fn ends(pid: u32, start: u64) -> bool {
    for _ in 0..300 {
        if !running(pid, start) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// Kills what a failed test left running.
fn kill(pid: u32, start: u64) {
    if running(pid, start) {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// Whether some ssh master connection still serves a socket in `dir`.
fn a_master_runs(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        e.file_type().unwrap().is_socket()
            && std::process::Command::new("ssh")
                .args(["-o", &format!("ControlPath={}", e.path().display())])
                .args(["-O", "check", "web"])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
    })
}

/// Private directories for the tool's temporary files (`TMPDIR`) and ssh
/// sockets (`XDG_RUNTIME_DIR`): other tests run beside this one.
struct Private {
    tmp: std::path::PathBuf,
    xdg: std::path::PathBuf,
}

impl Private {
    fn new(fleet: &Fleet) -> Private {
        let p = Private {
            tmp: fleet.path().join("tmp"),
            xdg: fleet.path().join("xdg"),
        };
        std::fs::create_dir(&p.tmp).unwrap();
        std::fs::create_dir(&p.xdg).unwrap();
        p
    }

    fn ssh_dir(&self) -> std::path::PathBuf {
        self.xdg.join(format!("nixops-ssh-{}", unsafe { libc::getuid() }))
    }

    /// A deploy in the background, its output in `<name>.log`.
    fn deploy(&self, fleet: &Fleet, d: &str) -> std::process::Child {
        let log = std::fs::File::create(fleet.path().join(format!("{d}.log"))).unwrap();
        self.command(fleet, &["deploy", "-d", d])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn command(&self, fleet: &Fleet, args: &[&str]) -> std::process::Command {
        let mut cmd = fleet.nixops(args);
        cmd.env("TMPDIR", &self.tmp)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .env("NIXOPS_SSH_PERSIST", "60");
        cmd
    }

    /// What the tool left behind: temporary directories and known_hosts
    /// files, anywhere in its private directories.
    fn leftovers(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("nixops-") && !name.starts_with("nixops-ssh-")
                    || name.starts_with("known-")
                    || name.ends_with(".known")
                {
                    out.push(e.path().display().to_string());
                }
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.tmp, &mut out);
        walk(&self.xdg, &mut out);
        out
    }
}

/// Waits until the stub OS's switch-to-configuration has begun on `host`.
fn wait_for_activation(fleet: &Fleet, host: &str) {
    let log = fleet
        .path()
        .join("hosts")
        .join(host)
        .join("run/stub-os/activations.log");
    for _ in 0..2400 {
        if log.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{host} was never activated");
}

#[test]
fn a_killed_deploy_stops_its_builds_and_copies() {
    let fleet = Fleet::start(&["web"]);
    let private = Private::new(&fleet);
    let deploy = |d: &str| private.deploy(&fleet, d);
    let xdg = &private.xdg;

    // A build that takes long (unique to this test: nothing is cached).
    let slow = format!(
        "{{ web = {{ pkgs, ... }}: {{ environment.systemPackages = [ (pkgs.runCommand \"slow\" {{ }} \"sleep 600; mkdir $out # {}\") ]; }}; }}",
        fleet.path().display()
    );
    fleet.create("build", &slow);
    let mut nixops = deploy("build");
    let (pid, start) = wait_for_child(nixops.id(), "nix-store");
    let nonce = fleet.path().to_str().unwrap().to_owned();
    let (builder, builder_start) = wait_for_process("the builder", |pid, _| {
        argv0(pid) == "busybox" && cmdline(pid).contains(&nonce)
    });
    nixops.kill().unwrap();
    nixops.wait().unwrap();
    let ended = ends(pid, start);
    let builder_ended = ends(builder, builder_start);
    kill(pid, start);
    kill(builder, builder_start);
    assert!(
        ended,
        "nix-store --realise kept running after the deploy was killed"
    );
    assert!(
        builder_ended,
        "the builder kept running after the deploy was killed"
    );

    // A copy that never ends: the host's nix-store --serve hangs.
    let wrapper = fleet.path().join("hosts/web/bin/nix-store");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\n[ \"$1\" = --serve ] && exec sleep 600\nexec /usr/bin/nix-store \"$@\"\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    fleet.create("copy", &simple_network(&["web"], ""));
    let mut nixops = deploy("copy");
    let (pid, start) = wait_for_child(nixops.id(), "nix-copy-closure");
    nixops.kill().unwrap();
    nixops.wait().unwrap();
    let ended = ends(pid, start);
    kill(pid, start);
    assert!(ended, "nix-copy-closure kept running after the deploy was killed");
    // The master connection is no child of ours: it stays for the next command.
    assert!(a_master_runs(&xdg.join("nixops-ssh-0")));
}

#[test]
fn an_interrupted_deploy_leaves_no_temporary_files() {
    let fleet = Fleet::start(&["web", "late"]);
    let private = Private::new(&fleet);
    fleet.create("d", &simple_network(&["web"], "stub.activation.sleep = 600;"));
    let nixops = private.deploy(&fleet, "d");
    // By now the build's result link (a GC root) exists, and known_hosts.
    wait_for_activation(&fleet, "web");
    let left = private.leftovers();
    let build = left
        .iter()
        .find(|l| l.contains("/nixops-build-"))
        .expect("a build directory");
    assert!(
        std::path::Path::new(build).join("result").is_symlink(),
        "{left:?}"
    );
    assert!(left.iter().any(|l| l.ends_with(".known")), "{left:?}");
    unsafe { libc::kill(nixops.id() as i32, libc::SIGINT) };
    let status = nixops.wait_with_output().unwrap().status;
    let log = std::fs::read_to_string(fleet.path().join("d.log")).unwrap();
    // It dies of the signal, as a shell expects of what Ctrl-C stops.
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGINT),
        "{log}"
    );
    assert!(log.contains("stopped by SIGINT"), "{log}");
    assert_eq!(private.leftovers(), Vec::<String>::new());

    // Started with SIGHUP ignored (nohup), a deploy goes on after one. (On
    // another host: web's interrupted activation still holds its lock.)
    fleet.create("n", &simple_network(&["late"], "stub.activation.sleep = 2;"));
    let mut cmd = private.command(&fleet, &["deploy", "-d", "n"]);
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let nixops = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_for_activation(&fleet, "late");
    unsafe { libc::kill(nixops.id() as i32, libc::SIGHUP) };
    let out = nixops.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_run_after_a_killed_deploy_removes_what_it_left() {
    let fleet = Fleet::start(&["web"]);
    let private = Private::new(&fleet);
    let file = fleet.write("d.nix", &simple_network(&["web"], "stub.activation.sleep = 600;"));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let mut nixops = private.deploy(&fleet, "d");
    wait_for_activation(&fleet, "web");
    nixops.kill().unwrap();
    nixops.wait().unwrap();
    let left = private.leftovers();
    assert!(left.iter().any(|l| l.contains("/nixops-build-")), "{left:?}");
    assert!(left.iter().any(|l| l.contains("/nixops-nix-")), "{left:?}");
    // The activation goes on on the machine, holding its activation lock:
    // a (fake) reboot ends it.
    let st = std::process::Command::new(common::fleet_sh())
        .arg("reboot")
        .arg(fleet.path())
        .args(["web", "--wait"])
        .status()
        .unwrap();
    assert!(st.success());

    // The next deploy removes them and leaves nothing of its own.
    fleet.write("d.nix", &simple_network(&["web"], ""));
    let out = private.command(&fleet, &["deploy", "-d", "d"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(private.leftovers(), Vec::<String>::new());
    // Only the master connection's socket stays in the ssh directory.
    let entries: Vec<_> = std::fs::read_dir(private.ssh_dir()).unwrap().flatten().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
}

#[test]
fn a_full_disk_is_named_in_the_summary() {
    let fleet = Fleet::start(&["web"]);
    // The host's store gets far less room than the closure needs.
    fleet.exec(
        "web",
        "mkdir -p /nix/store && mount -t tmpfs -o size=256k tmpfs /nix/store",
    );
    let big = "environment.systemPackages = [ (pkgs.runCommand \"big\" { } \"mkdir $out; dd if=/dev/zero of=$out/big bs=1024 count=2048\") ];";
    fleet.create("d", &format!("{{ web = {{ pkgs, ... }}: {{ {big} }}; }}"));
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let row = r
        .stderr
        .lines()
        .find(|l| l.starts_with("| web "))
        .expect("a summary row");
    assert!(row.contains("No space left on device"), "{}", r.stderr);
    assert!(!row.contains("Broken pipe"), "{}", r.stderr);
}

#[test]
fn each_failed_build_names_only_its_own_derivations() {
    let fleet = Fleet::start(&["a", "b", "c"]);
    let broken = |name: &str| {
        format!(
            "(pkgs.runCommand \"broken-{name}\" {{ }} \"echo {name} breaks >&2; exit 3 # {}\")",
            fleet.path().display()
        )
    };
    let net = format!(
        "{{
          a = {{ pkgs, ... }}: {{ environment.systemPackages = [ {} ]; }};
          b = {{ pkgs, ... }}: {{ environment.systemPackages = [ {} {} ]; }};
          c = {{ ... }}: {{ }};
        }}",
        broken("one"),
        broken("two"),
        broken("three")
    );
    fleet.create("d", &net);
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!r.stderr.contains("build failed: build failed"), "{}", r.stderr);
    for (machine, own, others) in [
        (
            "a",
            &["broken-one.drv"][..],
            &["broken-two", "broken-three", "system-b"][..],
        ),
        (
            "b",
            &["broken-two.drv", "broken-three.drv"],
            &["broken-one", "system-a"],
        ),
    ] {
        let lines: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with(&format!("{machine}> build failed")))
            .collect();
        assert_eq!(lines.len(), 1, "{}", r.stderr);
        // "build failed" once: the stage says it, the error says what failed.
        assert_eq!(lines[0].matches("build failed").count(), 1, "{}", r.stderr);
        let row = r.summary_row(machine);
        assert!(!row.contains("build failed"), "{}", r.stderr);
        for text in [lines[0], row.as_str()] {
            for o in own {
                assert!(text.contains(o), "{machine} does not name {o}: {}", r.stderr);
            }
            for o in others {
                assert!(!text.contains(o), "{machine} names {o}: {}", r.stderr);
            }
        }
    }
    let t = fleet.exported_toplevel("d", "c").expect("c deployed");
    assert_eq!(fleet.current_system("c"), t);
}

/// A target whose /nix is completely full: its Nix database cannot even be
/// opened, and the copy fails with a dropped connection. The summary says
/// which side ran out of space.
#[test]
fn a_full_target_store_is_named_as_such() {
    let fleet = Fleet::start(&["web"]);
    fleet.create("d", "{ web = { ... }: { environment.etc.x.text = \"1\"; }; }");
    fleet.ok(&["deploy"]);
    fleet.write("d.nix", "{ web = { ... }: { environment.etc.x.text = \"2\"; }; }");
    // The host's /nix as it is, on a file system with no room left.
    fleet.exec(
        "web",
        "mkdir -p /tmp/n && cp -a /nix/. /tmp/n/ && mount -t tmpfs -o size=$(( $(du -sk /nix | cut -f1) + 2048 ))k tmpfs /nix && cp -a /tmp/n/. /nix/ && { dd if=/dev/zero of=/nix/fill bs=4k 2>/dev/null || true; }",
    );
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let row = r.summary_row("web");
    assert!(row.contains("no space left on the target's /nix"), "{}", r.stderr);
    assert!(!row.contains("cannot connect"), "{}", r.stderr);
}
