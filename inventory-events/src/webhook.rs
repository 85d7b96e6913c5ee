//! Webhook deliveries over HTTP, signed (Standard Webhooks) and guarded against SSRF: every
//! address a host resolves to is checked at send time, in the client's own resolver, so the
//! address checked is the address connected to (no window for DNS rebinding), and redirects
//! are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use inventory_core::events::{SendError, WebhookSender};
use inventory_core::{Event, TraceParent, WebhookEndpoint};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::address::AddressPolicy;
use crate::{EventsError, sign};

/// Settings of an [`HttpWebhookSender`].
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Which addresses may be reached (default: public only).
    pub policy: AddressPolicy,
    /// Longest a delivery may take, connect to last byte (default 15 s, as the specification
    /// recommends).
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            policy: AddressPolicy::PublicOnly,
            timeout: Duration::from_secs(15),
        }
    }
}

/// The reason a resolution was refused, found again in the error chain of the request.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to internal addresses ({addrs})")]
struct Refused {
    host: String,
    addrs: String,
}

/// Resolves with the system resolver and keeps only the addresses the policy allows.
struct GuardedResolver(AddressPolicy);

/// Why a host cannot be reached.
enum Unreachable {
    Refused(Refused),
    Lookup(String),
}

impl From<Unreachable> for EventsError {
    fn from(u: Unreachable) -> EventsError {
        match u {
            Unreachable::Refused(r) => EventsError::AddressRefused(r.to_string()),
            Unreachable::Lookup(e) => EventsError::InvalidUrl(e),
        }
    }
}

async fn resolve(policy: AddressPolicy, host: &str) -> Result<Vec<SocketAddr>, Unreachable> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| Unreachable::Lookup(format!("{host} does not resolve: {e}")))?
        .collect();
    let allowed: Vec<SocketAddr> = all
        .iter()
        .copied()
        .filter(|a| policy.allows(a.ip()))
        .collect();
    if allowed.is_empty() {
        let addrs = all
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Unreachable::Refused(Refused {
            host: host.to_owned(),
            addrs,
        }));
    }
    Ok(allowed)
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            match resolve(policy, name.as_str()).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(Unreachable::Refused(r)) => Err(Box::new(r) as _),
                Err(Unreachable::Lookup(e)) => Err(e.into()),
            }
        })
    }
}

/// Sends events to webhook endpoints with `reqwest`. The HTTP client (its TLS roots) is
/// built at the first send, so a process that never sends one pays nothing for it.
#[derive(Clone)]
pub struct HttpWebhookSender {
    client: Arc<std::sync::OnceLock<reqwest::Client>>,
    config: WebhookConfig,
    policy: AddressPolicy,
}

impl std::fmt::Debug for HttpWebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWebhookSender")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn refused_in_chain(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.to_string());
        }
        cur = err.source();
    }
    None
}

/// The host of `url` when it is an IP address.
fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// A `Retry-After` value: seconds, or an HTTP date.
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let v = value?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

impl HttpWebhookSender {
    /// A sender with `config` (a zero timeout is refused).
    pub fn new(config: WebhookConfig) -> Result<Self, EventsError> {
        if config.timeout.is_zero() {
            return Err(EventsError::Http("the timeout must be above zero".into()));
        }
        Ok(HttpWebhookSender {
            client: Arc::default(),
            policy: config.policy,
            config,
        })
    }

    fn client(&self) -> Result<&reqwest::Client, SendError> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let built = reqwest::Client::builder()
            .timeout(self.config.timeout)
            .connect_timeout(self.config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!(
                "inventory-kit-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .dns_resolver(Arc::new(GuardedResolver(self.config.policy)))
            .build()
            .map_err(|e| SendError::Retry {
                error: format!("http client: {e}"),
                after: None,
            })?;
        Ok(self.client.get_or_init(|| built))
    }

    /// Checks a URL as an endpoint: `http(s)` with a host whose addresses the policy allows
    /// (an IP literal is checked as it is; a name is resolved). Made when an endpoint is
    /// created, and again at every send.
    pub async fn check_url(&self, url: &str) -> Result<(), EventsError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| EventsError::InvalidUrl(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(EventsError::InvalidUrl("must be http or https".into()));
        }
        match parsed.host() {
            None => Err(EventsError::InvalidUrl("must name a host".into())),
            Some(_) => match literal_ip(&parsed) {
                Some(ip) if !self.policy.allows(ip) => Err(EventsError::AddressRefused(format!(
                    "{ip} is an internal address"
                ))),
                Some(_) => Ok(()),
                None => resolve(self.policy, parsed.host_str().unwrap_or_default())
                    .await
                    .map(|_| ())
                    .map_err(EventsError::from),
            },
        }
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(
        &self,
        endpoint: &WebhookEndpoint,
        event: &Event,
        trace: &TraceParent,
    ) -> Result<(), SendError> {
        // An IP literal never reaches the resolver: check it here (names are checked there,
        // on the addresses actually connected to).
        if let Ok(url) = reqwest::Url::parse(&endpoint.url)
            && let Some(ip) = literal_ip(&url).filter(|ip| !self.policy.allows(*ip))
        {
            return Err(SendError::Refused(format!("{ip} is an internal address")));
        }
        let body = event.body();
        let id = event.id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(&endpoint.secrets, &id, timestamp, &body);
        let response = self
            .client()?
            .post(&endpoint.url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header("traceparent", trace.to_string())
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                if let Some(why) = refused_in_chain(&e) {
                    return Err(SendError::Refused(why));
                }
                let what = if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "request failed".to_owned()
                };
                return Err(SendError::Retry {
                    error: format!("{what}: {e}"),
                    after: None,
                });
            }
        };
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            410 => Err(SendError::Gone(format!("{status}"))),
            429 | 503 => Err(SendError::Retry {
                error: format!("{status}"),
                after: retry_after(response.headers().get(RETRY_AFTER)),
            }),
            _ => Err(SendError::Retry {
                error: format!("{status}"),
                after: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory_core::EventType;

    /// A name that resolves to an internal address is refused at send time, before any
    /// connection; a literal one too.
    #[tokio::test]
    async fn internal_names_and_literals_are_refused_at_send_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sender = HttpWebhookSender::new(WebhookConfig::default()).unwrap();
        let event = Event::order_confirmed(uuid::Uuid::now_v7(), inventory_core::now());
        for url in [
            format!("http://localhost:{port}/hook"),
            format!("http://127.0.0.1:{port}/hook"),
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        ] {
            let endpoint =
                WebhookEndpoint::new(&url, vec![EventType::OrderConfirmed], inventory_core::now())
                    .unwrap();
            let sent = sender.send(&endpoint, &event, &TraceParent::root()).await;
            assert!(
                matches!(sent, Err(SendError::Refused(_))),
                "{url}: {sent:?}"
            );
        }
        // Nothing connected: a connection would be waiting in the backlog by now.
        let accepted = tokio::time::timeout(Duration::ZERO, listener.accept()).await;
        assert!(accepted.is_err(), "no connection was made");
    }
}
