//! Placing, reading and cancelling orders on behalf of an authenticated [`Principal`].

use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use crate::auth::Principal;
use crate::domain::*;
use crate::error::{Error, Result};
use crate::ports::{NotificationStore, OrderStore};

/// What a client asks for when placing an order: its lines, who receives the confirmation,
/// and a key that makes it safe to retry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaceOrderRequest {
    /// Who receives the confirmation; defaults to the caller. Only admins may name someone else.
    pub buyer_email: Option<String>,
    /// What to order: 1 to [`ORDER_LINES_MAX`] lines; lines of one product are summed.
    pub lines: Vec<LineRequest>,
    /// Makes the request safe to retry.
    pub idempotency_key: Option<String>,
}

impl PlaceOrderRequest {
    /// A one-line order (the original API's `POST /orders/place`).
    pub fn one(product_id: impl Into<String>, quantity: Option<u64>) -> Self {
        PlaceOrderRequest {
            lines: vec![LineRequest {
                product_id: product_id.into(),
                quantity,
            }],
            ..PlaceOrderRequest::default()
        }
    }
}

/// One line of a [`PlaceOrderRequest`], as a client sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineRequest {
    /// The product.
    pub product_id: String,
    /// Units, default 1.
    pub quantity: Option<u64>,
}

impl LineRequest {
    fn validate(self) -> Result<OrderLine> {
        Ok(OrderLine {
            product_id: ProductId::new(self.product_id)?,
            quantity: Quantity::new(self.quantity.unwrap_or(1))?,
        })
    }
}

/// The buyer of an order or hold placed by `who`: the caller unless named, and only admins may
/// name someone else ([`Error::Forbidden`]); with `require_verified`, the caller's address must
/// be verified ([`Error::Forbidden`]).
pub(crate) fn buyer_for(
    who: &Principal,
    named: Option<&str>,
    require_verified: bool,
) -> Result<Email> {
    if require_verified && !who.email_verified {
        return Err(Error::Forbidden(
            "verify your email address before ordering (POST /auth/verify)".into(),
        ));
    }
    let buyer = match named {
        None => who.email.clone(),
        Some(raw) => Email::parse(raw)?,
    };
    if buyer != who.email && !who.is_admin() {
        return Err(Error::Forbidden(
            "you may only place orders for your own email".into(),
        ));
    }
    Ok(buyer)
}

/// Validates a client's lines: 1 to [`ORDER_LINES_MAX`], each product id and quantity valid.
pub(crate) fn lines_of(lines: Vec<LineRequest>) -> Result<Lines> {
    if lines.len() > ORDER_LINES_MAX {
        // Before validating each: a huge list is refused without reading it through.
        return Err(Error::invalid(
            "lines",
            format!("at most {ORDER_LINES_MAX} lines per order"),
        ));
    }
    Lines::new(
        lines
            .into_iter()
            .map(LineRequest::validate)
            .collect::<Result<_>>()?,
    )
}

/// Whose orders [`Orders::list`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListScope {
    /// The caller's own orders.
    #[default]
    Mine,
    /// Every order (admins only).
    All,
}

/// An order with the delivery state of its confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    /// The order.
    pub order: Order,
    /// Its confirmation email, if the store still has it.
    pub notification: Option<Notification>,
}

/// The ordering service.
#[derive(Clone)]
pub struct Orders {
    orders: Arc<dyn OrderStore>,
    notifications: Arc<dyn NotificationStore>,
    require_verified_email: bool,
}

impl std::fmt::Debug for Orders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orders").finish_non_exhaustive()
    }
}

impl Orders {
    /// The service over its stores (usually the same [`Store`](crate::Store) twice).
    pub fn new(orders: Arc<dyn OrderStore>, notifications: Arc<dyn NotificationStore>) -> Self {
        Orders {
            orders,
            notifications,
            require_verified_email: false,
        }
    }

    /// Only callers with a verified address may order (`REQUIRE_VERIFIED_EMAIL`): then nobody
    /// can have confirmations sent to an address they do not read. Off by default, as the
    /// original service's clients know no verification.
    pub fn require_verified_email(mut self, required: bool) -> Self {
        self.require_verified_email = required;
        self
    }

    /// Validates and places an order. The buyer must be the caller unless the caller is admin
    /// ([`Error::Forbidden`]), and with [`Orders::require_verified_email`] the caller's
    /// address must be verified ([`Error::Forbidden`]).
    pub async fn place(&self, who: &Principal, req: PlaceOrderRequest) -> Result<Placed> {
        let buyer = buyer_for(who, req.buyer_email.as_deref(), self.require_verified_email)?;
        let lines = lines_of(req.lines)?;
        let key = req.idempotency_key.map(IdempotencyKey::new).transpose()?;
        let mut new = NewOrder::new(who.user_id, buyer, lines);
        if let Some(key) = key {
            new = new.with_idempotency_key(key);
        }
        let result = self.orders.place_order(&new).await;
        match &result {
            Ok(placed) if !placed.replayed => {
                metrics::counter!("inventory_orders_placed_total").increment(1)
            }
            Err(Error::OutOfStock { .. }) => {
                metrics::counter!("inventory_orders_out_of_stock_total").increment(1)
            }
            _ => {}
        }
        result
    }

    async fn visible(&self, who: &Principal, id: Uuid) -> Result<Order> {
        match self.orders.get_order(id).await? {
            // Someone else's order is reported as missing, so ids do not leak. The buyer sees
            // an order placed for their address too (the original's orders know only that).
            Some(order)
                if order.user_id == who.user_id
                    || order.buyer_email == who.email
                    || who.is_admin() =>
            {
                Ok(order)
            }
            _ => Err(Error::NotFound(format!("order {id}"))),
        }
    }

    /// An order of the caller (any order for admins) with its notification.
    pub async fn get(&self, who: &Principal, id: Uuid) -> Result<OrderView> {
        let order = self.visible(who, id).await?;
        let notification = self.notifications.notification_for_order(id).await?;
        Ok(OrderView {
            order,
            notification,
        })
    }

    /// The caller's orders, newest first; with [`ListScope::All`] (admins only), every order.
    pub async fn list(&self, who: &Principal, scope: ListScope, page: Page) -> Result<Vec<Order>> {
        // An order list's cursor is an order id.
        page.after_order()?;
        if scope == ListScope::All {
            if !who.is_admin() {
                return Err(Error::Forbidden("admins only".into()));
            }
            return self.orders.list_orders(page).await;
        }
        self.orders.list_orders_for_user(who.user_id, page).await
    }

    /// Cancels an order of the caller (any order for admins), returning its stock.
    pub async fn cancel(&self, who: &Principal, id: Uuid) -> Result<Order> {
        self.visible(who, id).await?;
        self.orders
            .cancel_order(id, &who.user_id.to_string(), Utc::now())
            .await
    }
}
