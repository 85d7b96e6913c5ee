//! Rebuild when a migration is added or changed (sqlx::migrate! embeds them), and mark the
//! PostgreSQL tests ignored when no database is configured, so they never report "ok" without
//! running.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo::rustc-check-cfg=cfg(inventory_no_postgres)");
    println!("cargo:rerun-if-env-changed=INVENTORY_TEST_POSTGRES_URL");
    if std::env::var("INVENTORY_TEST_POSTGRES_URL").map_or(true, |v| v.is_empty()) {
        println!("cargo:rustc-cfg=inventory_no_postgres");
    }
}
