//! Errors as OpenAI's clients read them: `{"error": {"message", "type",
//! "param", "code"}}` with the HTTP status that says what went wrong.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Error;

/// One error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, …).
    pub kind: &'static str,
    /// The request field at fault, if any.
    pub param: Option<String>,
    /// A short machine-readable code.
    pub code: &'static str,
    /// Seconds to wait before trying again (429, 503).
    pub retry_after: Option<u64>,
    /// Extra fields beside `error` (the SQL that failed, say).
    pub extra: Option<Box<serde_json::Value>>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code,
            retry_after: None,
            extra: None,
        }
    }

    /// 400: the request is malformed or a field is out of range.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_value",
                message,
            )
        }
    }

    /// 400: the body is not the JSON the endpoint takes.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            message,
        )
    }

    /// 401: no key, or the wrong one.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "this server needs an API key: send it as \"Authorization: Bearer <key>\"",
        )
    }

    /// 404: no such database, model, adapter or route.
    pub fn not_found(param: Option<&str>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: param.map(str::to_string),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                code,
                message,
            )
        }
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "this route does not take that method",
        )
    }

    /// 413: the body or a field is longer than the server takes.
    pub fn too_large(param: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            param: param.map(str::to_string),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "too_large",
                message,
            )
        }
    }

    /// 422: the model wrote no query that could run.
    pub fn no_query(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "generation_error",
            "no_query",
            message,
        )
    }

    /// 429: every worker is busy and the queue is full.
    pub fn busy() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "queue_full",
                "the server is busy: every worker is generating and the queue is full; try again shortly",
            )
        }
    }

    /// 503: the model is still loading, or the server is shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(2),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "unavailable",
                message,
            )
        }
    }

    /// 504: the request ran past the server's time limit.
    pub fn timeout(seconds: f64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "timeout",
            format!("the request took longer than the server's limit of {seconds} s"),
        )
    }

    /// 500: something that should not fail did.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
        )
    }

    /// Adds fields beside `error`.
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(Box::new(extra));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        if let Some(serde_json::Value::Object(extra)) = self.extra.as_deref() {
            for (k, v) in extra {
                body[k] = v.clone();
            }
        }
        body
    }
}

impl From<Error> for ApiError {
    /// A library error from a request's work, with the status it earns.
    fn from(e: Error) -> Self {
        match &e {
            Error::NoQuery { .. } | Error::OutOfTokens { .. } => ApiError::no_query(e.to_string()),
            Error::UnknownAdapter { .. } => {
                ApiError::not_found(Some("model"), "model_not_found", e.to_string())
            }
            Error::PromptTooLong { .. } => ApiError::too_large(Some("messages"), e.to_string()),
            Error::Invalid { field, message } => ApiError::invalid(field, message.clone()),
            Error::ChangeRequested { .. } => ApiError::invalid("question", e.to_string()),
            Error::Cancelled => {
                ApiError::unavailable("the request was cancelled: the server is shutting down")
            }
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
