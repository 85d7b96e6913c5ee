//! The conformance suite on the in-memory store.

use std::sync::Arc;

inventory_core::store_conformance!(async {
    Some(Arc::new(inventory_core::MemoryStore::new()) as inventory_core::testkit::TestStore)
});
inventory_core::reservation_conformance!(async {
    Some(Arc::new(inventory_core::MemoryStore::new()) as inventory_core::testkit::TestStore)
});
inventory_core::ledger_conformance!(async {
    Some(Arc::new(inventory_core::MemoryStore::new()) as inventory_core::testkit::TestStore)
});
inventory_core::event_conformance!(async {
    Some(Arc::new(inventory_core::MemoryStore::new()) as inventory_core::testkit::TestStore)
});

/// The whole suite again through `Box` and `Arc`: the pointer implementations of the ports
/// delegate every method.
mod through_pointers {
    use std::sync::Arc;

    use inventory_core::MemoryStore;
    use inventory_core::testkit::TestStore;

    inventory_core::store_conformance!(async {
        Some(Arc::new(Box::new(Arc::new(MemoryStore::new()))) as TestStore)
    });
    inventory_core::reservation_conformance!(async {
        Some(Arc::new(Box::new(Arc::new(MemoryStore::new()))) as TestStore)
    });
    inventory_core::ledger_conformance!(async {
        Some(Arc::new(Box::new(Arc::new(MemoryStore::new()))) as TestStore)
    });
    inventory_core::event_conformance!(async {
        Some(Arc::new(Box::new(Arc::new(MemoryStore::new()))) as TestStore)
    });
}

/// The handoff to a local dispatcher (not in the suite: only stores that take it), through
/// pointers, so their delegation of `accept_handoff` is covered too.
#[tokio::test]
async fn handoff_leases_confirmations_to_the_local_dispatcher() {
    use inventory_core::MemoryStore;
    use inventory_core::testkit::{
        TestStore, handoff_leases_confirmations_to_the_local_dispatcher,
    };
    handoff_leases_confirmations_to_the_local_dispatcher(Arc::new(Box::new(Arc::new(
        MemoryStore::new(),
    ))) as TestStore)
    .await;
}
