//! `POST /admin/users/{id}/password`: a password set in Keycloak, and every session ended.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::features::audit::{self, Actor, AuditAction};
use crate::outside::store::SessionEnd;
use crate::rules::policy::Action;
use crate::rules::profile;
use crate::services::Services;

use super::access::authorized;
use super::sessions::end_sessions;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordRequest {
    pub password: String,
    /// (A flag left `false` is not named in the audit record, as it was not given.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
    /// Keep the user's sessions (by default a new password signs every session out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
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
    let fields = audit::field_names(req);
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
