//! The discrete-event engine: virtual time, the event queue, clocks and seeded random streams.
//!
//! The engine knows nothing about marketplaces. It advances an integer virtual clock by popping
//! the earliest scheduled event from [`EventQueue`] and handing it to a [`Model`]. Two things are
//! deliberately absent: the engine never reads the wall clock (only a [`clock::PacedClock`] does,
//! and only to decide *when* to hand over the next event, never *what* it is), and it never draws
//! randomness itself (models own their [`rng`] streams).

pub mod clock;
pub mod queue;
pub mod rng;
pub mod simulation;
pub mod time;

pub use clock::{Clock, PaceSchedule, PacedClock, UnpacedClock, WallSource};
pub use queue::{EventQueue, TimerHandle};
pub use rng::{stable_name_hash, RandomStream};
pub use simulation::{Context, Model, Simulation, Sink, Tee};
pub use time::{VirtualTimeMs, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};
