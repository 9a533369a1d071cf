//! `POST /admin/users/{id}/password`: a password set in Keycloak, and every session ended.

use serde::Deserialize;

use crate::error::Error;
use crate::features::audit::{self, Actor, AuditAction};
use crate::outside::store::SessionEnd;
use crate::rules::policy::Action;
use crate::rules::profile;
use crate::services::Services;

use super::access::authorized;
use super::sessions::end_sessions;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordRequest {
    pub password: String,
    #[serde(default)]
    pub temporary: bool,
    /// Keep the user's sessions (by default a new password signs every session out).
    #[serde(default)]
    pub keep_sessions: bool,
}

pub async fn set_password(
    services: &Services,
    actor: Actor<'_>,
    id: &str,
    req: &PasswordRequest,
) -> Result<(), Error> {
    let result = async {
        let user = authorized(services, actor, id, &[Action::ResetPassword]).await?;
        profile::password(&req.password).map_err(|e| Error::Validation(vec![e]))?;
        services
            .keycloak
            .reset_password(&user.id, &req.password, req.temporary)
            .await?;
        if !req.keep_sessions {
            let done = Some("the password is set in Keycloak");
            end_sessions(services, &user.id, SessionEnd::PasswordReset, done).await?;
        }
        Ok(())
    }
    .await;
    let mut fields = vec!["password".to_owned()];
    if req.temporary {
        fields.push("temporary".into());
    }
    if req.keep_sessions {
        fields.push("keepSessions".into());
    }
    audit::record(
        services,
        actor,
        AuditAction::UserResetPassword,
        id,
        &fields,
        &result,
    )
    .await;
    result
}
