//! The one error shape of every HTTP answer that is not a success:
//! `{"error": {"code", "message", "details"}}` with a fitting status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use weft_engine::EngineError;
use weft_store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// A stable, machine-readable code such as `not_found`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// More data, such as lint problems (`null` when there is none).
    pub details: Value,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorInfo {
    /// A stable code: `bad_request`, `not_found`, `conflict`, `payload_too_large`,
    /// `unsupported_media_type`, `bad_signature`, `method_not_allowed`, `run_failed`, `invalid_input`,
    /// `unavailable`,
    /// `internal`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// More data, such as the problems of a posted workflow file.
    #[schema(value_type = Object)]
    pub details: Value,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500, with the cause logged and a message that does not leak internals.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "A request failed inside the hub.");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the hub could not carry out the request; its log says why",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(_) | StoreError::ApprovalNotFound(_) => {
                ApiError::not_found(e.to_string())
            }
            StoreError::ApprovalClosed { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            StoreError::Ambiguous { .. } => ApiError::bad_request(e.to_string()),
            StoreError::InvalidState { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            e if e.is_retryable() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the store is busy or unreachable; try again: {e}"),
            ),
            e => ApiError::internal(e),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Store(e) => e.into(),
            EngineError::UnknownWorkflow { .. } => ApiError::not_found(e.to_string()),
            EngineError::Unrunnable(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            EngineError::InvalidInput { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                e.to_string(),
            ),
            EngineError::BadIdempotencyKey => ApiError::bad_request(e.to_string()),
            EngineError::KeyReused { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// The answer to any path that does not exist.
pub async fn no_route() -> ApiError {
    ApiError::not_found(
        "nothing is served at this path; the API is under /api (see /api/openapi.json)",
    )
}
