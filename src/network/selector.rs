//! Choosing machines by name, glob or tag.

/// A machine selector of `--include`, `--exclude` and `--on`: a name or a
/// glob (`web-*`), or `@tag` / `@glob` for machines with a matching
/// `deployment.tags` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Selector {
    /// The selector as given, for messages.
    #[serde(skip)]
    pub text: String,
    /// Matches tags rather than names.
    pub tag: bool,
    /// An anchored regular expression, the same for Nix's `builtins.match`
    /// (POSIX extended) and for ours.
    pub regex: String,
}

impl Selector {
    /// Exactly this machine name.
    pub fn exact(name: &str) -> Selector {
        Selector {
            text: name.to_owned(),
            tag: false,
            regex: regex::escape(name),
        }
    }

    pub fn parse(text: &str) -> Selector {
        let (tag, glob) = match text.strip_prefix('@') {
            Some(t) => (true, t),
            None => (false, text),
        };
        Selector {
            text: text.to_owned(),
            tag,
            regex: glob_to_regex(glob),
        }
    }

    pub fn matches(&self, name: &str, tags: &[String]) -> bool {
        let re =
            regex::Regex::new(&format!("^(?:{})$", self.regex)).expect("glob_to_regex makes valid regexes");
        if self.tag {
            tags.iter().any(|t| re.is_match(t))
        } else {
            re.is_match(name)
        }
    }
}

/// Whether `name`, its tags unknown, may be selected by `include` (empty:
/// all) less `exclude`: a tag selector may match it; a name selector says.
pub fn may_select(include: &[Selector], exclude: &[Selector], name: &str) -> bool {
    (include.is_empty() || include.iter().any(|s| s.tag || s.matches(name, &[])))
        && !exclude.iter().any(|s| !s.tag && s.matches(name, &[]))
}

/// `*` any run of characters, `?` one character, `[...]` a class; all else
/// literal.
fn glob_to_regex(glob: &str) -> String {
    let mut re = String::new();
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' if glob[glob.find('[').unwrap_or(0)..].contains(']') => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            c if "\\.+()|{}^$[]".contains(c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn selectors() {
        assert!(Selector::exact("a.b*").matches("a.b*", &[]));
        assert!(!Selector::exact("a.b*").matches("a.bc", &[]));
        assert!(Selector::parse("web-1").matches("web-1", &[]));
        assert!(!Selector::parse("web-1").matches("web-10", &[]));
        assert!(Selector::parse("web-*").matches("web-10", &[]));
        assert!(!Selector::parse("web-*").matches("db-1", &[]));
        assert!(Selector::parse("db-?").matches("db-1", &[]));
        assert!(Selector::parse("db-[12]").matches("db-2", &[]));
        assert!(!Selector::parse("db-[!12]").matches("db-2", &[]));
        assert!(Selector::parse("a.b").matches("a.b", &[]));
        assert!(!Selector::parse("a.b").matches("axb", &[]));
        assert!(Selector::parse("@db").matches("x", &tags(&["web", "db"])));
        assert!(!Selector::parse("@db").matches("db", &tags(&["web"])));
        assert!(Selector::parse("@eu-*").matches("x", &tags(&["eu-west"])));
    }
}

/// Which machines a command acts on: those matching any `include` selector
/// (all when there are none) and no `exclude` selector.
#[derive(Debug, Clone, Default)]
pub struct MachineFilter {
    pub include: Vec<Selector>,
    pub exclude: Vec<Selector>,
}

impl MachineFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        MachineFilter {
            include: include.iter().map(|s| Selector::parse(s)).collect(),
            exclude: exclude.iter().map(|s| Selector::parse(s)).collect(),
        }
    }

    /// The include list for the evaluation (None: every machine).
    pub fn include_opt(&self) -> Option<&[Selector]> {
        (!self.include.is_empty()).then_some(self.include.as_slice())
    }

    pub fn matches(&self, name: &str, tags: &[String]) -> bool {
        (self.include.is_empty() || self.include.iter().any(|s| s.matches(name, tags)))
            && !self.exclude.iter().any(|s| s.matches(name, tags))
    }

    /// Whether a machine whose tags are unknown (its evaluation failed)
    /// may be selected: by its name, or by any tag selector.
    pub fn may_select(&self, name: &str) -> bool {
        may_select(&self.include, &self.exclude, name)
    }

    /// Whether an include selector is exactly this name (not a glob or tag).
    pub fn names_exactly(&self, name: &str) -> bool {
        self.include.iter().any(|s| !s.tag && s.text == name)
    }

    /// A selector that matches no machine at all is almost surely a typo.
    pub fn check_used<'a>(
        &self,
        machines: impl Iterator<Item = (&'a str, &'a [String])> + Clone,
    ) -> anyhow::Result<()> {
        for s in self.include.iter().chain(&self.exclude) {
            if !machines.clone().any(|(n, t)| s.matches(n, t)) {
                if s.tag {
                    anyhow::bail!("no machine has a tag matching ‘{}’", s.text);
                }
                anyhow::bail!("there is no machine named ‘{}’ in the network", s.text);
            }
        }
        Ok(())
    }
}
