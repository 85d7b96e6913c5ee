//! The users port: accounts, roles, token versions, verified addresses.

use std::sync::Arc;

use super::*;
use async_trait::async_trait;
use firestore::errors::{BackoffError, FirestoreError};
use futures::FutureExt;
use uuid::Uuid;

impl FirestoreStore {
    /// The user document of an address, whatever case the original stored it in: first the
    /// normalised id (ours, and the original's lower-case ones), then the index of ids by
    /// lower-cased address, listed again on a miss when older than [`LEGACY_INDEX_TTL`].
    pub(super) async fn find_user_doc(&self, email: &Email) -> Result<Option<UserDoc>> {
        if let Some(doc) = self
            .get::<UserDoc>(&self.cols.users, &doc_id(email.as_str()))
            .await?
        {
            return Ok(Some(doc));
        }
        self.find_user_in_index(email).await
    }

    pub(super) async fn user_doc_by_id(&self, id: Uuid) -> Result<Option<UserDoc>> {
        let docs: Vec<UserDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.users.as_str())
            .filter(|q| q.for_all([q.field("user_id").eq(id.to_string())]))
            .limit(1)
            .obj()
            .query()
            .await
            .map_err(map)?;
        Ok(docs.into_iter().next())
    }

    /// Changes a user in a transaction, and raises its `token_version` when `revoke`, writing
    /// only `fields` (the derived id of the original's users is written too, so it stays
    /// stable).
    pub(super) async fn change_user(
        &self,
        email: &Email,
        change: Arc<dyn Fn(&mut UserDoc) + Send + Sync>,
        fields: &'static [&'static str],
        revoke: bool,
    ) -> Result<User> {
        let Some(found) = self.find_user_doc(email).await? else {
            return Err(Error::NotFound(format!("user {email}")));
        };
        let user_doc = found.doc_id().to_owned();
        let user = self
            .tx(
                (self.cols.clone(), email.clone(), user_doc, change, revoke),
                move |db, tx, (cols, email, user_doc, change, revoke)| {
                    async move {
                        let Some(mut doc): Option<UserDoc> =
                            read(&db, cols.users.as_str(), user_doc.as_str()).await?
                        else {
                            return abort(Error::NotFound(format!("user {email}")));
                        };
                        let user = doc
                            .clone()
                            .into_user()
                            .map_err(|e| BackoffError::permanent(TxError::Abort(e)))?;
                        doc.user_id = Some(user.id.to_string());
                        if revoke {
                            doc.token_version = Some(i64::from(user.token_version) + 1);
                        }
                        change(&mut doc);
                        write(
                            &db,
                            tx,
                            cols.users.as_str(),
                            user_doc.as_str(),
                            &doc,
                            Precondition::Exists,
                            Some(fields),
                        )?;
                        Ok(doc)
                    }
                    .boxed()
                },
            )
            .await?;
        user.into_user()
    }
}

#[async_trait]
impl UserStore for FirestoreStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        // One account per address, also against the original's ids in another form (the
        // insert below refuses the normalised id itself).
        if self.find_user_in_index(&user.email).await?.is_some() {
            return Err(Error::AlreadyExists("email already registered".into()));
        }
        let result = self
            .db
            .fluent()
            .insert()
            .into(self.cols.users.as_str())
            .document_id(doc_id(user.email.as_str()))
            .object(&UserDoc::from_user(user))
            .execute::<UserDoc>()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(FirestoreError::DataConflictError(_)) => {
                Err(Error::AlreadyExists("email already registered".into()))
            }
            Err(e) => Err(map(e)),
        }
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let Some(doc) = self.find_user_doc(email).await? else {
            return Ok(None);
        };
        let user = doc.clone().into_user()?;
        self.adopt(&doc, &user).await?;
        Ok(Some(user))
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<User>> {
        self.user_doc_by_id(id)
            .await?
            .map(UserDoc::into_user)
            .transpose()
    }

    async fn set_role(&self, email: &Email, role: Role) -> Result<User> {
        let role = role.as_str().to_owned();
        self.change_user(
            email,
            Arc::new(move |doc: &mut UserDoc| doc.role = Some(role.clone())),
            &["user_id", "role", "token_version"],
            true,
        )
        .await
    }

    async fn revoke_tokens(&self, email: &Email) -> Result<User> {
        self.change_user(
            email,
            Arc::new(|_: &mut UserDoc| {}),
            &["user_id", "token_version"],
            true,
        )
        .await
    }

    async fn mark_email_verified(&self, email: &Email) -> Result<User> {
        self.change_user(
            email,
            Arc::new(|doc: &mut UserDoc| doc.email_verified = Some(true)),
            &["user_id", "email_verified"],
            false,
        )
        .await
    }
}
