//! Moving whole data sets in and out (export, import, counts).

use super::products::TakenDoc;
use super::reservations::ReservationDoc;
use super::*;
use async_trait::async_trait;
use firestore::errors::FirestoreError;

impl FirestoreStore {
    pub(super) async fn insert<T>(&self, col: &str, id: &str, doc: &T, what: String) -> Result<()>
    where
        T: serde::Serialize + for<'de> serde::Deserialize<'de> + Send + Sync,
    {
        let result = self
            .db
            .fluent()
            .insert()
            .into(col)
            .document_id(id)
            .object(doc)
            .execute::<T>()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(FirestoreError::DataConflictError(_)) => {
                Err(Error::AlreadyExists(format!("{what} already exists")))
            }
            Err(e) => Err(map(e)),
        }
    }

    pub(super) async fn count(&self, col: &str) -> Result<u64> {
        let result: Vec<CountDoc> = self
            .db
            .fluent()
            .select()
            .from(col)
            .aggregate(|a| a.fields([a.field("count").count()]))
            .obj()
            .query()
            .await
            .map_err(map)?;
        Ok(result.first().map(|c| c.count as u64).unwrap_or(0))
    }
}

#[async_trait]
impl Transfer for FirestoreStore {
    async fn list_users(&self, page: Page) -> Result<Vec<User>> {
        // The cursor is an address; the list runs by document id, which for a user written by
        // the original may be the address in another form: continue after that document.
        let after = match page.after.as_deref() {
            None => None,
            Some(email) => {
                let email = Email::parse(email)
                    .map_err(|_| Error::invalid("after", "must be an email address"))?;
                let id = match self.find_user_doc(&email).await? {
                    Some(doc) => doc.doc_id().to_owned(),
                    None => doc_id(email.as_str()),
                };
                Some(self.after_doc(&self.cols.users, &id))
            }
        };
        let docs: Vec<UserDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.users.as_str())
            .order(|o| o.fields([o.field(DOC_NAME).asc()]))
            .start_after(after)
            .offset(page.offset)
            .limit(page.limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        docs.into_iter().map(UserDoc::into_user).collect()
    }

    async fn import_product(&self, p: &Product) -> Result<()> {
        let mut doc = ProductDoc::new(
            &NewProduct {
                id: p.id.clone(),
                name: p.name.clone(),
                quantity: p.quantity,
            },
            p.updated_at,
        );
        doc.created_at = Some(sys(p.created_at));
        doc.reserved =
            i64::try_from(p.reserved).map_err(|_| Error::invalid("reserved", "too large"))?;
        self.insert(
            &self.cols.products,
            &doc_id(p.id.as_str()),
            &doc,
            format!("product {}", p.id),
        )
        .await
    }

    async fn import_order(&self, o: &Order) -> Result<()> {
        self.insert(
            &self.cols.orders,
            &o.id.to_string(),
            &OrderDoc::from_order(o),
            format!("order {}", o.id),
        )
        .await?;
        if let Some(key) = &o.idempotency_key {
            let doc = IdempotencyDoc {
                order_id: o.id.to_string(),
                created_at: Some(sys(o.created_at)),
            };
            let id = idempotency_doc_id(o.user_id, key);
            self.insert(
                &self.cols.idempotency_keys,
                &id,
                &doc,
                format!("idempotency key {key}"),
            )
            .await?;
        }
        Ok(())
    }

    async fn count_records(&self) -> Result<inventory_core::transfer::Counts> {
        Ok(inventory_core::transfer::Counts {
            users: self.count(&self.cols.users).await?,
            products: self.count(&self.cols.products).await?,
            orders: self.count(&self.cols.orders).await?,
            notifications: self.count(&self.cols.notifications).await?,
            reservations: self.count(&self.cols.reservations).await?,
            ledger_entries: self.count(&self.cols.ledger).await?,
        })
    }

    async fn import_ledger_entry(&self, e: &LedgerEntry) -> Result<()> {
        self.insert(
            &self.cols.ledger,
            &e.id.to_string(),
            &LedgerDoc::from(e),
            format!("ledger entry {}", e.id),
        )
        .await
    }

    async fn list_reservations(&self, page: Page) -> Result<Vec<Reservation>> {
        let after = page
            .after
            .as_deref()
            .map(|id| self.after_doc(&self.cols.reservations, id));
        let docs: Vec<ReservationDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.reservations.as_str())
            .order(|o| o.fields([o.field(DOC_NAME).asc()]))
            .start_after(after)
            .offset(page.offset)
            .limit(page.limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        docs.into_iter()
            .map(ReservationDoc::into_reservation)
            .collect()
    }

    async fn import_reservation(&self, r: &Reservation) -> Result<()> {
        // An active hold's units are in its products' imported `reserved`: its end takes them
        // from there (the document, or a sharded product's shards from the first on).
        let taken = r
            .lines
            .demand()
            .into_iter()
            .map(|(product, units)| {
                Ok(TakenDoc {
                    product_id: product.to_string(),
                    shard: None,
                    units: i64::try_from(units)
                        .map_err(|_| Error::invalid("quantity", "too large"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.insert(
            &self.cols.reservations,
            &r.id.to_string(),
            &ReservationDoc::new(r, taken),
            format!("reservation {}", r.id),
        )
        .await
    }

    async fn import_notification(&self, n: &Notification) -> Result<()> {
        let doc = NotificationDoc::from(n);
        self.insert(
            &self.cols.notifications,
            &n.id.to_string(),
            &doc,
            format!("notification {}", n.id),
        )
        .await
    }
}
