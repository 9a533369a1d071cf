//! The stable machine codes of the API's problems.

use serde::Serialize;

/// The stable machine codes of the API's problems, one per kind of refusal or failure.
/// openapi.yaml's `Problem.code` lists the same words (a test holds them together).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    AccountDisabled,
    AccountNotReady,
    AlreadyExists,
    ClientNotAllowed,
    EmailTaken,
    Forbidden,
    ForbiddenTarget,
    Gone,
    IdempotencyKeyReused,
    Internal,
    InvalidCredentials,
    InvalidCursor,
    InvalidEvent,
    InvalidForm,
    InvalidHandle,
    InvalidJson,
    InvalidLogoutToken,
    InvalidMessage,
    InvalidQuery,
    InvalidState,
    InvalidToken,
    KeycloakRejectedService,
    KeycloakUnavailable,
    LogoutTokenReplayed,
    NotFound,
    PasswordPolicy,
    PayloadTooLarge,
    PreconditionFailed,
    PreconditionRequired,
    QueueUnavailable,
    RateLimited,
    RedirectNotAllowed,
    RefreshTokenReused,
    RejectedByKeycloak,
    RequestInProgress,
    SecretUnavailable,
    StaleEvent,
    StoreUnavailable,
    SyncUnavailable,
    Unauthenticated,
    Unfinished,
    UnsupportedMediaType,
    UserExists,
    UsernameTaken,
    ValidationFailed,
    WriteInProgress,
}

impl ProblemCode {
    /// Every code, in the order openapi.yaml lists them.
    pub const ALL: [ProblemCode; 46] = [
        ProblemCode::AccountDisabled,
        ProblemCode::AccountNotReady,
        ProblemCode::AlreadyExists,
        ProblemCode::ClientNotAllowed,
        ProblemCode::EmailTaken,
        ProblemCode::Forbidden,
        ProblemCode::ForbiddenTarget,
        ProblemCode::Gone,
        ProblemCode::IdempotencyKeyReused,
        ProblemCode::Internal,
        ProblemCode::InvalidCredentials,
        ProblemCode::InvalidCursor,
        ProblemCode::InvalidEvent,
        ProblemCode::InvalidForm,
        ProblemCode::InvalidHandle,
        ProblemCode::InvalidJson,
        ProblemCode::InvalidLogoutToken,
        ProblemCode::InvalidMessage,
        ProblemCode::InvalidQuery,
        ProblemCode::InvalidState,
        ProblemCode::InvalidToken,
        ProblemCode::KeycloakRejectedService,
        ProblemCode::KeycloakUnavailable,
        ProblemCode::LogoutTokenReplayed,
        ProblemCode::NotFound,
        ProblemCode::PasswordPolicy,
        ProblemCode::PayloadTooLarge,
        ProblemCode::PreconditionFailed,
        ProblemCode::PreconditionRequired,
        ProblemCode::QueueUnavailable,
        ProblemCode::RateLimited,
        ProblemCode::RedirectNotAllowed,
        ProblemCode::RefreshTokenReused,
        ProblemCode::RejectedByKeycloak,
        ProblemCode::RequestInProgress,
        ProblemCode::SecretUnavailable,
        ProblemCode::StaleEvent,
        ProblemCode::StoreUnavailable,
        ProblemCode::SyncUnavailable,
        ProblemCode::Unauthenticated,
        ProblemCode::Unfinished,
        ProblemCode::UnsupportedMediaType,
        ProblemCode::UserExists,
        ProblemCode::UsernameTaken,
        ProblemCode::ValidationFailed,
        ProblemCode::WriteInProgress,
    ];

    /// The code as the body's `code` field and the `type` URN spell it (the table is serde's
    /// `snake_case` of each name, kept as a match so it is a `&'static str`).
    pub fn as_str(self) -> &'static str {
        use ProblemCode::*;
        match self {
            AccountDisabled => "account_disabled",
            AccountNotReady => "account_not_ready",
            AlreadyExists => "already_exists",
            ClientNotAllowed => "client_not_allowed",
            EmailTaken => "email_taken",
            Forbidden => "forbidden",
            ForbiddenTarget => "forbidden_target",
            Gone => "gone",
            IdempotencyKeyReused => "idempotency_key_reused",
            Internal => "internal",
            InvalidCredentials => "invalid_credentials",
            InvalidCursor => "invalid_cursor",
            InvalidEvent => "invalid_event",
            InvalidForm => "invalid_form",
            InvalidHandle => "invalid_handle",
            InvalidJson => "invalid_json",
            InvalidLogoutToken => "invalid_logout_token",
            InvalidMessage => "invalid_message",
            InvalidQuery => "invalid_query",
            InvalidState => "invalid_state",
            InvalidToken => "invalid_token",
            KeycloakRejectedService => "keycloak_rejected_service",
            KeycloakUnavailable => "keycloak_unavailable",
            LogoutTokenReplayed => "logout_token_replayed",
            NotFound => "not_found",
            PasswordPolicy => "password_policy",
            PayloadTooLarge => "payload_too_large",
            PreconditionFailed => "precondition_failed",
            PreconditionRequired => "precondition_required",
            QueueUnavailable => "queue_unavailable",
            RateLimited => "rate_limited",
            RedirectNotAllowed => "redirect_not_allowed",
            RefreshTokenReused => "refresh_token_reused",
            RejectedByKeycloak => "rejected_by_keycloak",
            RequestInProgress => "request_in_progress",
            SecretUnavailable => "secret_unavailable",
            StaleEvent => "stale_event",
            StoreUnavailable => "store_unavailable",
            SyncUnavailable => "sync_unavailable",
            Unauthenticated => "unauthenticated",
            Unfinished => "unfinished",
            UnsupportedMediaType => "unsupported_media_type",
            UserExists => "user_exists",
            UsernameTaken => "username_taken",
            ValidationFailed => "validation_failed",
            WriteInProgress => "write_in_progress",
        }
    }
}

impl std::fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ProblemCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_spelled_as_serde_writes_it() {
        for code in ProblemCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn openapi_lists_exactly_the_problem_codes() {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(include_str!("../../../openapi.yaml")).unwrap();
        let listed: Vec<&str> = doc["components"]["schemas"]["Problem"]["properties"]["code"]
            ["enum"]
            .as_sequence()
            .expect("Problem.code has an enum")
            .iter()
            .filter_map(serde_yaml_ng::Value::as_str)
            .collect();
        let ours: Vec<&str> = ProblemCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, ours);
    }
}
