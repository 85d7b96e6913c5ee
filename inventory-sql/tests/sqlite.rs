//! The conformance suite on SQLite: a WAL file (the embedded default) and `:memory:`.

use std::sync::Arc;

use inventory_core::testkit::TestStore;
use inventory_sql::SqlStore;

async fn file_store() -> Option<TestStore> {
    // The directory lives for the whole test process; each test gets its own file.
    let dir = tempfile::tempdir().unwrap().keep();
    let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
    Some(Arc::new(SqlStore::connect(&url).await.expect("connect sqlite")) as TestStore)
}

mod file {
    inventory_core::store_conformance!(super::file_store());
}

mod memory {
    use super::*;
    inventory_core::store_conformance!(async {
        Some(Arc::new(SqlStore::connect("sqlite::memory:").await.expect("connect")) as TestStore)
    });
}

#[tokio::test]
async fn migrations_are_idempotent_and_bad_urls_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let store = SqlStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    drop(store);
    SqlStore::connect(&url)
        .await
        .expect("reopen an existing database");
    let err = SqlStore::connect("mysql://localhost/x").await.unwrap_err();
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    assert_eq!(err.kind(), inventory_core::ErrorKind::InvalidInput);
}
