//! One user an event names, judged: the message the webhook path hands to the sync (the hook
//! produces it, the queue carries it, `apply_user_change` consumes it), the echo check of this
//! project's own writes, and the verdict on a user read from Keycloak, which an incremental run
//! reaches the same way for each user its events name.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::base::clock::now_ms;
use crate::error::{Error, ProblemCode};
use crate::features::observe::{fields_of, observe_user};
use crate::outside::keycloak::{AdminEvent, KeycloakError, UserRepresentation};
use crate::outside::store::{ApplyOutcome, KeycloakFields, SyncCounts, User, UserStatus};
use crate::rules::profile::Attributes;
use crate::services::Services;

use super::apply::{deactivate, Deactivation};

/// One user a delivered event names: what the queue carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserChange {
    /// The delivery's event id: the queue's deduplication key.
    pub event_id: String,
    pub user_id: String,
    /// When Keycloak recorded the event (epoch ms).
    pub time: i64,
    /// The event type as the source names it (`admin.USER-UPDATE`, `access.UPDATE_PROFILE`).
    pub kind: String,
    /// An admin event as the incremental sync reads it (author, representation): for the echo
    /// check only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminEvent>,
}

/// A user the events of an incremental run name.
pub(super) struct Named {
    /// The time of the user's earliest event in this window.
    pub(super) first: i64,
    /// Some event needs the user read from Keycloak (anything but an echo of our own write).
    read: bool,
    /// Admin events of our own writes to this user, and the representation of the latest.
    pub(super) echoes: u64,
    latest_echo: Option<(i64, String)>,
}

impl Named {
    pub(super) fn new(time: i64) -> Self {
        Named {
            first: time,
            read: false,
            echoes: 0,
            latest_echo: None,
        }
    }

    pub(super) fn needs_read(&mut self, time: i64) {
        self.first = self.first.min(time);
        self.read = true;
    }

    /// An admin event: an echo when this project's service account wrote the user's
    /// representation (create, update); anything else is read from Keycloak.
    pub(super) fn admin_event(&mut self, e: &AdminEvent, own: Option<&str>) {
        let by_us =
            own.is_some() && e.auth_details.as_ref().and_then(|a| a.user_id.as_deref()) == own;
        match &e.representation {
            Some(rep)
                if by_us
                    && e.resource_type == "USER"
                    && matches!(e.operation_type.as_str(), "CREATE" | "UPDATE") =>
            {
                self.first = self.first.min(e.time);
                self.echoes += 1;
                if self.latest_echo.as_ref().is_none_or(|(t, _)| e.time >= *t) {
                    self.latest_echo = Some((e.time, rep.clone()));
                }
            }
            _ => self.needs_read(e.time),
        }
    }

    /// Whether every event is our own write and the store already holds what the latest one
    /// wrote (same content hash, same business attributes): nothing to read or apply.
    pub(super) fn is_echo_of(&self, stored: Option<&User>, names: &[String]) -> bool {
        let (Some(stored), Some((_, rep)), false) = (stored, &self.latest_echo, self.read) else {
            return false;
        };
        if stored.is_unread() {
            return false;
        }
        let Ok(mut rep) = serde_json::from_str::<Value>(rep) else {
            return false;
        };
        // A root field the write left out (our updates leave out `enabled`) kept its value.
        if let Some(obj) = rep.as_object_mut() {
            for (key, value) in [
                ("id", json!(stored.id)),
                ("username", json!(stored.keycloak.username)),
                ("email", json!(stored.keycloak.email)),
                ("firstName", json!(stored.keycloak.first_name)),
                ("lastName", json!(stored.keycloak.last_name)),
                ("enabled", json!(stored.keycloak.enabled)),
                ("emailVerified", json!(stored.keycloak.email_verified)),
            ] {
                obj.entry(key).or_insert(value);
            }
        }
        let Ok(rep) = serde_json::from_value::<UserRepresentation>(rep) else {
            return false;
        };
        let membership = (
            stored.keycloak.roles.iter().cloned().collect(),
            stored.keycloak.groups.clone(),
        );
        let (fields, business) = fields_of(&rep, Some(&membership), names);
        stored.status != UserStatus::Deleted
            && fields.content_hash() == stored.kc_hash
            && business == stored.attributes
    }
}

/// How long an incremental run waits before looking again at a user who seems gone or disabled.
const CONFIRM_DELAY: std::time::Duration = std::time::Duration::from_millis(750);

/// What an incremental run concluded about one user its events name.
pub(super) enum Verdict {
    Apply(KeycloakFields, Attributes, i64),
    Deactivate(Deactivation),
    Nothing,
    /// Not decided now (Keycloak failed, or a 404 its own search contradicts): the user is left
    /// as they are, and their events are read again by the next run.
    Unresolved(String),
}

/// Read a user the events name. One read never locks anyone out: a user active here who looks
/// deleted or disabled is read again after `CONFIRM_DELAY`, and a second 404 is checked against
/// the user search by id before the user counts as deleted.
pub(super) async fn judge(services: &Services, id: &str, stored: Option<&User>) -> Verdict {
    let kc = &services.keycloak;
    let names = &services.config.user_attributes;
    // An observation is stamped when the read was asked: an admin edit that finished after
    // that (`finish_edit`) is the newer one, whatever the read returned.
    let observed = |rep: UserRepresentation, deactivating: bool, asked: i64| async move {
        match observe_user(kc, &rep, names).await {
            Ok(fb) if deactivating => Verdict::Deactivate(Deactivation::Disabled(Box::new(fb))),
            Ok((f, b)) => Verdict::Apply(f, b, asked),
            Err(e) => Verdict::Unresolved(format!("reading {}: {e}", rep.id)),
        }
    };
    let active_here =
        stored.is_some_and(|u| matches!(u.status, UserStatus::Active | UserStatus::Pending));
    let asked = now_ms();
    let service_accounts = match kc.service_account_users().await {
        Ok(ids) => ids,
        Err(e) => return Verdict::Unresolved(format!("reading the service accounts: {e}")),
    };
    if service_accounts.contains(id) {
        return Verdict::Nothing;
    }
    match kc.get_user(id).await {
        Ok(rep) if rep.enabled || !active_here => return observed(rep, false, asked).await,
        Ok(_) => {}
        Err(KeycloakError::NotFound) if !active_here => {
            let known = stored.is_some_and(|u| u.status != UserStatus::Deleted);
            return if known {
                Verdict::Deactivate(Deactivation::Deleted)
            } else {
                Verdict::Nothing
            };
        }
        Err(KeycloakError::NotFound) => {}
        Err(e) => return Verdict::Unresolved(format!("reading {id}: {e}")),
    }
    tokio::time::sleep(CONFIRM_DELAY).await;
    let asked = now_ms();
    match kc.get_user(id).await {
        Ok(rep) => {
            let disabled = !rep.enabled;
            observed(rep, disabled, asked).await
        }
        Err(KeycloakError::NotFound) => match kc.found_by_search(id).await {
            Ok(false) => Verdict::Deactivate(Deactivation::Deleted),
            Ok(true) => Verdict::Unresolved(format!(
                "{id}: not found by id, but the user search finds it; left as it is"
            )),
            Err(e) => Verdict::Unresolved(format!("confirming {id}: {e}")),
        },
        Err(e) => Verdict::Unresolved(format!("confirming {id}: {e}")),
    }
}

/// What one webhook-delivered change did.
#[derive(Debug, PartialEq)]
pub enum ChangeOutcome {
    /// An echo of this project's own write that the store already holds: nothing read.
    Echo,
    Applied(ApplyOutcome),
    Deactivated,
    /// Nothing to do: a service account, or a user unknown here and gone from Keycloak.
    Nothing,
}

/// Apply one user a webhook named, the way an incremental run applies a user its events name:
/// the echo check, the user read from Keycloak (never the payload), a deactivation only once
/// confirmed, and the conditional, newest-observation-wins write. A user that cannot be decided
/// now (Keycloak failing, a 404 the search contradicts) is an error: the message is retried.
pub async fn apply_user_change(
    services: &Services,
    change: &UserChange,
) -> Result<ChangeOutcome, Error> {
    let store = &services.store;
    let names = &services.config.user_attributes;
    let id = &change.user_id;
    let mut named = Named::new(change.time);
    match &change.admin {
        Some(e) => {
            let own = services.keycloak.service_account_id().await.ok();
            named.admin_event(e, own.as_deref());
        }
        None => named.needs_read(change.time),
    }
    let stored = store.get_user(id).await?;
    if named.is_echo_of(stored.as_ref(), names) {
        return Ok(ChangeOutcome::Echo);
    }
    match judge(services, id, stored.as_ref()).await {
        Verdict::Apply(fields, business, at) => Ok(ChangeOutcome::Applied(
            store
                .apply_keycloak_fields(id, &fields, &business, at, now_ms())
                .await?,
        )),
        Verdict::Deactivate(d) => {
            let username = stored.map(|u| u.keycloak.username).unwrap_or_default();
            let (mut counts, mut errors) = (SyncCounts::default(), Vec::new());
            let plan = vec![(id.clone(), username, d)];
            let failed = deactivate(store, plan, &mut counts, &mut errors, now_ms()).await?;
            if failed.is_empty() {
                Ok(ChangeOutcome::Deactivated)
            } else {
                Err(Error::Unavailable {
                    code: ProblemCode::StoreUnavailable,
                    detail: errors.join("; "),
                })
            }
        }
        Verdict::Nothing => Ok(ChangeOutcome::Nothing),
        Verdict::Unresolved(why) => Err(Error::Unavailable {
            code: ProblemCode::KeycloakUnavailable,
            detail: why,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outside::keycloak::AuthDetails;

    const US: &str = "sa-user";

    fn event(time: i64, by: &str, representation: Value) -> AdminEvent {
        AdminEvent {
            id: None,
            time,
            operation_type: "UPDATE".into(),
            resource_type: "USER".into(),
            resource_path: "users/u-1".into(),
            auth_details: Some(AuthDetails {
                user_id: Some(by.into()),
                client_id: None,
            }),
            representation: Some(representation.to_string()),
        }
    }

    fn stored() -> User {
        let fields = KeycloakFields {
            username: "ada".into(),
            email: Some("ada@x.io".into()),
            enabled: true,
            ..Default::default()
        };
        User::new("u-1", &fields, &Attributes::new(), 1_000)
    }

    #[test]
    fn our_own_write_that_the_store_already_holds_is_an_echo_with_nothing_to_read() {
        let mut named = Named::new(2_000);
        let wrote = json!({"username": "ada", "email": "ada@x.io"});
        named.admin_event(&event(1_900, US, wrote), Some(US));
        assert_eq!((named.echoes, named.first), (1, 1_900));
        assert!(named.is_echo_of(Some(&stored()), &[]));
    }

    #[test]
    fn a_write_by_anyone_else_is_read_from_keycloak() {
        let mut named = Named::new(2_000);
        let wrote = json!({"username": "ada", "email": "ada@x.io"});
        named.admin_event(&event(1_500, "another-admin", wrote), Some(US));
        assert_eq!((named.echoes, named.first), (0, 1_500));
        assert!(!named.is_echo_of(Some(&stored()), &[]));
    }

    #[test]
    fn an_echo_of_a_write_the_store_does_not_hold_is_not_skipped() {
        let mut named = Named::new(2_000);
        let wrote = json!({"username": "ada", "email": "new@x.io"});
        named.admin_event(&event(2_000, US, wrote), Some(US));
        assert!(!named.is_echo_of(Some(&stored()), &[]));
        assert!(
            !named.is_echo_of(None, &[]),
            "a user the store has never seen is read"
        );
    }

    #[test]
    fn without_our_service_account_id_no_event_counts_as_an_echo() {
        let mut named = Named::new(2_000);
        let wrote = json!({"username": "ada", "email": "ada@x.io"});
        named.admin_event(&event(2_000, US, wrote), None);
        assert!(!named.is_echo_of(Some(&stored()), &[]));
    }
}
