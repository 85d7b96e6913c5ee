//! Domain types. Every constructor validates, so a value of these types is always valid.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Shortest accepted password, in bytes.
pub const PASSWORD_MIN_BYTES: usize = 8;
/// Longest accepted password, in bytes: hashing cost must not be the client's to choose.
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Largest stock a product may hold (10^12 units): far beyond any shop, and far from every
/// backend's integer limits, so stock arithmetic can never overflow.
pub const STOCK_MAX: u64 = 1_000_000_000_000;
/// Largest quantity one order may ask for.
pub const QUANTITY_MAX: u64 = 1_000_000;
/// Longest product id, in bytes.
pub const PRODUCT_ID_MAX_BYTES: usize = 128;
/// Longest product name, in bytes.
pub const PRODUCT_NAME_MAX_BYTES: usize = 512;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;

/// The current time at the precision every backend stores: microseconds.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// A normalised email address: trimmed, lower-cased and syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Trims, normalises and validates `raw`, so that every way of writing one address gives
    /// one `Email` (and so one account):
    ///
    /// - the whole address in Unicode NFC (composed: `é` typed as `e` + U+0301 is `é`);
    /// - the local part lower-cased (Unicode lower case: `İ` becomes `i̇`, i + U+0307, as
    ///   Unicode defines it, so `İnfo@x.com` and `info@x.com` stay distinct addresses);
    /// - the domain in its IDNA ASCII form (`bücher.example` is `xn--bcher-kva.example`),
    ///   lower-cased.
    ///
    /// ```
    /// # use inventory_core::Email;
    /// assert_eq!(Email::parse("  Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
    /// assert_eq!(
    ///     Email::parse("José@Bücher.example").unwrap(),
    ///     Email::parse("jose\u{301}@xn--bcher-kva.example").unwrap(),
    /// );
    /// assert!(Email::parse("not an email").is_err());
    /// ```
    pub fn parse(raw: &str) -> Result<Self> {
        use unicode_normalization::UnicodeNormalization as _;
        let trimmed: String = raw.trim().nfc().collect();
        let (local, domain) = trimmed
            .rsplit_once('@')
            .ok_or_else(|| Error::invalid("email", "not a valid address (no @)"))?;
        let domain = idna::domain_to_ascii(domain)
            .map_err(|_| Error::invalid("email", "the domain is not a valid name"))?;
        let local: String = local.to_lowercase().nfc().collect();
        let normalised = format!("{local}@{domain}");
        if normalised.len() > 254 {
            return Err(Error::invalid("email", "longer than 254 bytes"));
        }
        let address = lettre::Address::from_str(&normalised)
            .map_err(|e| Error::invalid("email", format!("not a valid address ({e})")))?;
        if !address.domain().contains('.') && address.domain() != "localhost" {
            return Err(Error::invalid("email", "domain has no dot"));
        }
        Ok(Email(normalised))
    }

    /// The address as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl FromStr for Email {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Email::parse(s)
    }
}

/// A clear-text password within the accepted length. Its `Debug` output hides it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Validates the length of `raw` (8 to 1024 bytes).
    pub fn new(raw: impl Into<String>) -> Result<Self> {
        Self::with_min(raw, PASSWORD_MIN_BYTES)
    }

    /// Validates the length of `raw` (`min` to 1024 bytes), for a configured minimum.
    pub fn with_min(raw: impl Into<String>, min: usize) -> Result<Self> {
        let raw = raw.into();
        if raw.len() < min {
            return Err(Error::invalid(
                "password",
                format!("must be at least {min} bytes"),
            ));
        }
        if raw.len() > PASSWORD_MAX_BYTES {
            return Err(Error::invalid(
                "password",
                format!("must be at most {PASSWORD_MAX_BYTES} bytes"),
            ));
        }
        Ok(Password(raw))
    }

    /// The clear text, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Places and sees their own orders.
    Customer,
    /// Also manages products and sees every order.
    Admin,
}

/// Implements `as_str`, `Display` and `FromStr` for a field-less enum stored as text.
macro_rules! text_enum {
    ($ty:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The stored text form.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(Error::invalid($what, format!("unknown value {other:?}"))),
                }
            }
        }
    };
}

text_enum!(Role, "role" { Customer => "customer", Admin => "admin" });

/// A registered user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id.
    pub id: Uuid,
    /// Unique, normalised email.
    pub email: Email,
    /// argon2id hash in PHC string form.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// When the user registered.
    pub created_at: DateTime<Utc>,
    /// Carried by every token issued to the user; raising it (a role change, or
    /// [`UserStore::revoke_tokens`](crate::UserStore::revoke_tokens)) ends every earlier token.
    pub token_version: u32,
    /// Whether the user proved they receive mail at `email` (the code of a verification
    /// email). Users written by the original service, and all before verification existed,
    /// are unverified.
    pub email_verified: bool,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("email_verified", &self.email_verified)
            .finish_non_exhaustive()
    }
}

/// A product id chosen by the caller, such as `product-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductId(String);

impl ProductId {
    /// Validates `raw`: 1 to 128 bytes, no control characters, no surrounding spaces.
    pub fn new(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(Error::invalid("product_id", "must not be empty"));
        }
        if raw.len() > PRODUCT_ID_MAX_BYTES {
            return Err(Error::invalid(
                "product_id",
                format!("longer than {PRODUCT_ID_MAX_BYTES} bytes"),
            ));
        }
        if raw.chars().any(char::is_control) || raw.trim() != raw {
            return Err(Error::invalid(
                "product_id",
                "must not contain control characters or surrounding spaces",
            ));
        }
        Ok(ProductId(raw))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ProductId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        ProductId::new(s)
    }
}

impl From<ProductId> for String {
    fn from(p: ProductId) -> String {
        p.0
    }
}

/// Whether a product can be ordered, derived from its quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    /// Quantity above zero.
    InStock,
    /// Quantity zero.
    OutOfStock,
}

text_enum!(ProductStatus, "status" { InStock => "in_stock", OutOfStock => "out_of_stock" });

/// A product with its stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Caller-chosen id.
    pub id: ProductId,
    /// Display name.
    pub name: String,
    /// Units in stock; never negative.
    pub quantity: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Product {
    /// `in_stock` while quantity is above zero.
    pub fn status(&self) -> ProductStatus {
        if self.quantity > 0 {
            ProductStatus::InStock
        } else {
            ProductStatus::OutOfStock
        }
    }
}

/// A product to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    /// Caller-chosen id.
    pub id: ProductId,
    /// Display name, 1 to 512 bytes.
    pub name: String,
    /// Initial stock.
    pub quantity: u64,
}

impl NewProduct {
    /// Validates the name and builds the product.
    pub fn new(id: ProductId, name: impl Into<String>, quantity: u64) -> Result<Self> {
        let name = name.into();
        if name.trim().is_empty() || name.len() > PRODUCT_NAME_MAX_BYTES {
            return Err(Error::invalid(
                "product_name",
                format!("must be 1 to {PRODUCT_NAME_MAX_BYTES} bytes"),
            ));
        }
        // It reaches email subjects and bodies: no control characters (NUL, CR, LF, ESC...).
        if name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "product_name",
                "must not contain control characters",
            ));
        }
        if quantity > STOCK_MAX {
            return Err(Error::invalid(
                "quantity",
                format!("must be at most {STOCK_MAX}"),
            ));
        }
        Ok(NewProduct { id, name, quantity })
    }
}

/// How many units an order takes: 1 to [`QUANTITY_MAX`]. Like every quantity of the API
/// (stock, restock), it reads as a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u64")]
pub struct Quantity(u32);

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Quantity {
    /// One unit, the default of the original API.
    pub const ONE: Quantity = Quantity(1);

    /// Validates `n`: 1 to [`QUANTITY_MAX`].
    pub fn new(n: u64) -> Result<Self> {
        match u32::try_from(n) {
            Ok(0) => Err(Error::invalid("quantity", "must be at least 1")),
            Ok(n) if u64::from(n) <= QUANTITY_MAX => Ok(Quantity(n)),
            _ => Err(Error::invalid(
                "quantity",
                format!("must be at most {QUANTITY_MAX}"),
            )),
        }
    }

    /// The number of units.
    pub fn get(self) -> u64 {
        u64::from(self.0)
    }
}

/// Raw input (JSON, a database column): a negative number is [`Error::InvalidInput`].
impl TryFrom<i64> for Quantity {
    type Error = Error;
    fn try_from(n: i64) -> Result<Self> {
        let n = u64::try_from(n).map_err(|_| Error::invalid("quantity", "must be at least 1"))?;
        Quantity::new(n)
    }
}

impl From<Quantity> for u64 {
    fn from(q: Quantity) -> u64 {
        q.get()
    }
}

impl From<Quantity> for i64 {
    fn from(q: Quantity) -> i64 {
        i64::from(q.0)
    }
}

/// A client-chosen key that makes placing an order safe to retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl IdempotencyKey {
    /// Validates `raw`: 1 to 255 visible ASCII characters.
    pub fn new(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        if raw.is_empty()
            || raw.len() > IDEMPOTENCY_KEY_MAX_BYTES
            || !raw.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::invalid(
                "Idempotency-Key",
                format!("must be 1 to {IDEMPOTENCY_KEY_MAX_BYTES} visible ASCII characters"),
            ));
        }
        Ok(IdempotencyKey(raw))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed; the confirmation email is not yet accepted by the mail server.
    Pending,
    /// The confirmation email was accepted by the mail server.
    Confirmed,
    /// Cancelled; its stock was returned.
    Cancelled,
}

text_enum!(OrderStatus, "status" { Pending => "pending", Confirmed => "confirmed", Cancelled => "cancelled" });

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// UUID v7: sorts by creation time.
    pub id: Uuid,
    /// The user who placed it.
    pub user_id: Uuid,
    /// Who receives the confirmation.
    pub buyer_email: Email,
    /// What was ordered.
    pub product_id: ProductId,
    /// How many units.
    pub quantity: Quantity,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// The key it was placed with, if any.
    pub idempotency_key: Option<String>,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// An order to place: the input of [`OrderStore::place_order`](crate::OrderStore::place_order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Id of the new order (UUID v7).
    pub id: Uuid,
    /// Id of the confirmation notification enqueued with it.
    pub notification_id: Uuid,
    /// The user placing it.
    pub user_id: Uuid,
    /// Who receives the confirmation.
    pub buyer_email: Email,
    /// What is ordered.
    pub product_id: ProductId,
    /// How many units.
    pub quantity: Quantity,
    /// Makes the call safe to retry.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The time of placing.
    pub now: DateTime<Utc>,
}

impl NewOrder {
    /// An order with fresh ids, placed now.
    pub fn new(
        user_id: Uuid,
        buyer_email: Email,
        product_id: ProductId,
        quantity: Quantity,
    ) -> Self {
        NewOrder {
            id: Uuid::now_v7(),
            notification_id: Uuid::now_v7(),
            user_id,
            buyer_email,
            product_id,
            quantity,
            idempotency_key: None,
            now: now(),
        }
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// The pending order this creates.
    pub fn order(&self) -> Order {
        Order {
            id: self.id,
            user_id: self.user_id,
            buyer_email: self.buyer_email.clone(),
            product_id: self.product_id.clone(),
            quantity: self.quantity,
            status: OrderStatus::Pending,
            idempotency_key: self.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            created_at: self.now,
            updated_at: self.now,
        }
    }

    /// Its confirmation notification, due at once.
    pub fn notification(&self, product_name: impl Into<String>) -> Notification {
        Notification {
            id: self.notification_id,
            recipient: self.buyer_email.clone(),
            message: Message::OrderConfirmation {
                order_id: self.id,
                product_id: self.product_id.clone(),
                product_name: product_name.into(),
                quantity: self.quantity,
            },
            status: NotificationStatus::Pending,
            attempts: 0,
            next_attempt_at: self.now,
            lease_owner: None,
            lease_until: None,
            last_error: None,
            created_at: self.now,
            sent_at: None,
        }
    }

    /// Whether `existing` (found under the same key) was placed with the same contents.
    pub fn matches(&self, existing: &Order) -> bool {
        existing.buyer_email == self.buyer_email
            && existing.product_id == self.product_id
            && existing.quantity == self.quantity
    }
}

/// The result of placing an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The order.
    pub order: Order,
    /// True when the idempotency key matched an earlier order, which is returned unchanged.
    pub replayed: bool,
}

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
        /// The product ordered.
        product_id: ProductId,
        /// The product's name at the time of ordering.
        product_name: String,
        /// Units ordered.
        quantity: Quantity,
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
            Message::OrderConfirmation {
                order_id,
                product_id,
                product_name,
                quantity,
            } => f
                .debug_struct("OrderConfirmation")
                .field("order_id", order_id)
                .field("product_id", product_id)
                .field("product_name", product_name)
                .field("quantity", quantity)
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

/// A [`Message`] as flat optional fields, the way stores and exports keep it: `kind` is absent
/// (or `order_confirmation`) for an order confirmation, `email_verification` otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageParts {
    /// `None` for an order confirmation (as before verification emails existed).
    pub kind: Option<String>,
    /// Confirmations: the order.
    pub order_id: Option<Uuid>,
    /// Confirmations: the product.
    pub product_id: Option<String>,
    /// Confirmations: the product's name.
    pub product_name: Option<String>,
    /// Confirmations: units.
    pub quantity: Option<i64>,
    /// Verifications: the user.
    pub user_id: Option<Uuid>,
    /// Verifications: the code.
    pub code: Option<String>,
}

impl From<&Message> for MessageParts {
    fn from(m: &Message) -> Self {
        match m {
            Message::OrderConfirmation {
                order_id,
                product_id,
                product_name,
                quantity,
            } => MessageParts {
                order_id: Some(*order_id),
                product_id: Some(product_id.to_string()),
                product_name: Some(product_name.clone()),
                quantity: Some(i64::from(*quantity)),
                ..MessageParts::default()
            },
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
                product_id: ProductId::new(p.product_id.ok_or_else(|| missing("product_id"))?)?,
                product_name: p.product_name.ok_or_else(|| missing("product_name"))?,
                quantity: Quantity::try_from(p.quantity.ok_or_else(|| missing("quantity"))?)?,
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

impl Notification {
    /// Leases it to `owner` until `until`, counting one attempt: what a claim does.
    pub fn lease_to(&mut self, owner: &str, until: DateTime<Utc>) {
        self.lease_owner = Some(owner.to_owned());
        self.lease_until = Some(until);
        self.attempts += 1;
    }

    /// The order it confirms, if it is an order confirmation.
    pub fn order_id(&self) -> Option<Uuid> {
        match &self.message {
            Message::OrderConfirmation { order_id, .. } => Some(*order_id),
            Message::EmailVerification { .. } => None,
        }
    }

    /// A verification email for `user` with this code, due at `now`.
    pub fn email_verification(user: &User, code: String, now: DateTime<Utc>) -> Notification {
        Notification {
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
        }
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

/// A window of a list: at most `limit` items, starting after the cursor `after` when given
/// (keyset pagination), then skipping `offset` more.
///
/// Prefer the cursor: it costs the same on every page (a database skips `offset` rows one by
/// one, and Firestore bills every skipped document) and does not shift when items are added
/// or removed between pages. The cursor of an item is its [`Listed::cursor`]; pass the last
/// item's to get the next page:
///
/// ```
/// # use inventory_core::Page;
/// let first = Page::first(2)?;
/// // List with `first`; if the last product it returned is "p-2" (its `cursor()`):
/// let next = Page::first(2)?.after("p-2");
/// assert_eq!(next.after.as_deref(), Some("p-2"));
/// # Ok::<(), inventory_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Items to skip (after the cursor, when there is one).
    pub offset: u32,
    /// Items to return (1 to 1000).
    pub limit: u32,
    /// Only items after this cursor in the list's order: the [`Listed::cursor`] of the last
    /// item of the previous page.
    pub after: Option<String>,
}

impl Page {
    /// Largest page size.
    pub const MAX_LIMIT: u32 = 1000;

    /// Validates the window.
    pub fn new(offset: u32, limit: u32) -> Result<Self> {
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(Error::invalid(
                "limit",
                format!("must be 1 to {}", Self::MAX_LIMIT),
            ));
        }
        Ok(Page {
            offset,
            limit,
            after: None,
        })
    }

    /// The first `limit` items.
    pub fn first(limit: u32) -> Result<Self> {
        Self::new(0, limit)
    }

    /// The items after `cursor` (keyset pagination).
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.after = Some(cursor.into());
        self
    }

    /// The cursor read as an order id (orders are listed by id); `InvalidInput` when it is
    /// not one.
    pub fn after_order(&self) -> Result<Option<Uuid>> {
        self.after
            .as_deref()
            .map(|a| Uuid::parse_str(a).map_err(|_| Error::invalid("after", "must be an order id")))
            .transpose()
    }
}

/// An item of a paged list, and where a page that ends with it continues.
pub trait Listed {
    /// The item's key in its list: a product's id, an order's id, a user's email, a
    /// notification's id. Lists are ordered by it (orders newest first).
    fn cursor(&self) -> String;
}

impl Listed for Product {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

impl Listed for Order {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

impl Listed for User {
    fn cursor(&self) -> String {
        self.email.to_string()
    }
}

impl Listed for Notification {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: 100,
            after: None,
        }
    }
}
