//! `NIXOPS_TIMINGS=1`: where a run's wall time went, printed on stderr at
//! its end (bench/deploy.sh reads it). Each machine's stage lasts from the
//! event that starts it until its next stage or its end; the run's own
//! steps (a Nix build of several machines, the network's evaluation) are
//! spans of their own. Nothing is recorded without the variable.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

#[derive(Default)]
struct Timings {
    /// Each machine's current stage and when it began.
    open: BTreeMap<String, (String, f64)>,
    /// Per stage (or span): every interval, as (from, to) seconds.
    done: BTreeMap<String, Vec<(f64, f64)>>,
}

struct Clock {
    start: Instant,
    timings: Mutex<Timings>,
}

static CLOCK: OnceLock<Option<Clock>> = OnceLock::new();

fn clock() -> Option<&'static Clock> {
    CLOCK
        .get_or_init(|| {
            std::env::var_os("NIXOPS_TIMINGS")
                .filter(|v| !v.is_empty() && v != "0")
                .map(|_| Clock {
                    start: Instant::now(),
                    timings: Mutex::default(),
                })
        })
        .as_ref()
}

/// Starts the clock (when timings are on): the run's time 0.
pub fn init() {
    clock();
}

fn with(f: impl FnOnce(&mut Timings, f64)) {
    if let Some(c) = clock() {
        let now = c.start.elapsed().as_secs_f64();
        f(&mut c.timings.lock().expect("timings lock"), now);
    }
}

impl Timings {
    fn close(&mut self, machine: &str, now: f64) {
        if let Some((stage, from)) = self.open.remove(machine) {
            self.done.entry(stage).or_default().push((from, now));
        }
    }
}

/// A machine entered `stage` (its previous one ends).
pub fn stage(machine: &str, stage: &str) {
    with(|t, now| {
        t.close(machine, now);
        t.open.insert(machine.to_owned(), (stage.to_owned(), now));
    });
}

/// A machine is done (its stage ends).
pub fn done(machine: &str) {
    with(|t, now| t.close(machine, now));
}

/// A moment worth counting (a machine's evaluation came).
pub fn mark(what: &str) {
    with(|t, now| t.done.entry(what.to_owned()).or_default().push((now, now)));
}

/// A step of the run: from `since` until now.
pub fn span(what: &str, since: Instant) {
    if let Some(c) = clock() {
        let from = since.saturating_duration_since(c.start).as_secs_f64();
        with(|t, now| t.done.entry(what.to_owned()).or_default().push((from, now)));
    }
}

/// The report: one line per stage or span, tab-separated after "timing:"
/// (name, count, first start, last end, median, max, sum), seconds since
/// the start; empty when timings are off.
pub fn report() -> String {
    let Some(c) = clock() else {
        return String::new();
    };
    let mut t = c.timings.lock().expect("timings lock");
    let now = c.start.elapsed().as_secs_f64();
    let machines: Vec<String> = t.open.keys().cloned().collect();
    for m in machines {
        t.close(&m, now);
    }
    let mut out = String::from("timings (NIXOPS_TIMINGS): name, count, from, to, median, max, sum (s)\n");
    let mut rows: Vec<(&String, &Vec<(f64, f64)>)> = t.done.iter().collect();
    rows.sort_by(|a, b| a.1[0].0.total_cmp(&b.1[0].0));
    for (name, spans) in rows {
        let from = spans.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let to = spans.iter().map(|s| s.1).fold(0.0, f64::max);
        let mut lens: Vec<f64> = spans.iter().map(|s| s.1 - s.0).collect();
        lens.sort_by(f64::total_cmp);
        let median = lens[lens.len() / 2];
        let max = lens[lens.len() - 1];
        let sum: f64 = lens.iter().sum();
        out.push_str(&format!(
            "timing:\t{name}\t{}\t{from:.3}\t{to:.3}\t{median:.3}\t{max:.3}\t{sum:.3}\n",
            spans.len()
        ));
    }
    out.push_str(&format!(
        "timing:\ttotal\t1\t0.000\t{now:.3}\t{now:.3}\t{now:.3}\t{now:.3}\n"
    ));
    out
}
