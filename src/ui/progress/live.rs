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
    /// "evaluating (12/200)", above the machines while they are evaluated.
    evaluation: Option<ProgressBar>,
}

impl Bars {
    fn new(machines: &[String]) -> Self {
        let width = machines.iter().map(|m| m.len()).max().unwrap_or(4).max(4);
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} {{prefix:<{width}.bold}} {{elapsed:>4}} {{wide_msg}}"
        ))
        .expect("valid template");
        let mut bars = Bars {
            multi: MultiProgress::new(),
            style,
            bars: BTreeMap::new(),
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
        let (multi, style) = (&self.multi, &self.style);
        self.bars
            .entry(m.to_owned())
            .or_insert_with(|| {
                let b = multi.add(ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(m.to_owned());
                b.enable_steady_tick(Duration::from_millis(120));
                b
            })
            .clone()
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
            Event::Log { machine: None, line } | Event::Message(line) => {
                let _ = bars.multi.println(line);
            }
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
                bars.finish_all();
                bars.multi
                    .suspend(|| err!("{}", summary::render(&rows, secs, &tails)));
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
