//! `POST /admin/users/{id}/sync`: one user brought in step, from Keycloak or to it.

use serde::{Deserialize, Serialize};

use crate::base::clock::now_ms;
use crate::error::Error;
use crate::features::audit::{self, Actor, AuditAction};
use crate::features::users::UserView;
use crate::outside::keycloak::UserUpdate;
use crate::outside::store::{ApplyOutcome, StoreError, User, UserStatus};
use crate::rules::policy::Action;
use crate::services::Services;

use super::access::{authorized, record};
use super::write_through::{write_through, UNDO};

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
pub enum Direction {
    #[serde(rename = "from-keycloak")]
    FromKeycloak,
    #[serde(rename = "to-keycloak")]
    ToKeycloak,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncUserRequest {
    pub direction: Direction,
}

#[derive(Clone, Debug, Serialize)]
pub struct SyncUserResult {
    pub user: UserView,
    pub changed: bool,
}

/// Bring one user in step, in the direction asked; answers the user and whether anything changed.
pub async fn sync_user(
    services: &Services,
    actor: Actor<'_>,
    id: &str,
    direction: Direction,
) -> Result<SyncUserResult, Error> {
    let (action, name) = match direction {
        Direction::FromKeycloak => (Action::SyncFromKeycloak, "from-keycloak"),
        Direction::ToKeycloak => (Action::SyncToKeycloak, "to-keycloak"),
    };
    let result = async {
        // No ETag here: a record that moved between our read and our write (a webhook or a
        // sync applied Keycloak's change meanwhile) is read again, not refused.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let local = authorized(services, actor, id, &[action]).await?;
            let kc_user = services.keycloak.get_user(&local.id).await?;
            let changed = match direction {
                Direction::FromKeycloak => from_keycloak(services, local, &kc_user).await,
                Direction::ToKeycloak => to_keycloak(services, &local, &kc_user).await,
            };
            let changed = match changed {
                Err(Error::PreconditionFailed | Error::Store(StoreError::VersionConflict))
                    if attempts < 3 =>
                {
                    continue
                }
                other => other?,
            };
            let user = record(services, &kc_user.id).await?;
            return Ok(SyncUserResult {
                user: UserView::from(&user),
                changed,
            });
        }
    }
    .await;
    audit::record(
        services,
        actor,
        AuditAction::UserSync,
        id,
        &[name.to_owned()],
        &result,
    )
    .await;
    result
}

/// Keycloak's identity fields and attributes over the local record.
pub(super) async fn from_keycloak(
    services: &Services,
    local: User,
    kc_user: &crate::outside::keycloak::UserRepresentation,
) -> Result<bool, Error> {
    let (fields, attributes) = crate::features::observe::observe_user(
        &services.keycloak,
        kc_user,
        &services.config.user_attributes,
    )
    .await?;
    let now = now_ms();
    if local.status == UserStatus::Deleted {
        // The sync's rules decide whether a deleted record comes back.
        let outcome = services
            .store
            .apply_keycloak_fields(&local.id, &fields, &attributes, now, now)
            .await?;
        return Ok(matches!(
            outcome,
            ApplyOutcome::Created | ApplyOutcome::Updated | ApplyOutcome::Reactivated
        ));
    }
    let fresh = User::new(&local.id, &fields, &attributes, now);
    let new = User {
        created_at: local.created_at,
        last_login_at: local.last_login_at,
        login_count: local.login_count,
        last_synced_at: Some(now),
        registered_at: local.registered_at,
        version: local.version + 1,
        ..fresh
    };
    if new.keycloak.clone() == local.keycloak.clone() && new.attributes == local.attributes {
        return Ok(false);
    }
    write_through(services, &local, &new, || async { Ok(()) }, UNDO).await?;
    Ok(true)
}

/// The local record's Keycloak-owned fields and attributes over Keycloak's.
pub(super) async fn to_keycloak(
    services: &Services,
    local: &User,
    kc_user: &crate::outside::keycloak::UserRepresentation,
) -> Result<bool, Error> {
    let mut update = UserUpdate::default();
    if local.keycloak.email != kc_user.email {
        update.email = local.keycloak.email.clone();
    }
    if local.keycloak.first_name != kc_user.first_name {
        update.first_name = local.keycloak.first_name.clone();
    }
    if local.keycloak.last_name != kc_user.last_name {
        update.last_name = local.keycloak.last_name.clone();
    }
    if local.keycloak.enabled != kc_user.enabled && local.status != UserStatus::Deleted {
        update.enabled = Some(local.keycloak.enabled);
    }
    for name in &services.config.user_attributes {
        let want = local.attributes.get(name).cloned();
        if want.as_deref() != kc_user.attribute(name) {
            update
                .attributes
                .insert(name.clone(), want.map(|v| vec![v]));
        }
    }
    if update.is_empty() {
        return Ok(false);
    }
    // Lock the record (same version) so no admin edit interleaves with this write.
    let write = || async { services.keycloak.update_user(&local.id, &update).await };
    write_through(services, local, local, write, UNDO).await?;
    Ok(true)
}
