//! Admin user management with write-through to Keycloak. Every mutation goes the same way:
//! the path id is checked; the policy decides from the target's roles as Keycloak has them now;
//! the local record is reserved under a write lock with a new version (other writers get
//! `409 write_in_progress`, a stale ETag `412`); Keycloak is written (GET → merge → PUT); then the
//! reservation is finished, or undone as a newer version if Keycloak refused. Every mutation,
//! allowed or not, leaves an audit record.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::audit::{self, Actor, AuditAction};
use crate::clock::now_ms;
use crate::error::Error;
use crate::keycloak::{KeycloakError, UserRepresentation, UserUpdate};
use crate::policy::{Action, Target};
use crate::profile::{self, AttributeRules, Editor};
use crate::request::keycloak_id;
use crate::services::Services;
use crate::store::{
    ApplyOutcome, ListQuery, RepairKind, SessionEnd, StoreError, User, UserStatus, WriteLock,
    DELETED_BY_ADMIN,
};
use crate::users::{self, RegisterRequest, UserView};

/// How long an admin write may hold a user's record: longer than the function's timeout, so a
/// crashed invocation's lock expires soon after it.
const WRITE_LOCK_MS: i64 = 30_000;
/// How often a delete re-reads a record that a login or sync changed meanwhile.
const DELETE_ATTEMPTS: usize = 3;

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

#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub q: Option<String>,
    pub status: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

pub async fn list(services: &Services, actor: Actor<'_>, p: ListParams) -> Result<UserPage, Error> {
    services.policy.allow_route(actor.principal, Action::Read)?;
    let limit = crate::request::limit(p.limit.as_deref())?;
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
    let service_accounts = services.keycloak.service_account_users().await?;
    Ok(UserPage {
        items: page
            .items
            .iter()
            .filter(|u| !service_accounts.contains(&u.id))
            .map(UserView::from)
            .collect(),
        next_cursor: page.next_cursor,
    })
}

/// The local record of a user the admin API may see: service accounts (known from Keycloak's
/// clients, never by a name) do not exist for it.
async fn record(services: &Services, id: &str) -> Result<User, Error> {
    let (user, service_accounts) = tokio::join!(
        services.store.get_user(id),
        services.keycloak.service_account_users()
    );
    match user? {
        Some(u) if !service_accounts?.contains(&u.id) => Ok(u),
        _ => Err(Error::NotFound),
    }
}

pub async fn get(services: &Services, actor: Actor<'_>, id: &str) -> Result<User, Error> {
    services.policy.allow_route(actor.principal, Action::Read)?;
    record(services, keycloak_id(id)?).await
}

/// The target of an action as Keycloak knows it now. Every input of the decision must be read:
/// a failed read refuses the action (an error never means "no roles"). Only a user Keycloak
/// confirms gone (`GET /users/{id}` 404 as well) holds no role there.
async fn target(services: &Services, id: &str) -> Result<Target, Error> {
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
async fn authorized(
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

/// How an edit's Keycloak write ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Written {
    /// Keycloak applied it (answered, or read back showing it).
    Confirmed,
    /// Keycloak's answer was lost and a read did not show the change: the record stays locked
    /// for it, pending since then, until the next sync run reads Keycloak back.
    Unconfirmed { since: i64 },
}

/// What `write_through` does with a Keycloak write whose outcome is unknown (a timeout, a 5xx).
/// `S` tells from Keycloak's user as read back (`None`: Keycloak has no such user) whether the
/// write was applied.
enum OnUnknown<S> {
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
const UNDO: OnUnknown<fn(Option<&UserRepresentation>) -> bool> = OnUnknown::Undo;

/// Write `new` over `old` here and in Keycloak, as one change: the record is locked and
/// written first (so a reader sees the edit in flight), then Keycloak. A write Keycloak refused
/// is undone here; one whose outcome is unknown as `on_unknown` says — never undone blindly
/// where Keycloak may have applied it or still will (no second edit is acknowledged, no late
/// write overwrites one).
async fn write_through<F, Fut, S>(
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
    let finished = crate::deadline::compensate(services.store.finish_edit(&new.id, &lock));
    if let Err(e) = finished.await {
        // Keycloak and the record agree; only the lock lingers until it expires.
        tracing::warn!(user_id = %new.id, error = %e, "could not release the write lock");
    }
    Ok(Written::Confirmed)
}

/// How long a record stays locked for an unconfirmed edit at most (the repair settles it at the
/// next sync run after `repair::EDIT_SETTLE_MS`).
const UNCONFIRMED_LOCK_MS: i64 = 15 * 60 * 1000;

/// Whether Keycloak, read back now (in the compensation margin), shows a write it did not
/// confirm. A read that fails shows nothing.
async fn read_back_shows<S>(services: &Services, id: &str, cause: &KeycloakError, shows: S) -> bool
where
    S: FnOnce(Option<&UserRepresentation>) -> bool,
{
    tracing::warn!(user_id = %id, error = %cause, "Keycloak did not confirm a write; reading it back");
    match crate::deadline::compensate(services.keycloak.get_user(id)).await {
        Ok(rep) => shows(Some(&rep)),
        Err(KeycloakError::NotFound) => shows(None),
        Err(_) => false,
    }
}

/// Keep the record locked for an edit Keycloak did not confirm, and leave the repair that
/// settles it.
async fn hold(services: &Services, id: &str, lock: &WriteLock, since: i64) -> Written {
    let held = services
        .store
        .hold_edit(id, lock, since + UNCONFIRMED_LOCK_MS, since);
    if let Err(e) = crate::deadline::compensate(held).await {
        // The record keeps the edit and its short lock; the sync settles it from Keycloak.
        tracing::error!(user_id = %id, error = %e, "could not hold the unconfirmed edit's lock");
    }
    crate::repair::note(
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
    pub attributes: BTreeMap<String, String>,
}

impl CreateUserRequest {
    fn field_names(&self) -> Vec<String> {
        let mut f: Vec<String> = ["username", "email", "password"].map(String::from).to_vec();
        for (name, set) in [
            ("firstName", self.first_name.is_some()),
            ("lastName", self.last_name.is_some()),
            ("enabled", self.enabled.is_some()),
            ("temporaryPassword", self.temporary_password.is_some()),
        ] {
            if set {
                f.push(name.into());
            }
        }
        f.extend(self.attributes.keys().map(|k| format!("attributes.{k}")));
        f
    }
}

pub async fn create(
    services: &Services,
    actor: Actor<'_>,
    req: CreateUserRequest,
) -> Result<UserView, Error> {
    let fields = req.field_names();
    let result = async {
        services
            .policy
            .allow_route(actor.principal, Action::Create)?;
        let as_registration = RegisterRequest {
            username: req.username,
            email: req.email,
            password: req.password.clone(),
            first_name: req.first_name,
            last_name: req.last_name,
            attributes: req.attributes,
        };
        let account =
            users::validate_new_account(services, &as_registration, Editor::Admin).await?;
        let account = users::NewAccount {
            enabled: req.enabled.unwrap_or(true),
            temporary_password: req.temporary_password.unwrap_or(false),
            ..account
        };
        users::create_account(services, &req.password, account, None).await
    }
    .await;
    let target = result.as_ref().map_or(audit::NEW_USER, |u| u.id.as_str());
    audit::record(
        services,
        actor,
        AuditAction::UserCreate,
        target,
        &fields,
        &result,
    )
    .await;
    result
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchUserRequest {
    #[serde(default)]
    pub email: Option<String>,
    /// Only an admin may mark an address verified.
    #[serde(default)]
    pub email_verified: Option<bool>,
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

impl PatchUserRequest {
    /// The names of the fields the patch sets (for the audit record).
    pub fn field_names(&self) -> Vec<String> {
        let mut f: Vec<String> = [
            ("email", self.email.is_some()),
            ("emailVerified", self.email_verified.is_some()),
            ("firstName", self.first_name.is_some()),
            ("lastName", self.last_name.is_some()),
            ("enabled", self.enabled.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| n.to_owned())
        .collect();
        f.extend(
            self.attributes
                .iter()
                .flat_map(|a| a.keys().map(|k| format!("attributes.{k}"))),
        );
        f
    }

    /// What the patch does, for the policy: disabling and vouching for an email are
    /// actions of their own.
    fn actions(&self) -> Vec<Action> {
        let mut actions = vec![Action::Update];
        if self.enabled == Some(false) {
            actions.push(Action::Disable);
        }
        if self.email_verified == Some(true) {
            actions.push(Action::VerifyEmail);
        }
        actions
    }
}

/// The record after the patch, and what Keycloak must be told. A changed email is unverified
/// unless the request vouches for it.
fn apply_patch(
    old: &User,
    req: &PatchUserRequest,
    rules: Option<&AttributeRules>,
    now: i64,
) -> Result<(User, UserUpdate), Error> {
    let mut errors = Vec::new();
    let mut new = old.clone();
    let mut kc = UserUpdate::default();
    if let Some(e) = &req.email {
        match profile::email(e) {
            Ok(e) if Some(&e) != old.email.as_ref() => {
                new.email = Some(e.clone());
                kc.email = Some(e);
                new.email_verified = false;
                kc.email_verified = Some(false);
            }
            Ok(_) => {}
            Err(err) => errors.push(err),
        }
    }
    if let Some(verified) = req.email_verified {
        if verified != new.email_verified || kc.email_verified.is_some() {
            new.email_verified = verified;
            kc.email_verified = Some(verified);
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
            match profile::person_name(field, v) {
                Ok(v) if v.is_empty() => {
                    errors.push(crate::FieldError::new(field, "must not be empty"))
                }
                Ok(v) if Some(&v) != slot.as_ref() => {
                    *slot = Some(v.clone());
                    *kc_slot = Some(v);
                }
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
    if let (Some(attrs), Some(rules)) = (&req.attributes, rules) {
        match rules.check(Editor::Admin, attrs) {
            Ok(valid) => {
                for (name, value) in valid {
                    if value.as_ref() != old.attributes.get(&name) {
                        match &value {
                            Some(v) => new.attributes.insert(name.clone(), v.clone()),
                            None => new.attributes.remove(&name),
                        };
                        kc.attributes.insert(name, value.map(|v| vec![v]));
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
    actor: Actor<'_>,
    id: &str,
    expected: Option<u64>,
    req: &PatchUserRequest,
) -> Result<User, Error> {
    let result = async {
        let actions = req.actions();
        let old = authorized(services, actor, id, &actions).await?;
        let expected = expected.ok_or(Error::PreconditionRequired)?;
        if old.status == UserStatus::Deleted {
            return Err(Error::NotFound);
        }
        if old.version != expected {
            return Err(Error::PreconditionFailed);
        }
        let rules = match req.attributes {
            Some(_) => Some(services.attribute_rules().await?),
            None => None,
        };
        let (new, kc_update) = apply_patch(&old, req, rules.as_deref(), now_ms())?;
        if kc_update.is_empty() {
            return Ok(old);
        }
        let written = write_through(
            services,
            &old,
            &new,
            || async { services.keycloak.update_user(&old.id, &kc_update).await },
            OnUnknown::ConfirmOrHold(|rep: Option<&UserRepresentation>| {
                rep.is_some_and(|rep| kc_update.shown_by(rep))
            }),
        )
        .await?;
        let mut new = new;
        match written {
            // Keycloak has disabled the user: from here on the change is done, whatever follows.
            Written::Confirmed if kc_update.enabled == Some(false) => {
                let ended = end_sessions(
                    services,
                    &old.id,
                    SessionEnd::UserDeactivated,
                    Some("the user is disabled in Keycloak"),
                );
                new.pending_keycloak_logout = crate::deadline::compensate(ended).await?;
            }
            Written::Confirmed => {}
            // Meanwhile the record holds the edit (a disabled record's sessions are refused).
            Written::Unconfirmed { since } => new.pending_keycloak_write = Some(since),
        }
        Ok(new)
    }
    .await;
    audit::record(
        services,
        actor,
        AuditAction::UserUpdate,
        id,
        &req.field_names(),
        &result,
    )
    .await;
    result
}

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
async fn end_sessions(
    services: &Services,
    id: &str,
    reason: SessionEnd,
    done: Option<&'static str>,
) -> Result<Option<i64>, Error> {
    let now = now_ms();
    if let Err(e) = services.store.end_all_sessions(id, reason, now).await {
        tracing::error!(user_id = %id, error = %e,
            "the sessions here could not be ended; ending Keycloak's");
        if let Err(e) = crate::deadline::compensate(services.keycloak.logout_user(id)).await {
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
            crate::repair::note(
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
            if let Err(e) = crate::deadline::compensate(shown).await {
                tracing::warn!(user_id = %id, error = %e, "could not mark the logout pending");
            }
            Ok(Some(now))
        }
    }
}

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
        let mut old = authorized(services, actor, id, &[Action::Delete]).await?;
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
                return Ok(());
            }
            let now = now_ms();
            let tombstone = if hard {
                old.erased(&actor.principal.user_id, now)
            } else {
                User {
                    status: UserStatus::Deleted,
                    enabled: false,
                    deleted_at: Some(now),
                    deleted_reason: Some(DELETED_BY_ADMIN.into()),
                    deleted_by: Some(actor.principal.user_id.clone()),
                    updated_at: now,
                    version: old.version + 1,
                    ..old.clone()
                }
            };
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
        if hard {
            // The person goes from the whole table, not only from the profile.
            let erased = services.store.erase_personal_data(&old.id, &old.username);
            let erased =
                crate::deadline::compensate(erased)
                    .await
                    .map_err(|_| Error::Unfinished {
                        done: "the user is deleted in Keycloak and erased to a tombstone here",
                    })?;
            tracing::info!(user_id = %old.id, ?erased, "hard delete: personal data erased");
        } else {
            // Keycloak has disabled the user: the delete is done; its sessions end here at
            // once, and in Keycloak now or through a repair.
            let ended = end_sessions(
                services,
                &old.id,
                SessionEnd::UserDeactivated,
                Some("the user is deleted: disabled in Keycloak, deleted here"),
            );
            crate::deadline::compensate(ended).await?;
        }
        Ok(())
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
async fn from_keycloak(
    services: &Services,
    local: User,
    kc_user: &crate::keycloak::UserRepresentation,
) -> Result<bool, Error> {
    let (fields, attributes) = crate::observe::observe_user(
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
        version: local.version + 1,
        ..fresh
    };
    if new.keycloak_fields() == local.keycloak_fields() && new.attributes == local.attributes {
        return Ok(false);
    }
    write_through(services, &local, &new, || async { Ok(()) }, UNDO).await?;
    Ok(true)
}

/// The local record's Keycloak-owned fields and attributes over Keycloak's.
async fn to_keycloak(
    services: &Services,
    local: &User,
    kc_user: &crate::keycloak::UserRepresentation,
) -> Result<bool, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Attributes, KeycloakFields};

    fn user() -> User {
        let fields = KeycloakFields {
            username: "a".into(),
            email: Some("a@x.io".into()),
            email_verified: true,
            enabled: true,
            ..Default::default()
        };
        User::new(
            "1",
            &fields,
            &Attributes::from([("title".to_owned(), "Dev".to_owned())]),
            5,
        )
    }

    fn rules() -> AttributeRules {
        let names: Vec<String> = ["department", "title"].map(String::from).to_vec();
        AttributeRules::from_user_profile(
            &names,
            &serde_json::json!({"attributes": [
                {"name": "department", "permissions": {"edit": ["admin"]}},
                {"name": "title", "permissions": {"edit": ["admin"]}}
            ]}),
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
        let attrs = BTreeMap::from([
            ("title".to_owned(), None),
            ("department".to_owned(), Some("Ops".to_owned())),
        ]);
        let req = PatchUserRequest {
            first_name: Some("Ann".into()),
            attributes: Some(attrs),
            ..Default::default()
        };
        let (new, kc) = apply_patch(&old, &req, Some(&rules()), 9).unwrap();
        assert_eq!(new.first_name.as_deref(), Some("Ann"));
        assert_eq!(
            new.attributes,
            Attributes::from([("department".to_owned(), "Ops".to_owned())])
        );
        assert_eq!(new.version, old.version + 1);
        assert_eq!(kc.attributes.get("title"), Some(&None));
        assert!(kc.email.is_none() && kc.email_verified.is_none());
    }

    #[test]
    fn a_changed_email_is_unverified_unless_the_request_vouches_for_it() {
        let old = user();
        let req = PatchUserRequest {
            email: Some("new@x.io".into()),
            ..Default::default()
        };
        let (new, kc) = apply_patch(&old, &req, None, 9).unwrap();
        assert!(!new.email_verified);
        assert_eq!(kc.email_verified, Some(false));
        let vouched = PatchUserRequest {
            email_verified: Some(true),
            ..req
        };
        let (new, kc) = apply_patch(&old, &vouched, None, 9).unwrap();
        assert!(new.email_verified);
        assert_eq!(kc.email_verified, Some(true));
        assert!(vouched.actions().contains(&Action::VerifyEmail));
    }

    #[test]
    fn a_patch_without_change_writes_nothing() {
        let old = user();
        let req = PatchUserRequest {
            email: Some("A@X.io".into()),
            ..Default::default()
        };
        let (new, kc) = apply_patch(&old, &req, None, 9).unwrap();
        assert!(kc.is_empty());
        assert_eq!(new, old);
    }

    #[test]
    fn unknown_attributes_and_bad_values_are_field_errors() {
        let req = PatchUserRequest {
            email: Some("nope".into()),
            attributes: Some(BTreeMap::from([(
                "shoeSize".to_owned(),
                Some("44".to_owned()),
            )])),
            ..Default::default()
        };
        match apply_patch(&user(), &req, Some(&rules()), 9) {
            Err(Error::Validation(e)) => assert_eq!(e.len(), 2),
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn disabling_is_an_action_of_its_own() {
        let req = PatchUserRequest {
            enabled: Some(false),
            ..Default::default()
        };
        assert_eq!(req.actions(), [Action::Update, Action::Disable]);
    }
}
