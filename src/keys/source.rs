//! Where the bytes come from, on the deploying machine:
//! - `text`: a separate `nix-instantiate --eval --strict --json` of the
//!   network's `keyTexts` attribute, read from its stdout pipe (evaluation
//!   only, so nothing is written to the store);
//! - `keyFile`: the file, read at deploy time;
//! - `keyCommand`: the command's stdout (a non-zero exit fails the machine).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;

use super::secret::{Secret, json_string, read_secret};
use super::spec::{KeySpec, Source};
use crate::network::{Network, NixFiles};
use crate::nix::NixOpts;
use crate::process;

/// Machine → key attribute → text.
pub type Texts = BTreeMap<String, BTreeMap<String, Secret>>;

/// Evaluates the `text` of the given machines' keys: one nix-instantiate for
/// all of them, whose stdout is read straight into secret buffers.
pub async fn eval_texts(network: &Network, nix: &NixOpts, machines: &[String]) -> Result<Texts> {
    let files = NixFiles::write()?;
    let mut cmd = network.key_texts_command(&files, nix, machines).await?;
    tracing::debug!("running: {}", process::describe(&cmd));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("cannot run nix")?;
    let (json, err) = secret_and_stderr(&mut child).await;
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

/// Reads a child's stdout into a secret while collecting its stderr.
async fn secret_and_stderr(child: &mut Child) -> (std::io::Result<Secret>, Vec<u8>) {
    let so = child.stdout.take().expect("piped stdout");
    let se = child.stderr.take().expect("piped stderr");
    tokio::join!(read_secret(so), read_all(se))
}

async fn read_all(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut b = Vec::new();
    let _ = r.read_to_end(&mut b).await;
    b
}

/// The secret of one key. `texts` holds the machine's evaluated texts; a
/// text is taken out of it (not copied).
pub async fn secret_of(
    machine: &str,
    spec: &KeySpec,
    texts: &mut BTreeMap<String, Secret>,
) -> Result<Secret> {
    let what = format!("machine ‘{machine}’: deployment.keys.{}", spec.attr);
    Ok(match &spec.source {
        Source::Text => texts
            .remove(&spec.attr)
            .ok_or_else(|| anyhow!("{what}: its text was not evaluated"))?,
        Source::File(path) => {
            let cannot = || format!("{what}: cannot read keyFile ‘{path}’");
            let f = tokio::fs::File::open(path).await.with_context(cannot)?;
            read_secret(f).await.with_context(cannot)?
        }
        Source::Command(argv, timeout) => run_key_command(argv, *timeout)
            .await
            .with_context(|| format!("{what}: keyCommand ‘{}’ failed", argv.join(" ")))?,
    })
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
    let Ok((secret, err)) = tokio::time::timeout(timeout, secret_and_stderr(&mut child)).await else {
        // Not yet reaped, so its pid still names its group.
        if let Some(pgid) = child.id() {
            // SAFETY: a plain system call; the group is the child's own.
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
