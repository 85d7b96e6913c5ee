//! Products: listing, reading, creating (admins), restocking and setting stock (admins), and
//! each product's stock ledger (admins).

use super::*;
use inventory_core::{LedgerEntry, StockSet};

#[derive(Serialize, ToSchema)]
pub(crate) struct ProductResponse {
    product_id: String,
    product_name: String,
    /// Units available to order (the original's field).
    quantity: u64,
    /// Units held by active holds: neither available nor sold.
    reserved: u64,
    status: String,
}

impl From<Product> for ProductResponse {
    fn from(p: Product) -> Self {
        ProductResponse {
            status: p.status().to_string(),
            product_id: p.id.to_string(),
            product_name: p.name,
            quantity: p.quantity,
            reserved: p.reserved,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewProductBody {
    product_id: String,
    product_name: String,
    quantity: u64,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RestockBody {
    /// Units to add (at least 1).
    quantity: u64,
}

#[utoipa::path(get, path = "/products", tag = "products", params(PageQuery),
    responses((status = 200, description = "Products by id", body = [ProductResponse])))]
pub(crate) async fn list_products(
    State(state): State<ApiState>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let products = state.store.list_products(q.page()?).await?;
    Ok(q.answer(products, ProductResponse::from))
}

#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "The product", body = ProductResponse),
              (status = 404, description = "No such product", body = ErrorBody)))]
pub(crate) async fn get_product(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ProductResponse>> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("product {id} not found"));
    let pid = ProductId::new(id.clone()).map_err(|_| not_found())?;
    let product = state.store.get_product(&pid).await?.ok_or_else(not_found)?;
    Ok(Json(product.into()))
}

pub(crate) fn require_admin(who: &inventory_core::Principal) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "admins only"))
    }
}

#[utoipa::path(post, path = "/products", tag = "products", request_body = NewProductBody, security(("bearer" = [])),
    responses((status = 201, description = "Created", body = ProductResponse),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 409, description = "Id taken", body = ErrorBody)))]
pub(crate) async fn create_product(
    State(state): State<ApiState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<NewProductBody>,
) -> ApiResult<impl IntoResponse> {
    require_admin(&who)?;
    let new = NewProduct::new(
        ProductId::new(body.product_id)?,
        body.product_name,
        body.quantity,
    )?;
    let product = state
        .store
        .create_product(&new, inventory_core::now())
        .await?;
    Ok((StatusCode::CREATED, Json(ProductResponse::from(product))))
}

#[utoipa::path(post, path = "/products/{id}/restock", tag = "products", request_body = RestockBody, security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "Restocked", body = ProductResponse),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 404, description = "No such product", body = ErrorBody)))]
pub(crate) async fn restock(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RestockBody>,
) -> ApiResult<Json<ProductResponse>> {
    require_admin(&who)?;
    if body.quantity == 0 {
        return Err(Error::invalid("quantity", "must be at least 1").into());
    }
    let product = state
        .store
        .restock(
            &ProductId::new(id)?,
            body.quantity,
            &who.user_id.to_string(),
            inventory_core::now(),
        )
        .await?;
    Ok(Json(product.into()))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct SetStockBody {
    /// The new available quantity.
    quantity: u64,
    /// The available quantity the caller last saw: the set is refused (409 `stock_changed`,
    /// with `current`) when the product no longer has it.
    expected: u64,
    /// Why, kept as the ledger entry's reference when `reference` is not given.
    reason: Option<String>,
    /// What the set belongs to (a purchase order or stock count URI), at most 512 bytes.
    reference: Option<String>,
}

#[utoipa::path(put, path = "/products/{id}/stock", tag = "products", request_body = SetStockBody, security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "Set", body = ProductResponse),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 404, description = "No such product", body = ErrorBody),
              (status = 409, description = "The stock is no longer `expected` (`stock_changed`, with `current`)", body = ErrorBody)))]
pub(crate) async fn set_stock(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetStockBody>,
) -> ApiResult<Json<ProductResponse>> {
    require_admin(&who)?;
    let set = StockSet::new(
        ProductId::new(id)?,
        body.quantity,
        body.expected,
        inventory_core::stock_note(body.reason, body.reference),
        who.user_id.to_string(),
    )?;
    Ok(Json(state.store.set_stock(&set).await?.into()))
}

/// One entry of a product's stock ledger.
#[derive(Serialize, ToSchema)]
pub(crate) struct LedgerEntryResponse {
    id: String,
    /// Change of the available quantity.
    delta: i64,
    /// Change of the reserved quantity.
    reserved_delta: i64,
    /// Available quantity after the change (null where the store does not know it: a
    /// sharded product on Firestore).
    quantity: Option<u64>,
    /// Reserved quantity after the change (null as for `quantity`).
    reserved: Option<u64>,
    /// `opening`, `order`, `cancel`, `restock`, `set`, `import`, `hold`, `release`, `expire`
    /// or `checkout`.
    reason: String,
    /// A user id, or `system`.
    actor: String,
    /// An order or hold id, or an operator's text.
    reference: Option<String>,
    /// RFC 3339.
    at: String,
}

impl From<LedgerEntry> for LedgerEntryResponse {
    fn from(e: LedgerEntry) -> Self {
        LedgerEntryResponse {
            id: e.id.to_string(),
            delta: e.delta,
            reserved_delta: e.reserved_delta,
            quantity: e.quantity,
            reserved: e.reserved,
            reason: e.reason.to_string(),
            actor: e.actor,
            reference: e.reference,
            at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }
    }
}

#[utoipa::path(get, path = "/products/{id}/ledger", tag = "products", params(("id" = String, Path, description = "Product id"), PageQuery), security(("bearer" = [])),
    responses((status = 200, description = "Entries, newest first (`Link` to the next page)", body = [LedgerEntryResponse]),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 404, description = "No such product", body = ErrorBody)))]
pub(crate) async fn product_ledger(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    require_admin(&who)?;
    let entries = state
        .store
        .list_ledger(&ProductId::new(id)?, q.page()?)
        .await?;
    Ok(q.answer(entries, LedgerEntryResponse::from))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub(crate) struct LowStockBody {
    /// Available units at or below which `stock.low` is sent when the stock falls to it from
    /// above; `null` removes the threshold.
    threshold: Option<u64>,
}

#[utoipa::path(put, path = "/products/{id}/low-stock", tag = "products", request_body = LowStockBody, security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "Set", body = LowStockBody),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 404, description = "No such product", body = ErrorBody)))]
pub(crate) async fn set_low_stock(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LowStockBody>,
) -> ApiResult<Json<LowStockBody>> {
    require_admin(&who)?;
    let id = ProductId::new(id)?;
    state
        .store
        .set_low_stock_threshold(&id, body.threshold)
        .await?;
    Ok(Json(LowStockBody {
        threshold: state.store.low_stock_threshold(&id).await?,
    }))
}
