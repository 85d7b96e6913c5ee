//! Document shapes, and their conversion into domain types.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use inventory_core::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub(crate) fn sys(t: DateTime<Utc>) -> SystemTime {
    t.into()
}

pub(crate) fn utc(t: SystemTime) -> DateTime<Utc> {
    use chrono::SubsecRound;
    DateTime::<Utc>::from(t).trunc_subsecs(6)
}

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    Error::other(format!("stored {what} is invalid: {e}"))
}

fn uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| bad("id", e))
}

/// A Firestore document id for any string: `%` and `/` are percent-encoded, as are the ids
/// Firestore reserves (`.`, `..`, `__name__`). Ids without these characters, such as the
/// original service's `product-1` and emails, are unchanged.
pub(crate) fn doc_id(raw: &str) -> String {
    let mut id = raw.replace('%', "%25").replace('/', "%2F");
    if id == "." || id == ".." {
        id = id.replace('.', "%2E");
    } else if id.len() >= 4 && id.starts_with("__") && id.ends_with("__") {
        id = format!("%5F{}", &id[1..]);
    }
    id
}

/// The id of a user written by the original service (no `user_id` field).
pub(crate) fn legacy_user_id(email: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("mailto:{email}").as_bytes())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserDoc {
    pub(crate) email: String,
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) role: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<SystemTime>,
}

impl UserDoc {
    pub(crate) fn from_user(u: &User) -> Self {
        UserDoc {
            email: u.email.to_string(),
            password: u.password_hash.clone(),
            user_id: Some(u.id.to_string()),
            role: Some(u.role.as_str().to_owned()),
            created_at: Some(sys(u.created_at)),
        }
    }

    pub(crate) fn into_user(self) -> Result<User> {
        let email = Email::parse(&self.email).map_err(|e| bad("email", e))?;
        Ok(User {
            id: match &self.user_id {
                Some(id) => uuid(id)?,
                None => legacy_user_id(email.as_str()),
            },
            email,
            password_hash: self.password,
            role: match self.role {
                Some(r) => r.parse().map_err(|e| bad("role", e))?,
                None => Role::Customer,
            },
            created_at: self.created_at.map(utc).unwrap_or(DateTime::UNIX_EPOCH),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProductDoc {
    pub(crate) product_id: String,
    pub(crate) product_name: String,
    pub(crate) quantity: i64,
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) created_at: Option<SystemTime>,
    #[serde(default)]
    pub(crate) updated_at: Option<SystemTime>,
}

impl ProductDoc {
    pub(crate) fn new(p: &NewProduct, now: DateTime<Utc>) -> Self {
        let mut doc = ProductDoc {
            product_id: p.id.to_string(),
            product_name: p.name.clone(),
            quantity: p.quantity as i64,
            status: String::new(),
            created_at: Some(sys(now)),
            updated_at: Some(sys(now)),
        };
        doc.set_quantity(doc.quantity, now);
        doc
    }

    /// Sets the quantity and the status derived from it, as the original service did.
    pub(crate) fn set_quantity(&mut self, quantity: i64, now: DateTime<Utc>) {
        self.quantity = quantity;
        self.status = if quantity > 0 {
            ProductStatus::InStock
        } else {
            ProductStatus::OutOfStock
        }
        .as_str()
        .to_owned();
        self.updated_at = Some(sys(now));
    }

    pub(crate) fn into_product(self) -> Result<Product> {
        let created = self.created_at.map(utc).unwrap_or(DateTime::UNIX_EPOCH);
        Ok(Product {
            id: ProductId::new(self.product_id).map_err(|e| bad("product id", e))?,
            name: self.product_name,
            quantity: u64::try_from(self.quantity).map_err(|e| bad("quantity", e))?,
            created_at: created,
            updated_at: self.updated_at.map(utc).unwrap_or(created),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrderDoc {
    pub(crate) buyer_email: String,
    pub(crate) product_id: String,
    pub(crate) status: String,
    pub(crate) created_at: SystemTime,
    #[serde(default)]
    pub(crate) order_id: Option<String>,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) quantity: Option<i64>,
    #[serde(default)]
    pub(crate) idempotency_key: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<SystemTime>,
}

impl OrderDoc {
    pub(crate) fn from_order(o: &Order) -> Self {
        OrderDoc {
            buyer_email: o.buyer_email.to_string(),
            product_id: o.product_id.to_string(),
            status: o.status.as_str().to_owned(),
            created_at: sys(o.created_at),
            order_id: Some(o.id.to_string()),
            user_id: Some(o.user_id.to_string()),
            quantity: Some(i64::from(o.quantity.get())),
            idempotency_key: o.idempotency_key.clone(),
            updated_at: Some(sys(o.updated_at)),
        }
    }

    pub(crate) fn into_order(self, doc_id: &str) -> Result<Order> {
        let buyer_email = Email::parse(&self.buyer_email).map_err(|e| bad("email", e))?;
        let created_at = utc(self.created_at);
        Ok(Order {
            id: uuid(self.order_id.as_deref().unwrap_or(doc_id))?,
            user_id: match &self.user_id {
                Some(id) => uuid(id)?,
                None => legacy_user_id(buyer_email.as_str()),
            },
            buyer_email,
            product_id: ProductId::new(self.product_id).map_err(|e| bad("product id", e))?,
            quantity: Quantity::new(self.quantity.unwrap_or(1)).map_err(|e| bad("quantity", e))?,
            // Orders of the original service carry statuses of its own: show them as pending.
            status: self.status.parse().unwrap_or(OrderStatus::Pending),
            idempotency_key: self.idempotency_key,
            created_at,
            updated_at: self.updated_at.map(utc).unwrap_or(created_at),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NotificationDoc {
    pub(crate) notification_id: String,
    pub(crate) order_id: String,
    pub(crate) recipient: String,
    pub(crate) product_id: String,
    pub(crate) product_name: String,
    pub(crate) quantity: i64,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: SystemTime,
    pub(crate) lease_owner: Option<String>,
    pub(crate) lease_until: Option<SystemTime>,
    pub(crate) last_error: Option<String>,
    pub(crate) created_at: SystemTime,
    pub(crate) sent_at: Option<SystemTime>,
}

impl From<&Notification> for NotificationDoc {
    fn from(n: &Notification) -> Self {
        NotificationDoc {
            notification_id: n.id.to_string(),
            order_id: n.order_id.to_string(),
            recipient: n.recipient.to_string(),
            product_id: n.product_id.to_string(),
            product_name: n.product_name.clone(),
            quantity: i64::from(n.quantity.get()),
            status: n.status.as_str().to_owned(),
            attempts: i64::from(n.attempts),
            next_attempt_at: sys(n.next_attempt_at),
            lease_owner: n.lease_owner.clone(),
            lease_until: n.lease_until.map(sys),
            last_error: n.last_error.clone(),
            created_at: sys(n.created_at),
            sent_at: n.sent_at.map(sys),
        }
    }
}

impl NotificationDoc {
    pub(crate) fn into_notification(self) -> Result<Notification> {
        Ok(Notification {
            id: uuid(&self.notification_id)?,
            order_id: uuid(&self.order_id)?,
            recipient: Email::parse(&self.recipient).map_err(|e| bad("email", e))?,
            product_id: ProductId::new(self.product_id).map_err(|e| bad("product id", e))?,
            product_name: self.product_name,
            quantity: Quantity::new(self.quantity).map_err(|e| bad("quantity", e))?,
            status: self.status.parse().map_err(|e| bad("status", e))?,
            attempts: u32::try_from(self.attempts).map_err(|e| bad("attempts", e))?,
            next_attempt_at: utc(self.next_attempt_at),
            lease_owner: self.lease_owner,
            lease_until: self.lease_until.map(utc),
            last_error: self.last_error,
            created_at: utc(self.created_at),
            sent_at: self.sent_at.map(utc),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IdempotencyDoc {
    pub(crate) order_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CountDoc {
    pub(crate) count: i64,
}
