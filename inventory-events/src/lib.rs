//! Where the inventory kit's events go besides email: webhooks that follow the
//! [Standard Webhooks](https://www.standardwebhooks.com/) specification ([`HttpWebhookSender`],
//! [`sign`]) and Google Pub/Sub ([`PubSubPublisher`]). Both implement the ports of
//! [`inventory_core::events`], which the [`EventDispatcher`](inventory_core::EventDispatcher)
//! drives.
//!
//! ```
//! use inventory_core::WebhookSecret;
//! // The specification's published test vector.
//! let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let signature = inventory_events::sign(
//!     &[secret],
//!     "msg_p5jXN8AQM9LWM0D4loKWxJek",
//!     1614265330,
//!     r#"{"test": 2432232314}"#,
//! );
//! assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//! ```
#![deny(missing_docs)]

mod address;
mod pubsub;
mod signature;
mod webhook;

pub use address::{AddressPolicy, is_forbidden};
pub use pubsub::{PubSubPublisher, Topic};
pub use signature::sign;
pub use webhook::{HttpWebhookSender, WebhookConfig};

/// What can go wrong setting up a destination.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// A URL that is not an http(s) URL with a host.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// A host that resolves to an address the sender may not reach (private, loopback,
    /// link-local) while those are not allowed.
    #[error("url: {0}")]
    AddressRefused(String),
    /// A topic name that is not `projects/P/topics/T`, or one that does not exist.
    #[error("PUBSUB_TOPIC: {0}")]
    Topic(String),
    /// The HTTP client could not be built, or a request failed.
    #[error("http: {0}")]
    Http(String),
}
