//! The binary's own modules: argument definitions, the verbs, the progress bar.

pub mod args;
pub mod commands;
pub mod progress;
