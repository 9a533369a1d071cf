//! A user's view of themself and of their own sessions, and ending one of them.

use serde::Serialize;

use crate::base::clock::{iso8601, now_ms, EpochSecs};
use crate::error::Error;
use crate::features::users::UserView;
use crate::outside::auth::Principal;
use crate::outside::store::SessionEnd;
use crate::services::Services;

use super::tokens::note_session_repair;

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
    let now = EpochSecs::now();
    let items = services
        .store
        .list_sessions(&principal.user_id)
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: principal.session_id.as_deref() == Some(s.sid.as_str()),
            active: s.is_active(now),
            created_at: iso8601(s.created_at),
            refreshed_at: s.refreshed_at.map(iso8601),
            refresh_count: s.refresh_count,
            expires_at: iso8601(s.expires_at.as_ms()),
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
