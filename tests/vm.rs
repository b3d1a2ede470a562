//! Real virtual machines through libvirt (`targetEnv = "libvirtd"`): made,
//! deployed, powered, rebooted, destroyed, and interrupted while being made;
//! the reliability scenarios only a real kernel can show. libvirt is
//! started by tests/vm/libvirt.sh (no init system runs here); the guests
//! boot the stand-in OS's disk image (the stand-in nixpkgs'
//! make-disk-image.nix) under KVM where a probe guest boots under it, else
//! under QEMU's emulation, and are reached only through QEMU's user-mode
//! network, their SSH port forwarded from 127.0.0.1.

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Fleet, repo};

const URI: &str = "qemu:///system";

/// One VM test at a time: each boots VMs, which take both cores under
/// emulation.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .args(["-q", "-c", URI])
        .args(args)
        .output()
        .expect("run virsh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn virsh_ok(args: &[&str]) -> String {
    let (ok, out) = virsh(args);
    assert!(ok, "virsh {args:?}: {out}");
    out
}

/// libvirt running, and the domain type that boots a guest here.
fn libvirt() -> String {
    let script = repo().join("tests/vm/libvirt.sh");
    for cmd in ["start", "domain-type"] {
        let out = Command::new("bash")
            .arg(&script)
            .arg(cmd)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "tests/vm/libvirt.sh {cmd} failed");
        if cmd == "domain-type" {
            let t = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            eprintln!(
                "VM tests: libvirt domain type {t} ({})",
                if t == "kvm" { "KVM" } else { "emulation, TCG" }
            );
            return t;
        }
    }
    unreachable!()
}

/// A test's VMs: a fleet without test hosts (for running nixops), a storage
/// pool of its own in its directory; whatever is left of them is removed
/// when it ends.
struct Vms {
    fleet: Fleet,
    pool: String,
    domain_type: String,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Vms {
    fn new() -> Vms {
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let domain_type = libvirt();
        let fleet = Fleet::start(&[]);
        let pool = common::random("nixops-test-pool");
        let dir = fleet.path().join("pool");
        std::fs::create_dir_all(&dir).unwrap();
        virsh_ok(&["pool-define-as", &pool, "dir", "--target", dir.to_str().unwrap()]);
        virsh_ok(&["pool-start", &pool]);
        Vms {
            fleet,
            pool,
            domain_type,
            _one: one,
        }
    }

    /// A network of user-mode VMs `names`, each with `extra`.
    fn network(&self, names: &[&str], extra: &str) -> String {
        let mut s = String::from("{\n");
        for n in names {
            s += &format!(
                "  {n} = {{ nodes, ... }}: {{ deployment.targetEnv = \"libvirtd\"; deployment.libvirtd = {{ domainType = \"{}\"; memorySize = 384; headless = true; storagePool = \"{}\"; networks = [ {{ type = \"user\"; }} ]; }}; {extra} }};\n",
                self.domain_type, self.pool
            );
        }
        s + "}\n"
    }

    /// The libvirt domains of deployment `uuid` (all, running or not).
    fn domains(&self, uuid: &str) -> Vec<String> {
        virsh_ok(&["list", "--all", "--name"])
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(&format!("nixops-{uuid}-")))
            .map(str::to_owned)
            .collect()
    }

    fn volumes(&self) -> Vec<String> {
        virsh_ok(&["vol-list", &self.pool])
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }

    fn boot_id(&self, d: &str, m: &str) -> String {
        let r = self
            .fleet
            .ok(&["ssh", "-d", d, m, "--", "cat", "/proc/sys/kernel/random/boot_id"]);
        r.stdout.trim().to_owned()
    }

    fn current_system(&self, d: &str, m: &str) -> String {
        let r = self
            .fleet
            .ok(&["ssh", "-d", d, m, "--", "readlink", "/run/current-system"]);
        r.stdout.trim().to_owned()
    }

    /// The `rev` file of the system the machine runs.
    fn rev(&self, d: &str, m: &str) -> String {
        self.fleet
            .ok(&["ssh", "-d", d, m, "--", "cat", "/run/current-system/etc/rev"])
            .stdout
    }

    /// Starts nixops with its stderr in `log` (to watch what it does).
    fn spawn_logged(&self, args: &[&str], log: &std::path::Path) -> std::process::Child {
        let f = std::fs::File::create(log).unwrap();
        self.fleet
            .nixops(args)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap()
    }
}

impl Drop for Vms {
    fn drop(&mut self) {
        for name in virsh(&["list", "--all", "--name"]).1.lines() {
            let name = name.trim();
            if name.starts_with("nixops-") && self.pool_holds_disk_of(name) {
                virsh(&["destroy", name]);
                virsh(&["undefine", name]);
            }
        }
        virsh(&["pool-destroy", &self.pool]);
        virsh(&["pool-undefine", &self.pool]);
    }
}

impl Vms {
    fn pool_holds_disk_of(&self, domain: &str) -> bool {
        virsh(&["dumpxml", domain])
            .1
            .contains(&format!("pool=\"{}\"", self.pool))
            || virsh(&["dumpxml", domain])
                .1
                .contains(&format!("pool='{}'", self.pool))
    }
}

fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two VMs are made and deployed, each reading the other's address through
/// `nodes`; a change deploys; stop powers one off, start boots it again,
/// reboot really reboots; destroy removes the domains and their disks.
#[test]
fn two_vms_are_made_deployed_powered_rebooted_and_destroyed() {
    let vms = Vms::new();
    // Each reads the other's address (NixOps' networking.publicIPv4, from
    // what state recorded of it) through `nodes`.
    let network = |rev: &str| {
        let reads = |other: &str| {
            format!(
                "environment.etc.peer.text = \"other at ${{toString nodes.{other}.config.networking.publicIPv4}}\"; environment.etc.rev.text = \"{rev}\";"
            )
        };
        let a = vms.network(&["a"], &reads("b"));
        let b = vms.network(&["b"], &reads("a"));
        format!(
            "{}{}",
            a.trim_end().trim_end_matches('}'),
            b.trim_start().trim_start_matches('{')
        )
    };
    let net = network("one");
    let uuid = vms.fleet.create("d", &net);
    let started = Instant::now();
    let r = vms.fleet.run(&["deploy", "-d", "d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    eprintln!(
        "VM tests: two VMs made and deployed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(vms.domains(&uuid).len(), 2);
    for m in ["a", "b"] {
        let peer = vms
            .fleet
            .ok(&["ssh", "-d", "d", m, "--", "cat", "/run/current-system/etc/peer"]);
        assert_eq!(peer.stdout, "other at 127.0.0.1", "{m}");
    }
    let info = vms.fleet.ok(&["info", "-d", "d"]);
    assert!(
        info.stdout.contains("libvirtd") && info.stdout.contains("Up"),
        "{}",
        info.stdout
    );
    // Its serial console, as libvirt logged it (the guest prints its host
    // keys there).
    let console = vms.fleet.ok(&["show-console-output", "-d", "d", "a"]);
    assert!(
        console.stdout.contains("BEGIN SSH HOST KEY"),
        "{}",
        console.stdout
    );

    // A change deploys over the machines as they are.
    std::fs::write(vms.fleet.path().join("d.nix"), network("two")).unwrap();
    let r = vms.fleet.run(&["deploy", "-d", "d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(vms.rev("d", "a"), "two");
    assert!(
        !r.stderr.contains("creating"),
        "nothing is made again: {}",
        r.stderr
    );

    // stop is a power-off; start boots it again.
    let boot = vms.boot_id("d", "a");
    let dom_a = format!("nixops-{uuid}-a");
    vms.fleet.ok(&["stop", "-d", "d", "--include", "a"]);
    assert_eq!(virsh_ok(&["domstate", &dom_a]).trim(), "shut off");
    let info = vms.fleet.ok(&["info", "-d", "d"]);
    assert!(info.stdout.contains("Stopped"), "{}", info.stdout);
    vms.fleet.ok(&["start", "-d", "d", "--include", "a"]);
    let after_start = vms.boot_id("d", "a");
    assert_ne!(after_start, boot, "start booted it");
    // reboot is the real thing.
    vms.fleet.ok(&["reboot", "-d", "d", "--include", "a"]);
    assert_ne!(vms.boot_id("d", "a"), after_start, "reboot rebooted it");
    assert_eq!(vms.fleet.run(&["check", "-d", "d"]).code, 0);
    // A deploy after a power-off outside the tool starts the machine.
    virsh_ok(&["destroy", &dom_a]);
    let r = vms.fleet.run(&["start", "-d", "d", "--include", "a"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // destroy (after confirmation) removes domains and disks.
    let r = vms.fleet.run_with_stdin(&["destroy", "-d", "d"], "n\n");
    assert_ne!(r.code, 0);
    assert_eq!(vms.domains(&uuid).len(), 2, "nothing destroyed without a yes");
    vms.fleet.ok(&["destroy", "-d", "d", "--confirm"]);
    assert!(vms.domains(&uuid).is_empty(), "{:?}", vms.domains(&uuid));
    assert!(vms.volumes().is_empty(), "{:?}", vms.volumes());
    // The network still declares them: to be made anew by a deploy.
    let info = vms.fleet.ok(&["info", "-d", "d"]);
    assert!(
        info.stdout.contains("Missing") && !info.stdout.contains("Up"),
        "{}",
        info.stdout
    );
}

/// A deploy killed while it makes a machine (its image being uploaded, its
/// domain booting) leaves what it made in state: the next deploy finishes
/// it, and destroy leaves no domain or volume behind.
#[test]
fn an_interrupted_make_is_finished_by_the_next_deploy_and_nothing_leaks() {
    let vms = Vms::new();
    let uuid = vms.fleet.create("d", &vms.network(&["m"], ""));
    let log = vms.fleet.path().join("deploy.log");
    let dom = format!("nixops-{uuid}-m");

    // SIGKILL once its disk is in the pool.
    let mut child = vms.spawn_logged(&["deploy", "-d", "d"], &log);
    wait_for(120, "the machine's volume", || !vms.volumes().is_empty());
    common::signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    // Ctrl-C (SIGINT) while its domain boots.
    let mut child = vms.spawn_logged(&["deploy", "-d", "d"], &log);
    wait_for(120, "the machine's domain", || {
        virsh(&["domstate", &dom]).1.trim() == "running"
    });
    common::signal(&child, libc::SIGINT);
    let st = child.wait().unwrap();
    assert!(!st.success());
    assert_eq!(vms.domains(&uuid), vec![dom.clone()], "one domain, never two");

    // The next deploy goes on from there.
    let r = vms.fleet.run(&["deploy", "-d", "d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(vms.domains(&uuid), vec![dom.clone()]);
    assert_eq!(vms.volumes().len(), 1, "{:?}", vms.volumes());
    assert_eq!(vms.fleet.run(&["check", "-d", "d"]).code, 0);

    // Killed again while a new make has only recorded its plan: destroy
    // removes what exists, and nothing is left.
    vms.fleet.ok(&["destroy", "-d", "d", "--confirm"]);
    let mut child = vms.spawn_logged(&["deploy", "-d", "d"], &log);
    wait_for(120, "the new machine's volume", || !vms.volumes().is_empty());
    common::signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    vms.fleet.ok(&["destroy", "-d", "d", "--confirm"]);
    assert!(vms.domains(&uuid).is_empty(), "{:?}", vms.domains(&uuid));
    assert!(vms.volumes().is_empty(), "{:?}", vms.volumes());
}

/// What only a real machine shows: a deploy that reboots it, magic rollback
/// when its network link is cut during activation and restored after the
/// deadline, a machine powered off while its system is copied, and one whose
/// disk is full.
#[test]
fn reboots_cut_links_power_loss_and_a_full_disk_on_a_vm() {
    let vms = Vms::new();
    let file_net = |rev: &str, extra: &str| {
        vms.network(&["m"], &format!("environment.etc.rev.text = \"{rev}\"; {extra}"))
    };
    let uuid = vms.fleet.create("d", &file_net("one", ""));
    vms.fleet.ok(&["deploy", "-d", "d"]);
    let dom = format!("nixops-{uuid}-m");
    let first = vms.current_system("d", "m");

    // --force-reboot: the machine boots into the new system.
    std::fs::write(vms.fleet.path().join("d.nix"), file_net("two", "")).unwrap();
    let boot = vms.boot_id("d", "m");
    vms.fleet.ok(&["deploy", "-d", "d", "--force-reboot"]);
    assert_ne!(vms.boot_id("d", "m"), boot);
    let second = vms.current_system("d", "m");
    assert_ne!(second, first);

    // The link cut while the new system activates: the machine cannot be
    // confirmed, and its guard takes the new system back by itself.
    std::fs::write(
        vms.fleet.path().join("d.nix"),
        file_net(
            "three",
            "stub.activation.sleep = 3; deployment.confirmTimeout = 3;",
        ),
    )
    .unwrap();
    let log = vms.fleet.path().join("cut.log");
    let mut child = vms.spawn_logged(&["deploy", "-d", "d"], &log);
    wait_for(120, "activation", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("m> activating")
    });
    virsh_ok(&["qemu-monitor-command", "--hmp", &dom, "set_link nixops-net0 off"]);
    let st = child.wait().unwrap();
    assert!(!st.success(), "{}", std::fs::read_to_string(&log).unwrap());
    // After the guard's deadline, the link comes back.
    std::thread::sleep(Duration::from_secs(8));
    virsh_ok(&["qemu-monitor-command", "--hmp", &dom, "set_link nixops-net0 on"]);
    wait_for(60, "the machine on the network again", || {
        vms.fleet.run(&["ssh", "-d", "d", "m", "--", "true"]).code == 0
    });
    assert_eq!(vms.current_system("d", "m"), second, "rolled back by the machine");
    let r = vms.fleet.run(&["check", "-d", "d"]);
    assert_eq!(r.code, 0, "state tells the truth: {}{}", r.stdout, r.stderr);

    // Powered off while its system is copied: the deploy fails naming it;
    // started again, the next deploy converges.
    std::fs::write(
        vms.fleet.path().join("d.nix"),
        file_net("four", "environment.etc.big.text = builtins.concatStringsSep \"\" (builtins.genList (i: \"${toString i} padding padding padding\\n\") 400000);"),
    )
    .unwrap();
    let log = vms.fleet.path().join("power.log");
    let mut child = vms.spawn_logged(&["deploy", "-d", "d"], &log);
    wait_for(120, "the copy", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("m> copying")
    });
    virsh_ok(&["destroy", &dom]);
    let st = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!st.success(), "{text}");
    assert!(text.contains("m "), "{text}");
    vms.fleet.ok(&["start", "-d", "d"]);
    let r = vms.fleet.run(&["deploy", "-d", "d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(vms.rev("d", "m"), "four");

    // A full disk: the copy fails, saying so, and state keeps the system
    // the machine runs; with room again, the next deploy converges.
    let running = vms.current_system("d", "m");
    vms.fleet.ok(&[
        "ssh",
        "-d",
        "d",
        "m",
        "--",
        // Every free block, root's reserve too (the deploy writes as root):
        // big pieces first, then what is left byte by block.
        "i=0; for size in 1073741824 268435456 16777216 1048576; do while fallocate -l $size /fill.$i 2>/dev/null; do i=$((i + 1)); done; done; dd if=/dev/zero of=/fill.last bs=4k 2>/dev/null; sync; df /",
    ]);
    std::fs::write(vms.fleet.path().join("d.nix"), file_net("five", "environment.etc.big.text = builtins.concatStringsSep \"\" (builtins.genList (i: \"${toString i} more padding\\n\") 400000);")).unwrap();
    let r = vms.fleet.run(&["deploy", "-d", "d"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.to_lowercase().contains("space"), "{}", r.stderr);
    assert_eq!(vms.current_system("d", "m"), running);
    let r = vms.fleet.run(&["check", "-d", "d"]);
    assert_eq!(r.code, 0, "state tells the truth: {}{}", r.stdout, r.stderr);
    vms.fleet.ok(&["ssh", "-d", "d", "m", "--", "rm -f /fill.*"]);
    let r = vms.fleet.run(&["deploy", "-d", "d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(vms.rev("d", "m"), "five");
    vms.fleet.ok(&["destroy", "-d", "d", "--confirm"]);
}
