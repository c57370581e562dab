//! Virtual time: integer milliseconds since the run's epoch, and the unit constants.
//!
//! Integer time makes ordering exact and outputs reproducible; floating-point time would make
//! tie-breaking depend on rounding.

/// Milliseconds since the run's epoch (the instant the script names as `start`).
pub type VirtualTimeMs = u64;

pub const MS_PER_SECOND: u64 = 1_000;
pub const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;
