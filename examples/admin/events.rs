//! The event commands: webhook endpoints and the deliveries of every destination.

use clap::Subcommand;
use inventory_kit::Settings;
use inventory_kit::core::transfer;
use inventory_kit::core::{DeliveryStatus, Destination, EventType, Replay, Store, WebhookEndpoint};
use serde_json::json;

use crate::output::{print_rows, say};

type Failure = Box<dyn std::error::Error>;

#[derive(Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Lists endpoints (never their secrets).
    List,
    /// Creates an endpoint and prints its signing secret (shown this once). The URL is
    /// checked as the server checks it (`WEBHOOK_ALLOW_PRIVATE`).
    Create {
        url: String,
        /// Event types, comma-separated (default: all of them).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// Deletes an endpoint; its pending deliveries fail.
    Delete { id: uuid::Uuid },
    /// Starts a secret rotation: prints the new secret; the previous one signs too until the
    /// next rotation.
    Rotate { id: uuid::Uuid },
}

#[derive(Subcommand)]
pub(crate) enum DeliveriesCommand {
    /// Each destination's deliveries, counted.
    Counts,
    /// Lists deliveries with a status (default failed) and their last error.
    List {
        #[arg(long, default_value = "failed")]
        status: String,
    },
    /// Puts failed deliveries back in the queue: one (`--id`), a destination's
    /// (`--destination webhook:ID` or `pubsub`), or every one created since a time (`--since`,
    /// RFC 3339).
    Retry {
        #[arg(long, conflicts_with_all = ["destination", "since"])]
        id: Option<uuid::Uuid>,
        #[arg(long, conflicts_with = "since")]
        destination: Option<String>,
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
}

pub(crate) async fn webhooks(
    settings: &Settings,
    store: &dyn Store,
    json: bool,
    command: WebhooksCommand,
) -> Result<(), Failure> {
    match command {
        WebhooksCommand::List => {
            let rows = store
                .list_webhooks()
                .await?
                .into_iter()
                .map(|w| {
                    let events: Vec<&str> = w.events.iter().map(|e| e.as_str()).collect();
                    vec![
                        json!(w.id.to_string()),
                        json!(w.url),
                        json!(events.join(",")),
                        json!(w.disabled),
                    ]
                })
                .collect();
            print_rows(json, &["id", "url", "events", "disabled"], rows);
        }
        WebhooksCommand::Create { url, events } => {
            let events = if events.is_empty() {
                EventType::ALL.to_vec()
            } else {
                events
                    .iter()
                    .map(|e| e.trim().parse())
                    .collect::<Result<Vec<EventType>, _>>()?
            };
            let endpoint = WebhookEndpoint::new(&url, events, inventory_kit::core::now())?;
            settings
                .events
                .webhook_sender()?
                .check_url(&endpoint.url)
                .await?;
            store.create_webhook(&endpoint).await?;
            let secret = endpoint.secrets[0].expose();
            if json {
                println!(
                    "{}",
                    json!({"id": endpoint.id.to_string(), "url": endpoint.url, "secret": secret})
                );
            } else {
                println!("{}\nsecret (shown once): {secret}", endpoint.id);
            }
        }
        WebhooksCommand::Delete { id } => {
            store.delete_webhook(id, inventory_kit::core::now()).await?;
            say(json, format!("webhook {id} deleted"));
        }
        WebhooksCommand::Rotate { id } => {
            let mut endpoint = store
                .list_webhooks()
                .await?
                .into_iter()
                .find(|w| w.id == id)
                .ok_or_else(|| format!("webhook {id} does not exist"))?;
            let fresh = endpoint.rotate();
            store.update_webhook(&endpoint).await?;
            say(json, format!("new secret (shown once): {}", fresh.expose()));
        }
    }
    Ok(())
}

pub(crate) async fn deliveries(
    store: &dyn Store,
    json: bool,
    command: DeliveriesCommand,
) -> Result<(), Failure> {
    match command {
        DeliveriesCommand::Counts => {
            let rows = store
                .delivery_counts()
                .await?
                .into_iter()
                .map(|(d, c)| {
                    vec![
                        json!(d.to_string()),
                        json!(c.pending),
                        json!(c.retrying),
                        json!(c.delivered),
                        json!(c.failed),
                        json!(c.oldest_pending.map(|t| t.to_rfc3339())),
                    ]
                })
                .collect();
            print_rows(
                json,
                &[
                    "destination",
                    "pending",
                    "retrying",
                    "delivered",
                    "failed",
                    "oldest_pending",
                ],
                rows,
            );
        }
        DeliveriesCommand::List { status } => {
            let status: DeliveryStatus = status.parse()?;
            let all = transfer::collect_all(|page| store.list_deliveries(status, page)).await?;
            let rows = all
                .iter()
                .map(|d| {
                    vec![
                        json!(d.id.to_string()),
                        json!(d.destination.to_string()),
                        json!(d.event.kind.as_str()),
                        json!(d.event.key),
                        json!(d.attempts),
                        json!(d.last_error),
                    ]
                })
                .collect();
            print_rows(
                json,
                &[
                    "delivery_id",
                    "destination",
                    "event",
                    "key",
                    "attempts",
                    "last_error",
                ],
                rows,
            );
        }
        DeliveriesCommand::Retry {
            id,
            destination,
            since,
        } => {
            let which = match (id, destination, since) {
                (Some(id), None, None) => Replay::One(id),
                (None, Some(d), None) => Replay::Destination(d.parse::<Destination>()?),
                (None, None, Some(t)) => Replay::Since(t),
                _ => return Err("name --id, --destination or --since".into()),
            };
            let n = store
                .replay_deliveries(&which, inventory_kit::core::now())
                .await?;
            if matches!(which, Replay::One(_)) && n == 0 {
                return Err(
                    "that delivery does not exist, is not failed, or its endpoint is gone".into(),
                );
            }
            say(json, format!("{n} deliveries queued again"));
        }
    }
    Ok(())
}
