//! The users port.

use async_trait::async_trait;
use inventory_core::*;
use uuid::Uuid;

use crate::error::{db, map};
use crate::rows::*;

use super::*;

impl SqlStore {
    /// Runs a `UPDATE users ... WHERE email = $1 RETURNING <the user columns>` (with `$2` when given).
    pub(super) async fn update_user(
        &self,
        sql: &'static str,
        email: &Email,
        arg: Option<&str>,
    ) -> Result<User> {
        let row: Option<UserRow> = with_pool!(self, write, |pool, D| {
            let query = sqlx::query_as(sql).bind(email.as_str());
            let query = match arg {
                Some(a) => query.bind(a),
                None => query,
            };
            query.fetch_optional(pool).await.map_err(db)?
        });
        row.map(User::try_from)
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("user {email}")))
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        with_pool!(self, write, |pool, D| {
            sqlx::query(
                "INSERT INTO users (id, email, password_hash, role, created_at, token_version, email_verified) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(user.id.to_string())
            .bind(user.email.as_str())
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(ts(user.created_at))
            .bind(i64::from(user.token_version))
            .bind(i64::from(user.email_verified))
            .execute(pool)
            .await
            .map_err(|e| map(e, "email already registered"))?;
        });
        Ok(())
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let row: Option<UserRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE email = $1"
            ))
            .bind(email.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(User::try_from).transpose()
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<User>> {
        let row: Option<UserRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(User::try_from).transpose()
    }

    async fn set_role(&self, email: &Email, role: Role) -> Result<User> {
        self.update_user(
            concat!(
                "UPDATE users SET role = $2, token_version = token_version + 1 ",
                "WHERE email = $1 RETURNING ",
                user_columns!()
            ),
            email,
            Some(role.as_str()),
        )
        .await
    }

    async fn revoke_tokens(&self, email: &Email) -> Result<User> {
        self.update_user(
            concat!(
                "UPDATE users SET token_version = token_version + 1 WHERE email = $1 RETURNING ",
                user_columns!()
            ),
            email,
            None,
        )
        .await
    }

    async fn mark_email_verified(&self, email: &Email) -> Result<User> {
        self.update_user(
            concat!(
                "UPDATE users SET email_verified = 1 WHERE email = $1 RETURNING ",
                user_columns!()
            ),
            email,
            None,
        )
        .await
    }
}
