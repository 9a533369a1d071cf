//! The one error type of the functions, and its one mapping to an RFC 9457 problem (status, stable
//! machine `code`, human `title` and `detail`). Handlers return `Ok(response)` for every expected
//! failure by turning an `Error` into a `Problem` here, nowhere else.

use serde::Serialize;

mod code;

pub use code::ProblemCode;

use crate::outside::auth::AuthError;
use crate::outside::keycloak::KeycloakError;
use crate::outside::store::StoreError;

/// One invalid input field: where and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{detail}")]
    BadRequest { code: ProblemCode, detail: String },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge { limit: usize },
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("not authenticated")]
    Unauthenticated,
    #[error("forbidden")]
    Forbidden,
    /// The caller may use the route, but not on this user (policy).
    #[error("{detail}")]
    ForbiddenTarget { detail: String },
    /// Too many attempts from this source or for this account (our own throttle).
    #[error("rate limited")]
    RateLimited { retry_after: u64 },
    /// A refresh token older than the session's current one: the session is ended.
    #[error("refresh token reused")]
    RefreshTokenReused,
    /// Another admin write to this user is still in flight.
    #[error("write in progress")]
    WriteInProgress,
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    Conflict { code: ProblemCode, detail: String },
    /// What the request names existed and was erased (a replayed registration of a user who
    /// was hard-deleted since).
    #[error("gone")]
    Gone,
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("precondition required")]
    PreconditionRequired,
    #[error(transparent)]
    Keycloak(#[from] KeycloakError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A part of the service that cannot answer now (503).
    #[error("{detail}")]
    Unavailable { code: ProblemCode, detail: String },
    /// A token of a Keycloak client this route does not take (`POST /auth/sync`).
    #[error("client not allowed")]
    ClientNotAllowed,
    /// A change made in Keycloak (past the point of no return) whose remaining steps here
    /// could not be written because the store did not answer: `done` says what is applied.
    /// Repeating the same request finishes it (503, with `Retry-After`).
    #[error("{done}; the rest is not recorded here")]
    Unfinished { done: &'static str },
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a client sees: RFC 9457 fields plus a stable `code`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: ProblemCode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds, sent as the `Retry-After` header (not in the body).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// Seconds a client waits before retrying a part of the service that did not answer.
const RETRY_AFTER_UNAVAILABLE: u64 = 2;

impl Problem {
    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn new(status: u16, code: ProblemCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:keycloak-user-sync:problem:{}", code.as_str()),
            title,
            status,
            detail: detail.into(),
            code,
            errors: Vec::new(),
            retry_after: None,
        }
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::KeysUnavailable(reason) => {
                Error::Keycloak(KeycloakError::Unavailable { reason })
            }
            _ => Error::Unauthenticated,
        }
    }
}

impl Error {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }

    /// The error with its source chain, for the log (never for the client).
    pub fn cause(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let next = s.to_string();
            if !text.contains(&next) {
                text.push_str(": ");
                text.push_str(&next);
            }
            source = s.source();
        }
        text
    }

    pub fn field(field: &str, message: &str) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    /// The single mapping from errors to HTTP problems. Table-like: one arm per error, each a
    /// status, a code, a title and a detail, so it is longer than a function should be.
    pub fn to_problem(&self) -> Problem {
        use KeycloakError as K;
        match self {
            Error::Validation(errors) => {
                let mut p = Problem::new(
                    400,
                    ProblemCode::ValidationFailed,
                    "Invalid request",
                    describe(errors),
                );
                p.errors = errors.clone();
                p
            }
            Error::BadRequest { code, detail } => {
                Problem::new(400, *code, "Bad request", detail.clone())
            }
            Error::UnsupportedMediaType => Problem::new(
                415,
                ProblemCode::UnsupportedMediaType,
                "Unsupported media type",
                "send the body as application/json",
            ),
            Error::PayloadTooLarge { limit } => Problem::new(
                413,
                ProblemCode::PayloadTooLarge,
                "Payload too large",
                format!("the body may be at most {limit} bytes"),
            ),
            Error::InvalidCredentials | Error::Keycloak(K::InvalidCredentials) => Problem::new(
                401,
                ProblemCode::InvalidCredentials,
                "Invalid credentials",
                "the username or password is wrong",
            ),
            Error::Unauthenticated => Problem::new(
                401,
                ProblemCode::Unauthenticated,
                "Not authenticated",
                "a valid bearer token is required",
            ),
            Error::Keycloak(K::InvalidGrant { .. }) => Problem::new(
                401,
                ProblemCode::InvalidToken,
                "Invalid or expired token",
                "the token is not valid anymore; sign in again",
            ),
            Error::Forbidden => Problem::new(
                403,
                ProblemCode::Forbidden,
                "Forbidden",
                "your roles do not allow this",
            ),
            Error::ClientNotAllowed => Problem::new(
                403,
                ProblemCode::ClientNotAllowed,
                "Forbidden",
                "tokens of this Keycloak client are not taken here",
            ),
            Error::ForbiddenTarget { detail } => Problem::new(
                403,
                ProblemCode::ForbiddenTarget,
                "Forbidden",
                detail.clone(),
            ),
            Error::RateLimited { retry_after } => Problem::new(
                429,
                ProblemCode::RateLimited,
                "Too many requests",
                "too many attempts; retry later",
            )
            .retry_after(*retry_after),
            Error::RefreshTokenReused => Problem::new(
                401,
                ProblemCode::RefreshTokenReused,
                "Refresh token reused",
                "this refresh token was replaced already; the session is ended, sign in again",
            ),
            Error::WriteInProgress | Error::Store(StoreError::Locked) => Problem::new(
                409,
                ProblemCode::WriteInProgress,
                "Conflict",
                "another change to this user is in progress; read it again and retry",
            ),
            Error::Keycloak(K::AccountDisabled) | Error::Store(StoreError::UserDeleted) => {
                Problem::new(
                    403,
                    ProblemCode::AccountDisabled,
                    "Account disabled",
                    "this account is disabled",
                )
            }
            Error::Keycloak(K::AccountNotReady) => Problem::new(
                403,
                ProblemCode::AccountNotReady,
                "Account not ready",
                "this account has pending actions to complete in Keycloak",
            ),
            Error::NotFound | Error::Keycloak(K::NotFound) | Error::Store(StoreError::NotFound) => {
                Problem::new(404, ProblemCode::NotFound, "Not found", "no such resource")
            }
            Error::Conflict { code, detail } => {
                Problem::new(409, *code, "Conflict", detail.clone())
            }
            Error::Keycloak(K::UserExists { field }) => {
                let (code, detail) = match field {
                    crate::outside::keycloak::ExistsField::Username => {
                        (ProblemCode::UsernameTaken, "this username is already taken")
                    }
                    crate::outside::keycloak::ExistsField::Email => {
                        (ProblemCode::EmailTaken, "this email is already used")
                    }
                    crate::outside::keycloak::ExistsField::UsernameOrEmail => (
                        ProblemCode::UserExists,
                        "this username or email is already used",
                    ),
                };
                Problem::new(409, code, "Conflict", detail)
            }
            Error::Keycloak(K::Validation { field, key, .. }) => {
                let mut p = Problem::new(
                    400,
                    ProblemCode::ValidationFailed,
                    "Invalid request",
                    format!("{field}: {key}"),
                );
                p.errors = vec![FieldError::new(field.clone(), key.clone())];
                p
            }
            Error::Keycloak(K::PasswordPolicy { message }) => {
                let mut p = Problem::new(
                    400,
                    ProblemCode::PasswordPolicy,
                    "Password rejected",
                    message.clone(),
                );
                p.errors = vec![FieldError::new("password", message.clone())];
                p
            }
            // Keycloak's own text names its internals; it goes to the log (`Error::cause`), the
            // client gets a fixed sentence.
            Error::Keycloak(K::BadRequest { .. }) => Problem::new(
                400,
                ProblemCode::RejectedByKeycloak,
                "Rejected by Keycloak",
                "Keycloak refused this request; nothing was changed",
            ),
            Error::Gone => Problem::new(
                410,
                ProblemCode::Gone,
                "Gone",
                "the account this request created has been deleted",
            ),
            Error::PreconditionFailed | Error::Store(StoreError::VersionConflict) => Problem::new(
                412,
                ProblemCode::PreconditionFailed,
                "Precondition failed",
                "the resource changed since you read it; read it again",
            ),
            Error::PreconditionRequired => Problem::new(
                428,
                ProblemCode::PreconditionRequired,
                "Precondition required",
                "send If-Match with the ETag you read",
            ),
            Error::Store(StoreError::InvalidCursor) => Problem::new(
                400,
                ProblemCode::InvalidCursor,
                "Invalid cursor",
                "the cursor is not one this API gave out",
            ),
            Error::Keycloak(K::RateLimited { retry_after }) => Problem::new(
                429,
                ProblemCode::RateLimited,
                "Too many requests",
                "Keycloak is rate limiting; retry later",
            )
            .retry_after(retry_after.unwrap_or(1)),
            Error::Keycloak(K::Unavailable { .. }) => Problem::new(
                503,
                ProblemCode::KeycloakUnavailable,
                "Identity provider unavailable",
                "Keycloak did not answer; retry later",
            )
            .retry_after(RETRY_AFTER_UNAVAILABLE),
            Error::Keycloak(K::SecretUnavailable(_)) => Problem::new(
                503,
                ProblemCode::SecretUnavailable,
                "Configuration unavailable",
                "the service could not read its Keycloak credentials; retry later",
            )
            .retry_after(RETRY_AFTER_UNAVAILABLE),
            Error::Store(StoreError::AlreadyExists) => Problem::new(
                409,
                ProblemCode::AlreadyExists,
                "Conflict",
                "this resource exists already",
            ),
            Error::Store(StoreError::Unavailable(_)) => Problem::new(
                503,
                ProblemCode::StoreUnavailable,
                "Storage unavailable",
                "the user store did not answer; retry later",
            )
            .retry_after(RETRY_AFTER_UNAVAILABLE),
            Error::Keycloak(K::Forbidden | K::Unauthorized | K::InvalidClient | K::Protocol(_)) => {
                Problem::new(
                    502,
                    ProblemCode::KeycloakRejectedService,
                    "Identity provider refused the service",
                    "Keycloak refused this service's credentials or answered unexpectedly",
                )
            }
            Error::Unavailable { code, detail } => {
                Problem::new(503, *code, "Service unavailable", detail.clone())
                    .retry_after(RETRY_AFTER_UNAVAILABLE)
            }
            Error::Unfinished { done } => Problem::new(
                503,
                ProblemCode::Unfinished,
                "Applied, not finished here",
                format!(
                    "{done}; the user store did not answer, so the rest is not recorded here: \
                     repeating the same request finishes it"
                ),
            )
            .retry_after(RETRY_AFTER_UNAVAILABLE),
            Error::Store(StoreError::Other(_))
            | Error::Internal(_)
            | Error::Keycloak(K::NotConfigured(_)) => Problem::new(
                500,
                ProblemCode::Internal,
                "Internal error",
                "something went wrong on our side",
            ),
        }
    }
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outside::keycloak::ExistsField;

    #[test]
    fn a_change_applied_in_keycloak_but_not_finished_here_says_what_is_done() {
        let p = Error::Unfinished {
            done: "the password is set in Keycloak",
        }
        .to_problem();
        assert_eq!((p.status, p.code.as_str()), (503, "unfinished"));
        assert!(p.detail.starts_with("the password is set in Keycloak;"));
        assert!(p.detail.contains("repeating the same request finishes it"));
    }

    #[test]
    fn keycloak_conflicts_map_to_stable_codes() {
        let p = Error::from(KeycloakError::UserExists {
            field: ExistsField::Username,
        })
        .to_problem();
        assert_eq!((p.status, p.code.as_str()), (409, "username_taken"));
        let p = Error::from(KeycloakError::UserExists {
            field: ExistsField::Email,
        })
        .to_problem();
        assert_eq!(p.code, "email_taken");
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let p = Error::from(KeycloakError::RateLimited {
            retry_after: Some(7),
        })
        .to_problem();
        assert_eq!((p.status, p.retry_after), (429, Some(7)));
    }

    #[test]
    fn validation_lists_every_field() {
        let e = Error::Validation(vec![
            FieldError::new("email", "not an email"),
            FieldError::new("password", "too short"),
        ]);
        let p = e.to_problem();
        assert_eq!(p.status, 400);
        assert_eq!(p.detail, "email: not an email; password: too short");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["type"],
            "urn:keycloak-user-sync:problem:validation_failed"
        );
        assert_eq!(json["errors"][1]["field"], "password");
    }

    #[test]
    fn store_failures_map_to_client_and_server_classes() {
        assert_eq!(
            Error::from(StoreError::InvalidCursor).to_problem().status,
            400
        );
        assert_eq!(
            Error::from(StoreError::VersionConflict).to_problem().status,
            412
        );
        assert_eq!(
            Error::from(StoreError::Unavailable("x".into()))
                .to_problem()
                .status,
            503
        );
    }

    #[test]
    fn internal_details_never_reach_the_client() {
        let p = Error::internal("database password=hunter2 rejected").to_problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("hunter2"));
    }
}
