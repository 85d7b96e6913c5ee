//! Moving whole data sets in and out.

use super::*;

#[async_trait]
impl Transfer for MemoryStore {
    async fn list_users(&self, p: Page) -> Result<Vec<User>> {
        self.with(|s| {
            let mut users: Vec<&User> = s.users.values().collect();
            users.sort_by(|a, b| a.email.cmp(&b.email));
            Ok(page(users.into_iter().cloned(), p, false))
        })
    }

    async fn import_product(&self, product: &Product) -> Result<()> {
        self.with(|s| {
            if s.products.contains_key(&product.id) {
                return Err(Error::AlreadyExists(format!(
                    "product {} already exists",
                    product.id
                )));
            }
            s.products.insert(product.id.clone(), product.clone());
            Ok(())
        })
    }

    async fn import_order(&self, order: &Order) -> Result<()> {
        self.with(|s| {
            if s.orders.contains_key(&order.id) {
                return Err(Error::AlreadyExists(format!(
                    "order {} already exists",
                    order.id
                )));
            }
            if let Some(key) = &order.idempotency_key {
                s.order_by_key
                    .insert((order.user_id, key.clone()), order.id);
            }
            s.orders.insert(order.id, order.clone());
            Ok(())
        })
    }

    async fn import_notification(&self, n: &Notification) -> Result<()> {
        self.with(|s| {
            if s.notifications.contains_key(&n.id) {
                return Err(Error::AlreadyExists(format!(
                    "notification {} already exists",
                    n.id
                )));
            }
            if let Some(order_id) = n.order_id() {
                s.notification_by_order.insert(order_id, n.id);
            }
            s.notifications.insert(n.id, n.clone());
            Ok(())
        })
    }

    async fn import_ledger_entry(&self, e: &LedgerEntry) -> Result<()> {
        self.with(|s| {
            let entries = s.ledger.entry(e.product_id.clone()).or_default();
            if entries.iter().any(|x| x.id == e.id) {
                return Err(Error::AlreadyExists(format!("ledger entry {}", e.id)));
            }
            // Kept in id order (entries are listed by id).
            let at = entries.partition_point(|x| x.id < e.id);
            entries.insert(at, e.clone());
            Ok(())
        })
    }

    async fn list_reservations(&self, p: Page) -> Result<Vec<Reservation>> {
        // Keyed by id (UUID v7): already in the list's order.
        self.with(|s| Ok(page(s.reservations.values().cloned(), p, false)))
    }

    async fn import_reservation(&self, r: &Reservation) -> Result<()> {
        self.with(|s| {
            if s.reservations.contains_key(&r.id) {
                return Err(Error::AlreadyExists(format!(
                    "reservation {} already exists",
                    r.id
                )));
            }
            s.reservations.insert(r.id, r.clone());
            Ok(())
        })
    }

    async fn count_records(&self) -> Result<crate::transfer::Counts> {
        self.with(|s| {
            Ok(crate::transfer::Counts {
                users: s.users.len() as u64,
                products: s.products.len() as u64,
                orders: s.orders.len() as u64,
                notifications: s.notifications.len() as u64,
                reservations: s.reservations.len() as u64,
                ledger_entries: s.ledger.values().map(Vec::len).sum::<usize>() as u64,
            })
        })
    }
}
