//! Health checks after activation (`deployment.healthChecks`): `cmd` checks
//! run on the machine over its master connection, `http` checks from the
//! deployer; each is retried every `period` seconds until it passes or its
//! `timeout` runs out. All of a machine's checks run at once.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::host::Host;
use crate::network::{CmdCheck, HealthChecks, HttpCheck};
use crate::process::Sink;
use crate::ui::Events;

/// Runs every check; the error names the first that failed.
pub async fn run(
    host: &Host,
    address: &str,
    checks: &HealthChecks,
    name: &str,
    events: &Events,
) -> Result<()> {
    if checks.is_empty() {
        return Ok(());
    }
    events.stage(name, "health checks");
    let cmd = checks.cmd.iter().map(|c| cmd_check(host, c));
    let http = checks.http.iter().map(|c| http_check(address, c));
    let results =
        futures::future::join(futures::future::join_all(cmd), futures::future::join_all(http)).await;
    for r in results.0.into_iter().chain(results.1) {
        r?;
    }
    events.log(Some(name), "health checks passed");
    Ok(())
}

fn label(description: &str, fallback: String) -> String {
    if description.is_empty() {
        fallback
    } else {
        description.to_owned()
    }
}

/// Retries `attempt` every `period` until it passes or `timeout` is over.
async fn retry<F, Fut>(what: &str, period: u64, timeout: u64, mut attempt: F) -> Result<()>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let period = Duration::from_secs(period.max(1));
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let started = Instant::now();
        let last =
            match tokio::time::timeout(left, attempt(left.min(period.max(Duration::from_secs(5))))).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => "timed out".to_owned(),
            };
        let next = started + period;
        if next >= deadline {
            return Err(anyhow!("health check ‘{what}’ failed for {timeout} s: {last}"));
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

async fn cmd_check(host: &Host, c: &CmdCheck) -> Result<()> {
    let argv: Vec<&str> = c.cmd.iter().map(String::as_str).collect();
    let what = label(&c.description, c.cmd.join(" "));
    retry(&what, c.period, c.timeout, |_| async {
        match host.run(r#"exec "$@""#, &argv, None, Sink::quiet()).await {
            Ok(out) if out.success() => Ok(()),
            Ok(out) => Err(out.last_error()),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .await
}

async fn http_check(default_host: &str, c: &HttpCheck) -> Result<()> {
    let host = c.host.as_deref().unwrap_or(default_host);
    let url = format!("{}://{}:{}{}", c.scheme, host, c.port, c.path);
    let what = label(&c.description, format!("GET {url}"));
    retry(&what, c.period, c.timeout, |limit| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(limit))
                    .http_status_as_error(false)
                    .build()
                    .into();
                match agent.get(&url).call() {
                    Ok(resp) if resp.status().is_success() => Ok(()),
                    Ok(resp) => Err(format!("{url} answered {}", resp.status())),
                    Err(e) => Err(format!("{url}: {e}")),
                }
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        }
    })
    .await
}
