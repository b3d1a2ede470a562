//! deployment.keys: secrets delivered to machines out of band, never
//! through the Nix store.
//!
//! Where the bytes come from, on the deploying machine:
//! - `text`: a separate `nix-instantiate --eval --strict --json` of the
//!   network's `keyTexts` attribute, read from its stdout pipe (evaluation
//!   only, so nothing is written to the store);
//! - `keyFile`: the file, read at deploy time;
//! - `keyCommand`: the command's stdout (a non-zero exit fails the machine).
//!
//! Delivery: all of a machine's keys in one SSH session over its master
//! connection. The remote script, in ssh's argv, has names, sizes, owners
//! and modes; the secrets themselves go through ssh's stdin. On the machine
//! each key is written into a fresh file in a private temporary directory
//! inside its `destDir`, owned and moded as asked *before* any byte is
//! written, then renamed into place. Keys no longer declared are removed,
//! and `/run/keys/done` is touched.
//!
//! State keeps, per machine, the `keys` attribute: what was delivered where,
//! with a salted hash of the secret (never the secret).
//!
//! Secrets live in zeroizing buffers and are dropped as soon as the last
//! delivery that needs them is done.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::Ctx;
use crate::network::{KeyInfo, MachineInfo, NetworkInfo, NixFiles};
use crate::process::{self, Output, Sink};
use crate::ssh::{self, Target};
use crate::state::Store;
use crate::ui::Events;

/// Touched after every delivery; `nixops-keys.service` waits for it.
pub const DONE: &str = "/run/keys/done";
/// Scripts longer than this are split over several sessions (one argument
/// may be at most 128 KiB on Linux).
const MAX_SCRIPT: usize = 96 * 1024;
const NO_OWNER_MARK: &str = "nixops-key-no-owner";

/// Where a key's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Text,
    File(String),
    /// argv, and how long it may run.
    Command(Vec<String>, Duration),
}

/// One key of a machine, validated.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// The attribute name under deployment.keys.
    pub attr: String,
    /// File name in `dest_dir`.
    pub name: String,
    pub dest_dir: String,
    pub user: String,
    pub group: String,
    pub permissions: String,
    pub post_activation: bool,
    pub source: Source,
}

impl KeySpec {
    pub fn path(&self) -> String {
        join_path(&self.dest_dir, &self.name)
    }
}

fn join_path(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn bad_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// Checks a machine's keys and turns them into specs.
pub fn specs(machine: &str, keys: &BTreeMap<String, KeyInfo>) -> Result<Vec<KeySpec>> {
    let mut out: Vec<KeySpec> = Vec::new();
    let mut paths: BTreeMap<String, &str> = BTreeMap::new();
    for (attr, k) in keys {
        let what = format!("machine ‘{machine}’: deployment.keys.{attr}");
        if k.name.is_empty() || k.name == "." || k.name == ".." || k.name.contains('/') || bad_chars(&k.name)
        {
            bail!("{what}.name = {:?} is not a file name", k.name);
        }
        if !k.dest_dir.starts_with('/') || bad_chars(&k.dest_dir) {
            bail!("{what}.destDir = {:?} is not an absolute path", k.dest_dir);
        }
        for (opt, v) in [("user", &k.user), ("group", &k.group)] {
            if v.is_empty() || v.contains(':') || v.chars().any(char::is_whitespace) || bad_chars(v) {
                bail!("{what}.{opt} = {v:?} is not a user or group name");
            }
        }
        let mode_ok = !k.permissions.is_empty()
            && !k.permissions.starts_with('-')
            && k.permissions
                .chars()
                .all(|c| "01234567ugoarwxXst+-=,".contains(c));
        if !mode_ok {
            bail!(
                "{what}.permissions = {:?} is not a mode chmod understands",
                k.permissions
            );
        }
        let source = match k.source.as_str() {
            "text" => Source::Text,
            "keyFile" => Source::File(
                k.key_file
                    .clone()
                    .ok_or_else(|| anyhow!("{what}: keyFile missing"))?,
            ),
            "keyCommand" => {
                let argv = k.key_command.clone().unwrap_or_default();
                if argv.is_empty() {
                    bail!("{what}.keyCommand is an empty list");
                }
                let secs = u64::try_from(k.key_command_timeout)
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        anyhow!(
                            "{what}.keyCommandTimeout = {} is not a positive number of seconds",
                            k.key_command_timeout
                        )
                    })?;
                Source::Command(argv, Duration::from_secs(secs))
            }
            other => bail!("{what}: unknown source {other}"),
        };
        let spec = KeySpec {
            attr: attr.clone(),
            name: k.name.clone(),
            dest_dir: k.dest_dir.clone(),
            user: k.user.clone(),
            group: k.group.clone(),
            permissions: k.permissions.clone(),
            post_activation: k.upload_at == "post-activation",
            source,
        };
        let path = spec.path();
        if path == DONE {
            bail!("{what}: {DONE} is reserved for the deployer's own use");
        }
        if let Some(other) = paths.insert(path.clone(), attr) {
            bail!(
                "machine ‘{machine}’: deployment.keys.{other} and deployment.keys.{attr} are both written to {path}"
            );
        }
        out.push(spec);
    }
    Ok(out)
}

/// Checks every machine's keys before anything is touched; prints the
/// deprecation warning for keys given as plain strings.
pub fn check(info: &NetworkInfo) -> Result<()> {
    for (name, m) in &info.machines {
        let Some(keys) = &m.keys else { continue };
        specs(name, keys)?;
        for (attr, k) in keys {
            if k.deprecated_string {
                errln!(
                    "warning: machine ‘{name}’: deployment.keys.{attr} is a plain string, which is deprecated; write deployment.keys.{attr}.text = \"...\" instead"
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- secrets

/// A secret's bytes, zeroed when dropped. Its Debug shows only the length.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Reads everything from `r` into a secret. The buffer grows by copying into
/// a bigger zeroizing one, so no stale copy is left in freed memory.
async fn read_secret<R: AsyncRead + Unpin>(mut r: R) -> std::io::Result<Secret> {
    let mut buf = Zeroizing::new(Vec::with_capacity(4096));
    let mut chunk = Zeroizing::new([0u8; 8192]);
    loop {
        let n = r.read(&mut chunk[..]).await?;
        if n == 0 {
            break;
        }
        if buf.len() + n > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((buf.capacity() * 2).max(buf.len() + n)));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Secret(buf))
}

/// Decodes one JSON string literal (quotes included) into a secret, without
/// intermediate copies. Errors never include the text.
fn json_string(raw: &str) -> Result<Secret> {
    let b = raw.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        bail!("not a string");
    }
    let body = &b[1..b.len() - 1];
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut i = 0;
    let hex4 = |i: usize| -> Result<u32> {
        let h = body
            .get(i..i + 4)
            .ok_or_else(|| anyhow!("truncated \\u escape"))?;
        let s = std::str::from_utf8(h).map_err(|_| anyhow!("bad \\u escape"))?;
        u32::from_str_radix(s, 16).map_err(|_| anyhow!("bad \\u escape"))
    };
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1).ok_or_else(|| anyhow!("truncated escape"))?;
        i += 2;
        let simple = match e {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => bail!("bad escape"),
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let mut cp = hex4(i)?;
        i += 4;
        if (0xD800..0xDC00).contains(&cp) {
            if body.get(i..i + 2) != Some(b"\\u") {
                bail!("lone surrogate");
            }
            let lo = hex4(i + 2)?;
            if !(0xDC00..0xE000).contains(&lo) {
                bail!("bad surrogate pair");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        }
        let ch = char::from_u32(cp).ok_or_else(|| anyhow!("bad code point"))?;
        let mut tmp = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    }
    Ok(Secret(out))
}

/// Machine → key attribute → text.
type Texts = BTreeMap<String, BTreeMap<String, Secret>>;

/// Evaluates the `text` of the given machines' keys: one nix-instantiate for
/// all of them, whose stdout is read straight into secret buffers.
async fn eval_texts(ctx: &Ctx, machines: &[String]) -> Result<Texts> {
    let network = super::network_of(&ctx.deployment)?;
    let files = NixFiles::write()?;
    let mut cmd = network.key_texts_command(&files, &ctx.nix, machines).await?;
    tracing::debug!("running: {}", process::describe(&cmd));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("cannot run nix")?;
    let so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let (json, err) = tokio::join!(read_secret(so), async {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b).await;
        b
    });
    let status = child.wait().await.context("waiting for nix-instantiate")?;
    let json = json.context("reading the keys' texts")?;
    if !status.success() {
        bail!(
            "evaluating the keys' texts failed:\n{}",
            String::from_utf8_lossy(&err).trim_end()
        );
    }
    // The leaves stay raw (borrowed from `json`) and are decoded straight
    // into secrets; parse errors are not shown, as they could quote a text.
    let raw: BTreeMap<String, BTreeMap<String, &RawValue>> = serde_json::from_slice(json.bytes())
        .map_err(|_| anyhow!("cannot parse the keys' texts (unexpected output of nix-instantiate)"))?;
    let mut texts = Texts::new();
    for (m, keys) in raw {
        let mut mine = BTreeMap::new();
        for (k, v) in keys {
            let s =
                json_string(v.get()).with_context(|| format!("machine ‘{m}’: deployment.keys.{k}.text"))?;
            mine.insert(k, s);
        }
        texts.insert(m, mine);
    }
    Ok(texts)
}

/// Runs a keyCommand; its stdout is the secret. It runs in a process group
/// of its own, so that when it takes longer than `timeout` every process it
/// started (forked ones too) is ended with it; what it printed by then is
/// dropped unread.
async fn run_key_command(argv: &[String], timeout: Duration) -> Result<Secret> {
    let mut cmd = process::command(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    // Out of our process group, a Ctrl-C no longer reaches it: it ends
    // when we do instead (process::command).
    tracing::debug!("running: {}", process::describe(&cmd));
    let mut child = cmd.spawn().with_context(|| format!("cannot run {}", argv[0]))?;
    let so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let output = async {
        tokio::join!(read_secret(so), async {
            let mut b = Vec::new();
            let _ = se.read_to_end(&mut b).await;
            b
        })
    };
    let Ok((secret, err)) = tokio::time::timeout(timeout, output).await else {
        // Not yet reaped, so its pid still names its group.
        if let Some(pgid) = child.id() {
            unsafe { libc::killpg(pgid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = child.wait().await;
        bail!(
            "it did not finish within {} s, so it was ended with every process it started (keyCommandTimeout sets how long it may take)",
            timeout.as_secs()
        );
    };
    let status = child.wait().await?;
    let secret = secret?;
    if !status.success() {
        drop(secret);
        let how = status.code().map_or_else(
            || "was killed by a signal".to_owned(),
            |c| format!("exited with code {c}"),
        );
        let err = String::from_utf8_lossy(&err);
        bail!("{how}: {}", err.trim_end());
    }
    Ok(secret)
}

// ------------------------------------------------------------------ state

/// What state records of a delivered key: where it went, and a salted hash.
#[derive(Debug, Clone)]
struct Delivered {
    name: Option<String>,
    dest_dir: Option<String>,
    user: Option<String>,
    group: Option<String>,
    permissions: Option<String>,
    upload_at: Option<String>,
    hash: Option<String>,
}

impl Delivered {
    fn path(&self, attr: &str) -> String {
        join_path(
            self.dest_dir.as_deref().unwrap_or("/run/keys"),
            self.name.as_deref().unwrap_or(attr),
        )
    }

    fn of(spec: &KeySpec, hash: String) -> Self {
        Delivered {
            name: Some(spec.name.clone()),
            dest_dir: Some(spec.dest_dir.clone()),
            user: Some(spec.user.clone()),
            group: Some(spec.group.clone()),
            permissions: Some(spec.permissions.clone()),
            upload_at: Some(
                if spec.post_activation {
                    "post-activation"
                } else {
                    "pre-activation"
                }
                .into(),
            ),
            hash: Some(hash),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        for (k, v) in [
            ("name", &self.name),
            ("destDir", &self.dest_dir),
            ("user", &self.user),
            ("group", &self.group),
            ("permissions", &self.permissions),
            ("uploadAt", &self.upload_at),
            ("hash", &self.hash),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), v.clone().into());
            }
        }
        o.into()
    }
}

/// Reads the `keys` attribute, leniently: NixOps' own entries (which held
/// the key text) give their name and destDir, the rest is ignored.
fn parse_delivered(json: Option<&str>) -> BTreeMap<String, Delivered> {
    let Some(json) = json else { return BTreeMap::new() };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(json) else {
        return BTreeMap::new();
    };
    map.into_iter()
        .map(|(attr, v)| {
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            let d = Delivered {
                name: s("name"),
                dest_dir: s("destDir"),
                user: s("user"),
                group: s("group"),
                permissions: s("permissions"),
                upload_at: s("uploadAt"),
                hash: s("hash"),
            };
            (attr, d)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn digest(salt: &[u8], secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret);
    hex(&h.finalize())
}

/// "sha256:<salt>:<digest of salt ‖ secret>": tells whether a key changed
/// without keeping anything that can be looked up in a table.
fn new_hash(secret: &Secret) -> String {
    let salt = uuid::Uuid::new_v4();
    format!(
        "sha256:{}:{}",
        hex(salt.as_bytes()),
        digest(salt.as_bytes(), secret.bytes())
    )
}

fn hash_matches(stored: &str, secret: &Secret) -> bool {
    let mut parts = stored.split(':');
    let (Some("sha256"), Some(salt), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Some(salt) = (0..salt.len() / 2)
        .map(|i| u8::from_str_radix(salt.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    digest(&salt, secret.bytes()) == d
}

// --------------------------------------------------------------- machines

/// When a delivery happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before activation: keys with uploadAt = "pre-activation".
    Pre,
    /// After activation: "post-activation" keys, and pre-activation keys
    /// whose owner did not exist yet before activation.
    Post,
    /// All keys (send-keys, after a reboot).
    All,
}

/// One machine's keys for a run: what is declared, what state says was
/// delivered, and (once gathered) the secrets.
pub struct MachineKeys {
    machine: String,
    specs: Vec<KeySpec>,
    delivered: BTreeMap<String, Delivered>,
    texts: BTreeMap<String, Secret>,
    secrets: BTreeMap<String, Secret>,
    /// Sent before activation while their owner did not exist yet.
    owner_pending: BTreeSet<String>,
}

impl MachineKeys {
    /// `delivered` is the machine's `keys` state attribute.
    pub fn new(machine: &str, keys: &BTreeMap<String, KeyInfo>, delivered: Option<&str>) -> Result<Self> {
        Ok(MachineKeys {
            machine: machine.to_owned(),
            specs: specs(machine, keys)?,
            delivered: parse_delivered(delivered),
            texts: BTreeMap::new(),
            secrets: BTreeMap::new(),
            owner_pending: BTreeSet::new(),
        })
    }

    /// Nothing declared and nothing delivered before: no work at all.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty() && self.delivered.is_empty()
    }

    fn needs_texts(&self) -> bool {
        self.specs.iter().any(|s| s.source == Source::Text)
    }

    /// Whether anything is left to send after activation.
    pub fn has_post(&self) -> bool {
        !self.owner_pending.is_empty() || self.specs.iter().any(|s| s.post_activation)
    }

    /// Reads key files and runs key commands (texts come from
    /// [`eval_texts`]); errors name the machine and the key.
    pub async fn gather(&mut self) -> Result<()> {
        for spec in &self.specs {
            if self.secrets.contains_key(&spec.attr) {
                continue;
            }
            let what = format!("machine ‘{}’: deployment.keys.{}", self.machine, spec.attr);
            let secret = match &spec.source {
                Source::Text => self
                    .texts
                    .remove(&spec.attr)
                    .ok_or_else(|| anyhow!("{what}: its text was not evaluated"))?,
                Source::File(path) => {
                    let f = tokio::fs::File::open(path)
                        .await
                        .with_context(|| format!("{what}: cannot read keyFile ‘{path}’"))?;
                    read_secret(f)
                        .await
                        .with_context(|| format!("{what}: cannot read keyFile ‘{path}’"))?
                }
                Source::Command(argv, timeout) => run_key_command(argv, *timeout)
                    .await
                    .with_context(|| format!("{what}: keyCommand ‘{}’ failed", argv.join(" ")))?,
            };
            self.secrets.insert(spec.attr.clone(), secret);
        }
        Ok(())
    }
}

/// What a delivery needs to know about the machine.
pub struct KeyTarget<'a> {
    pub name: &'a str,
    pub resource_id: i64,
    pub target: &'a Target,
}

impl super::Machine {
    pub fn key_target(&self) -> KeyTarget<'_> {
        KeyTarget {
            name: &self.name,
            resource_id: self.resource_id,
            // Every machine of a network is reached over SSH.
            target: self.host.ssh_target().expect("keys go over SSH"),
        }
    }
}

/// Deploy: the keys of the machines about to be activated, with all texts
/// evaluated at once. Machines with no keys (declared or delivered) and
/// machines whose keys are not known (options read from state) get no entry.
pub async fn prepare(
    ctx: &Ctx,
    machines: Vec<(String, MachineInfo)>,
) -> BTreeMap<String, Result<MachineKeys>> {
    let mut out = BTreeMap::new();
    for (name, info) in machines {
        let Some(keys) = &info.keys else { continue };
        let delivered = ctx.deployment.resources.get(&name).and_then(|r| r.get("keys"));
        match MachineKeys::new(&name, keys, delivered) {
            Ok(mk) if mk.is_empty() => {}
            r => {
                out.insert(name, r);
            }
        }
    }
    add_texts(ctx, &mut out).await;
    out
}

/// Evaluates the texts of the machines that need them and hands each its own.
async fn add_texts(ctx: &Ctx, machines: &mut BTreeMap<String, Result<MachineKeys>>) {
    let need: Vec<String> = machines
        .iter()
        .filter(|(_, r)| r.as_ref().is_ok_and(|mk| mk.needs_texts()))
        .map(|(n, _)| n.clone())
        .collect();
    if need.is_empty() {
        return;
    }
    match eval_texts(ctx, &need).await {
        Ok(mut texts) => {
            for name in &need {
                if let Some(Ok(mk)) = machines.get_mut(name) {
                    mk.texts = texts.remove(name).unwrap_or_default();
                }
            }
        }
        Err(e) => {
            let msg = format!("{e:#}");
            for name in &need {
                machines.insert(name.clone(), Err(anyhow!("{msg}")));
            }
        }
    }
}

/// Sends every key (both phases) of the given machines, as the network now
/// declares them: for `send-keys`, and after a reboot. One evaluation of the
/// network for all machines, then one SSH session per machine, in parallel.
/// Per machine: how many keys it has now.
///
/// With `after_reboot`, only machines that state says got keys before (and
/// that are still in the network) are considered, and when there are none
/// nothing is evaluated at all. Call it once for all rebooted machines
/// rather than once per machine.
pub async fn send(
    ctx: &Ctx,
    machines: &[KeyTarget<'_>],
    events: &Events,
    after_reboot: bool,
) -> BTreeMap<String, Result<usize>> {
    let mut results: BTreeMap<String, Result<usize>> = BTreeMap::new();
    // Fresh from state: an earlier stage of this run may have changed it.
    let fresh = match ctx.store.lock().expect("state lock").load(&ctx.deployment.uuid) {
        Ok(d) => d,
        Err(e) => {
            let msg = format!("{e:#}");
            return machines
                .iter()
                .map(|m| (m.name.to_owned(), Err(anyhow!("{msg}"))))
                .collect();
        }
    };
    let delivered = |name: &str| {
        fresh
            .resources
            .get(name)
            .and_then(|r| r.get("keys"))
            .map(str::to_owned)
    };
    let wanted: Vec<&KeyTarget> = machines
        .iter()
        .filter(|m| {
            !after_reboot
                || parse_delivered(delivered(m.name).as_deref())
                    .values()
                    .next()
                    .is_some()
        })
        .collect();
    for m in machines {
        results.insert(m.name.to_owned(), Ok(0));
    }
    if wanted.is_empty() {
        return results;
    }

    let info = match evaluate(ctx).await {
        Ok(i) => i,
        Err(e) => {
            let msg = format!("{e:#}");
            for m in &wanted {
                results.insert(m.name.to_owned(), Err(anyhow!("{msg}")));
            }
            return results;
        }
    };
    let mut keys: BTreeMap<String, Result<MachineKeys>> = BTreeMap::new();
    for m in &wanted {
        let r = match info.machines.get(m.name) {
            None if after_reboot => continue,
            None => Err(anyhow!("machine ‘{}’ is no longer in the network", m.name)),
            Some(i) => {
                let declared = i.keys.clone().unwrap_or_default();
                MachineKeys::new(m.name, &declared, delivered(m.name).as_deref())
            }
        };
        keys.insert(m.name.to_owned(), r);
    }
    add_texts(ctx, &mut keys).await;

    let jobs = wanted.iter().filter_map(|m| {
        let mk = keys.remove(m.name)?;
        Some(async move {
            let r = async {
                let mut mk = mk?;
                if mk.is_empty() {
                    return Ok(0);
                }
                events.stage(m.name, "reading keys");
                mk.gather().await?;
                deliver(ctx, m, &mut mk, Phase::All, events).await?;
                Ok(mk.specs.len())
            }
            .await;
            (m.name.to_owned(), r)
        })
    });
    for (name, r) in futures::future::join_all(jobs).await {
        results.insert(name, r);
    }
    results
}

/// The network's deployment info, without instantiating any toplevel.
async fn evaluate(ctx: &Ctx) -> Result<NetworkInfo> {
    let network = super::network_of(&ctx.deployment)?;
    let files = NixFiles::write()?;
    let none: &[crate::network::Selector] = &[];
    let info = network
        .evaluate(&files, &ctx.nix, Some(none), &[], false, Sink::quiet())
        .await?;
    check(&info)?;
    Ok(info)
}

/// Delivers the keys of `phase` to one machine in one SSH session (more only
/// past several hundred keys, see [`MAX_SCRIPT`]), removes keys no longer declared, touches
/// /run/keys/done, and records what was delivered in state. The secrets
/// must have been gathered.
pub async fn deliver(
    ctx: &Ctx,
    m: &KeyTarget<'_>,
    mk: &mut MachineKeys,
    phase: Phase,
    events: &Events,
) -> Result<()> {
    let writes: Vec<&KeySpec> = mk
        .specs
        .iter()
        .filter(|s| match phase {
            Phase::Pre => !s.post_activation,
            Phase::Post => s.post_activation || mk.owner_pending.contains(&s.attr),
            Phase::All => true,
        })
        .collect();
    let declared: BTreeMap<&str, String> = mk.specs.iter().map(|s| (s.attr.as_str(), s.path())).collect();
    let declared_paths: BTreeSet<&String> = declared.values().collect();
    let remove: Vec<String> = if phase == Phase::Post {
        Vec::new()
    } else {
        mk.delivered
            .iter()
            .map(|(a, d)| d.path(a))
            .filter(|p| !declared_paths.contains(p) && p != DONE)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let touch_done = !mk.specs.is_empty();
    if writes.is_empty() && remove.is_empty() && (phase == Phase::Post || !touch_done) {
        return Ok(());
    }
    events.stage(m.name, "sending keys");

    let mut sized = Vec::new();
    for s in &writes {
        let secret = mk
            .secrets
            .get(&s.attr)
            .ok_or_else(|| anyhow!("deployment.keys.{}: secret not read", s.attr))?;
        sized.push((*s, secret));
    }
    let batches = batches(&sized);
    let mut no_owner: BTreeSet<String> = BTreeSet::new();
    for (bi, batch) in batches.iter().enumerate() {
        let last = bi + 1 == batches.len();
        let plan: Vec<(&KeySpec, usize)> = batch.iter().map(|(s, x)| (*s, x.bytes().len())).collect();
        let script = script(&plan, if last { &remove } else { &[] }, last && touch_done);
        let secrets: Vec<&Secret> = batch.iter().map(|(_, x)| *x).collect();
        let out = run_script(m.target, &script, &secrets, events, m.name).await?;
        if !out.success() {
            return Err(m.target.failure("sending keys", &out).into());
        }
        for line in out.stdout.lines() {
            if let Some(rest) = line.strip_prefix(NO_OWNER_MARK) {
                for i in rest.split_whitespace().filter_map(|i| i.parse::<usize>().ok()) {
                    if let Some((s, _)) = batch.get(i) {
                        no_owner.insert(s.attr.clone());
                    }
                }
            }
        }
    }

    // What the machine now has.
    mk.delivered
        .retain(|a, d| declared.get(a.as_str()) == Some(&d.path(a)));
    let mut changed = 0;
    for (s, secret) in &sized {
        let hash = match mk.delivered.get(&s.attr).and_then(|d| d.hash.clone()) {
            Some(h) if hash_matches(&h, secret) => h,
            _ => {
                changed += 1;
                new_hash(secret)
            }
        };
        mk.delivered.insert(s.attr.clone(), Delivered::of(s, hash));
    }
    let json = (!mk.delivered.is_empty()).then(|| {
        let o: serde_json::Map<String, serde_json::Value> = mk
            .delivered
            .iter()
            .map(|(a, d)| (a.clone(), d.to_json()))
            .collect();
        serde_json::Value::Object(o).to_string()
    });
    ctx.store
        .lock()
        .expect("state lock")
        .set_resource_attrs(m.resource_id, &[("keys".into(), json)])?;

    if !writes.is_empty() {
        events.log(
            Some(m.name),
            format!(
                "sent {} key{} ({changed} new or changed)",
                writes.len(),
                if writes.len() == 1 { "" } else { "s" }
            ),
        );
    }
    for p in &remove {
        events.log(Some(m.name), format!("removed key file {p} (no longer declared)"));
    }
    for s in &writes {
        if !no_owner.contains(&s.attr) {
            mk.owner_pending.remove(&s.attr);
            continue;
        }
        if phase == Phase::Pre {
            mk.owner_pending.insert(s.attr.clone());
            events.log(
                Some(m.name),
                format!(
                    "key ‘{}’: user ‘{}’ or group ‘{}’ does not exist yet; it is owned by root until it is sent again after activation",
                    s.attr, s.user, s.group
                ),
            );
        } else {
            mk.owner_pending.remove(&s.attr);
            events.log(
                Some(m.name),
                format!(
                    "warning: key ‘{}’: user ‘{}’ or group ‘{}’ does not exist on the machine; the key file is owned by root",
                    s.attr, s.user, s.group
                ),
            );
        }
    }
    Ok(())
}

/// Splits the keys so that each session's script stays well under the
/// argument size limit; always at least one (maybe empty) batch.
fn batches<'a>(keys: &[(&'a KeySpec, &'a Secret)]) -> Vec<Vec<(&'a KeySpec, &'a Secret)>> {
    let mut out = vec![Vec::new()];
    let mut size = 0;
    for k in keys {
        let cost = 160 + 3 * k.0.path().len() + k.0.user.len() + k.0.group.len();
        if size + cost > MAX_SCRIPT && !out.last().expect("non-empty").is_empty() {
            out.push(Vec::new());
            size = 0;
        }
        size += cost;
        out.last_mut().expect("non-empty").push(*k);
    }
    out
}

/// The remote script for one session. It reads exactly the keys' sizes from
/// stdin, in order.
fn script(keys: &[(&KeySpec, usize)], remove: &[String], touch_done: bool) -> String {
    let q = |s: &str| ssh::quote(s);
    let mut s = String::from("set -e\numask 022\n");
    // A missing destDir is created 0750, root:keys where that group exists.
    s += "mkd() { [ -d \"$1\" ] && return 0; mkdir -p -- \"$1\"; chmod 0750 -- \"$1\"; chown root:keys -- \"$1\" 2>/dev/null || true; }\n";
    let mut dirs: Vec<&str> = Vec::new();
    for (k, _) in keys {
        if !dirs.contains(&k.dest_dir.as_str()) {
            dirs.push(&k.dest_dir);
        }
    }
    if touch_done {
        s += "mkd /run/keys\n";
    }
    let dir_of = |k: &KeySpec| dirs.iter().position(|d| *d == k.dest_dir).expect("listed");
    if !keys.is_empty() {
        let cleanup: Vec<String> = (0..dirs.len()).map(|j| format!("${{t{j}:+\"$t{j}\"}}")).collect();
        s += &format!("trap 'rm -rf -- {}' EXIT\n", cleanup.join(" "));
    }
    for (j, d) in dirs.iter().enumerate() {
        s += &format!("mkd {}\n", q(d));
        // Private (0700, root) temporary directory beside the keys, so the
        // renames below are atomic.
        s += &format!(
            "t{j}=$(mktemp -d {})\n",
            q(&format!("{}/.nixops-keys.XXXXXX", d.trim_end_matches('/')))
        );
    }
    // A key's file in its temporary directory has its final name, so one
    // `mv` per directory moves them all into place.
    let tmp = |_: usize, k: &KeySpec| format!("\"$t{}\"/{}", dir_of(k), q(&k.name));
    if !keys.is_empty() {
        s += "umask 077\n";
        // Empty files first; owner and mode are set before any byte is written.
        for (i, (k, _)) in keys.iter().enumerate() {
            s += &format!(": > {}\n", tmp(i, k));
        }
        let mut owners: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        let mut modes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (k, _)) in keys.iter().enumerate() {
            if (k.user.as_str(), k.group.as_str()) != ("root", "root") {
                owners.entry((&k.user, &k.group)).or_default().push(i);
            }
            modes.entry(&k.permissions).or_default().push(i);
        }
        let files = |ix: &[usize]| {
            ix.iter()
                .map(|&i| tmp(i, keys[i].0))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for ((u, g), ix) in &owners {
            let idx: Vec<String> = ix.iter().map(|i| i.to_string()).collect();
            s += &format!(
                "if chown -- {} {} 2>/dev/null; then :; else echo {NO_OWNER_MARK} {}; fi\n",
                q(&format!("{u}:{g}")),
                files(ix),
                idx.join(" ")
            );
        }
        for (mode, ix) in &modes {
            s += &format!("chmod -- {} {}\n", q(mode), files(ix));
        }
        // The bytes: exactly `size` from stdin each (dd with fullblock never
        // reads past them).
        let mut total = 0;
        for (i, (k, size)) in keys.iter().enumerate() {
            total += size;
            if *size > 0 {
                s += &format!(
                    "dd bs={size} count=1 iflag=fullblock status=none of={}\n",
                    tmp(i, k)
                );
            }
        }
        let all: Vec<usize> = (0..keys.len()).collect();
        s += &format!(
            "n=$(cat -- {} | wc -c); [ $n -eq {total} ] || {{ echo 'error: the keys arrived incomplete' >&2; exit 1; }}\n",
            files(&all)
        );
        for (j, d) in dirs.iter().enumerate() {
            let ix: Vec<usize> = (0..keys.len()).filter(|&i| dir_of(keys[i].0) == j).collect();
            s += &format!("mv -f -- {} {}/\n", files(&ix), q(d.trim_end_matches('/')));
        }
    }
    if !remove.is_empty() {
        let r: Vec<String> = remove.iter().map(|p| q(p)).collect();
        s += &format!("rm -f -- {}\n", r.join(" "));
    }
    if touch_done {
        s += &format!("umask 022\ntouch {DONE}\n");
    }
    s
}

/// Runs `script` on the machine (as root) over its master connection,
/// feeding the secrets to ssh's stdin straight from their buffers.
async fn run_script(
    target: &Target,
    script: &str,
    secrets: &[&Secret],
    events: &Events,
    machine: &str,
) -> Result<Output> {
    let mut cmd = target.command(script, true)?;
    tracing::debug!("running: {}", process::describe(&cmd));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("cannot run ssh")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let feed = async move {
        for s in secrets {
            if stdin.write_all(s.bytes()).await.is_err() {
                return;
            }
        }
        let _ = stdin.shutdown().await;
    };
    let out = async {
        let mut all = Vec::new();
        process::for_each_line(stdout, |l| all.push(l)).await;
        all
    };
    let err = async {
        let mut all = Vec::new();
        process::for_each_line(stderr, |l| {
            events.log(Some(machine), l.clone());
            all.push(l);
        })
        .await;
        all
    };
    let ((), stdout, stderr) = tokio::join!(feed, out, err);
    let status = child.wait().await.context("waiting for ssh")?;
    Ok(Output {
        code: status.code(),
        stdout: stdout.join("\n"),
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(attr: &str, user: &str, mode: &str) -> KeySpec {
        KeySpec {
            attr: attr.into(),
            name: attr.into(),
            dest_dir: "/run/keys".into(),
            user: user.into(),
            group: user.into(),
            permissions: mode.into(),
            post_activation: false,
            source: Source::Text,
        }
    }

    #[test]
    fn json_strings_decode() {
        let s = json_string(r#""a\nb\"c\\ \u00e9 \ud83d\ude00 é/""#).unwrap();
        assert_eq!(s.bytes(), "a\nb\"c\\ é 😀 é/".as_bytes());
        assert!(json_string("\"\\ud83d\"").is_err());
        assert!(json_string("3").is_err());
    }

    #[test]
    fn hashes_are_salted_and_checkable() {
        let a = Secret(Zeroizing::new(b"hunter2".to_vec()));
        let b = Secret(Zeroizing::new(b"hunter3".to_vec()));
        let h1 = new_hash(&a);
        let h2 = new_hash(&a);
        assert_ne!(h1, h2);
        assert!(hash_matches(&h1, &a));
        assert!(!hash_matches(&h1, &b));
        assert!(!h1.contains("hunter"));
    }

    #[test]
    fn script_sets_owner_and_mode_before_data() {
        let k1 = spec("a", "alice", "0640");
        let k2 = spec("b", "root", "0600");
        let s = script(&[(&k1, 5), (&k2, 0)], &["/run/keys/old".into()], true);
        let chown = s.find("chown -- alice:alice").unwrap();
        let chmod = s.find("chmod -- 0640").unwrap();
        let dd = s.find("dd bs=5").unwrap();
        assert!(chown < dd && chmod < dd, "{s}");
        assert!(!s.contains("bs=0"));
        assert!(s.contains("mv -f -- \"$t0\"/a \"$t0\"/b /run/keys/\n"), "{s}");
        assert!(s.contains("rm -f -- /run/keys/old"));
        assert!(s.ends_with("umask 022\ntouch /run/keys/done\n"));
    }

    #[test]
    fn delivered_state_reads_nixops_entries() {
        let d = parse_delivered(Some(
            r#"{"k": {"text": "secret", "destDir": "/var/keys", "user": "root"}, "j": {}}"#,
        ));
        assert_eq!(d["k"].path("k"), "/var/keys/k");
        assert_eq!(d["j"].path("j"), "/run/keys/j");
        assert!(!format!("{:?}", d["k"].to_json()).contains("secret"));
    }
}
