//! The world model: the stream catalog, entity flows over supply state, seasonality and the
//! academic calendar, event payloads.
//!
//! Nothing in `market` does IO or reads the wall clock; it is driven entirely by the engine.

pub mod calendar;
pub mod catalog;
pub mod coupling;
pub mod director;
pub mod model;
pub mod payload;
pub mod roles;

pub use calendar::Epoch;
pub use catalog::{Catalog, StreamDefinition, StreamId};
pub use model::{Levers, MarketEvent, Marketplace};
pub use payload::{Payload, StreamEvent};
