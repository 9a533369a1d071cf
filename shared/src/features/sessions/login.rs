//! Signing in: the password grant, and what every sign-in records (the standard flow and the
//! password grant share it): the token verified, the user and the session in one transaction,
//! and the new Keycloak session ended again when they cannot be recorded.

use crate::base::clock::{iso8601, now_ms, EpochSecs};
use crate::base::deadline;
use crate::error::Error;
use crate::features::throttle;
use crate::features::users::UserView;
use crate::outside::keycloak::{KeycloakError, TokenSet};
use crate::outside::store::{token_hash, LoginRecord, RepairKind, Session};
use crate::rules::request::Origin;
use crate::services::Services;

use super::tokens::{identity, required, verified};
use super::views::{LoginRequest, LoginView, TokensView};

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
        expires_at: EpochSecs::of_ms(now)
            .after(tokens.refresh_expires_in.max(tokens.expires_in) as i64),
        ended_at: None,
        end_reason: None,
        client_id: None,
        last_seen_at: None,
    }
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
                crate::features::repair::note(
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
        status: crate::outside::store::UserStatus::Active,
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
        crate::features::repair::note(
            services,
            started,
            failed_login_sessions(services, username, sid),
        )
        .await;
    }
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
