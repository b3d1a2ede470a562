//! Evaluation workers: at most `jobs` Nix processes at once, each given a
//! chunk of machines that it evaluates one after another
//! (eval-machine-info.nix's `machines`). A machine is announced on stderr
//! when it begins and when its result is known, so results are sent on as
//! they come, with the time the machine took in its process. The caller
//! plans the chunks (the evaluator: see `Evaluator::chunks`).
//!
//! A machine whose evaluation fails fails alone: the process is started
//! again on the machines after it. A worker past its memory limit is
//! stopped and started again on its remaining machines, once a machine is
//! done, or at once when it is not on its first machine (a single machine
//! that needs more cannot be helped). A heavy machine (one that grew its
//! worker by more than [`HEAVY`]) gets a worker of its own: the next
//! machine starts in a new process, so a chunk's memory is that of its
//! heaviest machine, not of all of them.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;

use super::MachineInfo;

/// What the workers report.
#[derive(Debug)]
pub enum Report {
    /// A line Nix said while evaluating it (a trace, a warning), or
    /// outside any machine.
    Log(Option<String>, String),
    /// Its result: the deployment info (with the toplevel when asked), or
    /// Nix's error.
    Done {
        name: String,
        result: Result<Box<MachineInfo>, String>,
        /// Seconds from its beginning to its result, in its process (Nix's
        /// start-up not included).
        secs: f64,
    },
}

pub struct Settings {
    pub jobs: usize,
    /// Resident memory a worker may grow to, in bytes.
    pub max_rss: Option<u64>,
}

/// What a machine may add to its worker's memory and still share it with
/// the next (a real NixOS system costs about 1 GiB; the stand-in, MiBs).
const HEAVY: u64 = 512 * 1024 * 1024;

const BEGIN: &str = "trace: __NIXOPS_EVAL_BEGIN ";
const DONE: &str = "trace: __NIXOPS_EVAL_DONE ";

/// Evaluates `chunks` with `command(chunk)` (a Nix command evaluating those
/// machines), sending reports to `tx` as they come.
pub async fn run(
    chunks: Vec<Vec<String>>,
    settings: &Settings,
    command: &(dyn Fn(&[String]) -> anyhow::Result<Command> + Sync),
    tx: &UnboundedSender<Report>,
) {
    let jobs = settings.jobs.max(1).min(chunks.len().max(1));
    let queue: Mutex<VecDeque<Vec<String>>> = Mutex::new(chunks.into());
    let next = || queue.lock().expect("queue lock").pop_front();
    let worker = || async {
        while let Some(c) = next() {
            run_chunk(c.into(), settings, command, tx).await;
        }
    };
    futures::future::join_all((0..jobs).map(|_| worker())).await;
}

/// What a line of a worker's stderr is.
enum Line {
    Begin(String),
    Done(String, Result<Box<MachineInfo>, String>),
    Other(String),
}

fn parse(line: String) -> Line {
    if let Some(name) = line.strip_prefix(BEGIN) {
        return match serde_json::from_str::<String>(name) {
            Ok(n) => Line::Begin(n),
            Err(_) => Line::Other(line),
        };
    }
    if let Some(json) = line.strip_prefix(DONE) {
        #[derive(serde::Deserialize)]
        struct Done {
            name: String,
            value: serde_json::Value,
        }
        return match serde_json::from_str::<Done>(json) {
            Ok(d) => {
                let r = serde_json::from_value::<Box<MachineInfo>>(d.value)
                    .map_err(|e| format!("cannot parse the evaluation result of machine ‘{}’: {e}", d.name));
                Line::Done(d.name, r)
            }
            Err(e) => Line::Other(format!("cannot parse an evaluation result: {e}")),
        };
    }
    Line::Other(line)
}

/// Whether a line of Nix's stderr is for people (not the pool's own
/// markers).
pub fn is_said(line: &str) -> bool {
    matches!(parse(line.to_owned()), Line::Other(_))
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Nix's error in a failed machine's lines: from its first `error:` on.
fn error_of(lines: &[String], code: Option<i32>) -> String {
    let from = lines.iter().position(|l| l.starts_with("error:"));
    let text = match from {
        Some(i) => lines[i..].join("\n"),
        None => lines.join("\n"),
    };
    if text.trim().is_empty() {
        match code {
            Some(c) => format!("the evaluation ended with exit code {c}"),
            None => "the evaluation was killed by a signal".into(),
        }
    } else {
        text
    }
}

/// Evaluates a chunk, in as many processes as failures and the memory
/// limit make it take.
async fn run_chunk(
    mut remaining: VecDeque<String>,
    settings: &Settings,
    command: &(dyn Fn(&[String]) -> anyhow::Result<Command> + Sync),
    tx: &UnboundedSender<Report>,
) {
    let send = |r: Report| {
        let _ = tx.send(r);
    };
    while !remaining.is_empty() {
        let names: Vec<String> = remaining.iter().cloned().collect();
        let started = command(&names).and_then(|mut cmd| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            tracing::debug!("running: {}", crate::process::describe(&cmd));
            cmd.spawn().map_err(|e| anyhow::anyhow!("cannot run Nix: {e}"))
        });
        let mut child = match started {
            Ok(c) => c,
            Err(e) => {
                for n in remaining.drain(..) {
                    send(Report::Done {
                        name: n,
                        result: Err(format!("{e:#}")),
                        secs: 0.0,
                    });
                }
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = tokio::io::BufReader::new(stderr).split(b'\n');
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        // Per process: whether the current machine is its first, the
        // current machine and its lines.
        let mut first = true;
        let mut current: Option<String> = None;
        let mut said: Vec<String> = Vec::new();
        let mut began = std::time::Instant::now();
        let mut restart = false;
        let mut failing = false;
        // The worker's resident memory when last seen alive: by the time a
        // machine's result is read, a worker that failed on the next one may
        // have exited already.
        let mut last_rss: Option<u64> = None;
        let mut began_rss: Option<u64> = None;
        let sample = |last: &mut Option<u64>| {
            *last = rss(pid).or(*last);
            *last
        };
        loop {
            tokio::select! {
                line = lines.next_segment() => {
                    let Ok(Some(line)) = line else { break };
                    let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_owned();
                    match parse(line) {
                        Line::Begin(n) => {
                            began_rss = sample(&mut last_rss);
                            began = std::time::Instant::now();
                            current = Some(n);
                            said.clear();
                        }
                        Line::Done(n, result) => {
                            let name = current.take().unwrap_or(n);
                            send(Report::Done {
                                name: name.clone(),
                                result,
                                secs: began.elapsed().as_secs_f64(),
                            });
                            if remaining.front() == Some(&name) {
                                remaining.pop_front();
                            } else {
                                remaining.retain(|r| *r != name);
                            }
                            first = false;
                            said.clear();
                            let now = sample(&mut last_rss);
                            let over = settings.max_rss.is_some_and(|max| now.is_some_and(|r| r > max));
                            let heavy = match (now, began_rss) {
                                (Some(n), Some(b)) => n.saturating_sub(b) > HEAVY,
                                _ => false,
                            };
                            if (over || heavy) && !remaining.is_empty() {
                                tracing::debug!(
                                    "evaluation worker {pid} is past its memory limit or its machine was heavy: starting a new one"
                                );
                                restart = true;
                                break;
                            }
                        }
                        Line::Other(l) => {
                            // Nix's error ends the process: it is the
                            // machine's result, not its log.
                            if l.starts_with("error:") {
                                failing = true;
                            }
                            if !failing {
                                send(Report::Log(current.clone(), l.clone()));
                            }
                            said.push(l);
                        }
                    }
                }
                _ = tick.tick() => {
                    let now = sample(&mut last_rss);
                    let over = settings.max_rss.is_some_and(|max| now.is_some_and(|r| r > max));
                    if over && !first {
                        tracing::debug!("evaluation worker {pid} is past its memory limit in the middle of a machine: starting a new one");
                        restart = true;
                        break;
                    }
                }
            }
        }
        if restart {
            let _ = child.kill().await;
            continue;
        }
        let status = child.wait().await;
        let code = status.as_ref().ok().and_then(|s| s.code());
        if remaining.is_empty() {
            return;
        }
        let error = error_of(&said, code);
        match current {
            // That machine failed; the next process takes the ones after it.
            Some(n) => {
                remaining.retain(|r| *r != n);
                send(Report::Done {
                    name: n,
                    result: Err(error),
                    secs: began.elapsed().as_secs_f64(),
                });
            }
            // Failed before any machine began (or ended without all of
            // them): the same for all.
            None => {
                let error = if status.as_ref().is_ok_and(|s| s.success()) {
                    "the evaluation ended before all its machines were evaluated".to_owned()
                } else {
                    error
                };
                for n in remaining.drain(..) {
                    send(Report::Done {
                        name: n,
                        result: Err(error.clone()),
                        secs: 0.0,
                    });
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_nix_2_8_and_later() {
        assert!(matches!(parse("trace: __NIXOPS_EVAL_BEGIN \"m1\"".into()), Line::Begin(n) if n == "m1"));
        assert!(matches!(parse("trace: hello".into()), Line::Other(_)));
        assert!(matches!(
            parse("trace: __NIXOPS_EVAL_DONE {\"name\":\"m\",\"value\":{}}".into()),
            Line::Done(n, Err(_)) if n == "m"
        ));
        let lines: Vec<String> = ["trace: x", "error: it broke", "       here"]
            .map(String::from)
            .to_vec();
        assert_eq!(error_of(&lines, Some(1)), "error: it broke\n       here");
        assert_eq!(error_of(&[], Some(1)), "the evaluation ended with exit code 1");
    }
}
