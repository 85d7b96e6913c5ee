//! The smallest use of the library without HTTP: an in-memory store and a recording mailer.
//! Register a user, place an order, run the dispatcher once, print the email.
//!
//! ```sh
//! cargo run --example embed
//! ```

use std::sync::Arc;

use inventory_kit::core::{
    Auth, AuthConfig, Dispatcher, DispatcherConfig, MemoryStore, NewProduct, Orders,
    PlaceOrderRequest, ProductId, RecordingMailer, Store,
};

#[tokio::main]
async fn main() -> Result<(), inventory_kit::core::Error> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let product = NewProduct::new(ProductId::new("product-1")?, "Demo Product", 5)?;
    store
        .ensure_product(&product, inventory_kit::core::now())
        .await?;

    let auth = Auth::new(
        store.clone(),
        AuthConfig::new("an example secret of 32+ bytes!!")?,
    )?;
    let (user, token) = auth
        .register("ann@example.com", "correct horse battery")
        .await?;
    let me = auth.verify(&token.access_token)?;
    println!("registered {} ({})", user.email, user.id);

    let orders = Orders::new(store.clone(), store.clone());
    let request = PlaceOrderRequest::one("product-1", Some(2));
    let placed = orders.place(&me, request).await?;
    println!("placed order {} ({})", placed.order.id, placed.order.status);

    let mailer = Arc::new(RecordingMailer::new());
    let report = Dispatcher::new(store.clone(), mailer.clone(), DispatcherConfig::default())
        .run_once()
        .await?;
    println!("dispatcher: {report:?}");
    for email in mailer.deliveries() {
        println!(
            "\nTo: {}\nSubject: {}\n\n{}",
            email.to, email.subject, email.text
        );
    }
    let order = store
        .get_order(placed.order.id)
        .await?
        .expect("order exists");
    println!("order is now {}", order.status);
    Ok(())
}
