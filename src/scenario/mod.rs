//! Scenarios: the scenario library, the external-events library, script timelines, and their
//! resolution into a [`ControlPlan`](crate::market::director::ControlPlan) the model runs.
//!
//! Parsing goes in two stages, as for catalogs and scripts: serde shapes, then validated types
//! whose every stream, subject, scenario and event reference resolves. Errors name the file,
//! line and column and suggest the nearest valid name.

pub mod definition;
pub mod timeline;

pub use definition::Library;
pub use timeline::ScenarioPlan;
