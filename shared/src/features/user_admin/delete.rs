//! `DELETE /admin/users/{id}`: a soft delete (disabled and logged out in Keycloak, the record
//! kept as `deleted`) or a hard one (the Keycloak user deleted, the record erased to a
//! tombstone), finished by a repeat when the store failed after Keycloak changed.

use crate::base::clock::now_ms;
use crate::error::Error;
use crate::features::audit::{self, Actor, AuditAction};
use crate::outside::keycloak::{KeycloakError, UserRepresentation, UserUpdate};
use crate::outside::store::{
    KeycloakFields, SessionEnd, StoreError, User, UserStatus, DELETED_BY_ADMIN,
};
use crate::rules::policy::Action;
use crate::services::Services;

use super::access::{authorized, record};
use super::sessions::end_sessions;
use super::write_through::{write_through, OnUnknown};

/// How often a delete re-reads a record that a login or sync changed meanwhile.
pub(super) const DELETE_ATTEMPTS: usize = 3;

/// `?hard=`: absent or `false` for a soft delete, `true` for a hard one; anything else names
/// neither, and is refused rather than read as the softer one.
pub fn hard_delete(raw: Option<&str>) -> Result<bool, Error> {
    match raw {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Error::field("hard", "must be true or false")),
    }
}

/// Soft delete (Keycloak user disabled and logged out, the local record kept as `deleted`), or
/// with `hard` the Keycloak user deleted and the local record erased down to a tombstone that
/// says who deleted it and when.
pub async fn delete(
    services: &Services,
    actor: Actor<'_>,
    id: &str,
    hard: bool,
) -> Result<(), Error> {
    let result = async {
        let old = authorized(services, actor, id, &[Action::Delete]).await?;
        match delete_through(services, actor, old, hard).await? {
            Some(deleted) => finish(services, &deleted, hard).await,
            None => Ok(()),
        }
    }
    .await;
    let fields = if hard {
        vec!["hard".to_owned()]
    } else {
        Vec::new()
    };
    audit::record(
        services,
        actor,
        AuditAction::UserDelete,
        id,
        &fields,
        &result,
    )
    .await;
    result
}

/// The record as a delete leaves it: a tombstone (hard), or marked deleted by this admin.
fn deleted(old: &User, hard: bool, by: &str, now: i64) -> User {
    if hard {
        return old.erased(by, now);
    }
    User {
        status: UserStatus::Deleted,
        keycloak: KeycloakFields {
            enabled: false,
            ..old.keycloak.clone()
        },
        deleted_at: Some(now),
        deleted_reason: Some(DELETED_BY_ADMIN.into()),
        deleted_by: Some(by.to_owned()),
        updated_at: now,
        version: old.version + 1,
        ..old.clone()
    }
}

/// The delete written here and in Keycloak; answers the record it was written over, or `None`
/// when a soft delete finds the user deleted already.
async fn delete_through(
    services: &Services,
    actor: Actor<'_>,
    mut old: User,
    hard: bool,
) -> Result<Option<User>, Error> {
    let kc = &services.keycloak;
    // A hard delete left unfinished (its record erased, perhaps still locked): finish it.
    let attempts = if hard && old.is_tombstone() {
        match kc.delete_user(&old.id).await {
            Ok(()) | Err(KeycloakError::NotFound) => 0,
            Err(e) => return Err(e.into()),
        }
    } else {
        DELETE_ATTEMPTS
    };
    for attempt in 1..=attempts {
        if old.status == UserStatus::Deleted && !hard {
            return Ok(None);
        }
        let tombstone = deleted(&old, hard, &actor.principal.user_id, now_ms());
        let write = || async {
            let done = if hard {
                kc.delete_user(&old.id).await
            } else {
                let disable = UserUpdate {
                    enabled: Some(false),
                    ..Default::default()
                };
                kc.update_user(&old.id, &disable).await
            };
            match done {
                Ok(()) | Err(KeycloakError::NotFound) => Ok(()),
                Err(e) => Err(e),
            }
        };
        // Read back: a hard delete is done when Keycloak has no such user, a soft one when
        // it shows the user disabled.
        let shows = |rep: Option<&UserRepresentation>| match rep {
            None => hard,
            Some(rep) => !hard && !rep.enabled,
        };
        let on_unknown = OnUnknown::Confirm(shows);
        match write_through(services, &old, &tombstone, write, on_unknown).await {
            Ok(_) => break,
            // A login or a sync wrote meanwhile: read again and delete that version.
            Err(Error::Store(StoreError::VersionConflict)) if attempt < DELETE_ATTEMPTS => {
                old = record(services, &old.id).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(old))
}

/// After Keycloak changed: a hard delete erases the person from the whole table; a soft one
/// ends the user's sessions (here at once, in Keycloak now or through a repair).
async fn finish(services: &Services, old: &User, hard: bool) -> Result<(), Error> {
    if hard {
        let erased = services
            .store
            .erase_personal_data(&old.id, &old.keycloak.username);
        let erased = crate::base::deadline::compensate(erased)
            .await
            .map_err(|_| Error::Unfinished {
                done: "the user is deleted in Keycloak and erased to a tombstone here",
            })?;
        tracing::info!(user_id = %old.id, ?erased, "hard delete: personal data erased");
    } else {
        let ended = end_sessions(
            services,
            &old.id,
            SessionEnd::UserDeactivated,
            Some("the user is deleted: disabled in Keycloak, deleted here"),
        );
        crate::base::deadline::compensate(ended).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outside::store::{Attributes, KeycloakFields};

    fn user() -> User {
        let fields = KeycloakFields {
            username: "ada".into(),
            email: Some("ada@x.io".into()),
            first_name: Some("Ada".into()),
            enabled: true,
            ..Default::default()
        };
        let attributes: Attributes = [("team".to_owned(), "blue".to_owned())].into();
        User::new("u-1", &fields, &attributes, 1_000)
    }

    #[test]
    fn hard_is_true_or_false_and_anything_else_is_refused_rather_than_read_as_soft() {
        assert!(!hard_delete(None).unwrap());
        assert!(!hard_delete(Some("false")).unwrap());
        assert!(hard_delete(Some("true")).unwrap());
        for raw in ["1", "TRUE", "yes", ""] {
            assert!(hard_delete(Some(raw)).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn a_soft_delete_keeps_the_person_and_marks_the_record_deleted_by_the_admin() {
        let old = user();
        let d = deleted(&old, false, "admin-1", 9_000);
        assert_eq!(
            (d.status, d.keycloak.enabled, d.deleted_at, d.version),
            (UserStatus::Deleted, false, Some(9_000), old.version + 1)
        );
        assert_eq!(
            (d.deleted_by.as_deref(), d.deleted_reason.as_deref()),
            (Some("admin-1"), Some(DELETED_BY_ADMIN))
        );
        assert_eq!(
            (d.keycloak.username, d.keycloak.email),
            (old.keycloak.username, old.keycloak.email)
        );
    }

    #[test]
    fn a_hard_delete_leaves_a_tombstone_with_no_personal_data() {
        let d = deleted(&user(), true, "admin-1", 9_000);
        assert!(d.is_tombstone());
        assert_eq!((d.keycloak.email, d.keycloak.first_name), (None, None));
        assert!(d.attributes.is_empty());
        assert_eq!(d.deleted_by.as_deref(), Some("admin-1"));
    }
}
