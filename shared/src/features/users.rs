//! Users as the API shows them, and registration: Keycloak first (it owns identity), then the
//! local record keyed by the Keycloak id; if the local write fails the Keycloak user is deleted
//! again, so neither side is left with an orphan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::base::clock::{iso8601, now_ms, EpochSecs};
use crate::base::deadline;
use crate::error::{Error, ProblemCode};
use crate::features::observe::is_technical_role;
use crate::outside::keycloak::{KeycloakClient, KeycloakError, NewUser, PasswordCredential};
use crate::outside::store::{
    token_hash, Claim, KeycloakFields, Pending, RepairKind, User, UserStatus,
};
use crate::rules::profile::{self, Attributes, Editor};
use crate::services::Services;

/// `{"user": ...}`: the answer of a registration or an admin's creation.
#[derive(Clone, Debug, Serialize)]
pub struct Created {
    pub user: UserView,
}

/// A user in API responses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub status: UserStatus,
    pub enabled: bool,
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_login_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_count: Option<u64>,
    /// What Keycloak has yet to do for a change that is applied (see `Pending`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            username: u.keycloak.username.clone(),
            email: u.keycloak.email.clone(),
            first_name: u.keycloak.first_name.clone(),
            last_name: u.keycloak.last_name.clone(),
            status: u.status,
            enabled: u.keycloak.enabled,
            email_verified: u.keycloak.email_verified,
            roles: u.keycloak.roles.clone(),
            groups: u.keycloak.groups.clone(),
            attributes: u.attributes.clone(),
            created_at: Some(iso8601(u.created_at)),
            updated_at: Some(iso8601(u.updated_at)),
            last_login_at: u.last_login_at.map(iso8601),
            login_count: Some(u.login_count),
            pending: u.pending(),
        }
    }
}

/// Keycloak user attributes for the business data (declared in the realm's user profile).
pub fn keycloak_attributes(attributes: &Attributes) -> BTreeMap<String, Vec<String>> {
    attributes
        .iter()
        .map(|(k, v)| (k.clone(), vec![v.clone()]))
        .collect()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterRequest {
    pub username: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    /// Business attributes; a registering user may set only those the realm's user profile lets
    /// users edit.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A validated new account (registration or admin creation).
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub attributes: Attributes,
    pub enabled: bool,
    pub temporary_password: bool,
}

/// Check a registration-shaped request, every field, before anything is written. `editor` says
/// whose attribute permissions apply: the user's own (registration) or an admin's (creation).
pub async fn validate_new_account(
    services: &Services,
    req: &RegisterRequest,
    editor: Editor,
) -> Result<NewAccount, Error> {
    let mut errors = Vec::new();
    let username = profile::username(&req.username)
        .map_err(|e| errors.push(e))
        .ok();
    let email = profile::email(&req.email).map_err(|e| errors.push(e)).ok();
    if let Err(e) = profile::password(&req.password) {
        errors.push(e);
    }
    let mut name = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| profile::person_name(field, v))
            .transpose()
            .map_err(|e| errors.push(e))
            .ok()
            .flatten()
            .filter(|v| !v.is_empty())
    };
    let first_name = name("firstName", &req.first_name);
    let last_name = name("lastName", &req.last_name);
    let mut attributes = Attributes::new();
    if !req.attributes.is_empty() {
        let input = req
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        match services.attribute_rules().await?.check(editor, &input) {
            Ok(valid) => attributes = profile::present(&valid),
            Err(e) => errors.extend(e),
        }
    }
    if let (Some(username), Some(email)) = (&username, &email) {
        if let Err(e) = profile::username_matches_email(username, email) {
            errors.push(e);
        }
    }
    match (username, email) {
        (Some(username), Some(email)) if errors.is_empty() => Ok(NewAccount {
            username,
            email,
            first_name,
            last_name,
            attributes,
            enabled: true,
            temporary_password: false,
        }),
        _ => Err(Error::Validation(errors)),
    }
}

/// The most a new user's membership reads (roles and groups, side by side) may take: a Keycloak
/// hanging there must leave the registration its time to write the record (marked unread) and
/// answer.
const MEMBERSHIP_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a claim holds when the invocation's deadline is unknown.
const CLAIM_WITHOUT_DEADLINE_MS: i64 = 60_000;
/// Added to the invocation's remaining time, so no live invocation loses its claim.
const CLAIM_MARGIN_MS: i64 = 5_000;
/// Clock skew tolerated between this function and Keycloak when telling which user a
/// registration created.
const CLOCK_SKEW_MS: i64 = 5_000;

/// What identifies a registration request for its idempotency key. It leaves the password out:
/// no password-derived value is ever stored.
pub fn fingerprint(account: &NewAccount) -> String {
    token_hash(
        &serde_json::json!([
            account.username,
            account.email,
            account.first_name,
            account.last_name,
            account.attributes
        ])
        .to_string(),
    )
}

/// Register a user. With an idempotency key, a retry of the same request answers the first
/// success again; the same key with a different request is a 400 `idempotency_key_reused`.
pub async fn register(
    services: &Services,
    req: &RegisterRequest,
    idempotency_key: Option<&str>,
    origin: &crate::rules::request::Origin,
) -> Result<UserView, Error> {
    let valid = validate_new_account(services, req, Editor::User).await?;
    crate::features::throttle::admit_registration(services, origin.ip.as_deref()).await?;
    let Some(key) = idempotency_key.map(str::trim).filter(|k| !k.is_empty()) else {
        return create_account(services, &req.password, valid, None).await;
    };
    if key.len() > 255 {
        return Err(Error::field(
            "Idempotency-Key",
            "must be at most 255 characters",
        ));
    }
    let fingerprint = fingerprint(&valid);
    let now = now_ms();
    // The claim lasts as long as this invocation can (plus a margin): if it dies, a retry takes
    // the claim over instead of waiting for the record to expire.
    let claim_until = now
        + deadline::remaining().map_or(CLAIM_WITHOUT_DEADLINE_MS, |d| d.as_millis() as i64)
        + CLAIM_MARGIN_MS;
    let expires_at = EpochSecs::of_ms(now).after(24 * 3600);
    match services
        .store
        .claim_idempotency(key, &fingerprint, expires_at, claim_until, now)
        .await?
    {
        // The answer is rebuilt from the account as it is now; an erased one is gone for good.
        Claim::Completed { user_id } => match services.store.get_user(&user_id).await? {
            Some(user) if !user.keycloak.username.is_empty() => Ok(UserView::from(&user)),
            _ => Err(Error::Gone),
        },
        Claim::Erased => Err(Error::Gone),
        Claim::InProgress => Err(Error::Conflict {
            code: ProblemCode::RequestInProgress,
            detail: "a request with this Idempotency-Key is still being processed".into(),
        }),
        Claim::Mismatch => Err(Error::BadRequest {
            code: ProblemCode::IdempotencyKeyReused,
            detail: "this Idempotency-Key was used for a different request".into(),
        }),
        Claim::New => run_claimed(services, key, expires_at, &req.password, valid, None).await,
        Claim::Resumed { since } => {
            run_claimed(services, key, expires_at, &req.password, valid, Some(since)).await
        }
    }
}

/// Run a claimed registration; record its account, or let the claim go for a retry.
async fn run_claimed(
    services: &Services,
    key: &str,
    expires_at: EpochSecs,
    password: &str,
    valid: NewAccount,
    earlier_attempt: Option<i64>,
) -> Result<UserView, Error> {
    match create_account(services, password, valid, earlier_attempt).await {
        Ok(body) => {
            let completed = services
                .store
                .complete_idempotency(key, &body.id, expires_at);
            if let Err(e) = completed.await {
                tracing::warn!(error = %e, "could not record the idempotent response");
            }
            Ok(body)
        }
        Err(e) => {
            // Only an attempt whose Keycloak outcome is unknown may have created the user a
            // retry adopts; after a definite refusal the retry starts afresh.
            let unknown = matches!(
                e,
                Error::Keycloak(KeycloakError::Unavailable { .. }) | Error::Store(_)
            );
            if let Err(release) = services.store.release_idempotency(key, unknown).await {
                tracing::warn!(error = %release, "could not release the idempotency key");
            }
            Err(e)
        }
    }
}

/// Create the Keycloak user, then its local record; undo the first if the second fails.
/// `earlier_attempt`: when an earlier attempt of this same request (same idempotency key and
/// fingerprint) started, if one did; the Keycloak user it created is adopted, not refused.
///
/// The attempt is on record as in flight until it ends (`Store::begin_registering`), so the
/// repair of an earlier failed registration of the name leaves the user it creates alone; if
/// that record cannot be written, nothing is created.
pub async fn create_account(
    services: &Services,
    password: &str,
    v: NewAccount,
    earlier_attempt: Option<i64>,
) -> Result<UserView, Error> {
    let attempt = uuid::Uuid::new_v4().to_string();
    let left =
        deadline::remaining().map_or(IN_FLIGHT_WITHOUT_DEADLINE_MS, |d| d.as_millis() as i64);
    let username = v.username.clone();
    services
        .store
        .begin_registering(&username, &attempt, now_ms() + left)
        .await?;
    let created = create_in_flight(services, password, v, earlier_attempt, &attempt).await;
    let ended = deadline::compensate(services.store.end_registering(&username, &attempt)).await;
    if let Err(e) = ended {
        tracing::warn!(error = %e, "could not end the in-flight registration record; it lapses");
    }
    created
}

/// How long an attempt counts as in flight when the invocation has no deadline (local tools).
const IN_FLIGHT_WITHOUT_DEADLINE_MS: i64 = 60_000;

/// The Keycloak user a new account is created as.
fn keycloak_user(v: &NewAccount, password: &str) -> NewUser {
    NewUser {
        username: v.username.clone(),
        email: Some(v.email.clone()),
        first_name: v.first_name.clone(),
        last_name: v.last_name.clone(),
        enabled: v.enabled,
        email_verified: None,
        attributes: keycloak_attributes(&v.attributes),
        credentials: vec![PasswordCredential::new(password, v.temporary_password)],
    }
}

async fn create_in_flight(
    services: &Services,
    password: &str,
    v: NewAccount,
    earlier_attempt: Option<i64>,
    attempt: &str,
) -> Result<UserView, Error> {
    let kc = &services.keycloak;
    let started = now_ms();
    let id = match kc.create_user(&keycloak_user(&v, password)).await {
        Ok(id) => id,
        Err(taken @ KeycloakError::UserExists { .. }) if earlier_attempt.is_some() => {
            let since = earlier_attempt.unwrap_or(started);
            adoptable(services, &v, since)
                .await?
                .ok_or_else(|| Error::from(taken))?
        }
        Err(e) => {
            // An unknown outcome (timeout, 5xx): Keycloak may have created the user, or still will.
            if matches!(e, KeycloakError::Unavailable { .. }) {
                deadline::compensate(forget_registration(
                    services,
                    &v.username,
                    None,
                    started,
                    attempt,
                ))
                .await;
            }
            return Err(e.into());
        }
    };
    let memberships = memberships_of_new_user(kc, &id).await;
    let read = memberships.is_some();
    let (roles, groups) = memberships.unwrap_or_default();
    let fields = KeycloakFields {
        username: v.username,
        email: Some(v.email),
        first_name: v.first_name,
        last_name: v.last_name,
        enabled: v.enabled,
        email_verified: false,
        roles,
        groups,
    };
    let now = now_ms();
    let mut user = User::new(&id, &fields, &v.attributes, now);
    user.registered_at = Some(now);
    if !read {
        user.mark_unread();
    }
    match services.store.create_user(&user).await {
        Ok(()) => {}
        // A bulk sync or a webhook imported the new Keycloak user first: the record exists, all
        // is well; it is marked as this registration's.
        Err(crate::outside::store::StoreError::AlreadyExists) => {
            let existing = services.store.mark_registered(&id, now).await?;
            return Ok(UserView::from(&existing.ok_or(Error::NotFound)?));
        }
        Err(local) => {
            tracing::warn!(user_id = %id, error = %local, "local write failed; removing the Keycloak user again");
            deadline::compensate(forget_registration(
                services,
                &user.keycloak.username,
                Some(&id),
                started,
                attempt,
            ))
            .await;
            return Err(Error::Store(local));
        }
    }
    Ok(UserView::from(&user))
}

/// The memberships Keycloak gave the new user: its realm roles (the default roles, without the
/// technical ones) and its group paths (the realm's default groups), read side by side. A failed
/// read of either leaves both unknown, not empty: the record is marked unread, so the next
/// webhook, incremental or full sync reads the user again (the echo check never vouches for an
/// unread record).
async fn memberships_of_new_user(
    kc: &KeycloakClient,
    id: &str,
) -> Option<(Vec<String>, Vec<String>)> {
    let reads = async { tokio::try_join!(kc.user_effective_realm_roles(id), kc.user_groups(id)) };
    let read = tokio::time::timeout(MEMBERSHIP_READ_LIMIT, reads).await;
    let read = read.unwrap_or_else(|_| {
        Err(KeycloakError::Unavailable {
            reason: "the membership reads took too long".into(),
        })
    });
    match read {
        Ok((roles, groups)) => Some((
            roles
                .into_iter()
                .map(|r| r.name)
                .filter(|r| !is_technical_role(r))
                .collect(),
            groups.into_iter().map(|g| g.path).collect(),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "memberships of the new user unknown; marked for a re-read");
            None
        }
    }
}

/// The Keycloak user an earlier attempt of this request created, if the taken name is theirs:
/// same username and email, created since that attempt started, and no registration has
/// recorded it (a record a registration wrote is someone's account, never adopted; one the sync
/// or a webhook imported meanwhile is this attempt's user, as it is in production within a
/// second). Its password is the one that attempt set: the same idempotency key means the same
/// request.
async fn adoptable(
    services: &Services,
    v: &NewAccount,
    since: i64,
) -> Result<Option<String>, Error> {
    let Some(found) = services.keycloak.find_user_by_username(&v.username).await? else {
        return Ok(None);
    };
    let same_request = found.email.as_deref() == Some(v.email.as_str())
        && found.created_timestamp >= since - CLOCK_SKEW_MS;
    if !same_request {
        return Ok(None);
    }
    let recorded = services.store.get_user(&found.id).await?;
    if recorded.is_some_and(|r| r.registered_at.is_some() || r.status == UserStatus::Deleted) {
        return Ok(None);
    }
    tracing::info!(user_id = %found.id, "adopted the Keycloak user an earlier attempt created");
    Ok(Some(found.id))
}

/// No Keycloak user without its local record: delete the user this registration created (by id,
/// or found by username and creation time), or, when that cannot be done now, leave a repair for
/// the next sync run.
async fn forget_registration(
    services: &Services,
    username: &str,
    id: Option<&str>,
    since: i64,
    attempt: &str,
) {
    let kc = &services.keycloak;
    let found = match id {
        Some(id) => Ok(Some(id.to_owned())),
        // Found by name, the user may be another registration's that is still in flight: it is
        // left to the repair, which looks again once that one has ended. (Read after the user:
        // one that made the user found had recorded itself before.)
        None => match kc.find_user_by_username(username).await {
            Ok(Some(u)) if u.created_timestamp >= since - CLOCK_SKEW_MS => {
                match services
                    .store
                    .is_registering(username, now_ms(), Some(attempt))
                    .await
                {
                    Ok(other) => Ok((!other).then_some(u.id)),
                    Err(e) => Err(KeycloakError::Unavailable {
                        reason: e.to_string(),
                    }),
                }
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        },
    };
    let deleted = match found {
        Ok(Some(id)) => match kc.delete_user(&id).await {
            Ok(()) | Err(KeycloakError::NotFound) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not delete the Keycloak user of a failed registration");
                false
            }
        },
        // Not there (yet): a creation still in flight may land later.
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for the Keycloak user of a failed registration");
            false
        }
    };
    if !deleted {
        crate::features::repair::note(
            services,
            since,
            RepairKind::KeycloakUser {
                username: username.to_owned(),
                user_id: id.map(str::to_owned),
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_epoch_millis() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_735_000_000_123), "2024-12-24T00:26:40.123Z");
    }
}
