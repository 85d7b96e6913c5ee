//! What the example programs share besides the library: the command line, logging and
//! signals. Configuration is [`inventory_kit::Settings`].
#![allow(dead_code, unreachable_pub)]

use inventory_kit::settings::{LogFormat, Settings};

/// Parses the command line of an example program. Configuration is the environment, so the
/// only options are `--help` and `--version`: both print and exit before anything is opened
/// or created; anything else is a usage error (exit 2).
pub fn command_line(name: &'static str, about: &'static str) {
    clap::Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .after_help(
            "Configuration is read from environment variables (DATABASE_URL, JWT_SECRET, \
             SMTP_HOST, ...): see the README's configuration table.",
        )
        .get_matches();
}

/// What [`init_tracing`] started: with the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT`
/// set, the span exporter, flushed when this is dropped (at exit).
pub struct Tracing {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Tracing {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Starts logging in the settings' format (JSON lines with `severity` for Cloud Logging, or
/// text), the level from `RUST_LOG` (default `info`), then logs the settings' warnings. With
/// the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over
/// OTLP/HTTP (service name `OTEL_SERVICE_NAME`, default `inventory`).
pub fn init_tracing(settings: &Settings) -> Tracing {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    #[cfg(feature = "otel")]
    let provider = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .and_then(|endpoint| {
            let service =
                std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "inventory".to_owned());
            match inventory_kit::telemetry::otlp_provider(&endpoint, &service) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}; spans are not exported");
                    None
                }
            }
        });
    #[cfg(feature = "otel")]
    let otel = provider.as_ref().map(inventory_kit::telemetry::layer);
    #[cfg(not(feature = "otel"))]
    let otel: Option<tracing_subscriber::layer::Identity> = None;
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match settings.log_format {
        LogFormat::Json => registry.with(tracing_stackdriver::layer()).init(),
        _ => registry.with(tracing_subscriber::fmt::layer()).init(),
    }
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    Tracing {
        #[cfg(feature = "otel")]
        provider,
    }
}

/// mimalloc returns freed memory to the system; glibc's allocator keeps the 19 MiB argon2
/// working sets of every blocking thread, which tripled the idle footprint.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit of an example program: 0, or 1 with the error on stderr and in the log.
pub fn exit(name: &str, result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            tracing::error!(error = %e, "{name} failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Waits for a spawned dispatcher to finish its in-flight sends (bounded: 30 s).
pub async fn stop_dispatcher(handle: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(std::time::Duration::from_secs(30), handle)
        .await
        .is_err()
    {
        tracing::warn!("dispatcher did not stop within 30 s");
    }
}
