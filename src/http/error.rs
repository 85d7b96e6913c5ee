//! The `{"detail", "code"}` error contract, the JSON and bearer extractors, and the
//! middleware that keeps every error JSON.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use inventory_core::{Error, ErrorKind, Principal};
use serde::de::DeserializeOwned;

use super::ApiState;

/// An error answered as `{"detail": "...", "code": "..."}` with the status of its kind:
/// `detail` is for people (and the original service's clients), `code` is a stable machine
/// string.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The human-readable `detail`.
    pub detail: String,
    /// The machine `code`.
    pub code: &'static str,
    retry_after: Option<u64>,
    /// Fields the error's kind adds to the body: `short` for `out_of_stock` (every short
    /// product, with what was asked and what is available), `current` and `expected` for
    /// `stock_changed`.
    fields: serde_json::Map<String, serde_json::Value>,
}

/// The stable machine code of an HTTP status.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_input",
        429 => "rate_limited",
        503 => "unavailable",
        other if other < 500 => "client_error",
        _ => "internal",
    }
}

impl ApiError {
    /// An error with this status, its default code and a detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
            code: code_of(status),
            retry_after: None,
            fields: Default::default(),
        }
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = StatusCode::from_u16(e.kind().http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let detail = match e.kind() {
            ErrorKind::Other => {
                tracing::error!(error = %e, "internal error");
                "internal server error".to_owned()
            }
            ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "store unavailable");
                "service temporarily unavailable, retry later".to_owned()
            }
            ErrorKind::OutOfStock => "out of stock".to_owned(),
            _ => e.to_string(),
        };
        let retry_after = (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1);
        let mut fields = serde_json::Map::new();
        match &e {
            Error::OutOfStock { short } => {
                fields.insert("short".into(), serde_json::json!(short));
            }
            Error::InvalidInput { field, .. } => {
                fields.insert("field".into(), serde_json::json!(field));
            }
            Error::StockChanged {
                expected, current, ..
            } => {
                fields.insert("expected".into(), serde_json::json!(expected));
                fields.insert("current".into(), serde_json::json!(current));
            }
            _ => {}
        }
        let code = match e.kind() {
            // The status's code for these, so that every 5xx reads the same to a client.
            ErrorKind::Other | ErrorKind::Unavailable => code_of(status),
            kind => kind.code(),
        };
        ApiError {
            status,
            detail,
            code,
            retry_after,
            fields,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "detail": self.detail, "code": self.code });
        for (name, value) in self.fields {
            body[name] = value;
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `Json<T>` whose rejections are `{"detail"}` errors: malformed or mistyped JSON is 422 (as
/// the original FastAPI service answered), a missing content type 415, a body over the limit 413.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(e) => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.body_text())
                }
                JsonRejection::JsonSyntaxError(e) => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.body_text())
                }
                JsonRejection::MissingJsonContentType(e) => {
                    ApiError::new(e.status(), e.body_text())
                }
                other => ApiError::new(other.status(), other.body_text()),
            }),
        }
    }
}

/// The caller, from a valid `Authorization: Bearer` token.
pub struct Caller(pub Principal);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not authenticated"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "expected a Bearer token"))?;
        // Signature and expiry, then the stored user: a deleted user or a revoked token is
        // 401 everywhere, and the role is the user's current one.
        let principal = state
            .auth
            .authenticate(token.trim())
            .await
            .map_err(|e| match e {
                inventory_core::Error::Unauthorized(_) => {
                    tracing::debug!(error = %e, "token rejected");
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid, expired or revoked token",
                    )
                }
                other => ApiError::from(other),
            })?;
        Ok(Caller(principal))
    }
}

/// Makes every error response a JSON `{"detail"}` body, whichever layer produced it (unknown
/// route, wrong method, body limit, timeout, panic).
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let detail = status.canonical_reason().unwrap_or("error").to_owned();
    let mut replaced = ApiError::new(status, detail).into_response();
    // Keep headers such as Allow and request ids.
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replaced
}
