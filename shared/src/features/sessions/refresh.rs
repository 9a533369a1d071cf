//! Refresh, on proof: the presented token is the session's current one (a replaced one is
//! reuse, and the session ends), and the answer rotates the hash kept here.

use crate::base::clock::{now_ms, EpochSecs};
use crate::error::Error;
use crate::outside::keycloak::KeycloakError;
use crate::outside::store::{token_hash, Session, SessionEnd, StoreError};
use crate::services::Services;

use super::tokens::{
    app_client, invalid_grant, note_session_repair, refresh_token_subject, required, verified,
};
use super::views::{RefreshRequest, RefreshView, TokensView};

pub async fn refresh(services: &Services, req: &RefreshRequest) -> Result<RefreshView, Error> {
    required("refreshToken", &req.refresh_token)?;
    let presented = token_hash(&req.refresh_token);
    let session = match refresh_token_subject(&req.refresh_token) {
        Some((user_id, sid)) => services.store.get_session(&user_id, &sid).await?,
        None => None,
    };
    let Some(session) = session.filter(|s| s.ended_at.is_none()) else {
        return Err(no_live_session(services, &req.refresh_token).await);
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
                ended_in_keycloak(services, &session).await;
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
    let expires_at = EpochSecs::of_ms(now).after(tokens.refresh_expires_in as i64);
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

/// No live session here: nothing to refresh. If the token is genuine, Keycloak ends its session
/// too (logout checks the token itself, so a forged one changes nothing).
async fn no_live_session(services: &Services, token: &str) -> Error {
    let client = app_client(services, None, token);
    if let Err(e) = services.keycloak.logout_as(token, client.as_deref()).await {
        tracing::debug!(error = %e, "logout of an unknown session's token");
    }
    invalid_grant("no live session for this token")
}

/// The session Keycloak no longer honours, ended here too.
async fn ended_in_keycloak(services: &Services, session: &Session) {
    let ended = services.store.end_session(
        &session.user_id,
        &session.sid,
        SessionEnd::EndedInKeycloak,
        now_ms(),
    );
    if let Err(e) = ended.await {
        tracing::warn!(error = %e, "could not end the local session");
    }
}
