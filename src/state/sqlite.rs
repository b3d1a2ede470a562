//! NixOps' SQLite state file, schema version 3: the file, its errors and
//! NixOps' lock file; the state's SQL itself is in `sql.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::{Connection, MAIN_DB, OpenFlags};

use super::sql::{self, Db, Dialect, Row, SCHEMA_VERSION, Value};
use super::{DeploymentLock, Unlock, lock};

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

/// How a command uses the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// May create the file (`create`, `import`).
    Create,
    /// Changes an existing file.
    Write,
    /// Only reads an existing file, which may be read-only.
    Read,
}

impl SqliteStore {
    /// Opens a state file, upgrading NixOps schema 1 or 2. Only
    /// [`Access::Create`] creates a missing file (never its directory).
    pub fn open(path: &Path, access: Access) -> Result<Self> {
        let missing = match std::fs::metadata(path) {
            Ok(m) => {
                // SQLite would take an empty file for an empty state, and
                // the first command would write one over it: every
                // deployment gone without a word. No NixOps state file is
                // empty (its schema is in it); only create and import make
                // one.
                if m.len() == 0 && access != Access::Create && !has_journal(path) {
                    bail!(
                        "state file {} is empty (0 bytes), which no NixOps state file is: it is damaged (truncated?); restore it from a backup, or remove it and create the deployments anew",
                        path.display()
                    );
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => bail!("cannot open state file {}: {e}", path.display()),
        };
        if missing {
            let no_dir = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir());
            match (access, no_dir) {
                (Access::Create, None) => {}
                (Access::Create, Some(dir)) => bail!(
                    "cannot create state file {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                ),
                (_, Some(dir)) => bail!(
                    "state file {} does not exist (nor does its directory {})",
                    path.display(),
                    dir.display()
                ),
                (_, None) => bail!(
                    "state file {} does not exist; create a deployment with ‘nixops create’ or name another file with -s or $NIXOPS_STATE",
                    path.display()
                ),
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | if access == Access::Create {
                OpenFlags::SQLITE_OPEN_CREATE
            } else {
                OpenFlags::empty()
            };
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| anyhow!("cannot open state file {}: {}", path.display(), cause(path, &e)))?;
        // Before SQLite makes its journal files, which take the file's mode.
        if access != Access::Read {
            private(path, missing);
        }
        // SQLite falls back to reading a file it may not write.
        if conn.is_readonly(MAIN_DB).unwrap_or(false) {
            drop(conn);
            if access == Access::Read {
                return Self::open_read_only(path);
            }
            bail!(
                "cannot write state file {}: {}",
                path.display(),
                write_denied(path)
            );
        }
        let store = SqliteStore {
            conn,
            path: path.to_owned(),
        };
        store.init().map_err(|e| {
            if is_kind(&e) {
                return e;
            }
            // The file is fine when the trouble is the disk or the system.
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<rusqlite::Error>())
                .and_then(rusqlite::Error::sqlite_error_code);
            use rusqlite::ErrorCode::*;
            let what = match code {
                Some(DiskFull | SystemIoFailure | CannotOpen | ReadOnly | OutOfMemory) => "cannot be opened",
                _ => "is not a usable NixOps state file",
            };
            anyhow!("state file {} {what}: {}", path.display(), describe(path, &e))
        })?;
        Ok(store)
    }

    /// A file this process may not write (a read-only file system, or
    /// permissions): read it without changing anything, not even the
    /// journal. On a read-only file system nobody can change it under us,
    /// so SQLite may skip its shared-memory file (which it cannot create
    /// there).
    fn open_read_only(path: &Path) -> Result<Self> {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let uri = |extra: &str| format!("file:{}?mode=ro{extra}", uri_path(path));
        let try_open = |extra: &str| -> Result<Self> {
            let conn = Connection::open_with_flags(uri(extra), flags)?;
            let store = SqliteStore {
                conn,
                path: path.to_owned(),
            };
            store.check_version()?;
            Ok(store)
        };
        match try_open("") {
            Ok(s) => Ok(s),
            Err(e) if is_kind(&e) => Err(e),
            Err(_) if read_only_fs(path) => try_open("&immutable=1").map_err(|e| {
                if is_kind(&e) {
                    return e;
                }
                anyhow!(
                    "cannot read state file {}: {}",
                    path.display(),
                    describe(path, &e)
                )
            }),
            Err(e) => bail!(
                "cannot read state file {}: {}",
                path.display(),
                describe(path, &e)
            ),
        }
    }

    /// An empty state that is no file (the default file does not exist
    /// yet): commands see no deployments and nothing is created.
    pub fn empty(path: &Path) -> Result<Self> {
        let store = SqliteStore {
            conn: Connection::open_in_memory()?,
            path: path.to_owned(),
        };
        store.init()?;
        Ok(store)
    }

    /// A file we may not write must already be of NixOps' current schema;
    /// our own tables may be missing (a file NixOps wrote).
    fn check_version(&self) -> Result<()> {
        let version = sql::schema_version(self)
            .with_context(|| format!("state file {} is not a NixOps state file", self.path.display()))?;
        if version != SCHEMA_VERSION {
            bail!(
                "state file {} has schema version {version}, and this nixops reads only version {SCHEMA_VERSION} from a file it may not write",
                self.path.display()
            );
        }
        sql::check_schema(self).with_context(|| format!("state file {}", self.path.display()))?;
        Ok(())
    }

    fn init(&self) -> Result<()> {
        // Several nixops processes may use one file at once (e.g. deploys of
        // different deployments); wait for each other's transactions.
        self.conn.busy_timeout(Duration::from_secs(60))?;
        self.conn.pragma_update(None, "foreign_keys", 1)?;
        let mode: String = self
            .conn
            .query_row("pragma journal_mode = wal", [], |r| r.get(0))?;
        if mode != "wal" {
            tracing::debug!("journal mode is {mode}, not wal");
        }
        if !sql::check_schema(self)? {
            sql::init(self)?;
        }
        Ok(())
    }
}

/// `$1` parameters (PostgreSQL's, which the shared SQL uses) as SQLite's
/// numbered `?1`.
fn numbered(sql: &str) -> std::borrow::Cow<'_, str> {
    static DOLLAR: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    DOLLAR
        .get_or_init(|| regex::Regex::new(r"\$(\d+)").expect("valid regex"))
        .replace_all(sql, "?$1")
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

const DIALECT: Dialect = Dialect {
    serial: "integer primary key autoincrement",
    int: "integer",
    has_table: "select 1 from sqlite_master where type = 'table' and name = $1",
    schema_lock: "",
    extra_parts: &[],
};

impl Db for SqliteStore {
    fn location(&self) -> String {
        format!("state file {}", self.path.display())
    }

    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    fn begin(&self, write: bool) -> Result<()> {
        // A write takes the file's write lock at once, so it waits (busy
        // timeout) instead of failing when another writer got there first.
        self.conn
            .execute_batch(if write { "begin immediate" } else { "begin" })?;
        Ok(())
    }

    fn commit(&self) -> Result<()> {
        self.conn.execute_batch("commit")?;
        Ok(())
    }

    fn rollback(&self) {
        let _ = self.conn.execute_batch("rollback");
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(&numbered(sql))?;
        Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn batch(&self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql)?;
        Ok(())
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.conn.prepare_cached(&numbered(sql))?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Text(v.to_string()),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Value::Text(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Names the file and the cause: SQLite's words and, when they explain
    /// it, the file system's.
    fn change_error(&self, e: anyhow::Error) -> anyhow::Error {
        if e.chain().any(|c| c.downcast_ref::<rusqlite::Error>().is_some()) {
            anyhow!(
                "cannot change state file {}: {}",
                self.path.display(),
                describe(&self.path, &e)
            )
        } else {
            e
        }
    }

    /// NixOps' own lock file, so that NixOps and we exclude each other.
    fn lock(&self, uuid: &str) -> Result<DeploymentLock> {
        Ok(DeploymentLock::new(lock::acquire(uuid)?))
    }

    fn unlock(&self, uuid: &str) -> Result<Unlock> {
        lock::unlock(uuid)
    }
}

/// Whether SQLite's write-ahead log beside `path` holds anything (a state
/// just being created may be in it alone).
fn has_journal(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).is_ok_and(|m| m.len() > 0)
}

/// The state holds salted hashes of the deployments' secrets (enough to
/// test guesses of weak ones): a new file is its owner's only (0600); an
/// existing one loses what others may do, with a note (its group keeps its
/// access: a team may share a state file through a group).
fn private(path: &Path, created: bool) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(mode) = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777) else {
        return;
    };
    let want = if created { 0o600 } else { mode & 0o770 };
    if want == mode {
        return;
    }
    if std::fs::set_permissions(path, std::fs::Permissions::from_mode(want)).is_ok() && !created {
        errln!(
            "note: state file {} could be read by other users (mode {mode:04o}); it is now {want:04o}, since it holds salted hashes of the deployments' secrets",
            path.display()
        );
    }
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(want));
    }
}

/// What went wrong, in words: SQLite's own message, and what the file
/// system says when that explains it (full, read-only).
fn describe(path: &Path, e: &anyhow::Error) -> String {
    match e.chain().find_map(|c| c.downcast_ref::<rusqlite::Error>()) {
        Some(se) => cause(path, se),
        None => format!("{e:#}"),
    }
}

fn cause(path: &Path, e: &rusqlite::Error) -> String {
    let (text, code) = match e {
        rusqlite::Error::SqliteFailure(f, msg) => (
            msg.clone()
                .unwrap_or_else(|| rusqlite::ffi::code_to_str(f.extended_code).to_owned()),
            Some(f.code),
        ),
        other => (other.to_string(), None),
    };
    use rusqlite::ErrorCode::*;
    let hint = match code {
        Some(DiskFull | SystemIoFailure | CannotOpen) if fs_full(path) => Some(format!(
            "no space left on the file system of {}",
            dir_of(path).display()
        )),
        Some(ReadOnly | CannotOpen | SystemIoFailure) if read_only_fs(path) => {
            Some(format!("{} is on a read-only file system", path.display()))
        }
        Some(ReadOnly) => Some(write_denied(path)),
        _ => None,
    };
    match hint {
        Some(h) => format!("{text} ({h})"),
        None => text,
    }
}

/// Why the file cannot be written, as the system says it.
fn write_denied(path: &Path) -> String {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Err(e) => e.to_string(),
        Ok(_) => "SQLite could open it only for reading".to_owned(),
    }
}

/// An error of a kind the store's callers decide on (e.g. a newer schema):
/// passed on as it is, not described as a trouble with the file.
fn is_kind(e: &anyhow::Error) -> bool {
    e.downcast_ref::<super::Error>().is_some()
}

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn statvfs(path: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir_of(path).as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then_some(st)
}

fn read_only_fs(path: &Path) -> bool {
    statvfs(path).is_some_and(|st| st.f_flag & libc::ST_RDONLY != 0)
}

fn fs_full(path: &Path) -> bool {
    // Root may use the blocks reserved for it.
    let root = unsafe { libc::geteuid() } == 0;
    statvfs(path).is_some_and(|st| if root { st.f_bfree == 0 } else { st.f_bavail == 0 })
}

/// A path as the path part of an SQLite URI.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '?' | '#' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Attrs, Store};

    /// The kinds callers decide on come out of the store as those kinds.
    #[test]
    fn error_kinds() {
        use crate::state::Error;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.nixops");
        let s = SqliteStore::open(&path, Access::Create).unwrap();
        s.import("u1", &Attrs::new(), &[], &[], false).unwrap();
        let again = s.import("u1", &Attrs::new(), &[], &[], false).unwrap_err();
        assert!(
            matches!(again, Error::Exists { ref uuid, .. } if uuid == "u1"),
            "{again:?}"
        );
        assert!(again.to_string().contains("s.nixops"), "{again}");
        assert!(matches!(s.load("nosuch"), Err(Error::NoSuchDeployment(_))));
        s.conn
            .execute("update SchemaVersion set version = 9", [])
            .unwrap();
        drop(s);
        let newer = crate::state::open(Some(path.as_os_str()), Access::Write)
            .err()
            .expect("a newer schema is refused");
        assert!(matches!(newer, Error::NewerSchema { known: 3, .. }), "{newer:?}");
        assert!(newer.to_string().contains("s.nixops"), "{newer}");
    }

    #[test]
    fn roundtrip_and_cascade() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.nixops"), Access::Create).unwrap();
        let mut attrs = Attrs::new();
        attrs.insert("name".into(), "x".into());
        s.create_deployment("u1", &attrs).unwrap();
        let ids = s
            .record_network("u1", &[], &[("m".into(), "none".into(), vec![])], &[])
            .unwrap();
        let id = ids["m"];
        let again = s
            .record_network("u1", &[], &[("m".into(), "none".into(), vec![])], &[])
            .unwrap();
        assert_eq!(again["m"], id);
        s.set_resource_attrs(id, &[("toplevel".into(), Some("/nix/store/x".into()))])
            .unwrap();
        let d = s.load("u1").unwrap();
        assert_eq!(d.resources["m"].toplevel(), Some("/nix/store/x"));
        s.delete_deployment("u1").unwrap();
        assert!(s.deployments().unwrap().is_empty());
        let n: i64 = s
            .conn
            .query_row("select count(*) from ResourceAttrs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.nixops");
        std::fs::write(&p, b"this is not sqlite at all, not even close..........").unwrap();
        let err = format!("{:#}", SqliteStore::open(&p, Access::Write).err().unwrap());
        assert!(err.contains("bad.nixops"), "{err}");
    }
}
