//! The outbox: notifications, their messages, statuses and transitions.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

use super::*;

/// The delivery state of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    /// Waiting to be sent (possibly after a failed attempt).
    Pending,
    /// Accepted by the mail server.
    Sent,
    /// Given up on; `last_error` says why.
    Failed,
    /// Its order was cancelled before it was sent: never sent, never retried.
    Cancelled,
}

text_enum!(NotificationStatus, "status" { Pending => "pending", Sent => "sent", Failed => "failed", Cancelled => "cancelled" });

/// What an email of the outbox says.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// The confirmation of an order, enqueued with it.
    OrderConfirmation {
        /// The order it confirms.
        order_id: Uuid,
        /// The order's lines, with each product's name at the time of ordering (never empty).
        lines: Vec<ConfirmedLine>,
    },
    /// A code that proves the recipient receives mail at their address
    /// ([`Auth::verify_email`](crate::Auth::verify_email)).
    EmailVerification {
        /// The user whose address it verifies.
        user_id: Uuid,
        /// The signed, expiring code (hidden in `Debug`).
        code: String,
    },
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::OrderConfirmation { order_id, lines } => f
                .debug_struct("OrderConfirmation")
                .field("order_id", order_id)
                .field("lines", lines)
                .finish(),
            Message::EmailVerification { user_id, .. } => f
                .debug_struct("EmailVerification")
                .field("user_id", user_id)
                .finish_non_exhaustive(),
        }
    }
}

impl Message {
    /// The stored name of the kind: `order_confirmation` or `email_verification`.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::OrderConfirmation { .. } => "order_confirmation",
            Message::EmailVerification { .. } => "email_verification",
        }
    }
}

/// A line of a confirmed order as its email shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmedLine {
    /// The product ordered.
    pub product_id: ProductId,
    /// The product's name at the time of ordering.
    pub product_name: String,
    /// Units ordered.
    pub quantity: Quantity,
}

/// A [`Message`] as flat optional fields, the way stores and exports keep it: `kind` is absent
/// (or `order_confirmation`) for an order confirmation, `email_verification` otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageParts {
    /// `None` for an order confirmation (as before verification emails existed).
    pub kind: Option<String>,
    /// Confirmations: the order.
    pub order_id: Option<Uuid>,
    /// Confirmations: the first line's product (the only one of a one-line order).
    pub product_id: Option<String>,
    /// Confirmations: the first line's product name.
    pub product_name: Option<String>,
    /// Confirmations: the first line's units.
    pub quantity: Option<i64>,
    /// Confirmations of more than one line: every line (the first included); `None` for one
    /// line, which the fields above hold as every release has stored it.
    pub lines: Option<Vec<ConfirmedLine>>,
    /// Verifications: the user.
    pub user_id: Option<Uuid>,
    /// Verifications: the code.
    pub code: Option<String>,
}

impl From<&Message> for MessageParts {
    fn from(m: &Message) -> Self {
        match m {
            Message::OrderConfirmation { order_id, lines } => {
                let first = lines.first();
                MessageParts {
                    order_id: Some(*order_id),
                    product_id: first.map(|l| l.product_id.to_string()),
                    product_name: first.map(|l| l.product_name.clone()),
                    quantity: first.map(|l| i64::from(l.quantity)),
                    lines: (lines.len() > 1).then(|| lines.clone()),
                    ..MessageParts::default()
                }
            }
            Message::EmailVerification { user_id, code } => MessageParts {
                kind: Some(m.kind().to_owned()),
                user_id: Some(*user_id),
                code: Some(code.clone()),
                ..MessageParts::default()
            },
        }
    }
}

impl TryFrom<MessageParts> for Message {
    type Error = Error;
    /// A kind without its fields, or an unknown kind, is [`Error::InvalidInput`].
    fn try_from(p: MessageParts) -> Result<Message> {
        let missing = |field: &str| Error::invalid("notification", format!("no {field}"));
        match p.kind.as_deref() {
            None | Some("order_confirmation") => Ok(Message::OrderConfirmation {
                order_id: p.order_id.ok_or_else(|| missing("order_id"))?,
                lines: match p.lines {
                    Some(lines) if !lines.is_empty() => lines,
                    _ => vec![ConfirmedLine {
                        product_id: ProductId::new(
                            p.product_id.ok_or_else(|| missing("product_id"))?,
                        )?,
                        product_name: p.product_name.ok_or_else(|| missing("product_name"))?,
                        quantity: Quantity::try_from(
                            p.quantity.ok_or_else(|| missing("quantity"))?,
                        )?,
                    }],
                },
            }),
            Some("email_verification") => Ok(Message::EmailVerification {
                user_id: p.user_id.ok_or_else(|| missing("user_id"))?,
                code: p.code.ok_or_else(|| missing("code"))?,
            }),
            Some(other) => Err(Error::invalid(
                "notification",
                format!("unknown kind {other:?}"),
            )),
        }
    }
}

/// An email waiting in the outbox (an order confirmation or an address verification), with
/// everything needed to render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Stable id; also the base of the email's `Message-ID`.
    pub id: Uuid,
    /// Who receives it.
    pub recipient: Email,
    /// What it says.
    pub message: Message,
    /// Delivery state.
    pub status: NotificationStatus,
    /// Attempts started so far (counted when claimed).
    pub attempts: u32,
    /// Not to be tried before this time.
    pub next_attempt_at: DateTime<Utc>,
    /// The dispatcher holding the lease, if any.
    pub lease_owner: Option<String>,
    /// When the lease runs out.
    pub lease_until: Option<DateTime<Utc>>,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When the mail server accepted it.
    pub sent_at: Option<DateTime<Utc>>,
}

/// The outbox's state machine, written once for every backend that changes notifications in
/// memory (the in-memory store; Firestore reads a document, applies these, writes it back; SQL
/// states the same rules as conditional `UPDATE`s, checked by the conformance suite):
///
/// ```text
/// pending --claim--> pending (leased) --mark_sent--> sent
///    ^                  |  \--mark_failed(next)--> pending (due later)
///    |                  |   \-mark_failed(none)--> failed --retry--> pending
///    +--lease runs out--+
/// pending (leased or not) --order cancelled--> cancelled
/// ```
impl Notification {
    /// Whether retention may delete it: done (sent, or cancelled with its order) and written
    /// before `before`. Pending and failed ones are kept whatever their age.
    pub fn prunable(&self, before: DateTime<Utc>) -> bool {
        matches!(
            self.status,
            NotificationStatus::Sent | NotificationStatus::Cancelled
        ) && self.created_at < before
    }

    /// Whether a claim at `now` may take it: pending, due, and not leased (or its lease ran
    /// out).
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.status == NotificationStatus::Pending
            && self.next_attempt_at <= now
            && self.lease_until.is_none_or(|until| until < now)
    }

    /// Leases it to `owner` until `until`, counting one attempt: what a claim does.
    pub fn lease_to(&mut self, owner: &str, until: DateTime<Utc>) {
        self.lease_owner = Some(owner.to_owned());
        self.lease_until = Some(until);
        self.attempts += 1;
    }

    /// Checks that `owner` holds its lease: pending and leased to `owner`, else
    /// [`Error::LeaseLost`] (which includes a notification cancelled with its order, or
    /// claimed by another dispatcher after the lease ran out).
    pub fn check_lease(&self, owner: &str) -> Result<()> {
        if self.status == NotificationStatus::Pending && self.lease_owner.as_deref() == Some(owner)
        {
            Ok(())
        } else {
            Err(Error::LeaseLost(self.id))
        }
    }

    /// Extends `owner`'s lease until `until` (the dispatcher's heartbeat).
    pub fn extend_lease(&mut self, owner: &str, until: DateTime<Utc>) -> Result<()> {
        self.check_lease(owner)?;
        self.lease_until = Some(until);
        Ok(())
    }

    /// Records the mail server's acceptance: sent at `now`, lease released, error cleared.
    pub fn mark_sent(&mut self, owner: &str, now: DateTime<Utc>) -> Result<()> {
        self.check_lease(owner)?;
        self.status = NotificationStatus::Sent;
        self.sent_at = Some(now);
        self.last_error = None;
        self.release();
        Ok(())
    }

    /// Records a failed attempt: pending again from `next_attempt_at`, or failed for good when
    /// that is `None`; the lease is released and the error kept.
    pub fn mark_failed(
        &mut self,
        owner: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.check_lease(owner)?;
        self.last_error = Some(error.to_owned());
        self.release();
        match next_attempt_at {
            Some(at) => self.next_attempt_at = at,
            None => self.status = NotificationStatus::Failed,
        }
        Ok(())
    }

    /// Puts a failed notification back to pending, due at `now`, with its attempts reset;
    /// returns whether it was failed (anything else is left as it is).
    pub fn retry(&mut self, now: DateTime<Utc>) -> bool {
        if self.status != NotificationStatus::Failed {
            return false;
        }
        self.status = NotificationStatus::Pending;
        self.attempts = 0;
        self.next_attempt_at = now;
        true
    }

    /// What cancelling its order does: a pending confirmation (even leased, mid-send) becomes
    /// cancelled and loses its lease, so it is never sent or retried and a send in flight
    /// cannot mark it sent; a sent or failed one stays as it is. Returns whether it changed.
    pub fn cancel_with_order(&mut self) -> bool {
        if self.status != NotificationStatus::Pending {
            return false;
        }
        self.status = NotificationStatus::Cancelled;
        self.release();
        true
    }

    fn release(&mut self) {
        self.lease_owner = None;
        self.lease_until = None;
    }

    /// The order it confirms, if it is an order confirmation.
    pub fn order_id(&self) -> Option<Uuid> {
        match &self.message {
            Message::OrderConfirmation { order_id, .. } => Some(*order_id),
            Message::EmailVerification { .. } => None,
        }
    }

    /// A verification email for `user` with this code, due at `now`: a message of its own,
    /// ready for [`NotificationStore::enqueue`](crate::NotificationStore::enqueue).
    pub fn email_verification(user: &User, code: String, now: DateTime<Utc>) -> Standalone {
        Standalone(Notification {
            id: Uuid::now_v7(),
            recipient: user.email.clone(),
            message: Message::EmailVerification {
                user_id: user.id,
                code,
            },
            status: NotificationStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            lease_owner: None,
            lease_until: None,
            last_error: None,
            created_at: now,
            sent_at: None,
        })
    }
}

/// A notification that belongs to no order (an address verification): what
/// [`NotificationStore::enqueue`](crate::NotificationStore::enqueue) takes. Order confirmations
/// are written with their order, in the same atomic step, by
/// [`OrderStore::place_order`](crate::OrderStore::place_order); this type cannot hold one, so
/// no store has to remember to refuse it.
///
/// ```
/// use inventory_core::*;
/// let order = NewOrder::new(Uuid::now_v7(), Email::parse("a@example.com")?, Lines::one(ProductId::new("p")?, Quantity::ONE));
/// let refused = Standalone::new(order.notification(|_| "P".into()));
/// assert_eq!(refused.unwrap_err().kind(), ErrorKind::InvalidInput);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standalone(Notification);

impl Standalone {
    /// `n` when it belongs to no order; an order confirmation is [`Error::InvalidInput`].
    pub fn new(n: Notification) -> Result<Standalone> {
        match n.message {
            Message::OrderConfirmation { .. } => Err(Error::invalid(
                "notification",
                "order confirmations are enqueued with their order",
            )),
            Message::EmailVerification { .. } => Ok(Standalone(n)),
        }
    }
}

impl std::ops::Deref for Standalone {
    type Target = Notification;
    fn deref(&self) -> &Notification {
        &self.0
    }
}

/// Counts of notifications by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NotificationCounts {
    /// Waiting.
    pub pending: u64,
    /// Delivered.
    pub sent: u64,
    /// Given up on.
    pub failed: u64,
    /// Not sent because the order was cancelled first.
    pub cancelled: u64,
}
