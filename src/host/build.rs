//! The operations of a host that builds (`buildOnTarget`, `--build-host`):
//! its Nix, derivations in, a build there, its closure on to another host.

use super::{Host, Result, Transport, copied};
use crate::process::{self, Sink};

const NIX_VERSION: &str = include_str!("nix-version.sh");
const REALISE: &str = include_str!("realise.sh");
const CLOSURE: &str = include_str!("closure.sh");
const MISSING: &str = include_str!("missing.sh");
const EXPORT: &str = include_str!("export.sh");
const IMPORT: &str = include_str!("import.sh");
const REMOVE_ROOTS: &str = include_str!("remove-roots.sh");
const ROOTS_MARK: &str = "__NIXOPS_ROOTS__ ";
const MISSING_MARK: &str = "__NIXOPS_MISSING__ ";

/// How a build on the machine went ([`Host::realise`]).
#[derive(Debug)]
pub struct Realised {
    /// The outputs of the derivations that are not valid there afterwards.
    pub missing: std::collections::BTreeSet<String>,
    /// The temporary directory of the outputs' GC roots, when asked for.
    pub roots: Option<String>,
    /// The build failed (some outputs are missing): what Nix said.
    pub failed: Option<crate::nix::BuildFailed>,
}

impl Host {
    /// First contact with a host that builds: the version of its Nix. An
    /// error when it cannot be reached or has no Nix.
    pub async fn nix_version(&self, sink: Sink<'_>) -> Result<String> {
        let out = self.run(NIX_VERSION, &[], None, sink).await?;
        if !out.success() {
            return Err(self.failure("asking for its Nix", &out));
        }
        Ok(out.stdout.trim().to_owned())
    }

    /// Copies derivations (`.drv` files) with their closure of derivations
    /// and sources into the machine's store, for it to build them there.
    pub async fn copy_derivations(&self, drvs: &[String], sink: Sink<'_>) -> Result<()> {
        match &self.transport {
            Transport::Ssh(t) => copied(crate::nix::copy_closure(t, drvs, false, sink).await),
            Transport::Local(_) => Ok(()),
        }
    }

    /// Builds the derivations in one `nix-store --realise` on the machine,
    /// by its own Nix (its substituters, builders and CPUs), the log going
    /// to `sink`. `args` are nix-store's build options; with `keep_roots`
    /// the outputs get temporary GC roots until
    /// [`remove_roots`](Self::remove_roots). A failed build is no error:
    /// [`Realised`] tells which outputs are missing and what Nix said; an
    /// error means the machine could not be asked (unreachable, no Nix).
    pub async fn realise(
        &self,
        drvs: &[String],
        args: &[String],
        keep_roots: bool,
        sink: Sink<'_>,
    ) -> Result<Realised> {
        let count = drvs.len().to_string();
        let mut argv: Vec<&str> = vec![if keep_roots { "keep" } else { "none" }, &count];
        argv.extend(drvs.iter().map(String::as_str));
        argv.extend(args.iter().map(String::as_str));
        let out = self.run(REALISE, &argv, None, sink).await?;
        if self.unreachable(&out) || out.code == Some(127) {
            return Err(self.failure("building", &out));
        }
        let mut r = Realised {
            missing: Default::default(),
            roots: None,
            failed: None,
        };
        for l in out.stdout.lines() {
            if let Some(p) = l.strip_prefix(MISSING_MARK) {
                r.missing.insert(p.to_owned());
            } else if let Some(d) = l.strip_prefix(ROOTS_MARK) {
                r.roots = Some(d.to_owned());
            }
        }
        if !out.success() {
            r.failed = Some(crate::nix::BuildFailed(out));
        }
        Ok(r)
    }

    /// Removes the temporary GC roots of a [`realise`](Self::realise).
    pub async fn remove_roots(&self, dir: &str) -> Result<()> {
        let out = self.run(REMOVE_ROOTS, &[dir], None, Sink::quiet()).await?;
        if !out.success() {
            return Err(self.failure("removing temporary GC roots", &out));
        }
        Ok(())
    }

    /// Copies `path`'s closure from `from`'s store into this machine's,
    /// for what this machine lacks: `from` exports, this machine imports,
    /// each over its own connection, the stream piped through this process
    /// (never into its store). With `use_substitutes`, this machine's
    /// substituters first provide what they can.
    pub async fn copy_from(
        &self,
        from: &Host,
        path: &str,
        use_substitutes: bool,
        sink: Sink<'_>,
    ) -> Result<()> {
        let closure = from.run(CLOSURE, &[path], None, Sink::quiet()).await?;
        if !closure.success() {
            return Err(from.failure(
                &format!("listing the closure of {path} on ‘{}’", from.name),
                &closure,
            ));
        }
        let subst = if use_substitutes { "1" } else { "0" };
        let missing = self
            .run(MISSING, &[subst], Some(closure.stdout.as_bytes()), sink)
            .await?;
        if !missing.success() {
            return Err(self.failure("asking which paths the machine lacks", &missing));
        }
        if missing.stdout.trim().is_empty() {
            return Ok(());
        }
        let mut export = from.command(EXPORT, &[], false)?;
        let mut import = self.command(IMPORT, &[], true)?;
        let (sent, got) = process::pipe(&mut export, missing.stdout.as_bytes(), &mut import, sink).await?;
        if !got.success() {
            return Err(self.failure("copying closure", &got));
        }
        if !sent.success() {
            return Err(from.failure(&format!("sending the closure from ‘{}’", from.name), &sent));
        }
        Ok(())
    }
}
