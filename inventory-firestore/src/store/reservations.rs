//! The holds port, not offered on Firestore yet: every call is
//! [`Error::Unsupported`](inventory_core::Error::Unsupported) (HTTP 501), so a deployment on
//! Firestore learns it at once instead of holding stock that nothing would release. Holds
//! work on the in-memory store, SQLite and PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;
use uuid::Uuid;

use super::FirestoreStore;

fn unsupported<T>() -> Result<T> {
    Err(Error::Unsupported(
        "holds (reservations) are not available on the Firestore backend yet; use SQLite or \
         PostgreSQL for them"
            .into(),
    ))
}

#[async_trait]
impl ReservationStore for FirestoreStore {
    async fn reserve(&self, _: &NewReservation) -> Result<Reservation> {
        unsupported()
    }

    async fn get_reservation(&self, _: Uuid) -> Result<Option<Reservation>> {
        unsupported()
    }

    async fn release_reservation(&self, _: Uuid, _: DateTime<Utc>) -> Result<Reservation> {
        unsupported()
    }

    async fn checkout_reservation(&self, _: Uuid, _: &NewOrder) -> Result<Placed> {
        unsupported()
    }

    /// Nothing to expire: no hold is ever made here (the sweep of a Firestore deployment
    /// runs without error).
    async fn expire_reservations(&self, _: DateTime<Utc>, _: u32) -> Result<u64> {
        Ok(0)
    }
}
