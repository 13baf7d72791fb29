//! Logs, metrics, and the health endpoints ([`Readiness`]).

pub(crate) mod metrics;
pub(crate) mod server;

pub use metrics::Metrics;
pub use server::Readiness;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global tracing subscriber; `RUST_LOG` filters (default `default_level`). Logs go
/// to stderr so command output on stdout stays machine-readable. Colours only on a terminal:
/// log files and `kubectl logs` show escape codes raw.
pub(crate) fn init(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second call (tests, or a subcommand that set it up already) is harmless.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
