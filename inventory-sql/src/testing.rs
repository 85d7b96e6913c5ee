//! Helpers for tests that need a PostgreSQL database (feature `testkit`).
//!
//! Tests read `INVENTORY_TEST_POSTGRES_URL`. Without it they should skip with a notice, unless
//! `INVENTORY_REQUIRE_BACKENDS` is set (as CI does), where a missing URL fails them.

/// The PostgreSQL URL for tests, or `None` to skip. Panics if backends are required but the
/// URL is missing.
pub fn postgres_url() -> Option<String> {
    match std::env::var("INVENTORY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("INVENTORY_REQUIRE_BACKENDS").is_none(),
                "INVENTORY_REQUIRE_BACKENDS is set but INVENTORY_TEST_POSTGRES_URL is not"
            );
            eprintln!("notice: INVENTORY_TEST_POSTGRES_URL not set, skipping a PostgreSQL test");
            None
        }
    }
}

/// Creates a fresh, empty schema for one test and returns its name. Schemas of earlier runs
/// older than an hour (their names carry a UUID v7 timestamp) are dropped on the way.
pub async fn fresh_schema(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url)
        .await
        .expect("PostgreSQL reachable");
    let stale: Vec<(String,)> =
        sqlx::query_as("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'inv\\_t\\_%'")
            .fetch_all(&pool)
            .await
            .expect("list schemas");
    let cutoff = chrono::Utc::now().timestamp() - 3600;
    for (name,) in stale {
        let created = uuid::Uuid::parse_str(&name["inv_t_".len()..])
            .ok()
            .and_then(|u| u.get_timestamp())
            .map(|t| t.to_unix().0 as i64);
        if created.is_some_and(|secs| secs < cutoff) {
            let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
        }
    }
    let schema = format!("inv_t_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&pool)
        .await
        .expect("create schema");
    pool.close().await;
    schema
}

/// `url` with the schema as its `search_path`, for programs configured by URL only.
pub fn url_with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}
