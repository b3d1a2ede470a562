//! Why a machine's deploy failed. The stages return [`Error`] for what only
//! they can tell (a reboot is needed, a later activation took over) and the
//! host's and Nix's errors for the rest; the runner turns each into a
//! [`Failure`], whose [`Kind`] the summary, the history and state act on.

use crate::host;

/// What the activation stage can tell, beyond the host's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// switch-to-configuration exited 100 (nothing activated) and rebooting
    /// was not allowed.
    #[error("the new configuration requires a reboot of ‘{0}’ to take effect (hint: use ‘--allow-reboot’)")]
    NeedsReboot(String),
    /// A later activation on the machine took its guard over.
    #[error("a later activation on the machine took over before this one was confirmed")]
    Superseded,
    /// switch-to-configuration (or its dry run) failed.
    #[error("{what} failed (exit code {code}): {message}")]
    Activation {
        what: &'static str,
        code: String,
        message: String,
    },
    /// The guard kept the new system although we did not confirm it.
    #[error("the guard kept the new system, but it was not confirmed by us")]
    NotConfirmed,
    /// Reading or sending the machine's keys failed (the stage is keys,
    /// whatever stage the machine was in).
    #[error("{0}")]
    Keys(&'static str),
    /// After the reboot, the machine runs another system.
    #[error("after the reboot, ‘{machine}’ runs {running} instead of the new system")]
    WrongSystemAfterReboot { machine: String, running: String },
}

/// The stage a machine failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Evaluation,
    Connect,
    Build,
    Copy,
    Keys,
    Activation,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Evaluation => "evaluation",
            Stage::Connect => "connect",
            Stage::Build => "build",
            Stage::Copy => "copy",
            Stage::Keys => "keys",
            Stage::Activation => "activation",
        }
    }
}

/// What kind of failure, whatever the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ssh could not reach the machine (or lost it): state records it
    /// unreachable.
    Unreachable,
    /// The machine presented another host key than the pinned one.
    HostKeyChanged,
    /// Rebooting was needed and not allowed; the machine is as it was.
    NeedsReboot,
    /// A later activation took over; that one decides what it runs.
    Superseded,
    /// Anything else: the stage failed, the message says why.
    Failed,
}

impl Kind {
    /// The summary table's result.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Unreachable => "unreachable",
            Kind::HostKeyChanged => "host key changed",
            Kind::NeedsReboot => "needs reboot",
            Kind::Superseded => "superseded",
            Kind::Failed => "failed",
        }
    }
}

/// A machine's failure: where, what kind, and the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    /// A failure told only by its message (a build's or an evaluation's).
    pub fn new(stage: Stage, message: impl Into<String>) -> Failure {
        Failure {
            stage,
            kind: Kind::Failed,
            message: message.into(),
        }
    }

    /// Classifies an error by the first error in its chain that has a kind.
    pub fn of(stage: Stage, e: &anyhow::Error) -> Failure {
        // anyhow finds a context value through every layer above it.
        let keys = matches!(e.downcast_ref::<Error>(), Some(Error::Keys(_)));
        let stage = if keys { Stage::Keys } else { stage };
        let kind = e
            .chain()
            .find_map(|c| {
                if let Some(h) = c.downcast_ref::<host::Error>() {
                    return match h {
                        host::Error::Unreachable(_) => Some(Kind::Unreachable),
                        host::Error::HostKeyChanged(_) => Some(Kind::HostKeyChanged),
                        _ => None,
                    };
                }
                match c.downcast_ref::<Error>()? {
                    Error::NeedsReboot(_) => Some(Kind::NeedsReboot),
                    Error::Superseded => Some(Kind::Superseded),
                    _ => None,
                }
            })
            .unwrap_or(Kind::Failed);
        Failure {
            stage,
            kind,
            message: format!("{e:#}"),
        }
    }

    /// The summary's and the history's word for it.
    pub fn result(&self) -> String {
        match self.kind {
            Kind::Failed => format!("{} failed", self.stage.as_str()),
            k => k.word().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_chain_whatever_the_context() {
        let e = anyhow::Error::from(host::Error::Unreachable("Connection refused".into()))
            .context("sending keys");
        let f = Failure::of(Stage::Keys, &e);
        assert_eq!(f.kind, Kind::Unreachable);
        assert_eq!(f.result(), "unreachable");
        assert_eq!(
            f.message,
            "sending keys: cannot reach machine: Connection refused"
        );

        let e = anyhow::Error::from(Error::Superseded);
        assert_eq!(Failure::of(Stage::Activation, &e).kind, Kind::Superseded);
        let e = anyhow::Error::from(Error::NeedsReboot("m".into()));
        let f = Failure::of(Stage::Activation, &e);
        assert_eq!((f.kind, f.result().as_str()), (Kind::NeedsReboot, "needs reboot"));

        let e = anyhow::Error::from(host::Error::Failed {
            what: "copy".into(),
            message: "No space left on device".into(),
        });
        let f = Failure::of(Stage::Copy, &e);
        assert_eq!((f.kind, f.result().as_str()), (Kind::Failed, "copy failed"));
        assert_eq!(Failure::new(Stage::Build, "x").result(), "build failed");
    }

    #[test]
    fn a_keys_failure_is_in_the_keys_stage_whatever_stage_the_machine_was_in() {
        let e = anyhow::anyhow!("keyFile /nope does not exist").context(Error::Keys("reading keys"));
        let f = Failure::of(Stage::Activation, &e);
        assert_eq!(f.result(), "keys failed");
        assert_eq!(f.message, "reading keys: keyFile /nope does not exist");
    }
}
