//! marketsim: a deterministic discrete-event simulator of a tutoring marketplace.
//!
//! Data flows one way: a script ([`scenario::script`]) names a catalog ([`market::catalog`]) and
//! a seed; a [`session`] steps the [`engine`], whose [`market`] model emits stream events, and
//! applies commands (scripted or live) at the start of their millisecond; [`stats`] scores the
//! buckets, the [`analyst`] writes recommendations, [`output`] writes run directories and
//! [`report`] renders them; [`app`] orchestrates all of it for the command line.
//!
//! Layers, lowest first (a module never imports a later one; a tidy test checks it):
//! `diagnostics`, `assets`, `bundled`, `engine`, `market`, `scenario`, `stats`, `analyst`, `session`, `output`,
//! `report`, `inspect`, `validate`, `app`, `live`.
//!
//! Determinism contract: the same seed, script, catalog and binary give byte-identical outputs.
//! Virtual time is an integer, ties in the queue break by scheduling order, every stream draws
//! from its own seeded generator, no hash-map iteration reaches an output, and floats are
//! written with a fixed number of decimals.

pub mod analyst;
pub mod app;
pub mod assets;
pub mod bundled;
pub mod diagnostics;
pub mod engine;
pub mod inspect;
pub mod live;
pub mod market;
pub mod output;
pub mod report;
pub mod scenario;
pub mod session;
pub mod stats;
pub mod validate;
