//! Users.

use super::*;

/// A user. The original writes `Users/{email as typed}` = `{password}` and nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserDoc {
    #[serde(default)]
    pub(crate) email: Option<String>,
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) role: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<SystemTime>,
    #[serde(default)]
    pub(crate) token_version: Option<i64>,
    #[serde(default)]
    pub(crate) email_verified: Option<bool>,
    /// The document id (read only; see [`Meta`]).
    #[serde(rename = "_firestore_id", default, skip_serializing)]
    pub(crate) fs_id: Option<String>,
    /// The document's create time (read only).
    #[serde(
        rename = "_firestore_created",
        default,
        skip_serializing,
        deserialize_with = "meta_time"
    )]
    pub(crate) fs_created: Option<SystemTime>,
}

impl UserDoc {
    pub(crate) fn from_user(u: &User) -> Self {
        UserDoc {
            email: Some(u.email.to_string()),
            password: u.password_hash.clone(),
            user_id: Some(u.id.to_string()),
            role: Some(u.role.as_str().to_owned()),
            created_at: Some(sys(u.created_at)),
            token_version: Some(i64::from(u.token_version)),
            email_verified: Some(u.email_verified),
            fs_id: None,
            fs_created: None,
        }
    }

    /// The document id: the email as the original stored it (any case).
    pub(crate) fn doc_id(&self) -> &str {
        self.fs_id.as_deref().unwrap_or_default()
    }

    pub(crate) fn into_user(self) -> Result<User> {
        let raw = self
            .email
            .as_deref()
            .unwrap_or(self.fs_id.as_deref().unwrap_or_default());
        let email = Email::parse(raw).map_err(|e| bad("email", e))?;
        Ok(User {
            id: match &self.user_id {
                Some(id) => uuid(id)?,
                None => legacy_user_id(email.as_str()),
            },
            email,
            password_hash: self.password,
            role: match self.role {
                Some(r) => r.parse().map_err(|e| bad("role", e))?,
                None => Role::Customer,
            },
            created_at: self
                .created_at
                .or(self.fs_created)
                .map(utc)
                .unwrap_or(DateTime::UNIX_EPOCH),
            token_version: u32::try_from(self.token_version.unwrap_or(0))
                .map_err(|e| bad("token_version", e))?,
            email_verified: self.email_verified.unwrap_or(false),
        })
    }
}
