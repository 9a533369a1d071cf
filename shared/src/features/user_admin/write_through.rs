//! An edit written here and in Keycloak as one change: the record locked and written first, then
//! Keycloak; refused, undone here; unknown, read back, and held for the sync when it cannot tell.

use std::future::Future;

use crate::base::clock::now_ms;
use crate::error::Error;
use crate::outside::keycloak::{KeycloakError, UserRepresentation};
use crate::outside::store::{RepairKind, User, WriteLock};
use crate::services::Services;

/// How long an admin write may hold a user's record: longer than the function's timeout, so a
/// crashed invocation's lock expires soon after it.
pub(super) const WRITE_LOCK_MS: i64 = 30_000;

/// How an edit's Keycloak write ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Written {
    /// Keycloak applied it (answered, or read back showing it).
    Confirmed,
    /// Keycloak's answer was lost and a read did not show the change: the record stays locked
    /// for it, pending since then, until the next sync run reads Keycloak back.
    Unconfirmed { since: i64 },
}

/// What `write_through` does with a Keycloak write whose outcome is unknown (a timeout, a 5xx).
/// `S` tells from Keycloak's user as read back (`None`: Keycloak has no such user) whether the
/// write was applied.
pub(super) enum OnUnknown<S> {
    /// Undo it here, as a refusal.
    Undo,
    /// Read Keycloak back: shown, it is done; not shown, undo it here (the write is idempotent,
    /// so the caller's retry is safe, and a late landing reaches the store through the sync).
    Confirm(S),
    /// Read Keycloak back: shown, it is done; not shown (yet), the record stays locked for this
    /// write until the next sync run reads Keycloak back once more and records what it holds.
    ConfirmOrHold(S),
}

/// For a write with no read-back.
pub(super) const UNDO: OnUnknown<fn(Option<&UserRepresentation>) -> bool> = OnUnknown::Undo;

/// Write `new` over `old` here and in Keycloak, as one change: the record is locked and
/// written first (so a reader sees the edit in flight), then Keycloak. A write Keycloak refused
/// is undone here; one whose outcome is unknown as `on_unknown` says — never undone blindly
/// where Keycloak may have applied it or still will (no second edit is acknowledged, no late
/// write overwrites one).
pub(super) async fn write_through<F, Fut, S>(
    services: &Services,
    old: &User,
    new: &User,
    keycloak_write: F,
    on_unknown: OnUnknown<S>,
) -> Result<Written, Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), KeycloakError>>,
    S: FnOnce(Option<&UserRepresentation>) -> bool,
{
    let now = now_ms();
    let lock = WriteLock {
        owner: uuid::Uuid::new_v4().to_string(),
        until: now + WRITE_LOCK_MS,
    };
    services.store.begin_edit(old, new, &lock, now).await?;
    let refused = match (keycloak_write().await, on_unknown) {
        (Ok(()), _) => None,
        (Err(e @ KeycloakError::Unavailable { .. }), OnUnknown::Confirm(shows)) => {
            (!read_back_shows(services, &new.id, &e, shows).await).then_some(e)
        }
        (Err(e @ KeycloakError::Unavailable { .. }), OnUnknown::ConfirmOrHold(shows)) => {
            if read_back_shows(services, &new.id, &e, shows).await {
                None
            } else {
                return Ok(hold(services, &new.id, &lock, now).await);
            }
        }
        (Err(e), _) => Some(e),
    };
    if let Some(e) = refused {
        if let Err(undo) = services.store.undo_edit(new, old, &lock).await {
            tracing::error!(user_id = %old.id, error = %undo,
                "Keycloak refused a change and the local record could not be put back; the next sync repairs it");
        }
        return Err(e.into());
    }
    // Past the point of no return: finishing may use the margin kept for undoing.
    let finished = crate::base::deadline::compensate(services.store.finish_edit(&new.id, &lock));
    if let Err(e) = finished.await {
        // Keycloak and the record agree; only the lock lingers until it expires.
        tracing::warn!(user_id = %new.id, error = %e, "could not release the write lock");
    }
    Ok(Written::Confirmed)
}

/// How long a record stays locked for an unconfirmed edit at most (the repair settles it at the
/// next sync run after `repair::EDIT_SETTLE_MS`).
pub(super) const UNCONFIRMED_LOCK_MS: i64 = 15 * 60 * 1000;

/// Whether Keycloak, read back now (in the compensation margin), shows a write it did not
/// confirm. A read that fails shows nothing.
pub(super) async fn read_back_shows<S>(
    services: &Services,
    id: &str,
    cause: &KeycloakError,
    shows: S,
) -> bool
where
    S: FnOnce(Option<&UserRepresentation>) -> bool,
{
    tracing::warn!(user_id = %id, error = %cause, "Keycloak did not confirm a write; reading it back");
    match crate::base::deadline::compensate(services.keycloak.get_user(id)).await {
        Ok(rep) => shows(Some(&rep)),
        Err(KeycloakError::NotFound) => shows(None),
        Err(_) => false,
    }
}

/// Keep the record locked for an edit Keycloak did not confirm, and leave the repair that
/// settles it.
pub(super) async fn hold(services: &Services, id: &str, lock: &WriteLock, since: i64) -> Written {
    let held = services
        .store
        .hold_edit(id, lock, since + UNCONFIRMED_LOCK_MS, since);
    if let Err(e) = crate::base::deadline::compensate(held).await {
        // The record keeps the edit and its short lock; the sync settles it from Keycloak.
        tracing::error!(user_id = %id, error = %e, "could not hold the unconfirmed edit's lock");
    }
    crate::features::repair::note(
        services,
        since,
        RepairKind::KeycloakEdit {
            user_id: id.to_owned(),
            owner: lock.owner.clone(),
        },
    )
    .await;
    Written::Unconfirmed { since }
}
