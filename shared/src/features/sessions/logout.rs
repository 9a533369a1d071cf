//! A user's own logout with their refresh token: ended here first, Keycloak follows.

use crate::base::clock::now_ms;
use crate::error::Error;
use crate::outside::keycloak::KeycloakError;
use crate::outside::store::{token_hash, SessionEnd};
use crate::services::Services;

use super::tokens::{app_client, note_session_repair, refresh_token_subject, required};
use super::views::RefreshRequest;

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
