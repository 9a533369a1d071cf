//! Ending a user's sessions here and in Keycloak (an admin's logout of the user, and the end of
//! sessions a disable, a delete or a password reset asks for), with a repair when Keycloak
//! cannot log the user out now.

use crate::base::clock::now_ms;
use crate::error::Error;
use crate::features::audit::{self, Actor, AuditAction};
use crate::outside::keycloak::KeycloakError;
use crate::outside::store::{RepairKind, SessionEnd};
use crate::rules::policy::Action;
use crate::services::Services;

use super::access::authorized;

/// End every session of a user: here first (this API refuses their tokens at once), then in
/// Keycloak. The change that asked for it is applied by then, so a Keycloak that cannot log the
/// user out now (after the client's own retries within the deadline) does not fail it: a repair
/// is left — the next sync run ends, in Keycloak, every session of the user begun before now that
/// the store has no live record of — and the user shows `pending: ["keycloak_logout"]` until
/// then. Returns since when the logout is pending, if it is.
///
/// A store that cannot end the sessions here does not stop Keycloak's logout: the user's
/// refresh tokens die with it. The error is `unfinished` where the caller changed Keycloak
/// before (`done` says what): repeating the request finishes the rest.
pub(super) async fn end_sessions(
    services: &Services,
    id: &str,
    reason: SessionEnd,
    done: Option<&'static str>,
) -> Result<Option<i64>, Error> {
    let now = now_ms();
    if let Err(e) = services.store.end_all_sessions(id, reason, now).await {
        tracing::error!(user_id = %id, error = %e,
            "the sessions here could not be ended; ending Keycloak's");
        if let Err(e) = crate::base::deadline::compensate(services.keycloak.logout_user(id)).await {
            tracing::warn!(user_id = %id, error = %e, "Keycloak's logout failed too");
        }
        return Err(match done {
            Some(done) => Error::Unfinished { done },
            None => e.into(),
        });
    }
    match services.keycloak.logout_user(id).await {
        Ok(()) | Err(KeycloakError::NotFound) => Ok(None),
        Err(e) => {
            tracing::warn!(user_id = %id, error = %e,
                "Keycloak's sessions of the user are ended by the next sync run");
            crate::features::repair::note(
                services,
                0,
                RepairKind::KeycloakSessions {
                    username: String::new(),
                    user_id: Some(id.to_owned()),
                    sid: None,
                    until: Some(now),
                    client_id: None,
                },
            )
            .await;
            let shown = services.store.mark_logout_pending(id, now);
            if let Err(e) = crate::base::deadline::compensate(shown).await {
                tracing::warn!(user_id = %id, error = %e, "could not mark the logout pending");
            }
            Ok(Some(now))
        }
    }
}

/// End every session of a user, in Keycloak and here.
pub async fn logout(services: &Services, actor: Actor<'_>, id: &str) -> Result<(), Error> {
    let result = async {
        let user = authorized(services, actor, id, &[Action::Logout]).await?;
        end_sessions(services, &user.id, SessionEnd::Revoked, None)
            .await
            .map(|_| ())
    }
    .await;
    audit::record(services, actor, AuditAction::UserLogout, id, &[], &result).await;
    result
}
