//! Products and their stock.

use crate::domain::*;
use crate::error::Error;

use super::*;

/// Products: create, duplicate conflict, idempotent ensure, ordered pages, restock.
pub async fn products_create_list_restock(store: TestStore) {
    let ids: Vec<ProductId> = futures::future::join_all(
        ["p-3", "p-1", "p-2"]
            .map(|id| product(&store, id, 5))
            .into_iter()
            .map(Box::pin),
    )
    .await;
    let dup = NewProduct::new(ids[0].clone(), "Other", 99).unwrap();
    let created = store.create_product(&dup, t0()).await;
    assert!(
        matches!(created, Err(Error::AlreadyExists(_))),
        "creating a product with a taken id must be AlreadyExists, got {created:?}"
    );
    assert!(
        !store.ensure_product(&dup, t0()).await.unwrap(),
        "existing id is not created"
    );
    assert_eq!(stock(&store, &ids[0]).await, 5, "ensure never resets stock");
    let fresh = NewProduct::new(ProductId::new("p-4").unwrap(), "Four", 0).unwrap();
    assert!(store.ensure_product(&fresh, t0()).await.unwrap());
    assert!(!store.ensure_product(&fresh, t0()).await.unwrap());

    let all = store.list_products(Page::default()).await.unwrap();
    let names: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(names, ["p-1", "p-2", "p-3", "p-4"]);
    assert_eq!(all[3].status(), ProductStatus::OutOfStock);
    let second_page = store.list_products(Page::new(2, 1).unwrap()).await.unwrap();
    assert_eq!(second_page.len(), 1);
    assert_eq!(second_page[0].id.as_str(), "p-3");

    let restocked = store
        .restock(&fresh.id, 7, SYSTEM_ACTOR, t0())
        .await
        .unwrap();
    assert_eq!(restocked.quantity, 7);
    assert_eq!(restocked.status(), ProductStatus::InStock);
    let missing = store
        .restock(&ProductId::new("nope").unwrap(), 1, SYSTEM_ACTOR, t0())
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
    let odd = ProductId::new("../'; DROP TABLE products; --\"é").unwrap();
    let weird = NewProduct::new(odd.clone(), "Robert'); DROP TABLE orders;--", 1).unwrap();
    store.create_product(&weird, t0()).await.unwrap();
    let back = store
        .get_product(&odd)
        .await
        .unwrap()
        .expect("stored verbatim");
    assert_eq!(back.name, weird.name);
}

/// Restocking past [`STOCK_MAX`] is refused as invalid input and changes nothing.
pub async fn restock_refuses_stock_above_the_maximum(store: TestStore) {
    let p = product(&store, "product-1", 5).await;
    let result = store.restock(&p, STOCK_MAX, SYSTEM_ACTOR, t0()).await;
    assert!(
        matches!(result, Err(crate::Error::InvalidInput { .. })),
        "restock above STOCK_MAX must be InvalidInput, the backend returned {result:?}"
    );
    assert_eq!(
        stock(&store, &p).await,
        5,
        "a refused restock changed the stock"
    );
    let ok = store
        .restock(&p, STOCK_MAX - 5, SYSTEM_ACTOR, t0())
        .await
        .expect("up to STOCK_MAX is fine");
    assert_eq!(ok.quantity, STOCK_MAX);
}
