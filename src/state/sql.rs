//! The state store written once over SQL: every [`Store`] method is one
//! transaction of plain SQL that SQLite and PostgreSQL both speak
//! (`$1` parameters, `on conflict … do update`, `returning`). A backend
//! ([`Db`]) only runs statements, names itself, explains its errors and
//! provides the deployment lock.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};

use super::history::HistoryEntry;
use super::{AttrChange, Attrs, Deployment, DeploymentLock, Resource, Store, Unlock};

/// NixOps' schema version; NixOps refuses a file of any other version, so
/// our own tables are versioned apart, in `ExtraSchemaVersion`.
pub const SCHEMA_VERSION: i64 = 3;

/// A value in a statement or a row: the state holds text and integers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
    Null,
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Text(s.clone())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<Option<&str>> for Value {
    fn from(s: Option<&str>) -> Self {
        s.map_or(Value::Null, Value::from)
    }
}

impl Value {
    pub fn text(&self) -> Result<String> {
        match self {
            Value::Text(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Null => bail!("unexpected NULL in the state"),
        }
    }
    pub fn int(&self) -> Result<i64> {
        match self {
            Value::Int(i) => Ok(*i),
            Value::Text(s) => s
                .parse()
                .map_err(|_| anyhow!("not an integer in the state: {s:?}")),
            Value::Null => bail!("unexpected NULL in the state"),
        }
    }
}

pub type Row = Vec<Value>;

/// What differs between the SQL databases.
pub struct Dialect {
    /// The type of an auto-numbered primary key column.
    pub serial: &'static str,
    /// The type of an integer column referring to one.
    pub int: &'static str,
    /// A query with one parameter, a table name, giving a row if it exists.
    pub has_table: &'static str,
    /// Statements that make a write transaction's start wait for other
    /// writers' schema changes (PostgreSQL: a transaction-scoped lock).
    pub schema_lock: &'static str,
    /// Our own schema parts beyond History that only this backend has.
    pub extra_parts: &'static [Part],
}

/// One versioned part of our own schema: migrations by version.
pub struct Part {
    pub name: &'static str,
    /// `(version, statements)`, oldest first; `{serial}` and `{int}` are
    /// replaced by the dialect's types.
    pub migrations: &'static [(i64, &'static str)],
}

/// The deploy history; NixOps ignores tables it does not know.
const HISTORY: Part = Part {
    name: "history",
    migrations: &[(
        1,
        "create table History(
           id {serial}, deployment text not null, action text not null,
           who text not null, started {int} not null, finished {int} not null,
           source text not null, result text not null, machines text not null,
           foreign key(deployment) references Deployments(uuid) on delete cascade);
         create index HistoryByDeployment on History(deployment, id);",
    )],
};

const NIXOPS_SCHEMA: &str = "create table SchemaVersion(version integer not null);
     insert into SchemaVersion(version) values (3);
     create table Deployments(uuid text primary key);
     create table DeploymentAttrs(
       deployment text not null, name text not null, value text not null,
       primary key(deployment, name),
       foreign key(deployment) references Deployments(uuid) on delete cascade);
     create table Resources(
       id {serial}, deployment text not null,
       name text not null, type text not null,
       foreign key(deployment) references Deployments(uuid) on delete cascade);
     create table ResourceAttrs(
       machine {int} not null, name text not null, value text not null,
       primary key(machine, name),
       foreign key(machine) references Resources(id) on delete cascade);";

/// A database holding the state.
pub trait Db: Send {
    /// How messages name it: "state file PATH", "PostgreSQL state URL".
    fn location(&self) -> String;
    fn dialect(&self) -> &'static Dialect;
    /// Starts a transaction; a write transaction waits for other writers.
    fn begin(&self, write: bool) -> Result<()>;
    fn commit(&self) -> Result<()>;
    fn rollback(&self);
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64>;
    fn batch(&self, sql: &str) -> Result<()>;
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Names the database and the cause of a failed change.
    fn change_error(&self, e: anyhow::Error) -> anyhow::Error;
    fn lock(&self, uuid: &str) -> Result<DeploymentLock>;
    fn unlock(&self, uuid: &str) -> Result<Unlock>;
}

/// Runs `f` in one transaction: committed if it succeeds, rolled back
/// otherwise.
fn transaction<D: Db + ?Sized, T>(db: &D, write: bool, f: impl FnOnce(&D) -> Result<T>) -> Result<T> {
    let run = || -> Result<T> {
        db.begin(write)?;
        match f(db) {
            Ok(v) => {
                db.commit()?;
                Ok(v)
            }
            Err(e) => {
                db.rollback();
                Err(e)
            }
        }
    };
    if write {
        run().map_err(|e| db.change_error(e))
    } else {
        run()
    }
}

fn has_table<D: Db + ?Sized>(db: &D, name: &str) -> Result<bool> {
    Ok(!db.query(db.dialect().has_table, &[name.into()])?.is_empty())
}

fn ddl(d: &Dialect, sql: &str) -> String {
    sql.replace("{serial}", d.serial).replace("{int}", d.int)
}

/// NixOps' schema version of the database: 0 when it has none yet, 1 for
/// NixOps' oldest files (no SchemaVersion table).
pub fn schema_version<D: Db + ?Sized>(db: &D) -> Result<i64> {
    if has_table(db, "SchemaVersion")? {
        match db.query("select version from SchemaVersion", &[])?.first() {
            Some(row) => row[0].int(),
            None => bail!("its SchemaVersion table is empty"),
        }
    } else if has_table(db, "Deployments")? {
        Ok(1)
    } else {
        Ok(0)
    }
}

fn parts<D: Db + ?Sized>(db: &D) -> impl Iterator<Item = &'static Part> {
    std::iter::once(&HISTORY).chain(db.dialect().extra_parts.iter())
}

fn part_version<D: Db + ?Sized>(db: &D, part: &str) -> Result<i64> {
    if !has_table(db, "ExtraSchemaVersion")? {
        return Ok(0);
    }
    match db
        .query(
            "select version from ExtraSchemaVersion where part = $1",
            &[part.into()],
        )?
        .first()
    {
        Some(row) => row[0].int(),
        None => Ok(0),
    }
}

/// Whether the schema is complete and current (nothing to create or
/// migrate); an error when any part is newer than this nixops knows.
pub fn check_schema<D: Db + ?Sized>(db: &D) -> Result<bool> {
    let v = schema_version(db)?;
    let newer = |what: String, known: i64| super::Error::NewerSchema {
        location: db.location(),
        what,
        known,
    };
    if v > SCHEMA_VERSION {
        return Err(newer(format!("its schema version {v} is"), SCHEMA_VERSION).into());
    }
    let mut current = v == SCHEMA_VERSION;
    for p in parts(db) {
        let have = part_version(db, p.name)?;
        let newest = p.migrations.last().map_or(0, |m| m.0);
        if have > newest {
            return Err(newer(format!("its ‘{}’ tables are of version {have},", p.name), newest).into());
        }
        current &= have == newest;
    }
    Ok(current)
}

/// Creates NixOps' schema and ours, or migrates them, in one transaction.
pub fn init<D: Db + ?Sized>(db: &D) -> Result<()> {
    db.begin(true)?;
    let r = (|| -> Result<()> {
        db.batch(db.dialect().schema_lock)?;
        let d = db.dialect();
        match schema_version(db)? {
            0 => db.batch(&ddl(d, NIXOPS_SCHEMA))?,
            v @ (1 | 2) => {
                errln!("updating database schema from version {v} to {SCHEMA_VERSION}...");
                if v == 1 {
                    db.batch(
                        "create table SchemaVersion(version integer not null);
                         insert into SchemaVersion(version) values (2);",
                    )?;
                }
                db.batch(
                    "alter table Machines rename to Resources;
                     alter table MachineAttrs rename to ResourceAttrs;
                     update SchemaVersion set version = 3;",
                )?;
            }
            SCHEMA_VERSION => {}
            v => bail!("its schema version {v} is newer than this nixops understands ({SCHEMA_VERSION})"),
        }
        db.batch(
            "create table if not exists ExtraSchemaVersion(part text primary key, version integer not null)",
        )?;
        for p in parts(db) {
            let have = part_version(db, p.name)?;
            for (version, sql) in p.migrations.iter().filter(|m| m.0 > have) {
                db.batch(&ddl(d, sql))?;
                db.execute(
                    "insert into ExtraSchemaVersion(part, version) values ($1, $2)
                     on conflict(part) do update set version = excluded.version",
                    &[p.name.into(), (*version).into()],
                )?;
            }
        }
        check_schema(db).map(|_| ())
    })();
    match r {
        Ok(()) => db.commit(),
        Err(e) => {
            db.rollback();
            Err(e)
        }
    }
}

fn apply<D: Db + ?Sized>(
    db: &D,
    table: &str,
    key_col: &str,
    key: Value,
    changes: &[AttrChange],
) -> Result<()> {
    for (name, value) in changes {
        match value {
            Some(v) => db.execute(
                &format!(
                    "insert into {table}({key_col}, name, value) values ($1, $2, $3)
                     on conflict({key_col}, name) do update set value = excluded.value"
                ),
                &[key.clone(), name.into(), v.into()],
            )?,
            None => db.execute(
                &format!("delete from {table} where {key_col} = $1 and name = $2"),
                &[key.clone(), name.into()],
            )?,
        };
    }
    Ok(())
}

fn set_all(attrs: &Attrs) -> Vec<AttrChange> {
    attrs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect()
}

/// Loads deployments (all, or the one given) with three queries, however
/// many there are: a remote database costs a round trip per query.
fn load_where<D: Db + ?Sized>(db: &D, uuid: Option<&str>) -> Result<Vec<Deployment>> {
    let (cond, params): (&str, Vec<Value>) = match uuid {
        Some(u) => ("where d.uuid = $1", vec![u.into()]),
        None => ("", vec![]),
    };
    let mut all: BTreeMap<String, Deployment> = BTreeMap::new();
    for row in db.query(&format!("select d.uuid from Deployments d {cond}"), &params)? {
        let uuid = row[0].text()?;
        all.insert(
            uuid.clone(),
            Deployment {
                uuid,
                attrs: Attrs::new(),
                resources: BTreeMap::new(),
            },
        );
    }
    let attrs = format!(
        "select a.deployment, a.name, a.value from DeploymentAttrs a join Deployments d on d.uuid = a.deployment {cond}"
    );
    for row in db.query(&attrs, &params)? {
        if let Some(d) = all.get_mut(&row[0].text()?) {
            d.attrs.insert(row[1].text()?, row[2].text()?);
        }
    }
    let resources = format!(
        "select r.deployment, r.id, r.name, r.type, a.name, a.value
         from Resources r join Deployments d on d.uuid = r.deployment
         left join ResourceAttrs a on a.machine = r.id {cond}"
    );
    for row in db.query(&resources, &params)? {
        let Some(d) = all.get_mut(&row[0].text()?) else {
            continue;
        };
        let name = row[2].text()?;
        let r = d.resources.entry(name.clone()).or_insert(Resource {
            id: row[1].int()?,
            name,
            kind: row[3].text()?,
            attrs: Attrs::new(),
        });
        if row[4] != Value::Null {
            r.attrs.insert(row[4].text()?, row[5].text()?);
        }
    }
    Ok(all.into_values().collect())
}

fn exists<D: Db + ?Sized>(db: &D, uuid: &str) -> Result<bool> {
    Ok(!db
        .query("select 1 from Deployments where uuid = $1", &[uuid.into()])?
        .is_empty())
}

fn delete_in<D: Db + ?Sized>(db: &D, uuid: &str) -> Result<()> {
    // Explicit deletes as well as the cascade: a file written without
    // foreign keys enabled must not keep orphans.
    db.execute(
        "delete from ResourceAttrs where machine in (select id from Resources where deployment = $1)",
        &[uuid.into()],
    )?;
    for sql in [
        "delete from Resources where deployment = $1",
        "delete from DeploymentAttrs where deployment = $1",
        "delete from History where deployment = $1",
        "delete from Deployments where uuid = $1",
    ] {
        db.execute(sql, &[uuid.into()])?;
    }
    Ok(())
}

fn insert_resource<D: Db + ?Sized>(db: &D, uuid: &str, name: &str, kind: &str) -> Result<i64> {
    let rows = db.query(
        "insert into Resources(deployment, name, type) values ($1, $2, $3) returning id",
        &[uuid.into(), name.into(), kind.into()],
    )?;
    rows.first()
        .map(|r| r[0].int())
        .unwrap_or_else(|| Err(anyhow!("no id for the new resource ‘{name}’")))
}

fn add_history_in<D: Db + ?Sized>(db: &D, uuid: &str, e: &HistoryEntry) -> Result<()> {
    db.execute(
        "insert into History(deployment, action, who, started, finished, source, result, machines)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            uuid.into(),
            e.action_text().into(),
            (&e.by).into(),
            (e.started as i64).into(),
            (e.finished as i64).into(),
            e.source_column()?.into(),
            (&e.result).into(),
            serde_json::to_string(&e.machines)?.into(),
        ],
    )?;
    Ok(())
}

/// The store's surface is typed; inside, the backends work with anyhow.
fn typed<T>(r: Result<T>) -> super::Result<T> {
    r.map_err(Into::into)
}

impl<D: Db> Store for D {
    fn location(&self) -> String {
        Db::location(self)
    }

    fn deployments(&self) -> super::Result<Vec<Deployment>> {
        let mut all = transaction(self, false, |db| load_where(db, None))?;
        all.sort_by(|a, b| a.label().cmp(b.label()));
        Ok(all)
    }

    fn load(&self, uuid: &str) -> super::Result<Deployment> {
        transaction(self, false, |db| load_where(db, Some(uuid)))?
            .pop()
            .ok_or_else(|| {
                super::Error::NoSuchDeployment(format!(
                    "deployment {uuid} no longer exists in {}",
                    Db::location(self)
                ))
            })
    }

    fn create_deployment(&self, uuid: &str, attrs: &Attrs) -> super::Result<()> {
        typed(transaction(self, true, |db| {
            db.execute("insert into Deployments(uuid) values ($1)", &[uuid.into()])?;
            apply(db, "DeploymentAttrs", "deployment", uuid.into(), &set_all(attrs))
        }))
    }

    fn set_deployment_attrs(&self, uuid: &str, changes: &[AttrChange]) -> super::Result<()> {
        typed(transaction(self, true, |db| {
            apply(db, "DeploymentAttrs", "deployment", uuid.into(), changes)
        }))
    }

    fn delete_deployment(&self, uuid: &str) -> super::Result<()> {
        typed(transaction(self, true, |db| delete_in(db, uuid)))
    }

    fn record_network(
        &self,
        uuid: &str,
        deployment: &[AttrChange],
        machines: &[(String, String, Vec<AttrChange>)],
        forget: &[i64],
    ) -> super::Result<BTreeMap<String, i64>> {
        typed(transaction(self, true, |db| {
            apply(db, "DeploymentAttrs", "deployment", uuid.into(), deployment)?;
            let mut ids = BTreeMap::new();
            for (name, kind, changes) in machines {
                let existing = db.query(
                    "select id from Resources where deployment = $1 and name = $2",
                    &[uuid.into(), name.into()],
                )?;
                let id = match existing.first() {
                    Some(row) => row[0].int()?,
                    None => insert_resource(db, uuid, name, kind)?,
                };
                apply(db, "ResourceAttrs", "machine", id.into(), changes)?;
                ids.insert(name.clone(), id);
            }
            for id in forget {
                db.execute("delete from ResourceAttrs where machine = $1", &[(*id).into()])?;
                db.execute("delete from Resources where id = $1", &[(*id).into()])?;
            }
            Ok(ids)
        }))
    }

    fn set_resource_attrs(&self, id: i64, changes: &[AttrChange]) -> super::Result<()> {
        typed(transaction(self, true, |db| {
            apply(db, "ResourceAttrs", "machine", id.into(), changes)
        }))
    }

    fn rename_resource(&self, uuid: &str, from: &str, to: &str) -> super::Result<()> {
        typed(transaction(self, true, |db| {
            let taken = db.query(
                "select id from Resources where deployment = $1 and name = $2",
                &[uuid.into(), to.into()],
            )?;
            if !taken.is_empty() {
                anyhow::bail!("resource with name ‘{to}’ already exists");
            }
            let n = db.execute(
                "update Resources set name = $1 where deployment = $2 and name = $3",
                &[to.into(), uuid.into(), from.into()],
            )?;
            if n == 0 {
                anyhow::bail!("resource ‘{from}’ not found");
            }
            Ok(())
        }))
    }

    fn import(
        &self,
        uuid: &str,
        attrs: &Attrs,
        resources: &[(String, String, Attrs)],
        history: &[HistoryEntry],
        replace: bool,
    ) -> super::Result<()> {
        typed(transaction(self, true, |db| {
            if exists(db, uuid)? {
                if !replace {
                    return Err(super::Error::Exists {
                        location: db.location(),
                        uuid: uuid.to_owned(),
                    }
                    .into());
                }
                delete_in(db, uuid)?;
            }
            db.execute("insert into Deployments(uuid) values ($1)", &[uuid.into()])?;
            apply(db, "DeploymentAttrs", "deployment", uuid.into(), &set_all(attrs))?;
            for (name, kind, rattrs) in resources {
                let id = insert_resource(db, uuid, name, kind)?;
                apply(db, "ResourceAttrs", "machine", id.into(), &set_all(rattrs))?;
            }
            // Oldest first, so ids keep the order.
            for e in history.iter().rev() {
                add_history_in(db, uuid, e)?;
            }
            Ok(())
        }))
    }

    fn clone_deployment(&self, from: &str, to: &str) -> super::Result<()> {
        typed(transaction(self, true, |db| {
            db.execute("insert into Deployments(uuid) values ($1)", &[to.into()])?;
            db.execute(
                "insert into DeploymentAttrs(deployment, name, value)
                 select $1, name, value from DeploymentAttrs where deployment = $2 and name <> 'configsPath'",
                &[to.into(), from.into()],
            )?;
            Ok(())
        }))
    }

    fn add_history(&self, uuid: &str, entry: &HistoryEntry) -> super::Result<()> {
        typed(transaction(self, true, |db| add_history_in(db, uuid, entry)))
    }

    fn history(&self, uuid: &str) -> super::Result<Vec<HistoryEntry>> {
        typed(transaction(self, false, |db| {
            // A NixOps file opened read-only may not have our tables yet.
            if !has_table(db, "History")? {
                return Ok(Vec::new());
            }
            let rows = db.query(
                "select action, who, started, finished, source, result, machines
                 from History where deployment = $1 order by id desc",
                &[uuid.into()],
            )?;
            rows.iter()
                .map(|r| {
                    HistoryEntry::from_columns(
                        &r[0].text()?,
                        r[1].text()?,
                        r[2].int()? as u64,
                        r[3].int()? as u64,
                        &r[4].text()?,
                        r[5].text()?,
                        &r[6].text()?,
                    )
                })
                .collect()
        }))
    }

    fn lock(&self, uuid: &str) -> super::Result<DeploymentLock> {
        typed(Db::lock(self, uuid))
    }

    fn unlock(&self, uuid: &str) -> super::Result<Unlock> {
        typed(Db::unlock(self, uuid))
    }
}
