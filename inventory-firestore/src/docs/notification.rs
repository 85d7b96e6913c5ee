//! The outbox.

use super::*;

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
