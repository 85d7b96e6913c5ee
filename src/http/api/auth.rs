//! Registration, login and address verification.

use super::*;

#[derive(Deserialize, ToSchema)]
pub(crate) struct Credentials {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RegisterResponse {
    message: &'static str,
    access_token: String,
    token_type: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LoginResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// A limiter's verdict as the API answers it: 429 with `Retry-After`, counted in `counter`.
pub(crate) fn rate_limited(
    verdict: Result<(), u64>,
    counter: &'static str,
    detail: &'static str,
) -> Result<(), ApiError> {
    verdict.map_err(|wait| {
        metrics::counter!(counter).increment(1);
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, detail).with_retry_after(wait)
    })
}

#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = Credentials,
    responses((status = 200, description = "Registered", body = RegisterResponse),
              (status = 409, description = "Email already registered", body = ErrorBody),
              (status = 422, description = "Invalid email or password", body = ErrorBody),
              (status = 429, description = "Too many registrations from this address", body = ErrorBody)))]
pub(crate) async fn register(
    State(state): State<ApiState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<RegisterResponse>> {
    if let Some(limiter) = &state.login_limiter {
        rate_limited(
            limiter.check_registration(client),
            "inventory_register_rate_limited_total",
            "too many registrations from this address, retry later",
        )?;
    }
    let (user, token) = state.auth.register(&body.email, &body.password).await?;
    if state.require_verified_email
        && let Err(e) = state
            .auth
            .request_verification(state.store.as_ref(), &user)
            .await
    {
        // The account exists; the user can ask again (POST /auth/verify/request).
        tracing::warn!(error = %e, "verification email not queued at registration");
    }
    Ok(Json(RegisterResponse {
        message: "user created",
        access_token: token.access_token,
        token_type: "bearer",
    }))
}

#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, description = "Logged in", body = LoginResponse),
              (status = 401, description = "Wrong email or password", body = ErrorBody),
              (status = 429, description = "Too many attempts from this address or for this account", body = ErrorBody)))]
pub(crate) async fn login(
    State(state): State<ApiState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<LoginResponse>> {
    if let Some(limiter) = &state.login_limiter {
        rate_limited(
            limiter.check(client, &body.email),
            "inventory_login_rate_limited_total",
            "too many login attempts, retry later",
        )?;
    }
    let (_, token) = state.auth.login(&body.email, &body.password).await?;
    Ok(Json(LoginResponse {
        access_token: token.access_token,
        token_type: "bearer",
        expires_in: token.expires_in,
    }))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct VerifyBody {
    /// The code of the verification email.
    code: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MessageResponse {
    message: &'static str,
}

#[utoipa::path(post, path = "/auth/verify", tag = "auth", request_body = VerifyBody,
    responses((status = 200, description = "The address is verified", body = MessageResponse),
              (status = 422, description = "Invalid or expired code", body = ErrorBody)))]
pub(crate) async fn verify_email(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> ApiResult<Json<MessageResponse>> {
    state.auth.verify_email(&body.code).await?;
    Ok(Json(MessageResponse {
        message: "email verified",
    }))
}

#[utoipa::path(post, path = "/auth/verify/request", tag = "auth", security(("bearer" = [])),
    responses((status = 202, description = "A verification email is on its way to the caller's address", body = MessageResponse),
              (status = 200, description = "The address is verified already", body = MessageResponse),
              (status = 401, description = "Not authenticated", body = ErrorBody),
              (status = 429, description = "Too many requests from this address", body = ErrorBody)))]
pub(crate) async fn request_verification(
    State(state): State<ApiState>,
    Caller(who): Caller,
    ClientIp(client): ClientIp,
) -> ApiResult<(StatusCode, Json<MessageResponse>)> {
    if who.email_verified {
        return Ok((
            StatusCode::OK,
            Json(MessageResponse {
                message: "email already verified",
            }),
        ));
    }
    // Each request sends an email: limited like registrations.
    if let Some(limiter) = &state.login_limiter {
        rate_limited(
            limiter.check_registration(client),
            "inventory_verification_rate_limited_total",
            "too many verification requests, retry later",
        )?;
    }
    let user =
        state.store.get_user(who.user_id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "the account no longer exists")
        })?;
    state
        .auth
        .request_verification(state.store.as_ref(), &user)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageResponse {
            message: "verification email queued",
        }),
    ))
}
