//! NixOps' SQLite state file, schema version 3.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::{Connection, MAIN_DB, OpenFlags, OptionalExtension, params};

use super::{AttrChange, Attrs, Deployment, Resource, Store};

const SCHEMA_VERSION: i64 = 3;

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
            Ok(_) => false,
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
            Err(_) if read_only_fs(path) => try_open("&immutable=1").map_err(|e| {
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

    fn check_version(&self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("select version from SchemaVersion", [], |r| r.get(0))
            .with_context(|| format!("state file {} is not a NixOps state file", self.path.display()))?;
        if version != SCHEMA_VERSION {
            bail!(
                "state file {} has schema version {version}, and this nixops reads only version {SCHEMA_VERSION} from a file it may not write",
                self.path.display()
            );
        }
        Ok(())
    }

    /// Runs `f` in one transaction; a failure leaves the file as it was,
    /// and its error names the file and the cause.
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction) -> Result<T>) -> Result<T> {
        let run = || -> Result<T> {
            let tx = self.conn.unchecked_transaction()?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        };
        run().map_err(|e| {
            if e.downcast_ref::<rusqlite::Error>().is_some() {
                anyhow!(
                    "cannot change state file {}: {}",
                    self.path.display(),
                    describe(&self.path, &e)
                )
            } else {
                e
            }
        })
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
        let tx = self.conn.unchecked_transaction()?;
        let has = |t: &str| -> Result<bool> {
            Ok(tx
                .query_row(
                    "select 1 from sqlite_master where type = 'table' and name = ?1",
                    [t],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        };
        let version: i64 = if has("SchemaVersion")? {
            tx.query_row("select version from SchemaVersion", [], |r| r.get(0))?
        } else if has("Deployments")? {
            1
        } else {
            0
        };
        match version {
            0 => {
                tx.execute_batch(
                    "create table if not exists SchemaVersion(version integer not null);
                     insert into SchemaVersion(version) values (3);
                     create table if not exists Deployments(uuid text primary key);
                     create table if not exists DeploymentAttrs(
                       deployment text not null, name text not null, value text not null,
                       primary key(deployment, name),
                       foreign key(deployment) references Deployments(uuid) on delete cascade);
                     create table if not exists Resources(
                       id integer primary key autoincrement, deployment text not null,
                       name text not null, type text not null,
                       foreign key(deployment) references Deployments(uuid) on delete cascade);
                     create table if not exists ResourceAttrs(
                       machine integer not null, name text not null, value text not null,
                       primary key(machine, name),
                       foreign key(machine) references Resources(id) on delete cascade);",
                )?;
            }
            1 | 2 => {
                errln!("updating database schema from version {version} to {SCHEMA_VERSION}...");
                if version == 1 {
                    tx.execute_batch(
                        "create table SchemaVersion(version integer not null);
                         insert into SchemaVersion(version) values (2);",
                    )?;
                }
                tx.execute_batch(
                    "alter table Machines rename to Resources;
                     alter table MachineAttrs rename to ResourceAttrs;
                     update SchemaVersion set version = 3;",
                )?;
            }
            SCHEMA_VERSION => {}
            v => bail!("schema version {v} is newer than this nixops understands ({SCHEMA_VERSION})"),
        }
        tx.commit()?;
        Ok(())
    }

    fn attrs(&self, sql: &str, key: &dyn rusqlite::ToSql) -> Result<Attrs> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn load_in(&self, uuid: &str) -> Result<Deployment> {
        let attrs = self.attrs(
            "select name, value from DeploymentAttrs where deployment = ?1",
            &uuid,
        )?;
        let mut stmt = self
            .conn
            .prepare_cached("select id, name, type from Resources where deployment = ?1")?;
        let rows: Vec<(i64, String, String)> = stmt
            .query_map([uuid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut resources = std::collections::BTreeMap::new();
        for (id, name, kind) in rows {
            let attrs = self.attrs("select name, value from ResourceAttrs where machine = ?1", &id)?;
            resources.insert(
                name.clone(),
                Resource {
                    id,
                    name,
                    kind,
                    attrs,
                },
            );
        }
        Ok(Deployment {
            uuid: uuid.to_owned(),
            attrs,
            resources,
        })
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

fn apply(
    tx: &rusqlite::Transaction,
    table: &str,
    key_col: &str,
    key: &dyn rusqlite::ToSql,
    changes: &[AttrChange],
) -> Result<()> {
    for (name, value) in changes {
        match value {
            Some(v) => tx.execute(
                &format!("insert or replace into {table}({key_col}, name, value) values (?1, ?2, ?3)"),
                params![key, name, v],
            )?,
            None => tx.execute(
                &format!("delete from {table} where {key_col} = ?1 and name = ?2"),
                params![key, name],
            )?,
        };
    }
    Ok(())
}

impl Store for SqliteStore {
    fn deployments(&self) -> Result<Vec<Deployment>> {
        let tx = self.conn.unchecked_transaction()?;
        let uuids: Vec<String> = {
            let mut stmt = self.conn.prepare_cached("select uuid from Deployments")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut all = uuids
            .iter()
            .map(|u| self.load_in(u))
            .collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        all.sort_by(|a, b| a.label().cmp(b.label()));
        Ok(all)
    }

    fn load(&self, uuid: &str) -> Result<Deployment> {
        let tx = self.conn.unchecked_transaction()?;
        let exists = tx
            .query_row("select 1 from Deployments where uuid = ?1", [uuid], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            bail!("deployment {uuid} no longer exists in {}", self.path.display());
        }
        let d = self.load_in(uuid)?;
        tx.commit()?;
        Ok(d)
    }

    fn create_deployment(&self, uuid: &str, attrs: &Attrs) -> Result<()> {
        self.write(|tx| {
            tx.execute("insert into Deployments(uuid) values (?1)", [uuid])?;
            let changes: Vec<AttrChange> = attrs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
            apply(tx, "DeploymentAttrs", "deployment", &uuid, &changes)?;
            Ok(())
        })
    }

    fn set_deployment_attrs(&self, uuid: &str, changes: &[AttrChange]) -> Result<()> {
        self.write(|tx| {
            apply(tx, "DeploymentAttrs", "deployment", &uuid, changes)?;
            Ok(())
        })
    }

    fn delete_deployment(&self, uuid: &str) -> Result<()> {
        self.write(|tx| {
            // Explicit deletes as well as the cascade: a file written without
            // foreign keys enabled must not keep orphans.
            tx.execute(
                "delete from ResourceAttrs where machine in (select id from Resources where deployment = ?1)",
                [uuid],
            )?;
            tx.execute("delete from Resources where deployment = ?1", [uuid])?;
            tx.execute("delete from DeploymentAttrs where deployment = ?1", [uuid])?;
            tx.execute("delete from Deployments where uuid = ?1", [uuid])?;
            Ok(())
        })
    }

    fn record_network(
        &self,
        uuid: &str,
        deployment: &[AttrChange],
        machines: &[(String, String, Vec<AttrChange>)],
        forget: &[i64],
    ) -> Result<BTreeMap<String, i64>> {
        self.write(|tx| {
            apply(tx, "DeploymentAttrs", "deployment", &uuid, deployment)?;
            let mut ids = BTreeMap::new();
            for (name, kind, changes) in machines {
                let existing: Option<i64> = tx
                    .query_row(
                        "select id from Resources where deployment = ?1 and name = ?2",
                        params![uuid, name],
                        |r| r.get(0),
                    )
                    .optional()?;
                let id = match existing {
                    Some(id) => id,
                    None => {
                        tx.execute(
                            "insert into Resources(deployment, name, type) values (?1, ?2, ?3)",
                            params![uuid, name, kind],
                        )?;
                        tx.last_insert_rowid()
                    }
                };
                apply(tx, "ResourceAttrs", "machine", &id, changes)?;
                ids.insert(name.clone(), id);
            }
            for id in forget {
                tx.execute("delete from ResourceAttrs where machine = ?1", [id])?;
                tx.execute("delete from Resources where id = ?1", [id])?;
            }
            Ok(ids)
        })
    }

    fn set_resource_attrs(&self, id: i64, changes: &[AttrChange]) -> Result<()> {
        self.write(|tx| {
            apply(tx, "ResourceAttrs", "machine", &id, changes)?;
            Ok(())
        })
    }

    fn import(&self, uuid: &str, attrs: &Attrs, resources: &[(String, String, Attrs)]) -> Result<()> {
        self.write(|tx| {
            let exists = tx
                .query_row("select 1 from Deployments where uuid = ?1", [uuid], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                bail!("state file already contains a deployment with UUID ‘{uuid}’");
            }
            tx.execute("insert into Deployments(uuid) values (?1)", [uuid])?;
            let changes: Vec<AttrChange> = attrs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
            apply(tx, "DeploymentAttrs", "deployment", &uuid, &changes)?;
            for (name, kind, rattrs) in resources {
                tx.execute(
                    "insert into Resources(deployment, name, type) values (?1, ?2, ?3)",
                    params![uuid, name, kind],
                )?;
                let id = tx.last_insert_rowid();
                let changes: Vec<AttrChange> =
                    rattrs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
                apply(tx, "ResourceAttrs", "machine", &id, &changes)?;
            }
            Ok(())
        })
    }

    fn clone_deployment(&self, from: &str, to: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("insert into Deployments(uuid) values (?1)", [to])?;
            tx.execute(
                "insert into DeploymentAttrs(deployment, name, value)
                 select ?1, name, value from DeploymentAttrs where deployment = ?2",
                params![to, from],
            )?;
            tx.execute(
                "delete from DeploymentAttrs where deployment = ?1 and name = 'configsPath'",
                [to],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
