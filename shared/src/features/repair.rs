//! Finishing what a flow could not undo before its deadline (`store::repairs`): a registration
//! answered as failed must leave no Keycloak user without its local record, and a login answered
//! as failed no Keycloak session the store does not know. Every sync run does this first.

use crate::base::clock::now_ms;
use crate::features::observe::fields_of;
use crate::outside::keycloak::KeycloakError;
use crate::outside::store::{Repair, RepairKind, WriteLock};
use crate::services::Services;

/// How long after its flow a repair keeps looking: a request Keycloak received late lands well
/// within this, and after it nothing more can appear.
const WATCH_MS: i64 = 15 * 60 * 1000;
/// Clock skew tolerated between this service and Keycloak.
const SKEW_MS: i64 = 5_000;

/// What a round of repairs did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Repaired {
    /// Keycloak users and sessions removed.
    pub removed: u64,
    /// Repairs still watching for a late arrival, or that failed and are retried next run.
    pub open: u64,
}

/// Write down what could not be undone, for the next sync run; the log line is the record of
/// last resort when the store cannot be reached either.
pub async fn note(services: &Services, since: i64, kind: RepairKind) {
    if let Err(e) =
        crate::base::deadline::compensate(services.store.put_repair(since, kind.clone())).await
    {
        tracing::error!(error = %e, repair = ?kind, "could not record a repair; fix it by hand");
    }
}

pub async fn run(services: &Services) -> Repaired {
    let mut done = Repaired::default();
    let repairs = match services.store.repairs().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the repairs; next run");
            return done;
        }
    };
    for repair in repairs {
        match apply(services, &repair).await {
            Ok(removed) => {
                done.removed += removed;
                let watching = now_ms() - repair.since < WATCH_MS;
                if watching && removed == 0 {
                    done.open += 1;
                } else if let Err(e) = close(services, &repair).await {
                    tracing::warn!(error = %e, "could not close a repair");
                }
            }
            Err(e) => {
                done.open += 1;
                tracing::warn!(error = %e, repair = ?repair.kind, "repair failed; next run");
            }
        }
    }
    done
}

/// A finished repair goes, and with it what the user showed as pending.
async fn close(
    services: &Services,
    repair: &Repair,
) -> Result<(), crate::outside::store::StoreError> {
    if let RepairKind::KeycloakSessions {
        user_id: Some(id),
        until: Some(until),
        ..
    } = &repair.kind
    {
        services.store.clear_logout_pending(id, *until).await?;
    }
    services.store.delete_repair(&repair.id).await
}

/// How long after an unconfirmed edit began Keycloak is read back: a write Keycloak received
/// late (the client gives up after 10 s and retries once) has landed by then.
pub const EDIT_SETTLE_MS: i64 = 60_000;

/// Remove what the repair is about, if it is there now; how many things were removed (or
/// settled).
async fn apply(services: &Services, repair: &Repair) -> Result<u64, KeycloakError> {
    let kc = &services.keycloak;
    if let RepairKind::KeycloakEdit { user_id, owner } = &repair.kind {
        return settle_edit(services, repair.since, user_id, owner).await;
    }
    let user_id = match &repair.kind {
        RepairKind::KeycloakUser {
            user_id: Some(id), ..
        }
        | RepairKind::KeycloakSessions {
            user_id: Some(id), ..
        } => Some(id.clone()),
        RepairKind::KeycloakUser { username, .. }
        | RepairKind::KeycloakSessions { username, .. } => {
            kc.find_user_by_username(username).await?.map(|u| u.id)
        }
        RepairKind::KeycloakEdit { user_id, .. } => Some(user_id.clone()),
    };
    let Some(user_id) = user_id else {
        return Ok(0);
    };
    match &repair.kind {
        RepairKind::KeycloakUser { .. } => remove_user(services, repair, &user_id).await,
        RepairKind::KeycloakSessions {
            sid,
            until,
            client_id,
            ..
        } => end_sessions(services, repair, &user_id, sid, until, client_id).await,
        RepairKind::KeycloakEdit { .. } => Ok(0),
    }
}

/// A registration's Keycloak user, removed if that flow created it and nothing here knows it.
async fn remove_user(
    services: &Services,
    repair: &Repair,
    user_id: &str,
) -> Result<u64, KeycloakError> {
    let kc = &services.keycloak;
    let user = match kc.get_user(user_id).await {
        Ok(u) => u,
        Err(KeycloakError::NotFound) => return Ok(0),
        Err(e) => return Err(e),
    };
    let created_by_the_flow = user.created_timestamp >= repair.since - SKEW_MS;
    if !created_by_the_flow {
        return Ok(0);
    }
    let unreadable = |e: crate::outside::store::StoreError| KeycloakError::Unavailable {
        reason: e.to_string(),
    };
    // A registration of the name in flight may have made this user and not recorded it yet. Read
    // before the record: one that has ended wrote its record first, so one of the two shows it.
    if services
        .store
        .is_registering(&user.username, now_ms(), None)
        .await
        .map_err(unreadable)?
    {
        return Err(KeycloakError::Unavailable {
            reason: "a registration of this username is in flight; looked at again next run".into(),
        });
    }
    let known_here = services
        .store
        .get_user(user_id)
        .await
        .map_err(unreadable)?
        .is_some();
    if known_here {
        return Ok(0);
    }
    tracing::warn!(%user_id, "repair: deleting a Keycloak user a failed registration left");
    match kc.delete_user(user_id).await {
        Ok(()) | Err(KeycloakError::NotFound) => Ok(1),
        Err(e) => Err(e),
    }
}

/// The Keycloak sessions a flow left (of its client, in its window, or the one it names) that
/// no live record here knows, ended.
async fn end_sessions(
    services: &Services,
    repair: &Repair,
    user_id: &str,
    sid: &Option<String>,
    until: &Option<i64>,
    client_id: &Option<String>,
) -> Result<u64, KeycloakError> {
    let kc = &services.keycloak;
    let mut removed = 0;
    for session in kc.user_sessions(user_id).await? {
        let from_the_flow = session.start >= repair.since - SKEW_MS
            && until.is_none_or(|u| session.start <= u + SKEW_MS)
            && client_id.as_ref().is_none_or(|c| {
                !session.clients.is_empty() && session.clients.values().all(|v| v == c)
            })
            && sid.as_ref().is_none_or(|s| *s == session.id);
        let known_here = services
            .store
            .get_session(user_id, &session.id)
            .await
            .map_err(|e| KeycloakError::Unavailable {
                reason: e.to_string(),
            })?
            .is_some_and(|s| s.ended_at.is_none());
        if from_the_flow && !known_here {
            tracing::warn!(%user_id, "repair: ending a Keycloak session unknown here");
            match kc.delete_session(&session.id).await {
                Ok(()) | Err(KeycloakError::NotFound) => removed += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Read Keycloak back for an edit it did not confirm, once the write could have landed, and
/// record what it holds: the edit is then applied or not, and the record unlocked. A user gone
/// from Keycloak is unlocked as it is; the sync deactivates them.
async fn settle_edit(
    services: &Services,
    since: i64,
    user_id: &str,
    owner: &str,
) -> Result<u64, KeycloakError> {
    if now_ms() - since < EDIT_SETTLE_MS {
        return Ok(0);
    }
    let unavailable = |e: crate::outside::store::StoreError| KeycloakError::Unavailable {
        reason: e.to_string(),
    };
    let lock = WriteLock {
        owner: owner.to_owned(),
        until: 0,
    };
    let names = &services.config.user_attributes;
    let settled = match services.keycloak.get_user(user_id).await {
        Ok(rep) => {
            let stored = services
                .store
                .get_user(user_id)
                .await
                .map_err(unavailable)?;
            let membership =
                stored.map(|u| (u.keycloak.roles.into_iter().collect(), u.keycloak.groups));
            let (fields, attributes) = fields_of(&rep, membership.as_ref(), names);
            services
                .store
                .settle_edit(user_id, &lock, &fields, &attributes, names, now_ms())
                .await
        }
        Err(KeycloakError::NotFound) => services.store.finish_edit(user_id, &lock).await,
        Err(e) => return Err(e),
    };
    match settled {
        // Settled, or someone else's lock by now (ours expired): nothing left to do either way.
        Ok(()) | Err(crate::outside::store::StoreError::Locked) => Ok(1),
        Err(e) => Err(unavailable(e)),
    }
}
