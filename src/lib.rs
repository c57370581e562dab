//! marketsim: a deterministic discrete-event simulator of a tutoring marketplace.
//!
//! Data flows one way: a script ([`script`]) names a catalog ([`market::catalog`]) and a seed;
//! the [`engine`] advances virtual time and the [`market`] model emits stream events; [`run`]
//! drives one headless run and collects what [`output`] writes to a run directory.
//!
//! Determinism contract: the same seed, script, catalog and binary give byte-identical outputs.
//! Virtual time is an integer, ties in the queue break by scheduling order, every stream draws
//! from its own seeded generator, no hash-map iteration reaches an output, and floats are
//! written with a fixed number of decimals.

pub mod analyst;
pub mod bundled;
pub mod diagnostics;
pub mod engine;
pub mod inspect;
pub mod market;
pub mod output;
pub mod report;
pub mod run;
pub mod scenario;
pub mod script;
pub mod stats;
pub mod validate;
