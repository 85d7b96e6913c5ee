//! The backend conformance suite (feature `testkit`).
//!
//! Every function here is a test of one storage behaviour against a fresh, empty store.
//! A backend proves itself with [`store_conformance!`](crate::store_conformance), which expands
//! to one `#[test]` per function (each runs on a tokio runtime of its own):
//!
//! ```
//! use inventory_core::testkit::TestStore;
//! // Your store where `MemoryStore` is; `None` when its backend is not configured here.
//! inventory_core::store_conformance!(async {
//!     Some(std::sync::Arc::new(inventory_core::MemoryStore::new()) as TestStore)
//! });
//! ```
//!
//! The functions are public so a backend can also call them one by one. They are test code:
//! they panic on failure and are not part of the stable API.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::*;
use crate::ports::*;

/// A store under test.
pub type TestStore = Arc<dyn Store>;

/// Expands to one `#[test]` per conformance case, each on a multi-threaded tokio runtime of
/// its own: the calling crate needs `inventory-core` (feature `testkit`) and nothing else.
/// The argument is an expression that evaluates to a future yielding `Option<TestStore>`: a
/// fresh, empty store, or `None` when the backend is not configured here, which fails the case
/// (a missing backend shows as ignored, through the attributes below, never as passed). It is evaluated once per test. Attributes written
/// after it are put on every case: mark a suite whose backend is missing as ignored, so it
/// shows as ignored rather than passed, e.g.
/// `store_conformance!(factory, #[cfg_attr(no_backend, ignore = "BACKEND_URL not set")])` with
/// `no_backend` set by the crate's build script.
#[macro_export]
macro_rules! store_conformance {
    ($factory:expr $(, #[$attr:meta])* $(,)?) => {
        $crate::__store_conformance_cases!([$(#[$attr])*] $factory;
            users_email_is_unique_and_password_kept,
            users_lookup_and_roles,
            products_create_list_restock,
            place_order_unknown_product_is_not_found,
            place_order_out_of_stock_changes_nothing,
            place_order_success_takes_stock_and_enqueues,
            concurrent_buyers_never_oversell,
            idempotency_replay_under_concurrency,
            idempotency_key_is_per_user,
            cancel_restores_stock_exactly_once,
            lease_claim_expiry_and_reclaim,
            mark_sent_and_mark_failed,
            retry_failed_puts_back_to_pending,
            two_dispatchers_deliver_each_exactly_once,
            orders_list_newest_first_with_pagination,
            placing_an_order_raises_the_signal,
            place_order_is_atomic_when_callers_give_up,
            health_ping_answers,
            restock_refuses_stock_above_the_maximum,
            export_writes_every_record,
            cancel_cancels_the_pending_confirmation,
            sent_clears_the_last_error,
            extend_lease_keeps_a_claim,
            one_account_per_address_across_forms,
            revoking_tokens_raises_the_version,
            claim_due_respects_its_limit_and_order,
            verification_emails_share_the_outbox,
            concurrent_orders_each_stand_alone,
            lists_continue_after_a_cursor,
            a_basket_takes_every_line_or_nothing,
            a_basket_naming_a_product_twice_is_one_demand,
            cancel_returns_every_line_once,
            concurrent_baskets_never_oversell,
            baskets_survive_export_and_import,
            compare_and_set_stock_refuses_a_stale_expectation,
            idempotency_keys_expire_into_new_orders,
            done_notifications_are_pruned_and_failed_ones_kept,
        );
    };
}

/// The cases of holds ([`ReservationStore`]), written like
/// [`store_conformance!`](crate::store_conformance), for every store that implements holds
/// (all of ours: memory, SQLite, PostgreSQL, Firestore); a store that answers them with
/// [`Error::Unsupported`](crate::Error::Unsupported) leaves this suite out.
#[macro_export]
macro_rules! reservation_conformance {
    ($factory:expr $(, #[$attr:meta])* $(,)?) => {
        $crate::__store_conformance_cases!([$(#[$attr])*] $factory;
            a_hold_reserves_all_or_nothing_and_releases_once,
            checkout_turns_a_hold_into_an_order,
            expired_holds_are_released_once,
            a_hold_expiring_during_checkout_ends_once,
            baskets_and_holds_together_account_for_every_unit,
            holds_survive_export_and_import,
        );
    };
}

/// The cases of the stock ledger ([`LedgerStore`]), written like
/// [`store_conformance!`](crate::store_conformance), for the stores that keep the ledger (all
/// of ours); a store that answers it with [`Error::Unsupported`](crate::Error::Unsupported)
/// leaves this suite out.
#[macro_export]
macro_rules! ledger_conformance {
    ($factory:expr $(, #[$attr:meta])* $(,)?) => {
        $crate::__store_conformance_cases!([$(#[$attr])*] $factory;
            the_ledger_explains_every_unit,
            ledgers_survive_export_and_import,
            balances_agree_while_orders_flow,
            pruning_keeps_every_product_adding_up,
        );
    };
}

/// The cases of events and their deliveries ([`EventStore`]), written like
/// [`store_conformance!`](crate::store_conformance), for the stores that write events.
#[macro_export]
macro_rules! event_conformance {
    ($factory:expr $(, #[$attr:meta])* $(,)?) => {
        $crate::__store_conformance_cases!([$(#[$attr])*] $factory;
            every_change_writes_its_event_once,
            events_carry_the_requests_trace,
            endpoints_filter_and_deleting_one_fails_its_deliveries,
            deliveries_lease_retry_fail_and_replay,
            concurrent_dispatchers_deliver_each_event_once,
            a_failing_endpoint_holds_back_no_other_destination,
            stock_low_fires_when_crossing_downward,
            delivered_deliveries_are_pruned_and_failed_ones_kept,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($attrs:tt $factory:expr; $($case:ident),+ $(,)?) => {
        $( $crate::__store_conformance_case!($attrs $factory; $case); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_case {
    ([$(#[$attr:meta])*] $factory:expr; $case:ident) => {
        #[test]
        $(#[$attr])*
        fn $case() {
            $crate::testkit::__run_case(async {
                let store: ::core::option::Option<$crate::testkit::TestStore> = $factory.await;
                match store {
                    ::core::option::Option::Some(store) => $crate::testkit::$case(store).await,
                    // Never a silent pass: a suite whose backend is missing here is marked
                    // ignored by the attributes given to the macro (see its docs).
                    ::core::option::Option::None => ::core::panic!(
                        "{}: the backend is not configured; mark the suite ignored when it is missing",
                        ::core::stringify!($case)
                    ),
                }
            })
        }
    };
}

/// Runs one case of [`store_conformance!`](crate::store_conformance) on a multi-threaded
/// runtime of its own (four workers, as concurrent callers need), so the embedder's crate needs
/// no tokio macros or runtime features for the suite.
#[doc(hidden)]
pub fn __run_case(case: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance case")
        .block_on(case);
}

fn t0() -> DateTime<Utc> {
    Utc::now()
}

mod baskets;
mod events;
mod holds;
mod ledger;
mod orders;
mod outbox;
mod products;
mod retention;
mod transfer;
mod users;

pub use baskets::*;
pub use events::*;
pub use holds::*;
pub use ledger::*;
pub use orders::*;
pub use outbox::*;
pub use products::*;
pub use retention::*;
pub use transfer::*;
pub use users::*;

/// Creates a user with this email (and a placeholder hash).
pub async fn user(store: &TestStore, email: &str) -> User {
    let user = User {
        id: Uuid::now_v7(),
        email: Email::parse(email).expect("valid email"),
        password_hash: "$argon2id$placeholder".into(),
        role: Role::Customer,
        created_at: now(),
        token_version: 0,
        email_verified: false,
    };
    store.create_user(&user).await.expect("create user");
    user
}

/// Creates a product with this id and stock.
pub async fn product(store: &TestStore, id: &str, quantity: u64) -> ProductId {
    let id = ProductId::new(id).expect("valid id");
    let p = NewProduct::new(id.clone(), format!("Product {id}"), quantity).expect("valid");
    store
        .create_product(&p, t0())
        .await
        .expect("create product");
    id
}

/// An order of `quantity` units of `product` for `user`.
pub fn order(user: &User, product: &ProductId, quantity: u64) -> NewOrder {
    basket(user, &[(product, quantity)])
}

/// An order of several lines for `user`: `(product, units)` each, in this order.
pub fn basket(user: &User, lines: &[(&ProductId, u64)]) -> NewOrder {
    let lines = lines
        .iter()
        .map(|(product, quantity)| OrderLine {
            product_id: (*product).clone(),
            quantity: Quantity::new(*quantity).expect("valid quantity"),
        })
        .collect();
    NewOrder::new(
        user.id,
        user.email.clone(),
        Lines::new(lines).expect("valid lines"),
    )
}

async fn stock(store: &TestStore, id: &ProductId) -> u64 {
    store
        .get_product(id)
        .await
        .unwrap()
        .expect("product exists")
        .quantity
}

/// Cases that [`store_conformance!`](crate::store_conformance) leaves out on purpose, each with
/// why. Every other case of the suite is in the macro: a unit test reads the case files and
/// fails on a case that is in neither list, so a case written and forgotten cannot pass
/// silently.
pub const LEFT_OUT: &[(&str, &str)] = &[(
    "handoff_leases_confirmations_to_the_local_dispatcher",
    "only for stores that accept a dispatcher's handoff (memory, Firestore); their suites call it",
)];

#[cfg(test)]
mod tests {
    /// Every `pub async fn NAME(store: TestStore)` of the case files.
    fn written() -> Vec<String> {
        let files = [
            include_str!("users.rs"),
            include_str!("products.rs"),
            include_str!("orders.rs"),
            include_str!("baskets.rs"),
            include_str!("holds.rs"),
            include_str!("ledger.rs"),
            include_str!("events.rs"),
            include_str!("outbox.rs"),
            include_str!("retention.rs"),
            include_str!("transfer.rs"),
        ];
        let mut cases = Vec::new();
        for file in files {
            let mut rest = file;
            while let Some(i) = rest.find("pub async fn ") {
                rest = &rest[i + "pub async fn ".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if rest[name.len()..].starts_with("(store: TestStore)") {
                    cases.push(name);
                }
            }
        }
        cases
    }

    /// The names listed in `store_conformance!` and `reservation_conformance!`.
    fn registered() -> Vec<String> {
        let source = include_str!("mod.rs");
        // In two pieces, so that this line is not found as a list.
        let marker = concat!("__store_conformance_cases!([$(#[$attr])*] ", "$factory;");
        let mut names = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find(marker) {
            let end = start + rest[start..].find(");").expect("end of the list");
            names.extend(
                rest[start..end]
                    .lines()
                    .skip(1)
                    .map(|l| l.trim().trim_end_matches(',').to_owned())
                    .filter(|l| !l.is_empty()),
            );
            rest = &rest[end..];
        }
        assert!(names.len() > 20, "found only {names:?}");
        names
    }

    #[test]
    fn every_case_is_registered_or_left_out_with_a_reason() {
        let registered = registered();
        let left_out: Vec<&str> = super::LEFT_OUT.iter().map(|(n, _)| *n).collect();
        let written = written();
        assert!(written.len() > 20, "found only {written:?}");
        for case in &written {
            assert!(
                registered.contains(case) || left_out.contains(&case.as_str()),
                "conformance case {case} is neither in store_conformance! nor in LEFT_OUT"
            );
        }
        for case in registered.iter().map(String::as_str).chain(left_out) {
            assert!(
                written.iter().any(|w| w == case),
                "{case} is listed but no case of that name is written"
            );
        }
    }
}
