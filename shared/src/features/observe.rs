//! Keycloak's view of one user, as the store keeps it: the Keycloak-owned fields (roles without
//! the technical ones, group paths) and the kept business attributes. Read by the syncs, the
//! per-user sync and the repairs.

use std::collections::BTreeSet;

use crate::outside::keycloak::{KeycloakClient, KeycloakError, UserRepresentation};
use crate::outside::store::KeycloakFields;
use crate::rules::profile::{attributes_of_user, Attributes};

/// Realm roles every user has for technical reasons; not worth storing.
pub fn is_technical_role(role: &str) -> bool {
    role.starts_with("default-roles-") || role == "offline_access" || role == "uma_authorization"
}

/// The stored shape of a representation, with its memberships when known.
pub fn fields_of(
    rep: &UserRepresentation,
    membership: Option<&(BTreeSet<String>, Vec<String>)>,
    attribute_names: &[String],
) -> (KeycloakFields, Attributes) {
    let (roles, groups) = membership.cloned().unwrap_or_default();
    let fields = KeycloakFields {
        username: rep.username.clone(),
        email: rep.email.clone(),
        first_name: rep.first_name.clone(),
        last_name: rep.last_name.clone(),
        enabled: rep.enabled,
        email_verified: rep.email_verified,
        roles: roles.into_iter().collect(),
        groups,
    }
    .normalized();
    (fields, attributes_of_user(attribute_names, rep))
}

/// One user as Keycloak states it, read user by user (effective roles, group paths): for the
/// incremental sync and per-user sync, where per-role reads would cost more than they save.
pub async fn observe_user(
    kc: &KeycloakClient,
    rep: &UserRepresentation,
    attribute_names: &[String],
) -> Result<(KeycloakFields, Attributes), KeycloakError> {
    let roles = kc
        .user_effective_realm_roles(&rep.id)
        .await?
        .into_iter()
        .map(|r| r.name)
        .filter(|r| !is_technical_role(r))
        .collect();
    let groups = kc
        .user_groups(&rep.id)
        .await?
        .into_iter()
        .map(|g| g.path)
        .collect();
    Ok(fields_of(rep, Some(&(roles, groups)), attribute_names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technical_roles_are_recognised() {
        assert!(is_technical_role("default-roles-demo"));
        assert!(is_technical_role("offline_access"));
        assert!(!is_technical_role("admin"));
    }
}
