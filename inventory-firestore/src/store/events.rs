//! Events on Firestore. Each change writes its events (`Events/{event id}`) in its own
//! transaction ([`queue_event`]); the fan-out moves each into one document per destination
//! (`EventDeliveries/{id}`, the id derived from the event and the destination, so two
//! fan-outs of one event write the same documents and one of them fails) and deletes it, in
//! one transaction per event. A pending delivery carries `due_at`; claims are transactions
//! over the candidates a query found, so two dispatchers never lease the same delivery.
//!
//! Claims query `destination` and `due_at` together: real Firestore needs that composite
//! index (docs/operations.md); the emulator needs none.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use inventory_core::*;
use serde::{Deserialize, Serialize};

use super::*;

/// An event as stored until its fan-out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EventDoc {
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    key: String,
    occurred_at: SystemTime,
    /// The data, as JSON text.
    data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

impl EventDoc {
    fn new(e: &Event) -> Self {
        EventDoc {
            event_id: e.id.to_string(),
            kind: e.kind.as_str().to_owned(),
            key: e.key.clone(),
            occurred_at: sys(e.occurred_at),
            data: e.data.to_string(),
            traceparent: e.traceparent.clone(),
        }
    }

    fn into_event(self) -> Result<Event> {
        Ok(Event {
            id: Uuid::parse_str(&self.event_id).map_err(Error::other)?,
            kind: self.kind.parse()?,
            key: self.key,
            occurred_at: utc(self.occurred_at),
            data: serde_json::from_str(&self.data).map_err(Error::other)?,
            traceparent: self.traceparent,
        })
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeliveryDoc {
    delivery_id: String,
    // The event's fields, inline (serde's `flatten` loses Firestore's timestamps).
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    key: String,
    occurred_at: SystemTime,
    data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    destination: String,
    status: String,
    attempts: i64,
    next_attempt_at: SystemTime,
    /// `next_attempt_at` while pending, absent otherwise: what claims range over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_at: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivered_at: Option<SystemTime>,
    created_at: SystemTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_until: Option<SystemTime>,
}

impl DeliveryDoc {
    fn new(d: &Delivery) -> Self {
        let event = EventDoc::new(&d.event);
        DeliveryDoc {
            delivery_id: d.id.to_string(),
            event_id: event.event_id,
            kind: event.kind,
            key: event.key,
            occurred_at: event.occurred_at,
            data: event.data,
            traceparent: event.traceparent,
            destination: d.destination.to_string(),
            status: d.status.as_str().to_owned(),
            attempts: i64::from(d.attempts),
            next_attempt_at: sys(d.next_attempt_at),
            due_at: (d.status == DeliveryStatus::Pending).then(|| sys(d.next_attempt_at)),
            last_error: d.last_error.clone(),
            delivered_at: d.delivered_at.map(sys),
            created_at: sys(d.created_at),
            lease_owner: d.lease_owner.clone(),
            lease_until: d.lease_until.map(sys),
        }
    }

    fn into_delivery(self) -> Result<Delivery> {
        Ok(Delivery {
            id: Uuid::parse_str(&self.delivery_id).map_err(Error::other)?,
            event: EventDoc {
                event_id: self.event_id,
                kind: self.kind,
                key: self.key,
                occurred_at: self.occurred_at,
                data: self.data,
                traceparent: self.traceparent,
            }
            .into_event()?,
            destination: self.destination.parse()?,
            status: self.status.parse()?,
            attempts: u32::try_from(self.attempts).map_err(Error::other)?,
            next_attempt_at: utc(self.next_attempt_at),
            last_error: self.last_error,
            delivered_at: self.delivered_at.map(utc),
            created_at: utc(self.created_at),
            lease_owner: self.lease_owner,
            lease_until: self.lease_until.map(utc),
        })
    }
}

/// A webhook endpoint as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WebhookDoc {
    webhook_id: String,
    url: String,
    events: Vec<String>,
    secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled: Option<String>,
    created_at: SystemTime,
}

impl WebhookDoc {
    fn new(w: &WebhookEndpoint) -> Self {
        WebhookDoc {
            webhook_id: w.id.to_string(),
            url: w.url.clone(),
            events: w.events.iter().map(|e| e.as_str().to_owned()).collect(),
            secrets: w.secrets.iter().map(|s| s.expose().to_owned()).collect(),
            disabled: w.disabled.clone(),
            created_at: sys(w.created_at),
        }
    }

    fn into_endpoint(self) -> Result<WebhookEndpoint> {
        Ok(WebhookEndpoint {
            id: Uuid::parse_str(&self.webhook_id).map_err(Error::other)?,
            url: self.url,
            events: self
                .events
                .iter()
                .map(|e| e.parse())
                .collect::<Result<_>>()?,
            secrets: self
                .secrets
                .iter()
                .map(|s| WebhookSecret::parse(s))
                .collect::<Result<_>>()?,
            disabled: self.disabled,
            created_at: utc(self.created_at),
        })
    }
}

/// Queues an event's document in a transaction (created: a retried write of the same event
/// fails instead of writing it twice).
pub(super) fn queue_event(
    db: &FirestoreDb,
    tx: &mut impl firestore::FirestoreTransactionOps,
    cols: &Collections,
    event: &Event,
) -> TxResult<()> {
    write(
        db,
        tx,
        cols.events.as_str(),
        event.id.to_string(),
        &EventDoc::new(event),
        Precondition::Missing,
        None,
    )
}

/// The id of an event's delivery to a destination: the event id's time half, and its other
/// half mixed with the destination (FNV-1a), so it is the same for every fan-out of the event.
fn delivery_id(event: Uuid, destination: &Destination) -> Uuid {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in destination.to_string().bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let id = event.as_u128();
    // Keep the version and variant bits of the event's id.
    let mixed = (u128::from(hash) & 0x0fff_ffff_ffff_ffff) ^ (id & 0xffff_ffff_ffff_ffff);
    Uuid::from_u128(
        (id & !0xffff_ffff_ffff_ffff)
            | (mixed & 0x3fff_ffff_ffff_ffff)
            | (id & 0xc000_0000_0000_0000),
    )
}

impl FirestoreStore {
    async fn all_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        let docs: Vec<WebhookDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.webhooks.as_str())
            .order(|o| o.fields([o.field(DOC_NAME).ascending()]))
            .obj()
            .query()
            .await
            .map_err(map)?;
        docs.into_iter().map(WebhookDoc::into_endpoint).collect()
    }

    async fn deliveries_where(
        &self,
        field: &'static str,
        value: String,
        page: Option<Page>,
    ) -> Result<Vec<Delivery>> {
        let query = self
            .db
            .fluent()
            .select()
            .from(self.cols.deliveries.as_str())
            .filter(|q| q.for_all([q.field(field).eq(value.clone())]))
            .order(|o| o.fields([o.field(DOC_NAME).ascending()]));
        let docs: Vec<DeliveryDoc> = match page {
            Some(page) => {
                let after = page
                    .after
                    .as_deref()
                    .map(|a| self.after_doc(&self.cols.deliveries, a));
                query
                    .start_after(after)
                    .offset(page.offset)
                    .limit(page.limit)
                    .obj()
                    .query()
                    .await
            }
            None => query.obj().query().await,
        }
        .map_err(map)?;
        docs.into_iter().map(DeliveryDoc::into_delivery).collect()
    }

    /// Changes deliveries in one transaction: `change` sees each as it is now (absent ones
    /// are skipped) and says whether to write it. Returns the written ones.
    async fn change_deliveries<F>(&self, ids: Vec<Uuid>, change: F) -> Result<Vec<Delivery>>
    where
        F: Fn(&mut Delivery) -> Result<bool> + Clone + Send + Sync + 'static,
    {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.tx(
            (self.cols.clone(), ids, change),
            move |db, tx, (cols, ids, change)| {
                async move {
                    let mut changed = Vec::new();
                    for id in &ids {
                        let doc: Option<DeliveryDoc> =
                            read(&db, cols.deliveries.as_str(), id.to_string()).await?;
                        let Some(doc) = doc else { continue };
                        let mut d = checked(doc.into_delivery())?;
                        if !checked(change(&mut d))? {
                            continue;
                        }
                        write(
                            &db,
                            tx,
                            cols.deliveries.as_str(),
                            id.to_string(),
                            &DeliveryDoc::new(&d),
                            Precondition::Exists,
                            None,
                        )?;
                        changed.push(d);
                    }
                    Ok(changed)
                }
                .boxed()
            },
        )
        .await
    }
}

#[async_trait]
impl EventStore for FirestoreStore {
    async fn create_webhook(&self, w: &WebhookEndpoint) -> Result<()> {
        self.db
            .fluent()
            .insert()
            .into(self.cols.webhooks.as_str())
            .document_id(w.id.to_string())
            .object(&WebhookDoc::new(w))
            .execute::<()>()
            .await
            .map_err(map)
            .map_err(|e| match e {
                Error::Conflict(_) => Error::AlreadyExists(format!("webhook {}", w.id)),
                e => e,
            })
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        self.all_webhooks().await
    }

    async fn update_webhook(&self, w: &WebhookEndpoint) -> Result<()> {
        let doc = WebhookDoc::new(w);
        self.tx(
            (self.cols.clone(), doc, w.id),
            move |db, tx, (cols, doc, id)| {
                async move {
                    let found: Option<WebhookDoc> =
                        read(&db, cols.webhooks.as_str(), id.to_string()).await?;
                    if found.is_none() {
                        return abort(Error::NotFound(format!("webhook {id}")));
                    }
                    write(
                        &db,
                        tx,
                        cols.webhooks.as_str(),
                        id.to_string(),
                        &doc,
                        Precondition::Exists,
                        Some(&["secrets", "disabled"]),
                    )
                }
                .boxed()
            },
        )
        .await
    }

    async fn delete_webhook(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        if self
            .get::<WebhookDoc>(&self.cols.webhooks, &id.to_string())
            .await?
            .is_none()
        {
            return Err(Error::NotFound(format!("webhook {id}")));
        }
        self.db
            .fluent()
            .delete()
            .from(self.cols.webhooks.as_str())
            .document_id(id.to_string())
            .execute()
            .await
            .map_err(map)?;
        // Its pending deliveries fail, a page of transactions at a time.
        let pending = self
            .deliveries_where("destination", Destination::Webhook(id).to_string(), None)
            .await?;
        let ids: Vec<Uuid> = pending
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
            .map(|d| d.id)
            .collect();
        for chunk in ids.chunks(100) {
            self.change_deliveries(chunk.to_vec(), move |d| {
                if d.status != DeliveryStatus::Pending {
                    return Ok(false);
                }
                d.status = DeliveryStatus::Failed;
                d.last_error = Some(ENDPOINT_DELETED.to_owned());
                d.lease_owner = None;
                d.lease_until = None;
                d.next_attempt_at = now;
                Ok(true)
            })
            .await?;
        }
        Ok(())
    }

    async fn fan_out(&self, always: &[Destination], now: DateTime<Utc>, limit: u32) -> Result<u64> {
        let waiting: Vec<EventDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.events.as_str())
            .order(|o| o.fields([o.field(DOC_NAME).ascending()]))
            .limit(limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        if waiting.is_empty() {
            return Ok(0);
        }
        let hooks: Vec<WebhookEndpoint> = self.all_webhooks().await?;
        let mut done = 0;
        for doc in waiting {
            let event = doc.into_event()?;
            let targets: Vec<Destination> = hooks
                .iter()
                .filter(|w| w.wants(event.kind))
                .map(|w| Destination::Webhook(w.id))
                .chain(always.iter().cloned())
                .collect();
            let moved = self
                .tx(
                    (self.cols.clone(), event, targets),
                    move |db, tx, (cols, event, targets)| {
                        async move {
                            let still: Option<EventDoc> =
                                read(&db, cols.events.as_str(), event.id.to_string()).await?;
                            if still.is_none() {
                                // Another dispatcher fanned it out.
                                return Ok(false);
                            }
                            for destination in targets {
                                let mut d = Delivery::new(event.clone(), destination.clone(), now);
                                d.id = delivery_id(event.id, &destination);
                                write(
                                    &db,
                                    tx,
                                    cols.deliveries.as_str(),
                                    d.id.to_string(),
                                    &DeliveryDoc::new(&d),
                                    Precondition::Missing,
                                    None,
                                )?;
                            }
                            db.fluent()
                                .delete()
                                .from(cols.events.as_str())
                                .document_id(event.id.to_string())
                                .add_to_transaction(tx)
                                .map_err(fs)?;
                            Ok(true)
                        }
                        .boxed()
                    },
                )
                .await;
            match moved {
                Ok(true) => done += 1,
                // Lost the race to another fan-out of the same event.
                Ok(false) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    async fn due_destinations(&self, now: DateTime<Utc>) -> Result<Vec<Destination>> {
        let docs: Vec<DeliveryDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.deliveries.as_str())
            .filter(|q| q.for_all([q.field("due_at").less_than_or_equal(sys(now))]))
            .limit(1000)
            .obj()
            .query()
            .await
            .map_err(map)?;
        let mut due: Vec<Destination> = Vec::new();
        for doc in docs {
            let d = doc.into_delivery()?;
            if d.is_due(now) && !due.contains(&d.destination) {
                due.push(d.destination);
            }
        }
        due.sort();
        Ok(due)
    }

    async fn claim_deliveries(
        &self,
        destination: &Destination,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let until = now + chrono::Duration::from_std(lease).map_err(Error::other)?;
        let candidates: Vec<DeliveryDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.deliveries.as_str())
            .filter(|q| {
                q.for_all([
                    q.field("destination").eq(destination.to_string()),
                    q.field("due_at").less_than_or_equal(sys(now)),
                ])
            })
            .limit(limit.saturating_mul(2).max(limit))
            .obj()
            .query()
            .await
            .map_err(map)?;
        let mut ids: Vec<(Uuid, Uuid)> = candidates
            .into_iter()
            .filter_map(|d| d.into_delivery().ok())
            .filter(|d| d.is_due(now))
            .map(|d| (d.event.id, d.id))
            .collect();
        ids.sort();
        ids.truncate(limit as usize);
        let owner = owner.to_owned();
        let mut claimed = self
            .change_deliveries(ids.into_iter().map(|(_, id)| id).collect(), move |d| {
                // Read again in the transaction: only what is still due is leased.
                if !d.is_due(now) {
                    return Ok(false);
                }
                d.lease_to(&owner, until);
                Ok(true)
            })
            .await?;
        claimed.sort_by_key(|d| (d.event.id, d.id));
        Ok(claimed)
    }

    async fn finish_delivery(
        &self,
        id: Uuid,
        owner: &str,
        attempt: &Attempt,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (owner, attempt) = (owner.to_owned(), attempt.clone());
        let changed = self
            .change_deliveries(vec![id], move |d| {
                d.finish(&owner, &attempt, now)?;
                Ok(true)
            })
            .await?;
        if changed.is_empty() {
            return Err(Error::NotFound(format!("delivery {id}")));
        }
        Ok(())
    }

    async fn list_deliveries(&self, status: DeliveryStatus, page: Page) -> Result<Vec<Delivery>> {
        self.deliveries_where("status", status.as_str().to_owned(), Some(page))
            .await
    }

    async fn replay_deliveries(&self, which: &Replay, now: DateTime<Utc>) -> Result<u64> {
        let live: Vec<Destination> = self
            .all_webhooks()
            .await?
            .into_iter()
            .filter(|w| w.disabled.is_none())
            .map(|w| Destination::Webhook(w.id))
            .chain([Destination::PubSub])
            .collect();
        let failed = self
            .deliveries_where("status", DeliveryStatus::Failed.as_str().to_owned(), None)
            .await?;
        let ids: Vec<Uuid> = failed
            .into_iter()
            .filter(|d| d.selected_by(which) && live.contains(&d.destination))
            .map(|d| d.id)
            .collect();
        let mut n = 0;
        for chunk in ids.chunks(100) {
            n += self
                .change_deliveries(chunk.to_vec(), move |d| Ok(d.replay(now)))
                .await?
                .len() as u64;
        }
        Ok(n)
    }

    async fn set_low_stock_threshold(
        &self,
        product: &ProductId,
        threshold: Option<u64>,
    ) -> Result<()> {
        let threshold = threshold
            .map(i64::try_from)
            .transpose()
            .map_err(|_| Error::invalid("threshold", "too large"))?;
        self.tx(
            (self.cols.clone(), product.clone()),
            move |db, tx, (cols, product)| {
                async move {
                    let key = doc_id(product.as_str());
                    let doc: Option<ProductDoc> = read(&db, cols.products.as_str(), &key).await?;
                    let Some(mut doc) = doc else {
                        return abort(Error::NotFound(format!("product {product}")));
                    };
                    doc.low_stock_threshold = threshold;
                    write(
                        &db,
                        tx,
                        cols.products.as_str(),
                        &key,
                        &doc,
                        Precondition::Exists,
                        Some(&["low_stock_threshold"]),
                    )
                }
                .boxed()
            },
        )
        .await
    }

    async fn low_stock_threshold(&self, product: &ProductId) -> Result<Option<u64>> {
        let doc: ProductDoc = self
            .get(&self.cols.products, &doc_id(product.as_str()))
            .await?
            .ok_or_else(|| Error::NotFound(format!("product {product}")))?;
        Ok(doc.low_stock_threshold.and_then(|t| u64::try_from(t).ok()))
    }

    async fn delivery_counts(&self) -> Result<Vec<(Destination, DeliveryCounts)>> {
        // Pending and failed ones are read (few, while deliveries flow); delivered ones are
        // counted by an aggregation per destination.
        let mut counts: BTreeMap<Destination, DeliveryCounts> = BTreeMap::new();
        for status in [DeliveryStatus::Pending, DeliveryStatus::Failed] {
            for d in self
                .deliveries_where("status", status.as_str().to_owned(), None)
                .await?
            {
                counts.entry(d.destination.clone()).or_default().add(&d);
            }
        }
        let destinations: Vec<Destination> = self
            .all_webhooks()
            .await?
            .into_iter()
            .map(|w| Destination::Webhook(w.id))
            .chain([Destination::PubSub])
            .chain(counts.keys().cloned())
            .collect();
        for destination in destinations {
            let result: Vec<CountDoc> = self
                .db
                .fluent()
                .select()
                .from(self.cols.deliveries.as_str())
                .filter(|q| {
                    q.for_all([
                        q.field("destination").eq(destination.to_string()),
                        q.field("status").eq(DeliveryStatus::Delivered.as_str()),
                    ])
                })
                .aggregate(|a| a.fields([a.field("count").count()]))
                .obj()
                .query()
                .await
                .map_err(map)?;
            let delivered = result.first().map_or(0, |c| c.count.max(0).unsigned_abs());
            if delivered > 0 {
                counts.entry(destination).or_default().delivered = delivered;
            }
        }
        Ok(counts.into_iter().collect())
    }
}
