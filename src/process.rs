//! Running child processes (ssh, nix) with their stderr streamed line by line
//! into a machine's log while stdout is collected.

use std::ffi::OsStr;
use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::ui::Events;

#[derive(Debug)]
pub struct Output {
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    /// All stderr lines (also sent to the log as they came).
    pub stderr: Vec<String>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The stderr line that best explains a failure, for one-line error
    /// messages: usually the last one, but a full disk comes first (the
    /// lines after it follow from it, e.g. the "Broken pipe" of Nix's
    /// sending side after the receiving side ran out of space), and a mere
    /// consequence (a closed pipe or connection) only when nothing else was
    /// said.
    pub fn last_error(&self) -> String {
        const CONSEQUENCES: [&str; 3] = [
            "Broken pipe",
            "Connection reset by peer",
            "unexpected end-of-file",
        ];
        let said: Vec<&String> = self.stderr.iter().filter(|l| !l.trim().is_empty()).collect();
        let names = |l: &&&String, what: &[&str]| what.iter().any(|w| l.contains(w));
        said.iter()
            .find(|l| storage_trouble(l) || l.contains("Read-only file system"))
            .or_else(|| said.iter().rev().find(|l| !names(l, &CONSEQUENCES)))
            .or(said.last())
            .map(|l| l.to_string())
            .unwrap_or_else(|| match self.code {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".into(),
            })
    }
}

/// Whether an error says storage ran out (or broke: Nix's database on a
/// full disk), which a full /nix on either side of a copy may be.
pub fn storage_trouble(message: &str) -> bool {
    [
        "No space left on device",
        "Disk quota exceeded",
        "disk I/O error",
        "database or disk is full",
    ]
    .iter()
    .any(|w| message.contains(w))
}

/// Where a command's output lines go.
#[derive(Clone, Copy)]
pub struct Sink<'a> {
    pub events: Option<&'a Events>,
    pub machine: Option<&'a str>,
    /// Also send stdout lines to the log (e.g. activation output).
    pub log_stdout: bool,
    /// Print lines at once, prefixed with this name: stdout lines to stdout,
    /// stderr lines to stderr (for ssh-for-each).
    pub print_prefix: Option<&'a str>,
}

impl<'a> Sink<'a> {
    pub fn quiet() -> Self {
        Sink {
            events: None,
            machine: None,
            log_stdout: false,
            print_prefix: None,
        }
    }
    pub fn machine(events: &'a Events, machine: &'a str) -> Self {
        Sink {
            events: Some(events),
            machine: Some(machine),
            log_stdout: false,
            print_prefix: None,
        }
    }
    pub fn global(events: &'a Events) -> Self {
        Sink {
            events: Some(events),
            machine: None,
            log_stdout: false,
            print_prefix: None,
        }
    }
    fn line(&self, line: &str) {
        match self.events {
            Some(ev) => ev.log(self.machine, line),
            None => tracing::debug!("{line}"),
        }
    }
}

/// A command whose process dies with us: killed when its handle is dropped
/// (a cancelled command) and, through `PR_SET_PDEATHSIG`, told to stop when
/// this process dies by any means, SIGKILL included. Every child is made here.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.kill_on_drop(true);
    die_with_parent(cmd.as_std_mut());
    cmd
}

/// Makes the child get SIGTERM when we die: Nix then stops its builds and
/// their sandboxed builders (after a SIGKILL they keep running, as children
/// of nobody), ssh closes its session. The signal follows the *thread*
/// that forked the child: children are spawned from the main thread or the
/// runtime's worker threads, which live as long as the process, never from
/// `spawn_blocking` threads, which end when idle. ssh's ControlPersist
/// master is forked by the ssh client (a fork does not inherit the setting),
/// so it outlives us, as it should.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // We may have died before prctl ran: then nobody would
                // ever send the signal.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

pub fn describe(cmd: &Command) -> String {
    let std = cmd.as_std();
    let mut parts = vec![std.get_program().to_string_lossy().into_owned()];
    parts.extend(std.get_args().map(|a| {
        shlex::try_quote(&a.to_string_lossy())
            .map(|q| q.into_owned())
            .unwrap_or_default()
    }));
    parts.join(" ")
}

/// Lines starting with this are our remote scripts' messages to us, not
/// output for people: collected, never logged.
pub const MARKER: &str = "__NIXOPS_";

/// Runs `cmd`, feeding it `stdin` (if any), streaming stderr into `sink`.
pub async fn run(cmd: &mut Command, stdin: Option<&[u8]>, sink: Sink<'_>) -> Result<Output> {
    run_fed(cmd, stdin.as_ref().map(std::slice::from_ref), sink).await
}

/// [`run`] with stdin written from several buffers in turn, straight from
/// them: nothing is copied, so secrets stay in their zeroizing buffers.
/// None: no stdin at all.
pub async fn run_fed(cmd: &mut Command, stdin: Option<&[&[u8]]>, sink: Sink<'_>) -> Result<Output> {
    tracing::debug!("running: {}", describe(cmd));
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().with_context(|| format!("cannot run {program}"))?;
    let si = child.stdin.take();
    let feed = async move {
        let (Some(mut si), Some(chunks)) = (si, stdin) else {
            return;
        };
        for c in chunks {
            // A child that stops reading has said why on stderr.
            if si.write_all(c).await.is_err() {
                return;
            }
        }
        // Dropping it closes the pipe: the end of the input.
        drop(si);
    };
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let reading = async {
        tokio::join!(
            collect(out, sink, sink.log_stdout, false),
            collect(err, sink, true, true)
        )
    };
    // Feeding stops when the output ends: a finished child (or a detached
    // one holding the pipe) reads no more.
    tokio::pin!(feed, reading);
    let mut fed = false;
    let (stdout, stderr) = loop {
        tokio::select! {
            () = &mut feed, if !fed => fed = true,
            r = &mut reading => break r,
        }
    };
    let status = child
        .wait()
        .await
        .with_context(|| format!("waiting for {program}"))?;
    Ok(Output {
        code: status.code(),
        stdout: stdout.join("\n"),
        stderr,
    })
}

/// Runs `from | to`: `from` gets `stdin`, its stdout goes straight into
/// `to`'s stdin (a pipe between the two; nothing passes through us), both
/// stream stderr into `sink`. Returns both outputs (`from`'s stdout empty).
pub async fn pipe(
    from: &mut Command,
    stdin: &[u8],
    to: &mut Command,
    sink: Sink<'_>,
) -> Result<(Output, Output)> {
    tracing::debug!("running: {} | {}", describe(from), describe(to));
    from.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let name = |c: &Command| c.as_std().get_program().to_string_lossy().into_owned();
    let mut a = from
        .spawn()
        .with_context(|| format!("cannot run {}", name(from)))?;
    let link: Stdio = a
        .stdout
        .take()
        .expect("piped stdout")
        .try_into()
        .context("cannot connect the pipe")?;
    to.stdin(link).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut b = to.spawn().with_context(|| format!("cannot run {}", name(to)))?;
    let mut si = a.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    tokio::spawn(async move {
        let _ = si.write_all(&data).await;
    });
    let (a_err, b_out, b_err) = (
        a.stderr.take().expect("piped stderr"),
        b.stdout.take().expect("piped stdout"),
        b.stderr.take().expect("piped stderr"),
    );
    let (a_err, b_out, b_err) = tokio::join!(
        collect(a_err, sink, true, true),
        collect(b_out, sink, sink.log_stdout, false),
        collect(b_err, sink, true, true)
    );
    let (sa, sb) = tokio::join!(a.wait(), b.wait());
    let output =
        |st: std::io::Result<std::process::ExitStatus>, stdout: Vec<String>, stderr| -> Result<Output> {
            Ok(Output {
                code: st.context("waiting for a child")?.code(),
                stdout: stdout.join("\n"),
                stderr,
            })
        };
    Ok((output(sa, Vec::new(), a_err)?, output(sb, b_out, b_err)?))
}

async fn collect<R: AsyncRead + Unpin>(r: R, sink: Sink<'_>, log: bool, is_stderr: bool) -> Vec<String> {
    let mut all = Vec::new();
    for_each_line(r, |line| {
        if let Some(p) = sink.print_prefix {
            crate::ui::prefixed(p, &line, is_stderr);
        } else if log && !line.starts_with(MARKER) {
            sink.line(&line);
        }
        all.push(line);
    })
    .await;
    all
}

/// Calls `f` with each line read from `r`, without its line ending. Bytes
/// that are not UTF-8 (Nix prints names byte by byte) are shown as U+FFFD
/// rather than ending the reading: no line is ever dropped.
pub async fn for_each_line<R: AsyncRead + Unpin>(r: R, mut f: impl FnMut(String)) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                f(String::from_utf8_lossy(&buf).into_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Output;

    fn failed(lines: &[&str]) -> Output {
        Output {
            code: Some(1),
            stdout: String::new(),
            stderr: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn the_error_line_names_the_cause() {
        let out = failed(&[
            "copying path '/nix/store/x' to 'ssh://root@web'...",
            "error: writing to file: No space left on device",
            "error: writing to file: Broken pipe",
            "",
        ]);
        assert_eq!(
            out.last_error(),
            "error: writing to file: No space left on device"
        );
        let out = failed(&["warning: something", "error: the real one", "error: Broken pipe"]);
        assert_eq!(out.last_error(), "error: the real one");
        assert_eq!(failed(&["error: Broken pipe"]).last_error(), "error: Broken pipe");
        assert_eq!(failed(&[]).last_error(), "exit code 1");
    }
}
