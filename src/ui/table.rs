//! Plain text tables.

use std::io::IsTerminal;

/// A table with a header row, columns padded to fit; every cell whole (for
/// pipes, files and tests).
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    render(headers, rows, None)
}

/// Where a table goes.
#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// [`table`] for a person at a terminal: as wide as the terminal at most
/// (the widest columns are cut, with "…"), store paths shortened to their
/// names. Elsewhere (a pipe, a file) every cell is whole.
pub fn table_on(stream: Stream, headers: &[&str], rows: Vec<Vec<String>>) -> String {
    match terminal_width(stream) {
        Some(width) => {
            let rows = rows
                .into_iter()
                .map(|r| r.into_iter().map(|c| short_store_paths(&c)).collect())
                .collect();
            render(headers, rows, Some(width))
        }
        None => table(headers, rows),
    }
}

fn terminal_width(stream: Stream) -> Option<usize> {
    let size = match stream {
        Stream::Stdout if std::io::stdout().is_terminal() => rustix::termios::tcgetwinsize(std::io::stdout()),
        Stream::Stderr if std::io::stderr().is_terminal() => rustix::termios::tcgetwinsize(std::io::stderr()),
        _ => return None,
    };
    size.ok().map(|w| w.ws_col as usize).filter(|w| *w > 0)
}

/// Columns narrower than this are never cut.
const MIN_CUT: usize = 12;

fn render(headers: &[&str], rows: Vec<Vec<String>>, max: Option<usize>) -> String {
    let len = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| len(h)).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(len(c));
        }
    }
    if let Some(max) = max {
        // "| " + cells joined by " | " + " |"
        let total = |w: &[usize]| w.iter().sum::<usize>() + 3 * w.len() + 1;
        while total(&widths) > max {
            let (i, w) = widths
                .iter()
                .copied()
                .enumerate()
                .max_by_key(|(_, w)| *w)
                .expect("a table has columns");
            if w <= MIN_CUT.max(len(headers[i])) {
                break;
            }
            widths[i] -= 1;
        }
    }
    let cut = |c: &str, w: usize| -> String {
        if len(c) <= w {
            c.to_owned()
        } else {
            let mut s: String = c.chars().take(w.saturating_sub(1)).collect();
            s.push('…');
            s
        }
    };
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", cut(c, widths[i]), w = widths[i]))
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

/// Store paths in `text` as their names (`/nix/store/<hash>-nixos-system-web`
/// → `nixos-system-web`), where the hash tells nothing: with two paths of the
/// same name and different hashes, each keeps the start of its hash
/// (`1a2b3c4…-nixos-system-web`).
pub fn short_store_paths(text: &str) -> String {
    let re =
        regex::Regex::new(r"/nix/store/([0-9a-df-np-sv-z]{32})-([A-Za-z0-9+._?=-]+)").expect("valid regex");
    let mut hashes: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> = Default::default();
    for c in re.captures_iter(text) {
        let (hash, name) = (c.get(1).unwrap().as_str(), c.get(2).unwrap().as_str());
        hashes.entry(name).or_default().insert(hash);
    }
    re.replace_all(text, |c: &regex::Captures| {
        let (hash, name) = (&c[1], &c[2]);
        if hashes.get(name).is_some_and(|h| h.len() > 1) {
            format!("{}…-{name}", &hash[..7])
        } else {
            name.to_owned()
        }
    })
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_fits_its_width_by_cutting_the_widest_column() {
        let rows = vec![vec!["web".to_owned(), "x".repeat(200)]];
        let t = render(&["Name", "Notes"], rows.clone(), Some(60));
        assert!(t.lines().all(|l| l.chars().count() <= 60), "{t}");
        assert!(t.contains("…"), "{t}");
        // Whole where there is room, and without a width.
        assert!(render(&["Name", "Notes"], rows.clone(), Some(300)).contains(&"x".repeat(200)));
        assert!(table(&["Name", "Notes"], rows).contains(&"x".repeat(200)));
    }

    #[test]
    fn store_paths_keep_their_hash_only_where_it_tells_them_apart() {
        let a = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web-stub";
        let b = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-nixos-system-web-stub";
        let c = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12";
        assert_eq!(short_store_paths(&format!("runs {c}")), "runs hello-2.12");
        assert_eq!(
            short_store_paths(&format!("runs {a} instead of the deployed {b}")),
            "runs 0123456…-nixos-system-web-stub instead of the deployed zyxwvsr…-nixos-system-web-stub"
        );
    }
}
