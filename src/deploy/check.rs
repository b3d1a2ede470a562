//! Checking machines: reachable, up, running what we deployed, failed units,
//! load ([`Host::status`](crate::host::Host::status), one round trip per
//! machine over its master connection), and what that means for `check`'s
//! exit code.

use crate::host::Status;

/// NixOps' check exit code bits, plus one of ours.
pub mod bits {
    pub const MISSING: i32 = 1;
    pub const NOT_UP: i32 = 2;
    pub const UNREACHABLE: i32 = 4;
    pub const FAILED_UNITS: i32 = 16;
    /// Ours: the machine runs another system than the one last deployed.
    pub const DRIFTED: i32 = 32;
}

pub fn up(s: &Status) -> bool {
    s.reachable && matches!(s.system_state.as_deref(), Some("running" | "degraded"))
}

/// Whether the machine runs a system other than `deployed`.
pub fn drifted(s: &Status, deployed: Option<&str>) -> bool {
    s.reachable && deployed.is_some() && s.current_system.as_deref() != deployed
}

/// The exit code bits for this machine.
pub fn bits(s: &Status, deployed: Option<&str>) -> i32 {
    let mut b = 0;
    if deployed.is_none() {
        b |= bits::MISSING;
    }
    if !s.reachable {
        return b | bits::UNREACHABLE | bits::NOT_UP;
    }
    if !up(s) {
        b |= bits::NOT_UP;
    }
    if !s.failed_units.is_empty() {
        b |= bits::FAILED_UNITS;
    }
    if drifted(s, deployed) {
        b |= bits::DRIFTED;
    }
    b
}
