//! The conformance suite on the in-memory store.

use std::sync::Arc;

inventory_core::store_conformance!(async {
    Some(Arc::new(inventory_core::MemoryStore::new()) as inventory_core::testkit::TestStore)
});
