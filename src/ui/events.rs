//! The event bus between the pipeline and the display: the pipeline only
//! sends [`Event`]s, a renderer (`progress/`) decides what a person sees.

use tokio::sync::{mpsc, oneshot};

#[derive(Debug)]
pub enum Event {
    /// The machines of the run, in display order.
    Machines(Vec<String>),
    /// A machine entered a stage ("copying", "activating", ...).
    Stage { machine: String, stage: String },
    /// A line of output from a command run for a machine (or for the whole
    /// run when `machine` is None).
    Log { machine: Option<String>, line: String },
    /// A machine's evaluation is done (`done` of `total`), evaluated or
    /// taken from the evaluation cache; `why`: why it was evaluated anew.
    Evaluated {
        machine: String,
        done: usize,
        total: usize,
        cached: bool,
        why: Option<String>,
    },
    /// A line about the whole run, for people (stderr).
    Message(String),
    /// A line of the command's result, for programs (stdout).
    Output(String),
    /// A machine is done; `error` is None on success.
    Done {
        machine: String,
        status: String,
        error: Option<String>,
    },
    /// The run is over: one row per machine.
    Summary { rows: Vec<SummaryRow>, secs: f64 },
    /// Show `text` (for people, on stderr), then ask `question` on the
    /// terminal and send the answer (no, when none can be read).
    Ask {
        text: String,
        question: String,
        reply: oneshot::Sender<bool>,
    },
}

/// How one machine ended, for the final table.
#[derive(Debug, Clone)]
pub struct SummaryRow {
    pub machine: String,
    /// The stage it reached.
    pub stage: String,
    /// "deployed", "failed", "rolled back", ...
    pub result: String,
    /// Seconds from the start of the run until it ended.
    pub secs: f64,
    /// Why it failed (empty when it did not).
    pub error: String,
    pub failed: bool,
    /// Show the end of its log above the table.
    pub show_log: bool,
}

/// The sending side, cheap to clone into every task. Sending never fails:
/// a display that is gone (closed output) must not stop the run.
#[derive(Clone)]
pub struct Events {
    pub(super) tx: mpsc::UnboundedSender<Event>,
}

impl Events {
    fn send(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    pub fn machines(&self, names: &[String]) {
        self.send(Event::Machines(names.to_vec()));
    }

    pub fn stage(&self, machine: &str, stage: &str) {
        super::timings::stage(machine, stage);
        self.send(Event::Stage {
            machine: machine.into(),
            stage: stage.into(),
        });
    }

    pub fn log(&self, machine: Option<&str>, line: impl Into<String>) {
        self.send(Event::Log {
            machine: machine.map(Into::into),
            line: line.into(),
        });
    }

    pub fn evaluated(&self, machine: &str, done: usize, total: usize, cached: bool, why: Option<String>) {
        super::timings::mark(if cached { "evaluated (cache)" } else { "evaluated" });
        self.send(Event::Evaluated {
            machine: machine.into(),
            done,
            total,
            cached,
            why,
        });
    }

    pub fn message(&self, line: impl Into<String>) {
        self.send(Event::Message(line.into()));
    }

    pub fn output(&self, line: impl Into<String>) {
        self.send(Event::Output(line.into()));
    }

    pub fn done(&self, machine: &str, status: &str, error: Option<String>) {
        super::timings::done(machine);
        self.send(Event::Done {
            machine: machine.into(),
            status: status.into(),
            error,
        });
    }

    pub fn summary(&self, rows: Vec<SummaryRow>, secs: f64) {
        self.send(Event::Summary { rows, secs });
    }

    /// Shows `text`, asks `question` on the terminal (the display pauses
    /// meanwhile) and returns the answer.
    pub async fn ask(&self, text: String, question: String) -> bool {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Ask {
            text,
            question,
            reply,
        });
        answer.await.unwrap_or(false)
    }
}
