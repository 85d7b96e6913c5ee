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

/// The fields Firestore's deserializer adds to every document it returns (never written
/// back). The document structs carry the same three fields inline: `#[serde(flatten)]` would
/// buffer the document and turn its timestamps into strings.
/// Reads a document's create or update time. The deserializer hands these synthetic fields
/// over as RFC 3339 strings on some paths and as timestamps on others; both are accepted.
fn meta_time<'de, D>(d: D) -> std::result::Result<Option<SystemTime>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<SystemTime>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a timestamp")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            DateTime::parse_from_rfc3339(v)
                .map(|t| Some(t.with_timezone(&Utc).into()))
                .map_err(E::custom)
        }
        fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(
            self,
            d: D2,
        ) -> std::result::Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            // The (seconds, nanoseconds) pair of a SystemTime.
            let secs: u64 = seq.next_element()?.unwrap_or_default();
            let nanos: u32 = seq.next_element()?.unwrap_or_default();
            Ok(Some(
                SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos),
            ))
        }
    }
    d.deserialize_any(V)
}

/// The raw string of a document id made by [`doc_id`].
pub(crate) fn doc_id_decode(id: &str) -> String {
    if !id.contains('%') {
        return id.to_owned();
    }
    let id = id
        .replace("%5F", "_")
        .replace("%2E", ".")
        .replace("%2F", "/");
    id.replace("%25", "%")
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Longest document id that fits a UUID losslessly (62^20 < 2^122).
const LEGACY_ID_MAX: usize = 20;

/// The order id of an order the original wrote under an automatic document id (20 letters and
/// digits). The id is packed losslessly into a version-8 UUID, so the document can be found
/// again from the UUID alone ([`legacy_order_doc_id`]); our own order ids are version 7.
/// Ids of any other shape get a name-based UUID (listed, but not addressable by id).
pub(crate) fn legacy_order_uuid(doc_id: &str) -> Uuid {
    let packable = doc_id.len() <= LEGACY_ID_MAX
        && !doc_id.is_empty()
        && doc_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !packable {
        return Uuid::new_v5(&Uuid::NAMESPACE_OID, doc_id.as_bytes());
    }
    // Bijective base 62: every string of up to 20 digits has its own number.
    let v = doc_id.bytes().fold(0u128, |v, b| {
        let digit = BASE62.iter().position(|&c| c == b).unwrap_or_default() as u128;
        v * 62 + digit + 1
    });
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&((v >> 74) as u64).to_be_bytes()[2..]);
    let mid = ((v >> 62) & 0xFFF) as u16;
    bytes[6] = (mid >> 8) as u8;
    bytes[7] = mid as u8;
    let low = (v & ((1u128 << 62) - 1)) as u64;
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    Uuid::new_v8(bytes)
}

/// The document id packed into a UUID by [`legacy_order_uuid`], if it is one.
pub(crate) fn legacy_order_doc_id(id: Uuid) -> Option<String> {
    if id.get_version_num() != 8 {
        return None;
    }
    let b = id.as_bytes();
    let high = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]) as u128;
    let mid = (u128::from(b[6] & 0x0F) << 8) | u128::from(b[7]);
    let mut low_bytes = [0u8; 8];
    low_bytes.copy_from_slice(&b[8..]);
    let low = u128::from(u64::from_be_bytes(low_bytes) & ((1u64 << 62) - 1));
    let mut v = (high << 74) | (mid << 62) | low;
    let mut out = Vec::new();
    while v > 0 {
        v -= 1;
        out.push(BASE62[(v % 62) as usize]);
        v /= 62;
        if out.len() > LEGACY_ID_MAX {
            return None;
        }
    }
    out.reverse();
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// The document id.
    #[serde(rename = "_firestore_id", default, skip_serializing)]
    pub(crate) id: Option<String>,
}

/// A user. The original writes `Users/{email as typed}` = `{password}` and nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserDoc {
    #[serde(default)]
    pub(crate) email: Option<String>,
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) role: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<SystemTime>,
    #[serde(default)]
    pub(crate) token_version: Option<i64>,
    #[serde(default)]
    pub(crate) email_verified: Option<bool>,
    /// The document id (read only; see [`Meta`]).
    #[serde(rename = "_firestore_id", default, skip_serializing)]
    pub(crate) fs_id: Option<String>,
    /// The document's create time (read only).
    #[serde(
        rename = "_firestore_created",
        default,
        skip_serializing,
        deserialize_with = "meta_time"
    )]
    pub(crate) fs_created: Option<SystemTime>,
}

impl UserDoc {
    pub(crate) fn from_user(u: &User) -> Self {
        UserDoc {
            email: Some(u.email.to_string()),
            password: u.password_hash.clone(),
            user_id: Some(u.id.to_string()),
            role: Some(u.role.as_str().to_owned()),
            created_at: Some(sys(u.created_at)),
            token_version: Some(i64::from(u.token_version)),
            email_verified: Some(u.email_verified),
            fs_id: None,
            fs_created: None,
        }
    }

    /// The document id: the email as the original stored it (any case).
    pub(crate) fn doc_id(&self) -> &str {
        self.fs_id.as_deref().unwrap_or_default()
    }

    pub(crate) fn into_user(self) -> Result<User> {
        let raw = self
            .email
            .as_deref()
            .unwrap_or(self.fs_id.as_deref().unwrap_or_default());
        let email = Email::parse(raw).map_err(|e| bad("email", e))?;
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
            created_at: self
                .created_at
                .or(self.fs_created)
                .map(utc)
                .unwrap_or(DateTime::UNIX_EPOCH),
            token_version: u32::try_from(self.token_version.unwrap_or(0))
                .map_err(|e| bad("token_version", e))?,
            email_verified: self.email_verified.unwrap_or(false),
        })
    }
}

/// A product. The original writes `Products/{id}` = `{product_name, quantity, status}`;
/// operators add fields of their own, which every write here leaves alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProductDoc {
    #[serde(default)]
    pub(crate) product_id: Option<String>,
    pub(crate) product_name: String,
    pub(crate) quantity: i64,
    pub(crate) status: String,
    /// Units held for checkouts (see `store/reservations.rs`), absent when none; a sharded
    /// product keeps them in its shards instead.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) reserved: i64,
    /// Whether the product's stock ledger has its opening entry (products the original wrote
    /// get it from the first transaction of ours that writes their document).
    #[serde(default)]
    pub(crate) ledger: bool,
    #[serde(default)]
    pub(crate) created_at: Option<SystemTime>,
    #[serde(default)]
    pub(crate) updated_at: Option<SystemTime>,
    /// The number of stock shards (see [`crate::shards`]); absent or 0: the stock is
    /// `quantity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shards: Option<u32>,
    /// The document id (read only; see [`Meta`]).
    #[serde(rename = "_firestore_id", default, skip_serializing)]
    pub(crate) fs_id: Option<String>,
    /// The document's create time (read only).
    #[serde(
        rename = "_firestore_created",
        default,
        skip_serializing,
        deserialize_with = "meta_time"
    )]
    pub(crate) fs_created: Option<SystemTime>,
    /// The document's update time (read only).
    #[serde(
        rename = "_firestore_updated",
        default,
        skip_serializing,
        deserialize_with = "meta_time"
    )]
    pub(crate) fs_updated: Option<SystemTime>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The product fields a stock change writes (a field mask: nothing else is touched; a
/// `reserved` of 0 is written as no field, as the original's products have none).
pub(crate) const PRODUCT_STOCK_FIELDS: [&str; 5] =
    ["quantity", "reserved", "status", "updated_at", "ledger"];

/// The product fields sharding or unsharding writes.
pub(crate) const PRODUCT_SHARD_FIELDS: [&str; 6] = [
    "quantity",
    "reserved",
    "status",
    "updated_at",
    "shards",
    "ledger",
];

impl ProductDoc {
    pub(crate) fn new(p: &NewProduct, now: DateTime<Utc>) -> Self {
        let mut doc = ProductDoc {
            product_id: Some(p.id.to_string()),
            product_name: p.name.clone(),
            quantity: p.quantity as i64,
            status: String::new(),
            reserved: 0,
            // Its opening entry is written with it.
            ledger: true,
            created_at: Some(sys(now)),
            updated_at: Some(sys(now)),
            shards: None,
            fs_id: None,
            fs_created: None,
            fs_updated: None,
        };
        doc.set_quantity(doc.quantity, now);
        doc
    }

    /// Sets the quantity and the status derived from it, as the original service did.
    /// Its stock shards, if it has any.
    pub(crate) fn shard_count(&self) -> Option<u32> {
        self.shards.filter(|n| *n > 0)
    }

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
        let created = self
            .created_at
            .or(self.fs_created)
            .map(utc)
            .unwrap_or(DateTime::UNIX_EPOCH);
        let id = match self.product_id {
            Some(id) => id,
            None => doc_id_decode(self.fs_id.as_deref().unwrap_or_default()),
        };
        Ok(Product {
            id: ProductId::new(id).map_err(|e| bad("product id", e))?,
            name: self.product_name,
            quantity: u64::try_from(self.quantity).map_err(|e| bad("quantity", e))?,
            reserved: u64::try_from(self.reserved).map_err(|e| bad("reserved", e))?,
            created_at: created,
            updated_at: self
                .updated_at
                .or(self.fs_updated)
                .map(utc)
                .unwrap_or(created),
        })
    }
}

/// An order. The original writes `Orders/{automatic id}` = `{buyer_email, product_id}`: one
/// unit, no status, no time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrderDoc {
    pub(crate) buyer_email: String,
    pub(crate) product_id: String,
    #[serde(default)]
    pub(crate) status: Option<OrderStatus>,
    #[serde(default)]
    pub(crate) created_at: Option<SystemTime>,
    #[serde(default)]
    pub(crate) order_id: Option<String>,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) quantity: Option<i64>,
    /// Every line of an order of more than one; absent for one line, which `product_id` and
    /// `quantity` hold (as the original's orders do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lines: Option<Vec<OrderLine>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) idempotency_key: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<SystemTime>,
    /// The document id (read only; see [`Meta`]).
    #[serde(rename = "_firestore_id", default, skip_serializing)]
    pub(crate) fs_id: Option<String>,
    /// The document's create time (read only).
    #[serde(
        rename = "_firestore_created",
        default,
        skip_serializing,
        deserialize_with = "meta_time"
    )]
    pub(crate) fs_created: Option<SystemTime>,
    /// The document's update time (read only).
    #[serde(
        rename = "_firestore_updated",
        default,
        skip_serializing,
        deserialize_with = "meta_time"
    )]
    pub(crate) fs_updated: Option<SystemTime>,
}

/// The order fields a status change writes.
pub(crate) const ORDER_STATUS_FIELDS: [&str; 2] = ["status", "updated_at"];

impl OrderDoc {
    pub(crate) fn from_order(o: &Order) -> Self {
        OrderDoc {
            buyer_email: o.buyer_email.to_string(),
            product_id: o.lines.first().product_id.to_string(),
            status: Some(o.status),
            created_at: Some(sys(o.created_at)),
            order_id: Some(o.id.to_string()),
            user_id: Some(o.user_id.to_string()),
            quantity: Some(i64::from(o.lines.first().quantity)),
            lines: o.lines.stored_list().map(<[OrderLine]>::to_vec),
            idempotency_key: o.idempotency_key.clone(),
            updated_at: Some(sys(o.updated_at)),
            fs_id: None,
            fs_created: None,
            fs_updated: None,
        }
    }

    /// Whether the original service wrote this order (it has no `order_id`).
    pub(crate) fn is_legacy(&self) -> bool {
        self.order_id.is_none()
    }

    /// The order's status; the original confirmed every order it accepted (by email).
    pub(crate) fn status(&self) -> OrderStatus {
        self.status.unwrap_or(OrderStatus::Confirmed)
    }

    pub(crate) fn into_order(self) -> Result<Order> {
        let buyer_email = Email::parse(&self.buyer_email).map_err(|e| bad("email", e))?;
        let created_at = self
            .created_at
            .or(self.fs_created)
            .map(utc)
            .unwrap_or(DateTime::UNIX_EPOCH);
        let status = self.status();
        Ok(Order {
            id: match &self.order_id {
                Some(id) => uuid(id)?,
                None => legacy_order_uuid(self.fs_id.as_deref().unwrap_or_default()),
            },
            user_id: match &self.user_id {
                Some(id) => uuid(id)?,
                None => legacy_user_id(buyer_email.as_str()),
            },
            buyer_email,
            lines: Lines::from_stored(
                ProductId::new(self.product_id).map_err(|e| bad("product id", e))?,
                Quantity::try_from(self.quantity.unwrap_or(1)).map_err(|e| bad("quantity", e))?,
                self.lines,
            )
            .map_err(|e| bad("lines", e))?,
            status,
            idempotency_key: self.idempotency_key,
            created_at,
            updated_at: self
                .updated_at
                .or(self.fs_updated)
                .map(utc)
                .unwrap_or(created_at),
        })
    }
}

/// An outbox message: an order confirmation (no `kind`, as before verification emails
/// existed) or `kind: "email_verification"` with `user_id` and `code`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NotificationDoc {
    pub(crate) notification_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) order_id: Option<String>,
    pub(crate) recipient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) quantity: Option<i64>,
    /// Every line of a confirmation of more than one (see [`MessageParts::lines`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lines: Option<Vec<ConfirmedLine>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<String>,
    pub(crate) status: NotificationStatus,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: SystemTime,
    // Absent rather than null when unset: every field written is indexed, and a notification
    // is written twice per order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lease_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lease_until: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
    pub(crate) created_at: SystemTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sent_at: Option<SystemTime>,
}

impl From<&Notification> for NotificationDoc {
    fn from(n: &Notification) -> Self {
        let m = MessageParts::from(&n.message);
        NotificationDoc {
            notification_id: n.id.to_string(),
            kind: m.kind,
            order_id: m.order_id.map(|id| id.to_string()),
            recipient: n.recipient.to_string(),
            product_id: m.product_id,
            product_name: m.product_name,
            quantity: m.quantity,
            lines: m.lines,
            user_id: m.user_id.map(|id| id.to_string()),
            code: m.code,
            status: n.status,
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
    /// The document of `n` after a transition of the domain's state machine, with this
    /// store's one rule of its own: a leased notification is due again when its lease runs out
    /// (`next_attempt_at` = `lease_until`), since a query cannot ask "lease missing or over".
    pub(crate) fn after(n: &Notification) -> NotificationDoc {
        let mut doc = NotificationDoc::from(n);
        if let Some(until) = doc.lease_until {
            doc.next_attempt_at = until;
        }
        doc
    }

    pub(crate) fn into_notification(self) -> Result<Notification> {
        let message = Message::try_from(MessageParts {
            kind: self.kind,
            order_id: self.order_id.as_deref().map(uuid).transpose()?,
            product_id: self.product_id,
            product_name: self.product_name,
            quantity: self.quantity,
            lines: self.lines,
            user_id: self.user_id.as_deref().map(uuid).transpose()?,
            code: self.code,
        })
        .map_err(|e| bad("notification", e))?;
        Ok(Notification {
            id: uuid(&self.notification_id)?,
            recipient: Email::parse(&self.recipient).map_err(|e| bad("email", e))?,
            message,
            status: self.status,
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

/// An order projected on `order_id`, to tell the original's orders from ours.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OrderIdDoc {
    #[serde(default)]
    pub(crate) order_id: Option<String>,
    #[serde(rename = "_firestore_id", default)]
    pub(crate) fs_id: Option<String>,
    #[serde(rename = "_firestore_created", default, deserialize_with = "meta_time")]
    pub(crate) fs_created: Option<SystemTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IdempotencyDoc {
    pub(crate) order_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CountDoc {
    pub(crate) count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_ids_round_trip_through_a_uuid() {
        for id in [
            "a",
            "0",
            "zzzzzzzzzzzzzzzzzzzz",
            "00000000000000000000",
            "Xk3lQm9PzR2sT7uVw0yB",
            "abc",
        ] {
            let uuid = legacy_order_uuid(id);
            assert_eq!(uuid.get_version_num(), 8, "{id}");
            assert_eq!(legacy_order_doc_id(uuid).as_deref(), Some(id), "{id}");
        }
        assert_ne!(legacy_order_uuid("ab"), legacy_order_uuid("ba"));
        assert_ne!(legacy_order_uuid("0"), legacy_order_uuid("00"));
        // Our own ids are v7 and never read as legacy ids.
        assert_eq!(legacy_order_doc_id(Uuid::now_v7()), None);
        // Other shapes get a stable, non-reversible id.
        let odd = legacy_order_uuid("order-with-dashes");
        assert_eq!(odd, legacy_order_uuid("order-with-dashes"));
        assert_eq!(legacy_order_doc_id(odd), None);
    }

    #[test]
    fn doc_ids_decode_to_the_raw_string() {
        for raw in [
            "product-1",
            "a/b",
            "50%",
            "..",
            "__x__",
            "Bob.Mixed@Example.com",
        ] {
            assert_eq!(doc_id_decode(&doc_id(raw)), raw);
        }
    }
}

/// A stock ledger entry (`StockLedger/{entry id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LedgerDoc {
    pub(crate) product_id: String,
    pub(crate) delta: i64,
    pub(crate) reserved_delta: i64,
    /// Absent where the transaction did not know it (a sharded product's order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reserved: Option<i64>,
    pub(crate) reason: StockReason,
    pub(crate) actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reference: Option<String>,
    /// The entry's time; absent on a checkpoint (which keeps it in `checkpoint_at`), so that
    /// retention's query by `at` never finds checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) at: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoint_at: Option<SystemTime>,
    /// The document id: the entry's id (read only).
    #[serde(rename = "_firestore_id", default, skip_serializing)]
    pub(crate) fs_id: Option<String>,
}

impl From<&LedgerEntry> for LedgerDoc {
    fn from(e: &LedgerEntry) -> Self {
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        LedgerDoc {
            product_id: e.product_id.to_string(),
            delta: e.delta,
            reserved_delta: e.reserved_delta,
            quantity: e.quantity.map(big),
            reserved: e.reserved.map(big),
            reason: e.reason,
            actor: e.actor.clone(),
            reference: e.reference.clone(),
            at: (e.reason != StockReason::Checkpoint).then(|| sys(e.at)),
            checkpoint_at: (e.reason == StockReason::Checkpoint).then(|| sys(e.at)),
            fs_id: None,
        }
    }
}

impl LedgerDoc {
    pub(crate) fn into_entry(self) -> Result<LedgerEntry> {
        let unsigned = |what: &str, n: Option<i64>| {
            n.map(|n| u64::try_from(n).map_err(|e| bad(what, e)))
                .transpose()
        };
        Ok(LedgerEntry {
            id: uuid(self.fs_id.as_deref().unwrap_or_default())?,
            product_id: ProductId::new(self.product_id).map_err(|e| bad("product id", e))?,
            delta: self.delta,
            reserved_delta: self.reserved_delta,
            quantity: unsigned("quantity", self.quantity)?,
            reserved: unsigned("reserved", self.reserved)?,
            reason: self.reason,
            actor: self.actor,
            reference: self.reference,
            at: utc(self
                .at
                .or(self.checkpoint_at)
                .unwrap_or(SystemTime::UNIX_EPOCH)),
        })
    }
}
