//! Waking the dispatchers of other processes: one small document they all listen to.
//!
//! A process that leaves a notification due for a claim (an order placed without a local
//! dispatcher to hand it to, a verification email, failed ones put back) writes the beacon;
//! every process listens to that one document and wakes its dispatcher when another process
//! wrote it. A listen target on the outbox itself cost the emulator about as much as the order
//! for every notification written, each re-evaluating the query, even when no one needed
//! waking (the confirmations handed to a local dispatcher); a target of one document costs
//! nothing for writes elsewhere.
//!
//! Writes are coalesced: at most one per [`GAP`] per process, the first at once and the
//! others folded into one at the end of the gap, so a busy process writes it about twice a
//! second (Firestore sustains about one write per second on one document; a write that fails
//! is only logged, the dispatchers' sweep finds the work anyway).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use firestore::FirestoreDb;
use serde::{Deserialize, Serialize};

/// The shortest time between two beacon writes of one process.
pub(crate) const GAP: Duration = Duration::from_millis(500);

/// The beacon document's id in its collection.
pub(crate) const BEACON_ID: &str = "outbox";

/// What the beacon holds: who raised it last, and when.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BeaconDoc {
    /// The raising process (its [`Beacon::process`]), so it can ignore its own.
    pub(crate) by: String,
    pub(crate) raised_at: SystemTime,
}

#[derive(Default)]
struct State {
    last: Option<Instant>,
    scheduled: bool,
}

/// This process's side of the beacon.
#[derive(Clone)]
pub(crate) struct Beacon {
    db: FirestoreDb,
    collection: String,
    process: String,
    state: Arc<Mutex<State>>,
}

impl Beacon {
    pub(crate) fn new(db: FirestoreDb, collection: String) -> Self {
        Beacon {
            db,
            collection,
            process: uuid::Uuid::now_v7().to_string(),
            state: Arc::default(),
        }
    }

    /// This process's name on the beacon.
    pub(crate) fn process(&self) -> &str {
        &self.process
    }

    /// Raises the beacon: now if it was not raised in the last [`GAP`], else once at the end
    /// of it (however many calls come meanwhile). Never waits; needs a Tokio runtime.
    pub(crate) fn raise(&self) {
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.scheduled {
                return;
            }
            state.scheduled = true;
            state.last.map_or(Duration::ZERO, |t| {
                (t + GAP).saturating_duration_since(Instant::now())
            })
        };
        let me = self.clone();
        tokio::spawn(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            {
                let mut state = me.state.lock().unwrap_or_else(|e| e.into_inner());
                state.scheduled = false;
                state.last = Some(Instant::now());
            }
            let doc = BeaconDoc {
                by: me.process.clone(),
                raised_at: SystemTime::now(),
            };
            let written = me
                .db
                .fluent()
                .update()
                .in_col(me.collection.as_str())
                .document_id(BEACON_ID)
                .object(&doc)
                .execute::<()>()
                .await;
            if let Err(e) = written {
                tracing::debug!(error = %e, "outbox beacon not written; other dispatchers will find the work by their sweep");
            }
        });
    }
}
