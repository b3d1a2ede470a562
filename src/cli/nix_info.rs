//! Colmena's `nix-info`: what the deploying side's Nix is and can do.

use anyhow::{Result, bail};

use crate::process::{self, Sink};

/// Nix's version, as (major, minor).
pub async fn version() -> Result<(u32, u32)> {
    let text = version_text().await?;
    parse(&text).ok_or_else(|| anyhow::anyhow!("cannot read Nix's version from ‘{text}’"))
}

async fn version_text() -> Result<String> {
    let mut cmd = process::command("nix-instantiate");
    cmd.arg("--version");
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!("nix-instantiate --version failed: {}", out.last_error());
    }
    Ok(out.stdout.trim().to_owned())
}

/// `nix-instantiate (Nix) 2.8.0` → (2, 8).
fn parse(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().last()?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub async fn run() -> Result<i32> {
    let text = match version_text().await {
        Ok(t) => t,
        Err(e) => {
            outln!("Nix: not found ({e:#})");
            return Ok(1);
        }
    };
    outln!("Nix version: {}", text.split_whitespace().last().unwrap_or(&text));
    let supported = parse(&text).is_some_and(|v| v >= (2, 4));
    // Whether flakes work without configuration: this tool passes the
    // experimental features itself, so they only need Nix ≥ 2.4.
    let mut cmd = process::command("nix-instantiate");
    cmd.args(["--eval", "-E", "builtins ? getFlake"]);
    let enabled = process::run(&mut cmd, None, Sink::quiet())
        .await
        .is_ok_and(|o| o.success() && o.stdout.trim() == "true");
    outln!(
        "Flakes: {}",
        match (supported, enabled) {
            (false, _) => "not supported (Nix 2.4 or later has them)",
            (true, true) => "supported and enabled",
            (true, false) => "supported (enabled by this tool for each command)",
        }
    );
    let mut ssh = process::command("ssh");
    ssh.arg("-V");
    let ssh = process::run(&mut ssh, None, Sink::quiet()).await;
    outln!(
        "SSH client: {}",
        ssh.ok()
            .and_then(|o| o.stderr.first().cloned())
            .unwrap_or_else(|| "not found".into())
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_read_as_nix_prints_them() {
        assert_eq!(super::parse("nix-instantiate (Nix) 2.8.0"), Some((2, 8)));
        assert_eq!(super::parse("nix-instantiate (Nix) 2.24.10"), Some((2, 24)));
        assert_eq!(super::parse("garbage"), None);
    }
}
