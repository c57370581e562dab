//! The discrete-event engine: virtual time, the event queue, pacing and seeded random streams.
//!
//! The engine knows nothing about marketplaces. It advances an integer virtual clock by popping
//! the earliest scheduled event from [`EventQueue`] and handing it to a [`Model`]. Two things are
//! deliberately absent: the engine never reads the wall clock (a live runner reads it and asks the
//! pure [`pace::PaceSchedule`] how far to advance, never *what* happens), and it never draws
//! randomness itself (models own their [`rng`] streams).

pub mod pace;
pub mod queue;
pub mod rng;
pub mod simulation;
pub mod time;

pub use pace::PaceSchedule;
pub use queue::{EventQueue, TimerHandle};
pub use rng::{stable_name_hash, RandomStream};
pub use simulation::{Context, Model, NoSink, Simulation, Sink, Tee};
pub use time::{VirtualTimeMs, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};
