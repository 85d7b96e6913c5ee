//! OpenTelemetry export of the service's spans (feature `otel`, off by default): the
//! request spans and the delivery spans of events, over OTLP/HTTP to
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (a collector, `http://127.0.0.1:4318`). Unset, nothing is
//! exported and `traceparent` still travels from requests to every delivery.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let provider = inventory_kit::telemetry::otlp_provider("http://127.0.0.1:4318", "inventory")?;
//! tracing_subscriber::registry()
//!     .with(inventory_kit::telemetry::layer(&provider))
//!     .init();
//! // ... serve; at exit:
//! provider.shutdown()?;
//! # Ok(()) }
//! ```

use inventory_core::TraceParent;
use inventory_core::trace::SpanBridge;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A tracer provider that exports spans in batches over OTLP/HTTP to `endpoint` (the
/// collector's base URL; `/v1/traces` is appended), as `service`.
pub fn otlp_provider(
    endpoint: &str,
    service: &str,
) -> Result<SdkTracerProvider, Box<dyn std::error::Error + Send + Sync>> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}

/// The `tracing` layer that records spans into `provider`, with the bridge installed so that
/// requests continue their caller's trace and deliveries their event's (see
/// [`inventory_core::trace::SpanBridge`]).
pub fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    inventory_core::trace::install_bridge(SpanBridge { adopt, context });
    tracing_opentelemetry::layer().with_tracer(provider.tracer("inventory-kit"))
}

fn adopt(span: &tracing::Span, parent: &TraceParent) -> Option<TraceParent> {
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    context(span)
}

fn context(span: &tracing::Span) -> Option<TraceParent> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| TraceParent {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        sampled: sc.is_sampled(),
    })
}
