//! W3C Trace Context: the `traceparent` of the request that caused a change travels with the
//! events it writes, so every delivery (webhook, Pub/Sub) joins the request's trace.
//!
//! The HTTP layer runs each request [`in_scope`] of its trace; constructors of new orders and
//! holds read it with [`current`], on the caller's task, before any hand-off.

use std::fmt;
use std::future::Future;

use crate::error::{Error, Result};

/// A W3C `traceparent` (version 00): a trace id, the id of the span that is the parent of
/// what follows, and the sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// 16 bytes, not all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, not all zero.
    pub span_id: [u8; 8],
    /// Whether the caller records the trace.
    pub sampled: bool,
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    (out != [0u8; N]).then_some(out)
}

impl TraceParent {
    /// A new trace (random ids), sampled.
    pub fn root() -> TraceParent {
        TraceParent {
            trace_id: rand::random::<u128>().max(1).to_be_bytes(),
            span_id: rand::random::<u64>().max(1).to_be_bytes(),
            sampled: true,
        }
    }

    /// A new span of the same trace, whose parent is this one.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            span_id: rand::random::<u64>().max(1).to_be_bytes(),
            ..*self
        }
    }

    /// Parses a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`); a later version is
    /// read by its first four fields, as the specification asks.
    pub fn parse(s: &str) -> Result<TraceParent> {
        let bad = || Error::invalid("traceparent", "not a W3C traceparent");
        let mut parts = s.trim().split('-');
        let version = parts.next().ok_or_else(bad)?;
        let (trace, span, flags) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return Err(bad());
        }
        let flags = hex_bytes::<1>(flags)
            .map(|f| f[0])
            .or((flags == "00").then_some(0))
            .ok_or_else(bad)?;
        Ok(TraceParent {
            trace_id: hex_bytes(trace).ok_or_else(bad)?,
            span_id: hex_bytes(span).ok_or_else(bad)?,
            sampled: flags & 1 == 1,
        })
    }

    /// The trace id in hex.
    pub fn trace_id_hex(&self) -> String {
        self.trace_id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", u8::from(self.sampled))
    }
}

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// Connects our spans to a tracing system that exports them (OpenTelemetry, installed by the
/// server with its `otel` feature): without one, a span's trace context is ours alone.
#[derive(Debug, Clone, Copy)]
pub struct SpanBridge {
    /// Makes `span` a child of the remote `parent` and answers the span's own context.
    pub adopt: fn(&tracing::Span, &TraceParent) -> Option<TraceParent>,
    /// The context of `span` as the exporter knows it.
    pub context: fn(&tracing::Span) -> Option<TraceParent>,
}

static BRIDGE: std::sync::OnceLock<SpanBridge> = std::sync::OnceLock::new();

/// Installs the bridge (once per process); whether this call installed it.
pub fn install_bridge(bridge: SpanBridge) -> bool {
    BRIDGE.set(bridge).is_ok()
}

/// The trace context of work done in `span` on behalf of `parent` (a request's caller, an
/// event's request): with a bridge, `span` becomes the exported child of `parent` and its
/// own ids are answered; without one, a new span id of `parent`'s trace.
pub fn adopt(span: &tracing::Span, parent: &TraceParent) -> TraceParent {
    BRIDGE
        .get()
        .and_then(|b| (b.adopt)(span, parent))
        .unwrap_or_else(|| parent.child())
}

/// The trace context of `span` when it starts a trace: the exported one with a bridge, a new
/// random one without.
pub fn start(span: &tracing::Span) -> TraceParent {
    BRIDGE
        .get()
        .and_then(|b| (b.context)(span))
        .unwrap_or_else(TraceParent::root)
}

/// Runs `fut` with `trace` as the current trace of its task.
pub async fn in_scope<F: Future>(trace: TraceParent, fut: F) -> F::Output {
    CURRENT.scope(trace, fut).await
}

/// The current task's trace, if it runs [`in_scope`] of one.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|t| *t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_specifications_example() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(s).unwrap();
        assert!(t.sampled);
        assert_eq!(t.to_string(), s);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = t.child();
        assert_eq!(child.trace_id, t.trace_id);
        assert_ne!(child.span_id, t.span_id);
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad}");
        }
        // A later version may add fields.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x").is_ok()
        );
    }

    #[tokio::test]
    async fn the_scope_is_the_tasks() {
        assert_eq!(current(), None);
        let t = TraceParent::root();
        assert_eq!(in_scope(t, async { current() }).await, Some(t));
        assert_eq!(current(), None);
    }
}
