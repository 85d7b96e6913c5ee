//! Orders.

use super::*;

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
