//! Users: addresses, passwords, roles.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

use super::*;

/// A normalised email address: trimmed, lower-cased and syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Trims, normalises and validates `raw`, so that every way of writing one address gives
    /// one `Email` (and so one account):
    ///
    /// - the whole address in Unicode NFC (composed: `é` typed as `e` + U+0301 is `é`);
    /// - the local part lower-cased (Unicode lower case: `İ` becomes `i̇`, i + U+0307, as
    ///   Unicode defines it, so `İnfo@x.com` and `info@x.com` stay distinct addresses);
    /// - the domain in its IDNA ASCII form (`bücher.example` is `xn--bcher-kva.example`),
    ///   lower-cased.
    ///
    /// ```
    /// # use inventory_core::Email;
    /// assert_eq!(Email::parse("  Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
    /// assert_eq!(
    ///     Email::parse("José@Bücher.example").unwrap(),
    ///     Email::parse("jose\u{301}@xn--bcher-kva.example").unwrap(),
    /// );
    /// assert!(Email::parse("not an email").is_err());
    /// ```
    pub fn parse(raw: &str) -> Result<Self> {
        use unicode_normalization::UnicodeNormalization as _;
        let trimmed: String = raw.trim().nfc().collect();
        let (local, domain) = trimmed
            .rsplit_once('@')
            .ok_or_else(|| Error::invalid("email", "not a valid address (no @)"))?;
        let domain = idna::domain_to_ascii(domain)
            .map_err(|_| Error::invalid("email", "the domain is not a valid name"))?;
        let local: String = local.to_lowercase().nfc().collect();
        let normalised = format!("{local}@{domain}");
        if normalised.len() > 254 {
            return Err(Error::invalid("email", "longer than 254 bytes"));
        }
        let address = lettre::Address::from_str(&normalised)
            .map_err(|e| Error::invalid("email", format!("not a valid address ({e})")))?;
        if !address.domain().contains('.') && address.domain() != "localhost" {
            return Err(Error::invalid("email", "domain has no dot"));
        }
        Ok(Email(normalised))
    }

    /// The address as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl FromStr for Email {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Email::parse(s)
    }
}

/// A clear-text password within the accepted length. Its `Debug` output hides it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Validates the length of `raw` (8 to 1024 bytes).
    pub fn new(raw: impl Into<String>) -> Result<Self> {
        Self::with_min(raw, PASSWORD_MIN_BYTES)
    }

    /// Validates the length of `raw` (`min` to 1024 bytes), for a configured minimum.
    pub fn with_min(raw: impl Into<String>, min: usize) -> Result<Self> {
        let raw = raw.into();
        if raw.len() < min {
            return Err(Error::invalid(
                "password",
                format!("must be at least {min} bytes"),
            ));
        }
        if raw.len() > PASSWORD_MAX_BYTES {
            return Err(Error::invalid(
                "password",
                format!("must be at most {PASSWORD_MAX_BYTES} bytes"),
            ));
        }
        Ok(Password(raw))
    }

    /// The clear text, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Places and sees their own orders.
    Customer,
    /// Also manages products and sees every order.
    Admin,
}

text_enum!(Role, "role" { Customer => "customer", Admin => "admin" });

/// A registered user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id.
    pub id: Uuid,
    /// Unique, normalised email.
    pub email: Email,
    /// argon2id hash in PHC string form.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// When the user registered.
    pub created_at: DateTime<Utc>,
    /// Carried by every token issued to the user; raising it (a role change, or
    /// [`UserStore::revoke_tokens`](crate::UserStore::revoke_tokens)) ends every earlier token.
    pub token_version: u32,
    /// Whether the user proved they receive mail at `email` (the code of a verification
    /// email). Users written by the original service, and all before verification existed,
    /// are unverified.
    pub email_verified: bool,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("email_verified", &self.email_verified)
            .finish_non_exhaustive()
    }
}
