//! libpq's ways of naming a PostgreSQL server, as `psql` reads them: URLs,
//! `key=value` strings, the `PG*` variables and `~/.pgpass`; and the
//! connection string as it may be shown (never with its password).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio_postgres::Config;
use tokio_postgres::config::Host;

use super::postgres::cause;

/// Where libpq looks for a Unix socket when no host is given (Debian's).
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// libpq's connection parameters: a string starting with one of them and
/// `=` is a `key=value` connection string.
const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "connect_timeout",
    "options",
    "application_name",
    "sslmode",
    "keepalives",
    "keepalives_idle",
    "target_session_attrs",
    "channel_binding",
];

/// Whether `-s` / `$NIXOPS_STATE` names a PostgreSQL database rather than
/// a file.
pub fn is_connection_string(s: &str) -> bool {
    if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        return true;
    }
    let t = s.trim_start();
    KEYWORDS.iter().any(|k| {
        t.strip_prefix(k)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })
}

/// A database to connect to, as libpq would: what the string says, then
/// `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGPASSFILE`
/// (`~/.pgpass`), `PGCONNECT_TIMEOUT`, then the defaults.
#[derive(Clone)]
pub struct Target {
    pub(super) config: Config,
    /// The string as given, without its password: for messages.
    pub(super) shown: String,
    /// The string itself carried a password (visible in the process list).
    pub(super) password_in_string: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Target {
    pub fn parse(s: &str) -> Result<Target> {
        let shown = redact(s);
        let mut config: Config = s
            .parse()
            .map_err(|e| anyhow!("invalid PostgreSQL connection string {shown}: {}", cause(&e)))?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            bail!(
                "PostgreSQL state {shown}: sslmode=require, but this nixops has no TLS yet; reach the server over a trusted network or an SSH tunnel"
            );
        }
        let password_in_string = config.get_password().is_some();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            match env("PGHOST") {
                Some(h) => {
                    for h in h.split(',') {
                        config.host(h);
                    }
                }
                None if Path::new(DEFAULT_SOCKET_DIR).is_dir() => {
                    config.host_path(DEFAULT_SOCKET_DIR);
                }
                None => {
                    config.host("localhost");
                }
            }
        }
        if config.get_ports().is_empty()
            && let Some(p) = env("PGPORT")
        {
            let port = p
                .parse()
                .map_err(|_| anyhow!("$PGPORT is not a port number: {p}"))?;
            config.port(port);
        }
        if config.get_user().is_none() {
            let user = env("PGUSER").unwrap_or_else(os_user);
            config.user(user);
        }
        if config.get_dbname().is_none()
            && let Some(db) = env("PGDATABASE")
        {
            config.dbname(db);
        }
        if config.get_connect_timeout().is_none() {
            // libpq waits forever; a deploy should not.
            let secs = env("PGCONNECT_TIMEOUT")
                .and_then(|t| t.parse().ok())
                .unwrap_or(10);
            config.connect_timeout(Duration::from_secs(secs));
        }
        if config.get_application_name().is_none() {
            config.application_name("nixops");
        }
        if config.get_password().is_none() {
            if let Some(pw) = env("PGPASSWORD") {
                config.password(pw);
            } else if let Some(pw) = pgpass(&config, passfile(s)) {
                config.password(pw);
            }
        }
        Ok(Target {
            config,
            shown,
            password_in_string,
        })
    }
}

fn os_user() -> String {
    super::history::who()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The connection string without any password.
fn redact(s: &str) -> String {
    static RES: std::sync::OnceLock<[regex::Regex; 3]> = std::sync::OnceLock::new();
    let [userinfo, query, keyword] = RES.get_or_init(|| {
        [
            regex::Regex::new(r"^(postgres(?:ql)?://[^:/@?#]*):[^@/?#]*@").expect("valid regex"),
            regex::Regex::new(r"([?&])password=[^&#]*&?").expect("valid regex"),
            regex::Regex::new(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)\s*").expect("valid regex"),
        ]
    });
    if s.contains("://") {
        let s = userinfo.replace(s, "$1@");
        query
            .replace_all(&s, "$1")
            .trim_end_matches(['?', '&'])
            .to_owned()
    } else {
        keyword.replace_all(s, "").trim().to_owned()
    }
}

/// `passfile` of the connection string, `$PGPASSFILE`, or `~/.pgpass`.
fn passfile(s: &str) -> Option<PathBuf> {
    let given = regex::Regex::new(r"(?:^|[\s?&])passfile\s*=\s*([^\s&#]+)")
        .expect("valid regex")
        .captures(s)
        .map(|c| PathBuf::from(&c[1]));
    given
        .or_else(|| std::env::var_os("PGPASSFILE").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))
}

/// The password `~/.pgpass` has for this host, port, database and user
/// (`*` matches anything; `\` escapes `:` and `\`). As libpq does, a file
/// others may read is ignored, with a warning.
fn pgpass(config: &Config, file: Option<PathBuf>) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let file = file?;
    let meta = std::fs::metadata(&file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        errln!(
            "warning: password file {} has group or world access; permissions should be u=rw (0600) or less",
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) if p == Path::new(DEFAULT_SOCKET_DIR) => "localhost".into(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    let wanted = [host.as_str(), port.as_str(), db, user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(pgpass_fields)
        .find(|f| f.len() == 5 && f[..4].iter().zip(wanted).all(|(f, w)| f == "*" || f == w))
        .map(|mut f| f.remove(4))
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().expect("one field").extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings() {
        assert!(is_connection_string("postgresql://u@h/db"));
        assert!(is_connection_string("postgres://h"));
        assert!(is_connection_string("host=/tmp dbname=x"));
        assert!(is_connection_string(" dbname = x"));
        assert!(!is_connection_string("/tmp/host=x.nixops"));
        assert!(!is_connection_string("deployments.nixops"));
        assert!(!is_connection_string("hostile=1"));
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(redact("postgresql://me:s3cret@h:5/db"), "postgresql://me@h:5/db");
        assert_eq!(
            redact("postgres://me@h/db?password=s3cret&sslmode=disable"),
            "postgres://me@h/db?sslmode=disable"
        );
        assert_eq!(redact("postgres://me@h/db?password=s3cret"), "postgres://me@h/db");
        assert_eq!(redact("host=h password='a b\\' c' dbname=x"), "host=h dbname=x");
        assert_eq!(redact("password=s3cret"), "");
    }

    #[test]
    fn tls_is_refused_by_name() {
        let e = Target::parse("postgresql://me:pw@h/db?sslmode=require")
            .err()
            .unwrap();
        let e = format!("{e:#}");
        assert!(
            e.contains("postgresql://me@h/db?sslmode=require") && e.contains("no TLS"),
            "{e}"
        );
    }

    #[test]
    fn pgpass_lines() {
        assert_eq!(pgpass_fields("h:5432:*:u:p\\:w"), ["h", "5432", "*", "u", "p:w"]);
        assert_eq!(pgpass_fields("a\\\\b:1:d:u:x:y"), ["a\\b", "1", "d", "u", "x:y"]);
    }
}
