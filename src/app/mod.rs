//! Orchestration: what the command line's verbs do, from inputs to files. A headless run
//! (session, history on the other core, sinks, analyst, run directory), the baseline's
//! history, re-analysis and evaluation of run directories.
//!
//! This layer may do IO and read the environment; the layers below it are pure. `main.rs`
//! only parses arguments, calls into here and prints.

pub mod analyst_choice;
pub mod analyzed;
pub mod batch;
pub mod history;
pub mod run;

use crate::analyst::llm::LlmError;
use crate::diagnostics::Diagnostic;
use crate::output::OutputError;

/// Why an application task failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input, located in its file.
    #[error(transparent)]
    Input(#[from] Diagnostic),
    /// A run directory could not be written or read.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The analyst's settings are wrong.
    #[error(transparent)]
    Analyst(#[from] LlmError),
    /// The model refused its catalog (a catalog that validated but lacks what flows need).
    #[error("{0}")]
    Model(String),
    /// Shown as `what: cause` by the `{:#}` chain printer, so the cause is not repeated here
    /// (as `OutputError::Io`).
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A folder to write a set into already holds files.
    #[error("{} is not empty; pass --force to write into it anyway (files of the same names are replaced)", path.display())]
    FolderNotEmpty { path: std::path::PathBuf },
    #[error("{what} panicked")]
    Panicked { what: String },
}
