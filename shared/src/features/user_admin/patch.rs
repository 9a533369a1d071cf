//! `PATCH /admin/users/{id}`: the fields an admin may change, checked against the user profile,
//! written through to Keycloak under the record's version (`If-Match`); a disable ends the
//! user's sessions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::base::clock::now_ms;
use crate::error::Error;
use crate::features::audit::{self, Actor, AuditAction};
use crate::outside::keycloak::{UserRepresentation, UserUpdate};
use crate::outside::store::{SessionEnd, User, UserStatus};
use crate::rules::policy::Action;
use crate::rules::profile::{self, AttributeRules, Editor};
use crate::services::Services;

use super::access::authorized;
use super::sessions::end_sessions;
use super::write_through::{write_through, OnUnknown, Written};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
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
        audit::field_names(self)
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
pub(super) fn apply_patch(
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
            Ok(e) if Some(&e) != old.keycloak.email.as_ref() => changed_email(&mut new, &mut kc, e),
            Ok(_) => {}
            Err(err) => errors.push(err),
        }
    }
    if let Some(verified) = req.email_verified {
        if verified != new.keycloak.email_verified || kc.email_verified.is_some() {
            new.keycloak.email_verified = verified;
            kc.email_verified = Some(verified);
        }
    }
    for (field, value, slot, kc_slot) in [
        (
            "firstName",
            &req.first_name,
            &mut new.keycloak.first_name,
            &mut kc.first_name,
        ),
        (
            "lastName",
            &req.last_name,
            &mut new.keycloak.last_name,
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
        if enabled != old.keycloak.enabled {
            new.keycloak.enabled = enabled;
            new.status = if enabled {
                UserStatus::Active
            } else {
                UserStatus::Disabled
            };
            kc.enabled = Some(enabled);
        }
    }
    if let (Some(attrs), Some(rules)) = (&req.attributes, rules) {
        if let Err(e) = patch_attributes(old, &mut new, &mut kc, attrs, rules) {
            errors.extend(e);
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if !kc.is_empty() {
        new.version = old.version + 1;
        new.updated_at = now;
        new.kc_hash = new.keycloak.clone().content_hash();
        new.kc_observed_at = now;
    }
    Ok((new, kc))
}

/// A new email, unverified until someone vouches for it.
fn changed_email(new: &mut User, kc: &mut UserUpdate, email: String) {
    new.keycloak.email = Some(email.clone());
    kc.email = Some(email);
    new.keycloak.email_verified = false;
    kc.email_verified = Some(false);
}

/// The business attributes a patch names, checked against the user profile's rules: the
/// changed ones go to the record and to Keycloak (a `null` removes one).
fn patch_attributes(
    old: &User,
    new: &mut User,
    kc: &mut UserUpdate,
    attrs: &BTreeMap<String, Option<String>>,
    rules: &AttributeRules,
) -> Result<(), Vec<crate::FieldError>> {
    for (name, value) in rules.check(Editor::Admin, attrs)? {
        if value.as_ref() != old.attributes.get(&name) {
            match &value {
                Some(v) => new.attributes.insert(name.clone(), v.clone()),
                None => new.attributes.remove(&name),
            };
            kc.attributes.insert(name, value.map(|v| vec![v]));
        }
    }
    Ok(())
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
                new.pending_keycloak_logout = crate::base::deadline::compensate(ended).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outside::store::{Attributes, KeycloakFields};

    #[test]
    fn the_audit_names_the_fields_a_patch_sets_as_its_json_spells_them() {
        let patch: PatchUserRequest = serde_json::from_value(serde_json::json!({
            "attributes": {"shoeSize": "44", "team": null},
            "enabled": false,
            "emailVerified": true,
        }))
        .unwrap();
        assert_eq!(
            patch.field_names(),
            [
                "emailVerified",
                "enabled",
                "attributes.shoeSize",
                "attributes.team"
            ]
        );
    }

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
        assert_eq!(new.keycloak.first_name.as_deref(), Some("Ann"));
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
        assert!(!new.keycloak.email_verified);
        assert_eq!(kc.email_verified, Some(false));
        let vouched = PatchUserRequest {
            email_verified: Some(true),
            ..req
        };
        let (new, kc) = apply_patch(&old, &vouched, None, 9).unwrap();
        assert!(new.keycloak.email_verified);
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
