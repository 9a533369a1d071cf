//! What the session routes share about the tokens Keycloak hands over: the identity an access
//! token states, the session a refresh token names, the verification of a token just issued, the
//! public client a token belongs to, and the repair note for a session ended here only.

use serde_json::Value;

use crate::error::Error;
use crate::features::observe::is_technical_role;
use crate::outside::auth::{strings, Principal};
use crate::outside::keycloak::{KeycloakError, TokenSet};
use crate::outside::store::{KeycloakFields, RepairKind, Session};
use crate::rules::profile::{attributes_of_claims, Attributes};
use crate::services::Services;

pub(super) fn required(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        Err(Error::field(field, "required"))
    } else {
        Ok(())
    }
}

pub(super) fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
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
pub(super) fn refresh_token_subject(token: &str) -> Option<(String, String)> {
    let c = crate::outside::keycloak::unverified_claims(token)?;
    Some((claim(&c, "sub")?.to_owned(), claim(&c, "sid")?.to_owned()))
}

/// A token Keycloak just issued that we cannot verify means a misconfiguration (issuer or
/// audience), not a client error.
pub(super) async fn verified(services: &Services, tokens: &TokenSet) -> Result<Principal, Error> {
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

pub(super) fn invalid_grant(reason: &str) -> Error {
    Error::Keycloak(KeycloakError::InvalidGrant {
        description: reason.into(),
    })
}

/// A session ended here that Keycloak may still hold: the next sync run ends it there.
pub(super) async fn note_session_repair(services: &Services, session: &Session) {
    crate::features::repair::note(
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
pub(super) fn app_client(
    services: &Services,
    session: Option<&Session>,
    token: &str,
) -> Option<String> {
    if let Some(session) = session {
        return session.client_id.clone();
    }
    let claims = crate::outside::keycloak::unverified_claims(token)?;
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
