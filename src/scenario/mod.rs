//! Scenarios: run scripts, the scenario library, the external-events library, script
//! timelines resolved into timed commands, [`RunPlan`], everything a run needs, and random
//! scripts for measuring generalization.
//!
//! Parsing goes in two stages, as for catalogs and scripts: serde shapes, then validated types
//! whose every stream, subject, scenario and event reference resolves. Errors name the file,
//! line and column and suggest the nearest valid name.

pub mod definition;
pub mod input_kind;
pub mod plan;
pub mod random;
pub mod script;
pub mod timeline;

pub use definition::{EventTemplate, Library, ScenarioDefinition};
pub use plan::RunPlan;
pub use script::Script;
pub use timeline::{PlanItem, ScriptTimeline, TimedAction, TimelineAction};
