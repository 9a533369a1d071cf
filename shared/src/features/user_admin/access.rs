//! Who may act on whom: the local record of a user the admin API may see, and the target of an
//! action as Keycloak has it now (its roles read fresh; a read that fails refuses the action).

use crate::error::Error;
use crate::features::audit::Actor;
use crate::outside::keycloak::KeycloakError;
use crate::outside::store::User;
use crate::rules::policy::{Action, Target};
use crate::rules::request::keycloak_id;
use crate::services::Services;

/// The local record of a user the admin API may see: service accounts (known from Keycloak's
/// clients, never by a name) do not exist for it.
pub(super) async fn record(services: &Services, id: &str) -> Result<User, Error> {
    let (user, service_accounts) = tokio::join!(
        services.store.get_user(id),
        services.keycloak.service_account_users()
    );
    match user? {
        Some(u) if !service_accounts?.contains(&u.id) => Ok(u),
        _ => Err(Error::NotFound),
    }
}

/// The target of an action as Keycloak knows it now. Every input of the decision must be read:
/// a failed read refuses the action (an error never means "no roles"). Only a user Keycloak
/// confirms gone (`GET /users/{id}` 404 as well) holds no role there.
pub(super) async fn target(services: &Services, id: &str) -> Result<Target, Error> {
    let kc = &services.keycloak;
    let (rep, roles, service_accounts) = tokio::join!(
        kc.get_user(id),
        kc.user_effective_realm_roles(id),
        kc.service_account_users()
    );
    let gone = match &rep {
        Ok(_) => false,
        Err(KeycloakError::NotFound) => true,
        Err(e) => return Err(e.clone().into()),
    };
    let realm_roles = match roles {
        Ok(roles) => roles.into_iter().map(|r| r.name).collect(),
        Err(KeycloakError::NotFound) if gone => Vec::new(),
        Err(KeycloakError::NotFound) => {
            return Err(KeycloakError::Unavailable {
                reason: format!("the role mappings of user {id} were not found, the user was"),
            }
            .into())
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Target {
        id: id.to_owned(),
        realm_roles,
        service_account: service_accounts?.contains(id),
    })
}

/// The local record and the target, once `actions` are allowed on it.
pub(super) async fn authorized(
    services: &Services,
    actor: Actor<'_>,
    id: &str,
    actions: &[Action],
) -> Result<User, Error> {
    for action in actions {
        services.policy.allow_route(actor.principal, *action)?;
    }
    let id = keycloak_id(id)?;
    let local = record(services, id).await?;
    let target = target(services, id).await?;
    for action in actions {
        services.policy.allow(actor.principal, *action, &target)?;
    }
    Ok(local)
}
