//! Sign-in and sessions: login (password grant, token verified, user and session written in one
//! round trip), refresh, logout, token validation, and a user's view of their own sessions.

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

fn session_record(
    user_id: &str,
    sid: &str,
    tokens: &TokenSet,
    origin: &Origin,
    now: i64,
) -> Session {
    Session {
        user_id: user_id.to_owned(),
        sid: sid.to_owned(),
        created_at: now,
        refreshed_at: None,
        refresh_count: 0,
        ip: origin.ip.clone(),
        user_agent: origin.user_agent.clone(),
        refresh_token_sha256: tokens
            .refresh_token
            .as_deref()
            .map(token_hash)
            .unwrap_or_default(),
        previous_refresh_token_sha256: None,
        expires_at: now / 1000 + tokens.refresh_expires_in.max(tokens.expires_in) as i64,
        ended_at: None,
        end_reason: None,
        client_id: None,
        last_seen_at: None,
    }
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

pub async fn login(
    services: &Services,
    req: &LoginRequest,
    origin: &Origin,
) -> Result<LoginView, Error> {
    // Switched off (`PASSWORD_LOGIN_ENABLED=false`): sign-in is the standard flow's alone.
    if !services.config.password_login_enabled {
        return Err(Error::NotFound);
    }
    required("username", &req.username)?;
    required("password", &req.password)?;
    let username = req.username.trim();
    let attempt = throttle::admit_login(services, username, origin.ip.as_deref()).await?;
    let started = now_ms();
    let tokens = match services
        .keycloak
        .password_grant(username, &req.password)
        .await
    {
        Ok(tokens) => tokens,
        // Keycloak says "disabled" before it checks the password (contract §1.3): telling the
        // caller would let anyone probe account states. Only a correct password may learn it.
        Err(KeycloakError::AccountDisabled) if !services.config.reveal_account_state => {
            tracing::info!("login refused: the account is disabled in Keycloak");
            return Err(Error::InvalidCredentials);
        }
        Err(e @ (KeycloakError::InvalidCredentials | KeycloakError::AccountDisabled)) => {
            return Err(e.into())
        }
        Err(e) => {
            attempt.inconclusive().await;
            if matches!(e, KeycloakError::Unavailable { .. }) {
                // The grant may still complete in Keycloak after we gave up on it.
                crate::repair::note(
                    services,
                    started,
                    failed_login_sessions(services, username, None),
                )
                .await;
            }
            return Err(e.into());
        }
    };
    let (signed_in, ()) = tokio::join!(
        record_sign_in(services, &tokens, origin, username, started),
        attempt.succeeded()
    );
    signed_in
}

/// A user Keycloak has signed in (by the password grant or the standard flow): the user and
/// the session recorded in one transaction (login count, last login), and the answer. A token
/// that does not verify, or a store that cannot record it, ends the new Keycloak session again
/// (a repair names `username` if that fails too).
pub(crate) async fn record_sign_in(
    services: &Services,
    tokens: &TokenSet,
    origin: &Origin,
    username: &str,
    started: i64,
) -> Result<LoginView, Error> {
    let principal = match verified(services, tokens).await {
        Ok(p) => p,
        Err(e) => {
            end_issued_session(services, tokens, username, None, started).await;
            return Err(e);
        }
    };
    let sid = principal
        .session_id
        .clone()
        .or_else(|| tokens.session_state.clone())
        .ok_or_else(|| Error::internal("token without a session id"))?;
    let (fields, attributes) = identity(&principal, &services.config.user_attributes);
    let now = now_ms();
    let record = LoginRecord {
        user_id: principal.user_id.clone(),
        fields: fields.clone(),
        attributes: attributes.clone(),
        at: now,
    };
    let session = session_record(&principal.user_id, &sid, tokens, origin, now);
    if let Err(e) = services.store.record_login(&record, &session).await {
        // No Keycloak session the application does not know of.
        end_issued_session(services, tokens, username, Some(&sid), started).await;
        return Err(e.into());
    }
    let user = UserView {
        id: principal.user_id.clone(),
        username: fields.username,
        email: fields.email,
        first_name: fields.first_name,
        last_name: fields.last_name,
        status: crate::store::UserStatus::Active,
        enabled: true,
        email_verified: fields.email_verified,
        roles: fields.roles.into_iter().collect(),
        groups: fields.groups,
        attributes,
        created_at: None,
        updated_at: None,
        last_login_at: Some(iso8601(now)),
        login_count: None,
        pending: Vec::new(),
    };
    Ok(LoginView {
        user,
        tokens: TokensView::from(tokens),
        session_id: sid,
    })
}

/// Undo a login the store could not record: log the new session out of Keycloak, with the time
/// the deadline leaves; failing that, leave it for the next sync.
async fn end_issued_session(
    services: &Services,
    tokens: &TokenSet,
    username: &str,
    sid: Option<&str>,
    started: i64,
) {
    let ended = match &tokens.refresh_token {
        Some(rt) => deadline::compensate(services.keycloak.logout(rt)).await,
        None => Err(KeycloakError::Protocol(
            "no refresh token to log out with".into(),
        )),
    };
    if let Err(e) = ended {
        tracing::warn!(error = %e, "could not end the Keycloak session of a failed login");
        crate::repair::note(
            services,
            started,
            failed_login_sessions(services, username, sid),
        )
        .await;
    }
}

pub async fn refresh(services: &Services, req: &RefreshRequest) -> Result<RefreshView, Error> {
    required("refreshToken", &req.refresh_token)?;
    let presented = token_hash(&req.refresh_token);
    let session = match refresh_token_subject(&req.refresh_token) {
        Some((user_id, sid)) => services.store.get_session(&user_id, &sid).await?,
        None => None,
    };
    let Some(session) = session.filter(|s| s.ended_at.is_none()) else {
        // No live session here: nothing to refresh. If the token is genuine, Keycloak ends its
        // session too (logout checks the token itself, so a forged one changes nothing).
        let client = app_client(services, None, &req.refresh_token);
        if let Err(e) = services
            .keycloak
            .logout_as(&req.refresh_token, client.as_deref())
            .await
        {
            tracing::debug!(error = %e, "logout of an unknown session's token");
        }
        return Err(invalid_grant("no live session for this token"));
    };
    if session.previous_refresh_token_sha256.as_deref() == Some(presented.as_str()) {
        return Err(reused(services, &session, &req.refresh_token).await);
    }
    let is_current = session.refresh_token_sha256 == presented;
    let tokens = match services
        .keycloak
        .refresh(&req.refresh_token, session.client_id.as_deref())
        .await
    {
        Ok(t) => t,
        Err(KeycloakError::InvalidGrant { description }) => {
            // Keycloak no longer honours the session; the token proves which session it is only
            // if it is the session's current one.
            if is_current {
                if let Err(e) = services
                    .store
                    .end_session(
                        &session.user_id,
                        &session.sid,
                        SessionEnd::EndedInKeycloak,
                        now_ms(),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "could not end the local session");
                }
            }
            return Err(Error::Keycloak(KeycloakError::InvalidGrant { description }));
        }
        Err(e) => return Err(e.into()),
    };
    let principal = verified(services, &tokens).await?;
    let sid = principal
        .session_id
        .clone()
        .or_else(|| tokens.session_state.clone())
        .unwrap_or_default();
    if principal.user_id != session.user_id || sid != session.sid {
        return Err(invalid_grant("the token does not belong to this session"));
    }
    if !is_current {
        // Keycloak accepted a genuine token older than the session's current one: reuse.
        return Err(reused(services, &session, &req.refresh_token).await);
    }
    let now = now_ms();
    let new_refresh = tokens.refresh_token.clone().unwrap_or_default();
    let expires_at = now / 1000 + tokens.refresh_expires_in as i64;
    match services
        .store
        .record_refresh(
            &session.user_id,
            &sid,
            &presented,
            &new_refresh,
            expires_at,
            now,
        )
        .await
    {
        Ok(_) => Ok(RefreshView {
            tokens: TokensView::from(&tokens),
            session_id: sid,
        }),
        // Another refresh used the same token first (or the session just ended): this one is
        // a replay, and the session ends.
        Err(StoreError::VersionConflict | StoreError::NotFound) => {
            Err(reused(services, &session, &req.refresh_token).await)
        }
        Err(e) => Err(e.into()),
    }
}

fn invalid_grant(reason: &str) -> Error {
    Error::Keycloak(KeycloakError::InvalidGrant {
        description: reason.into(),
    })
}

/// A replaced refresh token came back: end the session in Keycloak (so every token of it dies)
/// and here. The presented token is genuine (its hash is on record, or Keycloak just honoured it)
/// and Keycloak's logout accepts any genuine token of the session, so the session's own client
/// suffices: the refresh function holds no admin credentials.
async fn reused(services: &Services, session: &Session, presented: &str) -> Error {
    tracing::warn!(user_id = %session.user_id, sid = %session.sid, "refresh token reused: ending the session");
    let ended_in_keycloak = services
        .keycloak
        .logout_as(presented, session.client_id.as_deref())
        .await;
    if let Err(e) = services
        .store
        .end_session(
            &session.user_id,
            &session.sid,
            SessionEnd::RefreshTokenReused,
            now_ms(),
        )
        .await
    {
        tracing::error!(error = %e, "could not end the local session of a reused token");
    }
    if let Err(e) = ended_in_keycloak {
        tracing::error!(error = %e, "could not end the Keycloak session of a reused token");
        note_session_repair(services, session).await;
    }
    Error::RefreshTokenReused
}

/// The sessions a failed login may have left in Keycloak: of the login client, begun between
/// the request's start and its deadline plus `LATE_HANDLING` (`sid` alone when Keycloak named
/// it). Keycloak finishes a request whose caller gave up: a grant it handled late opens its
/// session after our deadline.
fn failed_login_sessions(services: &Services, username: &str, sid: Option<&str>) -> RepairKind {
    let left = deadline::remaining().unwrap_or(FLOW_WITHOUT_DEADLINE) + LATE_HANDLING;
    RepairKind::KeycloakSessions {
        username: username.to_lowercase(),
        user_id: None,
        sid: sid.map(str::to_owned),
        until: Some(now_ms() + left.as_millis() as i64),
        client_id: services
            .config
            .login_client
            .as_ref()
            .map(|c| c.client_id.clone()),
    }
}

/// How late after our deadline Keycloak may still handle a request we gave up on.
const LATE_HANDLING: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest a flow runs when its invocation has no deadline (the login function's timeout).
const FLOW_WITHOUT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

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

/// Always 204 for a token Keycloak refuses (already ended, forged): nothing to tell.
pub async fn logout(services: &Services, req: &RefreshRequest) -> Result<(), Error> {
    required("refreshToken", &req.refresh_token)?;
    // A refresh token this service issued and still holds as the session's current one is proof
    // enough: the session ends here first, and Keycloak's side follows — now, or through a
    // repair when Keycloak cannot be told (an outage, a lost answer). A retry is never needed.
    let subject = refresh_token_subject(&req.refresh_token);
    let held = match &subject {
        Some((user_id, sid)) => services.store.get_session(user_id, sid).await?.filter(|s| {
            s.ended_at.is_none() && s.refresh_token_sha256 == token_hash(&req.refresh_token)
        }),
        None => None,
    };
    if let Some(session) = &held {
        services
            .store
            .end_session(&session.user_id, &session.sid, SessionEnd::Logout, now_ms())
            .await?;
    }
    let client = app_client(services, held.as_ref(), &req.refresh_token);
    match services
        .keycloak
        .logout_as(&req.refresh_token, client.as_deref())
        .await
    {
        Ok(()) => {
            // Keycloak accepted the token, so its `sub` and `sid` are genuine.
            if let (None, Some((user_id, sid))) = (&held, &subject) {
                services
                    .store
                    .end_session(user_id, sid, SessionEnd::Logout, now_ms())
                    .await?;
            }
            Ok(())
        }
        Err(KeycloakError::InvalidGrant { .. }) => Ok(()),
        Err(e) => match &held {
            Some(session) => {
                tracing::warn!(error = %e, "logout: Keycloak's session is ended by the next sync run");
                note_session_repair(services, session).await;
                Ok(())
            }
            None => Err(e.into()),
        },
    }
}

/// The caller of a bearer route: a valid access token of a session this service opened and has
/// not ended, of a user who is neither deleted nor disabled here. Anything else is 401: the check
/// fails closed.
pub async fn authenticate(
    services: &Services,
    authorization: Option<&str>,
) -> Result<Principal, Error> {
    let principal = services.bearer.authenticate(authorization).await?;
    let sid = principal
        .session_id
        .as_deref()
        .ok_or(Error::Unauthenticated)?;
    let (session, user) = services
        .store
        .session_and_user(&principal.user_id, sid)
        .await?;
    let live_session = session.is_some_and(|s| s.ended_at.is_none());
    let usable_user = user.is_some_and(|u| u.status == UserStatus::Active);
    if live_session && usable_user {
        Ok(principal)
    } else {
        Err(Error::Unauthenticated)
    }
}

/// `POST /auth/token/validate`: whether a token would be accepted by a bearer route, and its claims.
#[derive(Clone, Debug, Serialize)]
pub struct Validation {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
}

pub async fn validate(services: &Services, req: &ValidateRequest) -> Result<Validation, Error> {
    required("token", &req.token)?;
    match authenticate(services, Some(&format!("Bearer {}", req.token.trim()))).await {
        Ok(p) => Ok(Validation {
            active: true,
            claims: Some(p.claims),
        }),
        Err(Error::Unauthenticated) => Ok(Validation {
            active: false,
            claims: None,
        }),
        Err(e) => Err(e),
    }
}

pub async fn me(services: &Services, principal: &Principal) -> Result<UserView, Error> {
    let user = services
        .store
        .get_user(&principal.user_id)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(UserView::from(&user))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub current: bool,
    pub active: bool,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<String>,
    pub refresh_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<SessionEnd>,
    /// The app's Keycloak client, for a session an app synced (`POST /auth/sync`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
}

/// `GET /auth/sessions`.
#[derive(Serialize)]
pub struct SessionList {
    pub items: Vec<SessionView>,
}

pub async fn my_sessions(services: &Services, principal: &Principal) -> Result<SessionList, Error> {
    let now_s = now_ms() / 1000;
    let items = services
        .store
        .list_sessions(&principal.user_id)
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: principal.session_id.as_deref() == Some(s.sid.as_str()),
            active: s.is_active(now_s),
            created_at: iso8601(s.created_at),
            refreshed_at: s.refreshed_at.map(iso8601),
            refresh_count: s.refresh_count,
            expires_at: iso8601(s.expires_at * 1000),
            ended_at: s.ended_at.map(iso8601),
            end_reason: s.end_reason,
            last_seen_at: s.last_seen_at.map(iso8601),
            client: s.client_id,
            ip: s.ip,
            user_agent: s.user_agent,
            id: s.sid,
        })
        .collect();
    Ok(SessionList { items })
}

/// End one of the caller's own sessions, here and in Keycloak. Keycloak is asked through its
/// account API with the caller's own token (it ends only sessions of the token's user), so the
/// session function holds no admin credentials. If Keycloak cannot be told now, the session is
/// still ended here (every bearer route and refresh refuses it from now on) and the next sync run
/// ends it in Keycloak.
pub async fn revoke(services: &Services, principal: &Principal, sid: &str) -> Result<(), Error> {
    let session = services
        .store
        .get_session(&principal.user_id, sid)
        .await?
        .ok_or(Error::NotFound)?;
    if session.ended_at.is_none() {
        services
            .store
            .end_session(&principal.user_id, sid, SessionEnd::Revoked, now_ms())
            .await?;
    }
    if let Err(e) = services
        .keycloak
        .end_own_session(&principal.token, sid)
        .await
    {
        tracing::warn!(error = %e, "Keycloak did not end a revoked session; left for the next sync");
        note_session_repair(services, &session).await;
    }
    Ok(())
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
