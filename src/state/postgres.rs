//! The state in a PostgreSQL database, shared by a team: NixOps' tables
//! (the SQL is `sql.rs`'s, as for SQLite), the deployment lock as a
//! PostgreSQL advisory lock of the store's own session. Which server, and as
//! whom, is `libpq.rs`'s.
//!
//! The store is called from async code through a sync trait. The
//! connection's I/O runs on a thread of its own (with its own small tokio
//! runtime), and the store waits for each answer with
//! `futures::executor::block_on`, which works inside and outside a tokio
//! runtime (the sync `postgres` crate panics inside one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow, bail};
use futures::executor::block_on;
use sha2::Digest;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, Statement};

use super::libpq::Target;
use super::sql::{self, Db, Dialect, Part, Row, Value};
use super::{Access, DeploymentLock, Unlock};

/// An error from the server or the connection, in words (it names no
/// password: the server's messages never hold one).
#[derive(Debug)]
struct PgError(String);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgError {}

fn pg_error(e: &tokio_postgres::Error) -> anyhow::Error {
    anyhow::Error::new(PgError(cause(e)))
}

/// A PostgreSQL error in words: the server's message when it sent one.
pub(super) fn cause(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::TEXT || *ty == Type::VARCHAR => i.to_string().to_sql(ty, out),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn column(row: &tokio_postgres::Row, i: usize) -> std::result::Result<Value, tokio_postgres::Error> {
    let ty = row.columns()[i].type_();
    Ok(if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int)
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into()))
    } else if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into()))
    } else if *ty == Type::VOID {
        Value::Null
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into()))
    } else {
        row.try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text)
    })
}

/// Who holds a deployment's lock, for those waiting for it: written by the
/// holder right after it took the lock; read only together with the lock
/// itself (`pg_locks`), so a row left by a killed holder means nothing.
const LOCKS: Part = Part {
    name: "locks",
    migrations: &[(
        1,
        "create table LockHolders(
           deployment text primary key, backend_pid integer not null,
           who text not null, pid integer not null, since bigint not null)",
    )],
};

const DIALECT: Dialect = Dialect {
    serial: "bigserial primary key",
    int: "bigint",
    has_table: "select 1 from information_schema.tables
                where table_schema = current_schema() and table_name = lower($1)",
    // Two first uses at once: the second waits, then finds the tables.
    schema_lock: "select pg_advisory_xact_lock(7268530190224195631)",
    extra_parts: &[LOCKS],
};

pub struct PgStore {
    client: Arc<Client>,
    shown: String,
    /// Prepared statements by text: one round trip per statement, not two.
    statements: Mutex<HashMap<String, Statement>>,
}

impl PgStore {
    /// Connects and checks the schema. Only [`Access::Create`] creates the
    /// tables in a database that has none; a schema newer than this nixops
    /// knows is refused. Nothing is written when anything fails.
    pub fn open(target: &Target, access: Access) -> Result<PgStore> {
        let shown = target.shown.clone();
        if target.password_in_string {
            errln!(
                "warning: the password in {shown} can be read by other users from the process list or environment; use ~/.pgpass or $PGPASSWORD"
            );
        }
        let client = connect(target.config.clone())
            .map_err(|e| anyhow!("cannot connect to PostgreSQL state {shown}: {e:#}"))?;
        let store = PgStore {
            client: Arc::new(client),
            shown: shown.clone(),
            statements: Mutex::new(HashMap::new()),
        };
        // The server notices a vanished deployer (and frees its lock) in
        // about a minute, and a killed waiter at once.
        store
            .batch("set tcp_keepalives_idle = 30; set tcp_keepalives_interval = 10; set tcp_keepalives_count = 3")
            .map_err(|e| anyhow!("PostgreSQL state {shown}: {e:#}"))?;
        // PostgreSQL 14 and newer.
        let _ = store.batch("set client_connection_check_interval = 1000");
        // A newer schema says so itself, with the URL.
        let current =
            sql::check_schema(&store).map_err(|e| e.context(format!("PostgreSQL state {shown}")))?;
        if !current {
            if access != Access::Create && sql::schema_version(&store)? == 0 {
                bail!(
                    "PostgreSQL state {shown} holds no NixOps state yet; create a deployment with ‘nixops create’ or ‘nixops import’"
                );
            }
            if access != Access::Read {
                sql::init(&store).map_err(|e| anyhow!("cannot set up PostgreSQL state {shown}: {e:#}"))?;
            }
        }
        Ok(store)
    }

    fn statement(&self, sql: &str) -> Result<Statement> {
        let mut cache = self.statements.lock().expect("statement cache");
        if let Some(s) = cache.get(sql) {
            return Ok(s.clone());
        }
        let s = block_on(self.client.prepare(sql)).map_err(|e| pg_error(&e))?;
        cache.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Who holds deployment `uuid`'s lock: "user@host, pid N, since T".
    fn holder(&self, uuid: &str, key: i64) -> Result<Option<String>> {
        let rows = self.query(
            "select h.who, h.pid, h.since, l.pid from pg_locks l
             left join LockHolders h on h.backend_pid = l.pid and h.deployment = $1
             where l.locktype = 'advisory' and l.granted and l.objsubid = 1
               and l.classid::bigint = $2 and l.objid::bigint = $3",
            &[uuid.into(), (key >> 32).into(), (key & 0xffff_ffff).into()],
        )?;
        Ok(rows.first().map(|r| match (&r[0], &r[1], &r[2]) {
            (Value::Text(who), Value::Int(pid), Value::Int(since)) => format!(
                "held by {who}, pid {pid}, since {} UTC",
                super::history::format_utc(*since as u64)
            ),
            _ => format!("held by PostgreSQL session {}", r[3].text().unwrap_or_default()),
        }))
    }
}

/// Connects on a thread of its own, which then drives the connection until
/// the client is dropped.
fn connect(config: Config) -> Result<Client> {
    let (tx, rx) = std::sync::mpsc::channel::<Result<Client>>();
    std::thread::Builder::new()
        .name("postgres".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                match config.connect(tokio_postgres::NoTls).await {
                    Ok((client, connection)) => {
                        let _ = tx.send(Ok(client));
                        if let Err(e) = connection.await {
                            tracing::debug!("PostgreSQL connection ended: {e}");
                        }
                    }
                    Err(e) => {
                        let mut why = cause(&e);
                        if why.contains("password missing") {
                            why = "the server asks for a password, and there is none in ~/.pgpass ($PGPASSFILE) or $PGPASSWORD".into();
                        }
                        let _ = tx.send(Err(anyhow!("{why}")));
                    }
                }
            });
        })?;
    rx.recv().map_err(|_| anyhow!("the connection thread ended"))?
}

/// The advisory lock key of a deployment (non-negative, so that pg_locks'
/// two halves read back plainly).
fn lock_key(uuid: &str) -> i64 {
    let h = sha2::Sha256::digest(format!("nixops deployment lock {uuid}").as_bytes());
    i64::from_be_bytes(h[..8].try_into().expect("8 bytes")) & i64::MAX
}

/// A held advisory lock; dropping it releases it (and the process dying
/// closes the session, which releases it too).
struct PgLock {
    client: Arc<Client>,
    key: i64,
    uuid: String,
}

impl Drop for PgLock {
    fn drop(&mut self) {
        let _ = block_on(self.client.execute(
            "delete from LockHolders where deployment = $1 and backend_pid = pg_backend_pid()",
            &[&self.uuid],
        ));
        let _ = block_on(self.client.execute("select pg_advisory_unlock($1)", &[&self.key]));
    }
}

impl Db for PgStore {
    fn location(&self) -> String {
        format!("PostgreSQL state {}", self.shown)
    }

    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    fn begin(&self, write: bool) -> Result<()> {
        // Reads see one snapshot of every table.
        self.batch(if write {
            "begin"
        } else {
            "begin isolation level repeatable read read only"
        })
    }

    fn commit(&self) -> Result<()> {
        self.batch("commit")
    }

    fn rollback(&self) {
        let _ = self.batch("rollback");
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        block_on(self.client.execute(&stmt, &params)).map_err(|e| pg_error(&e))
    }

    fn batch(&self, sql: &str) -> Result<()> {
        block_on(self.client.batch_execute(sql)).map_err(|e| pg_error(&e))
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let rows = block_on(self.client.query(&stmt, &params)).map_err(|e| pg_error(&e))?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| column(r, i))
                    .collect::<std::result::Result<Row, _>>()
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| pg_error(&e))
    }

    fn change_error(&self, e: anyhow::Error) -> anyhow::Error {
        if e.chain().any(|c| c.downcast_ref::<PgError>().is_some()) {
            anyhow!("cannot change PostgreSQL state {}: {e}", self.shown)
        } else {
            e
        }
    }

    /// An advisory lock of this session: the server releases it when the
    /// process ends, however it ends.
    fn lock(&self, uuid: &str) -> Result<DeploymentLock> {
        let key = lock_key(uuid);
        let got = self.query("select pg_try_advisory_lock($1)", &[key.into()])?;
        if got.first().map(|r| &r[0]) != Some(&Value::Int(1)) {
            match self.holder(uuid, key)? {
                Some(h) => errln!("waiting for exclusive deployment lock... ({h})"),
                None => errln!("waiting for exclusive deployment lock..."),
            }
            self.execute("select pg_advisory_lock($1)", &[key.into()])?;
        }
        let lock = PgLock {
            client: self.client.clone(),
            key,
            uuid: uuid.to_owned(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.execute(
            "insert into LockHolders(deployment, backend_pid, who, pid, since)
             values ($1, pg_backend_pid(), $2, $3, $4)
             on conflict(deployment) do update set backend_pid = excluded.backend_pid,
               who = excluded.who, pid = excluded.pid, since = excluded.since",
            &[
                uuid.into(),
                super::history::who().into(),
                i64::from(std::process::id()).into(),
                now.into(),
            ],
        )
        .map_err(|e| {
            anyhow!(
                "cannot lock deployment {uuid} in PostgreSQL state {}: {e:#}",
                self.shown
            )
        })?;
        Ok(DeploymentLock::new(lock))
    }

    /// A lock of a process that died is gone already: there is never a
    /// stale one to clear.
    fn unlock(&self, uuid: &str) -> Result<Unlock> {
        let key = lock_key(uuid);
        let got = self.query("select pg_try_advisory_lock($1)", &[key.into()])?;
        if got.first().map(|r| &r[0]) == Some(&Value::Int(1)) {
            self.query("select pg_advisory_unlock($1)", &[key.into()])?;
            return Ok(Unlock::NotLocked);
        }
        Ok(Unlock::Held {
            by: self.holder(uuid, key)?,
        })
    }
}
