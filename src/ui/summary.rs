//! The end of a run: the last lines of every failed machine's log, a table
//! of every machine (stage reached, result, time, first line of its error),
//! and one line that says how it went.

use std::collections::{BTreeMap, VecDeque};

use super::events::SummaryRow;
use super::table::{Stream, table_on};

/// How many log lines of a failed machine the summary shows.
pub const TAIL: usize = 20;

/// The last lines of each machine's log, as the run went.
#[derive(Default)]
pub struct Tails(BTreeMap<String, VecDeque<String>>);

impl Tails {
    pub fn push(&mut self, machine: &str, line: &str) {
        let t = self.0.entry(machine.to_owned()).or_default();
        if t.len() == TAIL {
            t.pop_front();
        }
        t.push_back(line.to_owned());
    }
}

pub fn render(rows: &[SummaryRow], secs: f64, tails: &Tails) -> String {
    let mut s = String::new();
    for r in rows.iter().filter(|r| r.show_log) {
        s += &format!("\n--- {}: last lines of its log:\n", r.machine);
        for l in tails.0.get(&r.machine).into_iter().flatten() {
            s += &format!("{}> {l}\n", r.machine);
        }
    }
    let cells = rows
        .iter()
        .map(|r| {
            vec![
                r.machine.clone(),
                r.stage.clone(),
                r.result.clone(),
                format!("{:.1} s", r.secs),
                r.error.lines().next().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    s += "\n";
    s += &table_on(
        Stream::Stderr,
        &["Machine", "Stage", "Result", "Time", "Error"],
        cells,
    );
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.failed)
        .map(|r| format!("‘{}’", r.machine))
        .collect();
    let total = rows.len();
    if failed.is_empty() {
        s += &format!(
            "deployment finished successfully ({}, {secs:.1} s)\n",
            super::count(total, "machine")
        );
    } else {
        s += &format!(
            "error: deployment of {} of {} failed (namely on {}) ({secs:.1} s)\n",
            failed.len(),
            super::count(total, "machine"),
            failed.join(", ")
        );
    }
    s
}
