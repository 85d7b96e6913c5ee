//! Google Pub/Sub over its REST API (`projects.topics.publish`): the same requests reach the
//! emulator of the Google Cloud SDK (`PUBSUB_EMULATOR_HOST`, plain HTTP, no credentials) and
//! Google Cloud (HTTPS, an OAuth token from Application Default Credentials with the
//! `gcp-auth` feature).

use async_trait::async_trait;
use base64::Engine as _;
use inventory_core::events::{Publisher, SendError};
use inventory_core::{Event, TraceParent};
use serde_json::json;

use crate::EventsError;

/// A topic's full name, `projects/P/topics/T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic(String);

impl Topic {
    /// Checks the form `projects/P/topics/T` (non-empty parts without `/`).
    pub fn parse(s: &str) -> Result<Topic, EventsError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            ["projects", p, "topics", t]
                if !p.is_empty()
                    && !t.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_graphic() && c != '?' && c != '#') =>
            {
                Ok(Topic(s.to_owned()))
            }
            _ => Err(EventsError::Topic(format!(
                "{s:?} is not projects/PROJECT/topics/TOPIC"
            ))),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Publishes events to one topic.
#[derive(Clone)]
pub struct PubSubPublisher {
    client: reqwest::Client,
    base: String,
    topic: Topic,
    #[cfg(feature = "gcp-auth")]
    credentials: Option<google_cloud_auth::credentials::AccessTokenCredentials>,
}

impl std::fmt::Debug for PubSubPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubPublisher")
            .field("base", &self.base)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl PubSubPublisher {
    /// A publisher to `topic`: on the emulator at `emulator_host` (`host:port`) when given,
    /// otherwise on Google Cloud (which needs the `gcp-auth` feature for its token).
    pub fn new(topic: Topic, emulator_host: Option<&str>) -> Result<Self, EventsError> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| EventsError::Http(e.to_string()))?;
        let base = match emulator_host {
            Some(host) => format!("http://{}", host.trim_end_matches('/')),
            None => "https://pubsub.googleapis.com".to_owned(),
        };
        #[cfg(feature = "gcp-auth")]
        let credentials = match emulator_host {
            Some(_) => None,
            None => Some(
                google_cloud_auth::credentials::Builder::default()
                    .with_scopes(["https://www.googleapis.com/auth/pubsub"])
                    .build_access_token_credentials()
                    .map_err(|e| EventsError::Topic(format!("credentials: {e}")))?,
            ),
        };
        #[cfg(not(feature = "gcp-auth"))]
        if emulator_host.is_none() {
            return Err(EventsError::Topic(
                "Google Cloud needs the gcp-auth feature (or set PUBSUB_EMULATOR_HOST)".into(),
            ));
        }
        Ok(PubSubPublisher {
            client,
            base,
            topic,
            #[cfg(feature = "gcp-auth")]
            credentials,
        })
    }

    async fn request(
        &self,
        method: reqwest::Method,
        url: String,
    ) -> Result<reqwest::RequestBuilder, String> {
        #[allow(unused_mut)]
        let mut req = self.client.request(method, url);
        #[cfg(feature = "gcp-auth")]
        if let Some(c) = &self.credentials {
            let token = c.access_token().await.map_err(|e| e.to_string())?;
            req = req.bearer_auth(token.token);
        }
        Ok(req)
    }

    /// Checks that the topic exists (at start-up: a missing topic is a configuration error,
    /// not a reason to fail every delivery).
    pub async fn check_topic(&self) -> Result<(), EventsError> {
        let url = format!("{}/v1/{}", self.base, self.topic.as_str());
        let response = self
            .request(reqwest::Method::GET, url)
            .await
            .map_err(EventsError::Topic)?
            .send()
            .await
            .map_err(|e| EventsError::Http(e.to_string()))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(EventsError::Topic(format!(
                "{} does not exist",
                self.topic.as_str()
            ))),
            s => Err(EventsError::Topic(format!(
                "{}: HTTP {s}",
                self.topic.as_str()
            ))),
        }
    }
}

#[async_trait]
impl Publisher for PubSubPublisher {
    async fn publish(&self, events: &[Event], traces: &[TraceParent]) -> Result<(), SendError> {
        let messages: Vec<serde_json::Value> = events
            .iter()
            .zip(traces)
            .map(|(e, trace)| {
                json!({
                    "data": base64::engine::general_purpose::STANDARD.encode(e.body()),
                    "attributes": {
                        "type": e.kind.as_str(),
                        "id": e.id.to_string(),
                        "traceparent": trace.to_string(),
                    },
                    "orderingKey": e.key,
                })
            })
            .collect();
        let url = format!("{}/v1/{}:publish", self.base, self.topic.as_str());
        let retry = |error: String| SendError::Retry { error, after: None };
        let response = self
            .request(reqwest::Method::POST, url)
            .await
            .map_err(retry)?
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .map_err(|e| retry(format!("publish failed: {e}")))?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            // A missing topic or a refused message is not fixed by retrying at once, but by
            // an operator: keep retrying on the schedule (the topic may be created).
            _ => {
                let text = response.text().await.unwrap_or_default();
                Err(retry(format!(
                    "publish: HTTP {status}: {}",
                    text.chars().take(300).collect::<String>()
                )))
            }
        }
    }
}
