//! Metrics, health endpoints and logging setup.

mod jobs;
mod metrics;
mod requests;
mod server;

pub use jobs::{JobFigures, JobRow};
pub use metrics::{JobsSource, Metrics, ReconcileTimer};
pub use requests::{CountRequests, RequestLabels, classify};
pub use server::{Health, serve};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global tracing subscriber. The filter comes from RUST_LOG, default `info`.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
