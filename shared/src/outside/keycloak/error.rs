//! Keycloak's answers turned into typed errors. Keycloak speaks three error body shapes (OAuth2
//! `{"error","error_description"}`, admin `{"errorMessage"[,"field","params"]}` / `{"errors":[…]}`,
//! and the generic `{"error"}`); which one, and what it means, depends on the endpoint (contract §0.1).

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExistsField {
    Username,
    Email,
    UsernameOrEmail,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum KeycloakError {
    #[error("invalid user credentials")]
    InvalidCredentials,
    #[error("account disabled")]
    AccountDisabled,
    #[error("account is not fully set up")]
    AccountNotReady,
    #[error("user exists ({field:?})")]
    UserExists { field: ExistsField },
    #[error("invalid {field}: {key}")]
    Validation {
        field: String,
        key: String,
        params: Vec<String>,
    },
    #[error("password rejected: {message}")]
    PasswordPolicy { message: String },
    #[error("rejected: {message}")]
    BadRequest { message: String },
    /// A refresh or logout token Keycloak no longer accepts ("Session not active", …).
    #[error("invalid grant: {description}")]
    InvalidGrant { description: String },
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("unauthorized")]
    Unauthorized,
    /// The client id or secret was refused (after re-reading the secret once).
    #[error("client authentication failed")]
    InvalidClient,
    #[error("rate limited")]
    RateLimited { retry_after: Option<u64> },
    #[error("Keycloak unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("client secret unavailable: {0}")]
    SecretUnavailable(String),
    #[error("unexpected answer from Keycloak: {0}")]
    Protocol(String),
    /// The call needs a Keycloak client this function was not given (a deployment error).
    #[error("this function has no {0} configured")]
    NotConfigured(&'static str),
}

/// Which endpoint answered: the same body means different things on each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Endpoint {
    PasswordGrant,
    CodeGrant,
    RefreshGrant,
    ClientCredentials,
    Logout,
    Admin,
}

#[derive(Default, Debug)]
struct Body {
    error: Option<String>,
    description: Option<String>,
    message: Option<String>,
    field: Option<String>,
    params: Vec<String>,
}

fn parse(body: &[u8]) -> Body {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Body::default();
    };
    // Several field errors: the first one speaks for the request.
    let v = match v
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        Some(first) => first.clone(),
        None => v,
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    Body {
        error: text("error"),
        description: text("error_description"),
        message: text("errorMessage"),
        field: text("field"),
        params: v
            .get("params")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The error for a non-success answer. 429 and 5xx are handled by the retry loop before this.
pub fn classify(endpoint: Endpoint, status: u16, body: &[u8]) -> KeycloakError {
    let b = parse(body);
    let error = b.error.as_deref().unwrap_or("");
    let description = b.description.clone().unwrap_or_default();
    if status == 429 {
        return KeycloakError::RateLimited { retry_after: None };
    }
    if status >= 500 {
        return KeycloakError::Unavailable {
            reason: format!("HTTP {status}"),
        };
    }
    if endpoint != Endpoint::Admin {
        return match (status, error) {
            (_, "invalid_client" | "unauthorized_client") if status == 401 => {
                KeycloakError::InvalidClient
            }
            (400, "invalid_client") => KeycloakError::InvalidClient,
            (401, "invalid_grant") if endpoint == Endpoint::PasswordGrant => {
                KeycloakError::InvalidCredentials
            }
            (400, "invalid_grant") if description == "Account disabled" => {
                KeycloakError::AccountDisabled
            }
            (400, "invalid_grant") if description == "Account is not fully set up" => {
                KeycloakError::AccountNotReady
            }
            (400, "invalid_grant") => KeycloakError::InvalidGrant { description },
            (400 | 401, "invalid_request") => KeycloakError::BadRequest {
                message: description,
            },
            (403, _) => KeycloakError::Forbidden,
            _ => KeycloakError::Protocol(format!("HTTP {status} {error} {description}")),
        };
    }
    match status {
        401 => KeycloakError::Unauthorized,
        403 => KeycloakError::Forbidden,
        404 => KeycloakError::NotFound,
        409 => {
            let field = match b.message.as_deref() {
                Some("User exists with same username") => ExistsField::Username,
                Some("User exists with same email") => ExistsField::Email,
                _ => ExistsField::UsernameOrEmail,
            };
            KeycloakError::UserExists { field }
        }
        400 => {
            if let (Some(field), Some(key)) = (b.field, b.message.clone()) {
                return KeycloakError::Validation {
                    field,
                    key,
                    params: b.params,
                };
            }
            if error.starts_with("invalidPassword") {
                return KeycloakError::PasswordPolicy {
                    message: if description.is_empty() {
                        error.to_owned()
                    } else {
                        description
                    },
                };
            }
            let message = b
                .message
                .or(b.description)
                .or(b.error)
                .unwrap_or_else(|| "Bad request".into());
            KeycloakError::BadRequest { message }
        }
        _ => KeycloakError::Protocol(format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(endpoint: Endpoint, status: u16, body: &str) -> KeycloakError {
        classify(endpoint, status, body.as_bytes())
    }

    #[test]
    fn password_grant_errors() {
        let oauth = |e: &str, d: &str| format!(r#"{{"error":"{e}","error_description":"{d}"}}"#);
        assert_eq!(
            c(
                Endpoint::PasswordGrant,
                401,
                &oauth("invalid_grant", "Invalid user credentials")
            ),
            KeycloakError::InvalidCredentials
        );
        assert_eq!(
            c(
                Endpoint::PasswordGrant,
                400,
                &oauth("invalid_grant", "Account disabled")
            ),
            KeycloakError::AccountDisabled
        );
        assert_eq!(
            c(
                Endpoint::PasswordGrant,
                400,
                &oauth("invalid_grant", "Account is not fully set up")
            ),
            KeycloakError::AccountNotReady
        );
        assert_eq!(
            c(
                Endpoint::PasswordGrant,
                401,
                &oauth(
                    "unauthorized_client",
                    "Invalid client or Invalid client credentials"
                )
            ),
            KeycloakError::InvalidClient
        );
        assert_eq!(
            c(
                Endpoint::RefreshGrant,
                400,
                &oauth("invalid_grant", "Session not active")
            ),
            KeycloakError::InvalidGrant {
                description: "Session not active".into()
            }
        );
    }

    #[test]
    fn admin_errors_in_all_three_shapes() {
        assert_eq!(
            c(
                Endpoint::Admin,
                409,
                r#"{"errorMessage":"User exists with same email"}"#
            ),
            KeycloakError::UserExists {
                field: ExistsField::Email
            }
        );
        assert_eq!(
            c(
                Endpoint::Admin,
                400,
                r#"{"field":"email","errorMessage":"error-invalid-email","params":["email","x@"]}"#
            ),
            KeycloakError::Validation {
                field: "email".into(),
                key: "error-invalid-email".into(),
                params: vec!["email".into(), "x@".into()]
            }
        );
        assert_eq!(
            c(
                Endpoint::Admin,
                400,
                r#"{"errors":[{"field":"username","errorMessage":"error-invalid-length","params":["username",3,255]},{"field":"email","errorMessage":"x"}]}"#
            ),
            KeycloakError::Validation {
                field: "username".into(),
                key: "error-invalid-length".into(),
                params: vec!["username".into(), "3".into(), "255".into()]
            }
        );
        assert_eq!(
            c(
                Endpoint::Admin,
                400,
                r#"{"error":"invalidPasswordMinLengthMessage","error_description":"Invalid password: minimum length 8."}"#
            ),
            KeycloakError::PasswordPolicy {
                message: "Invalid password: minimum length 8.".into()
            }
        );
        assert_eq!(
            c(
                Endpoint::Admin,
                400,
                r#"{"errorMessage":"User name is missing"}"#
            ),
            KeycloakError::BadRequest {
                message: "User name is missing".into()
            }
        );
        assert_eq!(
            c(Endpoint::Admin, 404, r#"{"error":"User not found"}"#),
            KeycloakError::NotFound
        );
        assert_eq!(
            c(Endpoint::Admin, 403, r#"{"error":"HTTP 403 Forbidden"}"#),
            KeycloakError::Forbidden
        );
        assert_eq!(
            c(Endpoint::Admin, 503, "<html>"),
            KeycloakError::Unavailable {
                reason: "HTTP 503".into()
            }
        );
    }
}
