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

#[derive(Parser)]
#[command(about = "Administration of an inventory-kit store")]
struct Cli {
    /// The store (`sqlite://...`, `postgres://...`, `firestore://PROJECT`). Unset:
    /// `firestore://$GCP_PROJECT_ID` when that is set, else the local SQLite file.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the schema migrations (they also run whenever a program connects).
    Migrate,
    /// Creates the products of a JSON file (`[{"product_id","product_name","quantity"}]`) that do
    /// not exist yet.
    SeedProducts { file: PathBuf },
    /// Makes a user admin; creates it first (password from `ADMIN_PASSWORD`) if it does not exist.
    CreateAdmin { email: String },
    /// Takes the stored admin role away (its tokens end at once). Addresses in the server's
    /// `ADMIN_EMAILS` are admin while listed there.
    RevokeAdmin { email: String },
    /// Ends every token issued to a user so far (they must log in again).
    RevokeTokens { email: String },
    /// Products.
    Products {
        #[command(subcommand)]
        command: ProductsCommand,
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
    /// Reads records written by `export` into this store. Records that exist already are
    /// skipped and listed; exits 1 if any was skipped, unless `--partial`.
    Import {
        file: PathBuf,
        /// Accept skipped records (for example when resuming an import).
        #[arg(long)]
        partial: bool,
    },
    /// SQLite only: an online, consistent copy of the database into FILE.
    Backup { file: PathBuf },
}

#[derive(Subcommand)]
enum ProductsCommand {
    /// Lists products and their stock.
    List,
    /// Adds units to a product's stock.
    Restock { product_id: String, quantity: u64 },
}

#[derive(Subcommand)]
enum NotificationsCommand {
    /// Counts by status.
    Counts,
    /// Lists failed notifications with their last error.
    Failed,
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

async fn all_pages<T, F, Fut>(fetch: F) -> inventory_kit::core::Result<Vec<T>>
where
    F: Fn(Page) -> Fut,
    Fut: std::future::Future<Output = inventory_kit::core::Result<Vec<T>>>,
{
    let mut out = Vec::new();
    loop {
        let page = fetch(Page::new(out.len() as u32, 1000)?).await?;
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = Settings::from_env()?;
    if let Some(url) = cli.database_url.clone() {
        settings.database.url = url;
    }
    // Commands that only read never create a database: a missing SQLite file is an error
    // naming it.
    let read_only = matches!(
        cli.command,
        Command::Products {
            command: ProductsCommand::List
        } | Command::Notifications {
            command: NotificationsCommand::Counts | NotificationsCommand::Failed
        } | Command::Export { .. }
            | Command::Backup { .. }
    );
    let store: std::sync::Arc<dyn Store> = if read_only {
        settings.open_store_read_only().await?
    } else {
        settings.open_store().await?
    };
    match cli.command {
        Command::Migrate => println!("schema is up to date"),
        Command::SeedProducts { file } => {
            let raw =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let products = SeedProduct::parse_list(&raw)?;
            let created = SeedProduct::ensure_all(&products, store.as_ref()).await?;
            println!(
                "{created} created, {} already present",
                products.len() - created
            );
        }
        Command::RevokeAdmin { email } => {
            let user = store
                .set_role(&Email::parse(&email)?, Role::Customer)
                .await?;
            println!(
                "{} is no longer admin; its earlier tokens are revoked",
                user.email
            );
        }
        Command::RevokeTokens { email } => {
            let user = store.revoke_tokens(&Email::parse(&email)?).await?;
            println!("every token issued to {} before now is revoked", user.email);
        }
        Command::CreateAdmin { email } => {
            let email = Email::parse(&email)?;
            match store.find_user_by_email(&email).await? {
                Some(_) => {
                    store.set_role(&email, Role::Admin).await?;
                    println!("{email} is now admin");
                }
                None => {
                    let password = std::env::var("ADMIN_PASSWORD").map_err(|_| {
                        format!("{email} does not exist: set ADMIN_PASSWORD to create it")
                    })?;
                    let hasher = PasswordHasher::new(HashParams::default(), 1)?;
                    let user = User {
                        id: uuid::Uuid::now_v7(),
                        email: email.clone(),
                        password_hash: hasher.hash(&Password::new(password)?).await?,
                        role: Role::Admin,
                        created_at: inventory_kit::core::now(),
                        token_version: 0,
                    };
                    store.create_user(&user).await?;
                    println!("{email} created as admin");
                }
            }
        }
        Command::Products {
            command: ProductsCommand::List,
        } => {
            println!(
                "{:<32} {:>12}  {:<12}  name",
                "product_id", "quantity", "status"
            );
            for p in all_pages(|page| store.list_products(page)).await? {
                println!(
                    "{:<32} {:>12}  {:<12}  {}",
                    p.id,
                    p.quantity,
                    p.status(),
                    p.name
                );
            }
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
                    inventory_kit::core::now(),
                )
                .await?;
            println!("{}: {} in stock", p.id, p.quantity);
        }
        Command::Notifications {
            command: NotificationsCommand::Counts,
        } => {
            let c = store.notification_counts().await?;
            println!(
                "pending {}\nsent {}\nfailed {}\ncancelled {}",
                c.pending, c.sent, c.failed, c.cancelled
            );
        }
        Command::Notifications {
            command: NotificationsCommand::Failed,
        } => {
            let failed =
                all_pages(|page| store.list_notifications(NotificationStatus::Failed, page))
                    .await?;
            for n in &failed {
                println!(
                    "{}  order {}  to {}  attempts {}  last error: {}",
                    n.id,
                    n.order_id,
                    n.recipient,
                    n.attempts,
                    n.last_error.as_deref().unwrap_or("-")
                );
            }
            println!("{} failed", failed.len());
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
            println!("{n} notification(s) queued again");
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
            let mut out = tokio::io::BufWriter::new(f);
            let report = transfer::export(store.as_ref(), &mut out).await?;
            finish_transfer("exported", &report, partial, &file.display().to_string())?;
        }
        Command::Import { file, partial } => {
            let f = tokio::fs::File::open(&file)
                .await
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let report = transfer::import(store.as_ref(), tokio::io::BufReader::new(f)).await?;
            finish_transfer("imported", &report, partial, &file.display().to_string())?;
        }
        Command::Backup { file } => {
            if settings.database.scheme() != "sqlite" {
                return Err("backup is for SQLite; use pg_dump or Firestore's managed backups (see docs/operations.md)".into());
            }
            let sql =
                inventory_kit::sql::SqlStore::connect(&settings.database.read_only_url()).await?;
            sql.backup_sqlite(&file).await?;
            println!("backup written to {}", file.display());
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

/// Prints what a transfer wrote and skipped; an incomplete transfer is an error unless the
/// operator accepted a partial one.
fn finish_transfer(
    verb: &str,
    report: &transfer::Report,
    partial: bool,
    file: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let c = &report.written;
    println!(
        "{verb} {} users, {} products, {} orders, {} notifications ({file})",
        c.users, c.products, c.orders, c.notifications
    );
    for s in &report.skipped {
        eprintln!("skipped {}: {}", s.what, s.reason);
    }
    if report.is_complete() || partial {
        return Ok(());
    }
    Err(format!(
        "{} record group(s) skipped (listed above); pass --partial to accept an incomplete transfer",
        report.skipped.len()
    )
    .into())
}
