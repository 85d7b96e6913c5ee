//! The one error type of the library.

use std::fmt;

/// What went wrong, as a kind a caller can act on without matching strings.
///
/// Every backend converts its own failures into one of these variants; the example server maps
/// them to HTTP statuses with [`Error::kind`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing asked for does not exist (HTTP 404).
    #[error("{0} not found")]
    NotFound(String),
    /// A record with this identity exists already: an email registered, a product id taken,
    /// an imported record present (HTTP 409, code `already_exists`).
    #[error("{0}")]
    AlreadyExists(String),
    /// An idempotency key was used before for an order with other contents (HTTP 409, code
    /// `idempotency_key_reused`).
    #[error("idempotency key reused with different order contents")]
    IdempotencyKeyReused,
    /// The order is cancelled already (HTTP 409, code `already_cancelled`).
    #[error("order {0} is already cancelled")]
    AlreadyCancelled(uuid::Uuid),
    /// The caller no longer holds the lease on this notification: it expired and another
    /// dispatcher took it, or the notification was cancelled with its order (HTTP 409, code
    /// `lease_lost`).
    #[error("lease on notification {0} lost")]
    LeaseLost(uuid::Uuid),
    /// A concurrent write won and the backend could not retry it away (HTTP 409, code
    /// `conflict`); retrying the request may succeed.
    #[error("{0}")]
    Conflict(String),
    /// Not enough stock for what an order asks (HTTP 409): every product that is short, in
    /// product id order, each with what was asked and what is available. Nothing was taken.
    #[error("out of stock: {}", shortages(short))]
    OutOfStock {
        /// The products that are short (at least one).
        short: Vec<Shortage>,
    },
    /// A compare-and-set of stock found another quantity than the caller expected (HTTP 409,
    /// code `stock_changed`): something sold, restocked or set in between. Nothing was written.
    #[error("the stock of {product_id} changed: expected {expected}, it is {current}")]
    StockChanged {
        /// The product.
        product_id: String,
        /// What the caller expected.
        expected: u64,
        /// What it is now.
        current: u64,
    },
    /// The hold expired, its units went back, and they are no longer there for its checkout
    /// (HTTP 409, code `reservation_expired`).
    #[error("reservation {0} expired and its stock was taken meanwhile")]
    ReservationExpired(uuid::Uuid),
    /// The hold is released (or otherwise closed) and cannot be used (HTTP 409, code
    /// `reservation_closed`).
    #[error("reservation {id} is {status}")]
    ReservationClosed {
        /// The hold.
        id: uuid::Uuid,
        /// Its status.
        status: &'static str,
    },
    /// The backend does not offer this (HTTP 501, code `not_implemented`): for stores of an
    /// embedder's own that leave a port out (every store of ours implements every port).
    #[error("{0}")]
    Unsupported(String),
    /// The input does not satisfy the domain rules (HTTP 422).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which field was wrong.
        field: &'static str,
        /// Why, in words a client can show.
        reason: String,
    },
    /// Bad credentials or token (HTTP 401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The backend cannot be reached or is overloaded; retrying later may succeed (HTTP 503).
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug or corrupt data (HTTP 500).
    #[error("internal error: {0}")]
    Other(#[source] BoxError),
}

/// A product an order asks more of than is available ([`Error::OutOfStock`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shortage {
    /// The product.
    pub product_id: String,
    /// Units the order asks for, its lines of this product summed.
    pub requested: u64,
    /// Units available when the order was decided.
    pub available: u64,
}

impl Error {
    /// One product short: `requested` units asked, `available` there.
    pub fn out_of_stock(product_id: impl ToString, requested: u64, available: u64) -> Error {
        Error::OutOfStock {
            short: vec![Shortage {
                product_id: product_id.to_string(),
                requested,
                available,
            }],
        }
    }
}

fn shortages(short: &[Shortage]) -> String {
    short
        .iter()
        .map(|s| {
            format!(
                "{} ({} requested, {} available)",
                s.product_id, s.requested, s.available
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of an [`Error`], without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::AlreadyExists`].
    AlreadyExists,
    /// See [`Error::IdempotencyKeyReused`].
    IdempotencyKeyReused,
    /// See [`Error::AlreadyCancelled`].
    AlreadyCancelled,
    /// See [`Error::LeaseLost`].
    LeaseLost,
    /// See [`Error::Conflict`].
    Conflict,
    /// See [`Error::OutOfStock`].
    OutOfStock,
    /// See [`Error::StockChanged`].
    StockChanged,
    /// See [`Error::ReservationExpired`].
    ReservationExpired,
    /// See [`Error::ReservationClosed`].
    ReservationClosed,
    /// See [`Error::Unsupported`].
    Unsupported,
    /// See [`Error::InvalidInput`].
    InvalidInput,
    /// See [`Error::Unauthorized`].
    Unauthorized,
    /// See [`Error::Forbidden`].
    Forbidden,
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::Other`].
    Other,
}

impl ErrorKind {
    /// A stable machine code for API bodies and logs (`not_found`, `already_exists`,
    /// `out_of_stock`, ...).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorKind::AlreadyCancelled => "already_cancelled",
            ErrorKind::LeaseLost => "lease_lost",
            ErrorKind::Conflict => "conflict",
            ErrorKind::OutOfStock => "out_of_stock",
            ErrorKind::StockChanged => "stock_changed",
            ErrorKind::ReservationExpired => "reservation_expired",
            ErrorKind::ReservationClosed => "reservation_closed",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unsupported => "not_implemented",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Other => "internal",
        }
    }

    /// The HTTP status code a server should answer with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists
            | ErrorKind::IdempotencyKeyReused
            | ErrorKind::AlreadyCancelled
            | ErrorKind::LeaseLost
            | ErrorKind::Conflict
            | ErrorKind::OutOfStock
            | ErrorKind::StockChanged
            | ErrorKind::ReservationExpired
            | ErrorKind::ReservationClosed => 409,
            ErrorKind::InvalidInput => 422,
            ErrorKind::Unsupported => 501,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::Unavailable => 503,
            ErrorKind::Other => 500,
        }
    }
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::IdempotencyKeyReused => ErrorKind::IdempotencyKeyReused,
            Error::AlreadyCancelled(_) => ErrorKind::AlreadyCancelled,
            Error::LeaseLost(_) => ErrorKind::LeaseLost,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::OutOfStock { .. } => ErrorKind::OutOfStock,
            Error::StockChanged { .. } => ErrorKind::StockChanged,
            Error::ReservationExpired(_) => ErrorKind::ReservationExpired,
            Error::ReservationClosed { .. } => ErrorKind::ReservationClosed,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Other(_) => ErrorKind::Other,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// An [`Error::InvalidInput`].
    pub fn invalid(field: &'static str, reason: impl fmt::Display) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.to_string(),
        }
    }

    /// An [`Error::Other`] from any error or message.
    pub fn other(e: impl Into<BoxError>) -> Self {
        Error::Other(e.into())
    }

    /// An [`Error::Unavailable`] from any error or message.
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        Error::Unavailable(e.into())
    }
}

/// Why a [`Mailer`](crate::Mailer) could not send a message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailError {
    /// Worth retrying later: connection refused, timeout, a 4xx reply.
    #[error("transient mail error: {0}")]
    Transient(String),
    /// Never worth retrying: the server rejected the message or recipient (5xx), or the message
    /// cannot be built.
    #[error("permanent mail error: {0}")]
    Permanent(String),
}

impl MailError {
    /// Whether the dispatcher should give up on this message at once.
    pub fn is_permanent(&self) -> bool {
        matches!(self, MailError::Permanent(_))
    }
}
