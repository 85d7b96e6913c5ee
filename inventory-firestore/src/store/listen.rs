//! Waking dispatchers: a Firestore listen on the outbox beacon, raised by processes that
//! enqueue work, and the local signal.

use super::*;
use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreListenerTarget, FirestoreMemListenStateStorage,
};

/// Whether a listen event is the beacon raised by another process (this one wakes its own
/// dispatcher directly). An unreadable beacon wakes it too: a spurious claim costs a query.
pub(super) fn raised_elsewhere(event: &FirestoreListenEvent, me: &str) -> bool {
    let FirestoreListenEvent::DocumentChange(change) = event else {
        return false;
    };
    change.document.as_ref().is_some_and(|doc| {
        FirestoreDb::deserialize_doc_to::<BeaconDoc>(doc).map_or(true, |b| b.by != me)
    })
}

pub(super) const LISTEN_TARGET: u32 = 17;

impl FirestoreStore {
    pub(super) async fn start_listener(&self) -> Result<()> {
        let mut listener = self
            .db
            .create_listener(FirestoreMemListenStateStorage::new())
            .await
            .map_err(map)?;
        // The beacon only: a target on the outbox itself cost the emulator a query for every
        // notification written, handed ones included (see the `beacon` module).
        self.db
            .fluent()
            .select()
            .by_id_in(self.cols.beacon.as_str())
            .batch_listen([BEACON_ID])
            .add_target(FirestoreListenerTarget::new(LISTEN_TARGET), &mut listener)
            .map_err(map)?;
        let signal = self.signal.clone();
        let me = self.beacon.process().to_owned();
        listener
            .start(move |event| {
                if raised_elsewhere(&event, &me) {
                    signal.send_modify(|n| *n = n.wrapping_add(1));
                }
                async { Ok(()) }
            })
            .await
            .map_err(map)?;
        *self.listener.lock().await = Some(listener);
        Ok(())
    }

    /// New work is due for a claim: wakes the dispatchers here and, through the beacon, in
    /// other processes.
    pub(super) fn bump(&self) {
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
        self.beacon.raise();
    }
}

#[cfg(test)]
mod tests {
    use firestore::gcloud_sdk::google::firestore::v1::{DocumentChange, TargetChange};

    use super::*;
    use crate::store::outbox::BrokenDoc;

    fn change_of<T: serde::Serialize>(doc: &T) -> FirestoreListenEvent {
        FirestoreListenEvent::DocumentChange(DocumentChange {
            document: Some(FirestoreDb::serialize_to_doc("projects/p/b/outbox", doc).unwrap()),
            ..Default::default()
        })
    }

    #[test]
    fn only_a_beacon_raised_by_another_process_wakes_the_dispatcher() {
        let raised_by = |by: &str| {
            change_of(&BeaconDoc {
                by: by.into(),
                raised_at: std::time::SystemTime::now(),
            })
        };
        assert!(raised_elsewhere(&raised_by("other"), "me"));
        assert!(!raised_elsewhere(&raised_by("me"), "me"));
        // Unreadable: wake, a claim costs one query.
        assert!(raised_elsewhere(
            &change_of(&BrokenDoc {
                status: NotificationStatus::Failed,
                last_error: String::new(),
            }),
            "me"
        ));
        // The stream's own bookkeeping.
        assert!(!raised_elsewhere(
            &FirestoreListenEvent::TargetChange(TargetChange::default()),
            "me"
        ));
    }
}
