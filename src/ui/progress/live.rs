//! The live display on a terminal: one line per machine with its stage,
//! elapsed time and latest log line; messages above it.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::Receiver;
use crate::ui::events::Event;
use crate::ui::summary::{self, Tails};

struct Bars {
    multi: MultiProgress,
    style: ProgressStyle,
    bars: BTreeMap<String, ProgressBar>,
    /// The longest machine name so far: every name is padded to it, so the
    /// columns stay aligned as machines come.
    width: usize,
    /// The summary is out: the lines above it stay as they are, and nothing
    /// is drawn again.
    done: bool,
    /// "evaluating (12/200)", above the machines while they are evaluated.
    evaluation: Option<ProgressBar>,
}

impl Bars {
    fn new(machines: &[String]) -> Self {
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}")
            .expect("valid template");
        let mut bars = Bars {
            multi: MultiProgress::new(),
            style,
            bars: BTreeMap::new(),
            width: 0,
            done: false,
            evaluation: None,
        };
        bars.add(machines);
        bars
    }

    fn add(&mut self, machines: &[String]) {
        for m in machines {
            self.get(m).set_message("waiting");
        }
    }

    fn get(&mut self, m: &str) -> ProgressBar {
        if let Some(b) = self.bars.get(m) {
            return b.clone();
        }
        let width = display_width(m);
        if width > self.width {
            self.width = width;
            for (name, b) in &self.bars {
                b.set_prefix(pad(name, width));
            }
        }
        let b = self.multi.add(ProgressBar::new_spinner());
        b.set_style(self.style.clone());
        b.set_prefix(pad(m, self.width));
        b.enable_steady_tick(Duration::from_millis(120));
        self.bars.insert(m.to_owned(), b.clone());
        b
    }

    /// A line above the machines; after the summary, below it.
    fn println(&self, line: &str) {
        if self.done {
            errln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }

    fn evaluated(&mut self, machine: &str, done: usize, total: usize, cached: bool) {
        let multi = &self.multi;
        let bar = self.evaluation.get_or_insert_with(|| {
            let b = multi.insert(0, ProgressBar::new_spinner());
            b.set_style(ProgressStyle::with_template("{spinner} {wide_msg}").expect("valid template"));
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        if done >= total {
            bar.finish_with_message(format!("evaluated ({done}/{total})"));
        } else {
            bar.set_message(format!("evaluating ({done}/{total})"));
        }
        if let Some(b) = self.bars.get(machine) {
            b.set_message(if cached { "evaluated (cached)" } else { "evaluated" });
        }
    }

    fn finish_all(&self) {
        for b in self
            .bars
            .values()
            .chain(&self.evaluation)
            .filter(|b| !b.is_finished())
        {
            b.finish();
        }
    }
}

pub async fn render(mut rx: Receiver, machines: Vec<String>) {
    let mut tails = Tails::default();
    let mut bars = Bars::new(&machines);
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Machines(names) => bars.add(&names),
            Event::Stage { machine, stage } => bars.get(&machine).set_message(stage),
            Event::Evaluated {
                machine,
                done,
                total,
                cached,
                ..
            } => bars.evaluated(&machine, done, total, cached),
            Event::Log {
                machine: Some(m),
                line,
            } => {
                tails.push(&m, &line);
                bars.get(&m).set_message(line);
            }
            Event::Log { machine: None, line } | Event::Message(line) => bars.println(&line),
            Event::Output(line) => bars.multi.suspend(|| outln!("{line}")),
            Event::Done {
                machine,
                status,
                error,
            } => {
                let b = bars.get(&machine);
                match error {
                    None => b.finish_with_message(status),
                    Some(e) => {
                        tails.push(&machine, &e);
                        b.finish_with_message(format!("{status}: {e}"));
                    }
                }
            }
            Event::Summary { rows, secs } => {
                // The last frame stays where it is, the table below it, and
                // nothing is drawn again after.
                bars.finish_all();
                bars.multi
                    .set_draw_target(indicatif::ProgressDrawTarget::hidden());
                bars.done = true;
                err!("{}", summary::render(&rows, secs, &tails));
            }
            Event::Ask {
                text,
                question,
                reply,
            } => {
                let yes = bars.multi.suspend(|| {
                    err!("{text}");
                    super::answer(&question)
                });
                let _ = reply.send(yes);
            }
        }
    }
    bars.finish_all();
}

/// Columns a name takes on a terminal (names are mostly ASCII; a wide
/// character counts as one, which only misaligns its own line).
fn display_width(s: &str) -> usize {
    s.chars().count()
}

fn pad(name: &str, width: usize) -> String {
    format!("{name:<width$}")
}
