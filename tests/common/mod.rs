//! The test fleet from Rust: sshd test hosts (tests/fleet/fleet.sh), the
//! stand-in nixpkgs (tests/nixpkgs) and the real `nixops` binary, run as a
//! user whose ~/.ssh/config maps the hosts' names to their ports.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The deploying side's Nix in tests, as scripts/offline-nix.sh sets it:
/// offline, with the stand-in nixpkgs' builder inside the build sandbox, and
/// the stand-in's disk images (`__noChroot`) built outside it.
pub const NIX_CONFIG: &str = "substituters =\nextra-sandbox-paths = /bin/busybox\nsandbox = relaxed";

/// The same for nixops run on a test host itself (apply-local): the host's
/// own Nix configuration decides its sandbox (none can be made inside its
/// namespace), and it builds no VM image.
pub const HOST_NIX_CONFIG: &str = "substituters =\nextra-sandbox-paths = /bin/busybox";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stand-in nixpkgs, its `lib` linked to nixpkgs' real one first (by
/// tests/nixpkgs/link-lib.sh, as scripts/test.sh does), once per test binary,
/// so that a single test run by hand evaluates with the real module system too.
pub fn nixpkgs() -> PathBuf {
    static LINKED: std::sync::Once = std::sync::Once::new();
    let dir = repo().join("tests/nixpkgs");
    LINKED.call_once(|| {
        // stderr is inherited: the script says which lib this run uses.
        let st = Command::new("bash")
            .arg(dir.join("link-lib.sh"))
            .stdout(Stdio::null())
            .status()
            .expect("run tests/nixpkgs/link-lib.sh");
        assert!(st.success(), "tests/nixpkgs/link-lib.sh failed");
    });
    dir
}

/// Whether the stand-in nixpkgs runs on nixpkgs' real lib (not the minimal
/// fallback, which link-lib.sh warns about).
pub fn real_lib() -> bool {
    let link = std::fs::read_link(nixpkgs().join("lib")).expect("tests/nixpkgs/lib is a link");
    link != Path::new("minimal-lib")
}

/// The real NixOps 2.0, as scripts/install-deps.sh installs it from
/// ../shared/peers/nixops; None, with a notice on stderr, where that copy is
/// absent (a user's fresh clone). Where it is there, it must be installed.
pub fn nixops2() -> Option<PathBuf> {
    let bin = repo().join("target/nixops-2.0/bin/nixops");
    let peer = repo().join("../shared/peers/nixops");
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        !peer.exists(),
        "{} is there but NixOps 2.0 is not installed: run scripts/install-deps.sh",
        peer.display()
    );
    eprintln!(
        "NOTICE: skipped: NixOps 2.0 is not installed ({} is absent; scripts/install-deps.sh installs it from there)",
        peer.display()
    );
    None
}

pub fn fleet_sh() -> PathBuf {
    repo().join("tests/fleet/fleet.sh")
}

/// Where a test keeps the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// NixOps' SQLite file.
    Sqlite,
    /// A database of its own on the tests' PostgreSQL server.
    Postgres,
}

/// Runs each named test function, which takes a [`Backend`], on both
/// backends: as `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::common::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::common::Backend::Postgres) } )*
        }
    };
}

/// The tests' PostgreSQL server (tests/postgres/server.sh): the one
/// scripts/test.sh started ($NIXOPS_TEST_PG names its directory), else one
/// started for this test binary, which stops when the binary exits.
pub struct PgServer {
    pub port: u16,
    pub socket: PathBuf,
    /// The supervising script, whose stdin closes when we exit.
    _supervisor: Option<std::sync::Mutex<std::process::Child>>,
}

/// The password of the tests' `nixops` role.
pub const PG_PASSWORD: &str = "nixops-test-password";

pub fn pg_server() -> &'static PgServer {
    static SERVER: std::sync::OnceLock<PgServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let script = repo().join("tests/postgres/server.sh");
        let (dir, supervisor) = match std::env::var_os("NIXOPS_TEST_PG") {
            Some(dir) => (PathBuf::from(dir), None),
            None => {
                let dir = tempfile::Builder::new().prefix("nixops-pg-").tempdir().unwrap().keep();
                let mut child = Command::new("bash")
                    .arg(&script)
                    .arg("supervise")
                    .arg(&dir)
                    .env("NIXOPS_TEST_PG_PASSWORD", PG_PASSWORD)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("run tests/postgres/server.sh");
                let mut line = String::new();
                use std::io::BufRead;
                std::io::BufReader::new(child.stdout.take().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                assert_eq!(
                    line.trim(),
                    "ready",
                    "the tests' PostgreSQL server did not start (tests/postgres/server.sh; is Debian's postgresql installed?)"
                );
                (dir, Some(std::sync::Mutex::new(child)))
            }
        };
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("PostgreSQL test server in {}: {f}: {e}", dir.display()))
                .trim()
                .to_owned()
        };
        PgServer {
            port: read("port").parse().unwrap(),
            socket: PathBuf::from(read("socket-dir")),
            _supervisor: supervisor,
        }
    })
}

impl PgServer {
    /// Runs SQL as the superuser (over the Unix socket); returns the rows,
    /// one a line, columns separated by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
            .arg(&self.socket)
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A new, empty database owned by the `nixops` role; its URL (no
    /// password: that is in ~/.pgpass or $PGPASSWORD).
    pub fn new_database(&self) -> (String, String) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("nixops_t{}_{n}", std::process::id());
        self.psql("postgres", &format!("create database {name} owner nixops"));
        let url = format!("postgresql://nixops@127.0.0.1:{}/{name}", self.port);
        (name, url)
    }
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub names: Vec<String>,
    /// Whether nixops runs with NIX_PATH set to the stand-in nixpkgs
    /// (flake tests turn it off: pure evaluation must not need it).
    pub nix_path: std::cell::Cell<bool>,
    pub backend: Backend,
    /// $NIXOPS_STATE: the file, or the database's URL.
    pub state: String,
    /// The PostgreSQL database's name.
    pub database: Option<String>,
}

impl Fleet {
    /// Starts one test host per name; the state in an SQLite file.
    pub fn start(names: &[&str]) -> Fleet {
        Fleet::start_on(Backend::Sqlite, names)
    }

    /// Starts one test host per name, the state kept by `backend`.
    pub fn start_on(backend: Backend, names: &[&str]) -> Fleet {
        let dir = tempfile::Builder::new().prefix("nixops-test-").tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let (state, database) = match backend {
            Backend::Sqlite => (dir.path().join("state.nixops").display().to_string(), None),
            Backend::Postgres => {
                let pg = pg_server();
                let (name, url) = pg.new_database();
                write_pgpass(&home, pg.port);
                (url, Some(name))
            }
        };
        let fleet = Fleet {
            dir,
            names: names.iter().map(|s| s.to_string()).collect(),
            nix_path: std::cell::Cell::new(true),
            backend,
            state,
            database,
        };
        if !names.is_empty() {
            fleet.start_hosts(names);
        }
        fleet
    }

    /// Another, empty state on the same backend (for export and import).
    pub fn new_state(&self, name: &str) -> String {
        match self.backend {
            Backend::Sqlite => self.path().join(format!("{name}.nixops")).display().to_string(),
            Backend::Postgres => pg_server().new_database().1,
        }
    }

    /// SQL on this fleet's PostgreSQL database, as the superuser.
    pub fn psql(&self, sql: &str) -> String {
        pg_server().psql(self.database.as_deref().expect("a PostgreSQL fleet"), sql)
    }

    /// Starts hosts (again, after [`stop_host`](Self::stop_host)).
    pub fn start_hosts(&self, names: &[&str]) {
        let out = Command::new(fleet_sh())
            .arg("start")
            .arg(self.path())
            .args(names)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fleet start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite state file (of a fleet on [`Backend::Sqlite`]).
    pub fn state_file(&self) -> PathBuf {
        assert_eq!(
            self.backend,
            Backend::Sqlite,
            "only an SQLite fleet has a state file"
        );
        self.path().join("state.nixops")
    }

    pub fn port(&self, name: &str) -> u16 {
        std::fs::read_to_string(self.path().join("hosts").join(name).join("port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// A copy of the stand-in nixpkgs in the fleet directory at `dir`, its
    /// `lib` link dereferenced, so that it is a self-contained `path:`
    /// flake (tests/nixpkgs/flake.nix) that pure evaluation can read.
    pub fn nixpkgs_flake(&self, dir: &str) -> PathBuf {
        let to = self.path().join(dir);
        let st = Command::new("cp")
            .arg("-rL")
            .arg(nixpkgs())
            .arg(&to)
            .status()
            .unwrap();
        assert!(st.success(), "copying the stand-in nixpkgs failed");
        to
    }

    /// Writes a file into the fleet directory (making its directory);
    /// returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs a shell command inside a test host (not through ssh).
    pub fn exec(&self, host: &str, script: &str) -> String {
        let out = Command::new(fleet_sh())
            .arg("exec")
            .arg(self.path())
            .arg(host)
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "exec on {host} failed: {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn current_system(&self, host: &str) -> String {
        self.exec(host, "readlink /run/current-system || true")
            .trim()
            .to_owned()
    }

    /// What the stand-in OS running on a host was configured with.
    pub fn config_json(&self, host: &str) -> serde_json::Value {
        serde_json::from_str(&self.exec(host, "cat /run/current-system/config.json")).unwrap()
    }

    pub fn activations(&self, host: &str) -> Vec<String> {
        self.exec(host, "cat /run/stub-os/activations.log 2>/dev/null || true")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn boot_id(&self, host: &str) -> String {
        self.exec(host, "cat /proc/sys/kernel/random/boot_id")
            .trim()
            .to_owned()
    }

    pub fn ssh_count(&self, host: &str) -> usize {
        let out = Command::new(fleet_sh())
            .arg("ssh-count")
            .arg(self.path())
            .arg(host)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// Stops every process of a host where it is (SIGSTOP), or lets them go
    /// on (SIGCONT): a frozen machine whose clock goes on.
    pub fn freeze(&self, host: &str, frozen: bool) {
        let st = Command::new(fleet_sh())
            .arg(if frozen { "freeze" } else { "thaw" })
            .arg(self.path())
            .arg(host)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// What the host's system profile points at.
    pub fn profile(&self, host: &str) -> String {
        self.exec(host, "readlink -f /nix/var/nix/profiles/system || true")
            .trim()
            .to_owned()
    }

    /// The system the host would boot (the stand-in OS's boot loader entry).
    pub fn boot_default(&self, host: &str) -> String {
        self.exec(host, "cat /run/stub-os/boot-default 2>/dev/null || true")
            .trim()
            .to_owned()
    }

    /// Starts nixops in the background (output discarded unless the caller
    /// sets it).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.nixops(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn stop_host(&self, host: &str) {
        let st = Command::new(fleet_sh())
            .arg("stop")
            .arg(self.path())
            .arg(host)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// A `nixops` command run as the fleet's user.
    pub fn nixops(&self, args: &[&str]) -> Command {
        let mut cmd = self.nixops_command(args);
        // As from a terminal, whatever the test run was started from: a
        // background job of a script (`cmd &`) ignores SIGINT, and the tool
        // keeps a signal ignored that it was started with ignoring.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                    libc::signal(s, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        cmd
    }

    /// A shell script run where and as `nixops` runs (the fleet's ssh
    /// configuration, the same environment), with `$NIXOPS` the binary: for
    /// what must happen in that same mount namespace (an sshfs mount).
    pub fn nixops_shell(&self, script: &str) -> Command {
        let mut cmd = self.command_as_nixops("/bin/sh", &["-c", script]);
        cmd.env("NIXOPS", env!("CARGO_BIN_EXE_nixops"));
        cmd
    }

    fn nixops_command(&self, args: &[&str]) -> Command {
        self.command_as_nixops(env!("CARGO_BIN_EXE_nixops"), args)
    }

    fn command_as_nixops(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = if self.names.is_empty() {
            Command::new(program)
        } else {
            let mut c = Command::new(fleet_sh());
            c.arg("run").arg(self.path()).arg("--").arg(program);
            c
        };
        cmd.args(args);
        if self.nix_path.get() {
            cmd.env("NIX_PATH", format!("nixpkgs={}", nixpkgs().display()));
        } else {
            cmd.env_remove("NIX_PATH");
        }
        cmd.env("HOME", self.path().join("home"))
            .env("NIXOPS_STATE", &self.state)
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("NIXOPS_SSH_PERSIST", "5")
            .env_remove("NIXOPS_DEPLOYMENT")
            .env_remove("PGPASSWORD")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env_remove("PGUSER")
            .env_remove("PGDATABASE")
            .env_remove("PGPASSFILE")
            .stdin(Stdio::null());
        cmd
    }

    /// nixops run on a test host itself, inside its mount namespace (its
    /// own /nix, /run and keys), with the same environment as
    /// [`nixops`](Self::nixops) otherwise: the machine deploys itself.
    pub fn nixops_on(&self, host: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(fleet_sh());
        cmd.arg("exec")
            .arg(self.path())
            .arg(host)
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_nixops"))
            .args(args);
        cmd.env("NIX_PATH", format!("nixpkgs={}", nixpkgs().display()))
            .env("HOME", self.path().join("home"))
            .env("NIXOPS_STATE", self.state_file())
            .env("NIX_CONFIG", HOST_NIX_CONFIG)
            .env_remove("NIXOPS_DEPLOYMENT")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs nixops, returning its output (success or not).
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.nixops(args).output().unwrap();
        Run::from(out)
    }

    /// Runs nixops with `input` on its stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .nixops(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    /// Runs nixops with a terminal as its stdin (a pseudo-terminal whose
    /// other side has `input` typed into it), stdout and stderr captured.
    pub fn run_with_terminal(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        // SAFETY: plain libc calls on a descriptor we own; the slave is
        // opened by the name the kernel gives it.
        let (mut master, slave) = unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(m >= 0, "posix_openpt");
            assert_eq!(libc::grantpt(m), 0, "grantpt");
            assert_eq!(libc::unlockpt(m), 0, "unlockpt");
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0, "ptsname_r");
            let name = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_str()
                .unwrap()
                .to_owned();
            let slave = std::os::unix::fs::OpenOptionsExt::custom_flags(
                std::fs::OpenOptions::new().read(true).write(true),
                libc::O_NOCTTY,
            )
            .open(&name)
            .unwrap();
            (std::fs::File::from_raw_fd(m), slave)
        };
        // Typed ahead: the terminal keeps the line until it is read.
        master.write_all(input.as_bytes()).unwrap();
        let child = self
            .nixops(args)
            .stdin(slave)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        drop(master);
        Run::from(out)
    }

    /// Runs nixops and asserts success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "nixops {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
        r
    }

    /// Waits until some process holds deployment `uuid`'s lock (its holder
    /// writes its pid into the lock file, or its row into LockHolders, once
    /// it has it).
    pub fn wait_for_lock(&self, uuid: &str) {
        if self.backend == Backend::Postgres {
            let held = format!(
                "select count(*) from LockHolders h join pg_locks l on l.pid = h.backend_pid
                 and l.locktype = 'advisory' and l.granted where h.deployment = '{uuid}'"
            );
            let has_table = "select count(*) from information_schema.tables where table_name = 'lockholders'";
            wait_until(10, "the deployment lock", || {
                self.psql(has_table) == "1" && self.psql(&held) != "0"
            });
            return;
        }
        let lock = self.path().join("home/.nixops/locks").join(uuid);
        for _ in 0..200 {
            if std::fs::read_to_string(&lock).is_ok_and(|s| !s.trim().is_empty()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("nobody took the lock {}", lock.display());
    }

    /// Creates deployment `name` from network text (written to `<name>.nix`).
    pub fn create(&self, name: &str, network: &str) -> String {
        let file = self.write(&format!("{name}.nix"), network);
        self.ok(&["create", file.to_str().unwrap(), "-d", name])
            .stdout
            .trim()
            .to_owned()
    }

    /// The real NixOps 2.0 (`bin`, from [`nixops2`]) run as the fleet's
    /// user: its state in `state`, the stand-in nixpkgs, the network
    /// directory `net` (NixOps 2.0 evaluates it for any command), through
    /// `fleet.sh run` (the hosts' ssh configuration) where the fleet has
    /// hosts; its stdout, after it succeeded.
    pub fn nixops2(&self, bin: &Path, state: &Path, net: &Path, args: &[&str], stdin: &str) -> String {
        let mut cmd = if self.names.is_empty() {
            Command::new(bin)
        } else {
            let mut c = Command::new(fleet_sh());
            c.arg("run").arg(self.path()).arg("--").arg(bin);
            c
        };
        let mut child = cmd
            .args(args)
            .arg("--network")
            .arg(net)
            .current_dir(net)
            .env("NIX_PATH", format!("nixpkgs={}", nixpkgs().display()))
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("HOME", self.path().join("home"))
            .env("NIXOPS_STATE", state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "NixOps 2.0 {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The toplevel that `export` records for a machine.
    pub fn exported_toplevel(&self, deployment: &str, machine: &str) -> Option<String> {
        let out = self.ok(&["export", "-d", deployment]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let (_, d) = v.as_object().unwrap().iter().next().unwrap();
        d["resources"][machine]["toplevel"].as_str().map(str::to_owned)
    }
}

/// The `nixops` role's password in `home`/.pgpass, as libpq reads it.
pub fn write_pgpass(home: &Path, port: u16) {
    use std::os::unix::fs::PermissionsExt;
    let file = home.join(".pgpass");
    std::fs::write(&file, format!("127.0.0.1:{port}:*:nixops:{PG_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = Command::new(fleet_sh()).arg("stop").arg(self.path()).status();
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The deploy summary's table row of `machine` (panics when none).
    #[allow(dead_code)]
    pub fn summary_row(&self, machine: &str) -> String {
        self.stderr
            .lines()
            .find(|l| l.starts_with(&format!("| {machine} ")))
            .unwrap_or_else(|| panic!("no summary row for {machine}: {}", self.stderr))
            .to_owned()
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The name of the user the tests run as.
pub fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Sends `signal` (e.g. libc::SIGKILL) to a child.
pub fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill(2) on a pid we started and have not reaped yet.
    let r = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(r, 0, "kill failed");
}

/// Polls `f` every 50 ms until it holds; panics with `what` after `secs`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A network of `names`, each machine with `extra` config and an etc file
/// whose text is `rev` (to make a new system).
pub fn rev_network(names: &[&str], rev: &str, extra: &str) -> String {
    let mut s = String::from("{\n");
    for n in names {
        s += &format!("  {n} = {{ ... }}: {{ environment.etc.rev.text = \"{rev}\"; {extra} }};\n");
    }
    s + "}\n"
}

/// Starts hosts `names`, creates deployment `d` from `net.nix` (revision
/// "first", with `extra` config) and deploys it; returns the fleet and the
/// network file.
pub fn deployed(names: &[&str], extra: &str) -> (Fleet, PathBuf) {
    let fleet = Fleet::start(names);
    let file = fleet.write("net.nix", &rev_network(names, "first", extra));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy"]);
    (fleet, file)
}

/// A network of `names`, each a stub machine with `extra` config.
pub fn simple_network(names: &[&str], extra: &str) -> String {
    let mut s = String::from("{\n  network.description = \"test network\";\n");
    for n in names {
        s += &format!("  {n} = {{ ... }}: {{ {extra} }};\n");
    }
    s + "}\n"
}

/// A fresh random string (the kernel's UUID generator).
pub fn random(tag: &str) -> String {
    let u = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    format!("{tag}-{}", u.trim().replace('-', ""))
}

// Secrets: what tests check never reaches a process's argv or environment.

/// Watches every process's argv and environment for the needles while it
/// runs; returns what it saw ("pid comm: file has needle").
pub struct ProcWatch {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(Vec<String>, usize)>,
}

impl ProcWatch {
    pub fn start(needles: Vec<String>) -> ProcWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let me = std::process::id().to_string();
        let handle = std::thread::spawn(move || {
            let mut hits = BTreeSet::new();
            let mut passes = 0;
            while !s.load(Ordering::Relaxed) {
                passes += 1;
                let Ok(dir) = std::fs::read_dir("/proc") else {
                    continue;
                };
                for e in dir.flatten() {
                    let pid = e.file_name().to_string_lossy().into_owned();
                    if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                        continue;
                    }
                    for f in ["cmdline", "environ"] {
                        let Ok(data) = std::fs::read(e.path().join(f)) else {
                            continue;
                        };
                        for n in &needles {
                            if data.windows(n.len()).any(|w| w == n.as_bytes()) {
                                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                                hits.insert(format!("{pid} {}: {f} has {n}", comm.trim()));
                            }
                        }
                    }
                }
            }
            (hits.into_iter().collect(), passes)
        });
        ProcWatch { stop, handle }
    }

    pub fn finish(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Runs nixops while watching /proc; asserts success.
pub fn watched(fleet: &Fleet, args: &[&str], needles: &[String]) -> (Run, Vec<String>) {
    let w = ProcWatch::start(needles.to_vec());
    let r = fleet.run(args);
    let (hits, passes) = w.finish();
    assert_eq!(r.code, 0, "{args:?}: {}\n{}", r.stdout, r.stderr);
    assert!(passes > 3, "/proc was scanned only {passes} times");
    (r, hits)
}

/// Files under `dir` that contain `needle` (grep -rlF), less `except`.
pub fn grep(dirs: &[&Path], needle: &str, except: &[&Path]) -> Vec<String> {
    let mut cmd = Command::new("grep");
    cmd.args(["-rlF", "--no-messages", "--", needle]).args(dirs);
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !except.iter().any(|e| Path::new(l).starts_with(e)))
        .map(str::to_owned)
        .collect()
}

/// The deployer's store paths a secret must not be in: everything added
/// since `marker` was written, and `toplevel`'s closure with its
/// derivation's (which may be older).
pub fn store_paths_since(marker: &Path, toplevel: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let new = Command::new("find")
        .args(["/nix/store", "-mindepth", "1", "-maxdepth", "1", "-cnewer"])
        .arg(marker)
        .output()
        .unwrap();
    paths.extend(String::from_utf8_lossy(&new.stdout).lines().map(str::to_owned));
    let drv = Command::new("nix-store")
        .args(["-qd", toplevel])
        .output()
        .unwrap();
    let drv = String::from_utf8_lossy(&drv.stdout).trim().to_owned();
    for q in [toplevel, &drv] {
        let out = Command::new("nix-store").args(["-qR", q]).output().unwrap();
        paths.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned));
    }
    assert!(paths.contains(toplevel) && paths.contains(&drv), "{paths:?}");
    paths
}

/// NixOps' SQLite schema (version 3), as the sqlite3 CLI takes it: for
/// state files made as NixOps would have left them.
#[allow(dead_code)]
pub const NIXOPS_SCHEMA_SQL: &str = "
create table SchemaVersion(version integer not null);
insert into SchemaVersion(version) values (3);
create table Deployments(uuid text primary key);
create table DeploymentAttrs(deployment text not null, name text not null, value text not null,
  primary key(deployment, name), foreign key(deployment) references Deployments(uuid) on delete cascade);
create table Resources(id integer primary key autoincrement, deployment text not null,
  name text not null, type text not null,
  foreign key(deployment) references Deployments(uuid) on delete cascade);
create table ResourceAttrs(machine integer not null, name text not null, value text not null,
  primary key(machine, name), foreign key(machine) references Resources(id) on delete cascade);
";
