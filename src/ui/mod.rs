//! Output. The pipeline only sends [`Event`]s; a renderer turns them into a
//! live display (one line per machine) on a terminal, or into plain lines
//! prefixed with the machine name otherwise. Every machine's log is kept so
//! the end of a failed machine's log can be shown in the summary.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

#[macro_use]
mod print;

pub use print::{stdout_error, write_stderr, write_stdout, write_stdout_bytes};

/// How many log lines of a failed machine the summary shows.
const TAIL: usize = 20;

#[derive(Debug)]
pub enum Event {
    /// A machine entered a stage ("copying", "activating", ...).
    Stage { machine: String, stage: String },
    /// A line of output from a command run for a machine (or for the whole
    /// deployment when `machine` is None).
    Log { machine: Option<String>, line: String },
    /// A machine is done; `error` is None on success.
    Done {
        machine: String,
        status: String,
        error: Option<String>,
    },
}

/// The sending side, cheap to clone into every task.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::UnboundedSender<Event>,
}

impl Events {
    pub fn stage(&self, machine: &str, stage: &str) {
        let _ = self.tx.send(Event::Stage {
            machine: machine.into(),
            stage: stage.into(),
        });
    }
    pub fn log(&self, machine: Option<&str>, line: impl Into<String>) {
        let _ = self.tx.send(Event::Log {
            machine: machine.map(Into::into),
            line: line.into(),
        });
    }
    pub fn done(&self, machine: &str, status: &str, error: Option<String>) {
        let _ = self.tx.send(Event::Done {
            machine: machine.into(),
            status: status.into(),
            error,
        });
    }
}

/// What the renderer hands back when the run is over.
pub struct Report {
    /// Per machine: the last lines of its log.
    pub tails: BTreeMap<String, Vec<String>>,
}

/// Starts a renderer for the given machines; returns the sender and a handle
/// that yields the report once every sender is dropped.
pub fn start(machines: &[String]) -> (Events, tokio::task::JoinHandle<Report>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let live = std::io::stderr().is_terminal() && std::env::var_os("NIXOPS_PLAIN").is_none();
    let machines = machines.to_vec();
    let handle = tokio::spawn(async move {
        if live {
            render_live(rx, &machines).await
        } else {
            render_plain(rx).await
        }
    });
    (Events { tx }, handle)
}

struct Tails(BTreeMap<String, VecDeque<String>>);

impl Tails {
    fn push(&mut self, machine: &str, line: &str) {
        let t = self.0.entry(machine.to_owned()).or_default();
        if t.len() == TAIL {
            t.pop_front();
        }
        t.push_back(line.to_owned());
    }
    fn into_report(self) -> Report {
        Report {
            tails: self.0.into_iter().map(|(k, v)| (k, v.into())).collect(),
        }
    }
}

async fn render_plain(mut rx: mpsc::UnboundedReceiver<Event>) -> Report {
    let mut tails = Tails(BTreeMap::new());
    let mut err = std::io::stderr();
    while let Some(ev) = rx.recv().await {
        let _ = match &ev {
            Event::Stage { machine, stage } => writeln!(err, "{machine}> {stage}"),
            Event::Log {
                machine: Some(m),
                line,
            } => {
                tails.push(m, line);
                writeln!(err, "{m}> {line}")
            }
            Event::Log { machine: None, line } => writeln!(err, "{line}"),
            Event::Done {
                machine,
                status,
                error,
            } => match error {
                None => writeln!(err, "{machine}> {status}"),
                Some(e) => {
                    tails.push(machine, e);
                    writeln!(err, "{machine}> {status}: {e}")
                }
            },
        };
    }
    tails.into_report()
}

async fn render_live(mut rx: mpsc::UnboundedReceiver<Event>, machines: &[String]) -> Report {
    let mut tails = Tails(BTreeMap::new());
    let multi = MultiProgress::new();
    let width = machines.iter().map(|m| m.len()).max().unwrap_or(4);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {{prefix:<{width}.bold}} {{elapsed:>4}} {{wide_msg}}"
    ))
    .expect("valid template");
    let mut bars: BTreeMap<String, (ProgressBar, Instant)> = BTreeMap::new();
    let bar = |m: &str, bars: &mut BTreeMap<String, (ProgressBar, Instant)>| {
        bars.entry(m.to_owned())
            .or_insert_with(|| {
                let b = multi.add(ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(m.to_owned());
                b.enable_steady_tick(Duration::from_millis(120));
                (b, Instant::now())
            })
            .0
            .clone()
    };
    for m in machines {
        bar(m, &mut bars).set_message("waiting");
    }
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Stage { machine, stage } => bar(&machine, &mut bars).set_message(stage),
            Event::Log {
                machine: Some(m),
                line,
            } => {
                tails.push(&m, &line);
                bar(&m, &mut bars).set_message(line);
            }
            Event::Log { machine: None, line } => {
                let _ = multi.println(line);
            }
            Event::Done {
                machine,
                status,
                error,
            } => {
                let b = bar(&machine, &mut bars);
                match error {
                    None => b.finish_with_message(status),
                    Some(e) => {
                        tails.push(&machine, &e);
                        b.finish_with_message(format!("{status}: {e}"));
                    }
                }
            }
        }
    }
    for (b, _) in bars.values() {
        if !b.is_finished() {
            b.finish();
        }
    }
    tails.into_report()
}

/// A plain text table with a header row, columns padded to fit.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let sep = format!(
        "+{}+\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let mut out = sep.clone();
    out += &line(headers.to_vec());
    out += &sep;
    for r in &rows {
        out += &line(r.iter().map(String::as_str).collect());
    }
    out += &sep;
    out
}
