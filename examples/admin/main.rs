//! Operations on any backend named by `DATABASE_URL`: migrations, seeding, admins, products,
//! the outbox, export/import between backends, and SQLite backups.
//!
//! ```sh
//! cargo run --example admin -- --help
//! cargo run --example admin -- notifications counts
//! DATABASE_URL=postgres://... cargo run --example admin -- import export.jsonl
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inventory_kit::Settings;
use inventory_kit::core::{
    Email, HashParams, NotificationStatus, Page, Password, PasswordHasher, ProductId, Role, Store,
    User, transfer,
};
use inventory_kit::settings::SeedProduct;
use serde_json::json;

mod data;
mod events;
mod migrate;
mod output;
mod stock;

use data::*;
use migrate::*;
use output::*;

#[derive(Parser)]
#[command(about = "Administration of an inventory-kit store", version)]
struct Cli {
    /// The store (`sqlite://...`, `postgres://...`, `firestore://PROJECT`). Unset:
    /// `firestore://$GCP_PROJECT_ID` when that is set, else the local SQLite file.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Print listings and results as JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the schema migrations (they also run whenever a program connects), after listing
    /// the ones it applies. Back up first (`admin backup FILE` on SQLite, `pg_dump` on
    /// PostgreSQL): see docs/operations.md on upgrades.
    Migrate {
        /// Only show the schema version and every migration, applied or pending.
        #[arg(long)]
        status: bool,
        /// Show the migrations this build would apply, and apply none.
        #[arg(long)]
        dry_run: bool,
    },
    /// Creates the products of a JSON file (`[{"product_id","product_name","quantity"}]`) that do
    /// not exist yet.
    SeedProducts { file: PathBuf },
    /// Users: list, grant and revoke admin rights, end tokens.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Orders: list, show, cancel.
    Orders {
        #[command(subcommand)]
        command: OrdersCommand,
    },
    /// Same as `users grant-admin`.
    CreateAdmin { email: String },
    /// Same as `users revoke-admin`.
    RevokeAdmin { email: String },
    /// Same as `users revoke-tokens`.
    RevokeTokens { email: String },
    /// Products.
    Products {
        #[command(subcommand)]
        command: ProductsCommand,
    },
    /// Compares every product's stock (or one's) with what its ledger entries add up to, read
    /// together, and on Firestore each sharded product's document snapshot with its shards'
    /// total (a snapshot row: `quantity` the snapshot, `ledger_quantity` the shards); prints
    /// each difference and exits 1 when any is found. Safe with the server running: each
    /// product is one read (and one short transaction with `--repair`, which also syncs
    /// snapshots).
    Reconcile {
        /// Only this product.
        #[arg(long)]
        product: Option<String>,
        /// Sets each product found different back to what its ledger says, with a `set` entry
        /// naming what was found (one transaction per product; a product that changed
        /// meanwhile is left for the next run).
        #[arg(long)]
        repair: bool,
    },
    /// The outbox of confirmation emails.
    Notifications {
        #[command(subcommand)]
        command: NotificationsCommand,
    },
    /// Writes every user, product, order and notification to FILE as JSON lines. Exits 1 if
    /// the store holds records the export could not write, unless `--partial`.
    /// The file holds password hashes: it is created with mode 600 and an existing file is
    /// never overwritten without `--force`.
    Export {
        file: PathBuf,
        /// Accept an export that misses records (they are still listed).
        #[arg(long)]
        partial: bool,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Reads records written by `export` into this store. Resumable: records that exist
    /// already are skipped and listed, so after an interruption the same command continues
    /// where it stopped; exits 1 if any was skipped, unless `--partial`.
    Import {
        file: PathBuf,
        /// Accept skipped records (for example when resuming an import).
        #[arg(long)]
        partial: bool,
    },
    /// SQLite only: an online, consistent copy of the database into FILE.
    Backup { file: PathBuf },
    /// Webhook endpoints: list, create, delete, rotate a secret.
    Webhooks {
        #[command(subcommand)]
        command: events::WebhooksCommand,
    },
    /// Event deliveries (webhooks, Pub/Sub): counts, failed ones, replay.
    Deliveries {
        #[command(subcommand)]
        command: events::DeliveriesCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Lists users with their role.
    List,
    /// Makes a user admin (its earlier tokens end); creates it first, with the password in
    /// `ADMIN_PASSWORD`, if it does not exist. Addresses in the server's `ADMIN_EMAILS` are
    /// admin while listed there, whatever is stored.
    GrantAdmin { email: String },
    /// Takes the stored admin role away (its tokens end at once).
    RevokeAdmin { email: String },
    /// Ends every token issued to a user so far (they must log in again).
    RevokeTokens { email: String },
    /// Marks a user's address verified, as its verification code would (for an operator who
    /// checked the address another way).
    Verify { email: String },
}

#[derive(Subcommand)]
enum OrdersCommand {
    /// Lists orders, newest first.
    List {
        /// Only this buyer's orders.
        #[arg(long)]
        user: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One order and its confirmation email.
    Show { id: uuid::Uuid },
    /// Cancels an order: its units return to stock, an unsent confirmation is never sent.
    Cancel { id: uuid::Uuid },
}

#[derive(Subcommand)]
enum ProductsCommand {
    /// Lists products and their stock.
    List,
    /// Adds units to a product's stock.
    Restock { product_id: String, quantity: u64 },
    /// Sets a product's available quantity, only if it is still `--expected` (otherwise
    /// exits 1 naming the current quantity, and nothing changes).
    SetStock {
        product_id: String,
        quantity: u64,
        /// The available quantity you last saw.
        #[arg(long)]
        expected: u64,
        /// Why (kept in the ledger entry).
        #[arg(long)]
        reason: Option<String>,
        /// What it belongs to, such as a purchase order URI (kept in the ledger entry).
        #[arg(long)]
        reference: Option<String>,
    },
    /// A product's stock ledger, newest first: every change with its reason, actor and
    /// reference.
    Ledger {
        product_id: String,
        /// Entries to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Firestore: splits a hot product's stock over N shard documents (about N orders per
    /// second instead of one on real Firestore). Safe while orders flow; again to re-split.
    Shard {
        product_id: String,
        /// Shard documents, 1 to 256.
        #[arg(long)]
        shards: u32,
    },
    /// Firestore: puts a sharded product's stock back into its document.
    Unshard { product_id: String },
    /// Firestore: writes a sharded product's true total into its document's `quantity` and
    /// `status`, which the original's clients read (orders do not update it).
    SyncStock { product_id: String },
}

#[derive(Subcommand)]
enum NotificationsCommand {
    /// Counts by status.
    Counts,
    /// Lists failed notifications with their last error.
    Failed,
    /// Deletes failed notifications (given up on: never sent).
    Remove {
        /// One notification.
        #[arg(long, conflicts_with = "all")]
        id: Option<uuid::Uuid>,
        /// Every failed notification.
        #[arg(long)]
        all: bool,
    },
    /// Puts failed notifications back in the queue.
    Retry {
        /// One notification.
        #[arg(long, conflicts_with = "all")]
        id: Option<uuid::Uuid>,
        /// Every failed notification.
        #[arg(long)]
        all: bool,
    },
}

async fn grant_admin(store: &dyn Store, email: &str) -> Result<String, Box<dyn std::error::Error>> {
    let email = Email::parse(email)?;
    if store.find_user_by_email(&email).await?.is_some() {
        store.set_role(&email, Role::Admin).await?;
        return Ok(format!("{email} is now admin"));
    }
    let password = std::env::var("ADMIN_PASSWORD")
        .map_err(|_| format!("{email} does not exist: set ADMIN_PASSWORD to create it"))?;
    let hasher = PasswordHasher::new(HashParams::default(), 1)?;
    let user = User {
        id: uuid::Uuid::now_v7(),
        email: email.clone(),
        password_hash: hasher.hash(&Password::new(password)?).await?,
        role: Role::Admin,
        created_at: inventory_kit::core::now(),
        token_version: 0,
        email_verified: false,
    };
    store.create_user(&user).await?;
    Ok(format!("{email} created as admin"))
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = Settings::from_env()?;
    if let Some(url) = cli.database_url.clone() {
        settings.database.url = url;
    }
    if let Command::Migrate { status, dry_run } = cli.command {
        return migrate_command(&settings, status || dry_run, cli.json).await;
    }
    // Commands that only read never create a database: a missing SQLite file is an error
    // naming it.
    let read_only = matches!(
        cli.command,
        Command::Products {
            command: ProductsCommand::List | ProductsCommand::Ledger { .. }
        } | Command::Reconcile { repair: false, .. }
            | Command::Notifications {
                command: NotificationsCommand::Counts | NotificationsCommand::Failed
            }
            | Command::Export { .. }
            | Command::Backup { .. }
            | Command::Webhooks {
                command: events::WebhooksCommand::List
            }
            | Command::Deliveries {
                command: events::DeliveriesCommand::Counts | events::DeliveriesCommand::List { .. }
            }
    );
    let store: std::sync::Arc<dyn Store> = if read_only {
        settings.open_store_read_only().await?
    } else {
        settings.open_store().await?
    };
    let json = cli.json;
    match cli.command {
        Command::Migrate { .. } => unreachable!("handled before the store opens"),
        Command::SeedProducts { file } => {
            let raw =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let products = SeedProduct::parse_list(&raw)?;
            let created = SeedProduct::ensure_all(&products, store.as_ref()).await?;
            say(
                json,
                format!(
                    "{created} created, {} already present",
                    products.len() - created
                ),
            );
        }
        Command::Users {
            command: UsersCommand::List,
        } => {
            let users = transfer::collect_all(|page| store.list_users(page)).await?;
            let rows = users
                .iter()
                .map(|u| {
                    vec![
                        json!(u.email.to_string()),
                        json!(u.role.as_str()),
                        json!(u.email_verified),
                        json!(u.id.to_string()),
                        json!(u.created_at.format("%Y-%m-%d %H:%M:%S").to_string()),
                    ]
                })
                .collect();
            print_rows(
                json,
                &["email", "role", "verified", "user_id", "created_at"],
                rows,
            );
        }
        Command::CreateAdmin { email }
        | Command::Users {
            command: UsersCommand::GrantAdmin { email },
        } => say(json, grant_admin(store.as_ref(), &email).await?),
        Command::RevokeAdmin { email }
        | Command::Users {
            command: UsersCommand::RevokeAdmin { email },
        } => {
            let user = store
                .set_role(&Email::parse(&email)?, Role::Customer)
                .await?;
            say(
                json,
                format!(
                    "{} is no longer admin; its earlier tokens are revoked",
                    user.email
                ),
            );
        }
        Command::RevokeTokens { email }
        | Command::Users {
            command: UsersCommand::RevokeTokens { email },
        } => {
            let user = store.revoke_tokens(&Email::parse(&email)?).await?;
            say(
                json,
                format!("every token issued to {} before now is revoked", user.email),
            );
        }
        Command::Users {
            command: UsersCommand::Verify { email },
        } => {
            let user = store.mark_email_verified(&Email::parse(&email)?).await?;
            say(json, format!("{} is verified", user.email));
        }
        Command::Orders {
            command: OrdersCommand::List { user, limit },
        } => {
            let page = Page::new(0, limit)?;
            let orders = match user {
                Some(email) => {
                    let email = Email::parse(&email)?;
                    let user = store
                        .find_user_by_email(&email)
                        .await?
                        .ok_or_else(|| format!("no user {email}"))?;
                    store.list_orders_for_user(user.id, page).await?
                }
                None => store.list_orders(page).await?,
            };
            print_rows(json, &ORDER_HEADER, order_rows(&orders));
        }
        Command::Orders {
            command: OrdersCommand::Show { id },
        } => {
            let order = store
                .get_order(id)
                .await?
                .ok_or_else(|| format!("order {id} not found"))?;
            let mut rows = order_rows(std::slice::from_ref(&order));
            let mut header = ORDER_HEADER.to_vec();
            let n = store.notification_for_order(id).await?;
            header.extend(["email", "attempts", "last_error"]);
            rows[0].extend(match n {
                Some(n) => [
                    json!(n.status.to_string()),
                    json!(n.attempts),
                    json!(n.last_error),
                ],
                None => [json!("none"), json!(null), json!(null)],
            });
            print_rows(json, &header, rows);
        }
        Command::Orders {
            command: OrdersCommand::Cancel { id },
        } => {
            let order = store
                .cancel_order(
                    id,
                    inventory_kit::core::SYSTEM_ACTOR,
                    inventory_kit::core::now(),
                )
                .await?;
            say(
                json,
                format!(
                    "order {} cancelled; back in stock: {}",
                    order.id,
                    order
                        .lines
                        .demand()
                        .iter()
                        .map(|(id, units)| format!("{units} unit(s) of {id}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        Command::Products {
            command: ProductsCommand::List,
        } => {
            let rows = transfer::collect_all(|page| store.list_products(page))
                .await?
                .into_iter()
                .map(|p| {
                    vec![
                        json!(p.id.to_string()),
                        json!(p.quantity),
                        json!(p.status().to_string()),
                        json!(p.name),
                    ]
                })
                .collect();
            print_rows(json, &["product_id", "quantity", "status", "name"], rows);
        }
        Command::Products {
            command:
                ProductsCommand::Restock {
                    product_id,
                    quantity,
                },
        } => {
            let p = store
                .restock(
                    &ProductId::new(product_id)?,
                    quantity,
                    inventory_kit::core::SYSTEM_ACTOR,
                    inventory_kit::core::now(),
                )
                .await?;
            say(json, format!("{}: {} in stock", p.id, p.quantity));
        }
        Command::Webhooks { command } => {
            events::webhooks(&settings, store.as_ref(), json, command).await?;
        }
        Command::Deliveries { command } => {
            events::deliveries(store.as_ref(), json, command).await?;
        }
        Command::Reconcile { product, repair } => {
            stock::reconcile(&settings, store.as_ref(), json, product, repair).await?;
        }
        Command::Products {
            command:
                ProductsCommand::SetStock {
                    product_id,
                    quantity,
                    expected,
                    reason,
                    reference,
                },
        } => {
            let set = stock::SetStock {
                product_id,
                quantity,
                expected,
                reason,
                reference,
            };
            let p = stock::set_stock(store.as_ref(), set).await?;
            say(json, format!("{}: {} in stock", p.id, p.quantity));
        }
        Command::Products {
            command: ProductsCommand::Ledger { product_id, limit },
        } => {
            stock::ledger(store.as_ref(), json, product_id, limit).await?;
        }
        Command::Products {
            command:
                command @ (ProductsCommand::Shard { .. }
                | ProductsCommand::Unshard { .. }
                | ProductsCommand::SyncStock { .. }),
        } => {
            let p = shard_command(&settings, command).await?;
            if json {
                println!(
                    "{}",
                    json!({"product_id": p.id.as_str(), "quantity": p.quantity})
                );
            } else {
                println!("{}: {} in stock", p.id, p.quantity);
            }
        }
        Command::Notifications {
            command: NotificationsCommand::Counts,
        } => {
            let c = store.notification_counts().await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"pending": c.pending, "sent": c.sent, "failed": c.failed, "cancelled": c.cancelled})
                );
            } else {
                println!(
                    "pending {}\nsent {}\nfailed {}\ncancelled {}",
                    c.pending, c.sent, c.failed, c.cancelled
                );
            }
        }
        Command::Notifications {
            command: NotificationsCommand::Failed,
        } => {
            let failed = transfer::collect_all(|page| {
                store.list_notifications(NotificationStatus::Failed, page)
            })
            .await?;
            let rows = failed
                .iter()
                .map(|n| {
                    vec![
                        json!(n.id.to_string()),
                        json!(n.message.kind()),
                        json!(n.order_id().map(|id| id.to_string())),
                        json!(n.recipient.to_string()),
                        json!(n.attempts),
                        json!(n.last_error),
                    ]
                })
                .collect();
            print_rows(
                json,
                &[
                    "notification_id",
                    "kind",
                    "order_id",
                    "recipient",
                    "attempts",
                    "last_error",
                ],
                rows,
            );
            if !json {
                println!("{} failed", failed.len());
            }
        }
        Command::Notifications {
            command: NotificationsCommand::Retry { id, all },
        } => {
            if id.is_none() && !all {
                return Err("name a notification with --id, or pass --all".into());
            }
            let n = store.retry_failed(id, inventory_kit::core::now()).await?;
            if let Some(id) = id
                && n == 0
            {
                return Err(format!("notification {id} does not exist or is not failed").into());
            }
            say(json, format!("{n} notification(s) queued again"));
        }
        Command::Notifications {
            command: NotificationsCommand::Remove { id, all },
        } => {
            if id.is_none() && !all {
                return Err("name a notification with --id, or pass --all".into());
            }
            let mut n = 0;
            loop {
                let removed = store
                    .remove_failed_notifications(id, inventory_kit::core::retention::PRUNE_BATCH)
                    .await?;
                n += removed;
                if id.is_some() || removed < u64::from(inventory_kit::core::retention::PRUNE_BATCH)
                {
                    break;
                }
            }
            if let Some(id) = id
                && n == 0
            {
                return Err(format!("notification {id} does not exist or is not failed").into());
            }
            say(json, format!("{n} failed notification(s) removed"));
        }
        Command::Export {
            file,
            partial,
            force,
        } => {
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true);
            if force {
                options.create(true).truncate(true);
            } else {
                options.create_new(true);
            }
            #[cfg(unix)]
            options.mode(0o600);
            let f = options.open(&file).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    format!("{} exists: pass --force to replace it", file.display())
                } else {
                    format!("{}: {e}", file.display())
                }
            })?;
            // A replaced file keeps its old mode: make it private too.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                tokio::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .await
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
            let held = store.count_records().await?;
            let progress = bar(held.total(), "exporting");
            let mut out = tokio::io::BufWriter::new(f);
            let tick = progress.clone();
            let report =
                transfer::export_with_progress(store.as_ref(), &mut out, &mut || tick.inc(1))
                    .await?;
            progress.finish_and_clear();
            finish_transfer(
                "exported",
                &report,
                partial,
                &file.display().to_string(),
                json,
            )?;
        }
        Command::Import { file, partial } => {
            let f = tokio::fs::File::open(&file)
                .await
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let size = f.metadata().await.map(|m| m.len()).unwrap_or(0);
            let progress = bar(size, "importing");
            let tick = progress.clone();
            let report = transfer::import_with_progress(
                store.as_ref(),
                tokio::io::BufReader::new(f),
                &mut |bytes| tick.inc(bytes),
            )
            .await?;
            progress.finish_and_clear();
            finish_transfer(
                "imported",
                &report,
                partial,
                &file.display().to_string(),
                json,
            )?;
        }
        Command::Backup { file } => {
            if settings.database.scheme() != "sqlite" {
                return Err("backup is for SQLite; use pg_dump or Firestore's managed backups (see docs/operations.md)".into());
            }
            // The backup is of the database as it is: taken before an upgrade, it must not
            // run the migrations first.
            let sql = unmigrated(&settings.database.read_only_url()).await?;
            sql.backup_sqlite(&file).await?;
            say(json, format!("backup written to {}", file.display()));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
