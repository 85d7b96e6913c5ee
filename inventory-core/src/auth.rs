//! Registration, login and bearer tokens.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::Utc;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, Semaphore};
use uuid::Uuid;

use crate::domain::{Email, Notification, Password, Role, User};
use crate::error::{Error, Result};
use crate::ports::UserStore;

/// Shortest accepted JWT secret, in bytes.
pub const JWT_SECRET_MIN_BYTES: usize = 32;

/// argon2id cost parameters. The default is OWASP's recommendation (m = 19 MiB, t = 2, p = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    /// Cheap parameters for tests only: never use them for real passwords.
    pub const INSECURE_FAST: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn argon2(&self) -> Result<Argon2<'static>> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| Error::invalid("argon2 parameters", e))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Settings of the [`Auth`] service. `Debug` hides the secret.
#[derive(Clone)]
pub struct AuthConfig {
    secret: Vec<u8>,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// Password hashing cost.
    pub hash_params: HashParams,
    /// How many hashes may run at once (defaults to the number of cores).
    pub max_concurrent_hashes: usize,
    /// Emails that get the admin role (once verified, see `admins_need_verified_email`).
    pub admin_emails: HashSet<Email>,
    /// Whether an address of `admin_emails` makes its user admin only once the user verified
    /// it (default true): otherwise whoever registers the address first is admin. Roles
    /// stored by the admin tool do not depend on it.
    pub admins_need_verified_email: bool,
    /// Lifetime of address verification codes (default 24 hours).
    pub verification_ttl: Duration,
    /// Shortest password accepted at registration, in bytes (default
    /// [`PASSWORD_MIN_BYTES`](crate::domain::PASSWORD_MIN_BYTES); the original service
    /// accepted 6). Login never checks it, so existing accounts keep working.
    pub password_min_bytes: usize,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &"***")
            .field("token_ttl", &self.token_ttl)
            .field("hash_params", &self.hash_params)
            .field("max_concurrent_hashes", &self.max_concurrent_hashes)
            .field("admin_emails", &self.admin_emails)
            .field(
                "admins_need_verified_email",
                &self.admins_need_verified_email,
            )
            .field("verification_ttl", &self.verification_ttl)
            .field("password_min_bytes", &self.password_min_bytes)
            .finish()
    }
}

impl AuthConfig {
    /// Settings with the given HS256 secret (at least 32 bytes) and defaults elsewhere: tokens
    /// valid 60 minutes, OWASP argon2id parameters, one hash per core at a time, no admins.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self> {
        let secret = secret.into();
        if secret.len() < JWT_SECRET_MIN_BYTES {
            return Err(Error::invalid(
                "JWT_SECRET",
                format!("must be at least {JWT_SECRET_MIN_BYTES} bytes"),
            ));
        }
        Ok(Self::unchecked(secret))
    }

    /// Like [`AuthConfig::new`] but accepts a secret shorter than
    /// [`JWT_SECRET_MIN_BYTES`] (not empty): for development against the original service's
    /// configuration (`JWT_SECRET=dev-secret`). Tokens signed with a short secret can be
    /// forged by brute force; never use this in production.
    pub fn new_insecure(secret: impl Into<Vec<u8>>) -> Result<Self> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(Error::invalid("JWT_SECRET", "must not be empty"));
        }
        Ok(Self::unchecked(secret))
    }

    fn unchecked(secret: Vec<u8>) -> Self {
        AuthConfig {
            secret,
            token_ttl: Duration::from_secs(60 * 60),
            hash_params: HashParams::default(),
            max_concurrent_hashes: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            admin_emails: HashSet::new(),
            admins_need_verified_email: true,
            verification_ttl: Duration::from_secs(24 * 60 * 60),
            password_min_bytes: crate::domain::PASSWORD_MIN_BYTES,
        }
    }

    /// Sets the shortest password accepted at registration (1 to
    /// [`PASSWORD_MAX_BYTES`](crate::domain::PASSWORD_MAX_BYTES) bytes).
    pub fn with_password_min_bytes(mut self, min: usize) -> Result<Self> {
        if min == 0 || min > crate::domain::PASSWORD_MAX_BYTES {
            return Err(Error::invalid(
                "PASSWORD_MIN_LENGTH",
                format!("must be 1 to {} bytes", crate::domain::PASSWORD_MAX_BYTES),
            ));
        }
        self.password_min_bytes = min;
        Ok(self)
    }

    /// Sets the token lifetime.
    pub fn with_token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Sets how many hashes may run at once (at least 1). Fewer than the cores leaves a core
    /// to cheap requests while logins flood in, at the cost of login throughput.
    pub fn with_max_concurrent_hashes(mut self, n: usize) -> Self {
        self.max_concurrent_hashes = n.max(1);
        self
    }

    /// Sets the hashing cost.
    pub fn with_hash_params(mut self, params: HashParams) -> Self {
        self.hash_params = params;
        self
    }

    /// Sets the admin emails.
    pub fn with_admins(mut self, admins: impl IntoIterator<Item = Email>) -> Self {
        self.admin_emails = admins.into_iter().collect();
        self
    }

    /// Whether admin emails need a verified address (default true).
    pub fn with_admins_needing_verified_email(mut self, needed: bool) -> Self {
        self.admins_need_verified_email = needed;
        self
    }
}

/// The claims of our bearer tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// User email.
    pub email: String,
    /// Role at the time of issue.
    pub role: Role,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// The user's `token_version` at the time of issue.
    #[serde(default)]
    pub ver: u32,
}

const VERIFY_PURPOSE: &str = "verify_email";

/// The claims of an address verification code: no `role`, so it never passes as an access
/// token, and a `purpose` an access token lacks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VerifyClaims {
    sub: String,
    email: String,
    purpose: String,
    iat: i64,
    exp: i64,
}

/// Who is making a request, as proven by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User id.
    pub user_id: Uuid,
    /// User email.
    pub email: Email,
    /// Role.
    pub role: Role,
    /// Whether the user verified their address (false for a principal from
    /// [`Auth::verify`], which does not read the user).
    pub email_verified: bool,
}

impl Principal {
    /// Whether the principal is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// An issued token. Its `Debug` output hides the token itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The JWT.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Hashes passwords with argon2id off the async runtime, a bounded number at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<OnceCell<String>>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with these parameters and at most `max_concurrent` hashes at once.
    pub fn new(params: HashParams, max_concurrent: usize) -> Result<Self> {
        Ok(PasswordHasher {
            argon2: params.argon2()?,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash: Arc::new(OnceCell::new()),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T> {
        let _permit = self.permits.acquire().await.map_err(Error::other)?;
        let argon2 = self.argon2.clone();
        tokio::task::spawn_blocking(move || work(&argon2))
            .await
            .map_err(Error::other)
    }

    /// The PHC string of a new argon2id hash of `password`.
    pub async fn hash(&self, password: &Password) -> Result<String> {
        let password = password.clone();
        self.blocking(move |argon2| {
            argon2
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::other(format!("hashing failed: {e}")))
        })
        .await?
    }

    /// Whether `password` matches the PHC string `hash` (any argon2 variant and parameters,
    /// read from the string, such as hashes made by Python's passlib).
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool> {
        metrics::counter!("inventory_password_verifications_total").increment(1);
        let password = password.to_owned();
        let hash = hash.to_owned();
        self.blocking(move |argon2| {
            match argon2.verify_password(password.as_bytes(), hash.as_str()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                // A stored hash that does not parse is corrupt data (or a store that returned
                // the wrong column), not a wrong password: answering 401 would send the
                // operator looking for a password problem.
                Err(e) => Err(Error::other(format!(
                    "the stored password hash is unusable: {e}"
                ))),
            }
        })
        .await?
    }

    /// Does the same work as [`verify`](Self::verify) against a fixed hash, so that a login for
    /// an unknown email costs as much as one for a known email.
    pub async fn verify_dummy(&self, password: &str) -> Result<()> {
        let hash = self
            .dummy_hash
            .get_or_try_init(|| async {
                self.hash(&Password::new("dummy-password-for-timing")?)
                    .await
            })
            .await?
            .clone();
        self.verify(password, &hash).await.map(|_| ())
    }
}

/// Registration, login and token verification.
#[derive(Clone)]
pub struct Auth {
    users: Arc<dyn UserStore>,
    hasher: PasswordHasher,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    config: Arc<AuthConfig>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const INVALID_CREDENTIALS: &str = "invalid email or password";

impl Auth {
    /// The service over a user store.
    pub fn new(users: Arc<dyn UserStore>, config: AuthConfig) -> Result<Self> {
        let encoding = EncodingKey::from_secret(&config.secret).map_err(Error::other)?;
        let decoding = DecodingKey::from_secret(&config.secret).map_err(Error::other)?;
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Ok(Auth {
            users,
            hasher: PasswordHasher::new(config.hash_params, config.max_concurrent_hashes)?,
            encoding,
            decoding,
            validation,
            config: Arc::new(config),
        })
    }

    /// The password hasher, for tools that create users directly.
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    fn role_for(&self, user: &User) -> Role {
        let listed = self.config.admin_emails.contains(&user.email);
        if listed && (user.email_verified || !self.config.admins_need_verified_email) {
            Role::Admin
        } else {
            user.role
        }
    }

    /// Registers a user and returns it with a token. An email already registered is
    /// [`Error::AlreadyExists`] and the stored password is never replaced.
    pub async fn register(&self, email: &str, password: &str) -> Result<(User, Token)> {
        let email = Email::parse(email)?;
        let password = Password::with_min(password, self.config.password_min_bytes)?;
        if self.user_by_email(&email).await?.is_some() {
            return Err(Error::AlreadyExists("email already registered".into()));
        }
        let user = User {
            id: Uuid::now_v7(),
            // ADMIN_EMAILS is applied when tokens are issued and checked, never stored: taking
            // an address out of it takes the rights away at once.
            role: Role::Customer,
            email,
            password_hash: self.hasher.hash(&password).await?,
            created_at: crate::domain::now(),
            token_version: 0,
            email_verified: false,
        };
        self.users.create_user(&user).await.map_err(unavailable)?;
        let token = self.issue(&user)?;
        Ok((user, token))
    }

    /// Checks the credentials and issues a token. Unknown emails and wrong passwords give the
    /// same [`Error::Unauthorized`] after the same hashing work.
    pub async fn login(&self, email: &str, password: &str) -> Result<(User, Token)> {
        let unauthorized = || Error::Unauthorized(INVALID_CREDENTIALS.into());
        let (Ok(email), true) = (
            Email::parse(email),
            password.len() <= crate::domain::PASSWORD_MAX_BYTES,
        ) else {
            return Err(unauthorized());
        };
        let Some(user) = self.user_by_email(&email).await? else {
            self.hasher.verify_dummy(password).await?;
            return Err(unauthorized());
        };
        if !self.hasher.verify(password, &user.password_hash).await? {
            return Err(unauthorized());
        }
        let token = self.issue(&user)?;
        Ok((user, token))
    }

    /// Issues a token for `user`.
    pub fn issue(&self, user: &User) -> Result<Token> {
        let now = Utc::now().timestamp();
        let ttl = self.config.token_ttl.as_secs();
        let claims = Claims {
            sub: user.id.to_string(),
            email: user.email.to_string(),
            role: self.role_for(user),
            iat: now,
            exp: now + ttl as i64,
            ver: user.token_version,
        };
        let access_token = jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.encoding,
        )
        .map_err(Error::other)?;
        Ok(Token {
            access_token,
            expires_in: ttl,
        })
    }

    fn claims(&self, token: &str) -> Result<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| Error::Unauthorized(format!("invalid token: {e}")))
    }

    /// Verifies a bearer token: HS256 only, signed with our key, not expired. This checks the
    /// token alone; [`Auth::authenticate`] also checks the user still exists and the token
    /// was not revoked.
    pub fn verify(&self, token: &str) -> Result<Principal> {
        Self::principal(self.claims(token)?)
    }

    fn principal(claims: Claims) -> Result<Principal> {
        let user_id = Uuid::parse_str(&claims.sub)
            .map_err(|_| Error::Unauthorized("invalid token subject".into()))?;
        let email = Email::parse(&claims.email)
            .map_err(|_| Error::Unauthorized("invalid token email".into()))?;
        Ok(Principal {
            user_id,
            email,
            role: claims.role,
            email_verified: false,
        })
    }

    /// Verifies a bearer token ([`Auth::verify`]) and checks it against the stored user: a
    /// token of a user that no longer exists, or issued before the user's tokens were revoked
    /// (its `token_version` was raised, as a role change does), is [`Error::Unauthorized`].
    /// The role is the user's current one (with `ADMIN_EMAILS` applied), not the token's.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let claims = self.claims(token)?;
        let version = claims.ver;
        let principal = Self::principal(claims)?;
        let Some(user) = self.user_by_id(principal.user_id).await? else {
            return Err(Error::Unauthorized("the account no longer exists".into()));
        };
        if user.token_version != version {
            return Err(Error::Unauthorized("the token was revoked".into()));
        }
        Ok(Principal {
            role: self.role_for(&user),
            email_verified: user.email_verified,
            ..principal
        })
    }

    /// A signed code that proves, until it expires, that whoever holds it receives mail at
    /// `user`'s address. It is no access token (and no access token is such a code).
    pub fn verification_code(&self, user: &User) -> Result<String> {
        let now = Utc::now().timestamp();
        let claims = VerifyClaims {
            sub: user.id.to_string(),
            email: user.email.to_string(),
            purpose: VERIFY_PURPOSE.to_owned(),
            iat: now,
            exp: now + self.config.verification_ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.encoding,
        )
        .map_err(Error::other)
    }

    /// Puts a verification email for `user` in the outbox (sent by the dispatcher, like
    /// confirmations).
    pub async fn request_verification(
        &self,
        outbox: &dyn crate::NotificationStore,
        user: &User,
    ) -> Result<()> {
        let code = self.verification_code(user)?;
        outbox
            .enqueue(&Notification::email_verification(
                user,
                code,
                crate::domain::now(),
            ))
            .await
    }

    /// Checks a verification code and marks its user's address verified. A code that is not
    /// one, is forged or expired, or names an address the user no longer has, is
    /// [`Error::InvalidInput`]. Verifying twice is harmless.
    pub async fn verify_email(&self, code: &str) -> Result<User> {
        let invalid = || Error::invalid("code", "invalid or expired verification code");
        let claims =
            jsonwebtoken::decode::<VerifyClaims>(code.trim(), &self.decoding, &self.validation)
                .map_err(|_| invalid())?
                .claims;
        if claims.purpose != VERIFY_PURPOSE {
            return Err(invalid());
        }
        let id = Uuid::parse_str(&claims.sub).map_err(|_| invalid())?;
        let email = Email::parse(&claims.email).map_err(|_| invalid())?;
        match self.user_by_id(id).await? {
            Some(user) if user.email == email => {}
            _ => return Err(invalid()),
        }
        self.users
            .mark_email_verified(&email)
            .await
            .map_err(unavailable)
    }

    /// The user with `email`, a store failure being [`Error::Unavailable`].
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>> {
        self.users
            .find_user_by_email(email)
            .await
            .map_err(unavailable)
    }

    /// The user with `id`, a store failure being [`Error::Unavailable`].
    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>> {
        self.users.get_user(id).await.map_err(unavailable)
    }
}

/// A failure of the user store while checking credentials or tokens, as the caller must see
/// it: the store is unavailable (retry later), never "wrong password" or "email taken".
/// Answers of the store that are part of its contract (`AlreadyExists`, `NotFound`, ...) pass
/// unchanged; only [`Error::Other`] (a failure the store could not classify) is re-labelled.
fn unavailable(e: Error) -> Error {
    match e {
        Error::Other(source) => Error::Unavailable(source),
        other => other,
    }
}
