//! Sign-in and sessions: login (password grant, token verified, user and session written in one
//! round trip), refresh, logout, token validation, and a user's view of their own sessions —
//! one file each (`login`, `refresh`, `logout`, `bearer`, `own`); here the requests and answers
//! and what they share.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Principal;
use crate::clock::iso8601;
use crate::clock::now_ms;
use crate::deadline;
use crate::error::Error;
use crate::keycloak::{KeycloakError, TokenSet};
use crate::observe::is_technical_role;
use crate::profile::{attributes_of_claims, Attributes};
use crate::services::Services;
use crate::store::{
    token_hash, KeycloakFields, LoginRecord, RepairKind, Session, SessionEnd, StoreError,
    UserStatus,
};
use crate::throttle;
use crate::users::UserView;

mod bearer;
mod login;
mod logout;
mod own;
mod refresh;

pub use bearer::{authenticate, validate, Validation};
pub use login::login;
pub(crate) use login::record_sign_in;
pub use logout::logout;
pub use own::{me, my_sessions, revoke, SessionList, SessionView};
pub use refresh::refresh;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub token: String,
}

pub use crate::request::Origin;

/// The tokens handed to the client (the only place they ever go).
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensView {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
}

/// The answer of a login.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginView {
    pub user: UserView,
    pub tokens: TokensView,
    pub session_id: String,
}

/// The answer of a refresh.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshView {
    pub tokens: TokensView,
    pub session_id: String,
}

impl From<&TokenSet> for TokensView {
    fn from(t: &TokenSet) -> Self {
        TokensView {
            access_token: t.access_token.clone(),
            refresh_token: t.refresh_token.clone(),
            token_type: "Bearer",
            expires_in: t.expires_in,
            refresh_expires_in: t.refresh_expires_in,
        }
    }
}

fn required(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        Err(Error::field(field, "required"))
    } else {
        Ok(())
    }
}

fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The identity an access token states (mapped attributes travel as claims: no admin call).
pub(crate) fn identity(p: &Principal, attribute_names: &[String]) -> (KeycloakFields, Attributes) {
    let c = &p.claims;
    let fields = KeycloakFields {
        username: claim(c, "preferred_username")
            .unwrap_or(&p.username)
            .to_owned(),
        email: claim(c, "email").map(str::to_owned),
        first_name: claim(c, "given_name").map(str::to_owned),
        last_name: claim(c, "family_name").map(str::to_owned),
        enabled: true,
        email_verified: c
            .get("email_verified")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        roles: p
            .realm_roles
            .iter()
            .filter(|r| !is_technical_role(r))
            .cloned()
            .collect(),
        groups: strings(c.get("groups")),
    };
    (fields, attributes_of_claims(attribute_names, c))
}

/// `sub` and `sid` of a refresh token, read without checking it. They only say which session
/// record to look at: nothing is done to a session unless the presented token proves it (its hash
/// is the session's, or Keycloak accepted it).
fn refresh_token_subject(token: &str) -> Option<(String, String)> {
    let c = crate::keycloak::unverified_claims(token)?;
    Some((claim(&c, "sub")?.to_owned(), claim(&c, "sid")?.to_owned()))
}

/// A token Keycloak just issued that we cannot verify means a misconfiguration (issuer or
/// audience), not a client error.
async fn verified(services: &Services, tokens: &TokenSet) -> Result<Principal, Error> {
    services
        .bearer
        .validate(&tokens.access_token)
        .await
        .map_err(|e| {
            Error::Keycloak(KeycloakError::Protocol(format!(
                "issued token does not verify: {e}"
            )))
        })
}

fn invalid_grant(reason: &str) -> Error {
    Error::Keycloak(KeycloakError::InvalidGrant {
        description: reason.into(),
    })
}

/// A session ended here that Keycloak may still hold: the next sync run ends it there.
async fn note_session_repair(services: &Services, session: &Session) {
    crate::repair::note(
        services,
        session.created_at,
        RepairKind::KeycloakSessions {
            username: String::new(),
            user_id: Some(session.user_id.clone()),
            sid: Some(session.sid.clone()),
            until: None,
            client_id: None,
        },
    )
    .await;
}

/// The public app client a refresh token is Keycloak's business with, if not the login client:
/// the session's own record says it, else the token's `azp` when that is a token-sync client
/// (read unverified: Keycloak checks the token itself, and a wrong client only fails the call).
fn app_client(services: &Services, session: Option<&Session>, token: &str) -> Option<String> {
    if let Some(session) = session {
        return session.client_id.clone();
    }
    let claims = crate::keycloak::unverified_claims(token)?;
    let azp = claim(&claims, "azp")?;
    services
        .config
        .token_sync_clients
        .iter()
        .any(|c| c == azp)
        .then(|| azp.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_token_subject_reads_sub_and_sid() {
        use base64::Engine;
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"u1","sid":"s1"}"#);
        assert_eq!(
            refresh_token_subject(&format!("h.{payload}.sig")),
            Some(("u1".into(), "s1".into()))
        );
        assert_eq!(refresh_token_subject("garbage"), None);
    }
}
