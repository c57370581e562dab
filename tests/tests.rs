//! The integration test suite: one binary, one module per area.

/// Helpers: run the CLI, run the library in-process, compare directories.
mod support;

/// The bundled 30-day baseline: summary snapshot, flow conservation, realism.
mod baseline;
/// Catalog validation over `fixtures/invalid-catalog`, and arbitrary YAML never panics.
mod catalog;
/// Exit codes and messages of the command line, including every `fixtures/invalid` script.
mod cli;
/// Same seed ⇒ byte-identical run directory; another seed ⇒ different; an extra stream leaves
/// the other streams' events untouched.
mod determinism;
/// The stream inspector and the stream list.
mod inspect;
/// Scenario scripts: a snapshot of every bundled script's summary and ground truth, cascades,
/// red herrings, backdating.
mod scenarios;
/// Source hygiene checks that run as ordinary tests (rust-analyzer's "tidy").
mod tidy;
