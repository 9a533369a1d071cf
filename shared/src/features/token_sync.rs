//! Token login-sync (`POST /auth/sync`), for apps that run the standard flow themselves (a
//! browser app with keycloak-js, a mobile app): their access token, of a client listed in
//! `TOKEN_SYNC_CLIENT_IDS`, signs the user in here.
//!
//! The token is verified as every bearer token is (signature, issuer, expiry, audience), its
//! `azp` must be a listed client, and Keycloak is asked for its user (`userinfo`: the session is
//! still live there). The first call for a Keycloak session (`sid`) records the user and the
//! session in one transaction, as a password login does (login count, last login); later calls
//! for the same `sid` only mark the session seen. A session ended here never comes back.
//!
//! Such an app refreshes its tokens at Keycloak itself (keycloak-js's `updateToken`); the new
//! access tokens keep working here (same `sid`). It may hand its refresh token over
//! (`refreshToken`): then `POST /auth/refresh` and `/auth/logout` take it too, as that public
//! client. Its logout at Keycloak reaches this service through back-channel logout.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::clock::{now_ms, EpochSecs};
use crate::error::{Error, FieldError};
use crate::features::users::UserView;
use crate::outside::auth::Principal;
use crate::outside::keycloak::KeycloakError;
use crate::outside::store::{token_hash, LoginRecord, Session};
use crate::rules::request::Origin;
use crate::services::Services;

/// How long the record of an app's session is kept without news (Keycloak's default
/// `ssoSessionMaxLifespan`); each sync keeps it that much longer.
pub const APP_SESSION_TTL_S: i64 = 36_000;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncRequest {
    /// The session's refresh token, for apps that refresh and log out through this API.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncView {
    pub user: UserView,
    pub session_id: String,
    /// Whether this call recorded the session (a sign-in), or found it recorded before.
    pub new_session: bool,
}

pub async fn sync(
    services: &Services,
    authorization: Option<&str>,
    req: &SyncRequest,
    origin: &Origin,
) -> Result<SyncView, Error> {
    let (principal, azp, sid) = confirmed(services, authorization, req).await?;
    let now = now_ms();
    let user_id = principal.user_id.clone();
    if services.store.get_session(&user_id, &sid).await?.is_some() {
        return seen(services, &user_id, &sid, now).await;
    }
    let (fields, attributes) =
        crate::features::sessions::identity(&principal, &services.config.user_attributes);
    let record = LoginRecord {
        user_id: user_id.clone(),
        fields,
        attributes,
        at: now,
    };
    let session = Session {
        user_id: user_id.clone(),
        sid: sid.clone(),
        created_at: now,
        refreshed_at: None,
        refresh_count: 0,
        ip: origin.ip.clone(),
        user_agent: origin.user_agent.clone(),
        refresh_token_sha256: req
            .refresh_token
            .as_deref()
            .map(token_hash)
            .unwrap_or_default(),
        previous_refresh_token_sha256: None,
        expires_at: EpochSecs::of_ms(now).after(APP_SESSION_TTL_S),
        ended_at: None,
        end_reason: None,
        client_id: Some(azp),
        last_seen_at: Some(now),
    };
    match services
        .store
        .record_login_of_new_session(&record, &session)
        .await
    {
        Ok(()) => {}
        // Another sync of the same session recorded it first: one sign-in, seen twice.
        Err(crate::outside::store::StoreError::AlreadyExists) => {
            return seen(services, &user_id, &sid, now).await
        }
        Err(e) => return Err(e.into()),
    }
    let user = services
        .store
        .get_user(&user_id)
        .await?
        .ok_or_else(|| Error::internal("the user just recorded is not there"))?;
    Ok(SyncView {
        user: UserView::from(&user),
        session_id: sid,
        new_session: true,
    })
}

/// The caller's token proven: of a listed client, with a session Keycloak still holds for its
/// user, and the refresh token handed over (if any) of that same session. Answers the token's
/// principal, its client and its session.
async fn confirmed(
    services: &Services,
    authorization: Option<&str>,
    req: &SyncRequest,
) -> Result<(Principal, String, String), Error> {
    let allowed = &services.config.token_sync_clients;
    if allowed.is_empty() {
        return Err(Error::NotFound);
    }
    let principal = services.bearer.authenticate(authorization).await?;
    let azp = principal
        .claims
        .get("azp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !allowed.contains(&azp) {
        tracing::info!(client = %azp, "POST /auth/sync with a token of a client not listed");
        return Err(Error::ClientNotAllowed);
    }
    let sid = principal.session_id.clone().ok_or(Error::Unauthenticated)?;
    if let Some(rt) = &req.refresh_token {
        let same = crate::outside::keycloak::unverified_claims(rt).is_some_and(|c| {
            c.get("sid").and_then(Value::as_str) == Some(sid.as_str())
                && c.get("sub").and_then(Value::as_str) == Some(principal.user_id.as_str())
        });
        if !same {
            return Err(Error::Validation(vec![FieldError::new(
                "refreshToken",
                "is not a token of this session",
            )]));
        }
    }
    // Keycloak still holds the session, and the user may use it.
    let info = match services.keycloak.userinfo(&principal.token).await {
        Ok(info) => info,
        Err(KeycloakError::Unauthorized) => return Err(Error::Unauthenticated),
        Err(e) => return Err(e.into()),
    };
    if info.get("sub").and_then(Value::as_str) != Some(principal.user_id.as_str()) {
        return Err(Error::Unauthenticated);
    }
    Ok((principal, azp, sid))
}

/// A session on record already: marked seen, unless it has ended here (it never comes back).
async fn seen(services: &Services, user_id: &str, sid: &str, now: i64) -> Result<SyncView, Error> {
    if !services.store.touch_session(user_id, sid, now).await? {
        return Err(Error::Unauthenticated);
    }
    let user = services
        .store
        .get_user(user_id)
        .await?
        .ok_or(Error::Unauthenticated)?;
    Ok(SyncView {
        user: UserView::from(&user),
        session_id: sid.to_owned(),
        new_session: false,
    })
}
