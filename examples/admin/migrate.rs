//! `admin migrate [--status | --dry-run]`.

use inventory_kit::Settings;
use serde_json::json;

use crate::*;

/// The SQL store of `url` opened without running the migrations.
pub(crate) async fn unmigrated(
    url: &str,
) -> Result<inventory_kit::sql::SqlStore, Box<dyn std::error::Error>> {
    let options = inventory_kit::sql::SqlOptions {
        migrate: false,
        ..Default::default()
    };
    Ok(inventory_kit::sql::SqlStore::connect_with(url, options).await?)
}

/// `admin migrate [--status | --dry-run]`: the schema version, what this build would apply,
/// and (without a flag) applying it.
pub(crate) async fn migrate_command(
    settings: &Settings,
    only_show: bool,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let scheme = settings.database.scheme();
    if scheme == "firestore" || scheme == "memory" {
        say(
            json,
            format!("{scheme}: no schema migrations (documents are read as they are)"),
        );
        return Ok(());
    }
    // Any other scheme is the SQL store's to judge: an unknown one is refused there, naming
    // DATABASE_URL.
    // Applying may create a new SQLite file: open the store first. Showing only reads, through
    // a read-only connection of its own (not a byte of the file changes).
    let store = if only_show {
        None
    } else {
        Some(unmigrated(&settings.database.url).await?)
    };
    let states = inventory_kit::sql::migration_status(&settings.database.read_only_url()).await?;
    let version = states.iter().filter(|m| m.applied).map(|m| m.version).max();
    let pending: Vec<_> = states.iter().filter(|m| !m.applied).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "schema_version": version,
                "migrations": states.iter().map(|m| json!({
                    "version": m.version,
                    "description": m.description,
                    "applied": m.applied,
                })).collect::<Vec<_>>(),
                "pending": pending.iter().map(|m| m.version).collect::<Vec<_>>(),
                "applied_now": !only_show && !pending.is_empty(),
            }))?
        );
    } else {
        print_rows(
            false,
            &["version", "migration", "state"],
            states
                .iter()
                .map(|m| {
                    vec![
                        json!(m.version),
                        json!(m.description),
                        json!(if m.applied { "applied" } else { "pending" }),
                    ]
                })
                .collect(),
        );
        match version {
            Some(v) => println!("schema version {v}"),
            None => println!("empty database (no schema yet)"),
        }
        if pending.is_empty() {
            println!("schema is up to date");
        } else if only_show {
            let backup = if scheme == "sqlite" {
                "admin backup FILE"
            } else {
                "pg_dump"
            };
            println!(
                "this build would apply {} migration(s); back up first ({backup})",
                pending.len()
            );
        }
    }
    if let Some(sql) = store {
        if !pending.is_empty() {
            sql.migrate().await?;
            if !json {
                println!(
                    "applied {} migration(s); schema is up to date",
                    pending.len()
                );
            }
        }
        sql.close().await;
    }
    Ok(())
}
