//! Checking machines: reachable, up, running what we deployed, failed units,
//! load. One round trip per machine over its master connection.

use crate::process::Sink;
use crate::ssh::{self, Target};

/// NixOps' check exit code bits, plus one of ours.
pub mod bits {
    pub const MISSING: i32 = 1;
    pub const NOT_UP: i32 = 2;
    pub const UNREACHABLE: i32 = 4;
    pub const FAILED_UNITS: i32 = 16;
    /// Ours: the machine runs another system than the one last deployed.
    pub const DRIFTED: i32 = 32;
}

#[derive(Debug, Clone, Default)]
pub struct Health {
    pub reachable: bool,
    /// Refused: the machine presented another host key than the pinned one.
    pub host_key_changed: bool,
    pub error: Option<String>,
    pub boot_id: Option<String>,
    /// What /run/current-system points at.
    pub current_system: Option<String>,
    /// `systemctl is-system-running`.
    pub system_state: Option<String>,
    pub load: Option<String>,
    pub failed_units: Vec<String>,
    /// The newest activation, when it is final.
    pub kept: Option<super::record::Kept>,
}

impl Health {
    pub fn up(&self) -> bool {
        self.reachable && matches!(self.system_state.as_deref(), Some("running" | "degraded"))
    }

    /// Whether the machine runs a system other than `deployed`.
    pub fn drifted(&self, deployed: Option<&str>) -> bool {
        self.reachable && deployed.is_some() && self.current_system.as_deref() != deployed
    }

    /// The exit code bits for this machine.
    pub fn bits(&self, deployed: Option<&str>) -> i32 {
        let mut b = 0;
        if deployed.is_none() {
            b |= bits::MISSING;
        }
        if !self.reachable {
            return b | bits::UNREACHABLE | bits::NOT_UP;
        }
        if !self.up() {
            b |= bits::NOT_UP;
        }
        if !self.failed_units.is_empty() {
            b |= bits::FAILED_UNITS;
        }
        if self.drifted(deployed) {
            b |= bits::DRIFTED;
        }
        b
    }
}

const SCRIPT: &str = concat!(
    include_str!("activation-lib.sh"),
    r#"echo "boot=$(cat /proc/sys/kernel/random/boot_id)"
echo "current=$(readlink /run/current-system 2>/dev/null)"
echo "state=$(systemctl is-system-running 2>/dev/null)"
read a b c rest < /proc/loadavg && echo "load=$a $b $c"
systemctl --failed --no-legend --plain --no-pager 2>/dev/null | while read -r unit rest; do
  case "$unit" in ''|'●'|'*') ;; *) echo "failed=$unit" ;; esac
done
k=$(newest_kept); [ -z "$k" ] || echo "newest=$k"
"#
);

pub async fn health(target: &Target, sink: Sink<'_>) -> Health {
    let out = match target.run(SCRIPT, None, sink).await {
        Ok(out) => out,
        Err(e) => {
            return Health {
                host_key_changed: e.is::<ssh::HostKeyChanged>(),
                error: Some(format!("{e:#}")),
                ..Default::default()
            };
        }
    };
    if out.code == Some(ssh::SSH_FAILURE) || out.stdout.is_empty() {
        return Health {
            error: Some(ssh::failure("check", &out).to_string()),
            ..Default::default()
        };
    }
    let mut h = Health {
        reachable: true,
        ..Default::default()
    };
    for line in out.stdout.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_owned();
        match k {
            "boot" if !v.is_empty() => h.boot_id = Some(v),
            "current" if !v.is_empty() => h.current_system = Some(v),
            "state" if !v.is_empty() => h.system_state = Some(v),
            "load" => h.load = Some(v),
            "failed" => h.failed_units.push(v),
            "newest" => h.kept = super::record::Kept::parse(&v),
            _ => {}
        }
    }
    h
}
