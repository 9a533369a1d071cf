//! Admin user management with write-through to Keycloak, consistent on every path:
//! - a PATCH first reserves the local record with a conditional version bump (a concurrent PATCH
//!   with the same ETag gets 412 before touching Keycloak), then writes Keycloak by GET → merge →
//!   PUT; if Keycloak refuses, the local record is put back exactly as it was (version included);
//! - a delete disables and logs out the Keycloak user first (so the user cannot sign in), then
//!   marks the local record deleted and ends its sessions.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, FieldError};
use crate::keycloak::{KeycloakError, UserUpdate};
use crate::services::Services;
use crate::store::{
    now_ms, ApplyOutcome, BusinessAttributes, ListQuery, SessionEnd, User, UserStatus,
};
use crate::users::{self, BusinessInput, NewAccount, RegisterRequest, UserView};

/// `"<version>"`, the ETag of a user record.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The version an `If-Match` names; `None` when the header is absent.
pub fn if_match(header: Option<&str>) -> Result<Option<u64>, Error> {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let v = h.trim_start_matches("W/").trim_matches('"');
    v.parse().map(Some).map_err(|_| Error::PreconditionFailed)
}

pub struct ListParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub q: Option<String>,
    pub status: Option<String>,
}

pub async fn list(services: &Services, p: ListParams) -> Result<Value, Error> {
    let limit = match p.limit.as_deref() {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=200).contains(l))
            .ok_or_else(|| Error::field("limit", "must be a whole number from 1 to 200"))?,
    };
    let status = match p.status.as_deref() {
        None | Some("") => None,
        Some("active") => Some(UserStatus::Active),
        Some("disabled") => Some(UserStatus::Disabled),
        Some("deleted") => Some(UserStatus::Deleted),
        Some("pending") => Some(UserStatus::Pending),
        Some(_) => {
            return Err(Error::field(
                "status",
                "must be active, disabled, deleted or pending",
            ))
        }
    };
    let page = services
        .store
        .list_users(&ListQuery {
            limit,
            cursor: p.cursor.filter(|c| !c.is_empty()),
            prefix: p.q,
            status,
        })
        .await?;
    let items: Vec<UserView> = page.items.iter().map(UserView::from).collect();
    Ok(json!({"items": items, "nextCursor": page.next_cursor}))
}

pub async fn get(services: &Services, id: &str) -> Result<User, Error> {
    services.store.get_user(id).await?.ok_or(Error::NotFound)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateUserRequest {
    pub username: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub temporary_password: Option<bool>,
    #[serde(default)]
    pub attributes: Option<BusinessInput>,
}

pub async fn create(services: &Services, req: CreateUserRequest) -> Result<Value, Error> {
    let as_registration = RegisterRequest {
        username: req.username,
        email: req.email,
        password: req.password.clone(),
        first_name: req.first_name,
        last_name: req.last_name,
        attributes: req.attributes,
    };
    let account = users::validate_new_account(&as_registration)?;
    let account = NewAccount {
        enabled: req.enabled.unwrap_or(true),
        temporary_password: req.temporary_password.unwrap_or(false),
        ..account
    };
    users::create_account(services, &req.password, account).await
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchUserRequest {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A business attribute's new value, or `null` to remove it.
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, Option<String>>>,
}

/// The record after the patch, and what Keycloak must be told.
fn apply_patch(old: &User, req: &PatchUserRequest, now: i64) -> Result<(User, UserUpdate), Error> {
    let mut errors: Vec<FieldError> = Vec::new();
    let mut new = old.clone();
    let mut kc = UserUpdate::default();
    if let Some(e) = &req.email {
        match crate::http::email(e) {
            Ok(e) if Some(&e) != old.email.as_ref() => {
                new.email = Some(e.clone());
                kc.email = Some(e);
            }
            Ok(_) => {}
            Err(err) => errors.push(err),
        }
    }
    for (field, value, slot, kc_slot) in [
        (
            "firstName",
            &req.first_name,
            &mut new.first_name,
            &mut kc.first_name,
        ),
        (
            "lastName",
            &req.last_name,
            &mut new.last_name,
            &mut kc.last_name,
        ),
    ] {
        if let Some(v) = value {
            match crate::http::person_name(field, v) {
                Ok(v) if !v.is_empty() && Some(&v) != slot.as_ref() => {
                    *slot = Some(v.clone());
                    *kc_slot = Some(v);
                }
                Ok(v) if v.is_empty() => errors.push(FieldError::new(field, "must not be empty")),
                Ok(_) => {}
                Err(err) => errors.push(err),
            }
        }
    }
    if let Some(enabled) = req.enabled {
        if enabled != old.enabled {
            new.enabled = enabled;
            new.status = if enabled {
                UserStatus::Active
            } else {
                UserStatus::Disabled
            };
            kc.enabled = Some(enabled);
        }
    }
    if let Some(attrs) = &req.attributes {
        let mut input = BusinessInput::default();
        for (name, value) in attrs {
            let slot = match name.as_str() {
                "organization" => &mut input.organization,
                "phone" => &mut input.phone,
                "department" => &mut input.department,
                "title" => &mut input.title,
                _ => {
                    errors.push(FieldError::new(
                        format!("attributes.{name}"),
                        "unknown attribute",
                    ));
                    continue;
                }
            };
            *slot = value.clone();
        }
        match input.validated() {
            Ok(valid) => {
                for name in attrs.keys() {
                    let value = valid.get(name).map(str::to_owned);
                    let current = old.business().get(name).map(str::to_owned);
                    if value != current {
                        match name.as_str() {
                            "organization" => new.organization = value.clone(),
                            "phone" => new.phone = value.clone(),
                            "department" => new.department = value.clone(),
                            _ => new.title = value.clone(),
                        }
                        kc.attributes.insert(name.clone(), value.map(|v| vec![v]));
                    }
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if !kc.is_empty() {
        new.version = old.version + 1;
        new.updated_at = now;
        new.kc_hash = new.keycloak_fields().content_hash();
        new.kc_observed_at = now;
    }
    Ok((new, kc))
}

pub async fn patch(
    services: &Services,
    id: &str,
    expected: Option<u64>,
    req: &PatchUserRequest,
) -> Result<User, Error> {
    let expected = expected.ok_or(Error::PreconditionRequired)?;
    let old = get(services, id).await?;
    if old.status == UserStatus::Deleted {
        return Err(Error::NotFound);
    }
    if old.version != expected {
        return Err(Error::PreconditionFailed);
    }
    let (new, kc_update) = apply_patch(&old, req, now_ms())?;
    if kc_update.is_empty() {
        return Ok(old);
    }
    services.store.replace_user(&new, expected).await?;
    if let Err(e) = services.keycloak.update_user(id, &kc_update).await {
        if let Err(undo) = services.store.replace_user(&old, new.version).await {
            tracing::error!(user_id = %id, error = %undo, "Keycloak refused a change and the local record could not be put back");
        }
        return Err(e.into());
    }
    if kc_update.enabled == Some(false) {
        end_everywhere(services, id).await?;
    }
    Ok(new)
}

/// End the user's sessions in Keycloak and here.
async fn end_everywhere(services: &Services, id: &str) -> Result<(), Error> {
    match services.keycloak.logout_user(id).await {
        Ok(()) | Err(KeycloakError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    services
        .store
        .end_all_sessions(id, SessionEnd::UserDeactivated, now_ms())
        .await?;
    Ok(())
}

/// Soft delete (Keycloak user disabled and logged out), or with `hard` the Keycloak user deleted;
/// either way the local record stays as a tombstone.
pub async fn delete(services: &Services, id: &str, hard: bool) -> Result<(), Error> {
    let old = get(services, id).await?;
    let kc = if hard {
        services.keycloak.delete_user(id).await
    } else {
        services
            .keycloak
            .update_user(
                id,
                &UserUpdate {
                    enabled: Some(false),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ())
    };
    match kc {
        Ok(()) | Err(KeycloakError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    if !hard {
        end_everywhere(services, id).await?;
    }
    let mut current = old;
    loop {
        if current.status == UserStatus::Deleted {
            break;
        }
        let now = now_ms();
        let tombstone = User {
            status: UserStatus::Deleted,
            enabled: false,
            deleted_at: Some(now),
            deleted_reason: Some("admin".into()),
            updated_at: now,
            version: current.version + 1,
            ..current.clone()
        };
        match services
            .store
            .replace_user(&tombstone, current.version)
            .await
        {
            Ok(()) => break,
            // Someone wrote meanwhile (a login, a sync): read again and mark that version.
            Err(crate::store::StoreError::VersionConflict) => current = get(services, id).await?,
            Err(e) => return Err(e.into()),
        }
    }
    services
        .store
        .end_all_sessions(id, SessionEnd::UserDeactivated, now_ms())
        .await?;
    Ok(())
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    pub password: String,
    #[serde(default)]
    pub temporary: bool,
}

pub async fn set_password(
    services: &Services,
    id: &str,
    req: &PasswordRequest,
) -> Result<(), Error> {
    crate::http::password(&req.password).map_err(|e| Error::Validation(vec![e]))?;
    get(services, id).await?;
    services
        .keycloak
        .reset_password(id, &req.password, req.temporary)
        .await?;
    Ok(())
}

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

/// Bring one user in step, in the direction asked; answers the user and whether anything changed.
pub async fn sync_user(
    services: &Services,
    id: &str,
    direction: Direction,
) -> Result<Value, Error> {
    let kc_user = services.keycloak.get_user(id).await?;
    let changed = match direction {
        Direction::FromKeycloak => {
            let (fields, business) =
                crate::sync::observe_user(&services.keycloak, &kc_user).await?;
            let now = now_ms();
            let outcome = services
                .store
                .apply_keycloak_fields(id, &fields, &business, now, now)
                .await?;
            let mut changed = matches!(
                outcome,
                ApplyOutcome::Created | ApplyOutcome::Updated | ApplyOutcome::Reactivated
            );
            if outcome != ApplyOutcome::Created {
                let local = get(services, id).await?;
                let differs: std::collections::HashMap<String, Option<String>> =
                    BusinessAttributes::NAMES
                        .iter()
                        .filter(|n| local.business().get(n) != business.get(n))
                        .map(|n| ((*n).to_owned(), business.get(n).map(str::to_owned)))
                        .collect();
                if !differs.is_empty() {
                    services
                        .store
                        .update_business(id, &differs, local.version, now)
                        .await?;
                    changed = true;
                }
            }
            changed
        }
        Direction::ToKeycloak => {
            let local = get(services, id).await?;
            let mut update = UserUpdate::default();
            if local.email != kc_user.email {
                update.email = local.email.clone();
            }
            if local.first_name != kc_user.first_name {
                update.first_name = local.first_name.clone();
            }
            if local.last_name != kc_user.last_name {
                update.last_name = local.last_name.clone();
            }
            if local.enabled != kc_user.enabled && local.status != UserStatus::Deleted {
                update.enabled = Some(local.enabled);
            }
            for name in BusinessAttributes::NAMES {
                let want = local.business().get(name).map(str::to_owned);
                if want.as_deref() != kc_user.attribute(name) {
                    update
                        .attributes
                        .insert(name.to_owned(), want.map(|v| vec![v]));
                }
            }
            if update.is_empty() {
                false
            } else {
                services.keycloak.update_user(id, &update).await?;
                true
            }
        }
    };
    let user = get(services, id).await?;
    Ok(json!({"user": UserView::from(&user), "changed": changed}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeycloakFields;

    fn user() -> User {
        let fields = KeycloakFields {
            username: "a".into(),
            email: Some("a@x.io".into()),
            enabled: true,
            ..Default::default()
        };
        User::new(
            "1",
            &fields,
            &BusinessAttributes {
                title: Some("Dev".into()),
                ..Default::default()
            },
            5,
        )
    }

    #[test]
    fn if_match_reads_strong_weak_and_bare_etags() {
        assert_eq!(if_match(Some("\"3\"")).unwrap(), Some(3));
        assert_eq!(if_match(Some("W/\"3\"")).unwrap(), Some(3));
        assert_eq!(if_match(None).unwrap(), None);
        assert!(if_match(Some("\"abc\"")).is_err());
        assert_eq!(etag(7), "\"7\"");
    }

    #[test]
    fn a_patch_changes_only_what_it_names_and_bumps_the_version() {
        let old = user();
        let mut attrs = BTreeMap::new();
        attrs.insert("title".to_owned(), None);
        attrs.insert("department".to_owned(), Some("Ops".to_owned()));
        let req = PatchUserRequest {
            first_name: Some("Ann".into()),
            attributes: Some(attrs),
            ..Default::default()
        };
        let (new, kc) = apply_patch(&old, &req, 9).unwrap();
        assert_eq!(
            (
                new.first_name.as_deref(),
                new.title.as_deref(),
                new.department.as_deref()
            ),
            (Some("Ann"), None, Some("Ops"))
        );
        assert_eq!(new.version, old.version + 1);
        assert_eq!(kc.attributes.get("title"), Some(&None));
        assert!(kc.email.is_none());
    }

    #[test]
    fn a_patch_without_change_writes_nothing() {
        let old = user();
        let req = PatchUserRequest {
            email: Some("A@X.io".into()),
            ..Default::default()
        };
        let (new, kc) = apply_patch(&old, &req, 9).unwrap();
        assert!(kc.is_empty());
        assert_eq!(new, old);
    }

    #[test]
    fn unknown_attributes_and_bad_values_are_field_errors() {
        let mut attrs = BTreeMap::new();
        attrs.insert("shoeSize".to_owned(), Some("44".to_owned()));
        let req = PatchUserRequest {
            email: Some("nope".into()),
            attributes: Some(attrs),
            ..Default::default()
        };
        match apply_patch(&user(), &req, 9) {
            Err(Error::Validation(e)) => assert_eq!(e.len(), 2),
            other => panic!("{:?}", other.err()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bulk-sync control

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartSyncRequest {
    pub mode: crate::sync::Mode,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub force: bool,
}

/// Start a bulk-sync run by asynchronous invoke; answers its run id at once.
pub async fn start_sync(services: &Services, req: &StartSyncRequest) -> Result<String, Error> {
    let run_id = crate::store::SyncRun::new_id(now_ms());
    let payload =
        json!({"mode": req.mode, "dryRun": req.dry_run, "force": req.force, "runId": run_id});
    services
        .lambda
        .invoke()
        .function_name(&services.config.sync_function_name)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await
        .map_err(|e| {
            tracing::error!(error = %aws_sdk_lambda::error::DisplayErrorContext(&e), "could not start the bulk sync");
            Error::Unavailable { code: "sync_unavailable", detail: "the bulk-sync function could not be started".into() }
        })?;
    Ok(run_id)
}

pub async fn sync_run(services: &Services, run_id: &str) -> Result<crate::store::SyncRun, Error> {
    services.store.get_run(run_id).await?.ok_or(Error::NotFound)
}

/// Last run, last success, users synced and failure rate over 24 h, and the drift the last full
/// run found (users only in Keycloak, users only local).
pub async fn sync_status(services: &Services) -> Result<Value, Error> {
    let state = services.store.sync_state().await?;
    let runs = services.store.recent_runs(500).await?;
    let since = now_ms() - 24 * 3600 * 1000;
    let day: Vec<_> = runs
        .iter()
        .filter(|r| r.started_at >= since && r.status != "running")
        .collect();
    let counted = |r: &crate::store::SyncRun, k: &str| r.counts.get(k).copied().unwrap_or(0);
    let synced: u64 = day
        .iter()
        .map(|r| counted(r, "created") + counted(r, "updated") + counted(r, "reactivated"))
        .sum();
    let failed = day.iter().filter(|r| r.status == "failed").count();
    let last_full = runs
        .iter()
        .find(|r| r.mode.ends_with("full") && r.status != "running" && r.status != "skipped");
    let iso = |ms: Option<i64>| ms.map(crate::users::iso8601);
    Ok(json!({
        "lastRun": runs.first(),
        "lastSuccessAt": iso(state.last_success_at),
        "lastFullRunAt": iso(state.last_full_run_at),
        "eventCursor": iso(state.event_cursor_ms),
        "usersSyncedLast24h": synced,
        "runsLast24h": day.len(),
        "failureRateLast24h": if day.is_empty() { 0.0 } else { failed as f64 / day.len() as f64 },
        "usersOnlyInKeycloak": last_full.map(|r| counted(r, "only_in_keycloak")),
        "usersOnlyLocal": last_full.map(|r| counted(r, "only_local")),
        "asOfRunId": last_full.map(|r| r.run_id.clone()),
    }))
}
