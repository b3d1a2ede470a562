//! NixOps' SQLite state file, schema version 3.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};

use super::{AttrChange, Attrs, Deployment, Resource, Store};

const SCHEMA_VERSION: i64 = 3;

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) a state file, upgrading NixOps schema 1 or 2.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let conn =
            Connection::open(path).with_context(|| format!("cannot open state file {}", path.display()))?;
        let store = SqliteStore {
            conn,
            path: path.to_owned(),
        };
        store
            .init()
            .with_context(|| format!("state file {} is not a usable NixOps state file", path.display()))?;
        Ok(store)
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
                eprintln!("updating database schema from version {version} to {SCHEMA_VERSION}...");
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
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("insert into Deployments(uuid) values (?1)", [uuid])?;
        let changes: Vec<AttrChange> = attrs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        apply(&tx, "DeploymentAttrs", "deployment", &uuid, &changes)?;
        tx.commit()?;
        Ok(())
    }

    fn set_deployment_attrs(&self, uuid: &str, changes: &[AttrChange]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        apply(&tx, "DeploymentAttrs", "deployment", &uuid, changes)?;
        tx.commit()?;
        Ok(())
    }

    fn delete_deployment(&self, uuid: &str) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        // Explicit deletes as well as the cascade: a file written without
        // foreign keys enabled must not keep orphans.
        tx.execute(
            "delete from ResourceAttrs where machine in (select id from Resources where deployment = ?1)",
            [uuid],
        )?;
        tx.execute("delete from Resources where deployment = ?1", [uuid])?;
        tx.execute("delete from DeploymentAttrs where deployment = ?1", [uuid])?;
        tx.execute("delete from Deployments where uuid = ?1", [uuid])?;
        tx.commit()?;
        Ok(())
    }

    fn record_network(
        &self,
        uuid: &str,
        deployment: &[AttrChange],
        machines: &[(String, String, Vec<AttrChange>)],
        forget: &[i64],
    ) -> Result<BTreeMap<String, i64>> {
        let tx = self.conn.unchecked_transaction()?;
        apply(&tx, "DeploymentAttrs", "deployment", &uuid, deployment)?;
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
            apply(&tx, "ResourceAttrs", "machine", &id, changes)?;
            ids.insert(name.clone(), id);
        }
        for id in forget {
            tx.execute("delete from ResourceAttrs where machine = ?1", [id])?;
            tx.execute("delete from Resources where id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(ids)
    }

    fn set_resource_attrs(&self, id: i64, changes: &[AttrChange]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        apply(&tx, "ResourceAttrs", "machine", &id, changes)?;
        tx.commit()?;
        Ok(())
    }

    fn import(&self, uuid: &str, attrs: &Attrs, resources: &[(String, String, Attrs)]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let exists = tx
            .query_row("select 1 from Deployments where uuid = ?1", [uuid], |_| Ok(()))
            .optional()?
            .is_some();
        if exists {
            bail!("state file already contains a deployment with UUID ‘{uuid}’");
        }
        tx.execute("insert into Deployments(uuid) values (?1)", [uuid])?;
        let changes: Vec<AttrChange> = attrs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        apply(&tx, "DeploymentAttrs", "deployment", &uuid, &changes)?;
        for (name, kind, rattrs) in resources {
            tx.execute(
                "insert into Resources(deployment, name, type) values (?1, ?2, ?3)",
                params![uuid, name, kind],
            )?;
            let id = tx.last_insert_rowid();
            let changes: Vec<AttrChange> = rattrs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
            apply(&tx, "ResourceAttrs", "machine", &id, &changes)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn clone_deployment(&self, from: &str, to: &str) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
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
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_cascade() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.nixops")).unwrap();
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
        let err = format!("{:#}", SqliteStore::open(&p).err().unwrap());
        assert!(err.contains("bad.nixops"), "{err}");
    }
}
