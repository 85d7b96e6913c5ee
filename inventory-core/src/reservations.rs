//! Holds on stock during checkout, on behalf of an authenticated [`Principal`].

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::auth::Principal;
use crate::domain::*;
use crate::error::{Error, Result};
use crate::orders::{LineRequest, buyer_for, lines_of};
use crate::ports::ReservationStore;

/// How long a hold lasts when the request names no time: 15 minutes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(900);
/// The longest hold a request may ask for unless configured otherwise: one hour.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);

/// Holds one sweep expires per transaction.
const SWEEP_BATCH: u32 = 256;

/// What a client asks for when holding stock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReserveRequest {
    /// Who receives the confirmation of its order; defaults to the caller (admins may name
    /// someone else).
    pub buyer_email: Option<String>,
    /// What to hold: 1 to [`ORDER_LINES_MAX`] lines; lines of one product are summed.
    pub lines: Vec<LineRequest>,
    /// How long to hold, in seconds: 1 to the configured maximum; default
    /// [`DEFAULT_TTL`].
    pub ttl_seconds: Option<u64>,
}

/// The holds service: hold, read, release and check out holds of the caller (any hold for
/// admins), and expire the holds that ran out.
#[derive(Clone)]
pub struct Reservations {
    store: Arc<dyn ReservationStore>,
    max_ttl: Duration,
    require_verified_email: bool,
}

impl std::fmt::Debug for Reservations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservations")
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

impl Reservations {
    /// The service over its store, holds of at most [`DEFAULT_MAX_TTL`].
    pub fn new(store: Arc<dyn ReservationStore>) -> Self {
        Reservations {
            store,
            max_ttl: DEFAULT_MAX_TTL,
            require_verified_email: false,
        }
    }

    /// The longest hold a request may ask for.
    pub fn max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl = max;
        self
    }

    /// Only callers with a verified address may hold stock (as for orders).
    pub fn require_verified_email(mut self, required: bool) -> Self {
        self.require_verified_email = required;
        self
    }

    /// Validates and makes a hold (see [`ReservationStore::reserve`]).
    pub async fn reserve(&self, who: &Principal, req: ReserveRequest) -> Result<Reservation> {
        let buyer = buyer_for(who, req.buyer_email.as_deref(), self.require_verified_email)?;
        let lines = lines_of(req.lines)?;
        let ttl = match req.ttl_seconds {
            None => DEFAULT_TTL.min(self.max_ttl),
            Some(0) => return Err(Error::invalid("ttl_seconds", "must be at least 1")),
            Some(s) if Duration::from_secs(s) > self.max_ttl => {
                return Err(Error::invalid(
                    "ttl_seconds",
                    format!("must be at most {}", self.max_ttl.as_secs()),
                ));
            }
            Some(s) => Duration::from_secs(s),
        };
        let new = NewReservation::new(who.user_id, buyer, lines, ttl);
        let held = self.store.reserve(&new).await;
        if held.is_ok() {
            metrics::counter!("inventory_reservations_total").increment(1);
        }
        held
    }

    /// A hold of the caller (any hold for admins); someone else's is not found, so ids do not
    /// leak.
    pub async fn get(&self, who: &Principal, id: Uuid) -> Result<Reservation> {
        match self.store.get_reservation(id).await? {
            Some(hold) if hold.user_id == who.user_id || who.is_admin() => Ok(hold),
            _ => Err(Error::NotFound(format!("reservation {id}"))),
        }
    }

    /// Releases a hold of the caller: its units go back.
    pub async fn release(&self, who: &Principal, id: Uuid) -> Result<Reservation> {
        self.get(who, id).await?;
        self.store.release_reservation(id, Utc::now()).await
    }

    /// Turns a hold of the caller into an order (see
    /// [`ReservationStore::checkout_reservation`]).
    pub async fn checkout(&self, who: &Principal, id: Uuid) -> Result<Placed> {
        let hold = self.get(who, id).await?;
        let placed = self
            .store
            .checkout_reservation(id, &hold.order(now()))
            .await;
        if matches!(&placed, Ok(p) if !p.replayed) {
            metrics::counter!("inventory_orders_placed_total").increment(1);
        }
        placed
    }

    /// Expires the holds that ran out, every `every` (one second keeps a hold's release within
    /// seconds of its `expires_at`), until `shutdown`. A failed sweep is logged and tried again
    /// at the next tick; several processes may sweep one database.
    pub fn spawn_sweeper(
        self,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        crate::periodic::spawn_every(
            every,
            shutdown,
            ("holds expired", "sweeping expired holds failed"),
            move || {
                let this = self.clone();
                async move { this.expire_due(SWEEP_BATCH).await }
            },
        )
    }

    /// Expires the holds that ran out by now, in batches of `batch`, until none is left;
    /// returns how many. What a sweeper calls (any number of processes may).
    pub async fn expire_due(&self, batch: u32) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.store.expire_reservations(Utc::now(), batch).await?;
            total += n;
            if n < u64::from(batch) {
                if total > 0 {
                    metrics::counter!("inventory_reservations_expired_total").increment(total);
                }
                return Ok(total);
            }
        }
    }
}
