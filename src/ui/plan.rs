//! A plan as people read it (`nixops plan`, `deploy --ask`): per machine its
//! status, the packages whose versions change, the closure's size, the
//! units dry-activate names and the keys; then one line of counts.

use std::fmt::Write;

use crate::deploy::{MachinePlan, Plan, PlanStatus};
use crate::nix::closure::Direction;

pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    for (name, m) in &plan.machines {
        machine(&mut s, name, m);
    }
    if !plan.machines.is_empty() {
        s.push('\n');
    }
    s += &summary(plan);
    s.push('\n');
    s
}

/// "N changed, M unchanged, K new, U unreachable" (and failed ones, if any).
pub fn summary(plan: &Plan) -> String {
    let mut s = format!(
        "{} changed, {} unchanged, {} new, {} unreachable",
        plan.count(PlanStatus::Changed),
        plan.count(PlanStatus::Unchanged),
        plan.count(PlanStatus::New),
        plan.count(PlanStatus::Unreachable)
    );
    let failed = plan.count(PlanStatus::Failed);
    if failed > 0 {
        let _ = write!(s, ", {failed} failed");
    }
    s
}

fn machine(s: &mut String, name: &str, m: &MachinePlan) {
    let _ = write!(s, "{name}: {}", m.status.as_str());
    match (m.status, &m.error) {
        (_, Some(e)) => {
            let _ = writeln!(s, ": {e}");
        }
        (PlanStatus::Unchanged, None) if m.activate => {
            s.push_str(" (a deploy activates it again: deployment.alwaysActivate)\n");
        }
        (PlanStatus::Unchanged, None) => s.push_str(" (a deploy does not activate it)\n"),
        _ => s.push('\n'),
    }
    if m.error.is_none() && m.status != PlanStatus::Unchanged {
        match &m.current {
            Some(c) => {
                let _ = writeln!(s, "  runs {c}");
            }
            None => s.push_str("  runs no system yet\n"),
        }
        if m.profile != m.current {
            let _ = writeln!(s, "  boots {}", m.profile.as_deref().unwrap_or("no system"));
        }
        let _ = writeln!(s, "  new  {}", m.new);
        packages(s, m);
        if let Some(after) = m.closure_size.after {
            match m.closure_size.before {
                Some(before) => {
                    let delta = after as i128 - before as i128;
                    let sign = if delta < 0 { "-" } else { "+" };
                    let _ = writeln!(
                        s,
                        "  closure: {} → {} ({sign}{})",
                        size(before as f64),
                        size(after as f64),
                        size(delta.unsigned_abs() as f64)
                    );
                }
                None => {
                    let _ = writeln!(s, "  closure: {}", size(after as f64));
                }
            }
        }
        units(s, m);
    }
    keys(s, m);
}

fn packages(s: &mut String, m: &MachinePlan) {
    let p = &m.packages;
    if p.added.is_empty() && p.removed.is_empty() && p.changed.is_empty() {
        if m.current.is_some() {
            s.push_str("  packages: no version changes\n");
        }
        return;
    }
    s.push_str("  packages:\n");
    let versions = |v: &[String]| {
        v.iter()
            .map(|x| if x.is_empty() { "(no version)" } else { x.as_str() })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for a in &p.added {
        let _ = writeln!(s, "    + {} {}", a.name, versions(&a.versions));
    }
    for r in &p.removed {
        let _ = writeln!(s, "    - {} {}", r.name, versions(&r.versions));
    }
    for c in &p.changed {
        let mark = match c.direction {
            Direction::Upgrade => "↑",
            Direction::Downgrade => "↓",
            Direction::Changed => "~",
        };
        let _ = writeln!(
            s,
            "    {mark} {} {} → {}",
            c.name,
            versions(&c.before),
            versions(&c.after)
        );
    }
}

fn units(s: &mut String, m: &MachinePlan) {
    let u = &m.units;
    if !u.known {
        let _ = writeln!(s, "  units: unknown: {}", u.why.as_deref().unwrap_or("-"));
        return;
    }
    let lists = [
        ("stop", &u.stop),
        ("start", &u.start),
        ("restart", &u.restart),
        ("reload", &u.reload),
        ("leave running (changed)", &u.not_stopped),
    ];
    if lists.iter().all(|(_, l)| l.is_empty()) && !u.restart_systemd && u.other.is_empty() {
        s.push_str("  units: none to stop, start, restart or reload\n");
        return;
    }
    s.push_str("  units (dry-activate):\n");
    if u.restart_systemd {
        s.push_str("    would restart systemd\n");
    }
    for (what, list) in lists.iter().filter(|(_, l)| !l.is_empty()) {
        let _ = writeln!(s, "    {what}: {}", list.join(", "));
    }
    for o in &u.other {
        let _ = writeln!(s, "    {o}");
    }
}

fn keys(s: &mut String, m: &MachinePlan) {
    let k = &m.keys;
    if let Some(e) = &k.error {
        let _ = writeln!(s, "  keys: cannot be read: {e}");
        return;
    }
    if k.added.is_empty() && k.removed.is_empty() && k.changed.is_empty() {
        return;
    }
    s.push_str("  keys:\n");
    for a in &k.added {
        let _ = writeln!(s, "    + {a}");
    }
    for r in &k.removed {
        let _ = writeln!(s, "    - {r}");
    }
    for c in &k.changed {
        let _ = writeln!(s, "    ~ {} ({})", c.name, c.what.join(", "));
    }
}

/// Bytes as people read them, in powers of 1024 (as `nix path-info -h`).
fn size(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", units[i])
    } else {
        format!("{v:.1} {}", units[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0.0), "0 B");
        assert_eq!(size(1023.0), "1023 B");
        assert_eq!(size(1536.0), "1.5 KiB");
        assert_eq!(size(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }
}
