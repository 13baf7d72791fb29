//! `-o table|json|yaml`, shared by `schedule preview` and `plan`: the table for people, JSON
//! and YAML (the same document) for pipelines. The documents' shapes are in
//! [`crate::schedule::report`] and docs/schedules.md.

use std::fmt::Display;
use std::process::ExitCode;

use serde::Serialize;

/// `-o`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns, for people (the wording may change).
    #[default]
    Table,
    /// The documented, stable document, as JSON.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Why a document could not be written (never expected: the documents are plain data).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the {format} output: {message}")]
pub(crate) struct OutputError {
    format: &'static str,
    message: String,
}

/// `document` as JSON (pretty, with a final newline) or YAML; `None` for the table, which each
/// command renders itself.
pub(crate) fn serialized<T: Serialize>(
    format: OutputFormat,
    document: &T,
) -> Option<Result<String, OutputError>> {
    match format {
        OutputFormat::Table => None,
        OutputFormat::Json => Some(
            serde_json::to_string_pretty(document)
                .map(|text| text + "\n")
                .map_err(|e| OutputError {
                    format: "JSON",
                    message: e.to_string(),
                }),
        ),
        OutputFormat::Yaml => Some(serde_saphyr::to_string(document).map_err(|e| OutputError {
            format: "YAML",
            message: e.to_string(),
        })),
    }
}

/// A command's text on stdout (success), or its error on stderr (failure).
pub(crate) fn print_outcome(outcome: Result<String, impl Display>) -> ExitCode {
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
